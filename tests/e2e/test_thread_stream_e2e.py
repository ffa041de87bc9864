"""``client.threads.join_stream`` on the Serve stack: a thread's runs as they run, each
ended by ``run_done``; lifecycle mode; Last-Event-ID; other tenants' threads not found."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import httpx
import pytest

from tests.e2e.support import Api

pytestmark = pytest.mark.e2e


def msg(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


async def _collect(joining: Awaitable[AsyncIterator[Any]], runs_done: int) -> list[Any]:
    """The async client's ``join_stream`` is a coroutine that returns the stream."""
    got: list[Any] = []
    async with asyncio.timeout(60):
        async for part in await joining:
            got.append(part)
            done = [p for p in got if p.event == "metadata" and p.data.get("status")]
            if len(done) == runs_done:
                return got
    raise AssertionError(f"the stream ended after {got}")


async def test_join_stream_follows_every_run_on_the_thread(api: Api) -> None:
    sdk = api.sdk
    thread = await sdk.threads.create()
    thread_id = thread["thread_id"]
    reading = asyncio.ensure_future(_collect(sdk.threads.join_stream(thread_id), 2))
    await asyncio.sleep(1.0)  # the client has joined before the runs start
    first = await sdk.runs.create(thread_id, "react", input=msg("what is 2 + 3"))
    second = await sdk.runs.create(
        thread_id, "react", input=msg("and 4 * 5"), multitask_strategy="enqueue"
    )
    parts = await reading
    runs = [first["run_id"], second["run_id"]]
    starts = [p.data["run_id"] for p in parts if p.event == "metadata" and "attempt" in p.data]
    dones = [p.data["run_id"] for p in parts if p.event == "metadata" and p.data.get("status")]
    assert starts == runs and dones == runs
    values = [p.data for p in parts if p.event == "values"]
    assert values and values[-1]["messages"][-1]["type"] == "ai"
    assert [p.id for p in parts if p.data.get("status")] == [f"{run}:done" for run in runs]

    # Reconnecting with the id of the first run's first event: the rest, then the second.
    resumed = await _collect(sdk.threads.join_stream(thread_id, last_event_id=parts[0].id), 2)
    assert [(p.event, p.data, p.id) for p in resumed] == [
        (p.event, p.data, p.id) for p in parts[1:]
    ]


async def test_lifecycle_mode_and_errors(api: Api, make_api: Any) -> None:
    sdk = api.sdk
    thread = await sdk.threads.create()
    thread_id = thread["thread_id"]
    reading = asyncio.ensure_future(
        _collect(sdk.threads.join_stream(thread_id, stream_mode="lifecycle"), 1)
    )
    await asyncio.sleep(1.0)
    run = await sdk.runs.create(thread_id, "react", input=msg("hello"))
    parts = await reading
    assert [(p.event, p.data) for p in parts] == [
        ("metadata", {"run_id": run["run_id"], "attempt": 1}),
        ("metadata", {"status": "run_done", "run_id": run["run_id"]}),
    ]

    intruder = await make_api()
    with pytest.raises(httpx.HTTPStatusError) as missing:
        async for _ in await intruder.sdk.threads.join_stream(thread_id):
            pass
    assert missing.value.response.status_code == 404
    bad = await api.http.get(f"/threads/{thread_id}/stream", params={"stream_modes": "values"})
    assert bad.status_code == 422 and "values" in bad.json()["detail"]
