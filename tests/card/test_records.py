"""BER-TLV helpers of the 券面 AP records: lengths, offset tables, the decoder's refusals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onshi.card.filesystem import SecretFormat
from onshi.card.records import offset_table, pad_ff
from onshi.tlv import TLVError, ber_length, iter_tlv, tlv


@pytest.mark.parametrize(
    ("n", "encoded"),
    [(0, "00"), (0x7F, "7F"), (0x80, "81 80"), (0x81, "81 81"), (0xFF, "81 FF"),
     (0x100, "82 01 00"), (0x14B, "82 01 4B"), (0xFFFF, "82 FF FF"), (0x10000, "83 01 00 00")],
)  # fmt: skip
def test_ber_length(n: int, encoded: str) -> None:
    assert ber_length(n) == bytes.fromhex(encoded)


def test_negative_length() -> None:
    with pytest.raises(ValueError):
        ber_length(-1)


def test_sol_test_card_offsets() -> None:
    """SOL's test card: FF 20 65 DF 21 08 00 0E 00 20 00 59 00 64 DF 22 0F ..."""
    name, address = b"x" * 15, b"y" * 54
    items = [tlv(b"\xdf\x22", name), tlv(b"\xdf\x23", address)]
    items += [tlv(b"\xdf\x24", b"19800217"), tlv(b"\xdf\x25", b"1")]
    record = offset_table(b"\xdf\x21", b"\xff\x20", items)
    assert record[:17].hex(" ").upper() == "FF 20 65 DF 21 08 00 0E 00 20 00 59 00 64 DF 22 0F"
    assert record.endswith(bytes.fromhex("DF 24 08 31 39 38 30 30 32 31 37 DF 25 01 31"))


@given(st.lists(st.binary(max_size=400), min_size=1, max_size=5))
def test_offset_table_points_at_each_item(values: list[bytes]) -> None:
    items = [tlv(bytes((0xDF, 0x22 + i)), v) for i, v in enumerate(values)]
    record = pad_ff(offset_table(b"\xdf\x21", b"\xff\x20", items))
    assert len(record) % 256 == 0
    ((outer, inner, _),) = list(iter_tlv(record))
    table, *decoded = list(iter_tlv(inner))
    header = record.index(inner)
    offsets = [int.from_bytes(table[1][i : i + 2], "big") for i in range(0, len(table[1]), 2)]
    assert offsets == [header + pos for _, _, pos in decoded]
    assert [v for _, v, _ in decoded] == values and outer == b"\xff\x20"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("DF", "runs past the end"),
        ("DF 22", "length expected"),
        ("DF 22 05 01", "runs past the end"),
        ("DF 22 80", "bad length field"),
        ("DF 22 84 00 00 00 01 00", "bad length field"),
        ("DF 22 82 01", "bad length field"),
    ],
)
def test_iter_tlv_refuses_broken_objects(raw: str, message: str) -> None:
    with pytest.raises(TLVError, match=message):
        list(iter_tlv(bytes.fromhex(raw)))


def test_iter_tlv_stops_at_filler() -> None:
    assert list(iter_tlv(bytes.fromhex("DF 22 01 41 FF FF FF"))) == [(b"\xdf\x22", b"A", 0)]
    assert list(iter_tlv(bytes.fromhex("FF"))) == []


@pytest.mark.parametrize(
    ("fmt", "good", "bad"),
    [
        (SecretFormat.PIN4, ["0000", "9876"], ["123", "12345", "12a4", "１２３４"]),
        (SecretFormat.PASSWORD, ["ABC123", "A1" * 8], ["ABCDEF", "123456", "abc123", "AB12"]),
        (SecretFormat.DIGITS12, ["123456789018"], ["12345678901", "12345678901X"]),
        (SecretFormat.DIGITS14, ["55021720344321"], ["5502172034432", "5502172034432A"]),
    ],
)
def test_secret_formats(fmt: SecretFormat, good: list[str], bad: list[str]) -> None:
    assert all(fmt.accepts(v.encode()) for v in good)
    assert not any(fmt.accepts(v.encode()) for v in bad)
