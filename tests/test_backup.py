"""Backups of the hub's SQLite database: a copy taken while the real ingest pipeline writes
in another thread holds every reading committed before it (and no half batch), restores
and migrates; rotation over a month of files keeps 7 daily and 4 weekly copies and never
touches other files; the nightly job's effect through its JobSpec (and what it says on
PostgreSQL); ``labhub backup``, ``labhub db upgrade`` leaving a copy first."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger
from typer.testing import CliRunner
from waiting import wait_for

from labhub import backup, db
from labhub.cli import app
from labhub.jobs import backups as backup_jobs
from labhub.scheduler.catalog import job_specs
from labhub.scheduler.jobs import JobContext
from labhub.settings import Settings
from labhub.wiring import Hub, SchemaOutdatedError
from sensors.pipeline import IngestPipeline
from sensors.samples import Sample, now_us
from sensors.storage import ReadingStore

PER_SUBMISSION = 50  # readings a producer's submission carries (one batch of its own)
OLD_REVISION = "0021_network_central"


@pytest.fixture
def database(sqlite_template: Path, tmp_path: Path) -> Path:
    """A migrated SQLite hub database of the test's own (backups copy SQLite; PostgreSQL
    is pg_dump's)."""
    path = tmp_path / "labhub.db"
    shutil.copy(sqlite_template, path)
    return path


def test_a_backup_during_ingest_holds_every_reading_committed_before_it(
        database: Path, tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{database}")
    folder = tmp_path / "copies"
    folder.mkdir()
    base = now_us() - 86_400_000_000
    committed: list[int] = []  # submissions durable so far, in order
    lock = threading.Lock()
    stop = threading.Event()

    submitting = [0]  # the submission being made now (set before it is submitted)

    def produce(pipeline: IngestPipeline) -> None:
        k = 0
        while not stop.is_set():
            with lock:
                submitting[0] = k
            samples = [Sample("temp", float(k), base + (k * PER_SUBMISSION + i) * 1000)
                       for i in range(PER_SUBMISSION)]
            pipeline.submit(samples, device="kit-a", source="test", flush=True).wait(10)
            with lock:
                committed.append(k)
            k += 1

    steps = 0
    before: list[int] = []
    during: list[int] = []

    def between_steps() -> bool:
        # At the copy's third step, ingest must go on: two more submissions commit while
        # the copy holds its read transaction (WAL: readers never block the writer).
        nonlocal steps
        steps += 1
        if steps == 3:
            # Only submissions begun after this moment are surely after the copy's start:
            # one submitted earlier may have committed before it and been noted late.
            with lock:
                current = submitting[0]
            wait_for(lambda: len(committed) >= current + 3, 10, "ingest during the backup")
            with lock:
                during.extend(k for k in committed if k > current)
        return False

    with IngestPipeline(ReadingStore(engine), flush_interval_s=0.005) as pipeline:
        writer = threading.Thread(target=produce, args=(pipeline,), name="producer")
        writer.start()
        try:
            wait_for(lambda: len(committed) >= 20, 10, "the first submissions")
            with lock:
                before = list(committed)  # durable before the backup started
            made = backup.take_backup(database, folder, pages_per_step=8,
                                      stopping=between_steps)
        finally:
            stop.set()
            writer.join(10)
    engine.dispose()
    assert steps >= 3 and during, "the copy was made in steps while ingest went on"
    assert made.path.parent == folder and made.revision == db.head_revision(engine)
    assert backup.parse_name(made.path) is not None and not list(folder.glob(".labhub-*"))

    target = tmp_path / "restored" / "labhub.db"
    restored = backup.restore(made.path, target)
    assert restored.kept_aside is None and restored.revision == made.revision
    conn = sqlite3.connect(target)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        rows = conn.execute("SELECT r.ts FROM readings r JOIN series s ON s.id = r.series_id"
                            " WHERE s.device = 'kit-a'").fetchall()
    finally:
        conn.close()
    per: dict[int, int] = {}
    for (ts,) in rows:
        k = (ts - base) // 1000 // PER_SUBMISSION
        per[k] = per.get(k, 0) + 1
    assert set(before) <= set(per), "a reading committed before the backup is missing"
    assert all(n == PER_SUBMISSION for n in per.values()), "a half-written submission"
    assert not set(during) & set(per), "the copy is the snapshot of its start"


def test_a_stopped_backup_leaves_no_file(database: Path, tmp_path: Path) -> None:
    folder = tmp_path / "copies"
    folder.mkdir()
    (folder / "notes.txt").write_text("the lab's own file")
    with pytest.raises(backup.BackupError, match="stopped"):
        backup.take_backup(database, folder, pages_per_step=4, stopping=lambda: True)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    with pytest.raises(backup.BackupError, match="not there"):
        backup.take_backup(database, tmp_path / "no-stick")


def _month_of_files(folder: Path, zone: ZoneInfo) -> list[Path]:
    """Nightly copies at 02:00 and manual ones at 15:00 (the lab's time) from 1 November
    to 5 December 2026, as the hub names them."""
    made = []
    day = datetime(2026, 11, 1, tzinfo=zone)
    while day.date() <= datetime(2026, 12, 5).date():
        for hour in (2, 15):
            taken = day.replace(hour=hour).astimezone(UTC)
            path = folder / backup.backup_name(taken, "0025_schedules")
            path.write_bytes(b"")
            made.append(path)
        day += timedelta(days=1)
    return made


def test_rotation_keeps_7_daily_and_4_weekly_over_a_month(tmp_path: Path) -> None:
    zone = ZoneInfo("America/Bogota")  # 15:00 there is 20:00 UTC: days are the lab's
    folder = tmp_path / "usb"
    folder.mkdir()
    _month_of_files(folder, zone)
    upgrade = folder / backup.backup_name(datetime(2026, 11, 3, 9, tzinfo=UTC), "0021_x",
                                          pre_upgrade=True)
    upgrade.write_bytes(b"")
    others = ["notes.txt", "labhub.db", "labhub-backup.db", "labhub-2026-11-01.db"]
    for name in others:
        (folder / name).write_text("not LabHub's backup")

    kept, deleted = backup.rotate(folder, keep_daily=7, keep_weekly=4, zone=zone)

    def local(b: backup.BackupFile) -> str:
        return b.taken_at.astimezone(zone).strftime("%m-%d %H")

    nightly = [local(b) for b in kept if not b.pre_upgrade]
    # The newest of each of the last 7 days (the 15:00 copies), then the newest of ISO
    # weeks 47 and 46 (weeks 49 and 48 already have theirs among the days).
    assert nightly == ["12-05 15", "12-04 15", "12-03 15", "12-02 15", "12-01 15",
                       "11-30 15", "11-29 15", "11-22 15", "11-15 15"]
    assert any(b.path == upgrade for b in kept)  # copies before an upgrade stay
    assert len(deleted) == 70 - 9
    left = {p.name for p in folder.iterdir()}
    assert set(others) <= left and upgrade.name in left
    assert len(left) == len(others) + 1 + 9
    # Again: nothing more to delete.
    assert backup.rotate(folder, keep_daily=7, keep_weekly=4, zone=zone)[1] == []


def test_the_backup_jobs_spec_follows_the_settings(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, backup_at="02:30", timezone="America/Lima")
    spec = {s.id: s for s in job_specs(settings)}["backup"]
    assert isinstance(spec.trigger, CronTrigger)
    assert str(spec.trigger.timezone) == "America/Lima"
    first = spec.trigger.get_next_fire_time(None, datetime(2026, 12, 5, 12, tzinfo=UTC))
    assert first is not None and first.astimezone(ZoneInfo("America/Lima")).strftime(
        "%d %H:%M") == "06 02:30"
    # A laptop asleep at 02:30 that wakes at 10:00 runs it once.
    assert spec.coalesce and spec.misfire_grace_s >= 8 * 3600 and spec.retries >= 1
    assert "disk-guard" in {s.id for s in job_specs(settings)}


def test_the_nightly_job_copies_and_rotates(database_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url,
                        backup_dir=tmp_path / "usb", backup_keep_daily=2,
                        backup_keep_weekly=1)
    hub = Hub(settings)
    run = {s.id: s for s in job_specs(settings)}["backup"].run  # as the scheduler calls it
    try:
        ctx = JobContext(hub=hub, job_id="backup")
        if backup.sqlite_file(database_url) is None:
            assert run(ctx) == backup_jobs.PG_DUMP_NOTE
            assert not settings.resolved_backup_dir().exists()
            return
        with pytest.raises(backup.BackupError, match="USB stick"):  # not plugged in
            run(ctx)
        folder = settings.resolved_backup_dir()
        folder.mkdir()
        for days in (1, 2, 3, 20):
            taken = datetime.now(UTC) - timedelta(days=days)
            (folder / backup.backup_name(taken, "0024_reminders")).write_bytes(b"")
        result = run(ctx)
    finally:
        hub.engine.dispose()
    assert result.startswith("backed up ") and "integrity ok" in result, result
    left = backup.list_backups(folder)
    assert "2 copies kept, 3 old ones deleted" in result, result
    newest = left[0]
    assert newest.revision == db.head_revision(hub.engine) and len(left) == 2
    assert backup.check_copy(newest.path) == newest.revision


@pytest.fixture(scope="module")
def old_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hub database at an older schema revision, with a site in it."""
    path = tmp_path_factory.mktemp("old") / "labhub.db"
    engine = db.make_engine(f"sqlite:///{path}")
    db.upgrade(engine, OLD_REVISION)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO series (device, channel, created_at) "
                             "VALUES ('kit-old', 'temp', 1)")
    engine.dispose()
    return path


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("LABHUB_DATA_DIR", str(tmp_path / "data"))
    return CliRunner()


def test_db_upgrade_backs_up_first(old_database: Path, tmp_path: Path, cli: CliRunner,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    database = tmp_path / "labhub.db"
    database.write_bytes(old_database.read_bytes())
    monkeypatch.setenv("LABHUB_DATABASE_URL", f"sqlite:///{database}")
    result = cli.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    copies = backup.list_backups(tmp_path / "data" / "backups")
    assert len(copies) == 1 and copies[0].pre_upgrade and copies[0].revision == OLD_REVISION
    assert f"backed up first to {copies[0].path}" in result.output
    assert backup.check_copy(copies[0].path) == OLD_REVISION
    # Up to date: nothing to back up.
    again = cli.invoke(app, ["db", "upgrade"])
    assert again.exit_code == 0 and "backed up" not in again.output
    assert len(backup.list_backups(tmp_path / "data" / "backups")) == 1


def test_db_upgrade_without_a_copy_stops_unless_told_not_to_copy(
        old_database: Path, tmp_path: Path, cli: CliRunner,
        monkeypatch: pytest.MonkeyPatch) -> None:
    database = tmp_path / "labhub.db"
    database.write_bytes(old_database.read_bytes())
    monkeypatch.setenv("LABHUB_DATABASE_URL", f"sqlite:///{database}")
    stick = tmp_path / "media" / "LABHUB-BACKUP"  # a backup stick not plugged in
    monkeypatch.setenv("LABHUB_BACKUP_DIR", str(stick))
    result = cli.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 1
    assert f"labhub db upgrade: the backup folder {stick} is not there" in result.output
    engine = db.make_engine(f"sqlite:///{database}")
    try:
        assert db.current_revision(engine) == OLD_REVISION  # not upgraded without a copy
        forced = cli.invoke(app, ["db", "upgrade", "--no-backup"])
        assert forced.exit_code == 0, forced.output
        assert "backed up" not in forced.output and not stick.exists()
        assert db.current_revision(engine) == db.head_revision(engine)
    finally:
        engine.dispose()


def test_a_hub_that_upgrades_its_database_at_start_backs_it_up_first(
        old_database: Path, tmp_path: Path) -> None:
    database = tmp_path / "labhub.db"
    database.write_bytes(old_database.read_bytes())
    url = f"sqlite:///{database}"
    # The backup folder is a stick that is not plugged in: the hub does not start, and
    # the database stays as it was.
    stick = tmp_path / "media" / "LABHUB-BACKUP"
    unplugged = Settings(data_dir=tmp_path / "data", database_url=url, serial_scan=False,
                         backup_dir=stick, jobs_enabled=False)
    with pytest.raises(SchemaOutdatedError, match="could not be copied before its upgrade"):
        Hub(unplugged).start(hardware=False).close()
    engine = db.make_engine(url)
    try:
        assert db.current_revision(engine) == OLD_REVISION
    finally:
        engine.dispose()
    # Plugged in: the copy first, at the old revision, then the upgrade.
    stick.mkdir(parents=True)
    hub = Hub(unplugged).start(hardware=False)
    try:
        assert db.current_revision(hub.engine) == db.head_revision(hub.engine)
    finally:
        hub.close()
    (copy,) = backup.list_backups(stick)
    assert copy.pre_upgrade and copy.revision == OLD_REVISION
    assert backup.check_copy(copy.path) == OLD_REVISION
    # Up to date: the next start copies nothing.
    Hub(unplugged).start(hardware=False).close()
    assert len(backup.list_backups(stick)) == 1


def test_labhub_backup_to_a_folder(database_url: str, tmp_path: Path, cli: CliRunner,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABHUB_DATABASE_URL", database_url)
    result = cli.invoke(app, ["backup", "--to", str(tmp_path / "stick")])
    if backup.sqlite_file(database_url) is None:
        assert result.exit_code == 1 and "pg_dump" in result.output
        return
    assert result.exit_code == 0, result.output
    (made,) = backup.list_backups(tmp_path / "stick")
    assert f"backed up to {made.path}" in result.output and "integrity ok" in result.output
