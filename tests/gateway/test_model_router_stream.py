"""Streamed answers through the router: failover before the first token, partial answers
after it, first-token and idle timeouts, and what the chat model and observers see."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.messages import AIMessageChunk, ChatMessage, HumanMessage

from agent_runtime.config.fault_profiles import FaultProfile
from agent_runtime.core import timing
from agent_runtime.core.errors import (
    ProviderChainExhausted,
    ProviderError,
    ProviderRejected,
    StreamInterrupted,
)
from agent_runtime.core.types import ChatRequest
from agent_runtime.execution.chat_model import RouterChatModel
from agent_runtime.gateway.model_router_stream import PARTIAL_KEY, STREAM_SUMMARY_KEY, StreamSummary
from tests.gateway.router_harness import ASGIApp, ask, collect, fake, faulty, harness
from tests.servers import served
from tests.tool_specs import CALCULATOR


def summary_of(chunks: list[AIMessageChunk]) -> StreamSummary:
    return StreamSummary.model_validate(chunks[-1].response_metadata[STREAM_SUMMARY_KEY])


async def test_streaming_answer_arrives_in_chunks_with_a_summary() -> None:
    async with harness(fake()) as h:
        chunks, text = await collect(h.router.stream(ask("hello streaming world")))

    assert text == "[fake-smart] You said: hello streaming world"
    assert sum(1 for chunk in chunks if chunk.text) > 1
    assert chunks[0].response_metadata["model_name"] == "fake-smart"
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert merged.usage_metadata is not None
    assert merged.usage_metadata["output_tokens"] > 0
    assert merged.response_metadata["model_name"] == "fake-smart", "named once, not repeated"
    assert merged.response_metadata["finish_reason"] == "stop"
    summary = summary_of(chunks)
    assert summary.model == "fake-smart"
    assert not summary.partial
    assert [(a.model, a.outcome) for a in summary.attempts] == [("fake-smart", "ok")]
    assert 0 < summary.provider_ms <= summary.router_ms
    report = h.report
    assert (report.outcome, report.model) == ("ok", "fake-smart")
    assert report.usage.output_tokens == merged.usage_metadata["output_tokens"]
    assert h.recorder.plans[0].stream
    assert h.bodies[0]["stream_options"] == {"include_usage": True}


async def test_streaming_tool_call() -> None:
    async with harness(fake()) as h:
        chunks, _ = await collect(
            h.router.stream(ask("what is 6 * 7?", tools=[CALCULATOR], tool_choice="calculator"))
        )
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert [(c["name"], c["args"]) for c in merged.tool_calls] == [
        ("calculator", {"expression": "6 * 7"})
    ]


async def test_stream_fails_over_before_the_first_chunk() -> None:
    async with harness(fake(failing_models=["fake-smart"])) as h:
        chunks, text = await collect(h.router.stream(ask("hello")))

    assert text == "[fake-fallback] You said: hello"
    assert chunks[0].response_metadata["model_name"] == "fake-fallback"
    summary = summary_of(chunks)
    assert summary.model == "fake-fallback"
    assert [(a.model, a.outcome) for a in summary.attempts] == [
        ("fake-smart", "error"),
        ("fake-fallback", "ok"),
    ]
    assert h.hits == {"fake-smart": 1, "fake-fallback": 1}


async def test_stream_from_a_hanging_model_fails_over() -> None:
    async with harness(fake(hanging_models=["fake-hang"]), provider_timeout_s=0.3) as h:
        chunks, text = await collect(h.router.stream(ask("hello", alias="hang")))
    assert text == "[fake-fallback] You said: hello"
    assert summary_of(chunks).attempts[0].error == "no first token within 0.3 s"


async def test_a_slow_first_token_fails_over_unseen() -> None:
    app = faulty(fake_smart=FaultProfile(first_token_delay_ms=2_000))
    async with (
        served(app) as url,
        harness(app, base_url=url, transport=False, provider_timeout_s=0.3) as h,
    ):
        chunks, text = await collect(h.router.stream(ask("hello")))
    assert text == "[fake-fallback] You said: hello"
    assert [(a.model, a.outcome) for a in summary_of(chunks).attempts] == [
        ("fake-smart", "error"),
        ("fake-fallback", "ok"),
    ]
    assert h.breakers.get("fake-smart").fail_counter == 1, "a stalled provider counts"


async def test_stream_rejected_and_exhausted() -> None:
    async with harness(fake(failing_models=["fake-smart", "fake-fallback"])) as h:
        bad = ChatRequest(alias="smart", messages=[ChatMessage(role="wizard", content="x")])
        with pytest.raises(ProviderRejected):
            await collect(h.router.stream(bad))
        with pytest.raises(ProviderChainExhausted) as raised:
            await collect(h.router.stream(ask("hello")))
    assert raised.value.attempts == ["fake-smart: HTTP 500", "fake-fallback: HTTP 500"]
    assert [r.outcome for r in h.recorder.reports] == ["rejected", "error"]


@pytest.mark.parametrize(
    "fault",
    [
        FaultProfile(cut_after_chunks=2),  # the connection drops mid-answer
        FaultProfile(inter_token_delay_ms=5_000),  # the provider goes silent mid-answer
    ],
    ids=["drop", "stall"],
)
async def test_a_failure_after_the_first_token_ends_the_answer_as_partial(
    fault: FaultProfile,
) -> None:
    app = faulty(fake_smart=fault)
    async with (
        served(app) as url,
        harness(app, base_url=url, transport=False, provider_timeout_s=0.5) as h,
    ):
        received: list[AIMessageChunk] = []
        with pytest.raises(StreamInterrupted) as raised:
            async for chunk in h.router.stream(ask("hello there, long answer")):
                received.append(chunk)

    text = "".join(chunk.text for chunk in received)
    assert text, "the first tokens were delivered before the failure"
    assert text != "[fake-smart] You said: hello there, long answer"
    last = received[-1]
    assert last.response_metadata[PARTIAL_KEY] is True
    summary = StreamSummary.model_validate(last.response_metadata[STREAM_SUMMARY_KEY])
    assert (summary.model, summary.partial) == ("fake-smart", True)
    assert [a.outcome for a in summary.attempts] == ["partial"]
    error = raised.value
    assert isinstance(error, ProviderError)
    assert error.model == "fake-smart"
    assert "broke off" in error.message
    assert error.details["partial"] is True
    assert h.hits == {"fake-smart": 1}, "a started answer is not replayed on another model"
    assert h.breakers.get("fake-smart").fail_counter == 1
    assert (h.report.outcome, h.report.model) == ("partial", "fake-smart")


async def test_a_caller_leaving_mid_stream_is_reported_cancelled() -> None:
    async with harness(fake()) as h:
        stream = h.router.stream(ask("hello there"))
        first = await anext(stream)  # type: ignore[call-overload]
        assert first.text
        await stream.aclose()  # type: ignore[attr-defined]
        assert h.breakers.get("fake-smart").fail_counter == 0
    assert h.report.outcome == "cancelled"


async def test_the_chat_model_marks_a_partial_answer_then_raises() -> None:
    app = faulty(fake_smart=FaultProfile(cut_after_chunks=2))
    async with served(app) as url, harness(app, base_url=url, transport=False) as h:
        model = RouterChatModel(alias="smart", call=h.router.chat, stream_call=h.router.stream)
        seen: list[Any] = []
        with timing.track_run(), pytest.raises(StreamInterrupted):
            async for chunk in model.astream([HumanMessage("hello there, long answer")]):
                seen.append(chunk)
    assert seen[-1].response_metadata[PARTIAL_KEY] is True
    assert any(chunk.text for chunk in seen)


def ends_early_for(model: str, app: ASGIApp) -> ASGIApp:
    """``model``'s streams end at once, with neither an event nor ``[DONE]``."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        message = await receive()
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return message

        if json.loads(message["body"] or b"{}").get("model") == model:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await app(scope, replay, send)

    return wrapped


async def test_a_stream_ending_before_any_token_fails_over() -> None:
    async with harness(ends_early_for("fake-smart", fake())) as h:
        chunks, text = await collect(h.router.stream(ask("hello")))
    assert text == "[fake-fallback] You said: hello"
    assert summary_of(chunks).attempts[0].error == "the stream ended before [DONE]"
