"""The example graphs this repository ships, registered by id (see
``agent_runtime.execution.graph_registry``)."""

from __future__ import annotations

from agent_runtime.execution.graph_registry import GraphRegistry, GraphSpec
from graphs import approval, memory, multi_agent, react


def default_registry() -> GraphRegistry:
    """The graphs shipped with the runtime."""
    return GraphRegistry(
        [
            GraphSpec(
                graph_id="multi_agent",
                description=(
                    "Routes each message to a code, analysis (with a calculator) or general "
                    "specialist and records why."
                ),
                build=multi_agent.build,
            ),
            GraphSpec(
                graph_id="react",
                description="A ReAct agent with a calculator and a clock.",
                build=react.build,
            ),
            GraphSpec(
                graph_id="memory",
                description=(
                    'Remembers facts each user tells it ("remember that ...", "forget ...") '
                    "across threads and answers with them in mind."
                ),
                build=memory.build,
            ),
            GraphSpec(
                graph_id="approval",
                description="A tool-calling agent that asks a human to approve each tool call.",
                build=approval.build,
            ),
        ]
    )
