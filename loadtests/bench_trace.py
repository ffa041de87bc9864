"""What keeping a run's trace costs: the same graph run with and without the recorder.

    python loadtests/bench_trace.py [--runs 400] [--model-ms 0] [--json]

No Ray, no database: the cost measured is the recorder's alone (LangChain callbacks for
every node, model and tool call, and building the trace at the end), which is what the
orchestrator adds to each run. The graph is the ReAct shape the runtime ships (an agent
node calling ``RouterChatModel``, a tool node with the calculator, the agent again); the
model's ``call`` answers in process after ``--model-ms`` (0: pure CPU, the worst case for
the ratio). Runs alternate in rounds, each round one run of each kind in a shuffled order,
so the machine's noise falls on both alike. Printed: median and p99 latency per run of
each kind, the median of the per-round differences, and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
import uuid
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from agent_runtime.core.types import Attempt, ChatRequest, ChatResult, TokenUsage
from agent_runtime.execution.chat_model import RouterChatModel
from agent_runtime.execution.run_trace import TraceRecorder
from graphs.tools import calculator


def _graph(model_ms: float) -> Any:
    async def answer(request: ChatRequest) -> ChatResult:
        if model_ms:
            await asyncio.sleep(model_ms / 1000)
        if isinstance(request.messages[-1], ToolMessage):
            message = AIMessage(content="42")
        else:
            call = {"name": "calculator", "args": {"expression": "6*7"}, "id": uuid.uuid4().hex}
            message = AIMessage(content="", tool_calls=[call])
        return ChatResult(
            message=message,
            model="fake-smart",
            usage=TokenUsage(input_tokens=40, output_tokens=8),
            provider_ms=model_ms,
            attempts=[Attempt(model="fake-smart", outcome="ok", latency_ms=model_ms)],
            cost_usd=0.00018,
        )

    bound = RouterChatModel(alias="smart", call=answer).bind_tools([calculator])

    async def agent(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [await bound.ainvoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode([calculator]))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition, ["tools", END])
    graph.add_edge("tools", "agent")
    return graph.compile()


async def _one(graph: Any, traced: bool) -> float:
    config: dict[str, Any] = {}
    recorder = TraceRecorder(str(uuid.uuid4())) if traced else None
    if recorder is not None:
        config["callbacks"] = [recorder]
    started = time.perf_counter()
    await graph.ainvoke({"messages": [("user", "what is 6 * 7?")]}, config)
    if recorder is not None:
        trace = recorder.finish(thread_id=None, graph_id="react", attempt=1, status="success")
        trace.model_dump(mode="json")  # what storing it costs before the database
        assert trace.totals.model_calls == 2 and trace.totals.tool_calls == 1
    return (time.perf_counter() - started) * 1000


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(runs: int, model_ms: float) -> dict[str, Any]:
    graph = _graph(model_ms)
    for _ in range(20):  # warm-up: imports, caches
        await _one(graph, True)
        await _one(graph, False)
    plain: list[float] = []
    traced: list[float] = []
    deltas: list[float] = []
    rng = random.Random(0)
    for done in range(runs):
        order = [True, False]
        rng.shuffle(order)
        times = {kind: await _one(graph, kind) for kind in order}
        traced.append(times[True])
        plain.append(times[False])
        deltas.append(times[True] - times[False])
        if (done + 1) % 100 == 0:
            print(f"  {done + 1}/{runs} rounds", flush=True)
    figures = {
        "runs": runs,
        "model_ms": model_ms,
        "plain_p50_ms": statistics.median(plain),
        "plain_p99_ms": _p(plain, 0.99),
        "traced_p50_ms": statistics.median(traced),
        "traced_p99_ms": _p(traced, 0.99),
        "added_p50_ms": statistics.median(deltas),
        "ratio_p50": statistics.median(traced) / statistics.median(plain),
    }
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=400, help="rounds (one run of each kind)")
    parser.add_argument("--model-ms", type=float, default=0.0, help="each model call's latency")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()
    print(f"bench_trace: {args.runs} rounds, model calls of {args.model_ms:g} ms", flush=True)
    result = asyncio.run(main(args.runs, args.model_ms))
    print(
        f"without the recorder: p50 {result['plain_p50_ms']:.2f} ms, "
        f"p99 {result['plain_p99_ms']:.2f} ms\n"
        f"with the recorder:    p50 {result['traced_p50_ms']:.2f} ms, "
        f"p99 {result['traced_p99_ms']:.2f} ms\n"
        f"added per run (median of round differences): {result['added_p50_ms']:.3f} ms; "
        f"ratio of medians {result['ratio_p50']:.3f}"
    )
    if args.json:
        print(json.dumps(result))
