"""``make bench``'s figures: Server-Timing, percentiles, the hop breakdown and the targets."""

from __future__ import annotations

import random
import statistics

import pytest
from pydantic import ValidationError

from agent_runtime.core.timing import RunTimings
from loadtests.bench_figures import (
    HOP_LABELS,
    HopBreakdown,
    Overhead,
    ServerTiming,
    parse_server_timing,
    percentile,
)
from tests.loadtests.bench_samples import bench_result


def header(provider: float, router: float, checkpoint: float, orch: float, graph: float) -> str:
    """A Server-Timing value as the runtime writes it
    (``agent_runtime/api/routes/assistant_routes.py``)."""
    timings = RunTimings(provider_ms=provider, router_ms=router, checkpoint_ms=checkpoint)
    return timings.server_timing(orchestrator=orch, graph=graph)


# -- Server-Timing -----------------------------------------------------------------------


def test_parse_server_timing_reads_the_runtime_header() -> None:
    parsed = parse_server_timing(header(101.5, 120.25, 8.0, 160.0, 140.75))
    assert parsed == {
        "provider": 101.5,
        "router": 120.25,
        "checkpoint": 8.0,
        "orchestrator": 160.0,
        "graph": 140.75,
    }


def test_parse_server_timing_skips_entries_without_duration() -> None:
    parsed = parse_server_timing('cache;desc="hit", db;dur=53, app;desc="x";dur=47.2, miss')
    assert parsed == {"db": 53.0, "app": 47.2}


def test_server_timing_needs_every_part() -> None:
    assert ServerTiming.from_header(header(1, 2, 3, 4, 5)).graph == 5.0
    with pytest.raises(ValidationError):
        ServerTiming.from_header("provider;dur=1, router;dur=2")


# -- percentiles -----------------------------------------------------------------------


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([4.0, 1.0, 3.0, 2.0], 0) == 1.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 100) == 4.0
    assert percentile([7.0], 99) == 7.0


def test_percentile_matches_statistics_inclusive_quantiles() -> None:
    values = [random.Random(7).uniform(0, 500) for _ in range(137)]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    for q in (1, 25, 50, 90, 99):
        assert percentile(values, q) == pytest.approx(cuts[q - 1])


def test_percentile_rejects_empty_and_out_of_range() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


# -- the hop breakdown -----------------------------------------------------------------


def test_breakdown_splits_client_latency_by_hop() -> None:
    timing = ServerTiming(provider=100, router=120, checkpoint=10, orchestrator=170, graph=150)
    hops = HopBreakdown.from_run(185.0, timing)
    assert hops.client_ingress == 15.0  # client - orchestrator
    assert hops.ingress_orchestrator == 20.0  # orchestrator - graph
    assert hops.graph == 20.0  # graph - router - checkpoint
    assert hops.router == 20.0  # router - provider
    assert hops.provider == 100.0
    assert hops.checkpoint == 10.0
    assert hops.total == pytest.approx(185.0)
    assert hops.overhead == pytest.approx(85.0)


def test_breakdown_means_add_up_to_the_mean_latency() -> None:
    runs = [
        (180.0, ServerTiming(provider=100, router=118, checkpoint=9, orchestrator=160, graph=140)),
        (210.0, ServerTiming(provider=104, router=130, checkpoint=14, orchestrator=190, graph=171)),
        (199.0, ServerTiming(provider=101, router=121, checkpoint=11, orchestrator=181, graph=160)),
    ]
    overhead = Overhead.from_runs(runs, errors=["HTTP 503"])
    assert overhead.runs == 3 and overhead.errors == 1
    assert overhead.error_kinds == {"HTTP 503": 1}
    assert overhead.mean.total == pytest.approx(statistics.fmean(c for c, _ in runs))
    assert overhead.median.provider == 101.0
    assert overhead.median.client_ingress == 20.0  # medians of 20, 20, 18
    assert overhead.p50_ms == pytest.approx(98.0)  # overheads 80, 106, 98
    assert overhead.latency_p50_ms == 199.0
    assert set(HOP_LABELS) == set(overhead.median.model_dump())


# -- the targets -----------------------------------------------------------------------


def test_verdicts_follow_the_targets() -> None:
    result = bench_result()
    assert result.cold_start.met  # 12.3 s <= 15 s
    assert not result.idle_memory.met  # 1.71 GiB > 1.5 GiB
    assert result.overhead.p50_ms == pytest.approx(75.5)
    assert not result.overhead.met
    assert result.throughput is not None
    assert result.throughput.ratio == pytest.approx(0.45)
    assert not result.throughput.met
    dumped = result.model_dump()
    assert dumped["cold_start"]["met"] is True
    assert dumped["throughput"]["ratio"] == pytest.approx(0.45)
    assert dumped["throughput"]["ours"]["server_cpu_ms_per_run"] == pytest.approx(
        150.0 / 100 * 30 * 1000 / 540
    )
