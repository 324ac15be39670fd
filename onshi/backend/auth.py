"""Who is asking: facility credentials, the admin credential, patient references, problems.

Every operation except ``/healthz`` and ``/openapi.json`` needs a facility credential: the
医療機関コード in ``X-Facility-Code`` and the facility's secret as ``Authorization: Bearer``.
A missing or wrong credential is 401; a valid credential used for another facility's data
(a batch, a consent, a patient reference, an XML MedicalInstitutionCode) is 403.

A *patient reference* is what a card lookup hands back so that the facility can register consent
and fetch records later without presenting the card again (the real flow asks consent on the
reader right after identity verification). It is a MAC-signed, stateless token naming the
facility, the person the card is linked to and whether the certificate is in its expiry grace
(no record views then), so every worker process can check it without shared state.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any

import orjson

FACILITY_HEADER = "x-facility-code"
_PREFIX = "pr2."
PATIENT_REFERENCE = re.compile(r"^pr2\.[A-Za-z0-9_-]{1,400}\.[A-Za-z0-9_-]{1,100}$")
"""The shape of a reference (the contract's ``PatientReference`` pattern)."""
PATIENT_REFERENCE_TTL_S = 24 * 3600
"""A reference is as long-lived as the consent window it serves (24 h)."""


class ApiProblem(Exception):
    """An RFC 9457 problem answered to the client: what went wrong, which field, how to fix.

    A plain exception (not a frozen dataclass): frameworks assign ``__traceback__`` on it.
    """

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        field: str | None = None,
        fix: str | None = None,
        code: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.field = field
        self.fix = fix
        self.code = code
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        """The ``application/problem+json`` document."""
        doc: dict[str, Any] = {
            "type": f"https://onshi.invalid/problems/{self.status}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.field is not None:
            doc["field"] = self.field
        if self.fix is not None:
            doc["fix"] = self.fix
        if self.code is not None:
            doc["code"] = self.code
        return doc


def unauthorized(detail: str) -> ApiProblem:
    return ApiProblem(
        401,
        "Unauthorized",
        detail,
        field="Authorization",
        fix="send X-Facility-Code: <10-digit 医療機関コード> and Authorization: Bearer <secret>",
    )


def forbidden(detail: str, *, field: str | None = None) -> ApiProblem:
    return ApiProblem(
        403,
        "Forbidden",
        detail,
        field=field,
        fix="use the credential of the facility that owns this resource",
    )


def authenticate_facility(store: Any, headers: Any) -> str:
    """Return the authenticated 医療機関コード or raise a 401 problem."""
    code = headers.get(FACILITY_HEADER)
    auth = headers.get("authorization")
    if not code or not auth:
        raise unauthorized("missing facility credential")
    scheme, _, secret = auth.partition(" ")
    if scheme.lower() != "bearer" or not secret:
        raise unauthorized("the Authorization header must be 'Bearer <secret>'")
    if len(code) != 10 or not code.isdigit() or not code.isascii():
        raise unauthorized("X-Facility-Code must be a 10-digit 医療機関コード")
    if not store.verify_facility_secret(code, secret.strip()):
        raise unauthorized("unknown facility or wrong secret")
    return code


def check_admin(headers: Any, admin_token: str | None) -> None:
    """Raise 401 unless the request carries the admin bearer token (constant-time compare)."""
    auth = headers.get("authorization") or ""
    scheme, _, token = auth.partition(" ")
    if admin_token is None or scheme.lower() != "bearer" or not token:
        raise unauthorized("the admin endpoints need Authorization: Bearer <admin token>")
    if not hmac.compare_digest(token.strip().encode(), admin_token.encode()):
        raise unauthorized("wrong admin token")


@dataclass(frozen=True, slots=True)
class PatientReference:
    """What a patient reference token says."""

    facility_code: str
    person_id: int
    in_grace: bool
    """The certificate was expired-in-grace at lookup: eligibility only, no record views."""
    issued_at: float


class PatientReferences:
    """Issue and check patient references with a MAC key shared by every worker.

    The MAC is keyed BLAKE2b with a 128-bit tag (RFC 7693's keyed mode, a MAC by design; the
    format tag ``pr2`` names it). Every card answer carries a reference, and on the card path
    this costs a third of an HMAC-SHA256 through OpenSSL and touches far less memory.
    """

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if not 16 <= len(key) <= 64:
            raise ValueError("a patient reference key is 16..64 bytes")
        self._key = key

    def _mac(self, payload: bytes) -> bytes:
        return hashlib.blake2b(payload, key=self._key, digest_size=16).digest()

    def issue(self, ref: PatientReference) -> str:
        payload = orjson.dumps(
            [ref.facility_code, ref.person_id, int(ref.in_grace), int(ref.issued_at)]
        )
        return _PREFIX + _b64(payload) + "." + _b64(self._mac(payload))

    def check(self, token: str, *, facility_code: str, now: float) -> PatientReference:
        """Decode a reference or raise the right problem.

        Not the contract's shape (``PATIENT_REFERENCE``): 422. The right shape but not ours (the
        MAC does not verify: forged, or issued by a backend with another key), another
        facility's, or expired: 403, since the request is well formed and simply refused.
        """
        if PATIENT_REFERENCE.fullmatch(token) is None:
            raise ApiProblem(
                422,
                "Invalid patient reference",
                "PatientReference does not have the form of a patient reference",
                field="PatientReference",
                fix="use the PatientReference returned by POST /v1/eligibility/card",
            )
        _, body, tag = token.split(".")
        try:
            payload = _unb64(body)
            mac = _unb64(tag)
        except ValueError:
            payload = mac = b""
        if not mac or not hmac.compare_digest(mac, self._mac(payload)):
            raise forbidden(
                "PatientReference is not a reference this backend issued",
                field="PatientReference",
            )
        facility, person_id, in_grace, issued_at = orjson.loads(payload)
        if facility != facility_code:
            raise forbidden(
                "the patient reference was issued to another facility", field="PatientReference"
            )
        if now - issued_at > PATIENT_REFERENCE_TTL_S:
            raise ApiProblem(
                403,
                "Patient reference expired",
                "the patient reference is older than 24 hours",
                field="PatientReference",
                fix="verify the patient's card again",
            )
        return PatientReference(facility, int(person_id), bool(in_grace), float(issued_at))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError(str(exc)) from None
