"""Loans, repairs and optimistic concurrency on every backend: check out and in (whole,
partial, by tag), overdue and due-soon lists, repairs, stale versions refused with
nothing written, and a property test that rebuilds assets and stock from history after
random loans, returns and repairs."""

from __future__ import annotations

import re
import threading
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from movements_world import BY, DAY_US, build, snapshot
from sqlalchemy import Engine, select

from inventory import assets, kits, loans, maintenance, stock
from inventory.errors import (
    InvalidTransitionError,
    InvalidValueError,
    InventoryError,
    NotFoundError,
    StaleVersionError,
)
from inventory.history import AssetState, StockState, history_of, rebuild_assets, rebuild_stock
from inventory.tables import assets as assets_table
from inventory.tables import stock as stock_table
from inventory.values import now_us


@pytest.fixture
def lab(engine: Engine) -> Engine:
    with engine.begin() as conn:
        build(conn)
    return engine


def _lend(lab: Engine, *tags: str, borrower: str = "Prof. Marta, 7B",
          due_in: int = DAY_US) -> loans.Loan:
    with lab.begin() as conn:
        return loans.check_out(conn=conn, asset_tags=list(tags), borrower=borrower,
                               borrower_kind="group", due_at=now_us() + due_in, by=BY,
                               purpose="feria de ciencias")


def test_a_loan_goes_out_and_comes_back_in_two_parts(lab: Engine) -> None:
    loan = _lend(lab, "KIT-1", "UNO-2", "UNO-3")
    assert loan.open and loan.version == 1 and loan.site_code == "LC-1"
    assert [(i.asset_tag, i.is_kit) for i in loan.items] == [
        ("KIT-1", True), ("UNO-2", False), ("UNO-3", False)]
    with lab.begin() as conn:
        assert {assets.get_asset(conn=conn, tag=t).status
                for t in ("KIT-1", "UNO-1", "UNO-2", "UNO-3")} == {"on_loan"}
        assert loans.open_loan_of(conn=conn, asset_tag="UNO-2") == loan
        back = loans.check_in(conn=conn, loan_uuid=loan.uuid, by=BY, expected_version=1,
                              returns=[loans.ItemReturn(tag="UNO-2", condition="poor")])
        assert back.open and back.version == 2
        assert [i.returned_at is not None for i in back.items] == [False, True, False]
        assert assets.get_asset(conn=conn, tag="UNO-2").condition == "poor"
        done = loans.check_in_tag(conn=conn, tag="UNO-3", by=BY)
        assert done.open
        done = loans.check_in_tag(conn=conn, tag="KIT-1", by=BY)
        assert not done.open and done.closed_at is not None and done.version == 4
        log = history_of(conn=conn, subject="UNO-2")
    assert [e.kind for e in log] == ["AssetRegistered", "AssetCheckedOut", "AssetCheckedIn"]
    assert log[1].to_state == {"status": "on_loan", "loan": loan.uuid,
                               "borrower": "Prof. Marta, 7B"}
    assert log[1].note == "feria de ciencias"
    assert log[2].to_state == {"status": "available", "condition": "poor", "loan": loan.uuid}


def test_check_in_of_an_item_not_on_loan_names_it_and_writes_nothing(lab: Engine) -> None:
    loan = _lend(lab, "UNO-2")
    before = snapshot(lab)
    cases: list[tuple[Any, type[Exception], str]] = [
        (lambda c: loans.check_in_tag(conn=c, tag="UNO-3", by=BY), InvalidTransitionError,
         "asset 'UNO-3' is not on loan (it is available)"),
        (lambda c: loans.check_in(conn=c, loan_uuid=loan.uuid, by=BY, returns=[
            loans.ItemReturn(tag="UNO-2"), loans.ItemReturn(tag="UNO-3")]),
         InvalidTransitionError, f"asset 'UNO-3' is not on loan {loan.uuid}"),
        (lambda c: loans.check_in(conn=c, loan_uuid="nope", by=BY,
                                  returns=[loans.ItemReturn(tag="UNO-2")]),
         NotFoundError, "no loan with id 'nope'"),
        (lambda c: loans.check_in_tag(conn=c, tag="NOPE", by=BY), NotFoundError,
         "no asset with tag 'NOPE'"),
        (lambda c: loans.check_in(conn=c, loan_uuid=loan.uuid, by=BY, returns=[
            loans.ItemReturn(tag="UNO-2", kit=kits.KitReturn())]),
         InvalidValueError, "asset 'UNO-2' is not a kit"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=re.escape(message)), lab.begin() as conn:
            call(conn)
    assert snapshot(lab) == before
    with lab.begin() as conn:
        loans.check_in_tag(conn=conn, tag="UNO-2", by=BY)
    before = snapshot(lab)
    with pytest.raises(InvalidTransitionError,
                       match=f"asset 'UNO-2' already came back from loan {loan.uuid}"), \
            lab.begin() as conn:
        loans.check_in(conn=conn, loan_uuid=loan.uuid, by=BY,
                       returns=[loans.ItemReturn(tag="UNO-2")])
    assert snapshot(lab) == before


def test_check_out_refusals_name_the_item(lab: Engine) -> None:
    _lend(lab, "UNO-2", borrower="Luis")
    with lab.begin() as conn:
        maintenance.start_repair(conn=conn, tag="UNO-3", fault="USB suelto", by=BY)
    before = snapshot(lab)
    due = now_us() + DAY_US
    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"asset_tags": ["UNO-2"]}, InvalidTransitionError, "asset 'UNO-2' is already on loan"),
        ({"asset_tags": ["UNO-3"]}, InvalidTransitionError,
         "asset 'UNO-3' is in_repair and cannot be lent"),
        ({"asset_tags": ["UNO-1"]}, InvalidTransitionError, "asset 'UNO-1' is part of kit 'KIT-1'"),
        ({"asset_tags": ["KIT-1", "UNO-9"]}, InvalidValueError,
         "asset 'UNO-9' is at LP-2, 'KIT-1' at LC-1: one loan lends from one site"),
        ({"asset_tags": ["KIT-1", "KIT-1"]}, InvalidValueError, "'KIT-1' is listed twice"),
        ({"asset_tags": []}, InvalidValueError, "at least one asset tag"),
        ({"asset_tags": ["KIT-1"], "due_at": now_us() - 1}, InvalidValueError,
         "must be in the future"),
        ({"asset_tags": ["KIT-1"], "due_at": now_us() + 500 * DAY_US}, InvalidValueError,
         "at most 400 days away"),
        ({"asset_tags": ["KIT-1"], "borrower_kind": "dog"}, InvalidValueError,
         "borrower kind 'dog' is not one of: person, group, room"),
        ({"asset_tags": ["KIT-1"], "borrower": "  "}, InvalidValueError,
         "the borrower cannot be empty"),
    ]
    for change, error, message in cases:
        fields: dict[str, Any] = {"borrower": "7B", "borrower_kind": "group", "due_at": due,
                                  **change}
        with pytest.raises(error, match=re.escape(message)), lab.begin() as conn:
            loans.check_out(conn=conn, by=BY, **fields)
    assert snapshot(lab) == before


def test_overdue_due_soon_open_and_borrower_lists(lab: Engine) -> None:
    soon = _lend(lab, "UNO-2", borrower="Prof. Marta, 7B", due_in=DAY_US)
    later = _lend(lab, "UNO-9", borrower="Sala de robótica", due_in=7 * DAY_US)
    closed = _lend(lab, "UNO-3", borrower="Luis", due_in=2 * 3600_000_000)
    with lab.begin() as conn:
        loans.check_in_tag(conn=conn, tag="UNO-3", by=BY)

    def ids(**kw: Any) -> tuple[int, list[str]]:
        with lab.connect() as conn:
            total, found = loans.list_loans(conn=conn, **kw)
        return total, [x.uuid for x in found]

    now = now_us()
    assert ids() == (3, [closed.uuid, soon.uuid, later.uuid])  # by due time
    assert ids(open_only=True) == (2, [soon.uuid, later.uuid])
    assert ids(open_only=False) == (1, [closed.uuid])
    assert ids(due_soon=True, now=now) == (1, [soon.uuid])
    assert ids(overdue=True, now=now) == (0, [])
    assert ids(overdue=True, now=now + 2 * DAY_US) == (1, [soon.uuid])
    assert ids(overdue=True, now=now + 8 * DAY_US) == (2, [soon.uuid, later.uuid])
    assert ids(borrower="marta") == (1, [soon.uuid])
    assert ids(site_under="LP-2") == (1, [later.uuid])
    assert ids(site_under="R1", limit=1, offset=1) == (3, [soon.uuid])
    with lab.connect() as conn, pytest.raises(InvalidValueError, match="limit 501"):
        loans.list_loans(conn=conn, limit=501)


def test_a_repair_takes_an_asset_out_of_service_and_back(lab: Engine) -> None:
    with lab.begin() as conn:
        repair = maintenance.start_repair(conn=conn, tag="UNO-2", fault="no enciende",
                                          condition="broken", by="Luis")
        assert repair.open
        asset = assets.get_asset(conn=conn, tag="UNO-2")
        assert (asset.status, asset.condition) == ("in_repair", "broken")
        done = maintenance.finish_repair(conn=conn, repair_uuid=repair.uuid,
                                         work_done="cambio del regulador", condition="fair",
                                         by="Luis", expected_version=asset.version)
        assert not done.open and done.work_done == "cambio del regulador"
        asset = assets.get_asset(conn=conn, tag="UNO-2")
        assert (asset.status, asset.condition) == ("available", "fair")
        maintenance.start_repair(conn=conn, tag="UNO-2", fault="pin 13 roto", by="Luis")
        history = maintenance.repairs_of(conn=conn, tag="UNO-2")
        assert [(r.fault, r.open) for r in history] == [("no enciende", False),
                                                        ("pin 13 roto", True)]
        kinds = [e.kind for e in history_of(conn=conn, subject="UNO-2")]
        assert kinds == ["AssetRegistered", "RepairStarted", "RepairFinished", "RepairStarted"]
    loan = _lend(lab, "UNO-3")
    before = snapshot(lab)
    cases: list[tuple[Any, type[Exception], str]] = [
        (lambda c: maintenance.finish_repair(conn=c, repair_uuid=repair.uuid, work_done="x",
                                             by=BY), InvalidTransitionError, "already finished"),
        (lambda c: maintenance.start_repair(conn=c, tag="UNO-3", fault="x", by=BY),
         InvalidTransitionError, f"asset 'UNO-3' is on loan {loan.uuid}"),
        (lambda c: maintenance.start_repair(conn=c, tag="UNO-2", fault="x", by=BY),
         InvalidTransitionError, "asset 'UNO-2' is already in_repair"),
        (lambda c: maintenance.start_repair(conn=c, tag="UNO-9", fault=" ", by=BY),
         InvalidValueError, "the fault of asset 'UNO-9' cannot be empty"),
        (lambda c: maintenance.finish_repair(conn=c, repair_uuid="nope", work_done="x", by=BY),
         NotFoundError, "no repair with id 'nope'"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=re.escape(message)), lab.begin() as conn:
            call(conn)
    assert snapshot(lab) == before


def test_two_concurrent_edits_one_wins_the_other_is_stale_and_writes_nothing(
    lab: Engine,
) -> None:
    # Two coordinators read UNO-2 at version 1 in their own transactions...
    with lab.connect() as first, lab.connect() as second:
        tx1, tx2 = first.begin(), second.begin()
        read1 = assets.get_asset(conn=first, tag="UNO-2")
        read2 = assets.get_asset(conn=second, tag="UNO-2")
        assert read1.version == read2.version == 1
        # ...the first sends it to repair and commits...
        maintenance.start_repair(conn=first, tag="UNO-2", fault="no enciende", by="Ana",
                                 expected_version=read1.version)
        tx1.commit()
        before = snapshot(lab)
        # ...the second, still holding what it read, tries to lend it: refused, and its
        # transaction (event included) rolls back.
        with pytest.raises(StaleVersionError, match=re.escape(
                "asset 'UNO-2' is at version 2, not 1")):
            loans.check_out(conn=second, asset_tags=["UNO-2"], borrower="Luis",
                            borrower_kind="person", due_at=now_us() + DAY_US, by="Luis",
                            expected_versions={"UNO-2": read2.version})
        tx2.rollback()
        # Even a writer that skipped the version check cannot overwrite the newer state:
        # the update only matches the version it read.
        tx3 = second.begin()
        with pytest.raises(StaleVersionError, match="at version 2, not 1"):
            assets.change_state(conn=second, asset=read2, kind="AssetStatusChanged", by="Luis",
                                status="lost")
        tx3.rollback()
    assert snapshot(lab) == before
    with lab.connect() as conn:
        assert assets.get_asset(conn=conn, tag="UNO-2").status == "in_repair"


def test_a_stale_loan_or_stock_version_is_refused(lab: Engine) -> None:
    loan = _lend(lab, "UNO-2", "UNO-3")
    with lab.begin() as conn:
        loans.check_in_tag(conn=conn, tag="UNO-2", by=BY)
        level = stock.get_stock(conn=conn, site_code="LC-1", model_code="JMP")
        stock.consume(conn=conn, site_code="LC-1", model_code="JMP", quantity=1, by=BY)
    before = snapshot(lab)
    with pytest.raises(StaleVersionError, match=f"loan '{loan.uuid}' is at version 2, not 1"), \
            lab.begin() as conn:
        loans.check_in(conn=conn, loan_uuid=loan.uuid, by=BY, expected_version=1,
                       returns=[loans.ItemReturn(tag="UNO-3")])
    with pytest.raises(StaleVersionError, match="stock 'LC-1/JMP' is at version"), \
            lab.begin() as conn:
        stock.adjust(conn=conn, site_code="LC-1", model_code="JMP", quantity=10, by=BY,
                     expected_version=level.version)
    assert snapshot(lab) == before


ITEMS = ["KIT-1", "UNO-2", "UNO-3"]
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("lend"), st.sets(st.sampled_from(ITEMS), min_size=1)),
        st.tuples(st.just("return"), st.sampled_from(ITEMS),
                  st.sampled_from(["complete", "short", "partial", "partial-board",
                                   "broken"])),
        st.tuples(st.just("repair"), st.sampled_from([*ITEMS, "UNO-1"])),
        st.tuples(st.just("finish"), st.sampled_from([*ITEMS, "UNO-1"])),
        st.tuples(st.just("found"), st.sampled_from(["UNO-1"])),
        st.tuples(st.just("stock"), st.sampled_from(["JMP", "LED"]), st.integers(-60, 60)),
    ),
    max_size=20,
)


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_history_rebuilds_assets_and_stock_after_loans_returns_and_repairs(
    engine: Engine, ops: list[Any]
) -> None:
    p = f"{uuid.uuid4().hex[:8]}-"
    with engine.begin() as conn:
        build(conn, p)
    refused = 0
    for op in ops:
        try:
            with engine.begin() as conn:
                if op[0] == "lend":
                    loans.check_out(conn=conn, asset_tags=sorted(p + t for t in op[1]),
                                    borrower="7B", borrower_kind="group",
                                    due_at=now_us() + DAY_US, by=BY)
                elif op[0] == "return":
                    tag = p + op[1]
                    kit = {"complete": None,
                           "short": kits.KitReturn(parts={p + "JMP": 37}),
                           "partial": kits.KitReturn(parts={p + "LED": 4}),
                           "partial-board": kits.KitReturn(
                               tags=frozenset({p + "UNO-1"}),
                               damaged_tags=frozenset({p + "UNO-1"})),
                           "broken": kits.KitReturn(tags=frozenset({p + "UNO-1"}),
                                                    damaged_tags=frozenset({p + "UNO-1"}))}
                    loans.check_in_tag(conn=conn, tag=tag, by=BY,
                                       kit=kit[op[2]] if op[1] == "KIT-1" else None,
                                       rest_later=op[2].startswith("partial") and op[1] == "KIT-1",
                                       condition="fair" if op[2] == "broken" else None)
                elif op[0] == "repair":
                    maintenance.start_repair(conn=conn, tag=p + op[1], fault="falla", by=BY)
                elif op[0] == "finish":
                    open_ = [r for r in maintenance.repairs_of(conn=conn, tag=p + op[1])
                             if r.open]
                    if open_:
                        maintenance.finish_repair(conn=conn, repair_uuid=open_[0].uuid,
                                                  work_done="arreglado", by=BY)
                elif op[0] == "found":
                    assets.set_status(conn=conn, tag=p + op[1], status="available", by=BY)
                elif op[2] > 0:
                    stock.receive(conn=conn, site_code=p + "LC-1", model_code=p + op[1],
                                  quantity=op[2], by=BY)
                elif op[2] < 0:
                    stock.consume(conn=conn, site_code=p + "LC-1", model_code=p + op[1],
                                  quantity=-op[2], by=BY)
        except (InvalidTransitionError, InvalidValueError):
            refused += 1
        except InventoryError as exc:  # anything else is a bug in the services
            raise AssertionError(f"{op}: {exc}") from exc
    with engine.connect() as conn:
        rebuilt = {t: s for t, s in rebuild_assets(conn=conn).items() if t.startswith(p)}
        table = {
            r.tag: AssetState(r.site_code, r.status, r.condition)
            for r in conn.execute(select(assets_table).where(assets_table.c.tag.startswith(p)))
        }
        stock_rebuilt = {k: v for k, v in rebuild_stock(conn=conn).items()
                         if k[0].startswith(p)}
        stock_rows = {
            (r.site_code, r.model_code): StockState(r.quantity, r.reorder_threshold)
            for r in conn.execute(select(stock_table)
                                  .where(stock_table.c.site_code.startswith(p)))
        }
    assert rebuilt == table and len(table) == 5
    assert stock_rebuilt == stock_rows and len(stock_rows) == 3


def test_two_writers_racing_for_one_board_one_wins_one_is_refused(lab: Engine) -> None:
    # Each round, two threads that both read version 1 of a board start at the same
    # moment: one lends it, the other sends it to repair. However the database orders
    # them, exactly one succeeds and the other is refused as stale, with nothing of it
    # written (only the winner's event follows the registration).
    with lab.begin() as conn:
        for i in range(4):
            assets.register_asset(conn=conn, tag=f"RACE-{i}", model_code="UNO",
                                  site_code="LC-1", by=BY)
    for i in range(4):
        tag = f"RACE-{i}"
        barrier = threading.Barrier(2)
        outcome: dict[str, str] = {}

        def lend(tag: str = tag, barrier: threading.Barrier = barrier,
                 outcome: dict[str, str] = outcome) -> None:
            barrier.wait()
            try:
                with lab.begin() as conn:
                    loans.check_out(conn=conn, asset_tags=[tag], borrower="Luis",
                                    borrower_kind="person", due_at=now_us() + DAY_US, by="Luis",
                                    expected_versions={tag: 1})
                outcome["lend"] = "won"
            except StaleVersionError:
                outcome["lend"] = "stale"

        def repair(tag: str = tag, barrier: threading.Barrier = barrier,
                   outcome: dict[str, str] = outcome) -> None:
            barrier.wait()
            try:
                with lab.begin() as conn:
                    maintenance.start_repair(conn=conn, tag=tag, fault="no enciende",
                                             by="Ana", expected_version=1)
                outcome["repair"] = "won"
            except StaleVersionError:
                outcome["repair"] = "stale"

        threads = [threading.Thread(target=lend), threading.Thread(target=repair)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert sorted(outcome.values()) == ["stale", "won"], outcome
        winner = next(k for k, v in outcome.items() if v == "won")
        with lab.connect() as conn:
            asset = assets.get_asset(conn=conn, tag=tag)
            log = [e.kind for e in history_of(conn=conn, subject=tag)]
            lent = [x for x in loans.list_loans(conn=conn, borrower="Luis")[1]
                    if x.items[0].asset_tag == tag]
            repairs = maintenance.repairs_of(conn=conn, tag=tag)
        assert asset.version == 2
        if winner == "lend":
            assert (asset.status, log, len(repairs)) == (
                "on_loan", ["AssetRegistered", "AssetCheckedOut"], 0)
        else:
            assert (asset.status, log, len(repairs)) == (
                "in_repair", ["AssetRegistered", "RepairStarted"], 1)
        assert len(lent) == (1 if winner == "lend" else 0)
