"""``labhub inventory transfer`` and ``labhub inventory audit`` on every backend: a
coordinator ships kits and scans them in from a barcode scanner (standard input), runs
an audit and applies it; a refusal is one red line, exit 1, nothing written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from inventory_world import BY, network, snapshot
from sqlalchemy import Engine
from typer.testing import CliRunner

from inventory import assets
from labhub.cli import app

UUID = r"[0-9a-f-]{36}"


@pytest.fixture
def lab(engine: Engine, database_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> Engine:
    monkeypatch.setenv("LABHUB_DATABASE_URL", database_url)
    monkeypatch.setenv("LABHUB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LABHUB_SITE", "VL-LP-014")
    with engine.begin() as conn:
        network(conn)
        for i in (1, 2, 3):
            assets.register_asset(conn=conn, tag=f"VC-000{i}", model_code="KIT-ROBOT",
                                  site_code="VL-LC-01", by=BY)
        assets.register_asset(conn=conn, tag="VC-0100", model_code="KIT-ROBOT",
                              site_code="VL-LP-020", by=BY)
    return engine


def _run(*args: str, code: int = 0, stdin: str | None = None) -> str:
    result = CliRunner().invoke(app, list(args), input=stdin)
    assert result.exit_code == code, result.output
    return result.output


def test_ship_scan_from_standard_input_and_receive(lab: Engine) -> None:
    out = _run("inventory", "transfer", "new", "--from", "VL-LC-01", "--to", "VL-LP-014", "VC-0001")
    found = re.match(rf"transfer ({UUID}): VL-LC-01 -> VL-LP-014, draft \(version 2\)", out)
    assert found, out
    tid = found.group(1)
    _run("inventory", "transfer", "add", tid, "VC-0002", "--version", "2")
    out = _run("inventory", "transfer", "ship", tid, "--carrier", "Luis")
    assert "shipped" in out and "carried by Luis" in out
    before = snapshot(lab)
    out = _run("inventory", "transfer", "scan", tid, "VC-0001", "--site", "VL-LS-9", code=1)
    assert f"transfer {tid} goes to VL-LP-014, and this hub is at VL-LS-9" in out
    assert snapshot(lab) == before
    out = _run("inventory", "transfer", "scan", tid,
               stdin="VC-0001\n\nVC-0100\nVC-0001\n")
    assert out.splitlines() == [
        "VC-0001          on the transfer", "VC-0100          NOT on the transfer (extra)",
        "VC-0001          on the transfer, already scanned", "3 scanned"]
    out = _run("inventory", "transfer", "receive", tid, code=1)
    assert "say whether they stay in_transit or become lost (missing_as)" in out
    out = _run("inventory", "transfer", "receive", tid, "--missing-as",
               "lost")
    assert "received" in out
    out = _run("inventory", "transfer", "show", tid)
    assert "  extra    VC-0100          unchanged (recorded at VL-LP-020)" in out
    assert "  missing  VC-0002          lost" in out
    assert out.splitlines()[-1] == "2 items, 2 scanned, 2 discrepancies"
    history = _run("inventory", "history", "VC-0001")
    assert "TransferItemReceived" in history and "site_code VL-LC-01 -> VL-LP-014" in history


def test_an_audit_from_the_terminal(lab: Engine) -> None:
    out = _run("inventory", "audit", "start", "VL-LC-01")
    found = re.match(rf"audit ({UUID}) at VL-LC-01: open \(version 1\)", out)
    assert found, out
    aid = found.group(1)
    out = _run("inventory", "audit", "scan", aid, "VC-0001", "VC-0100", "X-9", "--by", "Marta")
    assert out.splitlines() == [
        "VC-0001          scanned",
        "VC-0100          scanned, recorded at VL-LP-020 (unexpected here)",
        "X-9              scanned, no asset has this tag", "3 scanned"]
    _run("inventory", "audit", "count", aid, "JMP-WIRE", "38", "--by", "Marta")
    out = _run("inventory", "audit", "count", aid, "KIT-ROBOT", "1", "--by", "Marta", code=1)
    assert "'KIT-ROBOT' is tracked as tagged assets" in out
    out = _run("inventory", "audit", "finish", aid)
    lines = out.splitlines()
    assert "found       VC-0001          KIT-ROBOT      (scan)" in lines
    assert "missing     VC-0002          KIT-ROBOT      recorded available" in lines
    assert "unexpected  VC-0100          KIT-ROBOT      recorded at VL-LP-020 (scan)" in lines
    assert "counted     JMP-WIRE         38 pcs, stock 0, difference +38" in lines
    assert "unknown     X-9              -              (scan)" in lines
    assert lines[-1] == "1 found, 2 missing, 1 unexpected, 1 unknown"
    out = _run("inventory", "audit", "apply", aid)
    assert "unexpected  VC-0100          KIT-ROBOT      recorded at VL-LP-020 (scan) corrected" \
        in out.splitlines()
    assert "counted     JMP-WIRE         38 pcs, stock 0, difference +38 corrected" \
        in out.splitlines()
    assert _run("inventory", "audit", "report", aid) == out
    out = _run("inventory", "audit", "apply", aid, code=1)
    assert "corrections are applied once" in out
