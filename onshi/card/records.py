"""BER-TLV data objects of the 券面 APs: definite lengths, the card's RSA public-key object and
the card-verifiable certificate (``7F21``).

The card uses private two-byte tags (``FF20``, ``DF21`` ...) with BER definite lengths
(X.690 §8.1.3): one byte below 128, else ``81 xx`` / ``82 xx xx``. Clients that assume a
single length byte break on long values, so every length here is computed, never assumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = [
    "RecordIssuer",
    "TLVError",
    "ber_length",
    "cv_certificate",
    "iter_tlv",
    "offset_table",
    "pad_ff",
    "record_issuer",
    "rsa_public_object",
    "tlv",
]


class TLVError(ValueError):
    """Bytes that are not a well-formed BER-TLV sequence (used by tests and decoders)."""


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


def _read_tag(buf: bytes, pos: int) -> int:
    """End of the tag starting at ``pos`` (X.690 §8.1.2.4: low 5 bits 11111 = more bytes)."""
    if pos >= len(buf):
        raise TLVError(f"tag expected at offset {pos}, end of data")
    end = pos + 1
    if buf[pos] & 0x1F == 0x1F:
        while True:
            if end >= len(buf):
                raise TLVError(f"tag at offset {pos} runs past the end")
            end += 1
            if not buf[end - 1] & 0x80:
                break
    return end


def iter_tlv(buf: bytes, start: int = 0, end: int | None = None):
    """Yield ``(tag, value, object_offset)`` for consecutive data objects in ``buf[start:end]``.

    Stops at ``end`` or at the ``FF`` filler that pads card files (a tag byte ``FF`` followed
    by ``FF`` is filler, not a tag).
    """
    end = len(buf) if end is None else end
    pos = start
    while pos < end:
        if buf[pos] == 0xFF and (pos + 1 >= end or buf[pos + 1] == 0xFF):
            return
        tag_end = _read_tag(buf, pos)
        if tag_end >= end:
            raise TLVError(f"length expected at offset {tag_end}")
        first = buf[tag_end]
        if first < 0x80:
            length, value_start = first, tag_end + 1
        else:
            count = first & 0x7F
            if count == 0 or count > 3 or tag_end + 1 + count > end:
                raise TLVError(f"bad length field {first:02X} at offset {tag_end}")
            length = int.from_bytes(buf[tag_end + 1 : tag_end + 1 + count], "big")
            value_start = tag_end + 1 + count
        if value_start + length > end:
            raise TLVError(f"value at offset {value_start} (length {length}) runs past the end")
        yield buf[pos:tag_end], buf[value_start : value_start + length], pos
        pos = value_start + length


def offset_table(tag: bytes, outer_tag: bytes, items: list[bytes]) -> bytes:
    """The ``outer_tag`` object holding an offset table then ``items``.

    The table (tag ``DF21``) lists, as big-endian u16, the offset of each item's tag from the
    start of the file (checked against SOL's test-card bytes ``FF 20 65 DF 21 08 00 0E ...``).
    """
    table_len = 2 * len(items)
    inner_len = len(tag) + len(ber_length(table_len)) + table_len + sum(map(len, items))
    header_len = len(outer_tag) + len(ber_length(inner_len))
    offsets = bytearray()
    pos = header_len + len(tag) + len(ber_length(table_len)) + table_len
    for item in items:
        offsets += pos.to_bytes(2, "big")
        pos += len(item)
    return tlv(outer_tag, tlv(tag, bytes(offsets)) + b"".join(items))


def pad_ff(data: bytes, block: int = 256) -> bytes:
    """Fill with ``FF`` up to a multiple of ``block``: card files are fixed-size, the object
    inside ends where its BER length says and the rest is ``FF`` filler (the file sizes of real
    cards are not public; the 256-byte granularity is ours [I])."""
    return data + b"\xff" * (-len(data) % block)


def rsa_public_object(key: rsa.RSAPublicKey) -> bytes:
    """The card's public-key encoding: ``90`` public exponent, ``91`` modulus (SOL data.rs)."""
    nums = key.public_numbers()
    e = nums.e.to_bytes((nums.e.bit_length() + 7) // 8, "big")
    n = nums.n.to_bytes((key.key_size + 7) // 8, "big")
    return tlv(b"\x90", e) + tlv(b"\x91", n)


def _key_id(label: str) -> bytes:
    """A 16-byte key identifier; the real format is not public, ours is ASCII space padded [I]."""
    return label.encode("ascii")[:16].ljust(16, b" ")


@dataclass(frozen=True, slots=True)
class RecordIssuer:
    """The test keys that sign a 券面 AP's records and certify the signer (``7F21`` in EF 0004).

    Real issuer and CA keys are not public; these come from ``rsa_key_from_seed`` and are
    marked as test keys [I]. ``ca_id``/``key_id`` mimic the test-card CA key IDs of SOL.
    """

    key: rsa.RSAPrivateKey
    ca_key: rsa.RSAPrivateKey
    ca_id: str
    key_id: str

    def sign(self, data: bytes) -> bytes:
        """PKCS#1 v1.5 with SHA-256, as the 券面 AP records are signed (card_apdu.md §5)."""
        return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    @property
    def key_id_bytes(self) -> bytes:
        return _key_id(self.key_id)


@cache
def record_issuer(ca_id: str, key_id: str) -> RecordIssuer:
    """The test issuer of one 券面 AP: two keys from ``onshi.pki.rsa_key_from_seed`` (deterministic,
    cached on disk), imported here so that building a card does not need them until a signed
    record is read."""
    from onshi.pki import rsa_key_from_seed

    return RecordIssuer(
        key=rsa_key_from_seed(f"onshi-test-issuer/{key_id}"),
        ca_key=rsa_key_from_seed(f"onshi-test-ca/{ca_id}"),
        ca_id=ca_id,
        key_id=key_id,
    )


def cv_certificate(issuer: RecordIssuer) -> bytes:
    """``7F21`` { ``5F4E`` body (CA key id, key id, 90/91 key), ``5F37`` signature by the CA }.

    Sizes match the files read by MYNA-GO/SOL: 0x233 bytes after the 5-byte header. The CA
    signs the ``5F4E`` value with SHA-256 PKCS#1 v1.5 (the signed range is our inference [I]).
    """
    body = _key_id(issuer.ca_id) + issuer.key_id_bytes + rsa_public_object(issuer.key.public_key())
    signature = issuer.ca_key.sign(body, padding.PKCS1v15(), hashes.SHA256())
    return tlv(b"\x7f\x21", tlv(b"\x5f\x4e", body) + tlv(b"\x5f\x37", signature))
