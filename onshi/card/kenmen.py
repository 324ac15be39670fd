"""The 券面事項確認AP (券面AP, "visual" AP): the card face as signed images (card_apdu.md §2.3).

EF 0002 card face (照合番号A 0013 or 照合番号B 0012), EF 0003 AP basic info and EF 0004 CV
certificate (free), EF 0005 rendered My Number (照合番号A only). The 生年月日 key 0011 and
its age record EF 0001 are not modelled (single-source layout) and answer ``6A 82``.
"""

from __future__ import annotations

import hashlib

from onshi.card.filesystem import Application, BinaryEF, KeyRef, Node, SecretFormat, lazy
from onshi.card.photo import face_photo_jp2, text_image_png
from onshi.card.records import (
    cv_certificate,
    offset_table,
    pad_ff,
    record_issuer,
    rsa_public_object,
)
from onshi.cardmap import (
    AID_NAMES,
    KENMEN_AID,
    KENMEN_BASIC_INFO,
    KENMEN_COLLATION_A,
    KENMEN_COLLATION_B,
    KENMEN_CV_CERT,
    KENMEN_FACE,
    KENMEN_MY_NUMBER_IMAGE,
)
from onshi.profiles.model import CardProfile
from onshi.tlv import tlv

__all__ = ["build_kenmen", "face_record"]

COLLATION_B, COLLATION_A = KENMEN_COLLATION_B, KENMEN_COLLATION_A
CA_ID, KEY_ID = "6000023", "onshi-kenmen-1"
"""Test-card CA key id (SOL: 6000023 on test cards) and our issuer key id [I]."""


def face_record(profile: CardProfile) -> bytes:
    """EF 0002: ``FF 20`` { ``DF21`` offsets of the nine items, ``DF22`` 生年月日, ``DF23``
    性別, ``DF24`` issuer public key, ``DF25`` 氏名 PNG, ``DF26`` 住所 PNG, ``DF27`` face
    photo (greyscale JPEG 2000), ``DF28`` signature, ``DF29`` 有効期限, ``DF2A``
    セキュリティコード PNG }. The signature covers the ``DF22``..``DF27`` objects (SHA-256
    PKCS#1 v1.5; the exact range is our inference [I]); ``DF29`` is not covered (SOL)."""
    issuer = record_issuer(CA_ID, KEY_ID)
    h = profile.holder
    signed = [
        tlv(b"\xdf\x22", h.birthdate.strftime("%Y%m%d").encode("ascii")),
        tlv(b"\xdf\x23", h.sex.value.encode("ascii")),
        tlv(b"\xdf\x24", rsa_public_object(issuer.key.public_key())),
        tlv(b"\xdf\x25", text_image_png(h.name)),
        tlv(b"\xdf\x26", text_image_png(h.address)),
        tlv(b"\xdf\x27", face_photo_jp2(profile.seed)),
    ]
    items = [
        *signed,
        tlv(b"\xdf\x28", issuer.sign(b"".join(signed))),
        tlv(b"\xdf\x29", profile.card_expiry.strftime("%Y%m%d").encode("ascii")),
        tlv(b"\xdf\x2a", text_image_png(profile.security_code)),
    ]
    return pad_ff(offset_table(b"\xdf\x21", b"\xff\x20", items))


def basic_info(profile: CardProfile) -> bytes:
    """EF 0003: ``FF 30`` { ``DF31`` ``06 03 0E 01``, ``DF32`` key id, ``DF33`` version,
    ``DF34`` 全国地方公共団体コード, ``DF35`` 16-byte id + 256 opaque bytes }. The version,
    municipality code and opaque bytes are derived from the seed [I]."""
    digest = hashlib.shake_256(f"{profile.seed}/kenmen/basic".encode()).digest(16 + 256 + 5)
    municipality = "".join(str(b % 10) for b in digest[-5:])
    return tlv(
        b"\xff\x30",
        tlv(b"\xdf\x31", bytes.fromhex("06030E01"))
        + tlv(b"\xdf\x32", KEY_ID.encode("ascii").ljust(16, b" "))
        + tlv(b"\xdf\x33", b"\x01")
        + tlv(b"\xdf\x34", municipality.encode("ascii"))
        + tlv(b"\xdf\x35", digest[: 16 + 256]),
    )


def my_number_image(profile: CardProfile) -> bytes:
    """EF 0005: ``FF 40`` { ``DF41`` PNG of the My Number, ``DF42`` key, ``DF43`` signature }."""
    issuer = record_issuer(CA_ID, KEY_ID)
    image = tlv(b"\xdf\x41", text_image_png(profile.my_number))
    key = tlv(b"\xdf\x42", rsa_public_object(issuer.key.public_key()))
    return tlv(b"\xff\x40", image + key + tlv(b"\xdf\x43", issuer.sign(image)))


def build_kenmen(profile: CardProfile) -> Application:
    """The 券面AP's files and keys for ``profile``."""
    tries = profile.collation_tries
    files: dict[int, Node] = {
        KENMEN_FACE: BinaryEF(
            KENMEN_FACE, lazy(lambda: face_record(profile)), (COLLATION_A, COLLATION_B)
        ),
        KENMEN_BASIC_INFO: BinaryEF(KENMEN_BASIC_INFO, lazy(lambda: basic_info(profile))),
        KENMEN_CV_CERT: BinaryEF(
            KENMEN_CV_CERT, lazy(lambda: cv_certificate(record_issuer(CA_ID, KEY_ID)))
        ),
        KENMEN_MY_NUMBER_IMAGE: BinaryEF(
            KENMEN_MY_NUMBER_IMAGE, lazy(lambda: my_number_image(profile)), (COLLATION_A,)
        ),
        COLLATION_B: KeyRef(
            COLLATION_B,
            "kenmen.collation_b",
            tries,
            SecretFormat.DIGITS14,
            profile.collation_b,
            tries,
        ),
        COLLATION_A: KeyRef(
            COLLATION_A,
            "kenmen.collation_a",
            tries,
            SecretFormat.DIGITS12,
            profile.my_number,
            tries,
        ),
    }
    return Application(AID_NAMES[KENMEN_AID], KENMEN_AID, files)
