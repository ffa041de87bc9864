"""AssistantStore conformance, on SQLite and on Postgres.

The expected values come from langgraph-api (the in-memory runtime and the behaviour of
the dev server, probed with the SDK): version numbering, what a patch keeps, merges or
replaces, default assistants, sort orders and error messages. Tenants are isolated.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agent_runtime.config.settings import StorageSettings
from agent_runtime.core.errors import Conflict, InvalidRequest, NotFound
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.protocol.agent_protocol import default_assistant_id
from agent_runtime.runs.assistant_reads import json_contains
from agent_runtime.runs.assistants import (
    BOTH_CONFIGURABLE_AND_CONTEXT,
    AssistantStore,
)

GRAPHS = ["react", "multi_agent"]
DESCRIPTIONS = {"react": "A ReAct agent", "multi_agent": "Routes to specialists"}


@pytest.fixture
async def db(storage_settings: StorageSettings) -> AsyncIterator[MetadataStore]:
    store = MetadataStore(storage_settings)
    await store.setup()
    yield store
    await store.close()


@pytest.fixture
def assistants(db: MetadataStore) -> AssistantStore:
    return AssistantStore(db, GRAPHS, descriptions=DESCRIPTIONS)


# -- default assistants ------------------------------------------------------------------
async def test_each_tenant_gets_the_default_assistants(assistants: AssistantStore) -> None:
    page, next_offset = await assistants.search("acme")
    assert next_offset is None
    # Newest first: the graph registered last comes first, as on Platform.
    assert [a.graph_id for a in page] == ["multi_agent", "react"]
    react = page[1]
    assert react.assistant_id == default_assistant_id("react")
    assert (react.name, react.version, react.metadata) == ("react", 1, {"created_by": "system"})
    assert react.description == "A ReAct agent"
    assert (react.config, react.context) == ({}, {})
    assert await assistants.get("acme", "react") == react
    assert await assistants.get("acme", react.assistant_id.upper()) == react
    [version] = await assistants.versions("acme", "react")
    assert (version.version, version.graph_id, version.metadata) == (1, "react", react.metadata)


async def test_defaults_are_inserted_once_across_processes(db: MetadataStore) -> None:
    first, second = (AssistantStore(db, GRAPHS) for _ in range(2))
    await asyncio.gather(*(s.ensure_defaults("acme") for s in (first, second, first)))
    assert await first.count("acme") == 2
    await first.delete("acme", "react")
    # This process remembers the tenant is done, so the deleted default stays deleted ...
    assert await first.count("acme") == 1
    # ... and a new process re-creates it, as Platform does at every start-up.
    assert await AssistantStore(db, GRAPHS).count("acme") == 2


async def test_assistants_of_unregistered_graphs_are_hidden(
    db: MetadataStore, assistants: AssistantStore
) -> None:
    created = await assistants.create("acme", graph_id="multi_agent")
    only_react = AssistantStore(db, ["react"])
    assert [a.graph_id for a in (await only_react.search("acme", limit=50))[0]] == ["react"]
    assert await only_react.count("acme") == 1
    with pytest.raises(NotFound):
        await only_react.get("acme", created.assistant_id)
    with pytest.raises(NotFound):
        await only_react.resolve("acme", created.assistant_id)


# -- tenant isolation --------------------------------------------------------------------
async def test_a_tenant_never_reaches_another_tenants_assistants(
    assistants: AssistantStore,
) -> None:
    mine = await assistants.create("acme", graph_id="react", metadata={"team": "a"})
    aid = mine.assistant_id
    for attempt in (
        assistants.get("globex", aid),
        assistants.resolve("globex", aid),
        assistants.update("globex", aid, name="stolen"),
        assistants.versions("globex", aid),
        assistants.set_latest("globex", aid, 1),
        assistants.delete("globex", aid),
    ):
        with pytest.raises(NotFound):
            await attempt
    assert aid not in {a.assistant_id for a in (await assistants.search("globex"))[0]}
    assert await assistants.count("globex", metadata={"team": "a"}) == 0
    # Ids are per tenant: the same id is free for another tenant.
    theirs = await assistants.create("globex", graph_id="multi_agent", assistant_id=aid)
    assert theirs.graph_id == "multi_agent"
    assert (await assistants.get("acme", aid)).graph_id == "react"


async def test_each_tenant_has_its_own_copy_of_the_defaults(assistants: AssistantStore) -> None:
    await assistants.update("acme", "react", metadata={"touched": True}, name="mine")
    theirs = await assistants.get("globex", "react")
    assert (theirs.name, theirs.version, theirs.metadata) == ("react", 1, {"created_by": "system"})
    await assistants.delete("globex", "react")
    assert (await assistants.get("acme", "react")).name == "mine"


# -- create ------------------------------------------------------------------------------
async def test_create_defaults_and_keeps_config_and_context_in_sync(
    assistants: AssistantStore,
) -> None:
    minimal = await assistants.create("acme", graph_id="react")
    assert uuid.UUID(minimal.assistant_id).version == 4
    assert (minimal.name, minimal.description, minimal.version) == ("Untitled", None, 1)
    assert (minimal.config, minimal.context, minimal.metadata) == ({}, {}, {})
    from_context = await assistants.create(
        "acme", graph_id="react", config={"tags": ["t1"]}, context={"user": "u1"}
    )
    assert from_context.config == {"tags": ["t1"], "configurable": {"user": "u1"}}
    assert from_context.context == {"user": "u1"}
    from_config = await assistants.create(
        "acme", graph_id="react", config={"configurable": {"foo": "bar"}}
    )
    assert from_config.context == {"foo": "bar"}
    with pytest.raises(InvalidRequest, match="Cannot specify both configurable and context"):
        await assistants.create(
            "acme", graph_id="react", config={"configurable": {"a": 1}}, context={"b": 2}
        )
    assert BOTH_CONFIGURABLE_AND_CONTEXT.startswith("Cannot specify both")


async def test_create_rejects_unknown_graphs_bad_ids_and_duplicates(
    assistants: AssistantStore,
) -> None:
    with pytest.raises(NotFound) as unknown:
        await assistants.create("acme", graph_id="nope")
    assert unknown.value.message == (
        "Graph 'nope' not found. Expected one of: ['multi_agent', 'react']"
    )
    with pytest.raises(InvalidRequest, match="Invalid assistant ID: must be a UUID"):
        await assistants.create("acme", graph_id="react", assistant_id="not-a-uuid")
    fixed = str(uuid.uuid4())
    first = await assistants.create("acme", graph_id="react", assistant_id=fixed, name="fixed")
    with pytest.raises(Conflict) as duplicate:
        await assistants.create("acme", graph_id="react", assistant_id=fixed)
    assert duplicate.value.message == f"Assistant {fixed} already exists"
    same = await assistants.create(
        "acme", graph_id="multi_agent", assistant_id=fixed, if_exists="do_nothing", name="x"
    )
    assert same == first
    # A default's id is taken from the start.
    with pytest.raises(Conflict):
        await assistants.create(
            "acme", graph_id="react", assistant_id=default_assistant_id("react")
        )


# -- update, versions, set_latest --------------------------------------------------------
async def test_updates_make_versions_as_platform_does(assistants: AssistantStore) -> None:
    created = await assistants.create(
        "acme",
        graph_id="react",
        config={"tags": ["t1"], "recursion_limit": 30},
        context={"user": "u1"},
        metadata={"team": "a", "n": 1},
        name="my-echo",
        description="desc1",
    )
    aid = created.assistant_id
    v2 = await assistants.update("acme", aid, metadata={"team": "b"}, name="renamed")
    assert (v2.version, v2.name, v2.metadata) == (2, "renamed", {"team": "b", "n": 1})
    assert v2.config == created.config and v2.created_at == created.created_at
    assert v2.updated_at > created.updated_at
    v3 = await assistants.update("acme", aid, config={"tags": ["t2"]})
    assert (v3.version, v3.config, v3.context) == (3, {"tags": ["t2"]}, {"user": "u1"})
    v4 = await assistants.update("acme", aid, context={"user": "u2"}, description="desc2")
    assert v4.config == {"configurable": {"user": "u2"}} and v4.context == {"user": "u2"}
    assert v4.description == "desc2"
    v5 = await assistants.update("acme", aid)
    assert v5.version == 5 and v5.config == v4.config
    assert await assistants.get("acme", aid) == v5

    versions = await assistants.versions("acme", aid)
    assert [v.version for v in versions] == [5, 4, 3, 2, 1]
    assert (versions[-1].name, versions[-1].metadata) == ("my-echo", {"team": "a", "n": 1})
    assert versions[0].created_at == v5.updated_at
    page = await assistants.versions("acme", aid, limit=2, offset=1)
    assert [v.version for v in page] == [4, 3]
    [first] = await assistants.versions("acme", aid, metadata={"team": "a"})
    assert first.version == 1

    back = await assistants.set_latest("acme", aid, 1)
    assert (back.version, back.name, back.description) == (1, "my-echo", "desc1")
    assert (back.config, back.context) == (created.config, created.context)
    assert back.metadata == {"team": "a", "n": 1}
    assert await assistants.resolve("acme", aid) == back
    # The version list is unchanged, and the next update numbers past the highest.
    assert len(await assistants.versions("acme", aid)) == 5
    v6 = await assistants.update("acme", aid, metadata={"after": "setlatest"})
    assert v6.version == 6
    assert v6.metadata == {"team": "a", "n": 1, "after": "setlatest"}
    with pytest.raises(NotFound) as missing:
        await assistants.set_latest("acme", aid, 99)
    assert missing.value.message == f"Version 99 not found for assistant {aid}"


async def test_update_can_move_to_another_graph_only_if_registered(
    assistants: AssistantStore,
) -> None:
    created = await assistants.create("acme", graph_id="react")
    moved = await assistants.update("acme", created.assistant_id, graph_id="multi_agent")
    assert (moved.graph_id, moved.version) == ("multi_agent", 2)
    with pytest.raises(NotFound, match="Graph 'nope' not found"):
        await assistants.update("acme", created.assistant_id, graph_id="nope")
    unknown = str(uuid.uuid4())
    with pytest.raises(NotFound) as missing:
        await assistants.update("acme", unknown, name="x")
    assert missing.value.message == f"Assistant {unknown} not found"


async def test_concurrent_updates_each_get_their_own_version(assistants: AssistantStore) -> None:
    created = await assistants.create("acme", graph_id="react")
    results = await asyncio.gather(
        *(assistants.update("acme", created.assistant_id, metadata={f"k{i}": i}) for i in range(8))
    )
    assert sorted(r.version for r in results) == list(range(2, 10))
    latest = await assistants.get("acme", created.assistant_id)
    assert latest.version == 9
    assert latest.metadata == {f"k{i}": i for i in range(8)}


# -- search and count --------------------------------------------------------------------
async def _three(assistants: AssistantStore) -> list[str]:
    made = [
        await assistants.create(
            "acme", graph_id="react", name="Alpha", metadata={"team": "a", "tags": ["x", "y"]}
        ),
        await assistants.create(
            "acme",
            graph_id="multi_agent",
            name="beta 50%",
            metadata={"team": "b", "nested": {"k": 1, "j": 2}, "flag": True},
        ),
        await assistants.create("acme", graph_id="react", name="gamma", metadata={"flag": 1}),
    ]
    return [a.assistant_id for a in made]


async def test_search_filters_like_platform(assistants: AssistantStore) -> None:
    alpha, beta, gamma = await _three(assistants)

    async def ids(**criteria: Any) -> list[str]:
        page, _ = await assistants.search("acme", limit=100, **criteria)
        return [a.assistant_id for a in page]

    assert await ids(graph_id="react") == [gamma, alpha, default_assistant_id("react")]
    assert await ids(name="ALP") == [alpha]
    # The name is a substring, not a LIKE pattern.
    assert await ids(name="50%") == [beta]
    assert await ids(name="%") == [beta]
    assert await ids(metadata={"team": "a"}) == [alpha]
    assert await ids(metadata={"tags": ["y"]}) == [alpha]
    assert await ids(metadata={"nested": {"j": 2}}) == [beta]
    assert await ids(metadata={"flag": True}) == [beta]
    assert await ids(metadata={"flag": 1}) == [gamma]
    assert await ids(metadata={"created_by": "system"}, graph_id="react") == [
        default_assistant_id("react")
    ]
    assert await ids(metadata={"team": "a"}, name="beta") == []
    assert await assistants.count("acme") == 5
    assert await assistants.count("acme", graph_id="react") == 3
    assert await assistants.count("acme", metadata={"flag": True}) == 1
    assert await assistants.count("acme", name="a", metadata={"team": "a"}) == 1
    for call in (
        assistants.search("acme", graph_id="nope"),
        assistants.count("acme", graph_id="x"),
    ):
        with pytest.raises(NotFound, match=r"not found\. Expected one of"):
            await call


async def test_search_sorts_and_pages(assistants: AssistantStore) -> None:
    alpha, beta, gamma = await _three(assistants)

    async def names(**criteria: Any) -> list[str]:
        page, _ = await assistants.search("acme", limit=100, **criteria)
        return [a.name for a in page]

    everything = ["Alpha", "beta 50%", "gamma", "multi_agent", "react"]
    assert await names(sort_by="name", sort_order="asc") == everything
    # A sort_by without sort_order is descending, as on Platform.
    assert await names(sort_by="name") == everything[::-1]
    assert await names() == ["gamma", "beta 50%", "Alpha", "multi_agent", "react"]
    assert await names(sort_by="created_at", sort_order="asc") == [
        "react", "multi_agent", "Alpha", "beta 50%", "gamma",
    ]  # fmt: skip
    await assistants.update("acme", alpha, name="Alpha")
    assert (await names(sort_by="updated_at"))[0] == "Alpha"
    by_id, _ = await assistants.search("acme", sort_by="assistant_id", sort_order="asc")
    assert [a.assistant_id for a in by_id] == sorted(a.assistant_id for a in by_id)

    first, next_offset = await assistants.search("acme", limit=2)
    assert ([a.name for a in first], next_offset) == (["gamma", "beta 50%"], 2)
    last, next_offset = await assistants.search("acme", limit=2, offset=4)
    assert ([a.name for a in last], next_offset) == (["react"], None)
    exact, next_offset = await assistants.search("acme", limit=5)
    assert len(exact) == 5 and next_offset is None
    filtered, next_offset = await assistants.search("acme", metadata={"flag": 1}, limit=1)
    assert ([a.assistant_id for a in filtered], next_offset) == ([gamma], None)
    two, next_offset = await assistants.search("acme", metadata={"team": "b"}, limit=1, offset=0)
    assert ([a.assistant_id for a in two], next_offset) == ([beta], None)


# -- delete ------------------------------------------------------------------------------
async def test_delete_removes_versions_and_optionally_threads(
    db: MetadataStore, assistants: AssistantStore
) -> None:
    created = await assistants.create("acme", graph_id="react")
    await assistants.update("acme", created.assistant_id, name="v2")
    aid = created.assistant_id
    owned = await db.create_thread("acme", metadata={"assistant_id": aid})
    kept = await db.create_thread("acme", metadata={"assistant_id": str(uuid.uuid4())})
    other_tenant = await db.create_thread("globex", metadata={"assistant_id": aid})

    assert await assistants.delete("acme", aid, delete_threads=True) == [owned.thread_id]
    with pytest.raises(NotFound):
        await assistants.get("acme", aid)
    with pytest.raises(NotFound):
        await assistants.versions("acme", aid)
    with pytest.raises(NotFound) as again:
        await assistants.delete("acme", aid)
    assert again.value.message == f"Assistant with ID {aid} not found"
    # The ids come back for the caller to delete the whole way (runs, checkpoints, items).
    assert (await db.get_thread("acme", owned.thread_id)).thread_id == owned.thread_id
    assert (await db.get_thread("acme", kept.thread_id)).thread_id == kept.thread_id
    assert (await db.get_thread("globex", other_tenant.thread_id)).tenant_id == "globex"

    plain = await assistants.create("acme", graph_id="react")
    thread = await db.create_thread("acme", metadata={"assistant_id": plain.assistant_id})
    assert await assistants.delete("acme", plain.assistant_id) == []
    assert (await db.get_thread("acme", thread.thread_id)).thread_id == thread.thread_id
    # The id can be used again, starting over at version 1.
    reborn = await assistants.create("acme", graph_id="react", assistant_id=aid)
    assert reborn.version == 1 and len(await assistants.versions("acme", aid)) == 1


# -- resolve (what runs call) ------------------------------------------------------------
async def test_resolve_accepts_graph_ids_and_uuids(assistants: AssistantStore) -> None:
    default = await assistants.resolve("acme", "multi_agent")
    assert default.assistant_id == default_assistant_id("multi_agent")
    assert await assistants.resolve("acme", default.assistant_id) == default
    created = await assistants.create("acme", graph_id="react", context={"user": "u1"})
    await assistants.update("acme", created.assistant_id, context={"user": "u2"})
    latest = await assistants.resolve("acme", created.assistant_id)
    assert (latest.graph_id, latest.version, latest.context) == ("react", 2, {"user": "u2"})
    assert latest.config == {"configurable": {"user": "u2"}}
    with pytest.raises(NotFound):
        await assistants.resolve("acme", str(uuid.uuid4()))
    with pytest.raises(InvalidRequest) as invalid:
        await assistants.resolve("acme", "nope")
    assert invalid.value.message == (
        "Invalid assistant: 'nope'. Must be either:\n- A valid assistant UUID, or\n"
        "- One of the registered graphs: react, multi_agent"
    )


def test_json_contains_is_postgres_containment() -> None:
    doc = {"a": 1, "b": {"c": [1, 2, {"d": "x"}]}, "t": True, "n": None, "f": 1.5}
    assert json_contains(doc, {})
    assert json_contains(doc, {"a": 1.0, "b": {"c": [2, {"d": "x"}]}})
    assert json_contains(doc, {"b": {"c": [2, 2, 1]}, "n": None, "f": 1.5})
    assert not json_contains(doc, {"a": True})
    assert not json_contains(doc, {"t": 1})
    assert not json_contains(doc, {"b": {"c": [3]}})
    assert not json_contains(doc, {"a": "1"})
    assert not json_contains(doc, {"b": {"c": 1}})
    assert not json_contains(doc, {"missing": None})
