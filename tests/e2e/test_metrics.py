"""The runtime's metrics reach Ray's Prometheus endpoint with bounded labels."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from tests.e2e.conftest import BURST, Stack, Tenant

pytestmark = pytest.mark.e2e


def samples(text: str, name: str) -> list[dict[str, str]]:
    """Label sets of every sample of one metric family in Prometheus text format."""
    found = []
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels = line[len(name) + 1 : line.rindex("}")]
            found.append(dict(re.findall(r'(\w+)="([^"]*)"', labels)))
    return found


async def test_runtime_metrics_are_exported(
    stack: Stack, tenant: Tenant, http: httpx.AsyncClient
) -> None:
    headers = {"x-api-key": tenant.api_key}
    thread = (await http.post("/threads", json={}, headers=headers)).json()
    run = await http.post(
        f"/threads/{thread['thread_id']}/runs/wait",
        json={
            "assistant_id": "multi_agent",
            "input": {"messages": [{"role": "user", "content": "hi"}]},
        },
        headers=headers,
    )
    assert run.status_code == 200
    # Twice the burst at once, so at least one is refused and counted.
    statuses = await asyncio.gather(
        *(http.get("/assistants/react", headers=headers) for _ in range(2 * BURST))
    )
    assert 429 in [r.status_code for r in statuses]

    url = f"http://127.0.0.1:{stack.settings.serve.metrics_port}/metrics"
    wanted = {
        "ray_agent_http_requests_total",
        "ray_agent_http_request_latency_ms_bucket",
        "ray_agent_llm_calls_total",
        "ray_agent_llm_tokens_total",
        "ray_agent_breaker_state",
        "ray_agent_runs_total",
        "ray_agent_rate_limit_rejections_total",
    }
    text = ""
    async with httpx.AsyncClient(timeout=5.0) as client:
        # Ray exports metrics every few seconds: poll instead of sleeping a fixed time.
        for _ in range(60):
            text = (await client.get(url)).text
            if all(samples(text, name) for name in wanted):
                break
            await asyncio.sleep(1)
    missing = [name for name in wanted if not samples(text, name)]
    assert not missing, missing

    routes = {s["route"] for s in samples(text, "ray_agent_http_requests_total")}
    assert "/threads/{thread_id}/runs/wait" in routes
    assert not any(thread["thread_id"] in r for r in routes), "raw paths must not be labels"
    calls = samples(text, "ray_agent_llm_calls_total")
    # "smart" is [fake-down, fake-smart]: the failing primary is counted as an error.
    # (once its breaker opens, later calls are counted as circuit_open instead).
    assert any(s["model"] == "fake-down" and s["outcome"] == "error" for s in calls)
    assert any(s["model"] == "fake-smart" and s["outcome"] == "ok" for s in calls)
    assert any(
        s["graph"] == "multi_agent" and s["status"] == "success"
        for s in samples(text, "ray_agent_runs_total")
    )
    assert {s["model"] for s in samples(text, "ray_agent_breaker_state")} >= {"fake-down"}
