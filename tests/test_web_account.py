"""The account page and the app-wide accessibility in a real browser (Debian's Chromium
through Playwright, against ``labhub serve`` in a process of its own).

A teacher signs in by keyboard alone (Tab to the name, type, Tab, type, Enter; the focus
ring visible at each step) in Spanish, Portuguese and English; on the account page she
picks Português, and every page after is in Portuguese though the browser asks for
Spanish; then she signs out everywhere, and a second device of hers is signed out too.
That flow runs on SQLite and PostgreSQL. On a phone she changes her password: a wrong
current one is said beside its field, then the change signs her laptop out. Sign-in,
home and account never scroll sideways at 360 px, 1366 px and 200 % zoom; axe-core finds
no WCAG A/AA violation on them (sign-in with its errors shown); with reduced motion asked
for, nothing moves. Screenshots in es/pt/en at 360 and 1366 go to
``test-artifacts/web/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from web_browser import (
    LAPTOP,
    PHONE,
    ZOOM_200,
    assert_accessible,
    open_page,
    served_hub,
    shot,
    tab_to,
)
from web_world import TEACHER, TEACHER_PASSWORD, make_world

# The words each language's pages use here.
WORDS = {
    "es": {"sign_in": "Iniciar sesión", "account": "Mi cuenta", "hello": "Hola",
           "save": "Guardar idioma", "everywhere": "Cerrar sesión en todas partes"},
    "pt": {"sign_in": "Entrar", "account": "Minha conta", "hello": "Olá",
           "save": "Salvar idioma", "everywhere": "Sair em todos os dispositivos"},
    "en": {"sign_in": "Sign in", "account": "My account", "hello": "Hello",
           "save": "Save language", "everywhere": "Sign out everywhere"},
}
BROWSER_LOCALE = {"es": "es-CO", "pt": "pt-BR", "en": "en-US"}


@dataclass
class Hub:
    base: str


@pytest.fixture
def hub(tmp_path: Path, database_url: str, engine: Engine) -> Iterator[Hub]:
    make_world(engine)
    with served_hub(tmp_path, database_url) as served:
        yield Hub(served.base)


def _focused(page: Any) -> str:
    found: str = page.evaluate("() => document.activeElement.id")
    return found


def _keyboard_sign_in(page: Any, base: str, lang: str, *, keep: bool = False) -> None:
    """Sign in with the keyboard alone; the focus ring shows at each stop (tab_to).
    ``keep``: go on to ``/?lang=<lang>``, which keeps ``lang`` in the account (else the
    account's own language, once signed in, comes before the sign-in page's choice)."""
    then = f"&next=%2F%3Flang%3D{lang}" if keep else ""
    page.goto(f"{base}/signin?lang={lang}{then}")
    assert page.get_by_role("heading", level=1).inner_text() == WORDS[lang]["sign_in"]
    tab_to(page, lambda p: _focused(p) == "pw-name")
    page.keyboard.type(TEACHER)
    tab_to(page, lambda p: _focused(p) == "pw-password", limit=1)
    page.keyboard.type(TEACHER_PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/?lang={lang}" if keep else f"{base}/")
    assert page.get_by_role("heading", level=1).inner_text() == (
        f"{WORDS[lang]['hello']}, {TEACHER}")


def _no_sideways_scroll(page: Any, what: str) -> None:
    wide = page.evaluate("() => [document.documentElement.scrollWidth, innerWidth]")
    assert wide[0] <= wide[1], f"{what}: the page is {wide[0]} px wide in {wide[1]} px"


def test_keyboard_sign_in_then_the_account_keeps_portuguese_and_signs_out_everywhere(
        browser: Any, hub: Hub) -> None:
    context, page, watched = open_page(browser, hub.base, viewport=LAPTOP, locale="es-CO")
    other, other_page, other_watched = open_page(browser, hub.base, viewport=PHONE,
                                                 locale="es-CO")
    try:
        _keyboard_sign_in(other_page, hub.base, "es")  # her phone, signed in too
        _keyboard_sign_in(page, hub.base, "es")
        page.get_by_role("link", name=WORDS["es"]["account"]).click()
        page.wait_for_url(f"{hub.base}/account")
        assert page.get_by_role("radio", name="Según mi navegador").is_checked()
        assert page.locator(".sessions tbody tr").count() == 2
        page.get_by_role("radio", name="Português").check()
        page.get_by_role("button", name=WORDS["es"]["save"]).click()
        page.wait_for_url(f"{hub.base}/account?done=language")
        assert page.locator("html").get_attribute("lang") == "pt"
        assert page.get_by_role("status").inner_text().endswith(
            "Salvo: suas páginas agora estão em Português.")
        assert page.get_by_role("radio", name="Português").is_checked()
        # Every page after, though the browser asks for Spanish (and on her phone too).
        for path in ("/", "/account", "/nowhere"):
            page.goto(f"{hub.base}{path}")
            assert page.locator("html").get_attribute("lang") == "pt", path
        assert [e for e in watched.errors if "404" not in e] == []  # /nowhere's status
        watched.errors.clear()
        other_page.goto(f"{hub.base}/")
        assert other_page.get_by_role("heading", level=1).inner_text() == f"Olá, {TEACHER}"
        # Sign out everywhere: this session ends, and the phone's.
        page.goto(f"{hub.base}/account")
        page.get_by_role("button", name=WORDS["pt"]["everywhere"]).click()
        page.wait_for_url(f"{hub.base}/signin")
        for each in (page, other_page):
            each.goto(f"{hub.base}/account")
            assert each.url == f"{hub.base}/signin?next=%2Faccount"
        watched.check()
        other_watched.check()
    finally:
        other.close()
        context.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_each_language_by_keyboard_accessible_and_without_sideways_scroll(
        browser: Any, hub: Hub) -> None:
    for lang in ("pt", "en", "es"):
        context, page, watched = open_page(browser, hub.base, viewport=PHONE,
                                           locale=BROWSER_LOCALE[lang],
                                           reduced_motion="reduce")
        try:
            # Sign-in with its errors shown: beside their fields, and accessible.
            page.goto(f"{hub.base}/signin?lang={lang}")
            form = page.locator("form", has=page.locator("#pw-password"))
            form.get_by_role("button", name=WORDS[lang]["sign_in"]).click()
            page.locator("#pw-name-error").wait_for()
            assert page.locator("#pw-name").get_attribute("aria-invalid") == "true"
            assert_accessible(page, f"sign-in with errors, {lang}")
            assert all("422" in e for e in watched.errors), watched.errors
            watched.errors.clear()
            # Nothing moves when the system asks for less motion.
            assert page.evaluate("() => getComputedStyle(document.querySelector("
                                 "'button')).transitionDuration") in ("1e-05s", "0.00001s")
            for size, width in ((PHONE, 360), (LAPTOP, 1366)):
                page.set_viewport_size(size)
                page.goto(f"{hub.base}/signin?lang={lang}")
                shot(page, f"account-signin-{lang}-{width}")
            _keyboard_sign_in(page, hub.base, lang, keep=True)
            assert_accessible(page, f"home, {lang}")
            page.goto(f"{hub.base}/account?lang={lang}")
            assert page.get_by_role("heading", level=1).inner_text() == WORDS[lang]["account"]
            assert_accessible(page, f"account, {lang}")
            for path in ("/signin", "/", "/account"):
                for size, width in ((PHONE, 360), (LAPTOP, 1366), (ZOOM_200, "200%")):
                    page.set_viewport_size(size)
                    page.goto(f"{hub.base}{path}")
                    _no_sideways_scroll(page, f"{path}, {lang}, {width}")
                    if width != "200%":
                        name = {"/signin": "signin-signed-in", "/": "home"}.get(path, "account")
                        shot(page, f"account-{name}-{lang}-{width}")
            # A page that is not there: a page in the person's language, accessible.
            page.set_viewport_size(LAPTOP)
            page.goto(f"{hub.base}/no-such-page")
            assert page.get_by_role("heading", level=1).is_visible()
            assert_accessible(page, f"not found, {lang}")
            shot(page, f"account-not-found-{lang}-1366")
            assert all("404" in e for e in watched.errors), watched.errors
            watched.errors.clear()
            # The menu and the language switch work at 360 px: big enough to tap.
            page.set_viewport_size(PHONE)
            page.goto(f"{hub.base}/account")
            for link in page.locator(".langs a, .menu a").all():
                box = link.bounding_box()
                assert box["height"] >= 44 and box["width"] >= 24, link.inner_text()
            watched.check()
        finally:
            context.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_teacher_changes_her_password_on_a_phone(browser: Any, hub: Hub) -> None:
    """In Spanish at 360 px: a wrong current password is said beside its field (axe finds
    nothing with the error shown, the focus can reach it); the right one changes it, her
    laptop's session ends and the phone's stays; the new password signs in."""
    new = "una frase nueva y larga"
    context, page, watched = open_page(browser, hub.base, viewport=PHONE, locale="es-CO")
    laptop, laptop_page, laptop_watched = open_page(browser, hub.base, viewport=LAPTOP,
                                                    locale="es-CO")
    try:
        _keyboard_sign_in(laptop_page, hub.base, "es")
        _keyboard_sign_in(page, hub.base, "es")
        page.goto(f"{hub.base}/account")
        part = page.get_by_role("region", name="Tu contraseña")
        part.get_by_label("Contraseña actual").fill("no es esta")
        part.get_by_label("Contraseña nueva", exact=True).fill(new)
        part.get_by_label("Contraseña nueva, otra vez").fill(new)
        with page.expect_navigation():
            part.get_by_role("button", name="Cambiar la contraseña").click()
        current = page.get_by_label("Contraseña actual")
        assert current.get_attribute("aria-invalid") == "true"
        assert page.locator("#current-password-error").inner_text() == (
            "Esa no es tu contraseña actual.")
        assert current.input_value() == ""  # nothing typed comes back in the page
        assert_accessible(page, "the password form with its error")
        _no_sideways_scroll(page, "the password form, 360")
        shot(page, "account-password-error-es-360")
        assert all("422" in e for e in watched.errors), watched.errors
        watched.errors.clear()
        current.fill(TEACHER_PASSWORD)
        page.get_by_label("Contraseña nueva", exact=True).fill(new)
        page.get_by_label("Contraseña nueva, otra vez").fill(new)
        page.get_by_role("button", name="Cambiar la contraseña").click()
        page.wait_for_url(f"{hub.base}/account?done=password-others")
        assert page.get_by_role("region", name="Tu contraseña").get_by_role(
            "status").inner_text() == ("Guardada: tu nueva contraseña. Se cerró tu sesión en "
                                       "tus otros dispositivos.")
        assert page.locator(".sessions tbody tr").count() == 1
        laptop_page.goto(f"{hub.base}/account")
        assert laptop_page.url == f"{hub.base}/signin?next=%2Faccount"
        context.clear_cookies()
        page.goto(f"{hub.base}/signin?lang=es")
        form = page.locator("form", has=page.locator("#pw-password"))
        form.locator("#pw-name").fill(TEACHER)
        form.locator("#pw-password").fill(new)
        form.get_by_role("button", name="Iniciar sesión").click()
        page.wait_for_url(f"{hub.base}/")
        watched.check()
        laptop_watched.check()
    finally:
        laptop.close()
        context.close()
