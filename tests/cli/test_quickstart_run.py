"""``run_quickstart``'s time bound and clean-up, with the deadline put inside a chosen step.

The run's timeout is never raced against real work here: a test step calls ``ctx.expire()``
(the deadline passes now) and then blocks on an event that the test sets only after the run
returned, so where the timeout lands does not depend on how fast this machine seeds a
population or starts a server. The real population and the real server run as users run them.
"""

from __future__ import annotations

import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from onshi.quickstart.run import (
    BACKEND_SETUP,
    SETUP,
    QuickstartContext,
    QuickstartResult,
    run_quickstart,
    seed_population,
)
from onshi.quickstart.steps import Outcome, Step, StepStatus

HANG_GUARD = 60.0
"""Only guards the test against a hang; nothing is expected to take this long."""


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at the end of the test: unblocks the steps that outlived their run."""
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temp dir the run's population and server logs go to (checked for leftovers)."""
    path = tmp_path / "tmp"
    path.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    return path


def run_in_thread(**kwargs: object) -> QuickstartResult:
    """``run_quickstart`` that must return within the hang guard (it returned → bounded)."""
    done: list[QuickstartResult] = []
    thread = threading.Thread(target=lambda: done.append(run_quickstart("valid", **kwargs)))
    thread.start()
    thread.join(HANG_GUARD)
    assert not thread.is_alive(), "run_quickstart did not return: its time bound does not hold"
    return done[0]


def statuses(result: QuickstartResult) -> dict[str, StepStatus]:
    return {s.name: s.status for s in result.steps}


def serves(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=5):
            return True
    except OSError:
        return False


def processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            line = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in line:
            found.append(line)
    return found


def test_the_bound_holds_when_a_step_and_its_clean_up_never_finish(
    release: threading.Event,
) -> None:
    """``--timeout 1`` once took 6 s: clean-up and the abandoned worker were waited for without
    a bound. Now the run returns after the timeout plus the clean-up bound whatever blocks, and
    says so in a failed ``cleanup`` step."""

    def hang(ctx: QuickstartContext) -> Outcome:
        ctx.resources.callback(lambda: release.wait(HANG_GUARD))  # a stop that never ends
        ctx.expire()
        release.wait(HANG_GUARD)  # a step that never notices
        return Outcome("too late")

    steps = (Step(name="hang", title="never ends", run=hang),)
    result = run_in_thread(pcap=None, timeout=HANG_GUARD, steps=steps, cleanup_timeout=0.01)
    assert statuses(result) == {"hang": StepStatus.FAILED, "cleanup": StepStatus.FAILED}
    assert result.steps[0].detail.startswith("timed out")
    assert not result.passed and result.to_json()["verdict"] == "fail"


def test_a_clean_run_reports_no_cleanup_step() -> None:
    def quick(ctx: QuickstartContext) -> Outcome:
        ctx.resources.callback(lambda: None)
        return Outcome("done")

    result = run_quickstart(
        "valid", pcap=None, steps=(Step(name="quick", title="q", run=quick),), cleanup_timeout=30
    )
    assert statuses(result) == {"quick": StepStatus.PASSED} and result.passed


def test_timeout_in_the_backend_phase_stops_the_server_and_removes_the_population(
    scratch: Path,
) -> None:
    seen: dict[str, str] = {}

    def deadline_passes(ctx: QuickstartContext) -> Outcome:
        assert ctx.backend_url is not None and ctx.db_path is not None
        seen["url"], seen["db"] = ctx.backend_url, str(ctx.db_path)
        ctx.expire()
        # what tearing the stack down does to a step blocked in an exchange: it ends
        assert ctx.resources.wait_closed(HANG_GUARD)
        return Outcome("too late")

    hang = Step(name="hang", title="the deadline passes here", run=deadline_passes, setup=True)
    result = run_in_thread(pcap=None, timeout=HANG_GUARD, steps=(*BACKEND_SETUP, hang, *SETUP))
    got = statuses(result)
    assert got["population"] is got["backend"] is StepStatus.PASSED
    assert got["hang"] is StepStatus.FAILED and got["mint"] is StepStatus.SKIPPED
    assert "cleanup" not in got  # stopping the server fitted in the clean-up bound
    assert not serves(seen["url"]), "the backend server was left running"
    assert not processes_mentioning(seen["db"]), "a server process was left behind"
    assert list(scratch.iterdir()) == [], "the population and server logs must be removed"


def test_seeding_that_outlives_the_clean_up_removes_its_population(
    scratch: Path, release: threading.Event
) -> None:
    """The deadline passes and clean-up runs before seeding even starts: the population the
    abandoned step then creates is removed by the step itself."""

    def late_seed(ctx: QuickstartContext) -> Outcome:
        ctx.expire()
        assert ctx.resources.wait_closed(HANG_GUARD)
        return seed_population(ctx)

    steps = (Step(name="population", title="seed late", run=late_seed, setup=True),)
    result = run_in_thread(pcap=None, timeout=HANG_GUARD, steps=steps)
    assert statuses(result) == {"population": StepStatus.FAILED}
    assert result.steps[0].detail.startswith("timed out")
    assert list(scratch.iterdir()) == [], "the late population must be removed"
