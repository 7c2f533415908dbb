"""A small network where every kind of reminder is true, and the people who should (and
should not) see each, for the reminders tests.

ValleLabs: region VL-R1 with labs LAB-A and LAB-B, region VL-R2 with LAB-C. At ``now``:

- LAB-A: a loan overdue (A-1, two days late), a loan due in 20 hours (A-2), a calibration
  due (A-3, every 30 days, last done 40 days ago), a climate station silent for 20 hours;
- LAB-B: jumper wires below their reorder level (3 of 10), an audit due (created 220 days
  ago, never audited; the hub audits every 6 months);
- LAB-C: a loan overdue (C-1).

People: Coord (coordinator of VL-R1: everything at LAB-A and LAB-B), Tere (teacher at
LAB-A, in Portuguese: loans, upkeep and devices of LAB-A, not stock or audits), Tito
(teacher at LAB-C: only C-1's loan), Estu (student at LAB-A: nothing), each with an
e-mail address; Admin (everything) has none.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, update

from firmware_bridge import registry
from inventory import assets, catalog, loans, service, sites, stock
from inventory.tables import events
from inventory.tables import loans as loan_table
from labhub import db
from labhub.access import accounts
from labhub.access.caller import NETWORK
from labhub.access.permissions import Grant, Role
from labhub.settings import Settings
from sensors.samples import now_us

BY = "Ana (coordinadora)"
HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
# name: (role, site, e-mail, language)
PEOPLE = {
    "Admin": (Role.ADMIN, NETWORK, None, None),
    "Coord": (Role.COORDINATOR, "VL-R1", "coord@valle.edu.co", None),
    "Tere": (Role.TEACHER, "LAB-A", "tere@escola.edu.br", "pt"),
    "Tito": (Role.TEACHER, "LAB-C", "tito@cauca.edu.co", "es"),
    "Estu": (Role.STUDENT, "LAB-A", "estu@valle.edu.co", None),
}


@dataclass(frozen=True)
class World:
    now: int
    overdue_a: str  # loan uuids
    due_a: str
    overdue_c: str
    user_ids: dict[str, int]


def _day(ts: int) -> str:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return datetime.fromtimestamp(ts / 1e6, tz=ZoneInfo("America/Bogota")).date().isoformat()


def expected_keys(world: World) -> dict[str, set[str]]:
    """The keys of each kind of reminder, by who sees them."""
    now = world.now
    loan_a = f"loan-overdue:{world.overdue_a}:{_day(now - 2 * DAY_US)}"
    loan_due = f"loan-due:{world.due_a}:{_day(now + 20 * HOUR_US)}"
    loan_c = f"loan-overdue:{world.overdue_c}:{_day(now - 2 * DAY_US)}"
    calibration = f"service-due:A-3:calibration:{_day(now - 10 * DAY_US)}"
    device = f"device-silent:usb-clima:{now - 20 * HOUR_US}"
    stock_b = "stock-low:LAB-B:JMP"
    audit_b = "audit-due:LAB-B:" + _day(_months_later(now - 220 * DAY_US, 6))
    return {
        "Coord": {loan_a, loan_due, calibration, device, stock_b, audit_b},
        "Tere": {loan_a, loan_due, calibration, device},
        "Tito": {loan_c},
        "Estu": set(),
        "Admin": {loan_a, loan_due, calibration, device, stock_b, audit_b, loan_c},
    }


def _months_later(ts: int, months: int) -> int:
    from inventory.reminders import add_months

    return add_months(ts, months)


def make_world(engine: Engine, *, now: int | None = None) -> World:
    """Build the network, its reminders and its people (see the module's words)."""
    now = now_us() if now is None else now
    with engine.begin() as conn:
        sites.create_site(conn=conn, code="VL", name="ValleLabs", kind="network", by=BY)
        for region in ("VL-R1", "VL-R2"):
            sites.create_site(conn=conn, code=region, name=region, kind="region",
                              parent_code="VL", by=BY)
        for code, region in (("LAB-A", "VL-R1"), ("LAB-B", "VL-R1"), ("LAB-C", "VL-R2")):
            sites.create_site(conn=conn, code=code, name=f"Escuela {code}", kind="site",
                              parent_code=region, tier="lab_point", by=BY)
        catalog.create_model(conn=conn, code="UNO", name="Arduino Uno",
                             category="microcontroller_board", by=BY)
        catalog.create_model(conn=conn, code="JMP", name="Jumper wire", category="consumable",
                             tracking="counted", unit="pcs", by=BY)
        for tag, site in (("A-1", "LAB-A"), ("A-2", "LAB-A"), ("A-3", "LAB-A"),
                          ("C-1", "LAB-C")):
            assets.register_asset(conn=conn, tag=tag, model_code="UNO", site_code=site, by=BY)
        ids = {}
        for tag, late in (("A-1", True), ("A-2", False), ("C-1", True)):
            loan = loans.check_out(conn=conn, asset_tags=[tag], borrower=f"Grupo {tag}",
                                   borrower_kind="group", due_at=now_us() + HOUR_US, by=BY)
            due = now - 2 * DAY_US if late else now + 20 * HOUR_US
            conn.execute(update(loan_table).where(loan_table.c.uuid == loan.uuid)
                         .values(due_at=due))
            ids[tag] = loan.uuid
        service.set_plan(conn=conn, tag="A-3", kind="calibration", every_days=30, by=BY,
                         last_done_at=now - 40 * DAY_US)
        stock.receive(conn=conn, site_code="LAB-B", model_code="JMP", quantity=3, by=BY)
        stock.set_reorder_threshold(conn=conn, site_code="LAB-B", model_code="JMP",
                                    threshold=10, by=BY)
        conn.execute(update(events).where(events.c.kind == "SiteCreated",
                                          events.c.subject == "LAB-B")
                     .values(at=now - 220 * DAY_US))
        registry.record_seen(conn=conn, device_id="usb-clima", kind="lines", site="LAB-A",
                             at=now - 20 * HOUR_US, name="Estación de clima")
        user_ids = {}
        for name, (role, site, email, language) in PEOPLE.items():
            user = accounts.create_user(conn, name=name, password_hash=None,
                                        grants_given=[Grant(role, site)])
            if email is not None:
                accounts.set_email(conn, user_id=user.id, email=email)
            if language is not None:
                accounts.set_language(conn, user_id=user.id, language=language,
                                      known=("es", "pt", "en"))
            user_ids[name] = user.id
    return World(now, ids["A-1"], ids["A-2"], ids["C-1"], user_ids)


# What runs the same queries on both backends as the tests that use ``database_url`` (the
# routes, pages, commands, the digest's edge cases) is tested on SQLite only, on a copy of
# the suite's migrated file, to keep the suite fast: the ``lab_*`` fixtures, which a test
# module imports (``from reminders_world import lab_url_fixture``, ...; the functions have
# other names so that test parameters called ``lab_url`` do not shadow them).
@pytest.fixture(name="lab_url")
def lab_url_fixture(sqlite_template: Path, tmp_path: Path) -> str:
    """The URL of a copy of the suite's migrated SQLite file, for this test alone."""
    path = tmp_path / "labhub.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(name="lab_engine")
def lab_engine_fixture(lab_url: str) -> Iterator[Engine]:
    engine = db.make_engine(lab_url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture(name="lab_settings")
def lab_settings_fixture(lab_url: str, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=lab_url)
