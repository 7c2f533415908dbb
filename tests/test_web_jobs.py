"""The jobs page, ``/jobs`` (starlette's client, SQLite and PostgreSQL): a coordinator sees
each job in their language with when it runs, its next run and last result, runs one now
(with the form's CSRF value) and sees how it ended; a failed run says what went wrong and
when it is tried again; a teacher sees the page without the button; a student does not
see it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert
from waiting import wait_for
from web_client import hidden, post_form, sign_in_form

from inventory import sites
from labhub.access import accounts, passwords
from labhub.access.permissions import Grant, Role
from labhub.app import create_app
from labhub.scheduler import runs
from labhub.scheduler.catalog import job_specs
from labhub.scheduler.tables import job_runs
from labhub.settings import Settings
from labhub.web import i18n
from labhub.web.jobs import TITLES, when

BY = "tests"
PASSWORD = "una clave de prueba"


@pytest.fixture
def lab(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(settings.model_copy(update={"site": "LAB-A"}))) as client:
        with engine.begin() as conn:
            sites.create_site(conn=conn, code="VL", name="ValleLabs", kind="network", by=BY)
            sites.create_site(conn=conn, code="VL-R1", name="Valle", kind="region",
                              parent_code="VL", by=BY)
            sites.create_site(conn=conn, code="LAB-A", name="Escuela", kind="site",
                              parent_code="VL-R1", tier="lab_point", by=BY)
            hashed = _hashed()
            for name, role in (("coord", Role.COORDINATOR), ("profe", Role.TEACHER),
                               ("alumna", Role.STUDENT)):
                accounts.create_user(conn, name=name, password_hash=hashed,
                                     grants_given=[Grant(role, "LAB-A")])
        yield client


@cache
def _hashed() -> str:
    return passwords.hash_password(PASSWORD)


# The page reads what the API reads (tested on both databases): SQLite is enough here.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _text(page: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


def test_a_coordinator_runs_a_job_now_and_sees_how_it_ended(lab: TestClient) -> None:
    sign_in_form(lab, "coord", PASSWORD, lang="es")
    page = lab.get("/jobs")
    assert page.status_code == 200, page.text
    words = _text(page.text)
    assert "Tareas de rutina" in words
    assert "Borrar entradas antiguas del registro de auditoría" in words
    assert "Todos los días a las 03:30" in words
    assert "Aún no se ejecutó" in words
    assert 'href="/jobs"' in page.text  # the menu's link
    refused = post_form(lab, "/jobs/audit-log-prune/run", {"csrf_token": "wrong"})
    assert refused.status_code == 403
    answer = post_form(lab, "/jobs/audit-log-prune/run",
                       {"csrf_token": hidden(page.text, "csrf_token")})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/jobs?asked=audit-log-prune"
    asked = _text(lab.get(answer.headers["location"]).text)
    assert "«Borrar entradas antiguas del registro de auditoría» se ejecutará" in asked

    def ended() -> bool:
        return "Hecho" in _text(lab.get("/jobs").text)
    wait_for(ended, 15, "the run to end")
    assert "deleted 0 audit log entries" in _text(lab.get("/jobs").text)


@sqlite_only
def test_a_failed_run_says_what_went_wrong_and_when_it_is_tried_again(
        lab: TestClient, engine: Engine) -> None:
    now = runs.now_us()
    with engine.begin() as conn:
        conn.execute(insert(job_runs).values(
            job_id="audit-log-prune", scheduled_for=now - 10_000_000, attempt=1,
            kind="schedule", holder="h:1:x", started_at=now - 9_000_000,
            finished_at=now - 8_000_000, outcome="failed",
            result="OperationalError: database is locked", retry_at=now + 600_000_000))
    sign_in_form(lab, "coord", PASSWORD, lang="pt")
    words = _text(lab.get("/jobs").text)
    assert "Falhou" in words
    assert "O que deu errado: OperationalError: database is locked" in words
    assert "Será tentada de novo às" in words
    assert "Execuções com falha (últimos 90 dias): 1" in words


@sqlite_only
def test_a_teacher_sees_the_jobs_without_the_button_and_a_student_not_at_all(
        lab: TestClient) -> None:
    sign_in_form(lab, "profe", PASSWORD, lang="es")
    page = lab.get("/jobs")
    assert page.status_code == 200
    assert "Ejecutar ahora" not in page.text
    assert post_form(lab, "/jobs/audit-log-prune/run",
                     {"csrf_token": hidden(page.text, "csrf_token")}).status_code == 403
    lab.cookies.clear()
    sign_in_form(lab, "alumna", PASSWORD, lang="es")
    assert lab.get("/jobs").status_code == 403
    assert 'href="/jobs"' not in lab.get("/").text


def test_every_jobs_title_is_marked_for_the_catalogs(tmp_path: Path) -> None:
    """A job added to the catalog adds its title to labhub.web.jobs.TITLES and its
    translations to jobs.po (until then it shows in English)."""
    titles = {s.title for role in ("hub", "central")
              for s in job_specs(Settings(data_dir=tmp_path, role=role))}  # type: ignore[arg-type]
    assert titles <= set(TITLES), f"titles to add: {sorted(titles - set(TITLES))}"
    _ = i18n.gettext_of("pt")
    assert _("A job nobody has translated yet") == "A job nobody has translated yet"


def test_when_a_job_runs_in_words() -> None:
    _ = i18n.gettext_of("es")
    assert when(IntervalTrigger(seconds=60), _, "x") == "Cada 1 min"
    assert when(IntervalTrigger(hours=6), _, "x") == "Cada 6 h"
    assert when(IntervalTrigger(seconds=45), _, "x") == "Cada 45 s"
    assert when(CronTrigger(day_of_week="mon", hour=8, minute=0), _, "x") == (
        "Los lunes a las 08:00")
    assert when(CronTrigger(day="1", hour=8), _, "the 1st at 8") == "the 1st at 8"
