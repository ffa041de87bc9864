"""A thread's stream on both backends: its runs one after the other with ``run_done``
after each, the lifecycle and state_update modes, Last-Event-ID, another replica, and
its tenant only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agent_runtime.config.settings import StorageSettings
from agent_runtime.core.errors import InvalidRequest, NotFound
from agent_runtime.core.records import Principal
from agent_runtime.protocol.agent_protocol import ThreadStateUpdate
from agent_runtime.runs.thread_stream import ThreadStreamMode, ThreadStreams, parse_modes
from tests.runs.run_harness import OTHER, TENANT, Replica, body, new_thread, replica
from tests.runs.test_run_service import frames

FINAL = {"steps": ["first", "second"], "mode": "ok"}


@pytest.fixture
async def one(storage_settings: StorageSettings) -> AsyncIterator[Replica]:
    async with replica(storage_settings) as r:
        yield r


def streams(r: Replica) -> ThreadStreams:
    async def state(principal: Principal, thread_id: str) -> dict[str, Any]:
        return await r.threads.get_state(principal, thread_id)

    return ThreadStreams(r.store, r.runs, state, poll_s=0.05)


class Reader:
    """Reads a thread stream in the background, as a client holding it open does."""

    def __init__(self, events: AsyncIterator[bytes]) -> None:
        self.raw: list[bytes] = []
        self._events = events
        self._arrived = asyncio.Event()
        self._task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for frame in self._events:
            self.raw.append(frame)
            self._arrived.set()

    @property
    def frames(self) -> list[tuple[str, Any, str]]:
        return frames(self.raw)

    async def until(self, count: int, event: str = "metadata", timeout_s: float = 15.0) -> None:
        """Until ``count`` events named ``event`` with ``run_done`` (or of that name)."""

        def seen() -> int:
            return sum(
                1
                for name, data, _ in self.frames
                if name == event and (event != "metadata" or data.get("status") == "run_done")
            )

        async with asyncio.timeout(timeout_s):
            while seen() < count:
                self._arrived.clear()
                await self._arrived.wait()

    async def ended(self) -> None:
        """Until the stream ends by itself (the client did not close it)."""
        await self._task

    async def close(self) -> None:
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._task


async def _join(
    r: Replica,
    thread_id: str,
    last_event_id: str | None = None,
    modes: tuple[ThreadStreamMode, ...] = ("run_modes",),
    principal: Principal = TENANT,
) -> Reader:
    events = streams(r).join(principal, thread_id, last_event_id=last_event_id, modes=modes)
    return Reader(events)


async def test_runs_come_one_after_the_other_each_ended_by_run_done(one: Replica) -> None:
    thread_id = await new_thread(one)
    before = await one.runs.wait(TENANT, thread_id, body())  # ended before the join
    reader = await _join(one, thread_id)
    first = await one.runs.start(TENANT, thread_id, body("slow"), "background")
    second = await one.runs.start(
        TENANT, thread_id, body(multitask_strategy="enqueue"), "background"
    )
    await reader.until(2)
    await reader.close()
    got = reader.frames
    runs = [first.run.run_id, second.run.run_id]
    assert before.run_id not in {data.get("run_id") for _, data, _ in got if isinstance(data, dict)}
    done = [(i, data["run_id"]) for i, (n, data, _) in enumerate(got) if data.get("status")]
    assert [run_id for _, run_id in done] == runs
    split = done[0][0] + 1
    for run_id, part in ((runs[0], got[:split]), (runs[1], got[split:])):
        assert part[0] == ("metadata", {"run_id": run_id, "attempt": 1}, f"{run_id}:1")
        assert part[-2][0] == "values" and part[-2][1]["steps"][-2:] == ["first", "second"]
        assert part[-1] == (
            "metadata",
            {"status": "run_done", "run_id": run_id},
            f"{run_id}:done",
        )
        assert all(event_id.startswith(f"{run_id}:") for _, _, event_id in part)


async def test_lifecycle_mode_is_starts_and_ends(one: Replica) -> None:
    thread_id = await new_thread(one)
    reader = await _join(one, thread_id, modes=("lifecycle",))
    started = await one.runs.start(TENANT, thread_id, body(), "background")
    await reader.until(1)
    await reader.close()
    run_id = started.run.run_id
    assert reader.frames == [
        ("metadata", {"run_id": run_id, "attempt": 1}, f"{run_id}:1"),
        ("metadata", {"status": "run_done", "run_id": run_id}, f"{run_id}:done"),
    ]


async def test_last_event_id_resumes_across_runs(one: Replica) -> None:
    thread_id = await new_thread(one)
    first = await one.runs.start(TENANT, thread_id, body(), "background")
    await one.runs.join(TENANT, thread_id, first.run.run_id)
    second = await one.runs.start(TENANT, thread_id, body(), "background")
    await one.runs.join(TENANT, thread_id, second.run.run_id)

    everything = await _join(one, thread_id, last_event_id="-")
    await everything.until(2)
    await everything.close()
    ids = [event_id for _, _, event_id in everything.frames]
    assert ids[0] == f"{first.run.run_id}:1" and ids[-1] == f"{second.run.run_id}:done"

    resumed = await _join(one, thread_id, last_event_id=ids[1])
    await resumed.until(2)
    await resumed.close()
    assert resumed.frames == everything.frames[2:]

    after_first = await _join(one, thread_id, last_event_id=f"{first.run.run_id}:done")
    await after_first.until(1)
    await after_first.close()
    assert after_first.frames[0][2] == f"{second.run.run_id}:1"


async def test_state_updates_outside_runs(one: Replica) -> None:
    thread_id = await new_thread(one)
    await one.runs.wait(TENANT, thread_id, body())
    reader = await _join(one, thread_id, modes=("state_update", "lifecycle"))
    await one.threads.update_state(
        TENANT, thread_id, ThreadStateUpdate(values={"steps": ["edited"]}, as_node="second")
    )
    await reader.until(1, event="state_update")
    started = await one.runs.start(TENANT, thread_id, body(), "background")
    await reader.until(1)
    # A run's own state change is not a state_update. An absence has no event to wait
    # for: the stream gets six of its polls (poll_s 0.05) to wrongly report one.
    await asyncio.sleep(0.3)
    await reader.close()
    names = [name for name, _, _ in reader.frames]
    assert names == ["state_update", "metadata", "metadata"]
    _, update, event_id = reader.frames[0]
    assert update["thread_id"] == thread_id and event_id.startswith("state:")
    assert update["state"]["values"]["steps"] == ["first", "second", "edited"]
    assert reader.frames[2][1] == {"status": "run_done", "run_id": started.run.run_id}


async def test_a_run_on_another_replica_streams_from_the_database(
    storage_settings: StorageSettings,
) -> None:
    async with replica(storage_settings) as a, replica(storage_settings) as b:
        thread_id = await new_thread(a)
        reader = await _join(b, thread_id)
        started = await a.runs.start(TENANT, thread_id, body("slow"), "background")
        await reader.until(1)
        await reader.close()
        assert reader.frames[0][:2] == ("metadata", {"run_id": started.run.run_id, "attempt": 1})
        assert ("values", {**FINAL, "mode": "slow"}) in [f[:2] for f in reader.frames]


async def test_only_the_threads_tenant_and_known_modes(one: Replica) -> None:
    thread_id = await new_thread(one)
    with pytest.raises(NotFound):
        await anext(streams(one).join(OTHER, thread_id))
    with pytest.raises(InvalidRequest, match="Invalid stream mode: values"):
        parse_modes(["run_modes,values"])
    assert parse_modes([]) == ["run_modes"]
    assert parse_modes(["lifecycle, state_update"]) == ["lifecycle", "state_update"]


async def test_the_stream_ends_when_its_thread_is_deleted(one: Replica) -> None:
    """A stream never ended by itself: a deleted thread's watchers held their connection
    (and the replica a poll loop) for as long as they liked."""
    thread_id = await new_thread(one)
    waiting = await _join(one, thread_id)
    started = await one.runs.start(TENANT, thread_id, body("slow"), "background")
    running = await _join(one, thread_id)
    await running.until(1, event="values")  # inside the run, as it is deleted
    await one.threads.delete(TENANT, thread_id)
    async with asyncio.timeout(10):
        await waiting.ended()
        await running.ended()
    assert ("metadata", {"run_id": started.run.run_id, "attempt": 1}) == running.frames[0][:2]
