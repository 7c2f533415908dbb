"""The assets pages' benchmark, part of ``bench/web.py``: at network scale (1,000 sites,
100,000 assets, 1,000,000 history events, built by ``bench/equipment.py``'s own builder),
the asset search page with filters and one asset's timeline of 1,000 events, paged, from
request to rendered DOM in Chromium; beside each, the API's JSON for the same query (the
baseline, in the same run, the same hub and the same browser).

``labhub serve`` runs on the built SQLite file in a process of its own; Chromium (Debian's,
through Playwright) opens each address as an admin (an API token sent with every
request). A time is the browser's navigation timing of that load: from the request's
start to the end of ``DOMContentLoaded`` (the page parsed, its stylesheets applied, its
deferred scripts run), read after each load; the JSON's is the same span for Chromium's
view of the JSON. Loads alternate page, JSON, page, ... so both see the same machine.

- search: ``/assets?site=<region>&status=<status>`` (a region's ~10,000 assets, one
  status, the first page of 25 and the total), regions and statuses in turn; baseline
  ``/api/v1/assets?site=&status=&limit=25``. Also the same with a text (``q=Placa``):
  a substring of the tag, serial or model name, which no index answers;
- timeline: ``/assets/<tag>?offset=N`` of an asset with 1,000 more events (pages of 50 at
  offsets 0, 500 and 950 in turn); baseline ``/api/v1/history/<tag>`` (every event).

Targets (issue 14): p95 under 300 ms for both pages. ``--smoke``: 2,000 assets and
10,000 events, three loads each.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

if importlib.util.find_spec("labhub") is None:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import equipment
from _common import load_average, p95
from _web_chart import CHROMIUM, served

from labhub import db
from labhub.access import accounts
from labhub.access.caller import NETWORK
from labhub.access.permissions import Grant, Role

TARGET_MS = 300.0
TIMELINE_EVENTS = 1_000  # the busy asset
TIMELINE_OFFSETS = (0, 500, 950)
STATUSES = ("available", "on_loan", "in_repair")
TEXT = "Placa"  # part of six boards' model names: about a third of a region's assets
NAVIGATION = """() => { const n = performance.getEntriesByType("navigation")[0];
  return [n.domContentLoadedEventEnd - n.startTime, n.responseEnd - n.startTime]; }"""


def _network(path: Path, smoke: bool) -> equipment.Network:
    args = argparse.Namespace(assets=2_000 if smoke else 100_000, kits=100 if smoke else 5_000,
                              events=10_000 if smoke else 1_000_000, seed=1)
    return equipment.build(path, args)


def _busy_asset(path: Path, net: equipment.Network) -> str:
    """An asset (not a kit) with ``TIMELINE_EVENTS`` more events: loans out and back,
    at its own site."""
    import sqlite3

    raw = sqlite3.connect(path)
    try:
        tag, site = raw.execute("SELECT tag, site_code FROM assets WHERE tag LIKE 'A-%' "
                                "ORDER BY tag LIMIT 1").fetchone()
        last = raw.execute("SELECT max(at) FROM events").fetchone()[0]
        rows = []
        for i in range(TIMELINE_EVENTS):
            out = i % 2 == 0
            state = ({"status": "on_loan", "borrower": f"Grupo {i // 2}", "loan": str(i)}
                     if out else {"status": "available", "condition": "good"})
            rows.append((str(uuid.uuid4()), last + 1 + i * 1_000_000,
                         "AssetCheckedOut" if out else "AssetCheckedIn", tag, "bench", site,
                         None, json.dumps(state), "clase de robótica" if out else None))
        raw.executemany(equipment.EVENT_INSERT, rows)
        raw.commit()
    finally:
        raw.close()
    return str(tag)


def _token(url: str) -> str:
    engine = db.make_engine(url)
    try:
        with engine.begin() as conn:
            user = accounts.create_user(conn, name="bench-admin", password_hash=None,
                                        grants_given=[Grant(Role.ADMIN, NETWORK)])
            _, token = accounts.create_api_token(conn, user_id=user.id, name="bench")
    finally:
        engine.dispose()
    return token


def _load(page: Any, url: str) -> float:
    """ms from the request's start to DOMContentLoaded's end of ``url``."""
    answer = page.goto(url, wait_until="domcontentloaded")
    if answer is None or answer.status != 200:
        raise RuntimeError(f"{url}: {None if answer is None else answer.status}")
    return float(page.evaluate(NAVIGATION)[0])


def _pair(page: Any, pages: list[str], apis: list[str], runs: int
          ) -> tuple[list[float], list[float]]:
    """Page and API loads alternating, ``runs`` of each, over the addresses in turn."""
    _load(page, pages[0])  # warm: templates compiled, caches filled
    _load(page, apis[0])
    measured, baseline = [], []
    for k in range(runs):
        measured.append(_load(page, pages[k % len(pages)]))
        baseline.append(_load(page, apis[k % len(apis)]))
    return measured, baseline


def _line(name: str, measured: list[float], baseline: list[float]) -> list[str]:
    m, b = statistics.median(measured), statistics.median(baseline)
    verdict = "target met" if p95(measured) < TARGET_MS else "target missed"
    return [f"  {name}: page p50 {m:.0f} ms, p95 {p95(measured):.0f} ms of {len(measured)} "
            f"({verdict}: p95 under {TARGET_MS:.0f} ms); the API's JSON p50 {b:.0f} ms, "
            f"p95 {p95(baseline):.0f} ms; ratio page / JSON (p50) {m / b:.2f}"]


def measure(smoke: bool) -> list[str]:
    """The assets pages' lines for ``bench/web.py``."""
    from playwright.sync_api import sync_playwright

    runs = 3 if smoke else 30
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="labhub-bench-assets-") as tmp:
        directory = Path(tmp)
        path = directory / "hub.db"
        began = time.perf_counter()
        net = _network(path, smoke)
        tag = _busy_asset(path, net)
        url = f"sqlite:///{path}"
        token = _token(url)
        lines.append(f"assets pages: {equipment.SITES:,} sites, {net.assets:,} assets, "
                     f"{net.events + TIMELINE_EVENTS:,} history events (bench/equipment.py's "
                     f"builder, {time.perf_counter() - began:.0f} s), SQLite; request to "
                     "DOMContentLoaded in Chromium")
        lines.append(f"  load average before: {load_average()}")
        searches = [(region, STATUSES[i % len(STATUSES)])
                    for i, region in enumerate(net.regions)]
        with served(url, directory) as base, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                                 args=["--no-sandbox"])
            try:
                context = browser.new_context(
                    viewport={"width": 360, "height": 740}, locale="es-CO",
                    extra_http_headers={"Authorization": f"Bearer {token}"})
                page = context.new_page()
                found = _pair(
                    page, [f"{base}/assets?site={r}&status={s}" for r, s in searches],
                    [f"{base}/api/v1/assets?site={r}&status={s}&limit=25"
                     for r, s in searches], runs)
                texts = _pair(
                    page, [f"{base}/assets?site={r}&status={s}&q={TEXT}" for r, s in searches],
                    [f"{base}/api/v1/assets?site={r}&status={s}&search={TEXT}&limit=25"
                     for r, s in searches], runs)
                timeline = _pair(
                    page, [f"{base}/assets/{tag}?offset={o}" for o in TIMELINE_OFFSETS],
                    [f"{base}/api/v1/history/{tag}"], runs)
                context.close()
            finally:
                browser.close()
    lines += _line("search (a region, a status)", *found)
    lines += _line(f"search with text (q={TEXT})", *texts)
    lines += _line(f"timeline of {TIMELINE_EVENTS + 1:,} events, pages of 50 at offsets "
                   f"{', '.join(map(str, TIMELINE_OFFSETS))} (JSON: every event)", *timeline)
    lines.append(f"  load average after: {load_average()}")
    return lines


if __name__ == "__main__":
    for line in measure("--smoke" in sys.argv):
        print(line, flush=True)
