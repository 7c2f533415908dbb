"""The scheduler itself (``labhub.scheduler``): a fresh hub does no work at start, the
leader lock on SQLite and PostgreSQL, one run per due time even with two leaders at once,
missed runs past their grace, retries, runs asked for, closing while a job runs, and the
runs kept. The generic tests over every job are in test_scheduler_jobs.py and
test_scheduler_procs.py."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from scheduler_world import make_all_due, runs_of, started_hub, stored_next_runs
from sqlalchemy import Engine, func, insert, select, text, update
from waiting import wait_for

from labhub.scheduler import leader, runs
from labhub.scheduler.catalog import job_specs
from labhub.scheduler.jobs import JobContext, JobSpec
from labhub.scheduler.service import Scheduler, describe, same_schedule
from labhub.scheduler.tables import job_runs, scheduler_jobs
from labhub.settings import Settings
from labhub.wiring import Hub


@pytest.fixture
def hub(settings: Settings) -> Iterator[Hub]:
    """A hub on SQLite and on PostgreSQL (for what the two databases do differently: the
    claims' unique keys, the lock)."""
    with started_hub(settings.model_copy(update={"jobs_enabled": False})) as h:
        yield h


@pytest.fixture
def sqlite_hub(sqlite_template: Path, tmp_path: Path) -> Iterator[Hub]:
    """A hub on SQLite only, for the scheduler's own logic."""
    shutil.copy(sqlite_template, tmp_path / "labhub.db")
    settings = Settings(data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path}/labhub.db",
                        jobs_enabled=False)
    with started_hub(settings) as h:
        yield h


def _daily(**more: object) -> CronTrigger:
    return CronTrigger(hour=2, minute=0, timezone="America/Bogota", **more)  # type: ignore[arg-type]


def _spec(job_id: str, run: object, trigger: object = None, **more: object) -> JobSpec:
    return JobSpec(id=job_id, title=job_id.title(), run=run,  # type: ignore[arg-type]
                   trigger=trigger or _daily(), **more)  # type: ignore[arg-type]


def _ok(ctx: JobContext) -> str:
    return "done"


class AlwaysLeads:
    """A lock every process holds: two schedulers that both think they lead (a handover
    where the old leader stalled past its lease)."""

    def __init__(self, holder: str) -> None:
        self.holder = holder

    def acquire(self) -> bool:
        return True

    def held(self) -> bool:
        return True

    def release(self) -> None:
        return None


def test_a_fresh_hub_stores_its_jobs_and_runs_nothing_at_start(hub: Hub) -> None:
    specs = job_specs(hub.settings)
    before = time.time()
    scheduler = Scheduler(hub).start()
    try:
        assert scheduler.leading
        status = scheduler.status()
    finally:
        scheduler.close()
    assert runs_of(hub.engine) == []
    stored = stored_next_runs(hub.engine)
    assert set(stored) == {s.id for s in specs}
    assert all(t is not None and t > before for t in stored.values())
    assert [s["id"] for s in status] == [s.id for s in specs]
    assert all(s["last_run"] is None and s["failures"] == 0 and s["leader"] for s in status)


def test_hub_start_runs_the_scheduler_and_close_lets_the_lock_go(settings: Settings) -> None:
    first = Hub(settings).start(hardware=False, jobs=True)
    try:
        assert first.scheduler is not None and first.scheduler.leading
        second = Hub(settings).start(hardware=False, jobs=True)
        try:
            assert second.scheduler is not None and not second.scheduler.leading
        finally:
            second.close()
    finally:
        first.close()
    third = Hub(settings).start(hardware=False, jobs=True)
    try:
        assert third.scheduler is not None and third.scheduler.leading
    finally:
        third.close()


def test_sqlite_lease_is_taken_over_once_it_expires(sqlite_hub: Hub) -> None:
    engine = sqlite_hub.engine
    a = leader.SqliteLease(engine, "a", lease_s=0.3)
    b = leader.SqliteLease(engine, "b", lease_s=30)
    assert a.acquire() and a.held()
    assert not b.acquire() and not b.held()
    with engine.connect() as conn:
        assert leader.current_leader(conn) == "a"
    assert a.acquire(), "the holder renews"
    wait_for(lambda: not a.held(), 5, "a's lease to expire")
    assert b.acquire() and b.held()
    assert not a.acquire() and not a.held()
    b.release()
    with engine.connect() as conn:
        assert leader.current_leader(conn) is None
    assert a.acquire()
    a.release()


@pytest.mark.postgres
def test_postgres_lock_is_lost_with_its_connection(postgres_url: str) -> None:
    from labhub import db

    engine = db.make_engine(postgres_url)
    a = leader.PostgresAdvisoryLock(engine, "a")
    b = leader.PostgresAdvisoryLock(engine, "b")
    try:
        assert a.acquire() and a.held()
        assert not b.acquire() and not b.held()
        with engine.connect() as conn:
            assert leader.current_leader(conn) == "a process"
            # The server cuts a's connection (a restart, a network failure).
            conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                "AND classid::bigint = :hi AND objid::bigint = :lo"),
                {"hi": leader.ADVISORY_KEY >> 32, "lo": leader.ADVISORY_KEY & 0xFFFF_FFFF})
        wait_for(b.acquire, 10, "b to take the lock")
        assert not a.acquire() and not a.held()
        assert engine.pool.checkedout() == 0, "the lock's connection is not the pool's"
    finally:
        a.release()
        b.release()
        engine.dispose()


def test_two_leaders_at_once_run_a_due_time_once(hub: Hub) -> None:
    calls: list[str] = []
    gate = threading.Event()

    def slow(ctx: JobContext) -> str:
        calls.append(ctx.job_id)
        gate.wait(5)
        return "once"

    specs = [_spec("nightly", slow, IntervalTrigger(hours=1))]
    Scheduler(hub, specs=specs).start().close()
    due = make_all_due(hub.engine)
    first = Scheduler(hub, specs=specs, lock=AlwaysLeads("first")).start()
    second = Scheduler(hub, specs=specs, lock=AlwaysLeads("second")).start()
    try:
        wait_for(lambda: len(runs_of(hub.engine)) >= 1, 10, "a run to be claimed")
        gate.set()
        wait_for(lambda: all(r.finished_at for r in runs_of(hub.engine)), 10, "the run")
    finally:
        first.close()
        second.close()
    assert calls == ["nightly"]
    rows = [r for r in runs_of(hub.engine) if r.outcome != "skipped"]
    assert [(r.scheduled_for, r.outcome, r.result) for r in rows] == [(due, "ok", "once")]


def test_a_run_missed_past_its_grace_is_recorded_as_skipped(sqlite_hub: Hub) -> None:
    calls: list[int] = []

    def count(ctx: JobContext) -> str:
        calls.append(ctx.attempt)
        return "ran"

    specs = [_spec("nightly", count, misfire_grace_s=60)]
    Scheduler(sqlite_hub, specs=specs).start().close()
    two_days = 2 * 86400
    due = make_all_due(sqlite_hub.engine, ago_s=two_days)
    scheduler = Scheduler(sqlite_hub, specs=specs).start()
    scheduler.close()
    assert calls == []
    [skipped] = runs_of(sqlite_hub.engine)
    assert (skipped.outcome, skipped.scheduled_for) == ("skipped", due)
    assert skipped.result.startswith("missed: the hub was not running")
    assert stored_next_runs(sqlite_hub.engine)["nightly"] > time.time()


def test_a_changed_time_replaces_the_stored_next_run_and_old_jobs_go(sqlite_hub: Hub) -> None:
    Scheduler(sqlite_hub, specs=[_spec("nightly", _ok), _spec("gone", _ok)]).start().close()
    make_all_due(sqlite_hub.engine, ago_s=60)
    at_three = CronTrigger(hour=3, minute=0, timezone="America/Bogota")
    Scheduler(sqlite_hub, specs=[_spec("nightly", _ok, at_three)]).start().close()
    stored = stored_next_runs(sqlite_hub.engine)
    assert set(stored) == {"nightly"}
    assert stored["nightly"] == at_three.get_next_fire_time(
        None, datetime.now(UTC)).timestamp()
    assert runs_of(sqlite_hub.engine) == []
    assert same_schedule(IntervalTrigger(seconds=60), IntervalTrigger(seconds=60))
    assert not same_schedule(IntervalTrigger(seconds=60), IntervalTrigger(seconds=61))
    assert not same_schedule(_daily(), at_three)


def test_a_run_asked_for_runs_once_and_a_second_ask_waits(hub: Hub) -> None:
    gate = threading.Event()

    def slow(ctx: JobContext) -> str:
        gate.wait(10)
        return f"attempt {ctx.attempt}"

    scheduler = Scheduler(hub, specs=[_spec("nightly", slow)]).start()
    try:
        asked = scheduler.request("nightly", requested_by="ana")
        assert asked is not None and asked.state == "requested"
        wait_for(lambda: scheduler.status()[0]["current"] is not None
                 and scheduler.status()[0]["current"]["state"] == "running", 10, "it runs")
        assert scheduler.request("nightly", requested_by="ben") is None
        gate.set()
        wait_for(lambda: scheduler.status()[0]["last_run"] is not None, 10, "it ends")
        status = scheduler.status()[0]
    finally:
        scheduler.close()
    assert status["last_run"]["outcome"] == "ok"
    assert status["last_run"]["result"] == "attempt 1"
    assert status["current"] is None
    [run] = runs_of(hub.engine)
    assert (run.kind, run.requested_by, run.holder) == ("manual", "ana", scheduler.holder)


def test_closing_stops_a_long_job_at_its_next_chunk(sqlite_hub: Hub) -> None:
    chunks: list[int] = []
    started = threading.Event()

    def long(ctx: JobContext) -> str:
        for n in range(10_000):
            if ctx.stopping():
                return f"stopped after {n} chunks"
            chunks.append(n)
            started.set()
            time.sleep(0.01)
        return "all done"

    scheduler = Scheduler(sqlite_hub, specs=[_spec("long", long)]).start()
    scheduler.request("long", requested_by="test")
    assert started.wait(10)
    scheduler.close()
    [run] = runs_of(sqlite_hub.engine)
    assert run.outcome == "ok" and run.result.startswith("stopped after")
    assert len(chunks) < 10_000


def test_runs_of_a_process_that_died_are_closed_by_the_next_leader(sqlite_hub: Hub) -> None:
    with sqlite_hub.engine.begin() as conn:
        conn.execute(insert(job_runs).values(
            job_id="nightly", scheduled_for=1, attempt=1, kind="schedule",
            holder="gone:1:x", started_at=runs.now_us()))
    scheduler = Scheduler(sqlite_hub, specs=[_spec("nightly", _ok)]).start()
    scheduler.close()
    [run] = runs_of(sqlite_hub.engine)
    assert (run.outcome, run.result) == ("failed", runs.INTERRUPTED)


def test_old_runs_are_pruned(sqlite_hub: Hub) -> None:
    old = runs.now_us() - (runs.KEEP_DAYS + 1) * runs.US_PER_DAY
    with sqlite_hub.engine.begin() as conn:
        for n in range(12):
            conn.execute(insert(job_runs).values(
                job_id="nightly", scheduled_for=(old if n == 0 else runs.now_us() - n),
                attempt=1,
                kind="schedule", started_at=n, finished_at=n, outcome="ok"))
        assert runs.prune(conn, "nightly", keep_runs=5) == 7  # the oldest among them
        left = conn.execute(select(func.count()).select_from(job_runs)).scalar()
    assert left == 5


def test_triggers_are_described_for_people() -> None:
    assert describe(IntervalTrigger(seconds=60)) == "every 1 min"
    assert describe(IntervalTrigger(seconds=90)) == "every 90 s"
    assert describe(IntervalTrigger(hours=2)) == "every 2 h"
    assert describe(_daily()) == "daily at 02:00 (America/Bogota)"
    assert describe(CronTrigger(day_of_week="mon", hour=7, minute=30, timezone="UTC")) == (
        "on mon at 07:30 (UTC)")


def test_the_stored_next_run_survives_a_restart_unchanged(sqlite_hub: Hub) -> None:
    specs = [_spec("every-hour", _ok, IntervalTrigger(hours=1))]
    Scheduler(sqlite_hub, specs=specs).start().close()
    first = stored_next_runs(sqlite_hub.engine)["every-hour"]
    specs = [_spec("every-hour", _ok, IntervalTrigger(hours=1))]  # built again at start
    Scheduler(sqlite_hub, specs=specs).start().close()
    assert stored_next_runs(sqlite_hub.engine)["every-hour"] == first
    with sqlite_hub.engine.begin() as conn:
        conn.execute(update(scheduler_jobs).values(
            next_run_time=(datetime.now(UTC) - timedelta(minutes=5)).timestamp()))
    scheduler = Scheduler(sqlite_hub, specs=specs).start()
    try:
        wait_for(lambda: any(r.finished_at for r in runs_of(sqlite_hub.engine)), 10,
                 "the run missed five minutes ago")
    finally:
        scheduler.close()
    assert [r.outcome for r in runs_of(sqlite_hub.engine)] == ["ok"]


def test_a_run_whose_end_could_not_be_recorded_is_recorded_at_the_next_tick(
        sqlite_hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.exc import OperationalError

    real = runs.finish
    failed: list[int] = []

    def finish_fails_once(engine: Engine, run_id: int, **ending: object) -> None:
        if not failed:
            failed.append(run_id)
            raise OperationalError("UPDATE job_runs", {}, Exception("database is locked"))
        real(engine, run_id, **ending)  # type: ignore[arg-type]

    monkeypatch.setattr(runs, "finish", finish_fails_once)
    scheduler = Scheduler(sqlite_hub, specs=[_spec("nightly", _ok)]).start()
    try:
        scheduler.request("nightly", requested_by="test")
        wait_for(lambda: bool(failed), 10, "the first attempt to record the end")
        wait_for(lambda: runs_of(sqlite_hub.engine)[0].finished_at is not None, 10,
                 "the end recorded at a later tick")
    finally:
        scheduler.close()
    [run] = runs_of(sqlite_hub.engine)
    assert (run.outcome, run.result) == ("ok", "done")
