"""``python -m agent_runtime.cli.evaluate`` (``make eval``): run a golden set, report, export.

By default every case runs in process, on the graphs of the app ``-c`` names (the
``langgraph.json`` here: in this repository, the example graphs), against the built-in fake
provider (deterministic);
``--models-file`` points the graphs and the judge at the providers of a models file, and
``--url`` runs the graphs on a running stack instead (the judge still runs here). Exit
status: 0 when every case passes, 1 when one fails, 2 for unusable arguments or files.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from agent_runtime.config.models_file import ModelsConfigError
from agent_runtime.evals.judge import Judge
from agent_runtime.evals.local import describe, local_router, router_model
from agent_runtime.evals.report import push_metrics, write_reports
from agent_runtime.evals.runner import (
    CaseResult,
    EvalReport,
    EvalRunner,
    GraphExecutor,
    InProcessGraphs,
)
from agent_runtime.evals.schema import GoldenSet, GoldenSetError, Thresholds, load_golden
from agent_runtime.execution.chat_model import RouterCalls
from agent_runtime.user_app.graph_loader import load_app
from agent_runtime.user_app.langgraph_json import UserAppError

DEFAULT_GOLDEN = Path("evals/golden/default.yaml")
DEFAULT_OUT = Path("evals/reports")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m agent_runtime.cli.evaluate",
        description="Run a golden set through the graphs, have a judge model score each "
        "answer, write JSON, Markdown and Prometheus reports. Default: the built-in fake "
        "provider in process (deterministic).",
        epilog="Exit status: 0 every case passed, 1 a case failed, 2 unusable input.",
    )
    p.add_argument("-c", "--config", type=Path, default=Path("langgraph.json"), help="the app")
    p.add_argument("--golden", type=Path, default=DEFAULT_GOLDEN, help="golden set file")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder of the reports")
    p.add_argument("--metrics-file", type=Path, help="the .prom file (default: OUT/SUITE.prom)")
    p.add_argument("--pushgateway", metavar="URL", help="also push the metrics there")
    p.add_argument("--job", default="agent_eval", help="Pushgateway job name")
    p.add_argument("--case", action="append", default=[], help="only this case (repeatable)")
    p.add_argument("--graph", action="append", default=[], help="only this graph's cases")
    p.add_argument("--models-file", type=Path, help="providers and aliases (not deterministic)")
    p.add_argument("--judge-model", default="smart", help="alias or model of the judge")
    p.add_argument("--url", help="run the graphs on this running stack (langgraph-sdk)")
    p.add_argument("--api-key", help="the stack's API key (with --url)")
    p.add_argument("--min-relevance", type=int, choices=range(1, 6), metavar="1-5")
    p.add_argument("--min-helpfulness", type=int, choices=range(1, 6), metavar="1-5")
    p.add_argument(
        "--allow-hallucination",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="whether a hallucination fails a case (default: the golden set's)",
    )
    p.add_argument("--case-timeout", type=float, default=120.0, help="seconds per case")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    return p


def thresholds(golden: GoldenSet, args: argparse.Namespace) -> Thresholds:
    base = golden.thresholds
    return Thresholds(
        min_relevance=args.min_relevance or base.min_relevance,
        min_helpfulness=args.min_helpfulness or base.min_helpfulness,
        allow_hallucination=base.allow_hallucination
        if args.allow_hallucination is None
        else args.allow_hallucination,
    )


def _scores(case: CaseResult) -> str:
    score = case.judgement.score
    if score is None:
        return "  -    -  -  "
    return (
        f"{score.relevance:>3} {score.helpfulness:>4}  {'yes' if score.hallucination else 'no':<3}"
    )


def progress(out: TextIO) -> Any:
    def line(index: int, total: int, case: CaseResult) -> None:
        verdict = "PASS" if case.passed else "FAIL"
        print(
            f"[{index}/{total}] {case.graph}/{case.id}: {verdict} ({case.duration_ms:.0f} ms)",
            file=out,
        )
        for failure in case.failures:
            print(f"    - {failure}", file=out)

    return line


def print_summary(report: EvalReport, out: TextIO) -> None:
    width = max([len(c.id) for c in report.cases] + [4])
    graph_width = max([len(c.graph) for c in report.cases] + [5])
    print(
        f"\n{'case':<{width}}  {'graph':<{graph_width}}  result  rel help  hallucination",
        file=out,
    )
    for case in report.cases:
        verdict = "pass" if case.passed else "FAIL"
        row = f"{case.id:<{width}}  {case.graph:<{graph_width}}  {verdict:<6}  {_scores(case)}"
        print(row.rstrip(), file=out)
    s = report.summary()

    def mean(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    print(
        f"\n{s.cases} cases: {s.passed} passed, {s.failed} failed ({s.judge_failures} judge "
        f"failures, {s.run_errors} run errors); mean relevance {mean(s.mean_relevance)}, "
        f"helpfulness {mean(s.mean_helpfulness)}, hallucination rate "
        f"{mean(s.hallucination_rate)}",
        file=out,
    )


async def evaluate(args: argparse.Namespace, out: TextIO) -> int:
    try:
        golden = load_golden(args.golden)
    except GoldenSetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        app = load_app(args.config) if args.url is None else None
    except UserAppError as error:
        print(
            f"error: {args.config} cannot be loaded:", *error.problems, sep="\n  ", file=sys.stderr
        )
        return 2
    known = list(app.graphs) if app is not None else []
    unknown = sorted({c.graph for c in golden.cases} - set(known))
    if unknown and app is not None:
        print(f"error: unknown graphs {unknown}; known: {known}", file=sys.stderr)
        return 2

    def keep(case: Any) -> bool:
        return (not args.case or case.id in args.case) and (
            not args.graph or case.graph in args.graph
        )

    if not any(keep(case) for case in golden.cases):
        print("error: no case matches --case/--graph", file=sys.stderr)
        return 2
    try:
        async with local_router(args.models_file) as router:
            graphs: GraphExecutor
            if app is None:
                from langgraph_sdk import get_client

                from agent_runtime.evals.runner import RemoteGraphs

                graphs = RemoteGraphs(get_client(url=args.url, api_key=args.api_key))
                provider = f"stack at {args.url}; judge: {describe(args.models_file)}"
            else:
                graphs = InProcessGraphs(app.graphs.values(), RouterCalls(router.chat))
                provider = describe(args.models_file)
            runner = EvalRunner(
                graphs,
                Judge(router_model(router, args.judge_model)),
                judge_model=args.judge_model,
                provider=provider,
                case_timeout_s=args.case_timeout,
                on_case=None if args.quiet else progress(out),
            )
            report = await runner.run(
                golden, golden_path=str(args.golden), thresholds=thresholds(golden, args), only=keep
            )
    except ModelsConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_summary(report, out)
    files = write_reports(report, args.out, metrics_path=args.metrics_file)
    print(f"report: {files.json}, {files.markdown}; metrics: {files.metrics}", file=out)
    if args.pushgateway:
        try:
            push_metrics(report, args.pushgateway, job=args.job)
        except OSError as exc:
            print(f"warning: push to {args.pushgateway} failed: {exc}", file=sys.stderr)
        else:
            print(f"metrics pushed to {args.pushgateway} (job {args.job})", file=out)
    return 0 if report.passed else 1


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = parser().parse_args(argv)
    return asyncio.run(evaluate(args, out or sys.stdout))


if __name__ == "__main__":
    sys.exit(main())
