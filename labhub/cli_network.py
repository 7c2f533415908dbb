"""``labhub network ...``: a hub joins a network and syncs; a central makes enrolment
tokens and lists its hubs (docs/network.md)."""

from __future__ import annotations

import typer

network_app = typer.Typer(
    help="The network of hubs: join a central, sync, and (on the central) enrol labs.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add ``labhub network ...`` to the ``labhub`` command."""
    from labhub import cli_network_central

    cli_network_central.register(network_app)
    app.add_typer(network_app, name="network")
