"""Concurrent runs and queued background runs per tenant, checked when a run is created.

The run queue is the database (:mod:`agent_runtime.runs.run_queue`), so the count is taken there, in
the transaction that records the run: no second store to keep in step, nothing to leak
when a replica dies, nothing to reconcile. Why the count is exact:

* the creation transaction first locks the tenant's row (``SELECT ... FOR UPDATE`` on
  Postgres; SQLite's ``BEGIN IMMEDIATE`` already serialises every writer), so two
  creations for one tenant cannot both count the last free slot: the second one waits for
  the first to commit and then counts its run (Postgres re-reads at each statement in
  READ COMMITTED);
* the run is admitted against what it becomes: a run that starts now (its thread is free)
  needs ``running < max_concurrent_runs``; a background run that waits (its thread is busy,
  or ``after_seconds`` delays it) needs ``pending background < max_queued_runs``. A
  refusal is :class:`RateLimited` (429, ``limit`` ``concurrent_runs`` or ``queued_runs``)
  and rolls the whole creation back;
* a run leaves the counts by changing status (finished, cancelled, reaped), in the same
  statements that already do it; a crashed replica's runs are reaped back to ``pending``
  and then resumed, so no count outlives its run.

What it does not bound: a queued run starts without a new check when its turn comes (the
thread's previous run ended, a delayed run fell due, a dead replica's run is resumed), so
``running`` can pass ``max_concurrent_runs`` by the runs that were queued or delayed; the
queue limit bounds those. Wait and stream runs waiting for their thread are not "queued
background runs" (their caller holds a connection; the per-key request limit bounds them).

Limits come from ``agent_tenant_limits`` (read in the same transaction, so a change applies
to the next creation) or, for a field the tenant left null, the runtime's defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from agent_runtime.config.settings import LimitSettings
from agent_runtime.core.errors import RateLimited
from agent_runtime.core.records import RunRecord
from agent_runtime.db.tables import RUNS, TENANT_LIMITS, TENANTS

CONCURRENT_RUNS = "concurrent_runs"
QUEUED_RUNS = "queued_runs"
# A run's length is unknown; this is how long a refused caller is told to wait.
RETRY_AFTER_S = 5.0


@dataclass(frozen=True, slots=True)
class RunLimits:
    """Per-tenant run limits; None: no limit."""

    max_concurrent_runs: int | None = None
    max_queued_runs: int | None = None

    @classmethod
    def from_settings(cls, settings: LimitSettings) -> RunLimits:
        return cls(settings.max_concurrent_runs, settings.max_queued_runs)

    @property
    def any(self) -> bool:
        return self.max_concurrent_runs is not None or self.max_queued_runs is not None


async def effective_limits(
    conn: AsyncConnection, tenant_id: str, defaults: RunLimits, *, postgres: bool
) -> RunLimits:
    """The tenant's limits (its own, else ``defaults``); when any applies, its tenant row
    is locked until the transaction ends, serialising its run creations."""
    row = (
        await conn.execute(
            select(TENANT_LIMITS.c.max_concurrent_runs, TENANT_LIMITS.c.max_queued_runs).where(
                TENANT_LIMITS.c.tenant_id == tenant_id
            )
        )
    ).first()
    limits = RunLimits(
        row.max_concurrent_runs if row and row.max_concurrent_runs is not None else None,
        row.max_queued_runs if row and row.max_queued_runs is not None else None,
    )
    limits = RunLimits(
        limits.max_concurrent_runs or defaults.max_concurrent_runs,
        limits.max_queued_runs if limits.max_queued_runs is not None else defaults.max_queued_runs,
    )
    if limits.any and postgres:
        await conn.execute(
            select(TENANTS.c.tenant_id).where(TENANTS.c.tenant_id == tenant_id).with_for_update()
        )
    return limits


async def admit(conn: AsyncConnection, record: RunRecord, limits: RunLimits) -> None:
    """Raise :class:`RateLimited` unless ``record`` (about to be inserted) fits its
    tenant's limits; see the module's docstring for what is counted."""
    tenant = RUNS.c.tenant_id == record.tenant_id
    if record.status == "running" and limits.max_concurrent_runs is not None:
        running = await _count(conn, tenant, RUNS.c.status == "running")
        if running >= limits.max_concurrent_runs:
            raise RateLimited(
                f"concurrent runs limit of {limits.max_concurrent_runs} for this tenant "
                f"reached ({running} running); retry when one ends",
                retry_after=RETRY_AFTER_S,
                limit=CONCURRENT_RUNS,
                maximum=limits.max_concurrent_runs,
                remaining=0,
            )
    background = bool(record.kwargs.get("background"))
    if record.status == "pending" and background and limits.max_queued_runs is not None:
        queued = await _count(
            conn,
            tenant,
            RUNS.c.status == "pending",
            RUNS.c["kwargs"]["background"].as_boolean().is_(True),
        )
        if queued >= limits.max_queued_runs:
            raise RateLimited(
                f"queued background runs limit of {limits.max_queued_runs} for this tenant "
                f"reached ({queued} waiting); retry when the queue drains",
                retry_after=RETRY_AFTER_S,
                limit=QUEUED_RUNS,
                maximum=limits.max_queued_runs,
                remaining=0,
            )


async def _count(conn: AsyncConnection, *where: object) -> int:
    query = select(func.count()).select_from(RUNS).where(*where)  # type: ignore[arg-type]
    return int((await conn.execute(query)).scalar_one())
