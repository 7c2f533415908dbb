"""The hub's jobs: ``GET /api/v1/jobs`` (each job, its next run, last result and failures),
``GET /api/v1/jobs/{job_id}`` (with its recent runs) and ``POST /api/v1/jobs/{job_id}/run``
(run it now, once).

Every process of the hub answers the same: the lists are read from the database (the job
store's next run times, ``job_runs``), whichever process runs the jobs. A run asked for is
a row the running scheduler starts within seconds (:mod:`labhub.scheduler.runs`); one
already asked for or under way is a 409, and a hub process that runs no jobs
(``jobs_enabled = false``) a 503.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from labhub.access.gate import On, needs
from labhub.access.permissions import P
from labhub.api.common import Actor, iso
from labhub.api.deps import HubDep
from labhub.problems import Problem, problem_responses
from labhub.scheduler import runs
from labhub.scheduler.catalog import job_specs
from labhub.scheduler.jobs import JobSpec
from labhub.scheduler.service import JobStatus, statuses
from labhub.wiring import Hub

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])

JOB_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
RECENT_RUNS = 20
JobId = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="the job's id, as "
                                                                  "`backup-nightly`")]


class RunOut(BaseModel):
    id: int
    kind: str = Field(description="`schedule` (its time came) or `manual` (asked for)")
    state: str = Field(description="`requested`, `running`, `ok`, `failed` or `skipped`")
    attempt: int = Field(description="1, then each retry")
    scheduled_for: str = Field(description="when it was due (or asked for)")
    requested_by: str | None
    started_at: str | None
    finished_at: str | None
    duration_s: float | None
    result: str | None = Field(description="what it did, the error, or why it was skipped")
    retry_at: str | None = Field(description="a failed run: when it is tried again")


class JobOut(BaseModel):
    id: str
    title: str = Field(description="what it does, in English")
    trigger: str = Field(description="when it runs, in English: `daily at 02:00 (...)`")
    next_run: str | None
    last_run: RunOut | None = Field(description="its newest finished run")
    current: RunOut | None = Field(description="a run asked for or under way")
    failures: int = Field(description="failed runs among those kept (90 days)")
    coalesce: bool = Field(description="runs missed while the hub was off run once")
    misfire_grace_s: int = Field(description="how late a run may still start")
    retries: int
    retry_after_s: int


class JobsOut(BaseModel):
    runs_jobs: bool = Field(description="this hub runs its jobs (`jobs_enabled`)")
    leader: bool = Field(description="this process is the one running them now")
    items: list[JobOut]


class JobDetailOut(JobOut):
    runs: list[RunOut] = Field(description=f"its newest {RECENT_RUNS} runs, newest first")


def run_out(r: runs.Run) -> RunOut:
    return RunOut(id=r.id, kind=r.kind, state=r.state, attempt=r.attempt,
                  scheduled_for=iso(r.scheduled_for) or "", requested_by=r.requested_by,
                  started_at=iso(r.started_at), finished_at=iso(r.finished_at),
                  duration_s=r.duration_s, result=r.result, retry_at=iso(r.retry_at))


def _job_out(s: JobStatus) -> JobOut:
    spec = s.spec
    return JobOut(id=s.id, title=s.title, trigger=s.trigger, next_run=iso(s.next_run),
                  last_run=None if s.last is None else run_out(s.last),
                  current=None if s.current is None else run_out(s.current),
                  failures=s.failures, coalesce=spec.coalesce,
                  misfire_grace_s=spec.misfire_grace_s, retries=spec.retries,
                  retry_after_s=spec.retry_after_s)


def hub_specs(hub: Hub) -> list[JobSpec]:
    """The jobs of this hub: its scheduler's, or the catalog's for its settings."""
    if hub.scheduler is not None:
        return list(hub.scheduler.specs.values())
    return job_specs(hub.settings)


def find_spec(hub: Hub, job_id: str) -> JobSpec:
    for spec in hub_specs(hub):
        if spec.id == job_id:
            return spec
    raise Problem(404, "No such job", f"this hub has no job {job_id!r} (GET /api/v1/jobs "
                  "lists them)")


@router.get("", response_model=JobsOut, summary="The hub's jobs",
            dependencies=[needs(P.JOBS_READ, On.HUB)])
def list_jobs(hub: HubDep) -> JobsOut:
    """Each job: when it runs, its next run, its last run (outcome, result or error,
    duration), a run under way, and how many runs failed."""
    found = statuses(hub.engine, hub_specs(hub))
    return JobsOut(runs_jobs=hub.scheduler is not None,
                   leader=hub.scheduler is not None and hub.scheduler.leading,
                   items=[_job_out(s) for s in found])


@router.get("/{job_id}", response_model=JobDetailOut, summary="A job and its recent runs",
            responses=problem_responses(404),
            dependencies=[needs(P.JOBS_READ, On.HUB)])
def get_job(hub: HubDep, job_id: JobId) -> JobDetailOut:
    """The job as the list shows it, with its newest runs."""
    spec = find_spec(hub, job_id)
    [found] = statuses(hub.engine, [spec])
    with hub.engine.connect() as conn:
        recent = runs.recent(conn, job_id, limit=RECENT_RUNS)
    return JobDetailOut(**_job_out(found).model_dump(), runs=[run_out(r) for r in recent])


@router.post("/{job_id}/run", response_model=RunOut, status_code=202,
             summary="Run a job now",
             responses=problem_responses(404, 409, 503),
             dependencies=[needs(P.JOBS_RUN, On.HUB)])
def run_job_now(hub: HubDep, job_id: JobId, actor: Actor) -> RunOut:
    """Run the job now, once (its retries as on schedule): the process that runs the jobs
    starts it within a few seconds; follow it at ``GET /api/v1/jobs/{job_id}``. A run of
    the job already asked for or under way is a 409."""
    find_spec(hub, job_id)
    if hub.scheduler is None:
        raise Problem(503, "This hub runs no jobs",
                      "this hub process does not run jobs (the setting jobs_enabled is "
                      "false, or it was started without them): `labhub jobs run "
                      f"{job_id}` runs it from the command line")
    asked = hub.scheduler.request(job_id, requested_by=actor)
    if asked is None:
        raise Problem(409, "Already running",
                      f"a run of job {job_id!r} is already asked for or under way: "
                      "GET /api/v1/jobs/{job_id} shows it".replace("{job_id}", job_id))
    return run_out(asked)
