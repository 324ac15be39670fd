"""The step runner behind ``onshi quickstart``: order, first failure, hard timeout, clean-up."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pytest

from onshi.errors import OnshiError
from onshi.quickstart.steps import (
    Cancelled,
    Outcome,
    Resources,
    Step,
    StepFailed,
    StepRunner,
    StepStatus,
)


@dataclass
class Ctx:
    log: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


def ok(name: str) -> Step[Ctx]:
    def run(ctx: Ctx) -> Outcome:
        ctx.log.append(name)
        return Outcome(f"{name} done", 0x9000)

    return Step(name=name, title=f"do {name}", run=run)


def test_steps_run_in_order_and_report_detail_and_sw() -> None:
    ctx = Ctx()
    results = StepRunner([ok("a"), ok("b"), ok("c")], ctx).run(timeout=5)
    assert ctx.log == ["a", "b", "c"]
    assert [r.status for r in results] == [StepStatus.PASSED] * 3
    assert results[1].detail == "b done" and results[1].sw == 0x9000
    assert all(r.seconds >= 0 for r in results)
    assert results[0].to_json()["sw"] == "9000"


def test_first_failure_stops_the_run_and_the_rest_is_skipped() -> None:
    def bad(ctx: Ctx) -> Outcome:
        raise StepFailed("VERIFY: 69 84", sw=0x6984)

    ctx = Ctx()
    steps = [ok("a"), Step(name="bad", title="fail", run=bad), ok("c")]
    results = StepRunner(steps, ctx).run(timeout=5)
    assert ctx.log == ["a"]
    assert [r.status for r in results] == [StepStatus.PASSED, StepStatus.FAILED, StepStatus.SKIPPED]
    assert results[1].sw == 0x6984 and results[1].detail == "VERIFY: 69 84"


def test_onshi_error_in_a_card_step_is_a_failure_not_a_setup_error() -> None:
    def lost(ctx: Ctx) -> Outcome:
        raise OnshiError("the card was removed", fix="reinsert it")

    runner = StepRunner([Step(name="lost", title="t", run=lost)], Ctx())
    (result,) = runner.run(timeout=5)
    assert result.status is StepStatus.FAILED
    assert result.detail == "the card was removed (fix: reinsert it)"
    assert runner.setup_error is None


def test_onshi_error_in_a_setup_step_is_kept_for_the_caller() -> None:
    error = OnshiError("pcscd not found", fix="run ci/setup.sh")

    def setup(ctx: Ctx) -> Outcome:
        raise error

    runner = StepRunner([Step(name="s", title="t", run=setup, setup=True), ok("b")], Ctx())
    results = runner.run(timeout=5)
    assert runner.setup_error is error
    assert [r.status for r in results] == [StepStatus.FAILED, StepStatus.SKIPPED]


def test_a_bug_in_a_step_is_kept_as_a_crash() -> None:
    def bug(ctx: Ctx) -> Outcome:
        raise ZeroDivisionError("oops")

    runner = StepRunner([Step(name="bug", title="t", run=bug)], Ctx())
    (result,) = runner.run(timeout=5)
    assert result.status is StepStatus.FAILED
    assert isinstance(runner.crash, ZeroDivisionError)


def test_timeout_fails_the_running_step_and_skips_the_rest() -> None:
    def block(ctx: Ctx) -> Outcome:
        ctx.release.wait(10)
        ctx.log.append("late")
        return Outcome("too late")

    ctx = Ctx()
    runner = StepRunner([ok("a"), Step(name="block", title="t", run=block), ok("c")], ctx)
    started = time.monotonic()
    results = runner.run(timeout=0.3)
    assert time.monotonic() - started < 2
    assert [r.status for r in results] == [StepStatus.PASSED, StepStatus.FAILED, StepStatus.SKIPPED]
    assert results[1].detail == "timed out: the run's 0.3 s bound passed in this step"
    ctx.release.set()  # what tearing the stack down does to a blocked exchange
    runner.join(5)
    assert ctx.log == ["a", "late"]  # the abandoned worker ran nothing after the blocked step
    assert len(results) == 3


class Tracked:
    def __init__(self, log: list[str], name: str) -> None:
        self.log, self.name = log, name

    def __enter__(self) -> Tracked:
        self.log.append(f"start {self.name}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.log.append(f"stop {self.name}")


def test_resources_close_in_reverse_order() -> None:
    log: list[str] = []
    resources = Resources()
    resources.adopt(Tracked(log, "pcscd"))
    resources.callback(lambda: log.append("stop card"))
    resources.close()
    assert log == ["start pcscd", "stop card", "stop pcscd"]


def test_resources_adopted_after_close_are_stopped_at_once() -> None:
    """A pcscd that finished starting after the deadline must not outlive the run."""
    log: list[str] = []
    resources = Resources()
    resources.close()
    with pytest.raises(Cancelled):
        resources.adopt(Tracked(log, "pcscd"))
    with pytest.raises(Cancelled):
        resources.callback(lambda: log.append("stop card"))
    assert log == ["start pcscd", "stop pcscd", "stop card"]


def test_timeout_then_close_stops_a_resource_started_late() -> None:
    log: list[str] = []
    resources = Resources()
    gate = threading.Event()

    def slow_start(ctx: Ctx) -> Outcome:
        gate.wait(5)
        resources.adopt(Tracked(log, "late"))
        return Outcome("started")

    runner = StepRunner([Step(name="s", title="t", run=slow_start, setup=True)], Ctx())
    (result,) = runner.run(timeout=0.1)
    assert result.status is StepStatus.FAILED
    resources.close()
    gate.set()
    runner.join(5)
    assert log == ["start late", "stop late"]


def test_a_setup_error_after_the_deadline_is_the_timeouts_not_the_users() -> None:
    """A set-up step whose resources were torn down at the deadline fails with an OnshiError
    (e.g. the server lost its database); that is the timeout, not a user error to re-raise."""

    def starting(ctx: Ctx) -> Outcome:
        ctx.release.wait(5)
        raise OnshiError("the backend server did not answer /healthz", fix="read its log")

    ctx = Ctx()
    runner = StepRunner([Step(name="backend", title="b", run=starting, setup=True)], ctx)
    (result,) = runner.run(0.05)
    assert result.status is StepStatus.FAILED and result.detail.startswith("timed out")
    ctx.release.set()
    runner.join(5)
    assert runner.setup_error is None


def test_a_crash_after_the_deadline_is_not_a_bug_to_re_raise() -> None:
    """Tear-down at the deadline pulls files from under a running step (the population's
    temp dir); what it raises then is a consequence of the timeout."""

    def seeding(ctx: Ctx) -> Outcome:
        ctx.release.wait(5)
        raise FileNotFoundError("population.db.seeding")

    ctx = Ctx()
    runner = StepRunner([Step(name="population", title="p", run=seeding, setup=True)], ctx)
    (result,) = runner.run(0.05)
    assert result.detail.startswith("timed out")
    ctx.release.set()
    runner.join(5)
    assert runner.crash is None
