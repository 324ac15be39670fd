"""The card side of vsmartcard's vpcd protocol: serve a :class:`CardLike` to pcscd.

Wire protocol (vsmartcard ``vpcd.c``, confirmed on the wire; pcsc_vpcd_mqtt_pcap.md §1): a TCP
stream of frames, each a 2-byte big-endian length and that many bytes. From pcscd, a 1-byte frame
is a control byte (00 power off, 01 power on, 02 reset, 04 get ATR); only GET ATR is answered,
with the ATR, and pcscd polls it every ~400 ms at any time. Any longer frame is a C-APDU,
answered with one frame holding the R-APDU.

Debian 12's vpcd (0.8) writes its length and payload with two ``send()`` calls without
TCP_NODELAY, so Nagle holds the payload until our delayed ACK: 44 ms per APDU. Setting
TCP_QUICKACK before every ``recv`` (it is not sticky) brings that to ~0.1 ms. Our own answers
go out as one buffer in one send with TCP_NODELAY.

In normal mode pcscd listens and the card connects, so the card reconnects with backoff when
pcscd is not up yet or restarts, and after a simulated lost contact.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from enum import IntEnum

from onshi.profiles.model import DropPhase
from onshi.trace import ApduTrace, Direction
from onshi.transport.base import CardLike, answer_delay, lost_contact

VPCD_PORT = 0x8C7B
"""35963: vpcd's port for slot 0 (slot n listens on 35963 + n)."""

SocketFactory = Callable[[str, int, float], socket.socket]
"""``(host, port, timeout) -> connected socket``; lets the caller pick the network namespace."""


class Control(IntEnum):
    """vpcd control bytes (1-byte frames from pcscd)."""

    POWER_OFF = 0x00
    POWER_ON = 0x01
    RESET = 0x02
    GET_ATR = 0x04


class _Dropped(Exception):
    """The profile's drop_rate chose this exchange: hang up like a card losing contact."""


def _default_factory(host: str, port: int, timeout: float) -> socket.socket:
    return socket.create_connection((host, port), timeout=timeout)


class VpcdCard:
    """A card inserted into a vpcd virtual reader: connects to pcscd's vpcd listener and answers.

    ``reinsert_delay`` is the pause after a dropped exchange before the card connects again. It
    is longer than pcscd's ~0.4 s presence poll so that pcscd sees the card leave and come back
    (its event counter moves, as with a real lost contact); a shorter pause hides the removal
    from pcscd, and only the one failed exchange shows it.
    """

    def __init__(
        self,
        card: CardLike,
        *,
        host: str = "127.0.0.1",
        port: int = VPCD_PORT,
        trace: ApduTrace | None = None,
        sock_factory: SocketFactory | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        reinsert_delay: float = 0.5,
        backoff: tuple[float, float] = (0.02, 0.5),
        connect_timeout: float = 2.0,
        quickack: bool = True,
    ) -> None:
        self.card = card
        self.host = host
        self.port = port
        self.trace = trace
        self.sock_factory = sock_factory or _default_factory
        self.sleep = sleep
        behaviour = card.profile.behaviour
        self.latency_s = behaviour.latency_ms / 1000
        self.jitter_s = behaviour.latency_jitter_ms / 1000
        self.drop_rate = behaviour.drop_rate
        self.drop_phase = behaviour.drop_phase
        self.rng = rng if rng is not None else random.Random(f"vpcd:{card.profile.seed}")
        self.reinsert_delay = reinsert_delay
        self.backoff = backoff
        self.connect_timeout = connect_timeout
        self.quickack = quickack
        """Off only to demonstrate the 44 ms Nagle stall of Debian's vpcd."""
        self.exchanges = 0
        """APDUs answered."""
        self.drops = 0
        self.connections = 0
        """Successful connections to vpcd (1 + reconnects)."""
        self.controls: Counter[Control] = Counter()
        self.last_error: BaseException | None = None
        """Why the latest connection attempt failed (for error messages)."""
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._sock_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> VpcdCard:
        """Serve from a background thread; returns self."""
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.serve_forever, name=f"vpcd-card:{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop promptly: wake the blocked recv by shutting the socket down, then join."""
        self._stop.set()
        self._hang_up()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError(f"vpcd card thread for port {self.port} did not stop")
        self._thread = None

    def wait_connected(self, timeout: float) -> bool:
        """Wait for the TCP connection to vpcd; pcscd reports the card at its next poll."""
        return self.connected.wait(timeout)

    def __enter__(self) -> VpcdCard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Connect, serve until the connection ends, reconnect; until :meth:`stop`."""
        delay = self.backoff[0]
        while not self._stop.is_set():
            try:
                sock = self.sock_factory(self.host, self.port, self.connect_timeout)
            except OSError as exc:
                self.last_error = exc
                self._stop.wait(delay)
                delay = min(delay * 2, self.backoff[1])
                continue
            delay = self.backoff[0]
            with self._sock_lock:
                if self._stop.is_set():
                    sock.close()
                    break
                self._sock = sock
            self.connections += 1
            self.connected.set()
            dropped = False
            try:
                self._serve(sock)
            except _Dropped:
                dropped = True
            except OSError as exc:
                self.last_error = exc
            finally:
                # Contact is lost before the reader notices: power off, then hang up.
                self.connected.clear()
                self.card.power_off()
                self._hang_up()
            if dropped:
                self._stop.wait(self.reinsert_delay)

    # -- one connection ----------------------------------------------------------------------

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while not self._stop.is_set():
            header = self._recv_exact(sock, 2)
            if header is None:
                return
            (length,) = struct.unpack(">H", header)
            frame = self._recv_exact(sock, length) if length else b""
            if frame is None:
                return
            if length == 1:
                self._control(sock, frame[0])
            elif length > 1:
                self._apdu(sock, frame)

    def _control(self, sock: socket.socket, code: int) -> None:
        try:
            control = Control(code)
        except ValueError:
            return  # vpcd defines no other control bytes; ignore like the reference card
        self.controls[control] += 1
        if control is Control.GET_ATR:
            self._send(sock, self.card.atr)
        elif control is Control.POWER_ON:
            self._record(Direction.ATR, self.card.power_on())
        elif control is Control.RESET:
            self._record(Direction.ATR, self.card.reset())
        else:
            self.card.power_off()

    def _apdu(self, sock: socket.socket, apdu: bytes) -> None:
        self._record(Direction.COMMAND, apdu)
        delay = answer_delay(self.rng, self.latency_s, self.jitter_s)
        if delay > 0:
            self.sleep(delay)
        lost = lost_contact(self.rng, self.drop_rate, self.drop_phase)
        if lost is not None:
            if lost is DropPhase.ANSWER:
                self.card.process(apdu)
            self.drops += 1
            raise _Dropped
        response = self.card.process(apdu)
        # Count and record first, so both are complete by the time the reader has its answer.
        self.exchanges += 1
        self._record(Direction.RESPONSE, response)
        self._send(sock, response)

    @staticmethod
    def _send(sock: socket.socket, payload: bytes) -> None:
        sock.sendall(struct.pack(">H", len(payload)) + payload)

    def _recv_exact(self, sock: socket.socket, n: int) -> bytes | None:
        chunks: list[bytes] = []
        while n:
            if self.quickack:
                # The kernel clears QUICKACK after use; re-arm it before every recv.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            chunk = sock.recv(n)
            if not chunk:
                return None
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def _record(self, direction: Direction, data: bytes) -> None:
        if self.trace is not None:
            self.trace.record(direction, data, time.time())

    def _hang_up(self) -> None:
        with self._sock_lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
