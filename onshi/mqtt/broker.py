"""A private mosquitto for the reader protocol: loopback only, its own config, passwords and
per-reader ACLs in a temporary directory, started and stopped by PID.

Why private: a shared broker (or a system one on 1883) would mix runs and lets any client read
any reader. Here each reader is a broker user that may only read its own `world/` events and
write its own `out/` messages and status (the `%u` patterns below), and the harness may publish
world events to every reader and read everything. Facts this file relies on (mosquitto 2.0):
as root it drops to user `mosquitto` before reading the password and ACL files; it has no
ephemeral-port option, so we probe a free port and retry when the bind races; an acl_file
never refuses a SUBSCRIBE, it filters at delivery (tests assert non-delivery, not SUBACKs).
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterable
from pathlib import Path

from onshi.errors import OnshiError
from onshi.mqtt import topics

MOSQUITTO = "mosquitto"
MOSQUITTO_PASSWD = "mosquitto_passwd"
INSTALL_FIX = "install mosquitto (ci/setup.sh does, or: apt-get install mosquitto)"


@dataclasses.dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where a broker listens; `mqtt://[user[:password]@]host[:port]` in URL form."""

    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """Parse a broker URL; a bad one is a user error naming the URL and the form."""
        fix = "use mqtt://user:password@127.0.0.1:PORT"
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "mqtt" or not parts.hostname:
            raise OnshiError(f"broker URL {url!r} is not mqtt://host:port", fix=fix)
        try:
            port = parts.port or 1883
        except ValueError:
            raise OnshiError(f"broker URL {url!r} has a bad port", fix=fix) from None
        user = urllib.parse.unquote(parts.username) if parts.username else None
        password = urllib.parse.unquote(parts.password) if parts.password else None
        return cls(parts.hostname, port, user, password)

    def with_credentials(self, creds: Credentials) -> BrokerAddress:
        return dataclasses.replace(self, username=creds.username, password=creds.password)

    @property
    def url(self) -> str:
        """The URL without the password (safe to print)."""
        return self._url(with_password=False)

    @property
    def login_url(self) -> str:
        """The URL with the password: what `onshi broker` hands to the one who starts it."""
        return self._url(with_password=True)

    def _url(self, *, with_password: bool) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = ""
        if self.username:
            user = urllib.parse.quote(self.username, safe="")
            if with_password and self.password is not None:
                user += ":" + urllib.parse.quote(self.password, safe="")
            user += "@"
        return f"mqtt://{user}{host}:{self.port}"


def acl_text() -> str:
    """The ACL every private broker uses (`%u` is the connecting user = the reader id)."""
    root = topics.READERS
    return "\n".join(
        [
            "# onshi reader protocol: written by onshi.mqtt.broker",
            f"user {topics.HARNESS_USER}",
            f"topic read {topics.ROOT}/#",
            f"topic write {root}/+/world/#",
            "",
            "# pattern lines apply to every user: each reader only its own subtree",
            f"pattern read {root}/%u/world/#",
            f"pattern write {root}/%u/out/#",
            f"pattern readwrite {root}/%u/status",
            "",
        ]
    )


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


class Broker:
    """A private mosquitto with one user per reader and one for the harness.

    `with Broker(["readerA", "readerB"]) as broker:` starts it (returning once it answers)
    and stops it by PID on exit; `broker.address`, `broker.harness` and
    `broker.credentials(reader_id)` say how to connect.
    """

    def __init__(
        self,
        readers: Iterable[str] = (),
        *,
        host: str = "127.0.0.1",
        start_timeout_s: float = 15.0,
        attempts: int = 3,
    ) -> None:
        try:
            if not ipaddress.ip_address(host).is_loopback:
                raise ValueError
        except ValueError:
            raise OnshiError(
                f"broker host {host!r} is not a loopback address",
                fix="use 127.0.0.1 or ::1 (the private broker never listens on a network)",
            ) from None
        ids = []
        for reader_id in readers:
            try:
                ids.append(topics.check_reader_id(reader_id))
            except ValueError as exc:
                raise OnshiError(str(exc), fix="name readers with A-Z a-z 0-9 _ -") from None
        self.host = host
        self.start_timeout_s = start_timeout_s
        self.attempts = attempts
        self.harness = Credentials(topics.HARNESS_USER, secrets.token_urlsafe(18))
        self._readers = {r: Credentials(r, secrets.token_urlsafe(18)) for r in dict.fromkeys(ids)}
        self.port = 0
        self.workdir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None

    # --- what clients need ---------------------------------------------------------------

    @property
    def readers(self) -> list[str]:
        return list(self._readers)

    def credentials(self, reader_id: str) -> Credentials:
        try:
            return self._readers[reader_id]
        except KeyError:
            raise OnshiError(
                f"reader {reader_id!r} has no account on this broker",
                fix=f"start the broker with it (known: {', '.join(self._readers) or 'none'})",
            ) from None

    @property
    def address(self) -> BrokerAddress:
        if self.port == 0:
            raise RuntimeError("the broker is not started")
        return BrokerAddress(self.host, self.port)

    def log_text(self) -> str:
        if self._log_path is None or not self._log_path.exists():
            return ""
        return self._log_path.read_text(encoding="utf-8", errors="replace")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # --- life cycle ---------------------------------------------------------------------------

    def start(self) -> Broker:
        """Write the private files and start mosquitto; raise `OnshiError` with its log tail."""
        if self.running:
            return self
        for tool in (MOSQUITTO, MOSQUITTO_PASSWD):
            if shutil.which(tool) is None:
                raise OnshiError(f"{tool} was not found on PATH", fix=INSTALL_FIX)
        self.workdir = Path(tempfile.mkdtemp(prefix="onshi-mqtt-"))
        try:
            self._write_files(self.workdir)
            tail = ""
            for attempt in range(self.attempts):
                self.port = _free_port(self.host)
                if self._launch(attempt):
                    return self
                tail = self.log_text().strip()[-1500:]
                if "address already in use" not in tail.lower():
                    break  # only a lost port race is worth another try
        except BaseException:
            self.stop()
            raise
        self.stop()
        raise OnshiError(
            f"mosquitto did not start: {tail or 'no output'}",
            fix="read the broker log above; check that mosquitto 2.x is installed",
        )

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM the broker we started (by PID), SIGKILL if it lingers; remove its files."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
        self.port = 0

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- internals ----------------------------------------------------------------------------

    def _write_files(self, workdir: Path) -> None:
        pw, acl = workdir / "passwd", workdir / "acl"
        accounts = [self.harness, *self._readers.values()]
        old_umask = os.umask(0o077)
        try:
            pw.write_text("".join(f"{c.username}:{c.password}\n" for c in accounts), "utf-8")
            # mosquitto_passwd hashes in place with the broker's own format and version
            # (a newer tool's salts are unreadable by older brokers: mosquitto #3720)
            done = subprocess.run(
                [MOSQUITTO_PASSWD, "-U", str(pw)], capture_output=True, text=True, timeout=60
            )
            if done.returncode != 0:
                raise OnshiError(
                    f"mosquitto_passwd -U failed: {(done.stderr or done.stdout).strip()}",
                    fix=INSTALL_FIX,
                )
            acl.write_text(acl_text(), "utf-8")
        finally:
            os.umask(old_umask)
        run_as_root = ""
        if os.geteuid() == 0:
            try:
                # mosquitto drops to this user before reading pw/acl: let it, and only it, read them
                user = pwd.getpwnam("mosquitto")
                workdir.chmod(0o711)
                for path in (pw, acl):
                    os.chown(path, user.pw_uid, user.pw_gid)
            except KeyError:
                run_as_root = "user root\n"
        self._conf = workdir / "mosquitto.conf"
        self._conf_template = (
            "per_listener_settings false\n"
            "listener {port} {host}\n"
            "allow_anonymous false\n"
            f"password_file {pw}\n"
            f"acl_file {acl}\n"
            "persistence false\n"
            "log_dest stderr\n"  # stdout is block-buffered into a file: readiness never shows
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
            "set_tcp_nodelay true\n"  # else Nagle + delayed ACK cost ~44 ms per QoS 1 hop
            "max_queued_messages 10000\n"
            f"{run_as_root}"
        )

    def _launch(self, attempt: int) -> bool:
        assert self.workdir is not None
        self._conf.write_text(self._conf_template.format(port=self.port, host=self.host), "utf-8")
        self._log_path = self.workdir / f"mosquitto-{attempt}.log"
        with open(self._log_path, "wb") as log:
            self.process = subprocess.Popen(
                [MOSQUITTO, "-c", str(self._conf)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,  # a terminal's Ctrl-C reaches us, and we stop it
            )
        deadline = time.monotonic() + self.start_timeout_s  # a guard, not a speed bound
        while self.process.poll() is None and time.monotonic() < deadline:
            # "running" is logged after the listener is bound: a port that merely answers
            # might belong to whoever won the race for it
            if " running" in self.log_text() and _answers(self.host, self.port):
                return True
            time.sleep(0.01)
        if self.process.poll() is None:
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        self.process = None
        return False
