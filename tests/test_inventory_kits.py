"""Kits, counted stock, reorder report and locations on every backend: contents lists,
the kit check at check-in with its losses, and each refusal naming the part with
nothing written."""

from __future__ import annotations

import re

import pytest
from movements_world import BY, DAY_US, build, snapshot
from sqlalchemy import Engine

from inventory import assets, kits, loans, locations, maintenance, stock
from inventory.errors import (
    ConflictError,
    InvalidTransitionError,
    InvalidValueError,
    NotFoundError,
)
from inventory.history import history_of, rebuild_stock
from inventory.values import now_us


@pytest.fixture
def lab(engine: Engine) -> Engine:
    with engine.begin() as conn:
        build(conn)
    return engine


def _lend_kit(lab: Engine) -> str:
    with lab.begin() as conn:
        loan = loans.check_out(conn=conn, asset_tags=["KIT-1"], borrower="Prof. Marta, 7B",
                               borrower_kind="group", due_at=now_us() + DAY_US, by=BY,
                               purpose="robótica")
    return loan.uuid


def test_contents_are_defined_read_and_replaced(lab: Engine) -> None:
    with lab.begin() as conn:
        contents = kits.get_contents(conn=conn, kit_tag="KIT-1")
        assert contents.assets == ("UNO-1",)
        assert contents.parts == {"HC-SR04": 1, "JMP": 40, "LED": 10}
        version = assets.get_asset(conn=conn, tag="KIT-1").version
        new = kits.define_contents(conn=conn, kit_tag="KIT-1", assets=["UNO-2", "UNO-1"],
                                   parts={"JMP": 30}, by=BY, expected_version=version)
        assert new.assets == ("UNO-1", "UNO-2") and new.parts == {"JMP": 30}
        assert new.version == version + 1
        assert kits.kit_holding(conn=conn, asset_tag="UNO-2") == "KIT-1"
        assert kits.kit_holding(conn=conn, asset_tag="UNO-3") is None
        log = history_of(conn=conn, subject="KIT-1")
    assert [e.kind for e in log] == ["AssetRegistered", "KitContentsDefined",
                                     "KitContentsDefined"]
    assert log[-1].from_state == {"assets": ["UNO-1"],
                                  "parts": {"HC-SR04": 1, "JMP": 40, "LED": 10}}
    assert log[-1].to_state == {"assets": ["UNO-1", "UNO-2"], "parts": {"JMP": 30}}


@pytest.mark.parametrize(("assets_", "parts", "error", "message"), [
    (["UNO-9"], {}, InvalidValueError, "asset 'UNO-9' is at LP-2, kit 'KIT-1' at LC-1"),
    (["KIT-1"], {}, InvalidValueError, "kit 'KIT-1' cannot hold itself"),
    (["UNO-2", "UNO-2"], {}, InvalidValueError, "asset 'UNO-2' is listed twice"),
    (["NOPE"], {}, NotFoundError, "no asset with tag 'NOPE'"),
    ([], {"UNO": 1}, InvalidValueError, "model 'UNO' is tracked as tagged assets"),
    ([], {"JMP": 0}, InvalidValueError, "the quantity of JMP 0 is not in"),
    ([], {"NOPE": 3}, NotFoundError, "no model with code 'NOPE'"),
])
def test_bad_contents_name_the_part_and_write_nothing(
    lab: Engine, assets_: list[str], parts: dict[str, int], error: type[Exception],
    message: str,
) -> None:
    before = snapshot(lab)
    with pytest.raises(error, match=re.escape(message)), lab.begin() as conn:
        kits.define_contents(conn=conn, kit_tag="KIT-1", assets=assets_, parts=parts, by=BY)
    assert snapshot(lab) == before


def test_an_asset_is_in_one_kit_only_and_kits_do_not_nest(lab: Engine) -> None:
    with lab.begin() as conn:
        assets.register_asset(conn=conn, tag="KIT-2", model_code="KIT", site_code="LC-1",
                              by=BY)
    before = snapshot(lab)
    with pytest.raises(ConflictError, match="asset 'UNO-1' is already in kit 'KIT-1'"), \
            lab.begin() as conn:
        kits.define_contents(conn=conn, kit_tag="KIT-2", assets=["UNO-1"], parts={}, by=BY)
    with pytest.raises(InvalidValueError, match="'KIT-1' is itself a kit"), lab.begin() as conn:
        kits.define_contents(conn=conn, kit_tag="KIT-2", assets=["KIT-1"], parts={}, by=BY)
    assert snapshot(lab) == before


def test_a_kit_on_loan_keeps_its_contents(lab: Engine) -> None:
    _lend_kit(lab)
    before = snapshot(lab)
    with pytest.raises(InvalidTransitionError, match="kit 'KIT-1' is on_loan"), \
            lab.begin() as conn:
        kits.define_contents(conn=conn, kit_tag="KIT-1", assets=[], parts={}, by=BY)
    assert snapshot(lab) == before


def test_a_kit_back_short_records_losses_lowers_stock_and_shows_on_reorder(
    lab: Engine,
) -> None:
    loan_uuid = _lend_kit(lab)
    with lab.connect() as conn:
        assert assets.get_asset(conn=conn, tag="UNO-1").status == "on_loan"
    # The board and the sensor are missing, 3 jumper wires lost and 2 LEDs broken.
    with lab.begin() as conn:
        loan = loans.check_in(conn=conn, loan_uuid=loan_uuid, by=BY, returns=[
            loans.ItemReturn(tag="KIT-1", condition="fair", kit=kits.KitReturn(
                parts={"JMP": 37, "LED": 10}, damaged_parts={"LED": 2}))])
        assert not loan.open and loan.items[0].condition == "fair"
        assert assets.get_asset(conn=conn, tag="KIT-1").status == "available"
        assert assets.get_asset(conn=conn, tag="UNO-1").status == "lost"
        losses = kits.list_losses(conn=conn, kit_tag="KIT-1")
        assert sorted((x.part, x.damage, x.quantity) for x in losses) == [
            ("HC-SR04", "lost", 1), ("JMP", "lost", 3), ("LED", "damaged", 2),
            ("UNO-1", "lost", 1)]
        assert {x.loan_uuid for x in losses} == {loan_uuid}
        assert stock.get_stock(conn=conn, site_code="LC-1", model_code="JMP").quantity == 97
        assert stock.get_stock(conn=conn, site_code="LC-1", model_code="LED").quantity == 48
        total, report = stock.reorder_report(conn=conn, site_under="R1")
        assert total == 1
        assert [(x.site_code, x.model_code, x.on_hand, x.threshold, x.shortfall)
                for x in report] == [("LC-1", "HC-SR04", 4, 5, 1)]
        kinds = [e.kind for e in history_of(conn=conn, subject="KIT-1")]
        assert kinds.count("KitPartMissing") == 3 and kinds.count("KitPartDamaged") == 1
        assert kinds[-1] == "AssetCheckedIn"
        uno = history_of(conn=conn, subject="UNO-1")
        assert [e.kind for e in uno][-2:] == ["AssetCheckedOut", "AssetStatusChanged"]
        assert uno[-1].to_state == {"status": "lost"}
        # The kit cannot go out again while its board is lost.
        with pytest.raises(InvalidTransitionError,
                           match="kit 'KIT-1' cannot go out: its asset 'UNO-1' is lost"):
            loans.check_out(conn=conn, asset_tags=["KIT-1"], borrower="x",
                            borrower_kind="person", due_at=now_us() + DAY_US, by=BY)
        rebuilt = rebuild_stock(conn=conn)
        assert rebuilt[("LC-1", "JMP")].quantity == 97
        assert rebuilt[("LC-1", "HC-SR04")].reorder_threshold == 5


@pytest.mark.parametrize(("back", "message"), [
    (kits.KitReturn(parts={"JMP": 41}),
     "kit 'KIT-1': 41 of part 'JMP' came back, but the kit holds 40"),
    (kits.KitReturn(parts={"PRUSA": 1}), "part 'PRUSA' is not in the contents of kit"),
    (kits.KitReturn(tags=frozenset({"UNO-2"})),
     "asset 'UNO-2' is not in the contents of kit 'KIT-1'"),
    (kits.KitReturn(parts={"LED": 3}, damaged_parts={"LED": 4}),
     "4 damaged of LED is not in 0..3"),
    (kits.KitReturn(damaged_tags=frozenset({"UNO-1"})),
     "asset 'UNO-1' is reported damaged but not as come back"),
])
def test_more_or_other_parts_than_listed_is_refused_with_nothing_written(
    lab: Engine, back: kits.KitReturn, message: str
) -> None:
    loan_uuid = _lend_kit(lab)
    before = snapshot(lab)
    with pytest.raises(InvalidValueError, match=re.escape(message)), lab.begin() as conn:
        loans.check_in(conn=conn, loan_uuid=loan_uuid, by=BY,
                       returns=[loans.ItemReturn(tag="KIT-1", kit=back)])
    assert snapshot(lab) == before


def test_a_kit_may_come_back_in_parts(lab: Engine) -> None:
    loan_uuid = _lend_kit(lab)
    with lab.begin() as conn:
        loan = loans.check_in(conn=conn, loan_uuid=loan_uuid, by=BY, returns=[
            loans.ItemReturn(tag="KIT-1", rest_later=True, kit=kits.KitReturn(
                tags=frozenset({"UNO-1"}), parts={"JMP": 30}))])
        assert loan.open and loan.version == 2
        assert assets.get_asset(conn=conn, tag="KIT-1").status == "on_loan"
        assert assets.get_asset(conn=conn, tag="UNO-1").status == "available"
    before = snapshot(lab)
    over = r"41 of part 'JMP' came back \(30 earlier, 11 now\)"
    with pytest.raises(InvalidValueError, match=over), lab.begin() as conn:
        loans.check_in(conn=conn, loan_uuid=loan_uuid, by=BY, returns=[
            loans.ItemReturn(tag="KIT-1", kit=kits.KitReturn(parts={"JMP": 11}))])
    with pytest.raises(InvalidValueError, match="asset 'UNO-1' already came back"), \
            lab.begin() as conn:
        loans.check_in(conn=conn, loan_uuid=loan_uuid, by=BY, returns=[
            loans.ItemReturn(tag="KIT-1", kit=kits.KitReturn(tags=frozenset({"UNO-1"})))])
    assert snapshot(lab) == before
    with lab.begin() as conn:
        loan = loans.check_in(conn=conn, loan_uuid=loan_uuid, by=BY, returns=[
            loans.ItemReturn(tag="KIT-1", kit=kits.KitReturn(
                parts={"JMP": 9, "LED": 10, "HC-SR04": 1}))])
        assert not loan.open
        assert [(x.part, x.quantity) for x in kits.list_losses(conn=conn, kit_tag="KIT-1")] == [
            ("JMP", 1)]
        assert assets.get_asset(conn=conn, tag="UNO-1").status == "available"
        kinds = [e.kind for e in history_of(conn=conn, subject="KIT-1")]
        assert "KitPartsReturned" in kinds


def test_a_board_back_in_an_earlier_part_is_available_while_the_kit_is_out(
    lab: Engine,
) -> None:
    loan_uuid = _lend_kit(lab)
    with lab.begin() as conn:
        loan = loans.check_in(conn=conn, loan_uuid=loan_uuid, by="Luis", returns=[
            loans.ItemReturn(tag="KIT-1", rest_later=True, kit=kits.KitReturn(
                tags=frozenset({"UNO-1"}), damaged_tags=frozenset({"UNO-1"}),
                parts={"LED": 10}))])
        assert loan.open
        board = assets.get_asset(conn=conn, tag="UNO-1")
        assert (board.status, board.condition) == ("available", "broken")
        assert assets.get_asset(conn=conn, tag="KIT-1").status == "on_loan"
        back = history_of(conn=conn, subject="UNO-1")[-1]
        assert (back.kind, back.by, back.note) == ("AssetCheckedIn", "Luis", "in kit KIT-1")
        assert (back.from_state, back.to_state) == (
            {"status": "on_loan", "condition": "good"},
            {"status": "available", "condition": "broken", "loan": loan_uuid, "kit": "KIT-1"})
        # Back at the site, it can go to the repair bench before the kit is complete.
        maintenance.start_repair(conn=conn, tag="UNO-1", fault="pin 13 suelto", by="Luis")
    with lab.begin() as conn:
        loan = loans.check_in(conn=conn, loan_uuid=loan_uuid, by=BY, returns=[
            loans.ItemReturn(tag="KIT-1", kit=kits.KitReturn(parts={"JMP": 40, "HC-SR04": 1}))])
        assert not loan.open
        assert assets.get_asset(conn=conn, tag="KIT-1").status == "available"
        # The last part leaves it in repair and does not check it in a second time.
        assert assets.get_asset(conn=conn, tag="UNO-1").status == "in_repair"
        kinds = [e.kind for e in history_of(conn=conn, subject="UNO-1")]
        assert kinds.count("AssetCheckedIn") == 1 and kinds[-1] == "RepairStarted"
        assert [(x.part, x.damage) for x in kits.list_losses(conn=conn, kit_tag="KIT-1")] == [
            ("UNO-1", "damaged")]


def test_a_complete_return_needs_no_count(lab: Engine) -> None:
    loan_uuid = _lend_kit(lab)
    with lab.begin() as conn:
        loans.check_in(conn=conn, loan_uuid=loan_uuid, by=BY,
                       returns=[loans.ItemReturn(tag="KIT-1")])
        assert kits.list_losses(conn=conn, kit_tag="KIT-1") == []
        assert assets.get_asset(conn=conn, tag="UNO-1").status == "available"
        assert stock.get_stock(conn=conn, site_code="LC-1", model_code="JMP").quantity == 100


def test_stock_receive_consume_adjust_and_their_refusals(lab: Engine) -> None:
    with lab.begin() as conn:
        level = stock.consume(conn=conn, site_code="LC-1", model_code="JMP", quantity=50,
                              by=BY, note="taller")
        assert (level.quantity, level.unit) == (50, "pcs")
        level = stock.adjust(conn=conn, site_code="LC-1", model_code="JMP", quantity=45,
                             by=BY, expected_version=level.version)
        assert level.quantity == 45
        assert stock.receive(conn=conn, site_code="LP-2", model_code="LED", quantity=7,
                             by=BY).quantity == 7
        total, levels = stock.list_stock(conn=conn, site_under="VL")
        assert total == 4
        assert [(x.site_code, x.model_code, x.quantity) for x in levels] == [
            ("LC-1", "HC-SR04", 5), ("LC-1", "JMP", 45), ("LC-1", "LED", 50), ("LP-2", "LED", 7)]
        assert [(x.model_code, x.shortfall) for x in stock.reorder_report(conn=conn)[1]] == [
            ("JMP", 15)]
        assert stock.reorder_report(conn=conn, site_under="LP-2") == (0, [])
        with pytest.raises(InvalidValueError, match=r"limit 0 is not in 1\.\.500"):
            stock.reorder_report(conn=conn, limit=0)
        kinds = [e.kind for e in history_of(conn=conn, subject="JMP")]
        assert kinds == ["ModelCreated", "StockReceived", "ReorderThresholdSet",
                         "StockConsumed", "StockAdjusted"]
    before = snapshot(lab)
    bad = [
        (lambda c: stock.consume(conn=c, site_code="LC-1", model_code="JMP", quantity=46,
                                 by=BY), InvalidValueError, "holds 45 pcs of JMP"),
        (lambda c: stock.receive(conn=c, site_code="LC-1", model_code="UNO", quantity=1,
                                 by=BY), InvalidValueError, "'UNO' is tracked as tagged"),
        (lambda c: stock.receive(conn=c, site_code="R1", model_code="JMP", quantity=1,
                                 by=BY), InvalidValueError, "'R1' is a region"),
        (lambda c: stock.receive(conn=c, site_code="LC-1", model_code="JMP", quantity=0,
                                 by=BY), InvalidValueError, "received 0 is not in"),
    ]
    for call, error, message in bad:
        with pytest.raises(error, match=re.escape(message)), lab.begin() as conn:
            call(conn)
    assert snapshot(lab) == before


def test_locations_inside_a_site_and_an_assets_place(lab: Engine) -> None:
    with lab.begin() as conn:
        locations.create_location(conn=conn, site_code="LC-1", code="SALA-2", name="Sala 2",
                                  by=BY)
        locations.create_location(conn=conn, site_code="LC-1", code="SALA-2/EST-B",
                                  name="Sala 2, estante B", by=BY)
        locations.create_location(conn=conn, site_code="LP-2", code="SALA-2", name="Aula",
                                  by=BY)
        assert [(x.site_code, x.code) for x in locations.list_locations(
            conn=conn, site_code="LC-1")[1]] == [("LC-1", "SALA-2"), ("LC-1", "SALA-2/EST-B")]
        total, page = locations.list_locations(conn=conn, limit=1, offset=1)
        assert total == 3 and [(x.site_code, x.code) for x in page] == [("LC-1", "SALA-2/EST-B")]
        placed = locations.place_asset(conn=conn, tag="UNO-2", location_code="SALA-2/EST-B",
                                       by=BY)
        assert placed.location_code == "SALA-2/EST-B" and placed.version == 2
        moved = assets.move_asset(conn=conn, tag="UNO-2", to_site="LP-2", by=BY)
        assert moved.location_code is None and moved.version == 3
        with pytest.raises(ConflictError, match="already has a location 'SALA-2'"):
            locations.create_location(conn=conn, site_code="LC-1", code="SALA-2", name="x",
                                      by=BY)
        with pytest.raises(NotFoundError, match="site 'LP-2' has no location 'SALA-2/EST-B'"):
            locations.place_asset(conn=conn, tag="UNO-2", location_code="SALA-2/EST-B", by=BY)
        assert [e.kind for e in history_of(conn=conn, subject="UNO-2")] == [
            "AssetRegistered", "AssetLocationChanged", "AssetMoved"]
