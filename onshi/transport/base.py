"""The one contract every way of reaching a card honours, and the errors it raises.

Written in the style of trio's stream ABCs: the contract lives in the docstrings, and
:func:`onshi.transport.check.check_transport` checks any implementation against it.
"""

from __future__ import annotations

import abc
import random
import time
from types import TracebackType
from typing import Protocol, Self

from onshi.errors import OnshiError
from onshi.profiles.model import CardProfile, DropPhase
from onshi.trace import ApduTrace, Direction


class TransportError(OnshiError):
    """The card could not be reached or the exchange failed (not an error status word)."""


class CardRemovedError(TransportError):
    """The card went away mid-session (lost contact, pulled out, reader restarted)."""

    def __init__(self, message: str = "the card was removed or lost contact", **kw: str) -> None:
        kw.setdefault("fix", "reinsert the card (or wait for it to reconnect), then connect again")
        super().__init__(message, **kw)


class CardLike(Protocol):
    """What transports need from a card: the surface of :class:`onshi.card.Card`."""

    @property
    def atr(self) -> bytes: ...

    @property
    def profile(self) -> CardProfile: ...

    def power_on(self) -> bytes: ...

    def reset(self) -> bytes: ...

    def power_off(self) -> None: ...

    def process(self, apdu: bytes) -> bytes:
        """Answer one C-APDU with an R-APDU (data + SW1 SW2); never raises."""
        ...


def lost_contact(rng: random.Random, rate: float, phase: DropPhase) -> DropPhase | None:
    """Whether this exchange loses contact (a profile's ``drop_rate``), and at which phase.

    ``DropPhase.COMMAND``: the card never sees the command. ``DropPhase.ANSWER``: the card
    executes it and the answer is lost. ``None``: the exchange goes through.
    """
    if not rate or rng.random() >= rate:
        return None
    if phase is DropPhase.EITHER:
        return DropPhase.ANSWER if rng.random() < 0.5 else DropPhase.COMMAND
    return phase


def answer_delay(rng: random.Random, latency_s: float, jitter_s: float) -> float:
    """Seconds to wait before answering: a profile's latency with its uniform (±) jitter."""
    return latency_s + (rng.uniform(-jitter_s, jitter_s) if jitter_s else 0.0)


class Transport(abc.ABC):
    """A session with one card, as seen from the reader.

    Contract:

    * :meth:`connect` powers the card up (or attaches to it) and returns its ATR; it is the
      first call. Calling it again on an open transport returns the ATR again.
    * :meth:`transmit` sends one complete C-APDU (short or extended) and returns the complete
      R-APDU including SW1 SW2. Error status words are answers, not exceptions. It raises
      :class:`CardRemovedError` when the card went away during the exchange; the transport then
      needs :meth:`connect` (or :meth:`reset`) again. Any other failure to exchange bytes is a
      :class:`TransportError`. Calls are not concurrent: one exchange at a time.
    * :meth:`reset` warm-resets the card: selection and security state are gone, retry
      counters stay. Returns the ATR.
    * :meth:`close` ends the session; it is idempotent, and any later :meth:`transmit` or
      :meth:`reset` raises :class:`TransportError`.
    * Every exchange is recorded in :attr:`trace` when one is set: ATRs, commands and
      responses, with wall-clock timestamps.
    * A transport is a context manager: ``with make() as t:`` connects and closes.
    """

    trace: ApduTrace | None = None

    _atr: bytes | None = None
    _closed: bool = False

    @property
    def atr(self) -> bytes | None:
        """The ATR from the last connect or reset, ``None`` before the first connect."""
        return self._atr

    @abc.abstractmethod
    def connect(self) -> bytes: ...

    @abc.abstractmethod
    def transmit(self, apdu: bytes) -> bytes: ...

    @abc.abstractmethod
    def reset(self) -> bytes: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _record(self, direction: Direction, data: bytes) -> None:
        if self.trace is not None:
            self.trace.record(direction, data, time.time())

    def _check_open(self) -> None:
        if self.closed:
            raise TransportError(
                f"{type(self).__name__} is closed", fix="open a new transport and connect it"
            )
