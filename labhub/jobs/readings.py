"""Rollups and retention of readings: the two jobs that keep a hub's readings small and
its long charts fast (docs/operations.md, "Rollups and retention").

- ``rollups`` takes in what the readings' journal says changed since its last run
  (:func:`sensors.rollups.roll_up`), every ``rollup_every_s``.
- ``readings-prune`` deletes raw readings older than ``readings_keep_days`` once they are
  rolled up and, on a hub in a network, acknowledged by the central
  (:func:`sensors.rollups.prune_raw`), each day at ``prune_at`` in the lab's time zone.

Both run on hubs only: a central keeps no journal of its readings.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Connection

from labhub.network import membership
from labhub.network.up_readings import NAME as READINGS_STREAM
from labhub.network.up_readings import parse_position
from labhub.scheduler.jobs import JobContext, JobSpec
from labhub.settings import Settings
from sensors.rollups import JournalMark, prune_raw, roll_up
from sensors.samples import US_PER_S, now_us

US_PER_DAY = 86_400 * US_PER_S
# A prune run missed by a hub that was off at prune_at still runs when it is back within
# this long (a lab's computer switched on in the morning), once.
PRUNE_GRACE_S = 8 * 3600


def rollups(ctx: JobContext) -> str:
    """Take the readings stored since the last run (late ones included) into the rollups."""
    done = roll_up(engine=ctx.engine, stopping=ctx.stopping)
    if not done.spans:
        return "rollups up to date: nothing new"
    tail = "" if done.finished else "; stopped early, the rest goes next run"
    return f"rolled up {done.hours:,} hours from {done.spans:,} journal spans{tail}"


def central_holds(conn: Connection) -> JournalMark | None:
    """What the central acknowledged of this hub's readings, as a mark in the readings'
    journal; None when the hub is in no network (it prunes by its own rules)."""
    acknowledged = membership.acknowledged(conn, READINGS_STREAM)
    if acknowledged is None:
        return None
    seq, ts = parse_position(acknowledged)
    return JournalMark(seq, ts)


def prune(ctx: JobContext) -> str:
    """Delete raw readings past their keeping time that are rolled up and held by the
    central (on a hub in a network)."""
    days = ctx.settings.readings_keep_days
    if days <= 0:
        return "keeping every raw reading (readings_keep_days is 0)"
    roll_up(engine=ctx.engine, stopping=ctx.stopping)  # so the newest clean hours count
    done = prune_raw(engine=ctx.engine, before=now_us() - days * US_PER_DAY,
                     shared=central_holds, stopping=ctx.stopping)
    tail = "" if done.finished else "; stopped early, the rest goes next run"
    return (f"pruned {done.readings:,} raw readings older than {days} days "
            f"from {done.series:,} series{tail}")


def specs(settings: Settings) -> list[JobSpec]:
    """This module's jobs."""
    hour, minute = settings.clock_time(settings.prune_at)
    return [
        JobSpec(
            id="rollups",
            title="Roll up new readings into hourly and daily summaries",
            run=rollups,
            trigger=IntervalTrigger(seconds=settings.rollup_every_s),
            coalesce=True,
            misfire_grace_s=max(30, settings.rollup_every_s),
            retries=2,
            retry_after_s=min(60, settings.rollup_every_s),
        ),
        JobSpec(
            id="readings-prune",
            title="Delete old raw readings that are rolled up and safe elsewhere",
            run=prune,
            trigger=CronTrigger(hour=hour, minute=minute,
                                timezone=ZoneInfo(settings.timezone)),
            coalesce=True,
            misfire_grace_s=PRUNE_GRACE_S,
            retries=2,
            retry_after_s=600,
        ),
    ]
