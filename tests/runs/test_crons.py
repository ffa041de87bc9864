"""Crons on both backends: create, read, patch, search, count, delete; the scheduler
starts one run per due date however many replicas poll, on the cron's thread or a
thread of its own, and goes with its tenant's and thread's fate."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from agent_runtime.config.settings import StorageSettings
from agent_runtime.core.errors import BadRequest, InvalidRequest, NotFound
from agent_runtime.core.records import Principal
from agent_runtime.runs.cron_scheduler import CronScheduler
from agent_runtime.runs.crons import (
    CronCount,
    CronCreate,
    CronPatch,
    CronRecord,
    CronSearch,
    CronStore,
)
from agent_runtime.runs.crons import next_run_date as next_date
from agent_runtime.tenancy.auth import generate_key
from tests.runs.run_harness import GRAPH, OTHER, TENANT, Replica, new_thread, replica

EVERY_SECOND = "* * * * * *"  # croniter's sixth field: seconds


@pytest.fixture
async def one(storage_settings: StorageSettings) -> AsyncIterator[Replica]:
    async with replica(storage_settings) as r:
        yield r


async def _create(
    r: Replica,
    thread_id: str | None = None,
    tenant: str = TENANT.tenant_id,
    key_id: str = "k1",
    **fields: object,
) -> CronRecord:
    body = CronCreate.model_validate(
        {
            "assistant_id": GRAPH,
            "schedule": fields.pop("schedule", EVERY_SECOND),
            "input": {"steps": [], "mode": "ok"},
            **fields,
        }
    )
    assistant = await r.runs._assistants.resolve(tenant, GRAPH)
    return await CronStore(r.store).create(tenant, key_id, thread_id, body, assistant)


async def test_create_read_patch_delete(one: Replica) -> None:
    crons = CronStore(one.store)
    thread_id = await new_thread(one)
    cron = await _create(one, thread_id, schedule="*/5 * * * *", metadata={"team": "a"})
    assert cron.thread_id == thread_id and cron.on_run_completed is None
    assert cron.payload["config"]["configurable"]["cron_id"] == cron.cron_id
    assert cron.payload["assistant_id"] == cron.assistant_id != GRAPH  # the assistant's UUID
    assert cron.next_run_date is not None and cron.next_run_date.minute % 5 == 0
    wire = cron.to_wire()
    assert wire["schedule"] == "*/5 * * * *" and wire["metadata"] == {"team": "a"}
    assert set(cron.to_wire(["cron_id", "enabled"])) == {"cron_id", "enabled"}
    assert (await crons.get(TENANT.tenant_id, cron.cron_id)) == cron
    with pytest.raises(NotFound):
        await crons.get(OTHER.tenant_id, cron.cron_id)

    end = datetime.now(UTC) + timedelta(days=1)
    patched = await crons.update(
        TENANT.tenant_id,
        cron.cron_id,
        CronPatch.model_validate(
            {"schedule": "0 * * * *", "metadata": {"b": 1}, "input": {"x": 1}, "end_time": end}
        ),
    )
    assert patched.schedule == "0 * * * *" and patched.metadata == {"team": "a", "b": 1}
    assert patched.next_run_date is not None and patched.next_run_date.minute == 0
    assert patched.payload["input"] == {"x": 1} and patched.end_time == end
    assert patched.payload["assistant_id"] == cron.assistant_id
    cleared = await crons.update(
        TENANT.tenant_id, cron.cron_id, CronPatch.model_validate({"end_time": None})
    )
    assert cleared.end_time is None
    with pytest.raises(BadRequest, match="No fields to update"):
        await crons.update(TENANT.tenant_id, cron.cron_id, CronPatch())
    with pytest.raises(InvalidRequest, match="Invalid cron schedule"):
        await crons.update(TENANT.tenant_id, cron.cron_id, CronPatch(schedule="never"))
    with pytest.raises(NotFound):
        await crons.update(OTHER.tenant_id, cron.cron_id, CronPatch(enabled=False))
    with pytest.raises(NotFound):
        await crons.delete(OTHER.tenant_id, cron.cron_id)
    await crons.delete(TENANT.tenant_id, cron.cron_id)
    with pytest.raises(NotFound):
        await crons.get(TENANT.tenant_id, cron.cron_id)


async def test_bad_schedules_and_time_zones_are_422(one: Replica) -> None:
    with pytest.raises(InvalidRequest, match="Invalid cron schedule: 'every day'"):
        await _create(one, schedule="every day")
    with pytest.raises(InvalidRequest, match="Invalid timezone: 'Mars/Olympus'"):
        await _create(one, timezone="Mars/Olympus")


def test_next_dates_follow_the_time_zone() -> None:
    base = datetime(2026, 12, 2, 12, 30, tzinfo=UTC)
    assert next_date("0 9 * * *", base) == datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
    # 09:00 in New York (UTC-5 in December) is 14:00 UTC, still ahead today.
    in_new_york = next_date("0 9 * * *", base, "America/New_York")
    assert in_new_york == datetime(2026, 12, 2, 14, 0, tzinfo=UTC)


async def test_search_and_count(one: Replica) -> None:
    crons = CronStore(one.store)
    thread_id = await new_thread(one)
    first = await _create(one, thread_id, metadata={"kind": "report"})
    second = await _create(one, metadata={"kind": "digest"}, enabled=False)
    await _create(one, tenant=OTHER.tenant_id)
    page, more = await crons.search(TENANT.tenant_id, CronSearch())
    assert [c.cron_id for c in page] == [second.cron_id, first.cron_id] and not more
    page, more = await crons.search(TENANT.tenant_id, CronSearch(limit=1))
    assert len(page) == 1 and more
    by_thread, _ = await crons.search(TENANT.tenant_id, CronSearch(thread_id=thread_id))
    assert [c.cron_id for c in by_thread] == [first.cron_id]
    disabled, _ = await crons.search(TENANT.tenant_id, CronSearch(enabled=False))
    assert [c.cron_id for c in disabled] == [second.cron_id]
    oldest, _ = await crons.search(
        TENANT.tenant_id, CronSearch(sort_by="created_at", sort_order="asc")
    )
    assert oldest[0].cron_id == first.cron_id
    assert await crons.count(TENANT.tenant_id, CronCount()) == 2
    assert await crons.count(TENANT.tenant_id, CronCount(metadata={"kind": "digest"})) == 1
    assert await crons.count(OTHER.tenant_id, CronCount()) == 1


def _starter(r: Replica, started: list[str]) -> object:
    async def start(cron: CronRecord) -> str:
        principal = Principal(tenant_id=cron.tenant_id, key_id=cron.key_id or "cron")
        run = await r.runs.start(principal, cron.thread_id, cron.run_body(), "background")
        started.append(run.run.run_id)
        return run.run.run_id

    return start


async def test_each_due_date_starts_one_run_across_replicas(
    storage_settings: StorageSettings,
) -> None:
    async with replica(storage_settings) as a, replica(storage_settings) as b:
        thread_id = await new_thread(a)
        cron = await _create(a, thread_id, metadata={"from": "cron"})
        started: list[str] = []
        clock = [datetime.now(UTC) + timedelta(seconds=2)]  # past the first date
        schedulers = [
            CronScheduler(r.store, _starter(r, started), clock=lambda: clock[0])  # type: ignore[arg-type]
            for r in (a, b)
        ]
        counts = await asyncio.gather(*(s.tick() for s in schedulers))
        assert sorted(counts) == [0, 1] and len(started) == 1
        assert await asyncio.gather(*(s.tick() for s in schedulers)) == [0, 0]  # not due
        clock[0] += timedelta(seconds=1)
        await asyncio.gather(*(s.tick() for s in schedulers))
        assert len(started) == 2
        for run_id in started:
            await a.runs.join(TENANT, thread_id, run_id)
        runs = await a.runs.runs.search(TENANT.tenant_id, thread_id)
        assert {r.run_id for r in runs} == set(started)
        assert all(r.status == "success" for r in runs)
        assert all(r.metadata.get("from") == "cron" for r in runs)
        current = await CronStore(a.store).get(TENANT.tenant_id, cron.cron_id)
        assert current.next_run_date is not None and current.next_run_date > clock[0]


async def test_stateless_crons_drop_or_keep_their_threads(one: Replica) -> None:
    started: list[str] = []
    scheduler = CronScheduler(
        one.store,
        _starter(one, started),  # type: ignore[arg-type]
        clock=lambda: datetime.now(UTC) + timedelta(seconds=2),
    )
    await _create(one)
    await _create(one, on_run_completed="keep")
    assert await scheduler.tick() == 2
    kept = []
    for run_id in started:
        run = await one.runs.runs.get(TENANT.tenant_id, run_id)
        kept.append(run.kwargs.get("on_completion"))
    assert sorted(kept) == ["delete", "keep"]


async def test_paused_ended_revoked_and_disabled_tenants_crons_do_not_run(one: Replica) -> None:
    started: list[str] = []
    later = datetime.now(UTC) + timedelta(seconds=2)
    scheduler = CronScheduler(
        one.store,
        _starter(one, started),  # type: ignore[arg-type]
        clock=lambda: later,
    )
    await _create(one, enabled=False)
    await _create(one, end_time=datetime.now(UTC) + timedelta(seconds=1))
    await _create(one, tenant=OTHER.tenant_id)
    await one.store.set_tenant_disabled(OTHER.tenant_id, True)
    _, key = generate_key(TENANT.tenant_id, name="cron maker")
    await one.store.add_key(key)
    revoked = await _create(one, key_id=key.key_id)
    await one.store.revoke_key(key.key_id)
    assert await scheduler.tick() == 0 and started == []
    assert (await CronStore(one.store).get(TENANT.tenant_id, revoked.cron_id)).enabled


async def test_a_threads_crons_go_with_it(one: Replica) -> None:
    thread_id = await new_thread(one)
    cron = await _create(one, thread_id)
    await one.threads.delete(TENANT, thread_id)
    with pytest.raises(NotFound):
        await CronStore(one.store).get(TENANT.tenant_id, cron.cron_id)
