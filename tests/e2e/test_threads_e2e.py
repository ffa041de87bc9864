"""Threads through the official SDK on the Serve stack (Postgres): rows, search, state,
history, state updates, copies, pruning, TTLs and deletes."""

from __future__ import annotations

import uuid

import pytest
from langgraph_sdk.errors import BadRequestError, ConflictError, NotFoundError

from tests.e2e.support import MISSING, Api, contents, msg, until_in_node, until_status

pytestmark = pytest.mark.e2e

THREAD_KEYS = [
    "thread_id", "created_at", "updated_at", "state_updated_at", "metadata", "status",
    "config", "values", "interrupts",
]  # fmt: skip


async def test_create_get_patch_delete(api: Api) -> None:
    sdk, http = api.sdk, api.http
    thread = await sdk.threads.create(metadata={"user": "alice", "nested": {"a": 1}})
    tid = thread["thread_id"]
    assert list(thread) == THREAD_KEYS
    assert (thread["status"], thread["values"], thread["interrupts"]) == ("idle", None, {})
    assert await sdk.threads.get(tid) == thread

    with pytest.raises(ConflictError) as duplicate:
        await sdk.threads.create(thread_id=tid)
    assert duplicate.value.response.json()["detail"] == f"Thread with ID {tid} already exists"
    same = await sdk.threads.create(thread_id=tid, if_exists="do_nothing", metadata={"x": 1})
    assert same["metadata"] == {"user": "alice", "nested": {"a": 1}}
    mine = str(uuid.uuid4())
    assert (await sdk.threads.create(thread_id=mine))["thread_id"] == mine

    patched = await sdk.threads.update(tid, metadata={"nested": {"b": 2}, "gone": None})
    # Shallow merge; a null is stored, not a delete.
    assert patched["metadata"] == {"user": "alice", "nested": {"b": 2}, "gone": None}
    assert patched["updated_at"] > thread["updated_at"]
    minimal = await http.patch(
        f"/threads/{tid}", json={"metadata": {"m": 1}}, headers={"Prefer": "return=minimal"}
    )
    assert (minimal.status_code, minimal.content) == (204, b"")
    assert (await sdk.threads.get(tid))["metadata"]["m"] == 1

    deleted = await http.delete(f"/threads/{tid}")
    assert (deleted.status_code, deleted.content) == (204, b"")
    for method in ("GET", "DELETE", "PATCH"):
        response = await http.request(
            method, f"/threads/{tid}", json={} if method == "PATCH" else None
        )
        assert response.status_code == 404
        assert response.json()["detail"] == f"Thread with ID {tid} not found"
    bad = await http.post("/threads", json={"thread_id": "not-a-uuid"})
    assert (bad.status_code, bad.json()["detail"]) == (422, "Invalid thread ID: must be a UUID")
    for body, field in [({"metadata": 5}, "metadata"), ({"if_exists": "x"}, "if_exists")]:
        response = await http.post("/threads", json=body)
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == field
    garbled = await http.post("/threads", content=b"{not json")
    assert garbled.status_code == 422


async def test_search_and_count(api: Api) -> None:
    sdk, http = api.sdk, api.http
    first = await sdk.threads.create(metadata={"team": "red", "n": 1})
    second = await sdk.threads.create(metadata={"team": "blue", "n": 2})
    await sdk.runs.wait(second["thread_id"], "memory", input=msg("hello"))
    fresh = await sdk.threads.create(metadata={"team": "red", "n": 3})
    ids = [t["thread_id"] for t in (first, second, fresh)]

    # Default order: most recently updated first.
    assert [t["thread_id"] for t in await sdk.threads.search()] == [ids[2], ids[1], ids[0]]
    by_created = await sdk.threads.search(sort_by="created_at", sort_order="asc")
    assert [t["thread_id"] for t in by_created] == ids
    red = await sdk.threads.search(metadata={"team": "red"})
    assert {t["thread_id"] for t in red} == {ids[0], ids[2]}
    assert [t["thread_id"] for t in await sdk.threads.search(ids=[ids[1]])] == [ids[1]]
    with_values = await sdk.threads.search(values={"recalled": []})
    assert [t["thread_id"] for t in with_values] == [ids[1]]
    assert with_values[0]["values"]["messages"][0]["content"] == "hello"
    selected = await sdk.threads.search(select=["thread_id", "status"], limit=1)
    assert selected == [{"thread_id": ids[2], "status": "idle"}]

    assert await sdk.threads.count() == 3
    assert await sdk.threads.count(metadata={"team": "red"}) == 2
    assert await sdk.threads.count(status="idle") == 3
    assert await sdk.threads.count(status="busy") == 0
    assert await sdk.threads.count(values={"recalled": []}) == 1

    page = await http.post("/threads/search", json={"limit": 2})
    assert (page.headers["x-pagination-total"], page.headers["x-pagination-next"]) == ("3", "2")
    rest = await http.post("/threads/search", json={"limit": 2, "offset": 2})
    assert len(rest.json()) == 1 and "x-pagination-next" not in rest.headers
    for body, field in [
        ({"limit": -1}, "limit"),
        ({"sort_by": "bogus"}, "sort_by"),
        ({"status": "bogus"}, "status"),
        ({"select": ["bogus"]}, "select.0"),
    ]:
        response = await http.post("/threads/search", json=body)
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == field
    bad_ids = await http.post("/threads/search", json={"ids": ["nope"]})
    assert bad_ids.status_code == 422


async def test_state_and_history(api: Api) -> None:
    sdk, http = api.sdk, api.http
    fresh = await sdk.threads.create()
    empty = await sdk.threads.get_state(fresh["thread_id"])
    assert (empty["values"], empty["next"], empty["tasks"], empty["checkpoint_id"]) == (
        {},
        [],
        [],
        None,
    )
    assert await sdk.threads.get_history(fresh["thread_id"]) == []

    tid = (await sdk.threads.create())["thread_id"]
    await sdk.runs.wait(tid, "memory", input=msg("one"))
    after_one = await sdk.threads.get_state(tid)
    await sdk.runs.wait(tid, "memory", input=msg("two"))
    state = await sdk.threads.get_state(tid)
    assert contents(state["values"]) == [
        "one", "[fake-fast] You said: one", "two", "[fake-fast] You said: two",
    ]  # fmt: skip
    assert state["next"] == [] and state["interrupts"] == []
    assert state["metadata"]["step"] == 6 and state["metadata"]["source"] == "loop"
    assert state["checkpoint"]["thread_id"] == tid
    assert state["parent_checkpoint"]["checkpoint_id"] == state["parent_checkpoint_id"]
    assert (await sdk.threads.get(tid))["values"] == state["values"]

    history = await sdk.threads.get_history(tid)
    assert [h["metadata"]["step"] for h in history] == [6, 5, 4, 3, 2, 1, 0, -1]
    assert history[0]["checkpoint"] == state["checkpoint"]
    assert [h["metadata"]["step"] for h in await sdk.threads.get_history(tid, limit=2)] == [6, 5]
    loop = await sdk.threads.get_history(tid, metadata={"source": "input"})
    assert [h["metadata"]["step"] for h in loop] == [3, -1]
    older = history[4]["checkpoint"]["checkpoint_id"]
    # `before` as the SDK sends it (a string) and as the Platform's schema wants it.
    for before in (older, {"configurable": {"checkpoint_id": older}}):
        earlier = await sdk.threads.get_history(tid, before=before)
        assert [h["metadata"]["step"] for h in earlier] == [1, 0, -1]
    got = await http.get(f"/threads/{tid}/history", params={"limit": 2, "before": older})
    assert [h["metadata"]["step"] for h in got.json()] == [1, 0]

    at = await sdk.threads.get_state(tid, checkpoint_id=after_one["checkpoint"]["checkpoint_id"])
    assert contents(at["values"]) == contents(after_one["values"])
    by_config = await sdk.threads.get_state(tid, checkpoint=after_one["checkpoint"])
    assert by_config["checkpoint"] == after_one["checkpoint"]
    unknown = await http.get(f"/threads/{tid}/state/{MISSING}")
    assert unknown.status_code == 200 and unknown.json()["values"] == {}
    selected = await http.get(f"/threads/{tid}/state", params={"select": "values.messages"})
    assert list(selected.json()) == ["values"] and list(selected.json()["values"]) == ["messages"]
    bad_limit = await http.post(f"/threads/{tid}/history", json={"limit": 0})
    assert bad_limit.status_code == 422 and bad_limit.json()["errors"][0]["field"] == "limit"


async def test_update_state(api: Api) -> None:
    sdk, http = api.sdk, api.http
    tid = (await sdk.threads.create())["thread_id"]
    await sdk.runs.wait(tid, "memory", input=msg("hi"))
    update = await sdk.threads.update_state(tid, {"recalled": ["set by hand"]}, as_node="respond")
    checkpoint = update["checkpoint"]
    assert update == {
        "checkpoint": checkpoint,
        "configurable": checkpoint,
        "checkpoint_id": checkpoint["checkpoint_id"],
    }
    assert (checkpoint["thread_id"], checkpoint["checkpoint_ns"]) == (tid, "")
    state = await sdk.threads.get_state(tid)
    assert state["values"]["recalled"] == ["set by hand"]
    assert state["metadata"]["source"] == "update" and state["next"] == []
    thread = await sdk.threads.get(tid)
    assert (thread["status"], thread["values"]["recalled"]) == ("idle", ["set by hand"])
    assert thread["state_updated_at"] > thread["created_at"]

    # As if "memorize" had just run: "respond" is next, so the thread is interrupted.
    await sdk.threads.update_state(tid, {"recalled": []}, as_node="memorize")
    assert (await sdk.threads.get_state(tid))["next"] == ["respond"]
    assert (await sdk.threads.get(tid))["status"] == "interrupted"
    done = await sdk.runs.wait(tid, "memory", input=None)  # runs the pending node
    assert contents(done)[-1] == "[fake-fast] You said: hi"
    assert (await sdk.threads.get(tid))["status"] == "idle"

    # A fork from an older checkpoint.
    first = (await sdk.threads.get_history(tid))[-1]["checkpoint"]["checkpoint_id"]
    forked = await sdk.threads.update_state(tid, {"recalled": ["fork"]}, checkpoint_id=first)
    assert (await sdk.threads.get_state(tid))["parent_checkpoint"]["checkpoint_id"] == first
    assert forked["checkpoint_id"] != first

    no_graph = (await sdk.threads.create())["thread_id"]
    with pytest.raises(BadRequestError) as missing_graph:
        await sdk.threads.update_state(no_graph, {"recalled": []})
    assert "has no assigned graph ID" in missing_graph.value.response.json()["detail"]
    with_graph = await sdk.threads.create(graph_id="memory")
    assert with_graph["metadata"] == {"graph_id": "memory"}
    await sdk.threads.update_state(with_graph["thread_id"], {"recalled": ["ok"]})
    wrong_type = await http.post(f"/threads/{tid}/state", json={"values": {}, "as_node": 5})
    assert wrong_type.status_code == 422 and wrong_type.json()["errors"][0]["field"] == "as_node"
    unknown = await http.post(f"/threads/{MISSING}/state", json={"values": {}})
    assert unknown.status_code == 404

    # Busy: a state update would race the run.
    slow = await sdk.runs.create(tid, "memory", input=msg("slow [delay:1000]"))
    await until_in_node(api, tid, "respond")
    busy = await http.post(f"/threads/{tid}/state", json={"values": {"recalled": []}})
    assert busy.status_code == 409
    await sdk.runs.join(tid, slow["run_id"])


async def test_supersteps_copy_prune_and_ttl(api: Api) -> None:
    sdk, http = api.sdk, api.http
    built = await sdk.threads.create(
        graph_id="memory",
        supersteps=[
            {"updates": [{"values": msg("seeded"), "as_node": "memorize"}]},
        ],
    )
    tid = built["thread_id"]
    # "respond" is next after a memorize step: interrupted until a run continues it.
    assert built["status"] == "interrupted"
    assert contents(built["values"]) == ["seeded"]
    answered = await sdk.runs.wait(tid, "memory", input=None)
    assert contents(answered) == ["seeded", "[fake-fast] You said: seeded"]

    source_state = await sdk.threads.get_state(tid)
    copy = await sdk.threads.copy(tid)
    assert copy["thread_id"] != tid and copy["status"] == "idle"
    assert copy["metadata"] == (await sdk.threads.get(tid))["metadata"]
    copied_state = await sdk.threads.get_state(copy["thread_id"])
    assert copied_state["values"] == source_state["values"]
    assert (
        copied_state["checkpoint"]["checkpoint_id"] == source_state["checkpoint"]["checkpoint_id"]
    )
    assert await sdk.runs.list(copy["thread_id"]) == []  # runs are not copied
    history = await sdk.threads.get_history(copy["thread_id"])
    assert len(history) == len(await sdk.threads.get_history(tid))
    # The copy is a thread of its own: a run on it leaves the source alone.
    await sdk.runs.wait(copy["thread_id"], "memory", input=msg("only on the copy"))
    assert (await sdk.threads.get_state(tid))["values"] == source_state["values"]
    missing_copy = await http.post(f"/threads/{MISSING}/copy")
    assert missing_copy.status_code == 404

    kept = await sdk.threads.prune([tid], strategy="keep_latest")
    assert kept == {"pruned_count": 1}
    assert len(await sdk.threads.get_history(tid)) == 1
    assert (await sdk.threads.get_state(tid))["values"] == source_state["values"]
    assert await sdk.threads.prune([copy["thread_id"], MISSING]) == {"pruned_count": 1}
    with pytest.raises(NotFoundError):
        await sdk.threads.get(copy["thread_id"])
    assert await sdk.threads.prune([]) == {"pruned_count": 0}
    bad = await http.post("/threads/prune", json={"thread_ids": [tid], "strategy": "bogus"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "strategy"

    expiring = await sdk.threads.create(ttl={"ttl": 30, "strategy": "delete"})
    with_ttl = await http.get(f"/threads/{expiring['thread_id']}", params={"include": "ttl"})
    assert with_ttl.json()["ttl"]["strategy"] == "delete"
    assert with_ttl.json()["ttl"]["ttl_minutes"] == 30
    assert "ttl" not in (await sdk.threads.get(expiring["thread_id"]))
    bad_ttl = await http.post("/threads", json={"ttl": {"ttl": 5, "strategy": "bogus"}})
    assert bad_ttl.status_code == 422


async def test_delete_a_busy_thread(api: Api) -> None:
    sdk, http = api.sdk, api.http
    tid = (await sdk.threads.create())["thread_id"]
    run = await sdk.runs.create(tid, "memory", input=msg("slow [delay:1000]"))
    assert (await sdk.threads.get(tid))["status"] == "busy"
    deleted = await http.delete(f"/threads/{tid}")
    assert deleted.status_code == 204
    assert (await http.get(f"/threads/{tid}")).status_code == 404
    assert await until_status(api, tid, run["run_id"], None) is None
    assert (await http.get(f"/threads/{tid}/state")).status_code == 404
