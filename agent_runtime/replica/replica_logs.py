"""What every replica sets up first: JSON logs with request ids, and the telemetry sink.

Serve writes each replica's log file itself (``logs/serve/replica_<app>_<deployment>_
<id>.log`` under the Ray session directory), as JSON with ``logging_config={"encoding":
"JSON"}`` (``agent_runtime.deployments.app``), adding its own fields (deployment, replica, Serve's
request id and route). :func:`install` sends the runtime's loggers to that same file and
puts :class:`agent_runtime.core.logs.ContextFilter` on its handler, so every line of a request, the
runtime's and Serve's, carries ``request_id``, ``tenant_id``, ``thread_id`` and
``run_id``. Outside a Serve replica the lines go to stderr as JSON. :func:`logged` opens
the context of a handle call from its arguments.
"""

from __future__ import annotations

import functools
import inspect
import logging
import logging.handlers
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar, cast

from agent_runtime.core import logs, telemetry
from agent_runtime.core.records import Principal
from agent_runtime.replica.metrics import DependencyMetrics

SERVE_LOGGER = "ray.serve"
FLUSH_INTERVAL_S = 1.0


def serve_file_handlers() -> list[logging.Handler]:
    """The handlers Serve writes the replica's log file with (a MemoryHandler in front
    of a RotatingFileHandler); none outside a replica."""
    handlers = logging.getLogger(SERVE_LOGGER).handlers
    return [h for h in handlers if isinstance(h, logging.handlers.MemoryHandler)]


def install(level: str) -> None:
    """JSON logs with the request's ids, and Ray metrics for database, Redis and
    checkpoint calls, for this replica's process."""
    handlers = serve_file_handlers()
    logs.install(level, handlers or None)
    if handlers:
        _start_flusher(handlers)
    telemetry.install(DependencyMetrics())


_flusher: threading.Thread | None = None


def _start_flusher(handlers: list[logging.Handler], interval_s: float = FLUSH_INTERVAL_S) -> None:
    """Serve buffers a replica's lines (1,000 in its throughput mode) until the buffer is
    full or an error comes: flush every ``interval_s`` too, so a line is on disk within a
    second whatever the traffic, and the batching stays."""
    global _flusher
    if _flusher is not None and _flusher.is_alive():
        return

    def flush() -> None:
        while True:
            time.sleep(interval_s)
            for handler in handlers:
                handler.flush()

    _flusher = threading.Thread(target=flush, name="agent-log-flush", daemon=True)
    _flusher.start()


F = TypeVar("F", bound=Callable[..., Any])
_IDS = ("principal", "thread_id", "run_id")


def logged(method: F) -> F:
    """Serve ``method`` (a coroutine or async generator method taking ``principal`` and
    perhaps ``thread_id``/``run_id``) in a log context of the caller's request, tenant,
    thread and run. The ids come in the arguments: contexts do not cross Ray processes."""
    names = list(inspect.signature(method).parameters)
    where = {name: names.index(name) for name in _IDS if name in names}

    def ids(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, str | None]:
        found = {
            name: kwargs[name] if name in kwargs else args[at] if at < len(args) else None
            for name, at in where.items()
        }
        principal = found.pop("principal", None)
        values = {k: v if isinstance(v, str) else None for k, v in found.items()}
        if isinstance(principal, Principal):
            values.update(request_id=principal.request_id, tenant_id=principal.tenant_id)
        return values

    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def stream(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            with logs.bind(**ids(args, kwargs)):
                async for item in method(*args, **kwargs):
                    yield item

        return cast(F, stream)

    @functools.wraps(method)
    async def call(*args: Any, **kwargs: Any) -> Any:
        with logs.bind(**ids(args, kwargs)):
            return await method(*args, **kwargs)

    return cast(F, call)
