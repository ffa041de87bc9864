"""OpenAI Chat Completions wire format <-> the router's ``ChatRequest`` / ``ChatResult``.

Framework-free: the ingress's ``/v1`` routes validate the body with
:class:`ChatCompletionRequest`, hand :func:`to_chat_request` to the router, and turn what
comes back into OpenAI JSON with :func:`completion_response` (one answer) or a
:class:`ChunkEncoder` + :func:`sse_stream` (streamed answer). Errors leave in OpenAI's
``{"error": {"message", "type", "param", "code"}}`` shape, which OpenAI clients read.

The pydantic models live in :mod:`agent_runtime.protocol.openai_wire`; they are re-exported here so
callers need one import.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, cast

from langchain_core.messages import AIMessage, AIMessageChunk, AnyMessage, convert_to_messages
from pydantic import BaseModel

from agent_runtime.core.errors import AgentRuntimeError, http_status
from agent_runtime.core.types import ChatRequest, ChatResult
from agent_runtime.gateway.model_router_stream import STREAM_SUMMARY_KEY, StreamSummary
from agent_runtime.protocol.openai_wire import (
    MAX_STOP_SEQUENCES,
    MODELS_CREATED,
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    CompletionMessage,
    ContentPart,
    Delta,
    DeltaFunction,
    DeltaToolCall,
    ErrorBody,
    ErrorDetail,
    FinishReason,
    FunctionCall,
    FunctionSpec,
    ImagePart,
    ImageUrl,
    Message,
    ModelCard,
    ModelList,
    NamedFunction,
    NamedToolChoice,
    OutFunction,
    OutToolCall,
    StreamOptions,
    SystemMessage,
    TextPart,
    ToolCall,
    ToolMessage,
    ToolSpec,
    Usage,
    UserMessage,
)

__all__ = [
    "DONE",
    "MAX_STOP_SEQUENCES",
    "MODELS_CREATED",
    "ROLES",
    "AssistantMessage",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "Choice",
    "ChunkChoice",
    "ChunkEncoder",
    "CompletionMessage",
    "ContentPart",
    "Delta",
    "DeltaFunction",
    "DeltaToolCall",
    "ErrorBody",
    "ErrorDetail",
    "FinishReason",
    "FunctionCall",
    "FunctionSpec",
    "ImagePart",
    "ImageUrl",
    "Message",
    "ModelCard",
    "ModelList",
    "NamedFunction",
    "NamedToolChoice",
    "OutFunction",
    "OutToolCall",
    "StreamOptions",
    "SystemMessage",
    "TextPart",
    "ToolCall",
    "ToolMessage",
    "ToolSpec",
    "Usage",
    "UserMessage",
    "completion_response",
    "error_body",
    "error_type",
    "field_path",
    "models_response",
    "new_completion_id",
    "runtime_error_body",
    "sse",
    "sse_stream",
    "to_chat_request",
    "validation_error_body",
]

logger = logging.getLogger("agent_runtime.openai")

ROLES = ("system", "developer", "user", "assistant", "tool")
DONE = b"data: [DONE]\n\n"

# -- request ---------------------------------------------------------------------------


def to_chat_request(
    body: ChatCompletionRequest, tenant_id: str | None = None, key_id: str | None = None
) -> ChatRequest:
    """The router's request for a validated OpenAI body."""
    wire: list[dict[str, Any]] = []
    for message in body.messages:
        item = message.model_dump(exclude_none=True)
        if isinstance(message, AssistantMessage) and message.content is None:
            item["content"] = ""  # LangChain messages need content; OpenAI allows none
        wire.append(item)
    stop = [body.stop] if isinstance(body.stop, str) else body.stop
    choice = body.tool_choice
    return ChatRequest(
        alias=body.model,
        messages=cast(list[AnyMessage], convert_to_messages(wire)),
        tools=[tool.model_dump(exclude_none=True) for tool in body.tools or []],
        tool_choice=choice.model_dump() if isinstance(choice, NamedToolChoice) else choice,
        temperature=body.temperature,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        stop=stop,
        tenant_id=tenant_id,
        key_id=key_id,
    )


# -- response --------------------------------------------------------------------------


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def _tool_calls(message: AIMessage) -> list[OutToolCall]:
    calls = [
        OutToolCall(
            id=call["id"] or f"call_{index}",
            function=OutFunction(name=call["name"], arguments=json.dumps(call["args"])),
        )
        for index, call in enumerate(message.tool_calls)
    ]
    # Arguments the provider sent but that are not JSON go back as they came.
    calls += [
        OutToolCall(
            id=call["id"] or f"call_{len(calls) + index}",
            function=OutFunction(name=call["name"] or "", arguments=call["args"] or ""),
        )
        for index, call in enumerate(message.invalid_tool_calls)
    ]
    return calls


def _finish_reason(reported: object, tool_calls: bool) -> FinishReason:
    if tool_calls:
        return "tool_calls"
    if reported == "length":
        return "length"
    if reported == "content_filter":
        return "content_filter"
    return "stop"


def completion_response(result: ChatResult, completion_id: str, created: int) -> ChatCompletion:
    """A ``chat.completion`` for the router's answer; ``model`` is the one that answered."""
    message = result.message
    calls = _tool_calls(message)
    text = message.text
    reported = message.response_metadata.get("finish_reason")
    return ChatCompletion(
        id=completion_id,
        created=created,
        model=result.model,
        choices=[
            Choice(
                message=CompletionMessage(
                    content=None if calls and not text else text, tool_calls=calls or None
                ),
                finish_reason=_finish_reason(reported, bool(calls)),
            )
        ],
        usage=Usage(
            prompt_tokens=result.usage.input_tokens,
            completion_tokens=result.usage.output_tokens,
            total_tokens=result.usage.total_tokens,
        ),
    )


# -- streaming -------------------------------------------------------------------------


class ChunkEncoder:
    """Turns the router's chunks into ``chat.completion.chunk`` payloads, in order.

    The first payload carries the role; the finish reason comes in a closing payload of
    its own (as OpenAI does), then the usage payload when the client asked for it.
    """

    def __init__(self, completion_id: str, created: int, model: str, include_usage: bool) -> None:
        self._id = completion_id
        self._created = created
        # The requested name until the provider names the model that answers.
        self.model = model
        self._include_usage = include_usage
        self._started = False
        self._tool_calls = False
        self._finish: object = None
        self._input_tokens = 0
        self._output_tokens = 0

    def _chunk(self, choices: list[ChunkChoice], usage: Usage | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=self._id, created=self._created, model=self.model, choices=choices, usage=usage
        )

    def _observe(self, chunk: AIMessageChunk) -> None:
        metadata = chunk.response_metadata
        summary = metadata.get(STREAM_SUMMARY_KEY)
        if summary is not None:
            self.model = StreamSummary.model_validate(summary).model
        elif metadata.get("model_name"):
            self.model = str(metadata["model_name"])
        if metadata.get("finish_reason"):
            self._finish = metadata["finish_reason"]
        if chunk.usage_metadata is not None:
            self._input_tokens += chunk.usage_metadata["input_tokens"]
            self._output_tokens += chunk.usage_metadata["output_tokens"]

    def encode(self, chunk: AIMessageChunk) -> list[ChatCompletionChunk]:
        self._observe(chunk)
        calls = [
            DeltaToolCall(
                index=call["index"] if call["index"] is not None else position,
                id=call["id"],
                type="function" if call["id"] else None,
                function=DeltaFunction(name=call["name"], arguments=call["args"] or ""),
            )
            for position, call in enumerate(chunk.tool_call_chunks)
        ]
        self._tool_calls = self._tool_calls or bool(calls)
        text = chunk.text
        if self._started and not text and not calls:
            return []  # usage or bookkeeping only: nothing for the client yet
        delta = Delta(
            role=None if self._started else "assistant",
            content=text if text or not calls else None,
            tool_calls=calls or None,
        )
        self._started = True
        return [self._chunk([ChunkChoice(delta=delta)])]

    def finish(self) -> list[ChatCompletionChunk]:
        delta = Delta() if self._started else Delta(role="assistant", content="")
        self._started = True
        reason = _finish_reason(self._finish, self._tool_calls)
        chunks = [self._chunk([ChunkChoice(delta=delta, finish_reason=reason)])]
        if self._include_usage:
            usage = Usage(
                prompt_tokens=self._input_tokens,
                completion_tokens=self._output_tokens,
                total_tokens=self._input_tokens + self._output_tokens,
            )
            chunks.append(self._chunk([], usage))
        return chunks


def sse(payload: BaseModel) -> bytes:
    return b"data: " + payload.model_dump_json().encode() + b"\n\n"


async def sse_stream(
    encoder: ChunkEncoder, chunks: AsyncIterator[AIMessageChunk]
) -> AsyncIterator[bytes]:
    """Server-sent events for a stream; a failure mid-way becomes a last ``error`` event.

    The HTTP status is already sent by then, so the error travels in the body, where
    OpenAI clients look for it (they raise on a ``data`` event holding ``error``).
    """
    try:
        async for chunk in chunks:
            for payload in encoder.encode(chunk):
                yield sse(payload)
    except AgentRuntimeError as error:
        yield sse(runtime_error_body(error))
        return
    except Exception as error:  # reported to the client in the stream, by type only
        logger.error("stream of a chat completion failed: %s", type(error).__name__)
        yield sse(error_body("internal error while streaming the answer", 500, "internal_error"))
        return
    for payload in encoder.finish():
        yield sse(payload)
    yield DONE


# -- models ----------------------------------------------------------------------------


def models_response(aliases: Mapping[str, Sequence[str]], models: Sequence[str] = ()) -> ModelList:
    """The aliases (owned by the runtime), then every configured model, then any other model
    of the aliases' chains, each once."""
    cards = [ModelCard(id=alias, owned_by="agent-runtime") for alias in aliases]
    seen = set(aliases)
    for model in [*models, *(m for chain in aliases.values() for m in chain)]:
        if model not in seen:
            seen.add(model)
            cards.append(ModelCard(id=model, owned_by="provider"))
    return ModelList(data=cards)


# -- errors ----------------------------------------------------------------------------


def error_type(status: int) -> str:
    """OpenAI's error ``type`` for a status."""
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 402:
        return "insufficient_quota"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def error_body(message: str, status: int, code: str | None, param: str | None = None) -> ErrorBody:
    return ErrorBody(
        error=ErrorDetail(message=message, type=error_type(status), param=param, code=code)
    )


def runtime_error_body(error: AgentRuntimeError) -> ErrorBody:
    return error_body(error.message, http_status(error), error.code)


def field_path(loc: Sequence[int | str]) -> str:
    """``messages.0.content`` for a pydantic location (without FastAPI's ``body`` and the
    message union's role tag)."""
    parts = list(loc[1:] if loc and loc[0] == "body" else loc)
    keep: list[str] = []
    for index, part in enumerate(parts):
        tagged = index >= 2 and parts[index - 2] == "messages" and isinstance(parts[index - 1], int)
        if tagged and part in ROLES:
            continue
        keep.append(str(part))
    return ".".join(keep) or "body"


def validation_error_body(errors: Sequence[Mapping[str, Any]]) -> ErrorBody:
    """One 422 body for pydantic's errors: the message names each field, ``param`` the first."""
    fields = [
        # A JSON syntax error's location is a character offset, not a field.
        ("body", f"{e['msg']}: {e.get('ctx', {}).get('error', '')}".rstrip(": "))
        if e.get("type") == "json_invalid"
        else (field_path(tuple(e["loc"])), str(e["msg"]))
        for e in errors
    ]
    summary = "; ".join(f"{name}: {message}" for name, message in fields[:5])
    param = fields[0][0] if fields else None
    return error_body(f"invalid request: {summary}", 422, "invalid_request", param)
