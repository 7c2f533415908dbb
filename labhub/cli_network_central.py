"""``labhub network token | hubs``: the central's side of ``labhub network``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from labhub.cli_common import cli_actor, echo, hub_engine, secho, settings_or_exit
from labhub.network import central
from labhub.problems import Problem
from sensors.samples import now_us


def _when(us: int | None) -> str:
    if us is None:
        return "never"
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _central_url(host: str, port: int, tls: bool) -> str:
    shown = "<this central's address>" if host in ("0.0.0.0", "::") else host  # noqa: S104
    return f"{'https' if tls else 'http'}://{shown}:{port}"


def register(network_app: typer.Typer) -> None:
    """Add the central's commands to ``labhub network``."""

    @network_app.command("token")
    def token(
        site: Annotated[str, typer.Option("--site", help="the lab site's code")],
        hours: Annotated[int, typer.Option(
            help="how long the token may be used (at most 720: 30 days)")] =
            central.ENROLMENT_HOURS,
    ) -> None:
        """On the central: make a one-time enrolment token for a lab's hub, and print the
        command to run on the hub."""
        settings = settings_or_exit()
        if settings.role != "central":
            secho("labhub network token: this LabHub is a hub (setting role = "
                        "\"hub\"); enrolment tokens are made on the central", fg="red",
                        err=True)
            raise typer.Exit(1)
        with hub_engine("network token", write=True, settings=settings) as engine:
            try:
                with engine.begin() as conn:
                    enrolment, secret = central.make_enrolment(
                        conn, site=site, hours=hours, by=cli_actor())
            except Problem as exc:
                secho(f"labhub network token: {exc.detail}", fg="red", err=True)
                raise typer.Exit(1) from None
        url = _central_url(settings.host, settings.port, settings.tls_certfile is not None)
        echo(f"enrolment {enrolment.id} for lab {site}, valid until "
             f"{_when(enrolment.expires_at)} (one use; shown this once):")
        echo(secret)
        echo("on the lab's hub, run:")
        echo(f"  labhub network join {url} --token {secret}")

    @network_app.command("hubs")
    def hubs() -> None:
        """On the central: list the enrolled hubs with their last contact and health."""
        settings = settings_or_exit()
        with hub_engine("network hubs", write=False, settings=settings) as engine, \
                engine.connect() as conn:
            rows = central.list_hubs(conn, sites=None)
        if not rows:
            echo("no hub has joined yet (make a token: labhub network token --site CODE)")
            return
        now = now_us()
        tolerance = settings.network_clock_tolerance_min * 60_000_000
        echo(f"{'lab':<16} {'hub':<36} {'state':<8} {'last contact':<21} {'version':<10} "
             f"{'backlog':>8} {'clock s':>8}  name")
        for hub in rows:
            state = central.health_word(hub, now=now, tolerance_us=tolerance,
                                        every_s=settings.network_sync_every_s)
            offset = hub["clock_offset_us"]
            echo(f"{hub['site']:<16} {hub['id']:<36} {state:<8} "
                 f"{_when(hub['last_contact_at']):<21} {hub['version'] or '-':<10} "
                 f"{hub['backlog'] if hub['backlog'] is not None else '-':>8} "
                 f"{round(offset / 1e6) if offset is not None else '-':>8}  {hub['name']}")
