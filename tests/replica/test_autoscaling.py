"""The orchestrator's autoscaling policy: replicas for its runs (executing and queued), or
for its requests in flight as Serve's default policy would, whichever is more; and the
settings that hand it to Serve."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from ray.serve.config import AutoscalingConfig, AutoscalingPolicy

from agent_runtime.config.serve_settings import RUNS_POLICY, ServeSettings
from agent_runtime.replica.autoscaling import QUEUED, RUNNING, RunsPolicy, run_stats


@dataclass
class Config:
    target_ongoing_requests: float = 32.0

    def get_target_ongoing_requests(self) -> float:
        return self.target_ongoing_requests


@dataclass
class Ctx:
    aggregated_metrics: dict[str, dict[Any, float]] | None
    total_num_requests: float = 0.0
    config: Config = field(default_factory=Config)


def test_a_backlog_of_background_runs_asks_for_replicas_without_any_request() -> None:
    # Two replicas each running 10, and 100 queued (every replica counts the same queue).
    metrics = {RUNNING: {"r1": 10.0, "r2": 10.0}, QUEUED: {"r1": 100.0, "r2": 100.0}}
    desired, state = RunsPolicy(target_runs=30)(Ctx(metrics))
    assert desired == pytest.approx(4.0)  # (10 + 10 + 100) / 30
    assert state == {}


def test_requests_in_flight_still_count_as_the_default_policy_counts_them() -> None:
    metrics = {RUNNING: {"r1": 2.0}, QUEUED: {"r1": 0.0}}
    desired, _ = RunsPolicy(target_runs=32)(Ctx(metrics, total_num_requests=96))
    assert desired == pytest.approx(3.0)  # 96 waits / 32 per replica


def test_no_metrics_yet_asks_for_nothing_more() -> None:
    assert RunsPolicy(target_runs=32)(Ctx(None))[0] == 0.0
    with pytest.raises(ValueError):
        RunsPolicy(target_runs=0)


def test_a_replica_reports_its_last_counts() -> None:
    assert run_stats(3, None) == {RUNNING: 3.0, QUEUED: 0.0}
    assert run_stats(3, 7) == {RUNNING: 3.0, QUEUED: 7.0}


def test_the_orchestrator_hands_the_policy_to_serve_and_serve_accepts_it() -> None:
    settings = ServeSettings()
    config = settings.orchestrator.autoscaling_config()
    assert config["policy"] == {
        "policy_function": RUNS_POLICY,
        "policy_kwargs": {"target_runs": 32.0},
    }
    assert "policy" not in settings.ingress.autoscaling_config()
    # Serve validates it, imports it by its path and makes the callable it will call.
    validated = AutoscalingConfig(**config)
    assert isinstance(validated.policy, AutoscalingPolicy)
    assert validated.policy.get_policy() is RunsPolicy
