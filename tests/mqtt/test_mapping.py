"""Protocol messages map onto the reference reader's events and actions field for field."""

from __future__ import annotations

import pytest

from onshi.mqtt import codec, mapping
from onshi.reader import actions, events

WORLD = [
    (codec.CardPresented(profile="valid"), [events.CardInserted()]),
    (
        codec.CardPresented(profile="valid", collation_b="90010130351234"),
        [events.CardInserted(), events.CardFaceScanned(collation_b="90010130351234")],
    ),
    (codec.CardRemoved(), [events.CardRemoved()]),
    (codec.FacePresented(score=0.5), [events.FaceCaptured(score=0.5)]),
    (codec.FacePresented(), [events.FaceCaptured(score=None)]),
    (codec.PinTyped(digits="1234"), [events.PinEntered(digits="1234")]),
    (codec.PinTyped(), [events.PinEntered(digits=None)]),
    (codec.MethodChosen(method="pin"), [events.MethodChosen(method=events.Method.PIN)]),
    (
        codec.ConsentAnswered(item="all", agreed=False),
        [events.ConsentAnswered(item="all", agreed=False)],
    ),
    (
        codec.StaffModeSwitched(mode="visual", operator_id="s1"),
        [events.StaffSwitchedMode(mode=events.ReaderMode.VISUAL, operator_id="s1")],
    ),
]


@pytest.mark.parametrize(("body", "expected"), WORLD, ids=[type(b).__name__ for b, _ in WORLD])
def test_world_messages_become_reader_events(body: codec.WorldEvent, expected: list) -> None:
    assert list(mapping.reader_events(body)) == expected


def test_every_world_message_and_mode_is_mapped() -> None:
    assert {type(b) for b, _ in WORLD} == {
        cls for name, cls in codec.MESSAGES.items() if name.startswith("world/")
    }
    assert {m.value for m in events.ReaderMode} == {"auto", "visual", "outage"}
    assert {m.value for m in events.Method} == {"face", "pin", "visual"}


def test_apdu_summary_carries_no_pin() -> None:
    verify = bytes.fromhex("0020008104") + b"1234"
    summary = mapping.apdu_output(verify, bytes.fromhex("9000"))
    assert (summary.header, summary.lc, summary.response_length, summary.sw) == (
        "00200081",
        4,
        0,
        "9000",
    )
    _, payload = codec.encode("r1", summary, at=0.0)
    assert b"1234" not in payload


def test_screen_action_becomes_a_screen_message() -> None:
    action = actions.ShowScreen(screen=actions.Screen.WELCOME, message="カードを置いてください")
    out = mapping.screen_output(action)
    assert out == codec.ScreenShown(code="welcome", text="カードを置いてください")
    codec.encode("r1", out, at=0.0)  # valid against its schema
