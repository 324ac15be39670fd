"""The public code lists the API answers with, and our own ProcessingResultCode table.

The public names and values (SegmentOfResult OQSCD003, ProcessingResultStatus OQSCD004,
QualificationValidity OQSCD006, 限度額適用認定区分 OQSCD012, 疾病区分 OQSCD013) come from
``onshi_system_facts.md`` §1.2. The official 処理結果コード table (別紙6-1) is not public, so every
ProcessingResultCode / ErrorCode this backend emits is **ours**: prefixed ``ONS`` so that nobody
mistakes it for an official code. ``W`` codes ride on a successful answer (付帯情報), ``E`` codes
mark a failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class SegmentOfResult(StrEnum):
    """処理結果区分 (OQSCD003): the outcome of the whole request."""

    NORMAL = "1"
    """正常終了."""
    PROCESSING = "2"
    """処理中 (一括照会 accepted, results not ready yet)."""
    ABNORMAL = "9"
    """異常終了: ErrorCode / ErrorMessage say why."""


class ProcessingResultStatus(StrEnum):
    """処理結果状況 (OQSCD004): the outcome for the person asked about."""

    NORMAL = "1"
    ERROR = "2"


class QualificationValidity(StrEnum):
    """資格有効性 (OQSCD006)."""

    VALID = "1"
    """有効."""
    INVALID = "2"
    """無効 (disqualified)."""
    INVALID_NEWER_EXISTS = "3"
    """無効(新しい資格あり): superseded by a newer qualification."""
    NOT_FOUND = "4"
    """該当資格なし (also: a card never registered for insurance use)."""
    MULTIPLE = "5"
    """複数該当."""
    VALID_UNREGISTERED = "6"
    """有効(未登録): 医療扶助 only; this backend does not model 医療扶助 and never answers 6."""


class ReferenceClassification(StrEnum):
    """照会区分: how the person was identified."""

    CARD = "1"
    """マイナンバーカード."""
    NUMBERS = "2"
    """被保険者証情報 (保険者番号・記号・番号・枝番)."""


class ConsentKind(StrEnum):
    """Medical information a patient can consent to share (onshi_system_facts.md §1.4)."""

    CHECKUP = "checkup"
    """特定健診情報."""
    MEDICATION = "medication"
    """薬剤情報."""
    DIAGNOSIS = "diagnosis"
    """診療情報."""
    SURGERY = "surgery"
    """手術情報."""


CONSENT_FIELD_PREFIX: dict[ConsentKind, str] = {
    ConsentKind.CHECKUP: "SpecificHealthCheckupsInfo",
    ConsentKind.MEDICATION: "PharmacistsInfo",
    ConsentKind.DIAGNOSIS: "DiagnosisInfo",
    ConsentKind.SURGERY: "OperationInfo",
}
"""Field-name stem of each consent kind (``<stem>ConsFlg``, ``ConsTime``, ``AvailableTime``)."""


class AuthMethod(StrEnum):
    """How the patient proved to be the card holder at the reader."""

    PIN = "pin"
    """利用者証明用暗証番号: the card signed the server's challenge."""
    FACE = "face"
    """顔認証: the reader attests a face match against the chip photo."""
    VISUAL = "visual"
    """目視確認: a staff member compared the card photo with the patient."""


LIMIT_CLASSES: dict[str, str] = {
    "A01": "ア",
    "A02": "イ",
    "A03": "ウ",
    "A04": "エ",
    "A05": "オ",
    "A06": "オ(境)",
    "B01": "現役並みⅢ",
    "B02": "現役並みⅡ",
    "B03": "現役並みⅠ",
    "B04": "一般",
    "B05": "低所得Ⅱ",
    "B06": "低所得Ⅰ",
    "B07": "低所得Ⅰ(老福)",
    "B08": "低所得Ⅰ(境)",
    "B09": "一般Ⅱ",
    "B10": "一般Ⅰ",
}
"""限度額適用認定区分 (OQSCD012)."""

SPECIFIC_DISEASES: dict[str, str] = {
    "1": "人工透析を必要とする慢性腎不全",
    "2": "血友病",
    "3": "抗ウイルス剤を投与している後天性免疫不全症候群(血液製剤起因)",
}
"""特定疾病 疾病区分 (OQSCD013)."""


@dataclass(frozen=True, slots=True)
class ResultCode:
    """One row of our ProcessingResultCode / ErrorCode table."""

    code: str
    message: str
    """Japanese message as a reader would show it."""
    meaning: str
    """English meaning, for the OpenAPI document and the logs."""


class Code:
    """Our result-code table (not the official 別紙6-1, which is not public)."""

    CERT_EXPIRING = ResultCode(
        "ONSW001",
        "利用者証明用電子証明書の有効期限が3か月以内です",
        "success; the user-auth certificate expires within 3 months (renew it)",
    )
    CERT_EXPIRED_GRACE = ResultCode(
        "ONSW002",
        "利用者証明用電子証明書の有効期限切れ(猶予期間中): 資格情報のみ提供します",
        "success; the certificate expired but is within the 3-month grace: eligibility only",
    )
    CARD_UNREGISTERED = ResultCode(
        "ONSW003",
        "健康保険証としての利用登録がありません",
        "the card was never registered for insurance use (QualificationValidity 4)",
    )
    CERT_REVOKED = ResultCode(
        "ONSE101",
        "利用者証明用電子証明書が失効しています",
        "the user-auth certificate is revoked (失効)",
    )
    CERT_MALFORMED = ResultCode(
        "ONSE200",
        "電子証明書を読み取れません",
        "the Certificate does not decode to a DER X.509 certificate",
    )
    CERT_UNKNOWN_ISSUER = ResultCode(
        "ONSE201",
        "電子証明書の発行者を確認できません",
        "the certificate was not issued by the JPKI user-auth CA this backend trusts",
    )
    CERT_BAD_SIGNATURE = ResultCode(
        "ONSE202",
        "電子証明書の署名を検証できません",
        "the certificate's signature does not verify against the CA",
    )
    CERT_NOT_YET_VALID = ResultCode(
        "ONSE203",
        "電子証明書の有効期間開始前です",
        "the certificate is not valid yet",
    )
    CERT_EXPIRED = ResultCode(
        "ONSE204",
        "利用者証明用電子証明書の有効期限が切れています(猶予期間経過)",
        "the certificate expired more than 3 months ago: the card cannot be used",
    )
    CHALLENGE_INVALID = ResultCode(
        "ONSE211",
        "認証用チャレンジが無効です(使用済み・期限切れ・他機関)",
        "the challenge is unknown, already used, expired or issued to another facility",
    )
    SIGNATURE_INVALID = ResultCode(
        "ONSE212",
        "暗証番号認証の署名を検証できません",
        "the signature over the challenge does not verify with the certificate's key",
    )
    FACE_NOT_MATCHED = ResultCode(
        "ONSE221",
        "顔認証が一致しませんでした",
        "the face-match score is below the reader's threshold",
    )
    FACE_STALE = ResultCode(
        "ONSE222",
        "顔認証の結果が古いか未来の日時です",
        "the face-match attestation is older than 5 minutes or dated in the future",
    )
    CARD_UNKNOWN = ResultCode(
        "ONSE231",
        "このカードの情報が登録されていません",
        "the certificate chains to our CA but no card with this serial exists",
    )


ALL_CODES: tuple[ResultCode, ...] = tuple(
    value for value in vars(Code).values() if isinstance(value, ResultCode)
)
"""Every code we emit, for the OpenAPI description and the tests."""
