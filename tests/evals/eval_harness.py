"""What the eval tests share: the default golden set, its deterministic scores under the fake
provider, an in-process runner over the registry's graphs, and the judge's prompt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent_runtime.evals.judge import Exchange, Judge, ToolResult, render_prompt
from agent_runtime.evals.local import router_model
from agent_runtime.evals.runner import EvalRunner, InProcessGraphs
from agent_runtime.execution.chat_model import RouterCalls
from agent_runtime.gateway.model_router import ModelRouter
from agent_runtime.user_app.graph_loader import load_app

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "evals" / "golden" / "default.yaml"
ECHO = "no unsupported numbers; the answer repeats the question"
TOOL = "the answer restates a tool result; no unsupported numbers"
# The default golden set under the fake provider: case -> (relevance, helpfulness, rationale).
EXPECTED = {
    "general-capital": (5, 3, f"2/2 question terms in the answer; {ECHO}"),
    "code-reverse": (5, 3, f"5/5 question terms in the answer; {ECHO}"),
    "analysis-average": (5, 5, TOOL),
    "react-multiply": (5, 5, TOOL),
    "react-direct": (5, 3, f"3/3 question terms in the answer; {ECHO}"),
    "memory-recall": (5, 3, f"2/2 question terms in the answer; {ECHO}"),
}
ANSWERS = {
    "general-capital": "[fake-smart] You said: What is the capital of France?",
    "code-reverse": "[fake-smart] You said: Write a Python function that reverses a string.",
    "analysis-average": "Tool result: 9",
    "react-multiply": "Tool result: 84",
    "react-direct": "[fake-smart] You said: Tell me a fun fact about octopuses.",
    "memory-recall": "[fake-fast] You said: What is my favourite colour?",
}
VOLATILE = {"started_at", "duration_s", "duration_ms"}


def runner_for(router: ModelRouter, judge: Judge | None = None, **kwargs: Any) -> EvalRunner:
    # The example app as `make eval` runs it: loaded from the repository's langgraph.json.
    app = load_app(ROOT / "langgraph.json")
    graphs = InProcessGraphs(app.graphs.values(), RouterCalls(router.chat))
    return EvalRunner(
        graphs,
        judge or Judge(router_model(router, "smart")),
        judge_model="smart",
        provider="fake provider (in process)",
        **kwargs,
    )


def stable(data: Any) -> Any:
    """A report's JSON without its timings."""
    if isinstance(data, dict):
        return {k: stable(v) for k, v in data.items() if k not in VOLATILE}
    if isinstance(data, list):
        return [stable(v) for v in data]
    return data


def prompt(
    question: str,
    answer: str,
    tools: tuple[ToolResult, ...] = (),
    conversation: tuple[str, ...] = (),
) -> str:
    """A judge prompt, as the judge writes it."""
    return render_prompt(
        Exchange(question=question, answer=answer, conversation=conversation, tool_results=tools)
    )
