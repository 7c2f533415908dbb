"""Import, export and labels through the API on every backend: a coordinator imports a
network from CSV files, a bad file is a 422 listing each row error with nothing written,
the valid-only mode and dry runs, exports that import back, labels for a site."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from signed_in import TEST_ADMIN, as_admin

from labhub.app import create_app
from labhub.settings import Settings

V1 = "/api/v1"
PROBLEM = "application/problem+json"

SITES = (
    "codigo;nombre;tipo;padre;nivel;rural;latitud;longitud\n"
    "VL;ValleLabs;network;;;;;\n"
    "VL-R1;Valle;region;VL;;;;\n"
    "VL-M-CALI;Cali;municipality;VL-R1;;;;\n"
    "VL-LC-01;Lab Center Cali;site;VL-M-CALI;lab_center;no;3,45;-76,53\n"
    "VL-LP-014;Lab Point Escuela 14;site;VL-M-CALI;lab_point;sí;;\n"
)
MODELS = "code,name,category\nARD-UNO-R3,Arduino Uno R3,microcontroller_board\n" \
         "KIT-ROB,Kit de robótica,robotics_kit\n"
ASSETS = "tag,model,site,serial_number\n" + "".join(
    f"VC-{i:04d},{'KIT-ROB' if i % 3 == 0 else 'ARD-UNO-R3'},"
    f"{'VL-LP-014' if i % 2 else 'VL-LC-01'},SN-{i}\n" for i in range(1, 31)
)


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url,
                        serial_scan=False)
    with as_admin(TestClient(create_app(settings))) as c:
        yield c


def _import(client: TestClient, kind: str, text: str, status: int = 200, **params: Any) -> Any:
    r = client.post(f"{V1}/import/{kind}", content=text.encode("utf-8"),
                    params={**params}, headers={"content-type": "text/csv"})
    assert r.status_code == status, r.text
    return r.json()


def _totals(client: TestClient) -> tuple[int, int, int]:
    return (len(client.get(f"{V1}/sites").json()), len(client.get(f"{V1}/models").json()),
            client.get(f"{V1}/assets").json()["total"])


def _network(client: TestClient) -> None:
    assert _import(client, "sites", SITES)["created"] == 5
    assert _import(client, "models", MODELS)["created"] == 2
    assert _import(client, "assets", ASSETS) == {
        "kind": "assets", "rows": 30, "valid": 30, "created": 30, "dry_run": False,
        "errors": []}


def test_a_coordinator_imports_a_network_and_prints_labels_for_a_site(
    client: TestClient,
) -> None:
    _network(client)
    lp = client.get(f"{V1}/sites/VL-LC-01").json()
    assert (lp["tier"], lp["rural"], lp["latitude"], lp["longitude"]) == (
        "lab_center", False, 3.45, -76.53)
    page = client.get(f"{V1}/assets", params={"site": "VL-LP-014", "limit": 100}).json()
    assert page["total"] == 15
    history = client.get(f"{V1}/history/VC-0003").json()
    assert [(e["kind"], e["by"], e["site"]) for e in history] == [
        ("AssetRegistered", TEST_ADMIN, "VL-LP-014")]

    r = client.get(f"{V1}/labels.pdf", params={"site": "VL-LP-014", "columns": 3, "rows": 4})
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert r.content.startswith(b"%PDF-1.4") and b"/Count 2" in r.content  # 15 labels, 12/page
    r = client.get(f"{V1}/labels.svg", params={"site": "VL-LP-014", "columns": 3, "rows": 4,
                                               "page": 2})
    assert r.status_code == 200 and r.headers["x-label-pages"] == "2"
    assert r.headers["content-type"].startswith("image/svg+xml")
    tags = re.findall(r'data-tag="([^"]+)"', r.text)
    assert tags == ["VC-0025", "VC-0027", "VC-0029"]
    r = client.get(f"{V1}/labels.svg", params=[("tag", "VC-0002"), ("tag", "VC-0001")])
    assert re.findall(r'data-tag="([^"]+)"', r.text) == ["VC-0002", "VC-0001"]
    assert "Lab Center Cali" in r.text and "Arduino Uno R3" in r.text
    # A small label printer's format: one 50 x 30 mm label a page.
    r = client.get(f"{V1}/labels.pdf", params=[("tag", "VC-0002"), ("tag", "VC-0001"),
                                               ("format", "small")])
    assert r.status_code == 200 and b"/Count 2" in r.content
    assert b"/MediaBox [0 0 141.73 85.04]" in r.content  # 50 x 30 mm in points

    r = client.get(f"{V1}/labels.svg", params={"site": "VL-LP-014", "page": 9})
    assert r.status_code == 422 and "page 9: the labels fill 1 page(s)" in r.json()["detail"]
    r = client.get(f"{V1}/labels.pdf", params={"tag": "VC-9999"})
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    assert r.json()["detail"] == "no asset with tag 'VC-9999'"
    r = client.get(f"{V1}/labels.pdf", params={"site": "VL-LP-014", "columns": 11})
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM


def test_a_bad_file_is_a_422_with_every_row_error_and_nothing_written(
    client: TestClient,
) -> None:
    _network(client)
    before = _totals(client)
    bad = ("tag,model,site\n"
           "VC-0100,ARD-UNO-R3,VL-LC-01\n"
           "VC-0001,ARD-UNO-R3,VL-LC-01\n"
           "VC-0101,NOPE,VL-LC-01\n"
           "VC-0102,ARD-UNO-R3,VL-R1\n"
           "VC-0100,ARD-UNO-R3,VL-LP-014\n")
    problem = _import(client, "assets", bad, status=422)
    assert problem["title"] == "CSV rows are not valid"
    assert problem["detail"].startswith("4 of 5 rows have errors; nothing was imported")
    assert [(e["row"], e["column"], e["message"]) for e in problem["errors"]] == [
        (3, "tag", "asset tag 'VC-0001' is already registered in the database"),
        (4, "model", "no model with code 'NOPE' in the catalog"),
        (5, "site", "assets are kept at lab sites, and 'VL-R1' is a region"),
        (6, "tag", "asset tag 'VC-0100' is already on row 2"),
    ]
    assert problem["errors"][0]["where"] == "row 3, column tag"
    assert _totals(client) == before

    dry = _import(client, "assets", bad, mode="valid", dry_run="true")
    assert (dry["valid"], dry["created"], dry["dry_run"], len(dry["errors"])) == (1, 0, True, 4)
    assert _totals(client) == before
    valid = _import(client, "assets", bad, mode="valid")
    assert (valid["valid"], valid["created"]) == (1, 1)
    assert _totals(client) == (before[0], before[1], before[2] + 1)
    assert client.get(f"{V1}/assets/by-tag/VC-0100").json()["site"] == "VL-LC-01"

    r = client.post(f"{V1}/import/assets", content=b"tag;model;color\n", params={})
    assert r.status_code == 422 and "unknown column(s) 'color'" in r.json()["detail"]
    r = client.post(f"{V1}/import/kits", content=b"x\n", params={})
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    r = client.post(f"{V1}/import/models", content="code,name,category\nA,Niño,tool\n"
                    .encode("latin-1"), params={})
    assert r.status_code == 422 and "not UTF-8" in r.json()["detail"]
    assert _totals(client) == (before[0], before[1], before[2] + 1)


def test_exports_import_back_into_another_hub(client: TestClient, tmp_path: Path) -> None:
    _network(client)
    params = {"delimiter": "semicolon", "decimal": "comma", "bom": "true"}
    sites = client.get(f"{V1}/export/sites.csv", params=params)
    assert sites.status_code == 200 and sites.headers["content-type"] == "text/csv; charset=utf-8"
    assert 'filename="sites.csv"' in sites.headers["content-disposition"]
    assert sites.content.startswith("\ufeffcode;name;kind;".encode())
    assert "VL-LC-01;Lab Center Cali;site;VL-M-CALI;lab_center;false;3,45;-76,53;;planned" \
        in sites.text
    models = client.get(f"{V1}/export/models.csv", params={"category": "robotics_kit"})
    assert models.text == ("code,name,category,tracking,unit\r\n"
                           "KIT-ROB,Kit de robótica,robotics_kit,serialized,\r\n")
    all_models = client.get(f"{V1}/export/models.csv")
    assets = client.get(f"{V1}/export/assets.csv", params={"site": "VL-M-CALI",
                                                            "model": "KIT-ROB"})
    assert assets.text.count("\r\n") == 11  # header + VC-0003, 0006, ... 0030
    history = client.get(f"{V1}/export/history.csv", params={"subject": "VC-0003"})
    assert history.text.splitlines()[1].split(",")[1:3] == ["AssetRegistered", "VC-0003"]
    r = client.get(f"{V1}/export/history.csv", params={"subject": "NOPE"})
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    r = client.get(f"{V1}/export/assets.csv", params={"site": "NOPE"})
    assert r.status_code == 404

    other = Settings(data_dir=tmp_path / "other", serial_scan=False)
    with as_admin(TestClient(create_app(other))) as second:
        for kind, body in (("sites", sites.content), ("models", all_models.content),
                           ("assets", assets.content)):
            r = second.post(f"{V1}/import/{kind}", content=body, params={})
            assert r.status_code == 200 and r.json()["errors"] == [], r.text
        again = second.get(f"{V1}/export/sites.csv", params=params)
        assert again.content == sites.content
        again = second.get(f"{V1}/export/assets.csv")
        assert again.text == assets.text


def test_an_audits_count_lines_export_as_csv(client: TestClient) -> None:
    _network(client)
    r = client.post(f"{V1}/models", json={"code": "JMP-WIRE", "name": "Jumper wire",
                                          "category": "consumable", "tracking": "counted",
                                          "unit": "pcs"})
    assert r.status_code == 201, r.text
    r = client.post(f"{V1}/stock/receive", json={"site": "VL-LP-014", "model": "JMP-WIRE",
                                                 "quantity": 40})
    assert r.status_code == 200, r.text
    audit = client.post(f"{V1}/audits", json={"site": "VL-LP-014"}).json()["id"]
    r = client.post(f"{V1}/audits/{audit}/counts",
                    json={"model": "JMP-WIRE", "quantity": 37})
    assert r.status_code == 200, r.text
    r = client.get(f"{V1}/export/audit-counts.csv", params={"audit": audit})
    assert r.status_code == 409 and "still open" in r.json()["detail"]
    assert client.post(f"{V1}/audits/{audit}/finish", json={}).status_code == 200
    r = client.get(f"{V1}/export/audit-counts.csv",
                   params={"audit": audit, "delimiter": "semicolon", "bom": "true"})
    assert r.status_code == 200 and r.headers["content-type"] == "text/csv; charset=utf-8"
    assert 'filename="audit-counts.csv"' in r.headers["content-disposition"]
    assert r.text == ("\ufeffaudit;site;model;unit;expected;counted;difference;corrected_at\r\n"
                      f"{audit};VL-LP-014;JMP-WIRE;pcs;40;37;-3;\r\n")
    r = client.get(f"{V1}/export/audit-counts.csv",
                   params={"audit": "0b6a3c1e-7f5d-4c1a-9a57-1d2f3e4a5b6c"})
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
