"""The labels and import pages in Chromium, against ``labhub serve`` in a process of its
own, on SQLite and PostgreSQL: a coordinator, in Spanish on a phone, finds the boards,
ticks three, sees the sheet's preview (the SVG drawn by the hub, loaded as an image) and
gets the PDF from "Print"; then imports a CSV with one bad row, reads the error beside its
row and column, uploads the fixed file and imports it. axe-core on each page; screenshots
``labels-*`` and ``imports-*`` at 360 and 1366 px. Without Chromium the tests are skipped
(tests/web_browser.py says why); under ``CI=true`` they fail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from web_browser import LAPTOP, PHONE, assert_accessible, served_hub, shot, signed_in_page
from web_inventory_world import COORDINATOR, COORDINATOR_PASSWORD, equipment_world_at

BAD = "etiqueta;modelo;sede\nUNO-30;UNO;LAB-A\nUNO-31;ARDUINO-X;LAB-A\n"
FIXED = "etiqueta;modelo;sede\nUNO-30;UNO;LAB-A\nUNO-31;UNO;LAB-A\n"


def _csv(text: str) -> dict[str, Any]:
    return {"name": "inventario.csv", "mimeType": "text/csv", "buffer": text.encode()}


def test_a_coordinator_prints_labels_and_imports_a_file(
        browser: Any, database_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    equipment_world_at(database_url)
    first = database_url.startswith("sqlite")
    with served_hub(tmp_path, database_url) as hub, \
            signed_in_page(browser, hub.base, COORDINATOR, COORDINATOR_PASSWORD,
                           viewport=PHONE) as (page, watched):
        page.goto(f"{hub.base}/labels")
        page.get_by_label("Modelo", exact=True).select_option("UNO")
        page.get_by_role("button", name="Mostrar estos activos").click()
        expect(page.get_by_role("heading", name="Activos encontrados: 6")).to_be_visible()
        for tag in ("UNO-2", "UNO-3", "UNO-4"):
            page.get_by_role("checkbox", name=tag).check()
        page.get_by_role("button", name="Ver la hoja").click()
        expect(page.get_by_role("status").filter(has_text="Etiquetas: 3. Páginas: 1.")
               ).to_be_visible()
        preview = page.get_by_role("img", name="Página 1 de 1 de la hoja de etiquetas")
        expect(preview).to_be_visible()
        page.wait_for_function("() => { const i = document.querySelector('.preview-sheet img');"
                               " return i && i.complete && i.naturalWidth > 0; }")
        for tag in ("UNO-2", "UNO-3", "UNO-4"):  # still ticked after showing the sheet
            expect(page.get_by_role("checkbox", name=tag)).to_be_checked()
        assert_accessible(page, "the labels page with its sheet")
        if first:
            shot(page, "labels-es-360")
        printed = page.request.get(hub.base + str(
            page.get_by_role("link", name="Imprimir las etiquetas").get_attribute("href")))
        assert printed.status == 200 and printed.headers["content-type"] == "application/pdf"
        assert printed.body().startswith(b"%PDF")
        # The small printer's format: one label a page, three pages.
        page.get_by_label("Una etiqueta de 50 × 30 mm por página").check()
        page.get_by_role("button", name="Ver la hoja").click()
        expect(page.get_by_role("status").filter(has_text="Etiquetas: 3. Páginas: 3.")
               ).to_be_visible()
        if first:
            page.set_viewport_size(LAPTOP)
            page.wait_for_function("() => document.querySelector('.preview-sheet img')"
                                   ".naturalWidth > 0")
            shot(page, "labels-small-es-1366")
            page.set_viewport_size(PHONE)

        page.goto(f"{hub.base}/import")
        page.get_by_label("Activos", exact=True).check()
        page.get_by_label("Archivo CSV").set_input_files(_csv(BAD))
        page.get_by_role("button", name="Revisar el archivo").click()
        expect(page.get_by_role("alert")).to_contain_text("Filas con errores: 1 de 2.")
        row = page.get_by_role("row").filter(has_text="la columna modelo")
        expect(row).to_contain_text("No hay ningún modelo con este código en el catálogo.")
        expect(row.get_by_role("cell").first).to_have_text("3")
        assert_accessible(page, "the import page with a file's errors")
        assert watched.errors and all("422" in e for e in watched.errors), watched.errors
        watched.errors.clear()  # the page's own status: the file has errors
        if first:
            shot(page, "imports-errors-es-360")
            page.set_viewport_size(LAPTOP)
            shot(page, "imports-errors-es-1366")
            page.set_viewport_size(PHONE)
        page.get_by_label("Archivo CSV").set_input_files(_csv(FIXED))
        page.get_by_role("button", name="Revisar el archivo").click()
        expect(page.get_by_role("status")).to_contain_text(
            "Filas revisadas: 2 (Activos). Todas están bien.")
        assert_accessible(page, "the import page, ready")
        if first:
            shot(page, "imports-ready-es-360")
        page.get_by_role("button", name="Importar estas filas").click()
        expect(page.get_by_role("status")).to_have_text("Filas importadas: 2 (Activos).")
        assert_accessible(page, "the import page after an import")
        # The imported boards are there to label.
        page.goto(f"{hub.base}/labels?q=UNO-3")
        expect(page.get_by_role("checkbox", name="UNO-31")).to_be_visible()
        if first:
            page.set_viewport_size(LAPTOP)
            page.goto(f"{hub.base}/labels?" + "&".join(f"tag=UNO-{i}" for i in range(1, 6))
                      + "&tag=KIT-1&tag=PRN-1&show=1")
            page.wait_for_function("() => document.querySelector('.preview-sheet img')"
                                   ".naturalWidth > 0")
            assert_accessible(page, "the labels page at 1366 px")
            shot(page, "labels-es-1366")
        watched.check()
