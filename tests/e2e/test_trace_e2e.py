"""A run's path on the Serve stack: kept with the run, read through the API (its tenant
only), exported over OTLP to a collector, and sampled runs judged online."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client

from tests.e2e.conftest import JUDGED_GRAPH, Stack, Tenant
from tests.otlp import OtlpReceiver, attributes

pytestmark = pytest.mark.e2e

QUESTION = [{"role": "user", "content": "what is 6 * 7? use the calculator"}]


async def _eventually(check: Any, timeout_s: float = 30.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        found = check()
        if found:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not seen within {timeout_s} s")
        await asyncio.sleep(0.5)


async def test_a_runs_trace_says_where_time_and_money_went(
    stack: Stack, tenant: Tenant, otlp: OtlpReceiver, http: httpx.AsyncClient
) -> None:
    sdk = get_client(url=stack.url, api_key=tenant.api_key)
    thread = await sdk.threads.create()
    await sdk.runs.wait(thread["thread_id"], "react", input={"messages": QUESTION})
    (run,) = await sdk.runs.list(thread["thread_id"])
    path = f"/threads/{thread['thread_id']}/runs/{run['run_id']}/trace"
    trace = await sdk.http.get(path)

    assert (trace["run_id"], trace["graph_id"], trace["status"]) == (
        run["run_id"],
        "react",
        "success",
    )
    spans = trace["spans"]
    assert [s["name"] for s in spans if s["kind"] == "node"] == ["agent", "tools", "agent"]
    (tool,) = [s for s in spans if s["kind"] == "tool"]
    assert tool["name"] == "calculator" and tool["status"] == "ok"
    assert spans[tool["parent_id"]]["name"] == "tools"
    models = [s for s in spans if s["kind"] == "model"]
    assert len(models) == 2
    for model in models:
        # "smart" is [fake-down, fake-smart] on this stack: every call falls back (once
        # fake-down's breaker is open, it is skipped at once).
        assert (model["alias"], model["model"], model["fallback"]) == ("smart", "fake-smart", True)
        (down, smart) = [(a["model"], a["outcome"]) for a in model["attempts"]]
        assert down in (("fake-down", "error"), ("fake-down", "circuit_open"))
        assert smart == ("fake-smart", "ok")
        assert model["input_tokens"] > 0 and model["output_tokens"] > 0
        assert model["cost_usd"] > 0 and model["duration_ms"] > 0
        assert spans[model["parent_id"]]["name"] == "agent"
    totals = trace["totals"]
    assert (totals["nodes"], totals["model_calls"], totals["tool_calls"]) == (3, 2, 1)
    assert totals["fallbacks"] == 2

    # The same money as the usage ledger (this tenant made only these calls).
    usage = (
        await http.get("/usage", params={"period": "day"}, headers={"x-api-key": tenant.api_key})
    ).json()
    assert usage["totals"]["cost_usd"] == pytest.approx(totals["cost_usd"], abs=1e-6)
    assert usage["totals"]["input_tokens"] == totals["input_tokens"]

    # Another tenant, or the wrong thread: not found.
    other = await http.get(path, headers={"x-api-key": "nope"})
    assert other.status_code == 401
    elsewhere = await sdk.threads.create()
    wrong = await http.get(
        f"/threads/{elsewhere['thread_id']}/runs/{run['run_id']}/trace",
        headers={"x-api-key": tenant.api_key},
    )
    assert wrong.status_code == 404

    # The collector got the same run as one trace whose id is the run id.
    exported = await _eventually(lambda: otlp.trace(uuid.UUID(run["run_id"]).bytes))
    (root,) = [span for span in exported if not span.parent_span_id]
    assert root.name == "run react"
    assert attributes(root.attributes)["agent.tenant_id"] == tenant.tenant_id
    assert sorted(span.name for span in exported if span.parent_span_id) == sorted(
        ["agent", "tools", "agent", "chat smart", "chat smart", "execute_tool calculator"]
    )


async def test_a_trace_is_the_runs_tenants_only(
    stack: Stack, tenant: Tenant, make_api: Any
) -> None:
    sdk = get_client(url=stack.url, api_key=tenant.api_key)
    thread = await sdk.threads.create()
    await sdk.runs.wait(thread["thread_id"], "react", input={"messages": QUESTION})
    (run,) = await sdk.runs.list(thread["thread_id"])
    intruder = await make_api()
    with pytest.raises(httpx.HTTPStatusError) as refused:
        await intruder.sdk.http.get(f"/threads/{thread['thread_id']}/runs/{run['run_id']}/trace")
    assert refused.value.response.status_code == 404


async def test_sampled_runs_are_judged_online(stack: Stack, tenant: Tenant) -> None:
    sdk = get_client(url=stack.url, api_key=tenant.api_key)
    thread = await sdk.threads.create()
    answer = await sdk.runs.wait(
        thread["thread_id"], JUDGED_GRAPH, input={"messages": [{"role": "user", "content": "hi"}]}
    )
    assert answer["messages"][-1]["type"] == "ai"
    url = f"http://127.0.0.1:{stack.settings.serve.metrics_port}/metrics"
    wanted = ("ray_agent_online_judgements_total{", f'graph="{JUDGED_GRAPH}"', 'outcome="scored"')
    async with httpx.AsyncClient(timeout=5.0) as client:

        async def scored() -> float:
            for line in (await client.get(url)).text.splitlines():
                if line.startswith(wanted[0]) and all(part in line for part in wanted[1:]):
                    return float(line.rsplit(" ", 1)[1])
            return 0.0

        deadline = asyncio.get_running_loop().time() + 60
        while await scored() < 1:
            assert asyncio.get_running_loop().time() < deadline, "no online judgement exported"
            await asyncio.sleep(1)
        text = (await client.get(url)).text
    assert re.search(
        r'^ray_agent_online_judge_score_count\{[^}]*metric="relevance"', text, re.MULTILINE
    )
