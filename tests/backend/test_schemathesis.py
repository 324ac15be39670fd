"""Property-based run of the OpenAPI contract against the in-process app (schemathesis).

Every operation gets generated requests (valid and schema-conforming ones, bounded per
operation); the app must never answer 5xx, never answer a status the contract does not list,
and every response must match its documented schema and content type. The admin operations are
served by the admin layer and tested in test_admin.py.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from onshi.backend.app import create_app

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def schema(population, pki):
    app = create_app(db_path=population.path, pki=pki, batch_worker=False)
    loaded = schemathesis.openapi.from_asgi("/openapi.json", app)
    return loaded.exclude(path_regex="^/admin")


def _operations(population_path=None):
    from onshi.backend.app import openapi_document

    doc = openapi_document()
    return [
        (method.upper(), path)
        for path, ops in doc["paths"].items()
        if not path.startswith("/admin")
        for method in ops
    ]


@pytest.mark.parametrize(("method", "path"), _operations())
def test_contract_holds_for_generated_requests(schema, headers, method: str, path: str) -> None:
    operation = schema[path][method]
    strategy = operation.as_strategy()

    from hypothesis import given

    @settings(
        max_examples=30,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    run()
