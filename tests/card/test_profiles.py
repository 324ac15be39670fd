"""Every shipped YAML profile (card_profiles/*.yaml) builds a card that answers as it says."""

from __future__ import annotations

import pytest

from onshi.card import Card
from onshi.profiles import list_profiles
from onshi.profiles.model import CardProfile

from .factories import JPKI_AID, KENHOJO_AID, KENMEN_AID

PROFILES = list_profiles()


def sw(card: Card, raw: bytes) -> bytes:
    return card.process(raw)[-2:]


@pytest.mark.parametrize("profile", PROFILES, ids=[p.name for p in PROFILES])
def test_profile_card(profile: CardProfile, pki) -> None:
    card = Card.from_profile(profile, pki)
    assert card.power_on() == profile.atr
    assert card.process(b"\x00\xa4\x04\x0c\x0a" + JPKI_AID) == b"\x90\x00"
    token = card.process(bytes.fromhex("00 B0 86 00 20"))
    assert token == profile.token.value.encode().ljust(32, b" ") + b"\x90\x00"
    flags = card.process(bytes.fromhex("00 B0 88 00 03"))[:-2]
    assert flags == bytes(
        (0x8F if profile.sign_cert.present else 0, 0x8F if profile.auth_cert.present else 0, 0)
    )
    if profile.auth_cert.present:
        expected = 0x63C0 | (profile.auth_pin.remaining if profile.auth_pin.value else 0)
        assert sw(card, bytes.fromhex("00 20 00 98")) == expected.to_bytes(2, "big")
        head = sw(card, bytes.fromhex("00 B0 8A 00 04"))
        assert head == (b"\x69\x82" if profile.auth_cert_needs_pin else b"\x90\x00")
    else:
        assert sw(card, bytes.fromhex("00 A4 02 0C 02 00 0A")) == b"\x6a\x82"
    if profile.sign_cert.present:
        expected = 0x63C0 | (profile.sign_password.remaining if profile.sign_password.value else 0)
        assert sw(card, bytes.fromhex("00 20 00 9B")) == expected.to_bytes(2, "big")
    for aid in (KENHOJO_AID, KENMEN_AID):
        answer = sw(card, b"\x00\xa4\x04\x0c\x0a" + aid)
        assert answer == (b"\x90\x00" if profile.face_applications else b"\x6a\x82")


def test_long_address_profile_uses_the_long_form(pki) -> None:
    (profile,) = [p for p in PROFILES if p.name == "long-address"]
    assert len(profile.holder.address.encode()) >= 128
    card = Card.from_profile(profile, pki)
    card.process(b"\x00\xa4\x04\x0c\x0a" + KENHOJO_AID)
    assert card.process(b"\x00\x20\x00\x91\x04" + profile.text_pin.value.encode()) == b"\x90\x00"
    head = card.process(bytes.fromhex("00 B0 82 00 04"))[:-2]
    assert head[:2] == b"\xff\x20" and head[2] in (0x81, 0x82)
