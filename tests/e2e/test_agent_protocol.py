"""The Agent Protocol subset, driven with the official langgraph-sdk client."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from langgraph_sdk import get_client

from tests.e2e.conftest import BURST, Stack, Tenant

pytestmark = pytest.mark.e2e

CODE_QUESTION = "please write a python function that reverses a list"


async def test_run_wait_on_thread_and_read_state_back(stack: Stack, tenant: Tenant) -> None:
    client = get_client(url=stack.url, api_key=tenant.api_key)
    thread = await client.threads.create(metadata={"purpose": "e2e"})
    assert thread["status"] == "idle"
    assert thread["metadata"]["purpose"] == "e2e"

    result = await client.runs.wait(
        thread["thread_id"],
        "multi_agent",
        input={"messages": [{"role": "user", "content": CODE_QUESTION}]},
    )
    assert result["agent"] == "code"
    final = result["messages"][-1]
    assert final["type"] == "ai"
    # "smart" is [fake-down, fake-smart]: the primary always fails, the fallback answers.
    assert final["content"] == f"[fake-smart] You said: {CODE_QUESTION}"
    assert any("code" in line for line in result["reasoning"])

    state = await client.threads.get_state(thread["thread_id"])
    assert [m["type"] for m in state["values"]["messages"]] == ["human", "ai"]
    assert state["next"] == []
    assert state["checkpoint"]["checkpoint_id"]

    again = await client.threads.get(thread["thread_id"])
    assert again["status"] == "idle"
    assert again["values"]["agent"] == "code"


async def test_stream_values_and_updates(stack: Stack, tenant: Tenant) -> None:
    client = get_client(url=stack.url, api_key=tenant.api_key)
    thread = await client.threads.create()
    parts = [
        part
        async for part in client.runs.stream(
            thread["thread_id"],
            "multi_agent",
            input={"messages": [{"role": "user", "content": "hello there"}]},
            stream_mode=["values", "updates"],
        )
    ]
    events = [p.event for p in parts]
    assert events[0] == "metadata"
    assert "run_id" in parts[0].data
    assert "values" in events and "updates" in events
    updates = [p.data for p in parts if p.event == "updates"]
    assert any("router" in u for u in updates)
    assert any("general" in u for u in updates)
    last_values = [p.data for p in parts if p.event == "values"][-1]
    assert last_values["agent"] == "general"
    assert last_values["messages"][-1]["content"] == "[fake-smart] You said: hello there"

    state = await client.threads.get_state(thread["thread_id"])
    assert len(state["values"]["messages"]) == 2


async def test_react_agent_calls_the_calculator(stack: Stack, tenant: Tenant) -> None:
    client = get_client(url=stack.url, api_key=tenant.api_key)
    thread = await client.threads.create()
    result = await client.runs.wait(
        thread["thread_id"],
        "react",
        input={"messages": [{"role": "user", "content": "what is (2 + 3) * 4?"}]},
    )
    types = [m["type"] for m in result["messages"]]
    assert types == ["human", "ai", "tool", "ai"]
    assert result["messages"][1]["tool_calls"][0]["name"] == "calculator"
    assert result["messages"][2]["content"] == "20"
    assert "20" in result["messages"][-1]["content"]


async def test_conversation_accumulates_on_a_thread(stack: Stack, tenant: Tenant) -> None:
    client = get_client(url=stack.url, api_key=tenant.api_key)
    thread = await client.threads.create()
    for text in ("hello", "compare these numbers: 3 and 4"):
        await client.runs.wait(
            thread["thread_id"],
            "multi_agent",
            input={"messages": [{"role": "user", "content": text}]},
        )
    state = await client.threads.get_state(thread["thread_id"])
    assert len(state["values"]["messages"]) == 4
    assert state["values"]["agent"] == "analysis"


async def test_missing_and_wrong_key_are_401(stack: Stack, http: httpx.AsyncClient) -> None:
    missing = await http.post("/threads", json={})
    assert missing.status_code == 401
    assert "x-api-key" in missing.json()["detail"]
    wrong = await http.post(
        "/threads", json={}, headers={"x-api-key": "ar_000000000000_not-a-real-secret"}
    )
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "unauthorized"
    client = get_client(url=stack.url, api_key="ar_000000000000_nope")
    with pytest.raises(httpx.HTTPStatusError) as raised:
        await client.threads.create()
    assert raised.value.response.status_code == 401


async def test_bearer_token_is_accepted(http: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await http.post(
        "/threads", json={}, headers={"Authorization": f"Bearer {tenant.api_key}"}
    )
    assert response.status_code == 200
    assert response.json()["thread_id"]


async def test_rate_limit_answers_429_with_retry_after(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    headers = {"x-api-key": tenant.api_key}
    # Twice the burst at once: refill (5/s) cannot keep up however slow the machine is.
    responses = await asyncio.gather(
        *(http.get("/assistants/multi_agent", headers=headers) for _ in range(2 * BURST))
    )
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) >= BURST - 1, statuses
    assert 429 in statuses, statuses
    refused = next(r for r in responses if r.status_code == 429)
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"] == "rate_limited"
    assert refused.headers["X-RateLimit-Remaining"] == "0"


async def test_unknown_ids_are_404(stack: Stack, tenant: Tenant) -> None:
    client = get_client(url=stack.url, api_key=tenant.api_key)
    with pytest.raises(httpx.HTTPStatusError) as missing_thread:
        await client.threads.get("00000000-0000-0000-0000-000000000000")
    assert missing_thread.value.response.status_code == 404
    thread = await client.threads.create()
    with pytest.raises(httpx.HTTPStatusError) as missing_graph:
        await client.runs.wait(thread["thread_id"], "no_such_graph", input={"messages": []})
    # As LangGraph Platform: a name that is neither a graph nor a UUID is invalid (422).
    assert missing_graph.value.response.status_code == 422
    assert "no_such_graph" in missing_graph.value.response.json()["detail"]
    with pytest.raises(httpx.HTTPStatusError) as missing_assistant:
        await client.runs.wait(
            thread["thread_id"], "00000000-0000-4000-8000-000000000000", input={"messages": []}
        )
    assert missing_assistant.value.response.status_code == 404


async def test_threads_are_tenant_isolated(
    stack: Stack, tenant: Tenant, store: object, http: httpx.AsyncClient
) -> None:
    from agent_runtime.db.metadata import MetadataStore
    from agent_runtime.tenancy.auth import generate_key

    assert isinstance(store, MetadataStore)
    await store.ensure_tenant("other-tenant", "another tenant")
    other_key, record = generate_key("other-tenant")
    await store.add_key(record)
    mine = await get_client(url=stack.url, api_key=tenant.api_key).threads.create()
    response = await http.get(f"/threads/{mine['thread_id']}", headers={"x-api-key": other_key})
    assert response.status_code == 404


async def test_invalid_body_is_422_naming_the_field(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    headers = {"x-api-key": tenant.api_key}
    thread = (await http.post("/threads", json={}, headers=headers)).json()
    response = await http.post(
        f"/threads/{thread['thread_id']}/runs/wait", json={"input": {}}, headers=headers
    )
    assert response.status_code == 422
    body = response.json()
    assert "assistant_id" in body["detail"]
    assert body["errors"][0]["field"] == "assistant_id"
    oversized = await http.post("/threads", content=b"{" + b" " * 2_000_000 + b"}", headers=headers)
    assert oversized.status_code == 413


async def test_health_reports_every_part(http: httpx.AsyncClient) -> None:
    ok = await http.get("/ok")
    assert ok.json() == {"ok": True}
    health = await http.get("/health")
    assert health.status_code == 200, health.text
    assert health.json()["checks"] == {
        "database": "ok",
        "orchestrator": "ok",
        "router": "ok",
        "redis": "ok",
    }


async def test_run_response_carries_hop_timings(http: httpx.AsyncClient, tenant: Tenant) -> None:
    headers = {"x-api-key": tenant.api_key}
    thread = (await http.post("/threads", json={}, headers=headers)).json()
    response = await http.post(
        f"/threads/{thread['thread_id']}/runs/wait",
        json={
            "assistant_id": "multi_agent",
            "input": {"messages": [{"role": "user", "content": "hi"}]},
        },
        headers=headers,
    )
    assert response.status_code == 200
    timing = dict(
        part.strip().split(";dur=") for part in response.headers["Server-Timing"].split(",")
    )
    assert set(timing) >= {"provider", "router", "checkpoint", "orchestrator", "graph"}
    assert float(timing["provider"]) > 0
    assert float(timing["orchestrator"]) >= float(timing["graph"]) > float(timing["provider"])


async def test_stream_messages_tuple_streams_provider_tokens(stack: Stack, tenant: Tenant) -> None:
    """Tokens come from the provider through the router and orchestrator as they arrive."""
    client = get_client(url=stack.url, api_key=tenant.api_key)
    thread = await client.threads.create()
    parts = [
        part
        async for part in client.runs.stream(
            thread["thread_id"],
            "multi_agent",
            input={"messages": [{"role": "user", "content": "tell me about the weather today"}]},
            stream_mode="messages-tuple",
        )
    ]
    tokens = [p.data for p in parts if p.event == "messages"]
    assert len(tokens) > 3, [p.event for p in parts]
    chunk, metadata = tokens[0]
    assert chunk["type"] == "AIMessageChunk"
    assert metadata["langgraph_node"] == "general"
    text = "".join(message["content"] for message, _ in tokens)
    assert text == "[fake-smart] You said: tell me about the weather today"
