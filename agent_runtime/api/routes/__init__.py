"""One module per resource of the API: assistants (and health), threads, runs, crons, store,
the OpenAI gateway, usage and budgets, admin. Each declares its scope through ``api.deps``.
"""
