"""The backend's data model: the frozen rows the Store hands out, and the pure helpers they need.

Split from :mod:`onshi.backend.store` (which re-exports every public name here), so the store
module is about SQLite and this one about data.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
import unicodedata
from dataclasses import dataclass
from typing import Any

from onshi.errors import OnshiError

CONSENT_KINDS: dict[str, int] = {"checkup": 1, "medication": 2, "diagnosis": 4, "surgery": 8}
"""Consent kinds (特定健診 / 薬剤 / 診療 / 手術) and their bit in ``consents.kinds_mask``."""

CONSENT_WINDOW = dt.timedelta(hours=24)
"""Viewing is possible for 24 hours after consent (onshi_system_facts.md §1.4)."""

FACILITY_KINDS = ("hospital", "clinic", "dental", "pharmacy")
INSURER_KINDS = ("kyokai", "kumiai", "kyosai", "kokuho", "koki")

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**13, 8, 1


class IdempotencyConflict(OnshiError):
    """An idempotency key was reused for a different request."""


@dataclass(frozen=True, slots=True)
class Facility:
    """A medical facility and the salted hash of its API secret."""

    code: str
    name: str
    kind: str
    prefecture: int
    secret_hash: str


@dataclass(frozen=True, slots=True)
class CardRecord:
    """A My Number card known to the backend, keyed by its user-auth certificate serial."""

    serial: int
    person_id: int
    seed: str
    registered: bool
    linked_person_id: int | None
    """The person whose insurance data the card is linked to; != person_id means mislinked."""
    not_before: dt.date | None = None
    not_after: dt.date | None = None
    revoked: bool = False
    revoked_on: dt.date | None = None

    @property
    def mislinked(self) -> bool:
        return self.linked_person_id is not None and self.linked_person_id != self.person_id


@dataclass(frozen=True, slots=True)
class Person:
    """An insured person (基本4情報 plus the kana reading)."""

    id: int
    name: str
    name_kana: str
    sex: str
    birthdate: dt.date
    address: str
    postcode: str
    prefecture: int


@dataclass(frozen=True, slots=True)
class Qualification:
    """One insurance qualification (資格) of a person."""

    id: int
    person_id: int
    insurer_number: str
    insurer_name: str
    insurer_kind: str
    symbol: str | None
    number: str
    branch: str | None
    card_classification: str
    personal_family: str
    qualification_date: dt.date
    disqualification_date: dt.date | None
    contribution_ratio: str | None
    limit_class: str | None
    elderly_ratio: str | None
    superseded_by: int | None
    insurer_prefecture: int = 0


@dataclass(frozen=True, slots=True)
class PublicSubsidy:
    """A 公費負担医療 entitlement (e.g. child medical subsidy)."""

    payer_number: str
    recipient_number: str
    kind: str
    valid_from: dt.date
    valid_to: dt.date


@dataclass(frozen=True, slots=True)
class QualificationHit:
    """A qualification with its person and what travels with it in an eligibility answer."""

    person: Person
    qualification: Qualification
    subsidies: tuple[PublicSubsidy, ...]
    specific_diseases: tuple[str, ...]
    """特定疾病 codes (疾病区分 OQSCD013: '1' 人工透析, '2' 血友病, '3' HIV)."""


@dataclass(frozen=True, slots=True)
class Consent:
    """A patient's consent to let a facility view medical information for 24 hours."""

    id: int
    facility_code: str
    person_id: int
    kinds: frozenset[str]
    consented_at: dt.datetime
    available_until: dt.datetime
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class Batch:
    """A 一括照会 submission: accepted, processed in the background, downloaded by 受付番号."""

    reception_number: str
    facility_code: str
    status: str
    submitted_at: dt.datetime
    finished_at: dt.datetime | None
    items: list[dict[str, Any]]
    results: list[dict[str, Any]] | None


def normalize_insurer_number(value: str) -> str:
    """The stored form of a 保険者番号: 8 digits, or 6 for 国保 (sent as ``00xxxxxx``)."""
    text = value.strip()
    if len(text) == 8 and text.startswith("00"):
        return text[2:]
    return text


def serial_key(serial: int) -> bytes | None:
    """A certificate serial as stored (20 bytes big-endian); None if no card can have it."""
    if not 0 < serial < 2**160:
        return None
    return serial.to_bytes(20, "big")


def name_key(name: str) -> str:
    """Normalised name for matching (NFKC, no spaces), so 山田　太郎 == 山田 太郎 == 山田太郎."""
    return "".join(unicodedata.normalize("NFKC", name).split())


def address_key(address: str) -> str:
    return "".join(unicodedata.normalize("NFKC", address).split())


def epoch_seconds(moment: dt.datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def utc_instant(value: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(value, dt.UTC)


def optional_date(value: str | None) -> dt.date | None:
    return None if value is None else dt.date.fromisoformat(value)


def hash_secret(secret: str, *, salt: bytes | None = None) -> str:
    """A salted scrypt hash in a self-describing form (``scrypt$n$r$p$salt$hash``)."""
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.scrypt(
        secret.encode("utf-8", "surrogatepass"),
        salt=salt,
        n=_SCRYPT_N,
        r=_SCRYPT_R,
        p=_SCRYPT_P,
        dklen=32,
    )
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def check_secret(secret: str, stored: str) -> bool:
    """Constant-time comparison of ``secret`` against a :func:`hash_secret` value."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            secret.encode("utf-8", "surrogatepass"),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)
