"""The in-process transport: the card engine called directly, with the profile's physical
behaviour (latency, lost contact) applied through an injected clock and a seeded RNG.

Fault hooks are plain attributes that tests may swap at any time (trio's ``MemorySendStream``
style): ``transmit_hook`` sees every C-APDU before the card does and may raise (for example
:class:`CardRemovedError`) or sleep; ``response_hook`` may rewrite the R-APDU; ``close_hook``
runs on the first :meth:`close`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from onshi.profiles.model import DropPhase
from onshi.trace import ApduTrace, Direction
from onshi.transport.base import (
    CardLike,
    CardRemovedError,
    Transport,
    answer_delay,
    lost_contact,
)


class InProcessTransport(Transport):
    """Reach a :class:`CardLike` in this process; the fastest transport and the reference."""

    def __init__(
        self,
        card: CardLike,
        *,
        trace: ApduTrace | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.card = card
        self.trace = trace
        self.sleep = sleep
        behaviour = card.profile.behaviour
        self.latency_s = behaviour.latency_ms / 1000
        self.jitter_s = behaviour.latency_jitter_ms / 1000
        self.drop_rate = behaviour.drop_rate
        self.drop_phase = behaviour.drop_phase
        # Seeded from the profile so a run with drops is reproducible by default.
        self.rng = rng if rng is not None else random.Random(f"inproc:{card.profile.seed}")
        self.transmit_hook: Callable[[bytes], None] | None = None
        self.response_hook: Callable[[bytes, bytes], bytes] | None = None
        self.close_hook: Callable[[], None] | None = None
        self.exchanges = 0
        self.drops = 0
        self._atr: bytes | None = None
        self._powered = False
        self._closed = False

    def connect(self) -> bytes:
        self._check_open()
        if not self._powered:
            self._atr = self.card.power_on()
            self._powered = True
            self._record(Direction.ATR, self._atr)
        assert self._atr is not None
        return self._atr

    def transmit(self, apdu: bytes) -> bytes:
        self._check_open()
        if not self._powered:
            raise CardRemovedError(
                "no card session: the card was removed or never connected",
                fix="call connect() (or reset()) before transmit()",
            )
        apdu = bytes(apdu)
        self._record(Direction.COMMAND, apdu)
        if self.transmit_hook is not None:
            self.transmit_hook(apdu)
        self._apply_latency()
        lost = lost_contact(self.rng, self.drop_rate, self.drop_phase)
        if lost is not None:
            if lost is DropPhase.ANSWER:
                self.card.process(apdu)
            self.drops += 1
            self._lose_contact()
            raise CardRemovedError(
                f"the card lost contact and did not answer (profile drop_rate, {lost} lost)"
            )
        response = self.card.process(apdu)
        if self.response_hook is not None:
            response = self.response_hook(apdu, response)
        self.exchanges += 1
        self._record(Direction.RESPONSE, response)
        return response

    def reset(self) -> bytes:
        self._check_open()
        self._atr = self.card.reset() if self._powered else self.card.power_on()
        self._powered = True
        self._record(Direction.ATR, self._atr)
        return self._atr

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._powered:
            self.card.power_off()
            self._powered = False
        if self.close_hook is not None:
            self.close_hook()

    def _apply_latency(self) -> None:
        delay = answer_delay(self.rng, self.latency_s, self.jitter_s)
        if delay > 0:
            self.sleep(delay)

    def _lose_contact(self) -> None:
        self.card.power_off()
        self._powered = False
