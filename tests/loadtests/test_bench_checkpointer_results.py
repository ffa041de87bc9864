"""``make bench-checkpointer``'s figures: the percentiles of the run latencies."""

from __future__ import annotations

from loadtests.bench_checkpointer_results import percentile


def test_percentile() -> None:
    assert percentile([], 50) == 0.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([0.0, 10.0], 99) == 9.9
