"""Pure helpers of the reader: parsing card records and backend answers, building commands.

Why apart from the machine: none of these needs state, so each is tested and reused alone
(the conformance suite judges the same answers); the flows stay about decisions.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import unicodedata
from typing import Any

from onshi.apdu import CommandAPDU
from onshi.backend.codes import CONSENT_FIELD_PREFIX
from onshi.cardmap import BASIC4_TAGS
from onshi.reader import events as ev
from onshi.reader.policy import CONSENT_ITEMS
from onshi.reader.results import PUBLIC_RESULT_FIELDS
from onshi.tlv import TLVError, iter_tlv, object_size

CONSENT_STEMS = {kind.value: stem for kind, stem in CONSENT_FIELD_PREFIX.items()}
"""Public field stems of the consent items (openapi.yaml ``Consent``)."""
CERT_ERRORS = {"ONSE200", "ONSE201", "ONSE202", "ONSE203", "ONSE204"}
FACE_ERRORS = {"ONSE221", "ONSE222"}
NOTICE_EXPIRING, NOTICE_GRACE, NOTICE_UNREGISTERED = "ONSW001", "ONSW002", "ONSW003"
REVOKED = "ONSE101"
COLLATION_B_SHAPE = re.compile(r"[0-9]{14}")
PIN_SHAPE = re.compile(r"[0-9]{4}")


def tries_left(sw: int) -> int | None:
    """Tries left from ``63 Cx`` (``69 84``: 0, blocked); ``None`` when the SW does not say."""
    if sw & 0xFFF0 == 0x63C0:
        return sw & 0x0F
    if sw == 0x6984:
        return 0
    return None


def is_date8(text: str) -> bool:
    try:
        dt.datetime.strptime(text, "%Y%m%d")
    except ValueError:
        return False
    return len(text) == 8


def plausible_collation_b(digits: str) -> bool:
    """14 digits: 和暦 YYMMDD (a real month and day), an expiry year 2015-2099, 4 more digits.
    An OCR result that fails this is re-scanned, never presented to the card (R-2.5)."""
    if not COLLATION_B_SHAPE.fullmatch(digits):
        return False
    month, day, year = int(digits[2:4]), int(digits[4:6]), int(digits[6:10])
    return 1 <= month <= 12 and 1 <= day <= 31 and 2015 <= year <= 2099


def objects(record: bytes) -> dict[bytes, bytes]:
    """The data objects inside the ``FF 20`` record at the start of ``record``."""
    for tag, value, _ in iter_tlv(record, 0, object_size(record)):
        if tag == b"\xff\x20":
            return {t: v for t, v, _ in iter_tlv(value)}
    return {}


def parse_basic4(record: bytes) -> dict[str, str] | None:
    """基本4情報 from EF 0002 (``None`` when it does not parse: no cross-check possible)."""
    try:
        items = objects(record)
        out = {name: items[tag].decode("utf-8") for name, tag in BASIC4_TAGS.items()}
    except (TLVError, KeyError, UnicodeDecodeError, IndexError):
        return None
    return out


def has_face_photo(record: bytes) -> bool:
    try:
        return bool(objects(record).get(b"\xdf\x27"))
    except (TLVError, IndexError):
        return False


def _squeeze(text: Any) -> str:
    """Names compared regardless of width and spaces (the card uses a full-width space)."""
    return "".join(unicodedata.normalize("NFKC", str(text or "")).split())


def find_mismatch(basic4: dict[str, str] | None, person: dict[str, Any]) -> tuple[str, ...] | None:
    """Public field names where the backend's person differs from the card's 基本4情報
    (``None``: the card's 基本4情報 is unknown, so nothing can be compared)."""
    if basic4 is None:
        return None
    out = []
    if _squeeze(person.get("Name")) != _squeeze(basic4["name"]):
        out.append("Name")
    if person.get("Birthdate") != basic4["birthdate"]:
        out.append("Birthdate")
    if basic4["sex"] in ("1", "2") and person.get("Sex1") not in (None, "3", basic4["sex"]):
        out.append("Sex1")
    return tuple(out)


def parse_answer(
    status: int, body: Any
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None] | None:
    """(MessageHeader, MessageBody, first result) of a 200 answer; ``None`` if malformed."""
    if status != 200 or not isinstance(body, dict):
        return None
    header = body.get("MessageHeader")
    message_body = body.get("MessageBody") or {}
    if not isinstance(header, dict) or not isinstance(message_body, dict):
        return None
    results = message_body.get("ResultList") or []
    first = results[0] if isinstance(results, list) and results else None
    return header, message_body, first if isinstance(first, dict) else None


def public_fields(
    header: dict[str, Any], body: dict[str, Any], first: dict[str, Any] | None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in (
        "ProcessExecutionTime",
        "QualificationConfirmationDate",
        "ReferenceClassification",
        "SegmentOfResult",
        "ErrorCode",
        "ErrorMessage",
    ):
        if key in header:
            out[key] = header[key]
    for key in (
        "ProcessingResultStatus",
        "ProcessingResultCode",
        "ProcessingResultMessage",
        "QualificationValidity",
    ):
        if key in body:
            out[key] = body[key]
    for key in PUBLIC_RESULT_FIELDS:
        if first is not None and key in first:
            out[key] = first[key]
    return out


def number_query_problem(event: ev.NumberQueryRequested) -> str:
    if not re.fullmatch(r" *[0-9]{6,8}", event.insurer_number):
        return "保険者番号 (6-8桁)"
    if not event.number or len(event.number) > 40:
        return "番号"
    if event.branch and not re.fullmatch(r"[0-9]{2}", event.branch):
        return "枝番 (2桁)"
    if not is_date8(event.birthdate):
        return "生年月日 (yyyyMMdd)"
    return ""


def build_command(
    cla: int,
    ins: int,
    p1: int,
    p2: int,
    data: bytes = b"",
    le: int | None = None,
    extended: bool = False,
) -> CommandAPDU:
    return CommandAPDU(cla=cla, ins=ins, p1=p1, p2=p2, data=data, le=le, extended=extended)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


assert set(CONSENT_STEMS) == set(CONSENT_ITEMS)
