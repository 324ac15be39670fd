"""What ``onshi card list`` and ``onshi card show`` say about a profile, as frozen data.

Kept apart from rendering (rich) and from click so the same facts feed the table, the detail
view and ``--json``. The list uses the profile's declared certificate dates (cheap: no keys are
generated); ``show`` mints the card's certificates through the test PKI and reports what the
PKI's own check says about them (:func:`onshi.card.facts.describe_profile`, a layer up, since it
also asks the emulated card which applications it answers for).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from onshi.cardmap import TOKEN_KIND
from onshi.dates import add_months
from onshi.pki.verify import EXPIRING_WINDOW_MONTHS, CertState
from onshi.profiles.model import CardProfile, CertSpec, Secret

if TYPE_CHECKING:
    from cryptography import x509

    from onshi.pki import Kind, TestPKI

__all__ = [
    "CertState",
    "CertificateFacts",
    "ProfileDetail",
    "ProfileSummary",
    "certificate_facts",
    "check_state",
    "declared_state",
    "headline",
    "profile_crl",
    "summarize",
]


def declared_state(spec: CertSpec, today: dt.date) -> CertState:
    """The state the profile declares for a certificate on ``today`` (revocation wins).

    Day-level twin of :func:`check_state` (validity from 00:00 JST on ``not_before`` to
    23:59:59 JST on ``not_after``; expiring when ``not_after`` falls before today + 3 months),
    so ``card list`` agrees with ``card show`` without minting keys.
    """
    if not spec.present:
        return CertState.ABSENT
    if spec.revoked and (spec.revoked_on is None or spec.revoked_on <= today):
        return CertState.REVOKED
    if today < spec.not_before:
        return CertState.NOT_YET_VALID
    if today > spec.not_after:
        return CertState.EXPIRED
    if spec.not_after < add_months(today, EXPIRING_WINDOW_MONTHS):
        return CertState.EXPIRING
    return CertState.VALID


def _secret_json(secret: Secret) -> dict[str, Any]:
    return {"value": secret.value, "remaining": secret.remaining, "max_tries": secret.max_tries}


@dataclass(frozen=True, slots=True, kw_only=True)
class ProfileSummary:
    """One row of ``onshi card list``."""

    name: str
    token: str
    kind: str
    situation: str
    """The profile's description."""
    headline: str
    """Its first phrase (up to the first parenthesis, colon or semicolon), for the table."""
    pin_set: bool
    """False for a card issued without a PIN (顔認証マイナンバーカード)."""
    pin_remaining: int
    pin_max: int
    auth_cert: CertState
    sign_cert: CertState

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "token": self.token,
            "kind": self.kind,
            "situation": self.situation,
            "headline": self.headline,
            "pin_set": self.pin_set,
            "pin_tries_left": self.pin_remaining,
            "pin_max_tries": self.pin_max,
            "auth_cert": self.auth_cert.value,
            "sign_cert": self.sign_cert.value,
        }


def headline(description: str) -> str:
    """The first phrase of a description: what the table shows of the situation."""
    text = " ".join(description.split())
    cut = min((i for i in (text.find(" ("), text.find(":"), text.find(";")) if i > 0), default=-1)
    return (text[:cut] if cut > 0 else text).rstrip(" .")


def summarize(profile: CardProfile, today: dt.date) -> ProfileSummary:
    """The list row of one profile, from its declared data only (no key generation)."""
    return ProfileSummary(
        headline=headline(profile.description),
        name=profile.name,
        token=str(profile.token),
        kind=TOKEN_KIND.get(str(profile.token), str(profile.token)),
        situation=profile.description.strip(),
        pin_set=profile.auth_pin.value is not None,
        pin_remaining=profile.auth_pin.remaining,
        pin_max=profile.auth_pin.max_tries,
        auth_cert=declared_state(profile.auth_cert, today),
        sign_cert=declared_state(profile.sign_cert, today),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateFacts:
    """One of the card's two JPKI certificates, as minted by the test PKI and checked by it."""

    kind: Kind
    """``auth`` (利用者証明用) or ``sign`` (署名用)."""
    present: bool
    declared: CertState
    checked: CertState | None
    """What ``TestPKI.check_certificate`` says on the day (``None`` when absent)."""
    serial: int | None = None
    subject: str | None = None
    issuer: str | None = None
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    revoked_on: dt.date | None = None
    revocation_reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "present": self.present,
            "status": (self.checked or self.declared).value,
            "declared_status": self.declared.value,
            "serial": None if self.serial is None else f"{self.serial:x}",
            "subject": self.subject,
            "issuer": self.issuer,
            "not_before": _iso(self.not_before),
            "not_after": _iso(self.not_after),
            "revoked_on": _iso(self.revoked_on),
            "revocation_reason": self.revocation_reason,
        }


def _iso(value: dt.date | dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass(frozen=True, slots=True, kw_only=True)
class ProfileDetail:
    """Everything ``onshi card show`` says about one profile (a test card: secrets included)."""

    profile: CardProfile
    today: dt.date
    certificates: tuple[CertificateFacts, ...]
    applications: tuple[str, ...]
    """Names of the applications the emulated card answers SELECT for."""

    def to_json(self) -> dict[str, Any]:
        p = self.profile
        return {
            "name": p.name,
            "description": p.description.strip(),
            "source": None if p.source is None else str(p.source),
            "today": self.today.isoformat(),
            "token": str(p.token),
            "kind": TOKEN_KIND.get(str(p.token), str(p.token)),
            "atr": p.atr.hex().upper(),
            "seed": p.seed,
            "holder": {
                "name": p.holder.name,
                "name_kana": p.holder.name_kana,
                "address": p.holder.address,
                "birthdate": p.holder.birthdate.isoformat(),
                "sex": p.holder.sex.name.lower(),
                "sex_code": str(p.holder.sex),
            },
            "my_number": p.my_number,
            "card_expiry": p.card_expiry.isoformat(),
            "security_code": p.security_code,
            "collation_b": p.collation_b,
            "secrets": {
                "auth_pin": _secret_json(p.auth_pin),
                "sign_password": _secret_json(p.sign_password),
                "text_pin": _secret_json(p.text_pin),
                "collation_max_tries": p.collation_tries,
            },
            "certificates": [c.to_json() for c in self.certificates],
            "applications": list(self.applications),
            "face_applications": p.face_applications,
            "auth_cert_needs_pin": p.auth_cert_needs_pin,
            "registration": str(p.registration),
            "behaviour": {
                "latency_ms": p.behaviour.latency_ms,
                "latency_jitter_ms": p.behaviour.latency_jitter_ms,
                "drop_rate": p.behaviour.drop_rate,
                "drop_phase": str(p.behaviour.drop_phase),
            },
            "tags": list(p.tags),
        }


def certificate_facts(
    pki: TestPKI,
    profile: CardProfile,
    kind: Kind,
    cert: x509.Certificate | None,
    today: dt.date,
    at: dt.datetime,
) -> CertificateFacts:
    """One certificate as declared by the profile and as checked by the PKI at ``at``."""
    spec = profile.auth_cert if kind == "auth" else profile.sign_cert
    declared = declared_state(spec, today)
    if cert is None or not spec.present:
        return CertificateFacts(kind=kind, present=False, declared=declared, checked=None)
    return CertificateFacts(
        kind=kind,
        present=True,
        declared=declared,
        checked=check_state(pki, profile, kind, cert, at),
        serial=cert.serial_number,
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        revoked_on=spec.revoked_on if spec.revoked else None,
        revocation_reason=spec.revocation_reason if spec.revoked else None,
    )


def profile_crl(
    pki: TestPKI, profile: CardProfile, kind: Kind, at: dt.datetime
) -> x509.CertificateRevocationList:
    """The CRL the ``kind`` CA would publish at ``at``, listing this card when it is revoked."""
    from onshi.profiles import revocation_entries

    return pki.crl(
        kind,
        revocation_entries([profile]),
        this_update=at - dt.timedelta(hours=1),
        next_update=at + dt.timedelta(days=1),
    )


def check_state(
    pki: TestPKI, profile: CardProfile, kind: Kind, cert: x509.Certificate, at: dt.datetime
) -> CertState:
    """What the test PKI's relying-party check says about ``cert`` at ``at``.

    The certificate's own standing: the backend's grace after expiry is an eligibility rule,
    not a state of the certificate, so an expired one reads "expired" here as in the profile.
    """
    check = pki.check_certificate(cert, kind, at=at, crl=profile_crl(pki, profile, kind, at))
    state = check.state
    return CertState.EXPIRED if state is CertState.EXPIRED_IN_GRACE else state
