"""Starts crons' runs when they are due, from every orchestrator replica at once.

Each replica polls for enabled crons whose next date has come (and whose ``end_time``
has not passed, of tenants not disabled, made with keys not revoked). A replica claims a
cron by moving its next date forward with a compare-and-set on the date it read, so
however many replicas poll, each date starts one run. The run is then started as a
background run of the cron's tenant, under the key that created the cron (its budgets
and limits apply), through ``start_run`` (:meth:`agent_runtime.runs.run_service.RunService.start`
in the service). A run that cannot start (a busy thread with ``multitask_strategy: reject``, an
exhausted budget) is logged; the cron goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy import exists, or_, select, update

from agent_runtime.core.errors import AgentRuntimeError
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.db.tables import API_KEYS, CRONS, TENANTS, utcnow
from agent_runtime.runs.crons import CronRecord, cron_of, next_run_date

logger = logging.getLogger(__name__)

StartRun = Callable[[CronRecord], Awaitable[str]]


class CronScheduler:
    def __init__(
        self,
        store: MetadataStore,
        start_run: StartRun,
        *,
        poll_s: float = 5.0,
        batch: int = 50,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._start_run = start_run
        self._poll_s = poll_s
        self._batch = batch
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                started = await self.tick()
            except AgentRuntimeError as exc:
                logger.warning("cron scheduler: %s", exc.message)
                started = 0
            if started < self._batch:
                await asyncio.sleep(self._poll_s)

    async def tick(self) -> int:
        """Start the runs of the crons due now; how many this replica claimed."""
        now = self._clock()
        due = (
            select(CRONS)
            .join(TENANTS, TENANTS.c.tenant_id == CRONS.c.tenant_id)
            .where(
                CRONS.c.enabled.is_(True),
                CRONS.c.next_run_date <= now,
                or_(CRONS.c.end_time.is_(None), CRONS.c.end_time > now),
                TENANTS.c.disabled.is_(False),
                ~exists().where(API_KEYS.c.key_id == CRONS.c.key_id, API_KEYS.c.revoked.is_(True)),
            )
            .order_by(CRONS.c.next_run_date)
            .limit(self._batch)
        )
        async with self._store.transaction() as conn:
            rows = (await conn.execute(due)).mappings().all()
        claimed = 0
        for row in rows:
            cron = cron_of(row)
            if not await self._claim(cron, now):
                continue  # another replica took this date
            claimed += 1
            try:
                run_id = await self._start_run(cron)
            except AgentRuntimeError as exc:
                logger.warning("cron %s: its run did not start: %s", cron.cron_id, exc.message)
                continue
            logger.info("cron %s started run %s", cron.cron_id, run_id)
        return claimed

    async def _claim(self, cron: CronRecord, now: datetime) -> bool:
        following = next_run_date(cron.schedule, now, cron.timezone)
        async with self._store.transaction() as conn:
            result = await conn.execute(
                update(CRONS)
                .where(
                    CRONS.c.cron_id == cron.cron_id,
                    CRONS.c.next_run_date == cron.next_run_date,
                )
                .values(next_run_date=following)
            )
        return bool(result.rowcount == 1)
