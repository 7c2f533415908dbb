"""A job's runs in ``job_runs``: claimed, finished, skipped, asked for; and what the jobs
list shows (each job's next run, last run and failures), read from the database so any
process of the hub answers the same, whether it runs the jobs or not.

A run is claimed by inserting its row (``INSERT ... ON CONFLICT DO NOTHING``): the unique
key (job, due time, attempt) lets one process only run a due time, and the unique index
on a job's unfinished row lets one run of a job be under way in the database at a time.
A run asked for by a person (``POST /api/v1/jobs/{id}/run``, ``labhub jobs run``) is a
row with no ``started_at`` yet; the process that runs the jobs starts it within a few
seconds. Rows are kept :data:`KEEP_DAYS` days and :data:`KEEP_RUNS` runs per job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, Engine, and_, case, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from labhub.scheduler.tables import RESULT_MAX, job_runs, scheduler_jobs

KEEP_DAYS = 90  # runs older than this are deleted
KEEP_RUNS = 1000  # ... and a job keeps at most this many (a job every minute: ~16 hours)
US_PER_DAY = 86_400 * 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Kind = Literal["schedule", "manual"]
Outcome = Literal["ok", "failed", "skipped"]
INTERRUPTED = "interrupted: the process that ran it stopped before the run ended"


def now_us() -> int:
    return time.time_ns() // 1000


def to_us(moment: datetime) -> int:
    """A timezone-aware time as µs since the epoch."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


@dataclass(frozen=True, slots=True)
class Run:
    """One run of a job (a row of ``job_runs``)."""

    id: int
    job_id: str
    scheduled_for: int
    attempt: int
    kind: str
    requested_by: str | None
    holder: str | None
    started_at: int | None
    finished_at: int | None
    outcome: str | None
    result: str | None
    retry_at: int | None

    @property
    def state(self) -> str:
        """``requested`` (asked for, waiting), ``running``, or its outcome."""
        if self.started_at is None:
            return "requested"
        return self.outcome if self.outcome is not None else "running"

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return round((self.finished_at - self.started_at) / 1e6, 3)


def _run(row: Any) -> Run:
    return Run(**{c.name: getattr(row, c.name) for c in job_runs.c})


def _insert(conn: Connection) -> Any:
    return (sqlite if conn.dialect.name == "sqlite" else postgresql).insert(job_runs)


def _cut(text: str | None) -> str | None:
    if text is None:
        return None
    return text if len(text) <= RESULT_MAX else text[: RESULT_MAX - 1] + "…"


def claim(engine: Engine, *, job_id: str, scheduled_for: int, attempt: int, kind: Kind,
          holder: str) -> int | None:
    """Start the run of ``job_id`` due at ``scheduled_for``; its row's id, or None when
    another process ran (or runs) that due time, or another run of the job is under
    way."""
    with engine.begin() as conn:
        return conn.execute(
            _insert(conn).values(job_id=job_id, scheduled_for=scheduled_for,
                                 attempt=attempt, kind=kind, holder=holder,
                                 started_at=now_us())
            .on_conflict_do_nothing().returning(job_runs.c.id)).scalar()


def exists(engine: Engine, *, job_id: str, scheduled_for: int, attempt: int) -> bool:
    """Whether that due time's attempt has a row (run, under way or skipped)."""
    with engine.connect() as conn:
        return conn.execute(select(job_runs.c.id).where(
            job_runs.c.job_id == job_id, job_runs.c.scheduled_for == scheduled_for,
            job_runs.c.attempt == attempt)).first() is not None


def record_skipped(engine: Engine, *, job_id: str, scheduled_for: int, attempt: int,
                   kind: Kind, holder: str, why: str) -> None:
    """A due time that was not run, and why (missed while the hub was off, or another
    run of the job was under way); nothing if that due time already has a row."""
    at = now_us()
    with engine.begin() as conn:
        conn.execute(_insert(conn).values(
            job_id=job_id, scheduled_for=scheduled_for, attempt=attempt, kind=kind,
            holder=holder, started_at=at, finished_at=at, outcome="skipped",
            result=_cut(why)).on_conflict_do_nothing())


def finish(engine: Engine, run_id: int, *, outcome: Outcome, result: str | None,
           retry_at: int | None = None) -> None:
    """A run ended; old runs of its job are pruned on the way."""
    with engine.begin() as conn:
        job_id = conn.execute(
            update(job_runs).where(job_runs.c.id == run_id)
            .values(finished_at=now_us(), outcome=outcome, result=_cut(result),
                    retry_at=retry_at).returning(job_runs.c.job_id)).scalar()
        if job_id is not None:
            prune(conn, job_id)


def prune(conn: Connection, job_id: str, *, keep_runs: int = KEEP_RUNS,
          keep_days: int = KEEP_DAYS) -> int:
    """Delete ``job_id``'s finished runs older than ``keep_days`` or past its newest
    ``keep_runs``; how many went."""
    cutoff = now_us() - keep_days * US_PER_DAY
    oldest_kept = conn.execute(
        select(job_runs.c.id).where(job_runs.c.job_id == job_id)
        .order_by(job_runs.c.id.desc()).offset(keep_runs - 1).limit(1)).scalar()
    old = job_runs.c.scheduled_for < cutoff
    if oldest_kept is not None:
        old = old | (job_runs.c.id < oldest_kept)
    return conn.execute(delete(job_runs).where(
        job_runs.c.job_id == job_id, job_runs.c.finished_at.is_not(None), old)).rowcount


def request(engine: Engine, *, job_id: str, requested_by: str) -> Run | None:
    """Ask for a run of ``job_id`` now; the new row, or None when a run of the job is
    already asked for or under way."""
    at = now_us()
    try:
        with engine.begin() as conn:
            row = conn.execute(
                _insert(conn).values(job_id=job_id, scheduled_for=at, attempt=1,
                                     kind="manual", requested_by=requested_by[:200])
                .on_conflict_do_nothing().returning(*job_runs.c)).first()
    except IntegrityError:
        return None
    return None if row is None else _run(row)


def requested(engine: Engine) -> list[Run]:
    """Runs asked for and not started, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(select(job_runs).where(job_runs.c.started_at.is_(None),
                                                   job_runs.c.finished_at.is_(None))
                            .order_by(job_runs.c.id)).all()
    return [_run(r) for r in rows]


def start_requested(engine: Engine, run_id: int, holder: str) -> bool:
    """Take a run asked for; False if another process took it."""
    with engine.begin() as conn:
        return conn.execute(update(job_runs).where(
            job_runs.c.id == run_id, job_runs.c.started_at.is_(None))
            .values(started_at=now_us(), holder=holder)).rowcount == 1


def close_abandoned(conn: Connection, holder: str) -> int:
    """Runs under way by other processes, when this one starts running the jobs: the
    process that ran them is gone (it held the lock), so they failed."""
    return int(conn.execute(update(job_runs).where(
        job_runs.c.finished_at.is_(None), job_runs.c.started_at.is_not(None),
        job_runs.c.holder != holder)
        .values(finished_at=now_us(), outcome="failed", result=INTERRUPTED)).rowcount)


def get(conn: Connection, run_id: int) -> Run | None:
    row = conn.execute(select(job_runs).where(job_runs.c.id == run_id)).first()
    return None if row is None else _run(row)


def recent(conn: Connection, job_id: str, *, limit: int = 20) -> list[Run]:
    """A job's newest runs first (those asked for and under way among them)."""
    rows = conn.execute(select(job_runs).where(job_runs.c.job_id == job_id)
                        .order_by(job_runs.c.id.desc()).limit(limit)).all()
    return [_run(r) for r in rows]


def latest(conn: Connection) -> dict[str, Run]:
    """Each job's newest run."""
    newest = (select(job_runs.c.job_id, func.max(job_runs.c.id).label("id"))
              .group_by(job_runs.c.job_id).subquery())
    rows = conn.execute(select(job_runs).join(newest, and_(
        job_runs.c.id == newest.c.id))).all()
    return {r.job_id: _run(r) for r in rows}


def latest_finished(conn: Connection) -> dict[str, Run]:
    """Each job's newest finished run."""
    newest = (select(job_runs.c.job_id, func.max(job_runs.c.id).label("id"))
              .where(job_runs.c.finished_at.is_not(None))
              .group_by(job_runs.c.job_id).subquery())
    rows = conn.execute(select(job_runs).join(newest, job_runs.c.id == newest.c.id)).all()
    return {r.job_id: _run(r) for r in rows}


def failures(conn: Connection) -> dict[str, int]:
    """Failed runs per job, among those kept."""
    rows = conn.execute(select(job_runs.c.job_id, func.count()).where(
        job_runs.c.outcome == "failed").group_by(job_runs.c.job_id)).all()
    return {r[0]: int(r[1]) for r in rows}


def finished_counts(conn: Connection) -> dict[str, tuple[int, int]]:
    """Runs that ended (done or failed) per job, and how many of them failed, among those
    kept (90 days, 1,000 per job): what /metrics shows."""
    failed = func.sum(case((job_runs.c.outcome == "failed", 1), else_=0))
    rows = conn.execute(
        select(job_runs.c.job_id, func.count(), failed)
        .where(job_runs.c.outcome.in_(("ok", "failed")))
        .group_by(job_runs.c.job_id)).all()
    return {r[0]: (int(r[1]), int(r[2] or 0)) for r in rows}


def next_runs(conn: Connection) -> dict[str, int | None]:
    """Each stored job's next run time (µs), as the job store holds it."""
    rows = conn.execute(select(scheduler_jobs.c.id, scheduler_jobs.c.next_run_time)).all()
    return {r.id: None if r.next_run_time is None else round(r.next_run_time * 1_000_000)
            for r in rows}
