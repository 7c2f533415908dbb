"""What a coordinator corrects, on every backend, through the API and the CLI: editing a
site, model or asset with its version (each change in the history, before and after);
deleting a record made in error and never used (a tombstone stays in the history) and
retiring one that was used; listing audits and rotations, and rotations from the CLI;
labels of a site without its lost and in-transit assets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from inventory_world import BY, network, snapshot
from signed_in import TEST_ADMIN, as_admin
from sqlalchemy import Engine, insert
from typer.testing import CliRunner

from inventory import assets, audits, history, kits, rotations, transfers
from labhub.app import create_app
from labhub.cli import app as cli_app
from labhub.settings import Settings
from sensors.storage import series

V1 = "/api/v1"
PROBLEM = "application/problem+json"


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url,
                        serial_scan=False)
    with as_admin(TestClient(create_app(settings))) as c:
        with _engine(c).begin() as conn:
            network(conn)
            for tag in ("KR-1", "KR-2", "KR-3"):
                assets.register_asset(conn=conn, tag=tag, model_code="KIT-ROBOT",
                                      site_code="VL-LC-01", serial_number=f"SN-{tag}", by=BY)
        yield c


@pytest.fixture
def cli(client: TestClient, database_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """The CLI on the client's database (the network is there already)."""
    monkeypatch.setenv("LABHUB_DATABASE_URL", database_url)
    monkeypatch.setenv("LABHUB_DATA_DIR", str(tmp_path / "data"))
    return CliRunner()


def _engine(client: TestClient) -> Engine:
    engine: Engine = client.app.state.hub.engine  # type: ignore[attr-defined]
    return engine


def _ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def _problem(r: Any, status: int, match: str) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    detail: str = r.json()["detail"]
    assert match in detail, detail
    return detail


def _cli(runner: CliRunner, *args: str, code: int = 0) -> str:
    result = runner.invoke(cli_app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def _kinds(client: TestClient, subject: str) -> list[str]:
    return [e["kind"] for e in _ok(client.get(f"{V1}/history/{subject}"))]


# -- 1. edits with optimistic concurrency --------------------------------------------------


def test_a_site_is_corrected_with_its_version_and_each_change_is_in_its_history(
    client: TestClient,
) -> None:
    read = client.get(f"{V1}/sites/VL-LP-014")
    assert read.headers["etag"] == '"1"' and read.json()["version"] == 1
    edited = client.patch(f"{V1}/sites/VL-LP-014", headers={"If-Match": '"1"'}, json={
        "name": "Lab Point Escuela 14 de Mayo", "parent": "VL-R2", "rural": True,
        "latitude": 3.44, "longitude": -76.5, "note": "datos de la visita"})
    site = _ok(edited)
    assert edited.headers["etag"] == '"2"'
    # A merge: what was not sent stays as it was.
    assert (site["name"], site["parent"], site["rural"], site["version"]) == (
        "Lab Point Escuela 14 de Mayo", "VL-R2", True, 2)
    assert (site["tier"], site["kind"], site["rollout_status"]) == (
        "lab_point", "site", "planned")
    last = _ok(client.get(f"{V1}/history/VL-LP-014"))[-1]
    assert last["kind"] == "SiteEdited" and last["by"] == TEST_ADMIN
    assert last["note"] == "datos de la visita"
    assert last["from_state"] == {"name": "Lab VL-LP-014", "parent_code": "VL-M-CALI",
                                  "rural": False, "latitude": None, "longitude": None}
    assert last["to_state"] == {"name": "Lab Point Escuela 14 de Mayo",
                                "parent_code": "VL-R2", "rural": True, "latitude": 3.44,
                                "longitude": -76.5}
    # Someone who read version 1 is refused, and nothing changes.
    before = snapshot(_engine(client))
    _problem(client.patch(f"{V1}/sites/VL-LP-014", headers={"If-Match": '"1"'},
                          json={"name": "Otro"}),
             409, "is at version 2, not 1")
    _problem(client.patch(f"{V1}/sites/VL-LP-014",
                          json={"name": "Otro", "expected_version": 1}),
             409, "is at version 2, not 1")
    # null clears an optional field; both coordinates or neither.
    _problem(client.patch(f"{V1}/sites/VL-LP-014", json={"latitude": None}),
             422, "needs both latitude and longitude")
    # The tree stays a tree, and a region gets no lab fields.
    _problem(client.patch(f"{V1}/sites/VL-R1", json={"parent": "VL-M-CALI"}),
             422, "cannot be under municipality")
    _problem(client.patch(f"{V1}/sites/VL-M-CALI", json={"parent": "VL-R2", "tier":
                                                          "lab_point"}),
             422, "is not a lab site")
    _problem(client.patch(f"{V1}/sites/VL-LP-014", json={"name": None}),
             422, "cannot be empty")
    _problem(client.patch(f"{V1}/sites/VL-LP-014", json={}), 422,
             "send at least one field")
    _problem(client.patch(f"{V1}/sites/NOPE", json={"name": "x"}), 404, "NOPE")
    assert snapshot(_engine(client)) == before
    # A mobile lab on a route keeps its tier.
    with _engine(client).begin() as conn:
        rotations.plan_rotation(conn=conn, mobile_lab="VL-ML-1", name="Ruta", by=BY,
                                stops=[("VL-LP-020", "2027-03-01", "2027-03-05")])
    _problem(client.patch(f"{V1}/sites/VL-ML-1", json={"tier": "lab_point"}),
             409, "cannot change to or from mobile_lab")
    # The same values again change nothing and write nothing.
    same = _ok(client.patch(f"{V1}/sites/VL-LP-014", json={"rural": True}))
    assert same["version"] == 2 and _kinds(client, "VL-LP-014")[-1] == "SiteEdited"
    assert len(_kinds(client, "VL-LP-014")) == 2
    # The rollout raises the version too: a PATCH based on the old one is refused.
    _ok(client.post(f"{V1}/sites/VL-LP-014/rollout", json={"status": "active"}))
    _problem(client.patch(f"{V1}/sites/VL-LP-014", headers={"If-Match": 'W/"2"'},
                          json={"institution": "IE 14"}), 409, "version 3, not 2")


def test_a_model_and_an_asset_are_corrected_and_rebuilding_from_history_agrees(
    client: TestClient,
) -> None:
    model = client.get(f"{V1}/models/JMP-WIRE")
    assert model.headers["etag"] == '"1"'
    edited = _ok(client.patch(f"{V1}/models/JMP-WIRE", headers={"If-Match": '"1"'}, json={
        "name": "Cable jumper macho-macho", "unit": "bolsas"}))
    assert (edited["name"], edited["unit"], edited["category"], edited["version"]) == (
        "Cable jumper macho-macho", "bolsas", "consumable", 2)
    _problem(client.patch(f"{V1}/models/KIT-ROBOT", json={"unit": "pcs"}), 422,
             "serialized model 'KIT-ROBOT' has no unit")
    _problem(client.patch(f"{V1}/models/JMP-WIRE", json={"tracking": "serialized"}), 422,
             "body.tracking: is not a field of this body")
    last = _ok(client.get(f"{V1}/history/JMP-WIRE"))[-1]
    assert (last["kind"], last["from_state"], last["to_state"]) == (
        "ModelEdited", {"name": "Jumper wire", "unit": "pcs"},
        {"name": "Cable jumper macho-macho", "unit": "bolsas"})

    with _engine(client).begin() as conn:
        from inventory import catalog, locations

        catalog.create_model(conn=conn, code="UNO", name="Arduino Uno R3",
                             category="microcontroller_board", by=BY)
        locations.create_location(conn=conn, site_code="VL-LC-01", code="SALA-2",
                                  name="Sala 2", by=BY)
    asset = _ok(client.patch(f"{V1}/assets/by-tag/KR-1", headers={"If-Match": '"1"'}, json={
        "model": "UNO", "serial_number": "SN-9", "condition": "fair",
        "notes": "rayado", "location": "SALA-2"}))
    assert (asset["model"], asset["serial_number"], asset["condition"], asset["notes"],
            asset["location"], asset["version"], asset["status"], asset["site"]) == (
        "UNO", "SN-9", "fair", "rayado", "SALA-2", 2, "available", "VL-LC-01")
    cleared = _ok(client.patch(f"{V1}/assets/by-tag/KR-1", json={
        "serial_number": None, "location": None}))
    assert (cleared["serial_number"], cleared["location"], cleared["notes"]) == (
        None, None, "rayado")
    last = _ok(client.get(f"{V1}/history/KR-1"))[-1]
    assert (last["kind"], last["from_state"], last["to_state"]) == (
        "AssetEdited", {"serial_number": "SN-9", "location_code": "SALA-2"},
        {"serial_number": None, "location_code": None})
    before = snapshot(_engine(client))
    _problem(client.patch(f"{V1}/assets/by-tag/KR-2", json={"serial_number": "SN-KR-3"}),
             409, "serial number 'SN-KR-3' is already registered as asset 'KR-3'")
    _problem(client.patch(f"{V1}/assets/by-tag/KR-2", json={"model": "JMP-WIRE"}),
             422, "is counted in bolsas")
    _problem(client.patch(f"{V1}/assets/by-tag/KR-2", json={"location": "SALA-9"}),
             404, "has no location 'SALA-9'")
    _problem(client.patch(f"{V1}/assets/by-tag/KR-2", json={"status": "lost"}),
             422, "body.status: is not a field of this body")
    _problem(client.patch(f"{V1}/assets/by-tag/KR-1", headers={"If-Match": '"1"'},
                          json={"notes": "x"}), 409, "is at version 3, not 1")
    assert snapshot(_engine(client)) == before
    with _engine(client).connect() as conn:
        rebuilt = history.rebuild_assets(conn=conn)
        assert rebuilt["KR-1"] == history.AssetState("VL-LC-01", "available", "fair")
        _total, stored = assets.list_assets(conn=conn)
    assert {a.tag: (a.site_code, a.status, a.condition) for a in stored} == {
        tag: (s.site_code, s.status, s.condition) for tag, s in rebuilt.items()}


def test_two_coordinators_edit_the_same_asset_and_the_second_is_refused(
    client: TestClient,
) -> None:
    etag = client.get(f"{V1}/assets/by-tag/KR-2").headers["etag"]
    first = client.patch(f"{V1}/assets/by-tag/KR-2", headers={"If-Match": etag},
                         json={"notes": "Ana: revisado"})
    second = client.patch(f"{V1}/assets/by-tag/KR-2", headers={"If-Match": etag},
                          json={"notes": "Luis: falta un cable"})
    assert _ok(first)["notes"] == "Ana: revisado"
    _problem(second, 409, "it was changed since it was read")
    assert _ok(client.get(f"{V1}/assets/by-tag/KR-2"))["notes"] == "Ana: revisado"
    assert _kinds(client, "KR-2") == ["AssetRegistered", "AssetEdited"]


def test_the_cli_corrects_sites_models_and_assets(client: TestClient, cli: CliRunner) -> None:
    out = _cli(cli, "inventory", "sites", "edit", "VL-LP-020", "--name", "Lab Point Timbío",
               "--institution", "IE Timbío", "--version", "1")
    assert "Lab Point Timbío" in out and "(version 2)" in out
    err = _cli(cli, "inventory", "sites", "edit", "VL-LP-020", "--name", "X", "--version",
               "1", code=1)
    assert "is at version 2, not 1" in err
    out = _cli(cli, "inventory", "sites", "edit", "VL-LP-020", "--clear", "institution")
    assert "(version 3)" in out
    assert _ok(client.get(f"{V1}/sites/VL-LP-020"))["institution"] is None
    assert "give at least one field" in _cli(cli, "inventory", "sites", "edit", "VL-LP-020",
                                             code=2)
    out = _cli(cli, "inventory", "models", "edit", "KIT-ROBOT", "--name", "Kit de robótica")
    assert "Kit de robótica (version 2)" in out
    out = _cli(cli, "inventory", "assets", "edit", "KR-3", "--condition", "poor", "--notes",
               "pila floja", "--clear", "serial")
    assert "poor" in out and "pila floja" in out and "(version 2)" in out
    kr3 = _ok(client.get(f"{V1}/assets/by-tag/KR-3"))
    assert (kr3["condition"], kr3["serial_number"]) == ("poor", None)
    # The lists are still there when the groups are called alone.
    assert "Lab Point Timbío" in _cli(cli, "inventory", "sites", "--under", "VL-R2")
    assert "3 of 3 assets" in _cli(cli, "inventory", "assets", "--site", "VL")
    assert "Kit de robótica" in _cli(cli, "inventory", "models")


# -- 2. corrections: delete what was made in error, retire what was used ----------------------


def test_records_made_in_error_are_deleted_and_the_history_keeps_a_tombstone(
    client: TestClient,
) -> None:
    _ok(client.post(f"{V1}/sites", json={"code": "VL-LP-99", "name": "Error", "kind": "site",
                                         "parent": "VL-R2", "tier": "lab_point"}), 201)
    _ok(client.post(f"{V1}/models", json={"code": "UNO-TYPO", "name": "Arduino Uon",
                                          "category": "microcontroller_board"}), 201)
    _ok(client.post(f"{V1}/assets", json={"tag": "VC-TYPO", "model": "UNO-TYPO",
                                          "site": "VL-LP-99"}), 201)
    # Used by each other, none can go yet: the asset first.
    _problem(client.delete(f"{V1}/sites/VL-LP-99", params={}), 409,
             "1 asset(s) there")
    _problem(client.delete(f"{V1}/models/UNO-TYPO", params={}), 409,
             "1 asset(s) of it")
    _problem(client.delete(f"{V1}/assets/by-tag/VC-TYPO", params={},
                           headers={"If-Match": '"2"'}), 409, "is at version 1, not 2")
    tomb = _ok(client.delete(f"{V1}/assets/by-tag/VC-TYPO",
                             params={"note": "etiqueta mal escrita"}))
    assert (tomb["kind"], tomb["subject"], tomb["by"], tomb["note"]) == (
        "AssetDeleted", "VC-TYPO", TEST_ADMIN, "etiqueta mal escrita")
    assert tomb["from_state"]["model_code"] == "UNO-TYPO" and tomb["at"].endswith("Z")
    _ok(client.delete(f"{V1}/models/UNO-TYPO", params={}))
    _ok(client.delete(f"{V1}/sites/VL-LP-99", params={}))
    for path in ("/assets/by-tag/VC-TYPO", "/models/UNO-TYPO", "/sites/VL-LP-99"):
        assert client.get(V1 + path).status_code == 404
    assert _kinds(client, "VC-TYPO") == ["AssetRegistered", "AssetDeleted"]
    assert _kinds(client, "UNO-TYPO") == ["ModelCreated", "ModelDeleted"]
    assert _kinds(client, "VL-LP-99") == ["SiteCreated", "SiteDeleted"]
    with _engine(client).connect() as conn:
        assert "VC-TYPO" not in history.rebuild_assets(conn=conn)
    # The code is free again, and the new site starts a history of its own.
    _ok(client.post(f"{V1}/sites", json={"code": "VL-LP-99", "name": "Lab 99", "kind": "site",
                                         "parent": "VL-R2", "tier": "lab_point"}), 201)
    _ok(client.delete(f"{V1}/sites/VL-LP-99", params={}))


def test_anything_used_is_refused_a_delete_saying_to_retire_it_and_is_retired(
    client: TestClient,
) -> None:
    engine = _engine(client)
    with engine.begin() as conn:
        assets.move_asset(conn=conn, tag="KR-2", to_site="VL-LP-014", by=BY)
        kits.define_contents(conn=conn, kit_tag="KR-3", assets=[], parts={"JMP-WIRE": 10},
                             by=BY)
        conn.execute(insert(series).values(device="uno-1", channel="temp", site="VL-LP-020",
                                           created_at=1))
    before = snapshot(engine)
    detail = _problem(client.delete(f"{V1}/assets/by-tag/KR-2", params={}), 409,
                      "cannot be deleted: it was used")
    assert "AssetMoved" in detail and "retire it instead" in detail
    assert "POST /api/v1/assets/by-tag/KR-2/retire" in detail
    _problem(client.delete(f"{V1}/assets/by-tag/KR-3", params={}), 409,
             "kit content line(s)")
    _problem(client.delete(f"{V1}/models/JMP-WIRE", params={}), 409,
             "1 kit content line(s)")
    _problem(client.delete(f"{V1}/sites/VL-LP-020", params={}), 409,
             "1 reading series")
    _problem(client.delete(f"{V1}/sites/VL-R1", params={}), 409,
             "site(s) under it")
    assert snapshot(engine) == before

    retired = _ok(client.post(f"{V1}/assets/by-tag/KR-2/retire",
                              json={"note": "placa quemada"}))
    assert retired["status"] == "retired"
    model = _ok(client.post(f"{V1}/models/KIT-ROBOT/retire", json={},
                            headers={"If-Match": '"1"'}))
    assert model["retired_at"] is not None and model["version"] == 2
    _problem(client.post(f"{V1}/assets", json={"tag": "KR-9", "model": "KIT-ROBOT",
                                               "site": "VL-LC-01"}), 409,
             "is retired from the catalog")
    # A site is retired once what it holds is gone; a lab site is closed with it.
    _problem(client.post(f"{V1}/sites/VL-LC-01/retire", json={}), 409,
             "cannot be retired yet")
    site = _ok(client.post(f"{V1}/sites/VL-LP-020/retire", json={}))
    assert site["retired_at"] is not None and site["rollout_status"] == "closed"
    assert _kinds(client, "VL-LP-020")[-1] == "SiteRetired"
    _problem(client.post(f"{V1}/sites/VL-LP-020/retire", json={}), 409,
             "already retired")
    _problem(client.post(f"{V1}/assets/by-tag/KR-1/move",
                         json={"to_site": "VL-LP-020"}), 409, "is retired")
    _problem(client.delete(f"{V1}/sites/VL-LP-020", params={}), 409,
             "SiteRetired")


def test_the_cli_deletes_what_was_made_in_error_and_retires_what_was_used(
    client: TestClient, cli: CliRunner,
) -> None:
    _ok(client.post(f"{V1}/models", json={"code": "UNO-TYPO", "name": "Arduino Uon",
                                          "category": "microcontroller_board"}), 201)
    out = _cli(cli, "inventory", "models", "delete", "UNO-TYPO")
    assert "ModelDeleted UNO-TYPO by" in out
    err = _cli(cli, "inventory", "sites", "delete", "VL-R2", code=1)
    assert "retire it instead" in err and "labhub inventory sites retire VL-R2" in err
    err = _cli(cli, "inventory", "models", "delete", "KIT-ROBOT", code=1)
    assert "3 asset(s) of it" in err
    assert "retired" in _cli(cli, "inventory", "assets", "retire", "KR-1")
    assert "retired" in _cli(cli, "inventory", "models", "retire", "JMP-WIRE")
    out = _cli(cli, "inventory", "sites", "retire", "VL-LP-014")
    assert "retired" in out and "closed" in out
    assert "(retired)" in _cli(cli, "inventory", "sites", "--under", "VL-M-CALI")
    _ok(client.post(f"{V1}/assets", json={"tag": "KR-TYPO", "model": "KIT-ROBOT",
                                          "site": "VL-LC-01"}), 201)
    assert "AssetDeleted KR-TYPO" in _cli(cli, "inventory", "assets", "delete", "KR-TYPO")


# -- 3. audits and rotations listed, rotations from the CLI ----------------------------------


def test_audits_and_rotations_are_listed_with_filters_and_totals(client: TestClient) -> None:
    engine = _engine(client)
    with engine.begin() as conn:
        first = audits.start_audit(conn=conn, site="VL-LC-01", by=BY)
        audits.scan_tag(conn=conn, audit_uuid=first.uuid, tag="KR-1", by=BY)
        audits.finish_audit(conn=conn, audit_uuid=first.uuid, by=BY)
        audits.start_audit(conn=conn, site="VL-LC-01", by=BY)
        audits.start_audit(conn=conn, site="VL-LP-020", by=BY)
    page = _ok(client.get(f"{V1}/audits"))
    assert page["total"] == 3 and len(page["items"]) == 3
    region = _ok(client.get(f"{V1}/audits", params={"site": "VL-R1"}))
    assert region["total"] == 2 and {a["site"] for a in region["items"]} == {"VL-LC-01"}
    done = _ok(client.get(f"{V1}/audits", params={"status": "finished"}))
    assert [(a["id"], a["scanned"], a["counted"]) for a in done["items"]] == [
        (first.uuid, 1, 0)]
    paged = _ok(client.get(f"{V1}/audits", params={"limit": 1, "offset": 1}))
    assert paged["total"] == 3 and len(paged["items"]) == 1
    assert client.get(f"{V1}/audits", params={"status": "lost"}).status_code == 422
    assert client.get(f"{V1}/audits", params={"site": "NOPE"}).status_code == 404

    with engine.begin() as conn:
        for tag in ("KR-1", "KR-2"):
            assets.move_asset(conn=conn, tag=tag, to_site="VL-ML-1", by=BY)
            rotations.add_to_manifest(conn=conn, mobile_lab="VL-ML-1", tag=tag, by=BY)
        north = rotations.plan_rotation(conn=conn, mobile_lab="VL-ML-1", name="Norte", by=BY,
                                        stops=[("VL-LP-014", "2027-03-01", "2027-03-05")])
        south = rotations.plan_rotation(conn=conn, mobile_lab="VL-ML-1", name="Sur", by=BY,
                                        stops=[("VL-LP-020", "2027-04-01", "2027-04-05")])
        rotations.arrive(conn=conn, rotation_uuid=north.uuid, seq=1, carrier="Luis", by=BY)
    everything = _ok(client.get(f"{V1}/rotations"))
    assert everything["total"] == 2
    assert [r["name"] for r in everything["items"]] == ["Sur", "Norte"]  # newest first
    assert {r["name"]: r["status"] for r in everything["items"]} == {
        "Norte": "underway", "Sur": "planned"}
    assert [r["id"] for r in _ok(client.get(f"{V1}/rotations", params={
        "site": "VL-R1"}))["items"]] == [north.uuid]  # a stop there
    assert _ok(client.get(f"{V1}/rotations", params={"site": "VL-R2"}))["total"] == 2
    assert [r["id"] for r in _ok(client.get(f"{V1}/rotations", params={
        "status": "planned"}))["items"]] == [south.uuid]
    assert _ok(client.get(f"{V1}/rotations", params={"status": "finished"}))["total"] == 0
    paged = _ok(client.get(f"{V1}/rotations", params={"limit": 1, "offset": 1}))
    assert paged["total"] == 2 and [r["id"] for r in paged["items"]] == [north.uuid]
    assert client.get(f"{V1}/rotations", params={"status": "lost"}).status_code == 422


def test_the_cli_runs_a_rotation_and_lists_audits(client: TestClient, cli: CliRunner) -> None:
    engine = _engine(client)
    with engine.begin() as conn:
        assets.move_asset(conn=conn, tag="KR-1", to_site="VL-ML-1", by=BY)
        audits.start_audit(conn=conn, site="VL-LP-020", by=BY)
    out = _cli(cli, "inventory", "rotation", "manifest-add", "VL-ML-1", "KR-1")
    assert "KR-1" in out and "1 assets on the manifest of VL-ML-1" in out
    out = _cli(cli, "inventory", "rotation", "plan", "VL-ML-1", "--name", "Ruta 2027",
               "--stop", "VL-LP-014@2027-03-01/2027-03-05")
    rid = out.split()[1]
    assert "planned" in out and "stop 1   VL-LP-014" in out
    assert "1 of 1 rotations" in _cli(cli, "inventory", "rotation", "list", "--site", "VL-R1")
    out = _cli(cli, "inventory", "rotation", "arrive", rid, "1", "--carrier", "Luis")
    assert "underway" in out and "VL-ML-1 -> VL-LP-014, shipped" in out
    arrival = out.split("transfer ")[1].split(":")[0]
    with engine.begin() as conn:
        transfers.scan_item(conn=conn, transfer_uuid=arrival, tag="KR-1", site="VL-LP-014",
                            by=BY)
        transfers.receive_transfer(conn=conn, transfer_uuid=arrival, site="VL-LP-014", by=BY)
    out = _cli(cli, "inventory", "rotation", "depart", rid, "1", "--carrier", "Luis")
    assert "finished" in out and "VL-LP-014 -> VL-ML-1, shipped" in out
    assert "finished" in _cli(cli, "inventory", "rotation", "show", rid)
    assert "0 of 0 rotations" in _cli(cli, "inventory", "rotation", "list", "--status",
                                      "planned")
    err = _cli(cli, "inventory", "rotation", "plan", "VL-ML-1", "--name", "x", "--stop",
               "VL-LP-014", code=2)
    assert "SITE@ARRIVE/DEPART" in err
    out = _cli(cli, "inventory", "rotation", "manifest-remove", "VL-ML-1", "KR-1")
    assert "0 assets on the manifest" in out
    out = _cli(cli, "inventory", "audit", "list", "--site", "VL-R2", "--status", "open")
    assert "VL-LP-020" in out and "1 of 1 audits" in out


# -- 4. labels without lost and in-transit assets --------------------------------------------


def test_labels_leave_out_lost_and_in_transit_assets_and_say_how_many(
    client: TestClient, cli: CliRunner, tmp_path: Path,
) -> None:
    with _engine(client).begin() as conn:
        assets.set_status(conn=conn, tag="KR-1", status="lost", by=BY)
        transfers.draft_transfer(conn=conn, from_site="VL-LC-01", to_site="VL-LP-014",
                                 tags=["KR-2"], by=BY)
    with _engine(client).begin() as conn:
        t = transfers.list_transfers(conn=conn)[1][0]
        transfers.ship_transfer(conn=conn, transfer_uuid=t.uuid, carrier="Luis", by=BY)
    svg = client.get(f"{V1}/labels.svg", params={"site": "VL-LC-01"})
    assert svg.status_code == 200, svg.text
    assert svg.headers["x-labels-left-out"] == "2"
    assert "KR-3" in svg.text and "KR-1" not in svg.text and "KR-2" not in svg.text
    every = client.get(f"{V1}/labels.svg", params={"site": "VL-LC-01",
                                                   "include_lost_in_transit": True})
    assert every.headers["x-labels-left-out"] == "0"
    assert all(tag in every.text for tag in ("KR-1", "KR-2", "KR-3"))
    pdf = client.get(f"{V1}/labels.pdf", params={"tag": ["KR-1", "KR-3"]})
    assert pdf.status_code == 200 and pdf.headers["x-labels-left-out"] == "1"
    _problem(client.get(f"{V1}/labels.pdf", params={"tag": ["KR-1"]}), 404, "1 lost")

    out = _cli(cli, "inventory", "labels", "-o", str(tmp_path / "l.svg"), "--site",
               "VL-LC-01")
    assert "1 labels on 1 page(s)" in out
    assert "2 left out (1 in transit, 1 lost): --include-lost-in-transit" in out
    out = _cli(cli, "inventory", "labels", "-o", str(tmp_path / "l.pdf"), "--site",
               "VL-LC-01", "--include-lost-in-transit")
    assert "3 labels on 1 page(s)" in out and "left out" not in out


def test_sites_and_models_stored_before_migration_0011_start_at_version_1(
    engine: Engine,
) -> None:
    from alembic import command
    from sqlalchemy import text

    from inventory import catalog, sites
    from labhub import db

    command.downgrade(db.alembic_config(engine), "0010_dead_letter_digest")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO sites (code, name, kind) VALUES ('VL', 'ValleLabs', "
                          "'network')"))
        conn.execute(text("INSERT INTO models (code, name, category, tracking) VALUES "
                          "('UNO', 'Uno', 'microcontroller_board', 'serialized')"))
    db.upgrade(engine)
    with engine.begin() as conn:
        site = sites.get_site(conn=conn, code="VL")
        model = catalog.get_model(conn=conn, code="UNO")
        assert (site.version, site.retired_at, model.version, model.retired_at) == (
            1, None, 1, None)
        edited = sites.edit_site(conn=conn, code="VL", changes={"name": "Valle Labs"}, by=BY,
                                 expected_version=1)
    assert edited.version == 2
