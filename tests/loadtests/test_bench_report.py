"""``make bench``'s report: the table, the reading of the figures and the doc's section."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests.bench_figures import HOP_LABELS, HopBreakdown
from loadtests.bench_report import (
    ADVICE,
    END_MARK,
    START_MARK,
    critical_parts,
    render_section,
    render_table,
    replace_section,
    where_time_goes,
    write_doc,
)
from tests.loadtests.bench_samples import bench_result


def test_render_section_has_every_figure_and_the_command() -> None:
    text = render_section(bench_result())
    assert START_MARK not in text and END_MARK not in text
    assert "## Latest run: 2026-01-02 03:04 UTC" in text
    assert "| Cold start (launch -> first 200 on /ok) | 12.3 s | <= 15 s | met |" in text
    assert "| 1.71 GiB | <= 1.5 GiB | **not met** |" in text
    assert "75.5 ms | <= 15 ms | **not met** |" in text
    assert "18.0 / 40.0 runs/s = 0.45x | >= 0.5x | **not met** |" in text
    for label in HOP_LABELS.values():
        assert f"| {label} |" in text
    assert "| ours | 18.0 |" in text and "| baseline | 40.0 |" in text
    assert "The stack had 13 processes when the window opened and 15 at its end." in text
    assert "ray::ServeReplica:agent-runtime:Ingress 228 MiB" in text
    assert "python loadtests/bench.py --runs 20" in text
    assert where_time_goes(bench_result()) in text


def test_render_section_lists_errors_by_kind() -> None:
    result = bench_result()
    assert result.throughput is not None
    result.throughput.ours.errors = 3
    result.throughput.ours.error_kinds = {"HTTP 503": 2, "ReadTimeout": 1}
    text = render_section(result)
    assert "Errors by kind: ours: {'HTTP 503': 2, 'ReadTimeout': 1}." in text
    result.throughput.baseline.runs_per_s = 20.0
    assert result.throughput.ratio == pytest.approx(0.9)
    assert not result.throughput.met  # errors fail the throughput target whatever the ratio


def test_render_without_throughput_and_as_a_table() -> None:
    result = bench_result(with_throughput=False)
    text = render_section(result)
    assert "### Throughput" not in text and "runs/s" not in text
    table = render_table(result).splitlines()
    assert table[0].split() == ["figure", "result", "target", "verdict"]
    assert len(table) == 5  # header + cold start, memory, overhead p50, overhead p99
    assert "**" not in render_table(result)


def test_where_time_goes_names_the_biggest_hops() -> None:
    result = bench_result()
    median = result.overhead.median  # client_ingress ~21.5, ingress_orchestrator 19, ...
    text = where_time_goes(result)
    assert f"{ADVICE['client_ingress'][0]} ({median.client_ingress:.1f} ms)" in text
    assert f"{ADVICE['ingress_orchestrator'][0]} ({median.ingress_orchestrator:.1f} ms)" in text
    assert "about 2 ms a call" in text  # 104 ms for two calls of 50 ms
    assert "overlap" not in text  # the graph part is positive here
    assert "(0.45x)" in text


def test_critical_parts_merge_a_negative_graph_part_with_checkpoints() -> None:
    hops = HopBreakdown(
        client_ingress=16,
        ingress_orchestrator=19,
        graph=-14,
        router=13,
        provider=115,
        checkpoint=25,
    )
    parts = critical_parts(hops)
    assert list(parts) == ["ingress_orchestrator", "client_ingress", "router", "graph_checkpoint"]
    assert parts["graph_checkpoint"] == 11
    positive = critical_parts(hops.model_copy(update={"graph": 3}))
    assert list(positive) == [
        "checkpoint",
        "ingress_orchestrator",
        "client_ingress",
        "router",
        "graph",
    ]


def test_replace_section_keeps_the_rest_of_the_document() -> None:
    document = f"# Benchmarks\n\nMethod.\n\n{START_MARK}\nold figures\n{END_MARK}\n\n## Notes\n"
    updated = replace_section(document, "new figures")
    assert updated == (
        f"# Benchmarks\n\nMethod.\n\n{START_MARK}\nnew figures\n{END_MARK}\n\n## Notes\n"
    )
    assert replace_section(updated, "new figures") == updated


def test_replace_section_appends_when_there_are_no_markers() -> None:
    updated = replace_section("# Benchmarks\n\nMethod.\n", "figures")
    assert updated == f"# Benchmarks\n\nMethod.\n\n{START_MARK}\nfigures\n{END_MARK}\n"


def test_write_doc_creates_or_updates_the_file(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    write_doc(bench_result(), doc)
    first = doc.read_text()
    assert first.startswith("# Benchmarks\n") and first.count(START_MARK) == 1
    doc.write_text(first + "\nKept after the section.\n")
    write_doc(bench_result(with_throughput=False), doc)
    second = doc.read_text()
    assert second.count(START_MARK) == 1 and "### Throughput" not in second
    assert second.endswith("Kept after the section.\n")
