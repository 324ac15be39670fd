"""The outcome of one reader session, carrying the public result-file field names (R-5.6).

Why frozen data: the same result feeds the conformance verdicts, the load statistics, the
quickstart summary and the MQTT result message; each renders it, none recomputes it. The
``public`` mapping uses the names of the terminal's ``OQSsiquc01res_face_*.xml`` file
(QualificationValidity, InsurerNumber, ..., ``<stem>ConsFlg/ConsTime/AvailableTime``) so a
receipt-computer vendor recognises them; everything the reader adds is snake_case.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from onshi.reader.events import Method

__all__ = ["PUBLIC_RESULT_FIELDS", "Fallback", "Outcome", "ReaderResult", "SessionCounts"]


class Outcome(StrEnum):
    """What the reader concluded. Only ``ELIGIBLE`` lets the patient be treated as insured."""

    ELIGIBLE = "eligible"
    NOT_ELIGIBLE = "not_eligible"
    """資格無効 / 無効(新しい資格あり) / 複数該当: the backend found no current qualification."""
    NOT_REGISTERED = "not_registered"
    """The card was never registered for insurance use: no eligibility registered."""
    NOT_FOUND = "not_found"
    """該当資格なし for the numbers or the person asked about."""
    MISLINKED = "mislinked"
    """The backend's person is not the card's holder (基本4情報 differ)."""
    CERTIFICATE_INVALID = "certificate_invalid"
    """On-reader code 006: expired beyond the grace, revoked, not yet valid or untrusted."""
    CARD_REFUSED = "card_refused"
    """On-reader code 002 or a token this reader does not serve (住基カード, smartphone)."""
    CARD_UNREADABLE = "card_unreadable"
    """On-reader code 001."""
    NOT_IDENTIFIED = "not_identified"
    """Face, PIN and staff could not confirm the holder."""
    BACKEND_UNAVAILABLE = "backend_unavailable"
    """Timeout, 5xx, outage or JPKI degradation: never shown as eligible (fail closed)."""
    ABORTED = "aborted"
    """The card was removed or swapped before the check finished."""


class Fallback(StrEnum):
    """What the facility does next when the card check did not confirm eligibility
    (onshi_system_facts.md §3.2)."""

    NONE = "none"
    NUMBER_PATH = "number_path"
    """Query by the numbers of a 資格確認書 / 保険証 / 資格情報のお知らせ."""
    SELF_DECLARATION = "self_declaration"
    """被保険者資格申立書 (billing as 不詳 if nothing else is known)."""
    OUTAGE_MODE = "outage_mode"
    """Call the support centre for システム障害時モード; look up by 氏名・性別・生年月日・住所."""
    VISUAL_CHECK = "visual_check"
    """Staff switch the reader to 目視確認モード."""
    RETRY = "retry"
    """Present the card again (it was removed mid-check)."""


PUBLIC_RESULT_FIELDS: tuple[str, ...] = (
    "InsuredCardClassification",
    "InsurerNumber",
    "InsurerName",
    "InsuredCardSymbol",
    "InsuredIdentificationNumber",
    "InsuredBranchNumber",
    "PersonalFamilyClassification",
    "Name",
    "NameKana",
    "Sex1",
    "Birthdate",
    "Address",
    "PostNumber",
    "QualificationDate",
    "DisqualificationDate",
    "InsuredPartialContributionRatio",
    "ElderlyRecipientCertificateInfo",
    "LimitApplicationCertificateRelatedConsFlg",
    "LimitApplicationCertificateRelatedInfo",
    "SpecificDiseasesCertificateRelatedConsFlg",
    "SpecificDiseasesCertificateList",
    "PublicExpenseResultList",
)
"""Fields of ResultOfQualificationConfirmation the result copies (openapi.yaml)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionCounts:
    """What the session cost: the figures the issue's benchmark and the conformance suite read."""

    apdus: int = 0
    pin_verifies: int = 0
    """VERIFY commands presenting a PIN the patient typed (each may cost a try)."""
    collation_verifies: int = 0
    """VERIFY commands presenting 照合番号B (each may cost one of the card's 10 tries)."""
    signatures: int = 0
    backend_calls: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ReaderResult:
    """One session's outcome (see the module docstring)."""

    outcome: Outcome
    message: str
    """What the reader showed last, as a patient or staff member reads it."""
    method: Method | None = None
    code: str | None = None
    """On-reader code (001/002/006) when one applies."""
    fallback: Fallback = Fallback.NONE
    notices: tuple[str, ...] = ()
    """ProcessingResultCodes riding on a success (ONSW001 expiring, ONSW002 grace)."""
    public: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """Public result-file fields: MessageHeader/MessageBody items, the first result's
    fields (:data:`PUBLIC_RESULT_FIELDS`) and the consent flags and times."""
    mismatch: tuple[str, ...] = ()
    """Public field names where the backend's person differs from the card's 基本4情報."""
    counts: SessionCounts = field(default_factory=SessionCounts)

    @property
    def eligible(self) -> bool:
        return self.outcome is Outcome.ELIGIBLE

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the public fields at the top, the reader's own facts under ``reader``."""
        out: dict[str, Any] = dict(self.public)
        out["reader"] = {
            "outcome": self.outcome.value,
            "eligible": self.eligible,
            "message": self.message,
            "method": self.method.value if self.method else None,
            "code": self.code,
            "fallback": self.fallback.value,
            "notices": list(self.notices),
            "mismatch": list(self.mismatch),
            "apdus": self.counts.apdus,
            "pin_verifies": self.counts.pin_verifies,
            "collation_verifies": self.counts.collation_verifies,
            "signatures": self.counts.signatures,
            "backend_calls": self.counts.backend_calls,
        }
        return out
