"""The real PC/SC stack: a private pcscd + vpcd in fresh namespaces, a served card, pyscard.

These tests need root, pcscd and the vpcd driver (ci/setup.sh); they fail, never skip, when the
stack cannot start.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path

import pytest

from onshi.transport import (
    CardRemovedError,
    PcscTransport,
    PrivatePcscd,
    TransportError,
    check_transport,
    find_private_pcscd,
    list_readers,
    match_reader,
)
from onshi.transport.check import SELECT_JPKI
from onshi.transport.netns import netns_inode
from onshi.transport.vpcd import VPCD_PORT

from .conftest import DoubleCard

pytestmark = pytest.mark.pcsc
READER = "Virtual PCD 00 00"


def test_readers_are_listed_from_outside(pcscd: PrivatePcscd) -> None:
    assert pcscd.reader_names == ["Virtual PCD 00 00", "Virtual PCD 00 01"]
    assert pcscd.env() == {"PCSCLITE_CSOCK_NAME": str(pcscd.socket_path)}
    assert pcscd.socket_path.is_socket()


def test_vpcd_listener_is_only_inside_the_namespace(pcscd: PrivatePcscd) -> None:
    assert netns_inode(pcscd.netns_pid) != netns_inode()
    # Inside, the vpcd ports are listening on 0.0.0.0; outside, `ss` sees none of them in ours.
    inside = subprocess.run(
        ["nsenter", "-t", str(pcscd.netns_pid), "-n", "ss", "-Hltn"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    assert f"0.0.0.0:{VPCD_PORT}" in inside and f"0.0.0.0:{VPCD_PORT + 1}" in inside


def test_contract_through_pcscd(pcscd: PrivatePcscd) -> None:
    card = DoubleCard()
    vcard = pcscd.connect_card(card)
    try:
        steps = check_transport(
            lambda: PcscTransport("00 00", socket_path=pcscd.socket_path, card_timeout=5)
        )
        assert steps[-1] == "close"
        assert vcard.exchanges > 5 and card.resets >= 1
    finally:
        vcard.stop()


def test_second_slot_and_reader_errors(pcscd: PrivatePcscd) -> None:
    vcard = pcscd.connect_card(DoubleCard(), slot=1)
    try:
        with PcscTransport("00 01", socket_path=pcscd.socket_path, card_timeout=5) as t:
            assert t.reader == "Virtual PCD 00 01"
            assert t.transmit(SELECT_JPKI) == b"\x90\x00"
        # Slot 0 has no card now.
        with pytest.raises(CardRemovedError) as info:
            PcscTransport(READER, socket_path=pcscd.socket_path).connect()
        assert info.value.fix
        with pytest.raises(TransportError, match=r"no reader matches 'Nope'; readers: 'Virtual"):
            PcscTransport("Nope", socket_path=pcscd.socket_path).connect()
        with pytest.raises(TransportError, match="ambiguous"):
            PcscTransport("virtual pcd", socket_path=pcscd.socket_path).connect()
        with pytest.raises(TransportError, match="slot 2 does not exist"):
            pcscd.connect_card(DoubleCard(), slot=2)
    finally:
        vcard.stop()


def test_match_reader_prefers_exact_names() -> None:
    readers = ["Virtual PCD 00 00", "Virtual PCD 00 00 extra"]
    assert match_reader("Virtual PCD 00 00", readers) == "Virtual PCD 00 00"
    assert match_reader("EXTRA", readers) == "Virtual PCD 00 00 extra"


def test_no_pcscd_gives_a_fix(tmp_path: Path) -> None:
    with pytest.raises(TransportError, match="no pcscd running") as info:
        list_readers(socket_path=tmp_path / "nothing.comm")
    assert "onshi card serve --pcscd" in str(info.value.fix)


def test_two_instances_at_once_and_cleanup(tmp_path: Path) -> None:
    state = tmp_path / "state" / "pcscd.json"
    with PrivatePcscd(publish=True, state_path=state) as a, PrivatePcscd() as b:
        assert netns_inode(a.netns_pid) != netns_inode(b.netns_pid)
        card_a, card_b = DoubleCard(), DoubleCard()
        a.connect_card(card_a)
        b.connect_card(card_b)
        with (
            PcscTransport(READER, socket_path=a.socket_path, card_timeout=5) as ta,
            PcscTransport(READER, socket_path=b.socket_path, card_timeout=5) as tb,
        ):
            for _ in range(3):
                ta.transmit(SELECT_JPKI)
            tb.transmit(SELECT_JPKI)
        # Each pcscd reached its own card: the switchboard routed every context correctly.
        assert (card_a.processed, card_b.processed) == (3, 1)
        assert json.loads(state.read_text()) == {
            "socket": str(a.socket_path),
            "pid": a.netns_pid,
        }
        assert find_private_pcscd(state) == a.socket_path
        pid, workdir = a.netns_pid, a.socket_path.parent.parent
    assert find_private_pcscd(state) is None and not state.exists()
    assert not workdir.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_find_private_pcscd_ignores_dead_pids(tmp_path: Path) -> None:
    state = tmp_path / "pcscd.json"
    sock = tmp_path / "pcscd.comm"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock))
    try:
        state.write_text(json.dumps({"socket": str(sock), "pid": os.getpid()}))
        assert find_private_pcscd(state) == sock
        # Above the kernel's largest pid_max (2**22): certainly no such process.
        state.write_text(json.dumps({"socket": str(sock), "pid": 2**22 + 1}))
        assert find_private_pcscd(state) is None
        state.write_text("{not json")
        assert find_private_pcscd(state) is None
    finally:
        server.close()


def test_card_reconnects_after_restart() -> None:
    with PrivatePcscd() as p:
        card = DoubleCard()
        vcard = p.connect_card(card)
        t = PcscTransport(READER, socket_path=p.socket_path, card_timeout=5)
        t.connect()
        assert t.transmit(SELECT_JPKI) == b"\x90\x00"
        old_pid = p.netns_pid
        p.restart()
        assert p.netns_pid != old_pid
        with pytest.raises(CardRemovedError):
            t.transmit(SELECT_JPKI)  # the old pcscd is gone
        assert vcard.wait_connected(10)
        t.connect()  # new context on the new pcscd, waits for the card
        assert t.transmit(SELECT_JPKI) == b"\x90\x00"
        assert vcard.connections == 2
        t.close()
        # A transport whose context outlived its pcscd (no session open) recovers on connect.
        idle = PcscTransport("00 01", socket_path=p.socket_path)
        with pytest.raises(CardRemovedError):
            idle.connect()  # slot 1 is empty; the context stays open
        p.restart()
        p.connect_card(DoubleCard(), slot=1)
        idle.card_timeout = 5
        idle.connect()
        assert idle.transmit(SELECT_JPKI) == b"\x90\x00"
        idle.close()


def test_libpcsclite_reads_the_socket_variable_once_per_process(pcscd: PrivatePcscd) -> None:
    """Why the switchboard exists: after a first context, changing the variable has no effect."""
    script = textwrap.dedent(
        f"""
        import os
        from smartcard import scard
        os.environ["PCSCLITE_CSOCK_NAME"] = {str(pcscd.socket_path)!r}
        hr, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        assert hr == 0, hr
        os.environ["PCSCLITE_CSOCK_NAME"] = "/nonexistent/pcscd.comm"
        hr, ctx2 = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        print("second context", hex(hr & 0xFFFFFFFF))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PCSCLITE_CSOCK_NAME"}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "second context 0x0"


def test_preflight_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TransportError, match=r"vpcd driver /nonexistent\.so is missing") as info:
        PrivatePcscd(driver=Path("/nonexistent.so")).start()
    assert "ci/setup.sh" in str(info.value.fix)
    with pytest.raises(TransportError, match="no-such-pcscd is not installed"):
        PrivatePcscd(pcscd="no-such-pcscd").start()
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(TransportError, match="needs root"):
        PrivatePcscd().start()


def test_pcscd_that_dies_at_start_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where PrivatePcscd makes its dirs
    fake = tmp_path / "pcscd"
    fake.write_text("#!/bin/sh\necho 'cannot load the reader config' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(TransportError, match=r"pcscd exited at start \(status 3\)") as info:
        PrivatePcscd(pcscd=str(fake)).start()
    assert "cannot load the reader config" in str(info.value)
    assert list(scratch.iterdir()) == []  # the failed start left nothing behind


def test_given_runtime_dir_is_used_and_kept(tmp_path: Path) -> None:
    rundir = tmp_path / "run"
    with PrivatePcscd(rundir) as p:
        assert p.socket_path == rundir / "pcscd.comm" and p.socket_path.is_socket()
        assert (rundir / "pcscd.pid").read_text().strip("\x00\n") == str(p.netns_pid)
    assert rundir.is_dir() and not (rundir / "pcscd.comm").exists()


def test_switchboard_leaves_the_environment_alone(pcscd: PrivatePcscd) -> None:
    """Python's os.environ and the C environment keep the user's value (children inherit it)."""
    before = os.environ.get("PCSCLITE_CSOCK_NAME")
    assert list_readers(pcscd.socket_path)
    assert os.environ.get("PCSCLITE_CSOCK_NAME") == before
    libc = ctypes.CDLL(None)
    libc.getenv.restype = ctypes.c_char_p
    raw = libc.getenv(b"PCSCLITE_CSOCK_NAME")
    assert (raw.decode() if raw else None) == before


def test_reused_runtime_dir_after_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files a SIGKILLed pcscd left behind do not stop the next start; a live one does."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    rundir = tmp_path / "run"
    rundir.mkdir()
    (rundir / "pcscd.pid").write_text(f"{2**22 + 1}\n")  # no such process
    (rundir / "pcscd.comm").write_text("stale")
    with PrivatePcscd(rundir) as p:
        assert p.reader_names
        with pytest.raises(TransportError, match="in use by pcscd pid"):
            PrivatePcscd(rundir).start()
        assert len(list(scratch.iterdir())) == 1  # only the live instance's work dir
    assert list(scratch.iterdir()) == []


def test_concurrent_sessions_reach_their_own_cards() -> None:
    """Four threads, two pcscds x two slots, contexts opened concurrently: no cross-talk."""
    with PrivatePcscd() as a, PrivatePcscd() as b:
        cards = {(p, slot): DoubleCard() for p in (a, b) for slot in (0, 1)}
        for (p, slot), card in cards.items():
            p.connect_card(card, slot=slot)
        errors: list[BaseException] = []

        def worker(p: PrivatePcscd, slot: int, rounds: int) -> None:
            try:
                for _ in range(rounds):
                    with PcscTransport(
                        f"00 {slot:02d}", socket_path=p.socket_path, card_timeout=5
                    ) as t:
                        assert t.transmit(SELECT_JPKI) == b"\x90\x00"
            except BaseException as exc:  # reported below
                errors.append(exc)

        rounds = {(a, 0): 3, (a, 1): 5, (b, 0): 7, (b, 1): 9}
        threads = [
            threading.Thread(target=worker, args=(p, slot, n)) for (p, slot), n in rounds.items()
        ]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        assert not errors, errors
        assert {key: card.processed for key, card in cards.items()} == rounds
