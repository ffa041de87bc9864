"""The store (long-term memory) on the Serve stack (Postgres): the SDK's item and namespace
calls, the memory graph writing and reading items, and tenant scoping of both."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from graphs.memory import fact_key
from tests.e2e.support import Api, msg

pytestmark = pytest.mark.e2e


async def test_items_and_namespaces_from_the_sdk(api: Api) -> None:
    store, http = api.sdk.store, api.http
    await store.put_item(["users", "u1"], "a", {"color": "red", "n": 1})
    await store.put_item(["users", "u1"], "b", {"color": "blue", "n": 5})
    await store.put_item(["users", "u2", "prefs"], "c", {"color": "red"})
    await store.put_item(["docs"], "d", {"title": "x"})

    item = await store.get_item(["users", "u1"], "a")
    assert item is not None
    assert list(item) == ["namespace", "key", "value", "created_at", "updated_at"]
    assert (item["namespace"], item["key"], item["value"]) == (
        ["users", "u1"],
        "a",
        {"color": "red", "n": 1},
    )
    assert await store.get_item(["users", "u1"], "missing") is None
    await store.put_item(["users", "u1"], "a", {"color": "green"})
    overwritten = await store.get_item(["users", "u1"], "a")
    assert overwritten is not None and overwritten["value"] == {"color": "green"}
    assert overwritten["updated_at"] >= item["updated_at"]

    def keys(found: dict[str, list[dict[str, object]]]) -> set[object]:
        return {i["key"] for i in found["items"]}

    assert keys(await store.search_items(["users"])) == {"a", "b", "c"}
    assert keys(await store.search_items([])) == {"a", "b", "c", "d"}
    assert keys(await store.search_items(["users"], filter={"color": "red"})) == {"c"}
    assert keys(await store.search_items(["users"], filter={"n": {"$gt": 2}})) == {"b"}
    page = await store.search_items(["users"], limit=2)
    rest = await store.search_items(["users"], limit=2, offset=2)
    assert len(page["items"]) == 2 and keys(page) | keys(rest) == {"a", "b", "c"}
    assert all(i["score"] is None for i in page["items"])

    assert await store.list_namespaces() == {
        "namespaces": [["docs"], ["users", "u1"], ["users", "u2", "prefs"]]
    }
    assert (await store.list_namespaces(prefix=["users"]))["namespaces"] == [
        ["users", "u1"],
        ["users", "u2", "prefs"],
    ]
    assert (await store.list_namespaces(suffix=["prefs"]))["namespaces"] == [
        ["users", "u2", "prefs"]
    ]
    wildcard = await store.list_namespaces(prefix=["*", "u2"])
    assert wildcard["namespaces"] == [["users", "u2", "prefs"]]
    assert (await store.list_namespaces(max_depth=1))["namespaces"] == [["docs"], ["users"]]

    await store.delete_item(["users", "u1"], "b")
    assert await store.get_item(["users", "u1"], "b") is None
    await store.delete_item(["users", "u1"], "never-there")  # no error

    # Bad input, as the Platform answers it (and never a 500).
    dotted = await http.put("/store/items", json={"namespace": ["a.b"], "key": "k", "value": {}})
    assert dotted.status_code == 422 and dotted.json()["errors"][0]["field"] == "namespace.0"
    for namespace, detail in [
        ([], "Namespace cannot be empty."),
        (["langgraph", "x"], 'Root label for namespace cannot be "langgraph".'),
    ]:
        response = await http.put(
            "/store/items", json={"namespace": namespace, "key": "k", "value": {}}
        )
        assert response.status_code == 400 and response.json()["detail"].startswith(detail)
    for body, field in [
        ({"namespace": ["x"], "key": "k", "value": 5}, "value"),
        ({"namespace": ["x"], "value": {}}, "key"),
        ({"namespace": "x", "key": "k", "value": {}}, "namespace"),
    ]:
        response = await http.put("/store/items", json=body)
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == field
    no_key = await http.get("/store/items", params={"namespace": "users.u1"})
    assert (no_key.status_code, no_key.json()["detail"]) == (400, "Key is required")
    unknown_op = await http.post(
        "/store/items/search", json={"namespace_prefix": ["users"], "filter": {"n": {"$in": [1]}}}
    )
    assert unknown_op.status_code == 422 and unknown_op.json()["errors"][0]["field"] == "filter"
    with pytest.raises(ValueError, match="cannot contain periods"):
        await store.put_item(["a.b"], "k", {})  # the SDK refuses before sending


async def test_memory_graph_writes_and_reads_the_store(api: Api) -> None:
    sdk = api.sdk
    alice = {"user_id": "alice"}
    tid = (await sdk.threads.create())["thread_id"]
    out = await sdk.runs.wait(tid, "memory", input=msg("remember that I like tea"), context=alice)
    assert out["recalled"] == ["I like tea"]
    stored = await sdk.store.get_item(["memories", "alice"], fact_key("I like tea"))
    assert stored is not None and stored["value"] == {"fact": "I like tea"}

    # An item written through the API is what the graph recalls, in a new thread too.
    await sdk.store.put_item(["memories", "alice"], fact_key("I sail"), {"fact": "I sail"})
    recalled = await sdk.runs.wait(None, "memory", input=msg("what do I like?"), context=alice)
    assert set(recalled["recalled"]) == {"I like tea", "I sail"}
    # The config's configurable works as the context does; other users see nothing.
    bob = await sdk.runs.wait(
        None, "memory", input=msg("what do I like?"), config={"configurable": {"user_id": "bob"}}
    )
    assert bob["recalled"] == []
    anonymous = await sdk.runs.wait(None, "memory", input=msg("remember that I am nobody"))
    assert anonymous["recalled"] == ["I am nobody"]
    assert (await sdk.store.list_namespaces(prefix=["memories"]))["namespaces"] == [
        ["memories", "alice"],
        ["memories", "anonymous"],
    ]

    await sdk.runs.wait(tid, "memory", input=msg("forget that I like tea"), context=alice)
    left = await sdk.store.search_items(["memories", "alice"])
    assert [i["value"]["fact"] for i in left["items"]] == ["I sail"]


async def test_the_store_is_tenant_scoped(make_api: Callable[[], Awaitable[Api]]) -> None:
    a, b = await make_api(), await make_api()
    await a.sdk.store.put_item(["shared", "name"], "k", {"owner": "a"})
    await a.sdk.runs.wait(None, "memory", input=msg("remember that A is secret"))

    assert await b.sdk.store.get_item(["shared", "name"], "k") is None
    assert (await b.sdk.store.search_items([]))["items"] == []
    assert (await b.sdk.store.list_namespaces(prefix=["*"]))["namespaces"] == []
    assert (await b.sdk.store.list_namespaces(suffix=["name"]))["namespaces"] == []
    # B's graph runs see B's store only, for the same user.
    other = await b.sdk.runs.wait(None, "memory", input=msg("what do I know?"))
    assert other["recalled"] == []

    # B writing the same namespace and key, and deleting it, leaves A's item alone.
    await b.sdk.store.put_item(["shared", "name"], "k", {"owner": "b"})
    b_item = await b.sdk.store.get_item(["shared", "name"], "k")
    assert b_item is not None and b_item["value"] == {"owner": "b"}
    await b.sdk.store.delete_item(["shared", "name"], "k")
    a_item = await a.sdk.store.get_item(["shared", "name"], "k")
    assert a_item is not None and a_item["value"] == {"owner": "a"}
    a_memories = await a.sdk.store.search_items(["memories", "anonymous"])
    assert [i["value"]["fact"] for i in a_memories["items"]] == ["A is secret"]
