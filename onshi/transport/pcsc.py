"""The host side: reach a card in a PC/SC reader through pcscd with pyscard's ``scard`` layer.

Which pcscd? libpcsclite reads ``PCSCLITE_CSOCK_NAME`` once per process, at the first context,
and caches it (pcsc-lite ``getSocketName()``; checked in tests/transport/test_pcscd.py), so one
process cannot simply switch the variable between private pcscd instances. Instead onshi's
first context is opened with the variable pointing at a process-private *switchboard* symlink
(set only in the C environment for that one call, then restored, so ``os.environ`` and child
processes never see it), and every context is established, under a lock, with the symlink
pointing at the wanted socket. An open context keeps its connection, so repointing affects only
new contexts. If other code in this process opened a PC/SC context before onshi did, the socket
it used is fixed for good and only that pcscd is reachable.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from onshi.trace import ApduTrace, Direction
from onshi.transport.base import CardRemovedError, Transport, TransportError

DEFAULT_SOCKET = Path("/run/pcscd/pcscd.comm")
_NO_PCSCD_FIX = "start one with `onshi card serve --pcscd`, or run pcscd"

_switch_lock = threading.Lock()
_switchboard: Path | None = None
_primed = False
"""Whether libpcsclite has read (and cached) the socket name: after that, repointing suffices."""


def _scard() -> Any:
    from smartcard import scard

    return scard


def _protocols() -> int:
    """T=0 or T=1, whichever the ATR offers: the My Number card is T=1, but a real reader may
    hold a T=0 card and a profile may set a T=0 ATR; asking for T=1 only fails on both."""
    scard = _scard()
    return int(scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1)


def _code(hresult: int) -> int:
    return hresult & 0xFFFFFFFF


def _message(hresult: int) -> str:
    scard = _scard()
    return f"{scard.SCardGetErrorMessage(hresult).strip()} (0x{_code(hresult):08X})"


def _board() -> Path:
    global _switchboard
    if _switchboard is None:
        board_dir = Path(tempfile.mkdtemp(prefix="onshi-pcsc-"))
        atexit.register(shutil.rmtree, board_dir, True)
        _switchboard = board_dir / "pcscd.comm"
    return _switchboard


def _default_socket() -> Path:
    configured = os.environ.get("PCSCLITE_CSOCK_NAME")
    return Path(configured) if configured else DEFAULT_SOCKET


def pcscd_answers(path: Path) -> bool:
    """True when a pcscd listens on the unix socket ``path`` (a stale file does not count).

    Asked before any PC/SC call: libpcsclite would otherwise spend its own retries on a socket
    nobody serves."""
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def _establish_via_board(target: Path) -> tuple[int, int]:
    global _primed
    scard = _scard()
    board = _board()
    tmp = board.with_name("next")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    tmp.replace(board)
    if _primed:
        return scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    original = os.environ.get("PCSCLITE_CSOCK_NAME")
    os.putenv("PCSCLITE_CSOCK_NAME", str(board))  # C environment only, for this first call
    try:
        return scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    finally:
        _primed = True
        if original is None:
            os.unsetenv("PCSCLITE_CSOCK_NAME")
        else:
            os.putenv("PCSCLITE_CSOCK_NAME", original)


def establish_context(socket_path: Path | str | None = None) -> int:
    """A PC/SC context on the pcscd at ``socket_path`` (default: ``$PCSCLITE_CSOCK_NAME``, else
    /run/pcscd/pcscd.comm)."""
    scard = _scard()
    target = Path(socket_path) if socket_path is not None else _default_socket()
    with _switch_lock:
        hresult, hcontext = _establish_via_board(target)
    if _code(hresult) == _code(scard.SCARD_E_NO_SERVICE):
        raise TransportError(f"no pcscd running at {target}", fix=_NO_PCSCD_FIX)
    if hresult != scard.SCARD_S_SUCCESS:
        raise TransportError(
            f"cannot reach pcscd at {target}: {_message(hresult)}", fix=_NO_PCSCD_FIX
        )
    return int(hcontext)


def _list(hcontext: int) -> list[str]:
    scard = _scard()
    hresult, readers = scard.SCardListReaders(hcontext, [])
    if _code(hresult) == _code(scard.SCARD_E_NO_READERS_AVAILABLE):
        return []
    if hresult != scard.SCARD_S_SUCCESS:
        raise TransportError(f"cannot list readers: {_message(hresult)}", fix=_NO_PCSCD_FIX)
    return list(readers)


def list_readers(socket_path: Path | str | None = None) -> list[str]:
    """Names of the readers pcscd offers (empty when it has none)."""
    hcontext = establish_context(socket_path)
    try:
        return _list(hcontext)
    finally:
        _scard().SCardReleaseContext(hcontext)


def wait_card_present(reader: str, timeout: float, socket_path: Path | str | None = None) -> bool:
    """Whether pcscd reports a card in ``reader`` within ``timeout`` seconds (pcscd notices a
    vpcd card only at its next presence poll, ~0.4 s after the card connects)."""
    scard = _scard()
    hcontext = establish_context(socket_path)
    try:
        deadline = time.monotonic() + timeout
        state, wait_ms = scard.SCARD_STATE_UNAWARE, 0
        while True:
            hresult, states = scard.SCardGetStatusChange(hcontext, wait_ms, [(reader, state)])
            if hresult == scard.SCARD_S_SUCCESS:
                state = states[0][1]
                if state & scard.SCARD_STATE_PRESENT:
                    return True
            elif _code(hresult) != _code(scard.SCARD_E_TIMEOUT):
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            wait_ms = max(1, int(remaining * 1000))
    finally:
        scard.SCardReleaseContext(hcontext)


def match_reader(wanted: str, readers: list[str]) -> str:
    """The reader named exactly ``wanted``, else the only one containing it (case-insensitive)."""
    if wanted in readers:
        return wanted
    hits = [r for r in readers if wanted.casefold() in r.casefold()]
    if len(hits) == 1:
        return hits[0]
    listing = ", ".join(repr(r) for r in readers) or "none"
    if not hits:
        raise TransportError(
            f"no reader matches {wanted!r}; readers: {listing}",
            fix="pass an exact reader name or a unique part of one (see `onshi readers`)",
        )
    raise TransportError(
        f"reader {wanted!r} is ambiguous; it matches {', '.join(repr(h) for h in hits)}",
        fix="pass more of the reader name",
    )


def _no_card_codes() -> frozenset[int]:
    """What SCardConnect answers for an empty reader: pcsc-lite says SCARD_E_NO_SMARTCARD, and
    SCARD_W_REMOVED_CARD when the card left between its presence poll and our connect."""
    scard = _scard()
    return frozenset(_code(c) for c in (scard.SCARD_E_NO_SMARTCARD, scard.SCARD_W_REMOVED_CARD))


class NoCardError(CardRemovedError):
    """The reader holds no card when we connect (an empty slot, not a card lost mid-session).

    A :class:`CardRemovedError` too, so reconnect loops treat both alike; ``reader`` and
    ``code`` (the PC/SC result) are kept as data for callers.
    """

    def __init__(self, reader: str, waited: float, hresult: int) -> None:
        self.reader = reader
        self.code = _code(hresult)
        waited_text = f" (waited {waited:g} s)" if waited > 0 else ""
        super().__init__(
            f"no card in reader {reader!r}{waited_text}",
            fix="insert a card into that reader (or wait longer with --card-timeout), "
            "or name a reader that holds one (`onshi readers` lists them)",
        )


class PcscTransport(Transport):
    """A T=1 session with the card in one PC/SC reader.

    ``card_timeout`` is how long :meth:`connect` waits for a card to be present in the reader
    (0 = fail at once); an empty reader ends in :class:`NoCardError`.
    """

    def __init__(
        self,
        reader: str,
        *,
        trace: ApduTrace | None = None,
        socket_path: Path | str | None = None,
        card_timeout: float = 0.0,
    ) -> None:
        self.wanted = reader
        self.trace = trace
        self.socket_path = Path(socket_path) if socket_path is not None else None
        self.card_timeout = card_timeout
        self.reader: str | None = None
        self._hcontext: int | None = None
        self._hcard: int | None = None
        self._protocol: int = 0
        self._atr: bytes | None = None
        self._closed = False
        # pcscd's per-reader event counter (insertions/removals) when we connected, and the one
        # of a session that lost its card: a reconnect waits until pcscd has seen the change,
        # since for up to one presence poll (~0.4 s) it still reports the old card as present.
        self._events: int | None = None
        self._stale_events: int | None = None

    def connect(self) -> bytes:
        self._check_open()
        if self._hcard is not None and self._atr is not None:
            return self._atr
        scard = _scard()
        self.reader = match_reader(self.wanted, self._readers())
        if self.card_timeout > 0:
            self._wait_for_card()
        hresult, hcard, protocol = scard.SCardConnect(
            self._hcontext, self.reader, scard.SCARD_SHARE_SHARED, _protocols()
        )
        if _code(hresult) in _no_card_codes():
            raise NoCardError(self.reader, self.card_timeout, hresult)
        if hresult != scard.SCARD_S_SUCCESS:
            self._raise(hresult, "connecting to the card")
        self._hcard, self._protocol = hcard, protocol
        self._stale_events = None
        self._events = self._reader_events()
        self._atr = self._status_atr()
        self._record(Direction.ATR, self._atr)
        return self._atr

    def transmit(self, apdu: bytes) -> bytes:
        self._check_open()
        if self._hcard is None:
            raise CardRemovedError(
                "no card session: the card was removed or never connected",
                fix="call connect() (or reset()) before transmit()",
            )
        scard = _scard()
        apdu = bytes(apdu)
        self._record(Direction.COMMAND, apdu)
        hresult, response = scard.SCardTransmit(self._hcard, self._protocol, list(apdu))
        if hresult != scard.SCARD_S_SUCCESS:
            self._raise(hresult, "transmitting an APDU")
        data = bytes(response)
        if len(data) < 2:
            # Debian's vpcd 0.8 reports success with no bytes when the card hung up mid-APDU.
            self._stale_events = self._events
            self._drop_card(unpower=False)
            raise CardRemovedError(
                f"card in {self.reader!r} gave no answer (an R-APDU has at least SW1 SW2)"
            )
        self._record(Direction.RESPONSE, data)
        return data

    def reset(self) -> bytes:
        self._check_open()
        if self._hcard is None:
            return self.connect()
        scard = _scard()
        hresult, protocol = scard.SCardReconnect(
            self._hcard, scard.SCARD_SHARE_SHARED, _protocols(), scard.SCARD_RESET_CARD
        )
        if hresult != scard.SCARD_S_SUCCESS:
            self._raise(hresult, "resetting the card")
        self._protocol = protocol
        self._atr = self._status_atr()
        self._record(Direction.ATR, self._atr)
        return self._atr

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._drop_card(unpower=True)
        if self._hcontext is not None:
            _scard().SCardReleaseContext(self._hcontext)
            self._hcontext = None

    # -- internals ---------------------------------------------------------------------------

    def _status_atr(self) -> bytes:
        scard = _scard()
        hresult, _reader, _state, _protocol, atr = scard.SCardStatus(self._hcard)
        if hresult != scard.SCARD_S_SUCCESS:
            self._raise(hresult, "reading the ATR")
        return bytes(atr)

    def _readers(self) -> list[str]:
        """List readers on our context, opening a fresh one if pcscd restarted under it."""
        if self._hcontext is not None:
            try:
                return _list(self._hcontext)
            except TransportError:
                _scard().SCardReleaseContext(self._hcontext)
                self._hcontext = None
        self._hcontext = establish_context(self.socket_path)
        return _list(self._hcontext)

    def _reader_events(self) -> int | None:
        scard = _scard()
        hresult, states = scard.SCardGetStatusChange(
            self._hcontext, 0, [(self.reader, scard.SCARD_STATE_UNAWARE)]
        )
        return states[0][1] >> 16 if hresult == scard.SCARD_S_SUCCESS else None

    def _wait_for_card(self) -> None:
        """Block until the reader reports a card that is not the one we lost, or until
        ``card_timeout`` passes (SCardConnect then reports the absence precisely)."""
        scard = _scard()
        deadline = time.monotonic() + self.card_timeout
        state = scard.SCARD_STATE_UNAWARE
        while True:
            remaining = deadline - time.monotonic()
            wait_ms = max(0, int(remaining * 1000)) if state != scard.SCARD_STATE_UNAWARE else 0
            hresult, states = scard.SCardGetStatusChange(
                self._hcontext, wait_ms, [(self.reader, state)]
            )
            if hresult != scard.SCARD_S_SUCCESS:
                return
            state = states[0][1]
            fresh = self._stale_events is None or state >> 16 != self._stale_events
            if (state & scard.SCARD_STATE_PRESENT and fresh) or remaining <= 0:
                return

    def _drop_card(self, *, unpower: bool) -> None:
        if self._hcard is None:
            return
        scard = _scard()
        disposition = scard.SCARD_UNPOWER_CARD if unpower else scard.SCARD_LEAVE_CARD
        scard.SCardDisconnect(self._hcard, disposition)
        self._hcard = None

    def _raise(self, hresult: int, doing: str) -> None:
        scard = _scard()
        code = _code(hresult)
        removed = {
            scard.SCARD_W_REMOVED_CARD, scard.SCARD_E_NO_SMARTCARD, scard.SCARD_E_NOT_TRANSACTED,
            scard.SCARD_W_RESET_CARD, scard.SCARD_W_UNPOWERED_CARD,
            scard.SCARD_W_UNRESPONSIVE_CARD, scard.SCARD_E_INVALID_HANDLE,
        }  # fmt: skip
        if code in {_code(c) for c in removed}:
            self._stale_events = self._events
            self._drop_card(unpower=False)
            raise CardRemovedError(
                f"the card in {self.reader!r} went away while {doing}: {_message(hresult)}"
            )
        if code in (_code(scard.SCARD_E_NO_SERVICE), _code(scard.SCARD_E_READER_UNAVAILABLE)):
            self._drop_card(unpower=False)
            if self._hcontext is not None:
                scard.SCardReleaseContext(self._hcontext)
                self._hcontext = None
            raise CardRemovedError(
                f"pcscd or reader {self.reader!r} went away while {doing}: {_message(hresult)}",
                fix="restart pcscd / reinsert the reader, then connect again",
            )
        raise TransportError(
            f"{doing} failed: {_message(hresult)}", fix="check the reader and card"
        )
