"""The issuing side of the test PKI: the two CAs, card credentials and CRLs, all from seeds.

Certificates are cheap (one RSA signature) and only cached in memory; keys come from
:mod:`onshi.pki.keys`. Checking certificates is :mod:`onshi.pki.verify`'s job;
:meth:`TestPKI.check_certificate` only hands the right CA to it.

Time convention: a certificate date ``D`` covers the whole Japanese calendar day, i.e.
``notBefore = D 00:00:00 JST`` and ``notAfter = D 23:59:59 JST`` (RFC 5280 validity is
inclusive). [I: JPKI's exact clock time is not in our sources]
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from onshi.dates import as_datetime, day_end, day_start
from onshi.pki.keys import clear_key_cache, rsa_key_from_seed
from onshi.pki.verify import CertCheck, CertificateChecker, TrustAnchor
from onshi.tlv import tlv

__all__ = [
    "SAN_OID_ADDRESS",
    "SAN_OID_BIRTH",
    "SAN_OID_NAME",
    "SAN_OID_SEX",
    "CAMaterial",
    "CardCredentials",
    "CertDates",
    "HolderAttributes",
    "Kind",
    "RevokedEntry",
    "TestPKI",
    "card_identifier",
    "card_serial",
    "clear_memory_caches",
]

Kind = Literal["auth", "sign"]
"""Which JPKI hierarchy: 利用者証明用 (user authentication) or 署名用 (digital signature)."""

SAN_OID_NAME = x509.ObjectIdentifier("1.2.392.200149.8.5.5.1")
SAN_OID_SEX = x509.ObjectIdentifier("1.2.392.200149.8.5.5.3")
SAN_OID_BIRTH = x509.ObjectIdentifier("1.2.392.200149.8.5.5.4")
SAN_OID_ADDRESS = x509.ObjectIdentifier("1.2.392.200149.8.5.5.5")

_CA_NOT_BEFORE = dt.date(2023, 7, 16)
_CA_NOT_AFTER = dt.date(2033, 7, 15)
"""Validity of the 2023 JPKI CA generation (card_apdu.md §5), reused for the test CAs."""

_CA_OU = {
    "auth": "JPKI-TEST for user authentication",
    "sign": "JPKI-TEST for digital signature",
}
_TEST_MARK = "onshi test authority (NOT FOR PRODUCTION USE)"


class CertDates(Protocol):
    """What the PKI needs from a certificate spec (``onshi.profiles.CertSpec`` fits)."""

    @property
    def present(self) -> bool: ...
    @property
    def not_before(self) -> dt.date: ...
    @property
    def not_after(self) -> dt.date: ...


class HolderAttributes(Protocol):
    """The 基本4情報 the signature certificate carries (``onshi.profiles.Holder`` fits)."""

    @property
    def name(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def birthdate(self) -> dt.date: ...
    @property
    def sex(self) -> str: ...


# --- derived identifiers --------------------------------------------------------------------


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("\0".join(("onshi-pki", *parts)).encode()).digest()


def _positive_serial(*parts: str) -> int:
    """Positive and below 2**159 (RFC 5280's 20-octet limit with a clear sign bit)."""
    return (int.from_bytes(_digest("serial", *parts)[:20], "big") >> 1) or 1


def card_serial(seed: str, kind: Kind) -> int:
    """Serial number of a card's ``kind`` certificate: cheap (one SHA-256, no key, no signing).

    Positive and below 2**159; distinct seeds collide with probability ~2**-159.
    ``TestPKI.card_credentials`` uses exactly this, so a backend can store serials only and
    still recognise the certificates cards present.
    """
    if kind not in ("auth", "sign"):
        raise ValueError(f"kind must be 'auth' or 'sign', got {kind!r}")
    return _positive_serial(kind, seed)


_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def card_identifier(seed: str) -> str:
    """The 20-character CN of a card's certificates (no personal data, like JPKI's).

    [I] the real identifier's alphabet is not in our sources; this one is base32 upper case.
    """
    value = int.from_bytes(_digest("cn", seed)[:13], "big")
    return "".join(_B32[(value >> (5 * i)) & 31] for i in range(20))


def _der_utf8string(text: str) -> bytes:
    """DER UTF8String (tag 0x0C) with a short or long-form length."""
    return tlv(b"\x0c", text.encode("utf-8"))


# --- data -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CAMaterial:
    """A test CA: its self-signed certificate and its private key."""

    cert: x509.Certificate
    key: rsa.RSAPrivateKey


@dataclass(frozen=True, slots=True)
class CardCredentials:
    """Everything a card's JPKI AP holds: two key pairs, their certificates and CA certs."""

    auth_key: rsa.RSAPrivateKey
    auth_cert: x509.Certificate
    auth_ca_cert: x509.Certificate
    sign_key: rsa.RSAPrivateKey | None
    """None when the card has no signature certificate (under 15, face-auth card, ...)."""
    sign_cert: x509.Certificate | None
    sign_ca_cert: x509.Certificate


@dataclass(frozen=True, slots=True)
class RevokedEntry:
    """One CRL entry. ``kind`` limits it to one CA's CRL; None puts it on any CRL."""

    serial: int
    revoked_on: dt.date | dt.datetime
    reason: str | None = None
    """An RFC 5280 CRLReason name as in ``x509.ReasonFlags`` (e.g. ``key_compromise``)."""
    kind: Kind | None = None


# --- the CA hierarchy -----------------------------------------------------------------------


def _ca_name(kind: Kind) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "JPKI-TEST"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, _CA_OU[kind]),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, _TEST_MARK),
        ]
    )


@lru_cache(maxsize=32)
def _ca_material(seed: str, kind: Kind, cache_dir: Path | None) -> CAMaterial:
    key = rsa_key_from_seed(f"{seed}/ca/{kind}", cache_dir=cache_dir)
    name = _ca_name(kind)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(_positive_serial("ca", kind, seed))
        .not_valid_before(day_start(_CA_NOT_BEFORE))
        .not_valid_after(day_end(_CA_NOT_AFTER))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage("key_cert_sign", "crl_sign"), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CAMaterial(cert=cert, key=key)


def clear_memory_caches() -> None:
    """Forget in-process keys and CA objects (tests use it to prove the disk cache works)."""
    clear_key_cache()
    _ca_material.cache_clear()


_KEY_USAGE_FLAGS = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)


def _key_usage(*granted: str) -> x509.KeyUsage:
    """A KeyUsage with exactly the named bits set."""
    return x509.KeyUsage(**{flag: flag in granted for flag in _KEY_USAGE_FLAGS})


@dataclass(frozen=True, slots=True)
class _Issuer:
    """A CA plus what issuing and checking need precomputed (no parsing on the request path)."""

    material: CAMaterial
    aki: x509.AuthorityKeyIdentifier
    checker: CertificateChecker


_CRED_LRU_SIZE = 1024


class TestPKI:
    """The test CA pair plus the minting of card certificates and CRLs, all from seeds.

    ``cache_dir`` is the cache root for keys (default :func:`onshi.pki.keys.cache_root`).
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, seed: str = "onshi-test-pki", cache_dir: Path | None = None) -> None:
        self.seed = seed
        self.cache_dir = cache_dir
        self._issuers: dict[Kind, _Issuer] = {}
        self._creds: OrderedDict[tuple[object, ...], CardCredentials] = OrderedDict()
        self._lock = threading.Lock()

    def _issuer(self, kind: Kind) -> _Issuer:
        issuer = self._issuers.get(kind)
        if issuer is None:
            material = _ca_material(self.seed, kind, self.cache_dir)
            anchor = TrustAnchor.from_certificate(material.cert)
            issuer = _Issuer(
                material=material,
                aki=x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                    x509.SubjectKeyIdentifier(anchor.ski)
                ),
                checker=CertificateChecker(anchor, f"{kind} CA"),
            )
            self._issuers[kind] = issuer
        return issuer

    @property
    def auth_ca(self) -> CAMaterial:
        """利用者証明用 test CA."""
        return self._issuer("auth").material

    @property
    def sign_ca(self) -> CAMaterial:
        """署名用 test CA."""
        return self._issuer("sign").material

    def ca(self, kind: Kind) -> CAMaterial:
        return self._issuer(kind).material

    # --- card certificates ------------------------------------------------------------------

    def card_key(self, seed: str, kind: Kind, *, key_pool: int | None = None) -> rsa.RSAPrivateKey:
        """The card's own key for ``kind``, or one drawn from a pool of ``key_pool`` keys.

        Pooled draws for ``auth`` and ``sign`` are independent, so with a small pool one card
        may hold the same key twice; certificates stay unique (serial and subject).
        """
        if key_pool is None:
            return rsa_key_from_seed(f"card/{seed}/{kind}", cache_dir=self.cache_dir)
        if key_pool < 1:
            raise ValueError(f"key_pool must be >= 1, got {key_pool}")
        index = int.from_bytes(_digest("pool", kind, seed)[:8], "big") % key_pool
        return rsa_key_from_seed(f"{self.seed}/pool/{index}", cache_dir=self.cache_dir)

    def card_credentials(
        self,
        *,
        seed: str,
        auth: CertDates,
        sign: CertDates,
        holder: HolderAttributes,
        key_pool: int | None = None,
    ) -> CardCredentials:
        """Keys and certificates for one card; deterministic from ``seed`` and cached.

        The auth key and certificate are always minted (``auth.present`` is ignored: a token
        without one, the old 住基カード, simply does not expose it); the signature key and
        certificate exist only if ``sign.present``. Serials are :func:`card_serial`.
        """
        cache_key = (
            seed,
            key_pool,
            auth.not_before,
            auth.not_after,
            sign.present,
            sign.not_before,
            sign.not_after,
            holder.name,
            holder.address,
            holder.birthdate,
            str(holder.sex),
        )
        with self._lock:
            cached = self._creds.get(cache_key)
            if cached is not None:
                self._creds.move_to_end(cache_key)
                return cached
        auth_issuer = self._issuer("auth")
        sign_issuer = self._issuer("sign")
        auth_key = self.card_key(seed, "auth", key_pool=key_pool)
        auth_cert = self._mint(
            auth_issuer, seed, "auth", auth_key, auth.not_before, auth.not_after, None
        )
        sign_key: rsa.RSAPrivateKey | None = None
        sign_cert: x509.Certificate | None = None
        if sign.present:
            sign_key = self.card_key(seed, "sign", key_pool=key_pool)
            sign_cert = self._mint(
                sign_issuer, seed, "sign", sign_key, sign.not_before, sign.not_after, holder
            )
        creds = CardCredentials(
            auth_key=auth_key,
            auth_cert=auth_cert,
            auth_ca_cert=auth_issuer.material.cert,
            sign_key=sign_key,
            sign_cert=sign_cert,
            sign_ca_cert=sign_issuer.material.cert,
        )
        with self._lock:
            self._creds[cache_key] = creds
            while len(self._creds) > _CRED_LRU_SIZE:
                self._creds.popitem(last=False)
        return creds

    def _mint(
        self,
        issuer: _Issuer,
        seed: str,
        kind: Kind,
        key: rsa.RSAPrivateKey,
        not_before: dt.date,
        not_after: dt.date,
        holder: HolderAttributes | None,
    ) -> x509.Certificate:
        public = key.public_key()
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
                x509.NameAttribute(NameOID.COMMON_NAME, card_identifier(seed)),
            ]
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer.material.cert.subject)
            .public_key(public)
            .serial_number(card_serial(seed, kind))
            .not_valid_before(day_start(not_before))
            .not_valid_after(day_end(not_after))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                _key_usage("digital_signature", "content_commitment")
                if kind == "sign"
                else _key_usage("digital_signature"),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(issuer.aki, critical=False)
        )
        if kind == "auth":
            # [I] JPKI user-auth certificates are used for TLS client authentication.
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
            )
        if holder is not None:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.OtherName(SAN_OID_NAME, _der_utf8string(holder.name)),
                        x509.OtherName(SAN_OID_SEX, _der_utf8string(str(holder.sex))),
                        x509.OtherName(
                            SAN_OID_BIRTH, _der_utf8string(holder.birthdate.strftime("%Y%m%d"))
                        ),
                        x509.OtherName(SAN_OID_ADDRESS, _der_utf8string(holder.address)),
                    ]
                ),
                critical=False,
            )
        return builder.sign(issuer.material.key, hashes.SHA256())

    # --- revocation -------------------------------------------------------------------------

    def crl(
        self,
        kind: Kind,
        entries: Iterable[RevokedEntry],
        *,
        this_update: dt.date | dt.datetime,
        next_update: dt.date | dt.datetime,
    ) -> x509.CertificateRevocationList:
        """A CRL signed by the ``kind`` CA listing the entries meant for it (see RevokedEntry).

        Dates mean 00:00 JST; the CRL number is ``this_update`` in Unix seconds, so the same
        inputs give a byte-identical CRL.
        """
        issuer = self._issuer(kind)
        last = as_datetime(this_update)
        nxt = as_datetime(next_update)
        if nxt <= last:
            raise ValueError(f"next_update {nxt} must be after this_update {last}")
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(issuer.material.cert.subject)
            .last_update(last)
            .next_update(nxt)
            .add_extension(x509.CRLNumber(int(last.timestamp())), critical=False)
            .add_extension(issuer.aki, critical=False)
        )
        seen: set[int] = set()
        for entry in sorted(entries, key=lambda e: e.serial):
            if entry.kind not in (None, kind) or entry.serial in seen:
                continue
            seen.add(entry.serial)
            revoked = (
                x509.RevokedCertificateBuilder()
                .serial_number(entry.serial)
                .revocation_date(as_datetime(entry.revoked_on))
            )
            if entry.reason is not None:
                revoked = revoked.add_extension(
                    x509.CRLReason(x509.ReasonFlags[entry.reason]), critical=False
                )
            builder = builder.add_revoked_certificate(revoked.build())
        return builder.sign(issuer.material.key, hashes.SHA256())

    # --- relying-party check ----------------------------------------------------------------

    def check_certificate(
        self,
        cert: x509.Certificate,
        kind: Kind,
        *,
        at: dt.datetime,
        crl: x509.CertificateRevocationList | None = None,
    ) -> CertCheck:
        """Judge ``cert`` against the ``kind`` CA at ``at`` (see
        :meth:`onshi.pki.verify.CertificateChecker.check`)."""
        return self._issuer(kind).checker.check(cert, at=at, crl=crl)
