"""What every Serve replica shares: the runtime's metrics (through Ray's metrics API), the
per-replica log set-up, calls to other deployments through handles, and the wiring of an
orchestrator replica (:mod:`agent_runtime.replica.orchestration`, which imports no Ray so
that tests build the same replica without a cluster).

May import everything below it and Ray; not ``api`` or ``deployments``.
"""
