"""A small CardProfile factory for card tests (the YAML loader is tested elsewhere)."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import replace
from typing import Any

from onshi.cardmap import JPKI_AID as JPKI_AID
from onshi.cardmap import KENHOJO_AID as KENHOJO_AID
from onshi.cardmap import KENMEN_AID as KENMEN_AID
from onshi.profiles.model import (
    DEFAULT_ATR,
    CardProfile,
    CertSpec,
    Holder,
    Secret,
    Sex,
    Token,
)

AUTH_PIN = "1234"
SIGN_PASSWORD = "ABC123"
TEXT_PIN = "5678"
MY_NUMBER = "123456789018"


def make_profile(**overrides: Any) -> CardProfile:
    """A physical adult My Number card; keyword arguments replace fields."""
    cert = CertSpec(present=True, not_before=dt.date(2024, 1, 22), not_after=dt.date(2029, 2, 17))
    base = CardProfile(
        name="test-adult",
        description="unit-test card",
        source=None,
        token=Token.MY_NUMBER_CARD,
        atr=DEFAULT_ATR,
        seed="tests/card/adult",
        holder=Holder(
            name="山田 太郎",
            name_kana="ヤマダ タロウ",
            address="東京都千代田区霞が関1-2-2",
            birthdate=dt.date(1980, 2, 17),
            sex=Sex.MALE,
        ),
        my_number=MY_NUMBER,
        card_expiry=dt.date(2034, 2, 17),
        security_code="4321",
        auth_pin=Secret(value=AUTH_PIN, max_tries=3, remaining=3),
        sign_password=Secret(value=SIGN_PASSWORD, max_tries=5, remaining=5),
        text_pin=Secret(value=TEXT_PIN, max_tries=3, remaining=3),
        collation_tries=10,
        auth_cert=cert,
        sign_cert=cert,
    )
    return replace(base, **overrides)


def long_address_profile() -> CardProfile:
    """基本4情報 well over 128 bytes: the BER long form must appear."""
    p = make_profile(seed="tests/card/long-address")
    address = "北海道札幌市中央区北一条西二丁目一番地" * 3 + "サンプルマンション101号室"
    return replace(p, holder=replace(p.holder, address=address))


def seed_digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()
