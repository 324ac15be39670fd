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

from onshi.reader.drivers.aio import AsyncDriver
from onshi.reader.drivers.common import (
    ActionExecutor,
    BackendCall,
    BackendReply,
    React,
    Reaction,
    Run,
    apdu_event,
    backend_event,
    json_body,
)
from onshi.reader.drivers.sync import SyncDriver, TransportDriver

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
