"""A private pcscd with a private vpcd reader, isolated in its own mount + network namespace.

Why the namespaces: vpcd listens on 0.0.0.0 with no option to change it, so pcscd runs in a
fresh network namespace where only its own loopback exists; and pcscd 1.9.9 hard-codes
``/run/pcscd`` for its socket and pid file, so a private mount namespace bind-mounts our runtime
directory there. Clients outside reach it through the filesystem socket
(``PCSCLITE_CSOCK_NAME=<rundir>/pcscd.comm``) and several instances can run at once. The card
connects from inside the namespace through :func:`onshi.transport.netns.connect_in_netns`.
Needs root (``unshare -mn``, ``mount --bind``, ``setns``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from types import TracebackType

from onshi.trace import ApduTrace
from onshi.transport.base import CardLike, TransportError
from onshi.transport.netns import connect_in_netns
from onshi.transport.vpcd import VPCD_PORT, VpcdCard

VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
FRIENDLY_NAME = "Virtual PCD"
SLOTS = 2
"""Debian builds vpcd with two slots: readers ``Virtual PCD 00 00`` and ``Virtual PCD 00 01``."""

_SETUP_FIX = "run ci/setup.sh as root (it installs pcscd and vsmartcard-vpcd)"
_LAUNCH = 'ip link set lo up && mount --bind "$1" /run/pcscd && exec "$2" -f -c "$3"'


def default_state_path() -> Path:
    """Where a published pcscd is announced: ``$XDG_RUNTIME_DIR/onshi`` or ``/run/onshi``."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    return (Path(base) if base else Path("/run")) / "onshi" / "pcscd.json"


def find_private_pcscd(state_path: Path | None = None) -> Path | None:
    """The socket of the published private pcscd if its process is still alive, else None."""
    path = state_path or default_state_path()
    try:
        state = json.loads(path.read_text())
        pid, sock = int(state["pid"]), Path(state["socket"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _alive(pid) or not sock.exists():
        return None
    return sock


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PrivatePcscd:
    """Start/stop a private pcscd; ``with PrivatePcscd() as p: p.connect_card(card)``.

    ``runtime_dir`` holds the socket; a fresh temp dir by default (removed on stop). With
    ``publish`` the socket and pid are written to ``state_path`` so that
    :func:`find_private_pcscd` in another process finds this instance.
    """

    def __init__(
        self,
        runtime_dir: Path | str | None = None,
        *,
        publish: bool = False,
        state_path: Path | None = None,
        start_timeout: float = 10.0,
        stop_timeout: float = 5.0,
        pcscd: str = "pcscd",
        driver: Path = VPCD_DRIVER,
    ) -> None:
        self._given_rundir = Path(runtime_dir) if runtime_dir is not None else None
        self.publish = publish
        self.state_path = state_path or default_state_path()
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.pcscd = pcscd
        self.driver = Path(driver)
        self._workdir: Path | None = None
        self._rundir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Path | None = None
        self._cards: list[VpcdCard] = []
        self._finalizer: weakref.finalize | None = None

    # -- properties --------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def socket_path(self) -> Path:
        if self._rundir is None:
            raise TransportError("private pcscd is not started", fix="call start() first")
        return self._rundir / "pcscd.comm"

    @property
    def netns_pid(self) -> int:
        """PID of pcscd (unshare exec'd sh exec'd pcscd); its /proc entry names the namespace."""
        if not self.running:
            raise TransportError("private pcscd is not running", fix="call start() first")
        assert self._proc is not None
        return self._proc.pid

    @property
    def reader_names(self) -> list[str]:
        """The readers this pcscd offers, as pcscd itself lists them."""
        from onshi.transport.pcsc import list_readers

        return list_readers(socket_path=self.socket_path)

    def env(self) -> dict[str, str]:
        """Environment for client processes (pcsc-tools, opensc-tool, another onshi)."""
        return {"PCSCLITE_CSOCK_NAME": str(self.socket_path)}

    def log_text(self) -> str:
        return self._log.read_text(errors="replace") if self._log and self._log.exists() else ""

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> PrivatePcscd:
        """Launch pcscd in fresh namespaces and wait until its socket answers."""
        if self.running:
            return self
        self._preflight()
        try:
            self._launch()
            self._wait_ready()
        except BaseException:
            self.stop()  # no half-started pcscd, no temp dirs left behind
            raise
        if self.publish:
            self._write_state()
        return self

    def stop(self) -> None:
        """Stop cards, then pcscd (SIGTERM, SIGKILL after a timeout); remove temp dirs."""
        for card in self._cards:
            card.stop()
        self._cards.clear()
        self._terminate()
        self._remove_state()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
        self._workdir = self._rundir = self._log = None

    def restart(self) -> None:
        """Stop and start pcscd in place (new namespaces, same socket path); cards reconnect."""
        self._terminate()
        stale = self.socket_path
        stale.unlink(missing_ok=True)
        self.start()

    def connect_card(
        self,
        card: CardLike,
        slot: int = 0,
        *,
        trace: ApduTrace | None = None,
        wait: float = 5.0,
    ) -> VpcdCard:
        """Insert ``card`` into reader ``slot`` (served from a background thread); with ``wait``,
        return only once pcscd reports the card present in that reader."""
        if not 0 <= slot < SLOTS:
            raise TransportError(f"vpcd slot {slot} does not exist", fix=f"use 0..{SLOTS - 1}")
        vcard = VpcdCard(card, port=VPCD_PORT + slot, trace=trace, sock_factory=self._connect)
        self._cards.append(vcard.start())
        if wait and not vcard.wait_connected(wait):
            vcard.stop()
            self._cards.remove(vcard)
            raise TransportError(
                f"the card could not reach vpcd in the private pcscd ({vcard.last_error})",
                fix="check that pcscd loaded the vpcd driver: " + self.log_text()[-300:],
            )
        if wait:
            # Only return once pcscd itself lists the card, so that clients which do not wait
            # for insertion (opensc-tool, pcsc_scan, scriptor) find it at once.
            from onshi.transport.pcsc import wait_card_present

            names = [r for r in self.reader_names if r.endswith(f" {slot:02X}")]
            reader = names[0] if names else f"{FRIENDLY_NAME} 00 {slot:02X}"
            if not wait_card_present(reader, wait, self.socket_path):
                raise TransportError(
                    f"pcscd did not report the card in {reader!r} within {wait:g} s",
                    fix="check the pcscd log: " + self.log_text()[-300:],
                )
        return vcard

    def __enter__(self) -> PrivatePcscd:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals ---------------------------------------------------------------------------

    def _connect(self, host: str, port: int, timeout: float) -> socket.socket:
        """Socket factory for cards: always the *current* namespace (it changes on restart)."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            raise ConnectionRefusedError("private pcscd is not running")
        return connect_in_netns(proc.pid, host, port, timeout)

    def _preflight(self) -> None:
        if os.geteuid() != 0:
            raise TransportError(
                "a private pcscd needs root (network + mount namespaces, setns)",
                fix="run as root, or start pcscd yourself and use --reader without --pcscd",
            )
        for tool in (self.pcscd, "unshare", "ip", "mount"):
            if shutil.which(tool) is None:
                raise TransportError(f"{tool} is not installed", fix=_SETUP_FIX)
        if not self.driver.exists():
            raise TransportError(f"the vpcd driver {self.driver} is missing", fix=_SETUP_FIX)

    def _launch(self) -> None:
        """Write the reader config, then exec pcscd inside ``unshare -mn``."""
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="onshi-pcscd-"))
            readers = self._workdir / "readers"
            readers.mkdir()
            (readers / "vpcd").write_text(
                f'FRIENDLYNAME "{FRIENDLY_NAME}"\n'
                f"DEVICENAME /dev/null:0x{VPCD_PORT:04X}\n"
                f"LIBPATH {self.driver}\n"
                f"CHANNELID 0x{VPCD_PORT:04X}\n"
            )
            self._rundir = self._given_rundir or self._workdir / "run"
            self._rundir.mkdir(parents=True, exist_ok=True)
            self._log = self._workdir / "pcscd.log"
        assert self._rundir is not None and self._log is not None
        self._clear_stale_rundir()
        Path("/run/pcscd").mkdir(parents=True, exist_ok=True)  # the bind-mount target
        argv = ["unshare", "-mn", "--propagation", "private", "sh", "-c", _LAUNCH, "sh"]
        argv += [str(self._rundir), self.pcscd, str(self._workdir / "readers")]
        with self._log.open("ab") as log:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self._finalizer = weakref.finalize(self, _terminate, self._proc, self.stop_timeout)

    def _clear_stale_rundir(self) -> None:
        """Remove what a killed pcscd left in a reused runtime dir; refuse one in use."""
        assert self._rundir is not None
        pidfile = self._rundir / "pcscd.pid"
        try:
            pid = int(pidfile.read_text().strip("\x00\n "))
        except (OSError, ValueError):
            pid = None
        if pid is not None and _alive(pid) and f"{self.pcscd}" in _cmdline(pid):
            raise TransportError(
                f"runtime dir {self._rundir} is in use by pcscd pid {pid}",
                fix="stop that pcscd or give another runtime dir",
            )
        for name in ("pcscd.pid", "pcscd.comm", "pcscd.events"):
            target = self._rundir / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                log = self.log_text().strip().splitlines()[-3:]
                self._proc = None
                raise TransportError(
                    f"pcscd exited at start (status {code}): {' | '.join(log)}",
                    fix=_SETUP_FIX,
                )
            if self._socket_answers():
                return
            time.sleep(0.01)
        self._terminate()
        raise TransportError(
            f"pcscd did not open {self.socket_path} within {self.start_timeout:g} s",
            fix="look at the pcscd log; is the machine overloaded? " + self.log_text()[-300:],
        )

    def _socket_answers(self) -> bool:
        path = self.socket_path
        if not path.exists():
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(path))
            except OSError:
                return False
        return True

    def _terminate(self) -> None:
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if self._proc is not None:
            _terminate(self._proc, self.stop_timeout)
            self._proc = None

    def _write_state(self) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        state = {"socket": str(self.socket_path), "pid": self.netns_pid}
        tmp = self.state_path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(self.state_path)

    def _remove_state(self) -> None:
        """Remove the state file, but only if it still announces this instance."""
        if not self.publish or self._rundir is None:
            return
        with contextlib.suppress(OSError, ValueError, KeyError):
            state = json.loads(self.state_path.read_text())
            if state["socket"] == str(self.socket_path):
                self.state_path.unlink()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\x00", b" ").decode()
    except OSError:
        return ""


def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM by PID (pcscd cleans its socket), SIGKILL if it is still there after ``timeout``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
