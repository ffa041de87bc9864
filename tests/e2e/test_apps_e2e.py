"""The apps of tests/apps, each a project of its own, served from its langgraph.json beside
the main application (as ``agent-runtime serve`` serves it) and driven with langgraph-sdk:
runs, streams, state, context, the store and its semantic search (``store.index``), a graph
that fails, and an app's own auth."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.schema import StreamPart

from agent_runtime.config.app_settings import AppSettings
from agent_runtime.config.provider_settings import FAKE_PROVIDER_ROUTE
from agent_runtime.config.settings import RuntimeSettings
from agent_runtime.db.metadata import MetadataStore
from tests.e2e.conftest import Stack
from tests.e2e.support import Api, eventually, open_api

# Starts a Ray stack: deselected by -m "not e2e".
pytestmark = pytest.mark.e2e

APPS = Path(__file__).resolve().parents[1] / "apps"
NAMES = ("tool_agent", "memory_agent", "plain_graph", "owned_threads")
ROUTED = "tool_agent"


@pytest.fixture(scope="module")
def app_urls(
    stack: Stack, stack_settings: RuntimeSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    from ray import serve

    from agent_runtime.deployments.app import build_app

    folder = tmp_path_factory.mktemp("projects")
    urls = {}
    for name in NAMES:
        project = shutil.copytree(APPS / name, folder / name)
        # What a user keeps in .env: here, the OpenAI client pointed at the fake provider.
        llm = f"{stack.url}{FAKE_PROVIDER_ROUTE}/v1"
        (project / ".env").write_text(f"OPENAI_BASE_URL={llm}\nOPENAI_API_KEY=unused\n")
        # The tool agent's own ChatOpenAI is routed through the router by configuration.
        routed = name == ROUTED
        config = AppSettings(config=project / "langgraph.json", route_openai_clients=routed)
        settings = stack_settings.model_copy(update={"app": config})
        route = f"/apps/{name}"
        serve.run(build_app(settings=settings), name=f"app-{name}", route_prefix=route)
        urls[name] = f"{stack.url}{route}"
    try:
        yield urls
    finally:
        for name in NAMES:
            serve.delete(f"app-{name}")


@pytest.fixture
async def apps(app_urls: dict[str, str], store: MetadataStore) -> AsyncIterator[dict[str, Api]]:
    opened = {name: await open_api(url, store) for name, url in app_urls.items()}
    yield opened
    for api in opened.values():
        await api.aclose()


def text(values: dict[str, object]) -> str:
    messages = values["messages"]
    assert isinstance(messages, list)
    return str(messages[-1]["content"])


async def collect(parts: AsyncIterator[StreamPart]) -> list[StreamPart]:
    return [part async for part in parts]


async def test_a_template_style_tool_agent(apps: dict[str, Api]) -> None:
    sdk = apps["tool_agent"].sdk
    (assistant,) = await sdk.assistants.search(graph_id="agent")
    assert assistant["name"] == "agent"
    schemas = await sdk.assistants.get_schemas(assistant["assistant_id"])
    assert set(schemas["context_schema"]["properties"]) == {"model", "system_prompt"}
    thread = await sdk.threads.create()
    ask = {"messages": [{"role": "user", "content": "what is 6 * 7?"}]}
    parts = await collect(
        sdk.runs.stream(thread["thread_id"], "agent", input=ask, stream_mode="messages-tuple")
    )
    tokens = [p.data[0]["content"] for p in parts if p.event == "messages"]
    assert "".join(tokens).endswith("Tool result: 42")
    state = await sdk.threads.get_state(thread["thread_id"])
    kinds = [m["type"] for m in state["values"]["messages"]]
    assert kinds == ["human", "ai", "tool", "ai"]
    hello = {"messages": [{"role": "user", "content": "hello"}]}
    smart = await sdk.runs.wait(None, "agent", input=hello, context={"model": "fake-smart"})
    assert text(smart) == "[fake-smart] You said: hello"
    # Its unmodified ChatOpenAI calls went through the router: in the tenant's usage.
    usage = await eventually(
        lambda: apps["tool_agent"].http.get("/usage"),
        lambda response: response.json()["totals"]["calls"] >= 3,
    )
    by_model = {row["model"]: row["calls"] for row in usage.json()["rows"]}
    assert by_model == {"fake-fast": 2, "fake-smart": 1}


async def test_a_memory_agent_keeps_each_users_memories_across_threads(
    apps: dict[str, Api],
) -> None:
    sdk = apps["memory_agent"].sdk

    async def say(user: str, content: str) -> str:
        thread = await sdk.threads.create()  # a new thread every time
        message = {"messages": [{"role": "user", "content": content}]}
        values = await sdk.runs.wait(
            thread["thread_id"], "memory", input=message, context={"user_id": user}
        )
        return text(values)

    assert await say("ada", "remember I like tea") == "I remember: I like tea"
    assert await say("ada", "remember my cat is Bo") == "I remember: I like tea; my cat is Bo"
    assert await say("bob", "hi") == "I remember nothing yet."
    # The store's items are the tenant's, seen through the store API too.
    found = await sdk.store.search_items(("memories", "ada"))
    assert sorted(item["value"]["fact"] for item in found["items"]) == [
        "I like tea",
        "my cat is Bo",
    ]
    # Its langgraph.json's store.index: the graph recalls by meaning ...
    assert await say("ada", "recall my cat") == "Closest memory: my cat is Bo"
    assert await say("bob", "recall my cat") == "I remember nothing yet."
    # ... and the store API ranks by a query, with scores (embedded by the fake provider).
    ranked = await sdk.store.search_items(("memories", "ada"), query="which tea do I like?")
    assert [item["value"]["fact"] for item in ranked["items"]] == ["I like tea", "my cat is Bo"]
    scores = [item["score"] for item in ranked["items"]]
    assert all(isinstance(score, float) for score in scores)
    assert 1.0 >= scores[0] > scores[1]
    best = await sdk.store.search_items(("memories",), query="my cat", limit=1)
    assert [item["value"]["fact"] for item in best["items"]] == ["my cat is Bo"]
    # An item put through the API is embedded too; index=False keeps one out of the ranking.
    await sdk.store.put_item(("memories", "ada"), "api", {"fact": "I sail on weekends"})
    await sdk.store.put_item(("memories", "ada"), "quiet", {"fact": "sail"}, index=False)
    sailing = await sdk.store.search_items(("memories", "ada"), query="sail", limit=1)
    assert [item["key"] for item in sailing["items"]] == ["api"]


async def test_a_plain_graph_streams_its_steps_and_a_failure_keeps_the_last_checkpoint(
    apps: dict[str, Api],
) -> None:
    sdk = apps["plain_graph"].sdk
    (assistant,) = await sdk.assistants.search()
    assert assistant["description"] == "Counts words, step by step."
    thread = await sdk.threads.create()
    parts = await collect(
        sdk.runs.stream(
            thread["thread_id"],
            "words",
            input={"text": "one two three"},
            stream_mode=["values", "updates"],
        )
    )
    updates = [next(iter(p.data)) for p in parts if p.event == "updates"]
    assert updates == ["split", "count", "check"]
    final = [p.data for p in parts if p.event == "values"][-1]
    assert final == {"text": "one two three", "words": ["one", "two", "three"], "count": 3}

    failing = await sdk.threads.create()
    # The SDK raises what the run ended with: the exception's type and message.
    with pytest.raises(Exception, match="ValueError: asked to fail after 3 words"):
        await sdk.runs.wait(failing["thread_id"], "words", input={"text": "please fail now"})
    (run,) = await sdk.runs.list(failing["thread_id"])
    assert run["status"] == "error"
    assert (await sdk.threads.get(failing["thread_id"]))["status"] == "error"
    state = await sdk.threads.get_state(failing["thread_id"])
    # The steps before the failure are kept; the failing one wrote nothing.
    words = ["please", "fail", "now"]
    assert state["values"] == {"text": "please fail now", "words": words, "count": 3}
    assert state["next"] == ["check"]


def as_user(tenant: Api, url: str, token: str | None) -> LangGraphClient:
    """The tenant's SDK client (its API key in x-api-key, rotated as the tenant's own) with
    a user's bearer token, which the app's own authenticate reads."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    client = get_client(url=url, api_key=tenant.api_key, headers=headers)
    client.http.client.event_hooks["request"].extend(tenant.sdk.http.client.event_hooks["request"])
    tenant.closers.append(client.aclose)
    return client


async def status_of(call: Any) -> int:
    with pytest.raises(httpx.HTTPStatusError) as raised:
        await call
    return raised.value.response.status_code


async def test_an_apps_own_auth_keeps_each_users_threads_and_items(
    apps: dict[str, Api], app_urls: dict[str, str]
) -> None:
    url, tenant = app_urls["owned_threads"], apps["owned_threads"]
    alice, bob = as_user(tenant, url, "alice-token"), as_user(tenant, url, "bob-token")
    # The runtime's key alone is not enough: the app's authenticate wants a user.
    assert await status_of(as_user(tenant, url, None).threads.search()) == 401
    assert await status_of(as_user(tenant, url, "forged").threads.search()) == 401

    thread = await alice.threads.create(metadata={"owner": "bob"})
    thread_id = thread["thread_id"]
    assert thread["metadata"]["owner"] == "alice"  # stamped by the app's handler
    values = await alice.runs.wait(thread_id, "whoami", input={"text": "hi"})
    assert values["user"] == "alice" and values["display_name"] == "Alice"
    assert values["permissions"] == ["write"]
    parts = [
        part
        async for part in alice.runs.stream(
            thread_id, "whoami", input={"text": "again"}, stream_mode="values"
        )
    ]
    assert [p.data["user"] for p in parts if p.event == "values"][-1] == "alice"

    # Bob: alice's thread does not exist for him, wherever he looks.
    for call in (
        bob.threads.get(thread_id),
        bob.threads.get_state(thread_id),
        bob.threads.get_history(thread_id),
        bob.runs.list(thread_id),
        bob.runs.wait(thread_id, "whoami", input={"text": "mine now"}),
        bob.threads.update(thread_id, metadata={"owner": "bob"}),
        bob.threads.delete(thread_id),
    ):
        assert await status_of(call) == 404
    assert await bob.threads.search() == []
    assert [t["thread_id"] for t in await alice.threads.search()] == [thread_id]
    assert (await alice.threads.get(thread_id))["metadata"]["owner"] == "alice"

    # Store items live under each user's identity.
    await alice.store.put_item(["notes"], "k", {"text": "hers"})
    item = await alice.store.get_item(["notes"], "k")
    assert item is not None and item["namespace"] == ["alice", "notes"]
    assert await bob.store.get_item(["notes"], "k") is None
    assert (await bob.store.search_items(["notes"]))["items"] == []
