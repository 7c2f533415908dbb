"""What every ``labhub`` command module shares: reading the hub's settings, and printing.

The command modules (``cli``, ``cli_movements``, ``cli_transfers``, ``cli_inventory_io``)
all read the same settings as the server; an invalid setting is one red line and exit 2,
never a traceback. They print only through :func:`echo` and :func:`secho`, which show
every control character (ESC, NUL, C1, bidirectional overrides) of what they print as a
visible escape (``\x1b``): a device name, a dead letter's reason or a note that came from
outside can never move the cursor, clear the screen or reorder a line on the terminal.
Files a command writes (a CSV export) are data, written as they are.
"""

from __future__ import annotations

from typing import Any

import typer

from labhub.settings import Settings
from labtext.printable import escape_unprintable


def echo(message: str = "", **options: Any) -> None:
    """``typer.echo`` of ``message`` with its control characters escaped."""
    typer.echo(escape_unprintable(message), **options)


def secho(message: str = "", **options: Any) -> None:
    """``typer.secho`` (colours, ``err=True``) of ``message`` with its control characters
    escaped; the colour codes are added after."""
    typer.secho(escape_unprintable(message), **options)


def settings_or_exit() -> Settings:
    """The hub's settings (``labhub.toml`` and ``LABHUB_*``), or a red line and exit 2."""
    try:
        return Settings()
    except Exception as exc:  # show what is wrong in the settings, not a traceback
        secho(f"labhub: settings are not valid: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
