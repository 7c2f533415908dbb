"""``labhub jobs``: the hub's jobs, their next and last runs (``list``), and running one now
(``run ID``).

Both work on the hub's database, as the other commands do. ``list`` reads what
``GET /api/v1/jobs`` reads. ``run`` asks for a run in ``job_runs``: when a hub process
runs the jobs (it holds the scheduler's lock), that process starts it within a few
seconds and the command waits for it to end and prints how; when none does (the hub is
stopped, or ``jobs_enabled`` is off), the command takes the lock itself and runs the job
in this process, once, without retries. Either way the run is recorded like any other.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

import typer

from labhub.cli_common import cli_actor, echo, hub_engine, secho, settings_or_exit
from labhub.scheduler import leader, runs
from labhub.scheduler.catalog import job_specs
from labhub.scheduler.service import run_claimed_once, statuses

jobs_app = typer.Typer(help="The hub's routine jobs: list them, run one now.",
                       no_args_is_help=True)

POLL_S = 0.5  # how often `jobs run` looks at the run it asked for


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``labhub``."""
    app.add_typer(jobs_app, name="jobs")


def _when(us: int | None, zone: str) -> str:
    if us is None:
        return "–"
    return datetime.fromtimestamp(us / 1e6, tz=UTC).astimezone(ZoneInfo(zone)).strftime(
        "%Y-%m-%d %H:%M")


@jobs_app.command("list")
def jobs_list() -> None:
    """Each job: when it runs, its next run, its last run (outcome, result or error) and
    its failures; and which process runs the jobs now."""
    settings = settings_or_exit()
    zone = settings.timezone
    with hub_engine("jobs list", write=False, settings=settings) as engine:
        found = statuses(engine, job_specs(settings))
        with engine.connect() as conn:
            holder = leader.current_leader(conn)
    echo(f"jobs run by: {holder or 'no process now (the hub is stopped, or jobs_enabled is off)'}")
    echo(f"times in {zone}")
    for s in found:
        echo("")
        echo(f"{s.id}: {s.title}")
        echo(f"  when: {s.trigger}; next run: {_when(s.next_run, zone)}")
        if s.current is not None:
            echo(f"  now: {s.current.state} since "
                 f"{_when(s.current.started_at or s.current.scheduled_for, zone)}")
        last = s.last
        if last is None:
            echo("  last run: never")
        elif last.outcome == "failed":
            secho(f"  last run: failed at {_when(last.started_at, zone)}: {last.result}",
                  fg="red")
            if last.retry_at is not None:
                echo(f"  tried again at {_when(last.retry_at, zone)}")
        else:
            echo(f"  last run: {last.outcome} at {_when(last.started_at, zone)} "
                 f"({last.duration_s} s): {last.result}")
        if s.failures:
            echo(f"  failed runs (last {runs.KEEP_DAYS} days): {s.failures}")


@jobs_app.command("run")
def jobs_run(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="the job's id (labhub jobs list)")],
) -> None:
    """Run job ID now, once: by the hub process that runs the jobs if one does (this
    waits for it to end), else in this process. Exit 1 if it failed."""
    settings = settings_or_exit()
    specs = {s.id: s for s in job_specs(settings)}
    spec = specs.get(job_id)
    if spec is None:
        secho(f"labhub jobs run: this hub has no job {job_id!r}; its jobs: "
              f"{', '.join(specs) or 'none'}", fg="red", err=True)
        raise typer.Exit(2)
    with hub_engine("jobs run", write=True, settings=settings) as engine:
        asked = runs.request(engine, job_id=job_id, requested_by=cli_actor())
        if asked is None:
            secho(f"labhub jobs run: a run of {job_id} is already asked for or under way "
                  "(labhub jobs list shows it)", fg="red", err=True)
            raise typer.Exit(1)
        lock = leader.leader_lock(engine, f"cli:{leader.holder_id()}")
        said = False
        try:
            while True:
                with engine.connect() as conn:
                    run = runs.get(conn, asked.id)
                assert run is not None
                if run.finished_at is not None:
                    break
                if run.started_at is None and lock.acquire():
                    from labhub.wiring import Hub

                    echo(f"no hub process runs the jobs now: running {job_id} here")
                    hub = Hub(settings, engine=engine).start(hardware=False, jobs=False)
                    try:
                        run = run_claimed_once(hub, spec, run, holder=lock.holder)
                    finally:
                        hub.close()
                    if run.finished_at is not None:
                        break
                elif not said:
                    echo(f"asked the hub process that runs the jobs to run {job_id}; "
                         "waiting for it to end (Ctrl-C stops waiting, not the run)")
                    said = True
                time.sleep(POLL_S)
        finally:
            lock.release()
    if run.outcome == "ok":
        echo(f"{job_id}: {run.result} ({run.duration_s} s)")
        return
    secho(f"{job_id} {run.outcome}: {run.result}", fg="red", err=True)
    raise typer.Exit(1)
