"""Reminders on SQLite and PostgreSQL: each trigger (loan overdue and due tomorrow, audit
due, calibration due, stock below its reorder level, a silent device) gives its reminder
with a stable key; the right people see it in the API, the web app and the home page's
count, and others do not (a teacher of another lab, a student); service plans through
the API write the asset's history and move the due date; the CLI lists, plans and edits
e-mail addresses; a person keeps their own address on their account page."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from reminders_world import (  # noqa: F401  (the lab_* fixtures)
    DAY_US,
    PEOPLE,
    World,
    expected_keys,
    lab_engine_fixture,
    lab_settings_fixture,
    lab_url_fixture,
    make_world,
)
from signed_in import person_token
from sqlalchemy import Engine, update
from typer.testing import CliRunner
from web_client import hidden, post_form

from inventory import service
from inventory.history import history_of
from inventory.tables import loans as loan_table
from labhub.access import accounts
from labhub.access.caller import Caller
from labhub.access.permissions import Grant, Role
from labhub.access.sites import load_tree
from labhub.access.who import SESSION_COOKIE
from labhub.app import create_app
from labhub.cli import app as cli_app
from labhub.reminders import due
from labhub.settings import Settings
from labhub.web import reminders_text


def _caller(name: str, user_id: int) -> Caller:
    role, site, _, _ = PEOPLE[name]
    return Caller(name=name, via="session", grants=(Grant(role, site),), user_id=user_id)


def test_each_trigger_gives_its_reminder_to_those_who_act_on_it(
        engine: Engine, settings: Settings) -> None:
    world = make_world(engine)
    wanted = expected_keys(world)
    with engine.connect() as conn:
        found = due.gather(conn, settings, now=world.now)
        tree = load_tree(conn, settings.site)
    assert {r.key for r in found} == wanted["Admin"]
    assert [r.kind for r in found] == ["loan_overdue", "loan_overdue", "loan_due",
                                       "audit_due", "service_due", "stock_low",
                                       "device_silent"]
    for name, keys in wanted.items():
        seen = due.visible_to(found, _caller(name, world.user_ids[name]), tree)
        assert {r.key for r in seen} == keys, name
    # each in words, in each language, with its facts
    words = {r.kind: reminders_text.describe(r, "es", settings.timezone) for r in found}
    assert "Grupo A-2" in words["loan_due"] and "vence" in words["loan_due"]
    assert "A-3 (Arduino Uno)" in words["service_due"] and "calibración" in words["service_due"]
    assert words["stock_low"].startswith("Jumper wire en LAB-B: quedan 3 pcs")
    assert "Escuela LAB-B (LAB-B) aún no tiene" in words["audit_due"]
    assert words["device_silent"].startswith("Estación de clima (LAB-A) no envía nada")
    assert "is due since" in reminders_text.describe(
        next(r for r in found if r.kind == "service_due"), "en", settings.timezone)

    # a day later the loan due tomorrow is overdue: a new key; the others keep theirs
    later = {r.key for r in _gather(engine, settings, world.now + DAY_US)}
    assert f"loan-overdue:{world.due_a}" in " ".join(later)
    assert later - wanted["Admin"] == {k for k in later if k.startswith(
        f"loan-overdue:{world.due_a}")}
    # the settings switch two triggers off
    off = settings.model_copy(update={"audit_every_months": 0, "device_silent_hours": 0})
    kinds = {r.kind for r in _gather(engine, off, world.now)}
    assert "audit_due" not in kinds and "device_silent" not in kinds


def _gather(engine: Engine, settings: Settings, now: int) -> list[due.Reminder]:
    with engine.connect() as conn:
        return due.gather(conn, settings, now=now)


def test_recording_the_work_done_or_the_return_ends_a_reminder(
        engine: Engine, settings: Settings) -> None:
    world = make_world(engine)
    with engine.begin() as conn:
        service.record_done(conn=conn, tag="A-3", kind="calibration", by="Tere",
                            note="pesas de 100 g")
        conn.execute(update(loan_table).where(loan_table.c.uuid == world.overdue_c)
                     .values(due_at=world.now + 5 * DAY_US))  # renewed for a week
    keys = {r.key for r in _gather(engine, settings, world.now)}
    assert not any(k.startswith(("service-due:", f"loan-overdue:{world.overdue_c}"))
                   for k in keys)
    with engine.connect() as conn:
        plan = service.find_plan(conn=conn, tag="A-3", kind="calibration")
        kinds = [e.kind for e in history_of(conn=conn, subject="A-3")]
    assert plan is not None and plan.due_at > world.now + 29 * DAY_US
    assert kinds[-2:] == ["ServicePlanSet", "ServiceDone"]


@pytest.fixture
def served(lab_settings: Settings, lab_engine: Engine
           ) -> Iterator[tuple[TestClient, World, dict[str, str]]]:
    """The hub's app on the world, and an API token of each person."""
    app = create_app(lab_settings.model_copy(update={"site": "LAB-A"}))
    with TestClient(app) as client:
        world = make_world(lab_engine)
        url = lab_settings.resolved_database_url()
        tokens = {name: person_token(url, name, Grant(PEOPLE[name][0], PEOPLE[name][1]))
                  for name in PEOPLE}
        yield client, world, tokens


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_api_and_the_pages_show_a_person_their_own(
        served: tuple[TestClient, World, dict[str, str]]) -> None:
    client, world, tokens = served
    wanted = expected_keys(world)
    for name, token in tokens.items():
        answer = client.get("/api/v1/reminders", headers=_auth(token))
        assert answer.status_code == 200, answer.text
        assert {r["key"] for r in answer.json()} == wanted[name], name
    tere = client.get("/api/v1/reminders", headers=_auth(tokens["Tere"])).json()
    assert {r["kind"] for r in tere} == {"loan_overdue", "loan_due", "service_due",
                                         "device_silent"}
    calibration = next(r for r in tere if r["kind"] == "service_due")
    assert calibration["text"].startswith("A calibração de A-3")  # Tere reads Portuguese
    assert calibration["link"] == "/assets/A-3" and calibration["site"] == "LAB-A"
    coord_b = client.get("/api/v1/reminders?site=LAB-B", headers=_auth(tokens["Coord"]))
    assert {r["kind"] for r in coord_b.json()} == {"stock_low", "audit_due"}
    assert client.get("/api/v1/reminders?site=NOPE",
                      headers=_auth(tokens["Coord"])).status_code == 404
    assert client.get("/api/v1/reminders").status_code == 401

    page = client.get("/reminders?lang=es", headers=_auth(tokens["Coord"]))
    assert page.status_code == 200
    text = html.unescape(page.text)
    for heading in ("Préstamos vencidos", "Préstamos que vencen hasta mañana",
                    "Auditorías pendientes", "Mantenimiento y calibración pendientes",
                    "Existencias por reponer", "Dispositivos en silencio"):
        assert heading in text, heading
    links = set(re.findall(r'<li class="reminder"><a href="([^"]+)"', page.text))
    assert links == {f"/loans/{world.overdue_a}", f"/loans/{world.due_a}", "/assets/A-3",
                     "/devices/usb-clima", "/audits?site=LAB-B",
                     html.escape("/stock/item?site=LAB-B&model=JMP")}
    tito = html.unescape(client.get("/reminders?lang=es", headers=_auth(tokens["Tito"])).text)
    assert f"/loans/{world.overdue_c}" in tito and "LAB-A" not in tito.split("<main")[1]
    student = client.get("/reminders?lang=es", headers=_auth(tokens["Estu"])).text
    assert "Nada requiere su atención ahora." in student and 'class="reminder"' not in student
    assert client.get("/reminders?site=NOPE", headers=_auth(tokens["Coord"])).status_code == 404

    home = client.get("/?lang=es", headers=_auth(tokens["Coord"])).text
    assert "Recordatorios: 6" in home and 'href="/reminders"' in home
    assert "Recordatorios:" not in client.get("/?lang=es", headers=_auth(tokens["Estu"])).text


def test_the_calibration_done_on_the_assets_page_ends_its_reminder(
        served: tuple[TestClient, World, dict[str, str]], lab_engine: Engine) -> None:
    client, world, tokens = served
    with lab_engine.begin() as conn:
        session = accounts.start_session(conn, user_id=world.user_ids["Tere"], hours=1,
                                         address=None)
    client.cookies.set(SESSION_COOKIE, session.secret)
    page = client.get("/assets/A-3?lang=es")
    text = html.unescape(page.text)
    assert "Mantenimiento y calibración planeados" in text and "cada 30 días" in text
    refused = client.post("/assets/C-1/service-done", headers=_auth(tokens["Tito"]),
                          data={"kind": "calibration"})
    assert refused.status_code == 403
    done = post_form(client, "/assets/A-3/service-done",
                     {"csrf_token": hidden(page.text, "csrf_token"), "kind": "calibration"})
    assert done.status_code == 303 and done.headers["location"] == (
        "/assets/A-3?done=service_done")
    after = html.unescape(client.get(done.headers["location"]).text)
    assert "Registrado: vuelve a tocar" in after
    assert "Mantenimiento o calibración hechos" in after  # the asset's timeline
    mine = client.get("/api/v1/reminders", headers=_auth(tokens["Tere"])).json()
    assert not any(r["kind"] == "service_due" for r in mine)


def test_service_plans_and_addresses_through_the_api(
        served: tuple[TestClient, World, dict[str, str]], lab_engine: Engine) -> None:
    client, _, tokens = served
    coord, tere, tito = (_auth(tokens[n]) for n in ("Coord", "Tere", "Tito"))
    put = client.put("/api/v1/assets/A-1/service-plans/maintenance", headers=coord,
                     json={"every_days": 90, "last_done_at": "2026-01-10T00:00:00Z"})
    assert put.status_code == 200, put.text
    assert put.json() | {} == {"tag": "A-1", "kind": "maintenance", "every_days": 90,
                               "last_done_at": "2026-01-10T00:00:00Z",
                               "due_at": "2026-04-10T00:00:00Z"}
    assert client.put("/api/v1/assets/A-1/service-plans/maintenance", headers=tere,
                      json={"every_days": 90}).status_code == 403  # not inventory.manage
    assert client.put("/api/v1/assets/C-1/service-plans/maintenance", headers=coord,
                      json={"every_days": 90}).status_code == 403  # not her region
    for bad in ({"every_days": 0}, {"every_days": 90, "cada": 1},
                {"every_days": 90, "last_done_at": "2999-01-01T00:00:00Z"}):
        assert client.put("/api/v1/assets/A-1/service-plans/maintenance", headers=coord,
                          json=bad).status_code == 422, bad
    assert client.put("/api/v1/assets/A-1/service-plans/oil", headers=coord,
                      json={"every_days": 9}).status_code == 422
    assert client.put("/api/v1/assets/NOPE/service-plans/maintenance", headers=coord,
                      json={"every_days": 9}).status_code == 404
    mine = client.get("/api/v1/reminders", headers=tere).json()
    assert any(r["key"].startswith("service-due:A-1:maintenance:") for r in mine)
    done = client.post("/api/v1/assets/A-1/service-plans/maintenance/done", headers=tere,
                       json={"note": "limpieza de contactos"})
    assert done.status_code == 200 and done.json()["due_at"] > done.json()["last_done_at"]
    assert client.post("/api/v1/assets/C-1/service-plans/maintenance/done", headers=tere,
                       json={}).status_code == 403
    assert client.post("/api/v1/assets/A-2/service-plans/maintenance/done", headers=tere,
                       json={}).status_code == 404  # no such plan
    mine = client.get("/api/v1/reminders", headers=tere).json()
    assert not any(r["key"].startswith("service-due:A-1:") for r in mine)
    plans = client.get("/api/v1/assets/A-1/service-plans", headers=tito)
    assert plans.status_code == 403
    plans = client.get("/api/v1/assets/A-1/service-plans", headers=tere).json()
    assert [p["kind"] for p in plans] == ["maintenance"]
    assert client.delete("/api/v1/assets/A-1/service-plans/maintenance",
                         headers=coord).status_code == 204
    assert client.get("/api/v1/assets/A-1/service-plans", headers=tere).json() == []
    with lab_engine.connect() as conn:
        trail = [(e.kind, e.by, e.note) for e in history_of(conn=conn, subject="A-1")
                 if e.kind.startswith("Service")]
    assert trail == [("ServicePlanSet", "Coord", None),
                     ("ServiceDone", "Tere", "limpieza de contactos"),
                     ("ServicePlanRemoved", "Coord", None)]

    # a manager keeps the addresses of the people they manage
    changed = client.patch("/api/v1/users/Tere", headers=coord,
                           json={"email": "t@escola.edu.br", "reminder_emails": False})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["email"], changed.json()["reminder_emails"]) == (
        "t@escola.edu.br", False)
    assert client.patch("/api/v1/users/Tere", headers=coord,
                        json={"email": "no es correo"}).status_code == 422
    assert client.patch("/api/v1/users/Tere", headers=tito,
                        json={"email": "x@y.co"}).status_code == 404  # not his to manage
    cleared = client.patch("/api/v1/users/Tere", headers=coord, json={"email": None})
    assert cleared.json()["email"] is None
    added = client.post("/api/v1/users", headers=coord, json={
        "name": "Nuevo", "grants": [{"role": "teacher", "site": "LAB-B"}],
        "email": "nuevo@valle.edu.co"})
    assert added.status_code == 201 and added.json()["email"] == "nuevo@valle.edu.co"


def test_a_person_keeps_their_address_on_their_account_page(
        lab_settings: Settings, lab_engine: Engine) -> None:
    engine = lab_engine
    with TestClient(create_app(lab_settings)) as client:
        with engine.begin() as conn:  # signed in without a password's cost
            marta = accounts.create_user(conn, name="Marta", password_hash=None,
                                         grants_given=[Grant(Role.TEACHER, "LAB-X")])
            accounts.set_language(conn, user_id=marta.id, language="pt",
                                  known=("es", "pt", "en"))
            session = accounts.start_session(conn, user_id=marta.id, hours=1, address=None)
        client.cookies.set(SESSION_COOKIE, session.secret)
        page = client.get("/account").text
        assert "Lembretes por e-mail" in page
        csrf = hidden(page, "csrf_token")
        wrong = post_form(client, "/account", {"csrf_token": csrf, "action": "email",
                                               "email": "marta@", "reminder_emails": "on"})
        assert wrong.status_code == 422
        assert "Escreva um e-mail como nome@escola.edu.br" in html.unescape(wrong.text)
        assert 'value="marta@"' in wrong.text and 'aria-invalid="true"' in wrong.text
        saved = post_form(client, "/account", {"csrf_token": csrf, "action": "email",
                                               "email": " marta@colegio.edu.co "})
        assert saved.status_code == 303 and saved.headers["location"].endswith("done=email")
        with engine.connect() as conn:
            marta = accounts.get_user(conn, name="Marta")
        assert (marta.email, marta.reminder_emails) == ("marta@colegio.edu.co", False)
        assert "Salvo: o e-mail dos seus lembretes." in client.get("/account?done=email").text


def test_the_commands(lab_url: str, lab_engine: Engine, tmp_path: Path,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    engine = lab_engine
    monkeypatch.setenv("LABHUB_DATABASE_URL", lab_url)
    monkeypatch.setenv("LABHUB_DATA_DIR", str(tmp_path))
    world = make_world(engine)
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(cli_app, list(args))
        assert result.exit_code == code, result.output
        return result.output

    listed = run("reminders", "list")
    assert "7 reminders" in listed and "Préstamos vencidos" in listed
    assert "stock-low:LAB-B:JMP" in listed
    only_b = run("reminders", "list", "--site", "LAB-B")
    assert "2 reminders" in only_b
    assert "no site with code 'NOPE'" in run("reminders", "list", "--site", "NOPE", code=1)
    assert "no mail server set" in run("reminders", "send")

    assert "every 7 days" in run("service", "plan", "A-2", "maintenance", "--every-days", "7",
                                 "--last-done", "2026-01-01T00:00:00Z")
    assert "due 2026-01-08T00:00:00Z" in run("service", "list", "A-2")
    assert "last done 2026-01-01" not in run("service", "done", "A-2", "maintenance",
                                             "--note", "ok")
    assert "every_days" not in run("service", "plan", "A-2", "maintenance",
                                   "--every-days", "0", code=2)
    assert "--at" in run("service", "done", "A-2", "maintenance", "--at", "ayer", code=1)
    assert "has no calibration plan" in run("service", "done", "A-2", "calibration", code=1)
    assert "no longer planned" in run("service", "remove", "A-2", "maintenance")

    assert "e-mail tito@nuevo.edu.co, daily reminders off" in run(
        "users", "edit", "Tito", "--email", "tito@nuevo.edu.co", "--no-reminder-emails")
    assert "is not an e-mail address" in run("users", "edit", "Tito", "--email", "tito",
                                             code=1)
    assert "e-mail none" in run("users", "edit", "Tito", "--email", "")
    with engine.connect() as conn:
        tito = accounts.get_user(conn, name="Tito")
    assert (tito.id, tito.email, tito.reminder_emails) == (world.user_ids["Tito"], None, False)
