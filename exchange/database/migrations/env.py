"""Alembic environment: the engine comes from exchange.database.migrate."""

from alembic import context

from exchange.database.registry import metadata

engine = context.config.attributes["engine"]

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=engine.dialect.name == "sqlite",
    )
    context.run_migrations()
