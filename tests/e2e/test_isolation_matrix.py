"""Tenant isolation of every endpoint, and bad input on every endpoint, on the Serve stack.

Tenant B's key on tenant A's assistant, thread, run, checkpoint and store item ids must
answer 404 (lists, searches and counts: only B's own rows) and change nothing of A's;
creating a thread with A's id makes B a thread of its own, as for any unused id.
Bad input must be a 4xx naming the problem: unknown ids 404, conflicts 409, invalid bodies
422 naming the field; never a 500.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.e2e.support import MISSING, Api, msg, until_in_node, until_status

pytestmark = pytest.mark.e2e

Request = tuple[str, str, Any]  # method, path, JSON body (None: no body)


async def snapshot(a: Api, aid: str, tid: str, slow_tid: str) -> dict[str, Any]:
    """Everything of A's that B's requests could have touched."""
    sdk = a.sdk
    return {
        "assistant": await sdk.assistants.get(aid),
        "versions": await sdk.assistants.get_versions(aid),
        "thread": await sdk.threads.get(tid),
        "state": await sdk.threads.get_state(tid),
        "history": len(await sdk.threads.get_history(tid, limit=100)),
        "runs": [(r["run_id"], r["status"]) for r in await sdk.runs.list(tid)],
        "slow runs": [r["run_id"] for r in await sdk.runs.list(slow_tid)],
        "item": await sdk.store.get_item(["docs"], "k"),
        "namespaces": await sdk.store.list_namespaces(),
        "threads": await sdk.threads.count(),
        "assistants": await sdk.assistants.count(),
    }


async def test_tenant_b_cannot_see_or_change_tenant_a(
    make_api: Callable[[], Awaitable[Api]],
) -> None:
    a, b = await make_api(), await make_api()
    assistant = await a.sdk.assistants.create("memory", name="A's", metadata={"owner": "a"})
    aid = assistant["assistant_id"]
    tid = (await a.sdk.threads.create(metadata={"owner": "a"}))["thread_id"]
    await a.sdk.runs.wait(tid, aid, input=msg("hello"))
    rid = (await a.sdk.runs.list(tid))[0]["run_id"]
    cp = (await a.sdk.threads.get_state(tid))["checkpoint"]["checkpoint_id"]
    await a.sdk.store.put_item(["docs"], "k", {"v": 1})
    slow_tid = (await a.sdk.threads.create())["thread_id"]
    slow = await a.sdk.runs.create(slow_tid, "memory", input=msg("slow [delay:1500]"))
    sid = slow["run_id"]
    await until_in_node(a, slow_tid, "respond")
    before = await snapshot(a, aid, tid, slow_tid)

    run_body = {"assistant_id": "memory", "input": msg("x")}
    not_found: list[Request] = [
        # assistants
        ("GET", f"/assistants/{aid}", None),
        ("PATCH", f"/assistants/{aid}", {"name": "taken"}),
        ("DELETE", f"/assistants/{aid}", None),
        ("POST", f"/assistants/{aid}/versions", {}),
        ("POST", f"/assistants/{aid}/latest", {"version": 1}),
        ("GET", f"/assistants/{aid}/graph", None),
        ("GET", f"/assistants/{aid}/schemas", None),
        ("GET", f"/assistants/{aid}/subgraphs", None),
        ("POST", "/runs/wait", {"assistant_id": aid, "input": msg("x")}),
        ("POST", "/runs", {"assistant_id": aid, "input": msg("x")}),
        # threads
        ("GET", f"/threads/{tid}", None),
        ("PATCH", f"/threads/{tid}", {"metadata": {"taken": True}}),
        ("DELETE", f"/threads/{tid}", None),
        ("POST", f"/threads/{tid}/copy", None),
        ("GET", f"/threads/{tid}/state", None),
        ("GET", f"/threads/{tid}/state/{cp}", None),
        ("POST", f"/threads/{tid}/state/checkpoint", {"checkpoint": {"checkpoint_id": cp}}),
        ("POST", f"/threads/{tid}/state", {"values": {"recalled": ["taken"]}}),
        ("GET", f"/threads/{tid}/history", None),
        ("POST", f"/threads/{tid}/history", {"limit": 10}),
        # runs
        ("POST", f"/threads/{tid}/runs", run_body),
        ("POST", f"/threads/{tid}/runs/wait", run_body),
        ("POST", f"/threads/{tid}/runs/stream", run_body),
        ("POST", f"/threads/{slow_tid}/runs", {**run_body, "multitask_strategy": "interrupt"}),
        ("GET", f"/threads/{tid}/runs", None),
        ("GET", f"/threads/{tid}/runs/{rid}", None),
        ("GET", f"/threads/{tid}/runs/{rid}/join", None),
        ("GET", f"/threads/{slow_tid}/runs/{sid}/stream", None),
        ("POST", f"/threads/{slow_tid}/runs/{sid}/cancel", None),
        ("POST", f"/threads/{slow_tid}/runs/{sid}/cancel?action=rollback&wait=1", None),
        ("POST", "/runs/cancel", {"thread_id": slow_tid, "run_ids": [sid]}),
        ("DELETE", f"/threads/{tid}/runs/{rid}", None),
        ("DELETE", f"/threads/{slow_tid}/runs/{sid}", None),
    ]
    for method, path, body in not_found:
        response = await b.http.request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.status_code, response.text)

    # Lists, searches and counts: B sees only its own (here: nothing but its defaults).
    expected: list[tuple[Request, int, Any]] = [
        (("POST", "/threads/search", {"ids": [tid, slow_tid]}), 200, []),
        (("POST", "/threads/search", {"metadata": {"owner": "a"}}), 200, []),
        (("POST", "/threads/count", {}), 200, 0),
        (("POST", "/threads/prune", {"thread_ids": [tid]}), 200, {"pruned_count": 0}),
        (("POST", "/assistants/count", {"metadata": {"owner": "a"}}), 200, 0),
        (("POST", "/assistants/count", {}), 200, 4),
        (("POST", "/runs/cancel", {"status": "all"}), 204, None),
        (("GET", "/store/items?namespace=docs&key=k", None), 200, None),
        (("POST", "/store/items/search", {"namespace_prefix": []}), 200, {"items": []}),
        (("POST", "/store/namespaces", {"prefix": ["*"]}), 200, {"namespaces": []}),
        (("DELETE", "/store/items", {"namespace": ["docs"], "key": "k"}), 204, None),
    ]
    for (method, path, body), status, answer in expected:
        response = await b.http.request(method, path, json=body)
        assert response.status_code == status, (method, path, response.text)
        if status == 200:
            assert response.json() == answer, (method, path)
    searched = await b.sdk.assistants.search(limit=100)
    assert aid not in {s["assistant_id"] for s in searched} and len(searched) == 4

    # Ids are per tenant: A's thread id is a free id for B, answered as an unused one (a
    # 409 would tell B it exists), and B's thread there is its own, empty one; the same
    # for assistant ids.
    free = str(uuid.uuid4())
    answers = []
    for thread_id in (tid, free):
        made = await b.http.post("/threads", json={"thread_id": thread_id, "metadata": {"b": 1}})
        assert made.status_code == 200, made.text
        again = await b.http.post(
            "/threads", json={"thread_id": thread_id, "if_exists": "do_nothing"}
        )
        assert again.json() == made.json()
        answers.append({k: v for k, v in made.json().items() if not k.endswith(("_at", "_id"))})
    assert answers[0] == answers[1]
    assert (await b.sdk.threads.get_state(tid))["values"] == {}
    ran = await b.http.post(f"/threads/{tid}/runs/wait", json=run_body)
    assert ran.status_code == 200, ran.text
    assert len(await b.sdk.runs.list(tid)) == 1
    created = await b.http.post(
        f"/threads/{slow_tid}/runs/wait", json={**run_body, "if_not_exists": "create"}
    )
    assert created.status_code == 200, created.text
    for thread_id in (tid, free, slow_tid):
        await b.sdk.threads.delete(thread_id)
    own = await b.sdk.assistants.create("react", assistant_id=aid, if_exists="do_nothing")
    assert (own["assistant_id"], own["graph_id"], own["name"]) == (aid, "react", "Untitled")
    await b.sdk.assistants.delete(aid)

    # Nothing of A's changed; A's slow run was neither cancelled nor rolled back.
    assert await until_status(a, slow_tid, sid, "success", "interrupted") == "success"
    after = await snapshot(a, aid, tid, slow_tid)
    assert after == before
    assert (await a.sdk.assistants.get(aid))["name"] == "A's"


async def test_bad_input_is_never_a_500(api: Api) -> None:
    sdk, http = api.sdk, api.http
    tid = (await sdk.threads.create())["thread_id"]
    await sdk.runs.wait(tid, "memory", input=msg("hi"))
    rid = (await sdk.runs.list(tid))[0]["run_id"]
    run = {"assistant_id": "memory"}
    item = {"namespace": ["x"], "key": "k", "value": {}}
    runs = f"/threads/{tid}/runs"
    # (method, path, body, status, field named by a 422 or text in the detail)
    cases: list[tuple[str, str, Any, int, str]] = [
        # unknown ids
        ("GET", f"/threads/{MISSING}", None, 404, f"Thread with ID {MISSING} not found"),
        ("GET", f"/threads/{MISSING}/state", None, 404, "not found"),
        ("POST", f"/threads/{MISSING}/history", {}, 404, "not found"),
        ("POST", f"/threads/{MISSING}/runs", run, 404, "Thread or assistant not found."),
        ("POST", f"/threads/{MISSING}/runs/wait", run, 404, "Thread or assistant not found."),
        ("GET", f"/threads/{MISSING}/runs", None, 404, "not found"),
        ("GET", f"/threads/{tid}/runs/{MISSING}", None, 404, "not found"),
        ("GET", f"/threads/{tid}/runs/{MISSING}/join", None, 404, "not found"),
        ("GET", f"/threads/{tid}/runs/{MISSING}/stream", None, 404, "not found"),
        ("POST", f"/threads/{tid}/runs/{MISSING}/cancel", None, 404, "No matching runs"),
        ("DELETE", f"/threads/{tid}/runs/{MISSING}", None, 404, "not found"),
        ("GET", f"/threads/{MISSING}/runs/{rid}", None, 404, "not found"),
        ("POST", "/runs", {"assistant_id": MISSING}, 404, "not found"),
        ("POST", f"/threads/{tid}/runs", {"assistant_id": MISSING}, 404, "not found"),
        # conflicts
        ("POST", "/threads", {"thread_id": tid}, 409, "already exists"),
        ("POST", f"/threads/{tid}/runs/{rid}/cancel", None, 404, "No matching runs"),
        # invalid ids and bodies
        ("GET", "/threads/nope", None, 422, "Invalid thread ID: must be a UUID"),
        ("GET", f"/threads/{tid}/runs/nope", None, 422, "Invalid run ID: must be a UUID"),
        ("POST", "/threads/nope/runs", run, 422, "Invalid thread ID: must be a UUID"),
        ("POST", f"/threads/{tid}/runs", {"assistant_id": "nope"}, 422, "Invalid assistant"),
        ("POST", f"/threads/{tid}/runs", {"assistant_id": 5}, 422, "assistant_id"),
        ("POST", f"/threads/{tid}/runs", {**run, "stream_mode": "bogus"}, 422, "stream_mode"),
        ("POST", f"/threads/{tid}/runs", {**run, "stream_mode": ["tools"]}, 422, "stream_mode"),
        ("POST", runs, {**run, "multitask_strategy": "x"}, 422, "multitask_strategy"),
        ("POST", f"/threads/{tid}/runs", {**run, "interrupt_before": 5}, 422, "interrupt_before"),
        ("POST", f"/threads/{tid}/runs", {**run, "command": {"goto": 5}}, 422, "command.goto"),
        ("POST", f"/threads/{tid}/runs", {**run, "config": {"tags": "x"}}, 422, "config.tags"),
        ("POST", f"/threads/{tid}/runs/wait", {**run, "config": 5}, 422, "config"),
        ("POST", "/runs/batch", [{"input": {}}], 422, "0.assistant_id"),
        ("GET", f"/threads/{tid}/runs?status=bogus", None, 422, "status"),
        ("GET", f"/threads/{tid}/runs?limit=0", None, 422, "limit"),
        ("GET", f"/threads/{tid}/runs/{rid}/stream?stream_mode=bogus", None, 422, "stream_mode"),
        ("POST", f"/threads/{tid}/history", {"before": 5}, 422, "before"),
        ("POST", f"/threads/{tid}/history", {"metadata": 5}, 422, "metadata"),
        ("POST", f"/threads/{tid}/state", {"values": 5}, 422, "values"),
        ("POST", f"/threads/{tid}/state", {"values": {"messages": 5}}, 400, "Unsupported"),
        ("POST", f"/threads/{tid}/state", {"values": {}, "as_node": "nope"}, 400, "nope"),
        ("POST", f"/threads/{tid}/state/checkpoint", {}, 422, "checkpoint"),
        ("PATCH", f"/threads/{tid}", {"metadata": 5}, 422, "metadata"),
        ("PATCH", f"/threads/{tid}", {"ttl": {"ttl": -1}}, 422, "ttl"),
        ("POST", "/threads", {"supersteps": [{"updates": [5]}]}, 422, "supersteps.0.updates.0"),
        ("POST", "/threads", {"supersteps": [{"updates": [{}]}]}, 422, "supersteps.0.updates.0"),
        ("POST", "/threads/count", {"status": "bogus"}, 422, "status"),
        ("POST", "/threads/prune", {"thread_ids": ["nope"]}, 422, "Invalid thread ID"),
        ("POST", "/assistants", {"graph_id": "memory", "assistant_id": "nope"}, 422, "UUID"),
        ("POST", "/assistants", {"graph_id": "react", "config": {"tags": "x"}}, 422, "config.tags"),
        ("POST", "/assistants/search", {"metadata": 5}, 422, "metadata"),
        ("POST", "/assistants/memory/versions", {"limit": 0}, 422, "limit"),
        ("POST", f"/assistants/{MISSING}/latest", {"version": "x"}, 422, "version"),
        ("GET", "/assistants/memory/graph?xray=-1", None, 422, "Invalid xray value"),
        ("PUT", "/store/items", {**item, "ttl": "x"}, 422, "ttl"),
        ("PUT", "/store/items", {**item, "index": 5}, 422, "index"),
        ("POST", "/store/items/search", {"filter": {"a": {"$bogus": 1}}}, 422, "filter"),
        ("POST", "/store/namespaces", {"max_depth": -1}, 422, "max_depth"),
        ("DELETE", "/store/items", {"namespace": ["x"]}, 422, "key"),
        ("POST", "/runs/cancel", {"status": "bogus"}, 422, "status"),
    ]  # fmt: skip
    for method, path, body, status, named in cases:
        response = await http.request(method, path, json=body)
        assert response.status_code == status, (method, path, body, response.text)
        detail = response.json()
        assert isinstance(detail["detail"], str)
        if status == 422 and "errors" in detail:
            fields = [e["field"] for e in detail["errors"]]
            assert any(f == named or f.startswith(named + ".") for f in fields), (path, detail)
        else:
            assert named in detail["detail"], (path, body, detail)
    garbled = await http.post(f"/threads/{tid}/runs", content=b"{not json")
    assert garbled.status_code == 422
    unknown_route = await http.get("/no/such/route")
    assert unknown_route.status_code == 404
    wrong_method = await http.put("/threads")
    assert wrong_method.status_code == 405
