"""The card map is the one home of AIDs, file ids and tokens; pinned against card_apdu.md."""

from __future__ import annotations

import datetime as dt

import pytest

from onshi import cardmap
from onshi.apdu import CommandAPDU, describe_command, select_aid, select_ef
from onshi.card import Card
from onshi.card.facts import applications_present
from onshi.pki import TestPKI
from onshi.profiles import load_profile
from onshi.tlv import TLVError, object_size, tlv


def test_aids_are_the_published_ones() -> None:
    assert cardmap.JPKI_AID.hex().upper() == "D392F000260100000001"
    assert cardmap.KENHOJO_AID.hex().upper() == "D3921000310001010408"
    assert cardmap.KENMEN_AID.hex().upper() == "D3921000310001010402"
    assert cardmap.JUKI_AID.hex().upper() == "D3921000310001010401"
    assert cardmap.COMMON_AID.hex().upper() == "D3921000310001010100"
    assert select_aid(cardmap.JPKI_AID).hex() == "00 A4 04 0C 0A D3 92 F0 00 26 01 00 00 00 01"
    assert select_ef(cardmap.JPKI_TOKEN).hex() == "00 A4 02 0C 02 00 06"


def test_every_named_application_is_the_cards_own() -> None:
    """The names people read come from one table, and the card answers for each of them."""
    profile = load_profile("valid", today=dt.date(2026, 6, 1))
    card = Card.from_profile(profile, pki=TestPKI())
    assert applications_present(card) == list(cardmap.AID_NAMES.values())
    for aid, name in cardmap.AID_NAMES.items():
        command = CommandAPDU.parse(select_aid(aid).to_bytes())
        assert describe_command(command) == f"SELECT DF by name {name}"


def test_object_size_reads_short_and_long_lengths() -> None:
    assert object_size(tlv(b"\xff\x20", b"x" * 5)[:3]) == 8
    assert object_size(tlv(b"\xff\x20", b"x" * 300)[:5]) == 2 + 3 + 300
    with pytest.raises(TLVError):
        object_size(bytes.fromhex("FF2085"))  # a 5-byte length field
