"""Transfers between lab sites and mobile-lab rotations, on every backend: draft, ship,
scan and receive with missing and extra items, each refusal with nothing written."""

from __future__ import annotations

from typing import Any

import pytest
from inventory_world import BY, network, put_in_status, refused, snapshot
from sqlalchemy import Engine, select

from inventory import assets as a
from inventory import rotations
from inventory import transfers as tr
from inventory.errors import ConflictError, InvalidTransitionError, InvalidValueError, NotFoundError
from inventory.history import AssetState, history_of, rebuild_assets
from inventory.tables import assets


@pytest.fixture
def lab(engine: Engine) -> Engine:
    with engine.begin() as conn:
        network(conn)
        for i in range(1, 6):
            a.register_asset(conn=conn, tag=f"VC-000{i}", model_code="KIT-ROBOT",
                             site_code="VL-LC-01", by=BY)
        a.register_asset(conn=conn, tag="VC-0100", model_code="KIT-ROBOT",
                         site_code="VL-LP-020", by=BY)
    return engine


def _draft(engine: Engine, *tags: str, to: str = "VL-LP-014") -> tr.Transfer:
    with engine.begin() as conn:
        return tr.draft_transfer(conn=conn, from_site="VL-LC-01", to_site=to, tags=tags, by=BY)


def _state(engine: Engine, tag: str) -> tuple[str, str]:
    with engine.connect() as conn:
        asset = a.get_asset(conn=conn, tag=tag)
    return asset.site_code, asset.status


def test_ship_two_kits_and_receive_them_with_one_missing_and_one_extra(lab: Engine) -> None:
    t = _draft(lab, "VC-0001", "VC-0002", "VC-0003")
    assert (t.status, t.version, t.items) == ("draft", 2, ("VC-0001", "VC-0002", "VC-0003"))
    with lab.begin() as conn:
        t = tr.remove_item(conn=conn, transfer_uuid=t.uuid, tag="VC-0003", by=BY, version=2)
        t = tr.ship_transfer(conn=conn, transfer_uuid=t.uuid, carrier="Luis (conductor)",
                             by=BY, version=3)
    assert (t.status, t.carrier, t.items) == ("shipped", "Luis (conductor)",
                                              ("VC-0001", "VC-0002"))
    assert t.shipped_at is not None
    assert _state(lab, "VC-0001") == ("VL-LC-01", "in_transit")
    assert _state(lab, "VC-0003") == ("VL-LC-01", "available")
    with lab.begin() as conn:
        scan = tr.scan_item(conn=conn, transfer_uuid=t.uuid, tag="VC-0001",
                            site="VL-LP-014", by="Marta")
        assert scan == tr.TransferScan(t.uuid, "VC-0001", True, True, 5, 1)
        again = tr.scan_item(conn=conn, transfer_uuid=t.uuid, tag="VC-0001",
                             site="VL-LP-014", by="Marta")
        assert again == tr.TransferScan(t.uuid, "VC-0001", False, True, 5, 1)
        tr.scan_item(conn=conn, transfer_uuid=t.uuid, tag="VC-0100", site="VL-LP-014", by="M")
        extra = tr.scan_item(conn=conn, transfer_uuid=t.uuid, tag="NO-LABEL-7",
                             site="VL-LP-014", by="M")
        assert extra == tr.TransferScan(t.uuid, "NO-LABEL-7", True, False, 7, 3)
        t = tr.get_transfer(conn=conn, transfer_uuid=t.uuid)
    assert t.scanned == ("NO-LABEL-7", "VC-0001", "VC-0100")
    with lab.begin() as conn:
        t = tr.receive_transfer(conn=conn, transfer_uuid=t.uuid, site="VL-LP-014", by="Marta",
                                missing_as="lost")
    assert (t.status, t.received_by, t.missing_as) == ("received", "Marta", "lost")
    assert [(d.tag, d.kind, d.resolution, d.recorded_site_code) for d in t.discrepancies] == [
        ("NO-LABEL-7", "extra", "unknown", None),
        ("VC-0100", "extra", "unchanged", "VL-LP-020"),
        ("VC-0002", "missing", "lost", None),
    ]
    assert _state(lab, "VC-0001") == ("VL-LP-014", "available")
    assert _state(lab, "VC-0002") == ("VL-LC-01", "lost")
    assert _state(lab, "VC-0100") == ("VL-LP-020", "available")  # an audit corrects it
    with lab.connect() as conn:
        kinds = [e.kind for e in history_of(conn=conn, subject="VC-0001")]
        assert kinds == ["AssetRegistered", "TransferItemShipped", "TransferItemScanned",
                         "TransferItemReceived"]
        assert [e.kind for e in history_of(conn=conn, subject="VC-0002")] == [
            "AssetRegistered", "TransferItemShipped", "TransferDiscrepancyRecorded"]
        assert [e.kind for e in history_of(conn=conn, subject=t.uuid)] == [
            "TransferDrafted", "TransferItemAdded", "TransferItemAdded", "TransferItemAdded",
            "TransferItemRemoved", "TransferShipped", "TransferReceived"]
        received = history_of(conn=conn, subject=t.uuid)[-1]
        assert received.to_state == {"status": "received", "received": 1, "missing": 1,
                                     "extra": 2, "missing_as": "lost"}
        assert [e.kind for e in history_of(conn=conn, subject="NO-LABEL-7")] == [
            "TransferItemScanned", "TransferDiscrepancyRecorded"]
        rebuilt = rebuild_assets(conn=conn)
        table = {r.tag: AssetState(r.site_code, r.status, r.condition)
                 for r in conn.execute(select(assets))}
    assert rebuilt == table


def test_missing_items_stay_in_transit_by_explicit_choice_only(lab: Engine) -> None:
    t = _draft(lab, "VC-0001", "VC-0002")
    with lab.begin() as conn:
        tr.ship_transfer(conn=conn, transfer_uuid=t.uuid, carrier="Luis", by=BY)
        tr.scan_item(conn=conn, transfer_uuid=t.uuid, tag="VC-0002", site="VL-LP-014", by=BY)
    before = snapshot(lab)
    with refused(lab, InvalidValueError,
                 match=r"1 item\(s\) of transfer .* were shipped and not scanned \(VC-0001\): "
                 r"say whether they stay in_transit or become lost \(missing_as\)") as conn:
        tr.receive_transfer(conn=conn, transfer_uuid=t.uuid, site="VL-LP-014", by=BY)
    assert snapshot(lab) == before
    with lab.begin() as conn:
        t = tr.receive_transfer(conn=conn, transfer_uuid=t.uuid, site="VL-LP-014", by=BY,
                                missing_as="in_transit")
    assert [(d.tag, d.kind, d.resolution) for d in t.discrepancies] == [
        ("VC-0001", "missing", "in_transit")]
    assert _state(lab, "VC-0001") == ("VL-LC-01", "in_transit")
    assert _state(lab, "VC-0002") == ("VL-LP-014", "available")
    # It turns up later: a coordinator sets it available (or an audit finds it).
    with lab.begin() as conn:
        a.set_status(conn=conn, tag="VC-0001", status="available", by=BY)
        assert tr.open_transfer_of(conn=conn, tag="VC-0001") is None


def test_a_transfer_received_at_the_wrong_site_is_refused_naming_both(lab: Engine) -> None:
    t = _draft(lab, "VC-0001")
    with lab.begin() as conn:
        tr.ship_transfer(conn=conn, transfer_uuid=t.uuid, carrier="Luis", by=BY)
        tr.scan_item(conn=conn, transfer_uuid=t.uuid, tag="VC-0001", site="VL-LP-014", by=BY)
    before = snapshot(lab)
    message = (f"transfer {t.uuid} goes to VL-LP-014, and this hub is at VL-LP-020: "
               "it can only be received at VL-LP-014")
    with refused(lab, ConflictError, match=message) as conn:
        tr.receive_transfer(conn=conn, transfer_uuid=t.uuid, site="VL-LP-020", by=BY)
    with refused(lab, ConflictError, match=message) as conn:
        tr.scan_item(conn=conn, transfer_uuid=t.uuid, tag="VC-0001", site="VL-LP-020", by=BY)
    assert snapshot(lab) == before


def test_an_asset_that_cannot_travel_is_refused_naming_its_tag(lab: Engine) -> None:
    first = _draft(lab, "VC-0001")
    with lab.begin() as conn:
        tr.ship_transfer(conn=conn, transfer_uuid=first.uuid, carrier="Luis", by=BY)
        a.set_status(conn=conn, tag="VC-0003", status="lost", by=BY)
        put_in_status(conn, "VC-0004", "on_loan")
    second = _draft(lab, "VC-0002")
    before = snapshot(lab)
    cases = [
        ("VC-0001", r"asset 'VC-0001' is in_transit and cannot be put on a transfer"),
        ("VC-0003", r"asset 'VC-0003' is lost and cannot be put on a transfer"),
        ("VC-0004", r"asset 'VC-0004' is on_loan and cannot be put on a transfer"),
        ("VC-0100", r"asset 'VC-0100' is at VL-LP-020, not at VL-LC-01"),
        ("VC-0002", rf"asset 'VC-0002' is already on transfer {second.uuid}"),
    ]
    for tag, message in cases:
        with refused(lab, ConflictError, match=message) as conn:
            tr.add_items(conn=conn, transfer_uuid=second.uuid, tags=["VC-0005", tag], by=BY)
    with refused(lab, ConflictError,
                 match=rf"'VC-0002' is already on open transfer {second.uuid}") as conn:
        tr.draft_transfer(conn=conn, from_site="VL-LC-01", to_site="VL-LP-020",
                          tags=["VC-0002"], by=BY)
    with refused(lab, NotFoundError, match="no asset with tag 'VC-9'") as conn:
        tr.add_items(conn=conn, transfer_uuid=second.uuid, tags=["VC-9"], by=BY)
    with refused(lab, InvalidTransitionError,
                 match="is shipped; only a draft transfer can take") as conn:
        tr.add_items(conn=conn, transfer_uuid=first.uuid, tags=["VC-0005"], by=BY)
    assert snapshot(lab) == before
    # Lent after it was put on the draft: shipping checks again.
    with lab.begin() as conn:
        put_in_status(conn, "VC-0002", "on_loan")
    before = snapshot(lab)
    with refused(lab, ConflictError, match="'VC-0002' is on_loan") as conn:
        tr.ship_transfer(conn=conn, transfer_uuid=second.uuid, carrier="Luis", by=BY)
    assert snapshot(lab) == before


def test_a_stale_version_is_refused_and_changes_nothing(lab: Engine) -> None:
    t = _draft(lab, "VC-0001")
    assert t.version == 2
    with lab.begin() as conn:
        tr.add_items(conn=conn, transfer_uuid=t.uuid, tags=["VC-0002"], by="Luis", version=2)
    before = snapshot(lab)
    stale = rf"transfer {t.uuid} is at version 3, not 2: it was changed since you read it"
    with refused(lab, ConflictError, match=stale) as conn:
        tr.ship_transfer(conn=conn, transfer_uuid=t.uuid, carrier="Luis", by=BY, version=2)
    with refused(lab, ConflictError, match=stale) as conn:
        tr.remove_item(conn=conn, transfer_uuid=t.uuid, tag="VC-0001", by=BY, version=2)
    assert snapshot(lab) == before


def test_bad_drafts_and_receipts(lab: Engine) -> None:
    before = snapshot(lab)
    with lab.begin() as conn:
        with pytest.raises(InvalidValueError, match="both are VL-LC-01"):
            tr.draft_transfer(conn=conn, from_site="VL-LC-01", to_site="VL-LC-01", by=BY)
        with pytest.raises(InvalidValueError, match="destination must be a lab site, and "
                                                    "'VL-R1' is a region"):
            tr.draft_transfer(conn=conn, from_site="VL-LC-01", to_site="VL-R1", by=BY)
        with pytest.raises(NotFoundError, match="no transfer 'nope'"):
            tr.get_transfer(conn=conn, transfer_uuid="nope")
    # NUL would be refused by PostgreSQL itself (a 500); it is a clear 422 instead.
    with refused(lab, InvalidValueError,
                 match=r"the note holds a control character \(U\+0000\) at position 2") as conn:
        tr.draft_transfer(conn=conn, from_site="VL-LC-01", to_site="VL-LP-014", by=BY,
                          note="a\x00b")
    with refused(lab, InvalidValueError, match=r"\('by'\) holds a control character") as conn:
        tr.draft_transfer(conn=conn, from_site="VL-LC-01", to_site="VL-LP-014", by="A\x00")
    # C1 controls and bidirectional overrides are refused as C0 ones are (labtext.printable).
    with refused(lab, InvalidValueError, match=r"\('by'\) holds a control character "
                                                r"\(U\+009B\) at position 2") as conn:
        tr.draft_transfer(conn=conn, from_site="VL-LC-01", to_site="VL-LP-014",
                          by="A\x9b2J")
    with refused(lab, InvalidValueError, match=r"the note holds a bidirectional text control "
                                                r"\(U\+202E\)") as conn:
        tr.draft_transfer(conn=conn, from_site="VL-LC-01", to_site="VL-LP-014", by=BY,
                          note="fine\nlines \u202egnp.exe")
    with refused(lab, InvalidValueError, match=r"\(U\+2067\)") as conn:
        tr.draft_transfer(conn=conn, from_site="VL-LC-01", to_site="VL-LP-014",
                          by="Ana \u2067(coordinadora)")
    assert snapshot(lab) == before
    empty = _draft(lab)
    with refused(lab, InvalidTransitionError, match="has no items") as conn:
        tr.ship_transfer(conn=conn, transfer_uuid=empty.uuid, carrier="Luis", by=BY)
    with refused(lab, InvalidTransitionError,
                 match="is draft; only a shipped transfer can be received") as conn:
        tr.receive_transfer(conn=conn, transfer_uuid=empty.uuid, site="VL-LP-014", by=BY)


def test_transfers_are_listed_by_status_and_by_subtree(lab: Engine) -> None:
    one = _draft(lab, "VC-0001")
    two = _draft(lab, "VC-0002", to="VL-LP-020")
    with lab.begin() as conn:
        tr.ship_transfer(conn=conn, transfer_uuid=two.uuid, carrier="Luis", by=BY)

    def listed(**kw: Any) -> tuple[int, list[str]]:
        with lab.connect() as conn:
            total, page = tr.list_transfers(conn=conn, **kw)
        return total, [t.uuid for t in page]

    assert listed() == (2, [two.uuid, one.uuid])
    assert listed(status="shipped") == (1, [two.uuid])
    assert listed(to_under="VL-R2") == (1, [two.uuid])
    assert listed(to_under="VL-R1", from_under="VL") == (1, [one.uuid])
    assert listed(limit=1, offset=1) == (2, [one.uuid])
    with refused(lab, InvalidValueError, match="limit 501") as conn:
        tr.list_transfers(conn=conn, limit=501)


def test_a_mobile_lab_rotation_is_two_transfers_per_stop(lab: Engine) -> None:
    with lab.begin() as conn:
        for i in (1, 2, 3):
            a.register_asset(conn=conn, tag=f"ML-000{i}", model_code="KIT-ROBOT",
                             site_code="VL-ML-1", by=BY)
            rotations.add_to_manifest(conn=conn, mobile_lab="VL-ML-1", tag=f"ML-000{i}",
                                      by=BY)
        with pytest.raises(ConflictError, match="'VC-0001' is at VL-LC-01; move it to VL-ML-1"):
            rotations.add_to_manifest(conn=conn, mobile_lab="VL-ML-1", tag="VC-0001", by=BY)
        with pytest.raises(InvalidValueError, match="'VL-LC-01' is not a mobile lab"):
            rotations.manifest_of(conn=conn, mobile_lab="VL-LC-01")
        r = rotations.plan_rotation(conn=conn, mobile_lab="VL-ML-1", name="Ruta norte 2027",
                                    stops=[("VL-LP-014", "2027-03-01", "2027-03-05"),
                                           ("VL-LP-020", "2027-03-08", "2027-03-12")], by=BY)
    assert [(s.seq, s.site_code) for s in r.stops] == [(1, "VL-LP-014"), (2, "VL-LP-020")]
    before = snapshot(lab)
    with lab.begin() as conn:
        with pytest.raises(InvalidTransitionError, match=r"stop 1 .* has not been left yet"):
            rotations.arrive(conn=conn, rotation_uuid=r.uuid, seq=2, carrier="Luis", by=BY)
        with pytest.raises(InvalidTransitionError, match="has not been arrived at"):
            rotations.depart(conn=conn, rotation_uuid=r.uuid, seq=1, carrier="Luis", by=BY)
        with pytest.raises(InvalidValueError, match="stop 2 at VL-LP-020: arrival 2027-03-04 "
                                                    "is before the previous stop's departure"):
            rotations.plan_rotation(conn=conn, mobile_lab="VL-ML-1", name="x", by=BY,
                                    stops=[("VL-LP-014", "2027-03-01", "2027-03-05"),
                                           ("VL-LP-020", "2027-03-04", "2027-03-12")])
    assert snapshot(lab) == before

    with lab.begin() as conn:
        r, came = rotations.arrive(conn=conn, rotation_uuid=r.uuid, seq=1, carrier="Luis",
                                   by=BY, version=1)
        assert (came.from_site_code, came.to_site_code, came.status) == (
            "VL-ML-1", "VL-LP-014", "shipped")
        assert came.items == ("ML-0001", "ML-0002", "ML-0003")
        for tag in ("ML-0001", "ML-0002"):
            tr.scan_item(conn=conn, transfer_uuid=came.uuid, tag=tag, site="VL-LP-014", by=BY)
        tr.receive_transfer(conn=conn, transfer_uuid=came.uuid, site="VL-LP-014", by=BY,
                            missing_as="lost")
    assert _state(lab, "ML-0001") == ("VL-LP-014", "available")
    assert _state(lab, "ML-0003") == ("VL-ML-1", "lost")
    with lab.begin() as conn:
        r, back = rotations.depart(conn=conn, rotation_uuid=r.uuid, seq=1, carrier="Luis",
                                   by=BY)
        assert (back.from_site_code, back.to_site_code) == ("VL-LP-014", "VL-ML-1")
        assert back.items == ("ML-0001", "ML-0002")
        for tag in back.items:
            tr.scan_item(conn=conn, transfer_uuid=back.uuid, tag=tag, site="VL-ML-1", by=BY)
        tr.receive_transfer(conn=conn, transfer_uuid=back.uuid, site="VL-ML-1", by=BY)
        r, second = rotations.arrive(conn=conn, rotation_uuid=r.uuid, seq=2, carrier="Luis",
                                     by=BY)
        assert second.items == ("ML-0001", "ML-0002")
        with pytest.raises(InvalidTransitionError, match="already arrived at stop 2"):
            rotations.arrive(conn=conn, rotation_uuid=r.uuid, seq=2, carrier="Luis", by=BY)
    assert r.stops[0].arrival_transfer_uuid == came.uuid
    assert r.stops[0].departure_transfer_uuid == back.uuid
    assert r.stops[1].arrival_transfer_uuid == second.uuid
    with lab.connect() as conn:
        assert [e.kind for e in history_of(conn=conn, subject=r.uuid)] == [
            "RotationPlanned", "RotationStopArrived", "RotationStopDeparted",
            "RotationStopArrived"]
        assert [e.kind for e in history_of(conn=conn, subject="ML-0001")][:3] == [
            "AssetRegistered", "ManifestItemAdded", "TransferItemShipped"]
