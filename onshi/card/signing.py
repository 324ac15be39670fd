"""The JPKI COMPUTE DIGITAL SIGNATURE primitive: PKCS#1 v1.5 type-1 padding of the bytes the
host sends, then raw RSA (card_apdu.md §3.2).

The card pads whatever it gets; hosts send a DigestInfo. For a DigestInfo of a SHA-2/SHA-1
hash ``key.sign(digest, PKCS1v15(), Prehashed(alg))`` builds the very same padded block inside
OpenSSL, which is much faster, so that path is taken whenever the input is one. Both paths are
deterministic, as a real card's are (jpki/myna's FIDO experiment depends on it).
"""

from __future__ import annotations

from Crypto.Math.Numbers import Integer
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from onshi.cardmap import SHA256_DIGEST_INFO_PREFIX

__all__ = ["MAX_INPUT", "DigestInfoSigner"]

MAX_INPUT = 245
"""k - 11 for RSA-2048: the longest input PKCS#1 v1.5 type-1 padding can hold."""

_DIGEST_INFO: tuple[tuple[bytes, hashes.HashAlgorithm], ...] = (
    (bytes.fromhex("3021300906052B0E03021A05000414"), hashes.SHA1()),
    (bytes.fromhex("302D300D06096086480165030402040500041C"), hashes.SHA224()),
    (SHA256_DIGEST_INFO_PREFIX, hashes.SHA256()),
    (bytes.fromhex("3041300D060960864801650304020205000430"), hashes.SHA384()),
    (bytes.fromhex("3051300D060960864801650304020305000440"), hashes.SHA512()),
)


class DigestInfoSigner:
    """Signs card input with one RSA private key, caching its CRT numbers for the slow path."""

    __slots__ = ("_numbers", "key")

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self.key = key
        self._numbers: rsa.RSAPrivateNumbers | None = None

    @property
    def size(self) -> int:
        """Signature length in bytes (256 for RSA-2048)."""
        return (self.key.key_size + 7) // 8

    def sign(self, data: bytes) -> bytes:
        """RSA over ``00 01 FF.. 00 || data``; ``data`` is 1..k-11 bytes (ValueError otherwise)."""
        k = self.size
        if not 1 <= len(data) <= k - 11:
            raise ValueError(f"{len(data)} bytes do not fit PKCS#1 v1.5 padding (1..{k - 11})")
        for prefix, alg in _DIGEST_INFO:
            if len(data) == len(prefix) + alg.digest_size and data.startswith(prefix):
                return self.key.sign(data[len(prefix) :], padding.PKCS1v15(), utils.Prehashed(alg))
        block = b"\x00\x01" + b"\xff" * (k - 3 - len(data)) + b"\x00" + data
        return self._raw(int.from_bytes(block, "big")).to_bytes(k, "big")

    def _raw(self, m: int) -> int:
        """m^d mod n through the Chinese remainder theorem (RFC 8017 §5.1.2, 2.b).

        The two modular exponentiations go through pycryptodome's ``Integer`` (native
        Montgomery code, ~5x faster than Python's ``pow`` on 1024-bit operands)."""
        if self._numbers is None:
            self._numbers = self.key.private_numbers()
        nums = self._numbers
        s1 = int(pow(Integer(m % nums.p), Integer(nums.dmp1), Integer(nums.p)))
        s2 = int(pow(Integer(m % nums.q), Integer(nums.dmq1), Integer(nums.q)))
        h = (nums.iqmp * (s1 - s2)) % nums.p
        return s2 + nums.q * h
