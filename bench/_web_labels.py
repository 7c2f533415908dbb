"""The label sheet's benchmark, part of ``bench/web.py``: a sheet of 300 labels through the
labels page's own routes (``/labels/sheet.pdf`` and ``/labels/sheet.svg``, on a real
``labhub serve``), against a sheet of one label in the same run, and the QR encoding of
the 300 tags alone (in this process), to show where the time goes.

A fresh SQLite file in a temporary directory gets a lab with 300 boards (imported in one
go through :func:`inventory.csvio.import_csv`, as the import page does) and an admin with
an API token; ``labhub serve`` runs on it in a process of its own; each request asks for
every asset at the lab (``all=1&site=``), as the page's "Choose all" does, in A4 and in the
small printer's format (one label a page: 300 pages). Times are from sending the request
to the last byte, ``runs`` times each after one warm-up (the first job loads the font).
Target: the 300 labels' PDF and SVG each under 5 s. ``--smoke``: 30 labels, one run each.
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

if importlib.util.find_spec("labhub") is None:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import load_average
from _web_chart import served

from inventory import catalog, csvio, sites
from inventory import labels as inventory_labels
from labhub import db
from labhub.access import accounts
from labhub.access.caller import NETWORK
from labhub.access.permissions import Grant, Role

LABELS = 300
SMOKE_LABELS = 30
TARGET_S = 5.0
BY = "bench"


def fill(url: str, count: int) -> str:
    """A lab ``BENCH-LAB`` with ``count`` boards and one at ``ONE-LAB``; an admin's token."""
    engine = db.make_engine(url)
    try:
        db.upgrade(engine)
        with engine.begin() as conn:
            sites.create_site(conn=conn, code="BENCH", name="Red de prueba", kind="network",
                              by=BY)
            sites.create_site(conn=conn, code="BENCH-R", name="Región", kind="region",
                              parent_code="BENCH", by=BY)
            for code, name in (("BENCH-LAB", "Escuela Simón Bolívar de Cajamarca"),
                               ("ONE-LAB", "Colegio Nariño")):
                sites.create_site(conn=conn, code=code, name=name, kind="site",
                                  parent_code="BENCH-R", tier="lab_point", by=BY)
            catalog.create_model(conn=conn, code="UNO", name="Arduino Uno R3",
                                 category="microcontroller_board", by=BY)
            rows = "".join(f"UNO-{i:05d},UNO,BENCH-LAB\n" for i in range(count))
            report = csvio.import_csv(conn=conn, kind="assets", by=BY,
                                      data="tag,model,site\n" + rows + "ONE-1,UNO,ONE-LAB\n")
            assert report.created == count + 1, report.errors[:3]
            user = accounts.create_user(conn, name="bench-admin", password_hash=None,
                                        grants_given=[Grant(Role.ADMIN, NETWORK)])
            _, token = accounts.create_api_token(conn, user_id=user.id, name="bench")
    finally:
        engine.dispose()
    return token


def _get(url: str, token: str) -> tuple[float, int, str]:
    """(seconds to the last byte, bytes, content type) of one GET."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    began = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as answer:
        body = answer.read()
        kind = answer.headers["content-type"]
    return time.perf_counter() - began, len(body), kind


def _timed(url: str, token: str, runs: int) -> tuple[float, float, int]:
    """(median s, worst s, bytes) of ``runs`` GETs after one warm-up."""
    _get(url, token)
    got = [_get(url, token) for _ in range(runs)]
    return (statistics.median(t for t, _, _ in got), max(t for t, _, _ in got), got[0][1])


def measure(smoke: bool) -> list[str]:
    """The label sheet's lines for ``bench/web.py``: 300 labels against one, and ratios."""
    count = SMOKE_LABELS if smoke else LABELS
    runs = 1 if smoke else 5
    lines = [f"label sheet: {count} labels through the labels page's routes "
             f"(/labels/sheet.pdf, .svg) on labhub serve, SQLite; request to last byte, "
             f"median and worst of {runs} after a warm-up"]
    lines.append(f"  load average before: {load_average()}")
    tags = [f"UNO-{i:05d}" for i in range(count)]
    inventory_labels.qr_matrix("WARM-UP")  # segno's first code builds its tables
    began = time.perf_counter()
    for tag in tags:
        inventory_labels.qr_matrix(tag)
    qr_s = time.perf_counter() - began
    with tempfile.TemporaryDirectory(prefix="labhub-bench-labels-") as tmp:
        directory = Path(tmp)
        url = f"sqlite:///{directory}/hub.db"
        token = fill(url, count)
        with served(url, directory) as base:
            figures = {}
            for name, query in (
                    ("pdf-a4", {"all": "1", "site": "BENCH-LAB", "format": "a4"}),
                    ("svg-a4", {"all": "1", "site": "BENCH-LAB", "format": "a4"}),
                    ("pdf-small", {"all": "1", "site": "BENCH-LAB", "format": "small"}),
                    ("svg-small", {"all": "1", "site": "BENCH-LAB", "format": "small"}),
                    ("pdf-one", {"tag": "ONE-1", "format": "a4"}),
                    ("svg-one", {"tag": "ONE-1", "format": "a4"}),
                    ("page", {"all": "1", "site": "BENCH-LAB", "show": "1"})):
                path = ("/labels" if name == "page"
                        else f"/labels/sheet.{name.split('-')[0]}")
                figures[name] = _timed(f"{base}{path}?{urlencode(query)}", token, runs)
    lines += [f"  {name}: median {m:.2f} s, worst {w:.2f} s, {size:,} bytes"
              for name, (m, w, size) in figures.items()]
    lines.append(f"  the QR codes alone, {count} tags encoded in this process: {qr_s:.2f} s")
    worst = max(figures[n][1] for n in ("pdf-a4", "svg-a4", "pdf-small", "svg-small"))
    verdict = "target met" if worst < TARGET_S else "target missed"
    lines += [
        f"  load average after: {load_average()}",
        f"  target: {count} labels' PDF and SVG under {TARGET_S:.0f} s (worst run "
        f"{worst:.2f} s): {verdict}",
        f"  ratios: pdf-a4 / pdf-one {figures['pdf-a4'][0] / figures['pdf-one'][0]:.1f}, "
        f"svg-a4 / svg-one {figures['svg-a4'][0] / figures['svg-one'][0]:.1f}, "
        f"pdf-small / pdf-a4 {figures['pdf-small'][0] / figures['pdf-a4'][0]:.1f}, "
        f"QR alone / pdf-a4 {qr_s / figures['pdf-a4'][0]:.2f}",
    ]
    return lines


if __name__ == "__main__":
    for line in measure("--smoke" in sys.argv):
        print(line, flush=True)
