"""ThreadStore, the thread parts of MetadataStore and checkpoint_ops, on both backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from agent_runtime.config.settings import StorageSettings
from agent_runtime.core.errors import Conflict, NotFound
from agent_runtime.core.records import ThreadRecord
from agent_runtime.db.tables import RUN_EVENTS, RUNS, THREADS, utcnow
from agent_runtime.execution import checkpoint_ops
from agent_runtime.execution.tenant_context import tenant_scope
from agent_runtime.runs.run_queue import NewRun
from agent_runtime.runs.thread_rows import SORTABLE
from tests.runs.run_harness import GRAPH, OTHER, TENANT, Replica, body, new_thread, replica

T = TENANT.tenant_id


@pytest.fixture
async def one(storage_settings: StorageSettings) -> AsyncIterator[Replica]:
    async with replica(storage_settings) as r:
        yield r


async def thread(r: Replica, tenant: str = T, **kwargs: Any) -> ThreadRecord:
    return await r.store.create_thread(tenant, **kwargs)


async def search_ids(r: Replica, tenant: str = T, **filters: Any) -> set[str]:
    found, _ = await r.thread_rows.search(tenant, limit=100, **filters)
    return {t.thread_id for t in found}


async def set_columns(r: Replica, thread_id: str, **columns: Any) -> None:
    async with r.store.transaction() as conn:
        await conn.execute(
            update(THREADS).where(THREADS.c.thread_id == thread_id).values(**columns)
        )


async def count_rows(r: Replica, table: Any, where: Any) -> int:
    async with r.store.transaction() as conn:
        query = select(func.count()).select_from(table).where(where)
        return int((await conn.execute(query)).scalar_one())


def config(thread_id: str, ns: str = "") -> Any:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns}}


async def checkpoints(r: Replica, thread_id: str) -> list[Any]:
    with tenant_scope(TENANT.tenant_id):
        return [c async for c in r.saver.alist(config(thread_id))]


async def latest_checkpoint(r: Replica, thread_id: str) -> Any:
    with tenant_scope(TENANT.tenant_id):
        return await r.saver.aget_tuple(config(thread_id))


# -- metadata store: create / update -----------------------------------------------------
async def test_create_and_update_thread_ttl_and_metadata_merge(one: Replica) -> None:
    made = await thread(one, metadata={"a": 1, "nested": {"x": 1}}, ttl=("keep_latest", 2.0))
    assert (made.ttl_strategy, made.ttl_minutes) == ("keep_latest", 2.0)
    assert made.expires_at == made.created_at + timedelta(minutes=2)
    assert (await thread(one)).expires_at is None

    before = utcnow()
    changed = await one.store.update_thread(
        T, made.thread_id, metadata={"nested": {"y": 2}, "b": None}, ttl=("delete", 3.0)
    )
    assert changed.metadata == {"a": 1, "nested": {"y": 2}, "b": None}
    assert (changed.ttl_strategy, changed.ttl_minutes) == ("delete", 3.0)
    assert changed.expires_at is not None and changed.expires_at >= before + timedelta(minutes=3)
    assert changed.updated_at >= before and changed.state_updated_at == made.state_updated_at
    assert await one.store.get_thread(T, made.thread_id) == changed
    for tenant, thread_id in ((T, "no-such-thread"), (OTHER.tenant_id, made.thread_id)):
        with pytest.raises(NotFound):
            await one.store.update_thread(tenant, thread_id, metadata={"c": 1})
        with pytest.raises(NotFound):
            await one.store.update_thread(tenant, thread_id, ttl=("delete", 1.0))
    assert (await one.store.get_thread(T, made.thread_id)).metadata == changed.metadata


# -- search / count ----------------------------------------------------------------------
async def test_search_filters_by_ids_metadata_status(one: Replica) -> None:
    a = await thread(one, metadata={"user": "u1", "tag": {"x": 1, "y": 2}, "list": [1, 2]})
    b = await thread(one, metadata={"user": "u2", "tag": {"x": 1}, "flag": True, "n": None})
    c = await thread(one)
    await thread(one, OTHER.tenant_id, metadata={"user": "u1"})
    await one.store.update_thread(T, b.thread_id, status="error")

    assert await search_ids(one) == {a.thread_id, b.thread_id, c.thread_id}
    assert await search_ids(one, ids=[a.thread_id, c.thread_id, "nope"]) == {
        a.thread_id,
        c.thread_id,
    }
    assert await search_ids(one, metadata={"user": "u1"}) == {a.thread_id}
    assert await search_ids(one, metadata={"list": [1, 2]}) == {a.thread_id}
    assert await search_ids(one, metadata={"flag": True}) == {b.thread_id}
    assert await search_ids(one, metadata={"n": None}) == {b.thread_id}
    assert await search_ids(one, metadata={"tag": {"x": 1, "y": 2}, "user": "u1"}) == {a.thread_id}
    assert await search_ids(one, metadata={"user": "u1", "list": [1]}) == (
        {a.thread_id} if one.store.is_postgres else set()
    )
    # Postgres: containment reaches into nested objects; SQLite: whole values are equal.
    partial = {a.thread_id, b.thread_id} if one.store.is_postgres else {b.thread_id}
    assert await search_ids(one, metadata={"tag": {"x": 1}}) == partial
    assert await search_ids(one, metadata={"missing": 1}) == set()
    assert await search_ids(one, status="error") == {b.thread_id}
    assert await search_ids(one, status="idle", metadata={"user": "u1"}) == {a.thread_id}
    assert await search_ids(one, status="busy") == set()
    # Tenant isolation: the other tenant sees only its own.
    [theirs] = await search_ids(one, OTHER.tenant_id, metadata={"user": "u1"})
    assert theirs not in {a.thread_id, b.thread_id, c.thread_id}
    assert await search_ids(one, OTHER.tenant_id, ids=[a.thread_id]) == set()

    assert await one.thread_rows.count(T) == 3
    assert await one.thread_rows.count(T, metadata={"user": "u1"}) == 1
    assert await one.thread_rows.count(T, status="error") == 1
    assert await one.thread_rows.count(T, status="idle", metadata={"tag": {"x": 1}}) == (
        1 if one.store.is_postgres else 0
    )
    assert await one.thread_rows.count(OTHER.tenant_id) == 1
    assert await one.thread_rows.count("nobody") == 0


async def test_values_search_after_runs(one: Replica) -> None:
    done = await new_thread(one)
    await one.runs.wait(TENANT, done, body())
    asked = await new_thread(one)
    await one.runs.wait(TENANT, asked, body("ask"))
    untouched = await new_thread(one)  # values NULL: no match, no error
    assert await search_ids(one, values={"mode": "ok"}) == {done}
    assert await search_ids(one, values={"steps": ["first", "second"]}) == {done}
    assert await search_ids(one, values={"steps": ["first"]}) == (
        {done, asked} if one.store.is_postgres else {asked}
    )
    assert await search_ids(one, values={"mode": "ask"}, status="interrupted") == {asked}
    assert await search_ids(one, values={"mode": "nope"}) == set()
    assert await one.thread_rows.count(T, values={"mode": "ok"}) == 1
    assert await one.thread_rows.count(OTHER.tenant_id, values={"mode": "ok"}) == 0
    assert untouched in await search_ids(one, status="idle")


async def test_sort_orders_and_pages(one: Replica) -> None:
    made = [await thread(one) for _ in range(5)]
    await one.store.update_thread(T, made[3].thread_id, status="error")
    await one.store.update_thread(T, made[1].thread_id, status="interrupted")
    await one.thread_rows.set_state(
        T, made[0].thread_id, values={"v": 1}, interrupts={}, status="idle"
    )
    records, more = await one.thread_rows.search(T, limit=100)
    assert not more
    by_updated = sorted(records, key=lambda t: (t.updated_at, t.thread_id), reverse=True)
    assert [t.thread_id for t in records] == [t.thread_id for t in by_updated]
    assert records[0].thread_id == made[0].thread_id  # the latest update first

    for column in sorted(SORTABLE):
        for order in ("asc", "desc", "ASC"):
            found, _ = await one.thread_rows.search(T, sort_by=column, sort_order=order)
            expected = sorted(
                records,
                key=lambda t: (getattr(t, column), t.thread_id),
                reverse=order.lower() != "asc",
            )
            assert [t.thread_id for t in found] == [t.thread_id for t in expected], (column, order)
    statuses = [t.status for t in (await one.thread_rows.search(T, sort_by="status"))[0]]
    assert statuses == ["interrupted", "idle", "idle", "idle", "error"]
    for unknown in ({"sort_by": "metadata"}, {"sort_order": "asc"}, {"sort_by": None}):
        found, _ = await one.thread_rows.search(T, **unknown)
        assert [t.thread_id for t in found] == [t.thread_id for t in records]

    ordered = [t.thread_id for t in records]
    pages = [await one.thread_rows.search(T, limit=2, offset=o) for o in (0, 2, 4, 6)]
    assert [([t.thread_id for t in p], more) for p, more in pages] == [
        (ordered[0:2], True),
        (ordered[2:4], True),
        (ordered[4:], False),
        ([], False),
    ]
    page, more = await one.thread_rows.search(T, limit=5)
    assert (len(page), more) == (5, False)


# -- state, copy, delete -----------------------------------------------------------------
async def test_set_state_and_require_idle(one: Replica) -> None:
    made = await thread(one)
    interrupts = {"task": [{"value": "q", "id": "i1"}]}
    await one.thread_rows.set_state(
        T,
        made.thread_id,
        values={"v": 1},
        interrupts=interrupts,
        status="interrupted",
        graph_id=GRAPH,
    )
    row = await one.thread_rows.require_idle(T, made.thread_id)
    assert (row.state_values, row.interrupts, row.status) == ({"v": 1}, interrupts, "interrupted")
    assert row.graph_id == GRAPH
    assert row.state_updated_at == row.updated_at and row.updated_at > made.updated_at

    await one.store.update_thread(T, made.thread_id, status="busy")
    with pytest.raises(Conflict, match="in-flight runs"):
        await one.thread_rows.require_idle(T, made.thread_id)
    with pytest.raises(Conflict):
        await one.thread_rows.set_state(T, made.thread_id, values={}, interrupts={}, status="idle")
    assert (await one.store.get_thread(T, made.thread_id)).state_values == {"v": 1}
    for tenant, thread_id in ((T, "no-such-thread"), (OTHER.tenant_id, made.thread_id)):
        with pytest.raises(NotFound):
            await one.thread_rows.require_idle(tenant, thread_id)
        with pytest.raises(NotFound):
            await one.thread_rows.set_state(
                tenant, thread_id, values={}, interrupts={}, status="idle"
            )


async def test_copy_row(one: Replica) -> None:
    source = await thread(one, metadata={"m": {"deep": [1]}}, graph_id=GRAPH, ttl=("delete", 5.0))
    await one.thread_rows.set_state(
        T, source.thread_id, values={"v": 1}, interrupts={}, status="idle"
    )
    await one.store.update_thread(T, source.thread_id, status="busy")
    copy = await one.thread_rows.copy_row(T, source.thread_id)
    assert copy.thread_id != source.thread_id
    assert await one.store.get_thread(T, copy.thread_id) == copy
    assert (copy.status, copy.current_run_id) == ("idle", None)
    assert (copy.metadata, copy.graph_id, copy.state_values) == (source.metadata, GRAPH, {"v": 1})
    assert (copy.ttl_strategy, copy.ttl_minutes) == ("delete", 5.0)
    assert copy.expires_at == copy.created_at + timedelta(minutes=5)
    assert copy.created_at > source.created_at
    assert (await one.store.get_thread(T, source.thread_id)).status == "busy"
    for tenant, thread_id in ((T, "no-such-thread"), (OTHER.tenant_id, source.thread_id)):
        with pytest.raises(NotFound):
            await one.thread_rows.copy_row(tenant, thread_id)


async def test_delete_cascade(one: Replica) -> None:
    doomed, kept = await new_thread(one), await new_thread(one)
    for thread_id in (doomed, kept):  # background runs store their stream events
        started = await one.runs.start(TENANT, thread_id, body(), "background")
        await one.runs.join(TENANT, thread_id, started.run.run_id)

    # A run in flight (held by another worker) and one queued behind it.
    def new() -> NewRun:
        return NewRun(tenant_id=T, thread_id=doomed, graph_id=GRAPH, assistant_id=GRAPH, kwargs={})

    running = (await one.runs.runs.create(new(), "elsewhere")).run
    pending = (await one.runs.runs.create(new(), "elsewhere")).run
    assert (running.status, pending.status) == ("running", "pending")
    [done] = [r for r in await one.runs.runs.search(T, doomed) if r.status == "success"]
    [other_run] = await one.runs.runs.search(T, kept)
    for tenant, thread_id in ((T, "no-such-thread"), (OTHER.tenant_id, doomed)):
        with pytest.raises(NotFound):
            await one.thread_rows.delete_cascade(tenant, thread_id)
    assert await count_rows(one, RUNS, RUNS.c.thread_id == doomed) == 3

    stopped = await one.thread_rows.delete_cascade(T, doomed)
    assert sorted(stopped) == sorted([pending.run_id, running.run_id])
    with pytest.raises(NotFound):
        await one.store.get_thread(T, doomed)
    assert await count_rows(one, RUNS, RUNS.c.thread_id == doomed) == 0
    assert await count_rows(one, RUN_EVENTS, RUN_EVENTS.c.run_id == done.run_id) == 0
    assert await count_rows(one, RUNS, RUNS.c.thread_id == kept) == 1
    assert await count_rows(one, RUN_EVENTS, RUN_EVENTS.c.run_id == other_run.run_id) > 0
    # Checkpoints are the saver's business (ThreadService.delete).
    assert await checkpoints(one, doomed)


# -- TTL -----------------------------------------------------------------------------------
async def test_expired_and_the_lazy_rule(one: Replica) -> None:
    now = utcnow()
    due_first = await thread(one, ttl=("delete", 1.0))
    due_second = await thread(one, OTHER.tenant_id, ttl=("keep_latest", 2.0))
    used = await thread(one, ttl=("delete", 1.0))
    busy = await thread(one, ttl=("delete", 1.0))
    await thread(one)  # no TTL: never expires
    old = now - timedelta(minutes=30)
    await set_columns(one, due_first.thread_id, expires_at=old, updated_at=old)
    await set_columns(
        one, due_second.thread_id, expires_at=old + timedelta(minutes=1), updated_at=old
    )
    await set_columns(one, used.thread_id, expires_at=old)  # updated_at is now
    await set_columns(one, busy.thread_id, expires_at=old, updated_at=old, status="busy")

    assert await one.thread_rows.expired(utcnow(), limit=1) == [(T, due_first.thread_id)]
    assert await one.thread_rows.expired(utcnow()) == [
        (T, due_first.thread_id),
        (OTHER.tenant_id, due_second.thread_id),
    ]
    moved = await one.store.get_thread(T, used.thread_id)
    assert moved.expires_at == moved.updated_at + timedelta(minutes=1)
    # Seen from ten minutes on, the used thread is due too (and the others still are).
    later = await one.thread_rows.expired(utcnow() + timedelta(minutes=10))
    assert {thread_id for _, thread_id in later} == {
        due_first.thread_id,
        due_second.thread_id,
        used.thread_id,
    }


# -- checkpoint_ops ------------------------------------------------------------------------
async def test_copy_thread_copies_checkpoints_and_pending_writes(one: Replica) -> None:
    source = await new_thread(one)
    await one.runs.wait(TENANT, source, body("ask"))
    target = await new_thread(one)
    await checkpoint_ops.copy_thread(one.saver, TENANT.tenant_id, source, target)
    copied, original = await checkpoints(one, target), await checkpoints(one, source)
    assert [c.checkpoint["id"] for c in copied] == [c.checkpoint["id"] for c in original]
    assert [c.metadata for c in copied] == [c.metadata for c in original]
    latest, source_latest = copied[0], original[0]
    assert latest.config["configurable"]["thread_id"] == target
    assert latest.checkpoint["channel_values"] == source_latest.checkpoint["channel_values"]
    assert latest.pending_writes and latest.pending_writes == source_latest.pending_writes
    assert latest.parent_config is not None
    assert latest.parent_config["configurable"]["thread_id"] == target


async def test_delete_run_checkpoints_keeps_other_runs(one: Replica) -> None:
    thread_id = await new_thread(one)
    first = await one.runs.wait(TENANT, thread_id, body())
    second = await one.runs.wait(TENANT, thread_id, body("ask"))
    other = await new_thread(one)
    await one.runs.wait(TENANT, other, body())
    await checkpoint_ops.delete_run_checkpoints(
        one.saver, TENANT.tenant_id, thread_id, second.run_id
    )
    left = await checkpoints(one, thread_id)
    assert len(left) == 4 and {c.metadata["run_id"] for c in left} == {first.run_id}
    latest = await latest_checkpoint(one, thread_id)
    assert latest is not None and latest.pending_writes == []
    assert latest.checkpoint["channel_values"]["steps"] == ["first", "second"]
    assert len(await checkpoints(one, other)) == 4
    await checkpoint_ops.delete_run_checkpoints(
        one.saver, TENANT.tenant_id, thread_id, "no-such-run"
    )
    assert len(await checkpoints(one, thread_id)) == 4


async def test_prune_delete_and_keep_latest(one: Replica) -> None:
    threads = [await new_thread(one) for _ in range(3)]
    for thread_id in threads:
        await one.runs.wait(TENANT, thread_id, body())
    await one.runs.wait(TENANT, threads[1], body("ask"))
    latest = {t: (await checkpoints(one, t))[0] for t in threads}

    await checkpoint_ops.prune(one.saver, TENANT.tenant_id, threads[:2], "keep_latest")
    for thread_id in threads[:2]:
        [kept] = await checkpoints(one, thread_id)
        assert kept.checkpoint["id"] == latest[thread_id].checkpoint["id"]
        assert kept.pending_writes == latest[thread_id].pending_writes
        assert kept.checkpoint["channel_values"] == latest[thread_id].checkpoint["channel_values"]
    assert len(await checkpoints(one, threads[2])) == 4

    await checkpoint_ops.prune(one.saver, TENANT.tenant_id, threads[:1], "delete")
    assert await latest_checkpoint(one, threads[0]) is None
    assert len(await checkpoints(one, threads[1])) == 1
    assert len(await checkpoints(one, threads[2])) == 4
