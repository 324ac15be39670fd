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
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import secrets
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from onshi.apdu import CommandAPDU, ResponseAPDU
from onshi.backend.codes import CONSENT_FIELD_PREFIX
from onshi.cardmap import (
    BASIC4_TAGS,
    JPKI_AID,
    JPKI_AUTH_CERT,
    JPKI_AUTH_KEY,
    JPKI_AUTH_PIN,
    JPKI_TOKEN,
    JPKI_TOKEN_LENGTH,
    KENHOJO_AID,
    KENHOJO_BASIC4,
    KENHOJO_COLLATION_B,
    KENMEN_AID,
    KENMEN_COLLATION_B,
    KENMEN_FACE,
    SMARTPHONE_TOKENS,
    Token,
)
from onshi.clock import Clock
from onshi.dates import JST, add_months
from onshi.reader import actions as act
from onshi.reader import events as ev
from onshi.reader.actions import Screen
from onshi.reader.events import Method, ReaderMode
from onshi.reader.policy import CONSENT_ITEMS, ReaderPolicy
from onshi.reader.results import (
    PUBLIC_RESULT_FIELDS,
    Fallback,
    Outcome,
    ReaderResult,
    SessionCounts,
)
from onshi.reader.states import (
    EVENTS,
    GLOBAL_EVENTS,
    NEXT,
    ReaderProtocolError,
    State,
)
from onshi.tlv import TLVError, iter_tlv, object_size

__all__ = ["Reader"]

S = State
SHA256_DIGEST_INFO_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")
"""DER DigestInfo header for SHA-256: the card pads, the host hashes (card_apdu.md §8 D)."""
_CONSENT_STEMS = {kind.value: stem for kind, stem in CONSENT_FIELD_PREFIX.items()}
"""Public field stems of the consent items (openapi.yaml ``Consent``)."""
_CERT_ERRORS = {"ONSE200", "ONSE201", "ONSE202", "ONSE203", "ONSE204"}
_FACE_ERRORS = {"ONSE221", "ONSE222"}
_NOTICE_EXPIRING, _NOTICE_GRACE, _NOTICE_UNREGISTERED = "ONSW001", "ONSW002", "ONSW003"
_REVOKED = "ONSE101"
_COLLATION_B = re.compile(r"[0-9]{14}")
_PIN = re.compile(r"[0-9]{4}")

MSG_NOT_MY_NUMBER = "マイナンバーカード以外のカードです。マイナンバーカードを置いてください。"
MSG_JUKI = "住基カードは保険証として利用できません。マイナンバーカードを置いてください。"
MSG_SMARTPHONE = "スマートフォンのマイナ保険証は汎用カードリーダーにかざしてください。"
MSG_UNREADABLE = "マイナンバーカードを認識できません。カードを置き直してください。"
MSG_EXPIRING = (
    "証明書の有効期限が3か月以内となっています。市区町村の窓口で更新手続きをお願いします。"
)
MSG_GRACE = (
    "証明書の有効期限が切れています(猶予期間中)。資格情報のみ確認します。"
    "市区町村の窓口で更新してください。"
)
MSG_CERT_INVALID = (
    "利用者証明用電子証明書の失効・有効期限切れです。資格確認書または保険証をお出しください。"
)
MSG_PIN_LOCKED = "暗証番号がロックされています。市区町村の窓口でロックを解除してください。"
MSG_BACKEND = "資格確認ができませんでした(システムに接続できません)。受付にお声がけください。"
MSG_MISLINKED = "カードの本人情報と資格情報が一致しません。受付にお声がけください。"


@dataclass(slots=True)
class _Session:
    """Everything learned from one card (dropped on removal or swap)."""

    number: int
    key: str
    """Idempotency-Key / ArbitraryFileIdentifier stem: unique per reader and session."""
    card: bool = True
    finished: bool = False
    token: str | None = None
    cert_head: bytes = b""
    cert_der: bytes | None = None
    in_grace: bool = False
    notices: list[str] = field(default_factory=list)
    pin_tries: int | None = None
    """Tries left on the auth PIN (``None``: the card did not say)."""
    ocr_scans: int = 0
    ocr_digits: str | None = None
    """The OCR digits being tried; cleared once sent."""
    rejected_b: set[str] = field(default_factory=set)
    collation_b: str | None = None
    """照合番号B the card accepted (safe to present to the other AP)."""
    kenhojo_present: bool = False
    basic4_head: bytes = b""
    basic4: dict[str, str] | None = None
    face_head: bytes = b""
    face_failed: bool = False
    face_failures: int = 0
    pending_pin: str | None = None
    """Digits the patient typed, used for exactly one VERIFY, then forgotten."""
    challenge: bytes | None = None
    signature: bytes | None = None
    method: Method | None = None
    operator_id: str | None = None
    face_score: float | None = None
    face_at: float | None = None
    patient_reference: str | None = None
    public: dict[str, Any] = field(default_factory=dict)
    consent_queue: list[str] = field(default_factory=list)
    agreed: list[str] = field(default_factory=list)
    consent_attempts: int = 0
    counts: SessionCounts = field(default_factory=SessionCounts)


class Reader:
    """One face-recognition card reader (顔認証付きカードリーダー) as a state machine."""

    def __init__(
        self,
        policy: ReaderPolicy | None = None,
        *,
        clock: Clock,
        new_key: Callable[[], str] | None = None,
    ) -> None:
        """``new_key`` gives each session its Idempotency-Key stem (default: 128 random bits;
        derived from the clock it repeated across runs that start at the same virtual time,
        so a second run's consent was taken for the first one's)."""
        self.policy = policy or ReaderPolicy()
        self.clock = clock
        self._new_key = new_key or (lambda: secrets.token_hex(16))
        self.mode: ReaderMode = self.policy.mode
        self.state: State = S.IDLE
        self._ids = 0
        self._outstanding: int | None = None
        self._timers: dict[str, int] = {}
        self._sessions = 0
        self._session: _Session | None = None
        self._out: list[act.Action] = []
        self._event: ev.Event | None = None

    # -- the public surface ----------------------------------------------------------------

    def handle(self, event: ev.Event) -> list[act.Action]:
        """Feed one event; get what the reader does about it, in order."""
        self._check_allowed(event)
        self._out = []
        self._event = event
        answers = ev.ApduAnswered | ev.ApduFailed | ev.BackendAnswered | ev.BackendFailed
        if isinstance(event, answers) and not self._is_outstanding(event):
            return []  # a late answer to a request the reader gave up on
        handler = getattr(self, f"_on_{type(event).__name__}")
        handler(event)
        return self._out

    @property
    def session_active(self) -> bool:
        """A card check (or a staff query) is running and has not produced its result."""
        return self._session is not None and not self._session.finished

    # -- rules -------------------------------------------------------------------------------

    def _check_allowed(self, event: ev.Event) -> None:
        kind = type(event)
        if kind in GLOBAL_EVENTS or kind in EVENTS[self.state]:
            return
        answers = ev.ApduAnswered | ev.ApduFailed | ev.BackendAnswered | ev.BackendFailed
        if isinstance(event, answers) and self._known_stale(event.request_id):
            return
        raise ReaderProtocolError(
            f"event {kind.__name__} not allowed in state {self.state.name}",
            rule="EVENTS: each state accepts only its own events",
            state=self.state,
            event=event,
        )

    def _known_stale(self, request_id: int) -> bool:
        return 0 < request_id <= self._ids and request_id != self._outstanding

    def _is_outstanding(self, event: Any) -> bool:
        if event.request_id == self._outstanding:
            return True
        if self._known_stale(event.request_id):
            return False
        raise ReaderProtocolError(
            f"answer to request {event.request_id}, which the reader never sent",
            rule="answers quote the request_id of an action the reader returned",
            state=self.state,
            event=event,
        )

    def _goto(self, state: State) -> None:
        if state not in NEXT[self.state]:
            raise AssertionError(f"transition {self.state.name} -> {state.name} not in NEXT")
        self.state = state

    # -- output helpers ----------------------------------------------------------------------

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def _count(self, **more: int) -> None:
        s = self._s
        values = {k: getattr(s.counts, k) + v for k, v in more.items()}
        s.counts = replace(s.counts, **values)

    def _screen(self, screen: Screen, message: str, **kw: Any) -> None:
        self._out.append(act.ShowScreen(screen=screen, message=message, **kw))

    def _apdu(self, state: State, command: CommandAPDU, purpose: str) -> None:
        self._goto(state)
        self._outstanding = self._next_id()
        raw = command.to_bytes()
        out = act.SendApdu(request_id=self._outstanding, command=raw, purpose=purpose)
        self._count(
            apdus=1,
            pin_verifies=int(state is S.VERIFY_PIN),
            collation_verifies=int(state in (S.VERIFY_KENHOJO_B, S.VERIFY_KENMEN_B)),
            signatures=int(out.is_signature),
        )
        self._out.append(out)

    def _call(
        self,
        state: State,
        path: str,
        body: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> None:
        self._goto(state)
        self._outstanding = self._next_id()
        self._count(backend_calls=1)
        self._out.append(
            act.CallBackend(
                request_id=self._outstanding,
                method="POST",
                path=path,
                body=body,
                headers=headers or {},
                timeout_s=self.policy.backend_timeout_s,
            )
        )
        self._start_timer("backend", self.policy.backend_timeout_s)

    def _start_timer(self, name: str, seconds: float) -> None:
        self._cancel_timer(name)
        timer_id = self._next_id()
        self._timers[name] = timer_id
        self._out.append(act.StartTimer(timer_id=timer_id, name=name, seconds=seconds))

    def _cancel_timer(self, name: str) -> None:
        timer_id = self._timers.pop(name, None)
        if timer_id is not None:
            self._out.append(act.CancelTimer(timer_id=timer_id))

    def _cancel_all_timers(self) -> None:
        for name in list(self._timers):
            self._cancel_timer(name)

    @property
    def _s(self) -> _Session:
        assert self._session is not None, f"no session in state {self.state.name}"
        return self._session

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock.now(), JST)

    # -- sessions ----------------------------------------------------------------------------

    def _new_session(self, *, card: bool) -> _Session:
        self._sessions += 1
        self._session = _Session(number=self._sessions, key=self._new_key(), card=card)
        return self._session

    def _finish(
        self,
        outcome: Outcome,
        message: str,
        *,
        code: str | None = None,
        fallback: Fallback = Fallback.NONE,
        mismatch: tuple[str, ...] = (),
    ) -> None:
        """Emit the session's result once and rest in DONE (card on) or IDLE (no card)."""
        s = self._s
        self._cancel_all_timers()
        self._outstanding = None
        s.pending_pin = None
        s.finished = True
        screen = Screen.DONE if outcome is Outcome.ELIGIBLE else Screen.ERROR
        self._screen(screen, message, code=code)
        result = ReaderResult(
            outcome=outcome,
            message=message,
            method=s.method,
            code=code,
            fallback=fallback,
            notices=tuple(dict.fromkeys(s.notices)),
            public=MappingProxyType(dict(s.public)),
            mismatch=mismatch,
            counts=s.counts,
        )
        self._out.append(act.EmitResult(result=result))
        self._goto(S.DONE if s.card else S.IDLE)

    def _abort(self, message: str) -> None:
        if self.session_active:
            self._finish(Outcome.ABORTED, message, fallback=Fallback.RETRY)

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

    def _unreadable(self, why: str) -> None:
        self._finish(Outcome.CARD_UNREADABLE, MSG_UNREADABLE, code="001", fallback=Fallback.RETRY)

    def _select(self, state: State, aid: bytes, purpose: str) -> None:
        self._apdu(state, _cmd(0x00, 0xA4, 0x04, 0x0C, aid), purpose)

    def _select_ef(self, state: State, fid: int, purpose: str) -> None:
        self._apdu(state, _cmd(0x00, 0xA4, 0x02, 0x0C, fid.to_bytes(2, "big")), purpose)

    def _read(self, state: State, offset: int, length: int, purpose: str) -> None:
        extended = length > 256
        command = _cmd(0x00, 0xB0, offset >> 8, offset & 0xFF, le=length, extended=extended)
        self._apdu(state, command, purpose)

    def _query_tries(self, state: State, purpose: str) -> None:
        self._apdu(state, _cmd(0x00, 0x20, 0x00, 0x80), purpose)

    def _verify(self, state: State, secret: str, purpose: str) -> None:
        self._apdu(state, _cmd(0x00, 0x20, 0x00, 0x80, secret.encode("ascii")), purpose)

    # identification

    def _apdu_select_jpki(self, r: ResponseAPDU) -> None:
        if r.sw != 0x9000:
            self._refuse(MSG_NOT_MY_NUMBER)
            return
        self._select_ef(S.SELECT_TOKEN, JPKI_TOKEN, "SELECT token (EF 0006)")

    def _apdu_select_token(self, r: ResponseAPDU) -> None:
        if r.sw != 0x9000:
            self._refuse(MSG_NOT_MY_NUMBER)
            return
        self._read(S.READ_TOKEN, 0, JPKI_TOKEN_LENGTH, "READ token")

    def _apdu_read_token(self, r: ResponseAPDU) -> None:
        if r.sw != 0x9000:
            self._unreadable("token")
            return
        token = r.data[:JPKI_TOKEN_LENGTH].rstrip(b" \x00").decode("ascii", "replace")
        self._s.token = token
        if token not in self.policy.accepted_tokens:
            if token == Token.JUKI_CARD:
                self._refuse(MSG_JUKI)
            elif token in SMARTPHONE_TOKENS:
                self._refuse(MSG_SMARTPHONE, code=None)
            else:
                self._refuse(MSG_NOT_MY_NUMBER)
            return
        self._select_ef(S.SELECT_AUTH_CERT, JPKI_AUTH_CERT, "SELECT auth certificate (EF 000A)")

    def _refuse(self, message: str, *, code: str | None = "002") -> None:
        self._finish(Outcome.CARD_REFUSED, message, code=code, fallback=Fallback.NUMBER_PATH)

    def _apdu_select_auth_cert(self, r: ResponseAPDU) -> None:
        if r.sw != 0x9000:
            self._cert_invalid()
            return
        self._read(S.READ_CERT_HEAD, 0, 4, "READ certificate header")

    def _apdu_read_cert_head(self, r: ResponseAPDU) -> None:
        try:
            size = object_size(r.data) if r.sw == 0x9000 and r.data[:1] == b"\x30" else 0
        except TLVError:
            size = 0
        if size <= len(r.data) or size > 0xFFFF:
            self._unreadable("certificate header")
            return
        self._s.cert_head = r.data
        self._read(S.READ_CERT_BODY, len(r.data), size - len(r.data), "READ certificate")

    def _apdu_read_cert_body(self, r: ResponseAPDU) -> None:
        from cryptography import x509

        s = self._s
        der = s.cert_head + r.data
        try:
            if r.sw != 0x9000 or object_size(der) != len(der):
                raise ValueError("short read")
            cert = x509.load_der_x509_certificate(der)
        except (ValueError, TLVError):
            self._unreadable("certificate")
            return
        s.cert_der = der
        if not self._judge_certificate(cert):
            return
        self._select_ef(S.SELECT_AUTH_PIN, JPKI_AUTH_PIN, "SELECT auth PIN (EF 0018)")

    def _judge_certificate(self, cert: Any) -> bool:
        """R-1.6 on the reader's own clock: refused before validity or beyond the grace,
        a grace notice after expiry, an expiry notice within 3 months."""
        from onshi.pki.verify import grace_end

        now = self._now()
        not_after = cert.not_valid_after_utc
        if now < cert.not_valid_before_utc or now >= grace_end(not_after):
            self._cert_invalid()
            return False
        s = self._s
        if now > not_after:
            s.in_grace = True
            s.notices.append(_NOTICE_GRACE)
            self._screen(Screen.NOTICE, MSG_GRACE, code="006")
        elif add_months(now, 3) > not_after:
            s.notices.append(_NOTICE_EXPIRING)
            self._screen(Screen.NOTICE, MSG_EXPIRING)
        return True

    def _cert_invalid(self) -> None:
        self._finish(
            Outcome.CERTIFICATE_INVALID, MSG_CERT_INVALID, code="006", fallback=Fallback.NUMBER_PATH
        )

    def _apdu_select_auth_pin(self, r: ResponseAPDU) -> None:
        if r.sw != 0x9000:
            self._s.pin_tries = 0  # no auth PIN key: PIN mode impossible
            self._scan_card_face()
            return
        self._query_tries(S.QUERY_PIN_TRIES, "VERIFY (empty): auth PIN tries left")

    def _apdu_query_pin_tries(self, r: ResponseAPDU) -> None:
        self._s.pin_tries = _tries(r.sw)
        self._scan_card_face()

    # card face and 基本4情報

    def _scan_card_face(self, message: str = "カードの券面を読み取ります。") -> None:
        self._goto(S.SCAN_CARD_FACE)
        self._screen(Screen.SCAN_CARD_FACE, message)

    def _on_CardFaceScanned(self, event: ev.CardFaceScanned) -> None:
        s = self._s
        s.ocr_scans += 1
        digits = event.collation_b
        if digits is None or not _plausible_collation_b(digits) or digits in s.rejected_b:
            if s.ocr_scans < self.policy.ocr_attempts:
                self._scan_card_face("券面を読み取れませんでした。カードを置き直してください。")
            else:
                self._after_card_reads()
            return
        s.ocr_digits = digits
        self._select(S.SELECT_KENHOJO, KENHOJO_AID, "SELECT 券面事項入力補助AP")

    def _apdu_select_kenhojo(self, r: ResponseAPDU) -> None:
        if r.sw != 0x9000:
            self._after_card_reads()  # no 券面 APs: no 基本4情報, no face photo
            return
        self._s.kenhojo_present = True
        self._select_ef(S.SELECT_KENHOJO_B, KENHOJO_COLLATION_B, "SELECT 照合番号B (0015)")

    def _apdu_select_kenhojo_b(self, r: ResponseAPDU) -> None:
        if r.sw != 0x9000:
            self._after_card_reads()
            return
        self._query_tries(S.QUERY_KENHOJO_B, "VERIFY (empty): 照合番号B tries left")

    def _apdu_query_kenhojo_b(self, r: ResponseAPDU) -> None:
        s = self._s
        tries = _tries(r.sw)
        if tries is not None and tries <= self.policy.collation_reserve:
            s.ocr_digits = None
            self._after_card_reads()
            return
        digits = s.ocr_digits
        assert digits is not None
        self._verify(S.VERIFY_KENHOJO_B, digits, "VERIFY 照合番号B (0015)")

    def _apdu_verify_kenhojo_b(self, r: ResponseAPDU) -> None:
        s = self._s
        digits, s.ocr_digits = s.ocr_digits, None
        assert digits is not None
        if r.sw == 0x9000:
            s.collation_b = digits
            self._select_ef(S.SELECT_BASIC4, KENHOJO_BASIC4, "SELECT 基本4情報 (EF 0002)")
            return
        s.rejected_b.add(digits)
        if _tries(r.sw) and s.ocr_scans < self.policy.ocr_attempts:
            self._scan_card_face("照合番号を確認できませんでした。券面を読み取り直します。")
        else:
            self._after_card_reads()

    def _apdu_select_basic4(self, r: ResponseAPDU) -> None:
        if r.sw != 0x9000:
            self._after_card_reads()
            return
        self._read(S.READ_BASIC4_HEAD, 0, 5, "READ 基本4情報 header")

    def _apdu_read_basic4_head(self, r: ResponseAPDU) -> None:
        try:
            size = object_size(r.data) if r.sw == 0x9000 else 0
        except TLVError:
            size = 0
        if not 0 < size <= 0xFFFF:
            self._after_card_reads()
            return
        self._read(S.READ_BASIC4_BODY, 0, size, "READ 基本4情報")

    def _apdu_read_basic4_body(self, r: ResponseAPDU) -> None:
        if r.sw == 0x9000:
            self._s.basic4 = _parse_basic4(r.data)
        self._after_card_reads()

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

    def _face_possible(self) -> bool:
        s = self._s
        return s.collation_b is not None and not s.face_failed

    def _pin_possible(self) -> bool:
        tries = self._s.pin_tries
        return tries is None or tries > 0

    def _options(self) -> list[Method]:
        options = [Method.FACE] if self._face_possible() else []
        return options + ([Method.PIN] if self._pin_possible() else [])

    def _on_MethodChosen(self, event: ev.MethodChosen) -> None:
        if event.method not in self._options():
            self._screen(
                Screen.CHOOSE_METHOD,
                "その方法はこのカードでは利用できません。",
                options=tuple(m.value for m in self._options()),
            )
            return
        self._cancel_timer("choice")
        if event.method is Method.FACE:
            self._start_face()
        else:
            self._enter_pin("暗証番号(4桁)を入力してください。")

    # face

    def _start_face(self) -> None:
        self._s.method = Method.FACE
        self._select(S.SELECT_KENMEN, KENMEN_AID, "SELECT 券面AP")

    def _face_unavailable(self) -> None:
        self._s.face_failed = True
        self._face_fallback("顔写真を読み取れませんでした。")

    def _apdu_select_kenmen(self, r: ResponseAPDU) -> None:
        if r.sw != 0x9000:
            self._face_unavailable()
            return
        self._select_ef(S.SELECT_KENMEN_B, KENMEN_COLLATION_B, "SELECT 照合番号B (0012)")

    def _apdu_select_kenmen_b(self, r: ResponseAPDU) -> None:
        if r.sw != 0x9000:
            self._face_unavailable()
            return
        self._query_tries(S.QUERY_KENMEN_B, "VERIFY (empty): 券面AP 照合番号B tries left")

    def _apdu_query_kenmen_b(self, r: ResponseAPDU) -> None:
        tries = _tries(r.sw)
        if tries is not None and tries <= self.policy.collation_reserve:
            self._face_unavailable()
            return
        digits = self._s.collation_b
        assert digits is not None
        self._verify(S.VERIFY_KENMEN_B, digits, "VERIFY 照合番号B (券面AP 0012)")

    def _apdu_verify_kenmen_b(self, r: ResponseAPDU) -> None:
        if r.sw != 0x9000:
            self._face_unavailable()
            return
        self._select_ef(S.SELECT_FACE, KENMEN_FACE, "SELECT 券面 (EF 0002)")

    def _apdu_select_face(self, r: ResponseAPDU) -> None:
        if r.sw != 0x9000:
            self._face_unavailable()
            return
        self._read(S.READ_FACE_HEAD, 0, 5, "READ 券面 header")

    def _apdu_read_face_head(self, r: ResponseAPDU) -> None:
        try:
            size = object_size(r.data) if r.sw == 0x9000 else 0
        except TLVError:
            size = 0
        if not 0 < size <= 0xFFFF:
            self._face_unavailable()
            return
        self._read(S.READ_FACE_BODY, 0, size, "READ 券面 (face photo DF27)")

    def _apdu_read_face_body(self, r: ResponseAPDU) -> None:
        if r.sw != 0x9000 or not _has_face_photo(r.data):
            self._face_unavailable()
            return
        self._goto(S.AWAIT_FACE)
        self._screen(Screen.LOOK_AT_CAMERA, "カメラを見てください。")
        self._start_timer("face", self.policy.face_timeout_s)

    def _on_FaceCaptured(self, event: ev.FaceCaptured) -> None:
        s = self._s
        score = event.score
        if score is not None and score >= self.policy.face_threshold:
            self._cancel_timer("face")
            s.face_score, s.face_at = score, self.clock.now()
            self._query_card()
            return
        s.face_failures += 1
        if s.face_failures >= self.policy.face_tries:
            self._face_fallback("顔認証できませんでした。")
            return
        self._screen(Screen.LOOK_AT_CAMERA, "もう一度カメラを見てください。")

    def _face_fallback(self, why: str) -> None:
        """After the face failed: PIN when the card has tries, else staff (R-2.6)."""
        s = self._s
        s.face_failed = True
        self._cancel_timer("face")
        if self.policy.offer_pin_after_face and self._pin_possible():
            self._enter_pin(why + "暗証番号(4桁)を入力してください。")
        else:
            self._ask_staff(why)

    # PIN

    def _enter_pin(self, message: str) -> None:
        s = self._s
        s.method = Method.PIN
        self._goto(S.ENTER_PIN)
        if s.pin_tries == 1:
            message += "あと1回間違えるとロックされます。"
        self._screen(Screen.ENTER_PIN, message, tries_left=s.pin_tries)
        self._start_timer("pin", self.policy.pin_timeout_s)

    def _on_PinEntered(self, event: ev.PinEntered) -> None:
        s = self._s
        if event.digits is None:
            self._cancel_timer("pin")
            if self._face_possible():
                self._start_face()
            else:
                self._ask_staff("暗証番号が分からない場合は受付にお声がけください。")
            return
        if not _PIN.fullmatch(event.digits):
            self._screen(Screen.ENTER_PIN, "暗証番号は4桁の数字です。", tries_left=s.pin_tries)
            return
        self._cancel_timer("pin")
        s.pending_pin = event.digits
        if s.challenge is None:
            self._call(S.GET_CHALLENGE, "/v1/challenges", {})
        else:
            self._select(S.SELECT_JPKI_SIGN, JPKI_AID, "SELECT JPKI AP")

    def _apdu_select_jpki_sign(self, r: ResponseAPDU) -> None:
        if r.sw != 0x9000:
            self._unreadable("JPKI AP")
            return
        self._select_ef(S.SELECT_PIN_SIGN, JPKI_AUTH_PIN, "SELECT auth PIN (EF 0018)")

    def _apdu_select_pin_sign(self, r: ResponseAPDU) -> None:
        s = self._s
        digits, s.pending_pin = s.pending_pin, None  # used once, never re-sent
        if r.sw != 0x9000 or digits is None:
            self._unreadable("auth PIN")
            return
        self._verify(S.VERIFY_PIN, digits, "VERIFY auth PIN")

    def _apdu_verify_pin(self, r: ResponseAPDU) -> None:
        s = self._s
        if r.sw == 0x9000:
            s.pin_tries = None
            self._select_ef(S.SELECT_AUTH_KEY, JPKI_AUTH_KEY, "SELECT auth key (EF 0017)")
            return
        tries = _tries(r.sw)
        if tries is None and r.sw != 0x6984:
            self._unreadable("VERIFY")
            return
        s.pin_tries = tries or 0
        if s.pin_tries > 0:
            self._enter_pin("暗証番号が違います。もう一度入力してください。")
            return
        self._screen(Screen.PIN_LOCKED, MSG_PIN_LOCKED)
        if self._face_possible():
            self._start_face()
        else:
            self._ask_staff("暗証番号がロックされています。")

    def _apdu_select_auth_key(self, r: ResponseAPDU) -> None:
        challenge = self._s.challenge
        if r.sw != 0x9000 or challenge is None:
            self._unreadable("auth key")
            return
        digest_info = SHA256_DIGEST_INFO_PREFIX + hashlib.sha256(challenge).digest()
        command = _cmd(0x80, 0x2A, 0x00, 0x80, digest_info, le=256)
        self._apdu(S.SIGN, command, "COMPUTE DIGITAL SIGNATURE (challenge)")

    def _apdu_sign(self, r: ResponseAPDU) -> None:
        if r.sw != 0x9000 or len(r.data) != 256:
            self._unreadable("signature")
            return
        self._s.signature = r.data
        self._query_card()

    # staff

    def _ask_staff(self, why: str) -> None:
        self._goto(S.AWAIT_STAFF)
        self._screen(Screen.ASK_STAFF, why + "受付にお声がけください。")
        self._start_timer("staff", self.policy.staff_timeout_s)

    def _visual_check(self) -> None:
        self._goto(S.VISUAL_CHECK)
        self._screen(Screen.VISUAL_CHECK, "目視確認: 職員がカードの顔写真とご本人を確認します。")
        self._start_timer("staff", self.policy.staff_timeout_s)

    def _on_VisualCheckDone(self, event: ev.VisualCheckDone) -> None:
        s = self._s
        operator = event.operator_id.strip()
        if not operator or len(operator) > 64:
            self._screen(Screen.VISUAL_CHECK, "職員IDを入力してください。")
            return
        self._cancel_timer("staff")
        if not event.same_person:
            self._finish(
                Outcome.NOT_IDENTIFIED,
                "カードのご本人であることを確認できませんでした。",
                fallback=Fallback.NUMBER_PATH,
            )
            return
        s.method, s.operator_id = Method.VISUAL, operator
        self._query_card()

    # the backend

    def _query_card(self) -> None:
        s = self._s
        assert s.cert_der is not None and s.method is not None
        body: dict[str, Any] = {
            "Certificate": _b64(s.cert_der),
            "Method": s.method.value,
            "ArbitraryFileIdentifier": s.key,
        }
        if self.policy.limit_info_statutory:
            body["LimitApplicationCertificateRelatedConsFlg"] = "1"
        if s.method is Method.PIN:
            assert s.challenge is not None and s.signature is not None
            body["Challenge"], body["Signature"] = _b64(s.challenge), _b64(s.signature)
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
        parsed = _parse_answer(status, body)
        if parsed is None:
            self._backend_failed(f"card: HTTP {status}")
            return
        header, message_body, first = parsed
        s = self._s
        s.public.update(_public_fields(header, message_body, first))
        if header.get("SegmentOfResult") != "1":
            error = str(header.get("ErrorCode", ""))
            if error in _CERT_ERRORS:
                self._cert_invalid()
            elif error in _FACE_ERRORS or error in ("ONSE211", "ONSE212"):
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
            if code == _REVOKED:
                self._cert_invalid()
            else:
                self._finish(
                    Outcome.NOT_ELIGIBLE,
                    "資格を確認できませんでした。",
                    fallback=Fallback.NUMBER_PATH,
                )
            return
        if code in (_NOTICE_EXPIRING, _NOTICE_GRACE):
            s.notices.append(code)
            s.in_grace = s.in_grace or code == _NOTICE_GRACE
        validity = message_body.get("QualificationValidity")
        if validity != "1" or first is None:
            self._not_valid(validity, code)
            return
        mismatch = _mismatch(s.basic4, first)
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
        if validity == "4" and code == _NOTICE_UNREGISTERED:
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
            s.public[f"{_CONSENT_STEMS[item]}ConsFlg"] = "0"
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
        problem = _number_query_problem(event)
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
        if event.sex not in ("1", "2") or not _is_date8(event.birthdate):
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
        parsed = _parse_answer(status, body)
        if parsed is None or parsed[0].get("SegmentOfResult") != "1":
            self._backend_failed(f"HTTP {status}")
            return
        header, message_body, first = parsed
        self._s.public.update(_public_fields(header, message_body, first))
        validity = message_body.get("QualificationValidity")
        if validity == "1" and first is not None:
            self._eligible("資格を確認しました。")
        else:
            self._not_valid(validity, str(message_body.get("ProcessingResultCode") or ""))


# -- pure helpers ------------------------------------------------------------------------------


def _tries(sw: int) -> int | None:
    """Tries left from ``63 Cx`` (``69 84``: 0, blocked); ``None`` when the SW does not say."""
    if sw & 0xFFF0 == 0x63C0:
        return sw & 0x0F
    if sw == 0x6984:
        return 0
    return None


def _is_date8(text: str) -> bool:
    try:
        dt.datetime.strptime(text, "%Y%m%d")
    except ValueError:
        return False
    return len(text) == 8


def _plausible_collation_b(digits: str) -> bool:
    """14 digits: 和暦 YYMMDD (a real month and day), an expiry year 2015-2099, 4 more digits.
    An OCR result that fails this is re-scanned, never presented to the card (R-2.5)."""
    if not _COLLATION_B.fullmatch(digits):
        return False
    month, day, year = int(digits[2:4]), int(digits[4:6]), int(digits[6:10])
    return 1 <= month <= 12 and 1 <= day <= 31 and 2015 <= year <= 2099


def _objects(record: bytes) -> dict[bytes, bytes]:
    """The data objects inside the ``FF 20`` record at the start of ``record``."""
    for tag, value, _ in iter_tlv(record, 0, object_size(record)):
        if tag == b"\xff\x20":
            return {t: v for t, v, _ in iter_tlv(value)}
    return {}


def _parse_basic4(record: bytes) -> dict[str, str] | None:
    """基本4情報 from EF 0002 (``None`` when it does not parse: no cross-check possible)."""
    try:
        items = _objects(record)
        out = {name: items[tag].decode("utf-8") for name, tag in BASIC4_TAGS.items()}
    except (TLVError, KeyError, UnicodeDecodeError, IndexError):
        return None
    return out


def _has_face_photo(record: bytes) -> bool:
    try:
        return bool(_objects(record).get(b"\xdf\x27"))
    except (TLVError, IndexError):
        return False


def _squeeze(text: Any) -> str:
    """Names compared regardless of width and spaces (the card uses a full-width space)."""
    return "".join(unicodedata.normalize("NFKC", str(text or "")).split())


def _mismatch(basic4: dict[str, str] | None, person: dict[str, Any]) -> tuple[str, ...] | None:
    """Public field names where the backend's person differs from the card's 基本4情報
    (``None``: the card's 基本4情報 is unknown, so nothing can be compared)."""
    if basic4 is None:
        return None
    out = []
    if _squeeze(person.get("Name")) != _squeeze(basic4["name"]):
        out.append("Name")
    if person.get("Birthdate") != basic4["birthdate"]:
        out.append("Birthdate")
    if basic4["sex"] in ("1", "2") and person.get("Sex1") not in (None, "3", basic4["sex"]):
        out.append("Sex1")
    return tuple(out)


def _parse_answer(
    status: int, body: Any
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None] | None:
    """(MessageHeader, MessageBody, first result) of a 200 answer; ``None`` if malformed."""
    if status != 200 or not isinstance(body, dict):
        return None
    header = body.get("MessageHeader")
    message_body = body.get("MessageBody") or {}
    if not isinstance(header, dict) or not isinstance(message_body, dict):
        return None
    results = message_body.get("ResultList") or []
    first = results[0] if isinstance(results, list) and results else None
    return header, message_body, first if isinstance(first, dict) else None


def _public_fields(
    header: dict[str, Any], body: dict[str, Any], first: dict[str, Any] | None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in (
        "ProcessExecutionTime",
        "QualificationConfirmationDate",
        "ReferenceClassification",
        "SegmentOfResult",
        "ErrorCode",
        "ErrorMessage",
    ):
        if key in header:
            out[key] = header[key]
    for key in (
        "ProcessingResultStatus",
        "ProcessingResultCode",
        "ProcessingResultMessage",
        "QualificationValidity",
    ):
        if key in body:
            out[key] = body[key]
    for key in PUBLIC_RESULT_FIELDS:
        if first is not None and key in first:
            out[key] = first[key]
    return out


def _number_query_problem(event: ev.NumberQueryRequested) -> str:
    if not re.fullmatch(r" *[0-9]{6,8}", event.insurer_number):
        return "保険者番号 (6-8桁)"
    if not event.number or len(event.number) > 40:
        return "番号"
    if event.branch and not re.fullmatch(r"[0-9]{2}", event.branch):
        return "枝番 (2桁)"
    if not _is_date8(event.birthdate):
        return "生年月日 (yyyyMMdd)"
    return ""


def _cmd(
    cla: int,
    ins: int,
    p1: int,
    p2: int,
    data: bytes = b"",
    le: int | None = None,
    extended: bool = False,
) -> CommandAPDU:
    return CommandAPDU(cla=cla, ins=ins, p1=p1, p2=p2, data=data, le=le, extended=extended)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


assert set(_CONSENT_STEMS) == set(CONSENT_ITEMS)
