"""Request bodies the backend tests build from population fixture rows."""

from __future__ import annotations

from typing import Any


def number_query(row: dict[str, Any], **extra: str) -> dict[str, Any]:
    """A number-path query (保険者番号, 記号, 番号, 枝番, 生年月日) for a fixture row."""
    q = {
        "InsurerNumber": row["insurer_number"],
        "InsuredIdentificationNumber": row["number"],
        "Birthdate": row["birthdate"].replace("-", ""),
        **extra,
    }
    if row.get("symbol") is not None:
        q.setdefault("InsuredCardSymbol", row["symbol"])
    if row.get("branch") is not None:
        q.setdefault("InsuredBranchNumber", row["branch"])
    return q
