"""Migrations: they build exactly the tables the code declares, and go down and up again."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from labhub import db
from sensors.storage import is_readings_partition


def test_the_migrated_schema_matches_the_declared_tables(engine: Engine) -> None:
    def declared(name: str | None, type_: str, _parent: object) -> bool:
        # The readings' monthly partitions (PostgreSQL) are made as months come, not declared.
        return not (type_ == "table" and name is not None and is_readings_partition(name))

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_name": declared})
        diff = compare_metadata(context, db.ALL_METADATA)
    assert diff == []
    assert db.current_revision(engine) == db.head_revision(engine)


def test_downgrade_to_empty_and_upgrade_again(engine: Engine) -> None:
    command.downgrade(db.alembic_config(engine), "base")
    assert db.current_revision(engine) is None
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    db.upgrade(engine)
    assert {"series", "readings", "dead_letters", "runs", "run_notes", "devices"} <= set(
        inspect(engine).get_table_names()
    )


def test_sqlite_runs_in_wal_with_foreign_keys(tmp_path: object) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path}/x.db")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000
    finally:
        engine.dispose()


# A child process: 8 pooled connections of one engine each read a 60 MB table, and the
# growth of its resident memory is printed in MiB.
_CACHES = """
import os, sys
from sqlalchemy import text
from labhub import db
from sensors.storage import is_readings_partition
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
engine = db.make_engine(f"sqlite:///{sys.argv[1]}")
conns = [engine.connect() for _ in range(8)]
before = rss()
for conn in conns:
    assert conn.execute(text("SELECT sum(length(b)) FROM t")).scalar() == 60_000 * 1000
    conn.commit()
print(round(rss() - before))
"""


def test_sqlite_page_caches_share_one_bound_across_connections(tmp_path: Path) -> None:
    """Each connection may cache 32 MiB, but all of them together stay near the soft heap
    limit: 8 connections that each read 60 MB grow the process by far less than 8 x 32."""
    engine = db.make_engine(f"sqlite:///{tmp_path}/x.db")
    try:
        with engine.connect() as conn:
            limit = conn.exec_driver_sql("PRAGMA soft_heap_limit").scalar()
    finally:
        engine.dispose()
    assert limit == db.SQLITE_SOFT_HEAP_LIMIT_BYTES == 64 * 2**20
    path = tmp_path / "big.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)")
    raw.executemany("INSERT INTO t (b) VALUES (?)",
                    (((i % 251).to_bytes(1, "big") * 1000,) for i in range(60_000)))
    raw.commit()
    raw.close()
    out = subprocess.run([sys.executable, "-c", _CACHES, str(path)], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    growth = int(out.split()[-1])
    assert growth < 120, f"8 connections' page caches grew the process by {growth} MiB"
