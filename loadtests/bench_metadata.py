"""``make bench-metadata``: metadata writes/s with many writes in flight at once.

    python loadtests/bench_metadata.py [--writes 2000] [--rounds 5] [--pool-size 10]
                                       [--timeout 60] [--postgres-url URL] [--json]

One ``MetadataStore`` (as a replica holds it, ``AGENT_DB_POOL_SIZE`` connections) gets
``--writes`` thread creations at once (each one transaction: an ``INSERT`` and its
commit), ``--rounds`` times after a warm-up round; each round's writes/s is the writes
over the time from the first start to the last end. Prints each round, then the median
round and the p50 / p99 latency of one write across the rounds. ``--timeout``
(``AGENT_DB_TIMEOUT_S``) is long by default, so that writes queue for a connection rather
than fail: the figure is throughput, not how many writes fit in the usual 10 s.

It runs over whatever ``agent_runtime`` is on the import path, so the same script
measures two versions of the store one after the other (``PYTHONPATH=<checkout>``).
The writes go to a throwaway role and schema, dropped afterwards. Exit status 0 when
every write succeeded, 1 when some failed, 2 when the benchmark could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from psycopg import AsyncConnection

from agent_runtime.config.settings import StorageSettings
from agent_runtime.db.metadata import MetadataStore

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
TENANT = "bench"


@dataclass
class MetadataBench:
    writes: int
    pool_size: int
    rounds: list[float] = field(default_factory=list)  # writes/s per measured round
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0

    @property
    def median_writes_per_s(self) -> float:
        return statistics.median(self.rounds) if self.rounds else 0.0

    def percentile_ms(self, share: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


@asynccontextmanager
async def throwaway_role(admin_url: str) -> AsyncIterator[str]:
    """The DSN of a fresh role whose ``search_path`` is its own, empty schema."""
    name = f"bench_meta_{secrets.token_hex(4)}"
    password = secrets.token_hex(12)
    parts = urlsplit(admin_url)
    host = f"{parts.hostname or '127.0.0.1'}:{parts.port or 5432}"
    async with await AsyncConnection.connect(
        admin_url, autocommit=True, connect_timeout=10
    ) as admin:
        await admin.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
        await admin.execute(f"CREATE SCHEMA {name} AUTHORIZATION {name}")
        await admin.execute(f"ALTER ROLE {name} SET search_path = {name}")
    try:
        yield f"postgresql://{name}:{password}@{host}{parts.path}"
    finally:
        async with await AsyncConnection.connect(
            admin_url, autocommit=True, connect_timeout=10
        ) as admin:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (name,),
            )
            await admin.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
            await admin.execute(f"DROP ROLE IF EXISTS {name}")


async def one_round(store: MetadataStore, writes: int, result: MetadataBench | None) -> float:
    """``writes`` thread creations at once; their writes/s (recorded into ``result``)."""

    async def write() -> float:
        started = time.perf_counter()
        await store.create_thread(TENANT, metadata={"bench": True})
        return (time.perf_counter() - started) * 1000

    started = time.perf_counter()
    outcomes = await asyncio.gather(*(write() for _ in range(writes)), return_exceptions=True)
    rate = writes / (time.perf_counter() - started)
    if result is not None:
        result.rounds.append(rate)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                result.errors += 1
            else:
                result.latencies_ms.append(outcome)
    return rate


async def run_benchmark(
    admin_url: str, writes: int, rounds: int, pool_size: int, timeout_s: float
) -> MetadataBench:
    result = MetadataBench(writes=writes, pool_size=pool_size)
    async with throwaway_role(admin_url) as dsn:
        settings = StorageSettings(
            _env_file=None,
            data_dir=Path(".agent-data"),
            database_url=dsn,
            db_pool_size=pool_size,
            db_timeout_s=timeout_s,
        )
        store = MetadataStore(settings)
        await store.setup()
        try:
            await store.ensure_tenant(TENANT, TENANT)
            await one_round(store, writes, None)  # warm-up: connections, prepared statements
            for number in range(1, rounds + 1):
                rate = await one_round(store, writes, result)
                print(f"round {number}: {rate:,.0f} writes/s", flush=True)
        finally:
            await store.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=2000, help="writes in flight at once")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds")
    parser.add_argument("--pool-size", type=int, default=10, help="AGENT_DB_POOL_SIZE")
    parser.add_argument("--timeout", type=float, default=60.0, help="AGENT_DB_TIMEOUT_S")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("AGENT_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="a database this benchmark may create (and drop) a role and schema in",
    )
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args(argv)
    if args.writes < 1 or args.rounds < 1:
        print("--writes and --rounds must be positive", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(
            run_benchmark(args.postgres_url, args.writes, args.rounds, args.pool_size, args.timeout)
        )
    except Exception as error:
        print(f"Benchmark failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    print(
        f"{args.writes} writes at once, pool of {args.pool_size}: median "
        f"{result.median_writes_per_s:,.0f} writes/s over {args.rounds} rounds; one write "
        f"p50 {result.percentile_ms(0.5):.0f} ms, p99 {result.percentile_ms(0.99):.0f} ms; "
        f"{result.errors} errors"
    )
    if args.json:
        figures = {k: v for k, v in asdict(result).items() if k != "latencies_ms"}
        print(json.dumps({**figures, "median_writes_per_s": result.median_writes_per_s}))
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
