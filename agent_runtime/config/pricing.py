"""Model prices and what a call costs: the worst case before it, the real cost after.

Money is :class:`~decimal.Decimal` US dollars here and integer micro-dollars
(:func:`to_micros`) wherever it is stored or summed (the usage ledger, the budget counters
in Redis), so that no float drift accumulates.

For the router (the intended use)::

    price = prices.price(model)                        # PriceTable, from BudgetSettings
    prompt = estimate_prompt_tokens(request.messages, request.tools)
    worst = estimate_worst_case(price, prompt, request.max_tokens or default_max_tokens)
    reservation = await guard.reserve(tenant_id, key_id, worst)
    ...call the provider (with max_tokens set, so the worst case is a real bound)...
    await guard.settle(reservation, cost(price, result.usage))

This module imports nothing of the runtime at run time (``agent_runtime.config.settings`` imports
it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from agent_runtime.core.types import TokenUsage

MICROS_PER_USD = 1_000_000
_MILLION = Decimal(1_000_000)

# The prompt estimate: see estimate_prompt_tokens.
ASCII_CHARS_PER_TOKEN = 3
TOKENS_PER_MESSAGE = 4
TOKENS_PER_REPLY = 3
TOKENS_PER_IMAGE = 1_000


class ModelPrice(BaseModel):
    """A model's list price in USD per million tokens, prompt (input) and completion."""

    model_config = ConfigDict(frozen=True)

    input_per_million_usd: Decimal = Field(ge=0)
    output_per_million_usd: Decimal = Field(ge=0)

    def __init__(
        self,
        input_per_million_usd: Decimal | float | str,
        output_per_million_usd: Decimal | float | str,
    ) -> None:
        # Positional construction, ModelPrice(2.5, 10), as well as by keyword / from JSON.
        super().__init__(
            input_per_million_usd=_decimal(input_per_million_usd),
            output_per_million_usd=_decimal(output_per_million_usd),
        )


def _decimal(value: Decimal | float | str | int) -> Decimal:
    # str() first: Decimal(0.1) would carry the float's binary error into every sum.
    return value if isinstance(value, Decimal) else Decimal(str(value))


def cost_of_tokens(price: ModelPrice, input_tokens: int, output_tokens: int) -> Decimal:
    """Exact cost in USD of ``input_tokens`` in and ``output_tokens`` out."""
    if input_tokens < 0 or output_tokens < 0:
        raise ValueError("token counts cannot be negative")
    return (
        price.input_per_million_usd * input_tokens + price.output_per_million_usd * output_tokens
    ) / _MILLION


def estimate_worst_case(price: ModelPrice, prompt_tokens: int, max_tokens: int) -> Decimal:
    """The most a call can cost: the whole prompt plus ``max_tokens`` of completion.

    What the router reserves before calling
    (:meth:`agent_runtime.tenancy.budgets.BudgetGuard.reserve`); it is only a bound if the provider
    is asked for at most ``max_tokens``.
    """
    return cost_of_tokens(price, prompt_tokens, max_tokens)


def cost(price: ModelPrice, usage: TokenUsage) -> Decimal:
    """The real cost of a finished call from the usage the provider reported."""
    return cost_of_tokens(price, usage.input_tokens, usage.output_tokens)


def to_micros(amount_usd: Decimal | float | int, *, round_up: bool = False) -> int:
    """USD to integer micro-dollars: half-even by default, or up (for reservations)."""
    micros = _decimal(amount_usd) * MICROS_PER_USD
    rounding = ROUND_CEILING if round_up else ROUND_HALF_EVEN
    return int(micros.to_integral_value(rounding=rounding))


def from_micros(micros: int) -> Decimal:
    return Decimal(micros) / MICROS_PER_USD


def format_usd(micros: int) -> str:
    """``$4.98``; amounts finer than a cent keep their digits: ``$0.00015``."""
    amount = from_micros(micros)
    if micros % 10_000 == 0:
        return f"${amount:,.2f}"
    text = f"{amount:,.6f}".rstrip("0")
    return f"${text}"


def estimate_prompt_tokens(
    messages: Sequence[Any], tools: Sequence[Mapping[str, Any]] | None = None
) -> int:
    """A cheap upper-ish estimate of a prompt's tokens, without a tokenizer.

    Per message: ``ceil(ascii_chars / 3) + non_ascii_chars`` of its text (name, content,
    tool calls as JSON), plus 4 tokens of framing (role included); plus 3 for the reply's
    priming, plus the tool schemas' JSON counted the same way; an image part counts 1,000.
    English prose runs at about 4 characters a token, code and JSON nearer 3, and a non-ASCII
    character (CJK, emoji) is at most about one token, so the estimate is meant to err
    high (by roughly a third on prose): too high only reserves budget that the settle
    returns, too low could let a call overspend. It is not a billing figure; the
    provider's reported usage is (:func:`cost`).

    ``messages`` are LangChain messages, or OpenAI-style dicts (``role``, ``content``).
    """
    total = TOKENS_PER_REPLY
    for message in messages:
        total += TOKENS_PER_MESSAGE + _text_tokens(_message_text(message))
        total += TOKENS_PER_IMAGE * _image_parts(_content_of(message))
    if tools:
        total += _text_tokens(json.dumps(list(tools), separators=(",", ":"), default=str))
    return total


def estimate_text_tokens(texts: Sequence[str]) -> int:
    """The same estimate for texts to embed: each one's tokens, no message framing."""
    return sum(_text_tokens(text) for text in texts)


def _text_tokens(text: str) -> int:
    ascii_chars = sum(1 for ch in text if ord(ch) < 128)
    return math.ceil(ascii_chars / ASCII_CHARS_PER_TOKEN) + (len(text) - ascii_chars)


def _content_of(message: Any) -> Any:
    if isinstance(message, Mapping):
        return message.get("content")
    return getattr(message, "content", message)


def _message_text(message: Any) -> str:
    if isinstance(message, str):
        return message
    # The role is part of the per-message overhead.
    if isinstance(message, Mapping):
        name = str(message.get("name") or "")
        calls = message.get("tool_calls") or []
    else:
        name = str(getattr(message, "name", None) or "")
        calls = getattr(message, "tool_calls", None) or []
    parts = [name, _content_text(_content_of(message))]
    if calls:
        parts.append(json.dumps(calls, separators=(",", ":"), default=str))
    return " ".join(part for part in parts if part)


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts: list[str] = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, Mapping) and part.get("type") == "text":
                texts.append(str(part.get("text", "")))
            elif not _is_image(part):
                texts.append(json.dumps(part, separators=(",", ":"), default=str))
        return " ".join(texts)
    return json.dumps(content, separators=(",", ":"), default=str)


def _is_image(part: Any) -> bool:
    return isinstance(part, Mapping) and str(part.get("type", "")).startswith("image")


def _image_parts(content: Any) -> int:
    if not isinstance(content, list):
        return 0
    return sum(1 for part in content if _is_image(part))
