"""Who may do what, and how much: API keys and authentication, tenants, the audit log, token
buckets and fair-use limits, per-tenant run limits, budgets and their spend, the usage
ledger and the router's cost observers.

May import ``core``, ``config``, ``db``, ``protocol`` and ``gateway``.
"""
