"""What the executor keeps of one run on this replica, and its settings.

:class:`LocalRun` is a run executing here: its record, its :class:`RunStream`, the future
its waiters on this replica await (:class:`RunResult`) and the graph's task a cancel
stops. :class:`ExecutorSettings` times leases, the reaper and the queue's claims;
:class:`QueueStats` is what the executor reports after each claim.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from agent_runtime.core.records import CancelAction, RunRecord, RunStatus
from agent_runtime.core.timing import RunTimings
from agent_runtime.execution.run_trace import RunTrace
from agent_runtime.runs.event_stream import RunStream


class ExecutorSettings(BaseModel):
    """Timing of leases and of the queue loop (the run limits live in ``RunLimits``)."""

    heartbeat_s: float = Field(default=1.0, gt=0, description="Lease refresh interval.")
    lease_s: float = Field(default=10.0, gt=0, description="A run idle this long is reaped.")
    poll_s: float = Field(
        default=2.0,
        gt=0,
        description="Reaper interval, and the queue's when no notification comes (the fallback).",
    )
    claim_min_interval_s: float = Field(
        default=0.05, ge=0, description="Least time between two claims of queued runs."
    )
    max_attempts: int = Field(default=3, ge=1, description="Tries of a run whose replica dies.")
    max_concurrent_runs: int = Field(default=64, ge=1, description="Runs claimed per replica.")
    stats_interval_s: float = Field(
        default=5.0, gt=0, description="How often the queue's depth is counted (one query)."
    )
    events_flush_attempts: int = Field(
        default=3, ge=1, description="Tries to store a batch of stream events before it is lost."
    )
    events_flush_backoff_s: float = Field(
        default=0.1, ge=0, description="Wait after a batch's first failed try; doubles each try."
    )


@dataclass(frozen=True)
class QueueStats:
    """After a poll: runs executing on this replica, and the runs waiting in the queue
    (pending in the database, every replica's; None when not counted this time)."""

    in_flight: int
    queued: int | None = None


@dataclass
class RunResult:
    """How a run ended, for the request waiting on it in this replica."""

    status: RunStatus | None  # None: rolled back
    output: Any = None  # the wait body (values, ``__interrupt__`` or ``__error__``)
    timings: RunTimings | None = None  # the graph's model calls (None: it never ran)
    graph_ms: float = 0.0  # the graph's wall time in this replica
    trace: RunTrace | None = None  # its spans, when traces are kept
    error: BaseException | None = None  # what failed it, re-raised to a waiter if a runtime error


@dataclass
class LocalRun:
    run: RunRecord
    stream: RunStream
    done: asyncio.Future[RunResult]
    task: asyncio.Task[None] | None = None
    # The graph's own task, which a cancel stops (the run's task then records the end).
    work: asyncio.Task[Any] | None = None
    cancel_action: CancelAction | None = None
    lost: bool = False
    request_id: str | None = None  # the request that submitted it, for its log lines
    at_creation: bool = False  # started by the (authenticated) request that created it

    def stop(self, action: CancelAction | None) -> None:
        """Cancel the graph; ``None`` means the lease was lost (record nothing)."""
        if self.cancel_action is None and not self.lost:
            if action is None:
                self.lost = True
            else:
                self.cancel_action = action
        if self.work is not None and not self.work.done():
            self.work.cancel()
