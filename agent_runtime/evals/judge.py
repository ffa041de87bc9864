"""The judge: a chat model asked to score one exchange, answering JSON that is validated.

:func:`last_exchange` takes a run's final values (LangChain messages, or their JSON as a
run's output carries them) and finds the last user message, the answer to it, the tools
called and their results, and the conversation before. :class:`Judge` renders that as a
prompt with tagged sections (``<conversation>``, ``<tool_results>``, ``<question>``,
``<answer>``), asks its model and validates the reply against
:class:`~agent_runtime.evals.schema.JudgeScore`. A reply that is not such JSON, and a model call
that fails, are a :class:`~agent_runtime.evals.schema.Judgement` with ``error`` set: never raised.
The fake provider answers these prompts itself
(:func:`agent_runtime.fake.fake_model.fake_judgement`).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import ValidationError

from agent_runtime.evals.schema import Judgement, JudgeScore
from agent_runtime.fake.fake_model import JUDGE_MARKER, content_text

RAW_LIMIT = 2000
# Prompt size bounds: the judge sees the end of a long conversation, not all of it.
MAX_CONVERSATION_LINES = 12
MAX_TEXT_CHARS = 4000

JUDGE_SYSTEM_PROMPT = (
    f"{JUDGE_MARKER} of an AI assistant's answers. Score the assistant's <answer> to the "
    "user's <question>, given the earlier <conversation> and the <tool_results> the "
    "assistant saw.\n"
    "- relevance: an integer 1-5, how directly the answer addresses the question "
    "(5: entirely on topic; 1: unrelated).\n"
    "- helpfulness: an integer 1-5, how useful the answer is to the user (5: complete and "
    "correct; 1: useless).\n"
    "- hallucination: true if the answer states facts, numbers or results that neither the "
    "question, the conversation nor the tool results support; else false.\n"
    "- rationale: one or two sentences on why.\n"
    "Reply with only one JSON object, no other text: "
    '{"relevance": <1-5>, "helpfulness": <1-5>, "hallucination": <true|false>, '
    '"rationale": "<text>"}'
)

_ROLES = {
    "human": "user",
    "user": "user",
    "ai": "assistant",
    "assistant": "assistant",
    "AIMessageChunk": "assistant",
    "tool": "tool",
    "system": "system",
    "developer": "system",
}
_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")
_TAGS = ("conversation", "tool_results", "question", "answer")


@dataclass(frozen=True, slots=True)
class ToolResult:
    name: str
    content: str


@dataclass(frozen=True, slots=True)
class Exchange:
    """The last user message of a run, the answer, and what the answer could rest on."""

    question: str
    answer: str
    conversation: tuple[str, ...] = ()  # "user: ..." / "assistant: ..." lines before it
    tool_results: tuple[ToolResult, ...] = ()
    tools_called: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class _Message:
    role: str
    text: str
    tool_calls: tuple[str, ...]
    name: str


def _tool_call_names(calls: Any) -> tuple[str, ...]:
    names: list[str] = []
    for call in calls if isinstance(calls, list) else []:
        if isinstance(call, Mapping):
            function = call.get("function")
            name = call.get("name") or (
                function.get("name") if isinstance(function, Mapping) else None
            )
            if isinstance(name, str) and name:
                names.append(name)
    return tuple(names)


def _message(message: Any) -> _Message | None:
    """A LangChain message, or its JSON (``type`` or OpenAI's ``role``), in one shape."""
    if isinstance(message, BaseMessage):
        role = _ROLES.get(message.type, message.type)
        calls = getattr(message, "tool_calls", None) or []
        return _Message(role, message.text, _tool_call_names(calls), message.name or "")
    if isinstance(message, Mapping):
        kind = message.get("type") or message.get("role")
        role = _ROLES.get(kind, str(kind)) if isinstance(kind, str) else "other"
        name = message.get("name")
        return _Message(
            role,
            content_text(message.get("content")),
            _tool_call_names(message.get("tool_calls")),
            name if isinstance(name, str) else "",
        )
    return None


def _clip(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + " ..."


def last_exchange(values: Any) -> Exchange | None:
    """The last user message in ``values["messages"]`` and what followed it.

    None when there is no user message, or no assistant answer after it (a run that stopped
    at an interrupt, for instance). The answer is the last assistant message's text.
    """
    raw = values.get("messages") if isinstance(values, Mapping) else None
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        return None
    messages = [m for m in map(_message, raw) if m is not None]
    last_user = next(
        (i for i in range(len(messages) - 1, -1, -1) if messages[i].role == "user"), None
    )
    if last_user is None:
        return None
    after = messages[last_user + 1 :]
    answers = [m for m in after if m.role == "assistant"]
    if not answers:
        return None
    before = [
        f"{m.role}: {_clip(m.text, 500)}"
        for m in messages[:last_user]
        if m.role in ("user", "assistant") and m.text
    ]
    return Exchange(
        question=messages[last_user].text,
        answer=answers[-1].text,
        conversation=tuple(before[-MAX_CONVERSATION_LINES:]),
        tool_results=tuple(ToolResult(m.name, m.text) for m in after if m.role == "tool"),
        tools_called=tuple(name for m in answers for name in m.tool_calls),
    )


def _fenced(text: str) -> str:
    # Text that closes one of the prompt's own tags could end its section early.
    for tag in _TAGS:
        text = text.replace(f"</{tag}>", f"</ {tag}>")
    return text


def render_prompt(exchange: Exchange) -> str:
    """The judge's user message: the exchange in tagged sections."""
    conversation = "\n".join(exchange.conversation) or "(none)"
    results = (
        "\n".join(
            f"[{r.name or 'tool'}] {' '.join(_clip(r.content).split())}"
            for r in exchange.tool_results
        )
        or "(none)"
    )
    sections = (
        ("conversation", conversation),
        ("tool_results", results),
        ("question", _clip(exchange.question)),
        ("answer", _clip(exchange.answer)),
    )
    return "\n".join(f"<{tag}>\n{_fenced(text)}\n</{tag}>" for tag, text in sections)


class JudgeOutputError(ValueError):
    """A judge reply that is not a valid score."""


def parse_score(text: str) -> JudgeScore:
    """The score in a judge's reply: a JSON object, maybe in a code fence or among prose."""
    body = _FENCE.sub("", text.strip())
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end < start:
        raise JudgeOutputError("no JSON object in the judge's reply")
    try:
        data = json.loads(body[start : end + 1])
    except ValueError as exc:
        raise JudgeOutputError(f"the judge's JSON does not parse ({exc})") from exc
    try:
        return JudgeScore.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "(object)"
        raise JudgeOutputError(f"the judge's score is invalid: {where}: {first['msg']}") from exc


class Judge:
    """Scores exchanges with ``model`` (any LangChain chat model; a RouterChatModel here)."""

    def __init__(self, model: BaseChatModel, *, timeout_s: float = 60.0) -> None:
        self._model = model
        self._timeout_s = timeout_s

    def messages(self, exchange: Exchange) -> list[BaseMessage]:
        return [SystemMessage(JUDGE_SYSTEM_PROMPT), HumanMessage(render_prompt(exchange))]

    async def score(self, exchange: Exchange) -> Judgement:
        """The judge's verdict; failures (a bad reply, a failed call) are in ``error``."""
        try:
            async with asyncio.timeout(self._timeout_s):
                reply = await self._model.ainvoke(self.messages(exchange))
        except Exception as exc:  # a judge that fails is recorded, never a crash
            detail = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            return Judgement(error=f"judge call failed: {type(exc).__name__}: {detail}"[:500])
        text = reply.text
        metadata = reply.response_metadata
        model = metadata.get("model_name") or metadata.get("model")
        name = str(model) if model else None
        try:
            score = parse_score(text)
        except JudgeOutputError as exc:
            return Judgement(error=str(exc), raw=text[:RAW_LIMIT], model=name)
        return Judgement(score=score, raw=text[:RAW_LIMIT], model=name)
