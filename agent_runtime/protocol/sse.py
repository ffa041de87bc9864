"""JSON and server-sent events exactly as langgraph-api writes them.

An event is ``event: NAME\\r\\ndata: JSON\\r\\n[id: ID\\r\\n]\\r\\n``; the SDK's parser
(``langgraph_sdk.sse.SSEDecoder``) splits on any line ending and parses ``data`` as JSON.
A run's stream starts with a ``metadata`` event and simply ends when the response closes;
a failure is an ``error`` event whose data is ``{"error": ClassName, "message": text}``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime as dt
import decimal
import enum
import ipaddress
import math
import re
import uuid
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import PurePath
from typing import Any, Literal, cast

import orjson
from langchain_core.messages import (
    BaseMessage,
    BaseMessageChunk,
    convert_to_messages,
    message_chunk_to_message,
)
from langgraph.types import Interrupt
from langgraph.types import StreamMode as GraphStreamMode
from pydantic import TypeAdapter

SSE_MEDIA_TYPE = "text/event-stream"
# What sse_starlette sends as a keep-alive every few seconds; parsers skip comments.
HEARTBEAT = b": heartbeat\r\n\r\n"
HEARTBEAT_INTERVAL_S = 5.0
_SEP = b"\r\n"
_JSON_OPTIONS = (
    orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_PASSTHROUGH_DATACLASS
)
# Encoded as their str(); orjson has no native form for these.
_STR_TYPES = (
    uuid.UUID,
    PurePath,
    ipaddress.IPv4Address,
    ipaddress.IPv6Address,
    ipaddress.IPv4Network,
    ipaddress.IPv6Network,
)
# Modes LangGraph's astream understands; the others are produced by the server.
_GRAPH_MODES = frozenset(
    {"values", "updates", "checkpoints", "tasks", "debug", "messages", "custom"}
)


def interrupt_to_wire(interrupt: Any) -> dict[str, Any]:
    """An interrupt in a thread or a state: ``{"id", "value"}`` plus ``response_schema``
    only when the graph gave one."""
    if isinstance(interrupt, Interrupt):
        out: dict[str, Any] = {"id": interrupt.id, "value": to_jsonable(interrupt.value)}
        schema = interrupt.response_schema
        if isinstance(schema, type):
            schema = TypeAdapter(schema).json_schema()
        if schema is not None:
            out["response_schema"] = to_jsonable(schema)
        return out
    return cast(dict[str, Any], to_jsonable(interrupt))


def interrupt_as_event(interrupt: Interrupt) -> dict[str, Any]:
    """An interrupt inside a stream event or a wait body: the dataclass's own fields, as
    langgraph-api encodes it there (``response_schema`` included, null when unset)."""
    schema = interrupt.response_schema
    if isinstance(schema, type):
        schema = TypeAdapter(schema).json_schema()
    return {
        "value": to_jsonable(interrupt.value),
        "id": interrupt.id,
        "response_schema": to_jsonable(schema),
    }


def checkpoint_from_config(config: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The wire ``Checkpoint`` of a RunnableConfig, or None without a checkpoint id."""
    conf = (config or {}).get("configurable") or {}
    if not conf.get("thread_id") or not conf.get("checkpoint_id"):
        return None
    out = {"checkpoint_id": conf["checkpoint_id"], "thread_id": conf["thread_id"]}
    if "checkpoint_ns" in conf:
        out["checkpoint_ns"] = conf["checkpoint_ns"] or ""
    if "checkpoint_map" in conf:
        out["checkpoint_map"] = conf["checkpoint_map"]
    return out


def _convert(obj: Any) -> Any:
    """One step of langgraph-api's orjson ``default``; unknown types become None like there."""
    if isinstance(obj, Interrupt):
        return interrupt_as_event(obj)
    if hasattr(obj, "model_dump") and callable(obj.model_dump) and not isinstance(obj, type):
        return obj.model_dump()  # pydantic models, LangChain messages
    if hasattr(obj, "dict") and callable(obj.dict) and not isinstance(obj, type):
        return obj.dict()
    if hasattr(obj, "_asdict") and callable(obj._asdict):
        return obj._asdict()  # NamedTuple
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        # orjson's own dataclass encoding, which skips private fields
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.name[0] != "_"}
    if isinstance(obj, BaseException):
        return error_payload(obj)
    if isinstance(obj, set | frozenset | deque):
        return list(obj)
    if isinstance(obj, dt.tzinfo):
        return obj.tzname(None)
    if isinstance(obj, dt.timedelta):
        return obj.total_seconds()
    if isinstance(obj, decimal.Decimal):
        exponent = obj.as_tuple().exponent
        return int(obj) if isinstance(exponent, int) and exponent >= 0 else float(obj)
    if isinstance(obj, _STR_TYPES):
        return str(obj)
    if isinstance(obj, re.Pattern):
        return obj.pattern
    if isinstance(obj, bytes | bytearray):
        return base64.b64encode(obj).decode()
    if hasattr(obj, "tolist") and callable(obj.tolist):
        return obj.tolist()  # numpy; orjson encodes these natively
    return None


def _key(key: Any) -> str:
    if isinstance(key, enum.Enum):
        return _key(key.value)
    if isinstance(key, str):
        return key.replace("\x00", "")
    if key is None or isinstance(key, bool):
        return "null" if key is None else str(key).lower()
    if isinstance(key, dt.date | dt.time):
        return key.isoformat()
    return str(key)


def to_jsonable(obj: Any) -> Any:
    """Plain JSON data equal to ``orjson.loads(json_dumpb(obj))``, built without encoding.

    LangChain messages become their ``model_dump()`` (``content``, ``additional_kwargs``,
    ``response_metadata``, ``type``, ``name``, ``id``, ``tool_calls``...), the shape
    LangGraph's ``add_messages`` accepts back as input.
    """
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value)
    if obj is None or isinstance(obj, bool | int):
        return obj
    if isinstance(obj, str):
        return obj.replace("\x00", "")
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {_key(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list) or type(obj) is tuple:
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, dt.datetime | dt.date | dt.time):
        return obj.isoformat()
    return to_jsonable(_convert(obj))


def json_dumpb(obj: Any) -> bytes:
    """Encode as langgraph-api does: orjson, non-str keys, NUL characters dropped."""
    return orjson.dumps(obj, default=_convert, option=_JSON_OPTIONS).replace(b"\\u0000", b"")


async def with_heartbeats(
    events: AsyncIterator[bytes],
    interval_s: float = HEARTBEAT_INTERVAL_S,
    *,
    until: asyncio.Event | None = None,
    max_s: float | None = None,
) -> AsyncIterator[bytes]:
    """``events`` with a ``: heartbeat`` comment after every ``interval_s`` of silence, as
    sse_starlette sends them: proxies and clients then keep a quiet stream open. It ends
    (cleanly: the client may reconnect with ``Last-Event-ID``) when ``events`` do, when
    ``until`` is set, or ``max_s`` after it started."""
    iterator = aiter(events)
    loop = asyncio.get_running_loop()
    end_at = loop.time() + max_s if max_s is not None else None
    stop: asyncio.Future[Any] | None = None
    if until is not None:
        stop = asyncio.ensure_future(until.wait())
    pending: asyncio.Future[bytes] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(iterator))
            timeout = interval_s
            if end_at is not None:
                timeout = min(timeout, end_at - loop.time())
                if timeout <= 0:
                    return
            waiting: set[asyncio.Future[Any]] = {pending} if stop is None else {pending, stop}
            done, _ = await asyncio.wait(
                waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if stop is not None and stop in done:
                return
            if pending in done:
                try:
                    item = pending.result()
                except StopAsyncIteration:
                    return
                pending = None
                yield item
            elif end_at is None or loop.time() < end_at:
                yield HEARTBEAT
    finally:
        for waiter in (pending, stop):
            if waiter is not None and not waiter.done():
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await waiter
        closer = getattr(iterator, "aclose", None)
        if closer is not None:
            await closer()


def _field(value: str) -> bytes:
    # A line break inside a field would end it early and corrupt the stream.
    return value.replace("\r", "").replace("\n", "").encode()


def encode_event(event: str, data: Any, event_id: str | None = None) -> bytes:
    """One SSE event; ``data`` that is already bytes is taken as encoded JSON."""
    body = data if isinstance(data, bytes | bytearray) else json_dumpb(data)
    out = b"event: " + _field(event) + _SEP + b"data: " + bytes(body) + _SEP
    if event_id is not None:
        out += b"id: " + _field(event_id) + _SEP
    return out + _SEP


def metadata_payload(run_id: str, attempt: int = 1) -> dict[str, Any]:
    """Data of the first event of every run stream."""
    return {"run_id": run_id, "attempt": attempt}


def error_payload(error: BaseException) -> dict[str, str]:
    """Data of an ``error`` event and of ``runs.wait``'s ``__error__``."""
    return {"error": type(error).__name__, "message": str(error)}


MAX_EVENT_ID_DIGITS = 18  # within a 64-bit integer


def event_number(text: str) -> int | None:
    """An event id of a run's stream (ASCII digits, as written) as a number; else None.
    ``str.isdigit`` alone takes "²" and other digits ``int`` refuses."""
    if text.isascii() and text.isdigit() and len(text) <= MAX_EVENT_ID_DIGITS:
        return int(text)
    return None


def sse_headers() -> dict[str, str]:
    """Headers sse_starlette puts on every event stream (proxies must not buffer it)."""
    return {"Cache-Control": "no-store", "Connection": "keep-alive", "X-Accel-Buffering": "no"}


def run_location_headers(
    run_id: str,
    thread_id: str | None,
    kind: Literal["stream", "wait", "create"],
) -> dict[str, str]:
    """``Location``/``Content-Location`` as langgraph-api sets them. The SDK reads the run
    id from ``Content-Location`` and reconnects to ``Location`` (a stream resumes there with
    ``Last-Event-ID``; a wait re-joins there). ``thread_id`` None means a stateless run."""
    run = f"/threads/{thread_id}/runs/{run_id}" if thread_id else f"/runs/{run_id}"
    if kind == "create":
        return {"Content-Location": run}
    return {
        "Location": f"{run}/{'stream' if kind == 'stream' else 'join'}",
        "Content-Location": run,
    }


def _debug_checkpoint(payload: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not payload:
        return None
    tasks = []
    for task in payload.get("tasks", []):
        state = task.get("state")
        if isinstance(state, Mapping) and state.get("configurable"):
            task = {k: v for k, v in task.items() if k != "state"}
            task["checkpoint"] = state["configurable"]
        tasks.append(task)
    return {
        **payload,
        "checkpoint": checkpoint_from_config(payload.get("config")),
        "parent_checkpoint": checkpoint_from_config(payload.get("parent_config")),
        "tasks": tasks,
    }


class StreamTranslator:
    """Turns LangGraph ``astream`` parts into the Agent Protocol's events for one run.

    Pass :meth:`graph_stream_modes` to ``astream(stream_mode=..., subgraphs=...)`` and feed
    every part to :meth:`translate`. As in langgraph-api: ``messages-tuple`` streams
    ``messages`` events of ``[message, metadata]``; ``messages`` streams
    ``messages/metadata`` then ``messages/partial`` (token chunks, accumulated) or
    ``messages/complete``; subgraph events are named ``mode|ns1|ns2`` with
    ``stream_subgraphs`` and left out without it (LLM messages excepted). Interrupts travel
    inside ``values`` (LangGraph >= 1.0 puts ``__interrupt__`` there) and ``updates``; as in
    langgraph-api on this LangGraph, nothing else re-emits them. ``events``, ``tools`` and
    ``lifecycle`` are not produced here.
    """

    def __init__(self, stream_modes: Sequence[str], *, subgraphs: bool = False) -> None:
        self.stream_modes = list(stream_modes)
        self.subgraphs = subgraphs
        self._messages: dict[str | None, BaseMessage] = {}

    def graph_stream_modes(self) -> list[GraphStreamMode]:
        modes = {m for m in self.stream_modes if m in _GRAPH_MODES}
        if "messages-tuple" in self.stream_modes:
            modes.add("messages")
        return cast(list[GraphStreamMode], sorted(modes))

    def translate(
        self, mode: str, chunk: Any, namespace: Sequence[str] = ()
    ) -> list[tuple[str, Any]]:
        suffix = "|" + "|".join(namespace) if self.subgraphs and namespace else ""
        if mode == "debug" and isinstance(chunk, dict) and chunk.get("type") == "checkpoint":
            chunk = {**chunk, "payload": _debug_checkpoint(chunk.get("payload"))}
        if mode == "messages":
            if "messages-tuple" in self.stream_modes:
                return [(f"messages{suffix}", chunk)]
            return self._message_events(chunk) if "messages" in self.stream_modes else []
        if namespace and not self.subgraphs:
            return []
        if mode in self.stream_modes:
            return [(f"{mode}{suffix}", chunk)]
        return []

    def _message_events(self, chunk: Any) -> list[tuple[str, Any]]:
        raw, meta = chunk
        msg = raw if isinstance(raw, BaseMessage) else convert_to_messages([raw])[0]
        out: list[tuple[str, Any]] = []
        seen = self._messages.get(msg.id)
        if seen is None:
            out.append(("messages/metadata", {msg.id: {"metadata": meta}}))
            self._messages[msg.id] = msg
        elif isinstance(seen, BaseMessageChunk) and isinstance(msg, BaseMessageChunk):
            self._messages[msg.id] = seen + msg
        else:
            self._messages[msg.id] = msg
        kind = "messages/partial" if isinstance(msg, BaseMessageChunk) else "messages/complete"
        return [*out, (kind, [message_chunk_to_message(self._messages[msg.id])])]
