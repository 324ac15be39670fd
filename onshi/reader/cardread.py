"""Reading the card: identification, the certificate, PIN tries, the card face and 基本4情報.

Why one module: these steps run before any method is chosen and only learn (token, certificate
dates, tries left, the verified 照合番号B, 基本4情報); none of them spends a patient's secret.
The 照合番号B safety rules (R-2.5: plausible OCR only, tries queried first, the last
``collation_reserve`` never used, a refused number never re-sent) live here.
"""

from __future__ import annotations

from typing import Any

from onshi.apdu import ResponseAPDU
from onshi.cardmap import (
    JPKI_AUTH_CERT,
    JPKI_AUTH_PIN,
    JPKI_TOKEN,
    JPKI_TOKEN_LENGTH,
    KENHOJO_AID,
    KENHOJO_BASIC4,
    KENHOJO_COLLATION_B,
    SMARTPHONE_TOKENS,
    Token,
)
from onshi.dates import add_months
from onshi.reader import events as ev
from onshi.reader.actions import Screen
from onshi.reader.core import ReaderCore
from onshi.reader.messages import (
    MSG_CERT_INVALID,
    MSG_EXPIRING,
    MSG_GRACE,
    MSG_JUKI,
    MSG_NOT_MY_NUMBER,
    MSG_SMARTPHONE,
)
from onshi.reader.parse import (
    NOTICE_EXPIRING,
    NOTICE_GRACE,
    parse_basic4,
    plausible_collation_b,
    tries_left,
)
from onshi.reader.results import (
    Fallback,
    Outcome,
)
from onshi.reader.states import State
from onshi.tlv import TLVError, object_size

S = State


class CardReading(ReaderCore):
    """Card identification and the card-face reads (a mixin of the reader)."""

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
            s.notices.append(NOTICE_GRACE)
            self._screen(Screen.NOTICE, MSG_GRACE, code="006")
        elif add_months(now, 3) > not_after:
            s.notices.append(NOTICE_EXPIRING)
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
        self._s.pin_tries = tries_left(r.sw)
        self._scan_card_face()

    # card face and 基本4情報

    def _scan_card_face(self, message: str = "カードの券面を読み取ります。") -> None:
        self._goto(S.SCAN_CARD_FACE)
        self._screen(Screen.SCAN_CARD_FACE, message)

    def _on_CardFaceScanned(self, event: ev.CardFaceScanned) -> None:
        s = self._s
        s.ocr_scans += 1
        digits = event.collation_b
        if digits is None or not plausible_collation_b(digits) or digits in s.rejected_b:
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
        tries = tries_left(r.sw)
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
        if tries_left(r.sw) and s.ocr_scans < self.policy.ocr_attempts:
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
            self._s.basic4 = parse_basic4(r.data)
        self._after_card_reads()
