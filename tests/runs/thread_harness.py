"""Threads the ThreadService tests start from, the checkpoint ids of a history, and a
service's graphs when it needs none."""

from __future__ import annotations

from typing import Any

from agent_runtime.user_app.served_graphs import ServedGraphs
from tests.runs.run_harness import TENANT, Replica, body, new_thread

NO_GRAPHS = ServedGraphs([], checkpointer=None, store=None)


async def ran(r: Replica, mode: str = "ok", *, background: bool = False) -> str:
    """A thread with one finished run (a background one stores its stream events)."""
    thread_id = await new_thread(r)
    if background:
        started = await r.runs.start(TENANT, thread_id, body(mode), "background")
        await r.runs.join(TENANT, thread_id, started.run.run_id)
    else:
        await r.runs.wait(TENANT, thread_id, body(mode))
    return thread_id


def ids(history: list[dict[str, Any]]) -> list[str]:
    return [state["checkpoint_id"] for state in history]
