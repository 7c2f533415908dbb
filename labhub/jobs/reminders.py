"""Reminders: the day's digest by e-mail and in the web app."""

from __future__ import annotations

from labhub.scheduler.jobs import JobSpec
from labhub.settings import Settings


def specs(settings: Settings) -> list[JobSpec]:
    """This module's jobs."""
    return []
