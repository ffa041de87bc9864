"""Online sampling: the eval settings, the seeded sampler and the bounded background judge."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage, HumanMessage
from pydantic import ValidationError

from agent_runtime.config.settings import EvalSettings
from agent_runtime.core.records import RunRecord
from agent_runtime.core.types import ChatRequest, ChatResult
from agent_runtime.evals.judge import Judge
from agent_runtime.evals.local import router_model
from agent_runtime.evals.online import OnlineJudge
from agent_runtime.evals.schema import Judgement, JudgeScore
from agent_runtime.execution.chat_model import RouterChatModel
from agent_runtime.gateway.model_router import ModelRouter
from agent_runtime.protocol.sse import to_jsonable
from graphs import react
from tests.evals.eval_harness import TOOL


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
