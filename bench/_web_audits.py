"""The audit session's benchmark, part of ``bench/web.py``: scan to result on a real hub.

A fresh SQLite file gets two lab sites of ``assets`` tagged assets each (registered
through the inventory's own ``register_asset``) and an open audit at each; ``labhub serve``
runs on it in a process of its own. A coordinator signs in through the sign-in form, as a
phone would, and scans at the first site through the page's own route,
``POST /audits/{id}/scans`` with ``X-Scan: 1`` (as static/scan.js sends it): the hub
records the scan's key and the tag in one transaction and answers the three lists as an
HTML fragment. The baseline, in the same run, alternating scan for scan: the API's
``POST /api/v1/audits/{id}/scans`` (JSON, an API token) at the second site, which scans
the tag and answers a few fields. Each kind of scan is one of the site's own tags, but
every 20th one recorded at the other site (unexpected) and every 50th one nobody
registered (unknown). Timed: from sending the request to the whole answer read, over one
kept-alive connection each. Target: the page's p95 under 150 ms.
``--smoke``: 100 assets a site and 20 scans each.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode, urlsplit

if importlib.util.find_spec("labhub") is None:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import load_average, p95
from _web_chart import served

from inventory import assets, audits, catalog, sites
from labhub import db
from labhub.access import accounts, passwords
from labhub.access.permissions import Grant, Role

TARGET_MS = 150.0
SITE_ASSETS = 2_000  # a big Lab Center's tagged equipment
SCANS = 400
SMOKE_ASSETS, SMOKE_SCANS = 100, 20
NAME, PASSWORD = "Coordinación de bench", "una clave solo para medir"
BY = "bench"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def fill(url: str, per_site: int) -> tuple[str, dict[str, str]]:
    """The sites, assets, coordinator and audits; returns an API token and site -> audit."""
    engine = db.make_engine(url)
    try:
        db.upgrade(engine)
        with engine.begin() as conn:
            sites.create_site(conn=conn, code="BN", name="Bench network", kind="network",
                              by=BY)
            sites.create_site(conn=conn, code="BN-R", name="Bench region", kind="region",
                              parent_code="BN", by=BY)
            for code in ("BN-A", "BN-B"):
                sites.create_site(conn=conn, code=code, name=f"Lab {code}", kind="site",
                                  parent_code="BN-R", tier="lab_center", by=BY)
            catalog.create_model(conn=conn, code="UNO", name="Arduino Uno R3",
                                 category="microcontroller_board", by=BY)
            for code in ("BN-A", "BN-B"):
                for i in range(per_site):
                    assets.register_asset(conn=conn, tag=f"{code}-{i:05d}", model_code="UNO",
                                          site_code=code, by=BY)
            user = accounts.create_user(conn, name=NAME,
                                        password_hash=passwords.hash_password(PASSWORD),
                                        grants_given=[Grant(Role.COORDINATOR, "BN-R")])
            _, token = accounts.create_api_token(conn, user_id=user.id, name="bench")
            opened = {code: audits.start_audit(conn=conn, site=code, by=BY).uuid
                      for code in ("BN-A", "BN-B")}
    finally:
        engine.dispose()
    return token, opened


def _tag(site: str, other: str, i: int, per_site: int) -> str:
    """The i-th scan's tag at ``site``: its own, every 20th the other site's, every 50th
    one nobody registered."""
    if i % 50 == 49:
        return f"NONE-{site}-{i:05d}"
    if i % 20 == 19:
        return f"{other}-{i % per_site:05d}"
    return f"{site}-{i % per_site:05d}"


def _session(base: str) -> tuple[http.client.HTTPConnection, str]:
    """A connection signed in through the form, and its session cookie."""
    conn = http.client.HTTPConnection(urlsplit(base).netloc, timeout=30)
    conn.request("POST", "/signin?next=/", urlencode(
        {"way": "password", "name": NAME, "password": PASSWORD}), FORM)
    answer = conn.getresponse()
    answer.read()
    cookie = answer.getheader("Set-Cookie") or ""
    found = re.match(r"(labhub_session=[^;]+)", cookie)
    if answer.status != 303 or found is None:
        raise RuntimeError(f"sign-in failed: {answer.status}")
    return conn, found.group(1)


def _timed(conn: http.client.HTTPConnection, method: str, path: str, body: str,
           headers: dict[str, str]) -> tuple[float, int, str]:
    began = time.perf_counter()
    conn.request(method, path, body, headers)
    answer = conn.getresponse()
    text = answer.read()
    took = (time.perf_counter() - began) * 1000
    return took, answer.status, answer.getheader("X-Scan-Outcome") or text[:200].decode()


def measure(smoke: bool) -> list[str]:
    """The audit session's lines for ``bench/web.py``: page and API p95, and their ratio."""
    per_site, scans = (SMOKE_ASSETS, SMOKE_SCANS) if smoke else (SITE_ASSETS, SCANS)
    lines = [f"audit scan to result: {per_site:,} assets at the audited site (and as many "
             f"at another), {scans} scans each way, SQLite; from the request sent to the "
             "answer read"]
    lines.append(f"  load average before: {load_average()}")
    with tempfile.TemporaryDirectory(prefix="labhub-bench-audits-") as tmp:
        directory = Path(tmp)
        url = f"sqlite:///{directory}/hub.db"
        began = time.perf_counter()
        token, opened = fill(url, per_site)
        lines.append(f"  filled in {time.perf_counter() - began:.1f} s")
        with served(url, directory) as base:
            page, cookie = _session(base)
            page.request("GET", f"/audits/{opened['BN-A']}", headers={"Cookie": cookie})
            answer = page.getresponse()
            html = answer.read().decode()
            found = re.search(r'name="csrf_token" value="([^"]+)"', html)
            if answer.status != 200 or found is None:
                raise RuntimeError(f"the session page answered {answer.status}")
            csrf = found.group(1)
            api = http.client.HTTPConnection(urlsplit(base).netloc, timeout=30)
            page_ms: list[float] = []
            api_ms: list[float] = []
            sizes: list[int] = []
            for i in range(-1, scans):  # i = -1: one untimed warm-up of each
                n = max(i, 0) + (scans if i < 0 else 0)
                tag = _tag("BN-A", "BN-B", n, per_site)
                took, status, outcome = _timed(
                    page, "POST", f"/audits/{opened['BN-A']}/scans",
                    urlencode({"csrf_token": csrf, "code": tag, "scan_id": str(uuid.uuid4())}),
                    FORM | {"Cookie": cookie, "X-Scan": "1"})
                if status != 200 or outcome not in ("ok", "warn", "again"):
                    raise RuntimeError(f"page scan {tag}: {status} {outcome}")
                tag = _tag("BN-B", "BN-A", n, per_site)
                took_api, status, outcome = _timed(
                    api, "POST", f"/api/v1/audits/{opened['BN-B']}/scans",
                    json.dumps({"tag": tag}),
                    {"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
                if status != 200:
                    raise RuntimeError(f"API scan {tag}: {status} {outcome}")
                if i >= 0:
                    page_ms.append(took)
                    api_ms.append(took_api)
            page.request("POST", f"/audits/{opened['BN-A']}/scans", urlencode(
                {"csrf_token": csrf, "code": "BN-A-00000", "scan_id": str(uuid.uuid4())}),
                FORM | {"Cookie": cookie, "X-Scan": "1"})
            sizes.append(len(page.getresponse().read()))
            page.close()
            api.close()
    p_page, p_api = p95(page_ms), p95(api_ms)
    m_page, m_api = statistics.median(page_ms), statistics.median(api_ms)
    verdict = "target met" if p_page < TARGET_MS else "target missed"
    lines += [
        f"  page (POST /audits/{{id}}/scans, the lists' fragment of {sizes[0]:,} bytes): "
        f"median {m_page:.1f} ms, p95 {p_page:.1f} ms, max {max(page_ms):.1f} ms",
        f"  API (POST /api/v1/audits/{{id}}/scans, JSON): median {m_api:.1f} ms, "
        f"p95 {p_api:.1f} ms, max {max(api_ms):.1f} ms",
        f"  load average after: {load_average()}",
        f"  target: page p95 under {TARGET_MS:.0f} ms: {verdict}",
        f"  ratio: page / API, median {m_page / m_api:.1f}, p95 {p_page / p_api:.1f}",
    ]
    return lines


if __name__ == "__main__":
    for line in measure("--smoke" in sys.argv):
        print(line, flush=True)
