"""The step runner behind ``onshi quickstart``: order, first failure, hard timeout, clean-up.

No test races the runner's timeout against real work: a step that must outlive the deadline
blocks on an event that is set only after the run returned, and the deadline is made to pass
inside it with :meth:`StepRunner.expire` (or a timeout that only it can reach).
"""

from __future__ import annotations

import threading
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
    runner: StepRunner[Ctx] | None = None

    def expire_and_block(self) -> None:
        """The deadline passes now, while this step still runs: it blocks until released."""
        assert self.runner is not None
        self.runner.expire()
        assert self.release.wait(30), "the test never released the step"


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
        ctx.expire_and_block()
        ctx.log.append("late")
        return Outcome("too late")

    ctx = Ctx()
    runner = StepRunner([ok("a"), Step(name="block", title="t", run=block), ok("c")], ctx)
    ctx.runner = runner
    results = runner.run(timeout=60)  # returns while "block" is still blocked
    assert [r.status for r in results] == [StepStatus.PASSED, StepStatus.FAILED, StepStatus.SKIPPED]
    assert results[1].detail == "timed out: the run's 60 s bound passed in this step"
    assert not runner.join(0)  # the worker is still in the blocked step
    ctx.release.set()  # what tearing the stack down does to a blocked exchange
    assert runner.join(30)
    assert ctx.log == ["a", "late"]  # the abandoned worker ran nothing after the blocked step
    assert len(results) == 3


def test_the_real_timeout_fires_in_a_step_that_cannot_finish() -> None:
    def block(ctx: Ctx) -> Outcome:
        assert ctx.release.wait(30)
        return Outcome("too late")

    ctx = Ctx()
    runner = StepRunner([Step(name="block", title="t", run=block)], ctx)
    try:
        (result,) = runner.run(timeout=0.01)
    finally:
        ctx.release.set()
    assert result.status is StepStatus.FAILED and result.detail.startswith("timed out")
    assert runner.join(30)


def test_a_run_that_finishes_is_not_reported_as_timed_out() -> None:
    """The runner decides from the worker's own record, not from whether its thread is still
    alive a moment after its last step."""
    for _ in range(200):
        ctx = Ctx()
        results = StepRunner([ok("a")], ctx).run(timeout=60)
        assert [r.status for r in results] == [StepStatus.PASSED]


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

    def slow_start(ctx: Ctx) -> Outcome:
        ctx.expire_and_block()
        resources.adopt(Tracked(log, "late"))
        return Outcome("started")

    ctx = Ctx()
    runner = StepRunner([Step(name="s", title="t", run=slow_start, setup=True)], ctx)
    ctx.runner = runner
    (result,) = runner.run(timeout=60)
    assert result.status is StepStatus.FAILED
    resources.close()
    ctx.release.set()
    assert runner.join(30)
    assert log == ["start late", "stop late"]


def test_close_with_a_timeout_returns_while_a_stop_is_stuck() -> None:
    """The clean-up bound: a stop that never ends (an event never set) does not hold the
    caller; the stops after it in the stack still ran first (newest first)."""
    log: list[str] = []
    stuck = threading.Event()
    resources = Resources()
    resources.callback(lambda: stuck.wait(30))
    resources.adopt(Tracked(log, "pcscd"))
    try:
        assert resources.close(timeout=0.01) is False
        assert log == ["start pcscd", "stop pcscd"]
        assert resources.wait_closed(0)
    finally:
        stuck.set()
    assert Resources().close(timeout=30) is True


def test_a_setup_error_after_the_deadline_is_the_timeouts_not_the_users() -> None:
    """A set-up step whose resources were torn down at the deadline fails with an OnshiError
    (e.g. the server lost its database); that is the timeout, not a user error to re-raise."""

    def starting(ctx: Ctx) -> Outcome:
        ctx.expire_and_block()
        raise OnshiError("the backend server did not answer /healthz", fix="read its log")

    ctx = Ctx()
    runner = StepRunner([Step(name="backend", title="b", run=starting, setup=True)], ctx)
    ctx.runner = runner
    (result,) = runner.run(60)
    assert result.status is StepStatus.FAILED and result.detail.startswith("timed out")
    ctx.release.set()
    assert runner.join(30)
    assert runner.setup_error is None


def test_a_crash_after_the_deadline_is_not_a_bug_to_re_raise() -> None:
    """Tear-down at the deadline pulls files from under a running step (the population's
    temp dir); what it raises then is a consequence of the timeout."""

    def seeding(ctx: Ctx) -> Outcome:
        ctx.expire_and_block()
        raise FileNotFoundError("population.db.seeding")

    ctx = Ctx()
    runner = StepRunner([Step(name="population", title="p", run=seeding, setup=True)], ctx)
    ctx.runner = runner
    (result,) = runner.run(60)
    assert result.detail.startswith("timed out")
    ctx.release.set()
    assert runner.join(30)
    assert runner.crash is None
