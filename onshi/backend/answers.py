"""The answer shape: MessageHeader + MessageBody with the public field names and codes.

Rule: this module decides how a lookup's hits are *presented* (which QualificationValidity a set
of hits means, which fields a result carries, when 限度額 information is included); which hits
and which certificate outcome apply is decided in ``eligibility.py``. The same dicts are sent
as JSON and rendered as XmlMsg by ``xmlmsg.py``.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Sequence
from typing import Any

from onshi.backend.codes import (
    ProcessingResultStatus,
    QualificationValidity,
    ReferenceClassification,
    ResultCode,
    SegmentOfResult,
)
from onshi.backend.queries import ymd8
from onshi.pki import JST


@functools.lru_cache(maxsize=8)
def _jst_second(second: int) -> tuple[str, dt.date]:
    local = dt.datetime.fromtimestamp(second, JST)
    return ymd8(local) + f"{local.hour:02d}{local.minute:02d}{local.second:02d}", local.date()


def jst_stamp(now: float) -> str:
    """``yyyyMMddHHmmss`` in JST of the second ``now`` (Unix seconds) falls in.

    Every answer carries it, so the formatting is done once per second (a small cache keyed by
    the whole second) rather than per request; the fraction is truncated, never rounded up.
    """
    return _jst_second(math.floor(now))[0]


def jst_date(now: float) -> dt.date:
    """The JST calendar day of ``now`` (the same second as :func:`jst_stamp`)."""
    return _jst_second(math.floor(now))[1]


def ymd(day: dt.date | None) -> str | None:
    return None if day is None else ymd8(day)


def envelope(
    *,
    facility_code: str,
    now: float,
    reference: ReferenceClassification | None,
    segment: SegmentOfResult = SegmentOfResult.NORMAL,
    error: ResultCode | None = None,
    body: dict[str, Any] | None = None,
    arbitrary_id: str | None = None,
) -> dict[str, Any]:
    """The public answer shape: MessageHeader + MessageBody, as in the XML result files."""
    stamp = jst_stamp(now)
    header: dict[str, Any] = {
        "ProcessExecutionTime": stamp,
        "QualificationConfirmationDate": stamp[:8],
        "MedicalInstitutionCode": facility_code,
        "SegmentOfResult": segment.value,
        "CharacterCodeIdentifier": "0",
    }
    if arbitrary_id is not None:
        header["ArbitraryFileIdentifier"] = arbitrary_id
    if reference is not None:
        header["ReferenceClassification"] = reference.value
    if error is not None:
        header["ErrorCode"] = error.code
        header["ErrorMessage"] = error.message
    doc: dict[str, Any] = {"MessageHeader": header}
    if body is not None:
        doc["MessageBody"] = body
    return doc


def classify(hits: Sequence[Any], today: dt.date) -> tuple[QualificationValidity, list[Any]]:
    """QualificationValidity for a list of hits (newest first), and the hits to answer with."""
    if not hits:
        return QualificationValidity.NOT_FOUND, []
    if len({hit.person.id for hit in hits}) > 1:
        return QualificationValidity.MULTIPLE, list(hits)
    valid = [hit for hit in hits if _is_valid(hit.qualification, today)]
    if valid:
        return QualificationValidity.VALID, valid
    newest = hits[0]
    if newest.qualification.superseded_by is not None:
        return QualificationValidity.INVALID_NEWER_EXISTS, [newest]
    return QualificationValidity.INVALID, [newest]


def _is_valid(q: Any, today: dt.date) -> bool:
    if q.superseded_by is not None or q.qualification_date > today:
        return False
    return q.disqualification_date is None or q.disqualification_date > today


def result_body(
    hits: Sequence[Any],
    *,
    today: dt.date,
    with_limit: bool,
    notice: ResultCode | None = None,
    search_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """MessageBody for a lookup: validity, the notice code and one result per hit."""
    validity, shown = classify(hits, today)
    body: dict[str, Any] = {
        "ProcessingResultStatus": ProcessingResultStatus.NORMAL.value,
        "QualificationValidity": validity.value,
    }
    if notice is not None:
        body["ProcessingResultCode"] = notice.code
        body["ProcessingResultMessage"] = notice.message
    if search_info is not None:
        body["QualificationConfirmSearchInfo"] = search_info
    body["ResultList"] = [_result(hit, today=today, with_limit=with_limit) for hit in shown]
    return body


def error_body(code: ResultCode) -> dict[str, Any]:
    """MessageBody for a per-person error (ProcessingResultStatus 2)."""
    return {
        "ProcessingResultStatus": ProcessingResultStatus.ERROR.value,
        "ProcessingResultCode": code.code,
        "ProcessingResultMessage": code.message,
        "ResultList": [],
    }


def _result(hit: Any, *, today: dt.date, with_limit: bool) -> dict[str, Any]:
    p, q = hit.person, hit.qualification
    out: dict[str, Any] = {
        "InsuredCardClassification": q.card_classification,
        "InsurerNumber": q.insurer_number,
        "InsurerName": q.insurer_name,
        "InsuredCardSymbol": q.symbol,
        "InsuredIdentificationNumber": q.number,
        "InsuredBranchNumber": q.branch,
        "PersonalFamilyClassification": q.personal_family,
        "Name": p.name,
        "NameKana": p.name_kana,
        "Sex1": p.sex,
        "Birthdate": ymd(p.birthdate),
        "Address": p.address,
        "PostNumber": p.postcode,
        "QualificationDate": ymd(q.qualification_date),
        "DisqualificationDate": ymd(q.disqualification_date),
        "InsuredPartialContributionRatio": q.contribution_ratio,
    }
    if q.elderly_ratio is not None:
        out["ElderlyRecipientCertificateInfo"] = {
            "ElderlyRecipientContributionRatio": q.elderly_ratio
        }
    out["LimitApplicationCertificateRelatedConsFlg"] = "1" if with_limit else "0"
    if with_limit and q.limit_class is not None:
        out["LimitApplicationCertificateRelatedInfo"] = {
            "LimitApplicationCertificateClassification": "01",
            "LimitApplicationCertificateClassificationFlag": q.limit_class,
        }
    if hit.specific_diseases:
        out["SpecificDiseasesCertificateRelatedConsFlg"] = "1"
        out["SpecificDiseasesCertificateList"] = [
            {"SpecificDiseasesDiseaseCategory": code} for code in hit.specific_diseases
        ]
    subsidies = [s for s in hit.subsidies if s.valid_from <= today <= s.valid_to]
    if subsidies:
        out["PublicExpenseResultList"] = [public_subsidy(s) for s in subsidies]
    return out


def public_subsidy(s: Any) -> dict[str, Any]:
    return {
        "PublicExpensePayerNumber": s.payer_number,
        "PublicExpenseRecipientNumber": s.recipient_number,
        "PublicExpenseKind": s.kind,
        "PublicExpenseValidFrom": ymd(s.valid_from),
        "PublicExpenseValidTo": ymd(s.valid_to),
    }
