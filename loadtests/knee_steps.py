"""``make loadtest-knee``'s logic, free of Locust: the step plan, per-step statistics, when to
stop, and which step is the knee.

Locust's gevent patching must stay out of pytest and Ray, so this module imports neither;
``loadtests/locustfile_knee.py`` drives a :class:`Stepper` from its ``LoadTestShape`` and its
request listener, and the tests drive one with synthetic records.

A step's statistics count only the requests that *ended* during that step: each step is
judged on its own, not on the run so far, as Locust's cumulative statistics would.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from pydantic import BaseModel, Field, computed_field

from loadtests.bench_figures import percentile

RUN_ROUTE = "/threads/{thread_id}/runs/wait"  # the locustfile's name for its runs


class StepPlan(BaseModel):
    """Users ``start_users``, then ``step_users`` more every ``step_s``, up to ``max_users``."""

    start_users: int = Field(4, ge=1)
    step_users: int = Field(4, ge=1)
    step_s: float = Field(30.0, gt=0)
    max_users: int = Field(128, ge=1)
    spawn_rate: float | None = Field(None, gt=0, description="users/s; None: a step within ~1 s")

    def users(self, step: int) -> int:
        return min(self.start_users + step * self.step_users, self.max_users)

    @property
    def last_step(self) -> int:
        """The first step at ``max_users``: the run ends after it whatever it shows."""
        return max(0, math.ceil((self.max_users - self.start_users) / self.step_users))

    @property
    def rate(self) -> float:
        return self.spawn_rate or float(max(self.start_users, self.step_users))

    @property
    def longest_s(self) -> float:
        return (self.last_step + 1) * self.step_s


class Slo(BaseModel):
    """A step is within the SLO when its runs' p99 and its error rate are both within bounds."""

    p99_ms: float = Field(2000.0, gt=0)
    max_error_rate: float = Field(0.01, ge=0, le=1)

    def breach(self, step: WindowStats) -> str | None:
        """Why ``step`` is outside the SLO, or None when it is within."""
        if step.error_rate > self.max_error_rate:
            return f"errors {step.error_rate:.2%} > {self.max_error_rate:.2%}"
        if step.p99_ms is None:
            # Every user was still waiting when the step ended: slower than any SLO worth having.
            return "no run finished within the step"
        if step.p99_ms > self.p99_ms:
            return f"p99 {step.p99_ms:.0f} ms > {self.p99_ms:.0f} ms"
        return None


class Record(NamedTuple):
    """One request as Locust reported it: when it ended (s since the start), its time."""

    at_s: float
    ms: float
    failed: bool
    is_run: bool


class WindowStats(BaseModel):
    """Requests that ended in ``[start_s, end_s)``; latencies are the runs' only."""

    start_s: float
    end_s: float
    requests: int
    errors: int
    runs: int  # runs/wait answered well
    runs_per_s: float
    p50_ms: float | None
    p99_ms: float | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


class StepStats(WindowStats):
    step: int
    users: int


def window_stats(start_s: float, end_s: float, records: list[Record]) -> WindowStats:
    runs = [r.ms for r in records if r.is_run and not r.failed]
    span = end_s - start_s
    return WindowStats(
        start_s=start_s,
        end_s=end_s,
        requests=len(records),
        errors=sum(r.failed for r in records),
        runs=len(runs),
        runs_per_s=len(runs) / span if span > 0 else 0.0,
        p50_ms=percentile(runs, 50) if runs else None,
        p99_ms=percentile(runs, 99) if runs else None,
    )


class Knee(BaseModel):
    """The verdict: the last step within the SLO before the first outside it."""

    knee: StepStats | None  # None: even the first step was outside the SLO
    broken_by: StepStats | None  # None: max_users was reached within the SLO
    reason: str

    @property
    def found(self) -> bool:
        return self.knee is not None and self.broken_by is not None


def find_knee(steps: list[StepStats], slo: Slo) -> Knee:
    """The last step within ``slo`` before the first outside it (steps in order)."""
    within: StepStats | None = None
    for step in steps:
        why = slo.breach(step)
        if why is not None:
            if within is None:
                reason = f"step 0 ({step.users} users) already outside the SLO: {why}; start lower"
            else:
                reason = f"{step.users} users broke the SLO: {why}"
            return Knee(knee=within, broken_by=step, reason=reason)
        within = step
    if within is None:
        return Knee(knee=None, broken_by=None, reason="no step completed")
    return Knee(
        knee=within,
        broken_by=None,
        reason=f"within the SLO up to max users ({within.users}): the knee lies beyond",
    )


class StepLog(BaseModel):
    """What the Locust process hands the driver: the plan, the SLO and what each step saw."""

    plan: StepPlan
    slo: Slo
    started_at: float  # Unix time of the shape's start, to line up Prometheus' samples
    steps: list[StepStats]
    samples: list[WindowStats]
    stop_reason: str | None


class Stepper:
    """The shape's state: which users to run now, each finished step's stats, and when to stop.

    ``record`` takes each request as it ends; ``tick`` (about once a second) closes the steps
    whose time is over and answers the users to run, or None once a closed step broke the
    SLO or the last step (at ``max_users``) is over.
    """

    def __init__(self, plan: StepPlan, slo: Slo, sample_s: float = 5.0) -> None:
        self.plan, self.slo, self.sample_s = plan, slo, sample_s
        self.steps: list[StepStats] = []
        self.samples: list[WindowStats] = []  # finer windows, for the picture
        self.stop_reason: str | None = None
        self._pending: dict[int, list[Record]] = {}  # step index -> its requests so far

    def record(self, record: Record) -> None:
        self._pending.setdefault(int(record.at_s // self.plan.step_s), []).append(record)

    def tick(self, elapsed_s: float) -> int | None:
        if self.stop_reason is not None:
            return None
        current = int(elapsed_s // self.plan.step_s)
        # A late tick may find more than one step over: close each in order.
        while len(self.steps) < current:
            step = self._close(len(self.steps))
            why = self.slo.breach(step)
            if why is not None:
                self.stop_reason = f"{step.users} users: {why}"
            elif step.step >= self.plan.last_step:
                self.stop_reason = f"max users ({step.users}) reached within the SLO"
            if self.stop_reason is not None:
                return None
        return self.plan.users(current)

    def log(self, started_at: float) -> StepLog:
        return StepLog(
            plan=self.plan,
            slo=self.slo,
            started_at=started_at,
            steps=self.steps,
            samples=self.samples,
            stop_reason=self.stop_reason,
        )

    def _close(self, index: int) -> StepStats:
        start = index * self.plan.step_s
        end = start + self.plan.step_s
        records = self._pending.pop(index, [])
        stats = window_stats(start, end, records).model_dump(exclude={"error_rate"})
        step = StepStats(step=index, users=self.plan.users(index), **stats)
        self.steps.append(step)
        windows = max(1, round(self.plan.step_s / self.sample_s))
        width = self.plan.step_s / windows
        for w in range(windows):
            low, high = start + w * width, start + (w + 1) * width
            inside = [r for r in records if low <= r.at_s < high]
            self.samples.append(window_stats(low, high, inside))
        return step
