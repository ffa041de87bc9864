"""The fake model's reply rules, token counts and chunking, without HTTP."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import pytest

from agent_runtime.fake.fake_model import (
    chunk_text,
    classify,
    completion_id,
    content_text,
    fake_reply,
    find_expression,
    tool_call_id,
)

CALCULATOR = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate arithmetic.",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}},
    },
}
CURRENT_TIME = {
    "type": "function",
    "function": {"name": "current_time", "parameters": {"type": "object", "properties": {}}},
}
CLASSIFY_SYSTEM = {
    "role": "system",
    "content": "Classify the request as code, analysis or general. Answer with one word.",
}


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Why does my Python script crash?", "code"),
        ("Please DEBUG this", "code"),
        ("write a SQL query", "code"),
        ("Analyse the sales trend", "analysis"),
        ("what is the average of these numbers", "analysis"),
        ("Tell me a joke about cats", "general"),
        ("", "general"),
    ],
)
def test_classification_labels(text: str, label: str) -> None:
    answer = fake_reply("fake-fast", [CLASSIFY_SYSTEM, user(text)])
    assert answer.text == label
    assert classify(text) == label
    assert answer.tool_calls == ()
    assert answer.finish_reason == "stop"


def test_classification_reads_the_last_user_message_and_wins_over_tools() -> None:
    messages = [
        CLASSIFY_SYSTEM,
        user("debug my code"),
        {"role": "assistant", "content": "code"},
        user("compare the metrics for 2 + 2"),
    ]
    answer = fake_reply("fake-smart", messages, [CALCULATOR])
    assert answer.text == "analysis"
    assert answer.tool_calls == ()


def test_tool_result_is_reported() -> None:
    messages = [
        user("what is 2 + 3 * 4?"),
        {"role": "assistant", "content": None, "tool_calls": []},
        {"role": "tool", "tool_call_id": "call_x", "content": "14"},
    ]
    answer = fake_reply("fake-fast", messages, [CALCULATOR])
    assert answer.text == "Tool result: 14"
    assert answer.finish_reason == "stop"


def test_calculator_call_has_the_expression_and_a_deterministic_id() -> None:
    text = "what is 2 + 3 * 4?"
    answer = fake_reply("fake-fast", [user(text)], [CURRENT_TIME, CALCULATOR])
    assert answer.text is None
    assert answer.finish_reason == "tool_calls"
    (call,) = answer.tool_calls
    assert call.name == "calculator"
    assert json.loads(call.arguments) == {"expression": "2 + 3 * 4"}
    digest = hashlib.sha256(("fake-fast" + text + "calculator").encode()).hexdigest()
    assert call.id == "call_" + digest[:12] == tool_call_id("fake-fast", text, "calculator")
    encoded = json.dumps([call.wire()], separators=(",", ":"))
    assert answer.completion_tokens == math.ceil(len(encoded) / 4)


@pytest.mark.parametrize(
    ("text", "expression"),
    [
        ("what is 2 + 3 * 4?", "2 + 3 * 4"),
        ("Compute (10 - 4) / 3.5 please.", "(10 - 4) / 3.5"),
        ("2 ** 10", "2 ** 10"),
        ("what's 17 % 5.", "17 % 5"),
        ("year 2024 and then 1+1", "1+1"),
        ("no maths here - at all", None),
        ("just 42", None),
    ],
)
def test_find_expression(text: str, expression: str | None) -> None:
    assert find_expression(text) == expression


def test_current_time_call_when_the_user_asks_for_the_time() -> None:
    answer = fake_reply("m", [user("What TIME is it?")], [CALCULATOR, CURRENT_TIME])
    (call,) = answer.tool_calls
    assert call.name == "current_time"
    assert call.arguments == "{}"
    assert call.id == tool_call_id("m", "What TIME is it?", "current_time")


def test_time_must_be_a_whole_word() -> None:
    answer = fake_reply("m", [user("timeless sometimes")], [CURRENT_TIME])
    assert answer.tool_calls == ()
    assert answer.text == "[m] You said: timeless sometimes"


def test_offered_tools_that_do_not_apply_fall_back_to_echo() -> None:
    # An expression but no calculator offered, and the last message is not the user's.
    assert fake_reply("m", [user("2 + 2")], [CURRENT_TIME]).text == "[m] You said: 2 + 2"
    messages = [user("what is the date"), {"role": "assistant", "content": "soon"}]
    answer = fake_reply("m", messages, [CURRENT_TIME])
    assert answer.tool_calls == ()
    assert answer.text == "[m] You said: what is the date"


def test_echo_joins_text_content_parts() -> None:
    content = [
        {"type": "text", "text": "hello "},
        {"type": "image_url", "image_url": {"url": "data:,"}},
        {"type": "text", "text": "world"},
    ]
    messages = [{"role": "system", "content": "Be nice."}, {"role": "user", "content": content}]
    answer = fake_reply("fake-fast", messages)
    assert content_text(content) == "hello world"
    assert answer.text == "[fake-fast] You said: hello world"
    assert answer.prompt_tokens == math.ceil((len("Be nice.") + len("hello world")) / 4)
    assert answer.completion_tokens == math.ceil(len(answer.text) / 4)
    assert answer.total_tokens == answer.prompt_tokens + answer.completion_tokens
    assert answer.usage() == {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "total_tokens": answer.total_tokens,
    }


def test_token_counts_are_at_least_one() -> None:
    answer = fake_reply("m", [{"role": "user", "content": ""}])
    assert answer.prompt_tokens == 1
    assert answer.completion_tokens >= 1


def test_same_request_same_answer_and_id() -> None:
    messages = [user("what is 6 * 7")]
    assert fake_reply("m", messages, [CALCULATOR]) == fake_reply("m", messages, [CALCULATOR])
    first = completion_id("m", messages, [CALCULATOR])
    assert first == completion_id("m", [user("what is 6 * 7")], [CALCULATOR])
    assert first.startswith("chatcmpl-")
    assert first != completion_id("other", messages, [CALCULATOR])


@pytest.mark.parametrize("text", ["[m] You said: a  b\nc ", " leading space", "one"])
def test_chunks_are_words_that_concatenate_to_the_text(text: str) -> None:
    chunks = chunk_text(text)
    assert "".join(chunks) == text
    assert [chunk.strip() for chunk in chunks] == text.split()


@pytest.mark.parametrize("text", ["", "   "])
def test_blank_text_chunks(text: str) -> None:
    assert "".join(chunk_text(text)) == text
