"""Every equipment page in Spanish, Portuguese and English, in Chromium at a phone's
width: each answers 200 in the language asked for, shows the menu's words of that
language, does not scroll sideways, and axe-core finds no WCAG A/AA violation on it. The
lab has a loan, a draft transfer, a planned rotation and an open audit, so that every page
has something to show. Each part's own tests go deeper; this one sweeps them all.
Screenshots ``equipment-<page>-<lang>-360`` for a person to look at.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from web_browser import ServedHub, assert_accessible, served_hub, shot, signed_in_page
from web_inventory_world import BY, COORDINATOR, COORDINATOR_PASSWORD, equipment_world_at

from inventory import assets, audits, loans, rotations, transfers
from inventory.values import now_us
from labhub import db

WEEK_US = 7 * 86_400_000_000
# The menu's "Equipment", which every equipment page shows, in each language.
MENU_WORD = {"es": "Equipos", "pt": "Equipamentos", "en": "Equipment"}


@pytest.fixture
def hub(tmp_path: Path, database_url: str) -> Iterator[tuple[ServedHub, dict[str, str]]]:
    """The equipment lab with one of each thing a page shows, and their ids."""
    equipment_world_at(database_url)
    engine = db.make_engine(database_url)
    try:
        with engine.begin() as conn:
            loan = loans.check_out(conn=conn, asset_tags=["UNO-2"], borrower="7°B",
                                   borrower_kind="group", due_at=now_us() + WEEK_US, by=BY)
            transfer = transfers.draft_transfer(conn=conn, from_site="LAB-A", to_site="LAB-B",
                                                tags=["UNO-3"], by=BY)
            assets.register_asset(conn=conn, tag="ML-1", model_code="UNO", site_code="VL-ML-1",
                                  by=BY)
            rotations.add_to_manifest(conn=conn, mobile_lab="VL-ML-1", tag="ML-1", by=BY)
            rotation = rotations.plan_rotation(
                conn=conn, mobile_lab="VL-ML-1", name="Ruta norte", by=BY,
                stops=[("LAB-A", "2027-03-01", "2027-03-05")])
            audit = audits.start_audit(conn=conn, site="LAB-A", by=BY)
            audits.scan_tag(conn=conn, audit_uuid=audit.uuid, tag="UNO-1", by=BY)
    finally:
        engine.dispose()
    ids = {"loan": loan.uuid, "transfer": transfer.uuid, "rotation": rotation.uuid,
           "audit": audit.uuid}
    with served_hub(tmp_path, database_url) as served:
        yield served, ids


def _pages(ids: dict[str, str]) -> dict[str, str]:
    return {
        "index": "/equipment",
        "sites": "/sites", "site-lab": "/sites/LAB-A", "site-region": "/sites/VL-R1",
        "assets": "/assets", "asset": "/assets/UNO-2",
        "kits": "/kits", "kit": "/kits/KIT-1",
        "stock": "/stock", "stock-low": "/stock/low",
        "stock-item": "/stock/item?site=LAB-A&model=JMP",
        "scan": "/scan", "scan-item": "/scan/UNO-2",
        "loans": "/loans", "loans-overdue": "/loans?overdue=1", "loan-new": "/loans/new",
        "loan": f"/loans/{ids['loan']}",
        "transfers": "/transfers", "transfer-new": "/transfers/new",
        "transfer": f"/transfers/{ids['transfer']}",
        "rotations": "/rotations", "rotation-new": "/rotations/new",
        "rotation": f"/rotations/{ids['rotation']}",
        "rotation-stop": f"/rotations/{ids['rotation']}/stops/1",
        "manifest": "/rotations/manifests/VL-ML-1",
        "audits": "/audits", "audit": f"/audits/{ids['audit']}",
        "labels": "/labels", "labels-sheet": "/labels?tag=UNO-1&tag=KIT-1&show=1",
        "import": "/import",
    }


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_equipment_page_in_three_languages_passes_axe(
        browser: Any, hub: tuple[ServedHub, dict[str, str]]) -> None:
    served, ids = hub
    with signed_in_page(browser, served.base, COORDINATOR, COORDINATOR_PASSWORD) as (
            page, watched):
        for lang in ("es", "pt", "en"):
            for name, path in _pages(ids).items():
                joiner = "&" if "?" in path else "?"
                answer = page.goto(f"{served.base}{path}{joiner}lang={lang}")
                assert answer is not None and answer.status == 200, (lang, path)
                assert page.locator("html").get_attribute("lang") == lang, path
                menu = page.get_by_role("navigation", name={"es": "Menú", "pt": "Menu",
                                                            "en": "Menu"}[lang])
                assert MENU_WORD[lang] in menu.inner_text(), (lang, path)
                width = page.evaluate("() => document.documentElement.scrollWidth")
                assert width <= page.viewport_size["width"], (lang, path, width)
                assert_accessible(page, f"{path} ({lang})")
                if lang != "es":  # the parts' own tests keep the Spanish ones
                    shot(page, f"equipment-{name}-{lang}-360")
        watched.check()
