"""The inventory API on every backend, end to end: a coordinator's path through sites,
the catalog, assets and history, and each bad request as problem+json with nothing half
written."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from signed_in import TEST_ADMIN, as_admin

from labhub.app import create_app
from labhub.settings import Settings

PROBLEM = "application/problem+json"
V1 = "/api/v1"


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url,
                        serial_scan=False)
    with as_admin(TestClient(create_app(settings))) as c:
        yield c


def _post(client: TestClient, path: str, body: dict[str, Any], status: int = 201) -> Any:
    r = client.post(V1 + path, json={**body})
    assert r.status_code == status, r.text
    return r.json()


def _get(client: TestClient, path: str, **params: Any) -> Any:
    r = client.get(V1 + path, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def _network(client: TestClient) -> None:
    """ValleLabs: a network, a region with a municipality, a Lab Center and a Lab Point,
    a second region with a Lab Spark, and a serialized model."""
    _post(client, "/sites", {"code": "VL", "name": "ValleLabs", "kind": "network"})
    _post(client, "/sites", {"code": "VL-R1", "name": "Valle", "kind": "region",
                             "parent": "VL"})
    _post(client, "/sites", {"code": "VL-R2", "name": "Cauca", "kind": "region",
                             "parent": "VL"})
    _post(client, "/sites", {"code": "VL-M-CALI", "name": "Cali", "kind": "municipality",
                             "parent": "VL-R1"})
    _post(client, "/sites", {"code": "VL-LC-01", "name": "Lab Center Cali",
                             "kind": "site", "parent": "VL-M-CALI", "tier": "lab_center",
                             "latitude": 3.45, "longitude": -76.53})
    _post(client, "/sites", {"code": "VL-LP-014", "name": "Lab Point Escuela 14",
                             "kind": "site", "parent": "VL-M-CALI", "tier": "lab_point",
                             "rural": True, "institution": "IE Escuela 14"})
    _post(client, "/sites", {"code": "VL-LS-02", "name": "Lab Spark Popayán", "kind": "site",
                             "parent": "VL-R2", "tier": "lab_spark"})
    _post(client, "/models", {"code": "ARD-UNO-R3", "name": "Arduino Uno R3",
                              "category": "microcontroller_board"})
    _post(client, "/models", {"code": "PRUSA-MK4", "name": "Prusa MK4",
                              "category": "3d_printer"})


def _counts(client: TestClient) -> tuple[int, int, int, int]:
    """Sites, models, assets and events of VC-0001: what a failed request must not change."""
    history = client.get(f"{V1}/history/VC-0001")
    events = len(history.json()) if history.status_code == 200 else 0
    return (len(_get(client, "/sites")), len(_get(client, "/models")),
            _get(client, "/assets")["total"], events)


def test_a_coordinator_builds_a_network_and_follows_its_assets(client: TestClient) -> None:
    _network(client)
    lp = _get(client, "/sites/VL-LP-014")
    assert lp["kind"] == "site" and lp["tier"] == "lab_point" and lp["parent"] == "VL-M-CALI"
    assert lp["rural"] is True and lp["rollout_status"] == "planned"
    assert lp["rollout_changed_at"].endswith("Z")
    assert [s["code"] for s in _get(client, "/sites", under="VL-R1")] == [
        "VL-LC-01", "VL-LP-014", "VL-M-CALI", "VL-R1"]
    assert [s["code"] for s in _get(client, "/sites", under="VL", kind="site")] == [
        "VL-LC-01", "VL-LP-014", "VL-LS-02"]
    version = _get(client, "/sites/VL-LP-014")["version"]
    lp = _post(client, "/sites/VL-LP-014/rollout", {"status": "installing",
                                                    "note": "mesas llegaron",
                                                    "expected_version": version}, 200)
    assert lp["rollout_status"] == "installing"
    # A rollout change guarded by the version read: a stale one is a 409, nothing changes.
    _problem(client, "POST", "/sites/VL-LP-014/rollout", 409,
             {"status": "active", "expected_version": lp["version"] - 1})
    assert _get(client, "/sites/VL-LP-014")["rollout_status"] == "installing"
    assert [m["code"] for m in _get(client, "/models", category="3d_printer")] == ["PRUSA-MK4"]
    assert _get(client, "/models/ARD-UNO-R3")["name"] == "Arduino Uno R3"

    for i in range(1, 4):
        asset = _post(client, "/assets", {"tag": f"VC-000{i}", "model": "ARD-UNO-R3",
                                          "site": "VL-LC-01", "serial_number": f"SN-{i}"})
        assert asset["status"] == "available" and asset["site"] == "VL-LC-01"
    _post(client, "/assets", {"tag": "VC-0100", "model": "PRUSA-MK4", "site": "VL-LS-02"})

    region = _get(client, "/assets", site="VL-R1")
    assert region["total"] == 3
    assert [a["tag"] for a in region["items"]] == ["VC-0001", "VC-0002", "VC-0003"]
    assert _get(client, "/assets", site="VL")["total"] == 4
    assert [a["tag"] for a in _get(client, "/assets", search="prusa")["items"]] == ["VC-0100"]
    assert [a["tag"] for a in _get(client, "/assets", search="sn-2")["items"]] == ["VC-0002"]
    page = _get(client, "/assets", site="VL", limit=2, offset=2)
    assert page["total"] == 4 and [a["tag"] for a in page["items"]] == ["VC-0003", "VC-0100"]

    moved = _post(client, "/assets/by-tag/VC-0001/move",
                  {"to_site": "VL-LP-014", "note": "para el club de robótica"}, 200)
    assert moved["site"] == "VL-LP-014"
    assert [a["tag"] for a in _get(client, "/assets", site="VL-LP-014")["items"]] == ["VC-0001"]

    for status, command in (("in_repair", "start a repair"), ("on_loan", "check it out")):
        by_hand = _post(client, "/assets/by-tag/VC-0002/status", {"status": status}, 409)
        assert f"is not set {status} by hand: {command}" in by_hand["detail"]
    broken = _post(client, "/assets/by-tag/VC-0002/status",
                   {"status": "lost", "condition": "broken", "note": "USB suelto"}, 200)
    assert (broken["status"], broken["condition"]) == ("lost", "broken")
    assert [a["tag"] for a in _get(client, "/assets", status="lost")["items"]] == [
        "VC-0002"]
    fixed = _post(client, "/assets/by-tag/VC-0002/status",
                  {"status": "available", "condition": "good"}, 200)
    assert (fixed["status"], fixed["condition"]) == ("available", "good")
    assert _get(client, "/assets", status="lost")["total"] == 0

    assert _get(client, "/assets/by-tag/VC-0001")["site"] == "VL-LP-014"
    assert _get(client, "/assets/by-serial/SN-2")["tag"] == "VC-0002"

    events = _get(client, "/history/VC-0002")
    assert [e["kind"] for e in events] == [
        "AssetRegistered", "AssetStatusChanged", "AssetStatusChanged"]
    assert all(e["by"] == TEST_ADMIN and e["subject"] == "VC-0002" for e in events)
    times = [datetime.fromisoformat(e["at"].replace("Z", "+00:00")) for e in events]
    assert all(t.tzinfo is not None for t in times) and times == sorted(times)
    assert len(set(times)) == 3
    assert events[1]["from_state"] == {"status": "available", "condition": "good"}
    assert events[1]["to_state"] == {"status": "lost", "condition": "broken"}
    assert events[1]["note"] == "USB suelto" and events[1]["site"] == "VL-LC-01"
    assert [e["kind"] for e in _get(client, "/history/VC-0001")] == [
        "AssetRegistered", "AssetMoved"]
    assert [e["kind"] for e in _get(client, "/history/VL-LP-014")] == [
        "SiteCreated", "SiteRolloutChanged"]


def test_a_tag_with_a_slash_is_reachable_by_its_path(client: TestClient) -> None:
    _network(client)
    _post(client, "/assets", {"tag": "VC/0001", "model": "ARD-UNO-R3", "site": "VL-LC-01",
                              "serial_number": "A/B 1"})
    assert _get(client, "/assets/by-tag/VC/0001")["tag"] == "VC/0001"
    assert _get(client, "/assets/by-serial/A/B 1")["tag"] == "VC/0001"
    _post(client, "/assets/by-tag/VC/0001/move", {"to_site": "VL-LP-014"}, 200)
    assert [e["kind"] for e in _get(client, "/history/VC/0001")] == [
        "AssetRegistered", "AssetMoved"]


def _problem(client: TestClient, method: str, path: str, expected: int,
             body: dict[str, Any] | None = None, **params: Any) -> dict[str, Any]:
    r = client.request(method, V1 + path, json=body, params=params)
    assert r.status_code == expected, r.text
    assert r.headers["content-type"] == PROBLEM
    problem: dict[str, Any] = r.json()
    assert problem["status"] == expected and problem["detail"]
    return problem


def test_bad_requests_are_problems_and_write_nothing(client: TestClient) -> None:
    _network(client)
    _post(client, "/assets", {"tag": "VC-0001", "model": "ARD-UNO-R3", "site": "VL-LC-01",
                              "serial_number": "SN-1"})
    before = _counts(client)
    assert before == (7, 2, 1, 1)

    dup = _problem(client, "POST", "/assets", 409, {
        "tag": "VC-0001", "model": "ARD-UNO-R3", "site": "VL-LP-014"})
    assert "'VC-0001'" in dup["detail"] and "already registered" in dup["detail"]
    serial = _problem(client, "POST", "/assets", 409, {
        "tag": "VC-0002", "model": "ARD-UNO-R3", "site": "VL-LC-01", "serial_number": "SN-1"})
    assert "'SN-1'" in serial["detail"] and "VC-0001" in serial["detail"]
    site = _problem(client, "POST", "/assets", 404, {
        "tag": "VC-0002", "model": "ARD-UNO-R3", "site": "NOWHERE"})
    assert "'NOWHERE'" in site["detail"]
    model = _problem(client, "POST", "/assets", 404, {
        "tag": "VC-0002", "model": "NO-SUCH", "site": "VL-LC-01"})
    assert "'NO-SUCH'" in model["detail"]
    at_region = _problem(client, "POST", "/assets", 422, {
        "tag": "VC-0002", "model": "ARD-UNO-R3", "site": "VL-R1"})
    assert "lab sites" in at_region["detail"]
    bad_tag = _problem(client, "POST", "/assets", 422, {
        "tag": "VC 0002", "model": "ARD-UNO-R3", "site": "VL-LC-01"})
    assert "no spaces" in bad_tag["detail"]
    _problem(client, "POST", "/sites", 409, {"code": "VL-R1", "name": "Otra", "kind": "region",
                                             "parent": "VL"})
    _problem(client, "POST", "/sites", 404, {"code": "VL-M-X", "name": "X",
                                             "kind": "municipality", "parent": "NOPE"})
    _problem(client, "POST", "/models", 409, {"code": "ARD-UNO-R3", "name": "Uno",
                                              "category": "microcontroller_board"})
    assert _counts(client) == before

    _post(client, "/assets/by-tag/VC-0001/status", {"status": "retired"}, 200)
    before = _counts(client)
    retired = _problem(client, "POST", "/assets/by-tag/VC-0001/status", 409,
                       {"status": "available"})
    assert "'VC-0001'" in retired["detail"] and "retired" in retired["detail"]
    _problem(client, "POST", "/assets/by-tag/VC-0001/move", 409,
             {"to_site": "VL-LP-014"})
    _problem(client, "POST", "/assets/by-tag/NOPE/status", 404,
             {"status": "lost"})
    _problem(client, "POST", "/sites/VL-R1/rollout", 422, {"status": "active"})
    assert _counts(client) == before

    # Bodies that do not fit the schema: 422 naming the field, before any service runs.
    missing_model = _problem(client, "POST", "/assets", 422,
                             {"tag": "VC-0009", "site": "VL-LC-01"})
    assert "body.model" in missing_model["detail"]
    bad_status = _problem(client, "POST", "/assets/by-tag/VC-0001/status", 422,
                          {"status": "borrowed"})
    assert "body.status" in bad_status["detail"]
    _problem(client, "POST", "/sites", 422, {"code": "X", "name": "X", "kind": "planet"})
    _problem(client, "POST", "/assets/by-tag/VC-0001/move", 422, {})
    named_by = _problem(client, "POST", "/models", 422, {
        "code": "M-1", "name": "M", "category": "tool", "by": "Someone else"})
    assert "by" in named_by["detail"]  # who did it is the one signed in, never a field
    assert _counts(client) == before

    # Reads: unknown keys are 404, a page over the cap or a bad filter is 422.
    _problem(client, "GET", "/sites/NOPE", 404)
    _problem(client, "GET", "/models/NOPE", 404)
    _problem(client, "GET", "/assets/by-tag/NOPE", 404)
    _problem(client, "GET", "/assets/by-serial/NOPE", 404)
    _problem(client, "GET", "/history/NOPE", 404)
    _problem(client, "GET", "/sites", 404, under="NOPE")
    _problem(client, "GET", "/assets", 404, site="NOPE")
    over = _problem(client, "GET", "/assets", 422, limit=501)
    assert "query.limit" in over["detail"] and "500" in over["detail"]
    _problem(client, "GET", "/assets", 422, limit=0)
    _problem(client, "GET", "/assets", 422, offset=-1)
    _problem(client, "GET", "/assets", 422, status="borrowed")
    _problem(client, "GET", "/models", 422, category="spaceship")


def test_the_page_cap_follows_the_settings(database_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url,
                        serial_scan=False, page_limit_max=20)
    with as_admin(TestClient(create_app(settings))) as client:
        assert _get(client, "/assets", limit=20) == {"total": 0, "items": []}
        over = _problem(client, "GET", "/assets", 422, limit=21)
        assert "between 1 and 20" in over["detail"]
