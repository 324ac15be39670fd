"""The PIN-mode eligibility flow of a face-recognition reader against the reference backend.

After the card path (:mod:`onshi.quickstart.cardpath`), a reader in PIN mode reads the holder's
基本4情報 (券面事項入力補助AP, EF 0002, behind the 4-digit text PIN), asks the backend for a
challenge (``POST /v1/challenges``), has the card sign it (VERIFY the auth PIN, then
``80 2A 00 80`` over the SHA-256 DigestInfo of the challenge bytes: openapi.yaml says the
backend checks RSASSA-PKCS1-v1_5 SHA-256 over those bytes), and sends the certificate, the
challenge and the signature, base64, to ``POST /v1/eligibility/card`` with method ``pin``.
The verdict comes from the backend's answer, checked against what the card says of its holder.

HTTP is :mod:`urllib.request` (standard library), loopback only, bounded by a per-request
timeout.
"""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from onshi.cardmap import (
    BASIC4_TAGS,
    JPKI_AUTH_KEY,
    JPKI_AUTH_PIN,
    KENHOJO_AID,
    KENHOJO_BASIC4,
    KENHOJO_PIN,
    SHA256_DIGEST_INFO_PREFIX,
    SMARTPHONE_TOKENS,
)
from onshi.quickstart.cardpath import (
    CardPathContext,
    _apdu,
    _expect_ok,
    _select_ef,
    _select_jpki,
    _verify,
)
from onshi.quickstart.steps import Outcome, Step, StepFailed
from onshi.tlv import TLVError, iter_tlv, object_size

HTTP_TIMEOUT = 10.0
"""Bound on one backend request (the run's hard timeout bounds them all)."""


@dataclass(slots=True, kw_only=True)
class EligibilityContext(CardPathContext):
    """The card path's context plus the backend it talks to and what it answered."""

    backend_url: str | None = None
    facility_code: str | None = None
    facility_secret: str | None = None
    basic4: dict[str, str] | None = None
    """基本4情報 as the card stores it: name, address, birthdate (yyyymmdd), sex."""
    backend_challenge: bytes | None = None
    backend_signature: bytes | None = None
    answer: dict[str, Any] | None = None
    """The backend's JSON answer to ``POST /v1/eligibility/card``."""


# -- 基本4情報 ---------------------------------------------------------------------------------


def record_length(head: bytes) -> int:
    """Total length of a ``FF 20 <len> ...`` record from its first bytes (tag + length)."""
    try:
        return object_size(head)
    except TLVError as error:
        raise ValueError(f"unsupported BER length in the record header: {error}") from None


def parse_basic4(record: bytes) -> dict[str, str]:
    """The items of EF 0002 (``FF 20`` { ``DF21`` offsets, ``DF22``-``DF25`` }), decoded."""
    if record[:2] != b"\xff\x20":
        raise ValueError(f"record starts {record[:2].hex(' ').upper()}, not FF 20")
    size = record_length(record)
    if size > len(record):
        raise ValueError(f"record says {size} bytes, only {len(record)} were read")
    ((_, inner, _),) = iter_tlv(record, 0, size)
    fields = {tag: name for name, tag in BASIC4_TAGS.items()}
    items = {
        fields[tag]: value.decode("utf-8") for tag, value, _ in iter_tlv(inner) if tag in fields
    }
    missing = [name for name in BASIC4_TAGS if name not in items]
    if missing:
        raise ValueError(f"record lacks {', '.join(missing)}")
    return items


def read_basic4(ctx: EligibilityContext) -> Outcome:
    """SELECT the 券面事項入力補助AP, VERIFY the text PIN (EF 0011), read EF 0002."""
    from onshi.apdu import describe_sw, select_aid

    pin = ctx.profile.text_pin.value
    if pin is None:
        raise StepFailed("the profile declares no text PIN: 基本4情報 cannot be read")
    selected = ctx.send(select_aid(KENHOJO_AID))
    if selected.sw == 0x6A82 and ctx.token in SMARTPHONE_TOKENS:
        # [I] スマホ用電子証明書 carry only the JPKI AP: the holder is compared with the
        # profile's 基本4情報 instead of the card's.
        return Outcome("no 券面事項入力補助AP on a smartphone: the profile's holder", selected.sw)
    if selected.sw != 0x9000:
        raise StepFailed(f"SELECT 券面事項入力補助AP: {describe_sw(selected.sw)}", sw=selected.sw)
    _select_ef(ctx, KENHOJO_PIN, "text PIN")
    response = ctx.send(_apdu(0x00, 0x20, 0x00, 0x80, pin.encode("ascii")))
    if response.sw != 0x9000:
        raise StepFailed(f"VERIFY text PIN: {describe_sw(response.sw)}", sw=response.sw)
    _select_ef(ctx, KENHOJO_BASIC4, "基本4情報")
    head = _expect_ok(ctx, _apdu(0x00, 0xB0, 0x00, 0x00, le=5), "READ BINARY 基本4情報 header")
    try:
        total = record_length(head.data)
    except ValueError as error:
        raise StepFailed(f"基本4情報 header {head.data.hex(' ').upper()}: {error}") from None
    body = _expect_ok(ctx, _apdu(0x00, 0xB0, 0x00, 0x00, le=total), "READ BINARY 基本4情報")
    try:
        ctx.basic4 = parse_basic4(body.data)
    except (ValueError, UnicodeDecodeError) as error:
        raise StepFailed(f"基本4情報 does not parse: {error}", sw=body.sw) from None
    b = ctx.basic4
    return Outcome(f"{b['name']}, born {b['birthdate']}, sex {b['sex']}", body.sw)


# -- the backend -------------------------------------------------------------------------------


def call_backend(ctx: EligibilityContext, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    """POST ``body`` as JSON with the facility credential; (status, decoded JSON answer)."""
    if ctx.backend_url is None or ctx.facility_code is None or ctx.facility_secret is None:
        raise StepFailed("no backend: the set-up did not start one")
    request = urllib.request.Request(
        ctx.backend_url + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "X-Facility-Code": ctx.facility_code,
            "Authorization": f"Bearer {ctx.facility_secret}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as reply:
            status, raw = reply.status, reply.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    except OSError as error:
        raise StepFailed(f"POST {path}: {error}") from None
    try:
        return status, json.loads(raw)
    except ValueError:
        raise StepFailed(f"POST {path}: HTTP {status}, body is not JSON: {raw[:120]!r}") from None


def _problem(path: str, status: int, answer: Any) -> StepFailed:
    detail = answer.get("detail") if isinstance(answer, dict) else None
    return StepFailed(f"POST {path}: HTTP {status}" + (f": {detail}" if detail else ""))


def get_challenge(ctx: EligibilityContext) -> Outcome:
    """``POST /v1/challenges`` as the facility: 32 fresh bytes, base64."""
    status, answer = call_backend(ctx, "/v1/challenges", {})
    if status != 201:
        raise _problem("/v1/challenges", status, answer)
    try:
        challenge = base64.b64decode(answer["Challenge"], validate=True)
    except (KeyError, TypeError, ValueError):
        raise StepFailed(f"challenge answer has no base64 Challenge: {answer!r:.120}") from None
    if len(challenge) != 32:
        raise StepFailed(f"challenge is {len(challenge)} bytes, not 32")
    ctx.backend_challenge = challenge
    return Outcome(f"{challenge[:8].hex()}… expires {answer.get('ExpiresAt', '?')}")


def sign_backend_challenge(ctx: EligibilityContext) -> Outcome:
    """SELECT the JPKI AP, VERIFY the auth PIN, sign the backend's challenge with key 0017."""
    if ctx.backend_challenge is None:
        raise StepFailed("no challenge to sign")
    _select_jpki(ctx)
    _select_ef(ctx, JPKI_AUTH_PIN, "auth PIN")
    _verify(ctx)
    _select_ef(ctx, JPKI_AUTH_KEY, "auth key")
    digest_info = SHA256_DIGEST_INFO_PREFIX + hashlib.sha256(ctx.backend_challenge).digest()
    response = _expect_ok(
        ctx, _apdu(0x80, 0x2A, 0x00, 0x80, digest_info, le=256), "COMPUTE DIGITAL SIGNATURE"
    )
    if len(response.data) != 256:
        raise StepFailed(f"signature is {len(response.data)} bytes, not 256", sw=response.sw)
    ctx.backend_signature = response.data
    return Outcome("VERIFY 90 00, 256-byte signature", response.sw)


def check_eligibility(ctx: EligibilityContext) -> Outcome:
    """``POST /v1/eligibility/card`` (method pin): the answer must confirm a valid
    qualification (SegmentOfResult 1, QualificationValidity 1) of the card's holder."""
    if ctx.certificate is None or ctx.backend_challenge is None or ctx.backend_signature is None:
        raise StepFailed("no certificate, challenge or signature to send")
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    from cryptography.hazmat.primitives.serialization import Encoding

    query = {
        "Certificate": b64(ctx.certificate.public_bytes(Encoding.DER)),
        "Method": "pin",
        "Challenge": b64(ctx.backend_challenge),
        "Signature": b64(ctx.backend_signature),
    }
    status, answer = call_backend(ctx, "/v1/eligibility/card", query)
    if status != 200 or not isinstance(answer, dict):
        raise _problem("/v1/eligibility/card", status, answer)
    ctx.answer = answer
    header = answer.get("MessageHeader", {})
    body = answer.get("MessageBody", {})
    segment = header.get("SegmentOfResult")
    if segment != "1":
        error = f"{header.get('ErrorCode', '?')} {header.get('ErrorMessage', '')}".strip()
        raise StepFailed(f"SegmentOfResult {segment}: {error}")
    validity = body.get("QualificationValidity")
    if validity != "1":
        code = body.get("ProcessingResultCode", "")
        raise StepFailed(f"QualificationValidity {validity} (not 1) {code}".strip())
    results = body.get("ResultList") or []
    if not results:
        raise StepFailed("QualificationValidity 1 but ResultList is empty")
    first = results[0]
    mismatch = holder_mismatch(first, ctx)
    if mismatch:
        raise StepFailed(f"the answer's person is not the card's holder: {mismatch}")
    ratio = first.get("InsuredPartialContributionRatio")
    return Outcome(
        f"QualificationValidity 1, holder matches, copay {copay_text(ratio)}, "
        f"insurer {first.get('InsurerName')} ({first.get('InsurerNumber')})"
    )


def holder_mismatch(result: dict[str, Any], ctx: EligibilityContext) -> str:
    """What differs between the answer's person and the card's 基本4情報 ('' if nothing).

    Names are compared with spaces removed: the card stores 氏名 with a full-width space, and
    [I] the backend's spacing is not guaranteed to be the card's."""
    if ctx.basic4 is not None:
        name, birthdate = ctx.basic4["name"], ctx.basic4["birthdate"]
    else:
        name = ctx.profile.holder.name
        birthdate = ctx.profile.holder.birthdate.strftime("%Y%m%d")
    squeeze = lambda text: "".join(str(text).split())  # noqa: E731
    problems = []
    if squeeze(result.get("Name", "")) != squeeze(name):
        problems.append(f"Name 「{result.get('Name')}」 vs card 「{name}」")
    if result.get("Birthdate") != birthdate:
        problems.append(f"Birthdate {result.get('Birthdate')} vs card {birthdate}")
    return "; ".join(problems)


def copay_text(ratio: Any) -> str:
    """InsuredPartialContributionRatio (three digits, percent: ``030`` = 3割) for people."""
    if isinstance(ratio, str) and ratio.isdigit():
        return f"{int(ratio)}% ({ratio})"
    return str(ratio)


def eligibility_summary(ctx: EligibilityContext) -> dict[str, Any] | None:
    """The facts of the answer the summary shows (None when no answer came)."""
    if ctx.answer is None:
        return None
    body = ctx.answer.get("MessageBody", {})
    first = (body.get("ResultList") or [{}])[0]
    return {
        "backend": ctx.backend_url,
        "segment_of_result": ctx.answer.get("MessageHeader", {}).get("SegmentOfResult"),
        "qualification_validity": body.get("QualificationValidity"),
        "copay_ratio": first.get("InsuredPartialContributionRatio"),
        "insurer_number": first.get("InsurerNumber"),
        "insurer_name": first.get("InsurerName"),
        "name": first.get("Name"),
        "birthdate": first.get("Birthdate"),
    }


ELIGIBILITY_PATH: tuple[Step[EligibilityContext], ...] = (
    Step(name="basic4", title="read 基本4情報 (text PIN, EF 0002)", run=read_basic4),
    Step(name="challenge", title="POST /v1/challenges", run=get_challenge),
    Step(name="sign_challenge", title="VERIFY PIN, sign the challenge", run=sign_backend_challenge),
    Step(name="eligibility", title="POST /v1/eligibility/card (pin)", run=check_eligibility),
)
"""The backend half of a PIN-mode 資格確認, after :data:`~onshi.quickstart.cardpath.CARD_PATH`."""
