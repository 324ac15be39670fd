"""Reader policy: the settings a facility or a reader maker chooses, as frozen data.

Why a separate object: none of these numbers is public (reader_requirements.md §0: no
official face tries, timeouts or thresholds), so the conformance suite and the load model must
be able to vary them, and the reader must never hard-code them. Defaults are our choices
[I] unless a requirement is named.
"""

from __future__ import annotations

from dataclasses import dataclass

from onshi.backend.codes import ConsentKind
from onshi.cardmap import Token
from onshi.reader.events import ReaderMode

__all__ = ["CONSENT_ITEMS", "ReaderPolicy"]

CONSENT_ITEMS: tuple[str, ...] = tuple(kind.value for kind in ConsentKind)
"""Every consent item the backend knows (特定健診, 薬剤, 診療, 手術), in screen order."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReaderPolicy:
    """How one reader behaves (see the module docstring)."""

    reader_id: str = "reader-01"
    """Sent in the face-match attestation (``FaceMatch.ReaderId``)."""
    mode: ReaderMode = ReaderMode.AUTO
    """Mode at power-on (R-4.1: 無人運転)."""
    accepted_tokens: tuple[str, ...] = (Token.MY_NUMBER_CARD,)
    """JPKI tokens this reader serves. Smartphones tap a separate 汎用 reader (R-7.1), so the
    face reader refuses their tokens with a message that says so."""

    face_threshold: float = 0.80
    """A capture matches when its score is at least this (no official value, R-2.3)."""
    face_tries: int = 3
    """Failed captures before the reader offers PIN or staff (no public number, R-2.5)."""
    face_timeout_s: float = 30.0
    """Whole face phase ("30秒ほど", R-2.8); then the same fallback."""
    offer_pin_after_face: bool = True
    """After the face fails, offer PIN when the card has tries left (R-2.6)."""

    ocr_attempts: int = 3
    """Card-face scans before giving up on 照合番号B (a misread is re-scanned, never re-sent)."""
    collation_reserve: int = 2
    """Never VERIFY 照合番号B with this many tries left or fewer: the last ones are the
    municipality's (R-2.5, the card locks after 10)."""

    pin_timeout_s: float = 60.0
    choice_timeout_s: float = 60.0
    consent_timeout_s: float = 30.0
    """A consent screen left unanswered counts as "do not agree" (the safe default)."""
    staff_timeout_s: float = 300.0
    """How long the reader waits for staff before ending the session."""
    backend_timeout_s: float = 10.0
    """Per HTTP request (public clients give up at 10 s, onshi_system_facts.md §3.1)."""
    consent_write_attempts: int = 2
    """Tries of ``POST /v1/consents`` (same Idempotency-Key each time)."""

    consent_items: tuple[str, ...] = ("checkup", "medication")
    """Items the facility uses and asks about (R-5.2 defaults: 特定健診・薬剤 "利用する",
    診療・手術 "利用しない")."""
    blanket_consent: bool = True
    """Offer 包括同意 first (R-5.4, from 2024-10-07); declining it asks item by item."""
    limit_info_statutory: bool = True
    """R-5.4: from 2024-10-07 限度額適用認定証情報 is provided by statute (no screen), so the
    lookup always sends ``LimitApplicationCertificateRelatedConsFlg`` "1"."""

    def __post_init__(self) -> None:
        unknown = [i for i in self.consent_items if i not in CONSENT_ITEMS]
        if unknown:
            raise ValueError(f"unknown consent items {unknown}: use {list(CONSENT_ITEMS)}")
        if not 0.0 <= self.face_threshold <= 1.0:
            raise ValueError(f"face_threshold {self.face_threshold} is not within 0..1")
        for name in ("face_tries", "ocr_attempts", "consent_write_attempts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
