"""The HTTP contract (`openapi.yaml`) as data: one reading for everything that needs it.

The app serves it at `/openapi.json`, the access log takes its route table from it, and the
tests check the server against it; it sits below all of them so imports run one way.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml


@cache
def openapi_document() -> dict[str, Any]:
    """The contract (``openapi.yaml``) as a JSON-ready dict, read once per process."""
    source = resources.files("onshi.backend").joinpath("openapi.yaml").read_text("utf-8")
    return yaml.safe_load(source)
