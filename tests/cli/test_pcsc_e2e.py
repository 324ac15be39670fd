"""``onshi`` as users run it: subprocesses on a real private pcscd + vpcd (needs root).

No skips: when pcscd cannot start, these fail with the command's own one-line error.
Every subprocess is bounded (``--duration``/``--timeout`` plus a communicate timeout) and
stopped by its PID.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from onshi.trace import ApduTrace, Direction

pytestmark = pytest.mark.pcsc

ONSHI = str(Path(sys.executable).with_name("onshi"))


def as_in_a_terminal() -> None:
    """Run in the child before exec: Ctrl-C at its default, as in a terminal. A suite started
    as a background job of a non-interactive shell inherits SIGINT ignored, and Python then
    installs no KeyboardInterrupt handler, so the Ctrl-C tests would test the launcher."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


TOKEN_PATH = ["00A4040C0AD392F000260100000001", "00A4020C020006", "00B0000020"]
SOCKET_LINE = re.compile(r"^pcscd socket\s+(\S+)\s*$", re.MULTILINE)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A private XDG_RUNTIME_DIR, so ``find_private_pcscd`` sees only this test's pcscd."""
    runtime = tmp_path / "xdg"
    runtime.mkdir()
    clean = {k: v for k, v in os.environ.items() if k != "PCSCLITE_CSOCK_NAME"}
    return {**clean, "XDG_RUNTIME_DIR": str(runtime), "COLUMNS": "120"}


def run(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ONSHI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


# -- quickstart ------------------------------------------------------------------------------------


def test_quickstart_passes_and_writes_a_decodable_pcap(tmp_path: Path, env: dict[str, str]) -> None:
    done = run(["quickstart"], env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS" in done.stdout and "Traceback" not in done.stderr
    assert "QualificationValidity 1" in done.stdout and "copay ratio" in done.stdout
    pcap = tmp_path / "out" / "quickstart.pcap"
    trace = ApduTrace.read_pcap(pcap)
    commands = [e.data for e in trace if e.direction is Direction.COMMAND]
    responses = [e.data for e in trace if e.direction is Direction.RESPONSE]
    # the card path (11), 基本4情報 (6), the backend challenge's VERIFY + signature (5)
    assert len(commands) == len(responses) == 22
    assert commands[0] == bytes.fromhex(TOKEN_PATH[0])
    assert responses[2][:15] == b"JPKIAPICCTOKEN2"
    assert commands[11] == bytes.fromhex("00A4040C0AD3921000310001010408")
    signs = [c for c in commands if c[:4] == bytes.fromhex("802A0080")]
    assert len(signs) == 2 and signs[0] != signs[1]  # the local and the backend challenge
    assert responses[-1][-2:] == b"\x90\x00" and len(responses[-1]) == 258
    decoded = subprocess.run(
        ["tshark", "-r", str(pcap)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "Select file" in decoded and "Response APDU" in decoded


def test_quickstart_json_reports_every_step(tmp_path: Path, env: dict[str, str]) -> None:
    pcap = tmp_path / "deep" / "q.pcap"
    done = run(
        ["quickstart", "--json", "--pcap", str(pcap), "--profile", "cert-expiring", "--no-backend"],
        env,
        tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["verdict"] == "pass"
    assert result["certificate_status"] == "valid (expiring within 3 months)"
    assert result["pin_tries_before"] == 3
    assert result["reader"] == "Virtual PCD 00 00"
    steps = {s["name"]: s for s in result["steps"]}
    assert list(steps) == [
        "mint",
        "pcscd",
        "insert",
        "connect",
        "token",
        "certificate",
        "check",
        "pin_counter",
        "verify_pin",
        "sign",
        "verify_signature",
    ]
    assert {s["status"] for s in steps.values()} == {"passed"}
    assert steps["pin_counter"]["sw"] == "63C3" and steps["sign"]["sw"] == "9000"
    assert Path(result["pcap"]) == pcap and pcap.stat().st_size > 0
    socket = Path(steps["pcscd"]["detail"].removeprefix("socket "))
    assert not socket.exists(), "quickstart must stop the pcscd it started"
    assert result["eligibility"] is None


def test_quickstart_json_shows_the_eligibility_answer(tmp_path: Path, env: dict[str, str]) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    done = run(["quickstart", "--json"], {**env, "TMPDIR": str(scratch)}, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    steps = {s["name"]: s for s in result["steps"]}
    assert list(steps)[:2] == ["population", "backend"]
    assert list(steps)[-4:] == ["basic4", "challenge", "sign_challenge", "eligibility"]
    assert {s["status"] for s in steps.values()} == {"passed"}
    assert steps["sign_challenge"]["sw"] == "9000"
    answer = result["eligibility"]
    assert answer["segment_of_result"] == "1" and answer["qualification_validity"] == "1"
    assert re.fullmatch(r"0[1-3]0", answer["copay_ratio"]) and answer["insurer_number"]
    assert answer["birthdate"] in steps["basic4"]["detail"]
    assert "QualificationValidity 1, holder matches" in steps["eligibility"]["detail"]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", answer["backend"])
    assert not serves(answer["backend"]), "quickstart must stop the backend it started"
    assert list(scratch.iterdir()) == [], "the population and server logs must be removed"


def serves(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url + "/healthz", timeout=2):
            return True
    except OSError:
        return False


def test_quickstart_fails_on_a_wrong_pin_with_exit_1(tmp_path: Path, env: dict[str, str]) -> None:
    done = run(["quickstart", "--json", "--pin", "0000"], env, tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    steps = {s["name"]: s for s in json.loads(done.stdout)["steps"]}
    assert steps["verify_pin"]["status"] == "failed" and steps["verify_pin"]["sw"] == "63C2"
    assert steps["sign"]["status"] == "skipped"


def test_quickstart_hard_timeout_stops_everything(tmp_path: Path, env: dict[str, str]) -> None:
    """The slow card answers each APDU after at least 100 ms, so its 11 cannot fit in 1 s:
    the deadline lands in some step whatever this machine's speed (and key cache), and every
    assertion holds wherever it lands. Where it lands exactly, and the time bound, are tested
    in process (tests/cli/test_quickstart_run.py) by putting the deadline in a chosen step."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    args = ["quickstart", "--json", "--profile", "slow", "--timeout", "1", "--no-backend"]
    done = run(args, {**env, "TMPDIR": str(scratch)}, tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["verdict"] == "fail" and result["timeout"] == 1
    failed = [s for s in result["steps"] if s["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["detail"].startswith("timed out: the run's 1 s bound")
    assert result["steps"][-1]["status"] == "skipped"
    assert "cleanup" not in {s["name"] for s in result["steps"]}  # clean-up fitted its bound
    assert not [p for p in running_cmdlines() if str(scratch) in p], "pcscd left running"
    assert list(scratch.iterdir()) == [], "pcscd's runtime dir must be removed"


def running_cmdlines() -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            found.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return found


# -- card serve + apdu ---------------------------------------------------------------------------


class Served:
    """A running ``onshi card serve``; a thread collects its stdout as it comes."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._pump, daemon=True)
        self.reader.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_banner(self, timeout: float) -> Path:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = SOCKET_LINE.search(self.text)
            if match and "onshi apdu --reader" in self.text:
                return Path(match.group(1))
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"card serve printed no socket: {self.text!r}")

    def finish(self, timeout: float = 20) -> tuple[int, str, str]:
        assert self.proc.stderr is not None
        code = self.proc.wait(timeout)
        self.reader.join(5)
        return code, self.text, self.proc.stderr.read()


ServeFactory = Callable[..., tuple[Served, Path]]


@pytest.fixture
def serve(tmp_path: Path, env: dict[str, str]) -> Iterator[Callable[..., tuple[Served, Path]]]:
    started: list[Served] = []

    def start(*extra: str) -> tuple[Served, Path]:
        proc = subprocess.Popen(
            [ONSHI, "card", "serve", "--profile", "valid", "--pcscd", *extra],
            env=env,
            cwd=tmp_path,
            preexec_fn=as_in_a_terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        served = Served(proc)
        started.append(served)
        return served, served.wait_banner(30)

    yield start
    for served in started:
        if served.proc.poll() is None:
            served.proc.send_signal(signal.SIGTERM)
            try:
                served.proc.wait(10)
            except subprocess.TimeoutExpired:
                served.proc.kill()
                served.proc.wait(5)


def test_serve_then_apdu_from_another_process(
    tmp_path: Path, env: dict[str, str], serve: ServeFactory
) -> None:
    pcap = tmp_path / "serve.pcap"
    # The duration only bounds the run: the clients below must never race it.
    served, socket = serve("--duration", "300", "--pcap", str(pcap))
    assert "Virtual PCD 00 00" in served.text
    assert f"export PCSCLITE_CSOCK_NAME={socket}" in served.text

    # found by itself (find_private_pcscd through the private XDG_RUNTIME_DIR)...
    done = run(["apdu", "--reader", "Virtual PCD 00 00", *TOKEN_PATH, "--json"], env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    exchanges = json.loads(done.stdout)
    assert [e["sw"] for e in exchanges] == ["9000", "9000", "9000"]
    assert exchanges[0]["command_description"] == "SELECT DF by name JPKI AP"
    assert exchanges[2]["response_text"] == "JPKIAPICCTOKEN2"
    assert exchanges[2]["response_length"] == 32
    assert all(e["ms"] > 0 for e in exchanges)

    # ... or named with --socket; a part of the reader name is enough
    apdu_pcap = tmp_path / "apdu.pcap"
    args = ["apdu", "--socket", str(socket), "--reader", "PCD 00 00", *TOKEN_PATH]
    done = run([*args, "--pcap", str(apdu_pcap)], env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "JPKIAPICCTOKEN2" in done.stdout and "SELECT DF by name JPKI AP" in done.stdout
    assert len([e for e in ApduTrace.read_pcap(apdu_pcap) if e.direction is Direction.COMMAND]) == 3

    # ... or through the variable the banner prints
    exported = {**env, "PCSCLITE_CSOCK_NAME": str(socket)}
    done = run(["apdu", "--reader", "PCD 00 00", TOKEN_PATH[0], "--json"], exported, tmp_path)
    assert json.loads(done.stdout)[0]["sw"] == "9000", done.stderr

    readers = run(["readers", "--json", "--socket", str(socket)], env, tmp_path)
    assert [r["name"] for r in json.loads(readers.stdout)] == [
        "Virtual PCD 00 00",
        "Virtual PCD 00 01",
    ]

    unknown = run(["apdu", "--reader", "Nope", *TOKEN_PATH], env, tmp_path)
    assert unknown.returncode == 2 and unknown.stdout == ""
    (line,) = unknown.stderr.strip().splitlines()
    assert line.startswith("error: no reader matches 'Nope'") and "(fix: " in line

    served.proc.send_signal(signal.SIGTERM)
    code, out, err = served.finish()
    assert code == 0, out + err
    assert "APDUs answered: 7" in out
    commands = [
        e.data.hex().upper() for e in ApduTrace.read_pcap(pcap) if e.direction is Direction.COMMAND
    ]
    assert commands == [*TOKEN_PATH, *TOKEN_PATH, TOKEN_PATH[0]]
    assert not socket.exists()


def test_serve_stops_cleanly_on_sigterm(
    tmp_path: Path, env: dict[str, str], serve: ServeFactory
) -> None:
    pcap = tmp_path / "term.pcap"
    served, socket = serve("--pcap", str(pcap), "--slot", "1")
    assert "reader         Virtual PCD 00 01" in served.text
    state = Path(env["XDG_RUNTIME_DIR"]) / "onshi" / "pcscd.json"
    assert json.loads(state.read_text())["socket"] == str(socket)
    done = run(["apdu", "--reader", "PCD 00 01", TOKEN_PATH[0], "--json"], env, tmp_path)
    assert json.loads(done.stdout)[0]["sw"] == "9000", done.stderr
    served.proc.send_signal(signal.SIGTERM)
    code, _out, err = served.finish()
    assert code == 0 and "Traceback" not in err
    assert [
        e.data.hex().upper() for e in ApduTrace.read_pcap(pcap) if e.direction is Direction.COMMAND
    ] == TOKEN_PATH[:1]
    assert not socket.exists() and not state.exists()


def test_serve_ctrl_c_exits_130_quietly(
    tmp_path: Path, env: dict[str, str], serve: ServeFactory
) -> None:
    pcap = tmp_path / "int.pcap"
    served, socket = serve("--pcap", str(pcap))
    served.proc.send_signal(signal.SIGINT)
    code, _out, err = served.finish()
    assert code == 130
    assert err == ""
    assert pcap.exists() and not socket.exists()


@pytest.mark.parametrize(
    ("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["int", "term"]
)
def test_quickstart_interrupted_stops_pcscd(
    tmp_path: Path, env: dict[str, str], signum: int, status: int
) -> None:
    proc = subprocess.Popen(
        [ONSHI, "quickstart", "--profile", "slow", "--json"],
        env=env,
        cwd=tmp_path,
        preexec_fn=as_in_a_terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Wait (guarding only against a hang) until both the backend server and pcscd run: the
    # server starts first, so both are seen in one listing once pcscd is. The signal then
    # lands in set-up or in the card path; the outcome asserted is the same either way.
    pcscd: list[int] = []
    server: list[int] = []
    deadline = time.monotonic() + 60
    while not (pcscd and server) and time.monotonic() < deadline and proc.poll() is None:
        listed = children(proc.pid)
        pcscd = [pid for pid, name in listed if name == "pcscd"]
        server = [pid for pid, _name in listed if "onshi.backend.server" in cmdline(pid)]
        time.sleep(0.05)
    assert server, "quickstart started no backend server"
    assert pcscd, "quickstart started no pcscd"
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == status
    assert out == "" and err == ""
    assert not (tmp_path / "out" / "quickstart.pcap").exists()
    assert not any(Path(f"/proc/{pid}").exists() for pid in pcscd), "pcscd left running"
    assert not any(Path(f"/proc/{pid}").exists() for pid in server), "backend left running"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def children(parent: int) -> list[tuple[int, str]]:
    """(pid, command name) of the live processes whose parent is ``parent``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        ppid = int(text[text.rindex(")") + 2 :].split()[1])
        if ppid == parent:
            found.append((int(stat.parent.name), name))
    return found


def test_quickstart_without_pcscd_installed_is_one_line(
    tmp_path: Path, env: dict[str, str]
) -> None:
    bare = {**env, "PATH": str(Path(ONSHI).parent)}  # no pcscd, unshare, ip or mount
    done = run(["quickstart"], bare, tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and "pcscd" in line and "(fix: " in line


def test_serve_stops_by_itself_after_its_duration(
    tmp_path: Path, env: dict[str, str], serve: ServeFactory
) -> None:
    served, socket = serve("--duration", "1")
    code, out, err = served.finish(timeout=60)
    assert code == 0 and "Traceback" not in err, out + err
    assert "APDUs answered: 0" in out
    assert not socket.exists()


def test_readers_table(tmp_path: Path, env: dict[str, str], serve: ServeFactory) -> None:
    _served, socket = serve("--duration", "300")  # bounds the run; the fixture stops it
    done = run(["readers"], env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"PC/SC readers on {socket}" in done.stdout
    assert "Virtual PCD 00 00" in done.stdout and "Virtual PCD 00 01" in done.stdout


def test_run_quickstart_composes_extra_steps(tmp_path: Path) -> None:
    """Later phases (a bounded load test) are steps appended to the list: they run after the
    card path, inside the same bound, with the stack still up."""
    from onshi.quickstart.cardpath import CARD_PATH
    from onshi.quickstart.run import SETUP, QuickstartContext, run_quickstart
    from onshi.quickstart.steps import Outcome, Step, StepStatus

    seen: dict[str, object] = {}

    def extra(ctx: QuickstartContext) -> Outcome:
        assert ctx.pcscd is not None
        seen["socket"] = ctx.pcscd.socket_path
        seen["alive"] = ctx.pcscd.socket_path.exists()
        seen["signature"] = ctx.signature
        return Outcome("more work", 0x9000)

    pcap = tmp_path / "composed.pcap"
    result = run_quickstart(
        "valid",
        pcap=pcap,
        timeout=60,
        steps=(*SETUP, *CARD_PATH, Step(name="extra", title="one more phase", run=extra)),
    )
    assert result.passed, result.to_json()
    assert result.steps[-1].name == "extra" and result.steps[-1].status is StepStatus.PASSED
    assert seen["alive"] is True and isinstance(seen["signature"], bytes)
    assert not Path(str(seen["socket"])).exists()  # stopped after the last step
    trace = ApduTrace.read_pcap(pcap)
    assert trace.entries[0].direction is Direction.ATR
    assert result.apdus == 11
