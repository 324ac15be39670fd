"""Request bodies as frozen data, parsed from JSON (or from XmlMsg) with one clear 422 each.

Every parser takes a decoded JSON object (``dict``) and either returns a query or raises an
:class:`ApiProblem` naming the field, what is wrong and the fix. Nothing else in the backend
looks at raw request fields.

The parsers accept exactly what ``openapi.yaml`` describes, no more and no less: every field
the contract declares is checked whenever it is present (even one the chosen method does not
use), lengths count code points as JSON Schema does, and the patterns below are the contract's
(``tests/backend/test_xml.py`` and ``test_schemathesis.py`` hold them to it).
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from onshi.backend.auth import ApiProblem
from onshi.backend.codes import AuthMethod

MAX_ITEM_TEXT = 200
"""Longest free-text field we accept (names, addresses, ids)."""

BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")
"""The contract's base64 shape: the standard alphabet, optional padding. (A stricter pattern,
groups of four, costs schemathesis's boundary generation seconds per case; a value with the
shape that still does not decode simply fails verification, see ``b64``.)"""
DATE8 = re.compile(
    r"^(?:[1-9][0-9]{3}(?:(?:0[13578]|1[02])(?:0[1-9]|[12][0-9]|3[01])"
    r"|(?:0[469]|11)(?:0[1-9]|[12][0-9]|30)|02(?:0[1-9]|1[0-9]|2[0-8]))"
    r"|(?:[1-9][0-9](?:0[48]|[2468][048]|[13579][26])|(?:[13579][26]|[2468][048])00)0229)$"
)
"""A real Gregorian calendar day, yyyyMMdd, years 1000-9999 (the contract's ``Date8``)."""
INSURER_NUMBER = re.compile(r"^(?:[0-9]{8}|[0-9]{6}| {2}[0-9]{6})$")
"""保険者番号: 8 digits, or a 国保 6 digits, bare or space-padded to 8 (§1.2)."""
DATE_TIME = re.compile(
    r"^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
"""RFC 3339 ``date-time`` (JSON Schema's ``format: date-time``)."""


def invalid(field: str, detail: str, fix: str) -> ApiProblem:
    return ApiProblem(422, "Invalid request field", f"{field}: {detail}", field=field, fix=fix)


def require_object(doc: Any, where: str = "the request body") -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise ApiProblem(
            422,
            "Invalid request body",
            f"{where} must be a JSON object",
            field=where,
            fix="send a JSON object as described in /openapi.json",
        )
    return doc


def text(
    doc: dict[str, Any],
    field: str,
    *,
    required: bool = True,
    digits: int | None = None,
    min_len: int = 1,
    max_len: int = MAX_ITEM_TEXT,
    pattern: re.Pattern[str] | None = None,
    prefix: str = "",
) -> str | None:
    """A string field of ``min_len..max_len`` code points; ``digits`` demands that many ASCII
    digits, ``pattern`` a full match. An explicit ``null`` is not a string (the contract's
    fields are never nullable), so it is refused rather than taken for "absent"."""
    name = prefix + field
    if field not in doc:
        if required:
            raise invalid(name, "is required", f"add {field}")
        return None
    value = doc[field]
    if not isinstance(value, str):
        raise invalid(name, "must be a string", f"send {field} as a JSON string")
    if digits is not None:
        if len(value) != digits or not (value.isascii() and value.isdigit()):
            raise invalid(name, f"must be {digits} digits", f"send {field} as {digits} digits")
    elif not min_len <= len(value) <= max_len:
        raise invalid(
            name, f"must be {min_len}..{max_len} characters", f"send {field} within that length"
        )
    if pattern is not None and pattern.fullmatch(value) is None:
        raise invalid(name, "has the wrong form", f"send {field} as /openapi.json describes")
    return value


def date8(doc: dict[str, Any], field: str, *, prefix: str = "") -> dt.date:
    """A ``yyyyMMdd`` calendar date (years 1000-9999, as the contract's pattern says)."""
    value = text(doc, field, digits=8, prefix=prefix)
    assert value is not None
    try:
        day = dt.date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        day = None
    if day is None or day.year < 1000:
        raise invalid(prefix + field, "is not a calendar date", "send yyyyMMdd") from None
    return day


def date_time(doc: dict[str, Any], field: str, *, prefix: str = "") -> float:
    """An RFC 3339 date-time with its offset, as Unix seconds (a leap second counts as :59)."""
    value = text(doc, field, max_len=64, prefix=prefix)
    assert value is not None
    match = DATE_TIME.fullmatch(value)
    moment = None
    if match is not None:
        y, mo, d, h, mi, sec, frac, offset = match.groups()
        try:
            tz = dt.UTC
            if offset not in ("Z", "z"):
                oh, om = int(offset[1:3]), int(offset[4:])
                if oh > 23 or om > 59:
                    raise ValueError(offset)
                sign = 1 if offset[0] == "+" else -1
                tz = dt.timezone(sign * dt.timedelta(hours=oh, minutes=om))
            micro = int((frac or ".0")[1:7].ljust(6, "0"))
            second = min(int(sec), 59) if int(sec) <= 60 else 99
            moment = dt.datetime(int(y), int(mo), int(d), int(h), int(mi), second, micro, tz)
        except ValueError:
            moment = None
    if moment is None:
        raise invalid(
            prefix + field,
            "must be an RFC 3339 date-time with an offset",
            "send e.g. 2026-04-01T09:00:00+09:00",
        )
    return moment.timestamp()


def flag01(doc: dict[str, Any], field: str, *, prefix: str = "") -> bool:
    value = doc.get(field, "0")
    if value not in ("0", "1"):
        raise invalid(prefix + field, "must be '0' or '1'", f"send {field} as '0' or '1'")
    return value == "1"


def ymd8(day: dt.date) -> str:
    """yyyyMMdd, zero-padded for any year (``strftime("%Y")`` does not pad years < 1000).

    ``date.isoformat`` always pads the year to four digits, and is the cheapest way there (every
    answer formats several dates); called unbound, so a datetime gives its date part only.
    """
    return dt.date.isoformat(day).replace("-", "")


def b64(doc: dict[str, Any], field: str, *, max_len: int, required: bool = True) -> bytes | None:
    """A base64 field of at most ``max_len`` characters (the contract's shape and ``maxLength``).

    A value of the right shape that does not decode (a wrong length or padding) decodes to
    ``b""``: it is then a challenge nobody issued or a signature that does not verify, answered
    in the result file (ONSE211 / ONSE212) like any other wrong value, not a malformed request.
    """
    value = text(doc, field, required=required, max_len=max_len, pattern=BASE64)
    if value is None:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        return b""


@dataclass(frozen=True, slots=True)
class NumberQuery:
    """資格確認 by 保険者番号・記号・番号・枝番・生年月日 (ReferenceClassification 2)."""

    insurer_number: str
    symbol: str | None
    number: str
    branch: str | None
    birthdate: dt.date
    with_limit: bool
    arbitrary_id: str | None = None

    @classmethod
    def parse(cls, doc: Any, *, prefix: str = "") -> NumberQuery:
        doc = require_object(doc, prefix.rstrip(".") or "the request body")
        insurer = text(doc, "InsurerNumber", prefix=prefix, max_len=8)
        assert insurer is not None
        # Insurer numbers are 8 digits (国保: 6), zero- or space-padded on the wire (§1.2).
        if INSURER_NUMBER.fullmatch(insurer) is None:
            raise invalid(
                prefix + "InsurerNumber",
                "must be 8 digits, or 6 digits optionally padded with 2 spaces",
                "send 保険者番号",
            )
        number = text(doc, "InsuredIdentificationNumber", prefix=prefix, max_len=40)
        assert number is not None
        return cls(
            insurer_number=insurer.strip(),
            symbol=text(
                doc, "InsuredCardSymbol", required=False, prefix=prefix, min_len=0, max_len=40
            ),
            number=number,
            branch=text(doc, "InsuredBranchNumber", required=False, digits=2, prefix=prefix),
            birthdate=date8(doc, "Birthdate", prefix=prefix),
            with_limit=flag01(doc, "LimitApplicationCertificateRelatedConsFlg", prefix=prefix),
            arbitrary_id=text(
                doc, "ArbitraryFileIdentifier", required=False, prefix=prefix, min_len=0
            ),
        )

    def echo(self) -> dict[str, Any]:
        """QualificationConfirmSearchInfo as echoed in the answer."""
        out: dict[str, Any] = {
            "InsurerNumber": self.insurer_number,
            "InsuredIdentificationNumber": self.number,
            "Birthdate": ymd8(self.birthdate),
            "LimitApplicationCertificateRelatedConsFlg": "1" if self.with_limit else "0",
        }
        if self.symbol is not None:
            out["InsuredCardSymbol"] = self.symbol
        if self.branch is not None:
            out["InsuredBranchNumber"] = self.branch
        return out


_AUTH_METHODS = tuple(m.value for m in AuthMethod)
CERTIFICATE_MAX_LEN = 10_920
"""Base64 characters of a DER certificate of up to 8 KiB (the contract's ``maxLength``)."""
CHALLENGE_MAX_LEN = 88
"""64 bytes in base64."""
SIGNATURE_MAX_LEN = 1_368
"""1 KiB in base64 (an RSA-8192 signature)."""


@dataclass(frozen=True, slots=True)
class FaceMatch:
    """The reader's face-match attestation (ours: the real reader protocol is not public)."""

    reader_id: str
    score: float
    threshold: float
    captured_at: float


@dataclass(frozen=True, slots=True)
class CardQuery:
    """資格確認 by card: the user-auth certificate plus how the holder was verified."""

    certificate: str
    """Base64 DER as sent: the verifier caches by this text and decodes only on a miss."""
    method: str
    challenge: bytes | None
    signature: bytes | None
    face: FaceMatch | None
    operator_id: str | None
    with_limit: bool
    arbitrary_id: str | None

    @classmethod
    def parse(cls, doc: Any) -> CardQuery:
        doc = require_object(doc)
        certificate = text(doc, "Certificate", max_len=CERTIFICATE_MAX_LEN, pattern=BASE64)
        assert certificate is not None
        method = doc.get("Method")
        if method not in _AUTH_METHODS:
            raise invalid(
                "Method", f"must be one of {list(_AUTH_METHODS)}", "say how the holder was verified"
            )
        # Every declared field is checked when present, whichever method uses it.
        challenge = b64(doc, "Challenge", max_len=CHALLENGE_MAX_LEN, required=False)
        signature = b64(doc, "Signature", max_len=SIGNATURE_MAX_LEN, required=False)
        face = _face(doc["FaceMatch"]) if "FaceMatch" in doc else None
        operator = None
        if "VisualCheck" in doc:
            visual = require_object(doc["VisualCheck"], "VisualCheck")
            operator = text(visual, "OperatorId", prefix="VisualCheck.", max_len=64)
        needs = {
            AuthMethod.PIN: ("Challenge", "Signature"),
            AuthMethod.FACE: ("FaceMatch",),
            AuthMethod.VISUAL: ("VisualCheck",),
        }[AuthMethod(method)]
        for field in needs:
            if field not in doc:
                raise invalid(field, f"is required for Method {method}", f"add {field}")
        return cls(
            certificate=certificate,
            method=method,
            challenge=challenge,
            signature=signature,
            face=face,
            operator_id=operator,
            with_limit=flag01(doc, "LimitApplicationCertificateRelatedConsFlg"),
            arbitrary_id=text(doc, "ArbitraryFileIdentifier", required=False, min_len=0),
        )


def _face(doc: Any) -> FaceMatch:
    doc = require_object(doc, "FaceMatch")
    reader = text(doc, "ReaderId", prefix="FaceMatch.", max_len=64)
    numbers: list[float] = []
    for field in ("Score", "Threshold"):
        value = doc.get(field)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise invalid(f"FaceMatch.{field}", "must be a number in [0, 1]", f"send {field}")
        numbers.append(float(value))
    captured = date_time(doc, "CapturedAt", prefix="FaceMatch.")
    assert reader is not None
    return FaceMatch(reader, numbers[0], numbers[1], captured)


@dataclass(frozen=True, slots=True)
class DemographicsQuery:
    """Outage-mode lookup by 氏名・性別・生年月日・住所."""

    name: str
    sex: str
    birthdate: dt.date
    address: str

    @classmethod
    def parse(cls, doc: Any) -> DemographicsQuery:
        doc = require_object(doc)
        name = text(doc, "Name")
        sex = doc.get("Sex")
        if sex not in ("1", "2"):
            raise invalid("Sex", "must be '1' (男) or '2' (女)", "send Sex as '1' or '2'")
        address = text(doc, "Address")
        assert name is not None and address is not None
        return cls(name, sex, date8(doc, "Birthdate"), address)


@dataclass(frozen=True, slots=True)
class SubsidyQuery:
    """公費負担医療 eligibility by 公費負担者番号 + 受給者番号 (+ 生年月日)."""

    payer_number: str
    recipient_number: str
    birthdate: dt.date

    @classmethod
    def parse(cls, doc: Any) -> SubsidyQuery:
        doc = require_object(doc)
        payer = text(doc, "PublicExpensePayerNumber", digits=8)
        recipient = text(doc, "PublicExpenseRecipientNumber", digits=7)
        assert payer is not None and recipient is not None
        return cls(payer, recipient, date8(doc, "Birthdate"))
