"""``labhub network token | hubs``: the central's side of ``labhub network``."""

from __future__ import annotations

import typer


def register(network_app: typer.Typer) -> None:
    """Add the central's commands to ``labhub network``."""
