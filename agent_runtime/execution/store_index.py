"""The store's semantic-search index: what it embeds, and who embeds it.

:class:`StoreIndex` is ``store.index`` of the app's ``langgraph.json`` as the runtime
applies it (``agent_runtime.user_app`` reads and loads it): vectors of ``dims`` numbers for
the ``fields`` of each item (LangGraph's JSON paths, ``"$"`` the whole value), made either
by a model through the runtime's model router (``"openai:<model>"``: the models file says
which provider serves it, the built-in fake included) or by the app's own function (sync
or async, or a LangChain ``Embeddings``).

An :class:`Embedder` makes them; :func:`build_embedder` picks the one the index names.
Every vector it hands back has been checked (one per text, ``dims`` finite numbers): a
function that raises or gives anything else is :class:`EmbeddingFailed` (502) naming the
function, never a 500. Router calls carry the tenant (and, inside a run, its key, thread and
run), so budgets, the usage ledger and metrics count them like any model call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from langchain_core.embeddings import Embeddings
from langgraph.store.base.embed import get_text_at_path

from agent_runtime.core.errors import AgentRuntimeError, EmbeddingFailed
from agent_runtime.core.identity import stamp
from agent_runtime.core.types import EmbeddingRequest, EmbeddingResult

ROUTER_PREFIX = "openai:"
_MAX_MESSAGE = 300

EmbedCall = Callable[[EmbeddingRequest], Awaitable[EmbeddingResult]]
Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True)
class StoreIndex:
    """``store.index``: ``embed`` as written; ``embeddings`` the app's function, wrapped, or
    None when ``embed`` is ``"openai:<model>"`` (the router embeds)."""

    embed: str
    dims: int
    fields: tuple[str, ...] = ("$",)
    embeddings: Embeddings | None = None

    @property
    def model(self) -> str | None:
        """The model the router is asked for, or None for a function."""
        if self.embeddings is None and self.embed.startswith(ROUTER_PREFIX):
            return self.embed.removeprefix(ROUTER_PREFIX)
        return None

    @property
    def embedder_id(self) -> str:
        """What vectors are stored under: vectors made otherwise are not compared."""
        return f"{self.embed}/{self.dims}"


def texts_to_embed(value: Mapping[str, Any], fields: Sequence[str]) -> list[tuple[str, str]]:
    """``(field, text)`` for each text at ``fields`` of ``value``, as LangGraph's stores
    take them: several texts at one path are ``path.0``, ``path.1`` ...; blank ones are left
    out (there is nothing to compare them by)."""
    found: list[tuple[str, str]] = []
    for path in fields:
        texts = [text for text in get_text_at_path(value, path) if text.strip()]
        if len(texts) == 1:
            found.append((path, texts[0]))
        else:
            found += [(f"{path}.{index}", text) for index, text in enumerate(texts)]
    return found


class Embedder(Protocol):
    """Makes the index's vectors: ``len(texts)`` rows of ``dims`` float32 numbers."""

    async def documents(self, texts: Sequence[str], tenant_id: str) -> Vectors: ...

    async def query(self, text: str, tenant_id: str) -> Vectors: ...


class RouterEmbedder:
    """``"openai:<model>"``: the model router embeds, ``batch_size`` texts a request."""

    def __init__(self, index: StoreIndex, model: str, call: EmbedCall, batch_size: int) -> None:
        self._index = index
        self._model = model
        self._call = call
        self._batch_size = batch_size

    async def documents(self, texts: Sequence[str], tenant_id: str) -> Vectors:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self._batch_size):
            request = EmbeddingRequest(
                alias=self._model,
                texts=list(texts[start : start + self._batch_size]),
                dimensions=self._index.dims,
                tenant_id=tenant_id,
            )
            # Inside a run, its key, thread and run are filled in too.
            result = await self._call(stamp(request))
            vectors += result.vectors
        return checked(vectors, len(texts), self._index)

    async def query(self, text: str, tenant_id: str) -> Vectors:
        return await self.documents([text], tenant_id)


class FunctionEmbedder:
    """The app's own function (wrapped as LangChain ``Embeddings``): documents and queries
    as LangGraph's stores embed them (``aembed_documents``, ``aembed_query``)."""

    def __init__(self, index: StoreIndex, embeddings: Embeddings) -> None:
        self._index = index
        self._embeddings = embeddings

    async def documents(self, texts: Sequence[str], tenant_id: str) -> Vectors:
        try:
            vectors: Any = await self._embeddings.aembed_documents(list(texts))
        except AgentRuntimeError:
            raise
        except Exception as exc:  # the app's code: any failure is reported, by name
            raise self._failed(exc) from exc
        return checked(vectors, len(texts), self._index)

    async def query(self, text: str, tenant_id: str) -> Vectors:
        try:
            vector: Any = await self._embeddings.aembed_query(text)
        except AgentRuntimeError:
            raise
        except Exception as exc:
            raise self._failed(exc) from exc
        return checked([vector], 1, self._index)

    def _failed(self, exc: Exception) -> EmbeddingFailed:
        what = f"{type(exc).__name__}: {exc}"
        if len(what) > _MAX_MESSAGE:
            what = what[:_MAX_MESSAGE] + "..."
        return EmbeddingFailed(f"store.index.embed {self._index.embed!r} failed: {what}")


def build_embedder(index: StoreIndex, call: EmbedCall | None, batch_size: int) -> Embedder:
    """The embedder ``index`` names; ``call`` reaches the model router (needed for
    ``"openai:<model>"``)."""
    if index.embeddings is not None:
        return FunctionEmbedder(index, index.embeddings)
    model = index.model
    if model is None:
        raise ValueError(f"store.index.embed {index.embed!r}: no function was loaded for it")
    if call is None:
        raise ValueError("an index embedded by the model router needs the router's embed call")
    return RouterEmbedder(index, model, call, batch_size)


def checked(vectors: Any, count: int, index: StoreIndex) -> Vectors:
    """``vectors`` as a ``count`` x ``dims`` float32 array, or :class:`EmbeddingFailed`."""
    where = f"store.index.embed {index.embed!r}"
    try:
        array = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise EmbeddingFailed(f"{where} gave something other than lists of numbers") from exc
    if array.ndim != 2 or array.shape[0] != count:
        raise EmbeddingFailed(f"{where} gave {_rows(array)} for {count} texts")
    if array.shape[1] != index.dims:
        raise EmbeddingFailed(
            f"{where} gave vectors of {array.shape[1]} numbers; store.index.dims is {index.dims}"
        )
    if not np.isfinite(array).all():
        raise EmbeddingFailed(f"{where} gave a vector holding NaN or infinity")
    return array


def _rows(array: Vectors) -> str:
    if array.ndim == 2 or (array.ndim == 1 and array.size == 0):
        return f"{array.shape[0]} vectors"
    return "no list of vectors"
