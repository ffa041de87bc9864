"""Runs queued or delayed by a key that is revoked, or a tenant that is disabled, before
their turn do not start: they end as ``error`` naming why, on both backends. A run
already running goes on; the same key's runs were accepted while it was valid."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from agent_runtime.config.settings import StorageSettings
from agent_runtime.core.records import Principal
from agent_runtime.tenancy.audit import CLI
from agent_runtime.tenancy.tenants import TenantAdmin
from tests.runs.run_harness import TENANT, Replica, body, new_thread, replica
from tests.runs.test_run_service import frames


@pytest.fixture
async def one(storage_settings: StorageSettings) -> AsyncIterator[Replica]:
    async with replica(storage_settings) as r:
        yield r


async def _key(r: Replica) -> tuple[TenantAdmin, Principal]:
    admin = TenantAdmin(r.store)
    _, record = await admin.create_key(CLI, TENANT.tenant_id, "queued")
    return admin, Principal(tenant_id=TENANT.tenant_id, key_id=record.key_id)


async def test_a_queued_run_of_a_revoked_key_ends_as_error_when_its_turn_comes(
    one: Replica,
) -> None:
    admin, principal = await _key(one)
    thread_id = await new_thread(one)
    first = await one.runs.start(principal, thread_id, body("slow"), "background")
    queued = await one.runs.start(principal, thread_id, body(), "background")
    assert (first.created.started, queued.created.started) == (True, False)
    await admin.revoke_key(CLI, principal.key_id)
    ran = await one.runs.join(TENANT, thread_id, first.run.run_id)
    refused = await one.runs.join(TENANT, thread_id, queued.run.run_id)
    assert ran.status == "success"  # it was running when the key was revoked
    assert refused.status == "error"
    error = json.loads(refused.body)["__error__"]
    assert error["error"] == "RunRefused"
    assert "revoked" in error["message"]
    row = await one.runs.runs.get(TENANT.tenant_id, queued.run.run_id)
    assert row.status == "error" and "revoked" in (row.error or "")
    # Its stream says so too, as any failed run's does.
    stream = [
        f
        async for f in one.runs.join_stream(
            TENANT, thread_id, queued.run.run_id, last_event_id=None, cancel_on_disconnect=False
        )
    ]
    names = [name for name, _, _ in frames(stream)]
    assert names == ["metadata", "error"]
    assert frames(stream)[1][1] == error


async def test_a_delayed_run_of_a_disabled_tenant_ends_as_error_when_due(one: Replica) -> None:
    _, principal = await _key(one)
    thread_id = await new_thread(one)
    delayed = await one.runs.start(principal, thread_id, body(after_seconds=0.3), "background")
    assert not delayed.created.started
    await one.store.set_tenant_disabled(TENANT.tenant_id, True)
    refused = await one.runs.join(TENANT, thread_id, delayed.run.run_id)
    assert refused.status == "error"
    error = json.loads(refused.body)["__error__"]
    assert error["error"] == "RunRefused" and "tenant" in error["message"]
    thread = await one.store.get_thread(TENANT.tenant_id, thread_id)
    assert thread.status != "busy"  # the thread is free again


async def test_queued_runs_of_a_valid_key_still_run(one: Replica) -> None:
    _, principal = await _key(one)
    thread_id = await new_thread(one)
    await one.runs.start(principal, thread_id, body("slow"), "background")
    queued = await one.runs.start(principal, thread_id, body(), "background")
    outcome = await one.runs.join(TENANT, thread_id, queued.run.run_id)
    assert outcome.status == "success"
