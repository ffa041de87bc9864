"""Database statements, Redis commands and checkpoint writes reach the telemetry sink."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.memory import InMemorySaver
from redis.asyncio import BlockingConnectionPool
from redis.exceptions import ResponseError
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import create_async_engine

from agent_runtime.core import telemetry, timing
from agent_runtime.execution.checkpointers import TimedSaver


@dataclass
class Recorder:
    calls: list[tuple[str, str, str | None]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)

    def dependency_call(
        self, system: str, operation: str, latency_ms: float, error: str | None
    ) -> None:
        self.calls.append((system, operation, error))
        self.latencies.append(latency_ms)

    def checkpoint_write(self, operation: str, latency_ms: float) -> None:
        self.checkpoints.append(operation)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    sink = Recorder()
    telemetry.install(sink)
    yield sink
    telemetry.install(None)


def test_statement_verbs_are_bounded() -> None:
    assert telemetry.statement_verb("SELECT 1") == "select"
    assert telemetry.statement_verb("\n  (select 1) union (select 2)") == "select"
    assert telemetry.statement_verb("WITH x AS (SELECT 1) SELECT * FROM x") == "with"
    assert telemetry.statement_verb("INSERT INTO t VALUES (1)") == "insert"
    assert telemetry.statement_verb("VACUUM secret_table") == "other"
    assert telemetry.statement_verb("") == "other"


async def test_every_statement_and_its_failure_is_reported(
    recorder: Recorder, tmp_path: Path
) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    telemetry.instrument_engine(engine, "sqlite")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
            await conn.execute(text("INSERT INTO t VALUES (1)"))
            await conn.execute(text("SELECT id FROM t"))
            with pytest.raises(OperationalError):
                await conn.execute(text("SELECT nope FROM t"))
    finally:
        await engine.dispose()
    assert ("sqlite", "insert", None) in recorder.calls
    assert ("sqlite", "select", None) in recorder.calls
    assert ("sqlite", "select", "OperationalError") in recorder.calls
    assert all(ms >= 0 for ms in recorder.latencies)


async def test_redis_commands_and_script_calls_are_reported(
    recorder: Recorder, redis_url: str
) -> None:
    client = telemetry.TimedRedis.from_pool(BlockingConnectionPool.from_url(redis_url))
    key = f"agent:test:telemetry:{uuid.uuid4().hex}"
    try:
        await client.ping()
        script = client.register_script("return redis.call('INCR', KEYS[1])")
        assert await script(keys=[key]) == 1
        await client.hset(key + ":h", "f", "v")
        with pytest.raises(ResponseError):
            await client.incr(key + ":h")
    finally:
        await client.delete(key, key + ":h")
        await client.aclose()
    assert ("redis", "ping", None) in recorder.calls
    # A script's first call loads it (NOSCRIPT), then runs it: both are commands.
    assert ("redis", "evalsha", None) in recorder.calls
    assert ("redis", "incrby", "ResponseError") in recorder.calls  # INCR is sent as INCRBY


async def test_checkpoint_writes_are_timed_into_the_run_and_reported(
    recorder: Recorder,
) -> None:
    saver = TimedSaver(InMemorySaver())
    config: Any = {"configurable": {"thread_id": "t1", "checkpoint_ns": ""}}
    with timing.track_run() as timings:
        stored = await saver.aput(config, empty_checkpoint(), {}, {})
        await saver.aput_writes(stored, [("channel", 1)], task_id="task-1")
    assert recorder.checkpoints == ["put", "put_writes"]
    assert timings.checkpoint_ms > 0
