"""Process-wide hooks for what the runtime measures below the request level.

Database statements, Redis commands and checkpoint writes happen deep inside libraries,
far from any deployment, so they report to one process-wide :class:`Telemetry` sink
instead of threading callbacks through every constructor. ``runtime`` never imports Ray:
each Serve replica installs a sink (``agent_runtime.replica.metrics.DependencyMetrics``) that
turns these calls into Ray metrics; until one is installed they go nowhere (tests, the CLI).

* :func:`instrument_engine` times every SQL statement of a SQLAlchemy engine (cursor
  events: no wrapper on the hot path) and counts the failed ones;
* :class:`TimedRedis` is a ``redis.asyncio.Redis`` that times every command (scripts'
  ``EVALSHA`` included) and counts the failed ones;
* :func:`checkpoint_write` is called by ``agent_runtime.execution.checkpointers.TimedSaver``.

Labels stay bounded: the system (``postgres``, ``sqlite``, ``redis``), the statement's
verb or the command's name, the error's class; never a statement, a key or a value.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast

from redis.asyncio import Redis
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

_VERBS = frozenset(
    {"select", "insert", "update", "delete", "with", "begin", "commit", "rollback", "pragma"}
)
_STARTED = "agent_telemetry_started"


class Telemetry(Protocol):
    def dependency_call(
        self, system: str, operation: str, latency_ms: float, error: str | None
    ) -> None:
        """One call to a database or Redis; ``error`` is the failure's class name."""
        ...

    def checkpoint_write(self, operation: str, latency_ms: float) -> None:
        """One checkpoint write (``put`` or ``put_writes``)."""
        ...


class _Discard:
    def dependency_call(
        self, system: str, operation: str, latency_ms: float, error: str | None
    ) -> None:
        pass

    def checkpoint_write(self, operation: str, latency_ms: float) -> None:
        pass


_sink: Telemetry = _Discard()


def install(sink: Telemetry | None) -> None:
    """Send this process's measurements to ``sink`` (``None``: discard them again)."""
    global _sink
    _sink = sink if sink is not None else _Discard()


def current() -> Telemetry:
    return _sink


def dependency_call(system: str, operation: str, latency_ms: float, error: str | None) -> None:
    _sink.dependency_call(system, operation, latency_ms, error)


def checkpoint_write(operation: str, latency_ms: float) -> None:
    _sink.checkpoint_write(operation, latency_ms)


def statement_verb(statement: str) -> str:
    """``select``, ``insert``... of a SQL statement; ``other`` for anything else."""
    head = statement.lstrip(" \t\r\n(").split(None, 1)
    verb = head[0].lower() if head else ""
    return verb if verb in _VERBS else "other"


def instrument_engine(engine: AsyncEngine | Engine, system: str) -> None:
    """Report every statement ``engine`` runs: its verb, its latency, and its failure."""
    sync = engine.sync_engine if isinstance(engine, AsyncEngine) else engine

    def before(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, _many: bool
    ) -> None:
        if context is not None:
            setattr(context, _STARTED, time.perf_counter())

    def after(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, _many: bool
    ) -> None:
        started = getattr(context, _STARTED, None)
        if started is not None:
            elapsed_ms = (time.perf_counter() - started) * 1000
            _sink.dependency_call(system, statement_verb(statement), elapsed_ms, None)

    def failed(exception_context: Any) -> None:
        context = exception_context.execution_context
        started = getattr(context, _STARTED, None) if context is not None else None
        elapsed_ms = (time.perf_counter() - started) * 1000 if started is not None else 0.0
        error = exception_context.original_exception
        verb = statement_verb(exception_context.statement or "")
        _sink.dependency_call(system, verb, elapsed_ms, type(error).__name__)

    event.listen(sync, "before_cursor_execute", before)
    event.listen(sync, "after_cursor_execute", after)
    event.listen(sync, "handle_error", failed)


def _command_name(command: Any) -> str:
    name = command.decode() if isinstance(command, bytes) else str(command)
    # A command's first word (``SCRIPT LOAD`` is sent as one string by some callers).
    return name.split(" ", 1)[0].lower()[:32]


class TimedRedis(Redis):
    """A Redis client that reports every command's latency and failure (pub/sub and
    pipelines keep Redis's own classes: the runtime uses neither on its hot path)."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        # redis-py leaves execute_command unannotated.
        execute = cast(Callable[..., Awaitable[Any]], super().execute_command)
        started = time.perf_counter()
        try:
            result = await execute(*args, **options)
        except BaseException as exc:
            elapsed_ms = (time.perf_counter() - started) * 1000
            _sink.dependency_call("redis", _command_name(args[0]), elapsed_ms, type(exc).__name__)
            raise
        elapsed_ms = (time.perf_counter() - started) * 1000
        _sink.dependency_call("redis", _command_name(args[0]), elapsed_ms, None)
        return result
