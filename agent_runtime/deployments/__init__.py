"""The Ray Serve deployments (ingress, orchestrator, model router, fake provider) and the
app builders that compose them with ``.bind()``. Thin: each builds its collaborators from
the settings and hands requests to the packages below.

May import everything below it; only ``cli`` imports it.
"""
