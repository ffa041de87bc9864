"""The agent runtime: LangGraph graphs served on Ray Serve, metered per tenant.

Packages, from the bottom layer up (each may import only those below it; ``make test`` checks
the contracts in ``pyproject.toml`` with import-linter, and ``tests/test_layout.py`` checks
that no module imports form a cycle):

* ``core``: errors, typed records and messages, logs, timing, telemetry, caches.
* ``config``: every setting (``AGENT_*``), the models file, prices, fault profiles.
* ``db``, ``protocol``, ``fake``: the metadata database and Redis connections; the wire
  formats (Agent Protocol, SSE, OpenAI); the fake OpenAI-compatible provider.
* ``gateway``: the model router: chains, breakers, the provider client.
* ``tenancy``, ``execution``: keys, tenants, limits, budgets, usage, audit; what runs a graph
  (chat model, checkpointers, item store, traces, the graph registry).
* ``runs``, ``evals``: runs, their queue and streams, threads, assistants, crons, webhooks;
  judging runs against golden sets.
* ``replica``: what every Serve replica shares (metrics, logs, calling other deployments).
* ``api``: the HTTP layer (FastAPI): deps, middleware, one routes module per resource.
* ``deployments``: the Ray Serve deployments and the app builders.
* ``cli``: the command lines (``agent-runtime``, ``make run``, ``make eval``).

Nothing below ``replica`` imports Ray Serve.
"""
