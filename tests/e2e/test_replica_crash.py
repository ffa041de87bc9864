"""Threads survive an orchestrator replica crash: checkpoints live in the database."""

from __future__ import annotations

import asyncio

import pytest
import ray
from langgraph_sdk import get_client

from tests.e2e.conftest import Stack, Tenant

pytestmark = pytest.mark.e2e


def orchestrator_replicas() -> list[str]:
    return [
        actor["name"]
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if "Orchestrator" in actor["name"] and actor["name"].startswith("SERVE_REPLICA")
    ]


async def test_thread_survives_a_killed_orchestrator_replica(stack: Stack, tenant: Tenant) -> None:
    client = get_client(url=stack.url, api_key=tenant.api_key)
    thread = await client.threads.create()
    first = {"messages": [{"role": "user", "content": "hello before the crash"}]}
    await client.runs.wait(thread["thread_id"], "multi_agent", input=first)

    names = orchestrator_replicas()
    assert names, "no orchestrator replica found"
    for name in names:
        ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)

    # Serve replaces the replica; poll until the thread answers again.
    state = None
    for _ in range(120):
        try:
            state = await client.threads.get_state(thread["thread_id"])
            break
        except Exception:  # the replica is restarting: 5xx or connection errors
            await asyncio.sleep(0.5)
    assert state is not None, "the orchestrator did not come back within 60 s"
    assert [m["content"] for m in state["values"]["messages"]] == [
        "hello before the crash",
        "[fake-smart] You said: hello before the crash",
    ]
    assert set(orchestrator_replicas()).isdisjoint(names)

    second = {"messages": [{"role": "user", "content": "hello after the crash"}]}
    result = await client.runs.wait(thread["thread_id"], "multi_agent", input=second)
    assert [m["type"] for m in result["messages"]] == ["human", "ai", "human", "ai"]
    assert result["messages"][-1]["content"] == "[fake-smart] You said: hello after the crash"
