"""``labhub inventory`` on every backend: sites, assets and history read from the database
that the domain services wrote."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from inventory import assets, catalog, maintenance, sites
from labhub import db
from labhub.cli import app

BY = "Ana"


@pytest.fixture
def run(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("LABHUB_DATABASE_URL", database_url)
    monkeypatch.setenv("LABHUB_DATA_DIR", str(tmp_path / "data"))
    engine = db.make_engine(database_url)
    try:
        with engine.begin() as conn:
            sites.create_site(conn=conn, code="VL", name="ValleLabs", kind="network", by=BY)
            sites.create_site(conn=conn, code="VL-R1", name="Valle", kind="region",
                              parent_code="VL", by=BY)
            sites.create_site(conn=conn, code="VL-R2", name="Cauca", kind="region",
                              parent_code="VL", by=BY)
            sites.create_site(conn=conn, code="VL-M-CALI", name="Cali", kind="municipality",
                              parent_code="VL-R1", by=BY)
            sites.create_site(conn=conn, code="VL-LC-01", name="Lab Center Cali", kind="site",
                              parent_code="VL-M-CALI", tier="lab_center",
                              rollout_status="active", by=BY)
            sites.create_site(conn=conn, code="VL-LP-014", name="Lab Point Escuela 14",
                              kind="site", parent_code="VL-M-CALI", tier="lab_point", by=BY)
            sites.create_site(conn=conn, code="VL-LS-02", name="Lab Spark Popayán",
                              kind="site", parent_code="VL-R2", tier="lab_spark", by=BY)
            catalog.create_model(conn=conn, code="ARD-UNO-R3", name="Arduino Uno R3",
                                 category="microcontroller_board", by=BY)
            for i in (1, 2):
                assets.register_asset(conn=conn, tag=f"VC-000{i}", model_code="ARD-UNO-R3",
                                      site_code="VL-LC-01", serial_number=f"SN-{i}", by=BY)
            assets.register_asset(conn=conn, tag="VC-0100", model_code="ARD-UNO-R3",
                                  site_code="VL-LS-02", by=BY)
            assets.move_asset(conn=conn, tag="VC-0001", to_site="VL-LP-014", by="Luis",
                              note="club de robótica")
            maintenance.start_repair(conn=conn, tag="VC-0002", fault="USB suelto",
                                     condition="broken", by="Luis")
    finally:
        engine.dispose()
    return CliRunner()


def _lines(runner: CliRunner, *args: str, code: int = 0) -> list[str]:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return [line.rstrip() for line in result.output.splitlines()]


def test_sites_under_a_region_as_a_tree(run: CliRunner) -> None:
    assert _lines(run, "inventory", "sites", "--under", "VL-R1") == [
        "VL-R1                    region                                 Valle",
        "  VL-M-CALI              municipality                           Cali",
        "    VL-LC-01             site          lab_center active        Lab Center Cali",
        "    VL-LP-014            site          lab_point planned        Lab Point Escuela 14",
        "4 sites",
    ]
    everything = _lines(run, "inventory", "sites")
    assert everything[0].startswith("VL ") and everything[-1] == "7 sites"
    assert any(line.startswith("    VL-LS-02 ") for line in everything)


def test_assets_by_site_subtree_status_and_search(run: CliRunner) -> None:
    assert _lines(run, "inventory", "assets", "--site", "VL-R1") == [
        "VC-0001          ARD-UNO-R3       available   good    VL-LP-014        SN-1",
        "VC-0002          ARD-UNO-R3       in_repair   broken  VL-LC-01         SN-2",
        "2 of 2 assets",
    ]
    assert _lines(run, "inventory", "assets", "--site", "VL")[-1] == "3 of 3 assets"
    only = _lines(run, "inventory", "assets", "--status", "in_repair")
    assert [line.split()[0] for line in only] == ["VC-0002", "1"]
    found = _lines(run, "inventory", "assets", "--search", "vc-01")
    assert found == [
        "VC-0100          ARD-UNO-R3       available   good    VL-LS-02         -",
        "1 of 1 assets",
    ]


def test_history_of_an_asset_oldest_first(run: CliRunner) -> None:
    lines = _lines(run, "inventory", "history", "VC-0001")
    assert len(lines) == 3 and lines[-1] == "2 events"
    registered, moved = (line.split("  ", 1) for line in lines[:2])
    assert registered[0] < moved[0] and registered[0].endswith("Z")
    assert registered[1] == (
        "AssetRegistered      by Ana: condition good, model_code ARD-UNO-R3, "
        "serial_number SN-1, site_code VL-LC-01, status available")
    assert moved[1] == (
        "AssetMoved           by Luis: site_code VL-LC-01 -> VL-LP-014  (club de robótica)")
    repair = _lines(run, "inventory", "history", "VC-0002")
    assert repair[1].split("  ", 1)[1].startswith(
        "RepairStarted        by Luis: condition good -> broken, repair ")
    assert repair[1].endswith("status available -> in_repair  (USB suelto)")


def test_unknown_keys_and_bad_filters_exit_1_with_the_reason(run: CliRunner) -> None:
    result = run.invoke(app, ["inventory", "sites", "--under", "NOPE"])
    assert result.exit_code == 1 and "no site with code 'NOPE'" in result.output
    result = run.invoke(app, ["inventory", "assets", "--status", "borrowed"])
    assert result.exit_code == 1 and "'borrowed' is not one of" in result.output
    result = run.invoke(app, ["inventory", "history", "NOPE"])
    assert result.exit_code == 1 and "nothing has the key 'NOPE'" in result.output
