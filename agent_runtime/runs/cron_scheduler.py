"""Starts crons' runs when they are due, from every orchestrator replica at once.

Each replica polls for enabled crons whose next date has come (and whose ``end_time``
has not passed, of tenants not disabled, made with keys not revoked). A replica claims a
cron by moving its next date forward with a compare-and-set on the date it read, so
however many replicas poll, each date starts one run. The run is then started as a
background run of the cron's tenant, under the key that created the cron (its budgets
and limits apply), through ``start_run`` (:meth:`agent_runtime.runs.run_service.RunService.start`
in the service). A run that cannot start for a passing reason (a busy thread with
``multitask_strategy: reject``, an exhausted budget) is logged; the cron goes on.

One cron's failure never stops the others: anything else that goes wrong with a cron (a
body no run accepts, a bug) is caught around that cron alone, counted in its row
(``failures``, ``last_error``) and reported (``on_failure``); after ``max_failures`` in a
row the cron is disabled, and a run that starts again resets the count.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import exists, or_, select, update

from agent_runtime.core.errors import AgentRuntimeError, InvalidRequest
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.db.tables import API_KEYS, CRONS, TENANTS, utcnow
from agent_runtime.runs.crons import CronRecord, cron_of, next_run_date

logger = logging.getLogger(__name__)

StartRun = Callable[[CronRecord], Awaitable[str]]
FailureListener = Callable[[bool], None]
"""Told of each counted failure: whether it disabled the cron."""
LAST_ERROR_CHARS = 1000


class CronScheduler:
    def __init__(
        self,
        store: MetadataStore,
        start_run: StartRun,
        *,
        poll_s: float = 5.0,
        batch: int = 50,
        max_failures: int = 5,
        on_failure: FailureListener | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._start_run = start_run
        self._poll_s = poll_s
        self._max_failures = max_failures
        self._on_failure = on_failure
        self._batch = batch
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="crons")

    def loops(self) -> list[asyncio.Task[None]]:
        return [] if self._task is None else [self._task]

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
            except Exception:  # the loop outlives whatever one tick meets
                logger.exception("cron scheduler: the tick failed; next one in %s s", self._poll_s)
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
            try:
                cron = cron_of(row)
                if not await self._claim(cron, now):
                    continue  # another replica took this date
                claimed += 1
                run_id = await self._start_run(cron)
            except Exception as exc:  # one cron's failure is that cron's alone
                await self._failed(row, exc)
                continue
            logger.info("cron %s started run %s", cron.cron_id, run_id)
            if cron.failures:
                await self._set_failures(cron.cron_id, 0, None)
        return claimed

    async def _failed(self, row: Any, exc: Exception) -> None:
        cron_id = row["cron_id"]
        if isinstance(exc, AgentRuntimeError) and not isinstance(exc, InvalidRequest):
            # Passing (a busy thread, a budget): the cron goes on, nothing counted.
            logger.warning("cron %s: its run did not start: %s", cron_id, exc.message)
            return
        failures = int(row["failures"] or 0) + 1
        disable = failures >= self._max_failures
        why = f"{type(exc).__name__}: {exc}"[:LAST_ERROR_CHARS]
        logger.error(
            "cron %s failed (%d in a row%s): %s",
            cron_id,
            failures,
            "; disabled" if disable else "",
            why,
        )
        await self._set_failures(cron_id, failures, why, disable=disable)
        if self._on_failure is not None:
            self._on_failure(disable)

    async def _set_failures(
        self, cron_id: str, failures: int, why: str | None, *, disable: bool = False
    ) -> None:
        values: dict[str, Any] = {"failures": failures, "last_error": why}
        if disable:
            values["enabled"] = False
        async with self._store.transaction() as conn:
            await conn.execute(update(CRONS).where(CRONS.c.cron_id == cron_id).values(**values))

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
