"""Thread ids are per tenant (issue 13, defect 9), on both backends.

Another tenant's thread id is free for a tenant: no 409 that would tell it the id exists
(an existence oracle), and its own thread there starts empty, since checkpoints are
filed under the tenant. Deleting a thread removes its checkpoints before the row goes:
when they cannot be removed the thread stays, and nothing a run writes late survives
the delete, so no thread made again with the same id inherits the old state.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from agent_runtime.config.settings import StorageSettings
from agent_runtime.core.errors import DependencyUnavailable
from agent_runtime.core.metadata_filter import MetadataFilter
from agent_runtime.execution.tenant_checkpoints import checkpoint_thread_id
from agent_runtime.execution.tenant_context import NoTenantScope, tenant_scope
from agent_runtime.protocol.agent_protocol import ThreadCreate
from agent_runtime.runs.executor import ExecutorSettings
from agent_runtime.runs.thread_service import empty_state
from tests.runs import run_harness
from tests.runs.run_harness import OTHER, SLOW_S, TENANT, Replica, body
from tests.runs.thread_harness import ran
from tests.time_control import wait_for


@pytest.fixture
async def one(storage_settings: StorageSettings) -> AsyncIterator[Replica]:
    async with run_harness.replica(storage_settings) as r:
        yield r


def steps(outcome: Any) -> list[str]:
    return list(json.loads(outcome.body)["steps"])


async def raw_checkpoint(r: Replica, key: str) -> Any:
    """What the checkpoint tables hold under ``key`` (the saver below the tenant scope)."""
    raw = r.orchestration.checkpointers.saver
    return await raw.aget_tuple({"configurable": {"thread_id": key, "checkpoint_ns": ""}})


# -- no oracle, checkpoints scoped -----------------------------------------------------
async def test_another_tenants_thread_id_is_a_free_id(one: Replica) -> None:
    taken = await ran(one)  # TENANT's, with a run and its checkpoints
    free = str(uuid.uuid4())
    before = await one.threads.get_state(TENANT, taken)
    answers = []
    for thread_id in (taken, free):
        created = await one.threads.create(
            OTHER, ThreadCreate(thread_id=thread_id, metadata={"owner": "other"})
        )
        again = await one.threads.create(
            OTHER, ThreadCreate(thread_id=thread_id, if_exists="do_nothing")
        )
        assert again == created
        answers.append({k: v for k, v in created.items() if not k.endswith("_at")})
    # The same answer for an id another tenant holds as for an id nobody holds.
    assert answers[0] == {**answers[1], "thread_id": taken}
    assert answers[0]["metadata"] == {"owner": "other"} and answers[0]["values"] is None
    # OTHER's thread starts empty and runs on its own checkpoints.
    assert await one.threads.get_state(OTHER, taken) == empty_state(taken)
    assert steps(await one.runs.wait(OTHER, taken, body())) == ["first", "second"]
    assert await one.threads.get_state(TENANT, taken) == before
    mine = await one.store.get_thread(TENANT.tenant_id, taken)
    assert mine.metadata.get("owner") is None
    # A run that creates its thread takes a foreign id as its own too.
    other_free = str(uuid.uuid4())
    created_run = body().model_copy(update={"if_not_exists": "create"})
    own = await one.runs.wait(OTHER, other_free, created_run)
    assert steps(own) == ["first", "second"]
    assert steps(await one.runs.wait(TENANT, taken, body())) == ["first", "second"] * 2
    # Deleting OTHER's thread leaves TENANT's, and its state, alone.
    await one.threads.delete(OTHER, taken)
    assert len(await one.threads.history(TENANT, taken)) == 8
    [run, _] = await one.runs.runs.search(TENANT.tenant_id, taken)
    assert run.status == "success"


async def test_checkpoints_are_filed_under_the_tenant_and_read_back_unchanged(
    one: Replica,
) -> None:
    thread_id = await ran(one)
    state = await one.threads.get_state(TENANT, thread_id)
    # Clients, and graph code, see their own thread id only.
    assert state["checkpoint"]["thread_id"] == thread_id
    assert state["parent_checkpoint"]["thread_id"] == thread_id
    for past in await one.threads.history(TENANT, thread_id):
        assert past["checkpoint"]["thread_id"] == thread_id
    assert await raw_checkpoint(one, thread_id) is None
    stored = await raw_checkpoint(one, checkpoint_thread_id(TENANT.tenant_id, thread_id))
    assert stored is not None and stored.checkpoint["id"] == state["checkpoint_id"]
    # The runtime's saver has no tenant outside a tenant's scope: it refuses, it never
    # falls back to another key.
    config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    with pytest.raises(NoTenantScope):
        await one.saver.aget_tuple(config)  # type: ignore[arg-type]
    with tenant_scope(OTHER.tenant_id):
        assert await one.saver.aget_tuple(config) is None  # type: ignore[arg-type]
    with tenant_scope(TENANT.tenant_id):
        mine = await one.saver.aget_tuple(config)  # type: ignore[arg-type]
    assert mine is not None and mine.config["configurable"]["thread_id"] == thread_id


async def test_an_auth_filter_reads_the_tenants_own_thread_not_a_namesake(one: Replica) -> None:
    """A bulk cancel under an app's auth filter reaches the runs on threads whose metadata
    passes it: the run's own thread, never another tenant's thread of the same id."""
    thread_id = str(uuid.uuid4())
    await one.threads.create(TENANT, ThreadCreate(thread_id=thread_id, metadata={"owner": "a"}))
    await one.threads.create(OTHER, ThreadCreate(thread_id=thread_id, metadata={"owner": "b"}))
    delayed = body(after_seconds=600)
    started = await one.runs.start(TENANT, thread_id, delayed, "background")
    store = one.orchestration.runs.runs
    only_b, only_a = MetadataFilter({"owner": "b"}), MetadataFilter({"owner": "a"})
    assert await store.in_flight(TENANT.tenant_id, None, only_b) == []
    assert await store.in_flight(TENANT.tenant_id, None, only_a) == [started.run.run_id]
    assert await store.in_flight(OTHER.tenant_id, None, only_b) == []


# -- deletes ---------------------------------------------------------------------------
Locker = Callable[[Replica], Awaitable[Callable[[], Awaitable[None]]]]


async def lock_sqlite_checkpoints(r: Replica) -> Callable[[], Awaitable[None]]:
    """Another process's writer holds the checkpoint file's lock until released."""
    import sqlite3

    path = r.orchestration.checkpointers._settings.checkpoint_sqlite_path
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")

    async def release() -> None:
        holder.execute("ROLLBACK")
        holder.close()

    return release


async def lock_postgres_checkpoints(r: Replica) -> Callable[[], Awaitable[None]]:
    """Another session holds the checkpoint tables until released."""
    holder = await asyncpg.connect(r.orchestration.checkpointers._settings.postgres_dsn)
    transaction = holder.transaction()
    await transaction.start()
    await holder.execute("LOCK TABLE checkpoints, checkpoint_writes IN ACCESS EXCLUSIVE MODE")

    async def release() -> None:
        await transaction.rollback()
        await holder.close()

    return release


async def test_a_thread_whose_checkpoints_cannot_be_deleted_stays(
    storage_settings: StorageSettings,
) -> None:
    quick = storage_settings.model_copy(update={"db_timeout_s": 1.0, "sqlite_write_timeout_s": 1.0})
    async with run_harness.replica(quick) as r:
        thread_id = await ran(r)
        state = await r.threads.get_state(TENANT, thread_id)
        lock = lock_postgres_checkpoints if quick.is_postgres else lock_sqlite_checkpoints
        release = await lock(r)
        try:
            with pytest.raises(DependencyUnavailable, match="checkpoints"):
                await asyncio.wait_for(r.threads.delete(TENANT, thread_id), timeout=20)
        finally:
            await release()
        # Nothing went: the row, its run and its state are all there.
        assert (await r.store.get_thread(TENANT.tenant_id, thread_id)).status == "idle"
        assert len(await r.runs.runs.search(TENANT.tenant_id, thread_id)) == 1
        assert await r.threads.get_state(TENANT, thread_id) == state
        # Tried again, the delete goes through; the id made again starts empty.
        await r.threads.delete(TENANT, thread_id)
        await r.threads.create(TENANT, ThreadCreate(thread_id=thread_id))
        assert await r.threads.get_state(TENANT, thread_id) == empty_state(thread_id)


async def test_a_run_writing_after_its_thread_was_deleted_leaves_nothing(
    storage_settings: StorageSettings,
) -> None:
    """The thread is deleted on one replica while another runs on it and only notices at
    its next heartbeat: what that run writes meanwhile goes with it."""
    slow_beat = ExecutorSettings(heartbeat_s=30.0, lease_s=60.0, poll_s=0.2)
    async with (
        run_harness.replica(storage_settings) as deleter,
        run_harness.replica(storage_settings, executor=slow_beat) as worker,
    ):
        thread_id = (await deleter.store.create_thread(TENANT.tenant_id)).thread_id
        slow = body("slow", stream_mode=["custom"])
        started = await worker.runs.start(TENANT, thread_id, slow, "background")
        local = started.local
        assert local is not None
        key = checkpoint_thread_id(TENANT.tenant_id, thread_id)
        # The run is in its slow second step once that step says so.
        async with asyncio.timeout(20):
            async for _, name, _ in local.stream.subscribe():
                if name == "custom":
                    break

        async def first_step_stored() -> bool:
            # Checkpoints are written alongside the next step: wait for the first step's,
            # so that the delete has it to remove and only the second step writes late.
            stored = await raw_checkpoint(deleter, key)
            return stored is not None and stored.checkpoint["channel_values"].get("steps") == [
                "first"
            ]

        await wait_for(first_step_stored, timeout_s=SLOW_S)
        await deleter.threads.delete(TENANT, thread_id)
        assert await raw_checkpoint(deleter, key) is None
        # The worker finishes its step, writes its checkpoint and ends, not knowing.
        await asyncio.wait_for(asyncio.shield(local.done), timeout=20)
        await deleter.threads.create(TENANT, ThreadCreate(thread_id=thread_id))
        assert await deleter.threads.get_state(TENANT, thread_id) == empty_state(thread_id)
        assert await raw_checkpoint(deleter, key) is None
