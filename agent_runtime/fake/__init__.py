"""The fake OpenAI-compatible provider: a deterministic model, fault injection and the HTTP
app serving both. The default provider here; only configuration away from a real one.

May import ``core`` and ``config``.
"""
