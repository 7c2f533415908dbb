"""The sites and stock pages in Chromium, against ``labhub serve`` in a process of its own,
on SQLite and PostgreSQL: a coordinator, in Spanish on a phone, opens the site tree, her
lab's page with its counts, her region's table of labs, the lab's stock, and records a
delivery of jumper wires (a wrong number first: the error beside its field). Each page is
checked by axe-core, scrolls no page sideways at 360 px, and is screenshotted at phone and
laptop widths (``test-artifacts/web/sites-*.png``, ``stock-*.png``).

Without Chromium or the ``playwright`` package the test is skipped (tests/web_browser.py
says why); under ``CI=true`` it fails."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from web_browser import (
    LAPTOP,
    PHONE,
    assert_accessible,
    served_hub,
    shot,
    signed_in_page,
)
from web_inventory_world import COORDINATOR, COORDINATOR_PASSWORD, equipment_world_at

from inventory import stock
from labhub import db


def _both_widths(page: Any, name: str, what: str) -> None:
    """Checked by axe and screenshotted on a phone, then on a laptop, then a phone again."""
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), (
        f"{what} scrolls sideways at 360 px")
    assert_accessible(page, what)
    shot(page, f"{name}-es-360")
    page.set_viewport_size(LAPTOP)
    shot(page, f"{name}-es-1366")
    page.set_viewport_size(PHONE)


def test_a_coordinator_opens_her_sites_and_records_a_delivery_on_a_phone(
        browser: Any, tmp_path: Path, database_url: str) -> None:
    equipment_world_at(database_url)
    with served_hub(tmp_path, database_url) as hub, signed_in_page(
            browser, hub.base, COORDINATOR, COORDINATOR_PASSWORD, lang="es",
            viewport=PHONE) as (page, watched):
        page.get_by_role("navigation", name="Menú").get_by_role("link", name="Equipos").click()
        page.get_by_role("link", name=re.compile("^Sedes")).click()
        page.get_by_role("heading", level=1, name="Sedes").wait_for()
        tree = page.get_by_role("navigation", name="Árbol de sedes")
        assert tree.get_by_role("link").all_inner_texts() == [
            "Valle", "Escuela Simón Bolívar", "Colegio Nariño", "Laboratorio móvil 1"]
        assert "Lab Point · Urbano · ○ Implementación: En planeación" in tree.inner_text()
        _both_widths(page, "sites-tree", "the site tree, es")

        tree.get_by_role("link", name="Escuela Simón Bolívar").click()
        page.get_by_role("heading", level=1, name="Escuela Simón Bolívar").wait_for()
        held = page.get_by_role("region", name="Lo que tiene el laboratorio")
        assert "Activos\n8" in held.inner_text() and "Kits\n2" in held.inner_text()
        _both_widths(page, "sites-lab", "a lab's page, es")

        page.get_by_role("navigation", name="Dónde está esta sede").get_by_role(
            "link", name="Valle").click()
        page.get_by_role("heading", level=1, name="Valle").wait_for()
        table = page.get_by_role("region", name="Sus laboratorios: 3")
        assert table.get_by_role("row").count() == 4  # the header and three labs
        _both_widths(page, "sites-region", "a region's labs, es")

        page.get_by_role("link", name="Escuela Simón Bolívar").click()
        page.get_by_role("navigation", name="Ver de este laboratorio").get_by_role(
            "link", name="Existencias").click()
        page.get_by_role("heading", level=1, name="Existencias").wait_for()
        assert page.get_by_label("Sede o región").input_value() == "LAB-A"
        rows = page.get_by_role("region", name="Líneas de existencias: 2").get_by_role("row")
        assert "⚠ Bajo: faltan 2" in rows.nth(1).inner_text()  # the sensors run low
        _both_widths(page, "stock", "the stock, es")

        page.get_by_role("link", name="Cable de puente").click()
        page.get_by_role("heading", level=1,
                         name="Cable de puente en Escuela Simón Bolívar").wait_for()
        delivery = page.get_by_role("region", name="Registrar una entrega")
        delivery.get_by_label("Cuántos llegaron").fill("veinte")
        delivery.get_by_role("button", name="Registrar la entrega").click()
        error = page.locator("#receive-quantity-error")
        error.wait_for()
        assert error.inner_text() == "Escriba un número entero, por ejemplo 12."
        assert [e for e in watched.errors if "422" not in e] == []  # the page's status
        watched.errors.clear()
        field = page.get_by_role("region", name="Registrar una entrega").get_by_label(
            "Cuántos llegaron")
        assert field.get_attribute("aria-invalid") == "true"
        _both_widths(page, "stock-errors", "a delivery with an error, es")

        field.fill("25")
        page.get_by_role("region", name="Registrar una entrega").get_by_label(
            "Nota (opcional)").fill("donación de la alcaldía")
        page.get_by_role("button", name="Registrar la entrega").click()
        page.get_by_role("status").filter(has_text="Se registró la entrega.").wait_for()
        assert "125 pcs" in page.locator("dl.facts").inner_text()
        _both_widths(page, "stock-item", "a stock item after a delivery, es")

        page.get_by_role("link", name="Existencias").first.click()
        page.get_by_role("link", name="Por agotarse: 1").click()
        page.get_by_role("heading", level=1, name="Por agotarse").wait_for()
        _both_widths(page, "stock-low", "the low-stock list, es")
        watched.check()
    engine = db.make_engine(database_url)
    try:
        with engine.connect() as conn:
            level = stock.get_stock(conn=conn, site_code="LAB-A", model_code="JMP")
    finally:
        engine.dispose()
    assert level.quantity == 125
