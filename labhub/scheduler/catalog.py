"""Every job of the hub, from the modules that own them (``labhub.jobs.*``)."""

from __future__ import annotations

from labhub.jobs import backups, readings, reminders, schedules, upkeep
from labhub.scheduler.jobs import JobSpec
from labhub.settings import Settings


def job_specs(settings: Settings) -> list[JobSpec]:
    """The jobs a hub with these settings runs (its role's), ids unique."""
    specs = [
        spec
        for module in (readings, backups, reminders, schedules, upkeep)
        for spec in module.specs(settings)
        if settings.role in spec.roles
    ]
    ids = [s.id for s in specs]
    assert len(ids) == len(set(ids)), f"job ids repeat: {ids}"
    return specs
