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
