"""A stand-in reader for transport tests: it echoes each world event as a state change and a
screen message, and refuses staff mode switches the way a reader's rule error would."""

from __future__ import annotations

from collections.abc import Sequence

from onshi.mqtt.codec import ReaderOutput, ScreenShown, StaffModeSwitched, StateChanged, WorldEvent


class RuleBroken(Exception):
    """What a reader raises for an event its state does not allow."""


class EchoReader:
    def __init__(self) -> None:
        self.state = "idle"
        self.seen: list[WorldEvent] = []

    def handle(self, event: WorldEvent) -> Sequence[ReaderOutput]:
        name = event.NAME.removeprefix("world/")
        if isinstance(event, StaffModeSwitched):
            raise RuleBroken(f"event {name} not allowed in state {self.state}")
        self.seen.append(event)
        previous, self.state = self.state, name
        return [
            StateChanged(previous=previous, state=name, cause=name),
            ScreenShown(code=f"echo.{name}", text=f"got {name}"),
        ]
