"""The record layouts of the 券面 APs: offset tables, ``FF`` filler, the card's RSA public-key
object and the card-verifiable certificate (``7F21``).

The BER-TLV encoding itself (definite lengths, tags, parsing) is :mod:`onshi.tlv`, shared with
the reader that parses these records.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from onshi.tlv import ber_length, tlv

__all__ = [
    "RecordIssuer",
    "cv_certificate",
    "offset_table",
    "pad_ff",
    "record_issuer",
    "rsa_public_object",
]


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
