"""The golden set runner: deterministic scores end to end, recorded failures, remote threads."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langgraph.graph import START, StateGraph

from agent_runtime.evals.judge import Judge
from agent_runtime.evals.local import router_model
from agent_runtime.evals.report import metrics_registry, render_markdown
from agent_runtime.evals.runner import EvalRunner, InProcessGraphs, RemoteGraphs
from agent_runtime.evals.schema import GoldenSet, JudgeScore, load_golden
from agent_runtime.execution.chat_model import RouterCalls
from agent_runtime.gateway.model_router import ModelRouter
from graphs import react
from graphs.registry import default_registry
from tests.evals.eval_harness import ANSWERS, EXPECTED, GOLDEN, runner_for, stable
from tests.example_graphs import built


async def test_default_golden_set_end_to_end(router: ModelRouter) -> None:
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

    graphs = [
        built("multi_agent", default_registry().get("multi_agent").build),
        built("react", react.build),
        built("broken", broken),
    ]
    calls = RouterCalls(router.chat)
    runner = EvalRunner(
        InProcessGraphs(graphs, calls),
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
        InProcessGraphs(graphs, calls),
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
