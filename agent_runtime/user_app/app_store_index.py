"""``store.index`` of an app's ``langgraph.json``, loaded as the runtime applies it.

``embed`` is either ``"openai:<model>"``, embedded through the runtime's model router (the
models file says which OpenAI-compatible provider serves ``<model>``: the built-in fake's
``fake-embed``, OpenAI's ``text-embedding-3-small`` ...), or the app's own function,
``"./path/file.py:fn"`` or ``"package.module:fn"``, imported as graphs are: a function
taking a list of texts and returning their vectors, sync or async, or a LangChain
``Embeddings`` (wrapped as LangGraph wraps them, ``ensure_embeddings``).
"""

from __future__ import annotations

from types import ModuleType

from langchain_core.embeddings import Embeddings
from langgraph.store.base.embed import ensure_embeddings

from agent_runtime.config.models_file import ModelsConfig
from agent_runtime.execution.store_index import ROUTER_PREFIX, StoreIndex
from agent_runtime.user_app.app_attributes import Problem, attribute
from agent_runtime.user_app.langgraph_json import ConfigFile, LangGraphJson

_FORMS = (
    'store.index.embed is "openai:<model>" (embedded through the runtime\'s model router: '
    'a model of the models file) or a function, "./path/file.py:fn" or "package.module:fn"'
)


def load_store_index(config_file: ConfigFile, modules: dict[str, ModuleType]) -> StoreIndex | None:
    """The app's index, its function imported; None without one. Raises :class:`Problem`."""
    store = config_file.config.store
    config = store.index if store is not None else None
    if config is None:
        return None
    fields = tuple(config.fields or ("$",))
    embed = config.embed
    if embed.startswith(ROUTER_PREFIX):
        return StoreIndex(embed=embed, dims=config.dims, fields=fields)
    try:
        value = attribute(config_file, embed, modules, graph=False)
    except Problem as problem:
        raise Problem(f"{problem}\n({_FORMS})") from problem
    if isinstance(value, Embeddings):
        embeddings = value
    elif callable(value) and not isinstance(value, type):
        embeddings = ensure_embeddings(value)
    else:
        raise Problem(
            f"{embed!r} is a {type(value).__name__}, not a function from texts to vectors "
            "nor a LangChain Embeddings"
        )
    return StoreIndex(embed=embed, dims=config.dims, fields=fields, embeddings=embeddings)


def unserved_index_model(config: LangGraphJson, models: ModelsConfig) -> str | None:
    """Why ``"openai:<model>"`` cannot be embedded by the router ``models`` configure, or
    None: said at start, rather than at the first put."""
    index = config.store.index if config.store is not None else None
    if index is None or not index.embed.startswith(ROUTER_PREFIX):
        return None
    model = index.embed.removeprefix(ROUTER_PREFIX)
    if model in models.models or model in models.aliases or models.default_provider is not None:
        return None
    served = ", ".join(models.public_names()) or "none"
    return (
        f"store.index.embed: {index.embed!r}: the models configuration serves no model "
        f"{model!r} (it serves: {served}); add it to the models file, or to "
        "AGENT_EMBEDDING_MODELS without one"
    )
