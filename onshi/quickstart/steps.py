"""Run a list of named steps against a shared context, bounded by a hard timeout.

``onshi quickstart`` is a composition of steps (start the stack, then the card path); a later
load-test phase is more steps appended to the list. Each step is a plain function of the
context that returns a one-line detail or raises :class:`StepFailed`. The runner times every
step, stops at the first failure (the rest are reported as skipped), and runs the steps in a
worker thread so that the caller's deadline holds even when a step blocks in C code (pyscard):
on timeout the caller tears the stack down, which unblocks the worker. Clean-up is bounded too
(:meth:`Resources.close` with a timeout), so a run ends within its timeout plus the clean-up
bound whatever a step or a stopping process does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, NamedTuple, TypeVar

from onshi.errors import OnshiError

C = TypeVar("C")
T = TypeVar("T")


class StepStatus(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"
    """Not run: an earlier step failed or the deadline passed."""


class StepFailed(Exception):
    """Raised by a step: the detail says what was expected and what was seen."""

    def __init__(self, detail: str, *, sw: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.sw = sw


class Outcome(NamedTuple):
    """What a passed step reports: a one-line detail and the status word that decided it."""

    detail: str
    sw: int | None = None


class Cancelled(Exception):
    """The run was abandoned (timeout, Ctrl-C) while a step was still starting something."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Step(Generic[C]):
    """A named action on the context ``C``."""

    name: str
    """Short machine name, e.g. ``verify_pin``."""
    title: str
    """What it does, for people."""
    run: Callable[[C], Outcome]
    """Does the work and says how it went; raises :class:`StepFailed` on a wrong answer."""
    setup: bool = False
    """A set-up step (start pcscd, insert the card): its :class:`OnshiError` is the user's to
    fix and is re-raised after clean-up, instead of becoming a failed verdict."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StepResult:
    name: str
    title: str
    status: StepStatus
    detail: str
    seconds: float
    sw: int | None = None
    """The status word that decided the step, when one did."""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "status": self.status.value,
            "detail": self.detail,
            "sw": None if self.sw is None else f"{self.sw:04X}",
            "ms": round(self.seconds * 1000, 3),
        }


class Resources:
    """An exit stack that steps add to from the worker thread and the caller closes.

    After :meth:`close`, anything adopted is closed at once and :class:`Cancelled` raised, so a
    pcscd started by a step that outlived the deadline is still stopped.
    """

    def __init__(self) -> None:
        self._stack = ExitStack()
        self._lock = threading.Lock()
        self._closed = False
        self._closing = threading.Event()

    def adopt(self, manager: AbstractContextManager[T]) -> T:
        value = manager.__enter__()
        with self._lock:
            if not self._closed:
                self._stack.push(manager)
                return value
        manager.__exit__(None, None, None)
        raise Cancelled("the run was stopped")

    def callback(self, fn: Callable[[], object]) -> None:
        with self._lock:
            if not self._closed:
                self._stack.callback(fn)
                return
        fn()
        raise Cancelled("the run was stopped")

    def close(self, timeout: float | None = None) -> bool:
        """Stop everything adopted, newest first; True once all of it has stopped.

        With ``timeout``, return False when clean-up has not finished by then (it goes on in a
        daemon thread): a stuck stop must not hold the caller past its own time bound.
        """
        with self._lock:
            self._closed = True
        self._closing.set()
        if timeout is None:
            self._stack.close()
            return True
        closer = threading.Thread(target=self._stack.close, name="onshi-cleanup", daemon=True)
        closer.start()
        closer.join(timeout)
        return not closer.is_alive()

    def wait_closed(self, timeout: float) -> bool:
        """Block until :meth:`close` has been called (tests: a step that outlives the deadline)."""
        return self._closing.wait(timeout)


class StepRunner(Generic[C]):
    """Runs steps in order in a worker thread; :meth:`run` returns within the timeout."""

    def __init__(
        self,
        steps: Sequence[Step[C]],
        context: C,
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.steps = tuple(steps)
        self.context = context
        self.clock = clock
        self._results: list[StepResult] = []
        self._lock = threading.Lock()
        self._abandoned = False
        self._current: tuple[Step[C], float] | None = None
        self._setup_error: OnshiError | None = None
        self._crash: BaseException | None = None
        self._worker: threading.Thread | None = None
        self._finished = False
        self._wake = threading.Event()
        """Set when the worker is done or :meth:`expire` is called: what :meth:`run` waits for."""

    def run(self, timeout: float) -> tuple[StepResult, ...]:
        """Run every step; after ``timeout`` seconds (or at :meth:`expire`) the running step
        is reported as failed ("timed out") and the rest as skipped. The caller then closes its
        resources."""
        self._worker = threading.Thread(target=self._work, name="onshi-steps", daemon=True)
        self._worker.start()
        try:
            self._wake.wait(timeout)
        except BaseException:  # Ctrl-C: the worker must not start anything more
            with self._lock:
                self._abandoned = True
            raise
        with self._lock:
            if not self._finished:
                self._abandoned = True
                if self._current is not None:
                    step, started = self._current
                    self._results.append(
                        _result(
                            step,
                            StepStatus.FAILED,
                            f"timed out: the run's {timeout:g} s bound passed in this step",
                            started,
                            self.clock(),
                        )
                    )
            results = list(self._results)
        done = {r.name for r in results}
        results += [
            StepResult(
                name=s.name, title=s.title, status=StepStatus.SKIPPED, detail="", seconds=0.0
            )
            for s in self.steps
            if s.name not in done
        ]
        return tuple(results)

    def expire(self) -> None:
        """Let the deadline pass now, as if ``timeout`` had run out: tests use it to put the
        deadline inside a chosen step deterministically, instead of racing a real clock."""
        self._wake.set()

    def join(self, timeout: float) -> bool:
        """Wait for an abandoned worker to notice that its resources are gone; True if it
        has ended (or never started)."""
        if self._worker is None:
            return True
        self._worker.join(max(0.0, timeout))
        return not self._worker.is_alive()

    @property
    def crash(self) -> BaseException | None:
        """An unexpected exception from a step (a bug): the caller re-raises it after clean-up."""
        return self._crash

    @property
    def setup_error(self) -> OnshiError | None:
        """The user-fixable error of a failed set-up step, if that is why the run stopped."""
        return self._setup_error

    def _work(self) -> None:
        try:
            self._work_steps()
        finally:
            with self._lock:
                self._finished = True
            self._wake.set()

    def _work_steps(self) -> None:
        for step in self.steps:
            started = self.clock()
            with self._lock:
                if self._abandoned:
                    return
                self._current = (step, started)
            result = self._run_one(step, started)
            with self._lock:
                if self._abandoned:
                    return
                self._results.append(result)
                self._current = None
            if result.status is not StepStatus.PASSED:
                return

    def _run_one(self, step: Step[C], started: float) -> StepResult:
        try:
            outcome = step.run(self.context)
        except StepFailed as failure:
            return _result(
                step, StepStatus.FAILED, failure.detail, started, self.clock(), failure.sw
            )
        except Cancelled:
            return _result(step, StepStatus.FAILED, "stopped", started, self.clock())
        except OnshiError as error:
            with self._lock:  # after the deadline the failure is the timeout's, not the user's
                if step.setup and not self._abandoned:
                    self._setup_error = error
            return _result(step, StepStatus.FAILED, str(error), started, self.clock())
        except Exception as error:
            with self._lock:  # after the deadline its resources were torn down under it
                if not self._abandoned:
                    self._crash = error
            detail = f"internal error: {type(error).__name__}: {error}"
            return _result(step, StepStatus.FAILED, detail, started, self.clock())
        return _result(step, StepStatus.PASSED, outcome.detail, started, self.clock(), outcome.sw)


def _result(
    step: Step[Any],
    status: StepStatus,
    detail: str,
    started: float,
    ended: float,
    sw: int | None = None,
) -> StepResult:
    return StepResult(
        name=step.name,
        title=step.title,
        status=status,
        detail=detail,
        seconds=max(0.0, ended - started),
        sw=sw,
    )
