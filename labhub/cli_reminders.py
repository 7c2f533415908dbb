"""``labhub reminders``: what is due, and sending the digest now; ``labhub service``: an
asset's planned maintenance and calibration, which the reminders follow.

``reminders list`` prints every reminder of the hub (the CLI acts as the hub itself: all
sites), by kind, in the hub's language; ``--site`` keeps one site and those under it.
``reminders send`` runs the daily digest now (:func:`labhub.reminders.digest.send_digests`,
what the ``reminders`` job runs): each person gets their new reminders once; a mail server
that cannot be reached is a red line and exit 1, and nothing is marked sent.
``service plan|done|remove|list`` write through ``inventory.service`` like the API, the
history naming ``labhub CLI (<login>)``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from inventory import service
from inventory.errors import InventoryError
from labhub.access.sites import load_tree
from labhub.api.common import iso, parse_time
from labhub.cli_common import cli_actor, echo, hub_engine, secho, settings_or_exit
from labhub.problems import Problem
from labhub.reminders import due
from labhub.reminders.digest import DigestError, send_digests
from labhub.web import reminders_text
from sensors.samples import now_us

reminders_app = typer.Typer(help="What needs attention: loans, audits, upkeep, stock, "
                                 "silent devices; the daily e-mail digest.",
                            no_args_is_help=True)
service_app = typer.Typer(help="Planned maintenance and calibration of assets.",
                          no_args_is_help=True)
Kind = Annotated[service.ServiceKind, typer.Argument(help="maintenance or calibration")]


def _fail(command: str, message: str) -> None:
    secho(f"labhub {command}: {message}", fg="red", err=True)
    raise typer.Exit(1)


@reminders_app.command("list")
def reminders_list(
    site: Annotated[str | None, typer.Option(help="site code: there and anywhere under it")]
    = None,
) -> None:
    """Every reminder of the hub now, by kind."""
    settings = settings_or_exit()
    with hub_engine("reminders list", write=False, settings=settings) as engine, \
            engine.connect() as conn:
        found = due.gather(conn, settings, now=now_us())
        tree = load_tree(conn, settings.site)
    if site is not None:
        if site not in tree.parents:
            _fail("reminders list", f"no site with code {site!r}")
        under = tree.subtree(site)
        found = [r for r in found if (r.site or settings.site) in under]
    for kind, items in due.by_kind(found):
        echo(reminders_text.heading(kind, settings.language))
        for r in items:
            echo(f"  {reminders_text.describe(r, settings.language, settings.timezone)}")
            echo(f"    {r.key}")
    echo(f"{len(found)} reminders")


@reminders_app.command("send")
def reminders_send() -> None:
    """Send today's digest now: each person with an e-mail address gets their new
    reminders, once."""
    settings = settings_or_exit()
    with hub_engine("reminders send", write=True, settings=settings) as engine:
        try:
            result = send_digests(engine, settings, now=now_us())
        except DigestError as exc:
            _fail("reminders send", str(exc))
    echo(result.summary())


def _time(command: str, text: str | None, where: str) -> int | None:
    try:
        return parse_time(text, where)
    except Problem as exc:
        _fail(command, str(exc))
    return None


def _plan_line(p: service.ServicePlan) -> str:
    return (f"{p.asset_tag} {p.kind}: every {p.every_days} days, last done "
            f"{iso(p.last_done_at)}, due {iso(p.due_at)}")


def _service(command: str, work: str, tag: str, kind: str, **values: object) -> None:
    with hub_engine(f"service {command}", write=True) as engine:
        try:
            with engine.begin() as conn:
                if work == "plan":
                    plan = service.set_plan(conn=conn, tag=tag, kind=kind, by=cli_actor(),
                                            **values)  # type: ignore[arg-type]
                elif work == "done":
                    plan = service.record_done(conn=conn, tag=tag, kind=kind, by=cli_actor(),
                                               **values)  # type: ignore[arg-type]
                else:
                    service.remove_plan(conn=conn, tag=tag, kind=kind, by=cli_actor())
                    echo(f"{tag} {kind}: no longer planned")
                    return
        except (InventoryError, Problem) as exc:
            _fail(f"service {command}", str(exc))
    echo(_plan_line(plan))


@service_app.command("plan")
def service_plan(
    tag: Annotated[str, typer.Argument(help="the asset's tag")],
    kind: Kind,
    every_days: Annotated[int, typer.Option(min=1, max=service.EVERY_DAYS_MAX,
                                            help="how often, in days")],
    last_done: Annotated[str | None, typer.Option(
        help="when it was last done (RFC 3339, e.g. 2026-06-01T00:00:00Z); default: as "
             "before, or now")] = None,
) -> None:
    """Plan an asset's maintenance or calibration every so many days."""
    _service("plan", "plan", tag, kind, every_days=every_days,
             last_done_at=_time("service plan", last_done, "--last-done"))


@service_app.command("done")
def service_done(
    tag: Annotated[str, typer.Argument(help="the asset's tag")],
    kind: Kind,
    note: Annotated[str | None, typer.Option(help="what was done")] = None,
    at: Annotated[str | None, typer.Option(help="when (RFC 3339); default: now")] = None,
) -> None:
    """Record the maintenance or calibration done: due again one interval later."""
    _service("done", "done", tag, kind, note=note, at=_time("service done", at, "--at"))


@service_app.command("remove")
def service_remove(tag: Annotated[str, typer.Argument(help="the asset's tag")],
                   kind: Kind) -> None:
    """Stop planning an asset's maintenance or calibration."""
    _service("remove", "remove", tag, kind)


@service_app.command("list")
def service_list(tag: Annotated[str, typer.Argument(help="the asset's tag")]) -> None:
    """An asset's service plans, with when each is due."""
    with hub_engine("service list", write=False) as engine, engine.connect() as conn:
        try:
            plans = service.plans_of(conn=conn, tag=tag)
        except InventoryError as exc:
            _fail("service list", str(exc))
    for p in plans:
        echo(_plan_line(p))
    if not plans:
        echo(f"{tag}: no service plans")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``labhub``."""
    app.add_typer(reminders_app, name="reminders")
    app.add_typer(service_app, name="service")
