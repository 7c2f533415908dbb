"""The Live pages in Chromium against a real ``labhub serve`` (and ``labhub demo``): a
value changes in the page after a reading is posted; the network goes away and comes
back, and the page catches up with every reading it missed (``since``/``Last-Event-ID``,
not only the newest value); an offline device says so in words; the projector view;
screenshots in es, pt and en at 360 and 1366 px with axe-core's check; and the demo's
virtual kits live on the first page after signing in. The main flow runs on SQLite and
PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from signed_in import admin_token
from waiting import wait_for
from web_browser import (
    LAPTOP,
    PHONE,
    ZOOM_200,
    ServedHub,
    assert_accessible,
    open_page,
    served_hub,
    shot,
    sign_in,
)
from web_world import TEACHER, TEACHER_PASSWORD, make_world

from labhub import db


@dataclass
class Lab:
    hub: ServedHub
    admin: str

    def upload(self, device: str, value: float) -> None:
        with httpx2.Client(timeout=10) as client:
            answer = client.post(f"{self.hub.base}/api/v1/readings",
                                 headers={"Authorization": f"Bearer {self.admin}"},
                                 json={"device": device, "readings": [
                                     {"channel": "temp", "value": value, "unit": "degC"}]})
        assert answer.status_code == 200, answer.text


def _world(database_url: str) -> None:
    engine = db.make_engine(database_url)
    try:
        if engine.dialect.name == "sqlite":
            db.upgrade(engine)
        make_world(engine)
    finally:
        engine.dispose()


@pytest.fixture
def lab(tmp_path: Path, database_url: str) -> Iterator[Lab]:
    _world(database_url)
    admin = admin_token(database_url)
    with served_hub(tmp_path, database_url) as hub:
        yield Lab(hub, admin)


def _number(page: Any, device: str) -> Any:
    return page.locator(f'li[data-device="{device}"] .channel[data-channel="temp"] .number')


def _points(page: Any, device: str) -> int:
    found = page.locator(f'li[data-device="{device}"] .channel[data-channel="temp"]'
                         ).get_attribute("data-points")
    return len(found.split())


def test_a_value_changes_live_and_the_page_catches_up_after_the_network_is_back(
        browser: Any, lab: Lab) -> None:
    lab.upload("kit-a", 21.5)
    context, page, watched = open_page(browser, lab.hub.base, viewport=LAPTOP,
                                       locale="es-CO")
    try:
        sign_in(page, lab.hub.base, TEACHER, TEACHER_PASSWORD)
        page.goto(f"{lab.hub.base}/live")
        assert page.get_by_role("heading", level=1).inner_text() == "En vivo"
        number = _number(page, "kit-a")
        assert number.inner_text() == "21,5"
        station = page.locator('li[data-device="kit-a"]')
        assert "°C" in station.inner_text() and "Temperatura" in station.inner_text()
        # The offline device says so in words (and an icon), not by colour alone.
        assert "sin conexión" in page.locator('li[data-device="kit-a2"] .status').inner_text()
        assert page.locator('li[data-device="kit-b"]').count() == 0  # LAB-B's
        page.wait_for_function("() => document.getElementById('live').dataset.connected"
                               " === 'true'")
        lab.upload("kit-a", 23.0)
        page.wait_for_function(
            "() => document.querySelector('li[data-device=\"kit-a\"] .number')"
            ".textContent === '23,0'")
        assert _points(page, "kit-a") == 2
        assert_accessible(page, "live, es, 1366")
        # The network goes away: three readings meanwhile; it comes back.
        context.set_offline(True)
        page.wait_for_function("() => document.getElementById('live').dataset.connected"
                               " === 'false'")
        assert "Se perdió la conexión" in page.get_by_role("status").inner_text()
        for value in (24.0, 25.0, 26.5):
            lab.upload("kit-a", value)
        assert number.inner_text() == "23,0"
        context.set_offline(False)
        page.wait_for_function(
            "() => document.querySelector('li[data-device=\"kit-a\"] .number')"
            ".textContent === '26,5'")
        assert _points(page, "kit-a") == 5  # every reading missed, not just the newest
        assert "Conectado de nuevo" in page.get_by_role("status").inner_text()
        assert page.locator('li[data-device="kit-a"] polyline').get_attribute(
            "points").count(",") == 5
        watched.check()
    finally:
        context.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_live_pages_in_three_languages_at_two_widths(browser: Any, lab: Lab) -> None:
    lab.upload("kit-a", 21.5)
    lab.upload("kit-a", 22.26)
    context, page, watched = open_page(browser, lab.hub.base, viewport=PHONE,
                                       locale="es-CO")
    try:
        sign_in(page, lab.hub.base, TEACHER, TEACHER_PASSWORD)
        words = {"es": ("En vivo", "Vista para el proyector", "22,3"),
                 "pt": ("Ao vivo", "Modo projetor", "22,3"),
                 "en": ("Live", "Projector view", "22.3")}
        for lang, (title, projector, shown) in words.items():
            for name, viewport in (("360", PHONE), ("1366", LAPTOP)):
                page.set_viewport_size(viewport)
                page.goto(f"{lab.hub.base}/live?lang={lang}")
                assert page.get_by_role("heading", level=1).inner_text() == title
                assert _number(page, "kit-a").inner_text() == shown
                shot(page, f"live-live-{lang}-{name}")
                page.goto(f"{lab.hub.base}/live/projector?lang={lang}")
                assert page.get_by_role("heading", level=1).inner_text() == projector
                shot(page, f"live-projector-{lang}-{name}")
        assert_accessible(page, "projector, en, 1366")
        # The projector's numbers are big: several times the size of the page's text.
        size = page.evaluate("() => parseFloat(getComputedStyle(document.querySelector("
                             "'.live-projector .reading')).fontSize)")
        assert size >= 40
        page.set_viewport_size(PHONE)
        page.goto(f"{lab.hub.base}/live?lang=pt")
        assert_accessible(page, "live, pt, 360")
        page.set_viewport_size(ZOOM_200)  # a 1366 px laptop at 200 %
        page.goto(f"{lab.hub.base}/live?lang=es")
        assert page.evaluate("() => document.documentElement.scrollWidth") <= ZOOM_200["width"]
        shot(page, "live-live-es-zoom200")
        watched.check()
    finally:
        context.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_demos_virtual_kits_show_live_on_the_first_page(
        browser: Any, tmp_path: Path, database_url: str) -> None:
    _world(database_url)
    context = None
    with served_hub(tmp_path, database_url, demo=True) as hub:
        context, page, watched = open_page(browser, hub.base, viewport=LAPTOP,
                                           locale="es-CO")
        try:
            sign_in(page, hub.base, TEACHER, TEACHER_PASSWORD)
            assert page.url == f"{hub.base}/"
            channels = page.locator("#live .channel")
            wait_for(lambda: channels.count() >= 3, timeout=30,
                     what="the virtual kits' channels on the first page")
            kits = page.locator("#live li[data-device]").all_inner_texts()
            assert any("en línea" in kit for kit in kits), kits
            first = page.locator("#live .channel .number").first
            before = page.locator("#live").get_attribute("data-since")
            page.wait_for_function(
                "(since) => [...document.querySelectorAll('#live .channel')].some("
                "(c) => c.dataset.points.split(' ').length >= 3) && "
                "document.getElementById('live').dataset.connected === 'true'",
                arg=before, timeout=20_000)
            assert re.fullmatch(r"-?[\d.,]+", first.inner_text())
            shot(page, "live-home-demo-es-1366")
            assert_accessible(page, "home with the demo's kits live, es, 1366")
            watched.check()
        finally:
            context.close()
