"""Where state lives: the SQLAlchemy engine (Postgres, or SQLite with its write queue),
the table definitions and their migrations, the metadata store
(:class:`~agent_runtime.db.metadata.MetadataStore`), the replica's one psycopg pool,
which the metadata store's engine, LangGraph's saver and its store share, and bounded
Redis clients.

May import ``core`` and ``config``.
"""
