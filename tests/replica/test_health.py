"""A replica's ``check_health`` (Serve replaces a replica after three failures in a row):
a stopped background loop fails it at once; a dependency fails it only once it has been
unreachable for longer than the grace; and an orchestrator replica built as the
deployment builds it (real SQLite and Postgres) reports its loops and passes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import pytest

from agent_runtime.config.serve_settings import ServeSettings
from agent_runtime.config.settings import StorageSettings
from agent_runtime.core.errors import DependencyUnavailable
from agent_runtime.replica.health import ReplicaHealth, ReplicaUnhealthy
from tests.runs.run_harness import replica


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Dependency:
    """A ping that fails (with a driver-like message naming a host) while ``down``."""

    def __init__(self) -> None:
        self.down = False
        self.hang = False

    async def ping(self) -> None:
        if self.hang:
            await asyncio.Event().wait()
        if self.down:
            raise DependencyUnavailable("connection to db.internal:5432 as admin refused")


class Loops:
    def __init__(self, *tasks: asyncio.Task[Any]) -> None:
        self.tasks = tasks

    def loops(self) -> Iterable[asyncio.Task[Any]]:
        return self.tasks


async def forever() -> None:
    await asyncio.Event().wait()


async def broken() -> None:
    raise KeyError("a bug")


async def test_a_dependency_fails_the_check_only_past_the_grace() -> None:
    clock, database = Clock(), Dependency()
    health = ReplicaHealth(
        {"database": database.ping}, grace_s=60.0, probe_timeout_s=1.0, clock=clock
    )
    await health.check()
    database.down = True
    await health.check()  # down since now: a restart's worth of outage is ridden out
    clock.now += 59.0
    await health.check()
    clock.now += 2.0
    with pytest.raises(ReplicaUnhealthy) as unhealthy:
        await health.check()
    message = unhealthy.value.message
    assert message == ("database unreachable from this replica for 61 s (DependencyUnavailable)")
    assert "db.internal" not in message  # the driver's text stays out of Serve's logs
    database.down = False
    await health.check()  # back: healthy again, and the clock starts over
    database.down = True
    clock.now += 30.0
    await health.check()


async def test_a_ping_with_no_answer_counts_as_down() -> None:
    clock, redis = Clock(), Dependency()
    health = ReplicaHealth({"redis": redis.ping}, grace_s=0.0, probe_timeout_s=0.05, clock=clock)
    redis.hang = True
    with pytest.raises(ReplicaUnhealthy, match=r"redis unreachable .* \(no answer in 0.05 s\)"):
        await health.check()


async def test_a_stopped_loop_fails_the_check_at_once_and_a_cancelled_one_does_not() -> None:
    running = asyncio.create_task(forever(), name="run queue")
    dead = asyncio.create_task(broken(), name="crons")
    closed = asyncio.create_task(forever(), name="thread TTL sweeper")
    closed.cancel()
    await asyncio.wait([dead, closed])
    try:
        health = ReplicaHealth({}, [Loops(running, closed)], grace_s=60.0, probe_timeout_s=1.0)
        await health.check()
        health = ReplicaHealth({}, [Loops(running, dead)], grace_s=60.0, probe_timeout_s=1.0)
        with pytest.raises(
            ReplicaUnhealthy, match=r"background loop\(s\) stopped: crons \(KeyError\)"
        ):
            await health.check()
    finally:
        running.cancel()


async def test_an_orchestrator_replica_reports_its_loops_and_passes(
    storage_settings: StorageSettings,
) -> None:
    async with replica(storage_settings, start_loops=False) as built:
        orchestration = built.orchestration
        orchestration.start()  # as the deployment does: queue, leases, crons, TTL sweeper
        names = {task.get_name() for task in orchestration.loops()}
        assert names == {"run lease heartbeats", "run queue", "crons", "thread TTL sweeper"}
        health = ReplicaHealth.from_settings(
            ServeSettings(), {"database": orchestration.store.ping}, [orchestration]
        )
        await health.check()
