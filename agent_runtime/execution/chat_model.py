"""The LangChain chat model graphs use: every call goes to the model router.

Graphs never talk to a provider. :class:`RouterChatModel` turns LangChain's call into a
:class:`~agent_runtime.core.types.ChatRequest` and hands it to ``call`` (in the service, a function
that calls the router deployment through a Ray handle; in tests, ``ModelRouter.chat``).
It supports ``bind_tools`` the way ``ChatOpenAI`` does, so LangGraph's ``ToolNode`` works,
and streams through ``stream_call`` when one is given. A model made without calls (what
``runtime_model`` in :mod:`~agent_runtime.execution.graph_registry` makes, for graphs
loaded from a ``langgraph.json``) uses the router of the run in progress, which the
orchestrator sets around each run with :func:`router_calls`. Each call adds its timings, tokens
and model to the run's :class:`~agent_runtime.core.timing.RunTimings`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk
from langchain_core.outputs import ChatResult as LCChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field

from agent_runtime.core import timing
from agent_runtime.core.types import ChatRequest, ChatResult, TokenUsage
from agent_runtime.gateway.model_router_stream import PARTIAL_KEY, STREAM_SUMMARY_KEY, StreamSummary

ChatCall = Callable[[ChatRequest], Awaitable[ChatResult]]
StreamCall = Callable[[ChatRequest], AsyncIterator[AIMessageChunk]]


@dataclass(frozen=True)
class RouterCalls:
    """How this process reaches the model router: one call, and a stream if it can."""

    chat: ChatCall
    stream: StreamCall | None = None
    # The loop the calls run on, for clients called from a worker thread (sync nodes).
    loop: asyncio.AbstractEventLoop | None = None


_CURRENT_ROUTER: ContextVar[RouterCalls | None] = ContextVar(
    "agent_runtime_router_calls", default=None
)
NO_ROUTER = (
    "this chat model reaches the runtime's model router, which exists only while the runtime "
    "runs the graph (agent-runtime serve); to run the graph elsewhere, build it with a chat "
    "model of your own"
)


@contextmanager
def router_calls(calls: RouterCalls) -> Iterator[None]:
    """Within the block, models made without calls use ``calls``."""
    token = _CURRENT_ROUTER.set(calls)
    try:
        yield
    finally:
        _CURRENT_ROUTER.reset(token)


def current_router() -> RouterCalls:
    calls = _CURRENT_ROUTER.get()
    if calls is None:
        raise RuntimeError(NO_ROUTER)
    return calls


# Call options a ChatRequest carries; "stream" is LangChain's own switch, read before us.
_REQUEST_OPTIONS = frozenset({"tools", "tool_choice", "temperature", "max_tokens", "stream"})


def _tool_choice(
    choice: dict[str, Any] | str | bool, tool_names: list[str]
) -> dict[str, Any] | str:
    """OpenAI's ``tool_choice`` from the forms ``ChatOpenAI.bind_tools`` accepts."""
    if isinstance(choice, bool):
        return "required"
    if isinstance(choice, str):
        if choice in tool_names:
            return {"type": "function", "function": {"name": choice}}
        return "required" if choice == "any" else choice
    return choice


def _as_chunk(message: AIMessage) -> AIMessageChunk:
    return AIMessageChunk(
        content=message.content,
        id=message.id,
        additional_kwargs=message.additional_kwargs,
        response_metadata=message.response_metadata,
        usage_metadata=message.usage_metadata,
        tool_call_chunks=[
            tool_call_chunk(
                name=call["name"], args=json.dumps(call["args"]), id=call["id"], index=index
            )
            for index, call in enumerate(message.tool_calls)
        ],
    )


def record_call(model: str, router_ms: float, provider_ms: float, usage: TokenUsage) -> None:
    timing.record("router_ms", router_ms)
    timing.record("provider_ms", provider_ms)
    timings = timing.current()
    if timings is not None:
        timings.llm_calls += 1
        timings.input_tokens += usage.input_tokens
        timings.output_tokens += usage.output_tokens
        timings.models.append(model)


class RouterChatModel(BaseChatModel):
    """A chat model whose every call is a :class:`ChatRequest` to the model router."""

    alias: str = Field(description="Model alias (fallback chain) or provider model name.")
    call: ChatCall | None = Field(
        default=None,
        exclude=True,
        description="Sends a request to the router; None: the router of the run in progress.",
    )
    stream_call: StreamCall | None = Field(
        default=None, exclude=True, description="Streams a request through the router."
    )
    tenant_id: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None

    @property
    def _llm_type(self) -> str:
        return "agent-runtime-router"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "alias": self.alias,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: dict[str, Any] | str | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools as OpenAI tool schemas; ``tool_choice`` as in ``ChatOpenAI``."""
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        if tool_choice is not None and tool_choice is not False:
            names = [tool["function"]["name"] for tool in formatted if "function" in tool]
            kwargs["tool_choice"] = _tool_choice(tool_choice, names)
        return self.bind(tools=formatted, **kwargs)

    def _request(
        self, messages: list[BaseMessage], stop: list[str] | None, options: dict[str, Any]
    ) -> ChatRequest:
        unknown = set(options) - _REQUEST_OPTIONS
        if unknown:
            raise TypeError(f"RouterChatModel does not support the options {sorted(unknown)}")
        temperature = options.get("temperature")
        max_tokens = options.get("max_tokens")
        return ChatRequest(
            alias=self.alias,
            messages=messages,
            tools=options.get("tools") or [],
            tool_choice=options.get("tool_choice"),
            temperature=self.temperature if temperature is None else temperature,
            max_tokens=self.max_tokens if max_tokens is None else max_tokens,
            stop=stop,
            tenant_id=self.tenant_id,
        )

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> LCChatResult:
        request = self._request(messages, stop, kwargs)
        started = time.perf_counter()
        call = self.call or current_router().chat
        result = await call(request)
        # Seen from here, router time includes the hop to the router (a Ray handle call).
        router_ms = (time.perf_counter() - started) * 1000
        record_call(result.model, router_ms, result.provider_ms, result.usage)
        message = result.message.model_copy(
            update={
                "response_metadata": {
                    **result.message.response_metadata,
                    "model_name": result.model,
                    "attempts": [attempt.model_dump() for attempt in result.attempts],
                    "cost_usd": result.cost_usd,
                }
            }
        )
        return LCChatResult(
            generations=[ChatGeneration(message=message)],
            llm_output={
                "model_name": result.model,
                "token_usage": {
                    "prompt_tokens": result.usage.input_tokens,
                    "completion_tokens": result.usage.output_tokens,
                    "total_tokens": result.usage.total_tokens,
                },
            },
        )

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        stream_call = self.stream_call if self.call is not None else current_router().stream
        if stream_call is None:
            # No streaming path to the router: the whole answer as one chunk.
            result = await self._agenerate(messages, stop, run_manager, **kwargs)
            message = result.generations[0].message
            if not isinstance(message, AIMessage):
                raise TypeError(
                    f"the router answered a {type(message).__name__}, not an AI message"
                )
            yield ChatGenerationChunk(message=_as_chunk(message))
            return
        request = self._request(messages, stop, kwargs)
        started = time.perf_counter()
        usage = TokenUsage()
        summary: StreamSummary | None = None
        async for chunk in stream_call(request):
            if chunk.usage_metadata is not None:
                usage.input_tokens += chunk.usage_metadata["input_tokens"]
                usage.output_tokens += chunk.usage_metadata["output_tokens"]
            raw_summary = chunk.response_metadata.get(STREAM_SUMMARY_KEY)
            if raw_summary is None:
                # Without the router's own run id, LangChain gives every chunk this run's.
                yield ChatGenerationChunk(message=chunk.model_copy(update={"id": None}))
                continue
            summary = StreamSummary.model_validate(raw_summary)
            # Same metadata as a non-streamed answer: the attempts, not router internals.
            attempts = [attempt.model_dump() for attempt in summary.attempts]
            # (model_name came with the provider's chunks; merged chunks would repeat it)
            metadata: dict[str, Any] = {"attempts": attempts, "cost_usd": summary.cost_usd}
            if summary.partial:
                # The stream broke off after it began: the router raises next.
                metadata[PARTIAL_KEY] = True
            yield ChatGenerationChunk(
                message=AIMessageChunk(content="", response_metadata=metadata)
            )
        if summary is not None:
            router_ms = (time.perf_counter() - started) * 1000
            record_call(summary.model, router_ms, summary.provider_ms, usage)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> LCChatResult:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            # Sync caller with no event loop (a script, a REPL): run the async path.
            return asyncio.run(self._agenerate(messages, stop, None, **kwargs))
        raise TypeError(
            "RouterChatModel called synchronously inside a running event loop; "
            "use the async API (ainvoke / astream) instead"
        )
