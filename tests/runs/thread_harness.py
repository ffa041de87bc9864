"""Threads the ThreadService tests start from, and the checkpoint ids of a history."""

from __future__ import annotations

from typing import Any

from tests.runs.run_harness import TENANT, Replica, body, new_thread


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
