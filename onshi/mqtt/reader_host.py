"""The reference reader behind the agent: what `onshi reader agent` runs.

`ReaderHost.handle(world_event) -> outputs` is the agent's reader interface. Behind it sit the
sans-I/O `onshi.reader.Reader` and the part of the world a real reader touches itself: the
card on its pad (an in-process emulated card made from the profile the harness names), its
card-face scanner (the printed 照合番号B unless the harness says what the OCR read), the
backend over HTTP, and its timers (on the agent's event loop, since nobody else keeps time
here). Everything else (method, face, PIN, consent, staff) comes from the harness as world
events. Every state change, screen, APDU summary (never its data: a VERIFY carries the PIN)
and result goes out; what a timer causes goes out through the `step` the agent attaches, which
keeps it in order with the answers to world events.

A backend that cannot be reached becomes the reader's `BackendFailed` (the reader fails
closed); one that answers an HTTP error is an answer like any other.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from onshi.mqtt import codec, mapping
from onshi.reader import Reader
from onshi.reader import actions as act
from onshi.reader import events as ev
from onshi.reader.http import HttpBackend
from onshi.reader.world import BackendCall, BackendReply

if TYPE_CHECKING:
    from onshi.card import Card

ENV_FACILITY_CODE = "ONSHI_FACILITY_CODE"
ENV_FACILITY_SECRET = "ONSHI_FACILITY_SECRET"

Produce = Callable[[], Awaitable[Sequence[codec.ReaderOutput]]]
Step = Callable[[Produce], Awaitable[None]]
CardMaker = Callable[[str], "Card"]

log = logging.getLogger("onshi.mqtt.reader_host")


def profile_card(name: str) -> Card:
    """A fresh emulated card for the shipped (or `$ONSHI_PROFILES_DIR`) profile `name`."""
    from onshi.card import Card
    from onshi.profiles import load_profile

    return Card.from_profile(load_profile(name))


def http_backend(url: str, facility_code: str | None, facility_secret: str | None) -> BackendCall:
    """The reader's HTTP backend client (:class:`onshi.reader.http.HttpBackend`) with the
    facility credential: a timeout or a failure to connect is a failure reason (the reader then
    fails closed) rather than an exception."""
    return HttpBackend(url, facility_code=facility_code, facility_secret=facility_secret)


def backend_from_options(
    url: str | None, facility_code: str | None = None, facility_secret: str | None = None
) -> BackendCall | None:
    """The backend a command line asks for; the credential falls back to the environment."""
    if url is None:
        return None
    code = facility_code or os.environ.get(ENV_FACILITY_CODE)
    secret = facility_secret or os.environ.get(ENV_FACILITY_SECRET)
    return http_backend(url, code, secret)


def _no_backend(_action: act.CallBackend) -> BackendReply:
    return "connection"


class ReaderHost:
    """One reference reader and its hardware, driven by world events (module docstring)."""

    def __init__(
        self,
        reader: Reader,
        *,
        backend: BackendCall | None = None,
        cards: CardMaker = profile_card,
    ) -> None:
        self.reader = reader
        self.backend = backend or _no_backend
        self.cards = cards
        self.card: Card | None = None
        self._ocr: str | None = None
        self._step: Step | None = None
        self._lock = asyncio.Lock()
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._pending: set[asyncio.Task[None]] = set()

    def attach(self, step: Step) -> None:
        """The agent's way out for outputs nobody asked for (a timer ran out)."""
        self._step = step

    async def handle(self, event: codec.WorldEvent) -> list[codec.ReaderOutput]:
        """One world event -> everything the reader did about it, until it waits again."""
        async with self._lock:
            if isinstance(event, codec.CardPresented):
                card = self.cards(event.profile)  # OnshiError: reported, the agent goes on
                outputs = []
                if self.card is not None:  # a swap: the old card leaves the pad first
                    outputs = await self._run([ev.CardRemoved()])
                self.card, self._ocr = card, event.collation_b or card.profile.collation_b
                return outputs + await self._run([ev.CardInserted(atr=card.power_on())])
            if isinstance(event, codec.CardRemoved):
                try:
                    return await self._run([ev.CardRemoved()])
                finally:
                    self._take_card()
            return await self._run(list(mapping.reader_events(event)))

    def close(self) -> None:
        """Cancel the timers (the agent is going away)."""
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

    # -- the loop between the reader and its hardware -------------------------------------

    def _take_card(self) -> None:
        if self.card is not None:
            self.card.power_off()
        self.card, self._ocr = None, None

    async def _run(self, events: list[ev.Event]) -> list[codec.ReaderOutput]:
        outputs: list[codec.ReaderOutput] = []
        queue = list(events)
        while queue:
            event = queue.pop(0)
            before = self.reader.state
            reactions = self.reader.handle(event)
            if self.reader.state is not before:
                outputs.append(
                    codec.StateChanged(
                        previous=before.value, state=self.reader.state.value, cause=_cause(event)
                    )
                )
            for action in reactions:
                queue.extend(await self._do(action, outputs))
        return outputs

    async def _do(self, action: act.Action, outputs: list[codec.ReaderOutput]) -> list[ev.Event]:
        match action:
            case act.SendApdu(request_id=rid, command=command):
                if self.card is None:
                    return [ev.ApduFailed(request_id=rid, reason="no card")]
                response = self.card.process(command)
                outputs.append(mapping.apdu_output(command, response))
                return [ev.ApduAnswered(request_id=rid, response=response)]
            case act.CallBackend(request_id=rid):
                reply = await asyncio.to_thread(self.backend, action)
                if isinstance(reply, tuple):
                    status, body = reply
                    return [ev.BackendAnswered(request_id=rid, status=status, body=body)]
                if isinstance(reply, str):
                    return [ev.BackendFailed(request_id=rid, reason=reply)]
                return []  # never answers: the reader's own timer ends the wait
            case act.ShowScreen():
                outputs.append(mapping.screen_output(action))
                if action.screen is act.Screen.SCAN_CARD_FACE and self.card is not None:
                    return [ev.CardFaceScanned(collation_b=self._ocr)]
            case act.StartTimer(timer_id=tid, seconds=seconds):
                loop = asyncio.get_running_loop()
                self._timers[tid] = loop.call_later(seconds, self._timer_fired, tid)
            case act.CancelTimer(timer_id=tid):
                handle = self._timers.pop(tid, None)
                if handle is not None:
                    handle.cancel()
            case act.EmitResult(result=result):
                outputs.append(mapping.result_output(result))
        return []

    def _timer_fired(self, timer_id: int) -> None:
        task = asyncio.get_running_loop().create_task(self._on_timer(timer_id))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _on_timer(self, timer_id: int) -> None:
        if self._step is None:
            await self._timer_outputs(timer_id)
        else:
            await self._step(lambda: self._timer_outputs(timer_id))

    async def _timer_outputs(self, timer_id: int) -> list[codec.ReaderOutput]:
        async with self._lock:
            if self._timers.pop(timer_id, None) is None:
                return []  # cancelled while it waited for its turn
            return await self._run([ev.TimerFired(timer_id=timer_id)])


def _cause(event: ev.Event) -> str:
    return type(event).__name__


def reader_host(
    reader_id: str,
    *,
    backend: BackendCall | None = None,
    cards: CardMaker = profile_card,
    **policy: Any,
) -> ReaderHost:
    """The reference reader on the system clock with its policy's `reader_id` set."""
    from onshi.clock import SystemClock
    from onshi.reader import ReaderPolicy

    reader = Reader(ReaderPolicy(reader_id=reader_id, **policy), clock=SystemClock())
    return ReaderHost(reader, backend=backend, cards=cards)
