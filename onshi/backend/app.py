"""The ASGI app of the reference backend: routes, bodies, problems; no decisions of its own.

``create_api`` builds the bare eligibility API (``asgi.Router``, orjson bodies); ``create_app``
wraps it the way a server runs it: the admin endpoint and shared control state outside
(``admin.AdminApp``), fault injection next (``faults.FaultInjector``), then the API. What an
answer *says* is decided in ``eligibility.py``; this module only authenticates, parses, calls
and encodes. Personal data never reaches a log line: errors are logged by type and path only.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import cache
from typing import Any

import orjson

from onshi.backend import batch as batches
from onshi.backend.accesslog import redact_path
from onshi.backend.admin import ControlStore, outage_mode_enabled
from onshi.backend.asgi import BodyTooLarge, Request, Response, Router
from onshi.backend.auth import ApiProblem, PatientReferences, authenticate_facility, forbidden
from onshi.backend.codes import ConsentKind
from onshi.backend.contract import openapi_document
from onshi.backend.eligibility import Eligibility, consent_kinds
from onshi.backend.faults import FaultConfig
from onshi.backend.queries import (
    CardQuery,
    DemographicsQuery,
    NumberQuery,
    SubsidyQuery,
    require_object,
    text,
)
from onshi.backend.store import IdempotencyConflict, Store
from onshi.backend.xmlmsg import XmlRequest, render_xml
from onshi.errors import OnshiError
from onshi.pki import TestPKI

log = logging.getLogger("onshi.backend")

Clock = Callable[[], float]
MAX_BODY = 1 << 20
"""Largest JSON or XML body (1 MiB); 一括照会 bodies may be 8 MiB."""
MAX_BATCH_BODY = 8 << 20
IDEMPOTENCY_KEY_MAX = 200


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status, "application/json", tuple((headers or {}).items()))


def problem_response(problem: ApiProblem) -> Response:
    headers = (("Retry-After", str(problem.retry_after)),) if problem.retry_after else ()
    return Response(
        orjson.dumps(problem.body()), problem.status, "application/problem+json", headers
    )


async def _read(request: Request, limit: int = MAX_BODY) -> bytes:
    try:
        return await request.body(limit)
    except BodyTooLarge:
        raise ApiProblem(
            413, "Body too large", f"the body exceeds {limit} bytes", fix="send a smaller request"
        ) from None


async def _json_body(request: Request, limit: int = MAX_BODY) -> Any:
    body = await _read(request, limit)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiProblem(
            400,
            "Malformed JSON",
            f"the body is not valid JSON ({exc.msg} at position {exc.pos})",
            field="body",
            fix="send a UTF-8 JSON object with Content-Type: application/json",
        ) from None


def _idempotency_key(request: Request) -> str:
    key = request.headers.get("idempotency-key")
    if key is None or not key.strip() or len(key) > IDEMPOTENCY_KEY_MAX or not key.isascii():
        raise ApiProblem(
            422 if key is not None else 400,
            "Idempotency-Key required",
            "writes need an Idempotency-Key header (1..200 ASCII characters)",
            field="Idempotency-Key",
            fix="send a fresh random key (e.g. a UUID) and resend the same key on retries",
        )
    return key.strip()


def _conflict(exc: IdempotencyConflict) -> ApiProblem:
    return ApiProblem(
        409,
        "Idempotency key reused",
        exc.message,
        field="Idempotency-Key",
        fix=exc.fix or "use a new key for a different request",
    )


class Api:
    """Handlers bound to one store, one PKI and one clock (one instance per worker process)."""

    def __init__(self, store: Store, pki: TestPKI, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        key = pki.auth_ca.key.private_numbers().d.to_bytes(256, "big")
        self.eligibility = Eligibility(store, pki, PatientReferences(_derive(key)))

    def _facility(self, request: Request) -> str:
        return authenticate_facility(self.store, request.headers)

    # -- health and contract ----------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return _json({"status": "ok"})

    async def openapi(self, request: Request) -> Response:
        return Response(_openapi_bytes())

    # -- eligibility ------------------------------------------------------------------------

    async def challenge(self, request: Request) -> Response:
        facility = self._facility(request)
        nonce, expires_at = self.eligibility.new_challenge(facility, self.clock())
        expires = dt.datetime.fromtimestamp(expires_at, dt.UTC).isoformat().replace("+00:00", "Z")
        return _json({"Challenge": base64.b64encode(nonce).decode(), "ExpiresAt": expires}, 201)

    async def card(self, request: Request) -> Response:
        facility = self._facility(request)
        query = CardQuery.parse(await _json_body(request))
        return _json(self.eligibility.by_card(facility, query, self.clock()))

    async def numbers(self, request: Request) -> Response:
        facility = self._facility(request)
        query = NumberQuery.parse(await _json_body(request))
        return _json(self.eligibility.by_numbers(facility, query, self.clock()))

    async def xml(self, request: Request) -> Response:
        facility = self._facility(request)
        message = XmlRequest.parse(await _read(request), request.headers.get("content-type"))
        if message.facility_code != facility:
            raise forbidden(
                f"MedicalInstitutionCode {message.facility_code} is not the authenticated facility",
                field="MessageHeader.MedicalInstitutionCode",
            )
        answer = self.eligibility.by_numbers(facility, message.query, self.clock())
        body, media_type = render_xml(answer, message.encoding)
        return Response(body, 200, media_type)

    async def public_subsidy(self, request: Request) -> Response:
        facility = self._facility(request)
        query = SubsidyQuery.parse(await _json_body(request))
        hits = [
            hit
            for hit in self.store.lookup_by_subsidy(query.payer_number, query.recipient_number)
            if hit.person.birthdate == query.birthdate
        ]
        answer = self.eligibility.answer_hits(facility, hits, self.clock(), with_limit=False)
        return _json(answer)

    async def demographics(self, request: Request) -> Response:
        facility = self._facility(request)
        if not outage_mode_enabled(request.scope):
            raise ApiProblem(
                409,
                "System-outage mode is off",
                "lookup by 氏名・性別・生年月日・住所 is only possible while the operator has "
                "enabled the 緊急時医療情報・資格確認機能 (system-outage mode)",
                fix="call the support centre to enable the outage mode, or use the card or "
                "number lookup",
            )
        query = DemographicsQuery.parse(await _json_body(request))
        hits = self.store.lookup_by_demographics(
            name=query.name, sex=query.sex, birthdate=query.birthdate, address=query.address
        )
        return _json(self.eligibility.answer_hits(facility, hits, self.clock(), with_limit=True))

    # -- consent and records ----------------------------------------------------------------

    async def consent(self, request: Request) -> Response:
        facility = self._facility(request)
        key = _idempotency_key(request)
        doc = require_object(await _json_body(request))
        token = text(doc, "PatientReference", max_len=512)
        kinds = consent_kinds(doc.get("Kinds"))
        now = self.clock()
        assert token is not None
        ref = self.eligibility.references.check(token, facility_code=facility, now=now)
        try:
            consent, created = self.store.record_consent(
                facility_code=facility,
                person_id=ref.person_id,
                kinds=kinds,
                idempotency_key=key,
                now=dt.datetime.fromtimestamp(now, dt.UTC),
            )
        except IdempotencyConflict as exc:
            raise _conflict(exc) from None
        return _json(self.eligibility.consent_view(consent), 201 if created else 200)

    async def records(self, request: Request) -> Response:
        facility = self._facility(request)
        kind = request.path_params["kind"]
        if kind not in {k.value for k in ConsentKind}:
            raise ApiProblem(
                404,
                "Unknown record kind",
                f"there are no records of kind {kind!r}",
                field="kind",
                fix=f"use one of {[k.value for k in ConsentKind]}",
            )
        token = request.query_params.get("PatientReference")
        if not token:
            raise ApiProblem(
                422,
                "Patient reference required",
                "PatientReference query parameter is required",
                field="PatientReference",
                fix="pass the PatientReference from the card lookup",
            )
        now = self.clock()
        ref = self.eligibility.references.check(token, facility_code=facility, now=now)
        if ref.in_grace:
            raise ApiProblem(
                403,
                "No record views with an expired certificate",
                "the card's certificate is expired (3-month grace): eligibility only, "
                "no medical information",
                code="ONSW002",
                fix="the patient must renew the certificate at the municipality",
            )
        consent = self.store.active_consent(
            facility_code=facility,
            person_id=ref.person_id,
            kind=kind,
            now=dt.datetime.fromtimestamp(now, dt.UTC),
        )
        if consent is None:
            raise ApiProblem(
                403,
                "No active consent",
                f"no consent for {kind} records within the last 24 hours",
                field="kind",
                fix="register the patient's consent (POST /v1/consents) after card verification",
            )
        records = self.store.medical_records(ref.person_id, kind)
        until = consent.available_until.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
        return _json({"Kind": kind, "AvailableUntil": until, "Records": records})

    # -- 一括照会 -----------------------------------------------------------------------------

    async def submit_batch(self, request: Request) -> Response:
        facility = self._facility(request)
        key = _idempotency_key(request)
        items = batches.parse_items(await _json_body(request, MAX_BATCH_BODY))
        now = self.clock()
        try:
            batch, created = self.store.create_batch(
                facility_code=facility,
                idempotency_key=key,
                items=items,
                now=dt.datetime.fromtimestamp(now, dt.UTC),
            )
        except IdempotencyConflict as exc:
            raise _conflict(exc) from None
        view = batches.view(batch, now)
        return _json(view, 202 if created else 200, {"Location": view["Location"]})

    async def get_batch(self, request: Request) -> Response:
        facility = self._facility(request)
        number = request.path_params["reception_number"]
        batch = self.store.batch(number) if number.isascii() and number.isdigit() else None
        if batch is None:
            raise ApiProblem(
                404,
                "Unknown reception number",
                f"no batch with ReceptionNumber {number}",
                field="reception_number",
                fix="use the ReceptionNumber returned by POST /v1/batches",
            )
        if batch.facility_code != facility:
            raise forbidden("the batch belongs to another facility", field="reception_number")
        now = self.clock()
        if batches.due(batch, now):
            batch = batches.process(self.eligibility, batch, now)
        return _json(batches.view(batch, now))


@cache
def _openapi_bytes() -> bytes:
    return orjson.dumps(openapi_document())


def _derive(secret: bytes) -> bytes:
    import hashlib

    return hashlib.sha256(b"onshi patient reference\0" + secret).digest()


def _guard(handler: Callable[[Request], Awaitable[Response]]) -> Callable[..., Any]:
    """Turn problems into problem+json and anything unexpected into a logged, bare 500."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiProblem as problem:
            return problem_response(problem)
        except OnshiError as exc:  # a store-level refusal of the input: the client's to fix
            return problem_response(
                ApiProblem(422, "Invalid request", exc.message, fix=exc.fix or "see /openapi.json")
            )
        except Exception as exc:
            # Type and path only: the exception text may carry personal data.
            log.error("internal error %s on %s", type(exc).__name__, redact_path(request.path))
            return problem_response(
                ApiProblem(500, "Internal error", "the backend failed to answer this request")
            )

    return endpoint


def _routing_error(request: Request, status: int) -> Response:
    return problem_response(
        ApiProblem(
            status,
            "Not found" if status == 404 else "Method not allowed",
            "no such endpoint" if status == 404 else "method not allowed on this endpoint",
            fix="see /openapi.json for the operations",
        )
    )


def create_api(
    *,
    db_path: str | os.PathLike[str],
    pki: TestPKI | None = None,
    clock: Clock | None = None,
    batch_worker: bool = True,
) -> Router:
    """The bare eligibility API over an existing (or new, empty) database."""
    store = Store.open(db_path)
    api = Api(store, pki or TestPKI(), clock or time.time)

    @contextlib.asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        worker = batches.BatchWorker(api.eligibility, api.clock) if batch_worker else None
        if worker is not None:
            worker.start()
        try:
            yield
        finally:
            if worker is not None:
                await worker.stop()

    router = Router(on_error=_routing_error, lifespan=lifespan)
    for method, path, handler in (
        ("GET", "/healthz", api.healthz),
        ("GET", "/openapi.json", api.openapi),
        ("POST", "/v1/challenges", api.challenge),
        ("POST", "/v1/eligibility/card", api.card),
        ("POST", "/v1/eligibility/numbers", api.numbers),
        ("POST", "/v1/eligibility/xml", api.xml),
        ("POST", "/v1/eligibility/public-subsidy", api.public_subsidy),
        ("POST", "/v1/eligibility/demographics", api.demographics),
        ("POST", "/v1/consents", api.consent),
        ("GET", "/v1/records/{kind}", api.records),
        ("POST", "/v1/batches", api.submit_batch),
        ("GET", "/v1/batches/{reception_number}", api.get_batch),
    ):
        router.add(method, path, _guard(handler))
    router.state = api
    return router


def create_app(
    *,
    db_path: str | os.PathLike[str],
    pki: TestPKI | None = None,
    clock: Clock | None = None,
    faults: FaultConfig | None = None,
    admin_token: str | None = None,
    stack: bool = False,
    batch_worker: bool = True,
) -> Any:
    """The API; with ``stack`` (implied by ``faults`` or ``admin_token``) wrapped as served.

    The served stack (``stack.build_stack``) adds the access log, ``/healthz``, the admin
    endpoint with the shared control state (faults, outage mode), overload protection and
    fault injection. ``faults`` is written to the shared control row first, as an admin PUT
    would, so every worker applies it.
    """
    api = create_api(db_path=db_path, pki=pki, clock=clock, batch_worker=batch_worker)
    if not (stack or faults is not None or admin_token is not None):
        return api
    from onshi.backend.overload import Limits
    from onshi.backend.stack import build_stack

    clock = clock or time.time
    if faults is not None:
        control = ControlStore(db_path)
        try:
            control.set_faults(faults, now=clock())
        finally:
            control.close()
    # The same clock judges outage windows, so in-process tests can move through them.
    return build_stack(
        api, db_path=str(db_path), admin_token=admin_token, limits=Limits(), clock=clock
    )


def server_app(db_path: str) -> Router:
    """The factory ``run_server("onshi.backend.app:server_app", ...)`` calls in each worker."""
    return create_api(db_path=db_path)
