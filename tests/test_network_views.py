"""The ministry's view's queries (:mod:`labhub.network.views`) on the central's PostgreSQL,
its tables seeded directly: the labs (retired ones left out) with their regions, the
filters, the scope of a grant, a hub online, offline for days and never heard (a revoked
hub does not speak for its lab), rollout history from the events, readings by week and
by month (today's, last year's left out), active devices, runs, kits on loan, overdue
loans, audits with missing items, equipment against the plan, and the map's projection.
:func:`network_world` is the world the page tests (tests/test_web_network*.py) use too.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date

import pytest
from sqlalchemy import Connection, Engine, insert, update

from firmware_bridge.registry import devices
from inventory import assets, audits, catalog, corrections, loans, sites
from inventory.tables import loans as loans_table
from inventory.values import now_us
from labhub.network import views
from labhub.network.tables import network_daily, network_hubs
from sensors.storage import runs

BY = "Ana (coordinadora)"
DAY_US = views.DAY_US
EVERY_S = 60  # the sync interval: online within 3 minutes
CENTRAL_DB = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


@dataclass(frozen=True)
class World:
    now: int
    today: int


def _hub(conn: Connection, site: str, *, contact: int | None, version: str | None = None,
         backlog: int | None = None, revoked: bool = False) -> None:
    conn.execute(insert(network_hubs).values(
        id=str(uuid.uuid4()), site=site, name=f"pi-{site.lower()}",
        credential_hash=uuid.uuid4().hex + uuid.uuid4().hex, enrolled_at=0, enrolled_by=BY,
        revoked_at=1 if revoked else None, last_contact_at=contact, version=version,
        backlog=backlog))


def network_world(conn: Connection) -> World:
    """Valle (VL) > Norte (VL-R1) > Cali (VL-M1) > LAB-A (Lab Center, urban, active,
    hub online), VL-R1 > LAB-B (Lab Point, rural, installing, hub offline 3 days);
    VL > Sur (VL-R2) > LAB-C (Lab Spark, rural, planned, hub never heard), LAB-D (Lab
    Point, urban, paused, no position, no hub); LAB-X retired. LAB-A measured, ran, lends
    and was audited."""
    now = now_us()
    today = now // DAY_US
    sites.create_site(conn=conn, code="VL", name="Valle", kind="network", by=BY)
    sites.create_site(conn=conn, code="VL-R1", name="Norte", kind="region", by=BY,
                      parent_code="VL")
    sites.create_site(conn=conn, code="VL-R2", name="Sur", kind="region", by=BY,
                      parent_code="VL")
    sites.create_site(conn=conn, code="VL-M1", name="Cali", kind="municipality", by=BY,
                      parent_code="VL-R1")
    for code, name, parent, tier, rural, lat, lon in (
            ("LAB-A", "Lab Center Cali", "VL-M1", "lab_center", False, 3.45, -76.53),
            ("LAB-B", "Lab Point Buga", "VL-R1", "lab_point", True, 3.90, -76.30),
            ("LAB-C", "Lab Spark Dagua", "VL-R2", "lab_spark", True, 3.66, -76.69),
            ("LAB-D", "Lab Point Jamundí", "VL-R2", "lab_point", False, None, None),
            ("LAB-X", "Lab cerrado", "VL-R2", "lab_spark", True, 3.5, -76.4)):
        sites.create_site(conn=conn, code=code, name=name, kind="site", by=BY,
                          parent_code=parent, tier=tier, rural=rural, latitude=lat,
                          longitude=lon)  # type: ignore[arg-type]
    for code, steps in (("LAB-A", ("installing", "active")), ("LAB-B", ("installing",)),
                        ("LAB-D", ("installing", "active", "paused"))):
        for status in steps:
            sites.set_rollout_status(conn=conn, code=code, status=status,  # type: ignore[arg-type]
                                     by=BY, note=f"a {status}")
    corrections.retire_site(conn=conn, code="LAB-X", by=BY)
    # The hubs: LAB-A's old laptop (revoked, heard just now: it speaks no more) and its
    # Pi, heard a minute ago; LAB-B's heard 3 days and an hour ago; LAB-C's never.
    _hub(conn, "LAB-A", contact=now, version="0.9.0", backlog=999, revoked=True)
    _hub(conn, "LAB-A", contact=now - 60_000_000, version="1.4.0", backlog=12)
    _hub(conn, "LAB-B", contact=now - 3 * DAY_US - 3_600_000_000, version="1.3.2",
         backlog=48_000)
    _hub(conn, "LAB-C", contact=None)
    conn.execute(insert(network_daily), [
        {"site": "LAB-A", "day": today, "readings": 100, "batches": 1, "bytes": 1},
        {"site": "LAB-A", "day": today - 3, "readings": 50, "batches": 1, "bytes": 1},
        {"site": "LAB-A", "day": today - 10, "readings": 30, "batches": 1, "bytes": 1},
        {"site": "LAB-A", "day": today - 120, "readings": 1000, "batches": 1, "bytes": 1},
        {"site": "LAB-A", "day": today - 400, "readings": 9999, "batches": 1, "bytes": 1},
        {"site": "LAB-B", "day": today - 5, "readings": 7, "batches": 1, "bytes": 1},
    ])
    device = {"kind": "lines", "name": "x", "port": None, "chip": None, "vid": None,
              "pid": None, "serial_number": None, "firmware": None, "first_seen": 0,
              "status": "ok", "lines": 0, "readings": 0, "rejects": 0, "settings": "{}"}
    conn.execute(insert(devices), [
        device | {"id": "LAB-A/est-1", "site": "LAB-A", "online": True, "last_seen": 0},
        device | {"id": "LAB-A/est-2", "site": "LAB-A", "online": False,
                  "last_seen": now - 2 * DAY_US},
        device | {"id": "LAB-A/old", "site": "LAB-A", "online": False,
                  "last_seen": now - 30 * DAY_US},
        device | {"id": "LAB-B/x", "site": "LAB-B", "online": True, "last_seen": now},
    ])
    conn.execute(insert(runs), [
        {"id": str(uuid.uuid4()), "title": "pH", "site": "LAB-A", "started_at": now - DAY_US,
         "created_at": now},
        {"id": str(uuid.uuid4()), "title": "Luz", "site": "LAB-A",
         "started_at": now - 60 * DAY_US, "created_at": now},
        {"id": str(uuid.uuid4()), "title": "Suelo", "site": "LAB-B", "started_at": now,
         "created_at": now},
    ])
    catalog.create_model(conn=conn, code="KIT", name="Kit robótica", category="robotics_kit",
                         by=BY)
    catalog.create_model(conn=conn, code="UNO", name="Arduino Uno",
                         category="microcontroller_board", by=BY)
    for tag, model in (("KIT-1", "KIT"), ("KIT-2", "KIT"), ("KIT-3", "KIT"),
                       ("UNO-1", "UNO"), ("UNO-2", "UNO"), ("UNO-3", "UNO")):
        assets.register_asset(conn=conn, tag=tag, model_code=model, site_code="LAB-A", by=BY)
    assets.register_asset(conn=conn, tag="UNO-B", model_code="UNO", site_code="LAB-B", by=BY)
    audit = audits.start_audit(conn=conn, site="LAB-A", by=BY)
    for tag in ("KIT-1", "KIT-2", "KIT-3", "UNO-1"):
        audits.scan_tag(conn=conn, audit_uuid=audit.uuid, tag=tag, by=BY)
    audits.finish_audit(conn=conn, audit_uuid=audit.uuid, by=BY)  # UNO-2, UNO-3 missing
    late = loans.check_out(conn=conn, asset_tags=["KIT-1"], borrower="7°B",
                           borrower_kind="group", due_at=now + DAY_US, by=BY)
    loans.check_out(conn=conn, asset_tags=["KIT-2"], borrower="8°A", borrower_kind="group",
                    due_at=now + DAY_US, by=BY)
    conn.execute(update(loans_table).where(loans_table.c.uuid == late.uuid)
                 .values(due_at=now - DAY_US))
    return World(now, today)


@pytest.fixture
def world(engine: Engine) -> World:
    with engine.begin() as conn:
        return network_world(conn)


@CENTRAL_DB
def test_labs_regions_filters_and_scope(engine: Engine, world: World) -> None:
    with engine.connect() as conn:
        labs = views.all_labs(conn=conn)
        # By region, then name; not the retired LAB-X.
        assert [lab.code for lab in labs] == ["LAB-A", "LAB-B", "LAB-D", "LAB-C"]
        assert {lab.code: lab.region for lab in labs} == {
            "LAB-A": "VL-R1", "LAB-B": "VL-R1", "LAB-C": "VL-R2", "LAB-D": "VL-R2"}
        assert views.regions(labs) == [("VL-R1", "Norte"), ("VL-R2", "Sur")]
        f = views.Filters
        assert [x.code for x in views.filtered(labs, f(region="VL-R2"))] == ["LAB-D", "LAB-C"]
        assert [x.code for x in views.filtered(labs, f(tier="lab_point"))] == ["LAB-B", "LAB-D"]
        assert [x.code for x in views.filtered(labs, f(rural=True))] == ["LAB-B", "LAB-C"]
        assert [x.code for x in views.filtered(labs, f(rural=False, region="VL-R1"))] == [
            "LAB-A"]
        region = {"VL-R1", "VL-M1", "LAB-A", "LAB-B"}  # a grant at VL-R1's subtree
        assert [x.code for x in views.all_labs(conn=conn, only=region)] == ["LAB-A", "LAB-B"]


@CENTRAL_DB
def test_rollout_contacts_and_history(engine: Engine, world: World) -> None:
    with engine.connect() as conn:
        labs = views.all_labs(conn=conn)
        rows = {r.lab.code: r for r in views.rollout(conn=conn, labs=labs, now=world.now,
                                                     every_s=EVERY_S)}
    a, b, c, d = (rows[k].contact for k in ("LAB-A", "LAB-B", "LAB-C", "LAB-D"))
    assert (a.state, a.hubs, a.version, a.backlog) == ("online", 1, "1.4.0", 12)
    assert (b.state, b.days_offline, b.version, b.backlog) == ("offline", 3, "1.3.2", 48_000)
    assert (c.state, c.hubs, c.last_contact_at) == ("never", 1, None)
    assert (d.state, d.hubs) == ("never", 0)
    assert [(x.from_status, x.to_status) for x in rows["LAB-D"].history] == [
        ("planned", "installing"), ("installing", "active"), ("active", "paused")]
    assert rows["LAB-D"].history[-1].note == "a paused" and rows["LAB-C"].history == []
    assert rows["LAB-A"].lab.rollout_status == "active"
    # Just past 3 sync intervals a hub is offline, for 0 whole days.
    assert views.contact_state(world.now - 180_000_000, now=world.now, every_s=60) == "online"
    assert views.contact_state(world.now - 180_000_001, now=world.now, every_s=60) == "offline"


@CENTRAL_DB
def test_use_counts_each_lab(engine: Engine, world: World) -> None:
    with engine.connect() as conn:
        labs = views.all_labs(conn=conn)
        used = {r.lab.code: r.use for r in views.use(conn=conn, labs=labs, now=world.now)}
    a = used["LAB-A"]
    assert (a.readings_week, a.readings_weekly_avg) == (150, round(180 / 12))
    assert (a.devices_active, a.runs, a.runs_recent) == (2, 2, 1)
    assert (a.kits, a.boards, a.kits_on_loan) == (3, 3, 2)
    assert (a.open_loans, a.overdue_loans) == (2, 1)
    assert (a.audits_missing, a.missing_items) == (1, 2)
    assert (a.kits_planned, a.boards_planned) == views.PLAN["lab_center"]
    b = used["LAB-B"]
    assert (b.readings_week, b.devices_active, b.runs, b.boards, b.kits) == (7, 1, 1, 1, 0)
    assert used["LAB-D"] == views.Use(kits_planned=views.PLAN["lab_point"][0],
                                      boards_planned=views.PLAN["lab_point"][1])


@CENTRAL_DB
def test_weeks_and_months(engine: Engine, world: World) -> None:
    with engine.connect() as conn:
        weeks = views.weekly(conn=conn, code="LAB-A", now=world.now)
        months = views.monthly(conn=conn, codes=["LAB-A", "LAB-B"], now=world.now)
        none = views.monthly(conn=conn, codes=[], now=world.now)
        every = views.monthly(conn=conn, codes=None, now=world.now)  # no list of codes
    assert len(weeks) == views.WEEKS and sum(n for _, n in weeks) == 180
    assert all((monday + 3) % 7 == 0 for monday, _ in weeks)  # Mondays
    this_week = views.week_start(world.today)
    assert dict(weeks)[this_week] == 100 + (50 if world.today - 3 >= this_week else 0)
    assert len(months) == 12 and sum(n for _, n in months) == 1187  # not last year's
    assert months[-1][0] == date.fromordinal(date(1970, 1, 1).toordinal() + world.today
                                             ).replace(day=1)
    assert [n for _, n in none] == [0] * 12 and every == months


def test_the_map_fits_the_labs_and_keeps_north_up() -> None:
    lab = views.Lab
    labs = [lab("N", "N", None, "R", "Norte", None, 4.0, -76.0, "active", None),
            lab("S", "S", None, "R", "Norte", None, 3.0, -76.0, "planned", None),
            lab("W", "W", None, None, None, None, 3.5, -77.0, "paused", None),
            lab("Q", "Q", None, None, None, None, None, None, None, None)]
    drawn = views.layout(labs, width=640, height=480, pad=28)
    at = {p.lab.code: (p.x, p.y) for p in drawn.points}
    assert drawn.unplaced == 1 and set(at) == {"N", "S", "W"}
    assert at["N"][1] < at["S"][1] and at["N"][0] == at["S"][0]  # north up
    assert at["W"][0] < at["N"][0]  # west left
    for x, y in at.values():
        assert 28 <= x <= 612 and 28 <= y <= 452
    assert abs(at["S"][1] - at["N"][1] - 424) < 0.2  # the latitude span fills the height
    assert [name for name, *_ in drawn.labels] == ["Norte"]
