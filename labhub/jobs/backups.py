"""Nightly backups and the disk guard (docs/operations.md, "Backups and restore" and "The
disk guard").

``backup`` copies the hub's SQLite database into the backup folder at ``backup_at`` in the
lab's time zone, checks the copy, and rotates the folder (``labhub.backup``). A laptop
asleep at that time runs it once when it wakes, within :data:`BACKUP_GRACE_S`; a copy that
fails (a USB stick not plugged in, a full disk) is retried :data:`BACKUP_RETRIES` times,
:data:`BACKUP_RETRY_AFTER_S` apart. On PostgreSQL it copies nothing and says so: that
database is backed up by ``pg_dump`` outside the hub.

``disk-guard`` looks at free space every ``disk_check_every_s`` (``labhub.disk``).
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from labhub.backup import engine_file, rotate, take_backup
from labhub.scheduler.jobs import JobContext, JobSpec
from labhub.settings import Settings

# A laptop that slept through 02:00 and wakes by 14:00 backs up once when it wakes; later
# than that the next night's copy is nearer.
BACKUP_GRACE_S = 12 * 3600
BACKUP_RETRIES = 3
BACKUP_RETRY_AFTER_S = 15 * 60  # time to plug the USB stick in, or to free some space
PG_DUMP_NOTE = ("no copy made: this hub's database is PostgreSQL, backed up by pg_dump "
                "(docs/operations.md, Backups and restore)")


def nightly_backup(ctx: JobContext) -> str:
    """Copy the database into the backup folder, check it, rotate the folder."""
    settings = ctx.settings
    database = engine_file(ctx.engine)
    if database is None:
        if ctx.engine.dialect.name == "postgresql":
            return PG_DUMP_NOTE
        return "no copy made: the database is in memory"
    folder = settings.resolved_backup_dir()
    if settings.backup_dir is None:  # the default folder is made; a USB stick's is not
        folder.mkdir(parents=True, exist_ok=True)
    backup = take_backup(database, folder, stopping=ctx.stopping,
                         keep_free_mb=settings.disk_min_free_mb)
    kept, deleted = rotate(folder, keep_daily=settings.backup_keep_daily,
                           keep_weekly=settings.backup_keep_weekly,
                           zone=ZoneInfo(settings.timezone))
    return (f"backed up {backup.size / 1_000_000:,.1f} MB to {backup.path} in "
            f"{backup.seconds:.1f} s (integrity ok, revision {backup.revision}); "
            f"{len(kept)} copies kept, {len(deleted)} old ones deleted")


def check_disk(ctx: JobContext) -> str:
    """Look at free space now (the guard warns and logs on a change)."""
    return ctx.hub.disk.summary()


def specs(settings: Settings) -> list[JobSpec]:
    """This module's jobs."""
    hour, minute = settings.clock_time(settings.backup_at)
    every = settings.disk_check_every_s
    return [
        JobSpec(
            id="backup", title="Nightly backup", run=nightly_backup,
            trigger=CronTrigger(hour=hour, minute=minute,
                                timezone=ZoneInfo(settings.timezone)),
            coalesce=True, misfire_grace_s=BACKUP_GRACE_S, retries=BACKUP_RETRIES,
            retry_after_s=BACKUP_RETRY_AFTER_S, roles=frozenset({"hub", "central"}),
        ),
        JobSpec(
            id="disk-guard", title="Disk guard", run=check_disk,
            trigger=IntervalTrigger(seconds=every),
            coalesce=True, misfire_grace_s=every, retries=0, retry_after_s=every,
            roles=frozenset({"hub", "central"}),
        ),
    ]
