"""An evaluation's report (JSON and Markdown) and metrics (Prometheus text format).

``<suite>.prom`` is written atomically (a temporary file renamed), so a node-exporter
textfile collector never reads half a file; :func:`push_metrics` sends the same metrics to
a Prometheus Pushgateway, grouped by suite. Metrics (gauges, labelled by ``suite``):

* ``agent_eval_cases``, ``agent_eval_cases_passed``, ``agent_eval_cases_failed``,
  ``agent_eval_judge_failures``, ``agent_eval_run_errors``;
* ``agent_eval_score_mean{metric="relevance"|"helpfulness"}``, ``agent_eval_hallucination_rate``;
* ``agent_eval_case_passed{case,graph}`` (1/0) and
  ``agent_eval_case_score{case,graph,metric}`` (relevance, helpfulness, hallucination 1/0);
* ``agent_eval_duration_seconds`` and ``agent_eval_last_run_timestamp_seconds``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, write_to_textfile
from prometheus_client.exposition import default_handler

from agent_runtime.evals.runner import CaseResult, EvalReport


@dataclass(frozen=True, slots=True)
class ReportFiles:
    json: Path
    markdown: Path
    metrics: Path


def metrics_registry(report: EvalReport, *, now: float | None = None) -> CollectorRegistry:
    """The report's numbers as Prometheus gauges, in a registry of their own."""
    registry = CollectorRegistry()
    summary = report.summary()
    suite = report.suite

    def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, doc, ("suite", *labels), registry=registry)

    for name, doc, value in (
        ("agent_eval_cases", "Cases run.", summary.cases),
        ("agent_eval_cases_passed", "Cases that passed.", summary.passed),
        ("agent_eval_cases_failed", "Cases that failed.", summary.failed),
        (
            "agent_eval_judge_failures",
            "Cases the judge gave no valid score.",
            summary.judge_failures,
        ),
        ("agent_eval_run_errors", "Cases whose run failed.", summary.run_errors),
        ("agent_eval_duration_seconds", "Wall time of the evaluation.", report.duration_s),
        (
            "agent_eval_last_run_timestamp_seconds",
            "When the evaluation finished (Unix time).",
            time.time() if now is None else now,
        ),
    ):
        gauge(name, doc).labels(suite).set(value)
    means = gauge("agent_eval_score_mean", "Mean judge score (1-5) over judged cases.", ("metric",))
    if summary.mean_relevance is not None:
        means.labels(suite, "relevance").set(summary.mean_relevance)
    if summary.mean_helpfulness is not None:
        means.labels(suite, "helpfulness").set(summary.mean_helpfulness)
    rate = gauge("agent_eval_hallucination_rate", "Share of judged cases flagged (0-1).")
    if summary.hallucination_rate is not None:
        rate.labels(suite).set(summary.hallucination_rate)
    passed = gauge("agent_eval_case_passed", "1 when the case passed.", ("case", "graph"))
    scores = gauge(
        "agent_eval_case_score",
        "A case's judge score (hallucination: 1/0).",
        ("case", "graph", "metric"),
    )
    for case in report.cases:
        passed.labels(suite, case.id, case.graph).set(1 if case.passed else 0)
        score = case.judgement.score
        if score is None:
            continue
        scores.labels(suite, case.id, case.graph, "relevance").set(score.relevance)
        scores.labels(suite, case.id, case.graph, "helpfulness").set(score.helpfulness)
        scores.labels(suite, case.id, case.graph, "hallucination").set(int(score.hallucination))
    return registry


def push_metrics(
    report: EvalReport,
    gateway: str,
    *,
    job: str = "agent_eval",
    handler: Callable[..., Any] = default_handler,
) -> None:
    """PUT the report's metrics to a Pushgateway (replacing this suite's previous push)."""
    push_to_gateway(
        gateway,
        job=job,
        registry=metrics_registry(report),
        grouping_key={"suite": report.suite},
        handler=handler,
    )


def _cell(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split()).replace("|", "\\|")
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _scores(case: CaseResult) -> tuple[str, str, str]:
    score = case.judgement.score
    if score is None:
        return "-", "-", "-"
    return str(score.relevance), str(score.helpfulness), "yes" if score.hallucination else "no"


def render_markdown(report: EvalReport) -> str:
    summary = report.summary()
    limits = report.thresholds

    def mean(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    lines = [
        f"# Evaluation: {report.suite}",
        "",
        f"{'PASSED' if report.passed else 'FAILED'}: {summary.passed}/{summary.cases} cases "
        f"passed, {summary.judge_failures} judge failures, {summary.run_errors} run errors.",
        "",
        f"- golden set: `{report.golden}` (version {report.version})",
        f"- provider: {report.provider}; judge model: `{report.judge_model}`",
        f"- thresholds: relevance >= {limits.min_relevance}, helpfulness >= "
        f"{limits.min_helpfulness}, hallucination "
        f"{'allowed' if limits.allow_hallucination else 'not allowed'}",
        f"- mean relevance {mean(summary.mean_relevance)}, mean helpfulness "
        f"{mean(summary.mean_helpfulness)}, hallucination rate "
        f"{mean(summary.hallucination_rate)}",
        f"- started {report.started_at}, took {report.duration_s:.2f} s",
        "",
        "| case | graph | result | relevance | helpfulness | hallucination | failures |",
        "|---|---|---|---|---|---|---|",
    ]
    for case in report.cases:
        relevance, helpfulness, hallucination = _scores(case)
        failures = _cell("; ".join(case.failures), 120) or "-"
        lines.append(
            f"| {case.id} | {case.graph} | {'pass' if case.passed else 'FAIL'} | {relevance} | "
            f"{helpfulness} | {hallucination} | {failures} |"
        )
    lines += ["", "## Cases", ""]
    for case in report.cases:
        lines += [
            f"### {case.id} ({case.graph})",
            "",
            f"- question: {_cell(case.question, 300)}",
            f"- answer: {_cell(case.answer, 300)}",
        ]
        if case.specialist is not None:
            lines.append(f"- specialist: {case.specialist}")
        if case.tools:
            lines.append(f"- tools: {', '.join(case.tools)}")
        score = case.judgement.score
        if score is not None:
            lines.append(f"- judge: {_cell(score.rationale, 300)}")
        elif case.judgement.error is not None:
            lines.append(f"- judge failed: {_cell(case.judgement.error, 300)}")
        lines.append("")
    return "\n".join(lines)


def write_reports(
    report: EvalReport, out_dir: str | Path, *, metrics_path: str | Path | None = None
) -> ReportFiles:
    """``<suite>.json``, ``<suite>.md`` and ``<suite>.prom`` (or ``metrics_path``)."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(
        json=folder / f"{report.suite}.json",
        markdown=folder / f"{report.suite}.md",
        metrics=Path(metrics_path) if metrics_path is not None else folder / f"{report.suite}.prom",
    )
    files.json.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    files.markdown.write_text(render_markdown(report), encoding="utf-8")
    files.metrics.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(files.metrics), metrics_registry(report))
    return files
