"""Wire formats, free of behaviour: the LangGraph Platform Agent Protocol's models, server-sent
events as langgraph-api writes them, and OpenAI Chat Completions' models.

May import ``core`` and ``config``.
"""
