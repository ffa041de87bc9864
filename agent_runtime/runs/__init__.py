"""Runs as the Agent Protocol sees them: the run service, the run queue in the database
(claims, leases, double-texting), the executor and graph runner, event streams and their
stored rows, threads (service, rows, streams), assistants, crons and webhooks.

May import every package below it: ``core`` to ``tenancy`` and ``execution``.
"""
