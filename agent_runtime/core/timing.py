"""Per-run accounting, so a run's latency can be split by hop and its work counted.

The orchestrator opens a :class:`RunTimings` for each run with :func:`track_run`; the chat
model and the checkpointer add to it through :func:`record`, the graph runner counts node
executions and tool calls from the graph's ``updates`` stream with :func:`count_updates`.
A ``ContextVar`` carries it because LangGraph runs nodes in tasks that copy the caller's
context: the object is shared, so what a node records is seen by the run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.messages import ToolMessage

TimingField = Literal["provider_ms", "router_ms", "checkpoint_ms"]


@dataclass
class RunTimings:
    provider_ms: float = 0.0
    router_ms: float = 0.0
    checkpoint_ms: float = 0.0
    llm_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    models: list[str] = field(default_factory=list)
    steps: int = 0  # node executions, subgraphs' included
    # (tool name, succeeded) -> calls
    tool_calls: dict[tuple[str, bool], int] = field(default_factory=dict)
    # A subgraph's result can repeat the tool results its nodes returned: count each once.
    _tool_call_ids: set[str] = field(default_factory=set, repr=False)

    def server_timing(self, **extra_ms: float) -> str:
        """A ``Server-Timing`` header value (RFC-style ``name;dur=ms`` list)."""
        parts = {
            "provider": self.provider_ms,
            "router": self.router_ms,
            "checkpoint": self.checkpoint_ms,
            **extra_ms,
        }
        return ", ".join(f"{name};dur={ms:.2f}" for name, ms in parts.items())


_current: ContextVar[RunTimings | None] = ContextVar("agent_run_timings", default=None)


@contextmanager
def track_run() -> Iterator[RunTimings]:
    timings = RunTimings()
    token = _current.set(timings)
    try:
        yield timings
    finally:
        _current.reset(token)


def current() -> RunTimings | None:
    return _current.get()


# Keys of an ``updates`` chunk that are not nodes.
_NOT_NODES = frozenset({"__interrupt__", "__metadata__"})


def count_updates(chunk: Any) -> None:
    """Count one ``updates`` chunk of the graph stream into the current run: one step per
    node that ran (LangGraph groups a superstep's nodes in one chunk, with a list for a
    node that ran more than once), and the tool results (``ToolMessage``) they returned,
    each tool call once."""
    timings = _current.get()
    if timings is None or not isinstance(chunk, dict):
        return
    for node, update in chunk.items():
        if node in _NOT_NODES:
            continue
        updates = update if isinstance(update, list) else [update]
        timings.steps += len(updates) or 1
        for value in updates:
            messages = value.get("messages") if isinstance(value, dict) else None
            if not isinstance(messages, list):
                continue
            for message in messages:
                if isinstance(message, ToolMessage):
                    if message.tool_call_id in timings._tool_call_ids:
                        continue
                    timings._tool_call_ids.add(message.tool_call_id)
                    key = (message.name or "unknown", message.status != "error")
                    timings.tool_calls[key] = timings.tool_calls.get(key, 0) + 1


def record(name: TimingField, ms: float) -> None:
    timings = _current.get()
    if timings is not None:
        setattr(timings, name, getattr(timings, name) + ms)


@contextmanager
def timed(name: TimingField) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        record(name, (time.perf_counter() - start) * 1000)
