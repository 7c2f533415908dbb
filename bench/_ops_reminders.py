"""Every reminder of a network's hub, as the home page's count and ``/reminders`` work them
out on each load. (Part of ``bench/ops.py``.)

A central's database with 50 lab sites and a history of 1,000,000 entries (loans, scans,
moves: the ``events`` table grows with every one, for years; smoke: 20,000). Measured:
:func:`labhub.reminders.due.gather` (every kind of reminder, every site), median of
seven. The baseline, in the same run on the same file: the read of the history by kind
that finding each lab's creation time used to be (``events.kind`` has no index, so it
reads the whole history), which is what made the home page slow as the years went by.
"""

from __future__ import annotations

import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from _common import load_average
from sqlalchemy import func, select

from inventory import sites
from inventory.tables import events
from labhub import db
from labhub.reminders import due
from labhub.settings import Settings
from sensors.samples import now_us

LABS = 50
RUNS = 7
KINDS = ("AssetMoved", "LoanOpened", "LoanClosed", "AuditScanned", "StockCounted")


def _network(path: Path, entries: int) -> None:
    engine = db.make_engine(f"sqlite:///{path}")
    db.upgrade(engine)
    with engine.begin() as conn:
        sites.create_site(conn=conn, code="VL", name="ValleLabs", kind="network", by="bench")
        sites.create_site(conn=conn, code="VL-R1", name="Valle", kind="region",
                          parent_code="VL", by="bench")
        for i in range(LABS):
            sites.create_site(conn=conn, code=f"LAB-{i:02d}", name=f"Escuela {i}",
                              kind="site", parent_code="VL-R1", tier="lab_point", by="bench")
    engine.dispose()
    raw = sqlite3.connect(path)
    at = now_us() - 400 * 86_400_000_000
    rows = ((str(uuid.UUID(int=n + 1)), at + n, KINDS[n % len(KINDS)], f"T-{n % 20_000}",
             "bench", f"LAB-{n % LABS:02d}") for n in range(entries))
    raw.executemany("INSERT INTO events (uuid, at, kind, subject, by, site_code) "
                    "VALUES (?, ?, ?, ?, ?, ?)", rows)
    # The labs opened 400 days ago and were never audited: each has its audit due.
    raw.execute("UPDATE events SET at = ? WHERE kind = 'SiteCreated'", (at,))
    raw.commit()
    raw.close()


def _median_ms(work: Callable[[], object]) -> float:
    times = []
    for _ in range(RUNS):
        began = time.perf_counter()
        work()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


def measure(smoke: bool) -> Iterator[str]:
    entries = 20_000 if smoke else 1_000_000
    with tempfile.TemporaryDirectory(prefix="labhub-bench-reminders-") as tmp:
        path = Path(tmp) / "central.sqlite"
        _network(path, entries)
        engine = db.make_engine(f"sqlite:///{path}")
        settings = Settings(data_dir=Path(tmp), database_url=f"sqlite:///{path}")
        try:
            with engine.connect() as conn:
                found = due.gather(conn, settings, now=now_us())
                gathered = _median_ms(lambda: due.gather(conn, settings, now=now_us()))
                by_kind = _median_ms(lambda: conn.execute(
                    select(events.c.subject, func.min(events.c.at))
                    .where(events.c.kind == "SiteCreated").group_by(events.c.subject)).all())
        finally:
            engine.dispose()
        audits = sum(1 for r in found if r.kind == "audit_due")
        yield (f"[reminders] {LABS} labs, {entries:,} history entries: every reminder "
               f"({len(found)}, {audits} audits due) in {gathered:.1f} ms (median of {RUNS}); "
               f"the history read by kind, as before: {by_kind:.1f} ms; load average "
               f"{load_average()}")
