"""A robot kit's control panel in a real browser (Debian's Chromium through Playwright)
against a hub in a process of its own.

Driving by keyboard, the test must see the board's own pins, which live in the process
that runs the virtual board. ``labhub demo`` runs its robot inside the hub's process, where
a test cannot look, and ``GET /api/v1/devices/{id}/outputs`` reads back what the hub last
commanded (each value once the board's port took its bytes), not what the board reports.
So that test runs ``labhub serve`` with ``firmata_ports`` naming a
:class:`VirtualFirmataBoard` on a pseudo-terminal in the test's own process, declares the
demo robot's outputs (LED on 13, motor on 5, servo arm on 9, safe at 90°), and checks the
board's ``outputs``, ``pwm`` and ``servo_angles`` beside the panel's read-back, on SQLite
and PostgreSQL; STOP ALL goes out while another control's command is held back (Playwright
holds that request), and a command to the unplugged board is refused in words. The
screenshots and a student's panel use ``labhub demo`` itself.

Without Chromium or the ``playwright`` package the tests are skipped and say why; under
``CI=true`` they fail.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
from signed_in import admin_token
from test_web_control import ROBOT
from waiting import wait_for
from web_browser import (
    LAPTOP,
    PHONE,
    ZOOM_200,
    assert_accessible,
    missing,
    open_page,
    served_hub,
    shot,
    sign_in,
    tab_to,
)
from web_world import STUDENT, STUDENT_PIN, TEACHER, TEACHER_PASSWORD, make_world

from firmware_bridge.sim.firmata_board import KIT_ID, VirtualFirmataBoard
from labhub import db


def _world(url: str) -> Any:
    engine = db.make_engine(url)
    try:
        if engine.dialect.name == "sqlite":
            db.upgrade(engine)
        return make_world(engine)
    finally:
        engine.dispose()


def _focused(element_id: str) -> Callable[[Any], bool]:
    return lambda page: page.evaluate("() => document.activeElement.id") == element_id


def _back_to(page: Any, element_id: str, *, limit: int = 40) -> None:
    """Shift+Tab until ``element_id`` has the focus (STOP ALL comes before the outputs)."""
    for _ in range(limit):
        page.keyboard.press("Shift+Tab")
        if _focused(element_id)(page):
            return
    raise AssertionError(f"#{element_id} not reached with Shift+Tab")


def _expect() -> Any:
    """Playwright's ``expect`` (its waits for a text), or a skip (CI: a failure)."""
    try:
        from playwright.sync_api import expect
    except ImportError:
        missing("the playwright package is not installed (pip install -e '.[dev]')")
    return expect


def _state(page: Any, pin: int) -> Any:
    return page.locator(f"#out-{pin}-state")


def test_a_teacher_drives_the_kit_by_keyboard_and_stop_all_reaches_the_board(
        browser: Any, database_url: str, tmp_path: Path) -> None:
    expect = _expect()
    _world(database_url)
    with VirtualFirmataBoard() as board, served_hub(
            tmp_path, database_url, env={"LABHUB_FIRMATA_PORTS": f'["{board.url}"]'}) as hub:
        auth = {"Authorization": f"Bearer {admin_token(database_url)}"}
        with httpx2.Client(base_url=f"{hub.base}/api/v1", headers=auth, timeout=10) as api:
            def kits() -> list[Any]:
                return [d for d in api.get("/devices").json() if d["kind"] == "firmata"]
            wait_for(lambda: len(kits()) == 1, 20, "the virtual board", state=hub.output)
            kit = kits()[0]["id"]
            assert api.patch(f"/devices/{kit}", json={"settings": ROBOT}).status_code == 200
            wait_for(lambda: api.get(f"/devices/{kit}/outputs").json() == {
                "5": 0.0, "9": 90.0, "13": 0.0}, 20, "the robot's outputs", state=hub.output)

        context, page, watched = open_page(browser, hub.base, viewport=LAPTOP, locale="es-CO")
        try:
            sign_in(page, hub.base, TEACHER, TEACHER_PASSWORD)
            page.goto(f"{hub.base}/devices/{kit}/control")
            assert page.get_by_role("heading", level=1).inner_text().startswith(
                "Panel de control:")
            assert page.locator("#link-state").inner_text().endswith("Conectado")

            # The motor: three steps up with the arrow key, one command each.
            tab_to(page, _focused("out-5-value"))
            for _ in range(3):
                page.keyboard.press("ArrowRight")
            assert page.locator("#out-5-value").get_attribute("aria-valuetext") == "3 %"
            expect(_state(page, 5)).to_contain_text("3 %")
            # The servo arm: a page up (a tenth of its range).
            tab_to(page, _focused("out-9-value"))
            page.keyboard.press("PageUp")
            angle = int(page.locator("#out-9-value").input_value())
            assert angle > 90
            expect(_state(page, 9)).to_contain_text(f"{angle}°")
            # The LED: a toggle button, Space turns it on.
            tab_to(page, _focused("out-13-toggle"))
            page.keyboard.press("Space")
            expect(_state(page, 13)).to_contain_text("ENCENDIDO")
            assert page.locator("#out-13-toggle").get_attribute("aria-pressed") == "true"
            assert page.locator("#said").inner_text() == "Enviado: el kit recibió la orden."
            assert board.wait_for(lambda: board.outputs.get(13) == 1
                                  and board.servo_angles.get(9) == angle
                                  and board.pwm.get(5) == round(0.03 * 255)), (
                board.outputs, board.servo_angles, board.pwm)
            shot(page, "control-panel-es-1366-driven")
            assert_accessible(page, "control panel, driven, es, 1366")

            # STOP ALL: back up the tab order to it, Enter.
            _back_to(page, "stop-all")
            page.keyboard.press("Enter")
            expect(page.locator("#said")).to_contain_text("DETENER TODO enviado")
            expect(_state(page, 13)).to_contain_text("APAGADO")
            assert _state(page, 9).inner_text() == "90°"
            assert _state(page, 5).inner_text() == "0 %"
            assert page.locator("#out-9-value").input_value() == "90"
            assert page.locator("#out-13-toggle").get_attribute("aria-pressed") == "false"
            assert board.wait_for(lambda: board.outputs.get(13) == 0
                                  and board.servo_angles.get(9) == 90
                                  and board.pwm.get(5) == 0), (
                board.outputs, board.servo_angles, board.pwm)

            # STOP ALL while another control waits for its answer (held back here): it
            # goes out at once; the held command may land after it, so once that one is
            # answered STOP ALL goes out again: the kit ends stopped, never driven.
            held: list[Any] = []

            def hold(route: Any) -> None:
                if "stop_all" in (route.request.post_data or ""):
                    route.continue_()
                else:
                    held.append(route)

            page.route("**/api/v1/devices/*/commands", hold)
            tab_to(page, _focused("out-13-toggle"))
            page.keyboard.press("Space")
            expect(page.locator("#said")).to_have_text("Enviando…")
            _back_to(page, "stop-all")
            page.keyboard.press("Enter")
            expect(page.locator("#said")).to_contain_text("DETENER TODO enviado")
            assert len(held) == 1
            with page.expect_request(lambda r: "stop_all" in (r.post_data or "")):
                held[0].continue_()  # answered, then STOP ALL goes out again
                page.unroute("**/api/v1/devices/*/commands")
            expect(_state(page, 13)).to_contain_text("APAGADO")
            assert page.locator("#out-13-toggle").get_attribute("aria-pressed") == "false"
            assert board.wait_for(lambda: board.outputs.get(13) == 0)

            # The board unplugged: a command is refused, and the panel says why in words.
            board.close()
            tab_to(page, _focused("out-13-toggle"))
            page.keyboard.press("Space")
            error = page.locator("#out-13-error")
            error.wait_for(state="visible", timeout=15_000)
            assert re.fullmatch(
                r"El kit no está conectado: revisa su cable USB y vuelve a intentarlo\."
                r"|El kit está arrancando: vuelve a intentarlo en \d+ s\.",
                error.inner_text()), error.inner_text()
            expect(page.locator("#link-state")).to_contain_text("Sin conexión")
            shot(page, "control-panel-es-1366-refused")
            assert_accessible(page, "control panel, refused, es, 1366")
            # The refusal and the offline read-back are answers the page expected.
            watched.errors[:] = [e for e in watched.errors if "409" not in e]
            watched.check()
        finally:
            context.close()


def test_the_demo_robots_panel_in_three_languages_and_a_students_stop_all(
        browser: Any, tmp_path: Path) -> None:
    expect = _expect()
    url = f"sqlite:///{tmp_path}/hub.db"
    world = _world(url)
    with served_hub(tmp_path, url, demo=True) as hub:
        panel = f"{hub.base}/devices/{KIT_ID}/control"
        with httpx2.Client(timeout=5) as client:
            wait_for(lambda: client.get(f"{hub.base}/api/v1/health").status_code == 200, 10,
                     "the demo")
        context, page, watched = open_page(browser, hub.base, viewport=PHONE, locale="es-CO")
        try:
            sign_in(page, hub.base, TEACHER, TEACHER_PASSWORD)
            page.goto(panel)
            expect(page.locator("#link-state")).to_contain_text("Conectado", timeout=20_000)
            for lang, stop in (("es", "DETENER TODO"), ("pt", "PARAR TUDO"),
                               ("en", "STOP ALL")):
                page.goto(f"{panel}?lang={lang}")
                assert page.get_by_role("button", name=stop).is_visible()
                for size, width in ((PHONE, 360), (LAPTOP, 1366)):
                    page.set_viewport_size(size)
                    shot(page, f"control-panel-{lang}-{width}")
                assert_accessible(page, f"control panel, {lang}")
            # STOP ALL stays in view at the bottom of the page, on a phone and at 200 %.
            for size in (PHONE, ZOOM_200):
                page.set_viewport_size(size)
                page.keyboard.press("End")
                page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
                box = page.get_by_role("button", name="STOP ALL").bounding_box()
                assert box is not None and box["y"] >= 0 and (
                    box["y"] + box["height"] <= size["height"]), (size, box)
                assert box["height"] >= 44
            # Two keys from the top of the page: the skip link, then STOP ALL.
            page.goto(f"{panel}?lang=en")
            page.keyboard.press("Tab")
            assert page.evaluate("() => document.activeElement.className") == "skip"
            page.keyboard.press("Enter")
            tab_to(page, _focused("stop-all"), limit=1)
            page.keyboard.press("Enter")
            expect(page.locator("#said")).to_contain_text("STOP ALL sent")
            watched.check()
        finally:
            context.close()

        # A student: the outputs and STOP ALL, no drive control; STOP ALL by keyboard.
        context, page, watched = open_page(browser, hub.base, viewport=PHONE, locale="pt-BR")
        try:
            page.goto(f"{hub.base}/signin")
            form = page.locator("form", has=page.locator("#pin-pin"))
            form.locator("#pin-code").fill(world.class_code)
            form.locator("#pin-name").fill(STUDENT)
            form.locator("#pin-pin").fill(STUDENT_PIN)
            form.locator("button[type=submit]").click()
            page.wait_for_url(lambda u: "/signin" not in u)
            page.goto(panel)
            assert page.get_by_role("slider").count() == 0
            assert page.locator("button.toggle").count() == 0
            shot(page, "control-panel-pt-360-student")
            assert_accessible(page, "control panel, student, pt, 360")
            tab_to(page, _focused("stop-all"))
            page.keyboard.press("Enter")
            expect(page.locator("#said")).to_contain_text("PARAR TUDO enviado")
            assert _state(page, 9).inner_text() == "90°"
            watched.check()
        finally:
            context.close()
