"""The fake provider over HTTP, driven by the real ``openai`` client and ``ChatOpenAI``: answers,
tools, the flat fault settings, and LangChain's client end to end.

Most tests go through httpx's in-process ASGI transport; the ones that need a real socket
(client timeouts) run the app under uvicorn on a free local port.
"""

from __future__ import annotations

import ast
import functools
import json
import math
import operator
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import openai
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from agent_runtime.fake.fake_model import tool_call_id
from agent_runtime.fake.provider_app import (
    DEFAULT_MODELS,
    create_fake_provider_app,
    requested_delay_ms,
)
from tests.fake.provider_clients import (
    BASE_URL,
    CURRENT_TIME,
    asgi_http,
    ask,
    fake_settings,
    openai_client,
)
from tests.servers import served
from tests.tool_specs import CALCULATOR

# --- plain answers ---------------------------------------------------------------------


async def test_echo_reply_with_usage_and_deterministic_id() -> None:
    async with openai_client(fake_settings()) as client:
        first = await ask(client, "hello there", model="my-invented-model")
        second = await ask(client, "hello there", model="my-invented-model")
    text = "[my-invented-model] You said: hello there"
    assert first.choices[0].message.content == text
    assert first.choices[0].message.role == "assistant"
    assert first.choices[0].finish_reason == "stop"
    assert first.model == "my-invented-model"
    assert first.id.startswith("chatcmpl-")
    assert first.id == second.id
    assert first.usage is not None
    assert first.usage.prompt_tokens == math.ceil(len("hello there") / 4)
    assert first.usage.completion_tokens == math.ceil(len(text) / 4)
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("My javascript function has a bug", "code"),
        ("Show a chart of the monthly statistics", "analysis"),
        ("Recommend a good novel", "general"),
    ],
)
async def test_classification(text: str, label: str) -> None:
    messages = [
        {"role": "system", "content": "You CLASSIFY requests: code, analysis or general."},
        {"role": "user", "content": text},
    ]
    async with openai_client(fake_settings()) as client:
        reply = await client.chat.completions.create(model="fake-fast", messages=messages)
    assert reply.choices[0].message.content == label


async def test_models_lists_defaults_and_configured_models() -> None:
    settings = fake_settings(failing_models=["broken"], hanging_models=["stuck", "fake-fast"])
    async with openai_client(settings) as client:
        page = await client.models.list()
    assert [model.id for model in page.data] == [*DEFAULT_MODELS, "broken", "stuck"]
    assert all(model.object == "model" for model in page.data)


# --- tools -----------------------------------------------------------------------------


async def test_calculator_tool_call_then_tool_result() -> None:
    question = "what is 2 + 3 * 4?"
    async with openai_client(fake_settings()) as client:
        reply = await ask(client, question, tools=[CURRENT_TIME, CALCULATOR])
        choice = reply.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.content is None
        (call,) = choice.message.tool_calls or []
        assert call.type == "function"
        assert call.function.name == "calculator"
        assert json.loads(call.function.arguments) == {"expression": "2 + 3 * 4"}
        assert call.id == tool_call_id("fake-fast", question, "calculator")

        result = str(evaluate(json.loads(call.function.arguments)["expression"]))
        follow_up = await client.chat.completions.create(
            model="fake-fast",
            messages=[
                {"role": "user", "content": question},
                choice.message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": result},
            ],
            tools=[CURRENT_TIME, CALCULATOR],
        )
    assert result == "14"
    assert follow_up.choices[0].message.content == "Tool result: 14"
    assert follow_up.choices[0].finish_reason == "stop"


async def test_current_time_tool_call() -> None:
    async with openai_client(fake_settings()) as client:
        reply = await ask(client, "What is the date today?", tools=[CALCULATOR, CURRENT_TIME])
    (call,) = reply.choices[0].message.tool_calls or []
    assert call.function.name == "current_time"
    assert json.loads(call.function.arguments) == {}
    assert reply.choices[0].finish_reason == "tool_calls"


# --- faults ----------------------------------------------------------------------------


async def test_failing_model_answers_500_with_an_openai_error_body() -> None:
    async with openai_client(fake_settings(failing_models=["fake-smart"])) as client:
        with pytest.raises(openai.InternalServerError) as failed:
            await ask(client, "hi", model="fake-smart")
        with pytest.raises(openai.InternalServerError):
            await ask(client, "hi", model="fake-smart", stream=True)
        working = await ask(client, "hi", model="fake-fast")
    assert failed.value.status_code == 500
    assert isinstance(failed.value.body, dict)
    assert failed.value.body["type"] == "server_error"
    assert "fake-smart" in failed.value.body["message"]
    assert working.choices[0].message.content == "[fake-fast] You said: hi"


async def test_429_carries_retry_after() -> None:
    settings = fake_settings(failing_models=["fake-fast"], fail_status=429)
    async with openai_client(settings) as client:
        with pytest.raises(openai.RateLimitError) as limited:
            await ask(client, "hi")
    assert limited.value.status_code == 429
    assert limited.value.response.headers["retry-after"] == "1"
    assert limited.value.code == "rate_limit_exceeded"


async def test_fail_rate_one_fails_every_call() -> None:
    async with openai_client(fake_settings(fail_rate=1.0, fail_status=503)) as client:
        for model in ("fake-fast", "fake-smart", "anything"):
            with pytest.raises(openai.InternalServerError) as failed:
                await ask(client, "hi", model=model)
            assert failed.value.status_code == 503


async def test_fail_rate_is_reproducible_from_the_seed() -> None:
    async def outcomes() -> list[bool]:
        results = []
        async with openai_client(fake_settings(fail_rate=0.5, seed=7)) as client:
            for _ in range(20):
                try:
                    await ask(client, "hi")
                    results.append(True)
                except openai.InternalServerError:
                    results.append(False)
        return results

    first = await outcomes()
    assert first == await outcomes()
    assert True in first and False in first


async def test_latency_is_applied() -> None:
    async with openai_client(fake_settings(latency_ms=150)) as client:
        started = time.perf_counter()
        await ask(client, "slow")
        elapsed = time.perf_counter() - started
    assert elapsed >= 0.15 - 0.002


async def test_a_request_can_ask_for_its_own_delay() -> None:
    async with openai_client(fake_settings(latency_ms=0)) as client:
        started = time.perf_counter()
        await ask(client, "take your time [delay:200]")
        assert time.perf_counter() - started >= 0.2 - 0.002


@pytest.mark.parametrize(
    ("content", "expected"),
    [("no directive", 0.0), ("x [delay:25] y", 25.0), ("[delay:999999]", 60_000.0)],
)
def test_requested_delay_reads_the_last_user_message(content: str, expected: float) -> None:
    messages = [
        {"role": "user", "content": "[delay:5000]"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": content},
    ]
    assert requested_delay_ms(messages) == expected


async def test_hanging_model_makes_the_client_time_out() -> None:
    app = create_fake_provider_app(fake_settings(hanging_models=["fake-stuck"]))
    async with served(app) as base_url:
        client = openai.AsyncOpenAI(api_key="k", base_url=base_url, max_retries=0, timeout=0.2)
        async with client:
            started = time.perf_counter()
            with pytest.raises(openai.APITimeoutError):
                await ask(client, "hello?", model="fake-stuck")
            elapsed = time.perf_counter() - started
            # The same server still answers other models.
            reply = await ask(client, "still there?", model="fake-fast")
    assert 0.2 <= elapsed < 30
    assert reply.choices[0].message.content == "[fake-fast] You said: still there?"


# --- ChatOpenAI ------------------------------------------------------------------------


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression."""
    return str(evaluate(expression))


@tool
def current_time() -> str:
    """The current time, ISO 8601."""
    return time.strftime("%Y-%m-%dT%H:%M:%S")


@asynccontextmanager
async def chat_model(model: str = "fake-smart") -> AsyncIterator[ChatOpenAI]:
    async with asgi_http(create_fake_provider_app(fake_settings())) as http:
        yield ChatOpenAI(
            model=model,
            base_url=BASE_URL,
            api_key=SecretStr("test-key"),
            http_async_client=http,
            max_retries=0,
            stream_usage=True,
        )


async def test_chat_openai_tool_call_round_trip() -> None:
    question = HumanMessage("what is 2 + 3 * 4?")
    async with chat_model() as llm:
        bound = llm.bind_tools([calculator, current_time])
        ai = await bound.ainvoke([question])
        assert isinstance(ai, AIMessage)
        (call,) = ai.tool_calls
        assert call["name"] == "calculator"
        assert call["args"] == {"expression": "2 + 3 * 4"}
        tool_message = await calculator.ainvoke(call)
        assert isinstance(tool_message, ToolMessage)
        final = await bound.ainvoke([question, ai, tool_message])
    assert final.content == "Tool result: 14"
    assert final.usage_metadata is not None
    assert final.usage_metadata["input_tokens"] >= 1
    assert final.response_metadata["model_name"] == "fake-smart"


async def test_chat_openai_streaming_text_and_tool_call() -> None:
    messages = [HumanMessage("tell me something")]
    async with chat_model() as llm:
        plain = await llm.ainvoke(messages)
        chunks = [chunk async for chunk in llm.astream(messages)]
        tool_chunks = [
            chunk async for chunk in llm.bind_tools([current_time]).astream([HumanMessage("time?")])
        ]
    assert len(chunks) > 2
    merged = functools.reduce(operator.add, chunks)
    assert isinstance(merged, AIMessageChunk)
    assert merged.content == plain.content == "[fake-smart] You said: tell me something"
    assert merged.usage_metadata == plain.usage_metadata
    tool_merged = functools.reduce(operator.add, tool_chunks)
    assert isinstance(tool_merged, AIMessageChunk)
    assert [c["name"] for c in tool_merged.tool_calls] == ["current_time"]
    assert tool_merged.tool_calls[0]["args"] == {}


# --- helpers ---------------------------------------------------------------------------

_OPERATORS: dict[type[ast.AST], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.Mod: operator.mod,
}


def evaluate(expression: str) -> float | int:
    """A tiny arithmetic evaluator for the test's calculator tool (no ``eval``)."""

    def walk(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        raise ValueError(f"not arithmetic: {expression!r}")

    result: float | int = walk(ast.parse(expression, mode="eval"))
    return result
