"""``make bench-scaling``'s per-run costs: the stack's CPU split by deployment, and the
work its database and Redis did, counted over the same window as the load's runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import psutil
import psycopg
import redis

from agent_runtime.config.settings import StorageSettings
from loadtests.bench_processes import CpuMeter, ProcessGroup, cpu_by_pid, process_kind

RAY_SYSTEM = "Ray system"  # raylet, GCS, dashboard and its agents, log monitor...
# Process kinds (bench_processes.process_kind) that are not Serve replicas, by part.
NAMED_KINDS = {"ray::ProxyActor": "proxy", "ray::ServeController": "controller"}
REPLICA_PREFIX = "ray::ServeReplica:"
# Read as they are at the window's end, not as a difference.
GAUGES = frozenset({"connections", "max_connections"})
CONNECT_TIMEOUT_S = 5

# One transaction for every figure, so they are read at the same moment.
PG_STATS = """
SELECT xact_commit + xact_rollback AS transactions,
       tup_inserted + tup_updated + tup_deleted AS rows_written,
       tup_fetched AS rows_read,
       (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database())
         AS connections,
       current_setting('max_connections')::int AS max_connections
FROM pg_stat_database WHERE datname = current_database()
"""
PG_STATEMENTS = """
SELECT coalesce(sum(calls), 0) FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


def part_of(kind: str) -> str:
    """The part of the stack a process kind belongs to: a Serve replica's deployment
    (``ray::ServeReplica:<app>:Orchestrator`` -> ``Orchestrator``), the proxy, the
    controller, the launcher (Ray's driver), else Ray's own processes."""
    if kind.startswith(REPLICA_PREFIX):
        return kind.rsplit(":", 1)[-1]
    if kind == "launcher":
        return kind
    return NAMED_KINDS.get(kind, RAY_SYSTEM)


def cpu_by_part(
    before: Mapping[int, float], after: Mapping[int, float], parts: Mapping[int, str]
) -> dict[str, float]:
    """CPU seconds each part used between two ``cpu_by_pid`` readings; a process that
    started in between counts from zero, one that ended in between is lost (as in
    CpuMeter)."""
    used: dict[str, float] = {}
    for pid, seconds in after.items():
        part = parts.get(pid, RAY_SYSTEM)
        used[part] = used.get(part, 0.0) + seconds - before.get(pid, 0.0)
    return used


def deltas(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """Counters' growth between two readings; gauges as read at the end."""
    return {
        name: value if name in GAUGES else value - before.get(name, 0.0)
        for name, value in after.items()
    }


class Counters(Protocol):
    """A service's cumulative counters, read at the window's start and end."""

    def read(self) -> dict[str, float]: ...


class PostgresCounters:
    """The database of ``AGENT_DATABASE_URL``: transactions, rows written and read
    (``pg_stat_database``), connections open, and statements when the
    ``pg_stat_statements`` extension is loaded. Every client of that database counts,
    these readings included (a handful of statements a window)."""

    def __init__(self, url: str) -> None:
        self._dsn = StorageSettings(database_url=url).postgres_dsn

    def read(self) -> dict[str, float]:
        with psycopg.connect(self._dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as db:
            cursor = db.execute(PG_STATS)
            names = [column.name for column in cursor.description or ()]
            row = cursor.fetchone()
            figures = {name: float(value) for name, value in zip(names, row or (), strict=True)}
            with contextlib.suppress(psycopg.Error):
                # Absent, or created but not in shared_preload_libraries: left out.
                statements = db.execute(PG_STATEMENTS).fetchone()
                figures["statements"] = float(statements[0]) if statements else 0.0
        return figures


class RedisCounters:
    """Commands the Redis of ``AGENT_REDIS_URL`` processed, in all and by command (every
    client of that server counts, these readings included: two commands a window)."""

    def __init__(self, url: str) -> None:
        self._url = url

    def read(self) -> dict[str, float]:
        client = redis.Redis.from_url(self._url, socket_timeout=CONNECT_TIMEOUT_S)
        try:
            stats: dict[str, Any] = client.info("stats")
            by_command: dict[str, Any] = client.info("commandstats")
        finally:
            client.close()
        figures = {"commands": float(stats["total_commands_processed"])}
        for name, calls in by_command.items():
            figures[f"cmd:{name.removeprefix('cmdstat_')}"] = float(calls["calls"])
        return figures


class StepMeter(CpuMeter):
    """CpuMeter's groups, plus over the same window: the stack's CPU by part and the
    growth of each service's counters. A service that cannot be read is left out, with
    the reason in ``failures``: the load's figures still stand."""

    def __init__(
        self,
        groups: Mapping[str, ProcessGroup],
        stack: ProcessGroup,
        launcher_pid: int,
        services: Mapping[str, Counters],
    ) -> None:
        super().__init__(groups)
        self._stack, self._launcher_pid, self._services = stack, launcher_pid, services
        self._cpu_before: dict[int, float] = {}
        self._parts: dict[int, str] = {}
        self._counted_before: dict[str, dict[str, float]] = {}
        self.cpu_s_by_part: dict[str, float] = {}
        self.counted: dict[str, dict[str, float]] = {}
        self.failures: dict[str, str] = {}

    def _stack_cpu(self) -> dict[int, float]:
        procs = list(self._stack())
        self._label(procs)
        return cpu_by_pid(procs)

    def _label(self, procs: Iterable[psutil.Process]) -> None:
        for proc in procs:
            if proc.pid not in self._parts:
                with contextlib.suppress(psutil.Error):
                    self._parts[proc.pid] = part_of(process_kind(proc, self._launcher_pid))

    def _read(self, name: str) -> dict[str, float] | None:
        try:
            return self._services[name].read()
        except (OSError, psycopg.Error, redis.RedisError) as exc:
            self.failures[name] = f"{type(exc).__name__}: {exc}"
            return None

    def start(self) -> None:
        for name in self._services:
            reading = self._read(name)
            if reading is not None:
                self._counted_before[name] = reading
        self._cpu_before = self._stack_cpu()
        super().start()

    def stop(self) -> dict[str, float]:
        used = super().stop()
        self.cpu_s_by_part = cpu_by_part(self._cpu_before, self._stack_cpu(), self._parts)
        for name, before in self._counted_before.items():
            after = self._read(name)
            if after is not None:
                self.counted[name] = deltas(before, after)
        return used
