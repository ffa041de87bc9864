"""OpenAI clients a graph builds itself, routed to the model router by configuration.

An unmodified ``ChatOpenAI`` (the app's own code) talks to :data:`ROUTED_BASE_URL`; the
requests are answered in process by the router of the run in progress, here a real
``ModelRouter`` over the fake provider, and stamped with the run's identity.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import openai
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from langchain_openai import ChatOpenAI

from agent_runtime.core import identity, timing
from agent_runtime.core.errors import ModelNotFound
from agent_runtime.core.types import ChatRequest, ChatResult
from agent_runtime.execution.chat_model import NO_ROUTER, RouterCalls, router_calls
from agent_runtime.execution.openai_routing import (
    ROUTED_API_KEY,
    ROUTED_BASE_URL,
    route_openai_clients,
)
from agent_runtime.gateway.model_router import ModelRouter
from graphs.tools import calculator
from tests.execution.test_chat_model import fake_http, make_router


class Stamped:
    """The orchestrator's router calls: the run's identity stamped on, each request kept."""

    def __init__(self, router: ModelRouter) -> None:
        self.router = router
        self.requests: list[ChatRequest] = []

    async def chat(self, request: ChatRequest) -> ChatResult:
        request = identity.stamp(request)
        self.requests.append(request)
        return await self.router.chat(request)

    async def stream(self, request: ChatRequest) -> AsyncIterator[AIMessageChunk]:
        request = identity.stamp(request)
        self.requests.append(request)
        async for chunk in self.router.stream(request):
            yield chunk

    def calls(self) -> RouterCalls:
        return RouterCalls(self.chat, self.stream, asyncio.get_running_loop())


@pytest.fixture
async def stamped() -> AsyncIterator[Stamped]:
    env: dict[str, str] = {}
    route_openai_clients(env)
    async with fake_http() as http:
        router = make_router(http)
        yield Stamped(router)
        await router.close()


def client(model: str = "smart") -> ChatOpenAI:
    # What the app's own code builds; the environment would give it this URL and key.
    return ChatOpenAI(model=model, base_url=ROUTED_BASE_URL, api_key=ROUTED_API_KEY)


RUN = identity.RunIdentity(tenant_id="acme", key_id="k-1", thread_id="t-1", run_id="r-1")


def test_the_environment_points_clients_at_the_router() -> None:
    env = {"OPENAI_BASE_URL": "http://elsewhere/v1", "OPENAI_API_BASE": "http://old/v1"}
    route_openai_clients(env)
    assert env == {"OPENAI_BASE_URL": ROUTED_BASE_URL, "OPENAI_API_KEY": ROUTED_API_KEY}
    kept = {"OPENAI_API_KEY": "sk-real"}
    route_openai_clients(kept)
    assert kept["OPENAI_API_KEY"] == "sk-real"


async def test_a_chat_openai_call_goes_through_the_router_as_the_run(stamped: Stamped) -> None:
    model = client().bind_tools([calculator])
    with router_calls(stamped.calls()), identity.run_identity(RUN), timing.track_run() as run:
        message = await model.ainvoke([HumanMessage("what is 2 + 3 * 4?")])

    assert isinstance(message, AIMessage)
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [
        ("calculator", {"expression": "2 + 3 * 4"})
    ]
    assert message.response_metadata["model_name"] == "fake-smart"
    (request,) = stamped.requests
    assert (request.alias, request.tenant_id, request.run_id) == ("smart", "acme", "r-1")
    assert [tool["function"]["name"] for tool in request.tools] == ["calculator"]
    assert run.llm_calls == 1
    assert run.models == ["fake-smart"]
    assert message.usage_metadata is not None
    assert run.input_tokens == message.usage_metadata["input_tokens"] > 0


async def test_a_streamed_call_arrives_token_by_token(stamped: Stamped) -> None:
    with router_calls(stamped.calls()), identity.run_identity(RUN), timing.track_run() as run:
        chunks = [chunk async for chunk in client().astream([HumanMessage("hello there")])]

    text = "".join(str(chunk.content) for chunk in chunks)
    assert text == "[fake-smart] You said: hello there"
    assert len([chunk for chunk in chunks if chunk.content]) > 1
    assert run.llm_calls == 1
    assert run.output_tokens > 0


async def test_a_sync_call_from_a_worker_thread_is_answered_on_the_runs_loop(
    stamped: Stamped,
) -> None:
    with router_calls(stamped.calls()), identity.run_identity(RUN):
        # A sync node runs in a worker thread with a copy of the run's context.
        message = await asyncio.to_thread(client().invoke, [HumanMessage("hi")])
    assert message.content == "[fake-smart] You said: hi"
    assert stamped.requests[0].tenant_id == "acme"


async def test_router_errors_reach_the_client_as_openai_errors(stamped: Stamped) -> None:
    async def refuse(request: ChatRequest) -> ChatResult:
        raise ModelNotFound(f"model {request.alias!r} is not configured")

    with (
        router_calls(RouterCalls(refuse)),
        identity.run_identity(RUN),
        pytest.raises(openai.NotFoundError, match="not configured"),
    ):
        await client("gpt-unknown").ainvoke([HumanMessage("hi")])


async def test_outside_a_run_the_client_is_told_why(stamped: Stamped) -> None:
    with pytest.raises(openai.InternalServerError, match="exists only while the runtime"):
        await client().with_retry(stop_after_attempt=1).ainvoke([HumanMessage("hi")])
    assert "exists only while the runtime" in NO_ROUTER


async def test_other_hosts_are_not_diverted(stamped: Stamped) -> None:
    async with httpx.AsyncClient(timeout=2.0) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get("http://127.0.0.1:9/v1/models")  # the discard port: nothing listens
