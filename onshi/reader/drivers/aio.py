"""The asyncio driver: the event loop's timers, the blocking transport and HTTP calls in
threads.

Why threads: pyscard, the in-process card and ``urllib`` block; running them off the loop lets
the reader's own timers bound a backend that hangs, as they must (fail closed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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


@dataclass(frozen=True, slots=True)
class _Crash:
    """A driver-side bug raised in a worker thread, re-raised in :meth:`AsyncDriver.run`."""

    error: BaseException


class AsyncDriver(ActionExecutor):
    """The asyncio driver: the loop's timers, the blocking transport and HTTP calls in threads.

    The reader's timers run while an answer is on its way, so a backend that hangs ends on
    the reader's own backend timer (fail closed); the late answer is then dropped by the
    reader as stale. Call :meth:`aclose` before the loop ends to wait for such threads.
    """

    def __init__(
        self,
        reader: Reader,
        *,
        transport: Transport,
        backend: BackendCall,
        react: React | None = None,
        max_events: int = 2000,
    ) -> None:
        self.reader = reader
        self.transport = transport
        self.backend = backend
        self.react = react
        self.max_events = max_events
        self._queue: asyncio.Queue[ev.Event | _Crash] = asyncio.Queue()
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._people: set[asyncio.TimerHandle] = set()
        self._pending = 0
        """I/O in flight plus people who will act later."""
        self._fired = 0
        """Timers fired so far: a person's late action is lost once a timer ran out."""

    async def present_card(self) -> Run:
        atr = await asyncio.to_thread(self.transport.connect)
        return await self.feed(ev.CardInserted(atr=atr))

    async def remove_card(self) -> Run:
        return await self.feed(ev.CardRemoved())

    async def feed(self, event: ev.Event, run: Run | None = None) -> Run:
        run = run if run is not None else Run()
        await self.run([event], run)
        return run

    async def run(self, events: list[ev.Event], run: Run) -> None:
        """Feed ``events`` and every reaction until the reader rests or nothing can happen."""
        for event in events:
            self._queue.put_nowait(event)
        results_before = len(run.results)
        while True:
            if self._queue.empty():
                if len(run.results) > results_before and not self.reader.session_active:
                    return
                if not self._pending and not self._timers:
                    return
            item = await self._queue.get()
            if isinstance(item, _Crash):
                raise item.error
            if len(run.events) >= self.max_events:
                raise RuntimeError(f"no result after {self.max_events} events")
            run.events.append(item)
            actions = self.reader.handle(item)
            run.actions.extend(actions)
            for follow in self.execute(actions, run):
                self._queue.put_nowait(follow)

    async def aclose(self) -> None:
        """Cancel the timers and the people's late actions, and wait for the calls still
        running in threads (a hung call returns when its own timeout ends it)."""
        for handle in [*self._timers.values(), *self._people]:
            handle.cancel()
        self._timers.clear()
        self._people.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def start_timer(self, action: act.StartTimer) -> None:
        loop = asyncio.get_running_loop()
        self._timers[action.timer_id] = loop.call_later(action.seconds, self._fire, action.timer_id)

    def _fire(self, timer_id: int) -> None:
        if self._timers.pop(timer_id, None) is not None:
            self._fired += 1
            self._queue.put_nowait(ev.TimerFired(timer_id=timer_id))

    def cancel_timer(self, timer_id: int) -> None:
        handle = self._timers.pop(timer_id, None)
        if handle is not None:
            handle.cancel()

    def send_apdu(self, action: act.SendApdu) -> list[ev.Event]:
        self._in_thread(apdu_event, action, self.transport.transmit)
        return []

    def call_backend(self, action: act.CallBackend) -> list[ev.Event]:
        self._in_thread(lambda a: backend_event(a, self.backend(a)), action)
        return []

    def person_acts(self, seconds: float, event: ev.Event) -> list[ev.Event]:
        if seconds <= 0:
            return [event]
        self._pending += 1
        handle: asyncio.TimerHandle | None = None

        def done() -> None:
            self._people.discard(handle)  # type: ignore[arg-type]
            self._person_done(fired, event)

        fired = self._fired
        handle = asyncio.get_running_loop().call_later(seconds, done)
        self._people.add(handle)
        return []

    def _person_done(self, fired: int, event: ev.Event) -> None:
        self._pending -= 1
        if fired == self._fired:  # no timer ran out meanwhile: the reader still waits for it
            self._queue.put_nowait(event)

    def _in_thread(self, fn: Callable[..., ev.Event | None], *args: Any) -> None:
        self._pending += 1

        async def call() -> None:
            try:
                event = await asyncio.to_thread(fn, *args)
            except BaseException as exc:  # a bug in a callable: surface it in run()
                self._queue.put_nowait(_Crash(exc))
                return
            finally:
                self._pending -= 1
            if event is not None:
                self._queue.put_nowait(event)

        task = asyncio.get_running_loop().create_task(call())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
