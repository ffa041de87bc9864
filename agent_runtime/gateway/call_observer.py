"""What the router tells others about each model request: a plan before it, a report after.

The seam for budgets, the usage ledger and metrics. A :class:`CallObserver` is handed, once
per request (not per attempt):

* :meth:`CallObserver.before_call` a :class:`CallPlan`, before any provider is called: the
  request, its fallback chain with each model's price and limits, the completion bound each
  model will be sent, and (computed on first use) a prompt-token estimate and the worst-case
  cost. Raising refuses the request (e.g. ``BudgetExceeded``, 402): no provider is called,
  the error reaches the caller. What it returns (a reservation, say) comes back to it in
  ``after_call``;
* :meth:`CallObserver.after_call` a :class:`CallReport` once the request is over, whatever
  the outcome: the model that answered, the usage the provider reported (what was streamed,
  for a broken stream), its cost at that model's price, the latency (and, for a stream,
  the time to its first token) and every attempt.
  Errors raised here are logged, never raised: the answer has already been produced.

Observers run in the order given; ``after_call`` in reverse order.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal, Protocol

from agent_runtime.config.pricing import (
    ModelPrice,
    cost,
    estimate_prompt_tokens,
    estimate_text_tokens,
    estimate_worst_case,
)
from agent_runtime.core.types import Attempt, ChatRequest, EmbeddingRequest, TokenUsage

logger = logging.getLogger(__name__)

# ok: answered; partial: a stream broke off after its first token; error: no model
# answered; rejected: the request was refused as the caller's fault (400/422/404);
# refused: an observer refused it before any call; cancelled: the caller went away.
Outcome = Literal["ok", "partial", "error", "rejected", "refused", "cancelled"]


@dataclass(frozen=True, slots=True)
class PlannedModel:
    """One model of the chain as it will be called."""

    name: str  # as configured (what the answer is labelled with)
    provider: str
    model_id: str  # what the provider is sent
    price: ModelPrice | None  # None: not priced in the models file
    context_window: int | None
    max_tokens: int | None  # the completion bound sent (None: none sent)


@dataclass(slots=True)
class CallPlan:
    request: ChatRequest | EmbeddingRequest
    alias: str
    stream: bool
    models: tuple[PlannedModel, ...]
    _prompt_tokens: int | None = field(default=None, repr=False)

    @property
    def prompt_tokens(self) -> int:
        """An estimate that errs high (``agent_runtime.config.pricing.estimate_prompt_tokens``),
        cached."""
        if self._prompt_tokens is None:
            request = self.request
            if isinstance(request, EmbeddingRequest):
                self._prompt_tokens = estimate_text_tokens(request.texts)
            else:
                self._prompt_tokens = estimate_prompt_tokens(request.messages, request.tools)
        return self._prompt_tokens

    def completion_bound(self, model: PlannedModel, default_max_tokens: int) -> int:
        """The most completion tokens ``model`` may produce: none for embeddings."""
        if isinstance(self.request, EmbeddingRequest):
            return 0
        return model.max_tokens or default_max_tokens

    def worst_case_usd(
        self, default_max_tokens: int, default_price: ModelPrice | None = None
    ) -> Decimal | None:
        """The most the request can cost: the dearest model of the chain, whole prompt plus
        its completion bound (``default_max_tokens`` where none is sent; none to embed).
        None when a model has no price and no ``default_price`` is given."""
        worst: Decimal | None = None
        for model in self.models:
            price = model.price or default_price
            if price is None:
                return None
            bound = self.completion_bound(model, default_max_tokens)
            amount = estimate_worst_case(price, self.prompt_tokens, bound)
            worst = amount if worst is None or amount > worst else worst
        return worst


@dataclass(frozen=True, slots=True)
class CallReport:
    outcome: Outcome
    model: str | None  # the model that answered (None: none did)
    usage: TokenUsage
    latency_ms: float
    attempts: tuple[Attempt, ...]
    error: BaseException | None = None
    price: ModelPrice | None = None  # the answering model's
    # Streams: from the request's start to the first chunk with content (None: no stream,
    # or no token came); failed models before the answering one are included.
    first_token_ms: float | None = None

    @property
    def cost_usd(self) -> Decimal | None:
        """The call's cost at the answering model's price (None: unpriced or unanswered)."""
        return cost(self.price, self.usage) if self.price is not None else None


class CallObserver(Protocol):
    async def before_call(self, plan: CallPlan) -> object:
        """Before any provider call; raise to refuse the request. Returns a ticket."""
        ...

    async def after_call(self, plan: CallPlan, report: CallReport, ticket: object) -> None:
        """Once the request is over (every outcome), with what ``before_call`` returned."""
        ...


class Observers:
    """Several observers as one; ``after`` never raises."""

    def __init__(self, observers: Sequence[CallObserver]) -> None:
        self._observers = tuple(observers)

    def __bool__(self) -> bool:
        return bool(self._observers)

    async def before(self, plan: CallPlan) -> list[object]:
        tickets: list[object] = []
        for observer in self._observers:
            try:
                tickets.append(await observer.before_call(plan))
            except BaseException as exc:
                refused = CallReport("refused", None, TokenUsage(), 0.0, (), exc)
                await self.after(plan, refused, tickets)
                raise
        return tickets

    async def after(self, plan: CallPlan, report: CallReport, tickets: Sequence[object]) -> None:
        entered = self._observers[: len(tickets)]
        for observer, ticket in reversed(list(zip(entered, tickets, strict=True))):
            try:
                await observer.after_call(plan, report, ticket)
            except Exception as exc:  # the answer is already made: report, never raise
                logger.error(
                    "call observer %s failed after a call: %s",
                    type(observer).__name__,
                    type(exc).__name__,
                )
