"""``loadtests/baseline_app.py``, the baseline that ``make bench`` compares the stack with.

No Ray here: the benchmark's stack is only ever started by ``loadtests/bench.py`` itself. The
baseline runs in-process over ASGI against the fake provider (ASGI too), to prove it really
runs the registry's graph with its checkpointer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from agent_runtime.config.fake_provider_settings import FakeProviderSettings
from agent_runtime.fake.provider_app import create_fake_provider_app
from loadtests.baseline_app import create_baseline_app, openai_models
from loadtests.bench_load import run_body

FAKE_BASE_URL = "http://fake/v1"


@pytest.fixture
async def baseline() -> AsyncIterator[httpx.AsyncClient]:
    # Every fault field is set so AGENT_FAKE_* variables in the environment cannot leak in.
    fake = create_fake_provider_app(
        FakeProviderSettings(
            latency_ms=0, jitter_ms=0, fail_rate=0, failing_models=[], hanging_models=[]
        )
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=fake), base_url=FAKE_BASE_URL, timeout=10.0
    ) as provider:
        app = create_baseline_app(openai_models(FAKE_BASE_URL, http_async_client=provider))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://baseline", timeout=10.0
        ) as client:
            yield client


def messages_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = body["messages"]
    return messages


async def test_baseline_runs_the_multi_agent_graph_on_a_thread(
    baseline: httpx.AsyncClient,
) -> None:
    created = await baseline.post("/threads", json={})
    assert created.status_code == 200
    thread = created.json()
    assert thread["status"] == "idle" and thread["thread_id"]

    route = f"/threads/{thread['thread_id']}/runs/wait"
    first = await baseline.post(route, json=run_body(0))
    assert first.status_code == 200, first.text
    body = first.json()
    assert [m["type"] for m in messages_of(body)] == ["human", "ai"]
    assert body["agent"] == "code"
    assert body["reasoning"] == [
        "router: classified as code by fake-fast",
        "code: answered by fake-smart",
    ]
    assert messages_of(body)[-1]["content"].startswith("[fake-smart]")

    # The thread's checkpoint carries the first turn into the second.
    second = (await baseline.post(route, json=run_body(1))).json()
    assert [m["type"] for m in messages_of(second)] == ["human", "ai", "human", "ai"]
    assert second["agent"] == "general"


async def test_baseline_answers_404_for_unknown_threads_and_assistants(
    baseline: httpx.AsyncClient,
) -> None:
    missing = await baseline.post("/threads/nope/runs/wait", json=run_body(0))
    assert missing.status_code == 404
    thread_id = (await baseline.post("/threads", json={})).json()["thread_id"]
    unknown = await baseline.post(
        f"/threads/{thread_id}/runs/wait", json={**run_body(0), "assistant_id": "nope"}
    )
    assert unknown.status_code == 404
    assert "nope" in unknown.json()["detail"]
