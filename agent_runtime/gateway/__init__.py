"""The model router: an alias becomes a fallback chain of provider models, each behind a
circuit breaker (per process or shared through Redis), called through the provider client;
observers hear of every call (budgets, usage, metrics), and the OpenAI gateway converts.

May import ``core``, ``config``, ``db`` and ``protocol``.
"""
