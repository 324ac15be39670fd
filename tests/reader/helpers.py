"""A step-by-step harness for the reader: feed one event, answer the APDUs from a real card,
and hand the rest (screens, backend calls, timers, results) back to the test."""

from __future__ import annotations

import datetime as dt
from typing import Any

from onshi.card import Card
from onshi.clock import MockClock
from onshi.dates import JST
from onshi.profiles import load_profile
from onshi.reader import Reader, ReaderPolicy
from onshi.reader import actions as act
from onshi.reader import events as ev
from onshi.reader.results import ReaderResult

AS_OF = dt.date(2026, 6, 1)
AUTH_PIN_SELECT = bytes.fromhex("00A4020C020018")


def start_clock() -> MockClock:
    return MockClock(dt.datetime(AS_OF.year, AS_OF.month, AS_OF.day, 12, tzinfo=JST))


def profile_card(name: str = "valid", **changes: Any) -> Card:
    import dataclasses

    profile = load_profile(name, today=AS_OF)
    if changes:
        profile = dataclasses.replace(profile, **changes)
    return Card.from_profile(profile)


class Step:
    """Feeds events to a reader; APDUs go to ``card`` at once, everything else is returned."""

    def __init__(
        self, card: Any = None, policy: ReaderPolicy | None = None, clock: MockClock | None = None
    ) -> None:
        self.clock = clock or start_clock()
        self.reader = Reader(policy, clock=self.clock)
        self.card = card
        self.sent: list[act.SendApdu] = []
        self.actions: list[act.Action] = []
        self.timers: dict[str, int] = {}

    def feed(self, event: ev.Event) -> list[act.Action]:
        out: list[act.Action] = []
        pending = [event]
        while pending:
            actions = self.reader.handle(pending.pop(0))
            for a in actions:
                if isinstance(a, act.SendApdu) and self.card is not None:
                    self.sent.append(a)
                    answer = self.card.process(a.command)
                    pending.append(ev.ApduAnswered(request_id=a.request_id, response=answer))
                elif isinstance(a, act.StartTimer):
                    self.timers[a.name] = a.timer_id
                out.append(a)
        self.actions.extend(out)
        return out

    def insert(self) -> list[act.Action]:
        return self.feed(ev.CardInserted(atr=getattr(self.card, "atr", b"")))

    def fire(self, name: str) -> list[act.Action]:
        return self.feed(ev.TimerFired(timer_id=self.timers[name]))

    def answer(self, call: act.CallBackend, status: int, body: Any) -> list[act.Action]:
        return self.feed(ev.BackendAnswered(request_id=call.request_id, status=status, body=body))

    # -- reading what happened ---------------------------------------------------------------

    @property
    def state(self) -> Any:
        return self.reader.state

    def verifies_with_data(self, key: bytes | None = None) -> list[bytes]:
        """VERIFY commands that presented data (optionally: right after SELECTing ``key``)."""
        out, selected = [], None
        for a in self.sent:
            if a.command[:4] == bytes.fromhex("00A4020C"):
                selected = a.command
            elif a.is_verify_with_data and (key is None or selected == key):
                out.append(a.command[5:])
        return out


def screens(actions: list[act.Action]) -> list[act.ShowScreen]:
    return [a for a in actions if isinstance(a, act.ShowScreen)]


def last_screen(actions: list[act.Action]) -> act.ShowScreen:
    return screens(actions)[-1]


def calls(actions: list[act.Action]) -> list[act.CallBackend]:
    return [a for a in actions if isinstance(a, act.CallBackend)]


def result(actions: list[act.Action]) -> ReaderResult:
    (emitted,) = [a.result for a in actions if isinstance(a, act.EmitResult)]
    return emitted


def card_answer(name: str = "試験 花子", birthdate: str = "19850412", sex: str = "2") -> dict:
    """A well-formed successful card lookup for the ``valid`` profile's holder."""
    return {
        "MessageHeader": {"SegmentOfResult": "1", "ReferenceClassification": "1"},
        "MessageBody": {
            "ProcessingResultStatus": "1",
            "QualificationValidity": "1",
            "PatientReference": "pr-test",
            "ResultList": [
                {
                    "InsurerNumber": "01130012",
                    "InsuredIdentificationNumber": "1",
                    "Name": name,
                    "Birthdate": birthdate,
                    "Sex1": sex,
                    "InsuredPartialContributionRatio": "030",
                }
            ],
        },
    }
