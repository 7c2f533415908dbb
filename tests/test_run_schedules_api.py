"""Run schedules through the API and the CLI, on SQLite and PostgreSQL: made, listed, shown
and deleted; bad input is a 422 (a red line in the CLI) that says what and where."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from signed_in import as_admin
from typer.testing import CliRunner

from labhub.app import create_app
from labhub.cli import app as cli_app
from labhub.settings import Settings

SANTIAGO = "America/Santiago"


def _body(**changes: Any) -> dict[str, Any]:
    # Chile's clocks go back on 2027-04-04 at 00:00 (-03 to -04).
    body: dict[str, Any] = {
        "title": "Clima 7B", "group": "7B", "channels": [{"device": "station-1"}],
        "kind": "daily", "start_date": "2027-04-01", "end_date": "2027-04-06",
        "start_time": "08:00", "stop_time": "12:00",
        "weekdays": ["mon", "tue", "wed", "thu", "fri"]}
    body.update(changes)
    return body


BAD = [
    ({"end_date": "2027-03-01"}, "body.end_date", "before the start date"),
    ({"stop_time": "07:30"}, "body.stop_time", "daily stop 07:30 is not after"),
    ({"kind": "once", "weekdays": [], "end_date": "2027-05-20"}, "body.end_date",
     "at most 31 days"),
    ({"start_date": "2020-03-02", "end_date": "2020-03-06"}, "body.end_date",
     "already over"),
    ({"weekdays": []}, "body.weekdays", "at least one weekday"),
    ({"kind": "once"}, "body.weekdays", "weekdays are for a daily schedule"),
    ({"start_date": "2027-02-30"}, "body.start_date", "not a date"),
    ({"weekdays": ["mon", "funday"]}, "body.weekdays.1", "Input should be 'mon'"),
    ({"stop_time": "25:00"}, "body.stop_time", "should match pattern"),
]


@pytest.fixture
def client(settings: Settings) -> Any:
    settings.timezone = SANTIAGO
    with as_admin(TestClient(create_app(settings))) as c:
        yield c


def test_make_list_show_and_delete_a_schedule(client: TestClient) -> None:
    # What cannot be is a 422 that names the field, and stores nothing.
    for changes, where, words in BAD:
        answer = client.post("/api/v1/run-schedules", json=_body(**changes))
        assert answer.status_code == 422, (changes, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        problem = answer.json()
        assert words in problem["detail"], (changes, problem)
        assert [e["where"] for e in problem["errors"]] == [where], (changes, problem)
    assert client.get("/api/v1/run-schedules").json()["total"] == 0
    answer = client.post("/api/v1/run-schedules", json=_body())
    assert answer.status_code == 201, answer.text
    made = answer.json()
    assert made["timezone"] == SANTIAGO and made["created_by"] == "test-admin"
    assert made["weekdays"] == ["mon", "tue", "wed", "thu", "fri"]
    # 08:00 local: 11:00Z before the change, 12:00Z after; the weekend has no window.
    assert [w["starts_at"] for w in made["upcoming"]] == [
        "2027-04-01T11:00:00Z", "2027-04-02T11:00:00Z", "2027-04-05T12:00:00Z",
        "2027-04-06T12:00:00Z"]
    assert made["runs"] == []
    once = client.post("/api/v1/run-schedules", json=_body(
        kind="once", weekdays=[], start_date="2027-03-01", end_date="2027-03-05",
        stop_time="16:00")).json()
    assert once["upcoming"] == [{"starts_at": "2027-03-01T11:00:00Z",
                                 "ends_at": "2027-03-05T19:00:00Z"}]
    page = client.get("/api/v1/run-schedules").json()
    assert page["total"] == 2
    assert [s["id"] for s in page["items"]] == [once["id"], made["id"]]  # soonest first
    assert client.get(f"/api/v1/run-schedules/{made['id']}").json() == made
    assert client.delete(f"/api/v1/run-schedules/{made['id']}").status_code == 204
    gone = client.get(f"/api/v1/run-schedules/{made['id']}")
    assert gone.status_code == 404
    assert gone.headers["content-type"] == "application/problem+json"
    assert client.delete(f"/api/v1/run-schedules/{made['id']}").status_code == 404


# -- the CLI ---------------------------------------------------------------------------------

@pytest.fixture
def run(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("LABHUB_DATABASE_URL", database_url)
    monkeypatch.setenv("LABHUB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LABHUB_TIMEZONE", SANTIAGO)
    return CliRunner()


def test_the_cli_adds_lists_and_removes_schedules(run: CliRunner) -> None:
    base = ["schedules", "add", "Clima", "--channel", "station-1", "--from", "2027-03-01",
            "--start", "08:00", "--stop", "16:00"]
    late = run.invoke(cli_app, [*base, "--to", "2027-02-01"])
    assert late.exit_code == 1
    assert "--to: the end date 2027-02-01 is before the start date" in late.output
    day = run.invoke(cli_app, [*base, "--to", "2027-03-05", "--daily", "mon,funday"])
    assert day.exit_code == 1 and "--daily: 'funday' is not a weekday" in day.output
    assert "0 schedules" in run.invoke(cli_app, ["schedules", "list"]).output

    added = run.invoke(cli_app, [
        "schedules", "add", "Clima 7B", "--channel", "station-1", "--channel",
        "station-2/temp", "--from", "2027-04-01", "--to", "2027-04-06", "--start", "08:00",
        "--stop", "12:00", "--daily", "mon,tue,wed,thu,fri", "--group", "7B"])
    assert added.exit_code == 0, added.output
    schedule_id = added.output.split()[0]
    assert "station-1/*, station-2/temp" in added.output
    # Windows in the lab's time, with its offset on each side of the change.
    assert "2027-04-01T08:00:00-03:00 -> 2027-04-01T12:00:00-03:00" in added.output
    listed = run.invoke(cli_app, ["schedules", "list", "--upcoming", "4"])
    assert listed.exit_code == 0, listed.output
    assert "2027-04-05T08:00:00-04:00 -> 2027-04-05T12:00:00-04:00" in listed.output
    assert "1 schedules" in listed.output
    removed = run.invoke(cli_app, ["schedules", "remove", schedule_id])
    assert removed.exit_code == 0 and "removed" in removed.output
    again = run.invoke(cli_app, ["schedules", "remove", schedule_id])
    assert again.exit_code == 1 and "no run schedule" in again.output
