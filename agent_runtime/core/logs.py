"""JSON log lines that carry the request, tenant, thread and run they belong to.

One :class:`LogContext` per request (or run) lives in a ``ContextVar``; a
:class:`ContextFilter` copies its ids onto every record (``request_id``, ``tenant_id``,
``thread_id``, ``run_id``) and :class:`JsonFormatter` writes one JSON object per line.
The context is a mutable object on purpose: the ingress opens it in its middleware and
fills the tenant in once the key is checked (a dependency running in another task), so
the request's last line, written by the middleware, has it too.

Context does not cross Ray processes: the ids travel in the handle calls' arguments
(``Principal.request_id``, ``ChatRequest.request_id``/``tenant_id``/``thread_id``/
``run_id``) and each replica opens its own context from them with :func:`bind`.
:func:`install` points the runtime's loggers at the replica's handlers (Serve's JSON log
file in a Serve replica, stderr elsewhere) with the filter on each handler, so Serve's own
lines written during a request get the ids as well.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass, replace

# The loggers of this code base (module loggers are named after their module).
APP_LOGGERS = ("agent_runtime", "graphs")
ID_FIELDS = ("request_id", "tenant_id", "thread_id", "run_id")


@dataclass(slots=True)
class LogContext:
    request_id: str | None = None
    tenant_id: str | None = None
    thread_id: str | None = None
    run_id: str | None = None


_current: ContextVar[LogContext | None] = ContextVar("agent_log_context", default=None)


def current() -> LogContext | None:
    return _current.get()


@contextmanager
def bind(**ids: str | None) -> Iterator[LogContext]:
    """A new context for the block: the enclosing one's ids, overridden by the given ones
    that are not None (nothing set inside leaks out)."""
    given = {name: value for name, value in ids.items() if value is not None}
    unknown = set(given) - set(ID_FIELDS)
    if unknown:
        raise TypeError(f"unknown log context fields: {sorted(unknown)}")
    parent = _current.get()
    context = replace(parent, **given) if parent is not None else LogContext(**given)
    token = _current.set(context)
    try:
        yield context
    finally:
        # ValueError: an async generator finalised from another task (Serve closing a
        # stream): that context is not ours to restore.
        with suppress(ValueError):
            _current.reset(token)


def update(**ids: str | None) -> None:
    """Fill in ids of the current context (seen by whoever opened it); no-op outside one."""
    context = _current.get()
    if context is None:
        return
    for name, value in ids.items():
        if value is not None:
            setattr(context, name, value)


class ContextFilter(logging.Filter):
    """Adds the current context's ids to a record (a set id wins over one already there,
    such as the request id Serve's filters put on records)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _current.get()
        for name in ID_FIELDS:
            value = getattr(context, name) if context is not None else None
            if value is not None or not hasattr(record, name):
                setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the ids, the exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ID_FIELDS:
            line[name] = getattr(record, name, None)
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def _has_filter(handler: logging.Handler) -> bool:
    return any(isinstance(f, ContextFilter) for f in handler.filters)


def install(
    level: str | int = "INFO",
    handlers: Sequence[logging.Handler] | None = None,
    loggers: Sequence[str] = APP_LOGGERS,
) -> list[logging.Handler]:
    """Send the runtime's loggers to ``handlers`` (default: one JSON handler on stderr),
    each with a :class:`ContextFilter`; idempotent. Returns the handlers used."""
    chosen = list(handlers) if handlers else [_stderr_handler()]
    for handler in chosen:
        if not _has_filter(handler):
            handler.addFilter(ContextFilter())
    for name in loggers:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.propagate = False
        for handler in chosen:
            if handler not in logger.handlers:
                logger.addHandler(handler)
    return chosen


_STDERR_HANDLER: logging.Handler | None = None


def _stderr_handler() -> logging.Handler:
    global _STDERR_HANDLER
    if _STDERR_HANDLER is None:
        _STDERR_HANDLER = logging.StreamHandler(sys.stderr)
        _STDERR_HANDLER.setFormatter(JsonFormatter())
    return _STDERR_HANDLER
