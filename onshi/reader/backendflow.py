"""The reader and the backend: requests built, answers judged, consent, staff queries.

Why one module: every backend answer is judged here, so the fail-closed rule (a timeout, 5xx,
outage or JPKI degradation never shows the patient as eligible, with the prescribed fallback),
the 基本4情報 cross-check (mislinks) and the consent write with its Idempotency-Key are
reviewed in one place.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from onshi.cardmap import JPKI_AID
from onshi.reader import events as ev
from onshi.reader.actions import Screen
from onshi.reader.core import ReaderCore
from onshi.reader.events import Method
from onshi.reader.messages import MSG_BACKEND, MSG_MISLINKED
from onshi.reader.parse import (
    CERT_ERRORS,
    CONSENT_STEMS,
    FACE_ERRORS,
    NOTICE_EXPIRING,
    NOTICE_GRACE,
    NOTICE_UNREGISTERED,
    REVOKED,
    b64,
    find_mismatch,
    is_date8,
    number_query_problem,
    parse_answer,
    public_fields,
)
from onshi.reader.results import (
    Fallback,
    Outcome,
)
from onshi.reader.states import (
    ReaderProtocolError,
    State,
)

S = State


class BackendFlow(ReaderCore):
    """Backend requests and answers (a mixin of the reader)."""

    # the backend

    def _query_card(self) -> None:
        s = self._s
        assert s.cert_der is not None and s.method is not None
        body: dict[str, Any] = {
            "Certificate": b64(s.cert_der),
            "Method": s.method.value,
            "ArbitraryFileIdentifier": s.key,
        }
        if self.policy.limit_info_statutory:
            body["LimitApplicationCertificateRelatedConsFlg"] = "1"
        if s.method is Method.PIN:
            assert s.challenge is not None and s.signature is not None
            body["Challenge"], body["Signature"] = b64(s.challenge), b64(s.signature)
        elif s.method is Method.FACE:
            assert s.face_score is not None and s.face_at is not None
            captured = dt.datetime.fromtimestamp(s.face_at, dt.UTC)
            body["FaceMatch"] = {
                "ReaderId": self.policy.reader_id,
                "Score": round(s.face_score, 4),
                "Threshold": self.policy.face_threshold,
                "CapturedAt": captured.isoformat().replace("+00:00", "Z"),
            }
        else:
            body["VisualCheck"] = {"OperatorId": s.operator_id}
        self._call(S.QUERY_CARD, "/v1/eligibility/card", body)

    def _on_BackendFailed(self, event: ev.BackendFailed) -> None:
        self._outstanding = None
        self._cancel_timer("backend")
        self._backend_failed(event.reason)

    def _on_BackendAnswered(self, event: ev.BackendAnswered) -> None:
        self._outstanding = None
        self._cancel_timer("backend")
        getattr(self, f"_answer_{self.state.name.lower()}")(event.status, event.body)

    def _backend_failed(self, reason: str) -> None:
        """Fail closed (never eligible), with the fallback the real system prescribes."""
        if self.state is S.WRITE_CONSENT:
            self._consent_write_failed()
            return
        if self.state in (S.QUERY_NUMBERS, S.QUERY_DEMOGRAPHICS):
            # Numbers down too: a system-wide outage (support centre, then 申立書).
            fallback = Fallback.OUTAGE_MODE
            if self.state is S.QUERY_DEMOGRAPHICS:
                fallback = Fallback.SELF_DECLARATION
        else:
            fallback = Fallback.NUMBER_PATH  # card route / JPKI side: the numbers still work
        self._finish(Outcome.BACKEND_UNAVAILABLE, MSG_BACKEND, fallback=fallback)

    def _answer_get_challenge(self, status: int, body: Any) -> None:
        challenge = None
        if status == 201 and isinstance(body, dict):
            try:
                challenge = base64.b64decode(str(body.get("Challenge")), validate=True)
            except ValueError:
                challenge = None
        if challenge is None or len(challenge) != 32:
            self._backend_failed(f"challenge: HTTP {status}")
            return
        self._s.challenge = challenge
        self._select(S.SELECT_JPKI_SIGN, JPKI_AID, "SELECT JPKI AP")

    def _answer_query_card(self, status: int, body: Any) -> None:
        parsed = parse_answer(status, body)
        if parsed is None:
            self._backend_failed(f"card: HTTP {status}")
            return
        header, message_body, first = parsed
        s = self._s
        s.public.update(public_fields(header, message_body, first))
        if header.get("SegmentOfResult") != "1":
            error = str(header.get("ErrorCode", ""))
            if error in CERT_ERRORS:
                self._cert_invalid()
            elif error in FACE_ERRORS or error in ("ONSE211", "ONSE212"):
                self._finish(
                    Outcome.NOT_IDENTIFIED,
                    "本人確認ができませんでした。受付にお声がけください。",
                    fallback=Fallback.VISUAL_CHECK,
                )
            elif error == "ONSE231":
                self._finish(
                    Outcome.NOT_FOUND,
                    "このカードの資格情報が見つかりません。",
                    fallback=Fallback.NUMBER_PATH,
                )
            else:
                self._backend_failed(f"SegmentOfResult {header.get('SegmentOfResult')}")
            return
        code = str(message_body.get("ProcessingResultCode") or "")
        if message_body.get("ProcessingResultStatus") != "1":
            if code == REVOKED:
                self._cert_invalid()
            else:
                self._finish(
                    Outcome.NOT_ELIGIBLE,
                    "資格を確認できませんでした。",
                    fallback=Fallback.NUMBER_PATH,
                )
            return
        if code in (NOTICE_EXPIRING, NOTICE_GRACE):
            s.notices.append(code)
            s.in_grace = s.in_grace or code == NOTICE_GRACE
        validity = message_body.get("QualificationValidity")
        if validity != "1" or first is None:
            self._not_valid(validity, code)
            return
        mismatch = find_mismatch(s.basic4, first)
        if mismatch is None:
            self._finish(
                Outcome.NOT_IDENTIFIED,
                "カードの本人情報を読み取れず、資格情報と照合できません。受付にお声がけください。",
                fallback=Fallback.NUMBER_PATH,
            )
            return
        if mismatch:
            self._finish(
                Outcome.MISLINKED, MSG_MISLINKED, fallback=Fallback.NUMBER_PATH, mismatch=mismatch
            )
            return
        reference = message_body.get("PatientReference")
        s.patient_reference = reference if isinstance(reference, str) else None
        self._start_consent()

    def _not_valid(self, validity: Any, code: str) -> None:
        if validity == "4" and code == NOTICE_UNREGISTERED:
            self._finish(
                Outcome.NOT_REGISTERED,
                "保険証としての利用登録がありません(資格情報が登録されていません)。"
                "資格確認書または保険証をお出しください。",
                fallback=Fallback.NUMBER_PATH,
            )
        elif validity == "4":
            self._finish(
                Outcome.NOT_FOUND, "資格情報が見つかりません。", fallback=Fallback.SELF_DECLARATION
            )
        else:
            self._finish(
                Outcome.NOT_ELIGIBLE,
                "有効な資格が確認できませんでした。",
                fallback=Fallback.SELF_DECLARATION,
            )

    # consent (R-5.1 - R-5.4)

    def _start_consent(self) -> None:
        s = self._s
        items = list(self.policy.consent_items)
        for item in items:
            s.public[f"{CONSENT_STEMS[item]}ConsFlg"] = "0"
        if s.in_grace or not items or s.patient_reference is None:
            self._eligible()
            return
        s.consent_queue = ["all", *items] if self.policy.blanket_consent else items
        self._show_consent()

    def _show_consent(self) -> None:
        item = self._s.consent_queue[0]
        self._goto(S.CONSENT)
        text = (
            "すべての情報の提供に同意しますか(包括同意)"
            if item == "all"
            else f"{item} の提供に同意しますか"
        )
        self._screen(Screen.CONSENT, text, item=item, options=("agree", "decline"))
        self._start_timer("consent", self.policy.consent_timeout_s)

    def _on_ConsentAnswered(self, event: ev.ConsentAnswered) -> None:
        shown = self._s.consent_queue[0]
        if event.item != shown:
            raise ReaderProtocolError(
                f"consent for {event.item!r} answered while the screen shows {shown!r}",
                rule="R-5.1: one consent screen at a time, answered for its own item",
                state=self.state,
                event=event,
            )
        self._cancel_timer("consent")
        self._consent_answer(shown, agreed=event.agreed)

    def _consent_answer(self, item: str, *, agreed: bool) -> None:
        s = self._s
        s.consent_queue.pop(0)
        if item == "all":
            if agreed:
                s.agreed = list(self.policy.consent_items)
                s.consent_queue = []
        elif agreed:
            s.agreed.append(item)
        if s.consent_queue:
            self._show_consent()
        elif s.agreed:
            self._write_consent()
        else:
            self._eligible()

    def _write_consent(self) -> None:
        s = self._s
        s.consent_attempts += 1
        body = {"PatientReference": s.patient_reference, "Kinds": list(s.agreed)}
        self._call(S.WRITE_CONSENT, "/v1/consents", body, {"Idempotency-Key": s.key + "-consent"})

    def _answer_write_consent(self, status: int, body: Any) -> None:
        if status in (200, 201) and isinstance(body, dict):
            for key, value in body.items():
                if key.endswith(("ConsFlg", "ConsTime", "AvailableTime")):
                    self._s.public[key] = value
            self._eligible()
        else:
            self._consent_write_failed()

    def _consent_write_failed(self) -> None:
        if self._s.consent_attempts < self.policy.consent_write_attempts:
            self._write_consent()  # same Idempotency-Key: never a duplicate consent
            return
        self._eligible("資格を確認しました。同意情報は登録できませんでした(受付にお伝えください)。")

    def _eligible(self, message: str = "資格を確認しました。カードをお取りください。") -> None:
        self._finish(Outcome.ELIGIBLE, message)

    # staff queries: number path and system-outage mode

    def _staff_query(self, state: State, path: str, body: dict[str, Any]) -> None:
        if self._session is None or self._session.finished:
            card = self._session is not None and self._session.card
            self._new_session(card=card)
        self._call(state, path, body)

    def _on_NumberQueryRequested(self, event: ev.NumberQueryRequested) -> None:
        problem = number_query_problem(event)
        if problem:
            self._screen(Screen.ERROR, f"入力内容を確認してください: {problem}")
            return
        body: dict[str, Any] = {
            "InsurerNumber": event.insurer_number,
            "InsuredIdentificationNumber": event.number,
            "Birthdate": event.birthdate,
        }
        if event.symbol:
            body["InsuredCardSymbol"] = event.symbol
        if event.branch:
            body["InsuredBranchNumber"] = event.branch
        if self.policy.limit_info_statutory:
            body["LimitApplicationCertificateRelatedConsFlg"] = "1"
        self._staff_query(S.QUERY_NUMBERS, "/v1/eligibility/numbers", body)

    def _on_DemographicsQueryRequested(self, event: ev.DemographicsQueryRequested) -> None:
        if event.sex not in ("1", "2") or not is_date8(event.birthdate):
            self._screen(Screen.ERROR, "入力内容を確認してください: 性別(1/2)と生年月日(8桁)")
            return
        body = {
            "Name": event.name,
            "Sex": event.sex,
            "Birthdate": event.birthdate,
            "Address": event.address,
        }
        self._staff_query(S.QUERY_DEMOGRAPHICS, "/v1/eligibility/demographics", body)

    def _answer_query_numbers(self, status: int, body: Any) -> None:
        self._answer_lookup(status, body)

    def _answer_query_demographics(self, status: int, body: Any) -> None:
        if status == 409:
            self._finish(
                Outcome.BACKEND_UNAVAILABLE,
                "システム障害時モードが有効ではありません。被保険者資格申立書をご記入ください。",
                fallback=Fallback.SELF_DECLARATION,
            )
            return
        self._answer_lookup(status, body)

    def _answer_lookup(self, status: int, body: Any) -> None:
        parsed = parse_answer(status, body)
        if parsed is None or parsed[0].get("SegmentOfResult") != "1":
            self._backend_failed(f"HTTP {status}")
            return
        header, message_body, first = parsed
        self._s.public.update(public_fields(header, message_body, first))
        validity = message_body.get("QualificationValidity")
        if validity == "1" and first is not None:
            self._eligible("資格を確認しました。")
        else:
            self._not_valid(validity, str(message_body.get("ProcessingResultCode") or ""))
