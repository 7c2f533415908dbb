"""The inventory movements API on every backend: a coordinator lends a kit to a class and
gets it back with a missing part (history and reorder report show it), locations, stock,
repairs, lists, and each bad request as problem+json with nothing written, including two
clients editing the same asset (one wins, the other gets a 409)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from movements_world import snapshot
from signed_in import as_admin

from labhub import db
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


def _send(client: TestClient, method: str, path: str, body: dict[str, Any] | None = None,
          status: int = 200, headers: dict[str, str] | None = None, **params: Any) -> Any:
    r = client.request(method, V1 + path, params=params, headers=headers,
                       json=None if body is None else {**body})
    assert r.status_code == status, r.text
    if status >= 400:
        assert r.headers["content-type"] == PROBLEM
        assert r.json()["status"] == status and r.json()["detail"]
    return r.json()


def _due(days: float = 3) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat().replace("+00:00", "Z")


def _lab(client: TestClient) -> None:
    """A Lab Center with a kit (a board, 1 ultrasonic sensor, 40 jumper wires, 10 LEDs),
    stock of the counted parts with thresholds, and a loose board."""
    for body in (
        {"code": "VL", "name": "ValleLabs", "kind": "network"},
        {"code": "VL-R1", "name": "Valle", "kind": "region", "parent": "VL"},
        {"code": "VL-LC-01", "name": "Lab Center Cali", "kind": "site", "parent": "VL-R1",
         "tier": "lab_center"},
    ):
        _send(client, "POST", "/sites", body, 201)
    _send(client, "POST", "/models", {"code": "KIT-ROB", "name": "Robotics kit",
                                      "category": "robotics_kit"}, 201)
    _send(client, "POST", "/models", {"code": "ARD-UNO-R3", "name": "Arduino Uno R3",
                                      "category": "microcontroller_board"}, 201)
    for code, name, category in (("HC-SR04", "Ultrasonic sensor", "sensor_module"),
                                 ("JMP-WIRE", "Jumper wire", "consumable"),
                                 ("LED-5MM", "LED 5 mm", "consumable")):
        _send(client, "POST", "/models", {"code": code, "name": name, "category": category,
                                          "tracking": "counted", "unit": "pcs"}, 201)
    for tag, model in (("VC-KIT-07", "KIT-ROB"), ("VC-0001", "ARD-UNO-R3"),
                       ("VC-0002", "ARD-UNO-R3")):
        _send(client, "POST", "/assets", {"tag": tag, "model": model, "site": "VL-LC-01"}, 201)
    for model, quantity, threshold in (("JMP-WIRE", 100, 60), ("LED-5MM", 40, 20),
                                       ("HC-SR04", 3, 3)):
        _send(client, "POST", "/stock/receive", {"site": "VL-LC-01", "model": model,
                                                 "quantity": quantity})
        _send(client, "POST", "/stock/threshold", {"site": "VL-LC-01", "model": model,
                                                   "threshold": threshold})
    kit = _send(client, "PUT", "/kits/VC-KIT-07/contents", {
        "assets": ["VC-0001"], "parts": {"HC-SR04": 1, "JMP-WIRE": 40, "LED-5MM": 10}})
    assert kit == {"kit": "VC-KIT-07", "version": 2, "assets": ["VC-0001"],
                   "parts": {"HC-SR04": 1, "JMP-WIRE": 40, "LED-5MM": 10}}


def test_lend_a_kit_to_a_class_and_get_it_back_with_a_missing_part(client: TestClient) -> None:
    _lab(client)
    assert _send(client, "GET", "/reorder") == {"total": 0, "items": []}
    loan = _send(client, "POST", "/loans", {
        "items": ["VC-KIT-07", "VC-0002"], "borrower": "Prof. Marta Ruiz, 7B",
        "borrower_kind": "group", "due": _due(1), "purpose": "feria de ciencias"}, 201)
    assert loan["open"] and not loan["overdue"] and loan["site"] == "VL-LC-01"
    assert [(i["tag"], i["kit"]) for i in loan["items"]] == [("VC-0002", False),
                                                             ("VC-KIT-07", True)]
    assert _send(client, "GET", "/assets/by-tag/VC-0001")["status"] == "on_loan"
    assert _send(client, "GET", "/loans", due_soon="true")["total"] == 1
    assert _send(client, "GET", "/loans", borrower="marta")["items"][0]["id"] == loan["id"]
    assert _send(client, "GET", "/loans", overdue="true")["total"] == 0

    # The loose board comes back first (scanned), the kit a day later, 2 jumper wires short.
    part = _send(client, "POST", "/assets/by-tag/VC-0002/check-in", {"condition": "good"})
    assert part["open"] and part["version"] == 2
    back = _send(client, "POST", f"/loans/{loan['id']}/check-in", {
        "expected_version": 2,
        "returns": [{"tag": "VC-KIT-07", "condition": "fair", "kit": {
            "assets": ["VC-0001"], "parts": {"HC-SR04": 1, "JMP-WIRE": 38, "LED-5MM": 10}}}]})
    assert not back["open"] and back["closed_at"] and back["version"] == 3

    losses = _send(client, "GET", "/kits/VC-KIT-07/losses")
    assert [(x["part"], x["damage"], x["quantity"], x["loan"]) for x in losses] == [
        ("JMP-WIRE", "lost", 2, loan["id"])]
    history = _send(client, "GET", "/history/VC-KIT-07")
    assert [e["kind"] for e in history] == [
        "AssetRegistered", "KitContentsDefined", "AssetCheckedOut", "KitPartMissing",
        "AssetCheckedIn"]
    assert history[3]["to_state"]["part"] == "JMP-WIRE" and history[3]["to_state"]["quantity"] == 2
    assert [e["kind"] for e in _send(client, "GET", "/history/JMP-WIRE")][-1] == "StockConsumed"
    stock = _send(client, "GET", "/stock", site="VL-R1", model="JMP-WIRE")
    assert stock["total"] == 1 and stock["items"][0]["quantity"] == 98
    # 98 is still above the threshold of 60; after a workshop it is not.
    _send(client, "POST", "/stock/consume", {"site": "VL-LC-01", "model": "JMP-WIRE",
                                             "quantity": 40, "note": "taller"})
    assert _send(client, "GET", "/reorder", site="VL")["items"] == [
        {"site": "VL-LC-01", "model": "JMP-WIRE", "unit": "pcs", "on_hand": 58,
         "threshold": 60, "shortfall": 2}]
    board = _send(client, "GET", "/assets/by-tag/VC-0001")
    assert board["status"] == "available"
    kit = _send(client, "GET", "/assets/by-tag/VC-KIT-07")
    assert (kit["status"], kit["condition"]) == ("available", "fair")


def test_a_lost_sensor_shows_its_shortfall_on_the_reorder_report(client: TestClient) -> None:
    _lab(client)
    _send(client, "POST", "/assets/by-tag/VC-KIT-07/check-out", {
        "borrower": "Sala de robótica", "borrower_kind": "room", "due": _due()}, 201)
    _send(client, "POST", "/assets/by-tag/VC-KIT-07/check-in", {"kit": {
        "assets": ["VC-0001"], "parts": {"JMP-WIRE": 40, "LED-5MM": 10}}})
    assert _send(client, "GET", "/reorder") == {"total": 1, "items": [
        {"site": "VL-LC-01", "model": "HC-SR04", "unit": "pcs", "on_hand": 2, "threshold": 3,
         "shortfall": 1}]}


def test_two_clients_edit_the_same_asset_one_wins_one_gets_409(
    client: TestClient, database_url: str
) -> None:
    _lab(client)
    r = client.get(f"{V1}/assets/by-tag/VC-0002")
    assert r.headers["etag"] == '"1"' and r.json()["version"] == 1
    # Both read version 1; the first sends it to repair...
    repair = _send(client, "POST", "/assets/VC-0002/repairs", {"fault": "USB suelto"}, 201,
                   headers={"If-Match": '"1"'})
    engine = db.make_engine(database_url)
    try:
        before = snapshot(engine)
        # ...the second, with what it read, tries to lend it: 409, nothing written.
        stale = _send(client, "POST", "/assets/by-tag/VC-0002/check-out", {
            "borrower": "Luis", "borrower_kind": "person", "due": _due()}, 409,
            headers={"If-Match": '"1"'})
        assert "'VC-0002' is at version 2, not 1" in stale["detail"]
        assert stale["title"] == "Changed since it was read"
        _send(client, "POST", "/assets/by-tag/VC-0002/move", {
            "to_site": "VL-LC-01", "expected_version": 1}, 409)
        _send(client, "PUT", "/kits/VC-KIT-07/contents", {"assets": [], "expected_version": 1},
              409)
        bad = _send(client, "POST", "/assets/by-tag/VC-0002/status", {"status": "lost"}, 422,
                    headers={"If-Match": "latest"})
        assert "If-Match" in bad["detail"]
        assert snapshot(engine) == before
    finally:
        engine.dispose()
    done = _send(client, "POST", f"/repairs/{repair['id']}/finish",
                 {"work_done": "cable nuevo", "condition": "fair"}, headers={"If-Match": "2"})
    assert not done["open"] and done["condition_after"] == "fair"
    assert [r["fault"] for r in _send(client, "GET", "/assets/VC-0002/repairs")] == ["USB suelto"]
    assert _send(client, "GET", "/assets/by-tag/VC-0002")["version"] == 3


def test_bad_movements_are_problems_and_write_nothing(
    client: TestClient, database_url: str
) -> None:
    _lab(client)
    loan = _send(client, "POST", "/loans", {"items": ["VC-KIT-07"], "borrower": "7B",
                                            "borrower_kind": "group", "due": _due()}, 201)
    engine = db.make_engine(database_url)
    try:
        before = snapshot(engine)
        not_out = _send(client, "POST", "/assets/by-tag/VC-0002/check-in", {}, 409)
        assert "asset 'VC-0002' is not on loan" in not_out["detail"]
        inside = _send(client, "POST", "/assets/by-tag/VC-0001/check-in", {}, 409)
        assert "part of kit 'VC-KIT-07'" in inside["detail"]
        other = _send(client, "POST", f"/loans/{loan['id']}/check-in",
                      {"returns": [{"tag": "VC-0002"}]}, 409)
        assert f"'VC-0002' is not on loan {loan['id']}" in other["detail"]
        too_many = _send(client, "POST", f"/loans/{loan['id']}/check-in", {"returns": [
            {"tag": "VC-KIT-07", "kit": {"assets": ["VC-0001"], "parts": {"JMP-WIRE": 41}}}]},
            422)
        assert "41 of part 'JMP-WIRE' came back, but the kit holds 40" in too_many["detail"]
        stranger = _send(client, "POST", "/assets/by-tag/VC-KIT-07/check-in",
                         {"kit": {"parts": {"ARD-UNO-R3": 1}}}, 422)
        assert "part 'ARD-UNO-R3' is not in the contents of kit" in stranger["detail"]
        _send(client, "POST", "/loans", {"items": ["VC-KIT-07"], "borrower": "8A",
                                         "borrower_kind": "group", "due": _due()}, 409)
        past = _send(client, "POST", "/loans", {"items": ["VC-0002"], "borrower": "8A",
                                                "borrower_kind": "group", "due": _due(-1)}, 422)
        assert "future" in past["detail"]
        zone = _send(client, "POST", "/loans", {"items": ["VC-0002"], "borrower": "8A",
                                                "borrower_kind": "group",
                                                "due": "2026-12-24T10:00:00"}, 422)
        assert "body.due" in zone["detail"] and "time zone" in zone["detail"]
        _send(client, "POST", "/loans", {"items": ["VC-0002"], "borrower": "8A",
                                         "borrower_kind": "cat", "due": _due()}, 422)
        _send(client, "POST", "/loans", {"items": ["VC-0002"], "borrower": "8A",
                                         "borrower_kind": "group", "due": 1e30}, 422)
        for huge in (1e307, "1e308", 10**400):  # once a 500: the scaled time overflowed
            _send(client, "POST", "/loans", {"items": ["VC-0002"], "borrower": "8A",
                                             "borrower_kind": "group", "due": huge}, 422)
        _send(client, "POST", "/loans", {"items": ["VC-0002"], "borrower": "8A",
                                         "borrower_kind": "group", "due": _due(),
                                         "expected_versions": {"VC-0002": 7}}, 409)
        _send(client, "POST", "/loans/nope/check-in", {"returns": [{"tag": "VC-0002"}]}, 404)
        _send(client, "POST", "/assets/VC-KIT-07/repairs", {"fault": "x"}, 409)
        _send(client, "POST", "/repairs/nope/finish", {"work_done": "x"}, 404)
        _send(client, "POST", "/stock/consume", {"site": "VL-LC-01", "model": "LED-5MM",
                                                 "quantity": 41}, 422)
        _send(client, "POST", "/stock/receive", {"site": "VL-LC-01", "model": "LED-5MM",
                                                 "quantity": 0}, 422)
        _send(client, "POST", "/stock/receive", {"site": "VL-LC-01", "model": "NOPE",
                                                 "quantity": 1}, 404)
        _send(client, "PUT", "/kits/VC-0002/contents", {"assets": ["VC-0002"]}, 422)
        _send(client, "POST", "/locations", {"site": "VL-R1", "code": "S1", "name": "x"}, 422)
        _send(client, "POST", "/assets/by-tag/VC-0002/location", {"location": "NOPE"}, 404)
        assert snapshot(engine) == before
    finally:
        engine.dispose()
    _send(client, "GET", "/loans", limit=501, status=422)
    _send(client, "GET", "/stock", offset=-1, status=422)
    _send(client, "GET", "/loans", site="NOPE", status=404)
    _send(client, "GET", "/loans/nope", status=404)
    _send(client, "GET", "/kits/NOPE/contents", status=404)
    _send(client, "GET", "/reorder", site="NOPE", status=404)


def test_locations_stock_pages_and_loan_lists(client: TestClient) -> None:
    _lab(client)
    _send(client, "POST", "/locations", {"site": "VL-LC-01", "code": "SALA-2/EST-B",
                                         "name": "Sala 2, estante B"}, 201)
    assert _send(client, "GET", "/locations", site="VL-LC-01") == {"total": 1, "items": [
        {"site": "VL-LC-01", "code": "SALA-2/EST-B", "name": "Sala 2, estante B"}]}
    _send(client, "GET", "/locations", limit=501, status=422)
    placed = _send(client, "POST", "/assets/by-tag/VC-0002/location",
                   {"location": "SALA-2/EST-B", "expected_version": 1})
    assert placed["location"] == "SALA-2/EST-B" and placed["version"] == 2
    page = _send(client, "GET", "/stock", site="VL", limit=2, offset=1)
    assert page["total"] == 3 and [x["model"] for x in page["items"]] == ["JMP-WIRE", "LED-5MM"]
    level = _send(client, "POST", "/stock/adjust", {"site": "VL-LC-01", "model": "LED-5MM",
                                                    "quantity": 12},
                  headers={"If-Match": str(page["items"][1]["version"])})
    assert level["quantity"] == 12 and level["version"] == page["items"][1]["version"] + 1
    assert [x["model"] for x in _send(client, "GET", "/reorder")["items"]] == ["LED-5MM"]
    assert _send(client, "GET", "/reorder", limit=1, offset=1) == {"total": 1, "items": []}
    for i, borrower in enumerate(("Ana", "Beto", "Caro")):
        _send(client, "POST", "/assets/by-tag/" + ("VC-0002", "VC-KIT-07")[i % 2]
              + "/check-out", {"borrower": borrower, "borrower_kind": "person",
                               "due": _due(i + 1)}, 201)
        if i == 0:
            _send(client, "POST", "/assets/by-tag/VC-0002/check-in", {})
    loans = _send(client, "GET", "/loans")
    assert loans["total"] == 3 and [x["borrower"] for x in loans["items"]] == ["Ana", "Beto",
                                                                               "Caro"]
    assert [x["borrower"] for x in _send(client, "GET", "/loans", open="true")["items"]] == [
        "Beto", "Caro"]
    assert _send(client, "GET", "/loans", open="false")["items"][0]["borrower"] == "Ana"
    assert _send(client, "GET", "/loans", limit=1, offset=2)["items"][0]["borrower"] == "Caro"


BODY_KEYS = ["items", "borrower", "borrower_kind", "due", "purpose", "returns", "tag", "kit",
             "parts", "assets", "damaged_parts", "condition", "rest_later", "quantity", "site",
             "model", "threshold", "expected_version", "expected_versions", "fault",
             "work_done", "location", "code", "name", "by"]
JSON = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8)
    | st.sampled_from(["VC-KIT-07", "VC-0001", "JMP-WIRE", "VL-LC-01", "group", "fair",
                       "2026-12-24T10:00:00Z", "1e308"]),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from([*BODY_KEYS, "JMP-WIRE", "VC-0001"]), inner, max_size=6),
    max_leaves=12,
)


@hsettings(max_examples=40, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=JSON, if_match=st.none() | st.text(max_size=6))
def test_no_movement_request_makes_a_500(client: TestClient, body: Any,
                                          if_match: str | None) -> None:
    if client.get(f"{V1}/assets/by-tag/VC-KIT-07").status_code == 404:
        _lab(client)  # once per database: the examples share it
    headers = {"content-type": "application/json"}
    if if_match is not None and if_match.isprintable() and if_match.isascii():
        headers["If-Match"] = if_match
    for method, path in (
        ("POST", "/loans"), ("POST", "/loans/x/check-in"), ("PUT", "/kits/VC-KIT-07/contents"),
        ("POST", "/assets/by-tag/VC-KIT-07/check-out"), ("POST", "/assets/by-tag/VC-0001/check-in"),
        ("POST", "/stock/receive"), ("POST", "/stock/adjust"), ("POST", "/stock/threshold"),
        ("POST", "/assets/VC-0002/repairs"), ("POST", "/locations"),
        ("POST", "/assets/by-tag/VC-0002/location"),
    ):
        r = client.request(method, V1 + path, content=json.dumps(body).encode(),
                           headers=headers)
        assert r.status_code < 500, (method, path, body, r.text)
        if r.status_code >= 400:
            assert r.headers["content-type"] == PROBLEM
