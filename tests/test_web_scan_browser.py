"""The scan page in Chromium, against ``labhub serve`` in a process of its own:

- a USB barcode scanner (keystrokes ending in Enter) lends a kit to a class and takes it
  back, with a board missing and one extra listed side by side before the confirm (SQLite
  and PostgreSQL);
- the phone's camera (Chromium's fake camera playing a video made from the code the hub's
  label encoder draws) reads a kit's label, and the kit is taken back;
- a printed label sheet scans back: the hub's SVG sheet is drawn by Chromium at a
  printer's resolution, one label cut out, tilted, blurred and set on a table as a phone
  camera would see it, and the camera flow reads its tag;
- the scan outbox: scans taken with the network gone and the tab then closed are sent,
  once each, when the page is back; scans taken after the session ended are kept and
  sent after signing in again.

axe-core checks every page state; screenshots ``scan-*`` at phone and laptop width.
Without Chromium or the ``playwright`` package the tests are skipped (tests/web_browser.py
says why); under ``CI=true`` they fail."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw, ImageFilter
from web_browser import (
    BROWSER_LOCALES,
    CHROMIUM,
    LAPTOP,
    PHONE,
    ServedHub,
    assert_accessible,
    missing,
    open_page,
    served_hub,
    shot,
    sign_in,
    signed_in_page,
)
from web_inventory_world import COORDINATOR, COORDINATOR_PASSWORD, make_equipment_world
from web_world import TEACHER, TEACHER_PASSWORD

from inventory import assets, loans, receipts
from inventory.labels import qr_matrix
from inventory.values import now_us
from labhub import db

FRAME = (640, 480)  # the fake camera's picture, as a phone's preview stream
TABLE_GREY = 96  # what is around a label on a table, darker than the paper
PAPER_AROUND_MM = 3  # white paper kept around a label cut out of the sheet


def _world(database_url: str, *, lend_kit: bool = False) -> None:
    engine = db.make_engine(database_url)
    try:
        if engine.dialect.name == "sqlite":
            db.upgrade(engine)
        make_equipment_world(engine)
        if lend_kit:
            with engine.begin() as conn:
                loans.check_out(conn=conn, asset_tags=["KIT-1"], borrower="7B",
                                borrower_kind="group", due_at=now_us() + 86_400_000_000,
                                by="Carla Gómez")
    finally:
        engine.dispose()


def _status(database_url: str, tag: str) -> str:
    engine = db.make_engine(database_url)
    try:
        with engine.connect() as conn:
            return assets.get_asset(conn=conn, tag=tag).status
    finally:
        engine.dispose()


def _received(database_url: str) -> int:
    engine = db.make_engine(database_url)
    try:
        with engine.connect() as conn:
            return receipts.received(conn=conn, subject="scan:LAB-A")
    finally:
        engine.dispose()


@pytest.fixture
def hub(tmp_path: Path, database_url: str) -> Iterator[ServedHub]:
    _world(database_url)
    with served_hub(tmp_path, database_url) as served:
        yield served


# -- the fake camera -------------------------------------------------------------------------

def write_y4m(picture: Image.Image, path: Path, frames: int = 3) -> Path:
    """``picture`` as a short YUV4MPEG2 video (4:2:0), which Chromium's fake camera plays
    in a loop (``--use-file-for-fake-video-capture``)."""
    width, height = picture.size
    assert width % 2 == 0 and height % 2 == 0
    luma, blue, red = picture.convert("RGB").convert("YCbCr").split()
    half = (width // 2, height // 2)
    planes = luma.tobytes() + blue.resize(half).tobytes() + red.resize(half).tobytes()
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            out.write(b"FRAME\n" + planes)
    return path


def label_from_matrix(tag: str, module_px: int = 7) -> Image.Image:
    """The code the hub's label encoder draws for ``tag`` (its quiet zone included)."""
    matrix = qr_matrix(tag)
    size = len(matrix) * module_px
    label = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(label)
    for y, row in enumerate(matrix):
        for x, dark in enumerate(row):
            if dark:
                draw.rectangle((x * module_px, y * module_px, (x + 1) * module_px - 1,
                                (y + 1) * module_px - 1), fill=0)
    return label


def on_the_table(label: Image.Image, *, width_px: int, tilt_deg: float = 0.0,
                 blur: float = 0.0) -> Image.Image:
    """A label as a phone camera sees it held over a table: ``width_px`` wide in the
    picture, tilted, a little out of focus, on a grey surround, off-white paper."""
    scaled = label.convert("L").resize(
        (width_px, round(label.height * width_px / label.width)), Image.Resampling.LANCZOS)
    paper = scaled.point(lambda v: 30 + v * 200 // 255)  # ink not black, paper not white
    turned = paper.rotate(tilt_deg, resample=Image.Resampling.BICUBIC, expand=True,
                          fillcolor=TABLE_GREY)
    frame = Image.new("L", FRAME, TABLE_GREY)
    frame.paste(turned, ((FRAME[0] - turned.width) // 2, (FRAME[1] - turned.height) // 2))
    return frame.filter(ImageFilter.GaussianBlur(blur)) if blur else frame


@contextmanager
def camera_browser(video: Path) -> Iterator[Any]:
    """Chromium with a fake camera that plays ``video`` and a browser that grants it
    (the shared ``browser`` fixture has no camera)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("the playwright package is not installed (pip install -e '.[dev]')")
    if not Path(CHROMIUM).exists():
        missing(f"no Chromium at {CHROMIUM} (scripts/test-services installs it)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream", f"--use-file-for-fake-video-capture={video}"])
        try:
            yield chromium
        finally:
            chromium.close()


def _said(page: Any) -> Any:
    return page.locator("form.scan .scan-said")


def _no_sideways_scroll(page: Any) -> None:
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], width


def _thumb_sized(page: Any) -> None:
    """Every button, field and choice of the page's main part is at least 44 px high."""
    small = page.evaluate("""() => Array.from(document.querySelectorAll(
        'main button, main input:not([type=hidden]):not([type=radio]), main select, main .choice'))
        .filter((e) => e.offsetParent !== null && e.getBoundingClientRect().height < 44)
        .map((e) => e.outerHTML.slice(0, 80))""")
    assert small == [], small


# -- a USB scanner ---------------------------------------------------------------------------

def test_a_usb_scanner_lends_a_kit_and_takes_it_back(browser: Any, hub: ServedHub) -> None:
    with signed_in_page(browser, hub.base, COORDINATOR, COORDINATOR_PASSWORD) as (page, watched):
        page.goto(f"{hub.base}/scan")
        field = page.get_by_label("Código del kit o activo")
        assert page.evaluate("() => document.activeElement.id") == "scan-code"
        assert_accessible(page, "the scan page")
        shot(page, "scan-phone-start")
        page.keyboard.type("KIT-1")  # a USB scanner types the label's text, then Enter
        page.keyboard.press("Enter")
        panel = page.locator("#scan-result")
        panel.get_by_role("heading", name=re.compile("KIT-1")).wait_for()
        assert _said(page).inner_text().endswith(
            "KIT-1 (Kit de robótica) está en el laboratorio: se puede prestar.")
        assert "outcome-ok" in (_said(page).get_attribute("class") or "")
        assert field.input_value() == ""  # ready for the next scan
        page.get_by_label("Quién se lo lleva").fill("Prof. Marta Ruiz, 7B")
        assert page.get_by_label("Un grupo o curso").is_checked()
        assert_accessible(page, "a kit to lend")
        _no_sideways_scroll(page)
        _thumb_sized(page)
        shot(page, "scan-phone-lend")
        page.set_viewport_size(LAPTOP)
        shot(page, "scan-laptop-lend")
        page.set_viewport_size(PHONE)
        page.get_by_role("button", name="Prestar KIT-1").click()
        page.wait_for_url(f"{hub.base}/scan/KIT-1")
        assert "KIT-1 quedó prestado a Prof. Marta Ruiz, 7B" in page.get_by_role(
            "status").first.inner_text()
        assert _status(hub.database_url, "KIT-1") == "on_loan"

        # Back: the kit, then its boards, each from the scanner into the focused field.
        field.focus()
        page.keyboard.type("KIT-1")
        page.keyboard.press("Enter")
        # The page already shows the kit (the lend's answer): wait for the scan's own.
        page.wait_for_function("() => document.querySelector('form.scan .scan-said')"
                               ".textContent.includes('está prestado a Prof. Marta Ruiz')")
        page.get_by_role("button", name="Confirmar: KIT-1 volvió").wait_for()
        page.get_by_label("Escanee cada placa que volvió").focus()
        page.keyboard.type("UNO-5")  # not this kit's: extra
        with page.expect_navigation():
            page.keyboard.press("Enter")
        page.locator("section.side.extra li", has_text="UNO-5").wait_for()
        assert page.evaluate("() => document.activeElement.id") == "back-board"
        page.get_by_label("Cable de puente: el kit lleva 40").fill("38")
        with page.expect_navigation():
            page.get_by_role("button", name="Volver a contar").click()
        missing_side = page.locator("section.side.missing")
        extra_side = page.locator("section.side.extra")
        assert missing_side.locator("li").all_inner_texts() == ["UNO-1", "2 × Cable de puente"]
        assert extra_side.locator("li").all_inner_texts() == ["UNO-5"]
        assert _status(hub.database_url, "KIT-1") == "on_loan"  # nothing confirmed yet
        assert_accessible(page, "a kit's check-in with missing and extra parts")
        _no_sideways_scroll(page)
        _thumb_sized(page)
        shot(page, "scan-phone-kit-back")
        page.set_viewport_size(LAPTOP)
        shot(page, "scan-laptop-kit-back")
        page.set_viewport_size(PHONE)
        page.get_by_role("button", name="Confirmar: KIT-1 volvió").click()
        page.wait_for_url(f"{hub.base}/scan/KIT-1")
        assert "KIT-1 volvió, con 3 faltantes y 1 de más" in page.get_by_role(
            "status").first.inner_text()
        assert _status(hub.database_url, "KIT-1") == "available"
        assert _status(hub.database_url, "UNO-1") == "lost"  # missing from the kit
        watched.check()


# -- the camera ------------------------------------------------------------------------------

@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_camera_reads_a_kits_label_and_takes_it_back(tmp_path: Path,
                                                         database_url: str) -> None:
    _world(database_url, lend_kit=True)
    video = write_y4m(on_the_table(label_from_matrix("KIT-1"), width_px=260, tilt_deg=3),
                      tmp_path / "kit-1.y4m")
    with served_hub(tmp_path, database_url) as served, camera_browser(video) as chromium, \
            signed_in_page(chromium, served.base, TEACHER, TEACHER_PASSWORD,
                           permissions=["camera"]) as (page, watched):
        fetched: list[str] = []
        page.on("request", lambda r: fetched.append(r.url))
        page.goto(f"{served.base}/scan")
        camera = page.get_by_role("button", name="Escanear con la cámara")
        camera.wait_for()  # shown: the device has a camera
        camera.click()
        view = page.locator("#scan-camera")
        view.wait_for()
        assert_accessible(page, "the scan page with the camera open")
        page.get_by_role("button", name="Confirmar: KIT-1 volvió").wait_for(timeout=20_000)
        assert view.is_hidden()  # one code read: the camera closed
        assert _said(page).inner_text().endswith("KIT-1 (Kit de robótica) está prestado a 7B "
                                                 "hasta el " + page.locator(
                                                     ".scan-facts dd").nth(2).inner_text() + ".")
        if page.evaluate("() => typeof BarcodeDetectionAPI !== 'undefined'"):
            # No QR reader of the browser's own (Chromium on Linux): the ponyfill read it,
            # its WebAssembly fetched from the hub.
            assert f"{served.base}/static/vendor/zxing_reader.wasm" in fetched, fetched
        else:
            assert page.evaluate("() => 'BarcodeDetector' in window")
        shot(page, "scan-phone-camera-read")
        # The boards' own camera button (in the answer the scan put in the page): the
        # kit's label is still in view, read into the boards field and sent; it lists
        # as extra (a kit is not one of its own boards).
        boards = page.locator(".scan-host")
        with page.expect_navigation():
            boards.get_by_role("button", name="Escanear con la cámara").click()
        assert page.locator("section.side.extra li").all_inner_texts() == ["KIT-1"]
        page.get_by_label("Escanee cada placa que volvió").fill("UNO-1")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert page.locator("section.side.missing li").all_inner_texts() == ["Nada"]
        assert_accessible(page, "a kit's check-in after the camera")
        page.get_by_role("button", name="Confirmar: KIT-1 volvió").click()
        page.wait_for_url(f"{served.base}/scan/KIT-1")
        assert "KIT-1 volvió, con 0 faltantes y 1 de más" in page.get_by_role(
            "status").first.inner_text()
        assert _status(database_url, "KIT-1") == "available"
        watched.check()  # the reader's files came from the hub, nothing from elsewhere


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_printed_label_sheet_scans_back(tmp_path: Path, database_url: str) -> None:
    _world(database_url)
    video = tmp_path / "uno-3.y4m"  # written below: the camera reads it when it opens
    with served_hub(tmp_path, database_url) as served, camera_browser(video) as chromium:
        # The sheet as the hub prints it, drawn by Chromium at 300 dpi (a printer).
        context, page, _ = open_page(chromium, served.base, viewport=LAPTOP,
                                     locale=BROWSER_LOCALES["es"],
                                     device_scale_factor=300 / 96)
        try:
            sign_in(page, served.base, COORDINATOR, COORDINATOR_PASSWORD)
            sheet = page.request.get(f"{served.base}/api/v1/labels.svg?tag=KIT-2&tag=UNO-3"
                                     "&tag=PRN-1&columns=3&rows=8")
            assert sheet.ok, sheet.text()
            svg = re.sub(r"^<\?xml[^>]*>\s*", "", sheet.text())
            page.set_content(f"<!DOCTYPE html><html><body>{svg}</body></html>")
            printed = tmp_path / "uno-3-printed.png"
            # The label cut out of the sheet with the paper around it (its code's quiet
            # zone is the paper's white, not drawn), as scissors would.
            box = page.locator('g.label[data-tag="UNO-3"]').bounding_box()
            assert box is not None
            paper = PAPER_AROUND_MM * 96 / 25.4
            page.screenshot(path=str(printed), clip={
                "x": box["x"] - paper, "y": box["y"] - paper,
                "width": box["width"] + 2 * paper, "height": box["height"] + 2 * paper})
        finally:
            context.close()
        label = Image.open(printed)
        assert label.width > 400  # 300 dpi: a ~6 cm label is ~700 px wide
        # Held over the table: a third of the picture, tilted 6 degrees, a little blurred.
        seen = on_the_table(label, width_px=300, tilt_deg=6, blur=0.8)
        write_y4m(seen, video)
        with signed_in_page(chromium, served.base, COORDINATOR, COORDINATOR_PASSWORD,
                            permissions=["camera"]) as (page, watched):
            page.goto(f"{served.base}/scan")
            page.get_by_role("button", name="Escanear con la cámara").click()
            page.get_by_role("heading", name=re.compile("UNO-3")).wait_for(timeout=20_000)
            assert _said(page).inner_text().endswith(
                "UNO-3 (Arduino Uno R3) está en el laboratorio: se puede prestar.")
            watched.check()


# -- the outbox ------------------------------------------------------------------------------

@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_scans_survive_a_lost_network_a_closed_tab_and_an_ended_session(
        browser: Any, hub: ServedHub) -> None:
    with signed_in_page(browser, hub.base, TEACHER, TEACHER_PASSWORD) as (page, watched):
        context = page.context
        page.goto(f"{hub.base}/scan")
        context.set_offline(True)
        for tag in ("UNO-2", "UNO-3"):
            page.keyboard.type(tag)
            page.keyboard.press("Enter")
        kept = "2 escaneos guardados en este dispositivo: se envían cuando el hub responda."
        page.wait_for_function("(words) => document.querySelector('form.scan .scan-said')"
                               ".textContent === words", arg=kept)
        assert page.evaluate("() => LabHubScan.outboxOf(document.querySelector('form.scan'))"
                             ".map((e) => e.fields.code)") == ["UNO-2", "UNO-3"]
        shot(page, "scan-phone-kept")
        page.close()  # the tab is closed while the network is still gone
        assert _received(hub.database_url) == 0

        context.set_offline(False)
        page = context.new_page()
        watched.attach(page)
        sent: list[str] = []
        page.on("request", lambda r: sent.append(r.post_data or "")
                if r.method == "POST" and r.url.endswith("/scan") else None)
        page.goto(f"{hub.base}/scan")  # the page sends what the device kept
        page.get_by_role("heading", name=re.compile("UNO-3")).wait_for()
        page.wait_for_function("() => !localStorage.getItem('labhub-scans:scan')")
        assert [re.search(r"code=([^&]+)", s).group(1) for s in sent] == [  # type: ignore[union-attr]
            "UNO-2", "UNO-3"]
        assert _received(hub.database_url) == 2  # each once

        # The session ends mid-flow: the scan is kept, and sent after signing in again.
        context.clear_cookies(name="labhub_session")
        page.keyboard.type("PRN-1")
        page.keyboard.press("Enter")
        again = page.get_by_role("link", name="Volver a entrar")
        again.wait_for()
        assert _said(page).inner_text().endswith(
            "Su sesión terminó. Inicie sesión de nuevo: el escaneo guardado en este "
            "dispositivo se envía entonces.")
        assert_accessible(page, "scans kept after the session ended")
        shot(page, "scan-phone-signed-out")
        other = context.new_page()
        sign_in(other, hub.base, TEACHER, TEACHER_PASSWORD)
        other.close()
        page.bring_to_front()
        page.get_by_role("heading", name=re.compile("PRN-1")).wait_for(timeout=15_000)
        assert again.is_hidden()
        assert _received(hub.database_url) == 3
        assert [re.search(r"code=([^&]+)", s).group(1) for s in sent].count(  # type: ignore[union-attr]
            "PRN-1") >= 1
        # What the browser logs of the sends that could not go: the network gone, and the
        # ended session's form value refused once (scan.js then reads the page's new one).
        expected = [e for e in watched.errors if "ERR_INTERNET_DISCONNECTED" in e
                    or "status of 403" in e]
        assert any("403" in e for e in expected) and len(expected) >= 2
        watched.errors = [e for e in watched.errors if e not in expected]
        watched.check()


def test_y4m_frames_hold_the_picture(tmp_path: Path) -> None:
    """The fake camera's video: a header, then frames of Y, U and V planes (4:2:0)."""
    picture = Image.new("L", (4, 2), 255)
    data = write_y4m(picture, tmp_path / "white.y4m", frames=2).read_bytes()
    header, _, rest = data.partition(b"\n")
    assert header == b"YUV4MPEG2 W4 H2 F10:1 Ip A1:1 C420jpeg"
    frame = b"FRAME\n" + bytes([255] * 8) + bytes([128] * 2) + bytes([128] * 2)
    assert rest == frame * 2
