"""The scheduler of a running hub: APScheduler 3 (``BackgroundScheduler``) with its job
store in the hub's database, run by one process of the database at a time.

Every process that starts the jobs (``labhub serve``, each of its ``--workers``) builds a
:class:`Scheduler`. Its thread tries the leader lock (:mod:`labhub.scheduler.leader`) at
start and every :data:`~labhub.scheduler.leader.TICK_S`; the process that holds it starts
an APScheduler ``BackgroundScheduler`` on the shared job store (``scheduler_jobs``) with
the catalog's jobs (:func:`labhub.scheduler.catalog.job_specs`), and stops it when it
loses the lock. The others wait, and take over within a lease when the leader is gone.

- Jobs are registered by their stable ids (``replace_existing``), each as
  ``labhub.scheduler.runner:run_job`` with the id as argument. A job whose trigger did
  not change keeps the next run time the store remembers, so a hub stopped over a job's
  time runs it once (``coalesce``) when it starts again, if that is within the job's
  ``misfire_grace_s``; a run later than that is recorded as skipped.
- The executor (:class:`HubExecutor`) runs jobs on a pool of ``job_workers`` threads,
  one run of a job at a time; each run is claimed in ``job_runs`` first
  (:mod:`labhub.scheduler.runs`), so a due time runs once even when two processes both
  think they lead for a moment (a handover).
- A failed run is logged with its traceback, recorded, and tried again after
  ``retry_after_s`` (a one-off APScheduler job) up to ``retries`` times; then the job
  waits for its next time.
- Runs asked for by people (the API, the web page, ``labhub jobs run``) are rows in
  ``job_runs`` that the leader starts at its next tick.
- ``close()`` tells running jobs to stop at their next chunk (``JobContext.stopping``)
  and waits for them only :data:`CLOSE_WAIT_S`.
"""

from __future__ import annotations

import concurrent.futures
import logging
import pickle
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from apscheduler.events import EVENT_JOB_MISSED
from apscheduler.executors.base import BaseExecutor
from apscheduler.executors.base import run_job as aps_run_job
from apscheduler.job import Job
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from apscheduler.util import datetime_to_utc_timestamp
from sqlalchemy import Engine, MetaData, select
from sqlalchemy.dialects import postgresql, sqlite

from labhub.scheduler import leader, runner, runs
from labhub.scheduler.catalog import job_specs
from labhub.scheduler.jobs import JobContext, JobSpec
from labhub.scheduler.tables import scheduler_jobs

if TYPE_CHECKING:
    from labhub.wiring import Hub

log = logging.getLogger(__name__)

CLOSE_WAIT_S = 5.0  # closing waits this long for running jobs to reach their next chunk
CLOCK_JUMP_S = 2.0  # the wall clock moved this much against the monotonic one: a sleep
RUNNER = "labhub.scheduler.runner:run_job"
RETRY_SUFFIX = "~retry"  # a retry's one-off job: "<job id>~retry", in memory


class HubJobStore(SQLAlchemyJobStore):  # type: ignore[misc]
    """APScheduler's SQLAlchemy store on the hub's own engine and ``scheduler_jobs``
    table (made by migration 0022): it neither creates the table nor disposes of the
    hub's engine when the scheduler stops. Jobs added while it is held (the catalog, at
    start) are written together in one statement by :meth:`flush` (a hub starts in a few
    milliseconds, on PostgreSQL too)."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine=engine, tablename=scheduler_jobs.name, metadata=MetaData())
        self.jobs_t = scheduler_jobs  # one Table for every store: statements compile once
        self._held: list[Job] | None = None

    def start(self, scheduler: Any, alias: str) -> None:
        super(SQLAlchemyJobStore, self).start(scheduler, alias)

    def hold(self) -> None:
        self._held = []

    def add_job(self, job: Job) -> None:
        if self._held is None:
            super().add_job(job)
        else:  # registered with replace_existing: written (or replaced) by flush()
            self._held.append(job)

    def flush(self, *, drop: Iterable[str] = (), unchanged: Iterable[str] = ()) -> None:
        """Write the jobs held (each replacing its stored row) but those ``unchanged``
        (stored as they are), and remove ``drop``, in one transaction (none when there
        is nothing to write: a hub that restarts writes nothing)."""
        same = set(unchanged)
        held = [job for job in self._held or [] if job.id not in same]
        self._held = None
        dropped = list(drop)
        if not (held or dropped):
            return
        rows = [{"id": job.id,
                 "next_run_time": datetime_to_utc_timestamp(job.next_run_time),
                 "job_state": pickle.dumps(job.__getstate__(), self.pickle_protocol)}
                for job in held]
        with self.engine.begin() as conn:
            if rows:
                insert = (sqlite if conn.dialect.name == "sqlite" else postgresql).insert(
                    scheduler_jobs).values(rows)
                conn.execute(insert.on_conflict_do_update(
                    index_elements=["id"],
                    set_={"next_run_time": insert.excluded.next_run_time,
                          "job_state": insert.excluded.job_state}))
            if dropped:
                conn.execute(scheduler_jobs.delete().where(scheduler_jobs.c.id.in_(dropped)))

    def shutdown(self) -> None:
        return None


class HubExecutor(BaseExecutor):  # type: ignore[misc]
    """Runs APScheduler's due jobs on the scheduler's bounded pool, telling each worker
    thread its scheduler and the run's due time (:mod:`labhub.scheduler.runner`); a run
    that missed its grace time is recorded as skipped."""

    def __init__(self, service: Scheduler) -> None:
        super().__init__()
        self.service = service

    def _do_submit_job(self, job: Job, run_times: list[datetime]) -> None:
        def callback(f: concurrent.futures.Future[list[Any]]) -> None:
            if f.cancelled():  # the hub closed before it started
                self._run_job_success(job.id, [])
                return
            exc = f.exception()
            if exc is not None:
                self._run_job_error(job.id, exc, exc.__traceback__)
            else:
                self._run_job_success(job.id, f.result())

        self.service.submit(self._work, job, run_times).add_done_callback(callback)

    def _work(self, job: Job, run_times: list[datetime]) -> list[Any]:
        events: list[Any] = []
        runner.current.scheduler = self.service
        try:
            for run_time in run_times:
                runner.current.scheduled_for = run_time
                found = aps_run_job(job, job._jobstore_alias, [run_time], self._logger.name)
                for event in found:
                    if event.code == EVENT_JOB_MISSED:
                        self.service.missed(job, run_time)
                events.extend(found)
        finally:
            runner.current.scheduler = None
            runner.current.scheduled_for = None
        return events

    def shutdown(self, wait: bool = True) -> None:
        return None  # the pool is the service's: it outlives a term as leader


def same_schedule(a: BaseTrigger, b: BaseTrigger) -> bool:
    """Whether two triggers fire at the same times (an interval's start, which is "now"
    when it is built, does not count)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, IntervalTrigger) and isinstance(b, IntervalTrigger):
        return (a.interval == b.interval and str(a.timezone) == str(b.timezone)
                and a.end_date == b.end_date)
    return repr(a) == repr(b)


@dataclass(frozen=True, slots=True)
class Timing:
    """When a trigger fires, as the lists say it: every ``every_s`` seconds, or at ``at``
    (HH:MM in ``zone``) every day or on ``days`` (cron's day of week, as "mon-fri")."""

    every_s: int | None = None
    at: str | None = None
    days: str | None = None
    zone: str | None = None


def timing(trigger: BaseTrigger) -> Timing | None:
    """A job's trigger read as a :class:`Timing`; None for one of another shape."""
    if isinstance(trigger, IntervalTrigger):
        return Timing(every_s=int(trigger.interval.total_seconds()))
    if isinstance(trigger, CronTrigger):
        fields = {f.name: str(f) for f in trigger.fields if not f.is_default}
        hour, minute = fields.pop("hour", None), fields.pop("minute", "0")
        fields.pop("second", None)
        if (hour is not None and hour.isdigit() and minute.isdigit()
                and set(fields) <= {"day_of_week"}):
            return Timing(at=f"{int(hour):02d}:{int(minute):02d}",
                          days=fields.get("day_of_week"), zone=str(trigger.timezone))
    return None


def describe(trigger: BaseTrigger) -> str:
    """A trigger in plain English: "every 60 s", "daily at 02:00 (America/Bogota)"."""
    when = timing(trigger)
    if when is not None and when.every_s is not None:
        seconds = when.every_s
        if seconds % 3600 == 0:
            return f"every {seconds // 3600} h"
        if seconds % 60 == 0:
            return f"every {seconds // 60} min"
        return f"every {seconds} s"
    if when is not None:
        at = f"{when.at} ({when.zone})"
        return f"daily at {at}" if when.days is None else f"on {when.days} at {at}"
    if isinstance(trigger, DateTrigger):
        return f"once at {trigger.run_date.isoformat()}"
    return str(trigger)


@dataclass(frozen=True, slots=True)
class JobStatus:
    """A job as the lists show it (``GET /api/v1/jobs``, ``labhub jobs list``, /jobs)."""

    spec: JobSpec
    trigger: str
    next_run: int | None  # µs
    last: runs.Run | None  # the newest finished run
    current: runs.Run | None  # a run asked for or under way
    failures: int  # failed runs among those kept

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def title(self) -> str:
        return self.spec.title


def statuses(engine: Engine, specs: Iterable[JobSpec]) -> list[JobStatus]:
    """Every job of ``specs`` with its next run (the job store's), last run, run under
    way and failures, from the database: any process answers the same."""
    with engine.connect() as conn:
        nexts = runs.next_runs(conn)
        newest = runs.latest(conn)
        finished = runs.latest_finished(conn)
        failed = runs.failures(conn)
    out = []
    for spec in specs:
        now = newest.get(spec.id)
        out.append(JobStatus(
            spec=spec, trigger=describe(spec.trigger), next_run=nexts.get(spec.id),
            last=finished.get(spec.id),
            current=now if now is not None and now.finished_at is None else None,
            failures=failed.get(spec.id, 0)))
    return out


class Scheduler:
    """Runs the catalog's jobs for one hub process, when it holds the leader lock."""

    def __init__(self, hub: Hub, *, specs: Iterable[JobSpec] | None = None,
                 lock: leader.LeaderLock | None = None) -> None:
        """``specs``: the jobs (the catalog's for the hub's settings by default)."""
        if logging.getLogger("apscheduler").level == logging.NOTSET:
            # APScheduler says "Running job ..." at INFO for every run; ours says what ran
            logging.getLogger("apscheduler").setLevel(logging.WARNING)
        self.hub = hub
        self.engine = hub.engine
        self.specs = {s.id: s for s in (job_specs(hub.settings) if specs is None else specs)}
        self.holder = lock.holder if lock is not None else leader.holder_id()
        self._lock = lock if lock is not None else leader.leader_lock(self.engine, self.holder)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=hub.settings.job_workers, thread_name_prefix="labhub-job")
        self._futures: set[concurrent.futures.Future[Any]] = set()
        self._futures_lock = threading.Lock()
        self._endings: list[tuple[int, dict[str, Any]]] = []  # to record again
        self._closing = threading.Event()  # JobContext.stopping
        self._wake = threading.Event()
        self._aps: BackgroundScheduler | None = None
        self._aps_lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._clock_offset = time.time() - time.monotonic()

    # -- life -----------------------------------------------------------------------------

    def start(self) -> Scheduler:
        """Try to lead now (a hub alone leads from its start), then keep trying (a
        database that fails now is tried again at the next tick, not the hub's end)."""
        try:
            self._tick(loop=False)
        except Exception:
            log.exception("the scheduler could not start running the jobs; trying again "
                          "in %s s", leader.TICK_S)
        self._thread = threading.Thread(target=self._loop, name="labhub-scheduler",
                                        daemon=True)
        self._thread.start()
        return self

    @property
    def leading(self) -> bool:
        """Whether this process runs the jobs (holds the leader lock)."""
        return self._aps is not None and self._lock.held()

    def close(self) -> None:
        """Stop: running jobs are told to stop at their next chunk and waited for only
        :data:`CLOSE_WAIT_S`; the lock is let go for the next process."""
        self._closing.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._step_down()
        with self._futures_lock:
            running = list(self._futures)
        self._pool.shutdown(wait=False, cancel_futures=True)
        _, late = concurrent.futures.wait(running, timeout=CLOSE_WAIT_S)
        if late:
            log.warning("%d job(s) still running at close: they stop at their next chunk",
                        len(late))
        self._record_endings()
        self._lock.release()

    def _loop(self) -> None:
        while not self._closing.is_set():
            self._wake.wait(leader.TICK_S)
            self._wake.clear()
            if self._closing.is_set():
                break
            try:
                self._tick()
            except Exception:
                log.exception("the scheduler's tick failed")

    def _tick(self, *, loop: bool = True) -> None:
        if self._closing.is_set():
            return
        self._record_endings()
        leads = self._lock.acquire()
        if leads and self._aps is None:
            self._lead()
        elif not leads and self._aps is not None:
            log.warning("this process lost the scheduler's lock: another runs the jobs")
            self._step_down()
        if self._aps is None or not loop:
            return
        offset = time.time() - time.monotonic()
        if abs(offset - self._clock_offset) > CLOCK_JUMP_S:  # the machine slept
            self._clock_offset = offset
            self._aps.wakeup()
        self._start_requested()

    def _lead(self) -> None:
        with self.engine.begin() as conn:
            abandoned = runs.close_abandoned(conn, self.holder)
            stored = {r.id: r for r in conn.execute(select(scheduler_jobs)).all()}
        if abandoned:
            log.warning("%d job run(s) of a process that stopped marked failed", abandoned)
        store = HubJobStore(self.engine)
        aps = BackgroundScheduler(
            timezone=UTC, daemon=True,
            jobstores={"default": store, "memory": MemoryJobStore()},
            executors={"default": HubExecutor(self)},
            job_defaults={"max_instances": 1},
        )
        gone, unchanged = self._register(aps, stored)
        with self._aps_lock:
            store.hold()
            aps.start(paused=True)  # the catalog's jobs go to the store held...
            try:
                store.flush(drop=gone, unchanged=unchanged)  # ... and are written at once
            except BaseException:
                aps.shutdown(wait=False)
                raise
            aps.resume()
            self._aps = aps
        log.info("this process runs the hub's %d jobs (%s)", len(self.specs), self.holder)

    def _register(self, aps: BackgroundScheduler, stored: dict[str, Any]
                  ) -> tuple[list[str], set[str]]:
        """Add the catalog's jobs (pending until ``aps`` starts); a job whose trigger did
        not change keeps its stored trigger and next run time. The stored jobs no longer
        in the catalog (to remove), and those stored as they are (not to write again)."""
        now = datetime.now(UTC)
        unchanged: set[str] = set()
        for spec in self.specs.values():
            keep: dict[str, Any] = {}
            trigger = spec.trigger
            row = stored.pop(spec.id, None)
            state: dict[str, Any] = {}
            if row is not None and row.next_run_time is not None:
                try:
                    # the hub's own table, written by APScheduler's store (as it reads it)
                    state = pickle.loads(row.job_state)  # noqa: S301
                except Exception:
                    state = {}
                if "trigger" in state and same_schedule(state["trigger"], spec.trigger):
                    trigger = state["trigger"]  # an interval keeps its cadence
                    keep["next_run_time"] = self._catch_up(spec, row.next_run_time, now)
            job = aps.add_job(
                RUNNER, trigger=trigger, args=(spec.id,), id=spec.id, name=spec.title,
                coalesce=spec.coalesce, misfire_grace_time=spec.misfire_grace_s,
                max_instances=1, replace_existing=True, **keep)
            if keep and trigger is state.get("trigger") and (
                    datetime_to_utc_timestamp(keep["next_run_time"]) == row.next_run_time
            ) and all(state.get(k) == v for k, v in job.__getstate__().items()):
                unchanged.add(spec.id)
        return list(stored), unchanged

    def _catch_up(self, spec: JobSpec, stored_s: float, now: datetime) -> datetime:
        """The stored next run time, moved up to the first time still within the job's
        grace: older due times would be missed anyway, and a year-old time of a job
        every minute is half a million to count through. Those missed are recorded once."""
        due = datetime.fromtimestamp(stored_s, UTC)
        earliest = now - timedelta(seconds=spec.misfire_grace_s)
        if due >= earliest:
            return due
        runs.record_skipped(
            self.engine, job_id=spec.id, scheduled_for=runs.to_us(due), attempt=1,
            kind="schedule", holder=self.holder,
            why=f"missed: the hub was not running from {due:%Y-%m-%d %H:%M} UTC, past this "
                f"job's grace of {spec.misfire_grace_s} s")
        later = spec.trigger.get_next_fire_time(None, earliest)
        return later if later is not None else due

    def _step_down(self) -> None:
        with self._aps_lock:
            aps, self._aps = self._aps, None
        if aps is not None:
            aps.shutdown(wait=False)

    # -- running -------------------------------------------------------------------------

    def submit(self, fn: Any, *args: Any) -> concurrent.futures.Future[Any]:
        """Run ``fn(*args)`` on the jobs' pool (at most ``job_workers`` at once)."""
        future = self._pool.submit(fn, *args)
        with self._futures_lock:
            self._futures.add(future)
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: concurrent.futures.Future[Any]) -> None:
        with self._futures_lock:
            self._futures.discard(future)

    def missed(self, job: Job, run_time: datetime) -> None:
        """A due time later than the job's grace (the executor found it)."""
        spec = self.specs.get(job.id)
        grace = spec.misfire_grace_s if spec is not None else job.misfire_grace_time
        runs.record_skipped(
            self.engine, job_id=job.id, scheduled_for=runs.to_us(run_time), attempt=1,
            kind="schedule", holder=self.holder,
            why=f"missed: it was due at {run_time:%Y-%m-%d %H:%M} UTC and could not start "
                f"within this job's grace of {grace} s")

    def _start_requested(self) -> None:
        for wanted in runs.requested(self.engine):
            if wanted.job_id not in self.specs:
                if runs.start_requested(self.engine, wanted.id, self.holder):
                    runs.finish(self.engine, wanted.id, outcome="skipped",
                                result=f"this hub has no job {wanted.job_id!r}")
                continue
            if runs.start_requested(self.engine, wanted.id, self.holder):
                log.info("job %s: run asked for by %s", wanted.job_id, wanted.requested_by)
                self.submit(self._run_claimed, wanted.job_id, wanted.scheduled_for, 1,
                            "manual", wanted.id)

    def request(self, job_id: str, *, requested_by: str) -> runs.Run | None:
        """Ask for a run of ``job_id`` now (the leader starts it at once if it is this
        process, else at its next tick); None if one is asked for or under way."""
        wanted = runs.request(self.engine, job_id=job_id, requested_by=requested_by)
        if wanted is not None:
            self._wake.set()
        return wanted

    def run(self, job_id: str, *, scheduled_for: int, attempt: int = 1,
            kind: runs.Kind = "schedule") -> None:
        """Run a due time of ``job_id`` (the runner calls this), once per database."""
        spec = self.specs.get(job_id)
        if spec is None:
            log.error("job %s is not in this hub's catalog: not run", job_id)
            return
        if not self._lock.held():
            log.info("job %s not run: this process no longer runs the jobs", job_id)
            return
        run_id = runs.claim(self.engine, job_id=job_id, scheduled_for=scheduled_for,
                            attempt=attempt, kind=kind, holder=self.holder)
        if run_id is None:
            if not runs.exists(self.engine, job_id=job_id, scheduled_for=scheduled_for,
                               attempt=attempt):
                runs.record_skipped(
                    self.engine, job_id=job_id, scheduled_for=scheduled_for,
                    attempt=attempt, kind=kind, holder=self.holder,
                    why="skipped: another run of this job was under way")
            return
        self._run_claimed(job_id, scheduled_for, attempt, kind, run_id)

    def _run_claimed(self, job_id: str, scheduled_for: int, attempt: int, kind: runs.Kind,
                     run_id: int) -> None:
        spec = self.specs[job_id]
        ctx = JobContext(hub=self.hub, job_id=job_id, attempt=attempt,
                         stopping=self._closing.is_set)
        try:
            result = spec.run(ctx)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}".strip()
            again = attempt <= spec.retries and not self._closing.is_set()
            retry_at = datetime.now(UTC) + timedelta(seconds=spec.retry_after_s)
            log.exception("job %s failed (attempt %d of %d)%s", job_id, attempt,
                          spec.retries + 1,
                          f"; tried again in {spec.retry_after_s} s" if again else "")
            # Finished before the retry is scheduled: one run of a job at a time.
            self._finish(run_id, outcome="failed", result=error,
                         retry_at=runs.to_us(retry_at) if again else None)
            if again:
                self._retry(spec, retry_at, scheduled_for, attempt + 1, kind)
            return
        log.info("job %s: %s", job_id, result)
        self._finish(run_id, outcome="ok", result=str(result))

    def _finish(self, run_id: int, **ending: Any) -> None:
        """Record how a run ended; a database that fails now is tried again at each tick
        (until then the job's next runs wait: its run is still under way)."""
        try:
            runs.finish(self.engine, run_id, **ending)
        except Exception as exc:
            log.warning("the end of job run %d could not be recorded (%s); trying again",
                        run_id, exc)
            with self._futures_lock:
                self._endings.append((run_id, ending))

    def _record_endings(self) -> None:
        with self._futures_lock:
            endings, self._endings = self._endings, []
        for run_id, ending in endings:
            self._finish(run_id, **ending)

    def _retry(self, spec: JobSpec, at: datetime, scheduled_for: int, attempt: int,
               kind: runs.Kind) -> None:
        """A one-off job that runs ``attempt`` of ``spec``'s due time at ``at``."""
        with self._aps_lock:
            if self._aps is None:
                log.warning("job %s is not tried again: this process stopped running the "
                            "jobs", spec.id)
                return
            self._aps.add_job(
                RUNNER, trigger=DateTrigger(run_date=at), args=(spec.id,),
                kwargs={"attempt": attempt, "scheduled_for_us": scheduled_for,
                        "kind": kind},
                id=spec.id + RETRY_SUFFIX, name=f"{spec.title} (retry)",
                jobstore="memory", misfire_grace_time=max(spec.misfire_grace_s, 60),
                max_instances=1, replace_existing=True)

    # -- what the lists show -------------------------------------------------------------

    def status(self) -> list[dict[str, Any]]:
        """Each job: its id, title, trigger, next run, last run (time, outcome, result,
        duration), the run under way, failures; and whether this process leads."""
        return [status_dict(s, leading=self.leading)
                for s in statuses(self.engine, self.specs.values())]


def status_dict(s: JobStatus, *, leading: bool | None = None) -> dict[str, Any]:
    """A :class:`JobStatus` as plain data (times in µs)."""
    last = s.last
    return {
        "id": s.id, "title": s.title, "trigger": s.trigger, "next_run": s.next_run,
        "last_run": None if last is None else {
            "at": last.started_at, "outcome": last.outcome, "result": last.result,
            "duration_s": last.duration_s, "attempt": last.attempt},
        "current": None if s.current is None else {
            "state": s.current.state, "since": s.current.started_at or s.current.scheduled_for},
        "failures": s.failures,
        "leader": leading,
    }


def run_claimed_once(hub: Hub, spec: JobSpec, run: runs.Run, *, holder: str) -> runs.Run:
    """Run ``spec`` for a run asked for (``run``, not yet started) in this process, with
    no retry: ``labhub jobs run`` when no hub process runs the jobs (this process holds
    the leader lock meanwhile). The run as it ended; None-safe: a run another process
    took first is returned as it stands."""
    if runs.start_requested(hub.engine, run.id, holder):
        try:
            result = spec.run(JobContext(hub=hub, job_id=spec.id))
        except Exception as exc:
            log.exception("job %s failed", spec.id)
            runs.finish(hub.engine, run.id, outcome="failed",
                        result=f"{type(exc).__name__}: {exc}".strip())
        else:
            runs.finish(hub.engine, run.id, outcome="ok", result=str(result))
    with hub.engine.connect() as conn:
        found = runs.get(conn, run.id)
    assert found is not None
    return found
