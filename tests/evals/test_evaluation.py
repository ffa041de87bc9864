"""Evaluations: the score schema, the fake judge, the golden set runner, reports and metrics,
the CLI's exit codes and the online sampler; all in process, no Ray."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langgraph.graph import START, StateGraph
from prometheus_client.parser import text_string_to_metric_families

from agent_runtime.evals.judge import Exchange, Judge, ToolResult, render_prompt
from agent_runtime.evals.local import router_model
from agent_runtime.evals.report import (
    metrics_registry,
    push_metrics,
    render_markdown,
    write_reports,
)
from agent_runtime.evals.runner import EvalReport, EvalRunner, InProcessGraphs, RemoteGraphs
from agent_runtime.evals.schema import GoldenSet, JudgeScore, Thresholds, load_golden
from agent_runtime.fake.fake_model import fake_judgement
from agent_runtime.gateway.model_router import ModelRouter
from graphs import react
from graphs.registry import default_registry
from tests.evals.eval_harness import ANSWERS, EXPECTED, GOLDEN, TOOL, runner_for, stable

# --- the score schema and the judge's reply ------------------------------------------------


# --- the fake judge -------------------------------------------------------------------------


# --- exchanges from a run's values ------------------------------------------------------------


# --- the golden set ---------------------------------------------------------------------------


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


# --- online sampling -----------------------------------------------------------------------------
