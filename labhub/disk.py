"""The disk guard: free space on the data's disk, and what the hub stops keeping when it runs
low (docs/operations.md, "The disk guard").

It looks at the file system of the hub's database (the folder of its SQLite file; the
``data_dir`` on PostgreSQL) and of the backup folder. Below ``disk_min_free_mb`` on the
data's disk it warns: in ``Hub.health()`` (:meth:`DiskGuard.status`), in a banner on every
page for signed-in staff, and in the log, once when space runs low and once when it is
back (not at every check). While low, dead letters are stored without their bodies
(:meth:`DiskGuard.keep_bodies` is the hook the ingest pipeline is given): their reason,
size and digest are kept and they are still counted. The guard deletes nothing: readings,
synced or not, and backups stay; the nightly backup refuses to fill the disk itself.

Space is back once free space is above the threshold by :data:`RECOVER_MARGIN` (so a disk
hovering at the line does not warn and recover at every check). The job "disk-guard"
checks every ``disk_check_every_s``; the guard also checks when it is built (the hub's
start) and whenever it is asked and its last check is older than that interval, so a hub
without the scheduler (``jobs_enabled = false``, ``labhub import``) is guarded too.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labhub.access.permissions import P
from labhub.settings import Settings

if TYPE_CHECKING:
    from labhub.access.caller import Caller

log = logging.getLogger(__name__)

MB = 1_000_000
RECOVER_MARGIN = 0.05  # back to normal at 5 % above the threshold (and at least 1 MB above)


@dataclass(frozen=True, slots=True)
class DiskCheck:
    """One file system at one check."""

    path: Path  # the folder looked at
    free_mb: int
    total_mb: int


def _existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def look(path: Path) -> DiskCheck:
    """Free and total space of the file system holding ``path`` (or its nearest existing
    parent: a data folder not made yet is on its parent's disk)."""
    usage = shutil.disk_usage(_existing(path))
    return DiskCheck(path, usage.free // MB, usage.total // MB)


def data_folder(settings: Settings) -> Path:
    """Where the hub's data grows: the folder of its SQLite file, else ``data_dir``."""
    from labhub.backup import sqlite_file

    file = sqlite_file(settings.resolved_database_url())
    return file.parent if file is not None else settings.data_dir


class DiskGuard:
    """What the hub knows of its disk: checked by a job, read by health and the pages.

    Thread-safe: the job checks, web threads and the ingest writer read."""

    def __init__(self, settings: Settings, *, check: bool = True) -> None:
        self.settings = settings
        self.threshold_mb = settings.disk_min_free_mb
        self.every_s = settings.disk_check_every_s
        self._lock = threading.Lock()
        self._low = False
        self._since: datetime | None = None
        self._checked: float | None = None  # monotonic time of the last check
        self._checked_at: datetime | None = None
        self._data: DiskCheck | None = None
        self._backup: DiskCheck | None = None
        self._backup_low = False
        if check:
            self.check()

    # -- checking ------------------------------------------------------------------------

    def check(self) -> dict[str, Any]:
        """Look at the disks now; log a change of state; return :meth:`status`."""
        data = look(data_folder(self.settings))
        backup_dir = self.settings.resolved_backup_dir()
        backup = look(backup_dir) if backup_dir.is_dir() else None  # a stick not plugged in
        threshold = self.threshold_mb
        back_above = threshold + max(1, int(threshold * RECOVER_MARGIN))
        with self._lock:
            was_low = self._low
            if threshold <= 0:
                low = False
            elif was_low:
                low = data.free_mb < back_above
            else:
                low = data.free_mb < threshold
            self._low = low
            now = datetime.now(UTC)
            if low and not was_low:
                self._since = now
            elif not low:
                self._since = None
            self._data, self._backup = data, backup
            backup_low = backup is not None and threshold > 0 and backup.free_mb < threshold
            backup_was_low, self._backup_low = self._backup_low, backup_low
            self._checked, self._checked_at = time.monotonic(), now
        if low and not was_low:
            log.warning("disk space is low: %s MB free on the disk of %s (threshold %s MB, "
                        "disk_min_free_mb); dead letters are kept without their bodies "
                        "until space is back", f"{data.free_mb:,}", data.path,
                        f"{threshold:,}")
        elif was_low and not low:
            log.warning("disk space is back: %s MB free on the disk of %s (threshold %s MB); "
                        "dead letters keep their bodies again", f"{data.free_mb:,}",
                        data.path, f"{threshold:,}")
        if backup is not None and backup_low != backup_was_low:
            if backup_low:
                log.warning("the backup folder %s has %s MB free (threshold %s MB): the "
                            "nightly backup may not fit", backup.path, f"{backup.free_mb:,}",
                            f"{threshold:,}")
            else:
                log.warning("the backup folder %s has room again: %s MB free", backup.path,
                            f"{backup.free_mb:,}")
        return self.status() or {}

    def _fresh(self) -> None:
        """Check again when the last check is older than the job's interval."""
        checked = self._checked
        if checked is None or time.monotonic() - checked >= self.every_s:
            try:
                self.check()
            except OSError as exc:  # a reading of the disk must never fail an ingest
                log.warning("the disk guard could not look at the disk: %s", exc)

    # -- what others read ------------------------------------------------------------------

    def low(self) -> bool:
        """Whether free space on the data's disk is below the threshold."""
        self._fresh()
        return self._low

    def keep_bodies(self) -> bool:
        """Whether dead letters keep their bodies (False once space runs low)."""
        return not self.low()

    def status(self) -> dict[str, Any] | None:
        """The last check, for health and the pages; None before the first."""
        self._fresh()
        with self._lock:
            data, backup = self._data, self._backup
            if data is None:
                return None
            answer: dict[str, Any] = {
                "free_mb": data.free_mb,
                "total_mb": data.total_mb,
                "threshold_mb": self.threshold_mb,
                "low": self._low,
                "since": None if self._since is None else self._since.isoformat(),
                "checked_at": None if self._checked_at is None
                else self._checked_at.isoformat(),
                "backup": None if backup is None else {
                    "free_mb": backup.free_mb, "low": self._backup_low},
            }
        return answer

    def summary(self) -> str:
        """One line for people (the job's result)."""
        status = self.check()
        line = (f"{status['free_mb']:,} MB free on the data's disk (threshold "
                f"{status['threshold_mb']:,} MB){': LOW' if status['low'] else ''}")
        backup = status["backup"]
        if backup is not None:
            line += (f"; {backup['free_mb']:,} MB free in the backup folder"
                     f"{': LOW' if backup['low'] else ''}")
        return line


def page_warning(guard: DiskGuard | None, caller: Caller | None) -> dict[str, Any] | None:
    """What the pages' banner shows a signed-in member of staff (those who may see the
    jobs: teachers, coordinators, admins) while space is low, else None (students and
    visitors see nothing)."""
    if guard is None or caller is None or not caller.has(P.JOBS_READ):
        return None
    status = guard.status()
    return status if status is not None and status["low"] else None
