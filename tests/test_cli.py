"""The labhub command on every backend: migrate, import SD-card logs, export, rejects."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from labhub import db
from labhub.cli import app
from labhub.settings import Settings

SMART_CITIZEN = """TIME,BATT,EXT_PM_25,HUM,TEMP
ISO 8601 UTC Time,%,ug/m3,%,C
Time,Battery,PM 2.5,Humidity,Temperature
,10,89,56,55
2026-03-01T10:00:00Z,98,12.5,55.1,21.4
2026-03-01T10:01:00Z,98,null,55.3,21.6
"""


@pytest.fixture
def run(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("LABHUB_DATABASE_URL", database_url)
    monkeypatch.setenv("LABHUB_DATA_DIR", str(tmp_path / "data"))
    return CliRunner()


def _ok(runner: CliRunner, *args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_db_upgrade_and_current(run: CliRunner, database_url: str) -> None:
    engine = db.make_engine(database_url)
    head = db.head_revision(engine)
    engine.dispose()
    assert head is not None and head[:4].isdigit()  # numbered: 0001_readings, 0010_...
    assert f"database at revision {head}" in _ok(run, "db", "upgrade")
    out = _ok(run, "db", "current")
    assert f"current: {head}" in out and f"newest:  {head}" in out


def test_import_a_plotter_log_twice_and_see_its_rejects(run: CliRunner, tmp_path: Path) -> None:
    log = tmp_path / "DATALOG.TXT"
    log.write_text("temp:21.5,hum:40\ntemp:21.6,hum:41\ntemp:oops,hum:42\n\ntemp:21.8,hum:43\n",
                   encoding="utf-8")
    args = ["import", str(log), "--device", "uno-sd", "--format", "plotter",
            "--start", "2026-03-01T08:00:00Z", "--interval", "60"]
    out = _ok(run, *args)
    assert "5 lines: 6 readings imported, 0 already stored, 0 suspect, 1 rejected" in out
    assert "DATALOG.TXT line 3" in out and "oops" in out
    again = _ok(run, *args)
    assert "0 readings imported, 6 already stored" in again
    rejects = _ok(run, "rejects")
    assert "DATALOG.TXT line 3" in rejects and "import" in rejects
    assert "2 rejected in all" in rejects
    assert "bytes, sha256 " in rejects  # the whole body's size and digest, not only its start

    exported = _ok(run, "export", "--device", "uno-sd", "--lang", "en", "--tz", "UTC")
    table = list(csv.reader(io.StringIO(exported)))
    assert table[0] == ["time (UTC)", "uno-sd Relative humidity (%)",
                        "uno-sd Temperature (°C)"]
    assert table[1] == ["2026-03-01T08:00:00Z", "40.0", "21.5"]
    # The rejected third line keeps its place in time: the fourth reading is 3 minutes in.
    assert table[3] == ["2026-03-01T08:03:00Z", "43.0", "21.8"]


def test_import_a_csv_with_a_time_column_and_decimal_commas(
    run: CliRunner, tmp_path: Path
) -> None:
    log = tmp_path / "log.csv"
    log.write_text("time;temp;soil\n2026-03-01T10:00:00Z;21,5;33\n"
                   "2026-03-01T10:05:00Z;22,0;\n", encoding="utf-8")
    out = _ok(run, "import", str(log), "--device", "huerta")
    assert "3 readings imported" in out
    exported = _ok(run, "export", "--device", "huerta", "--delimiter", "semicolon",
                   "--decimal", "comma", "--lang", "es", "--tz", "UTC")
    lines = exported.splitlines()
    # "soil" without a unit may be a raw count: a plain number, named as sent.
    assert lines[0] == "fecha y hora (UTC);huerta soil;huerta Temperatura (°C)"
    assert lines[1:] == ["2026-03-01T10:00:00Z;33,0;21,5", "2026-03-01T10:05:00Z;;22,0"]


def test_import_a_smart_citizen_card(run: CliRunner, tmp_path: Path) -> None:
    log = tmp_path / "SC.CSV"
    log.write_text(SMART_CITIZEN, encoding="utf-8")
    out = _ok(run, "import", str(log), "--device", "sck-21")
    assert "7 readings imported" in out
    exported = _ok(run, "export", "--device", "sck-21", "--channel", "TEMP", "-o",
                   str(tmp_path / "out.csv"), "--tz", "utc")
    assert exported == ""
    text = (tmp_path / "out.csv").read_text(encoding="utf-8")
    assert text.splitlines()[1:] == ["2026-03-01T10:00:00Z,21.4", "2026-03-01T10:01:00Z,21.6"]


def test_lines_without_times_need_a_start(run: CliRunner, tmp_path: Path) -> None:
    log = tmp_path / "plain.txt"
    log.write_text("temp:21.5\n", encoding="utf-8")
    result = run.invoke(app, ["import", str(log), "--device", "d"])
    assert result.exit_code == 2
    assert "carry no time" in result.output and "--start" in result.output


def test_export_of_nothing_says_so(run: CliRunner) -> None:
    _ok(run, "db", "upgrade")
    result = run.invoke(app, ["export", "--device", "nobody"])
    assert result.exit_code == 1 and "no stored series match" in result.output


@pytest.mark.postgres
def test_import_checks_the_database_as_the_server_does(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``labhub import`` builds the server's hub: on a PostgreSQL database whose schema is
    not up to date it says so, as ``labhub serve`` does, and writes nothing."""
    name = f"labhub_test_empty_{uuid.uuid4().hex[:8]}"
    admin = create_engine(make_url(postgres_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
        monkeypatch.setenv("LABHUB_DATABASE_URL", url)
        monkeypatch.setenv("LABHUB_DATA_DIR", str(tmp_path / "data"))
        log = tmp_path / "log.txt"
        log.write_text("temp:21.5\n", encoding="utf-8")
        result = CliRunner().invoke(app, ["import", str(log), "--device", "d", "--start",
                                          "2026-03-01T10:00:00Z", "--interval", "1"])
        assert result.exit_code == 2, result.output
        assert "run `labhub db upgrade` first" in result.output
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_import_reads_times_without_a_zone_in_the_labs_zone(
    run: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A logger's clock keeps local time: zone-less times are read in `--tz`, or else in
    the `timezone` setting; a name that is not a zone is refused before anything is read."""
    log = tmp_path / "log.csv"
    log.write_text("time,temp\n2026-03-01 09:00:00,21.5\n", encoding="utf-8")
    assert "1 readings imported" in _ok(run, "import", str(log), "--device", "lima",
                                        "--tz", "America/Lima")
    monkeypatch.setenv("LABHUB_TIMEZONE", "America/Sao_Paulo")
    assert "1 readings imported" in _ok(run, "import", str(log), "--device", "sp")
    exported = {
        device: _ok(run, "export", "--device", device).splitlines()[1].split(",")[0]
        for device in ("lima", "sp")
    }
    # The export is in the lab's zone too (here Sao Paulo's), unless --tz says otherwise.
    assert exported == {"lima": "2026-03-01T11:00:00-03:00", "sp": "2026-03-01T09:00:00-03:00"}
    assert _ok(run, "export", "--device", "lima", "--tz", "local").splitlines()[1].startswith(
        "2026-03-01T11:00:00-03:00,")
    assert _ok(run, "export", "--device", "lima", "--tz", "UTC").splitlines()[1].startswith(
        "2026-03-01T14:00:00Z,")
    refused = run.invoke(app, ["import", str(log), "--device", "x", "--tz", "Mars/Olympus"])
    assert refused.exit_code == 2
    assert "--tz 'Mars/Olympus' is not a time zone" in refused.output


def test_control_characters_from_outside_are_printed_escaped(
    run: CliRunner, tmp_path: Path
) -> None:
    # A device named with terminal escapes (ESC, a C1 CSI, a right-to-left override) is
    # refused and kept as a dead letter; `labhub rejects` shows its name as text.
    device = "uno\x1b[2J\x9b31m\u202e"
    log = tmp_path / "DATALOG.TXT"
    log.write_text("temp:21.5\n", encoding="utf-8")
    _ok(run, "import", str(log), "--device", device, "--format", "plotter",
        "--start", "2026-03-01T08:00:00Z", "--interval", "60")
    out = _ok(run, "rejects")
    assert "uno\\x1b[2J\\x9b31m\\u202e" in out, out
    assert not {"\x1b", "\x9b", "\u202e"} & set(out)


def test_every_command_prints_through_the_escaping_helpers() -> None:
    # One printing path (labhub.cli_common.echo and secho) for every command module.
    for module in Path(app.registered_commands[0].callback.__code__.co_filename).parent.glob(
        "cli*.py"
    ):
        if module.name == "cli_common.py":
            continue
        source = module.read_text(encoding="utf-8")
        for raw in ("typer.echo(", "typer.secho(", "print(", "click.echo("):
            assert raw not in source, f"{module.name} prints with {raw} (use cli_common)"
# --- which database, and reading a series ------------------------------------------------


def test_reads_never_create_a_database_and_say_which_one_they_would_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("LABHUB_DATA_DIR", str(data))
    monkeypatch.setenv("LABHUB_CONFIG", os.devnull)
    monkeypatch.delenv("LABHUB_DATABASE_URL", raising=False)
    runner = CliRunner()
    lab_db = data / "labhub.db"
    for args in (["inventory", "sites"], ["inventory", "assets"], ["export", "--run", "x"],
                 ["rejects"], ["readings", "station"], ["inventory", "loans"],
                 ["inventory", "export", "sites"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1, (args, result.output)
        assert f"there is no database at {lab_db} (the lab's database)" in result.output, args
        assert "labhub db upgrade" in result.output and "Traceback" not in result.output
        assert not lab_db.exists() and not data.exists(), args
    current = _ok(runner, "db", "current")
    assert f"database: {lab_db} (the lab's database)" in current and "current: none" in current
    assert not lab_db.exists()


def test_a_database_without_labhub_tables_is_named_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty.db"
    sqlite_file = sqlite3.connect(empty)
    sqlite_file.execute("CREATE TABLE notes (x TEXT)")
    sqlite_file.close()
    monkeypatch.setenv("LABHUB_DATABASE_URL", f"sqlite:///{empty}")
    monkeypatch.setenv("LABHUB_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    for args in (["inventory", "sites"], ["export", "--run", "x"], ["readings", "d/t"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1, (args, result.output)
        assert (f"the database at {empty} (the database_url setting) has no LabHub tables: "
                "run `labhub db upgrade`") in result.output, args
        assert result.exception is None or isinstance(result.exception, SystemExit)
    # A command that writes migrates the embedded database, as the hub does.
    sites_csv = tmp_path / "sites.csv"
    sites_csv.write_text("code,name,kind\nVL,ValleLabs,network\n", encoding="utf-8")
    _ok(runner, "inventory", "import", "sites", str(sites_csv))
    assert "VL" in _ok(runner, "inventory", "sites")


def test_readings_of_a_series_since_a_relative_time(
    run: CliRunner, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from labhub.wiring import Hub
    from labtext.times import format_local, now_us
    from sensors.samples import Sample

    monkeypatch.setenv("LABHUB_TIMEZONE", "America/Santiago")
    _ok(run, "db", "upgrade")
    now = now_us() // 1_000_000 * 1_000_000
    hub = Hub(Settings(database_url=database_url)).start(hardware=False)
    try:
        samples = [Sample(channel=channel, value=value, ts=now - age * 60_000_000, unit=unit)
                   for age, value in ((150, 20.0), (45, 21.5), (5, 22.0))
                   for channel, unit in (("temp", "degC"), ("hum", "%"))]
        hub.pipeline.submit(samples, device="st", source="http", flush=True).wait(10)
    finally:
        hub.close()
    table = _ok(run, "readings", "st", "--start", "-1h").splitlines()
    # The export's header words, in the lab's language (Spanish here), the device's name
    # left out: one device.
    assert table[0].split() == ["fecha", "y", "hora", "(America/Santiago)", "Humedad",
                                "relativa", "(%)", "Temperatura", "(°C)"]
    assert [line.split() for line in table[1:3]] == [
        [format_local(now - 45 * 60_000_000, "America/Santiago"), "21.5", "21.5"],
        [format_local(now - 5 * 60_000_000, "America/Santiago"), "22", "22"],
    ]
    assert table[3] == "2 rows"
    assert "(°C)" in _ok(run, "readings", "st/temp", "--start", "-3h", "--format", "csv",
                         "--lang", "en")
    one = list(csv.reader(io.StringIO(_ok(run, "readings", "st/temp", "--start", "-3h",
                                          "--end", "-30m", "--format", "csv", "--tz", "UTC"))))
    assert [row[1] for row in one[1:]] == ["20.0", "21.5"] and one[0][0] == "fecha y hora (UTC)"
    document = json.loads(_ok(run, "readings", "st", "temp", "--start", "-10m",
                              "--format", "json"))
    assert [row[1:] for row in document["rows"]] == [[22.0]]
    assert document["rows"][0][0] == format_local(now - 5 * 60_000_000, "America/Santiago")
    missing = run.invoke(app, ["readings", "nobody"])
    assert missing.exit_code == 1 and "no stored series for device 'nobody'" in missing.output
    bad = run.invoke(app, ["readings", "st", "--start", "-1y"])
    assert bad.exit_code == 2 and "-30m, -1h, -2d or -1w" in bad.output
