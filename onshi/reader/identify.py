"""Identifying the patient: method choice, face, PIN and the staff's visual check.

Why one module: these are the steps where a person acts and a secret may be spent, so the PIN
safety rules sit together (R-3.2: a PIN is used for exactly one VERIFY and never re-sent, stop
at ``63 C0`` / ``69 84``; one VERIFY and one signature per check) with the face fallbacks
(R-2.6, R-3.3: a card without PIN tries never offers PIN).
"""

from __future__ import annotations

import hashlib

from onshi.apdu import ResponseAPDU
from onshi.cardmap import (
    JPKI_AID,
    JPKI_AUTH_KEY,
    JPKI_AUTH_PIN,
    KENMEN_AID,
    KENMEN_COLLATION_B,
    KENMEN_FACE,
    SHA256_DIGEST_INFO_PREFIX,
)
from onshi.reader import events as ev
from onshi.reader.actions import Screen
from onshi.reader.core import ReaderCore
from onshi.reader.events import Method
from onshi.reader.messages import MSG_PIN_LOCKED
from onshi.reader.parse import (
    PIN_SHAPE,
    build_command,
    has_face_photo,
    tries_left,
)
from onshi.reader.results import (
    Fallback,
    Outcome,
)
from onshi.reader.states import State
from onshi.tlv import TLVError, object_size

S = State


class Identification(ReaderCore):
    """Method choice, face, PIN and visual check (a mixin of the reader)."""

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
        tries = tries_left(r.sw)
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
        if r.sw != 0x9000 or not has_face_photo(r.data):
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
        if not PIN_SHAPE.fullmatch(event.digits):
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
        tries = tries_left(r.sw)
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
        command = build_command(0x80, 0x2A, 0x00, 0x80, digest_info, le=256)
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
