"""Who a model call is made for: the run's tenant, API key, thread and run.

Graphs are compiled once per orchestrator replica, so their chat models cannot hold a
tenant. The graph runner opens :func:`run_identity` around each run; LangGraph runs the
nodes in tasks that copy the caller's context, so every model call a run makes sees it,
and :func:`stamp` writes it into the :class:`ChatRequest` (or :class:`EmbeddingRequest`)
the router receives (budgets, usage ledger and metrics key on it), with the request id of
the run's log context (:mod:`agent_runtime.core.logs`). Ray handles pickle the request: the
ids cross the hop as data, not as context.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

from agent_runtime.core import logs
from agent_runtime.core.types import ChatRequest, EmbeddingRequest

Request = TypeVar("Request", ChatRequest, EmbeddingRequest)


@dataclass(frozen=True, slots=True)
class RunIdentity:
    tenant_id: str
    key_id: str | None = None
    thread_id: str | None = None
    run_id: str | None = None


_current: ContextVar[RunIdentity | None] = ContextVar("agent_run_identity", default=None)


@contextmanager
def run_identity(identity: RunIdentity) -> Iterator[None]:
    token = _current.set(identity)
    try:
        yield
    finally:
        _current.reset(token)


def current() -> RunIdentity | None:
    return _current.get()


def stamp(request: Request) -> Request:
    """``request`` with the current run's ids filled in where it has none."""
    identity = _current.get()
    if identity is None:
        return request
    return request.model_copy(
        update={
            "tenant_id": request.tenant_id or identity.tenant_id,
            "key_id": request.key_id or identity.key_id,
            "thread_id": request.thread_id or identity.thread_id,
            "run_id": request.run_id or identity.run_id,
            "request_id": request.request_id or _request_id(),
        }
    )


def _request_id() -> str | None:
    context = logs.current()
    return context.request_id if context is not None else None
