"""A clearly-marked test PKI shaped like JPKI's: two CAs, card certificates, CRLs, checks.

Every DN says ``JPKI-TEST`` and ``NOT FOR PRODUCTION USE``; nothing here can pass for a real
J-LIS certificate. Everything is a pure function of seeds: the same seed gives byte-identical
keys, certificates and CRLs on every machine (RSA PKCS#1 v1.5 signatures are deterministic; key
generation follows pycryptodome's prime search, pinned by a test), so traces, fixtures and a
million-person backend population are reproducible.

Generating an RSA-2048 key costs ~0.5 s, so keys are cached as PEM on disk (shared by parallel
test processes, written atomically) and in an in-process LRU. Certificates are cheap (one RSA
signature) and only cached in memory.

Time convention: a certificate date ``D`` covers the whole Japanese calendar day, i.e.
``notBefore = D 00:00:00 JST`` and ``notAfter = D 23:59:59 JST`` (RFC 5280 validity is
inclusive). So a card whose certificate "expires 2031-05-04" still works all day on 2031-05-04
in Japan. [I: JPKI's exact clock time is not in our sources]

This module sits below :mod:`onshi.profiles` and never reads a profile: it takes any object with
the fields it needs (:class:`CertDates`, :class:`HolderAttributes`), which the profile model's
``CertSpec`` and ``Holder`` satisfy.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Literal, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "JST",
    "SAN_OID_ADDRESS",
    "SAN_OID_BIRTH",
    "SAN_OID_NAME",
    "SAN_OID_SEX",
    "CAMaterial",
    "CardCredentials",
    "CertCheck",
    "CertDates",
    "CertStatus",
    "HolderAttributes",
    "Kind",
    "RevokedEntry",
    "TestPKI",
    "add_months",
    "cache_root",
    "card_identifier",
    "card_serial",
    "clear_memory_caches",
    "rsa_key_from_seed",
]

Kind = Literal["auth", "sign"]
"""Which JPKI hierarchy: 利用者証明用 (user authentication) or 署名用 (digital signature)."""

JST = dt.timezone(dt.timedelta(hours=9), "JST")

KEY_BITS = 2048
_KEYGEN_VERSION = "v1"
"""Bumped if the seed -> key derivation ever changes, so stale cache files are never reused."""

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


# --- keys -----------------------------------------------------------------------------------


def cache_root() -> Path:
    """The onshi cache directory: ``$ONSHI_CACHE_DIR``, else ``$XDG_CACHE_HOME/onshi``, else
    ``~/.cache/onshi``. Keys live in its ``pki/`` subdirectory."""
    if env := os.environ.get("ONSHI_CACHE_DIR"):
        return Path(env)
    if xdg := os.environ.get("XDG_CACHE_HOME"):
        return Path(xdg) / "onshi"
    return Path.home() / ".cache" / "onshi"


def _key_path(seed: str, root: Path) -> Path:
    digest = hashlib.sha256(f"onshi-rsa-{_KEYGEN_VERSION}\0{seed}".encode()).hexdigest()
    return root / "pki" / f"rsa{KEY_BITS}-{_KEYGEN_VERSION}-{digest[:40]}.pem"


def _generate_key(seed: str) -> rsa.RSAPrivateKey:
    """RSA-2048 whose every random byte comes from SHAKE-256 of the seed.

    ``cryptography`` cannot take a random source, so pycryptodome generates the primes and the
    key is rebuilt from its numbers. The result is stable for a given pycryptodome prime search;
    the disk cache keeps it stable across upgrades of that library too.
    """
    from Crypto.Hash import SHAKE256
    from Crypto.PublicKey import RSA

    stream = SHAKE256.new(f"onshi-rsa-{_KEYGEN_VERSION}\0{seed}".encode())
    key = RSA.generate(KEY_BITS, randfunc=stream.read, e=65537)
    p, q, d, n, e = int(key.p), int(key.q), int(key.d), int(key.n), int(key.e)
    numbers = rsa.RSAPrivateNumbers(
        p=p,
        q=q,
        d=d,
        dmp1=rsa.rsa_crt_dmp1(d, p),
        dmq1=rsa.rsa_crt_dmq1(d, q),
        iqmp=rsa.rsa_crt_iqmp(p, q),
        public_numbers=rsa.RSAPublicNumbers(e=e, n=n),
    )
    return numbers.private_key()


def _write_atomically(path: Path, data: bytes) -> None:
    """Temp file in the same directory, then ``os.replace``: readers never see half a key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_or_generate(seed: str, root: Path) -> rsa.RSAPrivateKey:
    path = _key_path(seed, root)
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        pem = None
    if pem is not None:
        try:
            # The file is ours (written atomically above); the full RSA consistency check would
            # cost more than the rest of a cached card_credentials() call.
            key = serialization.load_pem_private_key(
                pem, password=None, unsafe_skip_rsa_key_validation=True
            )
            if isinstance(key, rsa.RSAPrivateKey) and key.key_size == KEY_BITS:
                return key
        except ValueError:
            pass  # a damaged cache file is regenerated below
    key = _generate_key(seed)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with contextlib.suppress(OSError):  # a read-only cache costs time, never correctness
        _write_atomically(path, pem)
    return key


_KEY_LRU_SIZE = 4096
_key_lru: OrderedDict[str, rsa.RSAPrivateKey] = OrderedDict()
_key_lock = threading.Lock()


def rsa_key_from_seed(seed: str, *, cache_dir: Path | None = None) -> rsa.RSAPrivateKey:
    """Deterministic RSA-2048 private key for ``seed`` (cached in memory and on disk).

    ``cache_dir`` is the cache root (default :func:`cache_root`); the key file goes under its
    ``pki/`` subdirectory. The in-memory LRU is keyed by seed alone, since the key depends on
    nothing else.
    """
    with _key_lock:
        key = _key_lru.get(seed)
        if key is not None:
            _key_lru.move_to_end(seed)
            return key
    key = _load_or_generate(seed, cache_dir if cache_dir is not None else cache_root())
    with _key_lock:
        _key_lru[seed] = key
        while len(_key_lru) > _KEY_LRU_SIZE:
            _key_lru.popitem(last=False)
    return key


def clear_memory_caches() -> None:
    """Forget in-process keys and CA objects (tests use it to prove the disk cache works)."""
    with _key_lock:
        _key_lru.clear()
    _ca_material.cache_clear()


# --- derived identifiers --------------------------------------------------------------------


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("\0".join(("onshi-pki", *parts)).encode()).digest()


def card_serial(seed: str, kind: Kind) -> int:
    """Serial number of a card's ``kind`` certificate: cheap (one SHA-256, no key, no signing).

    Positive and below 2**159 (RFC 5280's 20-octet limit with a clear sign bit); distinct seeds
    collide with probability ~2**-159. ``TestPKI.card_credentials`` uses exactly this, so a
    backend can store serials only and still recognise the certificates cards present.
    """
    if kind not in ("auth", "sign"):
        raise ValueError(f"kind must be 'auth' or 'sign', got {kind!r}")
    value = int.from_bytes(_digest("serial", kind, seed)[:20], "big") >> 1
    return value or 1


_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def card_identifier(seed: str) -> str:
    """The 20-character CN of a card's certificates (no personal data, like JPKI's).

    [I] the real identifier's alphabet is not in our sources; this one is base32 upper case.
    """
    value = int.from_bytes(_digest("cn", seed)[:13], "big")
    return "".join(_B32[(value >> (5 * i)) & 31] for i in range(20))


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=JST)


def _day_end(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=JST)


def _as_datetime(value: dt.date | dt.datetime) -> dt.datetime:
    """Dates mean 00:00 JST; naive datetimes mean UTC."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return _day_start(value)


def add_months(moment: dt.datetime, months: int) -> dt.datetime:
    """Calendar-month arithmetic, clamping the day (e.g. 11-30 + 3 months -> 02-28)."""
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    next_month = dt.date(year + (month == 12), month % 12 + 1, 1)
    last_day = (next_month - dt.timedelta(days=1)).day
    return moment.replace(year=year, month=month, day=min(moment.day, last_day))


def _der_utf8string(text: str) -> bytes:
    """DER UTF8String (tag 0x0C) with a short or long-form length."""
    body = text.encode("utf-8")
    n = len(body)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return b"\x0c" + length + body


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


class CertStatus(StrEnum):
    """Outcome of :meth:`TestPKI.check_certificate`, in the order the checks run."""

    UNKNOWN_ISSUER = "unknown_issuer"
    BAD_SIGNATURE = "bad_signature"
    REVOKED = "revoked"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    VALID = "valid"


@dataclass(frozen=True, slots=True, kw_only=True)
class CertCheck:
    """What a relying party learns from one certificate at one moment."""

    status: CertStatus
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime
    expires_within_3_months: bool
    """Valid now but ``not_after`` falls before ``at`` + 3 calendar months (renewal window)."""
    revoked_on: dt.datetime | None = None

    @property
    def valid(self) -> bool:
        return self.status is CertStatus.VALID


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


def _positive_serial(*parts: str) -> int:
    return (int.from_bytes(_digest("serial", *parts)[:20], "big") >> 1) or 1


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
        .not_valid_before(_day_start(_CA_NOT_BEFORE))
        .not_valid_after(_day_end(_CA_NOT_AFTER))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage("key_cert_sign", "crl_sign"), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CAMaterial(cert=cert, key=key)


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
    """A CA plus what every check needs precomputed (no parsing on the request path)."""

    material: CAMaterial
    public_key: rsa.RSAPublicKey
    subject_der: bytes
    ski: bytes
    aki: x509.AuthorityKeyIdentifier


_CRED_LRU_SIZE = 1024
_CRL_INDEXES = 8


class TestPKI:
    """The test CA pair plus the minting of card certificates and CRLs, all from seeds.

    ``cache_dir`` is the cache root for keys (default :func:`cache_root`).
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, seed: str = "onshi-test-pki", cache_dir: Path | None = None) -> None:
        self.seed = seed
        self.cache_dir = cache_dir
        self._issuers: dict[Kind, _Issuer] = {}
        self._creds: OrderedDict[tuple[object, ...], CardCredentials] = OrderedDict()
        self._lock = threading.Lock()
        self._crl_indexes: dict[bytes, dict[int, dt.datetime]] = {}

    def _issuer(self, kind: Kind) -> _Issuer:
        issuer = self._issuers.get(kind)
        if issuer is None:
            material = _ca_material(self.seed, kind, self.cache_dir)
            public = material.key.public_key()
            ski = x509.SubjectKeyIdentifier.from_public_key(public)
            issuer = _Issuer(
                material=material,
                public_key=public,
                subject_der=material.cert.subject.public_bytes(),
                ski=ski.digest,
                aki=x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
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
            .not_valid_before(_day_start(not_before))
            .not_valid_after(_day_end(not_after))
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
        last = _as_datetime(this_update)
        nxt = _as_datetime(next_update)
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
                .revocation_date(_as_datetime(entry.revoked_on))
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
        """Judge ``cert`` against the ``kind`` CA at moment ``at`` (naive means UTC).

        Order: issuer (name and key identifier), signature, revocation (listed on ``crl`` with
        a revocation date at or before ``at``), then the validity window. A CRL not signed by
        this CA raises ``ValueError``: that is a caller bug, not a card's status. Each CRL is
        verified and indexed once (keyed by its signature), so a lookup is O(1).
        """
        issuer = self._issuer(kind)
        at = _as_datetime(at)
        not_before = cert.not_valid_before_utc
        not_after = cert.not_valid_after_utc
        serial = cert.serial_number

        def result(status: CertStatus, revoked_on: dt.datetime | None = None) -> CertCheck:
            return CertCheck(
                status=status,
                serial=serial,
                not_before=not_before,
                not_after=not_after,
                expires_within_3_months=status is CertStatus.VALID
                and not_after < add_months(at.astimezone(JST), 3),
                revoked_on=revoked_on,
            )

        if cert.issuer.public_bytes() != issuer.subject_der or not self._aki_matches(cert, issuer):
            return result(CertStatus.UNKNOWN_ISSUER)
        try:
            issuer.public_key.verify(
                cert.signature,
                cert.tbs_certificate_bytes,
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except InvalidSignature:
            return result(CertStatus.BAD_SIGNATURE)
        if crl is not None:
            revoked_on = self._crl_index(crl, issuer, kind).get(serial)
            if revoked_on is not None and revoked_on <= at:
                return result(CertStatus.REVOKED, revoked_on)
        if at < not_before:
            return result(CertStatus.NOT_YET_VALID)
        if at > not_after:
            return result(CertStatus.EXPIRED)
        return result(CertStatus.VALID)

    @staticmethod
    def _aki_matches(cert: x509.Certificate, issuer: _Issuer) -> bool:
        try:
            aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        except x509.ExtensionNotFound:
            return True  # name matched; the signature check decides
        return aki.key_identifier is None or aki.key_identifier == issuer.ski

    def _crl_index(
        self, crl: x509.CertificateRevocationList, issuer: _Issuer, kind: Kind
    ) -> dict[int, dt.datetime]:
        """Serial -> revocation time, built once per CRL (a CRL's own lookup is a linear scan)."""
        index = self._crl_indexes.get(crl.signature)
        if index is None:
            if not (
                crl.issuer.public_bytes() == issuer.subject_der
                and crl.is_signature_valid(issuer.public_key)
            ):
                raise ValueError(f"the CRL is not signed by this TestPKI's {kind} CA")
            index = {entry.serial_number: entry.revocation_date_utc for entry in crl}
            with self._lock:
                if len(self._crl_indexes) >= _CRL_INDEXES:
                    self._crl_indexes.pop(next(iter(self._crl_indexes)))
                self._crl_indexes[crl.signature] = index
        return index
