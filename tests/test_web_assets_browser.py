"""The assets and kits pages in Chromium, against ``labhub serve`` in a process of its own,
on SQLite and PostgreSQL: a teacher in Portuguese on a phone searches for boards, opens
one, reads its history, starts a repair and finishes it, and opens a kit and the kits
list. axe-core checks every page; each is screenshotted at 360 and 1366 px
(``test-artifacts/web/assets-*.png``, ``kits-*.png``), and none scrolls sideways on the
phone.

Without Chromium or the ``playwright`` package the tests are skipped (tests/web_browser.py
says why); under ``CI=true`` they fail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from web_browser import (
    LAPTOP,
    PHONE,
    ServedHub,
    assert_accessible,
    shot,
    signed_in_page,
)
from web_inventory_world import equipment_hub
from web_world import TEACHER, TEACHER_PASSWORD


@pytest.fixture
def hub(tmp_path: Path, database_url: str) -> Iterator[ServedHub]:
    with equipment_hub(tmp_path, database_url) as served:
        yield served


def _look(page: Any, name: str, what: str) -> None:
    """axe on the page, no sideways scroll on the phone, and a shot at both widths."""
    assert_accessible(page, what)
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"), what
    shot(page, f"{name}-pt-360")
    page.set_viewport_size(LAPTOP)
    shot(page, f"{name}-pt-1366")
    page.set_viewport_size(PHONE)


def test_a_teacher_finds_a_board_repairs_it_and_opens_a_kit(browser: Any,
                                                             hub: ServedHub) -> None:
    with signed_in_page(browser, hub.base, TEACHER, TEACHER_PASSWORD, lang="pt") as (page,
                                                                                       watched):
        page.goto(f"{hub.base}/equipment")
        page.get_by_role("link", name="Patrimônio").click()
        page.get_by_role("heading", level=1, name="Patrimônio").wait_for()
        search = page.get_by_role("search", name="Buscar equipamentos")
        search.get_by_label("Etiqueta, número de série ou modelo").fill("uno")
        search.get_by_label("Situação").select_option("available")
        search.get_by_role("button", name="Buscar").click()
        page.get_by_role("heading", name="1 a 5 de 5 equipamentos").wait_for()
        assert "status=available" in page.url and "q=uno" in page.url
        csv = page.get_by_role("link", name="Baixar CSV")
        assert csv.get_attribute("href") == "/assets.csv?q=uno&status=available"
        _look(page, "assets-search", "the search, pt")

        page.get_by_role("link", name="UNO-3").click()
        page.get_by_role("heading", level=1, name="UNO-3 Arduino Uno R3").wait_for()
        history = page.get_by_role("region", name="Histórico")
        assert history.get_by_role("listitem").first.inner_text().startswith("Cadastrado")
        repairs = page.get_by_role("region", name="Consertos e manutenção")
        repairs.get_by_role("button", name="Iniciar o conserto").click()
        problem = page.get_by_role("textbox", name="Qual é o defeito")
        problem.wait_for()
        assert problem.get_attribute("aria-invalid") == "true"  # sent empty: said beside it
        assert page.locator("#fault-error").inner_text().startswith("Escreva o que houve")
        assert watched.errors and all("422" in e for e in watched.errors), watched.errors
        watched.errors.clear()  # the page's own status, which Chromium logs
        problem.fill("não liga pela USB")
        repairs.get_by_label("Condição").select_option("broken")
        repairs.get_by_role("button", name="Iniciar o conserto").click()
        page.get_by_role("status").filter(has_text="O conserto começou").wait_for()
        assert "Em conserto" in page.locator(".facts").inner_text()
        _look(page, "assets-asset-repair", "an asset in repair, pt")

        page.get_by_role("textbox", name="Serviço feito").fill("regulador de 5 V trocado")
        page.get_by_role("button", name="Concluir o conserto").click()
        page.get_by_role("status").filter(has_text="O conserto terminou").wait_for()
        newest = page.get_by_role("region", name="Histórico").get_by_role("listitem").first
        assert newest.inner_text().startswith("Conserto concluído")
        assert f"por {TEACHER}" in newest.inner_text()
        _look(page, "assets-asset", "an asset's history, pt")

        page.goto(f"{hub.base}/assets/UNO-1")
        page.get_by_role("link", name="KIT-1").click()
        page.get_by_role("heading", level=1, name="Kit KIT-1").wait_for()
        assert page.get_by_text("Completo", exact=True).is_visible()
        assert "40 × Cable de puente" in page.get_by_role("region", name="Conteúdo").inner_text()
        _look(page, "kits-kit", "a kit, pt")
        page.get_by_role("link", name="Todos os kits").click()
        page.get_by_role("heading", level=1, name="Kits").wait_for()
        _look(page, "kits-list", "the kits, pt")
        watched.check()
