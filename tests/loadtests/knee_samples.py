"""Synthetic requests and steps for the knee's tests: a plan of 10 s steps, 4 to 16 users."""

from __future__ import annotations

from loadtests.knee_steps import Record, Slo, Stepper, StepPlan, StepStats

PLAN = StepPlan(start_users=4, step_users=4, step_s=10.0, max_users=16)
SLO = Slo(p99_ms=2000.0, max_error_rate=0.01)


def runs(step: int, ms: float, count: int = 100, *, failed: int = 0) -> list[Record]:
    """``count`` runs ending evenly over step ``step`` of PLAN, the first ``failed`` failed."""
    start = step * PLAN.step_s
    return [
        Record(start + PLAN.step_s * i / count, ms, i < failed, is_run=True) for i in range(count)
    ]


def feed(stepper: Stepper, records: list[Record]) -> None:
    for record in records:
        stepper.record(record)


def stats(step: int, users: int, p99_ms: float | None, errors: int = 0) -> StepStats:
    return StepStats(
        step=step,
        users=users,
        start_s=step * 10.0,
        end_s=(step + 1) * 10.0,
        requests=100,
        errors=errors,
        runs=100 - errors,
        runs_per_s=(100 - errors) / 10,
        p50_ms=None if p99_ms is None else p99_ms / 2,
        p99_ms=p99_ms,
    )
