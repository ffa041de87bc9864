"""Assistants through the official SDK on the Serve stack (Postgres): versions, search,
drawings and schemas, defaults, deletes, and an assistant's context reaching its runs."""

from __future__ import annotations

import uuid

import pytest
from langgraph_sdk.errors import BadRequestError, ConflictError, NotFoundError

from agent_runtime.protocol.agent_protocol import default_assistant_id
from tests.e2e.support import MISSING, Api, msg

pytestmark = pytest.mark.e2e

GRAPHS = ["multi_agent", "react", "memory", "approval"]


async def test_create_update_versions_and_set_latest(api: Api) -> None:
    sdk = api.sdk
    created = await sdk.assistants.create(
        "memory",
        config={"tags": ["t1"], "recursion_limit": 30},
        context={"user_id": "u1"},
        metadata={"team": "a", "n": 1},
        name="my-memory",
        description="first",
    )
    aid = created["assistant_id"]
    assert uuid.UUID(aid)
    assert list(created) == [
        "assistant_id", "graph_id", "config", "context", "metadata", "name",
        "created_at", "updated_at", "version", "description",
    ]  # fmt: skip
    # context and config.configurable mirror each other.
    assert created["config"] == {
        "tags": ["t1"],
        "recursion_limit": 30,
        "configurable": {"user_id": "u1"},
    }
    assert created["context"] == {"user_id": "u1"}
    assert (created["version"], created["name"], created["description"]) == (
        1,
        "my-memory",
        "first",
    )
    assert await sdk.assistants.get(aid) == created

    v2 = await sdk.assistants.update(aid, metadata={"team": "b"}, name="renamed")
    assert (v2["version"], v2["name"]) == (2, "renamed")
    assert v2["metadata"] == {"team": "b", "n": 1}  # shallow merge
    assert v2["created_at"] == created["created_at"] and v2["updated_at"] > created["updated_at"]
    v3 = await sdk.assistants.update(aid, config={"tags": ["t2"]})
    assert v3["config"] == {"tags": ["t2"]}  # replaced whole; context kept
    assert v3["context"] == {"user_id": "u1"}
    v4 = await sdk.assistants.update(aid, context={"user_id": "u2"}, description="second")
    assert v4["config"] == {"configurable": {"user_id": "u2"}}
    assert (v4["context"], v4["description"]) == ({"user_id": "u2"}, "second")
    empty = await api.http.patch(f"/assistants/{aid}", json={})
    assert empty.json()["version"] == 5  # every PATCH is a version

    versions = await sdk.assistants.get_versions(aid)
    assert [v["version"] for v in versions] == [5, 4, 3, 2, 1]
    assert "updated_at" not in versions[0] and versions[-1]["name"] == "my-memory"
    assert [v["version"] for v in await sdk.assistants.get_versions(aid, limit=2, offset=1)] == [
        4,
        3,
    ]
    assert [
        v["version"] for v in await sdk.assistants.get_versions(aid, metadata={"team": "a"})
    ] == [1]

    latest = await sdk.assistants.set_latest(aid, 1)
    assert latest["version"] == 1
    assert (latest["name"], latest["metadata"]) == ("my-memory", {"team": "a", "n": 1})
    assert latest["config"]["tags"] == ["t1"]
    assert (await sdk.assistants.get(aid))["version"] == 1
    # No version is created by set_latest; the next PATCH is max + 1.
    assert (await sdk.assistants.update(aid, name="after"))["version"] == 6

    missing = await api.http.post(f"/assistants/{aid}/latest", json={"version": 99})
    assert missing.status_code == 404
    assert missing.json()["detail"] == f"Version 99 not found for assistant {aid}"


async def test_create_conflicts_and_invalid_assistants(api: Api) -> None:
    sdk = api.sdk
    aid = str(uuid.uuid4())
    first = await sdk.assistants.create("react", assistant_id=aid, name="one")
    with pytest.raises(ConflictError) as conflict:
        await sdk.assistants.create("react", assistant_id=aid)
    assert conflict.value.response.json()["detail"] == f"Assistant {aid} already exists"
    same = await sdk.assistants.create("react", assistant_id=aid, if_exists="do_nothing", name="x")
    assert same == first  # the existing one, unchanged

    with pytest.raises(NotFoundError) as unknown_graph:
        await sdk.assistants.create("nope")
    assert unknown_graph.value.response.json()["detail"] == (
        f"Graph 'nope' not found. Expected one of: {sorted(GRAPHS)}"
    )
    with pytest.raises(BadRequestError) as both:
        await sdk.assistants.create("react", config={"configurable": {"a": 1}}, context={"b": 2})
    assert "Cannot specify both configurable and context" in both.value.response.json()["detail"]

    http = api.http
    for body, field in [
        ({}, "graph_id"),
        ({"graph_id": 5}, "graph_id"),
        ({"graph_id": "react", "if_exists": "bogus"}, "if_exists"),
        ({"graph_id": "react", "config": {"recursion_limit": "x"}}, "config.recursion_limit"),
    ]:
        response = await http.post("/assistants", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["errors"][0]["field"] == field
    for method in ("GET", "PATCH", "DELETE"):
        response = await http.request(method, "/assistants/not-a-uuid")
        assert response.status_code == 422
        assert response.json()["detail"] == "Invalid assistant ID: must be a UUID"
    for method, path, detail in [
        ("GET", f"/assistants/{MISSING}", f"Assistant {MISSING} not found"),
        ("PATCH", f"/assistants/{MISSING}", f"Assistant {MISSING} not found"),
        ("DELETE", f"/assistants/{MISSING}", f"Assistant with ID {MISSING} not found"),
        ("POST", f"/assistants/{MISSING}/versions", f"Assistant {MISSING} not found"),
        ("POST", f"/assistants/{MISSING}/latest", f"Assistant {MISSING} not found"),
        ("GET", f"/assistants/{MISSING}/graph", f"Assistant {MISSING} not found"),
        ("GET", f"/assistants/{MISSING}/schemas", f"Assistant {MISSING} not found"),
        ("GET", f"/assistants/{MISSING}/subgraphs", f"Assistant {MISSING} not found"),
    ]:
        response = await http.request(method, path, json={} if method != "GET" else None)
        assert (response.status_code, response.json()["detail"]) == (404, detail), path


async def test_default_assistants_search_count_and_pagination(api: Api) -> None:
    sdk, http = api.sdk, api.http
    defaults = await sdk.assistants.search(metadata={"created_by": "system"}, limit=10)
    # Newest first: defaults are registered one after another, so in reverse order.
    assert [a["graph_id"] for a in defaults] == list(reversed(GRAPHS))
    for assistant in defaults:
        assert assistant["assistant_id"] == default_assistant_id(assistant["graph_id"])
        assert assistant["name"] == assistant["graph_id"] and assistant["version"] == 1
    # This runtime lets a graph id stand for its default assistant on GET too (the
    # Platform's in-memory server answers 422 there); see agent_runtime/runs/assistant_reads.py.
    assert (await sdk.assistants.get("react"))["assistant_id"] == default_assistant_id("react")

    mine = await sdk.assistants.create("memory", name="Alpha helper", metadata={"team": "x"})
    other = await sdk.assistants.create("react", name="beta", metadata={"team": "y"})
    found = await sdk.assistants.search()
    assert [a["assistant_id"] for a in found[:2]] == [other["assistant_id"], mine["assistant_id"]]
    assert [a["name"] for a in await sdk.assistants.search(name="ALPHA")] == ["Alpha helper"]
    assert {a["name"] for a in await sdk.assistants.search(graph_id="memory")} == {
        "Alpha helper",
        "memory",
    }
    assert [a["name"] for a in await sdk.assistants.search(metadata={"team": "y"})] == ["beta"]
    ascending = await sdk.assistants.search(sort_by="name", sort_order="asc", select=["name"])
    assert ascending == [
        {"name": n} for n in ["Alpha helper", "approval", "beta", "memory", "multi_agent", "react"]
    ]
    assert await sdk.assistants.count() == 6
    assert await sdk.assistants.count(graph_id="react") == 2
    assert await sdk.assistants.count(metadata={"team": "x"}) == 1
    assert await sdk.assistants.count(name="nothing-like-this") == 0

    page = await http.post("/assistants/search", json={"limit": 4})
    assert len(page.json()) == 4
    assert (page.headers["x-pagination-total"], page.headers["x-pagination-next"]) == ("5", "4")
    last = await http.post("/assistants/search", json={"limit": 4, "offset": 4})
    assert len(last.json()) == 2 and last.headers["x-pagination-total"] == "6"
    assert "x-pagination-next" not in last.headers
    as_object = await sdk.assistants.search(limit=4, response_format="object")
    assert as_object["next"] == "4" and len(as_object["assistants"]) == 4
    for body, field in [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"sort_by": "bogus"}, "sort_by"),
        ({"select": ["bogus"]}, "select.0"),
    ]:
        response = await http.post("/assistants/search", json=body)
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == field
    unknown = await http.post("/assistants/count", json={"graph_id": "nope"})
    assert unknown.status_code == 404 and "Graph 'nope' not found" in unknown.json()["detail"]


async def test_graphs_schemas_and_subgraphs(api: Api) -> None:
    sdk = api.sdk
    drawing = await sdk.assistants.get_graph("memory")
    assert [n["id"] for n in drawing["nodes"]] == ["__start__", "memorize", "respond", "__end__"]
    assert drawing["edges"] == [
        {"source": "__start__", "target": "memorize"},
        {"source": "memorize", "target": "respond"},
        {"source": "respond", "target": "__end__"},
    ]
    approval = await sdk.assistants.get_graph("approval", xray=True)
    assert {n["id"] for n in approval["nodes"]} == {"__start__", "agent", "review", "__end__"}
    assert any(e.get("conditional") for e in approval["edges"])
    bad = await api.http.get("/assistants/memory/graph", params={"xray": "bogus"})
    assert (bad.status_code, bad.json()["detail"]) == (422, "Invalid xray value")

    for graph_id in GRAPHS:
        schemas = await sdk.assistants.get_schemas(graph_id)
        assert schemas["graph_id"] == graph_id
        assert set(schemas) == {
            "graph_id", "input_schema", "output_schema", "state_schema",
            "config_schema", "context_schema",
        }  # fmt: skip
        assert "messages" in schemas["state_schema"]["properties"]
        subgraphs = await sdk.assistants.get_subgraphs(graph_id, recurse=True)
        # multi_agent's analyst is the one subgraph of the shipped graphs.
        assert list(subgraphs) == (["analysis"] if graph_id == "multi_agent" else [])
    analyst = (await sdk.assistants.get_subgraphs("multi_agent"))["analysis"]
    assert "messages" in analyst["state_schema"]["properties"]
    assert await sdk.assistants.get_subgraphs("multi_agent", namespace="analysis") == {
        "analysis": analyst
    }
    assert await sdk.assistants.get_subgraphs("memory", namespace="nope") == {}


async def test_assistant_context_reaches_runs_and_delete_threads(api: Api) -> None:
    sdk = api.sdk
    assistant = await sdk.assistants.create("memory", context={"user_id": "carol"})
    aid = assistant["assistant_id"]
    kept = await sdk.threads.create()
    gone = await sdk.threads.create()
    await sdk.runs.wait(kept["thread_id"], "memory", input=msg("hello"))
    out = await sdk.runs.wait(gone["thread_id"], aid, input=msg("remember that I sail"))
    assert out["recalled"] == ["I sail"]
    # The assistant's context is the run's: the memory went to carol's namespace.
    found = await sdk.store.search_items(["memories", "carol"])
    assert [i["value"] for i in found["items"]] == [{"fact": "I sail"}]
    run = (await sdk.runs.list(gone["thread_id"]))[0]
    assert run["assistant_id"] == aid
    assert run["kwargs"]["context"] == {"user_id": "carol"}
    assert (await sdk.threads.get(gone["thread_id"]))["metadata"]["assistant_id"] == aid

    await sdk.assistants.delete(aid, delete_threads=True)
    with pytest.raises(NotFoundError):
        await sdk.assistants.get(aid)
    with pytest.raises(NotFoundError):
        await sdk.threads.get(gone["thread_id"])
    # Threads of other assistants stay; so does the store item (it is the user's).
    assert (await sdk.threads.get(kept["thread_id"]))["status"] == "idle"
    with pytest.raises(NotFoundError):
        await sdk.assistants.delete(aid)
    missing = await api.http.post("/runs/wait", json={"assistant_id": aid, "input": msg("x")})
    assert missing.status_code == 404

    # A default assistant can be deleted too; it stops answering for this tenant.
    await sdk.assistants.delete(default_assistant_id("approval"))
    assert "approval" not in {a["graph_id"] for a in await sdk.assistants.search()}
