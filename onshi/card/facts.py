"""``onshi card show``'s facts that need the emulated card itself (a layer above profiles).

The profile-level facts and their data classes live in :mod:`onshi.profiles.facts`; this module
mints the card through the test PKI and asks the card engine which applications answer, so the
list of applications comes from the card's behaviour, never from a second copy of its rules.
"""

from __future__ import annotations

import datetime as dt

from onshi.apdu import SW, select_aid
from onshi.card.engine import Card
from onshi.cardmap import AID_NAMES
from onshi.pki import TestPKI
from onshi.profiles.facts import ProfileDetail, certificate_facts
from onshi.profiles.model import CardProfile

__all__ = ["applications_present", "describe_profile"]


def describe_profile(
    profile: CardProfile, today: dt.date, *, pki: TestPKI | None = None
) -> ProfileDetail:
    """Mint the profile's card through the test PKI and collect what ``show`` prints."""
    pki = pki or TestPKI()
    credentials = pki.card_credentials(
        seed=profile.seed, auth=profile.auth_cert, sign=profile.sign_cert, holder=profile.holder
    )
    at = dt.datetime.combine(today, dt.time(12), tzinfo=dt.UTC)
    certs = (
        certificate_facts(pki, profile, "auth", credentials.auth_cert, today, at),
        certificate_facts(pki, profile, "sign", credentials.sign_cert, today, at),
    )
    return ProfileDetail(
        profile=profile,
        today=today,
        certificates=certs,
        applications=tuple(applications_present(Card(profile, credentials))),
    )


def applications_present(card: Card) -> list[str]:
    """Ask the card which applications answer SELECT by DF name with ``90 00``."""
    card.power_on()
    present = []
    for aid, name in AID_NAMES.items():
        answer = card.process(select_aid(aid).to_bytes())
        if int.from_bytes(answer[-2:], "big") == SW.OK:
            present.append(name)
    card.power_off()
    return present
