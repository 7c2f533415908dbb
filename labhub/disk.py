"""The disk guard: free space on the data's disk, and what the hub stops keeping when it runs
low (docs/operations.md).

(Placeholder: the guard's checks come with its job in ``labhub.jobs.backups``.)
"""

from __future__ import annotations

from typing import Any

from labhub.settings import Settings


class DiskGuard:
    """What the hub knows of its disk: checked by a job, read by health and the pages."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def keep_bodies(self) -> bool:
        """Whether dead letters keep their bodies (False once space runs low)."""
        return True

    def status(self) -> dict[str, Any] | None:
        """The last check, for health and the pages; None before the first."""
        return None
