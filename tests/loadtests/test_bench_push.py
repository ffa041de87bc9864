"""``loadtests/bench_push.py`` at a tiny size against the real Postgres and Redis, so it
cannot rot: every mode runs, its figures have their shape, waiters leave no watch behind
and the scratch database goes away. Latencies are not judged here (the machine's load
decides them); tests/runs/test_push.py shows what push must do."""

from __future__ import annotations

import asyncpg

from loadtests.bench_push import MODES, main, parse, report


async def test_a_tiny_run_measures_every_mode(postgres_url: str, redis_url: str) -> None:
    size = ["--runs", "3", "--run-ms", "5", "--idle-s", "0.5", "--warmup-s", "0.2"]
    args = parse(
        [*size, "--replicas", "2", "--postgres-url", postgres_url, "--redis-url", redis_url]
    )
    before = await scratch_databases(postgres_url)
    figures = await main(args)
    assert set(figures["idle"]) == set(MODES)
    assert set(figures["wait"]) == {"poll", "push"}
    for wait in figures["wait"].values():
        assert wait["runs"] == 3 and wait["p99_ms"] >= wait["p50_ms"]
        assert wait["watches_left"] == 0
    assert figures["wait"]["push"]["redis_subscriptions"] >= 1
    assert figures["wait"]["poll"]["redis_subscriptions"] == 0
    for idle in figures["idle"].values():
        assert idle["replicas"] == 2 and idle["statements_per_s"] >= 0
    assert figures["idle"]["push-no-redis"]["redis_commands_per_s"] == 0
    text = report(figures, args)
    assert "| push |" in text and "| poll |" in text
    assert await scratch_databases(postgres_url) <= before  # its own was dropped


async def scratch_databases(postgres_url: str) -> int:
    admin = await asyncpg.connect(postgres_url, timeout=10)
    try:
        query = "SELECT count(*) FROM pg_database WHERE datname LIKE 'bench_push_%'"
        return int(await admin.fetchval(query))
    finally:
        await admin.close()
