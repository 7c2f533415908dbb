"""Database engines and migrations for the whole hub.

One database holds every domain's tables. SQLite is the embedded default: WAL so readers
never block the writer, ``synchronous=NORMAL`` (survives a crash of the hub; the last
commits may roll back on power loss), foreign keys on, and a busy timeout so a second
process waits instead of failing. PostgreSQL is selected by URL. Alembic migrations live
in ``labhub/migrations`` and run from code, so ``labhub serve`` can upgrade an embedded
database by itself.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.engine import make_url

from firmware_bridge.deliveries import metadata as mqtt_deliveries_metadata
from firmware_bridge.registry import metadata as devices_metadata
from inventory.tables import metadata as inventory_metadata
from labhub.access.tables import metadata as accounts_metadata
from labhub.network.inventory_tables import metadata as network_inventory_metadata
from labhub.network.tables import metadata as network_metadata
from labhub.reminders.tables import metadata as reminders_metadata
from labhub.scheduler.tables import metadata as scheduler_metadata
from sensors.run_schedules import metadata as run_schedules_metadata
from sensors.storage import metadata as readings_metadata

# Every domain keeps its own tables; one database and one migration history hold them all.
ALL_METADATA: list[MetaData] = [
    readings_metadata, devices_metadata, inventory_metadata, mqtt_deliveries_metadata,
    accounts_metadata, network_metadata, network_inventory_metadata, run_schedules_metadata,
    reminders_metadata, scheduler_metadata,
]

SQLITE_BUSY_TIMEOUT_MS = 10_000  # a second writer (CLI import while serving) waits this long
# Page cache per connection, in KiB (SQLite's default is 2 MiB): a region's asset list on
# a 100,000-asset network reads ~10,000 rows by site index and drops from ~80 to ~25 ms
# when they stay cached (bench/inventory.py). Memory is taken only as pages are read.
SQLITE_CACHE_KIB = 32 * 1024
# ... but every pooled connection keeps its own cache: the API's pool (5 kept, 10 more
# under load) plus the writers could hold 15 x 32 MiB, and a hub serving concurrent
# requests grew by hundreds of MB that way and kept them. SQLite's soft heap limit is one
# bound for the whole process: near it, each connection reuses its own oldest pages
# instead of taking more memory (10 connections reading 150 MB each: 392 MiB of RSS
# without it, 124 MiB with it). One connection still gets its whole 32 MiB cache.
SQLITE_SOFT_HEAP_LIMIT_BYTES = 64 * 1024 * 1024


def make_engine(url: str) -> Engine:
    """An engine for ``url`` with LabHub's connection settings."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return create_engine(parsed, pool_pre_ping=True)


def _sqlite_on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cursor.execute(f"PRAGMA soft_heap_limit={SQLITE_SOFT_HEAP_LIMIT_BYTES}")  # process-wide
    cursor.close()


def alembic_config(engine: Engine) -> Config:
    """An Alembic config for the hub's migrations on ``engine``."""
    config = Config()
    config.set_main_option("script_location", "labhub:migrations")
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to ``revision`` (the newest by default)."""
    command.upgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    """The newest revision this version of LabHub knows."""
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
