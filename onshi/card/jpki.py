"""The 公的個人認証AP (JPKI AP) of a profile: token, certificates, two RSA keys, two secrets.

EF map (card_apdu.md §2.1): 0001 sign cert (behind 001B), 0002 sign CA, 0006 token info,
0008 presence flags, 000A auth cert (free; behind 0018 on smartphone tokens), 000B auth CA,
0017/0018 auth key and PIN, 001A/001B sign key and password.

A card without a signature certificate (holders under 15, 顔認証 cards issued without one)
has no 0001/001A/001B: SELECT answers ``6A 82`` and EF 0008 byte 0 is ``00`` [I]. Likewise a
token without a user-authentication certificate (住基カード) has no 000A/0017/0018.
"""

from __future__ import annotations

import hashlib
import struct
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.serialization import Encoding

from onshi.card.filesystem import (
    Application,
    BinaryEF,
    KeyRef,
    Node,
    SecretFormat,
    SigningKey,
    lazy,
)
from onshi.card.signing import DigestInfoSigner
from onshi.cardmap import (
    AID_NAMES,
    JPKI_AID,
    JPKI_AUTH_CA,
    JPKI_AUTH_CERT,
    JPKI_AUTH_KEY,
    JPKI_AUTH_PIN,
    JPKI_FLAGS,
    JPKI_SIGN_CA,
    JPKI_SIGN_CERT,
    JPKI_SIGN_KEY,
    JPKI_SIGN_PASSWORD,
    JPKI_TOKEN,
)
from onshi.profiles.model import CardProfile, Secret

if TYPE_CHECKING:
    from onshi.pki import CardCredentials

__all__ = ["build_jpki", "token_info"]

_CKF_RNG, _CKF_LOGIN_REQUIRED, _CKF_USER_PIN_INITIALIZED, _CKF_TOKEN_INITIALIZED = (
    0x1,
    0x4,
    0x8,
    0x400,
)


def token_info(profile: CardProfile) -> bytes:
    """EF 0006: a PKCS#11 ``CK_TOKEN_INFO`` serialised big-endian, 160 bytes (SOL [C]).

    label[32] = the token, space padded (what every client reads); manufacturerID[32],
    model[16], serialNumber[16], eleven u32 (flags, session counts, PIN lengths, memory),
    hardware/firmware versions (2+2), utcTime[16]. The values after the label are not public:
    ours name the emulator and derive the serial from the profile seed [I].
    """
    serial = hashlib.sha256(f"{profile.seed}/serial".encode()).hexdigest()[:16].upper()
    flags = _CKF_RNG | _CKF_LOGIN_REQUIRED | _CKF_USER_PIN_INITIALIZED | _CKF_TOKEN_INITIALIZED
    body = (
        profile.token.value.encode("ascii").ljust(32, b" ")
        + b"onshi emulated card".ljust(32, b" ")
        + b"JPKI AP".ljust(16, b" ")
        + serial.encode("ascii")
        + struct.pack(">11I", flags, 0, 0, 0, 0, 16, 4, 0, 0, 0, 0)
        + bytes((1, 0, 1, 0))
        + b" " * 16
    )
    assert len(body) == 160
    return body


def _der(cert) -> bytes:
    return cert.public_bytes(Encoding.DER)


def _key(fid: int, counter: str, secret: Secret, fmt: SecretFormat) -> KeyRef:
    return KeyRef(fid, counter, secret.max_tries, fmt, secret.value, secret.remaining, True)


def build_jpki(profile: CardProfile, creds: CardCredentials) -> Application:
    """The JPKI AP's files for ``profile``, certificates and keys from ``creds``."""
    has_sign = (
        profile.sign_cert.present and creds.sign_cert is not None and creds.sign_key is not None
    )
    has_auth = profile.auth_cert.present
    auth_read = (JPKI_AUTH_PIN,) if profile.auth_cert_needs_pin else ()
    files: dict[int, Node] = {
        JPKI_SIGN_CA: BinaryEF(JPKI_SIGN_CA, lazy(lambda: _der(creds.sign_ca_cert))),
        JPKI_TOKEN: BinaryEF(JPKI_TOKEN, lazy(lambda: token_info(profile))),
        JPKI_FLAGS: BinaryEF(
            JPKI_FLAGS, lazy(lambda: bytes((0x8F if has_sign else 0, 0x8F if has_auth else 0, 0)))
        ),
        JPKI_AUTH_CA: BinaryEF(JPKI_AUTH_CA, lazy(lambda: _der(creds.auth_ca_cert))),
    }
    if has_auth:
        files[JPKI_AUTH_PIN] = _key(
            JPKI_AUTH_PIN, "jpki.auth_pin", profile.auth_pin, SecretFormat.PIN4
        )
        files[JPKI_AUTH_CERT] = BinaryEF(
            JPKI_AUTH_CERT, lazy(lambda: _der(creds.auth_cert)), auth_read
        )
        files[JPKI_AUTH_KEY] = SigningKey(
            JPKI_AUTH_KEY, DigestInfoSigner(creds.auth_key), JPKI_AUTH_PIN
        )
    if has_sign:
        files[JPKI_SIGN_CERT] = BinaryEF(
            JPKI_SIGN_CERT, lazy(lambda: _der(creds.sign_cert)), (JPKI_SIGN_PASSWORD,)
        )
        files[JPKI_SIGN_KEY] = SigningKey(
            JPKI_SIGN_KEY, DigestInfoSigner(creds.sign_key), JPKI_SIGN_PASSWORD
        )
        files[JPKI_SIGN_PASSWORD] = _key(
            JPKI_SIGN_PASSWORD, "jpki.sign_password", profile.sign_password, SecretFormat.PASSWORD
        )
    return Application(AID_NAMES[JPKI_AID], JPKI_AID, files)
