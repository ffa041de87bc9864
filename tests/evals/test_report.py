"""What a run writes: the JSON, Markdown and Prometheus reports, and the metrics push."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from agent_runtime.evals.judge import Exchange, ToolResult, render_prompt
from agent_runtime.evals.report import push_metrics, write_reports
from agent_runtime.evals.runner import EvalReport
from agent_runtime.evals.schema import Thresholds, load_golden
from agent_runtime.fake.fake_model import fake_judgement
from agent_runtime.gateway.model_router import ModelRouter
from tests.evals.eval_harness import EXPECTED, GOLDEN, TOOL, runner_for, stable


async def test_reports_of_the_default_golden_set(router: ModelRouter, tmp_path: Path) -> None:
    report = await runner_for(router).run(
        load_golden(GOLDEN), golden_path="evals/golden/default.yaml"
    )
    by_id = {case.id: case for case in report.cases}
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
