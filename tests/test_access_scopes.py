"""What each role may do through the API, scoped to the sites of the tree, over real HTTP
on SQLite and PostgreSQL. The caller is set through LabHub's own seam,
``labhub.access.who.identify``; everything else is real."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from signed_in import as_admin
from sqlalchemy import func, select

from firmware_bridge import registry
from inventory import tables
from labhub import db
from labhub.access import who
from labhub.access.caller import Caller
from labhub.access.permissions import Grant, Role
from labhub.app import create_app
from labhub.settings import Settings
from sensors import storage

V1 = "/api/v1"
DUE = int(time.time()) + 7 * 24 * 3600  # a week from now, in epoch seconds


def _as(monkeypatch: pytest.MonkeyPatch, caller: Caller | None) -> None:
    monkeypatch.setattr(who, "identify", lambda request: caller)


def _person(role: Role, site: str) -> Caller:
    return Caller(name=f"{role.value} of {site}", via="session", grants=(Grant(role, site),))


def _ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def _build(c: TestClient, database_url: str) -> dict[str, str]:
    """ValleLabs: VL > VL-R1 > labs A and B; VL > VL-R2 > lab C; an asset at each lab, a
    device and a run at lab B (made by the hub itself, which may do everything)."""
    for code, kind, parent in [("VL", "network", None), ("VL-R1", "region", "VL"),
                               ("VL-R2", "region", "VL"), ("LAB-A", "site", "VL-R1"),
                               ("LAB-B", "site", "VL-R1"), ("LAB-C", "site", "VL-R2")]:
        tier = "lab_point" if kind == "site" else None
        _ok(c.post(f"{V1}/sites", json={"code": code, "name": code, "kind": kind,
                                        "parent": parent, "tier": tier}), 201)
    _ok(c.post(f"{V1}/models", json={"code": "UNO", "name": "Arduino Uno",
                                     "category": "microcontroller_board"}), 201)
    for tag, site in [("A-1", "LAB-A"), ("B-1", "LAB-B"), ("C-1", "LAB-C")]:
        _ok(c.post(f"{V1}/assets", json={"tag": tag, "model": "UNO", "site": site}), 201)
    engine = db.make_engine(database_url)
    with engine.begin() as conn:
        registry.record_seen(conn=conn, device_id="kit-b", kind="firmata", site="LAB-B",
                             status="offline")
        registry.record_seen(conn=conn, device_id="kit-a", kind="firmata", site="LAB-A",
                             status="offline")
    engine.dispose()
    run = _ok(c.post(f"{V1}/runs", json={"title": "Sombra", "site": "LAB-B",
                                         "channels": [{"device": "kit-b"}]}), 201)
    return {"run": run["id"]}


@pytest.fixture
def world(database_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url,
                        serial_scan=False)
    with as_admin(TestClient(create_app(settings))) as c:
        yield c, _build(c, database_url) | {"url": database_url}


def _counts(url: str) -> dict[str, int]:
    engine = db.make_engine(url)
    with engine.connect() as conn:
        out = {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
               for t in (tables.sites, tables.assets, tables.loans, tables.events,
                         storage.runs, storage.run_notes, registry.devices)}
        out["kit-b named"] = conn.execute(select(func.count()).select_from(registry.devices)
                                          .where(registry.devices.c.name == "renamed")
                                          ).scalar_one()
    engine.dispose()
    return out


def test_a_teacher_of_one_lab_is_refused_at_another_and_nothing_changes(
        world: tuple[TestClient, dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    c, w = world
    before = _counts(w["url"])
    _as(monkeypatch, _person(Role.TEACHER, "LAB-A"))
    refused = [
        c.get(f"{V1}/sites/LAB-B"),  # a site code
        c.get(f"{V1}/assets/by-tag/B-1"),  # an asset tag
        c.post(f"{V1}/assets/by-tag/B-1/check-out",
               json={"borrower": "7B", "borrower_kind": "group", "due": DUE}),
        c.patch(f"{V1}/devices/kit-b", json={"name": "renamed"}),  # a device id
        c.post(f"{V1}/devices/kit-b/commands", json={"command": "servo", "pin": 9,
                                                     "value": 90}),
        c.post(f"{V1}/runs/{w['run']}/notes", json={"text": "hola"}),  # a run id
        c.post(f"{V1}/runs/{w['run']}/stop"),
        c.post(f"{V1}/loans", json={"items": ["B-1"], "borrower": "7B",  # a body field
                                    "borrower_kind": "group", "due": DUE}),
        c.post(f"{V1}/runs", json={"title": "x", "site": "LAB-B",
                                   "channels": [{"device": "kit-b"}]}),
        c.patch(f"{V1}/devices/kit-a", json={"site": "LAB-B"}),  # moving it there
    ]
    for r in refused:
        assert r.status_code == 403, (r.request.method, r.request.url, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert "permission" in r.json()["detail"]
    assert _counts(w["url"]) == before
    # At their own lab the same requests pass; a key that names nothing is still a 404.
    assert c.get(f"{V1}/sites/LAB-A").status_code == 200
    _ok(c.post(f"{V1}/assets/by-tag/A-1/check-out",
               json={"borrower": "7B", "borrower_kind": "group", "due": DUE}), 201)
    assert c.get(f"{V1}/assets/by-tag/NOPE").status_code == 404
    assert c.get(f"{V1}/runs/no-such-run").status_code == 404


def test_a_coordinator_sees_the_labs_of_their_region_only(
        world: tuple[TestClient, dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    c, _ = world
    _as(monkeypatch, _person(Role.COORDINATOR, "VL-R1"))
    page = _ok(c.get(f"{V1}/assets"))
    assert page["total"] == 2
    assert [a["tag"] for a in page["items"]] == ["A-1", "B-1"]
    assert _ok(c.get(f"{V1}/assets", params={"site": "VL-R2"}))["total"] == 0
    assert _ok(c.get(f"{V1}/assets", params={"site": "LAB-B"}))["total"] == 1
    assert [s["code"] for s in _ok(c.get(f"{V1}/sites"))] == ["LAB-A", "LAB-B", "VL-R1"]
    assert [d["id"] for d in _ok(c.get(f"{V1}/devices"))] == ["kit-a", "kit-b"]
    assert c.get(f"{V1}/assets/by-tag/C-1").status_code == 403
    # Under their region they manage; a new lab elsewhere is refused.
    _ok(c.post(f"{V1}/sites", json={"code": "LAB-D", "name": "D", "kind": "site",
                                    "tier": "lab_point", "parent": "VL-R1"}), 201)
    assert c.post(f"{V1}/sites", json={"code": "LAB-E", "name": "E", "kind": "site",
                                       "tier": "lab_point", "parent": "VL-R2"}).status_code == 403
    assert c.post(f"{V1}/models", json={"code": "X", "name": "X",
                                        "category": "other"}).status_code == 403
    _as(monkeypatch, _person(Role.COORDINATOR, "VL-R2"))
    assert [a["tag"] for a in _ok(c.get(f"{V1}/assets"))["items"]] == ["C-1"]
    assert [d["id"] for d in _ok(c.get(f"{V1}/devices"))] == []


def test_a_student_may_stop_the_kits_of_their_lab_but_not_configure_them(
        world: tuple[TestClient, dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    c, w = world
    stop = {"command": "stop_all"}
    hub_answer = c.post(f"{V1}/devices/kit-a/commands", json=stop).status_code
    _as(monkeypatch, _person(Role.STUDENT, "LAB-A"))
    assert c.patch(f"{V1}/devices/kit-a", json={"name": "renamed"}).status_code == 403
    assert c.patch(f"{V1}/devices/kit-a", json={
        "settings": {"outputs": {"9": {"kind": "servo"}}}}).status_code == 403
    assert c.post(f"{V1}/devices/kit-a/commands",
                  json={"command": "servo", "pin": 9, "value": 90}).status_code == 403
    # stop_all passes the gate: the answer is the one the hub itself gets (the kit is
    # not connected in this test).
    assert c.post(f"{V1}/devices/kit-a/commands", json=stop).status_code == hub_answer != 403
    assert c.post(f"{V1}/devices/kit-b/commands", json=stop).status_code == 403
    assert _counts(w["url"])["kit-b named"] == 0


def test_ministry_sets_the_rollout_but_does_not_edit_assets(
        world: tuple[TestClient, dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    c, _ = world
    _as(monkeypatch, _person(Role.MINISTRY, "*"))
    site = _ok(c.post(f"{V1}/sites/LAB-A/rollout", json={"status": "installing"}))
    assert site["rollout_status"] == "installing"
    r = c.patch(f"{V1}/assets/by-tag/A-1", json={"notes": "x"})
    assert r.status_code == 403
    assert "inventory.manage" in r.json()["detail"]
    assert _ok(c.get(f"{V1}/assets"))["total"] == 3


def test_nobody_signed_in_is_a_401_but_the_health_check_answers(
        world: tuple[TestClient, dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    c, _ = world
    _as(monkeypatch, None)
    r = c.get(f"{V1}/assets")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert r.headers["content-type"] == "application/problem+json"
    assert c.post(f"{V1}/sites", json={"code": "Z", "name": "Z", "kind": "site"}).status_code == 401
    assert c.get(f"{V1}/health").status_code == 200


@pytest.fixture
def lab_world(database_url: str, tmp_path: Path
              ) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The same tree on the hub of lab B (``site = LAB-B``), with a record of every listed
    kind in each region: locations, stock below its threshold, transfers, rotations, runs
    (one with no site: at the hub's own), readings and dead letters of a station in each
    region."""
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url,
                        serial_scan=False, site="LAB-B")
    with as_admin(TestClient(create_app(settings))) as c:
        w = _build(c, database_url)
        for code, parent, tier in [("LAB-C2", "VL-R2", "lab_point"),
                                   ("ML-2", "VL-R2", "mobile_lab")]:
            _ok(c.post(f"{V1}/sites", json={"code": code, "name": code, "kind": "site",
                                            "parent": parent, "tier": tier}), 201)
        _ok(c.post(f"{V1}/models", json={"code": "LED", "name": "LED 5 mm",
                                         "category": "consumable",
                                         "tracking": "counted", "unit": "pcs"}), 201)
        for site in ("LAB-A", "LAB-C"):
            _ok(c.post(f"{V1}/locations", json={"site": site, "code": "SALA-1",
                                                "name": "Sala 1"}), 201)
            _ok(c.post(f"{V1}/stock/receive", json={"site": site, "model": "LED",
                                                    "quantity": 5}))
            _ok(c.post(f"{V1}/stock/threshold", json={"site": site, "model": "LED",
                                                      "threshold": 10}))
        for origin, to in [("LAB-A", "LAB-B"), ("LAB-C", "LAB-C2"), ("LAB-C", "LAB-A")]:
            _ok(c.post(f"{V1}/transfers", json={"from_site": origin, "to_site": to}), 201)
        for stop in ("LAB-C", "LAB-A"):  # a mobile lab of R2 that also stops in R1
            _ok(c.post(f"{V1}/rotations", json={
                "mobile_lab": "ML-2", "name": f"Ruta {stop}",
                "stops": [{"site": stop, "arrive_on": "2027-03-01",
                           "depart_on": "2027-03-05"}]}), 201)
        for title, site in [("En C", "LAB-C"), ("Sin sitio", None)]:
            _ok(c.post(f"{V1}/runs", json={"title": title, "site": site,
                                           "channels": [{"device": "kit-b"}]}), 201)
        for device, site in [("st-b", "LAB-B"), ("st-c", "LAB-C")]:
            _ok(c.post(f"{V1}/readings", json={"device": device, "site": site, "readings": [
                {"channel": "temp", "value": 21.5, "ts": 1_700_000_000}]}))
            # A reading without a value: a dead letter of the station.
            assert c.post(f"{V1}/readings", json={"device": device, "site": site,
                                                  "readings": [{"channel": "temp"}]}
                          ).status_code == 422
        assert c.post(f"{V1}/readings", content=b"not json",
                          headers={"content-type": "application/json"}).status_code == 400
        yield c, w


def _items(c: TestClient, path: str, **params: Any) -> tuple[int, list[Any]]:
    page = _ok(c.get(f"{V1}/{path}", params=params))
    return page["total"], page["items"]


def test_every_list_shows_a_coordinator_their_region_only(
        lab_world: tuple[TestClient, dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    c, _ = lab_world
    _as(monkeypatch, _person(Role.COORDINATOR, "VL-R1"))
    total, items = _items(c, "locations")
    assert total == 1 and [x["site"] for x in items] == ["LAB-A"]
    total, items = _items(c, "stock")
    assert total == 1 and [x["site"] for x in items] == ["LAB-A"]
    total, items = _items(c, "reorder")
    assert total == 1 and [(x["site"], x["shortfall"]) for x in items] == [("LAB-A", 5)]
    total, items = _items(c, "transfers")  # either end in R1
    assert total == 2
    assert sorted((x["from_site"], x["to_site"]) for x in items) == [
        ("LAB-A", "LAB-B"), ("LAB-C", "LAB-A")]
    total, items = _items(c, "rotations")  # a stop in R1
    assert total == 1 and [x["name"] for x in items] == ["Ruta LAB-A"]
    total, items = _items(c, "runs")  # the one with no site is at the hub's own, LAB-B
    assert total == 2 and sorted(x["title"] for x in items) == ["Sin sitio", "Sombra"]
    assert [s["device"] for s in _ok(c.get(f"{V1}/series"))] == ["st-b"]
    total, items = _items(c, "rejects")  # st-b's, and the one of no known device
    assert total == 2 and sorted(str(x["device"]) for x in items) == ["None", "st-b"]
    assert _items(c, "rejects", limit=1)[0] == 2
    # ?site= narrows within the caller's sites: a list elsewhere is empty.
    assert _items(c, "stock", site="VL-R2")[0] == 0
    assert _items(c, "runs", site="LAB-C")[0] == 0

    _as(monkeypatch, _person(Role.COORDINATOR, "VL-R2"))
    assert [x["site"] for x in _items(c, "locations")[1]] == ["LAB-C"]
    assert [x["site"] for x in _items(c, "reorder")[1]] == ["LAB-C"]
    assert _items(c, "transfers")[0] == 2
    assert _items(c, "rotations")[0] == 2
    assert [x["title"] for x in _items(c, "runs")[1]] == ["En C"]
    assert [s["device"] for s in _ok(c.get(f"{V1}/series"))] == ["st-c"]
    # Dead letters are read at the hub's own site (LAB-B), outside R2.
    assert c.get(f"{V1}/rejects").status_code == 403

    _as(monkeypatch, _person(Role.ADMIN, "*"))
    assert _items(c, "runs")[0] == 3
    assert _items(c, "rejects")[0] == 3
    assert _items(c, "transfers")[0] == 3


def test_exports_and_labels_keep_to_the_callers_sites(
        lab_world: tuple[TestClient, dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    c, _ = lab_world
    _as(monkeypatch, _person(Role.COORDINATOR, "VL-R1"))
    text = c.get(f"{V1}/export.csv", params={"start": 0}).text
    assert "st-b" in text and "st-c" not in text
    doc = _ok(c.get(f"{V1}/export.json", params={"start": 0}))
    assert "st-c" not in str(doc) and "st-b" in str(doc)
    for r in (c.get(f"{V1}/export.csv", params={"site": "LAB-C"}),
              c.get(f"{V1}/export.json", params={"device": "st-c"}),
              c.get(f"{V1}/export/assets.csv", params={"site": "VL-R2"}),
              c.get(f"{V1}/export/sites.csv", params={"under": "VL-R2"}),
              c.get(f"{V1}/labels.svg", params={"site": "LAB-C"}),
              c.get(f"{V1}/labels.pdf", params={"tag": ["A-1", "C-1"]})):
        assert r.status_code == 403, (r.request.url, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    assets_csv = c.get(f"{V1}/export/assets.csv").text
    assert "A-1" in assets_csv and "B-1" in assets_csv and "C-1" not in assets_csv
    sites_csv = c.get(f"{V1}/export/sites.csv").text.splitlines()
    assert sorted(line.split(",")[0] for line in sites_csv[1:]) == ["LAB-A", "LAB-B", "VL-R1"]
    assert c.get(f"{V1}/labels.svg", params={"site": "VL-R1"}).status_code == 200
    assert "C-1" not in c.get(f"{V1}/export/history.csv", params={"subject": "A-1"}).text

    # A teacher of lab A may not export lab B's readings, by site or by device.
    _as(monkeypatch, _person(Role.TEACHER, "LAB-A"))
    assert c.get(f"{V1}/export.csv", params={"site": "LAB-B"}).status_code == 403
    assert c.get(f"{V1}/export.csv", params={"device": "st-b"}).status_code == 403
    assert c.get(f"{V1}/export.json", params={"device": "st-b"}).status_code == 403
    # Nothing of theirs to export: the export's own 404.
    assert c.get(f"{V1}/export.csv").status_code == 404


def test_a_coordinator_imports_assets_and_sites_within_their_region_only(
        world: tuple[TestClient, dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    c, w = world
    before = _counts(w["url"])
    _as(monkeypatch, _person(Role.COORDINATOR, "VL-R1"))

    def post(kind: str, text: str, **params: Any) -> Any:
        return c.post(f"{V1}/import/{kind}", content=text.encode(),
                      params=params, headers={"content-type": "text/csv"})

    assets_csv = "tag,model,site\nA-2,UNO,LAB-A\nC-2,UNO,LAB-C\nB-2,UNO,LAB-B\n"
    r = post("assets", assets_csv)
    assert r.status_code == 422, r.text
    assert [(e["row"], e["column"], e["message"]) for e in r.json()["errors"]] == [
        (3, "site", "site 'LAB-C' is outside your sites")]
    assert _counts(w["url"]) == before
    sites_csv = ("code,name,kind,parent,tier\nLAB-R1,R1 nueva,site,VL-R1,lab_point\n"
                 "MUN-X,Muni,municipality,VL-R2,\nLAB-X,X,site,MUN-X,lab_point\n"
                 "TOP,Otra red,network,,\n")
    r = post("sites", sites_csv)
    assert r.status_code == 422, r.text
    errors = {e["row"]: e["message"] for e in r.json()["errors"]}
    assert errors[3] == ("site 'MUN-X' is outside your sites: its parent 'VL-R2' is not "
                         "one of them")
    assert 4 in errors and 2 not in errors
    assert errors[5].startswith("site 'TOP' is outside your sites")
    # With mode=valid the rows in the region go in; the catalogue is the network's.
    done = _ok(post("assets", assets_csv, mode="valid"))
    assert (done["created"], [e["row"] for e in done["errors"]]) == (2, [3])
    assert _ok(post("sites", sites_csv, mode="valid"))["created"] == 1
    assert post("models", "code,name,category\nX,X,tool\n").status_code == 403
    after = _counts(w["url"])
    assert (after["assets"], after["sites"]) == (before["assets"] + 2, before["sites"] + 1)

    _as(monkeypatch, _person(Role.ADMIN, "*"))
    assert _ok(post("sites", "code,name,kind\nTOP,Otra red,network\n"))["created"] == 1


@pytest.mark.parametrize("allowed", [False, True])
def test_students_send_commands_only_where_their_lab_allows_it(
        database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        allowed: bool) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url,
                        serial_scan=False, student_commands=allowed)
    servo = {"command": "servo", "pin": 9, "value": 90}
    with as_admin(TestClient(create_app(settings))) as c:
        _build(c, database_url)
        hub_answer = c.post(f"{V1}/devices/kit-a/commands", json=servo).status_code
        _as(monkeypatch, _person(Role.STUDENT, "LAB-A"))
        at_their_lab = c.post(f"{V1}/devices/kit-a/commands", json=servo)
        elsewhere = c.post(f"{V1}/devices/kit-b/commands", json=servo)
    if allowed:  # the hub's own answer (the kit is not connected here), not a 403
        assert at_their_lab.status_code == hub_answer != 403, at_their_lab.text
    else:
        assert at_their_lab.status_code == 403
        assert "devices.command" in at_their_lab.json()["detail"]
    assert elsewhere.status_code == 403
