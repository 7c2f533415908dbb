"""Transfers, rotations and audits through the API on every backend: a coordinator ships
two kits from a Lab Center to a Lab Point and receives them, runs an audit and applies
its corrections, follows a mobile lab's route; each bad request is problem+json naming
the problem, with nothing written."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from inventory_world import snapshot
from signed_in import TEST_ADMIN, as_admin
from sqlalchemy import Engine

from labhub import db
from labhub.app import create_app
from labhub.settings import Settings

PROBLEM = "application/problem+json"
V1 = "/api/v1"
BY = TEST_ADMIN  # who the history records: the one signed in


@pytest.fixture
def hub_engine(database_url: str) -> Iterator[Engine]:
    eng = db.make_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    """The API of the hub at Lab Point VL-LP-014 (its ``site`` setting)."""
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url,
                        serial_scan=False, site="VL-LP-014")
    with as_admin(TestClient(create_app(settings))) as c:
        _network(c)
        yield c


def _post(client: TestClient, path: str, body: dict[str, Any], status: int = 200) -> Any:
    r = client.post(V1 + path, json={**body})
    assert r.status_code == status, r.text
    return r.json()


def _get(client: TestClient, path: str, **params: Any) -> Any:
    r = client.get(V1 + path, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def _problem(client: TestClient, path: str, body: dict[str, Any], status: int,
             detail: str) -> dict[str, Any]:
    r = client.post(V1 + path, json={**body})
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    assert detail in r.json()["detail"], r.json()
    problem: dict[str, Any] = r.json()
    return problem


def _network(client: TestClient) -> None:
    """ValleLabs: a Lab Center and a Lab Point in Cali, a Lab Spark in Cauca, a mobile lab;
    robotics kits VC-0001..VC-0004 at the Lab Center, VC-0100 at the Lab Spark."""
    for code, kind, parent, tier in (
        ("VL", "network", None, None), ("VL-R1", "region", "VL", None),
        ("VL-R2", "region", "VL", None), ("VL-M-CALI", "municipality", "VL-R1", None),
        ("VL-LC-01", "site", "VL-M-CALI", "lab_center"),
        ("VL-LP-014", "site", "VL-M-CALI", "lab_point"),
        ("VL-LS-02", "site", "VL-R2", "lab_spark"), ("VL-ML-1", "site", "VL-R2", "mobile_lab"),
    ):
        _post(client, "/sites", {"code": code, "name": code, "kind": kind, "parent": parent,
                                 "tier": tier}, 201)
    _post(client, "/models", {"code": "KIT-ROBOT", "name": "Robotics kit",
                              "category": "robotics_kit"}, 201)
    _post(client, "/models", {"code": "JMP-WIRE", "name": "Jumper wire",
                              "category": "consumable", "tracking": "counted", "unit": "pcs"},
          201)
    for i in range(1, 5):
        _post(client, "/assets", {"tag": f"VC-000{i}", "model": "KIT-ROBOT",
                                  "site": "VL-LC-01"}, 201)
    _post(client, "/assets", {"tag": "VC-0100", "model": "KIT-ROBOT", "site": "VL-LS-02"}, 201)


def _kinds(client: TestClient, subject: str) -> list[str]:
    return [e["kind"] for e in _get(client, f"/history/{subject}")]


def test_ship_two_kits_to_a_lab_point_and_receive_one_missing_one_extra(
        client: TestClient) -> None:
    t = _post(client, "/transfers", {"from_site": "VL-LC-01", "to_site": "VL-LP-014",
                                     "tags": ["VC-0001"]}, 201)
    assert (t["status"], t["version"], t["items"]) == ("draft", 2, ["VC-0001"])
    tid = t["id"]
    t = _post(client, f"/transfers/{tid}/items", {"tags": ["VC-0002", "VC-0003"],
                                                  "version": 2})
    r = client.delete(f"{V1}/transfers/{tid}/items/VC-0003", params={"version": 3})
    assert r.status_code == 200, r.text
    t = _post(client, f"/transfers/{tid}/ship", {"carrier": "Luis (conductor)", "version": 4})
    assert (t["status"], t["carrier"], t["items"]) == ("shipped", "Luis (conductor)",
                                                      ["VC-0001", "VC-0002"])
    assert _get(client, "/assets", status="in_transit")["total"] == 2
    # At the Lab Point: one kit arrives, plus a kit that was not on the transfer.
    _post(client, f"/transfers/{tid}/scans", {"tag": "VC-0001"})  # site from the hub setting
    scan = _post(client, f"/transfers/{tid}/scans", {"tag": "VC-0100", "site": "VL-LP-014"})
    assert scan == {"transfer": tid, "tag": "VC-0100", "new": True, "on_transfer": False,
                    "version": 7, "scanned": 2}
    assert _get(client, f"/transfers/{tid}")["scanned"] == ["VC-0001", "VC-0100"]
    _problem(client, f"/transfers/{tid}/receive", {}, 422,
             "were shipped and not scanned (VC-0002): say whether they stay in_transit or "
             "become lost (missing_as)")
    t = _post(client, f"/transfers/{tid}/receive", {"missing_as": "in_transit",
                                                    "note": "faltó una caja"})
    assert t["status"] == "received" and t["received_by"] == BY
    assert [(d["tag"], d["kind"], d["resolution"], d["recorded_site"])
            for d in t["discrepancies"]] == [
        ("VC-0100", "extra", "unchanged", "VL-LS-02"),
        ("VC-0002", "missing", "in_transit", None)]
    assert _get(client, "/assets/by-tag/VC-0001")["site"] == "VL-LP-014"
    assert _get(client, "/assets/by-tag/VC-0001")["status"] == "available"
    assert _get(client, "/assets/by-tag/VC-0002")["status"] == "in_transit"
    assert _get(client, f"/transfers/{tid}") == t
    assert _kinds(client, "VC-0001") == ["AssetRegistered", "TransferItemShipped",
                                         "TransferItemScanned", "TransferItemReceived"]
    assert _kinds(client, "VC-0002") == ["AssetRegistered", "TransferItemShipped",
                                         "TransferDiscrepancyRecorded"]
    assert _kinds(client, tid)[-2:] == ["TransferShipped", "TransferReceived"]
    listed = _get(client, "/transfers", to_site="VL-R1", status="received")
    assert listed["total"] == 1 and listed["items"][0]["id"] == tid
    assert _get(client, "/transfers", from_site="VL-R2")["total"] == 0


def test_wrong_site_in_transit_and_stale_writes_are_409s_with_nothing_written(
        client: TestClient, hub_engine: Engine) -> None:
    t = _post(client, "/transfers", {"from_site": "VL-LC-01", "to_site": "VL-LP-014",
                                     "tags": ["VC-0001", "VC-0002"]}, 201)
    tid = t["id"]
    t = _post(client, f"/transfers/{tid}/ship", {"carrier": "Luis"})
    _post(client, f"/transfers/{tid}/scans", {"tag": "VC-0001"})
    before = snapshot(hub_engine)
    wrong = _problem(client, f"/transfers/{tid}/receive",
                     {"site": "VL-LS-02", "missing_as": "lost"}, 409,
                     f"transfer {tid} goes to VL-LP-014, and this hub is at VL-LS-02: it can "
                     "only be received at VL-LP-014")
    assert wrong["title"] == "Wrong site"
    _problem(client, f"/transfers/{tid}/scans", {"tag": "VC-0002", "site": "VL-LS-02"}, 409,
             "goes to VL-LP-014, and this hub is at VL-LS-02")
    _problem(client, "/transfers", {"from_site": "VL-LC-01", "to_site": "VL-LS-02",
                                    "tags": ["VC-0003", "VC-0001"]}, 409,
             "asset 'VC-0001' is in_transit and cannot be put on a transfer")
    _problem(client, f"/transfers/{tid}/receive", {"missing_as": "lost", "version": 3}, 409,
             f"transfer {tid} is at version 4, not 3")
    _problem(client, f"/transfers/{tid}/items", {"tags": ["VC-0003"]}, 409,
             f"transfer {tid} is shipped; only a draft transfer can take items")
    _problem(client, f"/transfers/{tid}/receive", {"missing_as": "mislaid"}, 422,
             "body.missing_as")
    _problem(client, "/transfers/nope/ship", {"carrier": "Luis"}, 404, "no transfer 'nope'")
    assert client.get(f"{V1}/transfers", params={"limit": 0}).status_code == 422
    assert snapshot(hub_engine) == before


def test_an_audit_finds_a_missing_and_an_unexpected_kit_and_corrects_them(
        client: TestClient) -> None:
    audit = _post(client, "/audits", {"site": "VL-LC-01"}, 201)
    aid = audit["id"]
    for tag in ("VC-0001", "VC-0002", "VC-0003", "VC-0100"):
        audit = _post(client, f"/audits/{aid}/scans", {"tag": tag})
    assert audit == {"audit": aid, "tag": "VC-0100", "new": True, "version": 5, "scanned": 4,
                     "recorded_site": "VL-LS-02"}
    audit = _post(client, f"/audits/{aid}/counts", {"model": "JMP-WIRE", "quantity": 38,
                                                    "version": audit["version"]})
    assert audit["counts"] == [{"model": "JMP-WIRE", "quantity": 38}]
    _problem(client, f"/audits/{aid}/counts", {"model": "KIT-ROBOT", "quantity": 1}, 422,
             "'KIT-ROBOT' is tracked as tagged assets")
    assert client.get(f"{V1}/audits/{aid}/report").status_code == 409
    report = _post(client, f"/audits/{aid}/finish", {})
    assert [f["tag"] for f in report["found"]] == ["VC-0001", "VC-0002", "VC-0003"]
    assert [(f["tag"], f["recorded_status"]) for f in report["missing"]] == [
        ("VC-0004", "available")]
    assert [(f["tag"], f["recorded_site"], f["source"]) for f in report["unexpected"]] == [
        ("VC-0100", "VL-LS-02", "scan")]
    assert report["counts"] == [{"model": "JMP-WIRE", "unit": "pcs", "expected": 0,
                                 "counted": 38, "difference": 38, "corrected_at": None}]
    assert _get(client, f"/audits/{aid}/report") == report
    applied = _post(client, f"/audits/{aid}/apply", {"version": report["audit"]["version"]})
    assert applied["audit"]["status"] == "applied"
    assert applied["counts"][0]["corrected_at"] is not None
    assert _get(client, "/stock?site=VL-LC-01&model=JMP-WIRE")["items"][0]["quantity"] == 38
    assert applied["missing"][0]["corrected_at"] is not None
    assert _get(client, "/assets/by-tag/VC-0004")["status"] == "lost"
    assert _get(client, "/assets/by-tag/VC-0100")["site"] == "VL-LC-01"
    assert _kinds(client, "VC-0004") == ["AssetRegistered", "AuditCorrectionApplied"]
    assert _kinds(client, "VC-0100") == ["AssetRegistered", "AuditItemScanned",
                                         "AuditCorrectionApplied"]
    assert _kinds(client, aid) == ["AuditStarted", "AuditFinished", "AuditCorrectionsApplied"]
    _problem(client, f"/audits/{aid}/apply", {}, 409, "corrections are applied once")
    _problem(client, f"/audits/{aid}/scans", {"tag": "VC-0004"}, 409,
             "only an open audit can take scans")


def test_a_mobile_lab_follows_its_route(client: TestClient) -> None:
    for i in (1, 2):
        _post(client, "/assets", {"tag": f"ML-000{i}", "model": "KIT-ROBOT",
                                  "site": "VL-ML-1"}, 201)
        manifest = _post(client, "/mobile-labs/VL-ML-1/manifest", {"tag": f"ML-000{i}"})
    assert manifest == {"mobile_lab": "VL-ML-1", "tags": ["ML-0001", "ML-0002"]}
    _problem(client, "/mobile-labs/VL-ML-1/manifest", {"tag": "VC-0001"}, 409,
             "'VC-0001' is at VL-LC-01; move it to VL-ML-1")
    _problem(client, "/rotations", {"mobile_lab": "VL-LC-01", "name": "x", "stops": [
        {"site": "VL-LP-014", "arrive_on": "2027-03-01", "depart_on": "2027-03-05"}]}, 422,
        "site 'VL-LC-01' is not a mobile lab")
    r = _post(client, "/rotations", {"mobile_lab": "VL-ML-1", "name": "Ruta 2027", "stops": [
        {"site": "VL-LP-014", "arrive_on": "2027-03-01", "depart_on": "2027-03-05"},
        {"site": "VL-LS-02", "arrive_on": "2027-03-08", "depart_on": "2027-03-31"}]}, 201)
    rid = r["id"]
    moved = _post(client, f"/rotations/{rid}/stops/1/arrive", {"carrier": "Luis"})
    came = moved["transfer"]
    assert (came["from_site"], came["to_site"], came["items"]) == (
        "VL-ML-1", "VL-LP-014", ["ML-0001", "ML-0002"])
    _post(client, f"/transfers/{came['id']}/scans", {"tag": "ML-0001"})
    _post(client, f"/transfers/{came['id']}/scans", {"tag": "ML-0002"})
    _post(client, f"/transfers/{came['id']}/receive", {})
    moved = _post(client, f"/rotations/{rid}/stops/1/depart", {"carrier": "Luis"})
    back = moved["transfer"]
    assert (back["from_site"], back["to_site"]) == ("VL-LP-014", "VL-ML-1")
    _post(client, f"/transfers/{back['id']}/scans", {"tag": "ML-0001", "site": "VL-ML-1"})
    _post(client, f"/transfers/{back['id']}/receive", {"site": "VL-ML-1", "missing_as": "lost"})
    assert _get(client, "/assets/by-tag/ML-0002")["status"] == "lost"
    rotation = _get(client, f"/rotations/{rid}")
    assert rotation["stops"][0]["arrival_transfer"] == came["id"]
    assert rotation["stops"][0]["departure_transfer"] == back["id"]
    second = _post(client, f"/rotations/{rid}/stops/2/arrive", {"carrier": "Luis"})
    assert second["transfer"]["items"] == ["ML-0001"]
    r2 = client.delete(f"{V1}/mobile-labs/VL-ML-1/manifest/ML-0002", params={})
    assert r2.status_code == 200 and r2.json()["tags"] == ["ML-0001"]
    _problem(client, f"/rotations/{rid}/stops/3/arrive", {"carrier": "Luis"}, 404,
             "has no stop 3")


def test_a_hub_without_a_site_setting_asks_where_the_scan_is(
        database_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url,
                        serial_scan=False)
    with as_admin(TestClient(create_app(settings))) as c:
        r = c.post(f"{V1}/transfers/any/scans", json={"tag": "VC-0001"})
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    assert r.json()["errors"] == [{"where": "body.site", "message": "Field required"}]


JSON = st.recursive(
    st.none() | st.booleans() | st.floats() | st.text(max_size=10) | st.integers()
    | st.sampled_from(["VL-LC-01", "VL-LP-014", "VC-0001", "a\x00b", "JMP-WIRE"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["tag", "tags", "site", "by", "version", "carrier", "missing_as",
                         "from_site", "to_site", "model", "quantity", "stops", "name",
                         "mobile_lab", "note"]), inner, max_size=6),
    max_leaves=12,
)


@hsettings(max_examples=25, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=JSON, key=st.text(max_size=12) | st.just("\x00"))
def test_no_body_or_key_makes_a_500(client: TestClient, doc: Any, key: str) -> None:
    t = client.post(f"{V1}/transfers",
                    json={"from_site": "VL-LC-01", "to_site": "VL-LP-014"}).json()
    audit = client.post(f"{V1}/audits", json={"site": "VL-LS-02"}).json()
    for path in ("/transfers", f"/transfers/{t['id']}/items", f"/transfers/{t['id']}/ship",
                 f"/transfers/{t['id']}/scans", f"/transfers/{t['id']}/receive",
                 "/rotations", "/audits", f"/audits/{audit.get('id')}/scans",
                 f"/audits/{audit.get('id')}/counts", f"/audits/{audit.get('id')}/finish",
                 "/mobile-labs/VL-ML-1/manifest", f"/transfers/{quote(key, safe='')}/ship",
                 f"/audits/{quote(key, safe='')}/apply"):
        r = client.post(V1 + path, content=json.dumps(doc).encode(),
                        headers={"content-type": "application/json"})
        assert r.status_code < 500, (path, doc, r.text)
        if r.status_code >= 400:
            assert r.headers["content-type"] == PROBLEM
    for path in (f"/transfers/{quote(key, safe='')}", f"/audits/{quote(key, safe='')}/report",
                 f"/rotations/{quote(key, safe='')}"):
        r = client.get(V1 + path)
        assert r.status_code < 500, (path, r.text)
