"""The public XML form of the single number-based query (XmlMsg), in UTF-8 or Shift_JIS.

Receipt-computer vendors exchange ``XmlMsg`` files (OQSsiquc01req / OQSsiquc01res,
onshi_system_facts.md §1.2): ``MessageHeader`` (QualificationConfirmationDate,
MedicalInstitutionCode, ArbitraryFileIdentifier) and ``MessageBody/QualificationConfirmSearchInfo``
(InsurerNumber, InsuredCardSymbol, InsuredIdentificationNumber, InsuredBranchNumber, Birthdate,
LimitApplicationCertificateRelatedConsFlg), checked against the same patterns as the JSON
query (values as written, no trimming). The encoding comes from the Content-Type charset,
else from the XML declaration, else UTF-8; the answer uses the same encoding
(CharacterCodeIdentifier 0 UTF-8, 1 Shift_JIS). Shift_JIS is decoded and encoded as cp932, the
Windows superset receipt computers actually write. expat cannot parse multi-byte legacy
encodings, so we decode first and parse text. DOCTYPEs are refused (no entity expansion).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from onshi.backend.auth import ApiProblem
from onshi.backend.queries import NumberQuery, date8
from onshi.backend.queries import text as text_field

UTF8 = "UTF-8"
SHIFT_JIS = "Shift_JIS"
_SJIS_NAMES = {"shift_jis", "shift-jis", "sjis", "x-sjis", "cp932", "windows-31j", "ms932"}
_DECLARATION = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9_.:-]+)[\"']")
_DECL_TEXT = re.compile(r"^\s*<\?xml[^>]*\?>")
_SEARCH_FIELDS = (
    "InsurerNumber",
    "InsuredCardSymbol",
    "InsuredIdentificationNumber",
    "InsuredBranchNumber",
    "Birthdate",
    "LimitApplicationCertificateRelatedConsFlg",
)
_HEADER_FIELDS = (
    "QualificationConfirmationDate",
    "MedicalInstitutionCode",
    "ArbitraryFileIdentifier",
)
_INFO = "MessageBody.QualificationConfirmSearchInfo."
_LIST_ITEMS = {
    "ResultList": "ResultOfQualificationConfirmation",
    "SpecificDiseasesCertificateList": "SpecificDiseasesCertificateInfo",
    "PublicExpenseResultList": "PublicExpenseResultInfo",
}


def _bad_xml(detail: str, fix: str = "send an XmlMsg as described in /openapi.json") -> ApiProblem:
    return ApiProblem(400, "Malformed XML", detail, field="body", fix=fix)


def detect_encoding(body: bytes, content_type: str | None) -> str:
    """``UTF-8`` or ``Shift_JIS`` (422 for anything else)."""
    declared: str | None = None
    if content_type:
        for param in content_type.split(";")[1:]:
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "charset":
                declared = value.strip().strip('"')
    if declared is None:
        match = _DECLARATION.match(body[:200])
        declared = match.group(1).decode("ascii") if match else UTF8
    lowered = declared.lower()
    if lowered in ("utf-8", "utf8"):
        return UTF8
    if lowered in _SJIS_NAMES:
        return SHIFT_JIS
    raise ApiProblem(
        415,
        "Unsupported encoding",
        f"the XML is declared as {declared!r}",
        field="charset",
        fix="send UTF-8 or Shift_JIS (CharacterCodeIdentifier 0 or 1)",
    )


def _codec(encoding: str) -> str:
    return "cp932" if encoding == SHIFT_JIS else "utf-8"


@dataclass(frozen=True, slots=True)
class XmlRequest:
    """A parsed number-based XmlMsg."""

    facility_code: str
    query: NumberQuery
    encoding: str

    @classmethod
    def parse(cls, body: bytes, content_type: str | None) -> XmlRequest:
        if not body.strip():
            raise _bad_xml("the body is empty")
        encoding = detect_encoding(body, content_type)
        try:
            text = body.decode(_codec(encoding))
        except UnicodeDecodeError as exc:
            raise _bad_xml(
                f"the body is not valid {encoding} at byte {exc.start}",
                fix=f"encode the file as {encoding} or declare its real encoding",
            ) from None
        text = _DECL_TEXT.sub("", text.lstrip("\ufeff"), count=1)
        if "<!DOCTYPE" in text or "<!ENTITY" in text:
            raise _bad_xml("DOCTYPE and entity declarations are not accepted")
        try:
            root = ET.fromstring(text)
        except ET.ParseError as exc:
            raise _bad_xml(f"the XML is not well-formed ({exc})") from None
        if root.tag != "XmlMsg":
            raise _bad_xml(f"the root element is <{root.tag}>, expected <XmlMsg>")
        header = root.find("MessageHeader")
        info = root.find("MessageBody/QualificationConfirmSearchInfo")
        if header is None or info is None:
            raise _bad_xml(
                "XmlMsg needs MessageHeader and MessageBody/QualificationConfirmSearchInfo"
            )
        fields = _leaves(info, _SEARCH_FIELDS, _INFO)
        head = _leaves(header, _HEADER_FIELDS, "MessageHeader.")
        facility = text_field(head, "MedicalInstitutionCode", digits=10, prefix="MessageHeader.")
        if "QualificationConfirmationDate" in head:
            date8(head, "QualificationConfirmationDate", prefix="MessageHeader.")
        if "ArbitraryFileIdentifier" in head:
            fields["ArbitraryFileIdentifier"] = head["ArbitraryFileIdentifier"]
        assert facility is not None
        query = NumberQuery.parse(fields, prefix=_INFO)
        return cls(facility, query, encoding)


def _leaves(parent: ET.Element, names: tuple[str, ...], where: str) -> dict[str, str]:
    """The text of each ``<name>`` leaf present under ``parent`` (``""`` when empty).

    Values are taken as written (no trimming): the contract's patterns apply to them as they do
    to the JSON fields. Nested or repeated elements are not a text value (422).
    """
    out: dict[str, str] = {}
    for name in names:
        found = parent.findall(name)
        if not found:
            continue
        if len(found) > 1 or len(found[0]) > 0:
            raise ApiProblem(
                422,
                "Invalid request field",
                f"{where}{name} must appear once, as text",
                field=where + name,
                fix=f"send one <{name}> element with a text value",
            )
        out[name] = found[0].text or ""
    return out


def render_xml(answer: dict[str, Any], encoding: str) -> tuple[bytes, str]:
    """The answer envelope as XmlMsg bytes in ``encoding``, and its media type."""
    root = ET.Element("XmlMsg")
    header = dict(answer.get("MessageHeader", {}))
    header["CharacterCodeIdentifier"] = "1" if encoding == SHIFT_JIS else "0"
    _fill(ET.SubElement(root, "MessageHeader"), header)
    if "MessageBody" in answer:
        _fill(ET.SubElement(root, "MessageBody"), answer["MessageBody"])
    text = ET.tostring(root, encoding="unicode")
    declaration = f'<?xml version="1.0" encoding="{encoding}"?>\n'
    body = (declaration + text).encode(_codec(encoding), errors="xmlcharrefreplace")
    return body, f"application/xml; charset={encoding}"


def _fill(parent: ET.Element, data: dict[str, Any]) -> None:
    for key, value in data.items():
        if value is None:
            continue
        if isinstance(value, dict):
            _fill(ET.SubElement(parent, key), value)
        elif isinstance(value, list):
            holder = ET.SubElement(parent, key)
            item_tag = _LIST_ITEMS.get(key, "Item")
            for item in value:
                child = ET.SubElement(holder, item_tag)
                if isinstance(item, dict):
                    _fill(child, item)
                else:
                    child.text = str(item)
        else:
            ET.SubElement(parent, key).text = str(value)


def parse_answer(body: bytes) -> ET.Element:
    """Parse an XmlMsg answer (either encoding); for clients and tests."""
    encoding = detect_encoding(body, None)
    text = _DECL_TEXT.sub("", body.decode(_codec(encoding)), count=1)
    return ET.fromstring(text)
