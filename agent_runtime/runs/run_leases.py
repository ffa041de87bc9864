"""Leases and claims of running runs.

A running run carries a lease: its replica refreshes ``heartbeat_at`` (and learns about
cancellations in the same statement); a run whose heartbeat lapsed is put back to
``pending`` by any replica's reaper and resumed from the thread's last checkpoint. Due
pending runs whose thread nobody holds are claimed by any replica, while their tenant has
a free slot under its run limits (:mod:`agent_runtime.tenancy.run_limits`); a replica
shutting down gives its runs back to the queue.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import and_, func, or_, select, true, update

from agent_runtime.core.clock import Clock
from agent_runtime.core.records import CancelAction, RunRecord
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.db.tables import RUNS, THREADS
from agent_runtime.runs.run_rows import RunRows, run_record
from agent_runtime.tenancy.run_limits import RunLimits, capacity, has_room


@dataclass
class Heartbeat:
    cancel: dict[str, CancelAction] = field(default_factory=dict)
    # Runs this worker no longer holds (reaped after a stall, deleted, finished elsewhere).
    lost: set[str] = field(default_factory=set)


class RunLeases(RunRows):
    """Leases (heartbeats, the reaper) and claims of the runs in the queue; ``limits``: the
    default per-tenant run limits, which claims respect with the tenant's own."""

    def __init__(self, store: MetadataStore, limits: RunLimits, clock: Clock) -> None:
        super().__init__(store, clock)
        self._limits = limits

    # -- giving runs back -----------------------------------------------------------------
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
                spent_threads = [
                    and_(THREADS.c.thread_id == row.thread_id, THREADS.c.tenant_id == row.tenant_id)
                    for row in stale
                    if row.run_id in spent
                ]
                await conn.execute(
                    update(THREADS)
                    .where(or_(*spent_threads), THREADS.c.status == "busy")
                    .values(status="error", updated_at=self._clock.now())
                )
        return ids

    async def claim_due(
        self, worker_id: str, limit: int, graph_ids: Sequence[str] | None = None
    ) -> list[RunRecord]:
        """Claim up to ``limit`` due pending runs whose thread nobody holds and whose tenant
        has a free slot (tenants at capacity are passed over, not waited for); of the graphs
        ``graph_ids`` only, when given (what the claiming replica serves: apps sharing a
        database must not take each other's runs)."""
        now = self._clock.now()
        async with self._store.transaction() as conn:
            candidates = (
                await conn.execute(
                    select(RUNS.c.tenant_id, RUNS.c.thread_id)
                    .select_from(
                        RUNS.join(
                            THREADS,
                            and_(
                                THREADS.c.thread_id == RUNS.c.thread_id,
                                THREADS.c.tenant_id == RUNS.c.tenant_id,
                            ),
                        )
                    )
                    .where(
                        RUNS.c.status == "pending",
                        RUNS.c.created_at <= now,
                        THREADS.c.current_run_id.is_(None),
                        true() if graph_ids is None else RUNS.c.graph_id.in_(list(graph_ids)),
                        has_room(self._limits),
                    )
                    .order_by(RUNS.c.created_at)
                    .limit(limit)
                )
            ).all()
        claimed: list[RunRecord] = []
        full: set[str] = set()
        for tenant_id, thread_id in dict.fromkeys((r.tenant_id, r.thread_id) for r in candidates):
            if tenant_id in full:
                continue
            run = await self._claim_thread(tenant_id, thread_id, worker_id, full)
            if run is not None:
                claimed.append(run)
        return claimed

    async def _claim_thread(
        self, tenant_id: str, thread_id: str, worker_id: str, full: set[str]
    ) -> RunRecord | None:
        """The thread's first due run, claimed; None when there is none to claim, or when
        its tenant is at capacity (then added to ``full``)."""
        now = self._clock.now()
        thread = (THREADS.c.thread_id == thread_id, THREADS.c.tenant_id == tenant_id)
        async with self._store.transaction(write_lock=True) as conn:
            # The tenant's lock first, as a creation takes it: no lock-order deadlock.
            room = await capacity(conn, tenant_id, self._limits, postgres=self._store.is_postgres)
            if room.full:
                full.add(tenant_id)
                return None
            holder = await conn.execute(
                select(THREADS.c.current_run_id).where(*thread).with_for_update()
            )
            row = holder.first()
            if row is None or row.current_run_id is not None:
                return None
            first = (await conn.execute(self._pending_first(tenant_id, thread_id, now))).first()
            if first is None:
                return None
            await conn.execute(
                update(RUNS)
                .where(RUNS.c.run_id == first.run_id)
                .values(status="running", worker_id=worker_id, heartbeat_at=now, updated_at=now)
            )
            await conn.execute(
                update(THREADS)
                .where(*thread)
                .values(current_run_id=first.run_id, status="busy", updated_at=now)
            )
        return run_record(first._mapping).model_copy(
            update={"status": "running", "worker_id": worker_id, "heartbeat_at": now}
        )


async def pending_runs(store: MetadataStore) -> int:
    """Runs waiting in the queue, every replica's (one count over the status index)."""
    query = select(func.count()).select_from(RUNS).where(RUNS.c.status == "pending")
    async with store.transaction() as conn:
        return int((await conn.execute(query)).scalar_one())
