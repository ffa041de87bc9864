"""Streamed answers of the model router: one model's stream and the summary that ends it.

A failure before the first token moves to the next model unseen (chunks are held back until
the first one with content); a failure after it ends the stream with a last chunk whose
``response_metadata["partial"]`` is true, then
:class:`~agent_runtime.core.errors.StreamInterrupted`. The last chunk of every stream carries a
:class:`StreamSummary` under ``response_metadata["router"]``. The chain itself is walked by
:meth:`agent_runtime.gateway.model_router.ModelRouter.stream`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from typing import Any

from langchain_core.messages import AIMessageChunk
from pydantic import BaseModel

from agent_runtime.core.errors import (
    CircuitOpen,
    ProviderError,
    ProviderRejected,
    StreamInterrupted,
)
from agent_runtime.core.types import Attempt, ChatRequest, TokenUsage
from agent_runtime.gateway.breakers import Breakers, ErrorFilter, guarded
from agent_runtime.gateway.chain_progress import (
    ChainProgress,
    Sleep,
    elapsed_ms,
    failure_reason,
    retry_wait,
    usd,
)
from agent_runtime.gateway.chains import Route

# response_metadata key of the last chunk of :meth:`ModelRouter.stream` (a StreamSummary).
STREAM_SUMMARY_KEY = "router"
PARTIAL_KEY = "partial"


class StreamSummary(BaseModel):
    """What :meth:`ModelRouter.stream` reports in its last chunk, for timing and metrics."""

    model: str
    provider_ms: float
    router_ms: float
    attempts: list[Attempt]
    partial: bool = False
    cost_usd: float | None = None  # at the answering model's price (None: unpriced)


def stream_summary(progress: ChainProgress, partial: bool = False) -> AIMessageChunk:
    """The last chunk of a stream: its :class:`StreamSummary`, and whether it is partial."""
    summary = StreamSummary(
        model=progress.model or progress.alias,
        provider_ms=progress.provider_ms,
        router_ms=elapsed_ms(progress.started),
        attempts=progress.attempts,
        partial=partial,
        cost_usd=usd(progress.report("partial" if partial else "ok").cost_usd),
    )
    metadata: dict[str, object] = {STREAM_SUMMARY_KEY: summary.model_dump()}
    if partial:
        metadata[PARTIAL_KEY] = True
    return AIMessageChunk(content="", response_metadata=metadata)


async def stream_model(
    route: Route,
    request: ChatRequest,
    progress: ChainProgress,
    *,
    breakers: Breakers,
    counts: ErrorFilter,
    sleep: Sleep,
    jitter: Callable[[], float],
) -> AsyncGenerator[AIMessageChunk, None]:
    """One model's streamed answer, retried by its policy; every try is recorded in ``progress``."""
    name, client, timeouts = route.name, route.client, route.timeouts
    breaker = breakers.get(name)
    body: dict[str, Any] | None = None
    for retry in range(route.retry.max_retries + 1):
        remaining = progress.deadline - time.perf_counter()
        if remaining <= 0:
            progress.skip(name, "deadline", "request deadline exceeded")
            return
        if breaker.refuses_calls():
            progress.skip(name, "circuit_open", "circuit open")
            return
        if body is None:
            body = client.payload(route.model_id, request, route.max_tokens(request), True)
        call_started = time.perf_counter()
        usage = TokenUsage()
        held: list[AIMessageChunk] = []  # chunks before the first token
        started = False
        try:
            async with (
                guarded(breaker, counts=counts),
                aclosing(
                    client.stream(
                        route.model_id,
                        body,
                        first_token_s=min(timeouts.first_token_s, remaining),
                        idle_s=timeouts.idle_s,
                    )
                ) as chunks,
            ):
                async for chunk in chunks:
                    if chunk.usage_metadata is not None:
                        usage.input_tokens += chunk.usage_metadata["input_tokens"]
                        usage.output_tokens += chunk.usage_metadata["output_tokens"]
                    if started:
                        yield chunk
                        continue
                    held.append(chunk)
                    if chunk.content or chunk.tool_call_chunks:
                        started = True
                        progress.first_token_ms = elapsed_ms(progress.started)
                        for early in _named(held, name):
                            yield early
                        held = []
                for early in _named(held, name):
                    yield early  # an answer without a token (empty): still an answer
        except CircuitOpen:
            progress.skip(name, "circuit_open", "circuit open")
            return
        except ProviderRejected as exc:
            progress.record(name, "rejected", exc.message, elapsed_ms(call_started))
            raise
        except ProviderError as exc:
            if started:
                progress.record(name, "partial", exc.message, elapsed_ms(call_started))
                progress.model, progress.usage, progress.route = name, usage, route
                raise StreamInterrupted(
                    f"the answer from {name!r} broke off after it began: {exc.message}",
                    model=name,
                    status=exc.status,
                ) from exc
            progress.record(name, "error", exc.message, elapsed_ms(call_started))
            wait_s = retry_wait(route.retry, exc, retry, progress.deadline, jitter)
            if wait_s is None:
                progress.failures.append(f"{name}: {failure_reason(exc)}")
                return
            await sleep(wait_s)
            continue
        progress.record(name, "ok", None, elapsed_ms(call_started))
        progress.model, progress.usage, progress.route = name, usage, route
        return


def _named(chunks: list[AIMessageChunk], model: str) -> list[AIMessageChunk]:
    """The first chunk names the model that answers (once: LangChain concatenates strings)."""
    if chunks:
        chunks[0].response_metadata["model_name"] = model
    return chunks
