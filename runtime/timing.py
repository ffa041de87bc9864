"""Per-run time accounting, so a run's latency can be split by hop.

The orchestrator opens a :class:`RunTimings` for each run with :func:`track_run`; the chat
model and the checkpointer add to it through :func:`record`. A ``ContextVar`` carries it
because LangGraph runs nodes in tasks that copy the caller's context: the object is shared,
so what a node records is seen by the run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Literal

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
