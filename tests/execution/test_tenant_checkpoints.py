"""Checkpoints filed per tenant (agent_runtime.execution.tenant_checkpoints), and the
checkpoints of threads made before that moving under their owner at start-up."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine

from agent_runtime.config.settings import StorageSettings
from agent_runtime.db import migrations
from agent_runtime.db.tables import UNSCOPED_CHECKPOINTS
from agent_runtime.execution.checkpointers import Checkpointers
from agent_runtime.execution.tenant_checkpoints import checkpoint_thread_id
from tests.runs import run_harness
from tests.runs.run_harness import GRAPH, OTHER, TENANT, Replica


def test_keys_of_different_tenants_or_threads_never_collide() -> None:
    pairs = [("a", "b:c"), ("a:b", "c"), ("a%3Ab", "c"), ("a", "b"), ("b", "a")]
    keys = {checkpoint_thread_id(tenant, thread) for tenant, thread in pairs}
    assert len(keys) == len(pairs)
    assert checkpoint_thread_id("acme", "t-1") == "acme:t-1"


async def _database_before_tenant_keys(
    settings: StorageSettings, threads: dict[str, str], orphan: str
) -> None:
    """Revision 0007's schema with ``threads`` (id -> tenant), whose checkpoints (and an
    orphan's, a thread deleted long ago) are filed under the bare thread id."""
    settings.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(settings.sqlalchemy_url)
    now = datetime(2026, 11, 1, tzinfo=UTC)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(migrations.upgrade, "0007")
            for thread_id, tenant_id in threads.items():
                await conn.execute(
                    text(
                        "INSERT INTO agent_threads (thread_id, tenant_id, graph_id, status, "
                        "metadata, created_at, updated_at, config, interrupts) VALUES "
                        "(:thread, :tenant, :graph, 'idle', '{}', :now, :now, '{}', '{}')"
                    ),
                    {"thread": thread_id, "tenant": tenant_id, "graph": GRAPH, "now": now},
                )
    finally:
        await engine.dispose()
    checkpointers = Checkpointers(settings)
    try:
        graph = run_harness.build(None).compile(checkpointer=await checkpointers.setup())  # type: ignore[arg-type]
        for thread_id in [*threads, orphan]:
            config: Any = {"configurable": {"thread_id": thread_id}}
            await graph.ainvoke({"steps": [], "mode": "ok"}, config)
    finally:
        await checkpointers.close()


async def _raw(r: Replica, key: str) -> Any:
    raw = r.orchestration.checkpointers.saver
    return await raw.aget_tuple({"configurable": {"thread_id": key, "checkpoint_ns": ""}})


async def test_checkpoints_from_before_tenant_keys_move_under_their_owner(
    storage_settings: StorageSettings,
) -> None:
    mine, theirs, orphan = (str(uuid.uuid4()) for _ in range(3))
    owners = {mine: TENANT.tenant_id, theirs: OTHER.tenant_id}
    await _database_before_tenant_keys(storage_settings, owners, orphan)
    async with run_harness.replica(storage_settings) as r:
        # Each owner reads its thread's state as before; the other tenant does not.
        for thread_id, principal in ((mine, TENANT), (theirs, OTHER)):
            state = await r.threads.get_state(principal, thread_id)
            assert state["values"]["steps"] == ["first", "second"]
            assert state["checkpoint"]["thread_id"] == thread_id
            assert await _raw(r, thread_id) is None
            assert await _raw(r, checkpoint_thread_id(principal.tenant_id, thread_id))
        await r.store.create_thread(OTHER.tenant_id, thread_id=mine)
        assert (await r.threads.get_state(OTHER, mine))["values"] == {}
        # The list is done with; a thread with no row any more stays where it was,
        # which no tenant's key reaches.
        async with r.store.transaction() as conn:
            assert (await conn.execute(select(UNSCOPED_CHECKPOINTS))).all() == []
        assert await _raw(r, orphan) is not None
        # Runs go on from the moved state.
        outcome = await r.runs.wait(TENANT, mine, run_harness.body())
        assert outcome.status == "success"
        assert len(await r.threads.history(TENANT, mine)) == 8
    # A later start finds nothing to move.
    async with run_harness.replica(storage_settings) as again:
        assert len(await again.threads.history(TENANT, mine)) == 8
