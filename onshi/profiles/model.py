"""The card-profile model: everything a declarative card profile says, as frozen data.

A profile is loaded from YAML (``card_profiles/*.yaml``, validated against
``card_profiles/schema.json``) by :mod:`onshi.profiles.loader`; the card engine, the test PKI
and the reference backend consume these objects and never read YAML themselves.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from onshi.cardmap import Token

DEFAULT_ATR = bytes.fromhex("3BE000FF8131FE4514")
"""Contact ATR of the My Number card chip (T=1), as matched by OpenSC (card_apdu.md §6)."""


class Sex(StrEnum):
    """ISO 5218 codes as stored in 基本4情報 DF25."""

    MALE = "1"
    FEMALE = "2"
    NOT_APPLICABLE = "9"


class Registration(StrEnum):
    """How the card's holder stands in the insurance records (used by the reference backend)."""

    REGISTERED = "registered"
    """Registered for insurance use (マイナ保険証)."""
    UNREGISTERED = "unregistered"
    """A My Number card never registered for insurance use."""
    MISLINKED = "mislinked"
    """The insurance record points at someone else's data (他人の情報の紐付け)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Holder:
    """The 4 basic attributes (基本4情報) and the name reading."""

    name: str
    name_kana: str | None
    address: str
    birthdate: dt.date
    sex: Sex


@dataclass(frozen=True, slots=True, kw_only=True)
class Secret:
    """A card key reference verified with VERIFY: its value and its retry counter."""

    value: str | None
    """The secret as ASCII; ``None`` when it was never set (e.g. a 顔認証マイナンバーカード)."""
    max_tries: int
    remaining: int
    """Tries left when the card is inserted; 0 means blocked."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CertSpec:
    """What the test PKI should mint for one of the card's two JPKI certificates."""

    present: bool
    not_before: dt.date
    not_after: dt.date
    revoked: bool = False
    revocation_reason: str | None = None
    """An RFC 5280 CRLReason name as in ``cryptography.x509.ReasonFlags`` (``key_compromise``)."""
    revoked_on: dt.date | None = None


class DropPhase(StrEnum):
    """When a lost contact strikes an exchange (``Behaviour.drop_rate``)."""

    COMMAND = "command"
    """Before the card sees the command: nothing on the card changes."""
    ANSWER = "answer"
    """After the card executed the command: its effects stand, the answer is lost (a VERIFY
    may have cost a try the reader never hears about)."""
    EITHER = "either"
    """Each lost exchange is one or the other with equal odds."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Behaviour:
    """Physical-world behaviour applied by transports; the sans-I/O card never sleeps."""

    latency_ms: float = 0.0
    """Extra time before every answer."""
    latency_jitter_ms: float = 0.0
    """Uniform jitter (±) around ``latency_ms``."""
    drop_rate: float = 0.0
    """Probability that an APDU gets no answer at all (contact lost mid-exchange)."""
    drop_phase: DropPhase = DropPhase.COMMAND
    """Whether a lost exchange reached the card first (see :class:`DropPhase`)."""

    @property
    def ideal(self) -> bool:
        """True when the transport has nothing to inject."""
        return self.latency_ms == 0 and self.latency_jitter_ms == 0 and self.drop_rate == 0


@dataclass(frozen=True, slots=True, kw_only=True)
class CardProfile:
    """One declarative card: the holder, its secrets, its certificates and its behaviour."""

    name: str
    description: str
    source: Path | None
    token: Token
    atr: bytes
    seed: str
    """Seed for everything derived (keys, certificate serials, face photo)."""
    holder: Holder
    my_number: str
    """12-digit 個人番号 (with a valid check digit); also 照合番号A."""
    card_expiry: dt.date
    security_code: str
    """4-digit セキュリティコード printed on the card face (part of 照合番号B)."""
    auth_pin: Secret
    """利用者証明用暗証番号, JPKI key 0018 (4 digits, 3 tries)."""
    sign_password: Secret
    """署名用パスワード, JPKI key 001B (6-16 of A-Z0-9, 5 tries)."""
    text_pin: Secret
    """券面事項入力補助用暗証番号, 券面事項入力補助AP key 0011 (4 digits, 3 tries)."""
    collation_tries: int = 10
    """Retry limit of 照合番号A/B (not public; 10 per the face-reader lock reports)."""
    auth_cert: CertSpec
    sign_cert: CertSpec
    face_applications: bool = True
    """Whether the 券面 APs (入力補助AP, 券面AP) exist; false for 住基カード and smartphones."""
    auth_cert_needs_pin: bool = False
    """True on smartphone tokens, where EF 000A is read only after the auth PIN."""
    registration: Registration = Registration.REGISTERED
    behaviour: Behaviour = field(default_factory=Behaviour)
    tags: tuple[str, ...] = ()

    @property
    def collation_b(self) -> str:
        """照合番号B: 生年月日 (和暦 YYMMDD) + 有効期限の西暦年 + セキュリティコード, 14 digits."""
        birth = era_yymmdd(self.holder.birthdate)
        return birth + f"{self.card_expiry.year:04d}" + self.security_code


_ERAS = (
    (dt.date(2019, 5, 1), "令和"),
    (dt.date(1989, 1, 8), "平成"),
    (dt.date(1926, 12, 25), "昭和"),
    (dt.date(1912, 7, 30), "大正"),
    (dt.date(1868, 1, 25), "明治"),
)


def era_yymmdd(day: dt.date) -> str:
    """Japanese-era YYMMDD (e.g. 1980-02-17 -> 昭和55 -> ``550217``), as 照合番号B uses it."""
    for start, _name in _ERAS:
        if day >= start:
            return f"{day.year - start.year + 1:02d}{day.month:02d}{day.day:02d}"
    raise ValueError(f"{day} is before the Meiji era")
