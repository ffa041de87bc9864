"""Stopping the background tasks of LangGraph's item store before its connections close.

LangGraph's async stores run two tasks of their own: the batch task, which answers every
``aget``/``aput``/``asearch`` (callers queue their operation and wait for it), and the TTL
sweeper. Nothing LangGraph calls at close stops them: the sweeper stops only through
``stop_ttl_sweeper``, which gives up after its timeout and leaves the task running, and
the batch task only when the store is garbage collected. A task still running when the
pool (or SQLite connection) under it closes can hold a connection through the close or
take one after it; so :func:`stop_store_tasks` ends both, and waits for them, first.
"""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.store.base.batch import AsyncBatchedBaseStore

from agent_runtime.core.errors import DependencyUnavailable


async def stop_store_tasks(store: AsyncBatchedBaseStore, timeout_s: float) -> None:
    """End ``store``'s TTL sweeper and batch task, each within ``timeout_s``; the batch
    in progress finishes, operations still queued fail with :class:`DependencyUnavailable`."""
    sweeper: asyncio.Task[None] | None = getattr(store, "_ttl_sweeper_task", None)
    stop_sweeper = getattr(store, "stop_ttl_sweeper", None)
    if stop_sweeper is not None and not await stop_sweeper(timeout=timeout_s):
        await _cancel_and_wait(sweeper)  # still sweeping: LangGraph would leave it running
    # LangGraph's own attributes (langgraph.store.base.batch), with no public way to stop
    # them: the task that runs queued operations in batches, and their queue.
    task: asyncio.Task[Any] | None = store._task
    queue = store._aqueue
    if task is not None and not task.done():
        # A falsy item ends the task's loop once the batch it is running (if any) is
        # answered: cancelling it mid-batch would leave that batch's callers waiting.
        # Two: a batch gathering the operations queued before them stops at (and
        # consumes) the first; the loop then ends at the second.
        queue.put_nowait(None)  # type: ignore[arg-type]
        queue.put_nowait(None)  # type: ignore[arg-type]
        await asyncio.wait((task,), timeout=timeout_s)
        await _cancel_and_wait(task)  # a batch that outlasted the timeout
    while not queue.empty():
        item = queue.get_nowait()
        if item is not None and not item[0].done():
            item[0].set_exception(DependencyUnavailable("item store closed"))


async def _cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    if task is None or task.done():
        return
    task.cancel()
    # Waits for the task's end without raising its CancelledError (ours still propagates).
    await asyncio.wait((task,))
