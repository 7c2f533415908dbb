"""The pages in a real browser: Debian's Chromium, driven by Playwright, against
``labhub serve`` in a process of its own on a SQLite file. A teacher signs in with a
password (with JavaScript off: the forms need none), a student with class code and PIN,
and another with a QR card (``/signin#card=...``, which app.js posts); each sees the home
page and signs out. No page may break the content security policy or ask another host
for anything. Screenshots at 360x740 and 1366x768, in es and pt, go to
``test-artifacts/web/`` (``LABHUB_TEST_ARTIFACTS``) for a person to look at.

Without Chromium (``/usr/bin/chromium``; ``scripts/test-services`` installs it) or the
``playwright`` package the test is skipped and says why; under ``CI=true`` it fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
import pytest
from mqtt_broker import free_port
from waiting import wait_for
from web_world import STUDENT, STUDENT_PIN, TEACHER, TEACHER_PASSWORD, WebWorld, make_world

from labhub import db

LABHUB = str(Path(sys.executable).with_name("labhub"))
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("LABHUB_TEST_ARTIFACTS", "test-artifacts")) / "web"
PHONE = {"width": 360, "height": 740}
LAPTOP = {"width": 1366, "height": 768}


def _missing(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why} (CI=true: the browser tests must run)")
    pytest.skip(why)


@pytest.fixture
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is not installed (pip install -e '.[dev]')")
    if not Path(CHROMIUM).exists():
        _missing(f"no Chromium at {CHROMIUM} (scripts/test-services installs it)")
    # One per test: Playwright's threads end with it (the suite checks no thread stays).
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM,
                                              args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Hub:
    base: str
    world: WebWorld
    process: subprocess.Popen[bytes]
    log: Path


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    url = f"sqlite:///{tmp_path}/hub.db"
    engine = db.make_engine(url)
    try:
        db.upgrade(engine)
        world = make_world(engine)
    finally:
        engine.dispose()
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [LABHUB, "serve", "--port", str(port)],
            env={"PATH": os.environ.get("PATH", ""), "LABHUB_CONFIG": os.devnull,
                 "LABHUB_DATA_DIR": str(tmp_path / "data"), "LABHUB_DATABASE_URL": url,
                 "LABHUB_SITE": "LAB-A", "LABHUB_SERIAL_SCAN": "false",
                 "LABHUB_LOG_LEVEL": "warning"},
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx2.Client(timeout=5) as client:
            def up() -> bool:
                assert process.poll() is None, log.read_text()
                try:
                    return client.get(f"{base}/api/v1/health").status_code == 200
                except httpx2.TransportError:
                    return False
            wait_for(up, timeout=30, what="labhub serve to answer", state=log.read_text)
        yield Hub(base, world, process, log)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Watched:
    """What a browser context did that it must not: console errors (a CSP violation is
    one), and requests to any host but the hub's."""

    host: str
    errors: list[str] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", self._request)

    def _request(self, request: Any) -> None:
        where = urlsplit(request.url)
        if where.scheme not in ("data", "blob") and where.netloc != self.host:
            self.elsewhere.append(request.url)

    def check(self) -> None:
        assert self.errors == [], self.errors
        assert self.elsewhere == [], self.elsewhere


def _context(browser: Any, hub: Hub, *, viewport: dict[str, int], locale: str,
             javascript: bool = True) -> tuple[Any, Any, Watched]:
    context = browser.new_context(viewport=viewport, locale=locale,
                                  java_script_enabled=javascript)
    page = context.new_page()
    watched = Watched(urlsplit(hub.base).netloc)
    watched.attach(page)
    return context, page, watched


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _sign_out(page: Any, hub: Hub, label: str) -> None:
    page.get_by_role("button", name=label).click()
    page.wait_for_url(f"{hub.base}/signin")
    page.goto(f"{hub.base}/")
    assert page.url.startswith(f"{hub.base}/signin?next=")  # the session is over


def test_a_teacher_signs_in_with_a_password_without_javascript(browser: Any, hub: Hub) -> None:
    context, page, watched = _context(browser, hub, viewport=PHONE, locale="es-CO",
                                      javascript=False)
    try:
        page.goto(f"{hub.base}/")
        assert page.url == f"{hub.base}/signin?next=%2F"
        _shot(page, "signin-es-360")
        form = page.locator("form", has=page.locator("#pw-password"))
        form.get_by_label("Nombre").fill(TEACHER)
        form.get_by_label("Contraseña").fill("no es esta")
        form.get_by_role("button", name="Iniciar sesión").click()
        assert page.locator(".form-error").inner_text().endswith(
            "Nombre o contraseña incorrectos.")
        assert [e for e in watched.errors if "401" not in e] == []  # the page's status
        watched.errors.clear()
        form.get_by_label("Contraseña").fill(TEACHER_PASSWORD)
        form.get_by_role("button", name="Iniciar sesión").click()
        page.wait_for_url(f"{hub.base}/")
        assert page.get_by_role("heading", level=1).inner_text() == f"Hola, {TEACHER}"
        devices = page.locator(".devices li")
        assert devices.count() == 2  # LAB-A's, not LAB-B's
        assert "en línea" in devices.nth(0).inner_text()
        assert "sin conexión" in devices.nth(1).inner_text()
        _shot(page, "home-es-360")
        _sign_out(page, hub, "Cerrar sesión")
        watched.check()
    finally:
        context.close()


def test_a_student_signs_in_with_class_code_and_pin_in_portuguese(
        browser: Any, hub: Hub) -> None:
    context, page, watched = _context(browser, hub, viewport=LAPTOP, locale="pt-BR")
    try:
        page.goto(f"{hub.base}/signin")
        assert page.title() == "Entrar · LabHub · LAB-A"
        _shot(page, "signin-pt-1366")
        form = page.locator("form", has=page.locator("#pin-pin"))
        form.get_by_label("Código da turma").fill(hub.world.class_code.lower())
        form.get_by_label("Nome").fill(STUDENT)
        form.get_by_label("PIN").fill(STUDENT_PIN)
        form.get_by_role("button", name="Entrar").click()
        page.wait_for_url(f"{hub.base}/")
        assert page.get_by_role("heading", level=1).inner_text() == f"Olá, {STUDENT}"
        assert "Estudante" in page.locator(".roles").inner_text()
        _shot(page, "home-pt-1366")
        _sign_out(page, hub, "Sair")
        watched.check()
    finally:
        context.close()


def test_a_qr_card_signs_a_student_in(browser: Any, hub: Hub) -> None:
    context, page, watched = _context(browser, hub, viewport=PHONE, locale="pt-BR")
    try:
        page.goto(f"{hub.base}/signin?next=%2F%3Flang%3Des#card={hub.world.card}")
        page.wait_for_url(f"{hub.base}/?lang=es")
        assert page.get_by_role("heading", level=1).inner_text() == f"Hola, {STUDENT}"
        _shot(page, "home-es-360-card")
        page.set_viewport_size(LAPTOP)
        _shot(page, "home-es-1366")
        page.goto(f"{hub.base}/signin?lang=pt")
        _shot(page, "signin-pt-360-signed-in")
        assert hub.world.card not in page.url
        watched.check()
    finally:
        context.close()


def test_a_wrong_card_says_so_and_the_forms_stay(browser: Any, hub: Hub) -> None:
    context, page, watched = _context(browser, hub, viewport=PHONE, locale="es")
    try:
        page.goto(f"{hub.base}/signin#card=lhc_{'x' * 30}")
        status = page.locator("#card-status")
        status.filter(has_text="Esta tarjeta no funcionó").wait_for()
        assert "#card" not in page.url  # the secret left the address bar at once
        assert page.locator("#pw-name").is_visible()
        # The refused card is a 401 in the console; nothing else may be there.
        assert all("401" in e for e in watched.errors), watched.errors
        watched.errors.clear()
        watched.check()
    finally:
        context.close()


def test_chromium_is_where_scripts_test_services_puts_it() -> None:
    if not Path(CHROMIUM).exists() and shutil.which("apt-get"):
        _missing(f"no Chromium at {CHROMIUM}")
    assert "chromium" in Path("scripts/test-services").read_text()
