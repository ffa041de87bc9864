"""A cron whose run cannot start never stops the others: refused when created or patched
(422 naming the field), and a bad one already stored fails alone, is counted, and is
disabled after repeated failures (issue: one bad cron killed every replica's scheduler)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from agent_runtime.config.settings import StorageSettings
from agent_runtime.core.errors import InvalidRequest
from agent_runtime.db.tables import CRONS
from agent_runtime.runs.cron_scheduler import CronScheduler
from agent_runtime.runs.crons import CronPatch, CronStore
from tests.runs.run_harness import TENANT, Replica, replica
from tests.runs.test_crons import _create, _starter
from tests.time_control import wait_for


@pytest.fixture
async def one(storage_settings: StorageSettings) -> AsyncIterator[Replica]:
    async with replica(storage_settings) as r:
        yield r


async def test_a_body_no_run_accepts_is_refused_naming_the_field(one: Replica) -> None:
    with pytest.raises(InvalidRequest) as refused:
        await _create(one, stream_mode="bogus")
    assert str(refused.value.details["field"]).startswith("stream_mode")
    crons = CronStore(one.store)
    cron = await _create(one)
    with pytest.raises(InvalidRequest, match="stream_mode"):
        await crons.update(
            TENANT.tenant_id, cron.cron_id, CronPatch.model_validate({"stream_mode": "bogus"})
        )
    assert (await crons.get(TENANT.tenant_id, cron.cron_id)).payload == cron.payload


async def test_a_bad_stored_cron_fails_alone_and_is_disabled_after_repeated_failures(
    one: Replica,
) -> None:
    good = await _create(one)
    bad = await _create(one)
    # As a row written before bodies were checked: its run can never start.
    async with one.store.transaction() as conn:
        await conn.execute(
            update(CRONS)
            .where(CRONS.c.cron_id == bad.cron_id)
            .values(payload={**bad.payload, "stream_mode": "bogus"})
        )
    started: list[str] = []
    reported: list[bool] = []
    clock = [datetime.now(UTC) + timedelta(seconds=2)]
    scheduler = CronScheduler(
        one.store,
        _starter(one, started),  # type: ignore[arg-type]
        max_failures=2,
        on_failure=reported.append,
        clock=lambda: clock[0],
    )
    crons = CronStore(one.store)
    for tick in (1, 2, 3):
        await scheduler.tick()
        clock[0] += timedelta(seconds=1)
        assert len(started) == tick  # the good cron starts its run every time
    assert reported == [False, True]  # counted twice; the second disabled it
    stored = await crons.get(TENANT.tenant_id, bad.cron_id)
    assert (stored.enabled, stored.failures) == (False, 2)
    assert stored.last_error is not None and "stream_mode" in stored.last_error
    assert (await crons.get(TENANT.tenant_id, good.cron_id)).failures == 0
    # Fixed and enabled again by its owner: a fresh count.
    fixed = CronPatch.model_validate({"stream_mode": "values", "enabled": True})
    again = await crons.update(TENANT.tenant_id, bad.cron_id, fixed)
    assert (again.enabled, again.failures, again.last_error) == (True, 0, None)


async def test_the_schedulers_loop_outlives_a_failing_tick(one: Replica) -> None:
    ticks = 0

    class Exploding(CronScheduler):
        async def tick(self) -> int:
            nonlocal ticks
            ticks += 1
            if ticks == 1:
                raise RuntimeError("a bug in one tick")
            return 0

    scheduler = Exploding(one.store, _starter(one, []), poll_s=0.01)  # type: ignore[arg-type]
    scheduler.start()
    try:
        await wait_for(lambda: ticks >= 3)  # ticks go on after the one that raised
    finally:
        await scheduler.close()
