"""The runs pages in a real browser (Chromium through Playwright) against ``labhub serve``
in a process of its own: a student starts a run, adds a note and stops it with the
keyboard alone, in Spanish, on SQLite and PostgreSQL; two posts of the start form at
once and a double click start one run; a session that ends while a note is typed keeps
the note through signing in again; every page passes axe-core's WCAG A/AA check and is
shot in es, pt and en at 360 and 1366 px (test-artifacts/web/runs-*.png).

Without Chromium or the ``playwright`` package the tests are skipped and say why; under
``CI=true`` they fail.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from signed_in import admin_token
from web_browser import (
    LAPTOP,
    PHONE,
    ServedHub,
    assert_accessible,
    open_page,
    served_hub,
    shot,
    tab_to,
)
from web_world import STUDENT, STUDENT_PIN, WebWorld, make_world

from labhub import db
from labhub.access import accounts

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@dataclass
class Hub:
    base: str
    world: WebWorld
    served: ServedHub
    api: httpx2.Client  # an admin's token

    def runs(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.api.get("/api/v1/runs").json()["items"]
        return items


@pytest.fixture
def hub(tmp_path: Path, database_url: str) -> Iterator[Hub]:
    """The web world's lab served by ``labhub serve``, with readings of kit-a."""
    engine = db.make_engine(database_url)
    try:
        world = make_world(engine)
    finally:
        engine.dispose()
    token = admin_token(database_url)
    at = datetime.now(UTC) - timedelta(minutes=5)
    with served_hub(tmp_path, database_url) as served, httpx2.Client(
            base_url=served.base, headers={"Authorization": f"Bearer {token}"},
            timeout=10) as api:
        answer = api.post("/api/v1/readings", json={"device": "kit-a", "readings": [
            {"channel": c, "value": v, "ts": (at + timedelta(seconds=s)).isoformat()}
            for s in range(0, 60, 10) for c, v in (("temp", 21.5 + s / 10), ("hum", 60.0))]})
        assert answer.status_code == 200, answer.text
        yield Hub(served.base, world, served, api)


def _student(page: Any, hub: Hub, lang: str) -> None:
    """Sign the student in with the class code and PIN form."""
    page.goto(f"{hub.base}/signin?lang={lang}")
    page.locator("#pin-code").fill(hub.world.class_code)
    page.locator("#pin-name").fill(STUDENT)
    page.locator("#pin-pin").fill(STUDENT_PIN)
    page.locator("form", has=page.locator("#pin-pin")).locator("button[type=submit]").click()
    page.wait_for_url(lambda url: "/signin" not in url)


def _focused(page: Any, role: str, name: str) -> Any:
    return lambda p: p.evaluate(
        "([role, name]) => { const e = document.activeElement;"
        " const label = e.labels && e.labels.length ? e.labels[0].textContent : e.textContent;"
        " const kind = {textarea: 'textbox', input: e.type === 'checkbox' ? 'checkbox' :"
        " 'textbox', button: 'button', a: 'link'}[e.tagName.toLowerCase()];"
        " return kind === role && label.trim().includes(name); }", [role, name])


def test_a_student_starts_notes_and_stops_a_run_by_keyboard_in_spanish(
        browser: Any, hub: Hub) -> None:
    context, page, watched = open_page(browser, hub.base, viewport=LAPTOP, locale="es-CO")
    try:
        _student(page, hub, "es")
        page.goto(f"{hub.base}/runs?lang=es")
        tab_to(page, _focused(page, "link", "Empezar una medición"))
        page.keyboard.press("Enter")
        page.wait_for_url(f"{hub.base}/runs/new")
        tab_to(page, _focused(page, "textbox", "Título"))
        page.keyboard.type("Sol y sombra")
        tab_to(page, _focused(page, "checkbox", "Estación del patio"))
        page.keyboard.press("Space")
        tab_to(page, _focused(page, "button", "Empezar la medición"))
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(f"/runs/{UUID}$"))
        run_id = page.url.rsplit("/", 1)[1]
        assert page.get_by_text("grabando").is_visible()
        tab_to(page, _focused(page, "textbox", "Nueva nota"))
        page.keyboard.type("Moví el sensor a la sombra")
        tab_to(page, _focused(page, "button", "Agregar la nota"))
        page.keyboard.press("Enter")
        page.get_by_role("status").filter(has_text="Nota guardada.").wait_for()
        assert page.locator("#run-notes li").filter(
            has_text="Moví el sensor a la sombra").count() == 1
        assert page.get_by_label("Nueva nota").input_value() == ""
        tab_to(page, _focused(page, "button", "Detener la medición"))
        page.keyboard.press("Enter")
        page.get_by_text("detenida").wait_for()
        [run] = hub.runs()
        assert run["id"] == run_id and not run["running"]
        assert [n["text"] for n in run["notes"]] == ["Moví el sensor a la sombra"]
        assert run["started_by"].endswith(f"/{STUDENT}")
        assert run["channels"] == [{"device": "kit-a", "channel": "hum"}] or run[
            "channels"] == [{"device": "kit-a", "channel": "temp"}]
        watched.check()
    finally:
        context.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_runs_pages_in_three_languages_double_click_and_accessibility(
        browser: Any, hub: Hub) -> None:
    context, page, watched = open_page(browser, hub.base, viewport=PHONE, locale="es-CO")
    try:
        _student(page, hub, "es")
        page.goto(f"{hub.base}/runs/new?lang=es")
        page.get_by_role("button", name="Empezar la medición").click()  # nothing filled
        page.get_by_text("Escribe un título para la medición.").wait_for()
        assert page.get_by_label("Título").get_attribute("aria-invalid") == "true"
        assert_accessible(page, "the start form with errors")
        shot(page, "runs-new-errors-es-360")
        assert [e for e in watched.errors if "422" not in e] == []  # the page's status
        watched.errors.clear()
        page.get_by_label("Título").fill("Sol y sombra")
        page.get_by_label("Estación del patio · Temperatura").check()
        # Chromium sends a double click's form once; two posts of the same form at once
        # (a slow network, a click on a retry) must start one run too.
        sent = page.evaluate(
            "() => { const form = document.querySelector('form.run-start');"
            " const post = () => fetch(form.action, {method: 'POST', redirect: 'manual',"
            " body: new URLSearchParams(new FormData(form))}).then((r) => r.type);"
            " return Promise.all([post(), post()]); }")
        assert sent == ["opaqueredirect", "opaqueredirect"]  # both 303s
        page.get_by_role("button", name="Empezar la medición").dblclick()
        page.wait_for_url(re.compile(f"/runs/{UUID}$"))
        page.get_by_text("grabando").wait_for()
        assert len(hub.runs()) == 1  # two posts and a double click start one run
        page.get_by_label("Nueva nota").fill("Primera nota")
        page.get_by_role("button", name="Agregar la nota").click()
        page.get_by_role("status").filter(has_text="Nota guardada.").wait_for()
        run_page = page.url.split("?")[0]
        for lang in ("es", "pt", "en"):
            for width, viewport in (("360", PHONE), ("1366", LAPTOP)):
                page.set_viewport_size(viewport)
                for name, url in (("list", f"{hub.base}/runs"), ("new", f"{hub.base}/runs/new"),
                                  ("run", run_page)):
                    page.goto(f"{url}?lang={lang}")
                    if lang == "es" and width == "360":
                        assert_accessible(page, f"runs {name}")
                    shot(page, f"runs-{name}-{lang}-{width}")
        watched.check()
    finally:
        context.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_note_typed_when_the_session_ends_is_kept_through_signing_in_again(
        browser: Any, hub: Hub) -> None:
    context, page, watched = open_page(browser, hub.base, viewport=PHONE, locale="pt-BR")
    try:
        _student(page, hub, "pt")
        page.goto(f"{hub.base}/runs/new?lang=pt")
        page.get_by_label("Título").fill("Vento")
        page.get_by_label("Estación del patio · Umidade").check()
        page.get_by_role("button", name="Começar a medição").click()
        page.wait_for_url(re.compile(f"/runs/{UUID}$"))
        run_page = page.url
        me = page.request.get(f"{hub.base}/api/v1/auth/me").json()["name"]
        text = "Nuvens chegaram às 10:42; a umidade subiu depressa. " * 4
        page.get_by_label("Nova nota").fill(text)
        engine = db.make_engine(hub.served.database_url)  # the session ends meanwhile
        try:
            with engine.begin() as conn:
                user = accounts.find_user(conn, name=me)
                assert user is not None
                assert accounts.revoke_sessions(conn, user_id=user.id) == 1
        finally:
            engine.dispose()
        page.get_by_role("button", name="Adicionar a nota").click()
        status = page.get_by_role("status").filter(has_text="Sua sessão terminou.")
        status.wait_for()
        assert page.get_by_label("Nova nota").input_value() == text
        assert [e for e in watched.errors if "401" not in e] == []  # the API's answer
        watched.errors.clear()
        assert_accessible(page, "the run page, asking to sign in again")
        shot(page, "runs-run-expired-pt-360")
        page.get_by_role("link", name="Entrar de novo").click()
        page.wait_for_url(re.compile("/signin"))
        page.locator("#pin-code").fill(hub.world.class_code)
        page.locator("#pin-name").fill(STUDENT)
        page.locator("#pin-pin").fill(STUDENT_PIN)
        page.locator("form", has=page.locator("#pin-pin")).locator(
            "button[type=submit]").click()
        page.wait_for_url(run_page)
        assert page.get_by_label("Nova nota").input_value() == text  # the draft is back
        page.get_by_role("button", name="Adicionar a nota").click()
        page.get_by_role("status").filter(has_text="Nota salva.").wait_for()
        [run] = hub.runs()
        assert [n["text"] for n in run["notes"]] == [text.strip()]
        page.reload()
        assert page.get_by_label("Nova nota").input_value() == ""  # sent: no draft left
        watched.check()
    finally:
        context.close()
