"""A student's and a teacher's main flows end to end in Chromium, in es, pt and en, against
one ``labhub demo`` process for the module (its virtual climate station reading every
second and its virtual Firmata robot kit, both at the hub's site LAB-A of the web world).

The student signs in with class code, name and PIN, sees the station's values change on
the first page, opens a chart, starts a run, adds a note, stops it and presses STOP ALL on
the robot's panel, by keyboard alone. The teacher signs in with a password by keyboard,
goes through the devices, calibrates the station's light channel watching the preview,
drives the robot's LED (Space) and servo (arrow keys) and presses STOP ALL by keyboard,
reads a rejected upload's reason on the dead letters page, and opens the account page.
Every page visited passes axe-core's check; words come from the catalogs
(``gettext_of(lang)``), never written here per language. Each language runs at its own
size: es on a phone (360 px), pt on a laptop (1366 px), en at 200 % zoom (683 px).

Without Chromium or the ``playwright`` package the tests are skipped and say why; under
``CI=true`` they fail.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
from signed_in import admin_token
from waiting import wait_for
from web_browser import (
    LAPTOP,
    PHONE,
    ZOOM_200,
    assert_accessible,
    missing,
    open_page,
    served_hub,
    tab_to,
)
from web_world import STUDENT, STUDENT_PIN, TEACHER, TEACHER_PASSWORD, WebWorld, make_world

from firmware_bridge.sim.climate import KIT_ID as STATION
from firmware_bridge.sim.climate import KIT_NAME as STATION_NAME
from firmware_bridge.sim.firmata_board import KIT_ID as ROBOT
from labhub import db
from labhub.web.i18n import gettext_of

LOCALES = {"es": "es-CO", "pt": "pt-BR", "en": "en-US"}
# Each language at its own size: a phone, a laptop, a laptop at 200 % zoom.
SIZES = {"es": PHONE, "pt": LAPTOP, "en": ZOOM_200}
SAFE = {"5": 0.0, "9": 90.0, "13": 0.0}  # the demo robot's outputs after STOP ALL
LANGS = pytest.mark.parametrize("lang", list(LOCALES))


@dataclass
class Demo:
    base: str
    world: WebWorld
    admin: str

    def api(self) -> httpx2.Client:
        return httpx2.Client(base_url=f"{self.base}/api/v1", timeout=10,
                             headers={"Authorization": f"Bearer {self.admin}"})


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """``labhub demo`` on a migrated SQLite file holding the web world (LAB-A is the hub's
    site, so the demo's kits are LAB-A's), once its two kits answer."""
    tmp = tmp_path_factory.mktemp("flows")
    url = f"sqlite:///{tmp}/hub.db"
    engine = db.make_engine(url)
    try:
        db.upgrade(engine)
        world = make_world(engine)
    finally:
        engine.dispose()
    with served_hub(tmp, url, demo=True) as hub:
        found = Demo(hub.base, world, admin_token(url))
        with found.api() as api:
            def ready() -> bool:
                devices = {d["id"]: d for d in api.get("/devices").json()}
                return (devices.get(STATION, {}).get("online") is True
                        and api.get(f"/devices/{ROBOT}/outputs").json() == SAFE)
            wait_for(ready, 30, "the demo's station and robot kit", state=hub.output)
        yield found


def _expect() -> Any:
    try:
        from playwright.sync_api import expect
    except ImportError:
        missing("the playwright package is not installed (pip install -e '.[dev]')")
    return expect


def _on(selector: str) -> Callable[[Any], bool]:
    """The focused element matches ``selector``."""
    return lambda page: bool(page.evaluate(
        "(s) => document.activeElement?.matches(s) ?? false", selector))


def _back_to(page: Any, selector: str, *, limit: int = 40) -> None:
    """Shift+Tab until ``selector`` has the focus (STOP ALL comes before the outputs)."""
    for _ in range(limit):
        page.keyboard.press("Shift+Tab")
        if _on(selector)(page):
            return
    raise AssertionError(f"{selector} not reached with Shift+Tab")


def _numbers(page: Any) -> list[str]:
    return list(page.locator(f'#live li[data-device="{STATION}"] .channel .number'
                             ).all_inner_texts())


def _stop_all_read_back(page: Any, _: Callable[..., str], expect: Any) -> None:
    """After STOP ALL: the panel says so and reads back every output's safe value."""
    expect(page.locator("#said")).to_have_text(
        _("STOP ALL sent: every output is back at its safe value."))
    expect(page.locator("#out-13-state")).to_have_text(_("OFF"))
    expect(page.locator("#out-9-state")).to_have_text("90°")
    expect(page.locator("#out-5-state")).to_have_text("0 %")


@LANGS
def test_a_students_day_by_keyboard(browser: Any, demo: Demo, lang: str) -> None:
    expect = _expect()
    _ = gettext_of(lang)
    context, page, watched = open_page(browser, demo.base, viewport=SIZES[lang],
                                       locale=LOCALES[lang])
    try:
        # Signs in with the class code, name and PIN by keyboard.
        page.goto(f"{demo.base}/signin?lang={lang}")
        assert_accessible(page, f"sign in, {lang}")
        tab_to(page, _on("#pin-code"))
        page.keyboard.type(demo.world.class_code)
        tab_to(page, _on("#pin-name"), limit=3)
        page.keyboard.type(STUDENT)
        tab_to(page, _on("#pin-pin"), limit=3)
        page.keyboard.type(STUDENT_PIN)
        page.keyboard.press("Enter")
        page.wait_for_url(f"{demo.base}/")
        assert page.locator("html").get_attribute("lang") == lang
        expect(page.get_by_role("heading", level=1)).to_have_text(
            _("Hello, %(name)s", name=STUDENT))

        # The station's values change live on the first page (it reads every second).
        page.wait_for_function("() => document.getElementById('live').dataset.connected"
                               " === 'true'", timeout=15_000)
        before = _numbers(page)
        assert len(before) >= 3, before
        page.wait_for_function(
            "([device, before]) => [...document.querySelectorAll("
            "`#live li[data-device=\"${device}\"] .channel .number`)]"
            ".some((n, i) => n.textContent !== before[i])", arg=[STATION, before],
            timeout=15_000)
        assert_accessible(page, f"home, live, {lang}")

        # A chart of the temperature, by keyboard.
        tab_to(page, _on("a[href='/charts']"))
        page.keyboard.press("Enter")
        page.wait_for_url(f"{demo.base}/charts")
        tab_to(page, _on(f"input[value='{STATION}/temp']"))
        page.keyboard.press("Space")
        tab_to(page, _on("form button[type=submit]"))
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r"/charts\?s=" + re.escape(f"{STATION}%2Ftemp")))
        page.wait_for_selector("figure.chart[data-drawn='1']:not([aria-busy])")
        assert page.locator("figure.chart canvas").count() == 1
        assert int(page.locator("figure.chart").get_attribute("data-points") or 0) >= 1
        assert_accessible(page, f"chart, {lang}")

        # A run of the station's temperature and humidity: started, noted, stopped.
        tab_to(page, _on("a[href='/runs']"))
        page.keyboard.press("Enter")
        page.wait_for_url(f"{demo.base}/runs")
        assert_accessible(page, f"runs, {lang}")
        tab_to(page, _on("a[href='/runs/new']"))
        page.keyboard.press("Enter")
        page.wait_for_url(f"{demo.base}/runs/new")
        tab_to(page, _on("#run-title"))
        title = f"Patio {lang}"
        page.keyboard.type(title)
        for channel in ("temp", "hum"):
            tab_to(page, _on(f"input[type=checkbox][value='{STATION}/{channel}']"))
            page.keyboard.press("Space")
        assert_accessible(page, f"start a run, {lang}")
        tab_to(page, _on("form.run-start button[type=submit]"))
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}$"))
        run_id = page.url.rsplit("/", 1)[1]
        expect(page.locator("dd.state")).to_have_text("● " + _("recording"))
        note = f"{STUDENT}: nube ({lang})"
        tab_to(page, lambda p: p.evaluate(
            "(name) => document.activeElement.labels?.[0]?.textContent.trim() === name",
            _("New note")))
        page.keyboard.type(note)
        tab_to(page, lambda p: p.evaluate(
            "(name) => document.activeElement.textContent.trim() === name", _("Add the note")))
        page.keyboard.press("Enter")
        page.get_by_role("status").filter(has_text=_("Note saved.")).wait_for()
        expect(page.locator("#run-notes li").filter(has_text=note)).to_have_count(1)
        assert_accessible(page, f"a run, recording, {lang}")
        tab_to(page, lambda p: p.evaluate(
            "(name) => document.activeElement.textContent.trim() === name", _("Stop the run")))
        page.keyboard.press("Enter")
        expect(page.locator("dd.state")).to_have_text("■ " + _("stopped"))
        expect(page.locator("#run-notes li").filter(has_text=note)).to_have_count(1)
        assert_accessible(page, f"a run, stopped, {lang}")
        with demo.api() as api:
            run = api.get(f"/runs/{run_id}").json()
        assert run["title"] == title and not run["running"]
        assert [n["text"] for n in run["notes"]] == [note]
        assert sorted(c["channel"] for c in run["channels"]) == ["hum", "temp"]

        # The robot kit's panel, the LED on and the arm moved (the teacher, meanwhile):
        # STOP ALL by keyboard, the safe values read back.
        with demo.api() as api:
            for command in ({"command": "digital_write", "pin": 13, "value": 1},
                            {"command": "servo", "pin": 9, "value": 120}):
                sent = api.post(f"/devices/{ROBOT}/commands", json=command)
                assert sent.status_code == 200, sent.text
        page.goto(f"{demo.base}/devices/{ROBOT}/control")
        expect(page.locator("#out-13-state")).to_have_text(_("ON"))
        expect(page.locator("#out-9-state")).to_have_text("120°")
        expect(page.locator("#link-state")).to_contain_text(_("Connected"), timeout=20_000)
        assert page.get_by_role("slider").count() == 0  # a student drives nothing
        assert_accessible(page, f"control panel, student, {lang}")
        tab_to(page, _on("#stop-all"))
        page.keyboard.press("Enter")
        _stop_all_read_back(page, _, expect)
        with demo.api() as api:
            assert api.get(f"/devices/{ROBOT}/outputs").json() == SAFE
        watched.check()
    finally:
        context.close()


@LANGS
def test_a_teachers_day(browser: Any, demo: Demo, lang: str) -> None:
    expect = _expect()
    _ = gettext_of(lang)
    marker = f"not-a-number-{lang}"
    with demo.api() as api:  # an upload the hub refuses: a dead letter with its reason
        bad = api.post("/readings", json={"device": STATION, "readings": [
            {"channel": "temp", "value": marker}]})
        assert bad.status_code == 422, bad.text
    context, page, watched = open_page(browser, demo.base, viewport=SIZES[lang],
                                       locale=LOCALES[lang])
    try:
        # Signs in with name and password by keyboard.
        page.goto(f"{demo.base}/signin?lang={lang}")
        tab_to(page, _on("#pw-name"))
        page.keyboard.type(TEACHER)
        tab_to(page, _on("#pw-password"), limit=3)
        page.keyboard.type(TEACHER_PASSWORD)
        page.keyboard.press("Enter")
        page.wait_for_url(f"{demo.base}/")
        assert page.locator("html").get_attribute("lang") == lang
        assert_accessible(page, f"home, teacher, {lang}")

        # The devices, the station, its settings: the light channel calibrated.
        page.get_by_role("navigation", name=_("Menu")).get_by_role(
            "link", name=_("Devices")).click()
        page.get_by_role("heading", level=1, name=_("Devices")).wait_for()
        assert page.locator(".device-card").count() >= 3  # LAB-A's two and the demo's
        assert_accessible(page, f"devices, {lang}")
        page.get_by_role("link", name=STATION_NAME).click()
        page.get_by_role("heading", level=1, name=STATION_NAME).wait_for()
        assert_accessible(page, f"the station, {lang}")
        page.get_by_role("link", name=_("Settings"), exact=True).click()
        page.get_by_role("heading", level=1, name=_("Settings of %(name)s", name=STATION_NAME)
                         ).wait_for()
        page.wait_for_load_state("load")  # devices.js and htmx have run (a click does not wait)
        channel = page.get_by_role("region", name=_("Channel %(name)s", name="light"))
        channel.get_by_label(_("Calibration")).select_option("linear")
        comma = "." if lang == "en" else ","
        scale = channel.get_by_label(_("Scale"))
        scale.fill("")
        scale.press_sequentially(f"0{comma}5")
        offset = channel.get_by_label(_("Offset"))
        offset.fill("")
        offset.press_sequentially("-10")
        sample = channel.get_by_label(_("Try it with a raw value"))
        sample.fill("")
        sample.press_sequentially("100")
        said = _("Raw value %(raw)s becomes %(value)s", raw="100", value="")
        channel.locator("output").filter(
            has_text=re.compile(re.escape(said) + f"40{re.escape(comma)}00")).wait_for()
        assert_accessible(page, f"settings with a preview, {lang}")
        channel.get_by_role("button", name=_("Save channel")).click()
        page.get_by_role("status").filter(
            has_text=_("Saved. The device is reopened with its new settings.")).wait_for()
        with demo.api() as api:
            saved = api.get(f"/devices/{STATION}").json()["settings"]["channels"]["light"]
        assert saved["calibration"] == {"linear": [0.5, -10.0]}

        # The robot kit's panel: LED on (Space), servo moved (arrows), STOP ALL.
        page.goto(f"{demo.base}/devices/{ROBOT}/control")
        expect(page.locator("#link-state")).to_contain_text(_("Connected"), timeout=20_000)
        assert_accessible(page, f"control panel, teacher, {lang}")
        tab_to(page, _on("#out-13-toggle"))
        page.keyboard.press("Space")
        expect(page.locator("#out-13-state")).to_have_text(_("ON"))
        assert page.locator("#out-13-toggle").get_attribute("aria-pressed") == "true"
        tab_to(page, _on("#out-9-value"))
        page.keyboard.press("ArrowRight")
        page.keyboard.press("ArrowRight")
        expect(page.locator("#out-9-state")).to_have_text("92°")
        with demo.api() as api:
            wait_for(lambda: api.get(f"/devices/{ROBOT}/outputs").json() == {
                **SAFE, "13": 1.0, "9": 92.0}, 10, "the LED on and the arm at 92°")
        _back_to(page, "#stop-all")  # STOP ALL comes before the outputs
        page.keyboard.press("Enter")
        _stop_all_read_back(page, _, expect)
        assert page.locator("#out-13-toggle").get_attribute("aria-pressed") == "false"
        assert page.locator("#out-9-value").input_value() == "90"
        with demo.api() as api:
            wait_for(lambda: api.get(f"/devices/{ROBOT}/outputs").json() == SAFE, 10,
                     "the robot's safe values")

        # The dead letters: the refused upload and its reason.
        page.get_by_role("navigation", name=_("Menu")).get_by_role(
            "link", name=_("Dead letters")).click()
        letter = page.locator(".letter").filter(has_text=marker)
        expect(letter).to_have_count(1)
        assert letter.locator(".reason").inner_text().strip() != ""
        letter.locator("details summary").click()
        assert marker in letter.locator("pre").inner_text()
        assert_accessible(page, f"dead letters, {lang}")

        # The account page.
        page.goto(f"{demo.base}/account")
        page.get_by_role("heading", level=1, name=_("My account")).wait_for()
        assert_accessible(page, f"account, {lang}")
        watched.check()
    finally:
        context.close()
