"""File contents and READ BINARY: certificate read styles, SFI, token, 券面 AP records."""

from __future__ import annotations

import hashlib
import io
import struct

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from PIL import Image

from onshi.card import Card
from onshi.card.records import record_issuer
from onshi.tlv import iter_tlv

from .factories import (
    JPKI_AID,
    KENHOJO_AID,
    KENMEN_AID,
    MY_NUMBER,
    TEXT_PIN,
    long_address_profile,
    make_profile,
)


def tx(card: Card, command: str | bytes) -> bytes:
    raw = bytes.fromhex(command) if isinstance(command, str) else command
    return card.process(raw)


def ok(card: Card, command: str | bytes) -> bytes:
    answer = tx(card, command)
    assert answer[-2:] == b"\x90\x00", f"{command} -> {answer[-2:].hex(' ')}"
    return answer[:-2]


def select(card: Card, aid: bytes, fid: int | None = None) -> None:
    ok(card, b"\x00\xa4\x04\x0c" + bytes((len(aid),)) + aid)
    if fid is not None:
        ok(card, b"\x00\xa4\x02\x0c\x02" + fid.to_bytes(2, "big"))


def read_binary(card: Card, offset: int, le: int) -> bytes:
    if le > 256:
        return ok(
            card, bytes((0, 0xB0, offset >> 8, offset & 0xFF, 0)) + (le % 65536).to_bytes(2, "big")
        )
    return ok(card, bytes((0, 0xB0, offset >> 8, offset & 0xFF, le % 256)))


def auth_der(creds) -> bytes:
    return creds.auth_cert.public_bytes(Encoding.DER)


# --- the three certificate read styles of card_apdu.md §3.3 ---------------------------------


def test_style_1_header_then_extended_le(card: Card, adult_credentials) -> None:
    select(card, JPKI_AID, 0x000A)
    head = read_binary(card, 0, 4)
    rest = read_binary(card, 4, int.from_bytes(head[2:4], "big"))
    assert head + rest == auth_der(adult_credentials)


def test_style_2_opensc_256_byte_chunks_with_exact_final_le(card: Card, adult_credentials) -> None:
    select(card, JPKI_AID, 0x000A)
    head = read_binary(card, 0, 4)
    size = (head[2] << 8 | head[3]) + 4
    chunks, offset = [], 0
    while offset < size:
        le = min(256, size - offset)
        chunk = read_binary(card, offset, le)
        assert len(chunk) == le
        chunks.append(chunk)
        offset += le
    assert b"".join(chunks) == auth_der(adult_credentials)
    assert len(chunks) == -(-size // 256)


def test_style_3_seven_byte_header(card: Card, adult_credentials) -> None:
    select(card, JPKI_AID, 0x000A)
    head = read_binary(card, 0, 7)
    assert head[0] == 0x30 and head[1] == 0x82
    total = 4 + int.from_bytes(head[2:4], "big")
    assert head + read_binary(card, 7, total - 7) == auth_der(adult_credentials)  # MYNA Rust
    assert read_binary(card, 0, total) == auth_der(adult_credentials)  # MYNA-GO / TRET


def test_le_longer_than_the_rest_returns_the_rest(card: Card) -> None:
    select(card, KENHOJO_AID)
    ok(card, "00 20 00 91 04 " + TEXT_PIN.encode().hex())
    select_ef = "00 A4 02 0C 02 00 01"
    ok(card, select_ef)
    assert read_binary(card, 10, 256) == MY_NUMBER.encode()[7:] + b"\xff\xff"
    assert read_binary(card, 10, 65536) == MY_NUMBER.encode()[7:] + b"\xff\xff"


@pytest.mark.parametrize(
    ("p1p2", "sw"), [("00 11", "6B 00"), ("00 12", "6B 00"), ("7F FF", "6B 00")]
)
def test_offset_at_or_past_the_end(card: Card, p1p2: str, sw: str) -> None:
    select(card, KENHOJO_AID)
    ok(card, "00 20 00 91 04 " + TEXT_PIN.encode().hex())
    ok(card, "00 A4 02 0C 02 00 01")
    assert tx(card, f"00 B0 {p1p2} 01") == bytes.fromhex(sw)


def test_offset_is_15_bits(card: Card, adult_credentials) -> None:
    select(card, JPKI_AID, 0x000A)
    der = auth_der(adult_credentials)
    # P1 bit 8 set means SFI, so offset 0x0100 must be written 01 00, and 81 00 is SFI 1.
    assert read_binary(card, 0x100, 16) == der[0x100:0x110]
    assert tx(card, "00 B0 81 00 10") == bytes.fromhex("69 82")  # SFI 1 = sign cert, locked


def test_sfi_read_makes_the_ef_current(card: Card, adult_credentials) -> None:
    select(card, JPKI_AID)
    head = ok(card, "00 B0 8A 00 04")
    assert head == auth_der(adult_credentials)[:4]
    assert read_binary(card, 4, 4) == auth_der(adult_credentials)[4:8]
    assert (
        ok(card, "00 B0 8B 00 04") == adult_credentials.auth_ca_cert.public_bytes(Encoding.DER)[:4]
    )
    assert read_binary(card, 0, 2) == b"\x30\x82"  # now 000B is current


@pytest.mark.parametrize(
    ("command", "sw"),
    [
        ("00 B0 A1 00 04", "6A 86"),  # bits 6-7 of an SFI P1 must be 0
        ("00 B0 80 00 04", "6A 86"),  # SFI 0 is not an EF
        ("00 B0 9F 00 04", "6A 82"),  # SFI 31: no such EF
        ("00 B0 98 00 04", "69 81"),  # SFI 0x18 is the PIN key, not a binary EF
        ("00 B0 00 00", "67 00"),  # READ BINARY without Le
        ("00 B0 00 00 01 00 04", "67 00"),  # with a data field
    ],
)
def test_read_binary_refusals(card: Card, command: str, sw: str) -> None:
    select(card, JPKI_AID)
    assert tx(card, command) == bytes.fromhex(sw)


def test_read_binary_without_current_ef(card: Card) -> None:
    assert tx(card, "00 B0 00 00 04") == bytes.fromhex("69 86")
    select(card, JPKI_AID)
    assert tx(card, "00 B0 00 00 04") == bytes.fromhex("69 86")
    assert tx(card, "00 B0 8A 00 04")[-2:] == b"\x90\x00"


# --- JPKI AP files --------------------------------------------------------------------------


def test_token_info_is_a_ck_token_info(card: Card) -> None:
    select(card, JPKI_AID, 0x0006)
    info = read_binary(card, 0, 256)
    assert len(info) == 160
    assert info[:32] == b"JPKIAPICCTOKEN2".ljust(32, b" ")
    assert info[:20].hex().upper() == "4A504B494150494343544F4B454E322020202020"
    flags, *_rest, max_pin, min_pin = struct.unpack(">7I", info[96:124])
    assert (max_pin, min_pin) == (16, 4) and flags & 0x4  # CKF_LOGIN_REQUIRED
    assert read_binary(card, 0, 0x14) == info[:0x14]  # TRET reads 0x14 bytes


def test_flags_both_certificates(card: Card) -> None:
    select(card, JPKI_AID, 0x0008)
    assert read_binary(card, 0, 256) == bytes.fromhex("8F 8F 00")


def test_ca_certificates_are_free(card: Card, adult_credentials) -> None:
    select(card, JPKI_AID, 0x000B)
    assert read_binary(card, 0, 4096) == adult_credentials.auth_ca_cert.public_bytes(Encoding.DER)
    select(card, JPKI_AID, 0x0002)
    assert read_binary(card, 0, 4096) == adult_credentials.sign_ca_cert.public_bytes(Encoding.DER)


# --- 券面事項入力補助AP ------------------------------------------------------------------------


def read_basic4(card: Card) -> bytes:
    select(card, KENHOJO_AID)
    ok(card, "00 20 00 91 04 " + TEXT_PIN.encode().hex())
    return ok(card, "00 B0 82 00 00 00 00")


def check_basic4(raw: bytes, profile) -> None:
    ((tag, value, _),) = list(iter_tlv(raw))
    assert tag == b"\xff\x20"
    items = list(iter_tlv(value))
    assert [t for t, _, _ in items] == [
        bytes.fromhex(t) for t in ("DF21", "DF22", "DF23", "DF24", "DF25")
    ]
    header = len(raw) - len(value) - (len(raw) - raw.rfind(items[-1][1]) - len(items[-1][1]))
    offsets = [int.from_bytes(items[0][1][i : i + 2], "big") for i in range(0, 8, 2)]
    assert offsets == [header + pos for _, _, pos in items[1:]]
    assert [raw[o : o + 2] for o in offsets] == [t for t, _, _ in items[1:]]
    h = profile.holder
    assert items[1][1].decode() == h.name and items[2][1].decode() == h.address
    assert items[3][1] == h.birthdate.strftime("%Y%m%d").encode() and items[4][1] == b"1"
    end = header + len(value)
    assert set(raw[end:]) <= {0xFF} and len(raw) % 256 == 0


def test_basic4_short_form(card: Card) -> None:
    raw = read_basic4(card)
    assert raw[2] < 0x80
    check_basic4(raw, make_profile())


def test_basic4_long_form(adult_credentials) -> None:
    profile = long_address_profile()
    card = Card(profile, adult_credentials)
    raw = read_basic4(card)
    length = len(profile.holder.address.encode())
    assert length >= 128
    assert raw[:3] == b"\xff\x20\x82" or raw[:3] == b"\xff\x20\x81"
    assert bytes.fromhex("DF 23 81") + bytes((length,)) in raw  # inner long form too
    check_basic4(raw, profile)
    # the one-length-byte trick of TEX now reads the 81/82 marker, not a length, and a client
    # that reads 3 + that many bytes gets a cut record (its last item, 性別, is missing)
    ok(card, "00 A4 02 0C 02 00 02")
    marker = read_binary(card, 2, 1)[0]
    assert marker & 0x80
    tricked = read_binary(card, 0, 3 + marker)
    assert len(tricked) < len(raw.rstrip(b"\xff")) and b"\xdf\x25\x01" not in tricked


def test_kenhojo_integrity_record(card: Card) -> None:
    raw_basic4 = read_basic4(card)
    my_number = ok(card, "00 B0 81 00 00")
    record = ok(card, "00 B0 83 00 00 00 00")
    assert record[:5] == bytes.fromhex("FF 30 82 01 4B") and len(record) == 5 + 0x14B
    ((_, value, _),) = list(iter_tlv(record))
    (t31, h31, _), (t32, h32, _), (t33, sig, _) = iter_tlv(value)
    assert (t31, t32, t33) == (b"\xdf\x31", b"\xdf\x32", b"\xdf\x33")
    assert h31 == hashlib.sha256(my_number).digest()
    ((_, v4, _),) = list(iter_tlv(raw_basic4))
    table = next(iter_tlv(v4))
    after_table = v4[len(table[0]) + 1 + len(table[1]) :]
    assert h32 == hashlib.sha256(after_table).digest()
    issuer = record_issuer("6000033", "onshi-kenhojo-1")
    issuer.key.public_key().verify(sig, value[: 2 * 35], padding.PKCS1v15(), hashes.SHA256())


def cv_public_key(cv: bytes) -> rsa.RSAPublicKey:
    ((tag, value, _),) = list(iter_tlv(cv))
    (t4e, body, _), (t37, _sig, _) = iter_tlv(value)
    assert (tag, t4e, t37) == (b"\x7f\x21", b"\x5f\x4e", b"\x5f\x37")
    (t90, e, _), (t91, n, _) = iter_tlv(body[32:])
    assert (t90, t91, len(n)) == (b"\x90", b"\x91", 256)
    return rsa.RSAPublicNumbers(int.from_bytes(e, "big"), int.from_bytes(n, "big")).public_key()


@pytest.mark.parametrize(("aid", "ca", "key_id"), [
    (KENHOJO_AID, "6000033", "onshi-kenhojo-1"),
    (KENMEN_AID, "6000023", "onshi-kenmen-1"),
])  # fmt: skip
def test_cv_certificate_is_free_and_signed_by_the_ca(card: Card, aid, ca, key_id) -> None:
    select(card, aid)
    cv = ok(card, "00 B0 84 00 00 00 00")
    assert cv[:5] == bytes.fromhex("7F 21 82 02 33") and len(cv) == 5 + 0x233
    issuer = record_issuer(ca, key_id)
    assert cv_public_key(cv).public_numbers() == issuer.key.public_key().public_numbers()
    ((_, value, _),) = list(iter_tlv(cv))
    (_, body, _), (_, sig, _) = iter_tlv(value)
    issuer.ca_key.public_key().verify(sig, body, padding.PKCS1v15(), hashes.SHA256())


def test_kenhojo_basic_info(card: Card) -> None:
    select(card, KENHOJO_AID)
    ((tag, value, _),) = list(iter_tlv(ok(card, "00 B0 85 00 00")))
    items = {t.hex().upper(): v for t, v, _ in iter_tlv(value)}
    assert tag == b"\xff\x40" and items["DF41"] == bytes.fromhex("01030E01")
    assert len(items["DF42"]) == 16 and len(items["DF43"]) == 128


# --- 券面AP ---------------------------------------------------------------------------------


def read_face_record(card: Card) -> dict[str, bytes]:
    select(card, KENMEN_AID)
    ok(card, "00 20 00 93 0C " + MY_NUMBER.encode().hex())
    raw = ok(card, "00 B0 82 00 00 00 00")
    ((tag, value, _),) = list(iter_tlv(raw))
    assert tag == b"\xff\x20"
    items = list(iter_tlv(value))
    header = raw.index(value)
    offsets = [int.from_bytes(items[0][1][i : i + 2], "big") for i in range(0, len(items[0][1]), 2)]
    assert offsets == [header + pos for _, _, pos in items[1:]]
    return {t.hex().upper(): v for t, v, _ in items}


def test_face_photo_is_greyscale_jpeg2000(card: Card) -> None:
    items = read_face_record(card)
    assert list(items) == [f"DF2{c}" for c in "123456789A"]
    photo = Image.open(io.BytesIO(items["DF27"]))
    assert photo.format == "JPEG2000" and photo.mode == "L"
    photo.load()
    assert 1000 < len(items["DF27"]) < 16000
    assert photo.getextrema()[1] - photo.getextrema()[0] > 100  # a drawing, not a flat grey
    for tag in ("DF25", "DF26", "DF2A"):
        image = Image.open(io.BytesIO(items[tag]))
        assert image.format == "PNG" and image.mode == "1"
    assert items["DF22"] == b"19800217" and items["DF23"] == b"1"
    assert items["DF29"] == b"20340217"


def test_face_record_signature(card: Card) -> None:
    items = read_face_record(card)
    signed = b"".join(
        bytes.fromhex(tag) + _len(items[tag]) + items[tag]
        for tag in ("DF22", "DF23", "DF24", "DF25", "DF26", "DF27")
    )
    issuer = record_issuer("6000023", "onshi-kenmen-1")
    issuer.key.public_key().verify(items["DF28"], signed, padding.PKCS1v15(), hashes.SHA256())


def _len(value: bytes) -> bytes:
    from onshi.tlv import ber_length

    return ber_length(len(value))


def test_chunked_read_of_the_face_record_past_4_kb(card: Card) -> None:
    """OpenSC-style 256-byte chunks with the exact final Le across the several-KB face record:
    offsets above 0x0FFF need the high bits of P1, and 7F FF is past the end, not wrapped."""
    select(card, KENMEN_AID)
    ok(card, "00 20 00 93 0C " + MY_NUMBER.encode().hex())
    ok(card, "00 A4 02 0C 02 00 02")
    content = read_binary(card, 0, 65536)
    assert len(content) > 0x1000 and content[:2] == b"\xff\x20"
    size = len(content)
    chunks = [read_binary(card, off, min(256, size - off)) for off in range(0, size, 256)]
    assert b"".join(chunks) == content
    assert tx(card, "00 B0 7F FF 01") == bytes.fromhex("6B 00")


def test_face_photo_is_deterministic_per_seed(adult_credentials) -> None:
    a = read_face_record(Card(make_profile(), adult_credentials))["DF27"]
    b = read_face_record(Card(make_profile(), adult_credentials))["DF27"]
    c = read_face_record(Card(make_profile(seed="another"), adult_credentials))["DF27"]
    assert a == b and a != c


def test_kenmen_basic_info_and_number_image(card: Card) -> None:
    select(card, KENMEN_AID)
    ((tag, value, _),) = list(iter_tlv(ok(card, "00 B0 83 00 00 00 00")))
    items = {t.hex().upper(): v for t, v, _ in iter_tlv(value)}
    assert tag == b"\xff\x30" and items["DF31"] == bytes.fromhex("06030E01")
    assert items["DF34"].isdigit() and len(items["DF34"]) == 5 and len(items["DF35"]) == 272
    assert tx(card, "00 B0 85 00 00") == bytes.fromhex("69 82")
    ok(card, "00 20 00 93 0C " + MY_NUMBER.encode().hex())
    ((tag, value, _),) = list(iter_tlv(ok(card, "00 B0 85 00 00 00 00")))
    (t41, png, _), (t42, _key, key_at), (t43, sig, _) = iter_tlv(value)
    assert (tag, t41, t42, t43) == (b"\xff\x40", b"\xdf\x41", b"\xdf\x42", b"\xdf\x43")
    assert Image.open(io.BytesIO(png)).format == "PNG"
    issuer = record_issuer("6000023", "onshi-kenmen-1")
    signed = value[:key_at]  # the DF41 object
    issuer.key.public_key().verify(sig, signed, padding.PKCS1v15(), hashes.SHA256())
