"""The card path of a face-recognition card reader (顔認証付きカードリーダー), as steps.

What a reader does with a マイナ保険証 in PIN mode, over any :class:`~onshi.transport.Transport`
(card_apdu.md §8 traces A-D, §9): read the JPKI token, read the user-authentication
certificate (EF 000A, free), check it against the CA, query the PIN counter, VERIFY the PIN,
have the card sign a SHA-256 DigestInfo of a challenge with key 0017, and verify that signature
with the certificate. The verdict of each step comes from the card's answers, never from the
profile: the profile only supplies what the patient knows (the PIN) and what the reader expects.

Transport-agnostic on purpose: quickstart runs it through pcscd + vpcd + pyscard, and tests run
it in process in milliseconds.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from onshi.cardmap import (
    JPKI_AID,
    JPKI_AUTH_CERT,
    JPKI_AUTH_KEY,
    JPKI_AUTH_PIN,
    JPKI_TOKEN,
    JPKI_TOKEN_LENGTH,
    SHA256_DIGEST_INFO_PREFIX,
    SMARTPHONE_TOKENS,
    Token,
)
from onshi.quickstart.steps import Outcome, Step, StepFailed

if TYPE_CHECKING:
    from cryptography import x509

    from onshi.apdu import CommandAPDU, ResponseAPDU
    from onshi.pki import CertCheck, TestPKI
    from onshi.profiles.model import CardProfile
    from onshi.transport import Transport

ACCEPTED_TOKENS = (Token.MY_NUMBER_CARD, *SMARTPHONE_TOKENS)
"""Tokens of a My Number card and of the smartphone certificates. [I] The old 住基カード
(``JPKIAPICCTOKEN``) has no user-authentication certificate and is not a マイナ保険証, so a
reader refuses it; which smartphone tokens a given reader accepts is not public, so both are
accepted here."""


@dataclass(slots=True, kw_only=True)
class CardPathContext:
    """What the steps share: the transport, what the reader knows, and what it learned."""

    transport: Transport
    profile: CardProfile
    pki: TestPKI
    challenge: bytes
    """The bytes the card signs (in production the backend's challenge)."""
    at: dt.datetime
    """The moment the certificate is judged at."""
    pin: str | None = None
    """What the patient types; ``None`` means the PIN the profile declares."""
    crl: x509.CertificateRevocationList | None = None
    atr: bytes | None = None
    token: str | None = None
    certificate: x509.Certificate | None = None
    cert_check: CertCheck | None = None
    pin_tries: int | None = None
    signature: bytes | None = None
    exchanges: list[Any] = field(default_factory=list)
    """Every :class:`~onshi.exchange.Exchange`, in order."""

    def send(self, command: CommandAPDU) -> ResponseAPDU:
        from onshi.exchange import exchange

        result = exchange(self.transport, command)
        self.exchanges.append(result)
        return result.response


def _apdu(cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = None) -> Any:
    from onshi.apdu import CommandAPDU

    extended = len(data) > 255 or (le is not None and le > 256)
    return CommandAPDU(cla=cla, ins=ins, p1=p1, p2=p2, data=data, le=le, extended=extended)


def _expect_ok(ctx: CardPathContext, command: CommandAPDU, what: str) -> ResponseAPDU:
    from onshi.apdu import describe_sw

    response = ctx.send(command)
    if response.sw != 0x9000:
        raise StepFailed(f"{what}: {describe_sw(response.sw)}", sw=response.sw)
    return response


def _select_jpki(ctx: CardPathContext) -> None:
    from onshi.apdu import select_aid

    _expect_ok(ctx, select_aid(JPKI_AID), "SELECT JPKI AP")


def _select_ef(ctx: CardPathContext, fid: int, what: str) -> None:
    from onshi.apdu import select_ef

    _expect_ok(ctx, select_ef(fid), f"SELECT {what} (EF {fid:04X})")


# -- the steps ----------------------------------------------------------------------------------


def connect(ctx: CardPathContext) -> Outcome:
    """Power the card up through the reader; the ATR must be the profile's."""
    ctx.atr = ctx.transport.connect()
    seen, expected = ctx.atr.hex(" ").upper(), ctx.profile.atr.hex(" ").upper()
    if seen != expected:
        raise StepFailed(f"ATR {seen} is not the profile's {expected}")
    return Outcome(f"ATR {seen}")


def read_token(ctx: CardPathContext) -> Outcome:
    """SELECT the JPKI AP, read EF 0006: which kind of JPKI holder this is."""
    _select_jpki(ctx)
    _select_ef(ctx, JPKI_TOKEN, "token")
    response = _expect_ok(
        ctx, _apdu(0x00, 0xB0, 0x00, 0x00, le=JPKI_TOKEN_LENGTH), "READ BINARY token"
    )
    token = response.data[:JPKI_TOKEN_LENGTH].rstrip(b" \x00").decode("ascii", "replace")
    ctx.token = token
    if token == Token.JUKI_CARD:
        raise StepFailed("token JPKIAPICCTOKEN: a 住基カード, not a My Number card", sw=response.sw)
    if token not in ACCEPTED_TOKENS:
        raise StepFailed(f"unknown JPKI token {token!r}", sw=response.sw)
    return Outcome(token, response.sw)


def read_certificate(ctx: CardPathContext) -> Outcome:
    """Read the user-authentication certificate (EF 000A, no PIN on a card): the 4-byte DER
    header gives the length, the rest comes in one extended-Le READ BINARY (card_apdu.md §3.3
    style 1). Smartphone tokens guard EF 000A with the auth PIN, so it is verified first there
    (as jpki/myna does, card_apdu.md §2.1)."""
    from cryptography import x509

    pin_first = ctx.token in SMARTPHONE_TOKENS
    if pin_first:
        _select_ef(ctx, JPKI_AUTH_PIN, "auth PIN")
        _verify(ctx)
    _select_ef(ctx, JPKI_AUTH_CERT, "user-auth certificate")
    head = _expect_ok(ctx, _apdu(0x00, 0xB0, 0x00, 0x00, le=4), "READ BINARY certificate header")
    if len(head.data) != 4 or head.data[:2] != b"\x30\x82":
        raise StepFailed(f"certificate header {head.data.hex(' ').upper()} is not 30 82 hi lo")
    remaining = int.from_bytes(head.data[2:4], "big")
    body = _expect_ok(
        ctx, _apdu(0x00, 0xB0, 0x00, 0x04, le=remaining), "READ BINARY certificate body"
    )
    der = head.data + body.data
    if len(der) != remaining + 4:
        raise StepFailed(f"certificate is {len(der)} bytes, its header says {remaining + 4}")
    try:
        ctx.certificate = x509.load_der_x509_certificate(der)
    except ValueError as error:
        raise StepFailed(f"certificate does not parse as DER X.509: {error}") from None
    subject = ctx.certificate.subject.rfc4514_string()
    serial = f"{ctx.certificate.serial_number:x}"
    detail = f"{len(der)} bytes, serial {serial[:10]}…, {subject}"
    return Outcome(detail + (" (after the auth PIN)" if pin_first else ""), body.sw)


def check_certificate(ctx: CardPathContext) -> Outcome:
    """Judge the certificate with the test CA (issuer, signature, CRL, validity); the grace
    after expiry is the backend's rule (:func:`onshi.pki.verify.grace_end`)."""
    from onshi.pki.verify import CertState

    if ctx.certificate is None:
        raise StepFailed("no certificate was read")
    check = ctx.pki.check_certificate(ctx.certificate, "auth", at=ctx.at, crl=ctx.crl)
    ctx.cert_check = check
    until = f"valid until {check.not_after:%Y-%m-%d}"
    if check.revoked_on is not None:
        raise StepFailed(f"certificate revoked on {check.revoked_on:%Y-%m-%d} (CRL)")
    if not check.valid:
        detail = f"certificate {check.status} ({until})"
        if check.state is CertState.EXPIRED_IN_GRACE:
            detail += "; inside the 3-month grace in which eligibility is still confirmed"
        raise StepFailed(detail)
    if check.expires_within_3_months:
        return Outcome(f"valid, expiring within 3 months ({until})")
    return Outcome(f"valid ({until})")


def query_pin_counter(ctx: CardPathContext) -> Outcome:
    """SELECT the auth PIN (EF 0018) and send an empty VERIFY: ``63 Cx`` = x tries left."""
    from onshi.apdu import describe_sw

    _select_ef(ctx, JPKI_AUTH_PIN, "auth PIN")
    response = ctx.send(_apdu(0x00, 0x20, 0x00, 0x80))
    sw = response.sw
    if sw >> 4 == 0x63C:
        ctx.pin_tries = sw & 0x0F
    elif sw == 0x9000:
        return Outcome("already verified (90 00)", sw)
    else:
        raise StepFailed(f"PIN counter query: {describe_sw(sw)}", sw=sw)
    if ctx.pin_tries == 0:
        raise StepFailed(
            "no PIN tries left (63 C0): the auth PIN is locked, or was never set on a "
            "顔認証マイナンバーカード; identify the holder by face or visual check (目視確認)",
            sw=sw,
        )
    return Outcome(f"{ctx.pin_tries} tries left", sw)


def _verify(ctx: CardPathContext) -> ResponseAPDU:
    """VERIFY the current key EF with the PIN the patient types."""
    from onshi.apdu import describe_sw

    pin = ctx.pin if ctx.pin is not None else ctx.profile.auth_pin.value
    if pin is None:
        raise StepFailed("the card has no auth PIN (顔認証マイナンバーカード): PIN mode impossible")
    response = ctx.send(_apdu(0x00, 0x20, 0x00, 0x80, pin.encode("ascii")))
    if response.sw != 0x9000:
        raise StepFailed(f"VERIFY: {describe_sw(response.sw)}", sw=response.sw)
    return response


def verify_pin(ctx: CardPathContext) -> Outcome:
    """VERIFY the auth PIN the patient types (by default the profile's: a patient who knows it)."""
    response = _verify(ctx)
    return Outcome("PIN accepted", response.sw)


def sign_challenge(ctx: CardPathContext) -> Outcome:
    """SELECT the auth key (EF 0017) and have the card sign a SHA-256 DigestInfo."""
    _select_ef(ctx, JPKI_AUTH_KEY, "auth key")
    digest_info = SHA256_DIGEST_INFO_PREFIX + hashlib.sha256(ctx.challenge).digest()
    response = _expect_ok(
        ctx, _apdu(0x80, 0x2A, 0x00, 0x80, digest_info, le=256), "COMPUTE DIGITAL SIGNATURE"
    )
    ctx.signature = response.data
    if len(response.data) != 256:
        raise StepFailed(f"signature is {len(response.data)} bytes, not 256", sw=response.sw)
    return Outcome(f"{len(response.data)}-byte signature", response.sw)


def verify_signature(ctx: CardPathContext) -> Outcome:
    """Check the card's signature over the challenge with the certificate's public key."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    if ctx.certificate is None or ctx.signature is None:
        raise StepFailed("no certificate or no signature to check")
    key = ctx.certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise StepFailed(f"certificate key is {type(key).__name__}, not RSA")
    try:
        key.verify(ctx.signature, ctx.challenge, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise StepFailed("the signature does not verify with the certificate") from None
    return Outcome("verifies with the certificate's key (sha256WithRSA)")


CARD_PATH: tuple[Step[CardPathContext], ...] = (
    Step(name="connect", title="power up the card (ATR)", run=connect),
    Step(name="token", title="read the JPKI token (EF 0006)", run=read_token),
    Step(name="certificate", title="read the auth certificate (EF 000A)", run=read_certificate),
    Step(name="check", title="check it against the test CA + CRL", run=check_certificate),
    Step(name="pin_counter", title="query the PIN counter (EF 0018)", run=query_pin_counter),
    Step(name="verify_pin", title="VERIFY the auth PIN", run=verify_pin),
    Step(name="sign", title="sign a SHA-256 DigestInfo (0017)", run=sign_challenge),
    Step(name="verify_signature", title="verify the signature", run=verify_signature),
)
"""The reader's PIN-mode card path, in order."""
