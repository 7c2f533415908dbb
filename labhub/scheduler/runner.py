"""The function APScheduler's job store holds for every job: ``run_job(job_id)``.

The store pickles a job as a reference to this module-level function and the job's id, so
nothing of a running hub is pickled. The scheduler's executor
(:class:`labhub.scheduler.service.HubExecutor`) calls it on a worker thread after telling
the thread which scheduler it works for and the run's due time; it then finds the job's
spec and the hub there.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from labhub.scheduler.service import Scheduler


class _Worker(threading.local):
    scheduler: Scheduler | None = None
    scheduled_for: datetime | None = None


current = _Worker()  # set by the executor on the thread that runs the job


def run_job(job_id: str, *, attempt: int = 1, scheduled_for_us: int | None = None,
            kind: str = "schedule") -> None:
    """Run job ``job_id`` of the scheduler this thread works for, at its due time (or the
    one given, for a retry), once per database."""
    from labhub.scheduler.runs import now_us, to_us

    scheduler = current.scheduler
    if scheduler is None:
        raise RuntimeError(f"job {job_id!r} called outside a running LabHub scheduler")
    if scheduled_for_us is None:
        due = current.scheduled_for
        scheduled_for_us = to_us(due) if due is not None else now_us()
    scheduler.run(job_id, scheduled_for=scheduled_for_us, attempt=attempt,
                  kind="manual" if kind == "manual" else "schedule")
