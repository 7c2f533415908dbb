"""``labhub restore FILE``: refused while a hub (a real process) has the database open, and
done once it is gone, even killed with SIGKILL (the database it left, with its -wal, is
kept aside whole); refused for a copy made by a newer LabHub and for a damaged file,
leaving the database as it was; an older copy is migrated forward."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labhub import backup, db
from labhub.cli import app

OLD_REVISION = "0021_network_central"
HUB = """
import sys
from labhub.settings import Settings
from labhub.wiring import Hub
from sensors.samples import Sample
hub = Hub(Settings(data_dir=sys.argv[1], database_url=sys.argv[2]))
hub.start(hardware=False, jobs=False)
hub.pipeline.submit([Sample("temp", 21.5)], device="kit-live", source="test").wait(10)
print("ready", flush=True)
sys.stdin.read()
"""


def _series(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute("SELECT device FROM series ORDER BY device")]
    finally:
        conn.close()


@pytest.fixture
def lab(sqlite_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
        ) -> tuple[CliRunner, Path, Path]:
    """The hub's database (with kit-copied in it when the copy was taken, kit-after
    since), a checked copy of it, and the ``labhub`` command on them."""
    database = tmp_path / "data" / "labhub.db"
    database.parent.mkdir()
    shutil.copy(sqlite_template, database)
    conn = sqlite3.connect(database)
    conn.execute("INSERT INTO series (device, channel, created_at) VALUES ('kit-copied', "
                 "'temp', 1)")
    conn.commit()
    conn.close()
    (tmp_path / "copies").mkdir()
    copy = backup.take_backup(database, tmp_path / "copies").path
    conn = sqlite3.connect(database)
    conn.execute("INSERT INTO series (device, channel, created_at) VALUES ('kit-after', "
                 "'temp', 2)")
    conn.commit()
    conn.close()
    monkeypatch.setenv("LABHUB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LABHUB_DATABASE_URL", f"sqlite:///{database}")
    return CliRunner(), database, copy


def test_restore_refuses_a_running_hub_and_restores_once_it_is_killed(
        lab: tuple[CliRunner, Path, Path], tmp_path: Path) -> None:
    cli, database, copy = lab
    hub = subprocess.Popen([sys.executable, "-c", HUB, str(database.parent),
                            f"sqlite:///{database}"], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    try:
        assert hub.stdout is not None and hub.stdout.readline() == "ready\n"
        refused = cli.invoke(app, ["restore", str(copy), "--yes"])
        assert refused.exit_code == 1
        assert "is open in a running hub" in refused.output and "stop the hub" in \
            refused.output
        assert sorted(p.name for p in database.parent.iterdir() if p.is_file()) == [
            "labhub.db", "labhub.db-shm", "labhub.db-wal"]
        os.kill(hub.pid, signal.SIGKILL)  # a hub that dies holds nothing any more
        hub.wait(10)
    finally:
        if hub.poll() is None:
            hub.kill()
            hub.wait(10)
        if hub.stdin is not None:
            hub.stdin.close()
        if hub.stdout is not None:
            hub.stdout.close()
    done = cli.invoke(app, ["restore", str(copy), "--yes"])
    assert done.exit_code == 0, done.output
    assert _series(database) == ["kit-copied"]
    (kept,) = database.parent.glob(f"labhub.db.{backup.KEPT_ASIDE}-*[0-9]Z")
    assert f"kept as {kept}" in done.output
    assert Path(f"{kept}-wal").is_file()  # the killed hub's last commits went along
    # Undo: the kept database restored back has the killed hub's last reading too.
    undone = cli.invoke(app, ["restore", str(kept), "--yes"])
    assert undone.exit_code == 0, undone.output
    assert _series(database) == ["kit-after", "kit-copied", "kit-live"]
    assert len(list(database.parent.glob(f"labhub.db.{backup.KEPT_ASIDE}-*"))) == 2


def test_restore_refuses_a_copy_from_a_newer_labhub(lab: tuple[CliRunner, Path, Path]
                                                    ) -> None:
    cli, database, copy = lab
    conn = sqlite3.connect(copy)
    conn.execute("UPDATE alembic_version SET version_num = '0099_teleporters'")
    conn.commit()
    conn.close()
    before = database.read_bytes()
    refused = cli.invoke(app, ["restore", str(copy), "--yes"])
    assert refused.exit_code == 1
    assert "made by a newer LabHub (revision 0099_teleporters); upgrade LabHub first" in \
        refused.output
    assert database.read_bytes() == before and _series(database) == ["kit-after",
                                                                      "kit-copied"]


def test_restore_refuses_a_damaged_file(lab: tuple[CliRunner, Path, Path], tmp_path: Path
                                        ) -> None:
    cli, database, copy = lab
    damaged = tmp_path / "damaged.db"
    data = bytearray(copy.read_bytes())
    page = 4096
    # Every page after the first (the file's header and schema kept) has its b-tree page
    # header overwritten: whatever tables the schema holds, each is damaged where SQLite
    # reads first (random bytes inside a page can land in its unused space and go unseen).
    for at in range(page, len(data), page):
        data[at:at + 12] = b"\xee" * 12
    damaged.write_bytes(bytes(data))
    notes = tmp_path / "notes.db"
    notes.write_text("these are a teacher's notes, not a database\n" * 200)
    for bad in (damaged, notes):
        refused = cli.invoke(app, ["restore", str(bad), "--yes"])
        assert refused.exit_code == 1, refused.output
        assert "damaged" in refused.output or "not a sound database" in refused.output, \
            refused.output
    assert _series(database) == ["kit-after", "kit-copied"]
    assert not list(database.parent.glob("*before-restore*"))


def test_an_older_copy_is_restored_and_migrated_forward(
        lab: tuple[CliRunner, Path, Path], tmp_path: Path) -> None:
    cli, database, _ = lab
    old = tmp_path / "old" / "labhub.db"
    engine = db.make_engine(f"sqlite:///{old}")
    db.upgrade(engine, OLD_REVISION)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO series (device, channel, created_at) "
                             "VALUES ('kit-2025', 'temp', 1)")
    head = db.head_revision(engine)
    engine.dispose()
    copy = backup.take_backup(old, old.parent).path
    assert copy.name.endswith(f"-{OLD_REVISION}.db")
    asked = cli.invoke(app, ["restore", str(copy)], input="n\n")
    assert asked.exit_code == 1 and "nothing changed" in asked.output
    assert _series(database) == ["kit-after", "kit-copied"]
    if os.geteuid() == 0:  # the hub's own user keeps its database when root restores
        os.chown(database, 4321, 4321)
    done = cli.invoke(app, ["restore", str(copy)], input="y\n")
    assert done.exit_code == 0, done.output
    assert f"schema revision {OLD_REVISION}, migrated to {head}" in done.output
    if os.geteuid() == 0:
        assert (database.stat().st_uid, database.stat().st_gid) == (4321, 4321)
    assert _series(database) == ["kit-2025"]
    engine = db.make_engine(f"sqlite:///{database}")
    try:
        assert db.current_revision(engine) == head
    finally:
        engine.dispose()
