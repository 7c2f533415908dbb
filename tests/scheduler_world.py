"""What the scheduler's tests share: hubs on a database of their own (a copy of the
migrated SQLite template, or the run's PostgreSQL database emptied), the catalog's job
ids for a hub and for a central (so the tests cover every job, those added later too),
making every stored job due, and reading ``job_runs``."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text, update

from labhub import db
from labhub.scheduler.catalog import job_specs
from labhub.scheduler.tables import job_runs, scheduler_jobs
from labhub.settings import Settings
from labhub.wiring import Hub

# (backend, role): a central runs on PostgreSQL only.
SCENARIOS = [("sqlite", "hub"), ("postgres", "hub"), ("postgres", "central")]


def catalog_ids(role: str) -> list[str]:
    """The ids of the jobs a hub (or a central) with default settings runs."""
    settings = Settings(data_dir=Path("/nonexistent/labhub-tests"), role=role)  # type: ignore[arg-type]
    return [s.id for s in job_specs(settings)]


def cases() -> list[Any]:
    """``(scenario, job id)`` for every job of every scenario, marked like the
    ``database_url`` fixture's cases."""
    out = []
    for backend, role in SCENARIOS:
        for job_id in catalog_ids(role):
            marks = [pytest.mark.postgres] if backend == "postgres" else []
            out.append(pytest.param((backend, role), job_id, marks=marks,
                                    id=f"{backend}-{role}-{job_id}"))
    return out


def empty_tables(url: str) -> None:
    engine = db.make_engine(url)
    names = ", ".join(t.name for m in db.ALL_METADATA for t in reversed(m.sorted_tables))
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


def fresh_database(request: pytest.FixtureRequest, backend: str, where: Path) -> str:
    """A migrated database with no rows: a copy of the SQLite template in ``where``, or
    the run's PostgreSQL database emptied."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = where / "labhub.db"
        shutil.copy(template, path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_url")
    empty_tables(url)
    return url


def hub_settings(url: str, role: str, data: Path, **more: Any) -> Settings:
    """Settings of a hub (or central) on ``url`` with its data (backups...) in ``data``;
    the scheduler is started by the test itself."""
    return Settings(data_dir=data, database_url=url, role=role,  # type: ignore[arg-type]
                    jobs_enabled=False, **more)


@contextmanager
def started_hub(settings: Settings) -> Iterator[Hub]:
    hub = Hub(settings).start(hardware=False)
    try:
        yield hub
    finally:
        hub.close()


def make_all_due(engine: Engine, *, ago_s: int = 2) -> int:
    """Every stored job's next run time set ``ago_s`` seconds in the past (whole
    seconds): a hub that was stopped over their time. The due time, in µs."""
    due_s = int(time.time()) - ago_s
    with engine.begin() as conn:
        conn.execute(update(scheduler_jobs).values(next_run_time=float(due_s)))
    return due_s * 1_000_000


def runs_of(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(job_runs).order_by(job_runs.c.id)).all())


def stored_next_runs(engine: Engine) -> dict[str, float | None]:
    with engine.connect() as conn:
        return {r.id: r.next_run_time for r in conn.execute(select(scheduler_jobs)).all()}
