"""The scheduled runs page through HTTP (SQLite and PostgreSQL): a teacher schedules a daily
run with the form, sees its next windows in the lab's time in Spanish, gets each mistake
next to its field, and deletes it; a student sees it but may not delete it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from signed_in import as_admin
from sqlalchemy import Engine
from web_world import STUDENT, STUDENT_PIN, TEACHER, TEACHER_PASSWORD, WebWorld, make_world

from labhub.app import create_app
from labhub.settings import Settings
from sensors import run_schedules as rs

FORM = {"content-type": "application/x-www-form-urlencoded"}
AT = (datetime.now(UTC) - timedelta(minutes=10)).replace(microsecond=0)


@pytest.fixture
def lab(settings: Settings, engine: Engine) -> Iterator[tuple[TestClient, WebWorld]]:
    app = create_app(settings.model_copy(update={"site": "LAB-A",
                                                 "timezone": "America/Santiago"}))
    with TestClient(app) as client:
        world = make_world(engine)
        answer = as_admin(TestClient(app)).post("/api/v1/readings", json={
            "device": "kit-a", "readings": [{"channel": "temp", "value": 21.5,
                                             "ts": AT.isoformat()}]})
        assert answer.status_code == 200, answer.text
        yield client, world


def _post(client: TestClient, path: str, fields: dict[str, str]):  # type: ignore[no-untyped-def]
    return client.post(path, content=urlencode(fields), headers=FORM, follow_redirects=False)


def _errors(html: str) -> dict[str, str]:
    return dict(re.findall(r'<p class="error" id="sch-([a-z_]+)-error">([^<]*)</p>', html))


def test_a_teacher_schedules_a_daily_run_sees_its_windows_and_deletes_it(
    lab: tuple[TestClient, WebWorld], engine: Engine,
) -> None:
    client, world = lab
    signed = _post(client, "/signin", {"way": "password", "name": TEACHER,
                                       "password": TEACHER_PASSWORD})
    assert signed.status_code == 303
    page = client.get("/run-schedules?lang=es")
    assert page.status_code == 200
    assert "Mediciones programadas" in page.text and "America/Santiago" in page.text
    assert 'href="/run-schedules"' in client.get("/runs").text  # linked from the runs
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    channel = re.search(r'name="(ch[0-9]+)" value="kit-a/temp"', page.text)
    assert csrf and channel
    form = {"csrf_token": csrf.group(1), "title": "Clima 7B", "group": "7B",
            "kind": "daily", "start_date": "2027-04-01", "end_date": "2027-04-06",
            "start_time": "08:00", "stop_time": "12:00", "wd_mon": "1", "wd_thu": "1",
            channel.group(1): "kit-a/temp"}
    # Each mistake next to its field, in Spanish; nothing stored.
    for changes, field, words in [
        ({"end_date": "2027-03-01"}, "end_date", "El último día es anterior al primero."),
        ({"stop_time": "07:00"}, "stop_time", "La parada diaria debe ser después"),
        ({"wd_mon": "", "wd_thu": ""}, "weekdays", "Elige al menos un día de la semana."),
        ({"start_date": "2020-01-01", "end_date": "2020-01-31"}, "end_date",
         "ya pasaron"),
        ({"title": ""}, "title", "Escribe un título para la medición."),
    ]:
        wrong = _post(client, "/run-schedules?lang=es", {**form, **changes})
        assert wrong.status_code == 422, wrong.text
        assert words in _errors(wrong.text).get(field, ""), (changes, _errors(wrong.text))
        assert 'value="Clima 7B"' in wrong.text or field == "title"  # what was written stays
    made = _post(client, "/run-schedules", form)
    assert (made.status_code, made.headers["location"]) == (303, "/run-schedules")
    with engine.connect() as conn:
        (s,) = rs.list_schedules(conn=conn)[1]
    assert (s.site, s.weekdays, s.channels) == ("LAB-A", ("mon", "thu"),
                                                (("kit-a", "temp"),))
    assert s.created_by is not None and s.created_by.endswith(TEACHER)
    listed = client.get("/run-schedules?lang=es").text
    assert "Los días lunes, jueves, de 08:00 a 12:00" in listed
    # Its windows in the lab's time: 08:00 before and after Chile's clocks go back.
    assert ">1/04/27, 8:00" in listed and ">5/04/27, 8:00" in listed
    assert 'datetime="2027-04-05T08:00:00-04:00"' in listed
    assert "Borrar esta programación" in listed

    # A student of the lab sees it, with no button to delete it, and cannot post one.
    student = TestClient(client.app)
    assert _post(student, "/signin", {"way": "pin", "class_code": world.class_code,
                                      "name": STUDENT, "pin": STUDENT_PIN}).status_code == 303
    seen = student.get("/run-schedules?lang=pt").text
    assert "Medições agendadas" in seen and "Clima 7B" in seen
    assert "Excluir este agendamento" not in seen
    student_csrf = re.search(r'name="csrf_token" value="([^"]+)"', seen)
    assert student_csrf
    refused = _post(student, f"/run-schedules/{s.id}/delete",
                    {"csrf_token": student_csrf.group(1)})
    assert refused.status_code == 403

    gone = _post(client, f"/run-schedules/{s.id}/delete", {"csrf_token": csrf.group(1)})
    assert (gone.status_code, gone.headers["location"]) == (303, "/run-schedules")
    assert "Todavía no hay mediciones programadas." in client.get("/run-schedules").text
    again = _post(client, f"/run-schedules/{s.id}/delete", {"csrf_token": csrf.group(1)})
    assert again.status_code == 303  # a second click: the page
