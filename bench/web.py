"""Web app benchmark: live latency, a class on one hub, the live page's weight, a chart.

A real hub (``labhub serve`` in a child process, a fresh SQLite file) with one lab of
``--devices`` devices x ``--channels`` channels (8 x 6), an admin with a password for
Chromium (Debian's, through Playwright) and an API token for uploads.

1. Live latency. Chromium shows ``/live`` (every series already has a reading), while
   every device uploads one sample set a second in the background (a lab's kits). Then,
   ``--rounds`` times, one reading of a random series with a new value is uploaded
   (``POST /api/v1/readings``, which answers once the reading is committed) and a
   MutationObserver in the page stamps the moment its text appears (the page's clock:
   ``performance.timeOrigin + now()``, the same wall clock as this process's). The commit
   falls between the upload's send and its answer, so commit -> DOM lies between
   ``DOM - answer`` and ``DOM - send``: both are printed (p50, p95; target p95 < 500 ms).
   Baseline: the upload's own round trip (send -> committed answer), the ingest's latency.
2. A class on one hub. The hub's CPU (``/proc/<pid>/stat``) per 1,000 readings uploaded
   in sample sets of ``--channels`` readings: first with nobody watching (the baseline:
   the ingest itself, HTTP included), then with ``--clients`` (40) pages loaded and their
   40 SSE streams open, each stream read to the end of every event. The fan-out is the
   difference; target: less than the ingest itself. The client's own CPU is printed: a
   client near a full core would slow the uploads, not the hub.
3. Page weight. ``/live`` loaded in a fresh context: every request and its bytes on the
   wire (Playwright's ``sizes()``: headers and compressed body), against the same bytes
   uncompressed (the baseline); target: under 150 KB compressed, and no request to any
   other host.

4. Chart. One week of 1 Hz readings (604,800) in 500 buckets, fetched and drawn in
   Chromium, against the same chart drawn from every raw reading (``bench/_web_chart.py``);
   target: under 300 ms.
5. Equipment. At network scale (1,000 sites, 100k assets, 1M history events), the asset
   search page and an asset's timeline of 1,000 events (p95 under 300 ms each, against the
   API's JSON: ``bench/_web_assets.py``); an audit's scan to its result (p95 under
   150 ms, against the API's own scan: ``bench/_web_audits.py``); a sheet of 300 QR labels
   (under 5 s, against a sheet of one: ``bench/_web_labels.py``).

Run: ``python bench/web.py`` (about 15 minutes: building the network-scale inventory
takes most of it); ``--smoke`` runs small sizes in about a minute.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

if importlib.util.find_spec("labhub") is None:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _web_assets as web_assets
import _web_audits as web_audits
import _web_chart as web_chart
import _web_labels as web_labels
import httpx2
from _common import free_port, load_average, machine, p95

from firmware_bridge import registry
from inventory import sites
from labhub import db
from labhub.access import accounts, passwords
from labhub.access.caller import NETWORK
from labhub.access.permissions import Grant, Role

LABHUB = str(Path(sys.executable).with_name("labhub"))
CHROMIUM = "/usr/bin/chromium"
SITE = "BENCH-LAB"
ADMIN = "bench-admin"
PASSWORD = "una clave para medir"
START_WAIT_S = 30.0
PAGE_WEIGHT_TARGET = 150 * 1024  # bytes on the wire, the live page with all its files
LATENCY_TARGET_S = 0.5  # p95, commit to DOM


@dataclass
class Hub:
    base: str
    process: subprocess.Popen[bytes]
    log: Path
    token: str

    def cpu_s(self) -> float:
        """The hub process's user + system CPU seconds so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def device_ids(args: argparse.Namespace) -> list[str]:
    return [f"bench-kit-{d}" for d in range(args.devices)]


def channels(args: argparse.Namespace) -> list[str]:
    return [f"ch{c}" for c in range(args.channels)]


def prepare(url: str, args: argparse.Namespace) -> str:
    """The lab: its site, devices (online), an admin with a password; an API token."""
    engine = db.make_engine(url)
    try:
        db.upgrade(engine)
        with engine.begin() as conn:
            sites.create_site(conn=conn, code="BENCH", name="Bench network", kind="network",
                              by="bench")
            sites.create_site(conn=conn, code="BENCH-R", name="Bench region", kind="region",
                              parent_code="BENCH", by="bench")
            sites.create_site(conn=conn, code=SITE, name="Bench lab", kind="site",
                              parent_code="BENCH-R", tier="lab_point", by="bench")
            user = accounts.create_user(conn, name=ADMIN,
                                        password_hash=passwords.hash_password(PASSWORD),
                                        grants_given=[Grant(Role.ADMIN, NETWORK)])
            _, token = accounts.create_api_token(conn, user_id=user.id, name="bench")
            for device in device_ids(args):
                registry.record_seen(conn=conn, device_id=device, kind="lines", site=SITE,
                                     name=device)
    finally:
        engine.dispose()
    return token


@contextmanager
def hub(directory: Path, args: argparse.Namespace) -> Iterator[Hub]:
    url = f"sqlite:///{directory / 'hub.db'}"
    token = prepare(url, args)
    port = free_port()
    log = directory / "hub.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [LABHUB, "serve", "--port", str(port)],
            env={"PATH": os.environ.get("PATH", ""), "LABHUB_CONFIG": os.devnull,
                 "LABHUB_DATA_DIR": str(directory / "data"), "LABHUB_DATABASE_URL": url,
                 "LABHUB_SITE": SITE, "LABHUB_SERIAL_SCAN": "false",
                 "LABHUB_LOG_LEVEL": "warning"},
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_WAIT_S
        with httpx2.Client(timeout=5) as client:
            while True:
                if process.poll() is not None:
                    raise SystemExit(f"the hub exited:\n{log.read_text(errors='replace')}")
                try:
                    if client.get(f"{base}/api/v1/health").status_code == 200:
                        break
                except httpx2.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("the hub did not answer in time")
                time.sleep(0.1)
        yield Hub(base, process, log, token)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            print("the hub did not stop within 20 s of SIGTERM: killed")
            process.kill()
            process.wait()


def upload(client: httpx2.Client, hub: Hub, device: str, values: dict[str, float]) -> None:
    answer = client.post(f"{hub.base}/api/v1/readings",
                         headers={"Authorization": f"Bearer {hub.token}"},
                         json={"device": device, "readings": [
                             {"channel": c, "value": v, "unit": "degC"}
                             for c, v in values.items()]})
    if answer.status_code != 200:
        raise SystemExit(f"upload refused: {answer.status_code} {answer.text}")


def fill(hub: Hub, args: argparse.Namespace) -> None:
    """One reading of every series, so the page draws them all."""
    with httpx2.Client(timeout=10) as client:
        for device in device_ids(args):
            upload(client, hub, device, {c: 20.0 for c in channels(args)})


@contextmanager
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def signed_in_page(chromium: Any, hub: Hub) -> tuple[Any, Any]:
    context = chromium.new_context(viewport={"width": 1366, "height": 768}, locale="en-US")
    page = context.new_page()
    page.goto(f"{hub.base}/signin?lang=en")
    form = page.locator("form", has=page.locator("#pw-password"))
    form.locator("#pw-name").fill(ADMIN)
    form.locator("#pw-password").fill(PASSWORD)
    form.locator("button[type=submit]").click()
    page.wait_for_url(lambda url: "/signin" not in url)
    return context, page


# -- 1. live latency -------------------------------------------------------------------------

OBSERVE = """() => {
  window.__seen = {};
  const stamp = () => performance.timeOrigin + performance.now();
  new MutationObserver((changes) => {
    const at = stamp();
    for (const change of changes) {
      const el = change.target.nodeType === 1 ? change.target : change.target.parentElement;
      if (!el || !el.classList.contains("number")) continue;
      const channel = el.closest(".channel");
      const device = el.closest("li[data-device]");
      const key = device.dataset.device + "/" + channel.dataset.channel + "=" + el.textContent;
      if (!(key in window.__seen)) window.__seen[key] = at;
    }
  }).observe(document.getElementById("live"),
             {subtree: true, childList: true, characterData: true});
}"""


def background(hub: Hub, args: argparse.Namespace, stop: threading.Event) -> None:
    """Every device uploads one sample set a second (values the probes never use)."""
    with httpx2.Client(timeout=10) as client:
        while not stop.wait(1.0):
            for device in device_ids(args):
                upload(client, hub, device, {c: round(random.uniform(10, 15), 2)
                                             for c in channels(args)})


def measure_latency(chromium: Any, hub: Hub, args: argparse.Namespace) -> None:
    context, page = signed_in_page(chromium, hub)
    try:
        page.goto(f"{hub.base}/live?lang=en")
        shown = page.locator("#live .channel").count()
        page.wait_for_function("() => document.getElementById('live').dataset.connected"
                               " === 'true'")
        page.evaluate(OBSERVE)
        stop = threading.Event()
        noise = threading.Thread(target=background, args=(hub, args, stop), daemon=True)
        noise.start()
        from_answer: list[float] = []
        from_send: list[float] = []
        trips: list[float] = []
        try:
            with httpx2.Client(timeout=10) as client:
                for i in range(args.rounds):
                    device = random.choice(device_ids(args))
                    channel = random.choice(channels(args))
                    value = 50.0 + (i % 700) / 10  # 50.0 .. 119.9: never the background's
                    key = f"{device}/{channel}={value:.1f}"
                    sent = time.time()
                    upload(client, hub, device, {channel: value})
                    answered = time.time()
                    page.wait_for_function("(k) => k in window.__seen", arg=key,
                                           timeout=10_000)
                    seen = page.evaluate("(k) => window.__seen[k]", key) / 1000
                    from_answer.append(seen - answered)
                    from_send.append(seen - sent)
                    trips.append(answered - sent)
                    time.sleep(random.uniform(0.05, 0.25))  # not in step with the writer
        finally:
            stop.set()
            noise.join()
    finally:
        context.close()
    base50, base95 = statistics.median(trips), p95(trips)
    print(f"live latency: a page of {shown} channels, {args.devices} devices uploading "
          f"a sample set a second, {len(trips)} probes")
    print(f"  baseline, upload sent -> committed answer: p50 {base50 * 1000:6.1f} ms, "
          f"p95 {base95 * 1000:6.1f} ms")
    for name, values in (("commit -> DOM, at most (from the send)", from_send),
                         ("commit -> DOM, at least (from the answer)", from_answer)):
        mid, top = statistics.median(values), p95(values)
        met = "met" if top < LATENCY_TARGET_S else "NOT met"
        print(f"  {name}: p50 {mid * 1000:6.1f} ms, p95 {top * 1000:6.1f} ms "
              f"({top / base95:.2f}x the baseline's p95; target p95 < "
              f"{LATENCY_TARGET_S * 1000:.0f} ms: {met})")


# -- 2. a class on one hub -------------------------------------------------------------------

@dataclass
class Reader:
    """One SSE client: a thread that reads its stream to the end."""

    thread: threading.Thread
    events: list[int]


def open_streams(hub: Hub, count: int, stop: threading.Event) -> list[Reader]:
    readers: list[Reader] = []
    ready = threading.Barrier(count + 1)

    def read(events: list[int]) -> None:
        headers = {"Authorization": f"Bearer {hub.token}"}
        with httpx2.Client(timeout=30) as client:
            client.get(f"{hub.base}/live", headers=headers).raise_for_status()  # its page
            with client.stream("GET", f"{hub.base}/live/events", headers=headers) as stream:
                ready.wait()
                for line in stream.iter_lines():
                    if line.startswith("event: readings"):
                        events[0] += 1
                    if stop.is_set():
                        break

    for _ in range(count):
        events = [0]
        thread = threading.Thread(target=read, args=(events,), daemon=True)
        thread.start()
        readers.append(Reader(thread, events))
    ready.wait(60)
    return readers


def ingest_cpu(hub: Hub, args: argparse.Namespace) -> tuple[float, int, float]:
    """Hub CPU seconds for ``args.sets`` sample sets uploaded by the devices at once (one
    connection each, as a lab's kits: each upload waits for its commit), the readings,
    and the client's CPU seconds."""
    devices = device_ids(args)
    each = max(args.sets // len(devices), 1)

    def kit(device: str) -> None:
        with httpx2.Client(timeout=30) as client:
            for i in range(each):
                upload(client, hub, device, {c: 20.0 + (i % 97) / 10 for c in channels(args)})

    before, client_before = hub.cpu_s(), time.process_time()
    threads = [threading.Thread(target=kit, args=(d,)) for d in devices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    time.sleep(0.5)  # the last commit and its fan-out
    return (hub.cpu_s() - before, each * len(devices) * args.channels,
            time.process_time() - client_before)


def measure_class(hub: Hub, args: argparse.Namespace) -> None:
    ingest_cpu(hub, args)  # warm: routes, series, connections
    alone, readings, client_alone = ingest_cpu(hub, args)
    stop = threading.Event()
    started = hub.cpu_s()
    readers = open_streams(hub, args.clients, stop)
    loads = hub.cpu_s() - started
    try:
        time.sleep(0.5)
        watched, _, client_watched = ingest_cpu(hub, args)
    finally:
        stop.set()
    got = [r.events[0] for r in readers]
    per_k_alone = alone / readings * 1000
    per_k_watched = watched / readings * 1000
    fan_out = per_k_watched - per_k_alone
    print(f"a class on one hub: {readings:,} readings in sample sets of {args.channels}, "
          f"{args.clients} pages and streams")
    print(f"  baseline, nobody watching: hub CPU {per_k_alone * 1000:7.1f} ms per 1,000 "
          f"readings (client {client_alone / readings * 1e6:.0f} ms per 1,000)")
    print(f"  {args.clients} streams open:      hub CPU {per_k_watched * 1000:7.1f} ms per "
          f"1,000 readings (client {client_watched / readings * 1e6:.0f} ms per 1,000)")
    print(f"  the fan-out: {fan_out * 1000:.1f} ms per 1,000 readings, "
          f"{fan_out / per_k_alone:.2f}x the ingest itself (target < 1: "
          f"{'met' if fan_out < per_k_alone else 'NOT met'})")
    print(f"  {args.clients} page loads and stream connects: hub CPU "
          f"{loads / args.clients * 1000:.1f} ms each; events per stream: min {min(got)}, "
          f"max {max(got)} (of {args.sets} sets)")
    print(f"  client CPU while watched: {client_watched:.2f} s (a full core would make the "
          "client the limit)")


# -- 3. page weight --------------------------------------------------------------------------

def measure_weight(chromium: Any, hub: Hub) -> None:
    signed, _ = signed_in_page(chromium, hub)
    cookies = signed.cookies()
    signed.close()
    # A context of its own, with the session but an empty cache: /live is its first page.
    context = chromium.new_context(viewport={"width": 1366, "height": 768}, locale="es-CO")
    context.add_cookies(cookies)
    page = context.new_page()
    try:
        requests: list[Any] = []
        page.on("requestfinished", lambda request: requests.append(request))
        page.goto(f"{hub.base}/live?lang=es")
        page.wait_for_function("() => document.getElementById('live').dataset.connected"
                               " === 'true'")
        page.wait_for_load_state("networkidle")
        host = urlsplit(hub.base).netloc
        elsewhere = [r.url for r in requests if urlsplit(r.url).netloc != host
                     and urlsplit(r.url).scheme not in ("data", "blob")]
        wire = plain = 0
        rows = []
        for request in requests:
            if request.url.endswith("/live/events") or "/live/events?" in request.url:
                continue
            sizes = request.sizes()
            response = request.response()
            body = len(response.body()) if response is not None else 0
            encoded = sizes["responseBodySize"] + sizes["responseHeadersSize"]
            wire += encoded
            plain += body + sizes["responseHeadersSize"]
            rows.append((urlsplit(request.url).path, encoded, body))
    finally:
        context.close()
    print(f"page weight: /live (es), {len(rows)} requests")
    for path, encoded, body in rows:
        print(f"  {path:40s} {encoded / 1024:7.1f} KB on the wire ({body / 1024:7.1f} KB plain)")
    print(f"  total {wire / 1024:.1f} KB on the wire, {plain / 1024:.1f} KB uncompressed "
          f"(baseline), {wire / plain:.2f}x; target < {PAGE_WEIGHT_TARGET / 1024:.0f} KB: "
          f"{'met' if wire < PAGE_WEIGHT_TARGET else 'NOT met'}")
    print(f"  requests to another host: {len(elsewhere)} {elsewhere if elsewhere else ''}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--channels", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=200, help="latency probes")
    parser.add_argument("--clients", type=int, default=40, help="pages and streams")
    parser.add_argument("--sets", type=int, default=1000,
                        help="sample sets uploaded per CPU round")
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary files go")
    parser.add_argument("--smoke", action="store_true",
                        help="small sizes, a few seconds: checks that it runs")
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.clients, args.sets = 5, 4, 40
    return args


def main() -> None:
    args = parse_args()
    print(f"web: {args.devices} devices x {args.channels} channels; machine: {machine()}")
    print(f"load average at start: {load_average()}")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp, hub(Path(tmp), args) as served:
        fill(served, args)
        measure_class(served, args)  # first: no page has asked the feed to keep events
        if Path(CHROMIUM).exists() and importlib.util.find_spec("playwright") is not None:
            with browser() as chromium:
                measure_latency(chromium, served, args)
                measure_weight(chromium, served)
        else:
            print(f"live latency and page weight: skipped (no Chromium at {CHROMIUM} or "
                  "no playwright package)")
    # 4. The chart: a week of 1 Hz in 500 buckets against every raw reading (its own hub
    # and database: bench/_web_chart.py).
    if Path(CHROMIUM).exists() and importlib.util.find_spec("playwright") is not None:
        for line in web_chart.measure(args.smoke):
            print(line)
    # 5. The equipment pages: asset search and timeline at network scale
    # (bench/_web_assets.py), an audit's scan to its result (bench/_web_audits.py) and a
    # sheet of 300 QR labels (bench/_web_labels.py), each on a hub of its own.
    parts = [web_audits, web_labels]
    if Path(CHROMIUM).exists() and importlib.util.find_spec("playwright") is not None:
        parts.insert(0, web_assets)  # timed in the browser, request to rendered DOM
    for part in parts:
        for line in part.measure(args.smoke):
            print(line)
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
