"""What every Serve replica shares: the runtime's metrics (through Ray's metrics API), the
per-replica log set-up and calls to other deployments through handles.

May import everything below it and Ray; not ``api`` or ``deployments``.
"""
