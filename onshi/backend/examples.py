"""Ready requests for the population's fixture rows, in the API's own field names.

``Store.fixtures()`` keeps rows in the store's terms (snake_case, ISO dates); a person calling
the API needs the request body as ``openapi.yaml`` spells it (``InsurerNumber``, ``Birthdate``
as yyyyMMdd, ...). This module is the one translation, used by ``onshi backend fixtures``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from onshi.backend.queries import ymd8

NUMBERS_PATH = "/v1/eligibility/numbers"
SUBSIDY_PATH = "/v1/eligibility/public-subsidy"
DEMOGRAPHICS_PATH = "/v1/eligibility/demographics"
CARD_PATH = "/v1/eligibility/card"


def birthdate(row: dict[str, Any]) -> str:
    """A row's ISO birthdate as the API's ``Birthdate`` (yyyyMMdd)."""
    return ymd8(dt.date.fromisoformat(row["birthdate"]))


def number_body(row: dict[str, Any], *, with_limit: bool = False) -> dict[str, str]:
    """The ``POST /v1/eligibility/numbers`` body (QualificationConfirmSearchInfo) of a row."""
    body = {"InsurerNumber": row["insurer_number"]}
    if row.get("symbol") is not None:
        body["InsuredCardSymbol"] = row["symbol"]
    body["InsuredIdentificationNumber"] = row["number"]
    if row.get("branch") is not None:
        body["InsuredBranchNumber"] = row["branch"]
    body["Birthdate"] = birthdate(row)
    if with_limit:
        body["LimitApplicationCertificateRelatedConsFlg"] = "1"
    return body


def example_request(kind: str, row: dict[str, Any]) -> dict[str, Any] | None:
    """``{"method", "path", "body"}`` that asks the API about ``row`` of fixture ``kind``.

    ``None`` for facility rows (they are credentials: see :func:`facility_headers`) and card
    rows: a card request carries the card's certificate, which is minted from the row
    (``population.card_certificate``), and is sent by a reader (``onshi quickstart``).
    """
    if kind == "facility" or "serial" in row:
        return None
    if kind == "demographics":
        body: dict[str, str] = {
            "Name": row["name"],
            "Sex": row["sex"],
            "Birthdate": birthdate(row),
            "Address": row["address"],
        }
        return {"method": "POST", "path": DEMOGRAPHICS_PATH, "body": body}
    if kind == "with_public_subsidy":
        body = {
            "PublicExpensePayerNumber": row["payer_number"],
            "PublicExpenseRecipientNumber": row["recipient_number"],
            "Birthdate": birthdate(row),
        }
        return {"method": "POST", "path": SUBSIDY_PATH, "body": body}
    body = number_body(row, with_limit=kind == "with_limit_class")
    return {"method": "POST", "path": NUMBERS_PATH, "body": body}


def facility_headers(row: dict[str, Any]) -> dict[str, str]:
    """The authentication headers of a facility row (its plain test secret)."""
    return {"X-Facility-Code": row["code"], "Authorization": f"Bearer {row['secret']}"}
