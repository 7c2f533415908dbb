"""Alembic environment: runs the hub's migrations on the engine LabHub hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from labhub.db import ALL_METADATA, make_engine

config = context.config
target_metadata = ALL_METADATA


def run_migrations_online() -> None:
    engine: Engine | None = config.attributes.get("engine")
    if engine is None:
        engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        context.run_migrations()


run_migrations_online()
