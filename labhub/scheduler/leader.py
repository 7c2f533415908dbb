"""Which process of a database runs the jobs: a leader lock, on SQLite and PostgreSQL.

APScheduler 3 does not coordinate two schedulers on one job store, and a database may be
used by several processes at once (the workers of ``labhub serve --workers N``, two hubs
on one shared database, a ``labhub jobs run`` beside a serving hub). Only the process that
holds this lock runs the scheduler; the others retry every :data:`TICK_S` and take over
when the holder is gone.

- PostgreSQL: a session-level ``pg_try_advisory_lock`` on a connection of its own, held
  while leading. A process that dies, or whose connection is cut, loses it at once; the
  holder checks its connection every tick and steps down when it fails.
- SQLite: a lease row in ``scheduler_lease`` (holder, expires_at), renewed every tick for
  :data:`LEASE_S`; a process takes it over once it has expired. Times are the wall clock
  (SQLite's processes share one machine), so a laptop that slept finds its lease expired.

A lock alone cannot make "one run" certain at a handover (a holder that stalled past its
lease may still finish what it started): each run is also claimed by its row in
``job_runs`` (:mod:`labhub.scheduler.runs`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import uuid
from typing import Protocol

from sqlalchemy import Connection, Engine, case, delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from labhub.scheduler.tables import scheduler_lease

log = logging.getLogger(__name__)

LEASE_S = 15.0  # an SQLite lease lasts this long unless renewed
TICK_S = 3.0  # the holder renews (or checks) its lock this often; others retry as often
LEASE_NAME = "jobs"
# The advisory lock's key on PostgreSQL (per database): "labhub-scheduler" as 64 bits.
ADVISORY_KEY = 0x6C61_6268_7562_6A62 & 0x7FFF_FFFF_FFFF_FFFF


def holder_id() -> str:
    """This process's name in the lease and in ``job_runs``: host, pid, and a random part
    (a pid is reused after a restart)."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _now_us() -> int:
    return time.time_ns() // 1000


class LeaderLock(Protocol):
    """Taken by one process of a database at a time."""

    holder: str

    def acquire(self) -> bool:
        """Take (or keep) the lock; whether this process holds it now."""

    def held(self) -> bool:
        """Whether this process still holds the lock (as of its last check)."""

    def release(self) -> None:
        """Let it go (another process takes it at its next try)."""


class SqliteLease:
    """The lease row of ``scheduler_lease``."""

    def __init__(self, engine: Engine, holder: str, *, lease_s: float | None = None) -> None:
        self.engine = engine
        self.holder = holder
        self.lease_s = LEASE_S if lease_s is None else lease_s
        self._until_us = 0  # our lease's end as we last wrote it

    def acquire(self) -> bool:
        now = _now_us()
        until = now + int(self.lease_s * 1_000_000)
        try:
            with self.engine.begin() as conn:
                taken = conn.execute(
                    update(scheduler_lease)
                    .where(scheduler_lease.c.name == LEASE_NAME)
                    .where((scheduler_lease.c.holder == self.holder)
                           | (scheduler_lease.c.expires_at < now))
                    .values(holder=self.holder, expires_at=until,
                            acquired_at=case((scheduler_lease.c.holder == self.holder,
                                           scheduler_lease.c.acquired_at), else_=now))
                ).rowcount == 1
                if not taken and conn.execute(select(scheduler_lease.c.name).where(
                        scheduler_lease.c.name == LEASE_NAME)).first() is None:
                    conn.execute(insert(scheduler_lease).values(
                        name=LEASE_NAME, holder=self.holder, acquired_at=now,
                        expires_at=until))
                    taken = True
        except IntegrityError:  # another process inserted the row first
            taken = False
        except SQLAlchemyError as exc:
            log.warning("the scheduler's lease could not be renewed: %s", exc)
            taken = False
        self._until_us = until if taken else 0
        return taken

    def held(self) -> bool:
        return _now_us() < self._until_us

    def release(self) -> None:
        if self._until_us == 0:
            return
        self._until_us = 0
        try:
            with self.engine.begin() as conn:
                conn.execute(delete(scheduler_lease).where(
                    scheduler_lease.c.name == LEASE_NAME,
                    scheduler_lease.c.holder == self.holder))
        except SQLAlchemyError as exc:
            log.warning("the scheduler's lease could not be released: %s", exc)


class PostgresAdvisoryLock:
    """A session-level advisory lock on a connection held open while leading."""

    def __init__(self, engine: Engine, holder: str) -> None:
        self.engine = engine
        self.holder = holder
        self._conn: Connection | None = None

    def acquire(self) -> bool:
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT 1"))
                return True
            except SQLAlchemyError as exc:
                log.warning("the scheduler's lock connection failed: %s", exc)
                self._drop()
        try:
            conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except SQLAlchemyError as exc:
            log.warning("the scheduler's lock could not be asked for: %s", exc)
            return False
        try:
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"),
                                    {"k": ADVISORY_KEY}).scalar())
        except SQLAlchemyError as exc:
            log.warning("the scheduler's lock could not be asked for: %s", exc)
            got = False
        if got:
            conn.detach()  # out of the pool: it lives as long as we lead
            self._conn = conn
        else:
            conn.close()
        return got

    def held(self) -> bool:
        return self._conn is not None

    def release(self) -> None:
        if self._conn is None:
            return
        with contextlib.suppress(SQLAlchemyError):  # closing the session lets it go too
            self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_KEY})
        self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                conn.close()


def leader_lock(engine: Engine, holder: str) -> LeaderLock:
    """The lock for ``engine``'s database."""
    if engine.dialect.name == "postgresql":
        return PostgresAdvisoryLock(engine, holder)
    return SqliteLease(engine, holder)


def current_leader(conn: Connection) -> str | None:
    """Who runs the jobs of this database now, as far as the database tells: the lease's
    holder (SQLite), ``"a process"`` when the advisory lock is held (PostgreSQL, which
    does not say whose), or None."""
    if conn.dialect.name == "postgresql":
        held = conn.execute(text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND classid::bigint = :hi AND objid::bigint = :lo AND objsubid = 1"),
            {"hi": ADVISORY_KEY >> 32, "lo": ADVISORY_KEY & 0xFFFF_FFFF}).scalar()
        return "a process" if held else None
    row = conn.execute(select(scheduler_lease.c.holder, scheduler_lease.c.expires_at)
                       .where(scheduler_lease.c.name == LEASE_NAME)).first()
    if row is None or row.expires_at < _now_us():
        return None
    return str(row.holder)
