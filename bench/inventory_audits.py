"""Audit and transfer benchmark: a stocktake of a 2,000-item Lab Center and a 200-kit transfer.

Builds, with LabHub's own services, a SQLite database (created by the migrations) holding
a network with a Lab Center of 2,000 tagged assets, a Lab Point of 100 and a Lab Spark of
200. Then, on a fresh copy of that file for each run (3 by default):

1. an audit of the Lab Center as a coordinator runs it with a scanner: ``start_audit``,
   then 2,000 scans, each its own transaction (what ``POST /audits/{id}/scans`` and
   ``labhub inventory audit scan`` do): 1,950 of the Lab Center's own assets, 40 recorded
   at the Lab Point (unexpected), 10 unknown tags; then ``finish_audit`` (the report: 1,950
   found, 50 missing, 40 unexpected, 10 unknown) and ``apply_corrections`` (90 assets
   corrected, each with its history event);
2. a transfer of 200 kits from the Lab Spark to the Lab Point: ``draft_transfer`` with the
   200 tags, ``ship_transfer``, 200 scans at the Lab Point (one transaction each), and
   ``receive_transfer`` with 5 kits missing.

Two baselines run in the same run on the same file. The least a scan can cost: plain
``sqlite3`` inserting one row into ``audit_scans`` and committing, per scan, with the same
WAL and ``synchronous=NORMAL`` (a LabHub scan also checks the audit and its version,
writes the history event and answers where the tag is recorded). And LabHub's own
simplest write with history, ``assets.set_status`` of one asset in its own transaction
(500 calls): a scan should cost about what that costs.

Reading the output: per run the audit's scans (p50 and p95, nearest rank, of the 2,000),
finish, apply and the whole audit (start to applied), then the transfer's steps; then the
medians over the runs, ``ratio scan/set_status`` (an audit scan's p50 over a status
change's: near 1.00 means a scan costs what any write with history costs) and ``ratio
scan/baseline`` (over the bare insert: how many bare committed inserts one scan costs).
Lower is better for both. The machine
is shared and noisy: compare the ratios, not absolute times, across machines and days.

Run: ``python bench/inventory_audits.py`` (about a minute; ``--runs 1`` for a smoke run).
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

if importlib.util.find_spec("inventory") is None:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Engine

from inventory import assets, audits, catalog, sites, transfers
from labhub.db import make_engine, upgrade

BY = "bench"
SITE_ITEMS = 2_000  # the audit: a 2,000-item site
ELSEWHERE = 100  # at the Lab Point; 40 of them turn up in the audit
SPARK_ITEMS = 200  # the transfer's kits
UNEXPECTED = 40
UNKNOWN = 10
MISSING = 50
TRANSFER_MISSING = 5
T = TypeVar("T")


def build(path: Path) -> None:
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.begin() as conn:
        sites.create_site(conn=conn, code="VL", name="ValleLabs", kind="network", by=BY)
        sites.create_site(conn=conn, code="VL-R1", name="Valle", kind="region",
                          parent_code="VL", by=BY)
        for code, tier in (("VL-LC-01", "lab_center"), ("VL-LP-014", "lab_point"),
                           ("VL-LS-02", "lab_spark")):
            sites.create_site(conn=conn, code=code, name=code, kind="site",
                              parent_code="VL-R1", tier=tier, by=BY)  # type: ignore[arg-type]
        catalog.create_model(conn=conn, code="KIT-ROBOT", name="Robotics kit",
                             category="robotics_kit", by=BY)
        for prefix, site, n in (("LC", "VL-LC-01", SITE_ITEMS), ("LP", "VL-LP-014", ELSEWHERE),
                                ("LS", "VL-LS-02", SPARK_ITEMS)):
            for i in range(n):
                assets.register_asset(conn=conn, tag=f"{prefix}-{i:05d}", model_code="KIT-ROBOT",
                                      site_code=site, by=BY)
    engine.dispose()


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f} ms"


def audit_run(engine: Engine) -> dict[str, Any]:
    tags = ([f"LC-{i:05d}" for i in range(SITE_ITEMS - MISSING)]
            + [f"LP-{i:05d}" for i in range(UNEXPECTED)]
            + [f"NO-LABEL-{i}" for i in range(UNKNOWN)])
    total_start = time.perf_counter()
    with engine.begin() as conn:
        audit = audits.start_audit(conn=conn, site="VL-LC-01", by=BY)
    scans: list[float] = []
    for tag in tags:
        start = time.perf_counter()
        with engine.begin() as conn:
            audits.scan_tag(conn=conn, audit_uuid=audit.uuid, tag=tag, by=BY)
        scans.append(time.perf_counter() - start)

    def finish() -> audits.AuditReport:
        with engine.begin() as conn:
            return audits.finish_audit(conn=conn, audit_uuid=audit.uuid, by=BY)

    def apply() -> audits.AuditReport:
        with engine.begin() as conn:
            return audits.apply_corrections(conn=conn, audit_uuid=audit.uuid, by=BY)

    finish_s, report = timed(finish)
    apply_s, applied = timed(apply)
    total_s = time.perf_counter() - total_start
    counts = (len(report.found), len(report.missing), len(report.unexpected),
              len(report.unknown))
    corrected = sum(1 for f in (*applied.missing, *applied.unexpected) if f.corrected_at)
    if counts != (SITE_ITEMS - MISSING, MISSING, UNEXPECTED, UNKNOWN) or corrected != (
            MISSING + UNEXPECTED):
        raise SystemExit(f"audit report is wrong: {counts}, {corrected} corrected")
    return {"scans": scans, "finish": finish_s, "apply": apply_s, "total": total_s}


def transfer_run(engine: Engine) -> dict[str, Any]:
    tags = [f"LS-{i:05d}" for i in range(SPARK_ITEMS)]

    def draft() -> transfers.Transfer:
        with engine.begin() as conn:
            return transfers.draft_transfer(conn=conn, from_site="VL-LS-02",
                                            to_site="VL-LP-014", tags=tags, by=BY)

    draft_s, t = timed(draft)

    def ship() -> transfers.Transfer:
        with engine.begin() as conn:
            return transfers.ship_transfer(conn=conn, transfer_uuid=t.uuid, carrier="Luis",
                                           by=BY)

    ship_s, _ = timed(ship)
    scans: list[float] = []
    for tag in tags[TRANSFER_MISSING:]:
        start = time.perf_counter()
        with engine.begin() as conn:
            transfers.scan_item(conn=conn, transfer_uuid=t.uuid, tag=tag, site="VL-LP-014",
                                by=BY)
        scans.append(time.perf_counter() - start)

    def receive() -> transfers.Transfer:
        with engine.begin() as conn:
            return transfers.receive_transfer(conn=conn, transfer_uuid=t.uuid,
                                              site="VL-LP-014", by=BY, missing_as="lost")

    receive_s, done = timed(receive)
    if len(done.discrepancies) != TRANSFER_MISSING:
        raise SystemExit(f"transfer receipt is wrong: {done.discrepancies}")
    return {"draft": draft_s, "ship": ship_s, "scans": scans, "receive": receive_s}


def baseline(path: Path, n: int) -> list[float]:
    """Plain sqlite3: one INSERT into audit_scans and a commit per scan."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("INSERT INTO audits VALUES ('base', 'VL-LC-01', 'open', 1, 0, 'b', NULL, NULL)")
    db.commit()
    times: list[float] = []
    for i in range(n):
        start = time.perf_counter()
        db.execute("INSERT INTO audit_scans VALUES ('base', ?, ?, 'bench')", (f"B-{i}", i))
        db.commit()
        times.append(time.perf_counter() - start)
    db.close()
    return times


def status_baseline(engine: Engine, n: int) -> list[float]:
    """LabHub's own simplest write with history: ``set_status`` of one asset, per call."""
    times: list[float] = []
    for i in range(n):
        status = "in_repair" if i % 2 == 0 else "available"
        start = time.perf_counter()
        with engine.begin() as conn:
            assets.set_status(conn=conn, tag="LP-00099", status=status, by=BY)  # type: ignore[arg-type]
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary files go")
    args = parser.parse_args()
    print(f"inventory audits: an audit of a {SITE_ITEMS:,}-item Lab Center ({UNEXPECTED} "
          f"unexpected, {UNKNOWN} unknown, {MISSING} missing) and a {SPARK_ITEMS}-kit transfer")
    print(f"machine: {platform.platform()}, Python {platform.python_version()}, "
          f"SQLite {sqlite3.sqlite_version}")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        template = Path(tmp) / "template.db"
        build_s, _ = timed(lambda: build(template))
        print(f"built the network with the services in {build_s:.1f} s")
        results = []
        for run in range(1, args.runs + 1):
            path = Path(tmp) / f"run{run}.db"
            shutil.copy(template, path)
            engine = make_engine(f"sqlite:///{path}")
            audit = audit_run(engine)
            transfer = transfer_run(engine)
            status = status_baseline(engine, len(audit["scans"]) // 4)
            engine.dispose()
            base = baseline(path, len(audit["scans"]))
            results.append((audit, transfer, base, status))
            print(f"run {run} audit:    scan p50 {ms(pct(audit['scans'], 50))}  p95 "
                  f"{ms(pct(audit['scans'], 95))}  finish {ms(audit['finish'])}  apply "
                  f"{ms(audit['apply'])}  whole audit {audit['total']:.2f} s")
            print(f"run {run} transfer: draft {ms(transfer['draft'])}  ship "
                  f"{ms(transfer['ship'])}  scan p50 {ms(pct(transfer['scans'], 50))}  p95 "
                  f"{ms(pct(transfer['scans'], 95))}  receive {ms(transfer['receive'])}")
            print(f"  baseline: bare insert+commit p50 {ms(pct(base, 50))}  p95 "
                  f"{ms(pct(base, 95))}; set_status p50 {ms(pct(status, 50))}  p95 "
                  f"{ms(pct(status, 95))}")

    def med(values: list[float]) -> float:
        return statistics.median(values)

    scan_p50 = med([pct(a["scans"], 50) for a, _, _, _ in results])
    scan_p95 = med([pct(a["scans"], 95) for a, _, _, _ in results])
    base_p50 = med([pct(b, 50) for _, _, b, _ in results])
    print(f"median audit scan:    p50 {ms(scan_p50)}  p95 {ms(scan_p95)}")
    print(f"median audit finish:  {ms(med([a['finish'] for a, _, _, _ in results]))}")
    print(f"median audit apply:   {ms(med([a['apply'] for a, _, _, _ in results]))}")
    print(f"median whole audit:   {med([a['total'] for a, _, _, _ in results]):.2f} s "
          f"({SITE_ITEMS:,} scans, finish, apply)")
    print(f"median transfer scan: p50 {ms(med([pct(t['scans'], 50) for _, t, _, _ in results]))}"
          f"  p95 {ms(med([pct(t['scans'], 95) for _, t, _, _ in results]))}")
    print(f"median transfer ship: {ms(med([t['ship'] for _, t, _, _ in results]))}  receive "
          f"{ms(med([t['receive'] for _, t, _, _ in results]))} ({SPARK_ITEMS} kits)")
    status_p50 = med([pct(st, 50) for _, _, _, st in results])
    print(f"median baseline insert+commit: p50 {ms(base_p50)}; set_status p50 {ms(status_p50)}")
    print(f"ratio scan/set_status: {scan_p50 / status_p50:.2f}")
    print(f"ratio scan/baseline: {scan_p50 / base_p50:.2f}")


if __name__ == "__main__":
    main()
