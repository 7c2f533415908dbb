"""``labhub network ...``: a hub joins a network and syncs; a central makes enrolment
tokens and lists its hubs (docs/network.md).

The hub's commands (``join``, ``status``, ``sync``, ``leave``) work on the hub's database
directly, as the other commands do; a hub that serves meanwhile sees a new membership at
its sync thread's next cycle, with no restart.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from labhub.cli_common import echo, hub_engine, secho, settings_or_exit
from labhub.network import client, membership
from labhub.network.client_http import NetworkError
from labhub.settings import Settings

network_app = typer.Typer(
    help="The network of hubs: join a central, sync, and (on the central) enrol labs.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add ``labhub network ...`` to the ``labhub`` command."""
    from labhub import cli_network_central

    cli_network_central.register(network_app)
    app.add_typer(network_app, name="network")


def _hub_settings(command: str) -> Settings:
    settings = settings_or_exit()
    if settings.role == "central":
        secho(f"labhub network {command}: this LabHub is the network's central (role = "
              "\"central\"); joining and syncing are a hub's commands", fg="red", err=True)
        raise typer.Exit(2)
    return settings


def _when(us: int | None) -> str:
    if us is None:
        return "never"
    return datetime.fromtimestamp(us / 1e6, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@network_app.command("join")
def network_join(
    central_url: Annotated[str, typer.Argument(
        metavar="CENTRAL_URL", help="The central's address, e.g. https://red.example.org")],
    token: Annotated[str, typer.Option(
        "--token", help="The enrolment token (lhe_...) a coordinator made on the central.")],
    name: Annotated[str | None, typer.Option(
        "--name", help="This machine's name as the central lists it (default: its "
                       "host name).")] = None,
) -> None:
    """Join the network of the central at CENTRAL_URL for the lab the token names (a
    hub already in a network, or a replacement hub, joins again the same way)."""
    settings = _hub_settings("join")
    with hub_engine("network join", write=True, settings=settings) as engine:
        try:
            joined = client.join(engine, settings, central_url, token, name=name)
        except client.JoinRefusedError as exc:
            secho(f"labhub network join: {exc}", fg="red", err=True)
            raise typer.Exit(1) from None
        except NetworkError as exc:
            secho(f"labhub network join: {exc}", fg="red", err=True)
            raise typer.Exit(1) from None
    echo(f"joined the network of {joined.central_url} as hub {joined.hub_id} of lab "
         f"{joined.site}")
    echo("a serving hub makes its first contact within network_sync_every_s; "
         "`labhub network sync` makes one now")


@network_app.command("status")
def network_status() -> None:
    """This hub's membership: the central, its last contact (or what failed), its clock
    offset, each up stream's backlog and the positions the central acknowledged."""
    settings = _hub_settings("status")
    with hub_engine("network status", write=False, settings=settings) as engine:
        found = client.status(engine)
    m = found.membership
    if m is None:
        echo("not in a network: labhub network join <central URL> --token lhe_...")
    else:
        echo(f"central: {m.central_url}")
        echo(f"hub: {m.hub_id} (lab {m.site}), joined {_when(m.joined_at)}")
        echo(f"last contact: {_when(m.last_contact_at)}")
        if m.last_error is not None:
            secho(f"last error: {m.last_error}", fg="red")
        if m.clock_offset_us is not None:
            echo(f"clock offset: {m.clock_offset_us / 1e6:+.3f} s (this hub minus the "
                 "central)")
    for name, count in found.backlog.items():
        position = m.up_positions.get(name, []) if m is not None else []
        echo(f"  {name}: {count} waiting, acknowledged up to {position or 'nothing'}")
    if m is not None and m.down_positions:
        applied = ", ".join(f"{k} {v}" for k, v in m.down_positions.items())
        echo(f"applied from the central: {applied}")


@network_app.command("sync")
def network_sync() -> None:
    """One contact with the central now: print what went up and what came down."""
    settings = _hub_settings("sync")
    with hub_engine("network sync", write=True, settings=settings) as engine:
        try:
            summary = client.contact(engine, settings)
        except client.NotMemberError as exc:
            secho(f"labhub network sync: {exc}", fg="red", err=True)
            raise typer.Exit(1) from None
        except NetworkError as exc:
            secho(f"labhub network sync: {exc}", fg="red", err=True)
            raise typer.Exit(1) from None
    for line in summary.lines():
        echo(line)


@network_app.command("leave")
def network_leave(
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Forget this hub's membership (its credential and positions); its data stays. It
    stops syncing until it joins again."""
    settings = _hub_settings("leave")
    with hub_engine("network leave", write=True, settings=settings) as engine:
        with engine.connect() as conn:
            m = membership.get(conn)
        if m is None:
            echo("not in a network: nothing to leave")
            return
        if not yes and not typer.confirm(
                f"leave the network of {m.central_url} (hub {m.hub_id}, lab {m.site})? "
                "Joining again needs a new enrolment token", default=False):
            raise typer.Exit(1)
        with engine.begin() as conn:
            membership.leave(conn)
    echo(f"left the network of {m.central_url}")
