"""The 券面事項入力補助AP (text AP): the My Number and 基本4情報 as text (card_apdu.md §2.2).

EF 0001 個人番号 (PIN 0011 or 照合番号A 0014), EF 0002 基本4情報 (PIN or 照合番号B 0015;
A does not open it), EF 0003 integrity record (PIN or either 照合番号), EF 0004 CV certificate
and EF 0005 AP basic info (free). Key 0012 is blocked on every card examined (SOL) and is
modelled as a key with no value and no tries left. EFs 0006-0008 (session-key material, SOL
single-source) are not modelled and answer ``6A 82``.
"""

from __future__ import annotations

import hashlib

from onshi.card.filesystem import Application, BinaryEF, KeyRef, Node, SecretFormat, lazy
from onshi.card.records import cv_certificate, offset_table, pad_ff, record_issuer
from onshi.cardmap import (
    AID_NAMES,
    BASIC4_TAGS,
    KENHOJO_AID,
    KENHOJO_BASIC4,
    KENHOJO_BASIC_INFO,
    KENHOJO_BLOCKED_KEY,
    KENHOJO_COLLATION_A,
    KENHOJO_COLLATION_B,
    KENHOJO_CV_CERT,
    KENHOJO_INTEGRITY,
    KENHOJO_MY_NUMBER,
    KENHOJO_PIN,
)
from onshi.profiles.model import CardProfile
from onshi.tlv import tlv

__all__ = ["basic4_record", "build_kenhojo", "my_number_record"]

PIN, BLOCKED, COLLATION_A, COLLATION_B = (
    KENHOJO_PIN,
    KENHOJO_BLOCKED_KEY,
    KENHOJO_COLLATION_A,
    KENHOJO_COLLATION_B,
)
CA_ID, KEY_ID = "6000033", "onshi-kenhojo-1"
"""Test-card CA key id (SOL: 6000033 on test cards) and our issuer key id [I]."""


def my_number_record(profile: CardProfile) -> bytes:
    """EF 0001: ``FF 10 0C`` + 12 ASCII digits + ``FF FF`` (17 bytes, TEX transcript)."""
    return b"\xff\x10\x0c" + profile.my_number.encode("ascii") + b"\xff\xff"


def _basic4_items(profile: CardProfile) -> list[bytes]:
    h = profile.holder
    values = {
        "name": h.name.encode("utf-8"),
        "address": h.address.encode("utf-8"),
        "birthdate": h.birthdate.strftime("%Y%m%d").encode("ascii"),
        "sex": h.sex.value.encode("ascii"),
    }
    return [tlv(tag, values[field]) for field, tag in BASIC4_TAGS.items()]


def basic4_record(profile: CardProfile) -> bytes:
    """EF 0002: ``FF 20 <len>`` { ``DF21`` offsets, ``DF22`` 氏名, ``DF23`` 住所, ``DF24``
    生年月日, ``DF25`` 性別 } with BER lengths (long form when >= 128), then ``FF`` filler."""
    return pad_ff(offset_table(b"\xdf\x21", b"\xff\x20", _basic4_items(profile)))


def integrity_record(profile: CardProfile) -> bytes:
    """EF 0003: ``FF 30 82 01 4B`` { ``DF31`` SHA-256 of EF 0001, ``DF32`` SHA-256 of the
    基本4情報 items after the offset table, ``DF33`` signature } (SOL [C]); the signature is
    SHA-256 PKCS#1 v1.5 over the ``DF31`` and ``DF32`` objects by the test issuer [I]."""
    hashes = tlv(b"\xdf\x31", hashlib.sha256(my_number_record(profile)).digest()) + tlv(
        b"\xdf\x32", hashlib.sha256(b"".join(_basic4_items(profile))).digest()
    )
    signature = record_issuer(CA_ID, KEY_ID).sign(hashes)
    return tlv(b"\xff\x30", hashes + tlv(b"\xdf\x33", signature))


def basic_info(profile: CardProfile) -> bytes:
    """EF 0005: ``FF 40`` { ``DF41`` ``01 03 0E 01``, ``DF42`` key id, ``DF43`` 128 bytes }.
    The meaning of ``DF43`` is unknown; ours is derived from the profile seed [I]."""
    opaque = hashlib.shake_256(f"{profile.seed}/kenhojo/DF43".encode()).digest(128)
    issuer_id = KEY_ID.encode("ascii").ljust(16, b" ")
    return tlv(
        b"\xff\x40",
        tlv(b"\xdf\x41", bytes.fromhex("01030E01"))
        + tlv(b"\xdf\x42", issuer_id)
        + tlv(b"\xdf\x43", opaque),
    )


def build_kenhojo(profile: CardProfile) -> Application:
    """The text AP's files and keys for ``profile``."""
    tries = profile.collation_tries
    pin = profile.text_pin
    files: dict[int, Node] = {
        KENHOJO_MY_NUMBER: BinaryEF(
            KENHOJO_MY_NUMBER, lazy(lambda: my_number_record(profile)), (PIN, COLLATION_A)
        ),
        KENHOJO_BASIC4: BinaryEF(
            KENHOJO_BASIC4, lazy(lambda: basic4_record(profile)), (PIN, COLLATION_B)
        ),
        KENHOJO_INTEGRITY: BinaryEF(
            KENHOJO_INTEGRITY,
            lazy(lambda: integrity_record(profile)),
            (PIN, COLLATION_A, COLLATION_B),
        ),
        KENHOJO_CV_CERT: BinaryEF(
            KENHOJO_CV_CERT, lazy(lambda: cv_certificate(record_issuer(CA_ID, KEY_ID)))
        ),
        KENHOJO_BASIC_INFO: BinaryEF(KENHOJO_BASIC_INFO, lazy(lambda: basic_info(profile))),
        PIN: KeyRef(
            PIN, "kenhojo.pin", pin.max_tries, SecretFormat.PIN4, pin.value, pin.remaining, True
        ),
        BLOCKED: KeyRef(BLOCKED, "kenhojo.key_0012", 3, SecretFormat.DIGITS12, None, 0),
        COLLATION_A: KeyRef(
            COLLATION_A,
            "kenhojo.collation_a",
            tries,
            SecretFormat.DIGITS12,
            profile.my_number,
            tries,
        ),
        COLLATION_B: KeyRef(
            COLLATION_B,
            "kenhojo.collation_b",
            tries,
            SecretFormat.DIGITS14,
            profile.collation_b,
            tries,
        ),
    }
    return Application(AID_NAMES[KENHOJO_AID], KENHOJO_AID, files)
