"""``labhub jobs list`` and ``labhub jobs run ID``: on the hub's database, with a hub
process running the jobs (the run is its) or none (the command runs it itself)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labhub.cli import app
from labhub.scheduler import runs
from labhub.scheduler.jobs import JobContext, JobSpec
from labhub.settings import Settings
from labhub.wiring import Hub


@pytest.fixture
def url(sqlite_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    shutil.copy(sqlite_template, tmp_path / "labhub.db")
    database = f"sqlite:///{tmp_path}/labhub.db"
    monkeypatch.setenv("LABHUB_DATABASE_URL", database)
    monkeypatch.setenv("LABHUB_DATA_DIR", str(tmp_path / "data"))
    return database


def _runs(url: str) -> list[runs.Run]:
    hub = Hub(Settings(database_url=url))
    try:
        with hub.engine.connect() as conn:
            return runs.recent(conn, "audit-log-prune")
    finally:
        hub.engine.dispose()


def test_run_with_no_hub_runs_the_job_here_and_list_shows_it(url: str) -> None:
    cli = CliRunner()
    listed = cli.invoke(app, ["jobs", "list"])
    assert listed.exit_code == 0, listed.output
    assert "jobs run by: no process now" in listed.output
    assert "audit-log-prune: Delete old audit log entries" in listed.output
    assert "when: daily at 03:30 (America/Bogota)" in listed.output
    assert "last run: never" in listed.output
    ran = cli.invoke(app, ["jobs", "run", "audit-log-prune"])
    assert ran.exit_code == 0, ran.output
    assert "no hub process runs the jobs now: running audit-log-prune here" in ran.output
    assert "audit-log-prune: deleted 0 audit log entries older than 365 days" in ran.output
    [run] = _runs(url)
    assert (run.kind, run.outcome) == ("manual", "ok")
    assert run.requested_by is not None and run.requested_by.startswith("labhub CLI (")
    assert run.holder is not None and run.holder.startswith("cli:")
    assert "last run: ok at" in cli.invoke(app, ["jobs", "list"]).output


def test_run_beside_a_hub_is_run_by_the_hub(url: str, tmp_path: Path) -> None:
    hub = Hub(Settings(database_url=url, data_dir=tmp_path / "data")).start(
        hardware=False, jobs=True)
    try:
        assert hub.scheduler is not None and hub.scheduler.leading
        cli = CliRunner()
        assert f"jobs run by: {hub.scheduler.holder}" in cli.invoke(app, ["jobs", "list"]).output
        ran = cli.invoke(app, ["jobs", "run", "audit-log-prune"])
        holder = hub.scheduler.holder
    finally:
        hub.close()
    assert ran.exit_code == 0, ran.output
    assert "asked the hub process that runs the jobs to run audit-log-prune" in ran.output
    assert "audit-log-prune: deleted 0 audit log entries" in ran.output
    [run] = _runs(url)
    assert run.holder == holder


def test_an_unknown_job_and_a_failing_one(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cli = CliRunner()
    unknown = cli.invoke(app, ["jobs", "run", "no-such-job"])
    assert unknown.exit_code == 2
    assert "this hub has no job 'no-such-job'; its jobs: " in unknown.output
    assert "audit-log-prune" in unknown.output and "backup" in unknown.output

    def fails(ctx: JobContext) -> str:
        raise OSError("the USB stick is not there")

    from labhub import cli_jobs

    real = cli_jobs.job_specs
    monkeypatch.setattr(cli_jobs, "job_specs", lambda settings: [
        JobSpec(id=s.id, title=s.title, run=fails, trigger=s.trigger) for s in real(settings)])
    failed = cli.invoke(app, ["jobs", "run", "audit-log-prune"])
    assert failed.exit_code == 1
    assert "audit-log-prune failed: OSError: the USB stick is not there" in failed.output
    listed = cli.invoke(app, ["jobs", "list"]).output
    assert "last run: failed at" in listed and "the USB stick is not there" in listed
