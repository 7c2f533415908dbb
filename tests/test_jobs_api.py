"""``/api/v1/jobs``: the hub's jobs as any of its processes sees them, running one now,
and the refusals (unknown job, one already under way, a hub that runs no jobs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from signed_in import as_admin, person_token
from sqlalchemy import insert
from waiting import wait_for

from labhub.access.permissions import Grant, Role
from labhub.app import create_app
from labhub.scheduler import runs
from labhub.scheduler.catalog import job_specs
from labhub.scheduler.tables import job_runs
from labhub.settings import Settings
from labhub.wiring import Hub

V1 = "/api/v1"
# The refusals are the route's own logic (the claims' keys are tested on both databases
# in test_scheduler.py): SQLite is enough for them.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield as_admin(c)


def test_the_list_has_every_job_with_its_policy_and_next_run(client: TestClient,
                                                             settings: Settings) -> None:
    answer = client.get(f"{V1}/jobs")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["runs_jobs"] is True and body["leader"] is True
    assert [j["id"] for j in body["items"]] == [s.id for s in job_specs(settings)]
    prune = next(j for j in body["items"] if j["id"] == "audit-log-prune")
    assert prune["title"] == "Delete old audit log entries"
    assert prune["trigger"] == "daily at 03:30 (America/Bogota)"
    assert prune["next_run"] is not None and prune["last_run"] is None
    assert (prune["coalesce"], prune["misfire_grace_s"], prune["retries"]) == (
        True, 43200, 2)


def test_running_a_job_now_runs_it_once_and_shows_its_result(client: TestClient) -> None:
    answer = client.post(f"{V1}/jobs/audit-log-prune/run")
    assert answer.status_code == 202, answer.text
    asked = answer.json()
    assert (asked["kind"], asked["state"], asked["requested_by"]) == (
        "manual", "requested", "test-admin")

    def done() -> bool:
        last = client.get(f"{V1}/jobs/audit-log-prune").json()["last_run"]
        return last is not None
    wait_for(done, 10, "the run asked for to end")
    job = client.get(f"{V1}/jobs/audit-log-prune").json()
    assert job["last_run"]["state"] == "ok"
    assert job["last_run"]["result"].startswith("deleted 0 audit log entries")
    assert job["last_run"]["duration_s"] >= 0
    assert [r["id"] for r in job["runs"]] == [asked["id"]]


def _job(body: dict[str, Any], job_id: str) -> dict[str, Any]:
    """One job of ``GET /api/v1/jobs``'s answer."""
    return next(item for item in body["items"] if item["id"] == job_id)


@sqlite_only
def test_a_run_under_way_is_a_409_and_an_unknown_job_a_404(client: TestClient,
                                                          settings: Settings) -> None:
    hub = Hub(settings)  # the database, as another process running the job sees it
    try:
        with hub.engine.begin() as conn:
            conn.execute(insert(job_runs).values(
                job_id="audit-log-prune", scheduled_for=1, attempt=1, kind="schedule",
                holder="elsewhere:1:x", started_at=runs.now_us()))
    finally:
        hub.engine.dispose()
    answer = client.post(f"{V1}/jobs/audit-log-prune/run")
    assert answer.status_code == 409
    assert answer.headers["content-type"] == "application/problem+json"
    assert "already asked for or under way" in answer.json()["detail"]
    current = _job(client.get(f"{V1}/jobs").json(), "audit-log-prune")["current"]
    assert current["state"] == "running"
    missing = client.post(f"{V1}/jobs/no-such-job/run")
    assert missing.status_code == 404
    assert "no job 'no-such-job'" in missing.json()["detail"]
    assert client.get(f"{V1}/jobs/no-such-job").status_code == 404
    assert client.get(f"{V1}/jobs/Not_A_Job").status_code == 422


@sqlite_only
def test_a_hub_that_runs_no_jobs_lists_them_and_refuses_a_run(settings: Settings) -> None:
    off = settings.model_copy(update={"jobs_enabled": False})
    with TestClient(create_app(off)) as c:
        as_admin(c)
        body = c.get(f"{V1}/jobs").json()
        assert (body["runs_jobs"], body["leader"]) == (False, False)
        assert _job(body, "audit-log-prune")["title"] == "Delete old audit log entries"
        answer = c.post(f"{V1}/jobs/audit-log-prune/run")
    assert answer.status_code == 503
    assert "labhub jobs run audit-log-prune" in answer.json()["detail"]


def test_every_process_answers_the_same(settings: Settings, tmp_path: Path) -> None:
    """Two apps on one database (two workers): one runs the jobs, both list the same."""
    with TestClient(create_app(settings)) as first, TestClient(create_app(settings)) as second:
        as_admin(first)
        as_admin(second)
        one, two = first.get(f"{V1}/jobs").json(), second.get(f"{V1}/jobs").json()
        assert (one["leader"], two["leader"]) == (True, False)
        assert one["items"] == two["items"]
        # A run asked of the process that does not run the jobs is run by the other.
        assert second.post(f"{V1}/jobs/audit-log-prune/run").status_code == 202
        wait_for(lambda: _job(first.get(f"{V1}/jobs").json(), "audit-log-prune")["last_run"]
                 is not None, 15, "the leader to run what the other process was asked")
        # Other jobs may run meanwhile (slow sampling ticks every 30 s): the second
        # process's answer is compared with the first's when nothing changed around it.
        while True:
            before, other = first.get(f"{V1}/jobs").json(), second.get(f"{V1}/jobs").json()
            if first.get(f"{V1}/jobs").json() == before:
                break
        assert before | {"leader": None} == other | {"leader": None}


@sqlite_only
def test_a_teacher_reads_the_jobs_but_may_not_run_one(settings: Settings) -> None:
    with TestClient(create_app(settings.model_copy(update={"site": "LAB-A"}))) as c:
        token = person_token(settings.resolved_database_url(), "profe",
                             Grant(Role.TEACHER, "LAB-A"))
        c.headers["Authorization"] = f"Bearer {token}"
        assert c.get(f"{V1}/jobs").status_code == 200
        refused = c.post(f"{V1}/jobs/audit-log-prune/run")
    assert refused.status_code == 403
    assert "jobs.run" in refused.json()["detail"]
