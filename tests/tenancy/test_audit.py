"""Every ended run leaves a ``run.end`` audit entry (real runs, both backends): who,
which graph, tokens in and out, outcome; the run's key never shows on the wire."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from agent_runtime.config.settings import StorageSettings
from agent_runtime.core import timing
from agent_runtime.protocol.agent_responses import run_to_wire
from agent_runtime.tenancy.audit import AuditEntry, AuditLog
from tests.runs import run_harness
from tests.runs.run_harness import GRAPH, TENANT, Replica, body, new_thread
from tests.time_control import wait_for


async def _first_with_tokens(state: run_harness.State) -> dict[str, Any]:
    """The harness's first step, as if it had called a model (12 tokens in, 5 out)."""
    timings = timing.current()
    assert timings is not None
    timings.input_tokens += 12
    timings.output_tokens += 5
    return {"steps": ["first"]}


@pytest.fixture
async def one(
    storage_settings: StorageSettings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Replica]:
    monkeypatch.setattr(run_harness, "first", _first_with_tokens)
    async with run_harness.replica(storage_settings) as r:
        yield r


async def _run_entries(log: AuditLog, count: int) -> list[AuditEntry]:
    async def found() -> list[AuditEntry] | None:
        entries = await log.search(action="run.end")
        return entries if len(entries) >= count else None

    entries: list[AuditEntry] = await wait_for(found)
    return entries


async def test_each_ended_run_is_audited_with_graph_tokens_and_outcome(one: Replica) -> None:
    thread_id = await new_thread(one)
    ok = await one.runs.wait(TENANT, thread_id, body())
    failed = await one.runs.wait(TENANT, thread_id, body("crash"))
    stateless = await one.runs.wait(TENANT, None, body())
    log = AuditLog(one.store)
    entries = {e.target: e for e in await _run_entries(log, 3)}
    assert set(entries) == {ok.run_id, failed.run_id, stateless.run_id}
    done = entries[ok.run_id]
    run = await one.runs.runs.get(TENANT.tenant_id, ok.run_id)
    assert (done.tenant_id, done.key_id, done.actor) == (TENANT.tenant_id, TENANT.key_id, "api-key")
    assert done.details == {
        "graph_id": GRAPH,
        "assistant_id": run.assistant_id,
        "run_id": ok.run_id,
        "thread_id": thread_id,
        "stateless": False,
        "status": "success",
        "input_tokens": 12,
        "output_tokens": 5,
        "cost_usd": 0.0,  # the run's model calls' ledger rows summed: this graph made none
        "attempt": 1,
    }
    assert entries[failed.run_id].details["status"] == "error"
    assert entries[stateless.run_id].details["stateless"] is True
    assert await log.search(tenant_id="other-tenant", action="run.end") == []

    assert run.kwargs["key_id"] == TENANT.key_id  # kept with the run, for any replica
    assert "key_id" not in run_to_wire(run)["kwargs"]
