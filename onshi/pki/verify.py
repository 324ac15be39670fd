"""The relying party's side of the test PKI: certificate checks and where a certificate stands.

One vocabulary (:class:`CertState`) serves every view of a certificate: the PKI's check
(:meth:`CertificateChecker.check`: issuer, signature, CRL, validity window), the day-level view a
profile declares (``onshi.profiles.facts``), and the backend's answer, which adds the 3-month
grace after expiry. The renewal window and the grace are defined here once, so the reader's
card path, ``onshi card show`` and the backend agree to the second.

The grace after expiry: sources disagree ("有効期限満了日が属する月の末日から3か月" vs "有効期限が
切れた日から3か月", onshi_system_facts.md §5). [I] We take the first (two sources): the grace
ends at the end of the third month after the month in which the certificate expired.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from enum import StrEnum

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from onshi.dates import JST, add_months, as_datetime

__all__ = [
    "EXPIRING_WINDOW_MONTHS",
    "GRACE_MONTHS",
    "CertCheck",
    "CertState",
    "CertStatus",
    "CertificateChecker",
    "TrustAnchor",
    "expires_within_window",
    "expiring_from",
    "grace_end",
]

EXPIRING_WINDOW_MONTHS = 3
"""Certificates can be renewed from 3 months before expiry, and the eligibility system adds a
notice during that window (card_apdu.md §5, onshi_system_facts.md §1.2)."""
GRACE_MONTHS = 3
"""After expiry, eligibility is still confirmed for this many months (see the module docstring)."""


class CertState(StrEnum):
    """Where a certificate stands at one moment; the values are what people read.

    :meth:`CertificateChecker.check` reports the first six (its ``status``, in the order the
    checks run); :attr:`CertCheck.state` adds EXPIRING; the profile's declared view adds
    ABSENT; the backend's answer adds EXPIRED_IN_GRACE and MALFORMED.
    """

    UNKNOWN_ISSUER = "unknown issuer"
    BAD_SIGNATURE = "bad signature"
    REVOKED = "revoked"
    NOT_YET_VALID = "not yet valid"
    EXPIRED = "expired"
    VALID = "valid"
    EXPIRING = "expiring"
    """Valid, but ``not_after`` falls within :data:`EXPIRING_WINDOW_MONTHS` (renewal notice)."""
    EXPIRED_IN_GRACE = "expired in grace"
    """Expired, before :func:`grace_end`: eligibility only, with a notice."""
    ABSENT = "absent"
    """The card carries no such certificate."""
    MALFORMED = "malformed"
    """Bytes that are not a DER X.509 certificate (the backend answers it like an unknown CA)."""


CertStatus = CertState
"""The former name of :class:`CertState` for the check's outcome (kept for importers)."""


def expires_within_window(not_after: dt.datetime, at: dt.datetime) -> bool:
    """Whether ``not_after`` falls before ``at`` + 3 calendar months (counted in JST)."""
    return not_after < add_months(at.astimezone(JST), EXPIRING_WINDOW_MONTHS)


def expiring_from(not_after: dt.datetime) -> dt.datetime:
    """The first moment at which :func:`expires_within_window` holds for ``not_after``.

    Lets a hot path compare timestamps instead of doing calendar arithmetic per request;
    searched by bisection, since calendar months clamp at month ends and have no exact inverse.
    """
    local = not_after.astimezone(JST)
    low = add_months(local, -EXPIRING_WINDOW_MONTHS) - dt.timedelta(days=4)
    high = local
    # Invariant: low is not within the window, high is (add_months is monotonic).
    while (high - low).total_seconds() > 1:
        mid = low + (high - low) / 2
        if expires_within_window(local, mid):
            high = mid
        else:
            low = mid
    return high


def grace_end(not_after: dt.datetime) -> dt.datetime:
    """End of the grace after expiry: 00:00 JST after the last day of the third month after
    the month in which ``not_after`` falls (see the module docstring)."""
    local = not_after.astimezone(JST)
    first_of_expiry_month = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return add_months(first_of_expiry_month, GRACE_MONTHS + 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class CertCheck:
    """What a relying party learns from one certificate at one moment."""

    status: CertState
    """The check's verdict: UNKNOWN_ISSUER, BAD_SIGNATURE, REVOKED, NOT_YET_VALID, EXPIRED or
    VALID (never EXPIRING: see :attr:`state`)."""
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime
    expires_within_3_months: bool
    """Valid now but ``not_after`` falls before ``at`` + 3 calendar months (renewal window)."""
    revoked_on: dt.datetime | None = None
    at: dt.datetime | None = None
    """The moment judged (aware)."""

    @property
    def valid(self) -> bool:
        return self.status is CertState.VALID

    @property
    def state(self) -> CertState:
        """The standing to show and act on: EXPIRING inside the renewal window, EXPIRED_IN_GRACE
        before :func:`grace_end`, otherwise :attr:`status`."""
        if self.valid and self.expires_within_3_months:
            return CertState.EXPIRING
        if (
            self.status is CertState.EXPIRED
            and self.at is not None
            and self.at < grace_end(self.not_after)
        ):
            return CertState.EXPIRED_IN_GRACE
        return self.status


@dataclass(frozen=True, slots=True)
class TrustAnchor:
    """A CA as a relying party holds it, precomputed so that no check parses anything."""

    cert: x509.Certificate
    public_key: rsa.RSAPublicKey
    subject_der: bytes
    ski: bytes

    @classmethod
    def from_certificate(cls, cert: x509.Certificate) -> TrustAnchor:
        public = cert.public_key()
        if not isinstance(public, rsa.RSAPublicKey):
            raise TypeError(f"a JPKI CA key is RSA, not {type(public).__name__}")
        return cls(
            cert=cert,
            public_key=public,
            subject_der=cert.subject.public_bytes(),
            ski=x509.SubjectKeyIdentifier.from_public_key(public).digest,
        )


_CRL_INDEXES = 8


class CertificateChecker:
    """Judges certificates against one CA; each CRL is verified and indexed once."""

    def __init__(self, anchor: TrustAnchor, name: str) -> None:
        self.anchor = anchor
        self.name = name
        """For error messages, e.g. ``auth CA``."""
        self._lock = threading.Lock()
        self._crl_indexes: dict[bytes, dict[int, dt.datetime]] = {}

    def check(
        self,
        cert: x509.Certificate,
        *,
        at: dt.datetime,
        crl: x509.CertificateRevocationList | None = None,
    ) -> CertCheck:
        """Judge ``cert`` at moment ``at`` (naive means UTC).

        Order: issuer (name and key identifier), signature, revocation (listed on ``crl`` with
        a revocation date at or before ``at``), then the validity window. A CRL not signed by
        this CA raises ``ValueError``: that is a caller bug, not a card's status. Each CRL is
        verified and indexed once (keyed by its signature), so a lookup is O(1).
        """
        anchor = self.anchor
        at = as_datetime(at)
        not_before = cert.not_valid_before_utc
        not_after = cert.not_valid_after_utc
        serial = cert.serial_number

        def result(status: CertState, revoked_on: dt.datetime | None = None) -> CertCheck:
            return CertCheck(
                status=status,
                serial=serial,
                not_before=not_before,
                not_after=not_after,
                expires_within_3_months=status is CertState.VALID
                and expires_within_window(not_after, at),
                revoked_on=revoked_on,
                at=at,
            )

        if cert.issuer.public_bytes() != anchor.subject_der or not self._aki_matches(cert):
            return result(CertState.UNKNOWN_ISSUER)
        try:
            anchor.public_key.verify(
                cert.signature,
                cert.tbs_certificate_bytes,
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except InvalidSignature:
            return result(CertState.BAD_SIGNATURE)
        if crl is not None:
            revoked_on = self._crl_index(crl).get(serial)
            if revoked_on is not None and revoked_on <= at:
                return result(CertState.REVOKED, revoked_on)
        if at < not_before:
            return result(CertState.NOT_YET_VALID)
        if at > not_after:
            return result(CertState.EXPIRED)
        return result(CertState.VALID)

    def _aki_matches(self, cert: x509.Certificate) -> bool:
        try:
            aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        except x509.ExtensionNotFound:
            return True  # name matched; the signature check decides
        return aki.key_identifier is None or aki.key_identifier == self.anchor.ski

    def _crl_index(self, crl: x509.CertificateRevocationList) -> dict[int, dt.datetime]:
        """Serial -> revocation time, built once per CRL (a CRL's own lookup is a linear scan)."""
        index = self._crl_indexes.get(crl.signature)
        if index is None:
            if not (
                crl.issuer.public_bytes() == self.anchor.subject_der
                and crl.is_signature_valid(self.anchor.public_key)
            ):
                raise ValueError(f"the CRL is not signed by this TestPKI's {self.name}")
            index = {entry.serial_number: entry.revocation_date_utc for entry in crl}
            with self._lock:
                if len(self._crl_indexes) >= _CRL_INDEXES:
                    self._crl_indexes.pop(next(iter(self._crl_indexes)))
                self._crl_indexes[crl.signature] = index
        return index
