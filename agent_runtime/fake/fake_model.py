"""The fake provider's deterministic "model": reply rules, token counts and stream chunks.

Pure functions over OpenAI wire-format messages and tools (plain JSON objects, as they
arrive over HTTP), so the rules can be unit-tested without a server and the HTTP layer
(:mod:`agent_runtime.fake.provider_app`) does no conversion. The same request always gets the same
answer; the rules, in order, are:

0. a judge prompt (a system message holds :data:`JUDGE_MARKER`) -> a JSON score of the
   ``<answer>`` against the ``<question>`` (:func:`fake_judgement`);
1. classification (a system message says "classify") -> one of ``code|analysis|general``;
2. the last message is a tool result -> ``"Tool result: <content>"``;
3. tools offered and the last message is the user's -> a ``calculator`` or ``current_time``
   tool call when the user text asks for one;
4. otherwise an echo: ``"[<model>] You said: <last user text>"``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

FinishReason = Literal["stop", "tool_calls"]
Label = Literal["code", "analysis", "general"]

CALCULATOR_TOOL = "calculator"
CURRENT_TIME_TOOL = "current_time"

# Substrings, checked on the lowercased last user message (so "analy" matches "analyse").
CODE_KEYWORDS = (
    "code",
    "python",
    "function",
    "bug",
    "program",
    "script",
    "compile",
    "javascript",
    "sql",
    "debug",
)
ANALYSIS_KEYWORDS = (
    "analy",
    "data",
    "statistic",
    "compare",
    "trend",
    "average",
    "metric",
    "numbers",
    "chart",
)

# Runs of characters an arithmetic expression is made of; a run qualifies as an expression
# when it also holds a digit and an operator (``**`` is covered by ``*``).
_EXPRESSION_RUN = re.compile(r"[\d\s().+\-*/%]+")
_OPERATOR = re.compile(r"[+\-*/%]")
_DIGIT = re.compile(r"\d")
_TIME_WORD = re.compile(r"\b(?:time|date)\b", re.IGNORECASE)
# One word with the spaces around it: leading ones only for the first, trailing ones kept.
_WORD_CHUNK = re.compile(r"\s*\S+\s*")

# The judge rule (agent_runtime.evals.judge writes prompts in this shape; README "Evaluation").
JUDGE_MARKER = "You are an evaluator"
_JUDGE_STOPWORDS_TEXT = (
    "the and for are but not you your with this that what which who whom how why when where "
    "can does did has have had was were will would should could about from into these those "
    "there their them they its our out all any some tell please give said"
)
JUDGE_STOPWORDS = frozenset(_JUDGE_STOPWORDS_TEXT.split())
_JUDGE_TERM = re.compile(r"[a-z]+|\d+(?:\.\d+)?")
_JUDGE_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_JUDGE_TOOL_LINE = re.compile(r"^\[[^\]]*\]\s?(?P<result>.*)$")


@dataclass(frozen=True, slots=True)
class FakeToolCall:
    """One tool call, ``arguments`` already JSON-encoded as on the wire."""

    id: str
    name: str
    arguments: str

    def wire(self) -> dict[str, Any]:
        """The OpenAI ``tool_calls[]`` item (non-streaming shape)."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True, slots=True)
class FakeAnswer:
    """What the fake model answers: either text or tool calls, with token counts."""

    text: str | None
    tool_calls: tuple[FakeToolCall, ...] = field(default_factory=tuple)
    prompt_tokens: int = 1
    completion_tokens: int = 1

    @property
    def finish_reason(self) -> FinishReason:
        return "tool_calls" if self.tool_calls else "stop"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def usage(self) -> dict[str, int]:
        """The OpenAI ``usage`` object."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


def count_tokens(characters: int) -> int:
    """The fake tokenizer: four characters a token, never less than one."""
    return max(1, math.ceil(characters / 4))


def content_text(content: Any) -> str:
    """Text of a message's ``content``: a string, or the joined text of its content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text") or "")
            for part in content
            if isinstance(part, Mapping) and part.get("type") == "text"
        )
    return ""


def prompt_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    return count_tokens(sum(len(content_text(m.get("content"))) for m in messages))


def classify(text: str) -> Label:
    """The label a classification request gets for the user's text."""
    lowered = text.lower()
    if any(word in lowered for word in CODE_KEYWORDS):
        return "code"
    if any(word in lowered for word in ANALYSIS_KEYWORDS):
        return "analysis"
    return "general"


def find_expression(text: str) -> str | None:
    """The longest arithmetic expression in ``text`` ("what is 2 + 3 * 4?" -> "2 + 3 * 4")."""
    best: str | None = None
    for match in _EXPRESSION_RUN.finditer(text):
        candidate = _trim_expression(match.group())
        is_expression = bool(_DIGIT.search(candidate) and _OPERATOR.search(candidate))
        if is_expression and (best is None or len(candidate) > len(best)):
            best = candidate
    return best


def _trim_expression(run: str) -> str:
    # A sentence's full stop ends up in the run ("2 + 2."); it is not part of the expression.
    trimmed = run.strip().rstrip(".").rstrip()
    if trimmed.startswith(".") and not trimmed[1:2].isdigit():
        trimmed = trimmed.lstrip(".").lstrip()
    return trimmed


def tool_call_id(model: str, user_text: str, tool_name: str) -> str:
    digest = hashlib.sha256((model + user_text + tool_name).encode()).hexdigest()
    return "call_" + digest[:12]


def completion_id(
    model: str, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]]
) -> str:
    """``chatcmpl-`` + a hash of the request's model, messages and tools."""
    canonical = json.dumps([model, messages, tools], sort_keys=True, default=str)
    return "chatcmpl-" + hashlib.sha256(canonical.encode()).hexdigest()[:24]


def chunk_text(text: str) -> list[str]:
    """Split on word boundaries, keeping the spaces: ``"".join(chunks) == text``."""
    if not text:
        return []
    return _WORD_CHUNK.findall(text) or [text]


def _tool_names(tools: Sequence[Mapping[str, Any]]) -> set[str]:
    names: set[str] = set()
    for tool in tools:
        function = tool.get("function")
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            names.add(function["name"])
    return names


def _last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def _wants_classification(messages: Sequence[Mapping[str, Any]]) -> bool:
    return any(
        m.get("role") == "system" and "classify" in content_text(m.get("content")).lower()
        for m in messages
    )


def _pick_tool_call(model: str, user_text: str, offered: set[str]) -> FakeToolCall | None:
    if CALCULATOR_TOOL in offered:
        expression = find_expression(user_text)
        if expression is not None:
            return FakeToolCall(
                id=tool_call_id(model, user_text, CALCULATOR_TOOL),
                name=CALCULATOR_TOOL,
                arguments=json.dumps({"expression": expression}),
            )
    if CURRENT_TIME_TOOL in offered and _TIME_WORD.search(user_text):
        return FakeToolCall(
            id=tool_call_id(model, user_text, CURRENT_TIME_TOOL),
            name=CURRENT_TIME_TOOL,
            arguments="{}",
        )
    return None


def _wants_judgement(messages: Sequence[Mapping[str, Any]]) -> bool:
    return any(
        m.get("role") == "system" and JUDGE_MARKER in content_text(m.get("content"))
        for m in messages
    )


def judge_section(text: str, tag: str) -> str:
    """The text between ``<tag>`` and ``</tag>`` (its first occurrence), else ``""``."""
    found = re.search(rf"<{tag}>\n?(.*?)\n?</{tag}>", text, re.DOTALL)
    return found.group(1).strip() if found else ""


def _number(text: str) -> str:
    # "84.0" and "84" are the same number; "84.50" and "84.5" too.
    return text.rstrip("0").rstrip(".") if "." in text else text


def judge_terms(text: str) -> set[str]:
    """Lowercased words of 3+ letters that are not stopwords, and numbers."""
    terms = set()
    for term in _JUDGE_TERM.findall(text.lower()):
        if term[0].isdigit():
            terms.add(_number(term))
        elif len(term) >= 3 and term not in JUDGE_STOPWORDS:
            terms.add(term)
    return terms


def judge_numbers(text: str) -> set[str]:
    return {_number(n) for n in _JUDGE_NUMBER.findall(text)}


def fake_judgement(prompt: str) -> dict[str, Any]:
    """The fake judge's score of a judge prompt's ``<answer>`` (rules in README "Evaluation").

    * relevance (1-5): ``1 + round(4 * overlap)``, overlap being the share of the
      question's terms (:func:`judge_terms`) found in the answer; an answer that holds every
      term of one of the ``<tool_results>`` lines (``[tool] result``) has overlap 1, as has
      a question without terms;
    * hallucination: the answer has a number found neither in the question, the
      ``<conversation>`` nor the tool results;
    * helpfulness (1-5): 1 for an empty answer; else 5, less 2 when the answer repeats the
      question word for word (the fake's echo does), less 2 for a hallucination, at most
      the relevance and at least 1.
    """
    question = judge_section(prompt, "question")
    answer = judge_section(prompt, "answer")
    conversation = judge_section(prompt, "conversation")
    results = []
    for line in judge_section(prompt, "tool_results").splitlines():
        found = _JUDGE_TOOL_LINE.match(line.strip())
        if found is not None:
            results.append(found.group("result"))
    asked, said = judge_terms(question), judge_terms(answer)
    restated = any(terms and terms <= said for terms in map(judge_terms, results))
    if restated:
        overlap, why = 1.0, "the answer restates a tool result"
    elif not asked:
        overlap, why = 1.0, "the question has no terms to match"
    else:
        overlap = len(asked & said) / len(asked)
        why = f"{len(asked & said)}/{len(asked)} question terms in the answer"
    relevance = 1 + math.floor(4 * overlap + 0.5)
    supported = judge_numbers(" ".join([question, conversation, *results]))
    unsupported = sorted(judge_numbers(answer) - supported)
    if unsupported:
        why += "; numbers found nowhere else: " + ", ".join(unsupported)
    else:
        why += "; no unsupported numbers"
    repeats = bool(question) and " ".join(question.lower().split()) in " ".join(
        answer.lower().split()
    )
    if repeats:
        why += "; the answer repeats the question"
    if answer:
        helpfulness = max(1, min(relevance, 5 - 2 * repeats - 2 * bool(unsupported)))
    else:
        helpfulness, why = 1, "the answer is empty; " + why
    return {
        "relevance": relevance,
        "helpfulness": helpfulness,
        "hallucination": bool(unsupported),
        "rationale": why,
    }


def _text_answer(text: str, prompt: int) -> FakeAnswer:
    return FakeAnswer(text=text, prompt_tokens=prompt, completion_tokens=count_tokens(len(text)))


def fake_reply(
    model: str,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] = (),
) -> FakeAnswer:
    """The fake model's answer to a Chat Completions request (rules in the module docstring).

    ``messages`` and ``tools`` are OpenAI wire-format objects. A tool call's completion
    tokens count the compact JSON of the ``tool_calls`` list.
    """
    prompt = prompt_tokens(messages)
    user_text = _last_user_text(messages)
    if _wants_judgement(messages):
        return _text_answer(json.dumps(fake_judgement(user_text)), prompt)
    if _wants_classification(messages):
        return _text_answer(classify(user_text), prompt)
    last = messages[-1] if messages else {}
    if last.get("role") == "tool":
        return _text_answer("Tool result: " + content_text(last.get("content")), prompt)
    if tools and last.get("role") == "user":
        call = _pick_tool_call(model, user_text, _tool_names(tools))
        if call is not None:
            encoded = json.dumps([call.wire()], separators=(",", ":"))
            return FakeAnswer(
                text=None,
                tool_calls=(call,),
                prompt_tokens=prompt,
                completion_tokens=count_tokens(len(encoded)),
            )
    return _text_answer(f"[{model}] You said: {user_text}", prompt)
