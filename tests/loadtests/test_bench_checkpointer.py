"""``make bench-checkpointer`` with tiny numbers against the real Postgres, so it cannot rot.

Only the shape of the result is checked, never a speed: the figures themselves belong to
``docs/benchmarks.md``. A Postgres that is down makes this fail, never skip.
"""

from __future__ import annotations

import json
import secrets

import psycopg

from loadtests.bench_checkpointer import run_benchmark
from loadtests.bench_checkpointer_configs import BASELINE, CONFIGS, OURS
from loadtests.bench_checkpointer_results import BenchResult, render_table


async def test_tiny_run_measures_every_config_and_leaves_no_schema(postgres_url: str) -> None:
    prefix = f"bench_ckpt_test_{secrets.token_hex(3)}_"
    lines: list[str] = []
    result = await run_benchmark(
        users=2,
        duration_s=1.0,
        rounds=2,
        warmup_s=0.2,
        model_ms=[0.0],
        postgres_url=postgres_url,
        schema_prefix=prefix,
        progress=lines.append,
    )

    assert isinstance(result, BenchResult)
    assert result.machine["cpus"] and result.machine["postgres"]
    [workload] = result.workloads
    assert [c.name for c in workload.configs] == list(CONFIGS)
    assert len(lines) == 2 * len(CONFIGS)  # a line a turn
    for config in workload.configs:
        assert config.errors == 0, config.first_error
        assert config.runs > 0 and config.runs_per_s > 0
        assert 0 < config.p50_ms <= config.p99_ms
        assert config.ratio > 0
        assert config.cpu.process_pct > 0
        assert 0 < config.cpu.machine_pct <= 100
    assert workload.get(BASELINE).ratio == 1.0
    ours = workload.get(OURS)
    assert ours.ratio == ours.runs_per_s / workload.get(BASELINE).runs_per_s

    data = json.loads(json.dumps(result.to_json()))
    assert data["workloads"][0]["target_met"] == workload.target_met
    table = render_table(result)
    assert all(label in table for label in CONFIGS.values())

    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE starts_with(nspname, %s)", (prefix,)
        )
        row = await cursor.fetchone()
    assert row == (0,)
