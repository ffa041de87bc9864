"""A run's stream events, stored so that any replica can replay them (``agent_run_events``).

Streamed and background runs keep their events (see
:meth:`agent_runtime.runs.run_service.RunService.persist_events`): a client that reconnects with
``Last-Event-ID``, or joins from another replica, reads them here. They are purged a while
after their run ended (``AGENT_RUN_EVENTS_TTL_MINUTES``) and deleted with the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, insert, select

from agent_runtime.core.records import RunStatus
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.db.tables import RUN_EVENTS, RUNS, utcnow

FINAL_STATUSES: tuple[RunStatus, ...] = ("success", "error", "timeout", "interrupted")


class RunEventStore:
    def __init__(self, store: MetadataStore) -> None:
        self._store = store

    async def append(self, run_id: str, events: Sequence[tuple[int, str, bytes]]) -> None:
        if not events:
            return
        now = utcnow()
        async with self._store.transaction() as conn:
            await conn.execute(
                insert(RUN_EVENTS),
                [
                    {"run_id": run_id, "seq": seq, "event": name, "data": data, "created_at": now}
                    for seq, name, data in events
                ],
            )

    async def read(self, run_id: str, after: int, limit: int = 500) -> list[tuple[int, str, bytes]]:
        async with self._store.transaction() as conn:
            rows = (
                await conn.execute(
                    select(RUN_EVENTS.c.seq, RUN_EVENTS.c.event, RUN_EVENTS.c.data)
                    .where(RUN_EVENTS.c.run_id == run_id, RUN_EVENTS.c.seq > after)
                    .order_by(RUN_EVENTS.c.seq)
                    .limit(limit)
                )
            ).all()
        return [(row.seq, row.event, bytes(row.data)) for row in rows]

    async def purge(self, older_than: datetime, limit: int = 500) -> int:
        """Drop the stored events of runs that ended before ``older_than``."""
        async with self._store.transaction() as conn:
            ended = (
                await conn.execute(
                    select(RUN_EVENTS.c.run_id)
                    .join(RUNS, RUNS.c.run_id == RUN_EVENTS.c.run_id)
                    .where(RUNS.c.status.in_(FINAL_STATUSES), RUNS.c.updated_at < older_than)
                    .distinct()
                    .limit(limit)
                )
            ).all()
            ids = [row.run_id for row in ended]
            if ids:
                await conn.execute(delete(RUN_EVENTS).where(RUN_EVENTS.c.run_id.in_(ids)))
        return len(ids)

    async def last_seq(self, run_id: str) -> int:
        async with self._store.transaction() as conn:
            seq = (
                await conn.execute(
                    select(func.max(RUN_EVENTS.c.seq)).where(RUN_EVENTS.c.run_id == run_id)
                )
            ).scalar_one_or_none()
        return int(seq or 0)
