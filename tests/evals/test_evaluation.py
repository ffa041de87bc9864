"""Evaluations: the score schema, the fake judge, the golden set runner, reports and metrics,
the CLI's exit codes and the online sampler; all in process, no Ray."""

from __future__ import annotations

import asyncio
import io
import json
import random
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph import START, StateGraph
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from agent_runtime.cli.evaluate import evaluate, parser
from agent_runtime.config.models_file import load
from agent_runtime.config.settings import EvalSettings
from agent_runtime.core.records import RunRecord
from agent_runtime.core.types import ChatRequest, ChatResult
from agent_runtime.evals.judge import Exchange, Judge, ToolResult, render_prompt
from agent_runtime.evals.local import default_models, router_model
from agent_runtime.evals.online import OnlineJudge
from agent_runtime.evals.report import (
    metrics_registry,
    push_metrics,
    render_markdown,
    write_reports,
)
from agent_runtime.evals.runner import EvalReport, EvalRunner, InProcessGraphs, RemoteGraphs
from agent_runtime.evals.schema import GoldenSet, Judgement, JudgeScore, Thresholds, load_golden
from agent_runtime.execution.chat_model import RouterChatModel
from agent_runtime.fake.fake_model import fake_judgement
from agent_runtime.gateway.model_router import ModelRouter
from agent_runtime.protocol.sse import to_jsonable
from graphs import react
from graphs.registry import default_registry
from tests.evals.eval_harness import ANSWERS, EXPECTED, GOLDEN, ROOT, TOOL, runner_for, stable

# --- the score schema and the judge's reply ------------------------------------------------


# --- the fake judge -------------------------------------------------------------------------


# --- exchanges from a run's values ------------------------------------------------------------


# --- the golden set ---------------------------------------------------------------------------


def test_the_eval_router_uses_the_default_models_file() -> None:
    assert default_models() == load(ROOT / "models.yaml")


# --- the runner, end to end, and what it writes ---------------------------------------------------


async def test_default_golden_set_end_to_end(router: ModelRouter, tmp_path: Path) -> None:
    seen: list[tuple[int, int, str]] = []
    runner = runner_for(router, on_case=lambda i, n, case: seen.append((i, n, case.id)))
    report = await runner.run(load_golden(GOLDEN), golden_path="evals/golden/default.yaml")
    assert seen == [(i, 6, case) for i, case in enumerate(EXPECTED, 1)]
    assert report.passed
    for case in report.cases:
        relevance, helpfulness, rationale = EXPECTED[case.id]
        assert case.judgement.score == JudgeScore(
            relevance=relevance, helpfulness=helpfulness, hallucination=False, rationale=rationale
        ), case.id
        assert case.answer == ANSWERS[case.id]
        assert case.failures == []
    by_id = {case.id: case for case in report.cases}
    assert by_id["analysis-average"].specialist == "analysis"
    assert by_id["analysis-average"].tools == ["calculator"]
    assert by_id["general-capital"].specialist == "general"
    assert by_id["react-direct"].specialist is None
    summary = report.summary()
    assert summary.model_dump() == {
        "cases": 6,
        "passed": 6,
        "failed": 0,
        "judge_failures": 0,
        "run_errors": 0,
        "mean_relevance": 5.0,
        "mean_helpfulness": 3.6667,
        "hallucination_rate": 0.0,
    }

    # Deterministic: a second run reports the same, timings aside.
    again = await runner_for(router).run(
        load_golden(GOLDEN), golden_path="evals/golden/default.yaml"
    )
    assert stable(again.to_json()) == stable(report.to_json())

    files = write_reports(report, tmp_path / "reports")
    data = json.loads(files.json.read_text())
    assert stable(data) == stable(report.to_json())
    assert data["passed"] is True and data["suite"] == "default"
    assert data["cases"][3] | {"duration_ms": 0} == {
        "id": "react-multiply",
        "graph": "react",
        "question": "What is 12 * 7?",
        "answer": "Tool result: 84",
        "specialist": None,
        "tools": ["calculator"],
        "judgement": {
            "score": {
                "relevance": 5,
                "helpfulness": 5,
                "hallucination": False,
                "rationale": TOOL,
            },
            "error": None,
            "raw": json.dumps(
                fake_judgement(
                    render_prompt(
                        Exchange(
                            question="What is 12 * 7?",
                            answer="Tool result: 84",
                            tool_results=(ToolResult("calculator", "84"),),
                            tools_called=("calculator",),
                        )
                    )
                )
            ),
            "model": "fake-smart",
        },
        "failures": [],
        "error": None,
        "duration_ms": 0,
        "passed": True,
    }
    markdown = files.markdown.read_text()
    assert markdown.startswith("# Evaluation: default\n\nPASSED: 6/6 cases passed")
    assert "| analysis-average | multi_agent | pass | 5 | 5 | no | - |" in markdown
    assert "| general-capital | multi_agent | pass | 5 | 3 | no | - |" in markdown
    assert files.metrics == tmp_path / "reports" / "default.prom"
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(files.metrics.read_text())
        for s in family.samples
    }
    suite = (("suite", "default"),)
    assert samples[("agent_eval_cases", suite)] == 6
    assert samples[("agent_eval_cases_passed", suite)] == 6
    assert samples[("agent_eval_cases_failed", suite)] == 0
    assert samples[("agent_eval_judge_failures", suite)] == 0
    assert samples[("agent_eval_hallucination_rate", suite)] == 0
    assert samples[("agent_eval_score_mean", (("metric", "helpfulness"), *suite))] == 3.6667
    assert samples[("agent_eval_score_mean", (("metric", "relevance"), *suite))] == 5
    for case_id, (relevance, helpfulness, _) in EXPECTED.items():
        labels = (("case", case_id), ("graph", by_id[case_id].graph))
        assert samples[("agent_eval_case_passed", (*labels, *suite))] == 1
        key = ("agent_eval_case_score", (*labels, ("metric", "relevance"), *suite))
        assert samples[key] == relevance
        key = ("agent_eval_case_score", (*labels, ("metric", "helpfulness"), *suite))
        assert samples[key] == helpfulness
        key = ("agent_eval_case_score", (*labels, ("metric", "hallucination"), *suite))
        assert samples[key] == 0
    assert ("agent_eval_last_run_timestamp_seconds", suite) in samples


async def test_failures_are_recorded_and_the_suite_goes_on(router: ModelRouter) -> None:
    golden = GoldenSet.model_validate(
        {
            "version": 1,
            "name": "mixed",
            "cases": [
                {
                    "id": "wrong-expectations",
                    "graph": "multi_agent",
                    "turns": ["What is the capital of France?"],
                    "expect": {
                        "specialist": "code",
                        "tools": ["calculator"],
                        "must_mention": ["Paris"],
                        "must_not_mention": ["France"],
                        "state_contains": {"reasoning": "nowhere"},
                    },
                },
                {"id": "broken", "graph": "broken", "turns": ["hi"]},
                {
                    "id": "strict",
                    "graph": "react",
                    "turns": ["Hi there, octopus?"],
                    "expect": {"min_helpfulness": 4},
                },
            ],
        }
    )

    def broken(models: Any) -> StateGraph[Any]:
        def fail(state: react.ReactState) -> dict[str, Any]:
            raise RuntimeError("graph bug")

        graph = StateGraph(react.ReactState)
        graph.add_node("fail", fail)
        graph.add_edge(START, "fail")
        return graph

    builds = {
        "multi_agent": default_registry().get("multi_agent").build,
        "react": react.build,
        "broken": broken,
    }
    runner = EvalRunner(
        InProcessGraphs(builds, lambda alias: router_model(router, alias)),
        Judge(router_model(router, "smart")),
        judge_model="smart",
        provider="fake",
    )
    report = await runner.run(golden)
    wrong, failed, strict = report.cases
    assert wrong.failures == [
        "answer does not mention 'Paris'",
        "answer mentions 'France'",
        "specialist is 'general', not 'code'",
        "tools called: [], expected ['calculator']",
        "state 'reasoning' is ['router: classified as general by fake-fast', "
        "'general: answered by fake-smart'], which lacks 'nowhere'",
    ]
    assert failed.error == "RuntimeError: graph bug"
    assert failed.failures == ["run failed: RuntimeError: graph bug"]
    assert strict.failures == ["helpfulness 3 < 4"]
    assert not report.passed
    assert report.summary().run_errors == 1

    # A judge that answers prose fails every judged case, and says why.
    prose = Judge(FakeListChatModel(responses=["Looks fine to me."]))
    report = await EvalRunner(
        InProcessGraphs(builds, lambda alias: router_model(router, alias)),
        prose,
        judge_model="prose",
        provider="fake",
    ).run(golden, only=lambda case: case.id == "strict")
    (case,) = report.cases
    assert case.failures == ["judge: no JSON object in the judge's reply"]
    assert report.summary().judge_failures == 1
    assert report.summary().mean_relevance is None
    assert "- judge failed: no JSON object in the judge's reply" in render_markdown(report)
    names = {s.name for f in metrics_registry(report).collect() for s in f.samples}
    assert "agent_eval_case_score" not in names and "agent_eval_judge_failures" in names


async def test_remote_graphs_use_one_thread_per_case() -> None:
    calls: list[tuple[str, Any]] = []

    class Threads:
        async def create(self, **kwargs: Any) -> dict[str, Any]:
            calls.append(("create", kwargs))
            return {"thread_id": "t1"}

    class Runs:
        async def wait(self, thread_id: str, assistant_id: str, **kwargs: Any) -> Any:
            calls.append(("wait", (thread_id, assistant_id, kwargs["input"])))
            return {"messages": [{"type": "human", "content": "x"}]}

    class Client:
        threads = Threads()
        runs = Runs()

    golden = load_golden(GOLDEN)
    case = next(c for c in golden.cases if c.id == "memory-recall")
    values = await RemoteGraphs(Client()).run(case)
    assert values == {"messages": [{"type": "human", "content": "x"}]}
    assert calls == [
        ("create", {"metadata": {"eval_case": "memory-recall"}}),
        ("wait", ("t1", "memory", {"messages": [{"role": "user", "content": case.turns[0]}]})),
        ("wait", ("t1", "memory", {"messages": [{"role": "user", "content": case.turns[1]}]})),
    ]


def test_metrics_push_to_a_pushgateway() -> None:
    report = EvalReport(
        suite="default",
        version=1,
        golden="g.yaml",
        provider="fake",
        judge_model="smart",
        thresholds=Thresholds(),
        started_at="2026-01-01T00:00:00+00:00",
        duration_s=1.5,
        cases=[],
    )
    sent: dict[str, Any] = {}

    def handler(url: str, method: str, timeout: Any, headers: Any, data: bytes) -> Any:
        sent.update(url=url, method=method, data=data.decode())
        return lambda: None

    push_metrics(report, "http://pushgateway:9091", job="nightly", handler=handler)
    assert sent["url"] == "http://pushgateway:9091/metrics/job/nightly/suite/default"
    assert sent["method"] == "PUT"
    assert 'agent_eval_cases{suite="default"} 0.0' in sent["data"]
    assert 'agent_eval_duration_seconds{suite="default"} 1.5' in sent["data"]


# --- the CLI: thresholds and exit codes ---------------------------------------------------------


async def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = await evaluate(parser().parse_args(list(argv)), out)
    return code, out.getvalue()


async def test_cli_exit_codes_follow_the_thresholds(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    code, text = await cli("--golden", str(GOLDEN), "--out", out)
    assert code == 0
    assert "[3/6] multi_agent/analysis-average: PASS" in text
    assert "analysis-average  multi_agent  pass      5    5  no" in text
    assert "6 cases: 6 passed, 0 failed (0 judge failures, 0 run errors); mean relevance " in text
    assert f"metrics: {out}/default.prom" in text

    code, text = await cli("--golden", str(GOLDEN), "--out", out, "--min-helpfulness", "4")
    assert code == 1
    assert "    - helpfulness 3 < 4" in text
    assert "6 cases: 2 passed, 4 failed" in text
    assert json.loads((tmp_path / "out" / "default.json").read_text())["passed"] is False

    code, text = await cli(
        "--golden", str(GOLDEN), "--out", out, "--graph", "react", "--min-relevance", "5", "-q"
    )
    assert code == 0
    assert "2 cases: 2 passed" in text and "[1/2]" not in text


async def test_cli_refuses_unusable_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nname: x\ncases: []\n")
    assert (await cli("--golden", str(bad), "--out", str(tmp_path)))[0] == 2
    assert "bad.yaml: cases" in capsys.readouterr().err
    bad.write_text("version: 1\nname: x\ncases: [{id: a, graph: nope, turns: [hi]}]\n")
    assert (await cli("--golden", str(bad), "--out", str(tmp_path)))[0] == 2
    assert "unknown graphs ['nope']" in capsys.readouterr().err
    assert (await cli("--golden", str(GOLDEN), "--case", "nope", "--out", str(tmp_path)))[0] == 2


def test_make_eval_command_runs(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent_runtime.cli.evaluate",
            "-q",
            "--out",
            str(tmp_path),
            "--case",
            "react-multiply",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "1 cases: 1 passed" in done.stdout
    assert (tmp_path / "default.prom").exists()


# --- online sampling -----------------------------------------------------------------------------


def run_record(graph_id: str = "react", run_id: str = "run-1") -> RunRecord:
    now = datetime.now(UTC)
    return RunRecord(
        run_id=run_id,
        thread_id="t",
        tenant_id="acme",
        assistant_id=graph_id,
        graph_id=graph_id,
        created_at=now,
        updated_at=now,
    )


def eval_settings(**values: Any) -> EvalSettings:
    return EvalSettings(_env_file=None, **values)


def test_eval_settings_default_off_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AGENT_EVAL_SAMPLE_RATE", "AGENT_EVAL_GRAPHS", "AGENT_EVAL_JUDGE_MODEL"):
        monkeypatch.delenv(name, raising=False)
    assert EvalSettings(_env_file=None).sample_rate == 0
    monkeypatch.setenv("AGENT_EVAL_SAMPLE_RATE", "0.1")
    monkeypatch.setenv("AGENT_EVAL_GRAPHS", "react, memory")
    settings = EvalSettings(_env_file=None)
    assert (settings.sample_rate, settings.graphs, settings.judge_model) == (
        0.1,
        ["react", "memory"],
        "smart",
    )
    monkeypatch.setenv("AGENT_EVAL_SAMPLE_RATE", "1.5")
    with pytest.raises(ValidationError):
        EvalSettings(_env_file=None)


def test_sampler_rate_is_seeded() -> None:
    judge = Judge(FakeListChatModel(responses=["{}"]))

    def decisions(seed: int, rate: float, status: str = "success") -> list[bool]:
        online = OnlineJudge(judge, eval_settings(sample_rate=rate), rng=random.Random(seed))
        return [online.sampled(run_record(), status) for _ in range(10_000)]

    drawn = decisions(7, 0.1)
    assert drawn == decisions(7, 0.1)
    rng = random.Random(7)
    assert sum(drawn) == sum(rng.random() < 0.1 for _ in range(10_000))
    assert 900 < sum(drawn) < 1100
    assert not any(decisions(7, 0.0))
    assert all(decisions(7, 1.0))
    assert not any(decisions(7, 1.0, status="error")) and not any(decisions(7, 1.0, "interrupted"))
    online = OnlineJudge(judge, eval_settings(sample_rate=1.0, graphs=["memory"]))
    assert not online.sampled(run_record("react"), "success")
    assert online.sampled(run_record("memory"), "success")


async def test_online_judge_scores_a_finished_run(router: ModelRouter) -> None:
    graph = react.build(lambda alias: router_model(router, alias)).compile()
    state = react.ReactState(messages=[HumanMessage("What is 12 * 7?")], tool_calls=0)
    values = to_jsonable(await graph.ainvoke(state))
    seen: list[tuple[str, Judgement]] = []
    online = OnlineJudge(
        Judge(router_model(router, "smart")),
        eval_settings(sample_rate=1.0),
        on_judgement=lambda run, judgement: seen.append((run.run_id, judgement)),
    )
    task = online.submit(run_record(), "success", values)
    assert task is not None
    judgement = await task
    assert judgement is not None
    assert judgement.score == JudgeScore(
        relevance=5, helpfulness=5, hallucination=False, rationale=TOOL
    )
    assert seen == [("run-1", judgement)]
    assert online.pending == 0
    # Off by default; an interrupted run (no answer yet) has nothing to judge.
    assert (
        OnlineJudge(online._judge, eval_settings()).submit(run_record(), "success", values) is None
    )
    assert await online.judge_run(run_record(), {"messages": [HumanMessage("hi")]}) is None


async def test_online_judge_bounds_what_is_in_flight() -> None:
    release = asyncio.Event()

    async def slow(request: ChatRequest) -> ChatResult:
        await release.wait()
        raise ConnectionError("late")

    def broken_hook(run: RunRecord, judgement: Judgement) -> None:
        raise RuntimeError("metrics down")  # a broken hook is logged, never raised

    online = OnlineJudge(
        Judge(RouterChatModel(alias="smart", call=slow)),
        eval_settings(sample_rate=1.0, max_pending=2),
        on_judgement=broken_hook,
    )
    values = {"messages": [HumanMessage("q?"), AIMessage("a.")]}
    tasks = [online.submit(run_record(run_id=f"r{i}"), "success", values) for i in range(3)]
    assert tasks[2] is None and online.pending == 2
    release.set()
    results = [await t for t in tasks if t is not None]
    assert [r.error for r in results if r is not None] == [
        "judge call failed: ConnectionError: late"
    ] * 2
    blocked, calling = asyncio.Event(), asyncio.Event()

    async def never(request: ChatRequest) -> ChatResult:
        calling.set()
        await blocked.wait()
        raise AssertionError

    online = OnlineJudge(
        Judge(RouterChatModel(alias="smart", call=never)), eval_settings(sample_rate=1.0)
    )
    task = online.submit(run_record(), "success", values)
    await asyncio.wait_for(calling.wait(), timeout=5)  # the judge call is in flight
    await online.aclose()
    assert task is not None and task.cancelled()
