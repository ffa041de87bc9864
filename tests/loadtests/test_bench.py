"""``make bench``'s pure parts (timing, statistics, rendering) and the baseline app it compares.

No Ray here: the benchmark's stack is only ever started by ``loadtests/bench.py`` itself. The
baseline runs in-process over ASGI against the fake provider (ASGI too), to prove it really
runs the registry's graph with its checkpointer.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from agent_runtime.config.fake_provider_settings import FakeProviderSettings
from agent_runtime.core.timing import RunTimings
from agent_runtime.fake.provider_app import create_fake_provider_app
from loadtests.baseline_app import create_baseline_app, openai_models
from loadtests.bench import (
    ADVICE,
    END_MARK,
    HOP_LABELS,
    START_MARK,
    BenchResult,
    ColdStart,
    HopBreakdown,
    IdleMemory,
    LoadResult,
    Machine,
    Overhead,
    RunSettings,
    ServerTiming,
    Throughput,
    critical_parts,
    parse_server_timing,
    percentile,
    render_section,
    render_table,
    replace_section,
    run_body,
    run_error,
    where_time_goes,
    write_doc,
)

FAKE_BASE_URL = "http://fake/v1"


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


def test_run_error_accepts_only_a_final_answer() -> None:
    request = httpx.Request("POST", "http://x/threads/t/runs/wait")

    def response(status: int, body: Any) -> httpx.Response:
        return httpx.Response(status, json=body, request=request)

    answer = {"messages": [{"type": "human", "content": "hi"}, {"type": "ai", "content": "yo"}]}
    assert run_error(response(200, answer)) is None
    assert run_error(response(503, {"detail": "down"})) == "HTTP 503"
    assert run_error(response(200, {"__error__": {"error": "X"}})) == (
        "no answer in the final values"
    )
    assert run_error(response(200, [1, 2])) == "body is not a JSON object"


# -- rendering -------------------------------------------------------------------------


def load_result(system: str, runs_per_s: float, server_cpu: float) -> LoadResult:
    return LoadResult(
        system=system,
        users=32,
        duration_s=30.0,
        runs=int(runs_per_s * 30),
        errors=0,
        runs_per_s=runs_per_s,
        p50_ms=400.0,
        p99_ms=900.0,
        client_cpu_pct=12.0,
        server_cpu_pct=server_cpu,
        provider_cpu_pct=6.0,
        machine_cpu_pct=97.0,
        other_cpu_pct=3.0,
        server_processes=(13, 15) if system == "ours" else (1, 1),
    )


def bench_result(*, with_throughput: bool = True) -> BenchResult:
    runs = [
        (
            170.0 + i,
            ServerTiming(provider=104, router=121, checkpoint=6, orchestrator=158, graph=139),
        )
        for i in range(20)
    ]
    throughput = Throughput(
        ours=load_result("ours", 18.0, 150.0), baseline=load_result("baseline", 40.0, 95.0)
    )
    return BenchResult(
        date="2026-01-02 03:04 UTC",
        command="python loadtests/bench.py --runs 20",
        machine=Machine(
            cpus=2,
            ram_gib=23.5,
            cpu_model="Test CPU",
            python="3.11.7",
            ray="2.60.0",
            foreign_ray_clusters=0,
            load_average=0.3,
        ),
        settings=RunSettings(
            runs=20,
            warmup_runs=10,
            users=32,
            duration_s=30,
            load_warmup_s=5,
            provider_latency_ms=50,
            provider="standalone",
            storage="SQLite (embedded)",
            limiter="in-process",
        ),
        cold_start=ColdStart(seconds=12.34),
        idle_memory=IdleMemory(
            rss_gib=1.71,
            pss_gib=1.19,
            processes=13,
            outside_launcher_tree=0,
            idle_cpu_pct=8.0,
            rss_mib_by_kind={"raylet": 31.0, "ray::ServeReplica:agent-runtime:Ingress": 228.0},
        ),
        overhead=Overhead.from_runs(runs),
        throughput=throughput if with_throughput else None,
    )


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


# -- the baseline app ------------------------------------------------------------------


@pytest.fixture
async def baseline() -> AsyncIterator[httpx.AsyncClient]:
    # Every fault field is set so AGENT_FAKE_* variables in the environment cannot leak in.
    fake = create_fake_provider_app(
        FakeProviderSettings(
            latency_ms=0, jitter_ms=0, fail_rate=0, failing_models=[], hanging_models=[]
        )
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=fake), base_url=FAKE_BASE_URL, timeout=10.0
    ) as provider:
        app = create_baseline_app(openai_models(FAKE_BASE_URL, http_async_client=provider))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://baseline", timeout=10.0
        ) as client:
            yield client


def messages_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = body["messages"]
    return messages


async def test_baseline_runs_the_multi_agent_graph_on_a_thread(
    baseline: httpx.AsyncClient,
) -> None:
    created = await baseline.post("/threads", json={})
    assert created.status_code == 200
    thread = created.json()
    assert thread["status"] == "idle" and thread["thread_id"]

    route = f"/threads/{thread['thread_id']}/runs/wait"
    first = await baseline.post(route, json=run_body(0))
    assert first.status_code == 200, first.text
    body = first.json()
    assert [m["type"] for m in messages_of(body)] == ["human", "ai"]
    assert body["agent"] == "code"
    assert body["reasoning"] == [
        "router: classified as code by fake-fast",
        "code: answered by fake-smart",
    ]
    assert messages_of(body)[-1]["content"].startswith("[fake-smart]")

    # The thread's checkpoint carries the first turn into the second.
    second = (await baseline.post(route, json=run_body(1))).json()
    assert [m["type"] for m in messages_of(second)] == ["human", "ai", "human", "ai"]
    assert second["agent"] == "general"


async def test_baseline_answers_404_for_unknown_threads_and_assistants(
    baseline: httpx.AsyncClient,
) -> None:
    missing = await baseline.post("/threads/nope/runs/wait", json=run_body(0))
    assert missing.status_code == 404
    thread_id = (await baseline.post("/threads", json={})).json()["thread_id"]
    unknown = await baseline.post(
        f"/threads/{thread_id}/runs/wait", json={**run_body(0), "assistant_id": "nope"}
    )
    assert unknown.status_code == 404
    assert "nope" in unknown.json()["detail"]
