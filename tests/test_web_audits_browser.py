"""The audit pages in Chromium, against ``labhub serve`` in a process of its own, on a
phone: a coordinator starts an audit and scans; **the network drops mid-audit**
(Playwright's offline mode) and the scans go on, kept on the device (the page says so,
and holds back the finish button while they wait);
the network comes back and every scan arrives, once (the database holds each tag once and
one receipt per scan). Then scans taken offline in a tab that is closed are sent when the
page is opened again online. The coordinator finishes, reads the report, reviews the
corrections and applies them. On SQLite and PostgreSQL, axe-core on every page; every page
screenshotted at 360 and 1366 px (test-artifacts/web/audits-*.png).

Without Chromium or the ``playwright`` package the tests are skipped (tests/web_browser.py
says why); under ``CI=true`` they fail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from waiting import wait_for
from web_browser import (
    LAPTOP,
    PHONE,
    ServedHub,
    assert_accessible,
    open_page,
    shot,
    sign_in,
    usb_scan,
)
from web_inventory_world import COORDINATOR, COORDINATOR_PASSWORD, equipment_hub

from inventory import audits
from inventory.tables import audit_scans, scan_receipts
from labhub import db

SCAN_FIELD = "Escanee una etiqueta del estante o escriba su código"
OUTBOX = ("() => Object.keys(localStorage).filter(k => k.startsWith('labhub-scans:'))"
          ".reduce((n, k) => n + JSON.parse(localStorage.getItem(k)).length, 0)")


@pytest.fixture
def hub(tmp_path: Path, database_url: str) -> Iterator[ServedHub]:
    with equipment_hub(tmp_path, database_url) as served:
        yield served


def _stored(database_url: str, audit: str) -> tuple[list[str], int]:
    """The audit's scanned tags (each row once) and its scan receipts, as stored."""
    engine = db.make_engine(database_url)
    try:
        with engine.connect() as conn:
            tags = conn.execute(select(audit_scans.c.tag).where(
                audit_scans.c.audit_uuid == audit).order_by(audit_scans.c.tag)).scalars().all()
            receipts = conn.execute(select(func.count()).select_from(scan_receipts).where(
                scan_receipts.c.subject == f"audit:{audit}")).scalar_one()
    finally:
        engine.dispose()
    return list(tags), int(receipts)


def _expected(error: str) -> bool:
    """Console errors this test causes on purpose: the fetches that fail while it holds the
    network down. (A reopened page that sends its outbox before the person touched it does
    not ask to vibrate: Chromium would refuse and log it.)"""
    return "ERR_INTERNET_DISCONNECTED" in error


def _scan(page: Any, tag: str) -> None:
    usb_scan(page, SCAN_FIELD, tag)


def _outbox_empty(page: Any) -> None:
    """Wait until the device's outbox holds no scan (the page's CSP forbids a string
    function for Playwright's wait_for_function, so the test polls)."""
    wait_for(lambda: page.evaluate(OUTBOX) == 0, timeout=30, what="the outbox to empty",
             state=lambda: page.evaluate(OUTBOX))


def _listed(page: Any, kind: str, tag: str) -> None:
    """Wait until ``tag`` shows in the session's ``kind`` list."""
    page.locator(f".part-{kind} .tags .tag", has_text=tag).wait_for()


def test_the_network_drops_mid_audit_and_every_scan_arrives_once(
        browser: Any, hub: ServedHub) -> None:
    context, page, watched = open_page(browser, hub.base, viewport=PHONE, locale="es-CO")
    try:
        sign_in(page, hub.base, COORDINATOR, COORDINATOR_PASSWORD)
        page.goto(f"{hub.base}/audits")
        assert_accessible(page, "audits, es")
        page.get_by_label("Laboratorio que va a auditar").select_option("LAB-A")
        page.get_by_role("button", name="Empezar a escanear").click()
        page.get_by_role("heading", level=1, name="Auditoría en LAB-A").wait_for()
        audit = page.url.rsplit("/", 1)[1]
        _scan(page, "UNO-1")
        _listed(page, "found", "UNO-1")
        page.get_by_role("status").filter(has_text="UNO-1 encontrado.").wait_for()
        assert_accessible(page, "an audit's scan session, es")

        context.set_offline(True)  # the network drops: the scans go on
        for tag in ("UNO-2", "UNO-3", "UNO-9"):
            _scan(page, tag)
        page.get_by_role("status").filter(
            has_text="3 escaneos guardados en este dispositivo").wait_for()
        assert page.evaluate(OUTBOX) == 3
        shot(page, "audits-offline-es-360")
        assert _stored(hub.database_url, audit) == (["UNO-1"], 1)

        context.set_offline(False)  # it returns: the outbox is sent, in order, once
        _outbox_empty(page)
        _listed(page, "found", "UNO-3")
        _listed(page, "unexpected", "UNO-9")
        assert _stored(hub.database_url, audit) == (["UNO-1", "UNO-2", "UNO-3", "UNO-9"], 4)

        context.set_offline(True)  # scans taken offline, then the tab is closed
        _scan(page, "UNO-4")
        _scan(page, "UNO-5")
        page.get_by_role("status").filter(has_text="2 escaneos guardados").wait_for()
        finish = page.get_by_role("button", name="Terminar la auditoría y ver el informe")
        finish.click()  # held back: the scans kept on the device would be refused after
        page.get_by_role("alert").filter(has_text="Todavía hay escaneos guardados").wait_for()
        assert page.url == f"{hub.base}/audits/{audit}" and page.evaluate(OUTBOX) == 2
        page.close()
        context.set_offline(False)
        page = context.new_page()
        watched.attach(page)
        page.goto(f"{hub.base}/audits/{audit}")  # opened again, online: they are sent
        _listed(page, "found", "UNO-5")
        _outbox_empty(page)
        tags, receipts = _stored(hub.database_url, audit)
        assert tags == ["UNO-1", "UNO-2", "UNO-3", "UNO-4", "UNO-5", "UNO-9"]
        assert receipts == 6  # one per scan taken: none sent twice, none lost

        page.get_by_role("button", name="Terminar la auditoría y ver el informe").click()
        page.get_by_role("heading", level=1, name="Informe de auditoría, LAB-A").wait_for()
        assert "KIT-1" in page.locator(".part-missing").inner_text()
        assert_accessible(page, "an audit's report, es")
        page.get_by_role("link", name="Revisar las correcciones").click()
        page.get_by_role("heading", level=1, name="Correcciones de la auditoría en LAB-A"
                         ).wait_for()
        assert "pasará de LAB-B a LAB-A" in page.locator(".changes").inner_text()
        assert_accessible(page, "an audit's corrections, es")
        page.get_by_role("button", name="Aplicar las correcciones").click()
        page.get_by_role("heading", level=1, name="Informe de auditoría, LAB-A").wait_for()
        assert "Correcciones aplicadas" in page.locator(".audit-facts").inner_text()
        watched.errors[:] = [e for e in watched.errors if not _expected(e)]
        watched.check()
    finally:
        context.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_audits_page_at_phone_and_laptop_widths(browser: Any, hub: ServedHub) -> None:
    engine = db.make_engine(hub.database_url)
    try:
        with engine.begin() as conn:
            done = audits.start_audit(conn=conn, site="LAB-B", by=COORDINATOR).uuid
            for tag in ("UNO-9", "UNO-2", "SIN-REGISTRO"):
                audits.scan_tag(conn=conn, audit_uuid=done, tag=tag, by=COORDINATOR)
            audits.finish_audit(conn=conn, audit_uuid=done, by=COORDINATOR)
            open_one = audits.start_audit(conn=conn, site="LAB-A", by=COORDINATOR).uuid
            for tag in ("UNO-1", "KIT-1", "UNO-9", "SIN-REGISTRO"):
                audits.scan_tag(conn=conn, audit_uuid=open_one, tag=tag, by=COORDINATOR)
            audits.record_count(conn=conn, audit_uuid=open_one, model_code="JMP",
                                quantity=95, by=COORDINATOR)
    finally:
        engine.dispose()
    context, page, watched = open_page(browser, hub.base, viewport=PHONE, locale="es-CO")
    try:
        sign_in(page, hub.base, COORDINATOR, COORDINATOR_PASSWORD)
        pages = {"list": "/audits", "session": f"/audits/{open_one}",
                 "report": f"/audits/{done}", "corrections": f"/audits/{done}/corrections"}
        for lang in ("es", "pt"):
            for width, size in (("360", PHONE), ("1366", LAPTOP)):
                page.set_viewport_size(size)
                for name, path in pages.items():
                    page.goto(f"{hub.base}{path}?lang={lang}")
                    assert page.locator("html").get_attribute("lang") == lang
                    assert page.evaluate("document.documentElement.scrollWidth") <= size["width"]
                    shot(page, f"audits-{name}-{lang}-{width}")
                    if width == "360":
                        assert_accessible(page, f"audits {name}, {lang}")
        watched.check()
    finally:
        context.close()
