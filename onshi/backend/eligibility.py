"""The eligibility semantics: certificates, card authentication, outcomes and the answer.

Rule 1: everything that decides *what* the backend answers lives here (which certificate is
accepted, how the holder proves it, which notice code rides on a success, what a mislinked card
returns); ``answers.py`` shapes the answer (QualificationValidity from the hits, the public
fields), ``app.py`` only moves bytes and ``xmlmsg.py`` only re-encodes.
Rule 2: nothing here reads the wall clock; the app passes ``now`` (Unix seconds) in.

Certificates: the chain is checked once per distinct certificate (bounded LRU keyed by the
base64 text as sent) with ``TestPKI.check_certificate``; the time-dependent part (not yet valid,
expired, 3-month grace, expiring within 3 months) is recomputed on every request from the
cached dates. The states, the renewal window and the grace rule are the PKI's
(:mod:`onshi.pki.verify`), so this fast path and ``CertCheck.state`` agree to the second.
Revocation comes from the card's row in the store (our stand-in for JPKI's CRL/OCSP answer).
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from onshi.backend.answers import envelope, error_body, jst_date, result_body
from onshi.backend.auth import ApiProblem, PatientReference, PatientReferences
from onshi.backend.codes import (
    CONSENT_FIELD_PREFIX,
    Code,
    ConsentKind,
    ReferenceClassification,
    ResultCode,
    SegmentOfResult,
)
from onshi.backend.queries import CardQuery, NumberQuery
from onshi.pki import JST, CertState, TestPKI, expiring_from, grace_end

CHALLENGE_TTL_S = 300.0
"""Challenges live 5 minutes and are single-use."""
FACE_MAX_AGE_S = 300.0
"""A face-match attestation older than this is stale."""
FACE_MAX_SKEW_S = 30.0
"""Tolerated clock skew for an attestation dated in the future."""


_CHAIN_ERRORS = {
    CertState.MALFORMED: Code.CERT_MALFORMED,
    CertState.UNKNOWN_ISSUER: Code.CERT_UNKNOWN_ISSUER,
    CertState.BAD_SIGNATURE: Code.CERT_BAD_SIGNATURE,
    CertState.NOT_YET_VALID: Code.CERT_NOT_YET_VALID,
    CertState.EXPIRED: Code.CERT_EXPIRED,
}

_NOTICES = {
    CertState.EXPIRED_IN_GRACE: Code.CERT_EXPIRED_GRACE,
    CertState.EXPIRING: Code.CERT_EXPIRING,
}
"""The notice code a success carries for a certificate in this state."""


@dataclass(frozen=True, slots=True)
class _Chain:
    """The time-independent verdict on one certificate."""

    trusted: CertState | None
    """None when the chain verifies; otherwise UNKNOWN_ISSUER or BAD_SIGNATURE."""
    serial: int
    not_before: float
    not_after: float
    expiring_from: float
    """From this moment ``not_after`` is within 3 calendar months (renewal notice)."""
    grace_until: float
    public_key: Any


class CertificateVerifier:
    """Chain checks against the test CA, cached by the certificate's base64 text."""

    def __init__(self, pki: TestPKI, *, cache_size: int = 8192) -> None:
        self._pki = pki
        self._cache: OrderedDict[str, _Chain] = OrderedDict()
        self._size = cache_size

    def chain(self, b64_der: str) -> _Chain:
        hit = self._cache.get(b64_der)
        if hit is not None:
            self._cache.move_to_end(b64_der)
            return hit
        try:
            # The request parser checked the alphabet and the length (the contract's shape).
            der = base64.b64decode(b64_der, validate=True)
            cert = x509.load_der_x509_certificate(der)
            public_key = cert.public_key()
        except ValueError:
            # Undecodable base64 or not DER: the request had the contract's shape, so this is
            # a result-file answer (ONSE200), not a 4xx.
            malformed = _Chain(CertState.MALFORMED, 0, 0.0, 0.0, 0.0, 0.0, None)
            self._cache[b64_der] = malformed
            if len(self._cache) > self._size:
                self._cache.popitem(last=False)
            return malformed
        if not isinstance(public_key, rsa.RSAPublicKey):
            trusted: CertState | None = CertState.UNKNOWN_ISSUER
        else:
            check = self._pki.check_certificate(cert, "auth", at=cert.not_valid_before_utc)
            untrusted = (CertState.UNKNOWN_ISSUER, CertState.BAD_SIGNATURE)
            trusted = check.status if check.status in untrusted else None
        not_after = cert.not_valid_after_utc
        chain = _Chain(
            trusted,
            cert.serial_number,
            cert.not_valid_before_utc.timestamp(),
            not_after.timestamp(),
            expiring_from(not_after).timestamp(),
            grace_end(not_after).timestamp(),
            public_key,
        )
        self._cache[b64_der] = chain
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return chain

    @staticmethod
    def state(chain: _Chain, now: float) -> CertState:
        """The certificate's standing at ``now`` (comparisons only: the dates are precomputed)."""
        if chain.trusted is not None:
            return chain.trusted
        if now < chain.not_before:
            return CertState.NOT_YET_VALID
        if now > chain.not_after:
            return CertState.EXPIRED_IN_GRACE if now < chain.grace_until else CertState.EXPIRED
        if now > chain.expiring_from:
            return CertState.EXPIRING
        return CertState.VALID


class Eligibility:
    """The lookups, bound to one store, one PKI and one patient-reference key."""

    def __init__(self, store: Any, pki: TestPKI, references: PatientReferences) -> None:
        self.store = store
        self.certs = CertificateVerifier(pki)
        self.references = references

    # --- challenges -------------------------------------------------------------------------

    def new_challenge(self, facility_code: str, now: float) -> tuple[bytes, float]:
        nonce = secrets.token_bytes(32)
        expires_at = now + CHALLENGE_TTL_S
        self.store.put_challenge(nonce, facility_code, expires_at)
        return nonce, expires_at

    # --- card path --------------------------------------------------------------------------

    def by_card(self, facility_code: str, query: CardQuery, now: float) -> dict[str, Any]:
        """Eligibility by card: chain, holder authentication, revocation, then the lookup."""

        def fail(code: ResultCode) -> dict[str, Any]:
            return envelope(
                facility_code=facility_code,
                now=now,
                reference=ReferenceClassification.CARD,
                segment=SegmentOfResult.ABNORMAL,
                error=code,
                arbitrary_id=query.arbitrary_id,
            )

        chain = self.certs.chain(query.certificate)
        state = self.certs.state(chain, now)
        if state in _CHAIN_ERRORS:
            return fail(_CHAIN_ERRORS[state])
        refused = self._authenticate_holder(facility_code, query, chain, now)
        if refused is not None:
            return fail(refused)
        found = self.store.card_with_hits(chain.serial)
        if found is None:
            return fail(Code.CARD_UNKNOWN)
        card, hits = found
        today = jst_date(now)
        answer = lambda body: envelope(  # noqa: E731
            facility_code=facility_code,
            now=now,
            reference=ReferenceClassification.CARD,
            body=body,
            arbitrary_id=query.arbitrary_id,
        )
        if _is_revoked(card, today):
            return answer(error_body(Code.CERT_REVOKED))
        if not card.registered or card.linked_person_id is None:
            return answer(
                result_body([], today=today, with_limit=False, notice=Code.CARD_UNREGISTERED)
            )
        notice = _NOTICES.get(state)
        body = result_body(hits, today=today, with_limit=query.with_limit, notice=notice)
        # Mislinked cards answer the linked person's data, as the real system did (2023).
        body["PatientReference"] = self.references.issue(
            PatientReference(
                facility_code=facility_code,
                person_id=card.linked_person_id,
                in_grace=state is CertState.EXPIRED_IN_GRACE,
                issued_at=now,
            )
        )
        return answer(body)

    def _authenticate_holder(
        self, facility_code: str, query: CardQuery, chain: _Chain, now: float
    ) -> ResultCode | None:
        if query.method == "pin":
            assert query.challenge is not None and query.signature is not None
            if not self.store.take_challenge(query.challenge, facility_code, now):
                return Code.CHALLENGE_INVALID
            try:
                chain.public_key.verify(
                    query.signature, query.challenge, padding.PKCS1v15(), hashes.SHA256()
                )
            except InvalidSignature:
                return Code.SIGNATURE_INVALID
            return None
        if query.method == "face":
            face = query.face
            assert face is not None
            if face.score < face.threshold:
                return Code.FACE_NOT_MATCHED
            age = now - face.captured_at
            if age > FACE_MAX_AGE_S or age < -FACE_MAX_SKEW_S:
                return Code.FACE_STALE
        # 目視確認: the staff operator id was required by the request parser; nothing to verify.
        return None

    # --- number, demographics and 公費 paths -------------------------------------------------

    def by_numbers(self, facility_code: str, query: NumberQuery, now: float) -> dict[str, Any]:
        hits = self.store.lookup_by_numbers(
            insurer_number=query.insurer_number,
            symbol=query.symbol,
            number=query.number,
            branch=query.branch,
            birthdate=query.birthdate,
        )
        body = result_body(
            hits, today=jst_date(now), with_limit=query.with_limit, search_info=query.echo()
        )
        return envelope(
            facility_code=facility_code,
            now=now,
            reference=ReferenceClassification.NUMBERS,
            body=body,
            arbitrary_id=query.arbitrary_id,
        )

    def answer_hits(
        self, facility_code: str, hits: Sequence[Any], now: float, *, with_limit: bool
    ) -> dict[str, Any]:
        """An answer for hits found some other way (outage-mode and 公費 lookups)."""
        body = result_body(hits, today=jst_date(now), with_limit=with_limit)
        return envelope(facility_code=facility_code, now=now, reference=None, body=body)

    # --- consent and records ----------------------------------------------------------------

    @staticmethod
    def consent_view(consent: Any) -> dict[str, Any]:
        """The consent as the public ``<stem>ConsFlg/ConsTime/AvailableTime`` fields."""
        cons_time = consent.consented_at.astimezone(JST).strftime("%Y%m%d%H%M%S")
        until = consent.available_until.astimezone(JST).strftime("%Y%m%d%H%M%S")
        view: dict[str, Any] = {"ConsentId": consent.id, "Kinds": sorted(consent.kinds)}
        for kind, stem in CONSENT_FIELD_PREFIX.items():
            given = kind.value in consent.kinds
            view[f"{stem}ConsFlg"] = "1" if given else "0"
            if given:
                view[f"{stem}ConsTime"] = cons_time
                view[f"{stem}AvailableTime"] = until
        return view


def _is_revoked(card: Any, today: dt.date) -> bool:
    if not getattr(card, "revoked", False):
        return False
    revoked_on = getattr(card, "revoked_on", None)
    return revoked_on is None or revoked_on <= today


def consent_kinds(values: Any) -> frozenset[str]:
    """Validate the requested consent kinds (422 naming the field otherwise)."""
    allowed = {k.value for k in ConsentKind}
    if (
        not isinstance(values, list)
        or not values
        or not all(isinstance(v, str) and v in allowed for v in values)
    ):
        raise ApiProblem(
            422,
            "Invalid consent kinds",
            "Kinds must be a non-empty list of consent kinds",
            field="Kinds",
            fix=f"use some of {sorted(allowed)}",
        )
    return frozenset(values)
