"""Every job of the catalog, on a real database: a hub stopped over its time runs it once
when it starts again, and a failing run is logged, counted and tried again, then ends ok.

Both are parametrized over every job of ``job_specs`` of a hub (SQLite and PostgreSQL) and
of a central (PostgreSQL), so jobs added to the catalog are covered with no change here.
Each scenario runs once for all jobs at once (a module-scoped cache), with each job's real
body and settings whose data (backups) are in a temporary folder; each case then checks
its own job's rows. Also: the upkeep jobs' effects (``labhub.jobs.upkeep``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from scheduler_world import (
    cases,
    fresh_database,
    hub_settings,
    make_all_due,
    runs_of,
    started_hub,
    stored_next_runs,
)
from sqlalchemy import Engine, func, insert, select
from waiting import wait_for

from labhub.access import audit
from labhub.access.tables import audit_log
from labhub.jobs import upkeep
from labhub.network import central
from labhub.network.tables import network_upload_parts
from labhub.scheduler.catalog import job_specs
from labhub.scheduler.jobs import JobContext, JobSpec
from labhub.scheduler.service import Scheduler
from labhub.settings import Settings
from labhub.wiring import Hub

RUNS_DEADLINE_S = 90.0  # every job's real body, on a busy 2-core machine


@dataclass
class Ran:
    """What one scenario left: the due time it set, every run, the stored next runs."""

    due_us: int
    runs: list[Any]
    next_runs: dict[str, float | None]
    errors: list[logging.LogRecord]
    started_s: float

    def of(self, job_id: str) -> list[Any]:
        return [r for r in self.runs if r.job_id == job_id]


class Scenarios:
    """Each scenario run once per module, on first use."""

    def __init__(self, request: pytest.FixtureRequest, where: Path) -> None:
        self.request = request
        self.where = where
        self.done: dict[tuple[str, str, str], Ran] = {}

    def get(self, kind: str, scenario: tuple[str, str],
            run: Callable[[Engine, Settings], Ran]) -> Ran:
        key = (kind, *scenario)
        if key not in self.done:
            backend, role = scenario
            folder = self.where / "-".join(key)
            folder.mkdir()
            url = fresh_database(self.request, backend, folder)
            self.done[key] = run(url, hub_settings(url, role, folder / "data"))  # type: ignore[arg-type]
        return self.done[key]


@pytest.fixture(scope="module")
def scenarios(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
              ) -> Scenarios:
    return Scenarios(request, tmp_path_factory.mktemp("scheduler-jobs"))


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _all_finished(hub: Hub, ids: list[str], attempt: int) -> Callable[[], bool]:
    def check() -> bool:
        done = {(r.job_id) for r in runs_of(hub.engine)
                if r.finished_at is not None and r.attempt == attempt}
        return set(ids) <= done
    return check


def _stopped_over_its_time(url: str, settings: Settings,
                           specs: Callable[[list[JobSpec]], list[JobSpec]] = list,
                           attempts: int = 1) -> Ran:
    """A hub ran its scheduler (which stored the jobs), stopped, and was off when every
    job was due; it starts again, and runs what was missed."""
    errors = _Errors()
    logging.getLogger("labhub.scheduler").addHandler(errors)
    try:
        with started_hub(settings) as hub:
            Scheduler(hub).start().close()
            due_us = make_all_due(hub.engine)
            catalog = specs(job_specs(settings))
            started = time.time()
            scheduler = Scheduler(hub, specs=catalog).start()
            try:
                assert scheduler.leading
                ids = [s.id for s in catalog]
                wait_for(_all_finished(hub, ids, attempts), RUNS_DEADLINE_S,
                         f"attempt {attempts} of every job to finish",
                         lambda: [tuple(r)[1:] for r in runs_of(hub.engine)])
            finally:
                scheduler.close()
            return Ran(due_us, runs_of(hub.engine), stored_next_runs(hub.engine),
                       errors.records, started)
    finally:
        logging.getLogger("labhub.scheduler").removeHandler(errors)


@pytest.mark.parametrize(("scenario", "job_id"), cases())
def test_a_hub_stopped_over_a_jobs_time_runs_it_once_when_it_starts_again(
        scenarios: Scenarios, scenario: tuple[str, str], job_id: str) -> None:
    ran = scenarios.get("missed", scenario, _stopped_over_its_time)
    mine = ran.of(job_id)
    assert [(r.kind, r.attempt, r.scheduled_for) for r in mine] == [
        ("schedule", 1, ran.due_us)], mine
    run = mine[0]
    assert run.outcome == "ok", f"{job_id} failed on a hub of the tests: {run.result}"
    assert run.result, "a job says what it did"
    assert run.started_at >= ran.started_s * 1e6
    stored = ran.next_runs[job_id]
    assert stored is not None and stored > ran.started_s, "its next run is in the future"


INJECTED = "injected failure of the first attempt"


def _failing_first(specs: list[JobSpec]) -> list[JobSpec]:
    """Each job fails its first attempt, then runs its real body; one retry, 1 s later."""
    def flaky(spec: JobSpec) -> JobSpec:
        def run(ctx: JobContext) -> str:
            if ctx.attempt == 1:
                raise RuntimeError(INJECTED)
            return spec.run(ctx)
        return replace(spec, run=run, retries=1, retry_after_s=1)
    return [flaky(s) for s in specs]


def _failing(url: str, settings: Settings) -> Ran:
    return _stopped_over_its_time(url, settings, _failing_first, attempts=2)


@pytest.mark.parametrize(("scenario", "job_id"), cases())
def test_a_failed_run_is_logged_counted_and_tried_again(
        scenarios: Scenarios, scenario: tuple[str, str], job_id: str) -> None:
    ran = scenarios.get("failing", scenario, _failing)
    first, second = ran.of(job_id)
    assert (first.attempt, first.outcome, first.result) == (
        1, "failed", f"RuntimeError: {INJECTED}")
    assert first.retry_at is not None
    assert first.retry_at - first.finished_at == pytest.approx(1_000_000, abs=100_000)
    assert (second.attempt, second.scheduled_for) == (2, first.scheduled_for)
    assert second.started_at >= first.retry_at
    assert second.outcome == "ok", f"{job_id} failed on a hub of the tests: {second.result}"
    logged = [r for r in ran.errors if job_id in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None, "logged with its traceback"
    assert INJECTED in str(logged[0].exc_info[1])


def test_the_failures_count_in_the_jobs_status(engine: Engine, settings: Settings) -> None:
    spec = JobSpec(id="always-fails", title="Fails", run=_raise,
                   trigger=upkeep.specs(settings)[0].trigger, retries=1, retry_after_s=0)
    with started_hub(settings.model_copy(update={"jobs_enabled": False})) as hub:
        scheduler = Scheduler(hub, specs=[spec]).start()
        try:
            scheduler.request("always-fails", requested_by="test")
            wait_for(lambda: scheduler.status()[0]["failures"] == 2, 20, "two failures")
            status = scheduler.status()[0]
        finally:
            scheduler.close()
    assert status["last_run"]["outcome"] == "failed"
    assert status["last_run"]["attempt"] == 2
    assert status["last_run"]["result"] == "OSError: the disk is not there"


def _raise(ctx: JobContext) -> str:
    raise OSError("the disk is not there")


# -- the upkeep jobs' effects ------------------------------------------------------------


@pytest.fixture
def hub(settings: Settings) -> Iterator[Hub]:
    with started_hub(settings.model_copy(update={"jobs_enabled": False})) as h:
        yield h


def _spec(settings: Settings, job_id: str) -> JobSpec:
    return next(s for s in upkeep.specs(settings) if s.id == job_id)


def test_audit_log_prune_deletes_entries_older_than_the_setting(hub: Hub) -> None:
    day = audit.US_PER_DAY
    now = audit.now_us()
    days = hub.settings.audit_log_days
    with hub.engine.begin() as conn:
        for at in (now - (days + 2) * day, now - (days + 1) * day, now - (days - 1) * day,
                   now):
            conn.execute(insert(audit_log).values(at=at, actor="ana", action="signed_in",
                                                  outcome="ok"))
    result = _spec(hub.settings, "audit-log-prune").run(JobContext(hub, "audit-log-prune"))
    assert result == f"deleted 2 audit log entries older than {days} days"
    with hub.engine.connect() as conn:
        kept = sorted(conn.execute(select(audit_log.c.at)).scalars())
    assert kept == [now - (days - 1) * day, now]


def test_network_parts_prune_drops_pieces_of_batches_left_unfinished(
        postgres_url: str, tmp_path: Path) -> None:
    from scheduler_world import empty_tables

    empty_tables(postgres_url)
    settings = hub_settings(postgres_url, "central", tmp_path / "data")
    assert "network-parts-prune" in {s.id for s in job_specs(settings)}
    assert "network-parts-prune" not in {
        s.id for s in job_specs(settings.model_copy(update={"role": "hub"}))}
    old = central.now_us() - (central.PARTS_KEEP_DAYS + 1) * central.US_PER_DAY
    with started_hub(settings) as hub:
        with hub.engine.begin() as conn:
            for batch, at in (("a" * 36, old), ("b" * 36, central.now_us())):
                conn.execute(insert(network_upload_parts).values(
                    batch_id=batch, offset=0, hub_id="h" * 36, total=10, data=b"12345",
                    received_at=at))
        result = _spec(settings, "network-parts-prune").run(
            JobContext(hub, "network-parts-prune"))
        with hub.engine.connect() as conn:
            left = list(conn.execute(select(network_upload_parts.c.batch_id)).scalars())
            count = conn.execute(select(func.count()).select_from(network_upload_parts)).scalar()
    assert result.startswith("dropped 1 pieces of batches left unfinished")
    assert left == ["b" * 36] and count == 1
