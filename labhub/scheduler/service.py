"""The scheduler of a running hub: APScheduler 3 with its job store in the hub's database.

(Placeholder: started and closed by ``Hub``; see docs/operations.md.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from labhub.wiring import Hub


class Scheduler:
    """Runs the catalog's jobs for one hub process."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def start(self) -> Scheduler:
        return self

    def status(self) -> list[dict[str, Any]]:
        """Each job: its id, title, next run and last result."""
        return []

    def close(self) -> None:
        return None
