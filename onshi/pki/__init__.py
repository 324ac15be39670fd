"""A clearly-marked test PKI shaped like JPKI's: two CAs, card certificates, CRLs, checks.

Every DN says ``JPKI-TEST`` and ``NOT FOR PRODUCTION USE``; nothing here can pass for a real
J-LIS certificate. Everything is a pure function of seeds: the same seed gives byte-identical
keys, certificates and CRLs on every machine (RSA PKCS#1 v1.5 signatures are deterministic; key
generation follows pycryptodome's prime search, pinned by a test), so traces, fixtures and a
million-person backend population are reproducible.

Modules, one role each: :mod:`~onshi.pki.keys` (seeded keys and their disk + memory caches),
:mod:`~onshi.pki.issue` (the CAs, card credentials, CRLs: :class:`TestPKI`) and
:mod:`~onshi.pki.verify` (certificate checks and :class:`CertState`, the renewal window and the
grace after expiry). This package re-exports their public names.

The package sits below :mod:`onshi.profiles` and never reads a profile: it takes any object with
the fields it needs (:class:`CertDates`, :class:`HolderAttributes`), which the profile model's
``CertSpec`` and ``Holder`` satisfy.
"""

from onshi.dates import JST, add_months
from onshi.pki.issue import (
    SAN_OID_ADDRESS,
    SAN_OID_BIRTH,
    SAN_OID_NAME,
    SAN_OID_SEX,
    CAMaterial,
    CardCredentials,
    CertDates,
    HolderAttributes,
    Kind,
    RevokedEntry,
    TestPKI,
    card_identifier,
    card_serial,
    clear_memory_caches,
)
from onshi.pki.keys import cache_root, rsa_key_from_seed
from onshi.pki.verify import (
    EXPIRING_WINDOW_MONTHS,
    CertCheck,
    CertState,
    CertStatus,
    expiring_from,
    grace_end,
)

__all__ = [
    "EXPIRING_WINDOW_MONTHS",
    "JST",
    "SAN_OID_ADDRESS",
    "SAN_OID_BIRTH",
    "SAN_OID_NAME",
    "SAN_OID_SEX",
    "CAMaterial",
    "CardCredentials",
    "CertCheck",
    "CertDates",
    "CertState",
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
    "expiring_from",
    "grace_end",
    "rsa_key_from_seed",
]
