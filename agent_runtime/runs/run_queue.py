"""The run queue in the metadata database: creation with double-texting, claims, leases.

Per-thread serialisation lives in the database, so it holds across orchestrator replicas:
a thread is ``busy`` while it has a pending or running run, and ``current_run_id`` names
the one run that holds it. Claiming is a compare-and-set on the thread row (Postgres row
lock; SQLite's write lock), so two replicas can never run one thread at once.

A running run carries a lease: its replica refreshes ``heartbeat_at`` (and learns about
cancellations in the same statement); a run whose heartbeat lapsed is put back to
``pending`` by any replica's reaper and resumed from the thread's last checkpoint.

Every time written or compared here (creation, claims, heartbeats, the reaper's cutoff)
is this process's, read from the store's injected :class:`~agent_runtime.core.clock.Clock`:
tests move it to make a lease lapse instead of waiting for it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, cast, delete, func, insert, literal, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from agent_runtime.core.clock import SYSTEM_CLOCK, Clock
from agent_runtime.core.errors import Conflict, NotFound
from agent_runtime.core.records import (
    CancelAction,
    MultitaskStrategy,
    RunRecord,
    RunStatus,
    ThreadStatus,
)
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.db.tables import RUN_EVENTS, RUNS, THREADS
from agent_runtime.execution.run_trace import RunTrace
from agent_runtime.runs.event_rows import RunEventStore
from agent_runtime.runs.trace_rows import delete_traces, write_trace
from agent_runtime.tenancy.run_limits import RunLimits, admit, effective_limits

BUSY_MESSAGE = (
    "Thread is already running a task. Wait for it to finish or choose a different "
    "multitask strategy."
)
# A sentinel for "leave the thread's stored values as they are".
KEEP = object()


@dataclass
class NewRun:
    """What to record: the caller has resolved the assistant and validated the request."""

    tenant_id: str
    thread_id: str
    graph_id: str
    assistant_id: str
    kwargs: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    multitask_strategy: MultitaskStrategy = "enqueue"
    if_not_exists: str = "reject"
    after_seconds: float = 0.0
    temporary: bool = False
    # Merged into the thread's metadata (Platform records graph and assistant there).
    thread_metadata: dict[str, Any] = field(default_factory=dict)
    run_id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class CreatedRun:
    run: RunRecord
    # True when this worker holds the thread and must execute the run now.
    started: bool
    # Runs asked to stop for it (multitask ``interrupt`` / ``rollback``).
    superseded: list[str] = field(default_factory=list)


@dataclass
class RunEnd:
    """How a run ended, as its worker reports it."""

    status: RunStatus | None  # None: rolled back (the run row is deleted)
    thread_status: ThreadStatus
    values: Any = KEEP
    interrupts: dict[str, Any] | None = None
    error: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    trace: RunTrace | None = None  # stored with the run's end (agent_runtime.runs.trace_rows)


@dataclass
class Heartbeat:
    cancel: dict[str, CancelAction] = field(default_factory=dict)
    # Runs this worker no longer holds (reaped after a stall, deleted, finished elsewhere).
    lost: set[str] = field(default_factory=set)


def _row(record: RunRecord) -> dict[str, Any]:
    return record.model_dump()


def _run(row: Any) -> RunRecord:
    return RunRecord.model_validate(dict(row))


class RunStore:
    """Run rows and their lifecycle, over the metadata store's engine.

    ``limits``: the default per-tenant run limits (``AGENT_MAX_CONCURRENT_RUNS``,
    ``AGENT_MAX_QUEUED_RUNS``), applied at creation with the tenant's own
    (:mod:`agent_runtime.tenancy.run_limits`). ``clock``: the time rows are stamped with
    and leases judged by.
    """

    def __init__(
        self, store: MetadataStore, limits: RunLimits | None = None, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self._store = store
        self._limits = limits or RunLimits()
        self._clock = clock
        self.events = RunEventStore(store)  # the runs' stored stream events

    # -- helpers ------------------------------------------------------------------------
    def _merge_json(self, column: Any, patch: dict[str, Any]) -> ColumnElement[Any]:
        """``column`` with ``patch``'s keys merged in, in SQL (one statement, no read)."""
        if self._store.is_postgres:
            merged: ColumnElement[Any] = column.op("||")(cast(literal(json.dumps(patch)), JSONB()))
            return merged
        return func.json_patch(column, json.dumps(patch))

    def _pending_first(self, thread_id: str, now: datetime | None = None) -> Any:
        query = select(RUNS).where(RUNS.c.thread_id == thread_id, RUNS.c.status == "pending")
        if now is not None:
            query = query.where(RUNS.c.created_at <= now)
        query = query.order_by(RUNS.c.created_at, RUNS.c.run_id).limit(1)
        if self._store.is_postgres:
            query = query.with_for_update(skip_locked=True)
        return query

    # -- creation -----------------------------------------------------------------------
    async def create(self, new: NewRun, worker_id: str) -> CreatedRun:
        """Record a run and, when its thread is free, claim the thread for ``worker_id``.

        One transaction. On an idle thread that is a compare-and-set of the thread row and
        one insert. On a busy thread the multitask strategy decides: ``reject`` raises
        Conflict; ``enqueue`` queues the run; ``interrupt``/``rollback`` queue it and ask
        the runs in flight to stop (the worker running them sees it at its next heartbeat).
        A run past its tenant's run limits is RateLimited (429) and nothing is written.
        """
        now = self._clock.now()
        delayed = new.after_seconds > 0
        record = RunRecord(
            run_id=new.run_id,
            thread_id=new.thread_id,
            tenant_id=new.tenant_id,
            assistant_id=new.assistant_id,
            graph_id=new.graph_id,
            status="pending",
            metadata=new.metadata,
            kwargs=new.kwargs,
            multitask_strategy=new.multitask_strategy,
            temporary=new.temporary,
            # As in Platform, a delayed run is "created" when it becomes due.
            created_at=now + timedelta(seconds=new.after_seconds),
            updated_at=now,
        )
        running = record.model_copy(
            update={"status": "running", "worker_id": worker_id, "heartbeat_at": now}
        )
        where = (THREADS.c.thread_id == new.thread_id, THREADS.c.tenant_id == new.tenant_id)
        claim = {
            "status": "busy",
            "graph_id": new.graph_id,
            "updated_at": now,
            "metadata": self._merge_json(THREADS.c["metadata"], new.thread_metadata),
        }
        try:
            async with self._store.transaction(write_lock=True) as conn:
                limits = await effective_limits(
                    conn, new.tenant_id, self._limits, postgres=self._store.is_postgres
                )
                if not new.temporary:
                    claimed = await conn.execute(
                        update(THREADS)
                        .where(*where, THREADS.c.status != "busy")
                        .values(**claim, current_run_id=None if delayed else new.run_id)
                    )
                    if claimed.rowcount == 1:
                        return await self._insert(conn, running if not delayed else record, limits)
                    found = await conn.execute(
                        select(THREADS.c.status).where(*where).with_for_update()
                    )
                    status = found.scalar_one_or_none()
                else:
                    status = None
                if status is None:
                    if not new.temporary and new.if_not_exists != "create":
                        raise NotFound("Thread or assistant not found.")
                    await conn.execute(
                        insert(THREADS).values(
                            thread_id=new.thread_id,
                            tenant_id=new.tenant_id,
                            graph_id=new.graph_id,
                            status="busy",
                            metadata=new.thread_metadata,
                            config={},
                            interrupts={},
                            current_run_id=None if delayed else new.run_id,
                            created_at=now,
                            updated_at=now,
                        )
                    )
                    return await self._insert(conn, running if not delayed else record, limits)
                return await self._enqueue(conn, new, record, now, limits)
        except IntegrityError as exc:
            # Another request created this thread id at the same moment.
            raise Conflict(f"Thread with ID {new.thread_id} already exists") from exc

    async def _insert(
        self, conn: AsyncConnection, record: RunRecord, limits: RunLimits | None = None
    ) -> CreatedRun:
        if limits is not None and limits.any:
            await admit(conn, record, limits)
        await conn.execute(insert(RUNS).values(**_row(record)))
        return CreatedRun(record, started=record.status == "running")

    async def _enqueue(
        self,
        conn: AsyncConnection,
        new: NewRun,
        record: RunRecord,
        now: datetime,
        limits: RunLimits,
    ) -> CreatedRun:
        """The thread is busy (we hold its row lock): apply the multitask strategy."""
        active = await conn.execute(
            select(RUNS.c.run_id, RUNS.c.status).where(
                RUNS.c.thread_id == new.thread_id, RUNS.c.status.in_(("pending", "running"))
            )
        )
        inflight = {row.run_id: row.status for row in active}
        where = (THREADS.c.thread_id == new.thread_id, THREADS.c.tenant_id == new.tenant_id)
        if not inflight:
            # Busy with nothing in flight: the last holder never released it (it crashed
            # between statements). The thread is free; claim it.
            return await self._claim_free(conn, new, record, now, limits)
        if new.multitask_strategy == "reject":
            raise Conflict(BUSY_MESSAGE, thread_id=new.thread_id)
        superseded: list[str] = []
        if new.multitask_strategy in ("interrupt", "rollback"):
            running = [r for r, s in inflight.items() if s == "running"]
            pending = [r for r, s in inflight.items() if s == "pending"]
            if running:
                await conn.execute(
                    update(RUNS)
                    .where(RUNS.c.run_id.in_(running))
                    .values(cancel_action=new.multitask_strategy, updated_at=now)
                )
                superseded = running
            if pending:
                if new.multitask_strategy == "rollback":
                    await conn.execute(delete(RUNS).where(RUNS.c.run_id.in_(pending)))
                else:
                    await conn.execute(
                        update(RUNS)
                        .where(RUNS.c.run_id.in_(pending))
                        .values(status="interrupted", updated_at=now)
                    )
            if not running:
                return await self._claim_free(conn, new, record, now, limits)
        await conn.execute(
            update(THREADS)
            .where(*where)
            .values(
                updated_at=now,
                metadata=self._merge_json(THREADS.c["metadata"], new.thread_metadata),
            )
        )
        created = await self._insert(conn, record, limits)
        created.superseded = superseded
        return created

    async def _claim_free(
        self,
        conn: AsyncConnection,
        new: NewRun,
        record: RunRecord,
        now: datetime,
        limits: RunLimits,
    ) -> CreatedRun:
        delayed = new.after_seconds > 0
        await conn.execute(
            update(THREADS)
            .where(THREADS.c.thread_id == new.thread_id, THREADS.c.tenant_id == new.tenant_id)
            .values(
                status="busy",
                graph_id=new.graph_id,
                updated_at=now,
                current_run_id=None if delayed else new.run_id,
                metadata=self._merge_json(THREADS.c["metadata"], new.thread_metadata),
            )
        )
        if delayed:
            return await self._insert(conn, record, limits)
        return await self._insert(
            conn, record.model_copy(update={"status": "running", "heartbeat_at": now}), limits
        )

    # -- the end of a run ---------------------------------------------------------------
    async def finish(self, run: RunRecord, end: RunEnd, worker_id: str) -> RunRecord | None:
        """Record how ``run`` ended and hand its thread to the next due run, if any.

        One transaction. Returns the next run, already claimed for ``worker_id``. A worker
        that lost its lease (the run was reaped and resumed elsewhere) changes nothing.
        """
        now = self._clock.now()
        mine = and_(
            RUNS.c.run_id == run.run_id,
            RUNS.c.worker_id == worker_id,
            RUNS.c.status == "running",
        )
        thread_where = (
            THREADS.c.thread_id == run.thread_id,
            THREADS.c.tenant_id == run.tenant_id,
        )
        async with self._store.transaction(write_lock=True) as conn:
            if end.status is None:
                result = await conn.execute(delete(RUNS).where(mine))
                if result.rowcount == 1:
                    await conn.execute(delete(RUN_EVENTS).where(RUN_EVENTS.c.run_id == run.run_id))
            else:
                result = await conn.execute(
                    update(RUNS)
                    .where(mine)
                    .values(
                        status=end.status,
                        error=end.error,
                        input_tokens=end.input_tokens,
                        output_tokens=end.output_tokens,
                        cancel_action=None,
                        updated_at=now,
                    )
                )
            if result.rowcount != 1:
                return None
            if end.status is not None and end.trace is not None:
                await write_trace(conn, run.tenant_id, end.trace)
            thread: dict[str, Any] = {"updated_at": now, "current_run_id": None}
            if end.values is not KEEP:
                thread.update(
                    state_values=end.values,
                    interrupts=end.interrupts or {},
                    state_updated_at=now,
                )
            next_row = (await conn.execute(self._pending_first(run.thread_id or ""))).first()
            due = next_row is not None and next_row.created_at <= now
            if next_row is None:
                thread["status"] = end.thread_status
            if next_row is not None and due:
                await conn.execute(
                    update(RUNS)
                    .where(RUNS.c.run_id == next_row.run_id)
                    .values(status="running", worker_id=worker_id, heartbeat_at=now, updated_at=now)
                )
                thread["current_run_id"] = next_row.run_id
                if next_row.graph_id:
                    thread["graph_id"] = next_row.graph_id
            await conn.execute(update(THREADS).where(*thread_where).values(**thread))
        if next_row is None or not due:
            return None
        return _run(next_row._mapping).model_copy(
            update={"status": "running", "worker_id": worker_id, "heartbeat_at": now}
        )

    async def release(self, run_ids: Sequence[str], worker_id: str) -> None:
        """Give runs back to the queue (this worker is shutting down): others resume them."""
        if not run_ids:
            return
        async with self._store.transaction() as conn:
            await conn.execute(
                update(THREADS)
                .where(THREADS.c.current_run_id.in_(list(run_ids)))
                .values(current_run_id=None)
            )
            await conn.execute(
                update(RUNS)
                .where(
                    RUNS.c.run_id.in_(list(run_ids)),
                    RUNS.c.worker_id == worker_id,
                    RUNS.c.status == "running",
                )
                .values(status="pending", worker_id=None, attempt=RUNS.c.attempt + 1)
            )

    # -- leases ---------------------------------------------------------------------------
    async def heartbeat(self, run_ids: Sequence[str], worker_id: str) -> Heartbeat:
        """Refresh the leases of this worker's runs; one statement, also reads cancels."""
        beat = Heartbeat()
        if not run_ids:
            return beat
        async with self._store.transaction() as conn:
            result = await conn.execute(
                update(RUNS)
                .where(
                    RUNS.c.run_id.in_(list(run_ids)),
                    RUNS.c.worker_id == worker_id,
                    RUNS.c.status == "running",
                )
                .values(heartbeat_at=self._clock.now())
                .returning(RUNS.c.run_id, RUNS.c.cancel_action)
            )
            rows = result.all()
        held = {row.run_id for row in rows}
        beat.lost = set(run_ids) - held
        beat.cancel = {row.run_id: row.cancel_action for row in rows if row.cancel_action}
        return beat

    async def reap(self, lease_s: float, max_attempts: int) -> list[str]:
        """Put back runs whose worker stopped heartbeating; fail those out of attempts."""
        cutoff = self._clock.now() - timedelta(seconds=lease_s)
        async with self._store.transaction(write_lock=True) as conn:
            stale = (
                await conn.execute(
                    select(RUNS.c.run_id, RUNS.c.thread_id, RUNS.c.attempt, RUNS.c.tenant_id)
                    .where(RUNS.c.status == "running", RUNS.c.heartbeat_at < cutoff)
                    .limit(100)
                )
            ).all()
            if not stale:
                return []
            ids = [row.run_id for row in stale]
            spent = [row.run_id for row in stale if row.attempt >= max_attempts]
            await conn.execute(
                update(THREADS).where(THREADS.c.current_run_id.in_(ids)).values(current_run_id=None)
            )
            retry = [r for r in ids if r not in spent]
            if retry:
                await conn.execute(
                    update(RUNS)
                    .where(RUNS.c.run_id.in_(retry), RUNS.c.status == "running")
                    .values(status="pending", worker_id=None, attempt=RUNS.c.attempt + 1)
                )
            if spent:
                await conn.execute(
                    update(RUNS)
                    .where(RUNS.c.run_id.in_(spent))
                    .values(
                        status="error",
                        error=json.dumps(
                            {
                                "error": "WorkerLost",
                                "message": f"the run's replica stopped {max_attempts} times",
                            }
                        ),
                        updated_at=self._clock.now(),
                    )
                )
                spent_threads = [row.thread_id for row in stale if row.run_id in spent]
                await conn.execute(
                    update(THREADS)
                    .where(THREADS.c.thread_id.in_(spent_threads), THREADS.c.status == "busy")
                    .values(status="error", updated_at=self._clock.now())
                )
        return ids

    async def claim_due(self, worker_id: str, limit: int) -> list[RunRecord]:
        """Claim up to ``limit`` due pending runs whose thread nobody holds."""
        now = self._clock.now()
        async with self._store.transaction() as conn:
            candidates = (
                await conn.execute(
                    select(RUNS.c.thread_id)
                    .select_from(RUNS.join(THREADS, THREADS.c.thread_id == RUNS.c.thread_id))
                    .where(
                        RUNS.c.status == "pending",
                        RUNS.c.created_at <= now,
                        THREADS.c.current_run_id.is_(None),
                    )
                    .order_by(RUNS.c.created_at)
                    .limit(limit)
                )
            ).all()
        claimed: list[RunRecord] = []
        for thread_id in dict.fromkeys(row.thread_id for row in candidates):
            run = await self._claim_thread(thread_id, worker_id)
            if run is not None:
                claimed.append(run)
        return claimed

    async def _claim_thread(self, thread_id: str, worker_id: str) -> RunRecord | None:
        now = self._clock.now()
        async with self._store.transaction(write_lock=True) as conn:
            holder = await conn.execute(
                select(THREADS.c.current_run_id)
                .where(THREADS.c.thread_id == thread_id)
                .with_for_update()
            )
            row = holder.first()
            if row is None or row.current_run_id is not None:
                return None
            first = (await conn.execute(self._pending_first(thread_id, now))).first()
            if first is None:
                return None
            await conn.execute(
                update(RUNS)
                .where(RUNS.c.run_id == first.run_id)
                .values(status="running", worker_id=worker_id, heartbeat_at=now, updated_at=now)
            )
            await conn.execute(
                update(THREADS)
                .where(THREADS.c.thread_id == thread_id)
                .values(current_run_id=first.run_id, status="busy", updated_at=now)
            )
        return _run(first._mapping).model_copy(
            update={"status": "running", "worker_id": worker_id, "heartbeat_at": now}
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
        return _run(row)

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
        return [_run(row) for row in rows]

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
            runs = [_run(row) for row in rows]
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
                await self._settle_threads(conn, [r.thread_id for r in runs if r.thread_id], now)
        return runs

    async def _settle_threads(
        self, conn: AsyncConnection, thread_ids: Sequence[str], now: datetime
    ) -> None:
        """Threads left with nothing in flight go back to idle."""
        active = select(RUNS.c.run_id).where(
            RUNS.c.thread_id == THREADS.c.thread_id,
            RUNS.c.status.in_(("pending", "running")),
        )
        await conn.execute(
            update(THREADS)
            .where(
                THREADS.c.thread_id.in_(list(set(thread_ids))),
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
