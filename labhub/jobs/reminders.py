"""Reminders: the day's digest by e-mail (the web app shows reminders as they are).

One job, ``reminders``, at ``reminders_at`` in the lab's time zone. A laptop asleep at
07:00 sends the digest when it wakes (up to :data:`GRACE_S` later), once however many days
it slept (coalesce); a mail server that cannot be reached fails the run, which is retried
(:data:`RETRIES` times, :data:`RETRY_AFTER_S` apart) and sends nothing twice either way
(``labhub.reminders.digest``). With no ``smtp_host`` the run works out who would get what
and says so.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from labhub.reminders.digest import send_digests
from labhub.scheduler.jobs import JobContext, JobSpec
from labhub.settings import Settings
from sensors.samples import now_us

GRACE_S = 8 * 3600  # a digest sent at 15:00 still helps; after a school day it is late
RETRIES = 3  # a mail server down for a restart, a link that comes back
RETRY_AFTER_S = 15 * 60


def run_reminders(ctx: JobContext) -> str:
    """Send today's digests; raises when the mail server did not take them all."""
    return send_digests(ctx.engine, ctx.settings, now=now_us()).summary()


def specs(settings: Settings) -> list[JobSpec]:
    """This module's jobs."""
    hour, minute = settings.clock_time(settings.reminders_at)
    return [JobSpec(
        id="reminders",
        title="Reminders: the day's e-mail digest",
        run=run_reminders,
        trigger=CronTrigger(hour=hour, minute=minute, timezone=ZoneInfo(settings.timezone)),
        coalesce=True,
        misfire_grace_s=GRACE_S,
        retries=RETRIES,
        retry_after_s=RETRY_AFTER_S,
    )]
