"""The inventory's side of replication (``inventory.replica``): records collected on one
database and applied on another, each rule on its own. The "central" is the ``engine``
fixture (SQLite and PostgreSQL); a lab's hub is a SQLite copy of the migrated template.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, select

from inventory import assets, catalog, kits, loans, replica, sites, transfers
from inventory.tables import kit_contents
from inventory.tables import sites as sites_table
from labhub import db
from sensors.samples import now_us

BY = "Ana"
DAY_US = 86_400_000_000


def _tree(conn: Connection) -> None:
    sites.create_site(conn=conn, code="VL", name="Valle", kind="network", by=BY)
    sites.create_site(conn=conn, code="R1", name="Norte", kind="region", by=BY,
                      parent_code="VL")
    for code in ("LAB-A", "LAB-B"):
        sites.create_site(conn=conn, code=code, name=code, kind="site", by=BY,
                          parent_code="R1", tier="lab_point")
    catalog.create_model(conn=conn, code="ARD", name="Arduino", by=BY,
                         category="microcontroller_board")
    catalog.create_model(conn=conn, code="KIT", name="Kit", by=BY, category="robotics_kit")
    catalog.create_model(conn=conn, code="LED", name="LED", by=BY, category="consumable",
                         tracking="counted", unit="pcs")


@pytest.fixture
def hub(sqlite_template: Path, tmp_path: Path) -> Iterator[Engine]:
    path = tmp_path / "hub.db"
    shutil.copy(sqlite_template, path)
    engine = db.make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        _tree(conn)
    yield engine
    engine.dispose()


@pytest.fixture
def central(engine: Engine) -> Engine:
    with engine.begin() as conn:
        _tree(conn)
    return engine


def _everything(hub: Engine, site: str = "LAB-A") -> list[dict[str, Any]]:
    """Every record of the lab the hub holds, as its up stream would send them."""
    from inventory.tables import events
    with hub.connect() as conn:
        uuids = list(conn.execute(select(events.c.uuid).order_by(events.c.at)).scalars())
        return replica.lab_records(conn, replica.changes_of(conn, uuids), site=site)


def _apply(central: Engine, records: list[dict[str, Any]], site: str = "LAB-A",
           marks: dict[tuple[str, str], str] | None = None) -> replica.Applied:
    with central.begin() as conn:
        return replica.apply_lab_records(conn, records, site=site, marks=marks or {}, by="hub")


def test_an_asset_the_central_moved_away_is_not_the_labs_any_more(hub: Engine,
                                                                  central: Engine) -> None:
    with hub.begin() as conn:
        assets.register_asset(conn=conn, tag="A-1", model_code="ARD", site_code="LAB-A",
                              by=BY)
    first = _apply(central, _everything(hub))
    assert first.conflicts == [] and first.changed >= 1
    with central.begin() as conn:  # the central reassigns it while the lab is offline
        assets.move_asset(conn=conn, tag="A-1", to_site="LAB-B", by="Luis")
    with hub.begin() as conn:
        assets.edit_asset(conn=conn, tag="A-1", changes={"condition": "fair"}, by=BY)
    done = _apply(central, _everything(hub), marks=first.marks)
    (c,) = done.conflicts
    assert (c.kind, c.key) == ("assets", "A-1")
    assert c.kept is not None and c.kept["site_code"] == "LAB-B"
    assert c.set_aside["condition"] == "fair"
    assert "LAB-B" in c.rule and c.rule.startswith("owner wins")
    with central.connect() as conn:
        asset = assets.get_asset(conn=conn, tag="A-1")
        assert (asset.site_code, asset.condition) == ("LAB-B", "good")


def test_a_replay_changes_nothing_and_finds_no_conflict(hub: Engine, central: Engine) -> None:
    with hub.begin() as conn:
        assets.register_asset(conn=conn, tag="A-1", model_code="ARD", site_code="LAB-A",
                              by=BY)
        loans.check_out(conn=conn, asset_tags=["A-1"], borrower="7B", borrower_kind="group",
                        due_at=now_us() + DAY_US, by=BY)
    records = _everything(hub)
    assert {r["t"] for r in records} >= {"models", "assets", "loans", "loan_items"}
    first = _apply(central, records)
    again = _apply(central, records, marks=first.marks)
    assert (again.changed, again.conflicts) == (0, [])


def test_records_at_another_lab_are_refused_not_dropped(hub: Engine, central: Engine) -> None:
    with hub.begin() as conn:
        assets.register_asset(conn=conn, tag="B-1", model_code="ARD", site_code="LAB-B",
                              by=BY)
        loans.check_out(conn=conn, asset_tags=["B-1"], borrower="7B", borrower_kind="group",
                        due_at=now_us() + DAY_US, by=BY)
    records = _everything(hub, site=None)  # type: ignore[arg-type]
    done = _apply(central, records, site="LAB-A")
    assert {c.kind for c in done.conflicts} == {"assets", "loans", "loan_items"}
    assert done.changed == 0
    with central.connect() as conn:
        assert assets.list_assets(conn=conn)[0] == 0


def test_a_transfer_never_goes_back(hub: Engine, central: Engine) -> None:
    with hub.begin() as conn:
        assets.register_asset(conn=conn, tag="A-1", model_code="ARD", site_code="LAB-A",
                              by=BY)
        t = transfers.draft_transfer(conn=conn, from_site="LAB-A", to_site="LAB-B", by=BY,
                                     tags=["A-1"])
    drafted = _everything(hub)
    with hub.begin() as conn:
        transfers.ship_transfer(conn=conn, transfer_uuid=t.uuid, carrier="bus", by=BY)
    shipped = _everything(hub)
    marks = _apply(central, shipped).marks
    _apply(central, drafted, marks=marks)  # late, out of order
    with central.connect() as conn:
        assert transfers.get_transfer(conn=conn, transfer_uuid=t.uuid).status == "shipped"


def test_kit_lists_come_down_only_where_the_hub_has_none(hub: Engine, central: Engine) -> None:
    for engine in (hub, central):
        with engine.begin() as conn:
            for tag in ("KIT-1", "KIT-2"):
                assets.register_asset(conn=conn, tag=tag, model_code="KIT", site_code="LAB-A",
                                      by=BY)
    with central.begin() as conn:
        for tag in ("KIT-1", "KIT-2"):
            kits.define_contents(conn=conn, kit_tag=tag, assets=[], parts={"LED": 10}, by=BY)
    with hub.begin() as conn:
        kits.define_contents(conn=conn, kit_tag="KIT-1", assets=[], parts={"LED": 4}, by=BY)
    with central.connect() as conn:
        records = replica.kits_for(conn, "LAB-A")
    with hub.begin() as conn:
        assert replica.apply_kits(conn, records) == 1
        assert replica.apply_kits(conn, records) == 0
        got = {(r.kit_tag, r.quantity) for r in conn.execute(select(kit_contents))}
    assert got == {("KIT-1", 4), ("KIT-2", 10)}


def test_the_tree_comes_down_parents_first_and_a_local_edit_is_kept_aside(
        hub: Engine, central: Engine) -> None:
    with central.connect() as conn:
        tree = replica.tree_for(conn, "LAB-A")
    assert [r["r"]["code"] for r in tree] == ["VL", "R1", "LAB-A", "LAB-B"]
    with hub.begin() as conn:
        sites.edit_site(conn=conn, code="LAB-A", changes={"name": "Mi lab"}, by=BY)
        found = replica.apply_central_owned(conn, tree)
        assert [(c.kind, c.key) for c in found] == [("sites", "LAB-A")]
        assert found[0].set_aside["name"] == "Mi lab"
        assert conn.execute(select(sites_table.c.name)
                            .where(sites_table.c.code == "LAB-A")).scalar() == "LAB-A"
        assert replica.apply_central_owned(conn, tree) == []
        with pytest.raises(ValueError, match="before its parent"):
            replica.apply_central_owned(conn, [{"t": "sites", "r": {
                **tree[-1]["r"], "code": "LAB-X", "parent_code": "R9"}}])


def test_a_serial_number_another_asset_has_on_the_central_does_not_stop_the_sync(
        hub: Engine, central: Engine) -> None:
    with central.begin() as conn:
        assets.register_asset(conn=conn, tag="B-1", model_code="ARD", site_code="LAB-B",
                              by=BY, serial_number="SN-7")
    with hub.begin() as conn:
        assets.register_asset(conn=conn, tag="A-1", model_code="ARD", site_code="LAB-A",
                              by=BY, serial_number="SN-7")
    records = _everything(hub)
    done = _apply(central, records)
    (c,) = done.conflicts
    assert (c.kind, c.key, c.set_aside["serial_number"]) == ("assets", "A-1", "SN-7")
    assert "B-1" in c.rule
    with central.connect() as conn:
        assert assets.get_asset(conn=conn, tag="A-1").serial_number is None
    again = _apply(central, records, marks=done.marks)
    assert again.changed == 0 and [x.key for x in again.conflicts] == ["A-1"]


def test_a_replacement_hub_gets_the_labs_records_and_history_back(
        hub: Engine, central: Engine, sqlite_template: Path, tmp_path: Path) -> None:
    with hub.begin() as conn:
        for tag in ("A-1", "A-2"):
            assets.register_asset(conn=conn, tag=tag, model_code="ARD", site_code="LAB-A",
                                  by=BY)
        loans.check_out(conn=conn, asset_tags=["A-1"], borrower="7B", borrower_kind="group",
                        due_at=now_us() + DAY_US, by=BY)
        t = transfers.draft_transfer(conn=conn, from_site="LAB-A", to_site="LAB-B", by=BY,
                                     tags=["A-2"])
        transfers.ship_transfer(conn=conn, transfer_uuid=t.uuid, carrier="bus", by=BY)
    from inventory.tables import events
    with hub.connect() as conn, central.begin() as target:
        uuids = list(conn.execute(select(events.c.uuid).order_by(events.c.at)).scalars())
        replica.apply_events(target, replica.event_rows(conn, uuids), site="LAB-A")
    _apply(central, _everything(hub))
    path = tmp_path / "new-hub.db"
    shutil.copy(sqlite_template, path)
    fresh = db.make_engine(f"sqlite:///{path}")
    try:
        with central.connect() as conn:
            snapshot = replica.lab_snapshot(conn, "LAB-A")
            tree = replica.tree_for(conn, "LAB-A") + replica.catalog(conn)
        with fresh.begin() as conn:
            replica.apply_central_owned(conn, tree)
            added = replica.restore_lab(conn, snapshot)
            assert replica.restore_lab(conn, snapshot) == []  # again: nothing more
        with fresh.connect() as conn, hub.connect() as old:
            lab_history = {e["uuid"] for e in replica.event_rows(old, uuids)
                           if e["site_code"] == "LAB-A" or e["subject"] in ("A-1", "A-2")}
            assert lab_history <= set(added)
            for tag in ("A-1", "A-2"):
                assert assets.get_asset(conn=conn, tag=tag) == assets.get_asset(conn=old,
                                                                                tag=tag)
            assert transfers.get_transfer(conn=conn, transfer_uuid=t.uuid).status == "shipped"
            assert loans.list_loans(conn=conn)[0] == 1
            from inventory.history import rebuild_assets
            assert rebuild_assets(conn=conn) == rebuild_assets(conn=old)
    finally:
        fresh.dispose()


def test_a_transfer_whose_asset_has_a_serial_the_hub_knows_still_comes_down(
        hub: Engine, central: Engine) -> None:
    with central.begin() as conn:
        assets.register_asset(conn=conn, tag="A-1", model_code="ARD", site_code="LAB-A",
                              by=BY, serial_number="SN-1")
        t = transfers.draft_transfer(conn=conn, from_site="LAB-A", to_site="LAB-B", by=BY,
                                     tags=["A-1"])
        transfers.ship_transfer(conn=conn, transfer_uuid=t.uuid, carrier="bus", by=BY)
        records = replica.transfers_for(conn, "LAB-B", since_us=0)
    with hub.begin() as conn:  # hub B typed the same serial on one of its own
        assets.register_asset(conn=conn, tag="B-9", model_code="ARD", site_code="LAB-B",
                              by=BY, serial_number="SN-1")
        replica.apply_transfers(conn, "LAB-B", records)
        copy = assets.get_asset(conn=conn, tag="A-1")
        assert (copy.status, copy.serial_number) == ("in_transit", None)
        assert transfers.get_transfer(conn=conn, transfer_uuid=t.uuid).status == "shipped"
