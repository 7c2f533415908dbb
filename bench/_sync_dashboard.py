"""A part of ``bench/sync.py`` (see its text): the ministry's dashboard at the size of a
network of 1,000 labs, on PostgreSQL.

A fresh database (made on ``$LABHUB_BENCH_POSTGRES_URL``, else the tests' server,
``$LABHUB_TEST_POSTGRES_URL`` or 127.0.0.1:5432, and dropped after) holds 1,000 labs in
10 regions, 3 hubs each, a year of ``network_daily`` (365,000 rows), 100,000 assets
with their registration events, 5,000 loans, 1,000 finished audits with findings, 10,000
devices and 20,000 runs, written with ``COPY``. Each of the dashboard's pages runs the
queries its route runs (:mod:`labhub.network.views`), timed alternately with a baseline:
a bare ``SELECT`` of the same rows from the same tables, unaggregated. Printed: the p95
of each against the 200 ms target, and the baseline's p95 in the same run.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from _common import alternate, ms, p95, verdict
from sqlalchemy import Connection, Engine, create_engine, select, text
from sqlalchemy.engine import make_url

from firmware_bridge.registry import devices
from inventory.tables import (
    assets,
    audit_findings,
    audits,
    events,
    loans,
    models,
    sites,
)
from inventory.values import now_us
from labhub import db
from labhub.network import views
from labhub.network.tables import network_daily, network_hubs
from sensors.storage import runs

TARGET_S = 0.200
ADMIN_URL = (os.environ.get("LABHUB_BENCH_POSTGRES_URL")
             or os.environ.get("LABHUB_TEST_POSTGRES_URL")
             or "postgresql://postgres@127.0.0.1:5432/test")
DAY_US = views.DAY_US
TIERS = views.TIERS


def _copy(conn: Connection, table: Any, columns: Sequence[str],
          rows: Iterable[Sequence[Any]]) -> None:
    """``COPY table (columns) FROM STDIN`` of ``rows`` (text format)."""
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cursor, cursor.copy(
            f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _fill(engine: Engine, labs: int, days: int, asset_count: int) -> None:
    rng = random.Random(15)
    now = now_us()
    today = now // DAY_US
    regions = max(1, labs // 100)
    with engine.begin() as conn:
        site_rows: list[tuple[Any, ...]] = [
            ("VL", "Red", "network", None, None, None, None, None, None, None, 1)]
        for r in range(regions):
            site_rows.append((f"R{r}", f"Región {r}", "region", "VL", None, None, None, None,
                              None, None, 1))
        codes = [f"LAB-{i:04d}" for i in range(labs)]
        statuses = views.ROLLOUT_STATUSES
        for i, code in enumerate(codes):
            site_rows.append((code, f"Laboratorio {i}", "site", f"R{i % regions}",
                              TIERS[i % 3], i % 2 == 0, 3 + rng.random() * 4,
                              -77 + rng.random() * 3, statuses[i % 4], now - DAY_US, 1))
        _copy(conn, sites, ("code", "name", "kind", "parent_code", "tier", "rural",
                            "latitude", "longitude", "rollout_status",
                            "rollout_changed_at", "version"), site_rows)
        _copy(conn, events, ("uuid", "at", "kind", "subject", "by", "site_code",
                             "from_state", "to_state"),
              ((str(uuid.uuid4()), now - (3 - k) * DAY_US, "SiteRolloutChanged", code, "bench",
                code, '{"rollout_status": "planned"}', '{"rollout_status": "installing"}')
               for code in codes for k in range(3)))
        _copy(conn, network_hubs, ("id", "site", "name", "credential_hash", "enrolled_at",
                                   "enrolled_by", "revoked_at", "last_contact_at", "version",
                                   "backlog"),
              ((str(uuid.uuid4()), code, f"hub-{h}", uuid.uuid4().hex * 2, 0, "bench",
                None if h == 2 else 1, now - rng.randrange(0, 10 * DAY_US), "1.4.0",
                rng.randrange(0, 50_000)) for code in codes for h in range(3)))
        _copy(conn, network_daily, ("site", "day", "readings", "batches", "bytes"),
              ((code, today - d, rng.randrange(1_000, 200_000), 10, 100_000)
               for code in codes for d in range(days)))
        _copy(conn, models, ("code", "name", "category", "tracking", "version"),
              [("KIT", "Kit", "robotics_kit", "serialized", 1),
               ("UNO", "Arduino Uno", "microcontroller_board", "serialized", 1),
               ("SENS", "Sensor", "sensor_module", "serialized", 1)])
        tags = [f"A-{n:06d}" for n in range(asset_count)]
        asset_site = {tag: codes[n % labs] for n, tag in enumerate(tags)}
        _copy(conn, assets, ("tag", "model_code", "status", "condition", "site_code",
                             "updated_at", "version"),
              ((tag, ("KIT", "UNO", "SENS")[n % 3], "on_loan" if n % 20 == 0 else "available",
                "good", asset_site[tag], now, 1) for n, tag in enumerate(tags)))
        _copy(conn, events, ("uuid", "at", "kind", "subject", "by", "site_code"),
              ((str(uuid.uuid4()), now - DAY_US, "AssetRegistered", tag, "bench",
                asset_site[tag]) for tag in tags))
        loan_count = max(labs * 5, 10)
        _copy(conn, loans, ("uuid", "borrower", "borrower_kind", "site_code",
                            "checked_out_at", "due_at", "closed_at", "by", "version"),
              ((str(uuid.uuid4()), "7B", "group", codes[n % labs], now - 3 * DAY_US,
                now + (DAY_US if n % 3 else -DAY_US), None if n % 2 else now, "bench", 1)
               for n in range(loan_count)))
        audit_ids = [(str(uuid.uuid4()), code) for code in codes]
        _copy(conn, audits, ("uuid", "site_code", "status", "version", "started_at",
                             "started_by", "finished_at"),
              ((a, code, "finished", 1, now - 2 * DAY_US, "bench", now - DAY_US)
               for a, code in audit_ids))
        _copy(conn, audit_findings, ("audit_uuid", "tag", "finding"),
              ((a, f"T-{k}", ("found", "missing")[k % 2]) for a, _ in audit_ids
               for k in range(5)))
        _copy(conn, devices, ("id", "kind", "name", "site", "first_seen", "last_seen",
                              "online", "status", "lines", "readings", "rejects", "settings"),
              ((f"{codes[n % labs]}/dev-{n}", "lines", "d", codes[n % labs], 0,
                now - rng.randrange(0, 20 * DAY_US), n % 4 == 0, "ok", 0, 0, 0, "{}")
               for n in range(labs * 10)))
        _copy(conn, runs, ("id", "title", "site", "started_at", "created_at"),
              ((str(uuid.uuid4()), "run", codes[n % labs],
                now - rng.randrange(0, 90 * DAY_US), now) for n in range(labs * 20)))
        conn.execute(text("ANALYZE"))


def _pages(engine: Engine, every_s: int) -> dict[str, tuple[Callable[[], object],
                                                            Callable[[], object]]]:
    """Each page's queries (as its route runs them) and its baseline."""

    def run(work: Callable[[Connection], object]) -> Callable[[], object]:
        def call() -> object:
            with engine.connect() as conn:
                return work(conn)
        return call

    def bare(*queries: Any) -> Callable[[], object]:
        return run(lambda conn: [conn.execute(q).all() for q in queries])

    def rollout_page(conn: Connection) -> object:
        labs = views.all_labs(conn=conn)
        shown = labs[:100]
        views.contacts(conn=conn, codes=[lab.code for lab in labs], now=now_us(),
                       every_s=every_s)
        return views.histories(conn=conn, codes=[lab.code for lab in shown])

    def use_page(conn: Connection) -> object:
        labs = views.all_labs(conn=conn)
        views.use(conn=conn, labs=labs[:100], now=now_us())
        return views.monthly(conn=conn, codes=None, now=now_us())  # an admin, unfiltered

    def use_csv(conn: Connection) -> object:
        return views.use(conn=conn, labs=views.all_labs(conn=conn), now=now_us())

    def rollout_csv(conn: Connection) -> object:
        return views.rollout(conn=conn, labs=views.all_labs(conn=conn), now=now_us(),
                             every_s=every_s)

    def lab_page(conn: Connection) -> object:
        lab = views.all_labs(conn=conn, only=["LAB-0007"])
        views.rollout(conn=conn, labs=lab, now=now_us(), every_s=every_s)
        views.use(conn=conn, labs=lab, now=now_us())
        views.weekly(conn=conn, code="LAB-0007", now=now_us())
        return views.monthly(conn=conn, codes=["LAB-0007"], now=now_us())

    year_ago = now_us() // DAY_US - 366
    all_sites = select(sites)
    hubs = select(network_hubs.c.site, network_hubs.c.last_contact_at,
                  network_hubs.c.version, network_hubs.c.backlog)
    rollout_events = select(events.c.subject, events.c.at, events.c.to_state).where(
        events.c.kind == "SiteRolloutChanged")
    daily = select(network_daily).where(network_daily.c.day >= year_ago)
    inventory = (select(assets.c.site_code, assets.c.status, models.c.category)
                 .join(models, models.c.code == assets.c.model_code))
    return {
        "rollout page": (run(rollout_page), bare(all_sites, hubs,
                                                 rollout_events.limit(300))),
        "rollout CSV (every lab)": (run(rollout_csv), bare(all_sites, hubs, rollout_events)),
        "use page": (run(use_page), bare(all_sites, daily, inventory.limit(10_000))),
        "use CSV (every lab)": (run(use_csv), bare(
            all_sites, daily.where(network_daily.c.day >= year_ago + 366 - 84), inventory,
            select(loans.c.site_code, loans.c.due_at), select(devices.c.site),
            select(runs.c.site, runs.c.started_at),
            select(audit_findings.c.audit_uuid, audit_findings.c.finding))),
        "a lab's page": (run(lab_page), bare(
            all_sites.where(sites.c.code == "LAB-0007"),
            daily.where(network_daily.c.site == "LAB-0007"),
            inventory.where(assets.c.site_code == "LAB-0007"))),
    }


def measure(smoke: bool) -> list[str]:
    """This part's lines for ``bench/sync.py``."""
    labs, days, asset_count, repeats = ((20, 30, 2_000, 5) if smoke
                                        else (1_000, 365, 100_000, 40))
    admin_url = make_url(ADMIN_URL).set(drivername="postgresql+psycopg")
    try:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # no server: say so, measure nothing
        return [f"dashboard: skipped, no PostgreSQL at {ADMIN_URL} ({type(exc).__name__})"]
    name = f"labhub_bench_dashboard_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    engine = db.make_engine(url)
    lines = [f"dashboard: {labs:,} labs, {labs * days:,} network_daily rows, "
             f"{asset_count:,} assets, 3 hubs a lab, on PostgreSQL"]
    try:
        db.upgrade(engine)
        _fill(engine, labs, days, asset_count)
        for page, (measured, baseline) in _pages(engine, every_s=60).items():
            timings = alternate(repeats, lambda _, m=measured: m,
                                lambda _, b=baseline: b, warm_up=True)
            worst = p95(timings.measured)
            lines.append(f"  {page}: p95 {ms(worst)} (bare SELECT of the same rows: "
                         f"p95 {ms(p95(timings.baseline))}); {verdict(worst, TARGET_S)}")
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return lines


if __name__ == "__main__":
    import sys

    for line in measure("--smoke" in sys.argv):
        print(line, flush=True)
