"""Retry counters, verified state, access rules, CHANGE REFERENCE DATA and signatures."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from onshi.card import Card
from onshi.cardmap import Token
from onshi.profiles.model import Secret

from .factories import (
    AUTH_PIN,
    JPKI_AID,
    KENHOJO_AID,
    KENMEN_AID,
    MY_NUMBER,
    SIGN_PASSWORD,
    TEXT_PIN,
    make_profile,
)

SHA256_INFO = bytes.fromhex("3031300D060960864801650304020105000420")


def tx(card: Card, command: str | bytes) -> str:
    raw = bytes.fromhex(command) if isinstance(command, str) else command
    return card.process(raw)[-2:].hex(" ").upper()


def select(card: Card, aid: bytes) -> None:
    assert tx(card, b"\x00\xa4\x04\x0c" + bytes((len(aid),)) + aid) == "90 00"


def verify(card: Card, sfi: int, secret: str) -> str:
    data = secret.encode()
    return tx(card, bytes((0, 0x20, 0, 0x80 | sfi, len(data))) + data)


def sign(card: Card, p2: int, data: bytes) -> bytes:
    return card.process(bytes((0x80, 0x2A, 0, p2, len(data))) + data + b"\x00")


# --- counters ------------------------------------------------------------------------------


def test_empty_verify_costs_nothing(card: Card) -> None:
    select(card, JPKI_AID)
    for _ in range(5):
        assert tx(card, "00 20 00 98") == "63 C3"
    assert card.counters["jpki.auth_pin"] == 3


def test_counters_survive_reset_and_power_off(card: Card) -> None:
    select(card, JPKI_AID)
    assert verify(card, 0x18, "0000") == "63 C2"
    card.reset()
    select(card, JPKI_AID)
    assert verify(card, 0x18, "9999") == "63 C1"
    card.power_off()
    assert card.power_on() == bytes.fromhex("3BE000FF8131FE4514")
    select(card, JPKI_AID)
    assert tx(card, "00 20 00 98") == "63 C1"
    assert card.counters["jpki.auth_pin"] == 1


def test_success_resets_to_max(card: Card) -> None:
    select(card, JPKI_AID)
    assert verify(card, 0x1B, "WRONG1") == "63 C4"
    assert verify(card, 0x1B, "WRONG2") == "63 C3"
    assert verify(card, 0x1B, SIGN_PASSWORD) == "90 00"
    assert card.counters["jpki.sign_password"] == 5
    assert tx(card, "00 20 00 9B") == "63 C5"


def test_sign_password_blocks_after_five(card: Card) -> None:
    select(card, JPKI_AID)
    answers = [verify(card, 0x1B, "WRONG9") for _ in range(6)]
    assert answers == ["63 C4", "63 C3", "63 C2", "63 C1", "63 C0", "69 84"]
    assert verify(card, 0x1B, SIGN_PASSWORD) == "69 84"
    assert tx(card, "00 20 00 9B") == "63 C0"
    card.reset()
    select(card, JPKI_AID)
    assert verify(card, 0x1B, SIGN_PASSWORD) == "69 84"


def test_counters_start_from_the_profile(adult_credentials) -> None:
    profile = make_profile(auth_pin=Secret(value=AUTH_PIN, max_tries=3, remaining=1))
    card = Card(profile, adult_credentials)
    assert card.counters["jpki.auth_pin"] == 1
    select(card, JPKI_AID)
    assert verify(card, 0x18, "0000") == "63 C0"
    assert verify(card, 0x18, AUTH_PIN) == "69 84"


def test_counters_are_per_key_and_named(card: Card) -> None:
    assert dict(card.counters) == {
        "jpki.auth_pin": 3,
        "jpki.sign_password": 5,
        "kenhojo.pin": 3,
        "kenhojo.key_0012": 0,
        "kenhojo.collation_a": 10,
        "kenhojo.collation_b": 10,
        "kenmen.collation_b": 10,
        "kenmen.collation_a": 10,
    }
    with pytest.raises(TypeError):
        card.counters["jpki.auth_pin"] = 9  # type: ignore[index]


def test_collation_tries_come_from_the_profile(adult_credentials) -> None:
    card = Card(make_profile(collation_tries=2), adult_credentials)
    select(card, KENMEN_AID)
    assert verify(card, 0x13, "000000000000") == "63 C1"
    assert verify(card, 0x13, "000000000000") == "63 C0"
    assert verify(card, 0x13, MY_NUMBER) == "69 84"
    assert verify(card, 0x12, make_profile().collation_b) == "90 00"  # B is a separate key


def test_blocked_key_0012_of_the_text_ap(card: Card) -> None:
    select(card, KENHOJO_AID)
    assert tx(card, "00 20 00 92") == "63 C0"
    assert verify(card, 0x12, MY_NUMBER) == "69 84"


# --- verified state ------------------------------------------------------------------------


def _auth_signature_sw(card: Card) -> str:
    return sign(card, 0x97, SHA256_INFO + bytes(32))[-2:].hex(" ").upper()


@pytest.mark.parametrize("how", ["reset", "power-cycle", "reselect", "other AP"])
def test_verified_state_is_cleared(card: Card, how: str) -> None:
    select(card, JPKI_AID)
    assert verify(card, 0x18, AUTH_PIN) == "90 00"
    assert _auth_signature_sw(card) == "90 00"
    if how == "reset":
        card.reset()
    elif how == "power-cycle":
        card.power_off()
        assert tx(card, "00 A4 04 0C 0A D3 92 F0 00 26 01 00 00 00 01") == "6F 00"
        card.power_on()
    elif how == "other AP":
        select(card, KENHOJO_AID)
    select(card, JPKI_AID)
    assert _auth_signature_sw(card) == "69 82"
    assert card.counters["jpki.auth_pin"] == 3


def test_selecting_an_ef_keeps_the_verified_state(card: Card) -> None:
    select(card, JPKI_AID)
    assert verify(card, 0x18, AUTH_PIN) == "90 00"
    assert tx(card, "00 A4 02 0C 02 00 0A") == "90 00"
    assert tx(card, "00 A4 02 0C 02 00 17") == "90 00"
    assert sign(card, 0x80, SHA256_INFO + bytes(32))[-2:] == b"\x90\x00"


def test_a_wrong_verify_drops_the_key(card: Card) -> None:
    select(card, JPKI_AID)
    assert verify(card, 0x18, AUTH_PIN) == "90 00"
    assert verify(card, 0x18, "0000") == "63 C2"
    assert _auth_signature_sw(card) == "69 82"


def test_verify_is_per_key(card: Card) -> None:
    select(card, JPKI_AID)
    assert verify(card, 0x18, AUTH_PIN) == "90 00"
    assert sign(card, 0x9A, SHA256_INFO + bytes(32))[-2:] == b"\x69\x82"
    assert tx(card, "00 B0 81 00 04") == "69 82"  # the sign cert needs 001B, not 0018


# --- access rules --------------------------------------------------------------------------

TEXT_B = make_profile().collation_b
ACCESS = [
    # (AID, key SFI or None, secret, EF SFI, answer)
    (KENHOJO_AID, None, "", 1, "69 82"),
    (KENHOJO_AID, 0x11, TEXT_PIN, 1, "90 00"),
    (KENHOJO_AID, 0x14, MY_NUMBER, 1, "90 00"),
    (KENHOJO_AID, 0x15, TEXT_B, 1, "69 82"),
    (KENHOJO_AID, None, "", 2, "69 82"),
    (KENHOJO_AID, 0x11, TEXT_PIN, 2, "90 00"),
    (KENHOJO_AID, 0x14, MY_NUMBER, 2, "69 82"),  # 照合番号A does NOT open 基本4情報
    (KENHOJO_AID, 0x15, TEXT_B, 2, "90 00"),
    (KENHOJO_AID, None, "", 3, "69 82"),
    (KENHOJO_AID, 0x14, MY_NUMBER, 3, "90 00"),
    (KENHOJO_AID, 0x15, TEXT_B, 3, "90 00"),
    (KENHOJO_AID, None, "", 4, "90 00"),
    (KENHOJO_AID, None, "", 5, "90 00"),
    (KENMEN_AID, None, "", 2, "69 82"),
    (KENMEN_AID, 0x13, MY_NUMBER, 2, "90 00"),
    (KENMEN_AID, 0x12, TEXT_B, 2, "90 00"),
    (KENMEN_AID, None, "", 3, "90 00"),
    (KENMEN_AID, None, "", 4, "90 00"),
    (KENMEN_AID, 0x12, TEXT_B, 5, "69 82"),
    (KENMEN_AID, 0x13, MY_NUMBER, 5, "90 00"),
    (JPKI_AID, None, "", 0x0A, "90 00"),
    (JPKI_AID, None, "", 0x0B, "90 00"),
    (JPKI_AID, None, "", 0x02, "90 00"),
    (JPKI_AID, None, "", 0x01, "69 82"),
    (JPKI_AID, 0x18, AUTH_PIN, 0x01, "69 82"),
    (JPKI_AID, 0x1B, SIGN_PASSWORD, 0x01, "90 00"),
]


@pytest.mark.parametrize(("aid", "key", "secret", "ef", "answer"), ACCESS)
def test_access_rules(card: Card, aid: bytes, key, secret: str, ef: int, answer: str) -> None:
    select(card, aid)
    if key is not None:
        assert verify(card, key, secret) == "90 00"
    assert tx(card, bytes((0, 0xB0, 0x80 | ef, 0, 1))) == answer


def test_text_pin_does_not_open_the_face_ap(card: Card) -> None:
    select(card, KENHOJO_AID)
    assert verify(card, 0x11, TEXT_PIN) == "90 00"
    select(card, KENMEN_AID)
    assert tx(card, "00 B0 82 00 01") == "69 82"


def test_smartphone_token_reads_000a_only_after_the_pin(adult_credentials) -> None:
    profile = make_profile(token=Token.ANDROID, auth_cert_needs_pin=True, face_applications=False)
    card = Card(profile, adult_credentials)
    select(card, JPKI_AID)
    assert tx(card, "00 B0 8A 00 04") == "69 82"
    assert verify(card, 0x18, AUTH_PIN) == "90 00"
    assert tx(card, "00 B0 8A 00 04") == "90 00"
    for aid in (KENHOJO_AID, KENMEN_AID):
        assert tx(card, b"\x00\xa4\x04\x0c\x0a" + aid) == "6A 82"
    assert set(card.counters) == {"jpki.auth_pin", "jpki.sign_password"}


def test_face_auth_card_without_pin(adult_credentials) -> None:
    profile = make_profile(auth_pin=Secret(value=None, max_tries=3, remaining=3))
    card = Card(profile, adult_credentials)
    select(card, JPKI_AID)
    assert tx(card, "00 20 00 98") == "63 C0"
    assert verify(card, 0x18, AUTH_PIN) == "69 84"
    assert verify(card, 0x18, "") == "67 00"  # "00 20 00 98 00" is case 2 (Le), not a query
    assert card.counters["jpki.auth_pin"] == 3
    assert tx(card, "00 B0 8A 00 04") == "90 00"  # the certificate itself is still free
    assert _auth_signature_sw(card) == "69 82"


def test_card_without_signature_certificate(pki) -> None:
    profile = make_profile(seed="tests/card/minor")
    profile = replace(profile, sign_cert=replace(profile.sign_cert, present=False))
    card = Card.from_profile(profile, pki)
    select(card, JPKI_AID)
    for fid in ("00 01", "00 1A", "00 1B"):
        assert tx(card, f"00 A4 02 0C 02 {fid}") == "6A 82"
    assert tx(card, "00 B0 81 00 04") == "6A 82"
    assert verify(card, 0x1B, SIGN_PASSWORD) == "6A 88"
    assert sign(card, 0x9A, SHA256_INFO + bytes(32))[-2:] == b"\x6a\x88"
    assert card.process(bytes.fromhex("00 B0 88 00 00")) == bytes.fromhex("00 8F 00 90 00")
    assert "jpki.sign_password" not in card.counters
    assert tx(card, "00 B0 82 00 04") == "90 00"  # the sign CA stays readable


# --- CHANGE REFERENCE DATA -----------------------------------------------------------------


def test_change_auth_pin(card: Card) -> None:
    select(card, JPKI_AID)
    assert tx(card, "00 A4 02 0C 02 00 18") == "90 00"
    assert tx(card, "00 24 01 80 04 " + b"4321".hex()) == "69 82"
    assert verify(card, 0x18, AUTH_PIN) == "90 00"
    for bad in (b"12345", b"12a4", b"123"):
        assert tx(card, bytes((0, 0x24, 1, 0x80, len(bad))) + bad) == "6A 80"
    assert card.counters["jpki.auth_pin"] == 3  # a refused new value costs no try
    assert tx(card, "00 24 01 80 04 " + b"4321".hex()) == "90 00"
    card.reset()
    select(card, JPKI_AID)
    assert verify(card, 0x18, AUTH_PIN) == "63 C2"
    assert verify(card, 0x18, "4321") == "90 00"


@pytest.mark.parametrize(
    ("new", "answer"),
    [
        ("NEWPASS1", "90 00"),
        ("ABCDEF", "6A 80"),  # letters only
        ("123456", "6A 80"),  # digits only
        ("ABC12", "6A 80"),  # too short
        ("A1" * 8 + "X", "6A 80"),  # 17 characters
        ("abc123", "6A 80"),  # lower case
    ],
)
def test_change_sign_password_format(card: Card, new: str, answer: str) -> None:
    select(card, JPKI_AID)
    assert verify(card, 0x1B, SIGN_PASSWORD) == "90 00"
    data = new.encode()
    assert tx(card, bytes((0, 0x24, 1, 0x9B, len(data))) + data) == answer


@pytest.mark.parametrize(
    ("command", "answer"),
    [
        ("00 24 00 80 04 31 32 33 34", "6A 86"),  # P1 must be 01
        ("00 24 01 80", "67 00"),  # no new value
        ("00 24 01 80 04 31 32 33 34 00", "67 00"),  # Le
        ("00 24 01 0A 04 31 32 33 34", "6A 86"),  # P2 bit 8 clear
    ],
)
def test_change_reference_data_shapes(card: Card, command: str, answer: str) -> None:
    select(card, JPKI_AID)
    assert tx(card, "00 A4 02 0C 02 00 18") == "90 00"
    assert verify(card, 0x18, AUTH_PIN) == "90 00"
    assert tx(card, command) == answer


def test_collation_numbers_cannot_be_changed(card: Card) -> None:
    select(card, KENHOJO_AID)
    assert verify(card, 0x14, MY_NUMBER) == "90 00"
    assert tx(card, "00 24 01 94 0C " + b"111111111111".hex()) == "69 86"


# --- COMPUTE DIGITAL SIGNATURE -------------------------------------------------------------


@pytest.mark.parametrize(
    ("alg", "prefix"),
    [
        (hashes.SHA1(), "3021300906052B0E03021A05000414"),
        (hashes.SHA224(), "302D300D06096086480165030402040500041C"),
        (hashes.SHA256(), "3031300D060960864801650304020105000420"),
        (hashes.SHA384(), "3041300D060960864801650304020205000430"),
        (hashes.SHA512(), "3051300D060960864801650304020305000440"),
    ],
)
def test_signature_over_digest_info_verifies(card: Card, adult_credentials, alg, prefix) -> None:
    select(card, JPKI_AID)
    assert verify(card, 0x1B, SIGN_PASSWORD) == "90 00"
    h = hashes.Hash(alg)
    h.update(b"onshi")
    digest = h.finalize()
    answer = sign(card, 0x9A, bytes.fromhex(prefix) + digest)
    assert answer[-2:] == b"\x90\x00" and len(answer) == 258
    key = adult_credentials.sign_cert.public_key()
    key.verify(answer[:-2], digest, padding.PKCS1v15(), Prehashed(alg))
    assert sign(card, 0x9A, bytes.fromhex(prefix) + digest) == answer  # deterministic


@pytest.mark.parametrize("size", [1, 20, 32, 51, 245])
def test_signature_over_arbitrary_bytes_is_type1_padding(
    card: Card, adult_credentials, size
) -> None:
    data = hashlib.shake_256(b"arbitrary").digest(size)
    select(card, JPKI_AID)
    assert verify(card, 0x18, AUTH_PIN) == "90 00"
    answer = sign(card, 0x97, data)
    assert answer[-2:] == b"\x90\x00"
    public = adult_credentials.auth_cert.public_key().public_numbers()
    block = pow(int.from_bytes(answer[:-2], "big"), public.e, public.n).to_bytes(256, "big")
    assert block == b"\x00\x01" + b"\xff" * (253 - size) + b"\x00" + data


def test_fast_and_slow_paths_agree(card: Card) -> None:
    from onshi.card.signing import DigestInfoSigner

    signer = card._apps[JPKI_AID].files[0x17].signer
    assert isinstance(signer, DigestInfoSigner)
    info = SHA256_INFO + hashlib.sha256(b"x").digest()
    block = b"\x00\x01" + b"\xff" * (253 - len(info)) + b"\x00" + info
    assert signer.sign(info) == signer._raw(int.from_bytes(block, "big")).to_bytes(256, "big")


@pytest.mark.parametrize(
    ("command", "answer"),
    [
        ("80 2A 00 97 00", "67 00"),  # Le only, no data (case 2)
        ("80 2A 00 97 01 00 20", "67 00"),  # Le shorter than the signature
        ("80 2A 01 97 01 00 00", "6A 86"),  # P1 schemes 01-05 not modelled
        ("80 2A 00 99 01 00 00", "6A 86"),  # unknown key P2
        ("80 2A 00 98 01 00 00", "6A 86"),  # 98 is the PIN, not a key SFI for 2A
        ("80 2A 00 8B 01 00 00", "6A 86"),
    ],
)
def test_signature_refusals(card: Card, command: str, answer: str) -> None:
    select(card, JPKI_AID)
    assert verify(card, 0x18, AUTH_PIN) == "90 00"
    assert tx(card, command) == answer


def test_signature_input_limit(card: Card) -> None:
    select(card, JPKI_AID)
    assert verify(card, 0x18, AUTH_PIN) == "90 00"
    assert sign(card, 0x97, bytes(245))[-2:] == b"\x90\x00"
    assert sign(card, 0x97, bytes(246))[-2:] == b"\x67\x00"
    assert tx(card, b"\x80\x2a\x00\x97\x00\x00\xf6" + bytes(246) + b"\x01\x00") == "67 00"


def test_signature_needs_a_key_ef(card: Card) -> None:
    select(card, JPKI_AID)
    assert verify(card, 0x18, AUTH_PIN) == "90 00"
    assert sign(card, 0x80, bytes(10)) == bytes.fromhex("69 86")  # no current EF
    assert tx(card, "00 A4 02 0C 02 00 0A") == "90 00"
    assert sign(card, 0x80, bytes(10)) == bytes.fromhex("6A 88")  # the cert is no key
    select(card, KENHOJO_AID)
    assert sign(card, 0x97, bytes(10)) == bytes.fromhex("6A 88")


def test_extended_lc_and_le_give_the_same_answers(card: Card) -> None:
    """Hosts that always send extended APDUs (MYNA's builder can) get what short APDUs get."""
    digest_info = SHA256_INFO + hashlib.sha256(b"extended").digest()
    select(card, JPKI_AID)
    assert tx(card, b"\x00\x20\x00\x98\x00\x00\x04" + b"0000") == "63 C2"
    assert tx(card, b"\x00\x20\x00\x98\x00\x00\x04" + AUTH_PIN.encode()) == "90 00"
    short = sign(card, 0x97, digest_info)
    extended = card.process(b"\x80\x2a\x00\x97\x00\x00\x33" + digest_info + b"\x00\x00")
    assert short[-2:] == b"\x90\x00" and extended == short
    assert card.counters["jpki.auth_pin"] == 3


def test_verify_by_sfi_names_a_key_of_the_selected_ap_only(card: Card) -> None:
    """SFI 18 is the JPKI auth PIN only while the JPKI AP is selected; in the text AP it names
    nothing (6A 88), costs no try, and the JPKI PIN verified before the switch is gone."""
    select(card, JPKI_AID)
    assert verify(card, 0x18, AUTH_PIN) == "90 00"
    select(card, KENHOJO_AID)
    for command in ("00 20 00 98", "00 20 00 98 04 " + b"0000".hex()):
        assert tx(card, command) == "6A 88"
    assert sign(card, 0x97, SHA256_INFO + bytes(32)) == bytes.fromhex("6A 88")
    assert verify(card, 0x11, "0000") == "63 C2"  # the text AP's own PIN, by SFI
    select(card, JPKI_AID)
    assert verify(card, 0x11, TEXT_PIN) == "6A 88"  # and the text PIN is not a JPKI key
    assert sign(card, 0x97, SHA256_INFO + bytes(32)) == bytes.fromhex("69 82")
    assert (card.counters["jpki.auth_pin"], card.counters["kenhojo.pin"]) == (3, 2)
