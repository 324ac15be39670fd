"""The reference reader: ``Reader.handle(event) -> list[Action]``, sans-I/O (h11 style).

No sockets, threads, sleeps or wall clock in here: the driver moves bytes and time, the reader
decides. It knows only what a real reader knows: the card's answers, the backend's answers,
what the patient and the staff do, its policy and the injected clock. It never reads a card
profile.

Flow (one state per step, see :mod:`onshi.reader.states`):

1. identify the card: SELECT the JPKI AP, read the token (EF 0006; 住基カード, smartphone and
   unknown tokens refused with their own messages, R-1.4), read the user-auth certificate by
   DER-header length discovery (EF 000A), judge its dates (notice within 3 months, 3-month
   grace after expiry, refused beyond it: R-1.6), ask the auth PIN how many tries it has
   left with an empty VERIFY (costs nothing; 0 means locked or a 顔認証マイナンバーカード);
2. scan the card face for 照合番号B and read 基本4情報 with it (券面事項入力補助AP EF 0002), for
   the cross-check. 照合番号B is never sent blindly (R-2.5): implausible OCR is re-scanned,
   the key's tries are queried first and the last ``collation_reserve`` are never used, and a
   number the card refused is never sent again;
3. method choice (R-4.1), offering only what this card allows (no PIN when it has no tries:
   R-3.3), or the visual check in 目視確認モード (R-4.2);
4. face: 券面AP with the verified 照合番号B, the chip photo (DF27), captures against the
   policy's threshold, then PIN or staff after the policy's failures or timeout;
   PIN: the patient's digits, a backend challenge, ONE VERIFY and ONE signature; a wrong PIN
   is never re-sent, ``63 C0``/``69 84`` stop with the lock message (R-3.2);
5. ``POST /v1/eligibility/card``; any failure is fail-closed with the prescribed fallback;
   the backend's person is cross-checked with the card's 基本4情報 (mislinks);
6. consent screens (包括同意, then item by item) and ``POST /v1/consents`` with an
   Idempotency-Key, skipped during the certificate grace (eligibility only).

Staff may query by numbers or, in システム障害時モード, by demographics whenever no card check
is running. A card removed or swapped mid-check ends the session (ABORTED) and everything
learned from that card is dropped.

The roles live in their own modules: :mod:`~onshi.reader.core` (rules, outputs, sessions),
:mod:`~onshi.reader.cardread`, :mod:`~onshi.reader.identify`, :mod:`~onshi.reader.backendflow`
and the pure :mod:`~onshi.reader.parse`; this module composes them and handles the events that
cut across every flow (card slot, mode switch, timers, answers routed by state).
"""

from __future__ import annotations

from onshi.apdu import ResponseAPDU
from onshi.cardmap import JPKI_AID
from onshi.reader import events as ev
from onshi.reader.actions import Screen
from onshi.reader.backendflow import BackendFlow
from onshi.reader.cardread import CardReading
from onshi.reader.events import ReaderMode
from onshi.reader.identify import Identification
from onshi.reader.results import (
    Fallback,
    Outcome,
)
from onshi.reader.states import (
    ReaderProtocolError,
    State,
)

__all__ = ["Reader"]

S = State


class Reader(CardReading, Identification, BackendFlow):
    """One face-recognition card reader (顔認証付きカードリーダー) as a state machine."""

    # -- global events -----------------------------------------------------------------------

    def _on_CardInserted(self, event: ev.CardInserted) -> None:
        if self._session is not None and self._session.card:
            # A new card without a removal: a swap. Nothing of the old card may carry over.
            self._abort("カードが入れ替えられました。最初からやり直します。")
        elif self.session_active:
            self._abort("カードが置かれたため、受付の照会を中断しました。")
        self._cancel_all_timers()
        self._new_session(card=True)
        self._screen(Screen.READING, "カードを読み取っています。カードを動かさないでください。")
        self._select(S.SELECT_JPKI, JPKI_AID, "SELECT JPKI AP")

    def _on_CardRemoved(self, event: ev.CardRemoved) -> None:
        s = self._session
        if s is None or not s.card:
            raise ReaderProtocolError(
                f"event CardRemoved not allowed in state {self.state.name}: no card is present",
                rule="a card can only be removed after it was inserted",
                state=self.state,
                event=event,
            )
        if not s.finished and self.state not in (S.QUERY_NUMBERS, S.QUERY_DEMOGRAPHICS):
            self._abort("カードが取り外されました。最初からやり直してください。")
        s.card = False
        if s.finished:
            self._session = None
            self._cancel_all_timers()
            self._goto(S.IDLE)
            self._screen(Screen.WELCOME, "マイナンバーカードを置いてください。")
        # A staff query that runs on keeps its own session; only the card is gone.

    def _on_StaffSwitchedMode(self, event: ev.StaffSwitchedMode) -> None:
        self.mode = event.mode
        waiting = (S.CHOOSE_METHOD, S.AWAIT_STAFF, S.ENTER_PIN, S.AWAIT_FACE)
        if event.mode is ReaderMode.VISUAL and self.state in waiting:
            self._cancel_all_timers()
            self._s.pending_pin = None
            self._visual_check()
        elif event.mode is not ReaderMode.VISUAL and self.state is S.VISUAL_CHECK:
            self._cancel_all_timers()
            self._after_card_reads()

    def _on_TimerFired(self, event: ev.TimerFired) -> None:
        name = next((n for n, i in self._timers.items() if i == event.timer_id), None)
        if name is None:
            return  # cancelled or from an earlier step: nothing to do
        del self._timers[name]
        if name == "backend":
            self._outstanding = None
            self._backend_failed("timeout")
        elif name == "face":
            self._face_fallback("顔認証の時間が過ぎました。")
        elif name == "pin":
            self._s.pending_pin = None
            self._ask_staff("暗証番号の入力がありませんでした。")
        elif name == "choice":
            self._finish(
                Outcome.NOT_IDENTIFIED,
                "操作がなかったため終了しました。カードを置き直してください。",
                fallback=Fallback.RETRY,
            )
        elif name == "staff":
            self._finish(
                Outcome.NOT_IDENTIFIED,
                "本人確認ができませんでした。",
                fallback=Fallback.VISUAL_CHECK,
            )
        elif name == "consent":
            self._consent_answer(self._s.consent_queue[0], agreed=False)

    # -- card answers ------------------------------------------------------------------------

    def _on_ApduAnswered(self, event: ev.ApduAnswered) -> None:
        self._outstanding = None
        raw = event.response
        if len(raw) < 2:
            self._unreadable(f"{len(raw)}-byte answer")
            return
        response = ResponseAPDU(raw[:-2], int.from_bytes(raw[-2:], "big"))
        getattr(self, f"_apdu_{self.state.name.lower()}")(response)

    def _on_ApduFailed(self, event: ev.ApduFailed) -> None:
        self._outstanding = None
        self._unreadable(event.reason)

    def _after_card_reads(self) -> None:
        """Where to go once the card is read: by mode, and by what this card allows."""
        s = self._s
        if self.mode is ReaderMode.OUTAGE:
            if s.basic4 is not None and s.basic4.get("sex") in ("1", "2"):
                b = s.basic4
                body = {
                    "Name": b["name"],
                    "Sex": b["sex"],
                    "Birthdate": b["birthdate"],
                    "Address": b["address"],
                }
                self._call(S.QUERY_DEMOGRAPHICS, "/v1/eligibility/demographics", body)
                return
            self._finish(
                Outcome.BACKEND_UNAVAILABLE,
                "システム障害時モードです。受付で氏名・生年月日・住所をお伝えください。",
                fallback=Fallback.OUTAGE_MODE,
            )
            return
        if self.mode is ReaderMode.VISUAL:
            self._visual_check()
            return
        options = self._options()
        if not options:
            self._ask_staff("この カードでは顔認証・暗証番号を利用できません。")
            return
        self._goto(S.CHOOSE_METHOD)
        self._screen(
            Screen.CHOOSE_METHOD,
            "本人確認の方法を選んでください。",
            options=tuple(m.value for m in options),
            tries_left=s.pin_tries,
        )
        self._start_timer("choice", self.policy.choice_timeout_s)
