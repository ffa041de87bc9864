"""Where state lives: the SQLAlchemy engine (Postgres, or SQLite with its write queue),
the table definitions and their migrations, the metadata store
(:class:`~agent_runtime.db.metadata.MetadataStore`), the psycopg pool LangGraph's saver
and store share, and bounded Redis clients.

May import ``core`` and ``config``.
"""
