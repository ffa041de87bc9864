"""Run rows: reads, cancels and deletes, and the base the run queue builds on.

:class:`RunRows` holds what every part of the run store shares (the metadata store, the
clock, the query for a thread's next pending run); :mod:`agent_runtime.runs.run_leases`
adds the leases and claims, :mod:`agent_runtime.runs.run_queue` creation and the end of a
run. Cancelling a pending run ends it at once; a running one is flagged for its worker,
which sees it at its next heartbeat.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from agent_runtime.core.clock import SYSTEM_CLOCK, Clock
from agent_runtime.core.errors import Conflict, NotFound
from agent_runtime.core.metadata_filter import MetadataFilter
from agent_runtime.core.records import CancelAction, RunRecord, RunStatus
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.db.tables import RUN_EVENTS, RUNS, THREADS
from agent_runtime.runs.thread_rows import allowed_by
from agent_runtime.runs.trace_rows import delete_traces


def run_record(row: Any) -> RunRecord:
    return RunRecord.model_validate(dict(row))


class RunRows:
    """The run rows of every tenant, over the metadata store's engine.

    ``clock``: the time rows are stamped with and leases judged by.
    """

    def __init__(self, store: MetadataStore, clock: Clock = SYSTEM_CLOCK) -> None:
        self._store = store
        self._clock = clock

    # -- helpers ------------------------------------------------------------------------
    def _pending_first(self, tenant_id: str, thread_id: str, now: datetime | None = None) -> Any:
        query = select(RUNS).where(
            RUNS.c.thread_id == thread_id,
            RUNS.c.tenant_id == tenant_id,
            RUNS.c.status == "pending",
        )
        if now is not None:
            query = query.where(RUNS.c.created_at <= now)
        query = query.order_by(RUNS.c.created_at, RUNS.c.run_id).limit(1)
        if self._store.is_postgres:
            query = query.with_for_update(skip_locked=True)
        return query

    @staticmethod
    def _tenant_due(tenant_id: str, now: datetime) -> Any:
        """One of the tenant's due queued runs, if any (over the status index)."""
        return (
            select(RUNS.c.run_id)
            .where(
                RUNS.c.status == "pending",
                RUNS.c.created_at <= now,
                RUNS.c.tenant_id == tenant_id,
            )
            .limit(1)
        )

    # -- reads, cancels, deletes ----------------------------------------------------------
    async def get(self, tenant_id: str, run_id: str, thread_id: str | None = None) -> RunRecord:
        query = select(RUNS).where(RUNS.c.run_id == run_id, RUNS.c.tenant_id == tenant_id)
        if thread_id is not None:
            query = query.where(RUNS.c.thread_id == thread_id)
        async with self._store.transaction() as conn:
            row = (await conn.execute(query)).mappings().one_or_none()
        if row is None:
            raise NotFound(f"Run {run_id} not found.")
        return run_record(row)

    async def search(
        self,
        tenant_id: str,
        thread_id: str,
        *,
        limit: int = 10,
        offset: int = 0,
        status: RunStatus | None = None,
    ) -> list[RunRecord]:
        """The thread's runs, newest first."""
        query = select(RUNS).where(RUNS.c.thread_id == thread_id, RUNS.c.tenant_id == tenant_id)
        if status is not None:
            query = query.where(RUNS.c.status == status)
        query = (
            query.order_by(RUNS.c.created_at.desc(), RUNS.c.run_id.desc())
            .limit(limit)
            .offset(offset)
        )
        async with self._store.transaction() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [run_record(row) for row in rows]

    async def in_flight(
        self, tenant_id: str, status: str | None, allowed: MetadataFilter
    ) -> list[str]:
        """The tenant's pending or running runs (or only those of ``status``) on threads
        whose metadata ``allowed`` matches: what a bulk cancel may reach under an app's
        auth filter."""
        statuses = (status,) if status in ("pending", "running") else ("pending", "running")
        query = (
            select(RUNS.c.run_id)
            .join(
                THREADS,
                and_(
                    THREADS.c.thread_id == RUNS.c.thread_id,
                    THREADS.c.tenant_id == RUNS.c.tenant_id,
                ),
            )
            .where(RUNS.c.tenant_id == tenant_id, RUNS.c.status.in_(statuses))
            .where(*allowed_by(self._store.is_postgres, THREADS.c["metadata"], allowed))
        )
        async with self._store.transaction() as conn:
            return [row.run_id for row in (await conn.execute(query)).all()]

    async def cancel(
        self,
        tenant_id: str,
        run_ids: Sequence[str] | None,
        action: CancelAction,
        *,
        thread_id: str | None = None,
        status: str | None = None,
    ) -> list[RunRecord]:
        """Cancel runs: pending ones end at once (``rollback`` deletes them), running ones
        are flagged for their worker. Returns the runs that were in flight."""
        query = select(RUNS).where(
            RUNS.c.tenant_id == tenant_id, RUNS.c.status.in_(("pending", "running"))
        )
        if run_ids is not None:
            query = query.where(RUNS.c.run_id.in_(list(run_ids)))
        if thread_id is not None:
            query = query.where(RUNS.c.thread_id == thread_id)
        if status in ("pending", "running"):
            query = query.where(RUNS.c.status == status)
        now = self._clock.now()
        async with self._store.transaction(write_lock=True) as conn:
            rows = (await conn.execute(query)).mappings().all()
            runs = [run_record(row) for row in rows]
            pending = [r.run_id for r in runs if r.status == "pending"]
            running = [r.run_id for r in runs if r.status == "running"]
            if running:
                await conn.execute(
                    update(RUNS)
                    .where(RUNS.c.run_id.in_(running))
                    .values(cancel_action=action, updated_at=now)
                )
            if pending:
                if action == "rollback":
                    await conn.execute(delete(RUNS).where(RUNS.c.run_id.in_(pending)))
                else:
                    await conn.execute(
                        update(RUNS)
                        .where(RUNS.c.run_id.in_(pending))
                        .values(status="interrupted", updated_at=now)
                    )
                threads = [r.thread_id for r in runs if r.thread_id]
                await self._settle_threads(conn, tenant_id, threads, now)
        return runs

    async def _settle_threads(
        self, conn: AsyncConnection, tenant_id: str, thread_ids: Sequence[str], now: datetime
    ) -> None:
        """The tenant's threads left with nothing in flight go back to idle."""
        active = select(RUNS.c.run_id).where(
            RUNS.c.thread_id == THREADS.c.thread_id,
            RUNS.c.tenant_id == THREADS.c.tenant_id,
            RUNS.c.status.in_(("pending", "running")),
        )
        await conn.execute(
            update(THREADS)
            .where(
                THREADS.c.thread_id.in_(list(set(thread_ids))),
                THREADS.c.tenant_id == tenant_id,
                THREADS.c.status == "busy",
                ~active.exists(),
            )
            .values(status="idle", current_run_id=None, updated_at=now)
        )

    async def delete(self, tenant_id: str, thread_id: str, run_id: str) -> None:
        """Delete a finished run (and its stored events); one in flight is a Conflict."""
        async with self._store.transaction() as conn:
            row = (
                await conn.execute(
                    select(RUNS.c.status).where(
                        RUNS.c.run_id == run_id,
                        RUNS.c.thread_id == thread_id,
                        RUNS.c.tenant_id == tenant_id,
                    )
                )
            ).first()
            if row is None:
                raise NotFound(f"Run {run_id} not found.")
            if row.status in ("pending", "running"):
                raise Conflict(f"Run {run_id} is {row.status}; cancel it before deleting it.")
            await conn.execute(delete(RUN_EVENTS).where(RUN_EVENTS.c.run_id == run_id))
            await delete_traces(conn, [run_id])
            await conn.execute(delete(RUNS).where(RUNS.c.run_id == run_id))

    async def status(self, run_id: str) -> RunStatus | None:
        """The run's status, or None once it is gone (rolled back or deleted)."""
        async with self._store.transaction() as conn:
            row = (await conn.execute(select(RUNS.c.status).where(RUNS.c.run_id == run_id))).first()
        status: RunStatus | None = None if row is None else row.status
        return status
