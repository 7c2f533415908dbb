"""``labhub inventory import | export | labels`` on every backend: a network imported from
CSV files, a bad file shown as a row-error table with nothing written, ``--only-valid``
and ``--dry-run``, an export that imports back, and a label sheet for a site."""

from __future__ import annotations

import getpass
import re
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from inventory import audits, catalog, stock
from inventory.tables import assets, events, sites
from labhub import db
from labhub.cli import app

SITES = ("code,name,kind,parent,tier\nVL,ValleLabs,network,,\nVL-R1,Valle,region,VL,\n"
         "VL-LP-014,Lab Point Escuela 14,site,VL-R1,lab_point\n"
         "VL-LS-02,Lab Spark Popayán,site,VL-R1,lab_spark\n")
MODELS = "codigo;nombre;categoria\nARD-UNO-R3;Arduino Uno R3;microcontroller_board\n"
ASSETS = "etiqueta,modelo,sede\n" + "".join(
    f"VC-{i:04d},ARD-UNO-R3,{'VL-LP-014' if i <= 30 else 'VL-LS-02'}\n" for i in range(1, 36))
BAD = ("tag,model,site\nVC-0900,ARD-UNO-R3,VL-LP-014\nVC-0001,ARD-UNO-R3,VL-LP-014\n"
       "VC-0901,NOPE,VL-R1\n")


@pytest.fixture
def run(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("LABHUB_DATABASE_URL", database_url)
    monkeypatch.setenv("LABHUB_DATA_DIR", str(tmp_path / "data"))
    return CliRunner()


def _invoke(runner: CliRunner, *args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def _file(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def _count(database_url: str, table: object) -> int:
    engine = db.make_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]
    finally:
        engine.dispose()


def _network(run: CliRunner, tmp_path: Path) -> None:
    out = _invoke(run, "inventory", "import", "sites", _file(tmp_path, "sites.csv", SITES))
    assert "4 rows: 4 sites imported" in out
    out = _invoke(run, "inventory", "import", "models", _file(tmp_path, "m.csv", MODELS))
    assert "1 rows: 1 models imported" in out
    out = _invoke(run, "inventory", "import", "assets", _file(tmp_path, "a.csv", ASSETS))
    assert "35 rows: 35 assets imported" in out
    assert "checking a.csv" in out  # the progress bar's label (stderr is mixed in)


def test_a_network_is_imported_and_labels_printed_for_a_site(
    run: CliRunner, tmp_path: Path, database_url: str,
) -> None:
    _network(run, tmp_path)
    assert _count(database_url, assets) == 35 and _count(database_url, sites) == 4
    pdf = tmp_path / "labels.pdf"
    out = _invoke(run, "inventory", "labels", "--site", "VL-LP-014", "--columns", "3",
                  "--rows", "8", "-o", str(pdf))
    assert f"30 labels on 2 page(s): {pdf}" in out
    assert pdf.read_bytes().startswith(b"%PDF-1.4") and b"/Count 2" in pdf.read_bytes()
    svg = tmp_path / "labels.svg"
    out = _invoke(run, "inventory", "labels", "--site", "VL-R1", "-o", str(svg))
    assert "35 labels on 2 page(s)" in out
    second = tmp_path / "labels-2.svg"
    assert re.findall(r'data-tag="([^"]+)"', second.read_text()) == [
        f"VC-{i:04d}" for i in range(25, 36)]
    out = _invoke(run, "inventory", "labels", "--tag", "VC-0031", "-o", str(tmp_path / "x.png"),
                  code=2)
    assert "the file must end in .pdf or .svg" in out
    out = _invoke(run, "inventory", "labels", "--tag", "NOPE", "-o", str(pdf), code=1)
    assert "no asset with tag 'NOPE'" in out


def test_a_bad_file_shows_its_row_errors_and_imports_nothing(
    run: CliRunner, tmp_path: Path, database_url: str,
) -> None:
    _network(run, tmp_path)
    before = (_count(database_url, assets), _count(database_url, events))
    bad = _file(tmp_path, "bad.csv", BAD)
    out = _invoke(run, "inventory", "import", "assets", bad, code=1)
    lines = [line.rstrip() for line in out.splitlines()]
    assert "   row  column           problem" in lines
    assert ("     3  tag              asset tag 'VC-0001' is already registered in the "
            "database") in lines
    assert "     4  model            no model with code 'NOPE' in the catalog" in lines
    assert "     4  site             assets are kept at lab sites, and 'VL-R1' is a region" \
        in lines
    assert ("3 rows: 2 with errors; nothing imported (fix them, or use --only-valid to "
            "import the valid rows)") in lines
    assert (_count(database_url, assets), _count(database_url, events)) == before

    out = _invoke(run, "inventory", "import", "assets", bad, "--only-valid", "--dry-run")
    assert "3 rows: 1 valid, 2 with errors; dry run, nothing imported" in out
    assert (_count(database_url, assets), _count(database_url, events)) == before
    out = _invoke(run, "inventory", "import", "assets", bad, "--only-valid")
    assert "3 rows: 1 assets imported, 2 rows with errors skipped" in out
    assert (_count(database_url, assets), _count(database_url, events)) == (
        before[0] + 1, before[1] + 1)
    out = _invoke(run, "inventory", "import", "assets",
                  _file(tmp_path, "cols.csv", "tag;modelo;color\n"), code=1)
    assert "cols.csv: row 1: unknown column(s) 'color'" in out
    out = _invoke(run, "inventory", "import", "kits", bad, code=2)
    assert "'kits' is not one of: sites, models, assets" in out


def test_an_export_imports_back(run: CliRunner, tmp_path: Path, database_url: str) -> None:
    _network(run, tmp_path)
    out_file = tmp_path / "export.csv"
    out = _invoke(run, "inventory", "export", "assets", "--site", "VL-LS-02",
                  "--delimiter", "semicolon", "--bom", "-o", str(out_file))
    assert "(5 rows)" in out
    text = out_file.read_bytes().decode("utf-8")
    assert text.startswith("\ufefftag;model;site;serial_number;status;condition;notes\r\n")
    assert text.count("\r\n") == 6
    out = _invoke(run, "inventory", "export", "sites", "--site", "VL-R1")
    assert out.splitlines()[0] == "code,name,kind,parent,tier,rural,latitude,longitude," \
                                  "institution,rollout_status"
    assert out.splitlines()[1].startswith("VL-R1,Valle,region,VL,")
    out = _invoke(run, "inventory", "export", "history", "--subject", "VC-0031")
    assert f",AssetRegistered,VC-0031,labhub CLI ({getpass.getuser()}),,VL-LS-02," in out
    out = _invoke(run, "inventory", "export", "history", code=2)
    assert "history needs --subject" in out
    # The exported file is refused as a whole (every tag is taken), then imports elsewhere.
    out = _invoke(run, "inventory", "import", "assets", str(out_file), code=1)
    assert "5 rows: 5 with errors; nothing imported" in out
    _invoke(run, "inventory", "export", "models", "-o", str(tmp_path / "models.csv"))
    _invoke(run, "inventory", "export", "sites", "-o", str(tmp_path / "sites.csv"))
    other = tmp_path / "other.db"
    run2 = CliRunner(env={"LABHUB_DATABASE_URL": f"sqlite:///{other}"})
    for kind in ("sites", "models"):
        _invoke(run2, "inventory", "import", kind, str(tmp_path / f"{kind}.csv"))
    out = _invoke(run2, "inventory", "import", "assets", str(out_file))
    assert "5 rows: 5 assets imported" in out
    again = tmp_path / "again.csv"
    _invoke(run2, "inventory", "export", "assets", "--delimiter", "semicolon", "--bom", "-o",
            str(again))
    assert again.read_bytes() == out_file.read_bytes()


def test_an_audits_count_lines_export(run: CliRunner, tmp_path: Path, database_url: str) -> None:
    _network(run, tmp_path)
    engine = db.make_engine(database_url)
    try:
        with engine.begin() as conn:
            catalog.create_model(conn=conn, code="JMP-WIRE", name="Jumper wire",
                                 category="consumable", tracking="counted", unit="pcs",
                                 by="Ana")
            stock.receive(conn=conn, site_code="VL-LP-014", model_code="JMP-WIRE",
                          quantity=40, by="Ana")
            audit = audits.start_audit(conn=conn, site="VL-LP-014", by="Marta").uuid
            audits.record_count(conn=conn, audit_uuid=audit, model_code="JMP-WIRE",
                                quantity=42, by="Marta")
    finally:
        engine.dispose()
    out = _invoke(run, "inventory", "export", "audit-counts", "--audit", audit, code=1)
    assert f"audit {audit} is still open" in out
    _invoke(run, "inventory", "audit", "finish", audit)
    out_file = tmp_path / "counts.csv"
    out = _invoke(run, "inventory", "export", "audit-counts", "--audit", audit,
                  "--delimiter", "semicolon", "-o", str(out_file))
    assert "(1 rows)" in out
    assert out_file.read_bytes().decode("utf-8") == (
        "audit;site;model;unit;expected;counted;difference;corrected_at\r\n"
        f"{audit};VL-LP-014;JMP-WIRE;pcs;40;42;2;\r\n")
    out = _invoke(run, "inventory", "export", "audit-counts", code=2)
    assert "audit-counts needs --audit AUDIT_ID" in out
