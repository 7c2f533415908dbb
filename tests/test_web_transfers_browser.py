"""Transfers and a mobile lab's stop in Chromium, against ``labhub serve`` in a process
of its own. The coordinator, in Spanish on a 360 px phone, drafts a transfer from LAB-A
to LAB-B, builds its manifest by scanning two assets (keystrokes ending in Enter, as a
USB scanner types), ships it, and at LAB-B scans one of the two: the page shows the other
as missing beside no extras, she says it stays in transit and confirms (SQLite and
PostgreSQL). Then a mobile lab's stop: arrive, scan at the school, one item missing
shown, confirm the arrival. axe-core on every page; screenshots ``transfers-*`` and
``rotations-*`` at phone and laptop widths."""

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
    served_hub,
    shot,
    signed_in_page,
    usb_scan,
)
from web_inventory_world import COORDINATOR, COORDINATOR_PASSWORD, make_equipment_world
from web_world import BY

from inventory import assets, rotations, transfers
from labhub import db


def _world(database_url: str, *, rotation: bool = False) -> None:
    engine = db.make_engine(database_url)
    try:
        if engine.dialect.name == "sqlite":
            db.upgrade(engine)
        make_equipment_world(engine)
        if rotation:
            with engine.begin() as conn:
                for tag in ("ML-1", "ML-2"):
                    assets.register_asset(conn=conn, tag=tag, model_code="UNO",
                                          site_code="VL-ML-1", by=BY)
                    rotations.add_to_manifest(conn=conn, mobile_lab="VL-ML-1", tag=tag, by=BY)
                rotations.plan_rotation(conn=conn, mobile_lab="VL-ML-1", name="Ruta norte",
                                        by=BY, stops=[("LAB-A", "2027-03-01", "2027-03-05"),
                                                      ("LAB-B", "2027-03-08", "2027-03-12")])
    finally:
        engine.dispose()


@pytest.fixture
def hub(tmp_path: Path, database_url: str) -> Iterator[ServedHub]:
    _world(database_url)
    with served_hub(tmp_path, database_url) as served:
        yield served


def _scan(page: Any, label: str, tag: str, said: str) -> None:
    """A USB scanner: the tag's keystrokes, then Enter; the answer is said on the page."""
    usb_scan(page, label, tag)
    page.locator(".scan-said").filter(has_text=said).wait_for()


def _both_widths(page: Any, name: str) -> None:
    shot(page, f"{name}-360")
    page.set_viewport_size(LAPTOP)
    shot(page, f"{name}-1366")
    assert_accessible(page, f"{name}, laptop")
    page.set_viewport_size(PHONE)


def test_a_coordinator_ships_two_assets_and_receives_them_with_one_missing(
        browser: Any, hub: ServedHub) -> None:
    base = hub.base
    with signed_in_page(browser, base, COORDINATOR, COORDINATOR_PASSWORD) as (page, watched):
        page.goto(f"{base}/equipment")
        page.get_by_role("link", name="Traslados").click()
        page.get_by_role("heading", level=1, name="Traslados").wait_for()
        page.get_by_role("link", name="Nuevo traslado").click()
        assert_accessible(page, "new transfer")
        _both_widths(page, "transfers-new-es")
        page.get_by_label("Desde (el laboratorio de donde sale)").select_option("LAB-A")
        page.get_by_label("Hacia (el laboratorio al que va)").select_option("LAB-B")
        page.get_by_role("button", name="Crear el borrador").click()
        page.get_by_role("heading", level=1, name="Traslado de LAB-A a LAB-B").wait_for()
        label = "Escanee un equipo para ponerlo en el traslado"
        _scan(page, label, "UNO-2", "UNO-2 agregado: 1 en el traslado.")
        _scan(page, label, "UNO-3", "UNO-3 agregado: 2 en el traslado.")
        page.get_by_role("heading", name="En el traslado (2)").wait_for()
        assert page.get_by_label(label).evaluate("e => e === document.activeElement")
        assert_accessible(page, "a draft with two items")
        _both_widths(page, "transfers-draft-es")
        page.get_by_label("Quién lo lleva").fill("Luis, conductor")
        page.get_by_role("button", name="Enviar 2 ítems a LAB-B").click()
        page.get_by_text("En tránsito", exact=True).wait_for()
        # At LAB-B (the same coordinator manages both labs): one of the two is scanned.
        receive = "Escanee cada ítem a medida que llega"
        _scan(page, receive, "UNO-2", "UNO-2 llegó.")
        page.get_by_role("heading", name="Escaneados 1 de 2 enviados").wait_for()
        missing = page.get_by_role("region", name="Faltan (1)")
        assert missing.get_by_text("UNO-3").is_visible()
        extra = page.get_by_role("region", name="Sobran (0)")
        assert extra.get_by_text("Ninguno").is_visible()
        box_m, box_e = missing.bounding_box(), extra.bounding_box()
        assert abs(box_m["y"] - box_e["y"]) < 2 and box_m["x"] < box_e["x"]  # side by side
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        assert_accessible(page, "the receipt before confirming")
        _both_widths(page, "transfers-receipt-es")
        page.get_by_role("button", name="Confirmar la recepción").click()  # no choice yet
        assert page.get_by_label("Perdido").evaluate("e => e.validity.valueMissing")
        page.get_by_label("Sigue en tránsito (puede llegar después)").check()
        page.get_by_role("button", name="Confirmar la recepción").click()
        page.locator("p.state strong", has_text="Recibido").wait_for()
        page.get_by_role("heading", name="Lo que no coincidió").wait_for()
        assert "Falta: enviado, no escaneado" in page.locator(".discrepancies").inner_text()
        assert_accessible(page, "a received transfer")
        _both_widths(page, "transfers-received-es")
        page.goto(f"{base}/transfers?status=received")
        assert page.locator(".transfer-list li").count() == 1
        assert_accessible(page, "the list")
        _both_widths(page, "transfers-list-es")
        watched.check()
    engine = db.make_engine(hub.database_url)
    try:
        with engine.connect() as conn:
            t = transfers.list_transfers(conn=conn)[1][0]
            assert t.status == "received" and t.scanned == ("UNO-2",)
            assert [(d.tag, d.kind, d.resolution) for d in t.discrepancies] == [
                ("UNO-3", "missing", "in_transit")]
            assert assets.get_asset(conn=conn, tag="UNO-2").site_code == "LAB-B"
    finally:
        engine.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_mobile_lab_stop_checked_by_scan(browser: Any, tmp_path: Path,
                                           database_url: str) -> None:
    _world(database_url, rotation=True)
    with served_hub(tmp_path, database_url) as served, signed_in_page(
            browser, served.base, COORDINATOR, COORDINATOR_PASSWORD) as (page, watched):
        base = served.base
        page.goto(f"{base}/rotations")
        page.get_by_role("heading", level=1, name="Laboratorios móviles").wait_for()
        assert_accessible(page, "rotations")
        _both_widths(page, "rotations-list-es")
        page.get_by_role("link", name="Lista de carga de VL-ML-1").click()
        page.get_by_role("heading", name="En la lista de carga (2)").wait_for()
        assert_accessible(page, "the manifest")
        _both_widths(page, "rotations-manifest-es")
        page.goto(f"{base}/rotations/new")
        assert_accessible(page, "plan a route")
        _both_widths(page, "rotations-new-es")
        page.goto(f"{base}/rotations")
        page.get_by_role("link", name="Ruta norte").click()
        page.get_by_role("heading", level=1, name="Ruta norte").wait_for()
        assert_accessible(page, "a route")
        _both_widths(page, "rotations-route-es")
        page.get_by_role("link", name="Parada 1: LAB-A").click()
        page.get_by_role("heading", name="Lo que debe llegar (2)").wait_for()
        page.get_by_label("Quién conduce").fill("Luis")
        page.get_by_role("button", name="Llegar", exact=True).click()
        _scan(page, "Escanee cada ítem que llegó aquí", "ML-1", "ML-1 llegó.")
        page.get_by_role("region", name="Faltan (1)").get_by_text("ML-2").wait_for()
        ticked = page.locator(".checklist .scanned").inner_text()
        assert ticked.split() == ["✓", "ML-1", "escaneado"]
        assert_accessible(page, "a stop being checked")
        _both_widths(page, "rotations-stop-es")
        page.get_by_label("Sigue en tránsito (puede llegar después)").check()
        page.get_by_role("button", name="Confirmar la llegada").click()
        page.get_by_text("En la escuela", exact=True).wait_for()
        page.get_by_role("button", name="Salir", exact=True).wait_for()
        watched.check()
