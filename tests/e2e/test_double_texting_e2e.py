"""Double-texting on the Serve stack (Postgres): a second run sent while the first (made
slow with ``[delay:...]``) is still running, for each multitask strategy. Checks the
answer to the second request, both runs' statuses and the thread's final state."""

from __future__ import annotations

import httpx
import pytest
from langgraph_sdk.errors import ConflictError

from tests.e2e.support import Api, contents, msg, until_in_node, until_status

pytestmark = pytest.mark.e2e

FIRST = "first [delay:1000]"
BUSY = (
    "Thread is already running a task. Wait for it to finish or choose a different "
    "multitask strategy."
)


def answer(text: str) -> str:
    return f"[fake-fast] You said: {text}"


async def start_slow_run(api: Api) -> tuple[str, str]:
    """A thread whose first run is inside its (slow) model call."""
    tid = (await api.sdk.threads.create())["thread_id"]
    run = await api.sdk.runs.create(tid, "memory", input=msg(FIRST))
    await until_in_node(api, tid, "respond")
    return tid, run["run_id"]


async def double_text(api: Api, tid: str, strategy: str, text: str = "second") -> httpx.Response:
    return await api.http.post(
        f"/threads/{tid}/runs",
        json={"assistant_id": "memory", "input": msg(text), "multitask_strategy": strategy},
    )


async def test_reject_answers_409_and_keeps_the_first_run(api: Api) -> None:
    sdk, http = api.sdk, api.http
    tid, first = await start_slow_run(api)
    rejected = await double_text(api, tid, "reject")
    assert rejected.status_code == 409
    assert rejected.json()["detail"] == BUSY
    # The same answer from wait and stream, before any event is sent.
    body = {"assistant_id": "memory", "input": msg("x"), "multitask_strategy": "reject"}
    for path in (f"/threads/{tid}/runs/wait", f"/threads/{tid}/runs/stream"):
        response = await http.post(path, json=body)
        assert response.status_code == 409, path
        assert response.headers["content-type"] == "application/json"
    with pytest.raises(ConflictError):
        await sdk.runs.create(tid, "memory", input=msg("x"), multitask_strategy="reject")
    assert (await sdk.threads.get(tid))["status"] == "busy"

    await sdk.runs.join(tid, first)
    assert [r["run_id"] for r in await sdk.runs.list(tid)] == [first]
    assert (await sdk.runs.get(tid, first))["status"] == "success"
    thread = await sdk.threads.get(tid)
    assert thread["status"] == "idle"
    assert contents(thread["values"]) == [FIRST, answer(FIRST)]
    # Once the thread is free, reject is no obstacle.
    done = await sdk.runs.wait(tid, "memory", input=msg("later"), multitask_strategy="reject")
    assert contents(done)[-1] == answer("later")


async def test_enqueue_runs_the_second_after_the_first(api: Api) -> None:
    sdk = api.sdk
    tid, first = await start_slow_run(api)
    queued = await double_text(api, tid, "enqueue")
    assert queued.status_code == 200
    second = queued.json()
    assert (second["status"], second["multitask_strategy"]) == ("pending", "enqueue")
    third = await sdk.runs.create(tid, "memory", input=msg("third"))  # enqueue by default
    assert third["multitask_strategy"] == "enqueue"
    assert (await sdk.runs.get(tid, first))["status"] == "running"

    final = await sdk.runs.join(tid, third["run_id"])
    assert contents(final) == [
        FIRST, answer(FIRST), "second", answer("second"), "third", answer("third"),
    ]  # fmt: skip
    runs = await sdk.runs.list(tid)
    assert [r["run_id"] for r in runs] == [third["run_id"], second["run_id"], first]
    assert {r["status"] for r in runs} == {"success"}
    history = await sdk.threads.get_history(tid, limit=20)
    by_run = [h["metadata"]["run_id"] for h in reversed(history)]
    # Each run's checkpoints come after the previous run's: one at a time, in order.
    assert by_run == sorted(by_run, key=[first, second["run_id"], third["run_id"]].index)
    assert (await sdk.threads.get(tid))["status"] == "idle"


async def test_interrupt_stops_the_first_run_and_keeps_its_input(api: Api) -> None:
    sdk = api.sdk
    tid, first = await start_slow_run(api)
    created = await double_text(api, tid, "interrupt")
    assert created.status_code == 200
    second = created.json()
    assert second["multitask_strategy"] == "interrupt"
    assert (await sdk.threads.get(tid))["status"] == "busy"
    assert await until_status(api, tid, first, "interrupted") == "interrupted"

    final = await sdk.runs.join(tid, second["run_id"])
    # The first run's input checkpoint stays; its model answer never happened.
    assert contents(final) == [FIRST, "second", answer("second")]
    assert (await sdk.runs.get(tid, second["run_id"]))["status"] == "success"
    assert [r["status"] for r in await sdk.runs.list(tid)] == ["success", "interrupted"]
    thread = await sdk.threads.get(tid)
    assert thread["status"] == "idle" and contents(thread["values"]) == contents(final)


async def test_interrupt_also_stops_queued_runs(api: Api) -> None:
    sdk = api.sdk
    tid, first = await start_slow_run(api)
    queued = (await double_text(api, tid, "enqueue", "queued")).json()
    last = (await double_text(api, tid, "interrupt", "last")).json()
    final = await sdk.runs.join(tid, last["run_id"])
    assert contents(final) == [FIRST, "last", answer("last")]
    assert (await sdk.runs.get(tid, first))["status"] == "interrupted"
    assert (await sdk.runs.get(tid, queued["run_id"]))["status"] == "interrupted"
    assert (await sdk.runs.get(tid, last["run_id"]))["status"] == "success"
    assert (await sdk.threads.get(tid))["status"] == "idle"


async def test_rollback_deletes_the_first_run_and_what_it_wrote(api: Api) -> None:
    sdk, http = api.sdk, api.http
    tid, first = await start_slow_run(api)
    created = await double_text(api, tid, "rollback")
    assert created.status_code == 200
    second = created.json()
    assert await until_status(api, tid, first, None) is None
    assert (await http.get(f"/threads/{tid}/runs/{first}")).status_code == 404

    final = await sdk.runs.join(tid, second["run_id"])
    assert contents(final) == ["second", answer("second")]
    assert [r["run_id"] for r in await sdk.runs.list(tid)] == [second["run_id"]]
    history = await sdk.threads.get_history(tid, limit=20)
    assert {h["metadata"]["run_id"] for h in history} == {second["run_id"]}
    assert [h["metadata"]["step"] for h in history][-1] == -1  # starts from scratch
    thread = await sdk.threads.get(tid)
    assert thread["status"] == "idle" and contents(thread["values"]) == contents(final)
