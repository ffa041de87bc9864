"""Stored stream events when writing them fails: a failed batch is tried again, and events
lost for good are an ``error`` event naming them for whoever reads the run from the
database (a joiner on another replica, a reconnect with ``Last-Event-ID``, a thread's
stream), never a silent gap in the numbers.

The database is real; what fails is the run's event writer, the replica's
``RunStore.events``, replaced before the run starts by one whose first batch fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import orjson

from agent_runtime.config.settings import StorageSettings
from agent_runtime.core.errors import DependencyUnavailable
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.runs.event_rows import RunEventStore
from tests.runs.run_harness import TENANT, Replica, body, new_thread, replica


class FlakyEvents(RunEventStore):
    """Writes a run's events, but batches starting at event 1 or 2 (so at least two events)
    fail their first ``tries`` writes, as a database that is briefly (or, with many tries,
    lastingly) away does."""

    def __init__(self, store: MetadataStore, tries: int) -> None:
        super().__init__(store)
        self._tries = tries
        self.failed: list[list[int]] = []  # each failed write's event numbers

    @property
    def last_failed(self) -> int:
        return max(seq for batch in self.failed for seq in batch)

    async def append(self, run_id: str, events: Sequence[tuple[int, str, bytes]]) -> None:
        if events and events[0][0] <= 2 and self._tries > 0:
            self._tries -= 1
            self.failed.append([seq for seq, _, _ in events])
            raise DependencyUnavailable("the database is unavailable")
        await super().append(run_id, events)


def parse(frame: bytes) -> tuple[str, object, str]:
    lines = dict(line.split(": ", 1) for line in frame.decode().strip().split("\r\n"))
    return lines["event"], orjson.loads(lines["data"]), lines.get("id", "")


async def replay(
    r: Replica, thread_id: str, run_id: str, last_event_id: str | None = None
) -> list[tuple[str, object, str]]:
    return [
        parse(frame)
        async for frame in r.runs.join_stream(
            TENANT, thread_id, run_id, last_event_id=last_event_id, cancel_on_disconnect=False
        )
    ]


async def background(r: Replica, mode: str) -> tuple[str, str]:
    thread_id = await new_thread(r)
    started = await r.runs.start(
        TENANT, thread_id, body(mode, stream_mode=["values", "custom"]), "background"
    )
    return thread_id, started.run.run_id


async def test_a_batch_that_fails_once_is_stored_on_the_next_try(
    storage_settings: StorageSettings,
) -> None:
    async with replica(storage_settings) as one:
        flaky = FlakyEvents(one.store, tries=1)
        one.runs.runs.events = flaky
        thread_id, run_id = await background(one, "ok")
        await one.runs.join(TENANT, thread_id, run_id)
        frames = await replay(one, thread_id, run_id)
    assert len(flaky.failed) == 1
    names = [name for name, _, _ in frames]
    assert names[0] == "metadata"
    assert "error" not in names
    assert [int(i) for _, _, i in frames] == list(range(1, len(frames) + 1))


def lost_range(event: tuple[str, object, str]) -> tuple[int, int]:
    name, data, event_id = event
    assert name == "error"
    assert isinstance(data, dict)
    assert data["error"] == "StreamEventsLost"
    assert f"{data['lost_from']} to {data['lost_to']}" in data["message"]
    assert event_id == str(data["lost_to"])
    return data["lost_from"], data["lost_to"]


async def test_events_lost_for_good_are_an_error_event_for_joiners_and_resumers(
    storage_settings: StorageSettings,
) -> None:
    async with replica(storage_settings) as one:
        flaky = FlakyEvents(one.store, tries=1000)
        one.runs.runs.events = flaky
        thread_id, run_id = await background(one, "slow")
        await one.runs.join(TENANT, thread_id, run_id)
        frames = await replay(one, thread_id, run_id)
        # The batch was tried more than once before it was given up.
        assert len(flaky.failed) > 1
        last = flaky.last_failed
        # The gap comes first, named; then the stored events, numbered on from it.
        assert lost_range(frames[0]) == (1, last)
        stored = [int(i) for _, _, i in frames[1:]]
        assert stored and stored == list(range(last + 1, last + 1 + len(stored)))
        assert frames[-1][1] == {"steps": ["first", "second"], "mode": "slow"}
        # A client that had event 1 hears of the rest of the gap; one past it does not.
        assert lost_range((await replay(one, thread_id, run_id, "1"))[0]) == (2, last)
        past = await replay(one, thread_id, run_id, str(last))
        assert past == frames[1:]
        # The thread's stream reads the same rows.
        seen: list[tuple[str, object, str]] = []
        stream = one.orchestration.thread_streams.join(TENANT, thread_id, last_event_id="-")
        async with asyncio.timeout(10):
            async for frame in stream:
                seen.append(parse(frame))
                if seen[-1][2] == f"{run_id}:done":
                    break
        await stream.aclose()  # type: ignore[attr-defined]
        assert seen[0][0] == "error" and seen[0][2] == f"{run_id}:{last}"


async def test_a_joiner_on_another_replica_hears_of_the_gap(
    storage_settings: StorageSettings,
) -> None:
    async with replica(storage_settings) as runner, replica(storage_settings) as joiner:
        runner.runs.runs.events = FlakyEvents(runner.store, tries=1000)
        thread_id, run_id = await background(runner, "slow")
        assert joiner.executor.local(run_id) is None  # it reads the database
        frames: list[tuple[str, object, str]] = []
        async with asyncio.timeout(20):
            frames = await replay(joiner, thread_id, run_id)
    first, last = lost_range(frames[0])
    assert first == 1
    assert frames[1][2] == str(last + 1)
