"""The orchestrator scales on its runs, not only on the HTTP requests in flight.

A background run returns at creation, so Serve's default policy (ongoing requests per
replica) never sees a backlog: 400 queued runs leave it at one replica. Each orchestrator
replica reports its runs to Serve (``record_autoscaling_stats``: the runs executing on it,
and the queue's depth, which every replica counts alike), and :class:`RunsPolicy` asks for
enough replicas to hold ``target_runs`` each, or enough for the requests in flight (waits
and streams hold one each) as the default policy would, whichever is more. Serve then
applies the deployment's bounds, delays and factors (``AGENT_ORCHESTRATOR__*``) as for its
own policy.

Imports no Ray: Serve's controller unpickles this policy, and tests call it directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

RUNNING = "runs_running"  # executing on the reporting replica: summed over replicas
QUEUED = "runs_queued"  # waiting in the database for any replica: the same on every one


class ScalingConfig(Protocol):
    def get_target_ongoing_requests(self) -> float: ...


class Context(Protocol):
    """What the policy reads of Serve's ``AutoscalingContext``."""

    @property
    def aggregated_metrics(self) -> Mapping[str, Mapping[Any, float]] | None: ...

    @property
    def total_num_requests(self) -> float: ...

    @property
    def config(self) -> ScalingConfig: ...


def run_stats(in_flight: int, queued: int | None) -> dict[str, float]:
    """A replica's report to Serve (queued: the last depth counted, 0 before the first)."""
    return {RUNNING: float(in_flight), QUEUED: float(queued or 0)}


class RunsPolicy:
    """Serve's custom autoscaling policy for the orchestrator (``policy_kwargs``:
    ``target_runs``, the runs one replica should hold)."""

    def __init__(self, target_runs: float) -> None:
        if target_runs <= 0:
            raise ValueError("target_runs must be > 0")
        self.target_runs = target_runs

    def __call__(self, ctx: Context) -> tuple[float, dict[str, Any]]:
        metrics = ctx.aggregated_metrics or {}
        running = sum(metrics.get(RUNNING, {}).values())
        queued = max(metrics.get(QUEUED, {}).values(), default=0.0)
        by_runs = (running + queued) / self.target_runs
        by_requests = ctx.total_num_requests / ctx.config.get_target_ongoing_requests()
        return max(by_runs, by_requests), {}
