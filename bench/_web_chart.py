"""The chart page's benchmark, part of ``bench/web.py``: one week of 1 Hz readings
(604,800) in 500 buckets, fetched and drawn in Chromium; beside it, the same chart drawn
from every raw reading (the baseline, in the same run and the same page).

A fresh SQLite file in a temporary directory gets one series of a week, filled through
the readings domain's own writer (``ReadingStore.writer``), with a suspect reading every
hour; ``labhub serve`` runs on it in a process of its own; Chromium (Debian's, through
Playwright) opens ``/charts`` for the week as an admin (an API token sent with every
request). The time is chart.js's own (``data-drawn-ms``: from asking the API to the end
of uPlot's first draw, suspect marks included), read after each of ``runs`` loads:

- buckets: the "Whole range" button, which asks ``GET /api/v1/readings?buckets=500``
  again and draws (the page holds the range's suspect readings: no ``/charts/suspect``);
- raw: a second figure with ``data-raw="true"``, which pages through
  ``GET /api/v1/readings`` (1,000 readings a page, the API's largest) and draws every
  reading.

Beside them, the page itself: opened to its chart drawn (the hub renders the summary and
table, which scan the range once, then chart.js fetches and draws). Target: buckets under
300 ms. ``--smoke``: two hours of readings, one run each.
"""

from __future__ import annotations

import importlib.util
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

if importlib.util.find_spec("labhub") is None:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import free_port, load_average

from labhub import db
from labhub.access import accounts
from labhub.access.caller import NETWORK
from labhub.access.permissions import Grant, Role
from sensors.storage import FLAG_SUSPECT, ReadingStore

CHROMIUM = "/usr/bin/chromium"
US = 1_000_000
WEEK_S = 7 * 86_400
SMOKE_S = 2 * 3600
TARGET_MS = 300.0
WRITE_ROWS = 50_000  # readings per transaction while filling
START_US = 1_779_999_960 * US  # 2026-05-28 20:26 UTC: a fixed week on a whole minute


def fill(url: str, seconds: int) -> str:
    """The series ``station/temp`` with one reading a second for ``seconds``, and an admin
    token; returns the token."""
    engine = db.make_engine(url)
    try:
        db.upgrade(engine)
        store = ReadingStore(engine)
        sid = store.ensure_series(device="station", channel="temp", quantity="temperature",
                                  unit="degC", site=None).id
        writer = store.writer()
        try:
            for chunk in range(0, seconds, WRITE_ROWS):
                writer.write([[
                    (sid, START_US + i * US,
                     20.0 + 6.0 * math.sin(2 * math.pi * i / 86_400) + (i % 7) * 0.05,
                     FLAG_SUSPECT if i % 3600 == 1800 else 0)
                    for i in range(chunk, min(chunk + WRITE_ROWS, seconds))]])
        finally:
            writer.close()
        with engine.begin() as conn:
            user = accounts.create_user(conn, name="bench-admin", password_hash=None,
                                        grants_given=[Grant(Role.ADMIN, NETWORK)])
            _, token = accounts.create_api_token(conn, user_id=user.id, name="bench")
    finally:
        engine.dispose()
    return token


@contextmanager
def served(url: str, directory: Path) -> Iterator[str]:
    """``labhub serve`` on ``url``: its base URL until the block ends."""
    port = free_port()
    labhub = str(Path(sys.executable).with_name("labhub"))
    log = (directory / "serve.log").open("wb")
    process = subprocess.Popen(
        [labhub, "serve", "--port", str(port)],
        env={"PATH": os.environ.get("PATH", ""), "LABHUB_CONFIG": os.devnull,
             "LABHUB_DATA_DIR": str(directory / "data"), "LABHUB_DATABASE_URL": url,
             "LABHUB_SERIAL_SCAN": "false", "LABHUB_LOG_LEVEL": "warning"},
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError("labhub serve ended: " + (directory / "serve.log").read_text())
            try:
                with urllib.request.urlopen(f"{base}/api/v1/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("labhub serve did not answer within 30 s")
            time.sleep(0.1)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


RAW_FIGURE = """() => {
  const shown = document.querySelector("figure.chart");
  const raw = shown.cloneNode(false);
  raw.removeAttribute("data-mounted"); raw.removeAttribute("data-drawn");
  raw.dataset.raw = "true";
  raw.id = "raw";
  for (const name of ["chart-plot", "chart-status"]) {
    const part = document.createElement(name === "chart-plot" ? "div" : "p");
    part.className = name;
    raw.appendChild(part);
  }
  shown.after(raw);
  window.LabHubChart.mount(raw);
}"""


def _drawn(page: Any, selector: str, count: int, timeout_s: float) -> tuple[float, float]:
    """(ms to drawn, ms of it fetching) of the ``count``-th load of the figure."""
    page.wait_for_selector(f"{selector}[data-drawn='{count}']", timeout=timeout_s * 1000)
    figure = page.locator(selector)
    return (float(figure.get_attribute("data-drawn-ms")),
            float(figure.get_attribute("data-fetched-ms")))


def measure(smoke: bool) -> list[str]:
    """The chart's lines for ``bench/web.py``: buckets and raw times, and their ratio."""
    from playwright.sync_api import sync_playwright

    seconds = SMOKE_S if smoke else WEEK_S
    runs_buckets, runs_raw = (1, 1) if smoke else (7, 3)
    lines = [f"chart: {seconds:,} readings at 1 Hz ({seconds / 86_400:.2f} days), "
             f"one series, SQLite; chart.js's time from asking the API to uPlot's draw"]
    lines.append(f"  load average before: {load_average()}")
    with tempfile.TemporaryDirectory(prefix="labhub-bench-chart-") as tmp:
        directory = Path(tmp)
        url = f"sqlite:///{directory}/hub.db"
        began = time.perf_counter()
        token = fill(url, seconds)
        lines.append(f"  filled in {time.perf_counter() - began:.1f} s")
        end = START_US + seconds * US
        query = urlencode({"s": "station/temp", "range": "custom", "lang": "en",
                           "start": _local(START_US), "end": _local(end)})
        with served(url, directory) as base, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                                 args=["--no-sandbox"])
            try:
                context = browser.new_context(
                    viewport={"width": 1366, "height": 768},
                    extra_http_headers={"Authorization": f"Bearer {token}"})
                page = context.new_page()
                page.goto(f"{base}/charts?{query}")
                _drawn(page, "figure.chart", 1, 60)  # warm: the first load compiles
                buckets = []
                for k in range(runs_buckets):
                    page.get_by_role("button", name="Whole range").click()
                    buckets.append(_drawn(page, "figure.chart", k + 2, 60))
                opened = []
                for _ in range(runs_buckets):
                    began = time.perf_counter()
                    page.goto(f"{base}/charts?{query}")
                    _drawn(page, "figure.chart", 1, 60)
                    opened.append((time.perf_counter() - began) * 1000)
                points = page.locator("figure.chart").get_attribute("data-points")
                marks = page.locator("figure.chart").get_attribute("data-suspect")
                raw = []
                for k in range(runs_raw):
                    if k:
                        page.reload()
                        _drawn(page, "figure.chart", 1, 60)
                    page.evaluate(RAW_FIGURE)
                    raw.append(_drawn(page, "#raw", 1, 600))
                raw_points = page.locator("#raw").get_attribute("data-points")
                context.close()
            finally:
                browser.close()
    b, r = statistics.median(t for t, _ in buckets), statistics.median(t for t, _ in raw)
    verdict = "target met" if b < TARGET_MS else "target missed"
    lines += [
        f"  buckets: {points} buckets, {marks} suspect marks: median {b:.0f} ms of "
        f"{len(buckets)} ({_times(buckets)})",
        f"  raw: {raw_points} readings in pages of 1,000: median {r:.0f} ms of {len(raw)} "
        f"({_times(raw)})",
        f"  the page opened to its chart drawn (the hub renders the summary and table: "
        f"24 buckets and the suspect readings' scan): median "
        f"{statistics.median(opened):.0f} ms of {len(opened)}",
        f"  load average after: {load_average()}",
        f"  target: buckets under {TARGET_MS:.0f} ms: {verdict}",
        f"  ratio: raw / buckets {r / b:.1f}",
    ]
    return lines


def _times(runs: list[tuple[float, float]]) -> str:
    """Each run's total, with its fetching part: ``412 (fetch 380)``."""
    return ", ".join(f"{total:.0f} (fetch {fetch:.0f})" for total, fetch in runs)


def _local(ts_us: int) -> str:
    """``ts_us`` as the chart form's field writes it, in the hub's default zone."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from labhub.settings import Settings

    zone = ZoneInfo(Settings.model_fields["timezone"].default)
    return datetime.fromtimestamp(ts_us / US, tz=zone).strftime("%Y-%m-%dT%H:%M")


if __name__ == "__main__":
    for line in measure("--smoke" in sys.argv):
        print(line, flush=True)
