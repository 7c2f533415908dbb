"""Inventory between hubs and the central (``labhub.network.inventory_sync``): each hub is
a real SQLite file and the central a real PostgreSQL database; the streams are collected
on one and applied on the other, in the transactions the network's client and API use.

The tree on the central: VL (network) > VL-R1 > LAB-A, LAB-B. Hub A writes for LAB-A,
hub B for LAB-B.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import _truncate_all
from sqlalchemy import Connection, Engine, func, insert, select

from inventory import assets, audits, catalog, loans, sites, stock, transfers
from inventory.history import history_of, rebuild_assets
from inventory.tables import assets as assets_table
from inventory.tables import events, kit_contents, models
from inventory.tables import sites as sites_table
from inventory.tables import transfers as transfers_table
from labhub import db
from labhub.access import accounts
from labhub.access.permissions import Grant, Role
from labhub.access.tables import grants, users
from labhub.network import conflicts, inventory_sync
from labhub.network.protocol import DOWN_STREAMS, UP_STREAMS, position_key
from labhub.network.streams import FromHub, down_streams, up_streams
from labhub.network.tables import network_central, network_conflicts, network_membership
from sensors.samples import now_us

pytestmark = pytest.mark.postgres
BY = "Ana"
DAY_US = 86_400_000_000


@pytest.fixture
def central(postgres_url: str) -> Iterator[Engine]:
    _truncate_all(postgres_url)
    engine = db.make_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(insert(network_central).values(id=1, since=now_us()))
        sites.create_site(conn=conn, code="VL", name="Valle", kind="network", by=BY)
        sites.create_site(conn=conn, code="VL-R1", name="Norte", kind="region", by=BY,
                          parent_code="VL")
        for code, tier in (("LAB-A", "lab_center"), ("LAB-B", "lab_point")):
            sites.create_site(conn=conn, code=code, name=f"Lab {code}", kind="site", by=BY,
                              parent_code="VL-R1", tier=tier, rural=True, latitude=4.1,
                              longitude=-76.2)
        catalog.create_model(conn=conn, code="ARD", name="Arduino Uno", by=BY,
                             category="microcontroller_board")
        catalog.create_model(conn=conn, code="WIRE", name="Jumper wire", by=BY,
                             category="consumable", tracking="counted", unit="pcs")
    yield engine
    engine.dispose()


class Hub:
    """A lab's hub: its own SQLite file, joined for ``site``, with its positions."""

    def __init__(self, template: Path, tmp: Path, site: str) -> None:
        path = tmp / f"hub-{site}.db"
        shutil.copy(template, path)
        self.site = site
        self.engine = db.make_engine(f"sqlite:///{path}")
        self.up: dict[str, list[int]] = {}
        self.down: dict[str, list[int]] = {}
        with self.engine.begin() as conn:
            conn.execute(insert(network_membership).values(
                id=1, central_url="https://central.example", hub_id=f"hub-{site}",
                credential="lhh_test", site=site, joined_at=now_us()))

    def sync_up(self, central: Engine, budget: int = 64_000) -> int:
        """Every up stream of the inventory until nothing follows; new items applied."""
        sender = FromHub(f"hub-{self.site}", self.site, 0, False, now_us())
        new = 0
        for stream in inventory_sync.UP:
            while True:
                with self.engine.connect() as conn:
                    section = stream.collect(conn, self.up.get(stream.name, []), budget)
                if section is None:
                    break
                with central.begin() as conn:
                    new += stream.apply(conn, sender, section)
                self.up[stream.name] = section.to
        return new

    def sync_down(self, central: Engine) -> list[str]:
        """Every down stream; the names of those that sent something."""
        sent = []
        for stream in inventory_sync.DOWN:
            with central.connect() as conn:
                section = stream.collect(conn, self.site, self.down.get(stream.name, []),
                                         1_000_000)
            if section is None:
                continue
            with self.engine.begin() as conn:
                stream.apply(conn, self.site, section)
            self.down[stream.name] = section.to
            sent.append(stream.name)
        return sent


@pytest.fixture
def hubs(sqlite_template: Path, tmp_path: Path) -> Iterator[dict[str, Hub]]:
    made = {s: Hub(sqlite_template, tmp_path, s) for s in ("LAB-A", "LAB-B")}
    yield made
    for hub in made.values():
        hub.engine.dispose()


def _count(engine: Engine, table: object, *where: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)  # type: ignore[arg-type]
                                .where(*where)).scalar_one())


def test_the_streams_are_registered_under_the_protocols_names() -> None:
    assert [n for n in up_streams() if n in ("events", "inventory")] == ["events", "inventory"]
    assert tuple(down_streams()) == DOWN_STREAMS
    assert {"events", "inventory"} <= set(UP_STREAMS)


def test_events_and_the_labs_records_go_up_exactly_once(central: Engine,
                                                        hubs: dict[str, Hub]) -> None:
    a = hubs["LAB-A"]
    assert a.sync_down(central)[:2] == ["sites", "catalog"]
    with a.engine.begin() as conn:
        for n in range(3):
            assets.register_asset(conn=conn, tag=f"A-{n}", model_code="ARD", site_code="LAB-A",
                                  by=BY)
        stock.receive(conn=conn, site_code="LAB-A", model_code="WIRE", quantity=40, by=BY)
        loans.check_out(conn=conn, asset_tags=["A-0"], borrower="Prof. Ruiz",
                        borrower_kind="person", due_at=now_us() + DAY_US, by=BY)
        audit = audits.start_audit(conn=conn, site="LAB-A", by=BY)
        audits.scan_tag(conn=conn, audit_uuid=audit.uuid, tag="A-1", by=BY)
        audits.finish_audit(conn=conn, audit_uuid=audit.uuid, by=BY)
    a.sync_up(central, budget=500)  # small sections: several per stream
    with central.connect() as conn:
        on_central = {r.tag: (r.site_code, r.status) for r in conn.execute(
            select(assets_table).where(assets_table.c.site_code == "LAB-A"))}
        assert on_central == {"A-0": ("LAB-A", "on_loan"), "A-1": ("LAB-A", "available"),
                              "A-2": ("LAB-A", "available")}
        assert stock.get_stock(conn=conn, site_code="LAB-A", model_code="WIRE").quantity == 40
        _, overdue = loans.list_loans(conn=conn, overdue=True, now=now_us() + 2 * DAY_US)
        assert [lo.borrower for lo in overdue] == ["Prof. Ruiz"]
        report = audits.get_audit(conn=conn, audit_uuid=audit.uuid)
        assert report.status == "finished"
        with a.engine.connect() as hub_conn:
            hub_uuids = set(hub_conn.execute(select(events.c.uuid)).scalars())
        central_uuids = set(conn.execute(select(events.c.uuid)
                                         .where(events.c.uuid.in_(hub_uuids))).scalars())
        assert central_uuids == hub_uuids  # every event of the hub, sites' included
    before = _count(central, events)
    a.up = {}  # a central restored from an old backup: everything is sent again
    assert a.sync_up(central) == 0
    assert _count(central, events) == before
    assert _count(central, network_conflicts) == 0


def test_a_hub_may_not_write_another_labs_records(central: Engine,
                                                  hubs: dict[str, Hub]) -> None:
    a = hubs["LAB-A"]
    a.sync_down(central)
    with a.engine.begin() as conn:
        assets.register_asset(conn=conn, tag="A-1", model_code="ARD", site_code="LAB-A", by=BY)
    a.sync_up(central)
    with a.engine.begin() as conn:
        assets.edit_asset(conn=conn, tag="A-1", changes={"condition": "fair"}, by=BY)
    # What hub A would send next, sent by the hub of LAB-B: refused, and kept as conflicts.
    liar = FromHub("hub-LAB-B", "LAB-B", 0, False, now_us())
    for stream in inventory_sync.UP:
        with a.engine.connect() as conn:
            section = stream.collect(conn, a.up[stream.name], 64_000)
        assert section is not None and section.count > 0
        with central.begin() as conn:
            assert stream.apply(conn, liar, section) == 0
    with central.connect() as conn:
        assert assets.get_asset(conn=conn, tag="A-1").condition == "good"
        _, found = conflicts.list_conflicts(conn, sites=["LAB-B"])
    assert {c.kind for c in found} == {"events", "assets"}
    assert all("LAB-B" in c.rule for c in found)
    a.sync_up(central)  # the owner's own hub: applied
    with central.connect() as conn:
        assert assets.get_asset(conn=conn, tag="A-1").condition == "fair"


def test_a_transfer_from_hub_a_to_hub_b(central: Engine, hubs: dict[str, Hub]) -> None:
    a, b = hubs["LAB-A"], hubs["LAB-B"]
    a.sync_down(central)
    b.sync_down(central)
    with a.engine.begin() as conn:
        for tag in ("K-1", "K-2"):
            assets.register_asset(conn=conn, tag=tag, model_code="ARD", site_code="LAB-A",
                                  by=BY)
        t = transfers.draft_transfer(conn=conn, from_site="LAB-A", to_site="LAB-B", by=BY,
                                     tags=["K-1", "K-2"])
        transfers.ship_transfer(conn=conn, transfer_uuid=t.uuid, carrier="Transportes", by=BY)
    a.sync_up(central)
    with central.connect() as conn:  # in transit on the central
        assert transfers.get_transfer(conn=conn, transfer_uuid=t.uuid).status == "shipped"
        assert assets.get_asset(conn=conn, tag="K-1").status == "in_transit"
    assert "transfers" in b.sync_down(central)
    with b.engine.begin() as conn:  # B's own receive flow, on what came down
        assert assets.get_asset(conn=conn, tag="K-1").status == "in_transit"
        transfers.scan_item(conn=conn, transfer_uuid=t.uuid, tag="K-1", site="LAB-B", by=BY)
        transfers.receive_transfer(conn=conn, transfer_uuid=t.uuid, site="LAB-B", by=BY,
                                   missing_as="lost")
        assert set(rebuild_assets(conn=conn)) >= {"K-1", "K-2"}
    b.sync_up(central)
    with central.connect() as conn:
        assert transfers.get_transfer(conn=conn, transfer_uuid=t.uuid).status == "received"
        k1 = assets.get_asset(conn=conn, tag="K-1")
        assert (k1.site_code, k1.status) == ("LAB-B", "available")
    assert "transfers" in a.sync_down(central)
    with a.engine.connect() as conn:  # A learns the outcome
        assert transfers.get_transfer(conn=conn, transfer_uuid=t.uuid).status == "received"
        k1 = assets.get_asset(conn=conn, tag="K-1")
        assert (k1.site_code, k1.status) == ("LAB-B", "available")
        rebuilt = rebuild_assets(conn=conn)
        assert (rebuilt["K-1"].site_code, rebuilt["K-1"].status) == ("LAB-B", "available")
    for hub in (a, b):  # each hub's history still rebuilds its table
        with hub.engine.connect() as conn:
            rebuilt = rebuild_assets(conn=conn)
            for tag in ("K-1", "K-2"):
                row = assets.get_asset(conn=conn, tag=tag)
                assert (rebuilt[tag].site_code, rebuilt[tag].status) == (row.site_code,
                                                                         row.status)
    # Each hub sends what it holds of the others' records again: nothing changes.
    a.up, b.up = {}, {}
    assert a.sync_up(central) == 0
    assert b.sync_up(central) == 0
    assert _count(central, network_conflicts) == 0
    assert b.sync_down(central) == ["transfers"]  # B's own receipt, as the central has it
    assert a.sync_down(central) == [] and b.sync_down(central) == []
    with b.engine.connect() as conn:
        assert assets.get_asset(conn=conn, tag="K-2").status == "lost"  # B's word stands
    with central.connect() as conn:
        assert assets.get_asset(conn=conn, tag="K-2").status == "lost"
    with a.engine.connect() as conn:
        assert assets.get_asset(conn=conn, tag="K-2").status == "lost"


def test_both_sides_edited_an_asset_the_owner_wins_and_the_other_is_kept(
        central: Engine, hubs: dict[str, Hub]) -> None:
    a = hubs["LAB-A"]
    a.sync_down(central)
    with a.engine.begin() as conn:
        assets.register_asset(conn=conn, tag="A-1", model_code="ARD", site_code="LAB-A", by=BY)
    a.sync_up(central)
    with central.begin() as conn:  # someone on the central, while the lab was offline
        assets.edit_asset(conn=conn, tag="A-1", changes={"notes": "central's note"}, by="Luis")
    with a.engine.begin() as conn:
        assets.edit_asset(conn=conn, tag="A-1", changes={"condition": "fair"}, by=BY)
    a.sync_up(central)
    a.up = {}
    a.sync_up(central)  # a replay keeps one conflict, not two
    with central.begin() as conn:
        asset = assets.get_asset(conn=conn, tag="A-1")
        assert (asset.condition, asset.notes) == ("fair", None)  # the owner's version
        total, found = conflicts.list_conflicts(conn, sites=["LAB-A"])
        assert total == 1
        (c,) = found
        assert (c.kind, c.key) == ("assets", "A-1")
        assert c.set_aside["notes"] == "central's note" and c.kept["condition"] == "fair"
        assert c.rule.startswith("owner wins")
        seen = conflicts.mark_seen(conn, c.id, by="Carla")
        assert seen is not None and seen.seen_by == "Carla"
        assert conflicts.list_conflicts(conn, unseen=True)[0] == 0


def test_down_streams_on_a_hub_and_a_replay(central: Engine, hubs: dict[str, Hub]) -> None:
    a = hubs["LAB-A"]
    with central.begin() as conn:
        for name, grant, disabled in (("Teresa", Grant(Role.TEACHER, "LAB-A"), False),
                                      ("Coral", Grant(Role.COORDINATOR, "VL-R1"), False),
                                      ("Olga", Grant(Role.TEACHER, "LAB-A"), True),
                                      ("Bruno", Grant(Role.TEACHER, "LAB-B"), False)):
            user = accounts.create_user(conn, name=name, password_hash=f"$argon2id${name}",
                                        grants_given=[grant])
            if disabled:
                accounts.set_disabled(conn, user_id=user.id, disabled=True)
        sites.set_rollout_status(conn=conn, code="LAB-A", status="installing", by=BY)
    assert a.sync_down(central) == list(DOWN_STREAMS)
    with a.engine.connect() as conn:
        people = {r.name: (r.password_hash, r.disabled_at is not None) for r in
                  conn.execute(select(users))}
        assert people == {"Teresa": ("$argon2id$Teresa", False),
                          "Coral": ("$argon2id$Coral", False),
                          "Olga": ("$argon2id$Olga", True)}
        assert {r.site for r in conn.execute(select(grants))} == {"LAB-A", "VL-R1"}
        lab = sites.get_site(conn=conn, code="LAB-A")
        assert (lab.parent_code, lab.rollout_status, lab.rural) == ("VL-R1", "installing",
                                                                    True)
        assert {s.code for s in sites.list_sites(conn=conn)} >= {"VL", "VL-R1", "LAB-B"}
        history = [e.kind for e in sites_history(conn, "LAB-A")]
        assert history.count("SiteRolloutChanged") == 1
    snapshot = _dump_hub(a.engine)
    assert a.sync_down(central) == []  # nothing changed: nothing sent
    a.down = {}  # a central restored from a backup: everything again, harmlessly
    assert a.sync_down(central) == list(DOWN_STREAMS)
    assert _dump_hub(a.engine) == snapshot
    with central.begin() as conn:  # Teresa loses the lab on the central
        accounts.remove_grant(conn, user_id=accounts.get_user(conn, name="Teresa").id,
                              grant=Grant(Role.TEACHER, "LAB-A"))
    assert a.sync_down(central) == ["people"]
    with a.engine.connect() as conn:
        teresa = accounts.get_user(conn, name="Teresa")
        assert accounts.grants_of(conn, teresa.id) == ()


def sites_history(conn: Connection, code: str) -> list[object]:
    return list(history_of(conn=conn, subject=code))


def _dump_hub(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    with engine.connect() as conn:
        return {t.name: sorted(tuple(r) for r in conn.execute(select(t)))
                for t in (sites_table, models, users, grants, events, kit_contents,
                          transfers_table)}


def test_a_hubs_catalog_before_it_joined(central: Engine, sqlite_template: Path,
                                         tmp_path: Path) -> None:
    """Made on the hub before it joined: a model the central lacks is adopted by it; a
    model the central has in another version takes the central's, the hub's set aside."""
    path = tmp_path / "early.db"
    shutil.copy(sqlite_template, path)
    early = db.make_engine(f"sqlite:///{path}")
    with early.begin() as conn:
        sites.create_site(conn=conn, code="MI-RED", name="Mi red", kind="network", by=BY)
        sites.create_site(conn=conn, code="LOCAL", name="Mi zona", kind="region", by=BY,
                          parent_code="MI-RED")
        sites.create_site(conn=conn, code="LAB-A", name="Nuestro lab", kind="site", by=BY,
                          parent_code="LOCAL", tier="lab_spark")
        catalog.create_model(conn=conn, code="ARD", name="Arduino (local)", by=BY,
                             category="microcontroller_board")
        catalog.create_model(conn=conn, code="MICROBIT", name="micro:bit", by=BY,
                             category="microcontroller_board")
        assets.register_asset(conn=conn, tag="MB-1", model_code="MICROBIT", site_code="LAB-A",
                              by=BY)
        assets.register_asset(conn=conn, tag="AR-1", model_code="ARD", site_code="LAB-A",
                              by=BY)
        conn.execute(insert(network_membership).values(
            id=1, central_url="https://central.example", hub_id="hub-early",
            credential="lhh_test", site="LAB-A", joined_at=now_us()))
    hub = Hub.__new__(Hub)
    hub.site, hub.engine, hub.up, hub.down = "LAB-A", early, {}, {}
    hub.sync_up(central)
    with central.connect() as conn:
        assert catalog.get_model(conn=conn, code="MICROBIT").name == "micro:bit"  # adopted
        assert catalog.get_model(conn=conn, code="ARD").name == "Arduino Uno"
        assert sites.get_site(conn=conn, code="LAB-A").name == "Lab LAB-A"
        assert {a.tag for a in assets.list_assets(conn=conn, site_under="LAB-A")[1]} == {"MB-1",
                                                                                  "AR-1"}
        kinds = {(c.kind, c.key) for c in conflicts.list_conflicts(conn)[1]}
        assert kinds == {("models", "ARD")}
    hub.sync_down(central)
    with early.connect() as conn:
        assert catalog.get_model(conn=conn, code="ARD").name == "Arduino Uno"
        lab = sites.get_site(conn=conn, code="LAB-A")
        assert (lab.name, lab.parent_code) == ("Lab LAB-A", "VL-R1")
        assert sites.get_site(conn=conn, code="LOCAL").kind == "region"  # kept, local
        kinds = {(c.kind, c.key) for c in conflicts.list_conflicts(conn)[1]}
        assert kinds == {("sites", "LAB-A"), ("models", "ARD")}
    early.dispose()


def test_a_hub_that_changes_an_asset_on_its_way_to_it_is_told_so(
        central: Engine, hubs: dict[str, Hub]) -> None:
    """Two hubs hold the same asset while it travels: the sender owns it until the
    receiver receives it, so the receiver's earlier change is refused, and listed."""
    a, b = hubs["LAB-A"], hubs["LAB-B"]
    a.sync_down(central)
    b.sync_down(central)
    with a.engine.begin() as conn:
        assets.register_asset(conn=conn, tag="K-1", model_code="ARD", site_code="LAB-A", by=BY)
        t = transfers.draft_transfer(conn=conn, from_site="LAB-A", to_site="LAB-B", by=BY,
                                     tags=["K-1"])
        transfers.ship_transfer(conn=conn, transfer_uuid=t.uuid, carrier="bus", by=BY)
    a.sync_up(central)
    b.sync_down(central)
    with b.engine.begin() as conn:
        assets.edit_asset(conn=conn, tag="K-1", changes={"notes": "caja abierta"}, by=BY)
    b.sync_up(central)
    with central.connect() as conn:
        assert assets.get_asset(conn=conn, tag="K-1").notes is None
        _, found = conflicts.list_conflicts(conn, sites=["LAB-B"])
    assert [(c.kind, c.set_aside["kind"]) for c in found] == [("events", "AssetEdited")]
    assert "LAB-A" in found[0].rule


def test_a_down_position_always_moves_forward(central: Engine, hubs: dict[str, Hub]) -> None:
    """The central sends a down section only when its position sorts after the hub's, so
    a changed set must never get a position that sorts before the one applied."""
    a = hubs["LAB-A"]
    a.sync_down(central)
    for status in ("installing", "active", "paused"):
        before = a.down["rollout"]
        with central.begin() as conn:
            sites.set_rollout_status(conn=conn, code="LAB-A", status=status, by=BY)
        assert "rollout" in a.sync_down(central)
        assert position_key(a.down["rollout"]) > position_key(before)
    with a.engine.connect() as conn:
        assert sites.get_site(conn=conn, code="LAB-A").rollout_status == "paused"
