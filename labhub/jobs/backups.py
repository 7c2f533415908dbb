"""Nightly backups and the disk guard."""

from __future__ import annotations

from labhub.scheduler.jobs import JobSpec
from labhub.settings import Settings


def specs(settings: Settings) -> list[JobSpec]:
    """This module's jobs."""
    return []
