"""Drivers: what moves the bytes and the time for a sans-I/O :class:`~onshi.reader.Reader`.

Why here and this thin: the reader decides, a driver only executes what it asks (an APDU, an
HTTP call, a timer, a screen a person reacts to) and feeds the answers back as events. There
is one home for that execution, :class:`ActionExecutor`: the in-process world
(:class:`~onshi.reader.world.WorldDriver`), the synchronous :class:`TransportDriver` over any
:class:`~onshi.transport.Transport` and the :class:`AsyncDriver` differ only in how a timer
waits and whether a blocking call runs inline or in a thread.

Time: the synchronous drivers wait on an injected :class:`~onshi.clock.Clock` (``sleep`` to
the earliest timer when nobody acts), so with a :class:`~onshi.clock.MockClock` a 30-second
face flow takes microseconds and with :class:`~onshi.clock.SystemClock` it takes 30 seconds
on hardware. Their I/O is blocking and inline, so a timer can never overtake an answer that
is on its way. The asyncio driver uses the event loop's timers and runs the blocking
transport and HTTP calls in threads, so the reader's own timers do bound a backend that hangs.

Every run is bounded: at most ``max_events`` events, and it ends when the session's result
is out and nobody is left to act, or when nothing at all can happen any more.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from onshi.clock import Clock
from onshi.reader import actions as act
from onshi.reader import events as ev
from onshi.reader.results import ReaderResult
from onshi.transport.base import TransportError

if TYPE_CHECKING:
    from onshi.reader.machine import Reader
    from onshi.transport.base import Transport

__all__ = [
    "ActionExecutor",
    "AsyncDriver",
    "BackendCall",
    "BackendReply",
    "React",
    "Reaction",
    "Run",
    "SyncDriver",
    "TransportDriver",
    "apdu_event",
    "backend_event",
    "json_body",
]

BackendReply = tuple[int, Any] | str | None
"""``(status, json_body)``; a string is a failure reason (``"timeout"``, ``"connection"``);
``None`` means the backend never answers (the reader's own timer must end the wait)."""
BackendCall = Callable[[act.CallBackend], BackendReply]
Reaction = tuple[float, ev.Event]
"""A person's answer to a screen: the seconds it takes them, and what they do."""
React = Callable[[act.ShowScreen], Reaction | None]
"""The people in front of the reader (:class:`~onshi.reader.world.People`): ``None`` when
nobody reacts to that screen."""


@dataclass(slots=True)
class Run:
    """What happened in one run: every action, every event, and the results."""

    actions: list[act.Action] = field(default_factory=list)
    events: list[ev.Event] = field(default_factory=list)
    results: list[ReaderResult] = field(default_factory=list)

    @property
    def result(self) -> ReaderResult:
        assert self.results, "the run produced no result"
        return self.results[-1]

    def apdus(self) -> list[bytes]:
        return [a.command for a in self.actions if isinstance(a, act.SendApdu)]

    def screens(self) -> list[act.ShowScreen]:
        return [a for a in self.actions if isinstance(a, act.ShowScreen)]

    def calls(self) -> list[act.CallBackend]:
        return [a for a in self.actions if isinstance(a, act.CallBackend)]


# -- answers as events (shared by every driver) ------------------------------------------------


def json_body(raw: bytes) -> Any:
    """The decoded JSON of an HTTP body; ``None`` when empty or not JSON (the reader judges a
    body it cannot read as a failed answer, never as a success)."""
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def apdu_event(action: act.SendApdu, transmit: Callable[[bytes], bytes]) -> ev.Event:
    """Send one APDU; a transport failure (card gone, reader lost) becomes ``ApduFailed``."""
    try:
        response = transmit(action.command)
    except TransportError as exc:
        return ev.ApduFailed(request_id=action.request_id, reason=exc.message)
    return ev.ApduAnswered(request_id=action.request_id, response=response)


def backend_event(action: act.CallBackend, reply: BackendReply) -> ev.Event | None:
    """A backend reply as the event the reader expects (``None``: no answer ever came)."""
    if isinstance(reply, tuple):
        status, body = reply
        return ev.BackendAnswered(request_id=action.request_id, status=status, body=body)
    if isinstance(reply, str):
        return ev.BackendFailed(request_id=action.request_id, reason=reply)
    return None


# -- the one executor --------------------------------------------------------------------------


class ActionExecutor:
    """Executes a reader's actions; subclasses say how timers wait and how I/O runs."""

    react: React | None = None

    def execute(self, actions: Iterable[act.Action], run: Run) -> list[ev.Event]:
        """Carry out ``actions`` in order; return the events that answer them at once."""
        out: list[ev.Event] = []
        for action in actions:
            if isinstance(action, act.StartTimer):
                self.start_timer(action)
            elif isinstance(action, act.CancelTimer):
                self.cancel_timer(action.timer_id)
            elif isinstance(action, act.SendApdu):
                out.extend(self.send_apdu(action))
            elif isinstance(action, act.CallBackend):
                out.extend(self.call_backend(action))
            elif isinstance(action, act.EmitResult):
                run.results.append(action.result)
            elif isinstance(action, act.ShowScreen) and self.react is not None:
                reaction = self.react(action)
                if reaction is not None:
                    out.extend(self.person_acts(*reaction))
        return out

    def start_timer(self, action: act.StartTimer) -> None:
        raise NotImplementedError

    def cancel_timer(self, timer_id: int) -> None:
        raise NotImplementedError

    def send_apdu(self, action: act.SendApdu) -> list[ev.Event]:
        raise NotImplementedError

    def call_backend(self, action: act.CallBackend) -> list[ev.Event]:
        raise NotImplementedError

    def person_acts(self, seconds: float, event: ev.Event) -> list[ev.Event]:
        raise NotImplementedError


# -- synchronous ------------------------------------------------------------------------------


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


# -- asyncio ----------------------------------------------------------------------------------


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
