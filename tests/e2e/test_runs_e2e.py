"""Runs through the official SDK on the Serve stack (Postgres): background runs and their
lifecycle, joins, lists, deletes, cancels (one, many, by status; interrupt and rollback),
batches, stateless runs, ``if_not_exists``, ``after_seconds`` and run metadata."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest
from langgraph_sdk.errors import NotFoundError, UnprocessableEntityError

from agent_runtime.protocol.agent_protocol import default_assistant_id
from tests.e2e.support import (
    MISSING,
    Api,
    contents,
    eventually,
    msg,
    until_in_node,
    until_status,
)

pytestmark = pytest.mark.e2e

SLOW = "slow [delay:1000]"  # the memory graph makes one model call: about 1 s
NOT_CANCELLABLE = (
    "No matching runs to cancel. Please verify the thread ID and run IDs are correct, and "
    "the runs haven't been deleted or completed."
)


def when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


async def test_background_run_lifecycle(api: Api) -> None:
    sdk, http = api.sdk, api.http
    tid = (await sdk.threads.create(metadata={"owner": "me"}))["thread_id"]
    created = await http.post(
        f"/threads/{tid}/runs",
        json={
            "assistant_id": "memory",
            "input": msg(SLOW),
            "metadata": {"purpose": "e2e"},
            "config": {"tags": ["x"]},
        },
    )
    assert created.status_code == 200
    run = created.json()
    rid = run["run_id"]
    assert created.headers["content-location"] == f"/threads/{tid}/runs/{rid}"
    assert "location" not in created.headers
    assert run["status"] in ("pending", "running") and run["thread_id"] == tid
    assert run["assistant_id"] == default_assistant_id("memory")
    assert run["multitask_strategy"] == "enqueue"
    assert run["metadata"]["purpose"] == "e2e"
    assert run["metadata"]["assistant_id"] == run["assistant_id"]
    assert run["kwargs"]["stream_mode"] == ["values"]  # always a list
    assert run["kwargs"]["input"] == msg(SLOW)
    assert run["kwargs"]["config"]["tags"] == ["x"]
    assert (await sdk.threads.get(tid))["status"] == "busy"

    # join blocks until the end and answers the final values.
    values = await sdk.runs.join(tid, rid)
    assert contents(values) == [SLOW, f"[fake-fast] You said: {SLOW}"]
    done = await sdk.runs.get(tid, rid)
    assert done["status"] == "success" and when(done["updated_at"]) > when(run["created_at"])
    thread = await sdk.threads.get(tid)
    assert thread["status"] == "idle"
    assert thread["metadata"] == {
        "owner": "me",
        "graph_id": "memory",
        "assistant_id": default_assistant_id("memory"),
    }
    joined = await http.get(f"/threads/{tid}/runs/{rid}/join")
    assert joined.headers["location"] == f"/threads/{tid}/runs/{rid}/join"
    assert joined.headers["content-location"] == f"/threads/{tid}/runs/{rid}"
    assert joined.json() == values

    await sdk.runs.wait(tid, "memory", input=msg("second"))
    listed = await sdk.runs.list(tid)
    assert [r["run_id"] for r in listed][1] == rid  # newest first
    assert [r["run_id"] for r in await sdk.runs.list(tid, limit=1, offset=1)] == [rid]
    assert len(await sdk.runs.list(tid, status="success")) == 2
    assert await sdk.runs.list(tid, status="error") == []

    latest = listed[0]["run_id"]
    assert (await http.delete(f"/threads/{tid}/runs/{latest}")).status_code == 204
    with pytest.raises(NotFoundError):
        await sdk.runs.get(tid, latest)
    again = await http.delete(f"/threads/{tid}/runs/{latest}")
    assert again.status_code == 404
    # Deleting a run drops what it wrote: the thread is back at the first run's end.
    assert contents((await sdk.threads.get_state(tid))["values"]) == contents(values)
    assert (await sdk.threads.get(tid))["values"] == (await sdk.threads.get_state(tid))["values"]
    assert [r["run_id"] for r in await sdk.runs.list(tid)] == [rid]


async def test_cancel_with_wait_then_rollback(api: Api) -> None:
    sdk, http = api.sdk, api.http
    tid = (await sdk.threads.create())["thread_id"]
    await sdk.runs.wait(tid, "memory", input=msg("before"))
    before = await sdk.threads.get_state(tid)

    first = await sdk.runs.create(tid, "memory", input=msg(SLOW))
    await until_in_node(api, tid, "respond")
    cancelled = await http.post(f"/threads/{tid}/runs/{first['run_id']}/cancel", params={"wait": 1})
    assert cancelled.status_code == 200
    assert cancelled.headers["location"] == f"/threads/{tid}/runs/{first['run_id']}/join"
    # wait=1 answers once the run has stopped: with the thread's values at that point.
    assert contents(cancelled.json())[-1] == SLOW
    assert (await sdk.runs.get(tid, first["run_id"]))["status"] == "interrupted"
    thread = await sdk.threads.get(tid)
    assert thread["status"] == "interrupted"  # "respond" was cut short
    assert (await sdk.threads.get_state(tid))["next"] == ["respond"]
    twice = await http.post(f"/threads/{tid}/runs/{first['run_id']}/cancel")
    assert (twice.status_code, twice.json()["detail"]) == (404, NOT_CANCELLABLE)
    # A run without input continues the interrupted one.
    resumed = await sdk.runs.wait(tid, "memory", input=None)
    assert contents(resumed)[-1] == f"[fake-fast] You said: {SLOW}"

    second = await sdk.runs.create(tid, "memory", input=msg(SLOW + " again"))
    await until_in_node(api, tid, "respond")
    await sdk.runs.cancel(tid, second["run_id"], action="rollback")
    assert await until_status(api, tid, second["run_id"], None) is None
    kept = await eventually(lambda: sdk.threads.get(tid), lambda t: t["status"] != "busy")
    assert kept["status"] == "idle"
    after = await sdk.threads.get_state(tid)
    assert after["checkpoint"] != before["checkpoint"]
    assert contents(after["values"])[-1] == f"[fake-fast] You said: {SLOW}"
    assert second["run_id"] not in {r["run_id"] for r in await sdk.runs.list(tid)}

    # SDK cancel with wait=True, on a run queued behind another.
    third = await sdk.runs.create(tid, "memory", input=msg(SLOW))
    queued = await sdk.runs.create(tid, "memory", input=msg("queued"))
    assert queued["status"] == "pending"
    await sdk.runs.cancel(tid, queued["run_id"], wait=True)
    assert (await sdk.runs.get(tid, queued["run_id"]))["status"] == "interrupted"
    await sdk.runs.join(tid, third["run_id"])
    assert "queued" not in contents((await sdk.threads.get_state(tid))["values"])


async def test_delete_an_active_run_rolls_it_back(api: Api) -> None:
    sdk, http = api.sdk, api.http
    tid = (await sdk.threads.create())["thread_id"]
    run = await sdk.runs.create(tid, "memory", input=msg(SLOW))
    await until_in_node(api, tid, "respond")
    assert (await http.delete(f"/threads/{tid}/runs/{run['run_id']}")).status_code == 204
    assert await until_status(api, tid, run["run_id"], None) is None
    thread = await eventually(lambda: sdk.threads.get(tid), lambda t: t["status"] != "busy")
    assert thread["status"] == "idle" and contents(thread["values"]) == []
    assert await sdk.threads.get_history(tid) == []


async def test_cancel_many_by_ids_and_by_status(api: Api) -> None:
    sdk, http = api.sdk, api.http
    tid = (await sdk.threads.create())["thread_id"]
    running = await sdk.runs.create(tid, "memory", input=msg(SLOW))
    queued = await sdk.runs.create(tid, "memory", input=msg("next"))
    await until_in_node(api, tid, "respond")
    await sdk.runs.cancel_many(thread_id=tid, run_ids=[running["run_id"], queued["run_id"]])
    await until_status(api, tid, running["run_id"], "interrupted")
    assert await until_status(api, tid, queued["run_id"], "interrupted") == "interrupted"
    assert (await sdk.threads.get(tid))["status"] == "interrupted"
    gone = await http.post("/runs/cancel", json={"thread_id": tid, "run_ids": [running["run_id"]]})
    assert (gone.status_code, gone.json()["detail"]) == (404, NOT_CANCELLABLE)

    # By status, across the tenant's threads.
    busy_tid = (await sdk.threads.create())["thread_id"]
    busy = await sdk.runs.create(busy_tid, "memory", input=msg(SLOW))
    later_tid = (await sdk.threads.create())["thread_id"]
    later = await sdk.runs.create(later_tid, "memory", input=msg("later"), after_seconds=60)
    await sdk.runs.cancel_many(status="pending")
    assert await run_of(api, later_tid, later["run_id"]) == "interrupted"
    assert await run_of(api, busy_tid, busy["run_id"]) == "running"
    assert (await sdk.threads.get(later_tid))["status"] == "idle"  # nothing else in flight
    await sdk.runs.cancel_many(status="running", action="interrupt")
    await until_status(api, busy_tid, busy["run_id"], "interrupted")
    # Nothing left in flight: by status that is not an error.
    assert (await http.post("/runs/cancel", json={"status": "all"})).status_code == 204

    for body in ({"thread_id": tid}, {"run_ids": [running["run_id"]]}, {}):
        response = await http.post("/runs/cancel", json=body)
        assert response.status_code == 422, body
    both = await http.post("/runs/cancel", json={"status": "all", "thread_id": tid})
    assert both.status_code == 422 and "must be omitted" in both.json()["detail"]
    bad = await http.post("/runs/cancel", json={"status": "bogus"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "status"


async def run_of(api: Api, thread_id: str, run_id: str) -> str:
    return (await api.sdk.runs.get(thread_id, run_id))["status"]


async def test_stateless_runs_and_batches(api: Api) -> None:
    sdk, http = api.sdk, api.http
    waited = await http.post("/runs/wait", json={"assistant_id": "memory", "input": msg("hi")})
    assert waited.status_code == 200
    assert contents(waited.json()) == ["hi", "[fake-fast] You said: hi"]
    # As on Platform, the headers name the run under its temporary thread.
    where = waited.headers["content-location"]
    assert where.startswith("/threads/") and "/runs/" in where
    assert waited.headers["location"] == f"{where}/join"
    # One request id, not Serve's and ours: "id, id".
    assert "," not in waited.headers["x-request-id"]
    streamed = [p async for p in sdk.runs.stream(None, "memory", input=msg("hey"))]
    assert [p.event for p in streamed] == ["metadata", "values", "values"]
    assert contents(streamed[-1].data)[-1] == "[fake-fast] You said: hey"

    # Background: the temporary thread goes with the run unless asked to keep it.
    dropped = await sdk.runs.create(None, "memory", input=msg("drop"))
    kept = await sdk.runs.create(None, "memory", input=msg("keep"), on_completion="keep")
    assert dropped["thread_id"] and dropped["kwargs"]["temporary"] is True
    await eventually(
        lambda: http.get(f"/threads/{dropped['thread_id']}"), lambda r: r.status_code == 404
    )
    assert await run_status_gone(api, dropped)
    await until_status(api, kept["thread_id"], kept["run_id"], "success")
    thread = await sdk.threads.get(kept["thread_id"])
    assert thread["status"] == "idle" and contents(thread["values"])[-1].endswith("keep")
    assert [r["run_id"] for r in await sdk.runs.list(kept["thread_id"])] == [kept["run_id"]]

    batch = await sdk.runs.create_batch(
        [
            {"assistant_id": "memory", "input": msg("b1"), "on_completion": "keep"},
            {"assistant_id": "react", "input": msg("what is 6 * 7?"), "on_completion": "keep"},
        ]
    )
    assert len(batch) == 2 and batch[0]["thread_id"] != batch[1]["thread_id"]
    for run in batch:
        await until_status(api, run["thread_id"], run["run_id"], "success")
    answer = await sdk.threads.get(batch[1]["thread_id"])
    assert [m["type"] for m in answer["values"]["messages"]] == ["human", "ai", "tool", "ai"]
    assert answer["values"]["messages"][2]["content"] == "42"
    assert await sdk.runs.create_batch([]) == []
    not_a_list = await http.post("/runs/batch", json={"assistant_id": "memory"})
    assert not_a_list.status_code == 422
    unknown = await http.post("/runs/batch", json=[{"assistant_id": "nope"}])
    assert unknown.status_code == 422 and "Invalid assistant: 'nope'" in unknown.json()["detail"]
    resume = await http.post(
        "/runs/wait", json={"assistant_id": "memory", "command": {"resume": 1}}
    )
    assert resume.status_code == 400
    assert resume.json()["detail"] == "You must provide a thread_id when resuming."


async def run_status_gone(api: Api, run: dict[str, str]) -> bool:
    response = await api.http.get(f"/threads/{run['thread_id']}/runs/{run['run_id']}")
    return response.status_code == 404


async def test_if_not_exists_after_seconds_and_metadata(api: Api) -> None:
    sdk, http = api.sdk, api.http
    new_id = str(uuid.uuid4())
    own = await http.post(f"/threads/{MISSING}/runs", json={"assistant_id": "memory"})
    assert (own.status_code, own.json()["detail"]) == (404, "Thread or assistant not found.")
    with pytest.raises(NotFoundError):
        await sdk.runs.create(MISSING, "memory", input=msg("x"))
    created = await sdk.runs.wait(new_id, "memory", input=msg("made"), if_not_exists="create")
    assert contents(created)[0] == "made"
    thread = await sdk.threads.get(new_id)
    assert thread["metadata"] == {
        "graph_id": "memory",
        "assistant_id": default_assistant_id("memory"),
    }

    start = dt.datetime.now(dt.UTC)
    delayed = await sdk.runs.create(new_id, "memory", input=msg("delayed"), after_seconds=1)
    assert delayed["status"] == "pending"
    # As on the Platform, a delayed run is "created" when it becomes due.
    assert when(delayed["created_at"]) >= start + dt.timedelta(seconds=0.9)
    assert (await sdk.threads.get(new_id))["status"] == "busy"
    await asyncio.sleep(0.3)
    assert (await sdk.runs.get(new_id, delayed["run_id"]))["status"] == "pending"
    await until_status(api, new_id, delayed["run_id"], "success")
    assert dt.datetime.now(dt.UTC) >= start + dt.timedelta(seconds=1)
    assert contents((await sdk.threads.get_state(new_id))["values"])[-2] == "delayed"

    assistant = await sdk.assistants.create("memory", metadata={"team": "a"})
    run = await sdk.runs.create(
        new_id,
        assistant["assistant_id"],
        input=msg("tagged"),
        metadata={"request": 1},
        config={"metadata": {"from_config": True}},
    )
    await sdk.runs.join(new_id, run["run_id"])
    stored = await sdk.runs.get(new_id, run["run_id"])
    assert stored["metadata"] == {
        "team": "a",
        "from_config": True,
        "request": 1,
        "assistant_id": assistant["assistant_id"],
    }
    for body, field in [
        ({"assistant_id": "memory", "after_seconds": "x"}, "after_seconds"),
        ({"assistant_id": "memory", "if_not_exists": "bogus"}, "if_not_exists"),
        ({"assistant_id": "memory", "metadata": 5}, "metadata"),
        ({"assistant_id": "memory", "config": {"configurable": 5}}, "config.configurable"),
        ({"input": msg("no assistant")}, "assistant_id"),
    ]:
        response = await http.post(f"/threads/{new_id}/runs", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["errors"][0]["field"] == field
    with pytest.raises(UnprocessableEntityError):
        await sdk.runs.create(new_id, "nope", input=msg("x"))


async def test_failed_run_records_the_error(api: Api) -> None:
    sdk, http = api.sdk, api.http
    tid = (await sdk.threads.create())["thread_id"]
    # The graph rejects a string as its state update: a graph error, not a request error.
    failed = await http.post(
        f"/threads/{tid}/runs/wait", json={"assistant_id": "memory", "input": "not a dict"}
    )
    assert failed.status_code == 200
    error = failed.json()["__error__"]
    assert error["error"] == "InvalidUpdateError" and "Expected dict" in error["message"]
    run = (await sdk.runs.list(tid))[0]
    assert run["status"] == "error"
    assert (await sdk.threads.get(tid))["status"] == "error"
    with pytest.raises(Exception, match="InvalidUpdateError"):
        await sdk.runs.wait(tid, "memory", input="still not a dict")
    joined = await sdk.runs.join(tid, run["run_id"])
    assert joined["__error__"]["error"] == "InvalidUpdateError"
    # The thread recovers with the next good run.
    await sdk.runs.wait(tid, "memory", input=msg("fine"))
    assert (await sdk.threads.get(tid))["status"] == "idle"
