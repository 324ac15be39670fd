"""check_transport must catch broken transports, not only pass good ones."""

from __future__ import annotations

import pytest

from onshi.transport import InProcessTransport, TransportCheckError, check_transport

from .conftest import DoubleCard


class StickyResetCard(DoubleCard):
    """A card whose reset forgets to clear the selected EF."""

    def reset(self) -> bytes:
        self.resets += 1
        return self.atr


class LeakyTransport(InProcessTransport):
    """Marks itself closed but keeps the card powered and still answers."""

    def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        return None


def truncating(_apdu: bytes, response: bytes) -> bytes:
    return response[:300] + response[-2:] if len(response) > 300 else response


def test_good_transport_passes() -> None:
    assert check_transport(lambda: InProcessTransport(DoubleCard()))[-1] == "close"


def test_truncated_extended_read_is_caught() -> None:
    def make() -> InProcessTransport:
        t = InProcessTransport(DoubleCard())
        t.response_hook = truncating
        return t

    with pytest.raises(TransportCheckError, match="extended read returns the whole certificate"):
        check_transport(make)


def test_reset_that_keeps_the_selection_is_caught() -> None:
    with pytest.raises(TransportCheckError, match="reset clears the selection"):
        check_transport(lambda: InProcessTransport(StickyResetCard()))


def test_transmit_after_close_must_raise() -> None:
    with pytest.raises(TransportCheckError, match="transmit after close"):
        check_transport(lambda: LeakyTransport(DoubleCard()))


def test_wrong_status_word_is_caught() -> None:
    def make() -> InProcessTransport:
        t = InProcessTransport(DoubleCard())
        t.response_hook = lambda apdu, r: b"\x6a\x82" if apdu[1] == 0x02 else r
        return t

    with pytest.raises(TransportCheckError, match="unknown INS answers 6D 00"):
        check_transport(make)
