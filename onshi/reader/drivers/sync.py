"""The synchronous drivers: blocking I/O inline, timers on an injected clock.

Why inline: a timer can never overtake an answer that is on its way, so a run on a
:class:`~onshi.clock.MockClock` is exactly reproducible and one on the system clock behaves
like a reader on hardware.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from onshi.clock import Clock
from onshi.reader import actions as act
from onshi.reader import events as ev
from onshi.reader.drivers.common import (
    ActionExecutor,
    BackendCall,
    React,
    Run,
    apdu_event,
    backend_event,
)

if TYPE_CHECKING:
    from onshi.reader.machine import Reader
    from onshi.transport.base import Transport


class SyncDriver(ActionExecutor):
    """Runs a reader with blocking I/O inline and timers on an injected clock.

    ``transmit`` sends one APDU (``None``: no card, every APDU fails); ``backend`` answers
    HTTP calls (:class:`~onshi.reader.http.HttpBackend`, or an in-process app); ``react``
    plays the people.
    """

    def __init__(
        self,
        reader: Reader,
        *,
        clock: Clock,
        backend: BackendCall,
        transmit: Callable[[bytes], bytes] | None = None,
        react: React | None = None,
        max_events: int = 2000,
    ) -> None:
        self.reader = reader
        self.clock = clock
        self.backend = backend
        self.transmit = transmit
        self.react = react
        self.max_events = max_events
        self._timers: dict[int, float] = {}

    def feed(self, event: ev.Event, run: Run | None = None) -> Run:
        """One event from outside (staff, the card slot) and everything it leads to."""
        run = run if run is not None else Run()
        self.run([event], run)
        return run

    def run(self, events: list[ev.Event], run: Run, *, until_result: bool = True) -> None:
        """Feed ``events`` and every reaction until the reader rests (result emitted and
        nobody left to act) or ``max_events`` is reached."""
        queue = list(events)
        results_before = len(run.results)
        while True:
            while queue:
                if len(run.events) >= self.max_events:
                    raise RuntimeError(f"no result after {self.max_events} events")
                event = queue.pop(0)
                run.events.append(event)
                actions = self.reader.handle(event)
                run.actions.extend(actions)
                queue.extend(self.execute(actions, run))
            if len(run.results) > results_before and not self.reader.session_active:
                return
            if not until_result or not self._timers:
                return
            # Nobody acts: let time pass to the earliest timer.
            timer_id, deadline = min(self._timers.items(), key=lambda kv: kv[1])
            del self._timers[timer_id]
            self.clock.sleep(max(0.0, deadline - self.clock.now()))
            queue.append(ev.TimerFired(timer_id=timer_id))

    def start_timer(self, action: act.StartTimer) -> None:
        self._timers[action.timer_id] = self.clock.now() + action.seconds

    def cancel_timer(self, timer_id: int) -> None:
        self._timers.pop(timer_id, None)

    def send_apdu(self, action: act.SendApdu) -> list[ev.Event]:
        if self.transmit is None:
            return [ev.ApduFailed(request_id=action.request_id, reason="no card")]
        return [apdu_event(action, self.transmit)]

    def call_backend(self, action: act.CallBackend) -> list[ev.Event]:
        event = backend_event(action, self.backend(action))
        return [event] if event is not None else []

    def person_acts(self, seconds: float, event: ev.Event) -> list[ev.Event]:
        """The person acts ``seconds`` from now, unless a timer runs out first (then the
        reader has moved on and the late action is lost, as at a real reader)."""
        if seconds <= 0:
            return [event]
        if self._timers and min(self._timers.values()) <= self.clock.now() + seconds:
            return []
        self.clock.sleep(seconds)
        return [event]


class TransportDriver(SyncDriver):
    """The synchronous driver over any :class:`~onshi.transport.Transport` (in process,
    pcscd + vpcd, a real reader): APDUs through ``transport.transmit``."""

    def __init__(
        self,
        reader: Reader,
        *,
        transport: Transport,
        clock: Clock,
        backend: BackendCall,
        react: React | None = None,
        max_events: int = 2000,
    ) -> None:
        super().__init__(
            reader,
            clock=clock,
            backend=backend,
            transmit=transport.transmit,
            react=react,
            max_events=max_events,
        )
        self.transport = transport

    def present_card(self) -> Run:
        """Connect to the card (its ATR) and run the session until its result."""
        return self.feed(ev.CardInserted(atr=self.transport.connect()))

    def remove_card(self) -> Run:
        return self.feed(ev.CardRemoved())
