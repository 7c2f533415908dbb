"""Upkeep: the audit log's and the network's old rows.

- ``audit-log-prune`` (daily, at ``prune_at``): deletes audit log entries older than
  ``audit_log_days``. The hub also prunes once at start, and writes prune at most hourly
  (:mod:`labhub.access.audit`); this job keeps a hub that nobody signs in to bounded too.
- ``network-parts-prune`` (a central only, daily, at ``prune_at``): drops the pieces of
  hubs' batches left unfinished for days (:func:`labhub.network.central.prune_parts`); a
  hub that went on sends those batches again.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from labhub.scheduler.jobs import JobContext, JobSpec
from labhub.settings import Settings

DAILY_GRACE_S = 12 * 3600  # a daily clean-up missed at night still runs in the morning
RETRY_AFTER_S = 600  # a database busy at 03:30 is likely free ten minutes later


def prune_audit_log(ctx: JobContext) -> str:
    """Delete audit log entries older than ``audit_log_days``."""
    from labhub.access import audit

    days = ctx.settings.audit_log_days
    with ctx.engine.begin() as conn:
        deleted = audit.prune(conn, keep_days=days)
    return f"deleted {deleted:,} audit log entries older than {days} days"


def prune_network_parts(ctx: JobContext) -> str:
    """Drop the pieces of batches left unfinished (a central's)."""
    from labhub.network import central

    with ctx.engine.begin() as conn:
        dropped = central.prune_parts(conn)
    return (f"dropped {dropped:,} pieces of batches left unfinished for more than "
            f"{central.PARTS_KEEP_DAYS} days")


def specs(settings: Settings) -> list[JobSpec]:
    """This module's jobs."""
    hour, minute = settings.clock_time(settings.prune_at)
    zone = ZoneInfo(settings.timezone)
    return [
        JobSpec(
            id="audit-log-prune", title="Delete old audit log entries",
            run=prune_audit_log,
            trigger=CronTrigger(hour=hour, minute=minute, timezone=zone),
            coalesce=True, misfire_grace_s=DAILY_GRACE_S, retries=2,
            retry_after_s=RETRY_AFTER_S, roles=frozenset({"hub", "central"}),
        ),
        JobSpec(
            id="network-parts-prune", title="Drop unfinished batch pieces",
            run=prune_network_parts,
            trigger=CronTrigger(hour=hour, minute=minute, timezone=zone),
            coalesce=True, misfire_grace_s=DAILY_GRACE_S, retries=2,
            retry_after_s=RETRY_AFTER_S, roles=frozenset({"central"}),
        ),
    ]
