"""Inventory assets: register, move, status, sightings, lists and history, on every backend."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from inventory_world import put_in_status
from sqlalchemy import Engine, func, select

from inventory import assets as a
from inventory import catalog, sites
from inventory.errors import (
    ConflictError,
    InvalidTransitionError,
    InvalidValueError,
    NotFoundError,
)
from inventory.history import AssetState, history_of, rebuild_assets
from inventory.tables import assets, events, models
from inventory.values import now_us

BY = "coordinator@valle"


def _counts(engine: Engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (assets, events, models)
        )


def _network(conn: Any, prefix: str = "") -> None:
    """A network: region N (municipality with LC-1, LP-2) and region S (LP-3); two models."""
    p = prefix
    sites.create_site(conn=conn, code=f"{p}VL", name="ValleLabs", kind="network", by=BY)
    for r in ("N", "S"):
        sites.create_site(conn=conn, code=f"{p}VL-{r}", name=r, kind="region",
                          parent_code=f"{p}VL", by=BY)
    sites.create_site(conn=conn, code=f"{p}VL-N-CAL", name="Cali", kind="municipality",
                      parent_code=f"{p}VL-N", by=BY)
    for code, parent, tier in (("LC-1", "VL-N-CAL", "lab_center"), ("LP-2", "VL-N-CAL",
                               "lab_point"), ("LP-3", "VL-S", "lab_point")):
        sites.create_site(conn=conn, code=f"{p}{code}", name=f"Lab {code}", kind="site",
                          parent_code=f"{p}{parent}", tier=tier, by=BY)  # type: ignore[arg-type]


@pytest.fixture
def lab(engine: Engine) -> Engine:
    with engine.begin() as conn:
        _network(conn)
        catalog.create_model(conn=conn, code="ARD-UNO-R3", name="Arduino Uno R3",
                             category="microcontroller_board", by=BY)
        catalog.create_model(conn=conn, code="PRUSA-MK4", name="Prusa MK4 printer",
                             category="3d_printer", by=BY)
        catalog.create_model(conn=conn, code="JMP-WIRE", name="Jumper wire 20 cm",
                             category="consumable", tracking="counted", unit="pcs", by=BY)
    return engine


def test_catalog_models_and_their_rules(lab: Engine) -> None:
    with lab.begin() as conn:
        assert [m.code for m in catalog.list_models(conn=conn)] == [
            "ARD-UNO-R3", "JMP-WIRE", "PRUSA-MK4"]
        assert catalog.list_models(conn=conn, category="consumable") == [
            catalog.Model("JMP-WIRE", "Jumper wire 20 cm", "consumable", "counted", "pcs")]
        with pytest.raises(ConflictError, match="model code 'ARD-UNO-R3' is already in the cat"):
            catalog.create_model(conn=conn, code="ARD-UNO-R3", name="x", category="tool", by=BY)
        with pytest.raises(InvalidValueError, match="counted model 'LED' needs a unit"):
            catalog.create_model(conn=conn, code="LED", name="LED", category="consumable",
                                 tracking="counted", by=BY)
        with pytest.raises(InvalidValueError, match="category of model 'X' 'toy' is not one"):
            catalog.create_model(conn=conn, code="X", name="x", category="toy", by=BY)  # type: ignore[arg-type]
        with pytest.raises(NotFoundError, match="no model with code 'NOPE' in the catalog"):
            catalog.get_model(conn=conn, code="NOPE")
        assert [e.kind for e in history_of(conn=conn, subject="JMP-WIRE")] == ["ModelCreated"]


def test_register_writes_the_asset_and_its_event(lab: Engine) -> None:
    with lab.begin() as conn:
        asset = a.register_asset(conn=conn, tag="VC-0001", model_code="ARD-UNO-R3",
                                 site_code="LP-2", serial_number="85736323838351F0E1A1",
                                 by=BY, notes="from the 2026 batch")
    assert asset == a.Asset("VC-0001", "ARD-UNO-R3", "85736323838351F0E1A1", "available",
                            "good", "LP-2", "from the 2026 batch", asset.updated_at)
    with lab.connect() as conn:
        assert a.get_asset(conn=conn, tag="VC-0001") == asset
        assert a.get_by_serial(conn=conn, serial_number="85736323838351F0E1A1") == asset
        assert a.get_by_serial(conn=conn, serial_number="other") is None
        (event,) = history_of(conn=conn, subject="VC-0001")
    assert event.kind == "AssetRegistered" and event.by == BY and event.site_code == "LP-2"
    assert event.at == asset.updated_at and event.from_state is None
    assert event.to_state == {"model_code": "ARD-UNO-R3", "serial_number": "85736323838351F0E1A1",
                              "status": "available", "condition": "good", "site_code": "LP-2"}


BAD_REGISTRATIONS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"tag": "VC-0001"}, ConflictError,
     "asset tag 'VC-0001' is already registered (model ARD-UNO-R3 at LC-1)"),
    ({"serial_number": "SN-1"}, ConflictError,
     "serial number 'SN-1' is already registered as asset 'VC-0001' (model ARD-UNO-R3 at LC-1)"),
    ({"model_code": "ARD-MEGA"}, NotFoundError, "no model with code 'ARD-MEGA' in the catalog"),
    ({"site_code": "LP-99"}, NotFoundError, "no site with code 'LP-99'"),
    ({"site_code": "VL-N"}, InvalidValueError,
     "assets are kept at lab sites, and 'VL-N' is a region"),
    ({"model_code": "JMP-WIRE"}, InvalidValueError,
     "model 'JMP-WIRE' is counted in pcs, not tracked as tagged assets"),
    ({"tag": "VC 2"}, InvalidValueError, "asset tag 'VC 2' may hold only"),
    ({"condition": "shiny"}, InvalidValueError, "condition of asset 'VC-0002' 'shiny' is not one"),
]


@pytest.mark.parametrize(("change", "error", "message"), BAD_REGISTRATIONS)
def test_a_bad_registration_names_the_problem_and_writes_nothing(
    lab: Engine, change: dict[str, Any], error: type[Exception], message: str
) -> None:
    with lab.begin() as conn:
        a.register_asset(conn=conn, tag="VC-0001", model_code="ARD-UNO-R3", site_code="LC-1",
                         serial_number="SN-1", by=BY)
    before = _counts(lab)
    fields = {"tag": "VC-0002", "model_code": "ARD-UNO-R3", "site_code": "LP-2", **change}

    def good_then_bad() -> None:
        with lab.begin() as conn:
            # A good registration first, in the same transaction: it must roll back too.
            a.register_asset(conn=conn, tag="VC-0003", model_code="PRUSA-MK4",
                             site_code="LP-3", serial_number="SN-3", by=BY)
            a.register_asset(conn=conn, by=BY, **fields)

    with pytest.raises(error, match=re.escape(message)):
        good_then_bad()
    assert _counts(lab) == before
    with lab.connect() as conn:
        assert a.find_asset(conn=conn, tag="VC-0003") is None
        assert history_of(conn=conn, subject="VC-0003") == []


def test_several_assets_may_have_no_serial_number(lab: Engine) -> None:
    with lab.begin() as conn:
        for tag in ("K-1", "K-2"):
            a.register_asset(conn=conn, tag=tag, model_code="ARD-UNO-R3", site_code="LC-1", by=BY)
        assert a.list_assets(conn=conn)[0] == 2


def test_move_and_status_write_their_events(lab: Engine) -> None:
    with lab.begin() as conn:
        a.register_asset(conn=conn, tag="VC-7", model_code="PRUSA-MK4", site_code="LC-1", by=BY)
        moved = a.move_asset(conn=conn, tag="VC-7", to_site="LP-3", by="driver", note="van 2")
        assert moved.site_code == "LP-3"
        broken = a.set_status(conn=conn, tag="VC-7", status="lost", condition="broken",
                              by=BY, note="not back from the fair")
        assert (broken.status, broken.condition) == ("lost", "broken")
        fixed = a.set_status(conn=conn, tag="VC-7", status="available", condition="good", by=BY)
        assert fixed.updated_at > broken.updated_at > moved.updated_at
        log = history_of(conn=conn, subject="VC-7")
    assert [e.kind for e in log] == [
        "AssetRegistered", "AssetMoved", "AssetStatusChanged", "AssetStatusChanged"]
    assert (log[1].from_state, log[1].to_state) == ({"site_code": "LC-1"}, {"site_code": "LP-3"})
    assert (log[1].by, log[1].note, log[1].site_code) == ("driver", "van 2", "LP-3")
    assert log[2].from_state == {"status": "available", "condition": "good"}
    assert log[2].to_state == {"status": "lost", "condition": "broken"}
    assert log[2].note == "not back from the fair"
    assert [e.at for e in log] == sorted({e.at for e in log})


def test_lost_is_found_and_retired_is_final(lab: Engine) -> None:
    with lab.begin() as conn:
        a.register_asset(conn=conn, tag="VC-8", model_code="ARD-UNO-R3", site_code="LC-1", by=BY)
        a.set_status(conn=conn, tag="VC-8", status="lost", by=BY)
        with pytest.raises(InvalidTransitionError, match="asset 'VC-8' is lost and cannot be mo"):
            a.move_asset(conn=conn, tag="VC-8", to_site="LP-2", by=BY)
        assert a.set_status(conn=conn, tag="VC-8", status="available", by=BY,
                            note="found in the cupboard").status == "available"
        a.set_status(conn=conn, tag="VC-8", status="retired", by=BY)
        with pytest.raises(InvalidTransitionError,
                           match=r"from retired to available \(retired is final\)"):
            a.set_status(conn=conn, tag="VC-8", status="available", by=BY)
        with pytest.raises(InvalidTransitionError, match="is retired and cannot be moved"):
            a.move_asset(conn=conn, tag="VC-8", to_site="LP-2", by=BY)


@pytest.mark.parametrize(("path", "target", "message"), [
    ([], "available", "asset 'T' is already available"),
    (["in_transit"], "retired",
     "asset 'T' cannot go from in_transit to retired (from in_transit: available, lost)"),
    (["in_repair"], "lost", "cannot go from in_repair to lost"),
    (["on_loan"], "retired", "cannot go from on_loan to retired"),
    (["lost"], "in_transit", "cannot go from lost to in_transit"),
])
def test_an_invalid_transition_names_both_states_and_writes_nothing(
    lab: Engine, path: list[Any], target: Any, message: str
) -> None:
    with lab.begin() as conn:
        a.register_asset(conn=conn, tag="T", model_code="ARD-UNO-R3", site_code="LC-1", by=BY)
        for status in path:
            put_in_status(conn, "T", status)
    before = _counts(lab)
    with pytest.raises(InvalidTransitionError, match=re.escape(message)), lab.begin() as conn:
        a.set_status(conn=conn, tag="T", status=target, by=BY)
    assert _counts(lab) == before


@pytest.mark.parametrize(("status", "instead"), [
    ("on_loan", "check it out on a loan (labhub inventory lend, POST /loans)"),
    ("in_repair", "start a repair (labhub inventory repair, POST /assets/{tag}/repairs)"),
])
def test_on_loan_and_in_repair_are_not_set_by_hand(
    lab: Engine, status: Any, instead: str
) -> None:
    with lab.begin() as conn:
        a.register_asset(conn=conn, tag="T", model_code="ARD-UNO-R3", site_code="LC-1", by=BY)
    before = _counts(lab)
    with pytest.raises(InvalidTransitionError,
                       match=re.escape(f"asset 'T' is not set {status} by hand: {instead}")), \
            lab.begin() as conn:
        a.set_status(conn=conn, tag="T", status=status, by=BY)
    assert _counts(lab) == before
    with lab.begin() as conn:  # the loan or the repair sets it, with its record
        put_in_status(conn, "T", status)
        assert a.get_asset(conn=conn, tag="T").status == status


def test_move_refuses_the_same_site_an_unknown_one_and_an_unknown_asset(lab: Engine) -> None:
    with lab.begin() as conn:
        a.register_asset(conn=conn, tag="VC-9", model_code="ARD-UNO-R3", site_code="LC-1", by=BY)
    before = _counts(lab)
    with lab.begin() as conn:
        with pytest.raises(InvalidTransitionError, match="asset 'VC-9' is already at LC-1"):
            a.move_asset(conn=conn, tag="VC-9", to_site="LC-1", by=BY)
        with pytest.raises(NotFoundError, match="no site with code 'LX'"):
            a.move_asset(conn=conn, tag="VC-9", to_site="LX", by=BY)
        with pytest.raises(NotFoundError, match="no asset with tag 'VC-10'") as info:
            a.move_asset(conn=conn, tag="VC-10", to_site="LP-2", by=BY)
    assert (info.value.what, info.value.key) == ("asset", "VC-10")
    assert _counts(lab) == before


def test_a_sighting_is_an_event_and_changes_nothing_else(lab: Engine) -> None:
    with lab.begin() as conn:
        asset = a.register_asset(conn=conn, tag="VC-11", model_code="ARD-UNO-R3",
                                 site_code="LC-1", serial_number="5573932393035", by=BY)
    seen = now_us()  # after the registration: history is ordered by time
    with lab.begin() as conn:
        found = a.record_sighting(conn=conn, serial_number="5573932393035", site_code="LP-3",
                                  seen_at=seen, source="hub lp-3")
        assert found == asset
        assert a.get_asset(conn=conn, tag="VC-11") == asset
        log = history_of(conn=conn, subject="VC-11")
    assert [e.kind for e in log] == ["AssetRegistered", "AssetSighted"]
    assert (log[1].at, log[1].site_code, log[1].by) == (seen, "LP-3", "hub lp-3")
    before = _counts(lab)
    with lab.begin() as conn:
        assert a.record_sighting(conn=conn, serial_number="unknown", site_code="LP-3",
                                 seen_at=seen, source="hub lp-3") is None
        with pytest.raises(InvalidValueError, match="in the future"):
            a.record_sighting(conn=conn, serial_number="5573932393035", site_code="LP-3",
                              seen_at=now_us() + 3_600_000_000, source="hub lp-3")
    assert _counts(lab) == before


def test_list_assets_filters_searches_and_pages(lab: Engine) -> None:
    with lab.begin() as conn:
        for i, site in enumerate(["LC-1", "LC-1", "LP-2", "LP-3", "LP-3"]):
            a.register_asset(conn=conn, tag=f"VC-{i:04}", model_code="ARD-UNO-R3",
                             site_code=site, serial_number=f"SN_{i}", by=BY)
        a.register_asset(conn=conn, tag="PR-0001", model_code="PRUSA-MK4", site_code="LP-2",
                         by=BY)
        put_in_status(conn, "VC-0003", "in_repair")

    def tags(**kw: Any) -> tuple[int, list[str]]:
        with lab.connect() as conn:
            total, items = a.list_assets(conn=conn, **kw)
        return total, [x.tag for x in items]

    assert tags(site_under="VL-N") == (4, ["PR-0001", "VC-0000", "VC-0001", "VC-0002"])
    assert tags(site_under="VL-S") == (2, ["VC-0003", "VC-0004"])
    assert tags(site_under="LP-2") == (2, ["PR-0001", "VC-0002"])
    assert tags(status="in_repair") == (1, ["VC-0003"])
    assert tags(model_code="PRUSA-MK4") == (1, ["PR-0001"])
    assert tags(search="prusa") == (1, ["PR-0001"])
    assert tags(search="sn_4") == (1, ["VC-0004"])
    assert tags(search="%") == (0, [])  # LIKE wildcards are matched literally
    assert tags(search="vc", limit=2, offset=1) == (5, ["VC-0001", "VC-0002"])
    assert tags(site_under="VL-N", status="available", search="uno") == (
        3, ["VC-0000", "VC-0001", "VC-0002"])
    with lab.connect() as conn:
        with pytest.raises(InvalidValueError, match=r"limit 501 is not in 1\.\.500"):
            a.list_assets(conn=conn, limit=a.MAX_LIMIT + 1)
        with pytest.raises(NotFoundError, match="no site with code 'VL-X'"):
            a.list_assets(conn=conn, site_under="VL-X")


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("register"), st.sampled_from(["LC-1", "LP-2", "LP-3"]), st.booleans()),
        st.tuples(st.just("move"), st.integers(0, 9), st.sampled_from(["LC-1", "LP-2", "LP-3"])),
        st.tuples(st.just("status"), st.integers(0, 9), st.sampled_from(a.STATUSES),
                  st.sampled_from([None, *a.CONDITIONS])),
        st.tuples(st.just("sight"), st.integers(0, 9), st.sampled_from(["LC-1", "LP-3"])),
    ),
    max_size=25,
)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_history_rebuilds_the_current_state_of_every_asset(engine: Engine, ops: list[Any]) -> None:
    # The database is shared across examples: each example gets its own names.
    p = f"{uuid.uuid4().hex[:8]}-"
    with engine.begin() as conn:
        _network(conn, prefix=p)
        catalog.create_model(conn=conn, code=f"{p}M", name="Board",
                             category="microcontroller_board", by=BY)
    tags: list[str] = []
    refused = 0
    for op in ops:
        try:
            with engine.begin() as conn:
                if op[0] == "register":
                    tag = f"{p}A{len(tags)}"
                    a.register_asset(conn=conn, tag=tag, model_code=f"{p}M",
                                     site_code=p + op[1], serial_number=tag if op[2] else None,
                                     by=BY)
                    tags.append(tag)
                elif not tags:
                    continue
                elif op[0] == "move":
                    a.move_asset(conn=conn, tag=tags[op[1] % len(tags)], to_site=p + op[2], by=BY)
                elif op[0] == "status" and op[2] in a.BY_RECORD_ONLY:
                    put_in_status(conn, tags[op[1] % len(tags)], op[2])
                elif op[0] == "status":
                    a.set_status(conn=conn, tag=tags[op[1] % len(tags)], status=op[2],
                                 condition=op[3], by=BY)
                else:
                    a.record_sighting(conn=conn, serial_number=tags[op[1] % len(tags)],
                                      site_code=p + op[2], seen_at=now_us(), source="hub")
        except InvalidTransitionError:
            refused += 1
    with engine.connect() as conn:
        rebuilt = {t: s for t, s in rebuild_assets(conn=conn).items() if t.startswith(p)}
        table = {
            r.tag: AssetState(r.site_code, r.status, r.condition)
            for r in conn.execute(select(assets).where(assets.c.tag.startswith(p)))
        }
    assert rebuilt == table
    assert sorted(table) == sorted(tags)
