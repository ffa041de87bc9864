"""Concurrent runs and queued background runs per tenant, checked when a run is created
and when a queued run is claimed.

The run queue is the database (:mod:`agent_runtime.runs.run_queue`), so the count is taken there, in
the transaction that records or claims the run: no second store to keep in step, nothing
to leak when a replica dies, nothing to reconcile. Why the count is exact:

* the transaction first locks the tenant's row (``SELECT ... FOR UPDATE`` on Postgres;
  SQLite's ``BEGIN IMMEDIATE`` already serialises every writer), so two creations or
  claims for one tenant cannot both count the last free slot: the second one waits for
  the first to commit and then counts its run (Postgres re-reads at each statement in
  READ COMMITTED);
* a run that would start now (its thread is free) needs ``running < max_concurrent_runs``.
  When the tenant is at capacity, a background run waits in the queue instead (``pending``,
  claimed once a slot frees), and a wait or stream run is refused: its caller holds a
  connection and retries. A background run that waits (the tenant is at capacity, its
  thread is busy, or ``after_seconds`` delays it) needs ``pending background <
  max_queued_runs``. A refusal is :class:`RateLimited` (429, ``limit`` ``concurrent_runs``
  or ``queued_runs``) and rolls the whole creation back;
* a queued run is claimed (:mod:`agent_runtime.runs.run_leases`) only while its tenant has
  a free slot: the claim counts under the same lock, and the query looking for due runs
  passes over tenants at capacity, so their queue never starves another tenant's;
* a run leaves the counts by changing status (finished, cancelled, reaped), in the same
  statements that already do it; a crashed replica's runs are reaped back to ``pending``
  and then claimed like any queued run, so no count outlives its run.

What it does not bound: when a run ends, its thread's next run takes the slot it frees
(no new count: the tenant's running runs do not grow), and a lowered limit does not stop
runs already running. Wait and stream runs waiting for their thread are not "queued
background runs" (their caller holds a connection; the per-key request limit bounds them).

Limits come from ``agent_tenant_limits`` (read in the same transaction, so a change applies
to the next creation) or, for a field the tenant left null, the runtime's defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, func, or_, select
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
    is locked until the transaction ends, serialising its run creations and claims."""
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


@dataclass(frozen=True, slots=True)
class Capacity:
    """A tenant's limits and running runs, counted in the transaction that holds its lock."""

    limits: RunLimits
    running: int = 0

    @property
    def full(self) -> bool:
        """Whether a run starting now would pass ``max_concurrent_runs``."""
        cap = self.limits.max_concurrent_runs
        return cap is not None and self.running >= cap


async def capacity(
    conn: AsyncConnection, tenant_id: str, defaults: RunLimits, *, postgres: bool
) -> Capacity:
    """The tenant's :class:`Capacity`, its row locked (see :func:`effective_limits`)."""
    limits = await effective_limits(conn, tenant_id, defaults, postgres=postgres)
    if limits.max_concurrent_runs is None:
        return Capacity(limits)
    running = await _count(conn, RUNS.c.tenant_id == tenant_id, RUNS.c.status == "running")
    return Capacity(limits, running)


def has_room(defaults: RunLimits) -> ColumnElement[bool]:
    """SQL: the tenant of the ``RUNS`` row at hand has a free slot (an approximation to
    find claimable runs with; the claim itself counts under the lock)."""
    own = (
        select(TENANT_LIMITS.c.max_concurrent_runs)
        .where(TENANT_LIMITS.c.tenant_id == RUNS.c.tenant_id)
        .scalar_subquery()
    )
    cap = (
        own
        if defaults.max_concurrent_runs is None
        else func.coalesce(own, defaults.max_concurrent_runs)
    )
    running = RUNS.alias("running")
    count = (
        select(func.count())
        .select_from(running)
        .where(running.c.tenant_id == RUNS.c.tenant_id, running.c.status == "running")
        .scalar_subquery()
    )
    return or_(cap.is_(None), count < cap)


async def admit(conn: AsyncConnection, record: RunRecord, room: Capacity) -> None:
    """Raise :class:`RateLimited` unless ``record`` (about to be inserted) fits its
    tenant's limits; see the module's docstring for what is counted."""
    limits = room.limits
    if record.status == "running" and room.full:
        raise RateLimited(
            f"concurrent runs limit of {limits.max_concurrent_runs} for this tenant "
            f"reached ({room.running} running); retry when one ends, or create a "
            "background run, which waits in the queue for a free slot",
            retry_after=RETRY_AFTER_S,
            limit=CONCURRENT_RUNS,
            maximum=limits.max_concurrent_runs,
            remaining=0,
        )
    background = bool(record.kwargs.get("background"))
    if record.status == "pending" and background and limits.max_queued_runs is not None:
        queued = await _count(
            conn,
            RUNS.c.tenant_id == record.tenant_id,
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
