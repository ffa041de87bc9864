"""The fake model's judge rule: a deterministic JSON score for the judge's prompt."""

from __future__ import annotations

import json

import pytest

from agent_runtime.evals.judge import JUDGE_SYSTEM_PROMPT, ToolResult
from agent_runtime.fake.fake_model import fake_judgement, fake_reply
from tests.evals.eval_harness import ECHO, prompt


@pytest.mark.parametrize(
    ("text", "score"),
    [
        (
            prompt("What is the capital of France?", "Paris is the capital of France."),
            (5, 5, False, "2/2 question terms in the answer; no unsupported numbers"),
        ),
        (
            prompt("Which rivers cross Paris and Lyon?", "Rivers cross Paris: the Seine."),
            (4, 4, False, "3/4 question terms in the answer; no unsupported numbers"),
        ),
        (
            prompt("Which rivers cross Paris and Lyon?", "Bananas are yellow."),
            (1, 1, False, "0/4 question terms in the answer; no unsupported numbers"),
        ),
        (
            prompt("What is 12 * 7?", "It is 84.", tools=(ToolResult("calculator", "84"),)),
            (5, 5, False, "the answer restates a tool result; no unsupported numbers"),
        ),
        (
            prompt("What is 12 * 7?", "12 * 7 is 96."),
            (5, 3, True, "2/2 question terms in the answer; numbers found nowhere else: 96"),
        ),
        (
            prompt(
                "How much did I spend in total?",
                "You spend 40.0 euros in total.",
                conversation=("user: I paid 40 euros",),
            ),
            (4, 4, False, "2/3 question terms in the answer; no unsupported numbers"),
        ),
        (
            prompt(
                "What is the capital of France?", "[m] You said: What is the capital of France?"
            ),
            (5, 3, False, f"2/2 question terms in the answer; {ECHO}"),
        ),
        (
            prompt("What is the capital of France?", ""),
            (
                1,
                1,
                False,
                "the answer is empty; 0/2 question terms in the answer; no unsupported numbers",
            ),
        ),
        (
            "no sections at all",
            (
                5,
                1,
                False,
                "the answer is empty; the question has no terms to match; no unsupported numbers",
            ),
        ),
    ],
)
def test_fake_judge_rules(text: str, score: tuple[int, int, bool, str]) -> None:
    relevance, helpfulness, hallucination, rationale = score
    assert fake_judgement(text) == {
        "relevance": relevance,
        "helpfulness": helpfulness,
        "hallucination": hallucination,
        "rationale": rationale,
    }


def test_fake_provider_answers_judge_prompts_with_deterministic_json() -> None:
    messages = [
        {"role": "system", "content": JUDGE_SYSTEM_PROMPT},
        {"role": "user", "content": prompt("What is 12 * 7?", "12 * 7 is 96.")},
    ]
    first = fake_reply("fake-smart", messages)
    assert first == fake_reply("fake-smart", messages)
    assert first.tool_calls == ()
    assert json.loads(first.text or "") == fake_judgement(messages[1]["content"])
    # The judge rule comes first: a judge prompt is never classified or echoed.
    classify = {"role": "system", "content": "Classify the request."}
    assert fake_reply("fake-fast", [classify, *messages]).text == first.text
