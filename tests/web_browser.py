"""What the browser tests share: a hub in a process of its own (``labhub serve``, or
``labhub demo`` with its virtual climate station and Firmata robot kit) on a test
database, Debian's Chromium through Playwright, what a page must not do (console errors,
requests to other hosts), screenshots for a person to look at, and axe-core's WCAG check.

The ``browser`` fixture (tests/conftest.py) launches Chromium; tests build a hub with
:func:`served_hub` and contexts with :func:`open_page`. Without Chromium
(``/usr/bin/chromium``; ``scripts/test-services`` installs it) or the ``playwright``
package a test is skipped and says why; under ``CI=true`` it fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
import pytest
from mqtt_broker import free_port
from waiting import wait_for

LABHUB = str(Path(sys.executable).with_name("labhub"))
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("LABHUB_TEST_ARTIFACTS", "test-artifacts")) / "web"
PHONE = {"width": 360, "height": 740}
LAPTOP = {"width": 1366, "height": 768}
# 200 % zoom on a 1366x768 laptop: the page lays out in half the CSS pixels.
ZOOM_200 = {"width": 683, "height": 384}
# axe-core, pinned in labhub/web/frontend/package.json (a devDependency: `make` installs
# it with the others; it is not shipped).
AXE = Path(__file__).parent.parent / "labhub/web/frontend/node_modules/axe-core/axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


def missing(why: str) -> None:
    """Skip for ``why`` (a missing browser); under CI=true, fail."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why} (CI=true: the browser tests must run)")
    pytest.skip(why)


@contextmanager
def launched_browser() -> Iterator[Any]:
    """Debian's Chromium through Playwright (its own download is not reachable here)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("the playwright package is not installed (pip install -e '.[dev]')")
    if not Path(CHROMIUM).exists():
        missing(f"no Chromium at {CHROMIUM} (scripts/test-services installs it)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM,
                                              args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class ServedHub:
    """A hub process: its base URL, process, log file and database URL."""

    base: str
    process: subprocess.Popen[bytes]
    log: Path
    database_url: str

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def served_hub(tmp_path: Path, database_url: str, *, demo: bool = False,
               site: str = "LAB-A", env: dict[str, str] | None = None) -> Iterator[ServedHub]:
    """``labhub serve`` (or ``labhub demo``: its two virtual kits attached, readings within
    seconds) on ``database_url`` (migrated and filled by the test), as the hub of ``site``,
    until the block ends (SIGTERM, then a kill after 20 s)."""
    port = free_port()
    log = tmp_path / f"{'demo' if demo else 'serve'}-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [LABHUB, "demo" if demo else "serve", "--port", str(port)],
            env={"PATH": os.environ.get("PATH", ""), "LABHUB_CONFIG": os.devnull,
                 "LABHUB_DATA_DIR": str(tmp_path / "data"),
                 "LABHUB_DATABASE_URL": database_url, "LABHUB_SITE": site,
                 "LABHUB_SERIAL_SCAN": "false", "LABHUB_LOG_LEVEL": "warning",
                 **(env or {})},
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    hub = ServedHub(f"http://127.0.0.1:{port}", process, log, database_url)
    try:
        with httpx2.Client(timeout=5) as client:
            def up() -> bool:
                assert process.poll() is None, hub.output()
                try:
                    return client.get(f"{hub.base}/api/v1/health").status_code == 200
                except httpx2.TransportError:
                    return False
            wait_for(up, timeout=30, what="the hub to answer", state=hub.output)
        yield hub
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Watched:
    """What a page did that it must not: console errors (a CSP violation is one), and
    requests to any host but the hub's."""

    host: str
    errors: list[str] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", self._request)

    def _request(self, request: Any) -> None:
        where = urlsplit(request.url)
        if where.scheme not in ("data", "blob") and where.netloc != self.host:
            self.elsewhere.append(request.url)

    def check(self) -> None:
        assert self.errors == [], self.errors
        assert self.elsewhere == [], self.elsewhere


def open_page(browser: Any, base: str, *, viewport: dict[str, int], locale: str,
              javascript: bool = True, **options: Any) -> tuple[Any, Any, Watched]:
    """A new context (its own cookies) and page, watched. Close the context when done."""
    context = browser.new_context(viewport=viewport, locale=locale,
                                  java_script_enabled=javascript, **options)
    page = context.new_page()
    watched = Watched(urlsplit(base).netloc)
    watched.attach(page)
    return context, page, watched


def shot(page: Any, name: str) -> None:
    """A full-page screenshot in test-artifacts/web/<name>.png, for a person to look at."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page: Any, base: str, name: str, password: str, *, lang: str = "es") -> None:
    """Sign in through the page's password form (``lang`` picks the page's language)."""
    page.goto(f"{base}/signin?lang={lang}")
    form = page.locator("form", has=page.locator("#pw-password"))
    form.locator("#pw-name").fill(name)
    form.locator("#pw-password").fill(password)
    form.locator("button[type=submit]").click()
    page.wait_for_url(lambda url: "/signin" not in url)


def axe_violations(page: Any, *, exclude: list[str] | None = None) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.x A and AA violations on the page as it is now. Playwright runs
    the script through the DevTools protocol, which the page's CSP does not govern."""
    if not AXE.exists():
        missing(f"no axe-core at {AXE} (make installs the front-end packages)")
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())
    context = {"exclude": [[s] for s in exclude]} if exclude else None
    result = page.evaluate(
        "([context, tags]) => axe.run(context || document, "
        "{runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})",
        [context, AXE_TAGS])
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "nodes": [n["target"] for n in v["nodes"]][:5]} for v in result["violations"]]


def assert_accessible(page: Any, what: str) -> None:
    """No WCAG A/AA violation that axe-core finds on the page (named ``what``)."""
    found = axe_violations(page)
    assert found == [], f"{what}: " + json.dumps(found, ensure_ascii=False, indent=1)


def tab_to(page: Any, matches: Callable[[Any], bool], *, limit: int = 60) -> None:
    """Press Tab until the focused element satisfies ``matches(page)``; fails after
    ``limit`` presses (a flow a keyboard cannot reach). Checks focus is visible on the way."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if matches(page):
            visible = page.evaluate(
                "() => { const e = document.activeElement; const s = getComputedStyle(e);"
                " return s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2; }")
            assert visible, "the focused element shows no focus outline"
            return
    raise AssertionError(f"no focusable element matched after {limit} Tab presses")


def usb_scan(page: Any, label: str, code: str) -> None:
    """A USB barcode scanner: ``code`` typed into the scan field labelled ``label``, then
    Enter. It first waits until the page's scan.js has taken the form over (the form's
    ``data-scan-ready``): a click that opens a page returns before its deferred scripts
    run, and an Enter before then posts the form without JavaScript, a page answer where
    the test waits for the scan's words."""
    field = page.get_by_label(label)
    field.locator("xpath=ancestor::form[@data-scan-ready]").wait_for(state="attached")
    field.focus()
    page.keyboard.type(code)
    page.keyboard.press("Enter")


@contextmanager
def signed_in_page(browser: Any, base: str, name: str, password: str, *, lang: str = "es",
                   viewport: dict[str, int] | None = None, **options: Any
                   ) -> Iterator[tuple[Any, Watched]]:
    """A page of a new context, signed in as ``name`` through the sign-in form, in
    ``lang`` (the browser asks for it too), at ``viewport`` (a phone by default). The
    context closes when the block ends; checks nothing itself (call ``watched.check()``)."""
    context, page, watched = open_page(browser, base, viewport=viewport or PHONE,
                                       locale=BROWSER_LOCALES.get(lang, lang), **options)
    try:
        sign_in(page, base, name, password, lang=lang)
        yield page, watched
    finally:
        context.close()


BROWSER_LOCALES = {"es": "es-CO", "pt": "pt-BR", "en": "en-US"}
