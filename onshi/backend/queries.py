"""Request bodies as frozen data, parsed from JSON (or from XmlMsg) with one clear 422 each.

Every parser takes a decoded JSON object (``dict``) and either returns a query or raises an
:class:`ApiProblem` naming the field, what is wrong and the fix. Nothing else in the backend
looks at raw request fields. The patterns mirror ``openapi.yaml``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from dataclasses import dataclass
from typing import Any

from onshi.backend.auth import ApiProblem
from onshi.backend.codes import AuthMethod

MAX_ITEM_TEXT = 200
"""Longest free-text field we accept (names, addresses, ids)."""


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
    digits: int | tuple[int, ...] | None = None,
    max_len: int = MAX_ITEM_TEXT,
    prefix: str = "",
) -> str | None:
    """A string field; ``digits`` demands that many ASCII digits."""
    name = prefix + field
    value = doc.get(field)
    if value is None:
        if required:
            raise invalid(name, "is required", f"add {field}")
        return None
    if not isinstance(value, str):
        raise invalid(name, "must be a string", f"send {field} as a JSON string")
    if digits is not None:
        allowed = (digits,) if isinstance(digits, int) else digits
        if len(value) not in allowed or not (value.isascii() and value.isdigit()):
            counts = " or ".join(str(n) for n in allowed)
            raise invalid(name, f"must be {counts} digits", f"send {field} as {counts} digits")
    elif not value.strip() or len(value) > max_len:
        raise invalid(name, f"must be 1..{max_len} characters", f"send a non-empty {field}")
    return value


def date8(doc: dict[str, Any], field: str, *, prefix: str = "") -> dt.date:
    """A ``yyyyMMdd`` date."""
    value = text(doc, field, digits=8, prefix=prefix)
    assert value is not None
    try:
        return dt.date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        raise invalid(prefix + field, "is not a calendar date", "send yyyyMMdd") from None


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


def b64(doc: dict[str, Any], field: str, *, max_bytes: int) -> bytes:
    value = text(doc, field, max_len=4 * max_bytes)
    assert value is not None
    return b64_value(value, field, max_bytes=max_bytes)


def b64_value(value: str, field: str, *, max_bytes: int) -> bytes:
    """Strict base64 (422 naming ``field`` otherwise)."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(field, "is not valid base64", f"send {field} as standard base64") from None
    if not raw or len(raw) > max_bytes:
        raise invalid(field, f"must decode to 1..{max_bytes} bytes", f"check {field}")
    return raw


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
        insurer = insurer.strip()
        if not (insurer.isascii() and insurer.isdigit() and len(insurer) in (6, 8)):
            raise invalid(prefix + "InsurerNumber", "must be 6 or 8 digits", "send 保険者番号")
        number = text(doc, "InsuredIdentificationNumber", prefix=prefix, max_len=40)
        assert number is not None
        return cls(
            insurer_number=insurer,
            symbol=text(doc, "InsuredCardSymbol", required=False, prefix=prefix, max_len=40),
            number=number,
            branch=text(doc, "InsuredBranchNumber", required=False, digits=2, prefix=prefix),
            birthdate=date8(doc, "Birthdate", prefix=prefix),
            with_limit=flag01(doc, "LimitApplicationCertificateRelatedConsFlg", prefix=prefix),
            arbitrary_id=text(doc, "ArbitraryFileIdentifier", required=False, prefix=prefix),
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
        certificate = text(doc, "Certificate", max_len=12_000)
        assert certificate is not None
        method = doc.get("Method")
        if method not in _AUTH_METHODS:
            raise invalid(
                "Method", f"must be one of {list(_AUTH_METHODS)}", "say how the holder was verified"
            )
        challenge = signature = None
        face = None
        operator = None
        if method == AuthMethod.PIN:
            challenge = b64(doc, "Challenge", max_bytes=64)
            signature = b64(doc, "Signature", max_bytes=1024)
        elif method == AuthMethod.FACE:
            face = _face(doc.get("FaceMatch"))
        else:
            visual = require_object(doc.get("VisualCheck"), "VisualCheck")
            operator = text(visual, "OperatorId", prefix="VisualCheck.", max_len=64)
        return cls(
            certificate=certificate,
            method=method,
            challenge=challenge,
            signature=signature,
            face=face,
            operator_id=operator,
            with_limit=flag01(doc, "LimitApplicationCertificateRelatedConsFlg"),
            arbitrary_id=text(doc, "ArbitraryFileIdentifier", required=False),
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
    captured = text(doc, "CapturedAt", prefix="FaceMatch.", max_len=40)
    assert captured is not None and reader is not None
    try:
        moment = dt.datetime.fromisoformat(captured)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise invalid(
            "FaceMatch.CapturedAt",
            "must be an RFC 3339 date-time with an offset",
            "send e.g. 2026-04-01T09:00:00+09:00",
        )
    return FaceMatch(reader, numbers[0], numbers[1], moment.timestamp())


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
