"""The command lines: ``agent-runtime`` (tenants, keys, limits, budgets, usage, audit), the
``make run`` launcher and ``make eval``. The top layer: may import every package and the
example graphs.
"""
