"""BER-TLV data objects (X.690 §8.1) as the My Number card's 券面 APs store them.

The card uses private tags (``FF20``, ``DF21`` ...) with definite lengths: one byte below 128,
else ``81 xx`` / ``82 xx xx``. Clients that assume a single length byte break on long values
(a long address), so both the card that writes these objects and the reader that parses them
use this one module: every length is computed, never assumed.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["TLVError", "ber_length", "iter_tlv", "object_size", "tlv"]

_MAX_LENGTH_BYTES = 3


class TLVError(ValueError):
    """Bytes that are not a well-formed BER-TLV sequence; the message names the offset."""


def ber_length(n: int) -> bytes:
    """BER definite length (X.690 §8.1.3.4/5): short form below 128, else 81/82/83 + bytes."""
    if n < 0:
        raise ValueError(f"negative length {n}")
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def tlv(tag: bytes, value: bytes) -> bytes:
    """One data object: tag bytes as given, BER length, value."""
    return tag + ber_length(len(value)) + value


def _tag_end(buf: bytes, pos: int, end: int) -> int:
    """End of the tag starting at ``pos`` (X.690 §8.1.2.4: low 5 bits 11111 = more bytes)."""
    if pos >= end:
        raise TLVError(f"tag expected at offset {pos}, end of data")
    stop = pos + 1
    if buf[pos] & 0x1F == 0x1F:
        while True:
            if stop >= end:
                raise TLVError(f"tag at offset {pos} runs past the end")
            stop += 1
            if not buf[stop - 1] & 0x80:
                break
    return stop


def _length(buf: bytes, at: int, end: int) -> tuple[int, int]:
    """(length, offset of the value) of the BER length field at ``buf[at]``."""
    if at >= end:
        raise TLVError(f"length expected at offset {at}")
    first = buf[at]
    if first < 0x80:
        return first, at + 1
    count = first & 0x7F
    if count == 0 or count > _MAX_LENGTH_BYTES or at + 1 + count > end:
        raise TLVError(f"bad length field {first:02X} at offset {at}")
    return int.from_bytes(buf[at + 1 : at + 1 + count], "big"), at + 1 + count


def object_size(head: bytes) -> int:
    """Total size (tag + length + value) of the object whose first bytes are ``head``.

    Lets a reader learn from a short READ BINARY how many bytes to read next.
    """
    length, value_start = _length(head, _tag_end(head, 0, len(head)), len(head))
    return value_start + length


def iter_tlv(
    buf: bytes, start: int = 0, end: int | None = None
) -> Iterator[tuple[bytes, bytes, int]]:
    """Yield ``(tag, value, object_offset)`` for consecutive data objects in ``buf[start:end]``.

    Stops at ``end`` or at the ``FF`` filler that pads card files (a tag byte ``FF`` followed
    by ``FF`` is filler, not a tag).
    """
    end = len(buf) if end is None else end
    pos = start
    while pos < end:
        if buf[pos] == 0xFF and (pos + 1 >= end or buf[pos + 1] == 0xFF):
            return
        tag_end = _tag_end(buf, pos, end)
        length, value_start = _length(buf, tag_end, end)
        if value_start + length > end:
            raise TLVError(f"value at offset {value_start} (length {length}) runs past the end")
        yield buf[pos:tag_end], buf[value_start : value_start + length], pos
        pos = value_start + length
