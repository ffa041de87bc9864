"""``client.crons`` on the Serve stack: create (on a thread and not), search, count,
update, delete, and the scheduler's runs, through the official SDK."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.e2e.support import Api

pytestmark = pytest.mark.e2e

EVERY_SECOND = "* * * * * *"  # croniter's sixth field is seconds


def msg(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


async def _until(check: Any, timeout_s: float = 30.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        found = await check()
        if found:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not seen within {timeout_s} s")
        await asyncio.sleep(0.5)


async def test_a_thread_cron_runs_on_its_thread_until_deleted(api: Api, make_api: Any) -> None:
    sdk = api.sdk
    thread = await sdk.threads.create()
    thread_id = thread["thread_id"]
    cron = await sdk.crons.create_for_thread(
        thread_id, "react", schedule=EVERY_SECOND, input=msg("tick"), metadata={"job": "tick"}
    )
    assert cron["thread_id"] == thread_id and cron["schedule"] == EVERY_SECOND
    assert cron["enabled"] is True and cron["next_run_date"] is not None
    assert cron["payload"]["input"] == msg("tick")

    async def two_runs() -> list[Any]:
        runs = await sdk.runs.list(thread_id)
        return runs if len(runs) >= 2 else []

    runs = await _until(two_runs)
    assert all(run["metadata"].get("job") == "tick" for run in runs)
    assert all(run["assistant_id"] == cron["assistant_id"] for run in runs)

    found = await sdk.crons.search(thread_id=thread_id)
    assert [c["cron_id"] for c in found] == [cron["cron_id"]]
    assert await sdk.crons.count(thread_id=thread_id) == 1
    paused = await sdk.crons.update(cron["cron_id"], enabled=False, schedule="0 0 1 1 *")
    assert paused["enabled"] is False and paused["schedule"] == "0 0 1 1 *"
    assert paused["next_run_date"][5:16] == "01-01T00:00"
    empty = await api.http.patch(f"/runs/crons/{cron['cron_id']}", json={})
    assert empty.status_code == 400

    intruder = await make_api()
    with pytest.raises(httpx.HTTPStatusError) as hidden:
        await intruder.sdk.crons.delete(cron["cron_id"])
    assert hidden.value.response.status_code == 404
    assert await intruder.sdk.crons.count() == 0

    await sdk.crons.delete(cron["cron_id"])
    assert await sdk.crons.count(thread_id=thread_id) == 0
    settled = len(await sdk.runs.list(thread_id))
    await asyncio.sleep(2.5)
    assert len(await sdk.runs.list(thread_id)) <= settled + 1  # at most one already claimed


async def test_a_stateless_cron_and_bad_input(api: Api) -> None:
    sdk = api.sdk
    cron = await sdk.crons.create(
        "react", schedule=EVERY_SECOND, input=msg("hello"), on_run_completed="keep"
    )
    assert cron["thread_id"] is None and cron["on_run_completed"] == "keep"

    async def kept_thread() -> list[Any]:
        threads = await sdk.threads.search(metadata={"graph_id": "react"})
        return threads

    threads = await _until(kept_thread)
    await sdk.crons.delete(cron["cron_id"])
    assert threads[0]["metadata"]["graph_id"] == "react"

    bad = await api.http.post("/runs/crons", json={"assistant_id": "react", "schedule": "often"})
    assert bad.status_code == 422 and "Invalid cron schedule" in bad.json()["detail"]
    # A run no cron could ever start: refused here, never left to the scheduler.
    bogus = await api.http.post(
        "/runs/crons",
        json={"assistant_id": "react", "schedule": "* * * * *", "stream_mode": "bogus"},
    )
    assert bogus.status_code == 422 and bogus.json()["detail"].startswith("stream_mode")
    missing = await api.http.post(
        "/runs/crons", json={"assistant_id": "nobody", "schedule": "* * * * *"}
    )
    assert missing.status_code == 422  # neither a UUID nor a graph id, as Platform says
    unknown = await api.http.get("/runs/crons/00000000-0000-4000-8000-000000000000")
    assert unknown.status_code == 404
    not_a_uuid = await api.http.get("/runs/crons/nope")
    assert not_a_uuid.status_code == 422
