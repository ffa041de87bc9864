"""Runs a golden set: each case through its graph, then the judge, then the checks.

Graphs run in process (:class:`InProcessGraphs`: an app's graphs, each case on a fresh
in-memory checkpointer and store, their ``runtime_model`` calls sent to a given router) or
on a running stack
(:class:`RemoteGraphs`, a langgraph-sdk client). A case passes when its run ends, its
expectations hold (:func:`check_expectations`), the judge answers, and the scores meet the
thresholds. The judge always runs here, whatever ran the graph.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore
from pydantic import BaseModel, Field

from agent_runtime.evals.judge import Exchange, Judge, last_exchange
from agent_runtime.evals.schema import GoldenCase, GoldenSet, Judgement, Thresholds
from agent_runtime.execution.chat_model import RouterCalls, router_calls
from agent_runtime.user_app.graph_loader import LoadedGraph

DEFAULT_CASE_TIMEOUT_S = 120.0


class GraphExecutor(Protocol):
    """Runs a case's turns on one new thread; returns the state values after the last."""

    async def run(self, case: GoldenCase) -> Any: ...


class InProcessGraphs:
    """``graphs`` (an app's, loaded here) run in this process, their models' calls sent to
    ``router``."""

    def __init__(self, graphs: Iterable[LoadedGraph], router: RouterCalls) -> None:
        self._graphs = {graph.graph_id: graph for graph in graphs}
        self._router = router

    @property
    def graph_ids(self) -> list[str]:
        return list(self._graphs)

    async def run(self, case: GoldenCase) -> Any:
        config: RunnableConfig = {"configurable": {"thread_id": f"eval-{case.id}"}}
        values: Any = None
        with router_calls(self._router):
            async with self._graphs[case.graph].open(
                config, checkpointer=InMemorySaver(), store=InMemoryStore()
            ) as graph:
                for turn in case.turns:
                    values = await graph.ainvoke({"messages": [HumanMessage(turn)]}, config)
        return values


class RemoteGraphs:
    """A running stack, through a langgraph-sdk client (``get_client(url=, api_key=)``)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    async def run(self, case: GoldenCase) -> Any:
        thread = await self._client.threads.create(metadata={"eval_case": case.id})
        values: Any = None
        for turn in case.turns:
            values = await self._client.runs.wait(
                thread["thread_id"],
                case.graph,
                input={"messages": [{"role": "user", "content": turn}]},
            )
        return values


class CaseResult(BaseModel):
    id: str
    graph: str
    question: str = ""
    answer: str = ""
    specialist: str | None = None
    tools: list[str] = Field(default_factory=list, description="Called in the last turn.")
    judgement: Judgement = Field(default_factory=Judgement)
    failures: list[str] = Field(default_factory=list)
    error: str | None = Field(default=None, description="The run itself failed.")
    duration_ms: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.failures


class Summary(BaseModel):
    cases: int
    passed: int
    failed: int
    judge_failures: int
    run_errors: int
    mean_relevance: float | None
    mean_helpfulness: float | None
    hallucination_rate: float | None


class EvalReport(BaseModel):
    suite: str
    version: int
    golden: str = Field(description="The golden set file.")
    provider: str = Field(description="What answered: the in-process fake, a models file...")
    judge_model: str
    thresholds: Thresholds
    started_at: str
    duration_s: float
    cases: list[CaseResult]

    @property
    def passed(self) -> bool:
        return all(case.passed for case in self.cases)

    def summary(self) -> Summary:
        scores = [c.judgement.score for c in self.cases if c.judgement.score is not None]
        count = len(scores)

        def mean(values: Sequence[float]) -> float | None:
            return round(sum(values) / count, 4) if count else None

        passed = sum(case.passed for case in self.cases)
        return Summary(
            cases=len(self.cases),
            passed=passed,
            failed=len(self.cases) - passed,
            judge_failures=sum(c.judgement.error is not None for c in self.cases),
            run_errors=sum(c.error is not None for c in self.cases),
            mean_relevance=mean([s.relevance for s in scores]),
            mean_helpfulness=mean([s.helpfulness for s in scores]),
            hallucination_rate=mean([float(s.hallucination) for s in scores]),
        )

    def to_json(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data["passed"] = self.passed
        data["summary"] = self.summary().model_dump()
        for case, dumped in zip(self.cases, data["cases"], strict=True):
            dumped["passed"] = case.passed
        return data


def _mentions(text: str, needle: str) -> bool:
    return needle.casefold() in text.casefold()


def _contains(actual: Any, expected: Any) -> bool:
    if actual == expected:
        return True
    if isinstance(actual, str) and isinstance(expected, str):
        return _mentions(actual, expected)
    return isinstance(actual, list) and expected in actual


def check_expectations(case: GoldenCase, exchange: Exchange, values: Any) -> list[str]:
    """What in the case's expectations the run does not show (empty: all hold)."""
    expect = case.expect
    failures = [
        f"answer does not mention {needle!r}"
        for needle in expect.must_mention
        if not _mentions(exchange.answer, needle)
    ]
    failures += [
        f"answer mentions {needle!r}"
        for needle in expect.must_not_mention
        if _mentions(exchange.answer, needle)
    ]
    state = values if isinstance(values, Mapping) else {}
    if expect.specialist is not None and state.get("agent") != expect.specialist:
        failures.append(f"specialist is {state.get('agent')!r}, not {expect.specialist!r}")
    if expect.tools is not None and set(exchange.tools_called) != set(expect.tools):
        failures.append(
            f"tools called: {sorted(set(exchange.tools_called))}, expected {sorted(expect.tools)}"
        )
    for key, wanted in expect.state_contains.items():
        if not _contains(state.get(key), wanted):
            failures.append(f"state {key!r} is {state.get(key)!r}, which lacks {wanted!r}")
    return failures


def check_scores(judgement: Judgement, thresholds: Thresholds) -> list[str]:
    score = judgement.score
    if score is None:
        return [f"judge: {judgement.error}"]
    failures = []
    if score.relevance < thresholds.min_relevance:
        failures.append(f"relevance {score.relevance} < {thresholds.min_relevance}")
    if score.helpfulness < thresholds.min_helpfulness:
        failures.append(f"helpfulness {score.helpfulness} < {thresholds.min_helpfulness}")
    if score.hallucination and not thresholds.allow_hallucination:
        failures.append("hallucination")
    return failures


class EvalRunner:
    """Runs cases one after the other (the report's order is the file's)."""

    def __init__(
        self,
        graphs: GraphExecutor,
        judge: Judge,
        *,
        judge_model: str,
        provider: str,
        case_timeout_s: float = DEFAULT_CASE_TIMEOUT_S,
        on_case: Callable[[int, int, CaseResult], None] | None = None,
    ) -> None:
        self._graphs = graphs
        self._judge = judge
        self._judge_model = judge_model
        self._provider = provider
        self._case_timeout_s = case_timeout_s
        self._on_case = on_case

    async def run_case(self, case: GoldenCase, thresholds: Thresholds) -> CaseResult:
        started = time.perf_counter()
        result = CaseResult(id=case.id, graph=case.graph)
        try:
            async with asyncio.timeout(self._case_timeout_s):
                values = await self._graphs.run(case)
        except Exception as exc:  # a failing run is a failed case, and the suite goes on
            detail = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            if isinstance(exc, TimeoutError):
                detail = f"no answer within {self._case_timeout_s:g} s"
            result.error = f"{type(exc).__name__}: {detail}"[:500]
            result.failures = [f"run failed: {result.error}"]
            result.duration_ms = (time.perf_counter() - started) * 1000
            return result
        exchange = last_exchange(values)
        if isinstance(values, Mapping) and isinstance(values.get("agent"), str):
            result.specialist = values["agent"]
        if exchange is None:
            result.failures = ["the run ended without an answer to the last turn"]
            result.duration_ms = (time.perf_counter() - started) * 1000
            return result
        result.question, result.answer = exchange.question, exchange.answer
        result.tools = list(exchange.tools_called)
        result.judgement = await self._judge.score(exchange)
        result.failures = check_expectations(case, exchange, values) + check_scores(
            result.judgement, case.expect.thresholds(thresholds)
        )
        result.duration_ms = (time.perf_counter() - started) * 1000
        return result

    async def run(
        self,
        golden: GoldenSet,
        *,
        golden_path: str = "",
        thresholds: Thresholds | None = None,
        only: Callable[[GoldenCase], bool] | None = None,
    ) -> EvalReport:
        """Every case (or those ``only`` keeps) under ``thresholds`` (default: the file's)."""
        limits = thresholds or golden.thresholds
        cases = [case for case in golden.cases if only is None or only(case)]
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        started = time.perf_counter()
        results = []
        for index, case in enumerate(cases, 1):
            result = await self.run_case(case, limits)
            results.append(result)
            if self._on_case is not None:
                self._on_case(index, len(cases), result)
        return EvalReport(
            suite=golden.name,
            version=golden.version,
            golden=golden_path,
            provider=self._provider,
            judge_model=self._judge_model,
            thresholds=limits,
            started_at=started_at,
            duration_s=round(time.perf_counter() - started, 3),
            cases=results,
        )
