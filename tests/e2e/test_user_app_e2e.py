"""A user's own LangGraph app, served from its ``langgraph.json`` on the same stack.

The app lives in a folder of its own, as a user's project does, with a ``graphs`` package
of its own (the name of the runtime's examples), a graph compiled with its own
checkpointer, a factory graph and a graph whose model is ``ChatOpenAI`` pointed at the
fake provider through the app's ``env``. It is deployed beside the main application, as
``agent-runtime serve`` deploys it (``build_app`` with ``AGENT_APP_CONFIG`` set), and
driven with the official SDK.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from agent_runtime.config.app_settings import AppSettings
from agent_runtime.config.provider_settings import FAKE_PROVIDER_ROUTE
from agent_runtime.config.settings import RuntimeSettings
from agent_runtime.db.metadata import MetadataStore
from tests.e2e.conftest import Stack
from tests.e2e.support import Api, open_api

# Starts a Ray stack: deselected by -m "not e2e".
pytestmark = pytest.mark.e2e

APP_NAME = "user-app"
ROUTE = "/user-app"

FILES = {
    "graphs/__init__.py": "",
    # A sibling import: it must find this app's package, not the runtime's examples.
    "graphs/text.py": """
        def shout(text: str) -> str:
            return text.upper() + "!"
    """,
    "graphs/echo.py": """
        from typing import TypedDict

        from langgraph.checkpoint.memory import InMemorySaver
        from langgraph.graph import START, StateGraph

        from graphs.text import shout


        class State(TypedDict, total=False):
            text: str
            count: int


        def node(state: State) -> State:
            return {"text": shout(state["text"]), "count": state.get("count", 0) + 1}


        builder = StateGraph(State)
        builder.add_node("shout", node)
        builder.add_edge(START, "shout")
        # Its own saver: the runtime's replaces it, so state outlives a replica.
        graph = builder.compile(checkpointer=InMemorySaver())
    """,
    "graphs/greeter.py": """
        from typing import TypedDict

        from langchain_core.runnables import RunnableConfig
        from langgraph.graph import START, StateGraph


        class State(TypedDict, total=False):
            name: str
            greeting: str


        def make_graph(config: RunnableConfig):
            word = config.get("configurable", {}).get("word", "hello")

            def greet(state: State) -> State:
                return {"greeting": f"{word}, {state['name']}"}

            builder = StateGraph(State)
            builder.add_node("greet", greet)
            builder.add_edge(START, "greet")
            return builder.compile()
    """,
    # In the style of LangGraph's react-agent template: the model named by the run's
    # context (Runtime), a prebuilt tool agent, the client configured by environment.
    "graphs/agent.py": """
        from dataclasses import dataclass

        from langchain_core.tools import tool
        from langchain_openai import ChatOpenAI
        from langgraph.graph import START, MessagesState, StateGraph
        from langgraph.prebuilt import create_react_agent
        from langgraph.runtime import Runtime


        @dataclass
        class Context:
            model: str = "fake-fast"


        @tool
        def calculator(expression: str) -> str:
            \"\"\"Evaluate an arithmetic expression.\"\"\"
            return str(eval(expression, {"__builtins__": {}}))


        async def respond(state: MessagesState, runtime: Runtime[Context]) -> MessagesState:
            agent = create_react_agent(ChatOpenAI(model=runtime.context.model), [calculator])
            result = await agent.ainvoke({"messages": state["messages"]})
            return {"messages": result["messages"][len(state["messages"]) :]}


        builder = StateGraph(MessagesState, context_schema=Context)
        builder.add_node("respond", respond)
        builder.add_edge(START, "respond")
        graph = builder.compile()
    """,
    # Its own HTTP routes (http.app), served beside the API.
    "web.py": """
        from fastapi import FastAPI

        app = FastAPI()


        @app.get("/hello/{name}")
        async def hello(name: str) -> dict[str, str]:
            return {"hello": name}
    """,
    "graphs/chat.py": """
        import os

        from langchain_openai import ChatOpenAI
        from langgraph.graph import START, MessagesState, StateGraph

        model = ChatOpenAI(model="fake-fast", base_url=os.environ["APP_LLM_URL"], api_key="x")


        async def answer(state: MessagesState) -> MessagesState:
            return {"messages": [await model.ainvoke(state["messages"])]}


        builder = StateGraph(MessagesState)
        builder.add_node("answer", answer)
        builder.add_edge(START, "answer")
        graph = builder.compile()
    """,
}


def write_app(folder: Path, llm_url: str) -> Path:
    for name, text in FILES.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    config = {
        "dependencies": ["."],
        "graphs": {
            "echo": "./graphs/echo.py:graph",
            "greeter": {"path": "./graphs/greeter.py:make_graph", "description": "Greets"},
            "chat": "graphs.chat:graph",
            "agent": "graphs.agent:graph",
        },
        "http": {"app": "./web.py:app"},
        # The OpenAI client reads these itself, as in a user's .env.
        "env": {"APP_LLM_URL": llm_url, "OPENAI_BASE_URL": llm_url, "OPENAI_API_KEY": "unused"},
    }
    path = folder / "langgraph.json"
    path.write_text(json.dumps(config))
    return path


@pytest.fixture(scope="module")
def user_app_url(
    stack: Stack, stack_settings: RuntimeSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    from ray import serve

    from agent_runtime.deployments.app import build_app

    config = write_app(
        tmp_path_factory.mktemp("my-project"), f"{stack.url}{FAKE_PROVIDER_ROUTE}/v1"
    )
    settings = stack_settings.model_copy(update={"app": AppSettings(config=config)})
    serve.run(build_app(settings=settings), name=APP_NAME, route_prefix=ROUTE)
    try:
        yield f"{stack.url}{ROUTE}"
    finally:
        serve.delete(APP_NAME)


@pytest.fixture
async def app_api(user_app_url: str, store: MetadataStore) -> AsyncIterator[Api]:
    api = await open_api(user_app_url, store)
    yield api
    await api.aclose()


async def test_the_apps_graphs_are_its_assistants(app_api: Api) -> None:
    found = await app_api.sdk.assistants.search()
    assert sorted(a["graph_id"] for a in found) == ["agent", "chat", "echo", "greeter"]
    greeter = next(a for a in found if a["graph_id"] == "greeter")
    assert greeter["description"] == "Greets"
    schemas = await app_api.sdk.assistants.get_schemas(greeter["assistant_id"])
    assert set(schemas["state_schema"]["properties"]) == {"name", "greeting"}


async def test_a_graph_with_its_own_package_keeps_state_in_the_runtime(app_api: Api) -> None:
    thread = await app_api.sdk.threads.create()
    first = await app_api.sdk.runs.wait(thread["thread_id"], "echo", input={"text": "hi"})
    again = await app_api.sdk.runs.wait(thread["thread_id"], "echo", input={"text": "yo"})
    assert first == {"text": "HI!", "count": 1}
    assert again == {"text": "YO!", "count": 2}
    state = await app_api.sdk.threads.get_state(thread["thread_id"])
    assert state["values"] == again
    history = await app_api.sdk.threads.get_history(thread["thread_id"])
    assert len(history) >= 4


async def test_a_factory_graph_is_made_with_each_runs_config(app_api: Api) -> None:
    assistant = await app_api.sdk.assistants.create(
        "greeter", config={"configurable": {"word": "bonjour"}}
    )
    thread = await app_api.sdk.threads.create()
    french = await app_api.sdk.runs.wait(
        thread["thread_id"], assistant["assistant_id"], input={"name": "Ada"}
    )
    plain = await app_api.sdk.runs.wait(None, "greeter", input={"name": "Bob"})
    assert french == {"name": "Ada", "greeting": "bonjour, Ada"}
    assert plain == {"name": "Bob", "greeting": "hello, Bob"}
    state = await app_api.sdk.threads.get_state(thread["thread_id"])
    assert state["values"]["greeting"] == "bonjour, Ada"


async def test_the_apps_own_model_client_streams_tokens(app_api: Api) -> None:
    thread = await app_api.sdk.threads.create()
    tokens: list[str] = []
    async for part in app_api.sdk.runs.stream(
        thread["thread_id"],
        "chat",
        input={"messages": [{"role": "user", "content": "tell me"}]},
        stream_mode="messages-tuple",
    ):
        if part.event == "messages":
            chunk, _metadata = part.data
            tokens.append(chunk["content"])
    assert "".join(tokens) == "[fake-fast] You said: tell me"
    state = await app_api.sdk.threads.get_state(thread["thread_id"])
    assert state["values"]["messages"][-1]["content"] == "[fake-fast] You said: tell me"


async def test_a_template_style_agent_gets_the_runs_context(app_api: Api) -> None:
    agent = next(a for a in await app_api.sdk.assistants.search() if a["graph_id"] == "agent")
    schemas = await app_api.sdk.assistants.get_schemas(agent["assistant_id"])
    assert set(schemas["context_schema"]["properties"]) == {"model"}
    question = {"messages": [{"role": "user", "content": "hello there"}]}
    default = await app_api.sdk.runs.wait(None, "agent", input=question)
    chosen = await app_api.sdk.runs.wait(
        None, "agent", input=question, context={"model": "fake-smart"}
    )
    assert default["messages"][-1]["content"] == "[fake-fast] You said: hello there"
    assert chosen["messages"][-1]["content"] == "[fake-smart] You said: hello there"
    # The fake calls the calculator for arithmetic: the prebuilt agent's tool loop runs.
    math = await app_api.sdk.runs.wait(
        None, "agent", input={"messages": [{"role": "user", "content": "what is 6 * 7?"}]}
    )
    assert math["messages"][-1]["content"] == "Tool result: 42"


async def test_the_apps_own_routes_answer_beside_the_api(app_api: Api) -> None:
    hello = await app_api.http.get("/hello/ada")
    assert (hello.status_code, hello.json()) == (200, {"hello": "ada"})
    # Behind the same hardening as every route.
    assert hello.headers["x-content-type-options"] == "nosniff"
