"""The knee's logic on synthetic requests: the plan, per-step stats, when to stop, the knee."""

from __future__ import annotations

import pytest

from loadtests.knee_steps import Record, Stepper, StepPlan, find_knee, window_stats
from tests.loadtests.knee_samples import PLAN, SLO, feed, runs, stats


def test_plan_steps_users_up_to_the_maximum() -> None:
    assert [PLAN.users(i) for i in range(5)] == [4, 8, 12, 16, 16]
    assert PLAN.last_step == 3
    assert PLAN.longest_s == 40.0
    assert PLAN.rate == 4.0  # a step's users within about a second
    uneven = StepPlan(start_users=1, step_users=4, step_s=5.0, max_users=10)
    assert [uneven.users(i) for i in range(4)] == [1, 5, 9, 10]
    assert uneven.last_step == 3


def test_window_stats_count_all_requests_but_time_only_runs() -> None:
    records = [
        Record(0.5, 100.0, False, is_run=True),
        Record(1.0, 300.0, False, is_run=True),
        Record(1.5, 5.0, True, is_run=False),  # a thread creation that failed
        Record(2.0, 9000.0, True, is_run=True),  # a failed run: an error, not a latency
    ]
    window = window_stats(0.0, 4.0, records)
    assert (window.requests, window.errors, window.runs) == (4, 2, 2)
    assert window.runs_per_s == 0.5
    assert window.p50_ms == 200.0
    assert window.p99_ms == pytest.approx(298.0)
    assert window.error_rate == 0.5
    empty = window_stats(0.0, 4.0, [])
    assert (empty.p50_ms, empty.p99_ms, empty.error_rate) == (None, None, 0.0)


def test_stepper_holds_each_step_for_its_duration_then_steps_up() -> None:
    stepper = Stepper(PLAN, SLO, sample_s=5.0)
    assert stepper.tick(0.0) == 4
    feed(stepper, runs(0, 200.0))
    assert stepper.tick(9.9) == 4
    assert stepper.steps == []  # step 0 not over yet
    assert stepper.tick(10.2) == 8
    (step,) = stepper.steps
    assert (step.step, step.users, step.runs, step.runs_per_s) == (0, 4, 100, 10.0)
    assert len(stepper.samples) == 2  # two 5 s windows of step 0, for the picture
    assert [s.runs for s in stepper.samples] == [50, 50]


def test_each_step_is_judged_on_its_own_requests_not_cumulatively() -> None:
    stepper = Stepper(PLAN, SLO)
    feed(stepper, runs(0, 1900.0))
    feed(stepper, runs(1, 100.0))
    assert stepper.tick(10.0) == 8
    assert stepper.tick(20.0) == 12
    first, second = stepper.steps
    assert first.p99_ms == pytest.approx(1900.0)
    assert second.p99_ms == pytest.approx(100.0)  # step 0's slow runs are not in it


def test_a_step_over_the_p99_slo_stops_the_test() -> None:
    stepper = Stepper(PLAN, SLO)
    feed(stepper, runs(0, 500.0))
    feed(stepper, runs(1, 2500.0))
    assert stepper.tick(10.0) == 8
    assert stepper.tick(20.0) is None
    assert stepper.stop_reason == "8 users: p99 2500 ms > 2000 ms"
    assert stepper.tick(25.0) is None  # stays stopped


def test_errors_over_one_percent_stop_the_test_and_one_percent_does_not() -> None:
    stepper = Stepper(PLAN, SLO)
    feed(stepper, runs(0, 100.0, failed=1))  # exactly 1%: within
    feed(stepper, runs(1, 100.0, failed=2))
    assert stepper.tick(10.0) == 8
    assert stepper.tick(20.0) is None
    assert stepper.stop_reason == "8 users: errors 2.00% > 1.00%"


def test_a_step_where_no_run_finished_is_outside_the_slo() -> None:
    stepper = Stepper(PLAN, SLO)
    assert stepper.tick(10.0) is None
    assert stepper.stop_reason == "4 users: no run finished within the step"


def test_the_last_step_ends_the_test_within_the_slo() -> None:
    stepper = Stepper(PLAN, SLO)
    for step in range(4):
        feed(stepper, runs(step, 100.0))
    assert [stepper.tick(t) for t in (10.0, 20.0, 30.0)] == [8, 12, 16]
    assert stepper.tick(40.0) is None
    assert stepper.stop_reason == "max users (16) reached within the SLO"
    assert [s.users for s in stepper.steps] == [4, 8, 12, 16]


def test_a_late_tick_closes_every_step_that_is_over() -> None:
    stepper = Stepper(PLAN, SLO)
    feed(stepper, runs(0, 100.0))
    feed(stepper, runs(1, 100.0))
    assert stepper.tick(21.0) == 12
    assert [s.step for s in stepper.steps] == [0, 1]
    # A late record of a later step waits for its own step.
    stepper.record(Record(35.0, 100.0, False, is_run=True))
    feed(stepper, runs(2, 100.0))
    assert stepper.tick(31.0) == 16
    assert stepper.steps[-1].runs == 100


def test_the_log_carries_what_the_driver_reports() -> None:
    stepper = Stepper(PLAN, SLO)
    feed(stepper, runs(0, 100.0))
    stepper.tick(10.0)
    log = stepper.log(started_at=1_700_000_000.0)
    assert log.started_at == 1_700_000_000.0
    assert (log.plan, log.slo, log.stop_reason) == (PLAN, SLO, None)
    assert log.model_validate_json(log.model_dump_json()) == log


def test_the_knee_is_the_last_step_within_the_slo_before_the_first_outside() -> None:
    steps = [stats(0, 4, 300.0), stats(1, 8, 900.0), stats(2, 12, 2600.0), stats(3, 16, 500.0)]
    knee = find_knee(steps, SLO)
    assert knee.knee == steps[1]
    assert knee.broken_by == steps[2]
    assert knee.found
    assert knee.reason == "12 users broke the SLO: p99 2600 ms > 2000 ms"


def test_errors_break_the_slo_even_with_fast_runs() -> None:
    steps = [stats(0, 4, 300.0), stats(1, 8, 300.0, errors=5)]
    knee = find_knee(steps, SLO)
    assert (knee.knee, knee.broken_by) == (steps[0], steps[1])
    assert knee.reason == "8 users broke the SLO: errors 5.00% > 1.00%"


def test_no_knee_when_the_first_step_is_already_outside() -> None:
    knee = find_knee([stats(0, 4, 3000.0)], SLO)
    assert knee.knee is None and not knee.found
    assert "start lower" in knee.reason


def test_max_users_within_the_slo_is_a_lower_bound_not_a_knee() -> None:
    steps = [stats(0, 4, 300.0), stats(1, 8, 400.0)]
    knee = find_knee(steps, SLO)
    assert (knee.knee, knee.broken_by, knee.found) == (steps[1], None, False)
    assert "the knee lies beyond" in knee.reason
    assert find_knee([], SLO).reason == "no step completed"
