"""What every ``labhub`` command module shares: reading the hub's settings.

The command modules (``cli``, ``cli_movements``, ``cli_transfers``, ``cli_inventory_io``)
all read the same settings as the server; an invalid setting is one red line and exit 2,
never a traceback.
"""

from __future__ import annotations

import typer

from labhub.settings import ConfigFileMissingError, Settings


def settings_or_exit() -> Settings:
    """The hub's settings (``labhub.toml`` and ``LABHUB_*``), or a red line and exit 2."""
    try:
        return Settings()
    except ConfigFileMissingError as exc:
        typer.secho(f"labhub: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    except Exception as exc:  # show what is wrong in the settings, not a traceback
        typer.secho(f"labhub: settings are not valid: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
