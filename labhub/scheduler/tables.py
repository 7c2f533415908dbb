"""The scheduler's tables (migration 0022).

- ``scheduler_jobs``: APScheduler's job store (its ``SQLAlchemyJobStore`` table): each job
  of the catalog by its stable id, its pickled state (the runner function's reference, the
  job's id as its argument, its trigger) and its next run time, so a hub stopped over a
  job's time knows, when it starts again, that the run is due.
- ``scheduler_lease``: on SQLite, the lease of the one process that runs the jobs (its
  holder and until when); it renews it every few seconds, another takes it over once it
  has expired. On PostgreSQL a session-level advisory lock does the same.
- ``job_runs``: every run of a job: when it was due, which attempt, who ran it, how it
  ended. A run is claimed by inserting its row: the unique key (job, due time, attempt)
  lets one process only run it, and the unique index on a job's unfinished row lets one
  run of a job be under way in the whole database at a time.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    Unicode,
    UniqueConstraint,
    text,
)

from sensors.storage import NAMING_CONVENTION

metadata = MetaData(naming_convention=NAMING_CONVENTION)

JOB_ID_MAX = 64
HOLDER_MAX = 120  # host:pid:random
RESULT_MAX = 2000  # a run's one-line result or error, cut to this many characters

# The table APScheduler's SQLAlchemyJobStore reads and writes (its own column types).
scheduler_jobs = Table(
    "scheduler_jobs", metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), nullable=True),
    Column("job_state", LargeBinary, nullable=False),
    Index("ix_scheduler_jobs_next_run_time", "next_run_time"),
)

scheduler_lease = Table(
    "scheduler_lease", metadata,
    Column("name", String(32), primary_key=True),  # "jobs"
    Column("holder", String(HOLDER_MAX), nullable=False),
    Column("acquired_at", BigInteger, nullable=False),  # µs
    Column("expires_at", BigInteger, nullable=False),  # µs, the holder's wall clock
)

UNFINISHED = text("finished_at IS NULL")

job_runs = Table(
    "job_runs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(JOB_ID_MAX), nullable=False),
    Column("scheduled_for", BigInteger, nullable=False),  # µs: the due time (or request's)
    Column("attempt", Integer, nullable=False),  # 1, then each retry
    Column("kind", String(16), nullable=False),  # "schedule" or "manual"
    Column("requested_by", String(200), nullable=True),  # who asked for a manual run
    Column("holder", String(HOLDER_MAX), nullable=True),  # the process that ran it
    Column("started_at", BigInteger, nullable=True),  # null: asked for, not started yet
    Column("finished_at", BigInteger, nullable=True),  # null: under way (or asked for)
    Column("outcome", String(16), nullable=True),  # "ok", "failed", "skipped"
    Column("result", Text, nullable=True),  # the result, the error, or why it was skipped
    Column("retry_at", BigInteger, nullable=True),  # a failed run: when it is tried again
    UniqueConstraint("job_id", "scheduled_for", "attempt",
                     name="uq_job_runs_job_id_scheduled_for_attempt"),
    Index("ix_job_runs_job_id_id", "job_id", "id"),
    Index("ux_job_runs_unfinished", "job_id", unique=True,
          sqlite_where=UNFINISHED, postgresql_where=UNFINISHED),
)
