"""Alembic environment: run with the connection handed in by serving.store.db.Database.migrate()."""

from alembic import context

from serving.store.schema import Base

connection = context.config.attributes.get("connection")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite needs batch mode to alter tables
)
with context.begin_transaction():
    context.run_migrations()
