"""Backups of an embedded (SQLite) hub database, their rotation, and restoring one.

A backup is an online copy: SQLite's backup API copies the database page by page while
the hub keeps ingesting. The copy runs inside one read transaction on its own connection,
so in WAL mode it is a consistent snapshot of the moment it started (every reading
committed before it is in the copy, none half-written) and the writer is never blocked;
the pages go in steps of :data:`PAGES_PER_STEP`, between which a closing hub can stop it.
The copy is written under a temporary name (``.labhub-….partial``), switched to a
self-contained file (no ``-wal`` beside it), checked with ``PRAGMA integrity_check`` and
its schema revision read back from it; only then is it renamed to its final name::

    labhub-20261205T020000Z-0025_schedules.db            (nightly or `labhub backup`)
    labhub-20261205T020000Z-0025_schedules-pre-upgrade.db (`labhub db upgrade`)

A copy that fails its check is deleted and the backup fails. Rotation keeps the newest
copy of each of the last ``backup_keep_daily`` days and of the last ``backup_keep_weekly``
ISO weeks (days and weeks in the lab's time zone) and deletes the other nightly copies.
It deletes only files with the name above, so the backup folder can be a USB stick that
holds other things; copies taken before an upgrade are never rotated away.

Restoring puts a copy in place of the database of a stopped hub. Whether the hub is
stopped is asked of SQLite itself (:func:`database_in_use`): every process that has the
database open in WAL mode holds a shared lock on one byte of its ``-shm`` file (the "DMS"
lock of SQLite's WAL format), which the kernel drops when the process ends, however it
ends; ``labhub serve``, ``labhub demo``, an import under way, all hold it. The copy is
checked, refused when its schema is newer than this LabHub knows, the current database is
kept aside (renamed, with its ``-wal``), and the copy is migrated forward.

PostgreSQL deployments are backed up with ``pg_dump`` (docs/operations.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import sqlite3
import struct
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from labhub import db

log = logging.getLogger(__name__)

# 1,024 pages of 4 KiB: 4 MiB a step, ~10-40 ms on an SD card; a closing hub waits at most
# that long for the backup to stop.
PAGES_PER_STEP = 1024
BUSY_TIMEOUT_S = 30.0  # the source's read transaction waits this long for a checkpoint
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"  # no ':' in names: a FAT-formatted USB stick refuses it
PRE_UPGRADE = "pre-upgrade"
# LabHub's own backup files, and nothing else, are ever deleted from the backup folder.
NAME = re.compile(r"labhub-(?P<stamp>\d{8}T\d{6}Z)-(?P<revision>[A-Za-z0-9_]+?)"
                  r"(?:-(?P<kind>pre-upgrade))?\.db")
PARTIAL = re.compile(r"\.labhub-\d{8}T\d{6}Z-\d+\.partial")  # a copy under way (or broken)
KEPT_ASIDE = "before-restore"  # <database>.before-restore-<stamp>: the database a restore replaced

# SQLite's WAL-index file format (https://sqlite.org/walformat.html): every connection that
# has the database open holds a shared lock on byte 128 of the -shm file (the DMS lock).
SHM_DMS_BYTE = 128
_FLOCK = "hhqqi4x"  # Linux struct flock, 64-bit off_t (x86-64, arm64; armhf builds use LFS)
# Files of the shm whose lock belonged to this very process: never closed (closing any file
# of a file system lock's file drops this process's SQLite locks on it).
_HELD_OPEN: list[int] = []


class BackupError(RuntimeError):
    """A backup or a restore could not be made; the message says why, for people."""


class HubRunningError(BackupError):
    """The database is open in a running hub (or another process)."""


class NewerSchemaError(BackupError):
    """The copy was made by a newer LabHub: its schema revision is unknown here."""


@dataclass(frozen=True, slots=True)
class Backup:
    """A checked copy: where it is, when it was taken (UTC), its schema revision."""

    path: Path
    taken_at: datetime
    revision: str
    size: int  # bytes
    seconds: float  # how long the copy and its check took
    check_seconds: float = 0.0  # of which the integrity check


@dataclass(frozen=True, slots=True)
class BackupFile:
    """A file of the backup folder with LabHub's backup name."""

    path: Path
    taken_at: datetime
    revision: str
    pre_upgrade: bool


@dataclass(frozen=True, slots=True)
class Restored:
    """What a restore did."""

    database: Path
    kept_aside: Path | None  # the database that was there, renamed (None: there was none)
    copy_revision: str
    revision: str  # after migrating forward


# -- where ---------------------------------------------------------------------------------


def sqlite_file(url: str) -> Path | None:
    """The file of an SQLite database URL, or None (PostgreSQL, in memory)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database or "")


def backup_name(taken_at: datetime, revision: str, *, pre_upgrade: bool = False) -> str:
    """The file name of a copy taken at ``taken_at`` (UTC) of a database at ``revision``."""
    kind = f"-{PRE_UPGRADE}" if pre_upgrade else ""
    return f"labhub-{taken_at.astimezone(UTC).strftime(STAMP_FORMAT)}-{revision}{kind}.db"


def parse_name(path: Path) -> BackupFile | None:
    """The backup a file's name says it is, or None for any other file."""
    found = NAME.fullmatch(path.name)
    if found is None:
        return None
    taken = datetime.strptime(found["stamp"], STAMP_FORMAT).replace(tzinfo=UTC)
    return BackupFile(path, taken, found["revision"], found["kind"] is not None)


def list_backups(folder: Path) -> list[BackupFile]:
    """LabHub's backup files in ``folder``, newest first (none if it does not exist)."""
    if not folder.is_dir():
        return []
    found = [b for p in folder.iterdir() if p.is_file() and (b := parse_name(p)) is not None]
    return sorted(found, key=lambda b: (b.taken_at, b.path.name), reverse=True)


# -- checking a copy -----------------------------------------------------------------------


def check_copy(path: Path) -> str:
    """Check a copy with ``PRAGMA integrity_check`` and return its schema revision;
    BackupError saying what is wrong (not a database, damaged, not LabHub's)."""
    if not path.is_file():
        raise BackupError(f"{path} is not a file")
    if Path(f"{path}-wal").is_file():
        # A database kept aside by a restore, from a hub that stopped abruptly: its last
        # commits are in its -wal, folded into the file first (SQLite's own recovery).
        try:
            conn = sqlite3.connect(path)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("PRAGMA journal_mode=DELETE")
            conn.close()
        except sqlite3.Error as exc:
            raise BackupError(f"{path} is not a sound database: {exc}") from None
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise BackupError(f"{path} cannot be opened as a database: {exc}") from None
    try:
        problems = [row[0] for row in conn.execute("PRAGMA integrity_check(20)")]
        if problems != ["ok"]:
            raise BackupError(f"{path} is damaged: integrity check says "
                              f"{'; '.join(map(str, problems[:5]))}")
        try:
            rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        except sqlite3.Error:
            raise BackupError(f"{path} is not a LabHub database (no schema revision in "
                              "it)") from None
    except sqlite3.DatabaseError as exc:  # "file is not a database", "malformed"
        raise BackupError(f"{path} is not a sound database: {exc}") from None
    finally:
        conn.close()
    if len(rows) != 1 or not rows[0][0]:
        raise BackupError(f"{path} is not a LabHub database (no schema revision in it)")
    return str(rows[0][0])


def known_revisions() -> set[str]:
    """Every schema revision this LabHub's migrations know."""
    config = Config()
    config.set_main_option("script_location", "labhub:migrations")
    return {r.revision for r in ScriptDirectory.from_config(config).walk_revisions()}


# -- taking a backup -----------------------------------------------------------------------


def free_mb(path: Path) -> int:
    """Free space, in MB, of the file system holding ``path`` (or its nearest existing
    parent)."""
    return shutil.disk_usage(existing_parent(path)).free // 1_000_000


def existing_parent(path: Path) -> Path:
    """``path`` itself, or its nearest parent that exists."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def _same_disk(a: Path, b: Path) -> bool:
    return existing_parent(a).stat().st_dev == existing_parent(b).stat().st_dev


def take_backup(
    database: Path, folder: Path, *, pre_upgrade: bool = False,
    stopping: Callable[[], bool] = lambda: False, keep_free_mb: int = 0,
    pages_per_step: int = PAGES_PER_STEP, now: Callable[[], datetime] | None = None,
) -> Backup:
    """Copy the SQLite database at ``database`` into ``folder`` (which must exist), check
    the copy, and name it (see the module docstring); BackupError when it cannot.

    ``keep_free_mb``: when ``folder`` is on the database's own disk, the copy must leave
    this much free there (the disk guard's threshold); a copy that would not fit is not
    started. ``stopping`` is asked between steps: True stops the copy (deleted)."""
    if not database.is_file():
        raise BackupError(f"there is no database at {database}")
    if not folder.is_dir():
        raise BackupError(f"the backup folder {folder} is not there (a USB stick not "
                          "plugged in? create the folder, or set backup_dir)")
    started = time.monotonic()
    taken_at = (now or (lambda: datetime.now(UTC)))()
    _remove_partials(folder)
    partial = folder / f".labhub-{taken_at.strftime(STAMP_FORMAT)}-{os.getpid()}.partial"
    source = sqlite3.connect(database, isolation_level=None, timeout=BUSY_TIMEOUT_S)
    try:
        source.execute("BEGIN")  # one read transaction: the copy is this moment's snapshot
        source.execute("SELECT count(*) FROM sqlite_master").fetchone()  # ... from here
        page_size, pages, unused = (source.execute(f"PRAGMA {p}").fetchone()[0]
                                    for p in ("page_size", "page_count", "freelist_count"))
        needed_mb = (pages - unused) * page_size // 1_000_000 + 1
        room = free_mb(folder)
        reserve = keep_free_mb if _same_disk(folder, database) else 0
        if room - needed_mb < reserve:
            also = (f" and keep {reserve:,} MB free on the hub's disk (disk_min_free_mb)"
                    if reserve else "")
            raise BackupError(f"no backup made: not enough room in {folder}: the copy needs "
                              f"about {needed_mb:,} MB{also}, and {room:,} MB are free")
        _copy(source, partial, pages_per_step, stopping)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        source.close()
    checking = time.monotonic()
    try:
        try:
            revision = check_copy(partial)
        except BackupError as exc:
            raise BackupError(f"the copy failed its check and was deleted: {exc}") from None
        _sync(partial)
        final = folder / backup_name(taken_at, revision, pre_upgrade=pre_upgrade)
        os.replace(partial, final)
        _sync_folder(folder)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    size = final.stat().st_size
    done = time.monotonic()
    return Backup(final, taken_at, revision, size, done - started, done - checking)


def _copy(source: sqlite3.Connection, target: Path, pages_per_step: int,
          stopping: Callable[[], bool]) -> None:
    """The backup API's copy in steps, then the copy made self-contained (rollback
    journal mode: no -wal file to carry along)."""

    def between_steps(_status: int, _remaining: int, _total: int) -> None:
        if stopping():
            raise BackupError("the backup was stopped: the hub is closing")

    dest = sqlite3.connect(target, isolation_level=None)
    try:
        source.backup(dest, pages=pages_per_step, progress=between_steps)
        dest.execute("PRAGMA journal_mode=DELETE")
    finally:
        dest.close()


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_folder(folder: Path) -> None:
    """Make a rename durable (some file systems, FAT among them, refuse: nothing to do)."""
    with contextlib.suppress(OSError):
        _sync(folder)


def _remove_partials(folder: Path) -> None:
    """Copies a crashed or stopped backup left half-written (never another file)."""
    for path in folder.iterdir():
        if PARTIAL.fullmatch(path.name) and path.is_file():
            try:
                pid = int(path.stem.rsplit("-", 1)[1])
            except (IndexError, ValueError):
                continue
            if pid != os.getpid() and _alive(pid):
                continue  # another process's copy under way
            path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- rotation ------------------------------------------------------------------------------


def plan_rotation(
    backups: Iterable[BackupFile], *, keep_daily: int, keep_weekly: int, zone: tzinfo,
) -> tuple[list[BackupFile], list[BackupFile]]:
    """(kept, deleted): the newest nightly copy of each of the last ``keep_daily`` days
    that have one, and of each of the last ``keep_weekly`` ISO weeks, in ``zone``; a copy
    chosen either way is kept. Copies taken before an upgrade are always kept."""
    nightly = sorted((b for b in backups if not b.pre_upgrade),
                     key=lambda b: (b.taken_at, b.path.name), reverse=True)
    keep: set[Path] = set()
    days: set[object] = set()
    weeks: set[object] = set()
    for b in nightly:
        local = b.taken_at.astimezone(zone)
        day = local.date()
        if day not in days and len(days) < keep_daily:
            days.add(day)
            keep.add(b.path)
        week = local.isocalendar()[:2]
        if week not in weeks and len(weeks) < keep_weekly:
            weeks.add(week)
            keep.add(b.path)
    every = sorted(backups, key=lambda b: (b.taken_at, b.path.name), reverse=True)
    kept = [b for b in every if b.pre_upgrade or b.path in keep]
    deleted = [b for b in nightly if b.path not in keep]
    return kept, deleted


def rotate(folder: Path, *, keep_daily: int, keep_weekly: int, zone: tzinfo
           ) -> tuple[list[BackupFile], list[BackupFile]]:
    """Delete the nightly copies :func:`plan_rotation` does not keep; (kept, deleted)."""
    kept, deleted = plan_rotation(list_backups(folder), keep_daily=keep_daily,
                                  keep_weekly=keep_weekly, zone=zone)
    for b in deleted:
        b.path.unlink(missing_ok=True)
    if deleted:
        log.info("backups rotated in %s: %d kept, %d deleted (%s)", folder, len(kept),
                 len(deleted), ", ".join(b.path.name for b in deleted))
    return kept, deleted


# -- restoring -----------------------------------------------------------------------------


def database_in_use(database: Path) -> bool:
    """Whether some process (this one included) has the SQLite database at ``database``
    open: asks the kernel for a lock that conflicts with SQLite's DMS lock on the -shm
    file (see the module docstring). A hub killed with SIGKILL holds nothing."""
    shm = Path(f"{database}-shm")
    if sys.platform != "linux":  # the lock's layout below is Linux's; elsewhere the last
        return shm.exists()        # connection to close deletes the -shm (a crash leaves it)
    import fcntl
    try:
        fd = os.open(shm, os.O_RDWR)
    except FileNotFoundError:
        return False  # a WAL database that nobody has open has no -shm (or a stale one)
    except OSError:
        fd = os.open(shm, os.O_RDONLY)
    want = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, SHM_DMS_BYTE, 1, 0)
    try:  # an open file description lock sees this process's own locks too
        got = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, want)
    except OSError:
        os.close(fd)
        raise
    in_use = bool(struct.unpack(_FLOCK, got)[0] != fcntl.F_UNLCK)
    if in_use:
        # The lock may be this process's own (a hub in this process): closing this file
        # would drop it, so it stays open for the life of the process.
        _HELD_OPEN.append(fd)
    else:
        os.close(fd)
    return in_use


def check_restorable(copy: Path) -> str:
    """The copy's schema revision, once it is checked and known to this LabHub;
    BackupError or NewerSchemaError otherwise."""
    revision = check_copy(copy)
    if revision not in known_revisions():
        raise NewerSchemaError(f"{copy} was made by a newer LabHub (revision {revision}); "
                               "upgrade LabHub first")
    return revision


def restore(copy: Path, database: Path, *, now: Callable[[], datetime] | None = None
            ) -> Restored:
    """Put the checked ``copy`` in place of the SQLite database at ``database`` (of a
    stopped hub), keep the database that was there aside, and migrate forward."""
    if database_in_use(database):
        raise HubRunningError(f"the database {database} is open in a running hub (or "
                              "another LabHub command): stop the hub first (sudo systemctl "
                              "stop labhub), then restore")
    copy_revision = check_restorable(copy)
    database.parent.mkdir(parents=True, exist_ok=True)
    incoming = database.with_name(f".{database.name}.restoring")
    shutil.copyfile(copy, incoming)
    _sync(incoming)
    kept: Path | None = None
    if database.exists():
        _same_owner(incoming, database)
        stamp = (now or (lambda: datetime.now(UTC)))().strftime(STAMP_FORMAT)
        kept = database.with_name(f"{database.name}.{KEPT_ASIDE}-{stamp}")
        n = 1
        while kept.exists():  # two restores in one second: never replace a kept database
            n += 1
            kept = database.with_name(f"{database.name}.{KEPT_ASIDE}-{stamp}-{n}")
        # Its -wal holds commits of a hub that was killed: it goes along, under the name
        # SQLite looks for beside the kept file, so opening that file recovers them.
        for suffix in ("-wal", "-shm"):
            side = Path(f"{database}{suffix}")
            if side.exists():
                os.replace(side, Path(f"{kept}{suffix}"))
        os.replace(database, kept)
    else:
        for suffix in ("-wal", "-shm"):  # a stray journal must never meet the copy
            Path(f"{database}{suffix}").unlink(missing_ok=True)
    os.replace(incoming, database)
    _sync_folder(database.parent)
    engine = db.make_engine(f"sqlite:///{database}")
    try:
        db.upgrade(engine)
        revision = db.current_revision(engine) or ""
    finally:
        engine.dispose()
    log.info("restored %s into %s (revision %s, now %s); the database before is %s",
             copy, database, copy_revision, revision, kept)
    return Restored(database, kept, copy_revision, revision)


def _same_owner(path: Path, like: Path) -> None:
    """Give ``path`` the owner of ``like`` (a restore run as root into a hub that runs as
    its own user must leave a database that user can write)."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        st = like.stat()
        os.chown(path, st.st_uid, st.st_gid)


def backup_before_upgrade(engine: Engine, folder: Path, *, target: str | None = None,
                          make_folder: bool = False, keep_free_mb: int = 0) -> Backup | None:
    """The one rule before a schema upgrade, for the hub's start and ``labhub db upgrade``
    alike: an SQLite database whose schema is not yet at ``target`` (the newest revision
    by default) is copied into ``folder`` first, as a pre-upgrade copy (made with
    ``make_folder``: the default backup folder). None when there is nothing to copy
    (PostgreSQL, in memory, no file yet, an empty database, already at ``target``).
    BackupError or OSError when the copy cannot be made: the caller does not upgrade."""
    database = engine_file(engine)
    if database is None or not database.is_file():
        return None
    current = db.current_revision(engine)
    if current is None or current == (target or db.head_revision(engine)):
        return None
    if make_folder:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BackupError(f"cannot make the backup folder {folder}: {exc}") from None
    return take_backup(database, folder, pre_upgrade=True, keep_free_mb=keep_free_mb)


def engine_file(engine: Engine) -> Path | None:
    """The SQLite file an engine uses, or None (PostgreSQL, in memory)."""
    return sqlite_file(engine.url.render_as_string(hide_password=False))
