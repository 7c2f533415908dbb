"""What each lab holds and has under way (``inventory.sites.site_counts``), on every
backend: assets by status, kits (a kit model's, or any asset with a contents list; not a
retired one), open and overdue loans, open transfers in and out (a received one no more),
the newest finished audit with its findings (an open one is not a result); zeros for a
lab with nothing; and a fixed number of queries however many labs are asked for."""

from __future__ import annotations

from typing import Any

from inventory_world import BY, WEEK_US, network, put_in_status
from sqlalchemy import Engine, event

from inventory import assets as a
from inventory import audits as au
from inventory import catalog, kits, loans, sites
from inventory import transfers as tr
from inventory.values import now_us


def _lab(engine: Engine) -> None:
    """VL-LP-014: three robotics kits (one retired), four boards (one lent, one in a box
    with a contents list), a box; VL-LP-020: one board."""
    with engine.begin() as conn:
        network(conn)
        catalog.create_model(conn=conn, code="UNO", name="Arduino Uno",
                             category="microcontroller_board", by=BY)
        catalog.create_model(conn=conn, code="BOX", name="Caja de herramientas",
                             category="tool", by=BY)
        for i in (1, 2, 3):
            a.register_asset(conn=conn, tag=f"KIT-{i}", model_code="KIT-ROBOT",
                             site_code="VL-LP-014", by=BY)
        put_in_status(conn, "KIT-3", "retired")
        for i in (1, 2, 3, 4):
            a.register_asset(conn=conn, tag=f"UNO-{i}", model_code="UNO",
                             site_code="VL-LP-014", by=BY)
        a.register_asset(conn=conn, tag="BOX-1", model_code="BOX", site_code="VL-LP-014",
                         by=BY)
        kits.define_contents(conn=conn, kit_tag="BOX-1", assets=["UNO-4"], parts={}, by=BY)
        a.register_asset(conn=conn, tag="UNO-9", model_code="UNO", site_code="VL-LP-020",
                         by=BY)


def test_a_labs_counts_follow_what_it_holds_and_has_under_way(engine: Engine) -> None:
    _lab(engine)
    start = now_us()
    with engine.begin() as conn:
        loans.check_out(conn=conn, asset_tags=["UNO-1"], borrower="Grupo 7B",
                        borrower_kind="group", due_at=start + WEEK_US, by=BY)
        loans.check_out(conn=conn, asset_tags=["KIT-1"], borrower="Marta",
                        borrower_kind="person", due_at=start + 2 * WEEK_US, by=BY)
        out = tr.draft_transfer(conn=conn, from_site="VL-LP-014", to_site="VL-LP-020",
                                tags=["UNO-2"], by=BY)
        tr.ship_transfer(conn=conn, transfer_uuid=out.uuid, carrier="Bus", by=BY)
        tr.draft_transfer(conn=conn, from_site="VL-LP-020", to_site="VL-LP-014",
                          tags=["UNO-9"], by=BY)
        first = au.start_audit(conn=conn, site="VL-LP-014", by=BY)
        au.scan_tag(conn=conn, audit_uuid=first.uuid, tag="UNO-3", by=BY)
        au.finish_audit(conn=conn, audit_uuid=first.uuid, by=BY)
        second = au.start_audit(conn=conn, site="VL-LP-014", by=BY)
        for tag in ("UNO-3", "UNO-4", "UNO-9", "NO-LABEL"):
            au.scan_tag(conn=conn, audit_uuid=second.uuid, tag=tag, by=BY)
        report = au.finish_audit(conn=conn, audit_uuid=second.uuid, by=BY)
        au.start_audit(conn=conn, site="VL-LP-014", by=BY)  # open: no result yet
        au.start_audit(conn=conn, site="VL-LP-020", by=BY)
        counts = sites.site_counts(conn=conn, codes=["VL-LP-014", "VL-LP-020", "VL-LC-01",
                                                     "NOT-A-SITE"])
    lab = counts["VL-LP-014"]
    assert lab.assets_by_status == {"available": 4, "on_loan": 2, "in_transit": 1,
                                    "retired": 1}
    assert lab.assets == 8
    assert lab.kits == 3  # KIT-1 (lent), KIT-2 and BOX-1; not the retired KIT-3
    assert (lab.open_loans, lab.overdue_loans) == (2, 0)
    assert (lab.transfers_in, lab.transfers_out) == (1, 1)
    assert lab.last_audit is not None
    assert lab.last_audit.uuid == second.uuid and lab.last_audit.status == "finished"
    assert lab.last_audit.finished_at >= start
    assert lab.last_audit.findings == {
        "found": len(report.found), "missing": len(report.missing),
        "unexpected": len(report.unexpected), "unknown": len(report.unknown)}
    assert lab.last_audit.findings == {"found": 2, "missing": 2, "unexpected": 1, "unknown": 1}
    other = counts["VL-LP-020"]
    assert (other.assets_by_status, other.kits, other.transfers_in,
            other.transfers_out, other.last_audit) == ({"available": 1}, 0, 1, 1, None)
    for empty in ("VL-LC-01", "NOT-A-SITE"):
        assert counts[empty] == sites.SiteCounts(empty)
        assert counts[empty].assets == 0

    with engine.connect() as conn:  # overdue: open loans past due at the time asked
        late = sites.site_counts(conn=conn, codes=["VL-LP-014"], now=start + WEEK_US + 1)
    assert (late["VL-LP-014"].open_loans, late["VL-LP-014"].overdue_loans) == (2, 1)

    with engine.begin() as conn:  # a received transfer and a returned loan are no longer open
        loans.check_in_tag(conn=conn, tag="UNO-1", by=BY)
        tr.scan_item(conn=conn, transfer_uuid=out.uuid, tag="UNO-2", site="VL-LP-020", by=BY)
        tr.receive_transfer(conn=conn, transfer_uuid=out.uuid, site="VL-LP-020", by=BY)
        after = sites.site_counts(conn=conn, codes=["VL-LP-014", "VL-LP-020"])
    assert (after["VL-LP-014"].open_loans, after["VL-LP-014"].transfers_out) == (1, 0)
    assert after["VL-LP-020"].transfers_in == 0
    assert after["VL-LP-020"].assets_by_status == {"available": 2}


def test_the_counts_of_many_labs_take_the_same_few_queries(engine: Engine) -> None:
    with engine.begin() as conn:
        network(conn)
        for i in range(60):
            sites.create_site(conn=conn, code=f"VL-LS-{i:03}", name=f"Lab Spark {i}",
                              kind="site", parent_code="VL-R2", tier="lab_spark", by=BY)
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    event.listen(engine, "before_cursor_execute", count)
    try:
        with engine.connect() as conn:
            one = sites.site_counts(conn=conn, codes=["VL-LS-000"])
            few = len(statements)
            many = sites.site_counts(conn=conn, codes=[f"VL-LS-{i:03}" for i in range(60)])
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(one) == 1 and len(many) == 60
    assert few <= 6 and len(statements) == 2 * few  # no query per lab
