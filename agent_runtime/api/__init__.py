"""The HTTP layer (FastAPI), as the FastAPI full-stack template lays it out: ``deps`` (the
replica's services, the caller's principal and scopes), ``middleware`` (errors, request
ids, logs, metrics), request hardening, the OpenAPI document and ``routes/``, one module
per resource; ``app_factory.create_api`` puts them together.

May import everything below it, ``replica`` included; not ``deployments``.
"""
