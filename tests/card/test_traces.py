"""Every real-card trace of card_apdu.md §8 (A-H), replayed byte for byte.

Certificates and signatures come from the test PKI, so where the trace shows their bytes we
check their shape (``30 82`` header, the length it announces, 256-byte signature) and verify
them with ``cryptography`` instead. Fixed steps are (command hex, expected response hex) tables.
"""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import Encoding

from onshi.card import Card

from .factories import AUTH_PIN, MY_NUMBER, SIGN_PASSWORD, TEXT_PIN, make_profile

SELECT_JPKI = "00 A4 04 0C 0A D3 92 F0 00 26 01 00 00 00 01"
SELECT_TEXT = "00 A4 04 0C 0A D3 92 10 00 31 00 01 01 04 08"
SELECT_FACE = "00 A4 04 0C 0A D3 92 10 00 31 00 01 01 04 02"
OK = "90 00"
SHA256_INFO = "30 31 30 0D 06 09 60 86 48 01 65 03 04 02 01 05 00 04 20"


def asc(text: str) -> str:
    return text.encode("ascii").hex(" ").upper()


def tx(card: Card, command: str) -> bytes:
    return card.process(bytes.fromhex(command))


def replay(card: Card, steps: list[tuple[str, str]]) -> None:
    for i, (command, expected) in enumerate(steps):
        got = tx(card, command)
        assert got == bytes.fromhex(expected), f"step {i}: {command} -> {got.hex(' ')}"


def test_a_token(card: Card) -> None:
    token = asc("JPKIAPICCTOKEN2") + " 20" * 17
    replay(
        card,
        [(SELECT_JPKI, OK), ("00 A4 02 0C 02 00 06", OK), ("00 B0 00 00 20", token + " 90 00")],
    )


def read_cert_tex(card: Card, fid: str) -> bytes:
    """TEX style: 4-byte header, then the rest with one extended Le."""
    assert tx(card, f"00 A4 02 0C 02 {fid}") == bytes.fromhex(OK)
    head = tx(card, "00 B0 00 00 04")
    assert head[:2] == b"\x30\x82" and head[-2:] == b"\x90\x00" and len(head) == 6
    rest = tx(card, "00 B0 00 04 00 " + head[2:4].hex(" "))
    assert rest[-2:] == b"\x90\x00" and len(rest) - 2 == int.from_bytes(head[2:4], "big")
    return head[:4] + rest[:-2]


def test_b_user_auth_certificate_without_pin(card: Card, adult_credentials) -> None:
    assert tx(card, SELECT_JPKI) == bytes.fromhex(OK)
    der = read_cert_tex(card, "00 0A")
    assert der == adult_credentials.auth_cert.public_bytes(Encoding.DER)
    assert card.counters["jpki.auth_pin"] == 3


def test_c_pin_status(card: Card) -> None:
    replay(card, [(SELECT_JPKI, OK), ("00 A4 02 0C 02 00 18", OK), ("00 20 00 80", "63 C3")])


def _verify_signature(signature: bytes, digest: bytes, cert) -> None:
    assert len(signature) == 256
    cert.public_key().verify(signature, digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))


def test_d_sign_with_user_auth_key(card: Card, adult_credentials) -> None:
    digest = hashlib.sha256(b"onshi trace D").digest()
    replay(
        card,
        [
            (SELECT_JPKI, OK),
            ("00 A4 02 0C 02 00 18", OK),
            ("00 20 00 80 04 " + asc(AUTH_PIN), OK),
            ("00 A4 02 0C 02 00 17", OK),
        ],
    )
    answer = tx(card, f"80 2A 00 80 33 {SHA256_INFO} {digest.hex()} 00")
    assert answer[-2:] == b"\x90\x00"
    _verify_signature(answer[:-2], digest, adult_credentials.auth_cert)


def test_d_wrong_pins_then_blocked(card: Card) -> None:
    replay(
        card,
        [
            (SELECT_JPKI, OK),
            ("00 A4 02 0C 02 00 18", OK),
            ("00 20 00 80 04 " + asc("0000"), "63 C2"),
            ("00 20 00 80 04 " + asc("0000"), "63 C1"),
            ("00 20 00 80 04 " + asc("0000"), "63 C0"),
            ("00 20 00 80 04 " + asc(AUTH_PIN), "69 84"),
            ("00 20 00 80", "63 C0"),
        ],
    )


def test_d_sfi_variant(card: Card, adult_credentials) -> None:
    digest = hashlib.sha256(b"onshi trace D, SFI").digest()
    replay(card, [(SELECT_JPKI, OK), ("00 20 00 98 04 " + asc(AUTH_PIN), OK)])
    answer = tx(card, f"80 2A 00 97 33 {SHA256_INFO} {digest.hex()} 00")
    assert answer[-2:] == b"\x90\x00"
    _verify_signature(answer[:-2], digest, adult_credentials.auth_cert)


def test_e_signature_certificate(card: Card, adult_credentials) -> None:
    pw = asc(SIGN_PASSWORD)
    replay(
        card,
        [
            (SELECT_JPKI, OK),
            ("00 A4 02 0C 02 00 01", OK),
            ("00 B0 00 00 04", "69 82"),
            ("00 A4 02 0C 02 00 1B", OK),
            (f"00 20 00 80 {len(SIGN_PASSWORD):02X} {pw}", OK),
        ],
    )
    der = read_cert_tex(card, "00 01")
    assert der == adult_credentials.sign_cert.public_bytes(Encoding.DER)


def test_f_my_number(card: Card) -> None:
    record = "FF 10 0C " + asc(MY_NUMBER) + " FF FF 90 00"
    replay(
        card,
        [
            (SELECT_TEXT, OK),
            ("00 A4 02 0C 02 00 11", OK),
            ("00 20 00 80 04 " + asc(TEXT_PIN), OK),
            ("00 A4 02 0C 02 00 01", OK),
            ("00 B0 00 00 00", record),
            ("00 B0 00 00 11", record),
        ],
    )


def test_f_sfi_variant(card: Card) -> None:
    replay(
        card,
        [
            (SELECT_TEXT, OK),
            ("00 20 00 91 04 " + asc(TEXT_PIN), OK),
            ("00 B0 81 03 0C", asc(MY_NUMBER) + " 90 00"),
        ],
    )


def test_g_basic_four(card: Card) -> None:
    profile = make_profile()
    replay(
        card,
        [
            (SELECT_TEXT, OK),
            ("00 A4 02 0C 02 00 11", OK),
            ("00 20 00 80 04 " + asc(TEXT_PIN), OK),
            ("00 A4 02 0C 02 00 02", OK),
        ],
    )
    length = tx(card, "00 B0 00 02 01")
    assert len(length) == 3 and length[0] < 0x80
    whole = tx(card, f"00 B0 00 00 {3 + length[0]:02X}")
    assert whole[-2:] == b"\x90\x00"
    body = whole[:-2]
    name = profile.holder.name.encode()
    address = profile.holder.address.encode()
    expected = (
        bytes((0xFF, 0x20, length[0], 0xDF, 0x21, 0x08))
        + (14).to_bytes(2, "big")
        + (14 + 3 + len(name)).to_bytes(2, "big")
        + (14 + 6 + len(name) + len(address)).to_bytes(2, "big")
        + (14 + 6 + len(name) + len(address) + 11).to_bytes(2, "big")
        + bytes((0xDF, 0x22, len(name)))
        + name
        + bytes((0xDF, 0x23, len(address)))
        + address
        + b"\xdf\x24\x08"
        + b"19800217"
        + b"\xdf\x25\x01"
        + b"1"
    )
    assert body == expected


@pytest.mark.parametrize(
    ("key", "secret"),
    [("00 13", MY_NUMBER), ("00 12", make_profile().collation_b)],
    ids=["collation-a", "collation-b"],
)
def test_h_face_photo(card: Card, adult_credentials, key: str, secret: str) -> None:
    replay(
        card,
        [
            (SELECT_FACE, OK),
            (f"00 A4 02 0C 02 {key}", OK),
            (f"00 20 00 80 {len(secret):02X} " + asc(secret), OK),
            ("00 A4 02 0C 02 00 02", OK),
        ],
    )
    whole = tx(card, "00 B0 00 00 00 00 00")
    assert whole[:2] == b"\xff\x20" and whole[-2:] == b"\x90\x00"
    sfi = Card(make_profile(), adult_credentials)  # a fresh card, whole file by SFI (JSAPDU)
    replay(sfi, [(SELECT_FACE, OK), (f"00 A4 02 0C 02 {key}", OK)])
    assert tx(sfi, f"00 20 00 80 {len(secret):02X} " + asc(secret)) == bytes.fromhex(OK)
    assert tx(sfi, "00 B0 82 00 00 00 00") == whole
