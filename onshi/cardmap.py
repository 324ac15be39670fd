"""The My Number card's map: application ids, file ids, data-object tags and JPKI tokens.

One home for the numbers that the emulated card, the reader's card path, the transport contract
test, the APDU decoder and the help texts all speak (card_apdu.md §1-§2). The card builders in
:mod:`onshi.card` decide who may read what; this module only names things.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "AID_NAMES",
    "BASIC4_TAGS",
    "COMMON_AID",
    "GP_ISD_AID",
    "JPKI_AID",
    "JPKI_AUTH_CA",
    "JPKI_AUTH_CERT",
    "JPKI_AUTH_KEY",
    "JPKI_AUTH_PIN",
    "JPKI_FLAGS",
    "JPKI_SIGN_CA",
    "JPKI_SIGN_CERT",
    "JPKI_SIGN_KEY",
    "JPKI_SIGN_PASSWORD",
    "JPKI_TOKEN",
    "JPKI_TOKEN_LENGTH",
    "JUKI_AID",
    "KENHOJO_AID",
    "KENHOJO_BASIC4",
    "KENHOJO_BASIC_INFO",
    "KENHOJO_BLOCKED_KEY",
    "KENHOJO_COLLATION_A",
    "KENHOJO_COLLATION_B",
    "KENHOJO_CV_CERT",
    "KENHOJO_INTEGRITY",
    "KENHOJO_MY_NUMBER",
    "KENHOJO_PIN",
    "KENMEN_AID",
    "KENMEN_BASIC_INFO",
    "KENMEN_COLLATION_A",
    "KENMEN_COLLATION_B",
    "KENMEN_CV_CERT",
    "KENMEN_FACE",
    "KENMEN_MY_NUMBER_IMAGE",
    "SHA256_DIGEST_INFO_PREFIX",
    "SMARTPHONE_TOKENS",
    "TOKEN_KIND",
    "Token",
]

# --- applications (card_apdu.md §1) ---------------------------------------------------------

JPKI_AID = bytes.fromhex("D392F000260100000001")
"""公的個人認証AP (JPKI AP): the two certificates and keys."""
KENHOJO_AID = bytes.fromhex("D3921000310001010408")
"""券面事項入力補助AP: the My Number and 基本4情報 as text."""
KENMEN_AID = bytes.fromhex("D3921000310001010402")
"""券面事項確認AP (券面AP): the card face as signed images."""
JUKI_AID = bytes.fromhex("D3921000310001010401")
"""住基AP."""
COMMON_AID = bytes.fromhex("D3921000310001010100")
"""共通AP."""
GP_ISD_AID = bytes.fromhex("A0000001510000")
"""GlobalPlatform issuer security domain: selecting it returns the card to its power-on state."""

AID_NAMES: dict[bytes, str] = {
    JPKI_AID: "JPKI AP",
    KENHOJO_AID: "券面事項入力補助AP",
    KENMEN_AID: "券面AP",
    JUKI_AID: "住基AP",
    COMMON_AID: "共通AP",
    GP_ISD_AID: "GlobalPlatform ISD",
}
"""Application identifiers for people (the names the card's ``Application`` objects carry)."""

# --- JPKI AP files (card_apdu.md §2.1) ------------------------------------------------------

JPKI_SIGN_CERT = 0x0001
"""署名用電子証明書 (behind the signature password)."""
JPKI_SIGN_CA = 0x0002
JPKI_TOKEN = 0x0006
"""The token (``CK_TOKEN_INFO``; the first 32 bytes say which kind of JPKI holder)."""
JPKI_TOKEN_LENGTH = 0x20
"""Readers read the first 32 bytes of EF 0006."""
JPKI_FLAGS = 0x0008
JPKI_AUTH_CERT = 0x000A
"""利用者証明用電子証明書 (free on a card; behind the auth PIN on smartphone tokens)."""
JPKI_AUTH_CA = 0x000B
JPKI_AUTH_KEY = 0x0017
JPKI_AUTH_PIN = 0x0018
JPKI_SIGN_KEY = 0x001A
JPKI_SIGN_PASSWORD = 0x001B

SHA256_DIGEST_INFO_PREFIX = bytes.fromhex("3031300D060960864801650304020105000420")
"""DER DigestInfo header for SHA-256: COMPUTE DIGITAL SIGNATURE pads what the host sends, so the
host sends this header + the hash (card_apdu.md §3.2)."""

# --- 券面事項入力補助AP files (card_apdu.md §2.2) ---------------------------------------------

KENHOJO_MY_NUMBER = 0x0001
KENHOJO_BASIC4 = 0x0002
"""基本4情報: ``FF 20`` { ``DF21`` offsets, then :data:`BASIC4_TAGS` }."""
KENHOJO_INTEGRITY = 0x0003
KENHOJO_CV_CERT = 0x0004
KENHOJO_BASIC_INFO = 0x0005
KENHOJO_PIN = 0x0011
"""The 4-digit text PIN (券面事項入力補助用暗証番号)."""
KENHOJO_BLOCKED_KEY = 0x0012
KENHOJO_COLLATION_A = 0x0014
"""照合番号A: the My Number."""
KENHOJO_COLLATION_B = 0x0015
"""照合番号B: birthdate (YYMMDD), card expiry year and security code."""

BASIC4_TAGS: dict[str, bytes] = {
    "name": b"\xdf\x22",
    "address": b"\xdf\x23",
    "birthdate": b"\xdf\x24",
    "sex": b"\xdf\x25",
}
"""The data objects of 基本4情報 in EF 0002, in card order."""

# --- 券面AP files (card_apdu.md §2.3) ---------------------------------------------------------

KENMEN_FACE = 0x0002
KENMEN_BASIC_INFO = 0x0003
KENMEN_CV_CERT = 0x0004
KENMEN_MY_NUMBER_IMAGE = 0x0005
KENMEN_COLLATION_B = 0x0012
KENMEN_COLLATION_A = 0x0013

# --- tokens (card_apdu.md §1) ---------------------------------------------------------------


class Token(StrEnum):
    """JPKI AP token (EF 0006, first 32 bytes, space padded): which kind of JPKI holder."""

    MY_NUMBER_CARD = "JPKIAPICCTOKEN2"
    JUKI_CARD = "JPKIAPICCTOKEN"
    ANDROID = "JPKIAPGPSETOKEN"
    IPHONE = "JPKIAPIOSTOKEN"


TOKEN_KIND: dict[str, str] = {
    Token.MY_NUMBER_CARD: "My Number card",
    Token.JUKI_CARD: "住基カード",
    Token.ANDROID: "Android",
    Token.IPHONE: "iPhone",
}
"""What each token means for people; Android and iPhone carry スマホ用電子証明書."""

SMARTPHONE_TOKENS = (Token.ANDROID, Token.IPHONE)
"""Tokens of スマホ用電子証明書: only a JPKI AP, and EF 000A behind the auth PIN."""
