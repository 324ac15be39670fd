"""Command gates and the smaller commands: CLA/INS/syntax refusals, SELECT forms, GET
CHALLENGE, GET DATA, power states and construction through the test PKI."""

from __future__ import annotations

import pytest

from onshi.card import Card

from .factories import JPKI_AID, KENHOJO_AID, make_profile

SELECT_JPKI = "00 A4 04 0C 0A D3 92 F0 00 26 01 00 00 00 01"

# (setup commands, command, expected answer hex)
TABLE = [
    # unknown applications and files
    ([], "00 A4 04 0C 0A D3 92 F0 00 26 01 00 00 00 02", "6A 82"),
    ([], "00 A4 04 0C 05 A0 00 00 00 03", "6A 82"),
    ([SELECT_JPKI], "00 A4 02 0C 02 2F 10", "6A 82"),
    ([SELECT_JPKI], "00 A4 02 0C 02 00 03", "6A 82"),
    ([], "00 A4 02 0C 02 00 0A", "6A 82"),  # no AP selected
    ([SELECT_JPKI], "00 A4 00 0C 02 3F 00", "6A 82"),
    # SELECT shapes
    ([], "00 A4 04 00 0A D3 92 F0 00 26 01 00 00 00 01", "6A 86"),  # FCI requested
    ([], "00 A4 04 0C", "67 00"),
    ([], "00 A4 04 0C 00", "67 00"),  # case 2: no AID
    ([], "00 A4 04 0C 11" + " 01" * 17, "67 00"),  # longer than 16
    ([SELECT_JPKI], "00 A4 02 0C 01 0A", "67 00"),
    ([SELECT_JPKI], "00 A4 02 0C 03 00 0A 00", "67 00"),
    ([SELECT_JPKI], "00 A4 02 04 02 00 0A", "6A 86"),
    ([], "00 A4 08 0C 02 00 0A", "6A 86"),
    ([], "00 A4 00 00", "6A 86"),  # SELECT MF in the power-on state (SOL)
    ([SELECT_JPKI], "00 A4 00 00", "90 00"),  # ... and with an AP: a no-op
    ([SELECT_JPKI], "00 A4 02 0C 02 00 0A 00", "90 00"),  # an Le is tolerated
    # CLA and INS gates
    ([], "A0 A4 04 0C 0A D3 92 F0 00 26 01 00 00 00 01", "6E 00"),
    ([], "01 B0 00 00 04", "6E 00"),
    ([], "FF CA 00 00 00", "6E 00"),
    ([], "08 A4 04 0C 0A D3 92 F0 00 26 01 00 00 00 01", "68 82"),
    ([SELECT_JPKI], "0C B0 00 00 04", "69 FC"),
    ([SELECT_JPKI], "0C 20 00 98 04 31 32 33 34", "69 FC"),
    ([SELECT_JPKI], "08 20 00 98", "69 FC"),
    ([SELECT_JPKI], "0C 2A 00 80 01 00", "68 82"),
    ([], "00 0E 00 00", "6D 00"),
    ([], "00 C0 00 00 10", "6D 00"),  # GET RESPONSE: the card never answers 61 xx
    ([], "80 A4 04 0C 0A D3 92 F0 00 26 01 00 00 00 01", "6D 00"),
    ([], "00 2A 00 80 01 00 00", "6D 00"),  # the signature command is proprietary (80)
    ([], "80 FC 00 00", "6D 00"),
    # malformed bytes
    ([], "", "67 00"),
    ([], "00", "67 00"),
    ([], "00 A4 04", "67 00"),
    ([SELECT_JPKI], "00 A4 02 0C 05 00 0A", "67 00"),  # Lc says 5, 2 bytes follow
    ([SELECT_JPKI], "00 B0 00 00 00 01", "67 00"),
    # VERIFY shapes
    ([SELECT_JPKI], "00 20 01 98", "6A 86"),
    ([SELECT_JPKI], "00 20 00 18", "6A 86"),
    ([SELECT_JPKI], "00 20 00 B8", "6A 86"),
    ([SELECT_JPKI], "00 20 00 98 00", "67 00"),
    ([SELECT_JPKI], "00 20 00 98 04 31 32 33 34 00", "67 00"),
    ([SELECT_JPKI], "00 20 00 80", "6A 88"),  # no current EF
    ([SELECT_JPKI, "00 A4 02 0C 02 00 0A"], "00 20 00 80", "6A 88"),  # a cert, not a key
    ([SELECT_JPKI], "00 20 00 8A", "6A 88"),
    ([], "00 20 00 98", "6A 88"),  # nothing selected
    # GET CHALLENGE and GET DATA
    ([], "00 84 00 01 08", "6A 86"),
    ([], "00 84 00 00", "67 00"),
    ([], "00 84 00 00 00 00 08", "69 85"),  # extended Le refused (SOL)
    ([], "00 CA 5F 51 00", "E0 00 FF 81 31 FE 45 14 90 00"),
    ([], "00 CA 5F 51 04", "E0 00 FF 81 90 00"),
    ([], "00 CA 5F 51", "67 00"),
    ([], "00 CA 00 42 00", "6A 88"),
    ([SELECT_JPKI], "00 CA 5F 51 00", "6A 88"),  # only in the power-on state
    (
        [SELECT_JPKI, "00 A4 04 0C 07 A0 00 00 01 51 00 00"],
        "00 CA 5F 51 00",
        "E0 00 FF 81 31 FE 45 14 90 00",
    ),
]


@pytest.mark.parametrize(("setup", "command", "answer"), TABLE)
def test_command_table(card: Card, setup: list[str], command: str, answer: str) -> None:
    for step in setup:
        assert card.process(bytes.fromhex(step)) == b"\x90\x00", step
    assert card.process(bytes.fromhex(command)).hex(" ").upper() == answer


def test_every_aid_selects(card: Card) -> None:
    for aid in ("D3921000310001010401", "D3921000310001010100"):
        assert card.process(bytes.fromhex("00A4040C0A" + aid)) == b"\x90\x00"
        assert card.process(bytes.fromhex("00A4020C020001")) == b"\x6a\x82"
    for aid in ("D392F000260100000001", "D3921000310001010408", "D3921000310001010402"):
        assert card.process(bytes.fromhex("00A4040C0A" + aid)) == b"\x90\x00"
    assert card.selected == "券面AP"
    card.reset()
    assert card.selected is None


@pytest.mark.parametrize("length", range(1, 17))
def test_partial_and_padded_aids_are_unknown(card: Card, length: int) -> None:
    """SELECT by DF name matches the whole AID: prefixes, truncations and AID + extra bytes
    of a real AID all answer 6A 82 (never the engine's 6F 00)."""
    aid = (JPKI_AID + b"\x00" * 6)[:length]
    expected = b"\x90\x00" if aid == JPKI_AID else b"\x6a\x82"
    assert card.process(b"\x00\xa4\x04\x0c" + bytes((length,)) + aid) == expected


def test_get_challenge_is_deterministic_and_fresh(adult_credentials) -> None:
    a, b = (Card(make_profile(), adult_credentials) for _ in range(2))
    first = [a.process(bytes.fromhex("00 84 00 00 08")) for _ in range(3)]
    assert [b.process(bytes.fromhex("00 84 00 00 08")) for _ in range(3)] == first
    assert len({f for f in first}) == 3 and all(
        len(f) == 10 and f.endswith(b"\x90\x00") for f in first
    )
    assert len(a.process(bytes.fromhex("00 84 00 00 00"))) == 258
    other = Card(make_profile(seed="other"), adult_credentials)
    assert other.process(bytes.fromhex("00 84 00 00 08")) != first[0]


def test_power_off_refuses_until_power_on(card: Card) -> None:
    card.power_off()
    assert card.process(bytes.fromhex(SELECT_JPKI)) == b"\x6f\x00"
    assert card.power_on() == card.atr == card.profile.atr
    assert card.reset() == card.atr
    assert card.process(bytes.fromhex(SELECT_JPKI)) == b"\x90\x00"


def test_non_face_card_hides_the_face_aps(adult_credentials) -> None:
    card = Card(make_profile(face_applications=False), adult_credentials)
    assert card.process(bytes.fromhex("00A4040C0A" + KENHOJO_AID.hex())) == b"\x6a\x82"
    for aid in ("D3921000310001010402", "D3921000310001010401", "D3921000310001010100"):
        assert card.process(bytes.fromhex("00A4040C0A" + aid)) == b"\x6a\x82"
    assert card.process(bytes.fromhex("00A4040C0A" + JPKI_AID.hex())) == b"\x90\x00"


def test_from_profile_uses_the_test_pki(pki, adult_credentials) -> None:
    profile = make_profile()
    card = Card.from_profile(profile, pki)
    card.process(bytes.fromhex(SELECT_JPKI))
    head = card.process(bytes.fromhex("00 B0 8A 00 04"))
    total = int.from_bytes(head[2:4], "big") + 4
    der = card.process(bytes.fromhex("00 B0 00 00 00") + total.to_bytes(2, "big"))[:-2]
    from cryptography.hazmat.primitives.serialization import Encoding

    assert der == adult_credentials.auth_cert.public_bytes(Encoding.DER)


def test_from_profile_default_pki() -> None:
    card = Card.from_profile(make_profile())
    assert card.process(bytes.fromhex(SELECT_JPKI)) == b"\x90\x00"
    assert card.process(bytes.fromhex("00 B0 8A 00 02")) == b"\x30\x82\x90\x00"


def test_process_accepts_bytearray_and_memoryview(card: Card) -> None:
    assert card.process(bytearray.fromhex(SELECT_JPKI)) == b"\x90\x00"
    assert card.process(memoryview(bytes.fromhex("00 B0 86 00 04"))) == b"JPKI\x90\x00"
