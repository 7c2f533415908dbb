"""``labhub inventory transfer ...`` and ``labhub inventory audit ...``: moving and counting.

For coordinators in a terminal or a script: draft, fill, ship, scan and receive a
transfer between lab sites, and run an audit from start to corrections. Each command is
one transaction on the hub's database (the same settings as the server), except scans,
which commit tag by tag so that a long scanning session loses nothing if it stops half
way. With no tags on the command line, ``scan`` reads one tag per line from standard
input: a USB barcode scanner types a tag and Enter, so a coordinator can scan a whole
box into the terminal and end with Ctrl-D. An inventory error is one red line and exit
status 1.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Annotated, cast

import typer
from sqlalchemy import Connection

from inventory import audits, transfers
from inventory.errors import InventoryError
from labhub.cli_common import hub_engine, settings_or_exit
from labhub.settings import Settings

transfer_app = typer.Typer(help="Transfers of assets between lab sites.",
                           no_args_is_help=True)
audit_app = typer.Typer(help="Audits (stocktakes) of a lab site.", no_args_is_help=True)

By = Annotated[str, typer.Option("--by", help="who does it (free text, e.g. 'Ana')")]
Version = Annotated[int | None, typer.Option(
    help="the version you read; a stale one is refused")]


def register(inventory_app: typer.Typer) -> None:
    """Hang ``transfer`` and ``audit`` under ``labhub inventory``."""
    inventory_app.add_typer(transfer_app, name="transfer")
    inventory_app.add_typer(audit_app, name="audit")


_settings = settings_or_exit


@contextmanager
def _writing(command: str, settings: Settings | None = None) -> Iterator[Connection]:
    """One transaction on the hub's database; an inventory error is a red line, exit 1."""
    with hub_engine(f"inventory {command}", write=True,
                    settings=settings or _settings()) as engine:
        try:
            with engine.begin() as conn:
                yield conn
        except InventoryError as exc:
            typer.secho(f"labhub inventory {command}: {exc}", fg="red", err=True)
            raise typer.Exit(1) from None


def _tags(given: list[str] | None) -> Iterable[str]:
    """The tags on the command line, or one per line from standard input."""
    if given:
        yield from given
        return
    for line in sys.stdin:
        if line.strip():
            yield line.strip()


def _show_transfer(t: transfers.Transfer) -> None:
    from labhub.api.common import iso  # the web stack only when something is printed

    typer.echo(f"transfer {t.uuid}: {t.from_site_code} -> {t.to_site_code}, {t.status} "
               f"(version {t.version})")
    if t.carrier:
        typer.echo(f"shipped {iso(t.shipped_at)} carried by {t.carrier}")
    if t.received_at:
        typer.echo(f"received {iso(t.received_at)} by {t.received_by}")
    scanned = set(t.scanned)
    for tag in t.items:
        typer.echo(f"  item  {tag:<16} {'scanned' if tag in scanned else ''}".rstrip())
    for d in t.discrepancies:
        where = f" (recorded at {d.recorded_site_code})" if d.recorded_site_code else ""
        typer.echo(f"  {d.kind:<8} {d.tag:<16} {d.resolution}{where}")
    typer.echo(f"{len(t.items)} items, {len(t.scanned)} scanned, "
               f"{len(t.discrepancies)} discrepancies")


@transfer_app.command("new")
def transfer_new(
    from_site: Annotated[str, typer.Option("--from", help="lab site it leaves from")],
    to_site: Annotated[str, typer.Option("--to", help="lab site it goes to")],
    by: By,
    tags: Annotated[list[str] | None, typer.Argument(help="asset tags to put on it")] = None,
    note: Annotated[str | None, typer.Option(help="a note on the transfer")] = None,
) -> None:
    """Draft a transfer between two lab sites, perhaps with its first assets."""
    with _writing("transfer new") as conn:
        t = transfers.draft_transfer(conn=conn, from_site=from_site, to_site=to_site,
                                     tags=tags or [], by=by, note=note)
    _show_transfer(t)


@transfer_app.command("add")
def transfer_add(
    transfer_id: Annotated[str, typer.Argument(metavar="TRANSFER_ID")],
    tags: Annotated[list[str], typer.Argument(help="asset tags to put on the transfer")],
    by: By,
    version: Version = None,
) -> None:
    """Put more assets on a draft transfer."""
    with _writing("transfer add") as conn:
        t = transfers.add_items(conn=conn, transfer_uuid=transfer_id, tags=tags, by=by,
                                version=version)
    _show_transfer(t)


@transfer_app.command("ship")
def transfer_ship(
    transfer_id: Annotated[str, typer.Argument(metavar="TRANSFER_ID")],
    carrier: Annotated[str, typer.Option(help="who carries it")],
    by: By,
    version: Version = None,
) -> None:
    """Ship a draft transfer: its assets go in transit."""
    with _writing("transfer ship") as conn:
        t = transfers.ship_transfer(conn=conn, transfer_uuid=transfer_id, carrier=carrier,
                                    by=by, version=version)
    _show_transfer(t)


def _site(site: str | None, settings: Settings) -> str:
    if site is not None:
        return site
    if settings.site is None:
        typer.secho("labhub inventory transfer: say which lab site this hub is at (--site, "
                    "or the `site` setting)", fg="red", err=True)
        raise typer.Exit(2)
    return settings.site


SiteOption = Annotated[str | None, typer.Option(
    help="the lab site this hub is at (default: the `site` setting)")]


@transfer_app.command("scan")
def transfer_scan(
    transfer_id: Annotated[str, typer.Argument(metavar="TRANSFER_ID")],
    by: By,
    tags: Annotated[list[str] | None, typer.Argument(
        help="scanned tags; none: read one per line from standard input")] = None,
    site: SiteOption = None,
) -> None:
    """Scan tags while receiving a shipped transfer (each committed as it is scanned)."""
    settings = _settings()
    here = _site(site, settings)
    count = 0
    for tag in _tags(tags):
        with _writing("transfer scan", settings) as conn:
            scan = transfers.scan_item(conn=conn, transfer_uuid=transfer_id, tag=tag,
                                       site=here, by=by)
        what = "on the transfer" if scan.on_transfer else "NOT on the transfer (extra)"
        typer.echo(f"{tag:<16} {what}{'' if scan.new else ', already scanned'}")
        count += 1
    typer.echo(f"{count} scanned")


@transfer_app.command("receive")
def transfer_receive(
    transfer_id: Annotated[str, typer.Argument(metavar="TRANSFER_ID")],
    by: By,
    site: SiteOption = None,
    missing_as: Annotated[str | None, typer.Option(
        "--missing-as", help="what shipped items not scanned become: in_transit or lost")] = None,
    version: Version = None,
    note: Annotated[str | None, typer.Option(help="a note on the receipt")] = None,
) -> None:
    """Finish receiving a transfer: scanned items become available here."""
    settings = _settings()
    with _writing("transfer receive", settings) as conn:
        t = transfers.receive_transfer(
            conn=conn, transfer_uuid=transfer_id, site=_site(site, settings), by=by,
            missing_as=cast("transfers.MissingAs | None", missing_as), version=version,
            note=note,
        )
    _show_transfer(t)


@transfer_app.command("show")
def transfer_show(transfer_id: Annotated[str, typer.Argument(metavar="TRANSFER_ID")]) -> None:
    """Show a transfer: its items, scans and discrepancies."""
    with _writing("transfer show") as conn:
        t = transfers.get_transfer(conn=conn, transfer_uuid=transfer_id)
    _show_transfer(t)


# -- audits -------------------------------------------------------------------------------


def _show_audit(a: audits.Audit) -> None:
    typer.echo(f"audit {a.uuid} at {a.site_code}: {a.status} (version {a.version}), "
               f"{len(a.scanned)} scanned, {len(a.counts)} models counted")


def _show_report(r: audits.AuditReport) -> None:
    _show_audit(r.audit)
    for finding in (*r.found, *r.missing, *r.unexpected, *r.unknown):
        if finding.finding == "unexpected":
            detail = f"recorded at {finding.recorded_site_code}"
        elif finding.finding == "missing":
            detail = f"recorded {finding.recorded_status}"
        else:
            detail = ""
        source = f"({finding.source})" if finding.source else ""
        done = "corrected" if finding.corrected_at else ""
        typer.echo(f"{finding.finding:<11} {finding.tag:<16} {finding.model_code or '-':<14} "
                   f"{' '.join(p for p in (detail, source, done) if p)}".rstrip())
    for line in r.counts:
        done = " corrected" if line.corrected_at else ""
        typer.echo(f"{'counted':<11} {line.model_code:<16} {line.counted} {line.unit}, stock "
                   f"{line.expected}, difference {line.difference:+d}{done}")
    typer.echo(f"{len(r.found)} found, {len(r.missing)} missing, {len(r.unexpected)} "
               f"unexpected, {len(r.unknown)} unknown")


@audit_app.command("start")
def audit_start(
    site: Annotated[str, typer.Argument(help="the lab site to audit")], by: By
) -> None:
    """Start an audit at a lab site."""
    with _writing("audit start") as conn:
        a = audits.start_audit(conn=conn, site=site, by=by)
    _show_audit(a)


@audit_app.command("scan")
def audit_scan(
    audit_id: Annotated[str, typer.Argument(metavar="AUDIT_ID")],
    by: By,
    tags: Annotated[list[str] | None, typer.Argument(
        help="scanned tags; none: read one per line from standard input")] = None,
) -> None:
    """Scan tags on the shelves (each committed as it is scanned)."""
    settings = _settings()
    count = 0
    for tag in _tags(tags):
        with _writing("audit scan", settings) as conn:
            scan = audits.scan_tag(conn=conn, audit_uuid=audit_id, tag=tag, by=by)
        if scan.recorded_site_code is None:
            where = ", no asset has this tag"
        elif scan.recorded_site_code != scan.site_code:
            where = f", recorded at {scan.recorded_site_code} (unexpected here)"
        else:
            where = ""
        typer.echo(f"{tag:<16} {'scanned' if scan.new else 'already scanned'}{where}")
        count += 1
    typer.echo(f"{count} scanned")


@audit_app.command("count")
def audit_count(
    audit_id: Annotated[str, typer.Argument(metavar="AUDIT_ID")],
    model: Annotated[str, typer.Argument(help="a counted model's code")],
    quantity: Annotated[int, typer.Argument(help="how many, in the model's unit")],
    by: By,
) -> None:
    """Record how many of a counted model are on the shelves."""
    with _writing("audit count") as conn:
        a = audits.record_count(conn=conn, audit_uuid=audit_id, model_code=model,
                                quantity=quantity, by=by)
    _show_audit(a)


@audit_app.command("finish")
def audit_finish(
    audit_id: Annotated[str, typer.Argument(metavar="AUDIT_ID")], by: By,
    version: Version = None,
) -> None:
    """Finish an audit and print its report."""
    with _writing("audit finish") as conn:
        r = audits.finish_audit(conn=conn, audit_uuid=audit_id, by=by, version=version)
    _show_report(r)


@audit_app.command("report")
def audit_report(audit_id: Annotated[str, typer.Argument(metavar="AUDIT_ID")]) -> None:
    """Print the report of a finished audit."""
    with _writing("audit report") as conn:
        r = audits.get_report(conn=conn, audit_uuid=audit_id)
    _show_report(r)


@audit_app.command("apply")
def audit_apply(
    audit_id: Annotated[str, typer.Argument(metavar="AUDIT_ID")], by: By,
    version: Version = None,
) -> None:
    """Apply an audit's corrections (missing -> lost, unexpected -> moved here)."""
    with _writing("audit apply") as conn:
        r = audits.apply_corrections(conn=conn, audit_uuid=audit_id, by=by, version=version)
    _show_report(r)
