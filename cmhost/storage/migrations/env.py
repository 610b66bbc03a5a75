"""Alembic environment: runs migrations on the connection cmhost hands over (already in the
transaction of one migration, see storage/migrate.py), or, for alembic used by hand on a
URL, one transaction per migration on the same kind of connection."""

from __future__ import annotations

from alembic import context

from cmhost.storage.migrate import standalone_engine
from cmhost.storage.tables import metadata

config = context.config
target_metadata = metadata


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        # In a transaction: alembic adds none of its own, the caller commits.
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = standalone_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.connect() as conn:
            # transactional_ddl: alembic takes SQLite's DDL for autocommitting (true of
            # pysqlite's own BEGIN, not of standalone_engine's).
            context.configure(connection=conn, target_metadata=target_metadata,
                              render_as_batch=True, transactional_ddl=True,
                              transaction_per_migration=True)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


run()
