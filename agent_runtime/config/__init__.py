"""Every tunable in one place: the ``AGENT_*`` settings (one class per concern), the models
file (providers, models, aliases, breaker policy), model prices and the fake provider's
fault profiles. Validated once at start-up and passed down.

May import ``core`` only.
"""
