"""The runs pages through HTTP (starlette's client, SQLite and PostgreSQL): a student
starts a run with the form, sends it twice and gets one run, adds a note and stops it;
errors next to their fields in Spanish and Portuguese; "my runs" and the lab's; a student
may not stop another's run nor open another lab's; exports in the person's spreadsheet
dialect; the API's idempotent start (``id``), ``started_by`` and ``mine=true``.
tests/test_web_runs_browser.py drives the same pages in Chromium."""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from signed_in import as_admin
from sqlalchemy import Engine, func, select
from web_world import STUDENT, STUDENT_PIN, TEACHER, TEACHER_PASSWORD, WebWorld, make_world

from labhub.app import create_app
from labhub.settings import Settings
from sensors import runs
from sensors.storage import runs as runs_table

FORM = {"content-type": "application/x-www-form-urlencoded"}
# The readings' time: a little before the test (a reading from the future is refused).
AT = (datetime.now(UTC) - timedelta(minutes=10)).replace(microsecond=0)
READINGS = [{"channel": "temp", "value": 21.5, "ts": AT.isoformat()},
            {"channel": "hum", "value": 61.25, "ts": AT.isoformat()}]


@pytest.fixture
def lab(settings: Settings, engine: Engine) -> Iterator[tuple[TestClient, WebWorld]]:
    """The web world's lab, with readings of kit-a (LAB-A) and kit-b (LAB-B)."""
    app = create_app(settings.model_copy(update={"site": "LAB-A"}))
    with TestClient(app) as client:
        world = make_world(engine)
        admin = as_admin(TestClient(app))
        for device in ("kit-a", "kit-b"):
            answer = admin.post("/api/v1/readings", json={"device": device,
                                                          "readings": READINGS})
            assert answer.status_code == 200, answer.text
        yield client, world


def _student(client: TestClient, world: WebWorld) -> None:
    r = _post(client, "/signin", {"way": "pin", "class_code": world.class_code,
                                  "name": STUDENT, "pin": STUDENT_PIN})
    assert r.status_code == 303, r.text


def _teacher(client: TestClient) -> None:
    r = _post(client, "/signin", {"way": "password", "name": TEACHER,
                                  "password": TEACHER_PASSWORD})
    assert r.status_code == 303, r.text


def _post(client: TestClient, path: str, fields: dict[str, str]):  # type: ignore[no-untyped-def]
    return client.post(path, content=urlencode(fields), headers=FORM, follow_redirects=False)


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def _choices(html: str) -> dict[str, tuple[str, str]]:
    """The start form's channel checkboxes: value -> (name, label's text)."""
    found = re.findall(r'name="(ch[0-9]+)" value="([^"]+)"[^>]*>\s*<label[^>]*>'
                       r'<span class="device">([^<]*)</span> · ([^<]*)</label>', html)
    return {value: (name, f"{device} · {label}") for name, value, device, label in found}


def _start_form(client: TestClient, lang: str = "es") -> tuple[str, str, dict[str, str]]:
    """The start form's csrf value, key and channel fields (value -> field name)."""
    page = client.get(f"/runs/new?lang={lang}")
    assert page.status_code == 200, page.text
    key = re.search(r'name="key" value="([^"]+)"', page.text)
    assert key
    return _csrf(page.text), key.group(1), {v: n for v, (n, _) in _choices(page.text).items()}


def _errors(html: str) -> dict[str, str]:
    return dict(re.findall(r'<p class="error" id="([a-z-]+)-error">([^<]*)</p>', html))


def _run_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(runs_table)).scalar_one())


def test_a_student_starts_a_run_twice_adds_a_note_and_stops_it(
        lab: tuple[TestClient, WebWorld], engine: Engine) -> None:
    client, world = lab
    _student(client, world)
    csrf, key, channels = _start_form(client)
    assert set(channels) == {"kit-a/hum", "kit-a/temp"}  # LAB-B's kit-b is not offered
    form = {"csrf_token": csrf, "key": key, "title": "Sol y sombra", "group": "7B",
            channels["kit-a/temp"]: "kit-a/temp"}
    first = _post(client, "/runs", form)
    assert first.status_code == 303, first.text
    assert first.headers["location"] == f"/runs/{key}"
    again = _post(client, "/runs", form)  # a double click: the same key
    assert (again.status_code, again.headers["location"]) == (303, f"/runs/{key}")
    assert _run_count(engine) == 1
    with engine.connect() as conn:
        run = runs.get_run(conn=conn, run_id=key)
    assert run.started_by is not None and run.started_by.endswith(f"/{STUDENT}")
    assert (run.title, run.group_name, run.site, run.channels) == (
        "Sol y sombra", "7B", "LAB-A", (("kit-a", "temp"),))
    changed = _post(client, "/runs", {**form, "title": "Otra"})  # the key is taken
    assert changed.status_code == 409
    assert "Este formulario ya empezó otra medición" in changed.text
    assert _run_count(engine) == 1

    page = client.get(f"/runs/{key}?lang=es")
    assert page.status_code == 200
    assert "grabando" in page.text and "Detener la medición" in page.text
    assert f'href="/charts?run={key}"' in page.text
    assert "&#34;device&#34;: &#34;kit-a&#34;, &#34;channel&#34;: &#34;temp&#34;" in page.text
    assert 'class="chart" data-chart' in page.text  # the chart page's own figure
    empty = _post(client, f"/runs/{key}/notes", {"csrf_token": csrf, "text": "  "})
    assert empty.status_code == 422
    assert _errors(empty.text) == {"note-text": "Escribe la nota primero."}
    note = _post(client, f"/runs/{key}/notes",
                 {"csrf_token": csrf, "text": "Moví el sensor a la sombra"})
    assert (note.status_code, note.headers["location"]) == (303, f"/runs/{key}#notes")
    assert "Moví el sensor a la sombra" in client.get(f"/runs/{key}").text
    assert "&#34;text&#34;: &#34;Moví el sensor a la sombra&#34;" in client.get(
        f"/runs/{key}").text  # a mark on the chart
    no_csrf = _post(client, f"/runs/{key}/stop", {})
    assert no_csrf.status_code == 403
    stop = _post(client, f"/runs/{key}/stop", {"csrf_token": csrf})
    assert (stop.status_code, stop.headers["location"]) == (303, f"/runs/{key}")
    assert _post(client, f"/runs/{key}/stop", {"csrf_token": csrf}).status_code == 303
    page = client.get(f"/runs/{key}")
    assert "detenida" in page.text and "Detener la medición" not in page.text
    with engine.connect() as conn:
        stopped = runs.get_run(conn=conn, run_id=key).stopped_at
    assert stopped is not None
    assert f'data-end="{stopped // 1000}"' in page.text  # the chart ends at the stop (ms)
    mine = client.get("/runs")
    assert "Sol y sombra" in mine.text and "<h1>Mis mediciones</h1>" in mine.text
    assert client.get("/api/v1/runs?mine=true").json()["items"][0]["started_by"] == (
        run.started_by)


@pytest.mark.parametrize(("lang", "title", "channels"), [
    ("es", "Escribe un título para la medición.", "Elige al menos un canal para grabar."),
    ("pt", "Escreva um título para a medição.", "Escolha pelo menos um canal para gravar."),
])
def test_the_start_form_shows_errors_next_to_their_fields(
        lab: tuple[TestClient, WebWorld], engine: Engine, lang: str, title: str,
        channels: str) -> None:
    client, world = lab
    _student(client, world)
    csrf, key, _ = _start_form(client, lang)
    r = _post(client, f"/runs?lang={lang}", {"csrf_token": csrf, "key": key, "title": " ",
                                             "group": "7\x01B"})
    assert r.status_code == 422
    errors = _errors(r.text)
    assert errors["run-title"] == title
    assert errors["run-channels"] == channels
    assert "run-group" in errors
    assert 'aria-invalid="true" aria-describedby="run-title-error"' in r.text
    assert f'name="key" value="{key}"' in r.text  # nothing started: the same key
    bad = _post(client, f"/runs?lang={lang}", {"csrf_token": csrf, "key": key, "title": "x",
                                               "ch0": "kit-b/temp"})  # not offered
    assert bad.status_code == 422 and "run-channels" in _errors(bad.text)
    assert _run_count(engine) == 0


def test_my_runs_the_labs_runs_and_who_may_write_them(
        lab: tuple[TestClient, WebWorld], settings: Settings) -> None:
    client, world = lab
    teacher = TestClient(client.app)
    with teacher:
        _teacher(teacher)
        page = teacher.get("/runs/new")
        csrf, key = _csrf(page.text), re.findall(r'name="key" value="([^"]+)"', page.text)[0]
        r = _post(teacher, "/runs", {"csrf_token": csrf, "key": key, "title": "Del docente",
                                     _choices(page.text)["kit-a/hum"][0]: "kit-a/hum"})
        assert r.status_code == 303
        _student(client, world)
        csrf, own, channels = _start_form(client)
        assert _post(client, "/runs", {"csrf_token": csrf, "key": own, "title": "De Sofía",
                                       channels["kit-a/temp"]: "kit-a/temp"}
                     ).status_code == 303
        mine = client.get("/runs?lang=es")
        assert "De Sofía" in mine.text and "Del docente" not in mine.text
        assert "who=lab" not in mine.text  # a student has no lab tab
        assert "Del docente" not in client.get("/runs?who=lab").text
        lab_runs = teacher.get("/runs?who=lab&lang=es")
        assert "De Sofía" in lab_runs.text and "Del docente" in lab_runs.text
        assert "De Sofía" not in teacher.get("/runs?who=mine").text
        # The student reads the teacher's run but may not stop it nor add a note.
        theirs = client.get(f"/runs/{key}")
        assert theirs.status_code == 200 and "Detener la medición" not in theirs.text
        assert 'data-note' not in theirs.text
        assert _post(client, f"/runs/{key}/stop", {"csrf_token": csrf}).status_code == 403
        assert _post(client, f"/runs/{key}/notes",
                     {"csrf_token": csrf, "text": "hola"}).status_code == 403
        api = client.post(f"/api/v1/runs/{key}/stop", headers={"X-CSRF-Token": csrf})
        assert api.status_code == 403 and api.json()["title"] == "Not your run"
        # The teacher may stop and annotate the student's run.
        tcsrf = _csrf(teacher.get(f"/runs/{own}").text)
        assert _post(teacher, f"/runs/{own}/notes",
                     {"csrf_token": tcsrf, "text": "Bien hecho"}).status_code == 303
        assert _post(teacher, f"/runs/{own}/stop", {"csrf_token": tcsrf}).status_code == 303
    # A run of LAB-B: the student of LAB-A may not open it.
    admin = as_admin(TestClient(client.app))
    other = admin.post("/api/v1/runs", json={"title": "Nariño", "site": "LAB-B", "channels": [
        {"device": "kit-b", "channel": "temp"}]}).json()["id"]
    refused = client.get(f"/runs/{other}?lang=es")
    assert refused.status_code == 403 and "<h1" in refused.text
    assert "No puedes" in refused.text or "coordinador" in refused.text
    assert client.get(f"/runs/{uuid.uuid4()}").status_code == 404
    assert client.get("/runs?page=0").status_code == 422
    assert "Nariño" not in client.get("/runs?who=lab").text


def _export(client: TestClient, html: str, kind: str) -> str:
    found = re.search(rf'href="([^"]+/export\.{kind}\?[^"]+)" download', html)
    assert found, html
    answer = client.get(found.group(1).replace("&amp;", "&"))
    assert answer.status_code == 200, answer.text
    return answer.text


@pytest.mark.parametrize(("lang", "delimiter", "value"),
                         [("es", ";", "21,5"), ("pt", ";", "21,5"), ("en", ",", "21.5")])
def test_a_run_exports_in_the_persons_spreadsheet_dialect(
        lab: tuple[TestClient, WebWorld], lang: str, delimiter: str, value: str) -> None:
    client, world = lab
    admin = as_admin(TestClient(client.app))
    run = admin.post("/api/v1/runs", json={
        "title": "Patio", "channels": [{"device": "kit-a", "channel": "temp"}],
        "started_at": (AT - timedelta(minutes=1)).isoformat()}).json()
    admin.post(f"/api/v1/runs/{run['id']}/notes",
               json={"text": "a la sombra", "ts": AT.isoformat()})
    _student(client, world)
    page = client.get(f"/runs/{run['id']}?lang={lang}")
    text = _export(client, page.text, "csv")  # the session's cookie is enough
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    assert len(rows) == 2, text
    assert rows[1][1] == value and rows[1][-1] == "a la sombra"
    local = AT.astimezone(ZoneInfo(client.app.state.settings.timezone))  # type: ignore[attr-defined]
    assert rows[1][0] == local.isoformat()  # the lab's zone
    data = _export(client, page.text, "json")
    assert "21.5" in data


def test_the_api_starts_a_run_once_per_id(lab: tuple[TestClient, WebWorld],
                                          engine: Engine) -> None:
    client, _ = lab
    admin = as_admin(TestClient(client.app))
    run_id = str(uuid.uuid4())
    body = {"id": run_id, "title": "Una vez", "group": "7B",
            "channels": [{"device": "kit-a", "channel": "temp"}]}
    first = admin.post("/api/v1/runs", json=body)
    assert first.status_code == 201 and first.json()["id"] == run_id
    assert first.json()["started_by"] == "test-admin"
    second = admin.post("/api/v1/runs", json=body)
    assert second.status_code == 200 and second.json() == first.json()
    other = admin.post("/api/v1/runs", json={**body, "title": "Otra"})
    assert other.status_code == 409
    assert admin.post("/api/v1/runs", json={**body, "id": "nope"}).status_code == 422
    assert _run_count(engine) == 1
    assert admin.get("/api/v1/runs?mine=true").json()["total"] == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_labs_runs_come_in_pages(lab: tuple[TestClient, WebWorld]) -> None:
    client, _ = lab
    admin = as_admin(TestClient(client.app))
    for n in range(21):
        assert admin.post("/api/v1/runs", json={
            "title": f"Corrida {n:02d}", "channels": [{"device": "kit-a"}],
            "started_at": (AT + timedelta(seconds=n)).isoformat()}).status_code == 201
    _teacher(client)
    first = client.get("/runs?who=lab&lang=es")
    assert first.text.count('<th scope="row">') == 20
    assert "Corrida 20" in first.text and "Corrida 00" not in first.text
    assert "Página 1 de 2" in first.text and 'href="/runs?who=lab&amp;page=2"' in first.text
    second = client.get("/runs?who=lab&page=2")
    assert second.text.count('<th scope="row">') == 1 and "Corrida 00" in second.text
    assert 'rel="prev"' in second.text and 'rel="next"' not in second.text
    assert client.get("/runs?who=nobody").status_code == 422
