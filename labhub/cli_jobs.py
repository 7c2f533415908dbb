"""`labhub jobs`: the hub's jobs, their last runs, and running one now."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``labhub``."""
