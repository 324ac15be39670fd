"""VpcdCard against a stand-in for pcscd's vpcd listener on loopback: framing, control bytes,
socket options, lost contact and reconnection. (The real pcscd path is in test_pcscd.py.)"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onshi.profiles.model import Behaviour, DropPhase
from onshi.trace import ApduTrace, Direction
from onshi.transport.check import SELECT_AUTH_CERT, SELECT_JPKI
from onshi.transport.vpcd import Control, VpcdCard

from .conftest import CERT, DoubleCard

TIMEOUT = 30.0
"""Only guards against a hang: every wait below returns as soon as its event happens."""


class FakeVpcd:
    """The listening side of vpcd: accepts the card and exchanges frames like pcscd would."""

    def __init__(self, port: int = 0) -> None:
        self.listener = socket.create_server(("127.0.0.1", port))
        self.listener.settimeout(TIMEOUT)
        self.port = self.listener.getsockname()[1]
        self.conn: socket.socket | None = None

    def accept(self) -> socket.socket:
        self.conn, _ = self.listener.accept()
        self.conn.settimeout(TIMEOUT)
        self.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self.conn

    def send(self, payload: bytes, *, bytewise: bool = False) -> None:
        assert self.conn is not None
        frame = struct.pack(">H", len(payload)) + payload
        if bytewise:
            for b in frame:
                self.conn.sendall(bytes([b]))
        else:
            self.conn.sendall(frame)

    def recv_exact(self, n: int) -> bytes:
        assert self.conn is not None
        data = b""
        while len(data) < n:
            chunk = self.conn.recv(n - len(data))
            if not chunk:
                raise EOFError("card hung up")
            data += chunk
        return data

    def recv_frame(self) -> bytes:
        (length,) = struct.unpack(">H", self.recv_exact(2))
        return self.recv_exact(length)

    def exchange(self, apdu: bytes, **kw: bool) -> bytes:
        self.send(apdu, **kw)
        return self.recv_frame()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.listener.close()


@pytest.fixture
def vpcd() -> Iterator[FakeVpcd]:
    fake = FakeVpcd()
    yield fake
    fake.close()


@pytest.fixture
def serve(vpcd: FakeVpcd) -> Iterator[Callable[..., VpcdCard]]:
    cards: list[VpcdCard] = []

    def make(card: DoubleCard, **kw: Any) -> VpcdCard:
        vcard = VpcdCard(card, port=vpcd.port, **kw).start()
        cards.append(vcard)
        return vcard

    yield make
    for c in cards:
        c.stop()


def test_control_bytes_and_apdus(vpcd: FakeVpcd, serve: Callable[..., VpcdCard]) -> None:
    card = DoubleCard()
    trace = ApduTrace()
    vcard = serve(card, trace=trace)
    vpcd.accept()
    assert vcard.wait_connected(TIMEOUT)
    assert vpcd.exchange(bytes([Control.GET_ATR])) == card.atr
    # ON / OFF / RESET get no reply: the next frame read answers the GET ATR sent after them.
    for control in (Control.POWER_OFF, Control.POWER_ON, Control.RESET, 0x7F):
        vpcd.send(bytes([control]))
    assert vpcd.exchange(bytes([Control.GET_ATR])) == card.atr
    assert (card.power_ons, card.resets) == (1, 1)
    assert vpcd.exchange(SELECT_JPKI) == b"\x90\x00"
    assert vcard.exchanges == 1
    assert vcard.controls[Control.GET_ATR] == 2 and vcard.controls[Control.RESET] == 1
    kinds = [e.direction for e in trace]
    assert kinds == [Direction.ATR, Direction.ATR, Direction.COMMAND, Direction.RESPONSE]


def test_frames_split_into_single_bytes(vpcd: FakeVpcd, serve: Callable[..., VpcdCard]) -> None:
    serve(DoubleCard())
    vpcd.accept()
    vpcd.send(bytes([Control.POWER_ON]), bytewise=True)
    assert vpcd.exchange(SELECT_JPKI, bytewise=True) == b"\x90\x00"
    assert vpcd.exchange(SELECT_AUTH_CERT, bytewise=True) == b"\x90\x00"
    # Extended Le: the whole 1504-byte object in one frame.
    whole = vpcd.exchange(bytes.fromhex("00B000000005E0"), bytewise=True)
    assert whole == CERT + b"\x90\x00"


def test_socket_options(vpcd: FakeVpcd) -> None:
    made: list[socket.socket] = []

    def factory(host: str, port: int, timeout: float) -> socket.socket:
        made.append(socket.create_connection((host, port), timeout=timeout))
        return made[-1]

    vcard = VpcdCard(DoubleCard(), port=vpcd.port, sock_factory=factory).start()
    try:
        vpcd.accept()
        assert vpcd.exchange(bytes([Control.GET_ATR]))
        assert made[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        vcard.stop()


def test_latency_sleeps_before_answering(vpcd: FakeVpcd, serve: Callable[..., VpcdCard]) -> None:
    sleeps: list[float] = []
    serve(DoubleCard(behaviour=Behaviour(latency_ms=25)), sleep=sleeps.append)
    vpcd.accept()
    vpcd.exchange(SELECT_JPKI)
    vpcd.exchange(SELECT_JPKI)
    vpcd.exchange(bytes([Control.GET_ATR]))  # control frames are never delayed
    assert sleeps == [pytest.approx(0.025)] * 2


def test_drop_hangs_up_then_the_card_comes_back(
    vpcd: FakeVpcd, serve: Callable[..., VpcdCard]
) -> None:
    card = DoubleCard(behaviour=Behaviour(drop_rate=1.0))
    vcard = serve(card, reinsert_delay=0.01)
    vpcd.accept()
    vpcd.send(bytes([Control.POWER_ON]))
    with pytest.raises(EOFError):
        vpcd.exchange(SELECT_JPKI)
    assert card.processed == 0 and card.power_offs >= 1
    vcard.drop_rate = 0.0
    vpcd.accept()  # the card reconnects: re-inserted
    assert vpcd.exchange(SELECT_JPKI) == b"\x90\x00"
    assert (vcard.drops, vcard.connections) == (1, 2)


def test_drop_after_execution_hangs_up_without_the_answer(
    vpcd: FakeVpcd, serve: Callable[..., VpcdCard]
) -> None:
    card = DoubleCard(behaviour=Behaviour(drop_rate=1.0, drop_phase=DropPhase.ANSWER))
    serve(card, reinsert_delay=0.01)
    vpcd.accept()
    vpcd.send(bytes([Control.POWER_ON]))
    with pytest.raises(EOFError):
        vpcd.exchange(SELECT_JPKI)
    assert card.processed == 1  # the card executed it; only the answer was lost


def test_reconnects_with_backoff_until_pcscd_is_there() -> None:
    # "pcscd" listens on a port of its own from the start, but the factory refuses until it
    # is "up": no port is probed, freed and bound again later (another process could take it).
    fake = FakeVpcd()
    up = threading.Event()
    refused = threading.Event()
    attempts: list[float] = []

    def factory(host: str, port: int, timeout: float) -> socket.socket:
        attempts.append(timeout)
        if not up.is_set():
            if len(attempts) >= 3:
                refused.set()
            raise ConnectionRefusedError(111, "nothing listens yet")
        return socket.create_connection((host, port), timeout=timeout)

    vcard = VpcdCard(DoubleCard(), port=fake.port, sock_factory=factory, backoff=(0.005, 0.02))
    vcard.start()
    try:
        assert refused.wait(TIMEOUT)
        assert isinstance(vcard.last_error, ConnectionRefusedError)
        assert not vcard.connected.is_set()
        up.set()
        try:
            fake.accept()
            assert vcard.wait_connected(TIMEOUT)
            assert fake.exchange(bytes([Control.GET_ATR])) == DoubleCard().atr
            # pcscd "restarts": the connection ends and the card comes back on its own.
            assert fake.conn is not None
            fake.conn.close()
            fake.accept()
            assert fake.exchange(SELECT_JPKI) == b"\x90\x00"
            assert vcard.connections == 2
        finally:
            fake.close()
    finally:
        vcard.stop()


def test_stop_interrupts_a_blocked_recv(vpcd: FakeVpcd) -> None:
    vcard = VpcdCard(DoubleCard(), port=vpcd.port).start()
    vpcd.accept()
    assert vcard.wait_connected(TIMEOUT)
    vcard.stop(timeout=TIMEOUT)  # raises if the thread is still alive
    assert vpcd.conn is not None and vpcd.conn.recv(1) == b""
    vcard.stop()  # idempotent


APDUS = [
    SELECT_JPKI,
    SELECT_AUTH_CERT,
    bytes.fromhex("00B0000004"),
    bytes.fromhex("00B00000000200"),
    bytes.fromhex("0002000000"),
]
items = st.lists(
    st.one_of(st.sampled_from(list(Control)), st.sampled_from(APDUS)), min_size=1, max_size=12
)


@settings(max_examples=25, deadline=None)
@given(items=items, cuts=st.lists(st.integers(min_value=1, max_value=400), max_size=10))
def test_any_segmentation_gives_the_model_answers(
    items: list[Control | bytes], cuts: list[int]
) -> None:
    """Frames cut at arbitrary points still get exactly the answers the card model gives."""
    model, served = DoubleCard(), DoubleCard()
    expected: list[bytes] = []
    stream = b""
    for item in items:
        payload = bytes([item]) if isinstance(item, Control) else item
        stream += struct.pack(">H", len(payload)) + payload
        if isinstance(item, bytes):
            expected.append(model.process(item))
        elif item is Control.GET_ATR:
            expected.append(model.atr)
        elif item is Control.POWER_ON:
            model.power_on()
        elif item is Control.RESET:
            model.reset()
        else:
            model.power_off()
    fake = FakeVpcd()
    vcard = VpcdCard(served, port=fake.port).start()
    try:
        conn = fake.accept()
        pos = 0
        for cut in [*sorted(cuts), len(stream)]:
            if cut > pos:
                conn.sendall(stream[pos:cut])
                pos = cut
        assert [fake.recv_frame() for _ in expected] == expected
    finally:
        vcard.stop()
        fake.close()


class RecordingSocket:
    """A socket proxy that remembers every sendall payload (to check one send per frame)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.sends: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.sends.append(bytes(data))
        self._sock.sendall(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def test_each_answer_is_one_send_of_a_whole_frame(vpcd: FakeVpcd) -> None:
    made: list[RecordingSocket] = []

    def factory(host: str, port: int, timeout: float) -> Any:
        made.append(RecordingSocket(socket.create_connection((host, port), timeout=timeout)))
        return made[-1]

    vcard = VpcdCard(DoubleCard(), port=vpcd.port, sock_factory=factory).start()
    try:
        vpcd.accept()
        answers = [
            vpcd.exchange(bytes([Control.GET_ATR])),
            vpcd.exchange(SELECT_JPKI),
            vpcd.exchange(SELECT_AUTH_CERT),
            vpcd.exchange(bytes.fromhex("00B000000005E0")),
        ]
    finally:
        vcard.stop()
    assert made[0].sends == [struct.pack(">H", len(a)) + a for a in answers]


class QuickAckSocket(RecordingSocket):
    """Also logs TCP_QUICKACK arming and every recv, in order."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self.calls: list[str] = []

    def setsockopt(self, level: int, option: int, value: int) -> None:
        if (level, option, value) == (socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1):
            self.calls.append("quickack")
        self._sock.setsockopt(level, option, value)

    def recv(self, n: int) -> bytes:
        self.calls.append("recv")
        return self._sock.recv(n)


def test_quickack_is_rearmed_before_every_recv(vpcd: FakeVpcd) -> None:
    """vpcd does not set TCP_NODELAY, so without QUICKACK (not sticky: the kernel clears it)
    each APDU waits for our delayed ACK, 44 ms. A timing test would be flaky; the call order
    is what matters, so check it directly."""
    made: list[QuickAckSocket] = []

    def factory(host: str, port: int, timeout: float) -> Any:
        made.append(QuickAckSocket(socket.create_connection((host, port), timeout=timeout)))
        return made[-1]

    vcard = VpcdCard(DoubleCard(), port=vpcd.port, sock_factory=factory).start()
    try:
        vpcd.accept()
        assert vpcd.exchange(bytes([Control.GET_ATR]))
        assert vpcd.exchange(SELECT_JPKI, bytewise=True) == b"\x90\x00"
        assert vpcd.exchange(SELECT_AUTH_CERT) == b"\x90\x00"
    finally:
        vcard.stop()
    calls = made[0].calls
    assert calls.count("recv") >= 6
    assert all(calls[i - 1] == "quickack" for i, c in enumerate(calls) if c == "recv")
