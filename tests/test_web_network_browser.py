"""The network pages on a central (``labhub serve`` with ``role = central`` on PostgreSQL)
in Chromium at a phone's width, in Spanish, Portuguese and English: each answers 200 in
the language asked for, does not scroll sideways, loads nothing from elsewhere, and
axe-core finds no WCAG A/AA violation on it. A map point is a link a keyboard reaches and
a click follows; the filters work without JavaScript. Screenshots
``network-<page>-<lang>-360`` for a person to look at (docs/images/web/ keeps some)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from test_network_views import network_world
from test_web_network import COORDINATOR, MINISTRY, PASSWORD, _people
from web_browser import assert_accessible, served_hub, shot, signed_in_page

from inventory.tables import sites
from labhub import db

PAGES = {"rollout": "/network", "use": "/network/use", "lab": "/network/labs/LAB-B"}
MENU_WORD = {"es": "Red", "pt": "Rede", "en": "Network"}


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_the_network_pages_in_three_languages_pass_axe(
        browser: Any, tmp_path: Path, database_url: str) -> None:
    engine = db.make_engine(database_url)
    try:
        with engine.begin() as conn:
            network_world(conn)
            conn.execute(update(sites).where(sites.c.code == "LAB-C")
                         .values(name="Lab Spark Vereda El Queremal, Dagua"))
        _people(engine)
    finally:
        engine.dispose()
    with served_hub(tmp_path, database_url, site="VL",
                    env={"LABHUB_ROLE": "central"}) as served:
        with signed_in_page(browser, served.base, MINISTRY, PASSWORD) as (page, watched):
            for lang in ("es", "pt", "en"):
                for name, path in PAGES.items():
                    joiner = "&" if "?" in path else "?"
                    answer = page.goto(f"{served.base}{path}{joiner}lang={lang}")
                    assert answer is not None and answer.status == 200, (lang, path)
                    assert page.locator("html").get_attribute("lang") == lang
                    menu = page.get_by_role("navigation", name={
                        "es": "Menú", "pt": "Menu", "en": "Menu"}[lang])
                    assert MENU_WORD[lang] in menu.inner_text(), (lang, path)
                    width = page.evaluate("() => document.documentElement.scrollWidth")
                    assert width <= page.viewport_size["width"], (lang, path, width)
                    assert_accessible(page, f"{path} ({lang})")
                    shot(page, f"network-{name}-{lang}-360")
            # A point of the map is a link by its lab's name and status; it leads there.
            page.goto(f"{served.base}/network?lang=es")
            point = page.get_by_role("link", name="Lab Point Buga: En instalación")
            assert point.count() == 1
            point.click()
            page.wait_for_url("**/network/labs/LAB-B")
            watched.check()
        # Without JavaScript the filters are a plain form.
        with signed_in_page(browser, served.base, COORDINATOR, PASSWORD,
                            javascript=False) as (page, _):
            page.goto(f"{served.base}/network?lang=es")
            page.select_option("#f-rural", "rural")
            page.get_by_role("button", name="Mostrar").click()
            page.wait_for_url("**rural=rural**")
            names = page.locator("table.rollout-table th[scope=row] a").all_inner_texts()
            assert names == ["Lab Spark Vereda El Queremal, Dagua"]
