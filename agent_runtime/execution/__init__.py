"""What runs a graph: the registry of graphs and the model factory they see, the chat model
that calls the router, checkpointers (filed per tenant), checkpoint operations, the
tenant-scoped item store, the tenant scope both read, run traces and their OpenTelemetry
export.

May import ``core``, ``config``, ``db``, ``protocol`` and ``gateway``.
"""
