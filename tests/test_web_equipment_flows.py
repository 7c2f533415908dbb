"""A coordinator's day with the lab's equipment, in Spanish, in one test, in Chromium on a
phone's screen, against ``labhub serve`` in a process of its own (SQLite and PostgreSQL).

Carla, coordinator of the region, with a USB barcode scanner (keystrokes ending in Enter):
1. lends kit KIT-1 to a class from the scan page;
2. gets it back with two jumper wires missing: the page lists them before she confirms;
3. ships two boards from LAB-A to LAB-B (a Lab Point) with a scanned manifest, and
   receives them at LAB-B with one scan missing: the discrepancy is listed beside the
   scanned ones before she confirms;
4. runs an audit of LAB-A's shelves and reads its report;
5. prints QR labels for two boards, previewed in the page.

Each step is read back from the database the hub wrote; axe-core checks each page the
day passes through; the page does nothing it must not (console errors, other hosts).
Each part has its own, finer tests (tests/test_web_<part>*.py); this one checks that
they make one day together.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from web_browser import ServedHub, assert_accessible, shot, signed_in_page, usb_scan
from web_inventory_world import COORDINATOR, COORDINATOR_PASSWORD, equipment_hub
from web_world import CLASS_NAME

from inventory import assets, audits, kits, loans, transfers
from labhub import db


@pytest.fixture
def hub(tmp_path: Path, database_url: str) -> Iterator[ServedHub]:
    with equipment_hub(tmp_path, database_url) as served:
        yield served


def _read(database_url: str, read: Any) -> Any:
    engine = db.make_engine(database_url)
    try:
        with engine.connect() as conn:
            return read(conn)
    finally:
        engine.dispose()


def test_a_coordinators_day_in_spanish(browser: Any, hub: ServedHub) -> None:
    base, url = hub.base, hub.database_url
    with signed_in_page(browser, base, COORDINATOR, COORDINATOR_PASSWORD) as (page, watched):
        # 1. Lend KIT-1 to a class.
        page.goto(f"{base}/equipment")
        page.get_by_role("link", name=re.compile("^Escanear")).first.click()
        page.wait_for_url(f"{base}/scan")
        usb_scan(page, "Código del kit o activo", "KIT-1")
        page.locator("#scan-result").get_by_role("heading", name=re.compile("KIT-1")).wait_for()
        page.get_by_label("Quién se lo lleva").fill(CLASS_NAME)
        page.get_by_label("Un grupo o curso").check()
        page.get_by_role("button", name="Prestar KIT-1").click()
        page.wait_for_url(f"{base}/scan/KIT-1")
        assert f"KIT-1 quedó prestado a {CLASS_NAME}" in page.get_by_role(
            "status").first.inner_text()
        loan = _read(url, lambda c: loans.open_loan_of(conn=c, asset_tag="KIT-1"))
        assert loan is not None and loan.borrower == CLASS_NAME

        # 2. It comes back with two jumper wires short: listed before the confirm.
        usb_scan(page, "Código del kit o activo", "KIT-1")
        # The page still shows KIT-1 from the lend: wait for this scan's own answer, which
        # replaces the panel (and the board field in it), as a person waits to read it.
        page.locator("form.scan .scan-said").filter(has_text="está prestado a").wait_for()
        page.get_by_role("button", name="Confirmar: KIT-1 volvió").wait_for()
        page.get_by_label("Escanee cada placa que volvió").focus()
        page.keyboard.type("UNO-1")
        with page.expect_navigation():  # the board field is a plain form: the page comes back
            page.keyboard.press("Enter")
        page.locator("section.side.missing").wait_for()
        page.get_by_label("Cable de puente: el kit lleva 40").fill("38")
        with page.expect_navigation():
            page.get_by_role("button", name="Volver a contar").click()
        assert page.locator("section.side.missing li").all_inner_texts() == [
            "2 × Cable de puente"]
        assert page.locator("section.side.extra li").all_inner_texts() == ["Nada"]
        assert _read(url, lambda c: assets.get_asset(conn=c, tag="KIT-1").status) == "on_loan"
        assert_accessible(page, "a kit coming back short")
        shot(page, "day-kit-back-es-360")
        page.get_by_role("button", name="Confirmar: KIT-1 volvió").click()
        page.wait_for_url(f"{base}/scan/KIT-1")
        assert _read(url, lambda c: assets.get_asset(conn=c, tag="KIT-1").status) == "available"
        losses = _read(url, lambda c: kits.list_losses(conn=c, kit_tag="KIT-1"))
        assert [(loss.part, loss.kind, loss.quantity) for loss in losses] == [("JMP", "model", 2)]

        # 3. Ship UNO-2 and UNO-3 to LAB-B; receive them there with one scan missing.
        page.goto(f"{base}/transfers/new")
        page.get_by_label("Desde (el laboratorio de donde sale)").select_option("LAB-A")
        page.get_by_label("Hacia (el laboratorio al que va)").select_option("LAB-B")
        page.get_by_role("button", name="Crear el borrador").click()
        page.get_by_role("heading", level=1, name="Traslado de LAB-A a LAB-B").wait_for()
        manifest = "Escanee un equipo para ponerlo en el traslado"
        for count, tag in enumerate(("UNO-2", "UNO-3"), start=1):
            usb_scan(page, manifest, tag)
            page.locator(".scan-said").filter(
                has_text=f"{tag} agregado: {count} en el traslado.").wait_for()
        page.get_by_label("Quién lo lleva").fill("Luis, conductor")
        page.get_by_role("button", name="Enviar 2 ítems a LAB-B").click()
        page.get_by_text("En tránsito", exact=True).wait_for()
        usb_scan(page, "Escanee cada ítem a medida que llega", "UNO-2")
        page.get_by_role("heading", name="Escaneados 1 de 2 enviados").wait_for()
        page.get_by_role("region", name="Faltan (1)").get_by_text("UNO-3").wait_for()
        assert_accessible(page, "a transfer's receipt with one scan missing")
        shot(page, "day-receipt-es-360")
        page.get_by_label("Sigue en tránsito (puede llegar después)").check()
        page.get_by_role("button", name="Confirmar la recepción").click()
        page.locator("p.state strong", has_text="Recibido").wait_for()
        shipped = _read(url, lambda c: transfers.list_transfers(conn=c)[1][0])
        assert shipped.status == "received" and shipped.scanned == ("UNO-2",)
        assert [(d.tag, d.kind) for d in shipped.discrepancies] == [("UNO-3", "missing")]
        assert _read(url, lambda c: assets.get_asset(conn=c, tag="UNO-2").site_code) == "LAB-B"

        # 4. An audit of LAB-A's shelves, then its report.
        page.goto(f"{base}/audits")
        page.get_by_label("Laboratorio que va a auditar").select_option("LAB-A")
        page.get_by_role("button", name="Empezar a escanear").click()
        page.get_by_role("heading", level=1, name="Auditoría en LAB-A").wait_for()
        shelf = "Escanee una etiqueta del estante o escriba su código"
        for tag in ("KIT-1", "UNO-1", "UNO-4", "PRN-1"):
            usb_scan(page, shelf, tag)
            page.locator(".part-found .tags .tag", has_text=tag).wait_for()
        assert_accessible(page, "an audit's scan session")
        page.get_by_role("button", name="Terminar la auditoría y ver el informe").click()
        page.get_by_role("heading", level=1, name="Informe de auditoría, LAB-A").wait_for()
        missing = page.locator(".part-missing").inner_text()
        assert "UNO-5" in missing and "KIT-2" in missing
        assert_accessible(page, "an audit's report")
        shot(page, "day-audit-report-es-360")
        report = _read(url, lambda c: audits.list_audits(conn=c))
        assert [a.status for a in report[1]] == ["finished"], report

        # 5. QR labels for two boards, previewed, then the PDF to print.
        page.goto(f"{base}/labels")
        page.get_by_label("Modelo", exact=True).select_option("UNO")
        page.get_by_role("button", name="Mostrar estos activos").click()
        for tag in ("UNO-4", "UNO-5"):
            page.get_by_role("checkbox", name=tag).check()
        page.get_by_role("button", name="Ver la hoja").click()
        page.get_by_role("status").filter(has_text="Etiquetas: 2. Páginas: 1.").wait_for()
        page.wait_for_function("() => { const i = document.querySelector('.preview-sheet img');"
                               " return i && i.complete && i.naturalWidth > 0; }")
        assert_accessible(page, "the labels page with its sheet")
        printed = page.request.get(base + str(page.get_by_role(
            "link", name="Imprimir las etiquetas").get_attribute("href")))
        assert printed.status == 200 and printed.headers["content-type"] == "application/pdf"
        assert printed.body().startswith(b"%PDF")
        watched.check()
