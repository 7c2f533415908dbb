"""``labhub inventory transfer ...``, ``audit ...`` and ``rotation ...``: moving and counting.

For coordinators in a terminal or a script: draft, fill, ship, scan and receive a
transfer between lab sites, run an audit from start to corrections and list audits, and
keep a mobile lab's manifest and its rotations (plan, list, show, arrive, depart), the
same verbs as the API. Each command is
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

from inventory import audits, rotations, transfers
from inventory.errors import InventoryError
from labhub.cli_common import ForWhom, cli_actor, echo, hub_engine, secho, settings_or_exit
from labhub.settings import Settings

transfer_app = typer.Typer(help="Transfers of assets between lab sites.",
                           no_args_is_help=True)
audit_app = typer.Typer(help="Audits (stocktakes) of a lab site.", no_args_is_help=True)
rotation_app = typer.Typer(help="Mobile labs: their manifest and rotations (routes of stops).",
                           no_args_is_help=True)

Version = Annotated[int | None, typer.Option(
    help="the version you read; a stale one is refused")]


def register(inventory_app: typer.Typer) -> None:
    """Hang ``transfer``, ``audit`` and ``rotation`` under ``labhub inventory``."""
    inventory_app.add_typer(transfer_app, name="transfer")
    inventory_app.add_typer(audit_app, name="audit")
    inventory_app.add_typer(rotation_app, name="rotation")


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
            secho(f"labhub inventory {command}: {exc}", fg="red", err=True)
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

    echo(f"transfer {t.uuid}: {t.from_site_code} -> {t.to_site_code}, {t.status} "
               f"(version {t.version})")
    if t.carrier:
        echo(f"shipped {iso(t.shipped_at)} carried by {t.carrier}")
    if t.received_at:
        echo(f"received {iso(t.received_at)} by {t.received_by}")
    scanned = set(t.scanned)
    for tag in t.items:
        echo(f"  item  {tag:<16} {'scanned' if tag in scanned else ''}".rstrip())
    for d in t.discrepancies:
        where = f" (recorded at {d.recorded_site_code})" if d.recorded_site_code else ""
        echo(f"  {d.kind:<8} {d.tag:<16} {d.resolution}{where}")
    echo(f"{len(t.items)} items, {len(t.scanned)} scanned, "
               f"{len(t.discrepancies)} discrepancies")


@transfer_app.command("new")
def transfer_new(
    from_site: Annotated[str, typer.Option("--from", help="lab site it leaves from")],
    to_site: Annotated[str, typer.Option("--to", help="lab site it goes to")],
    tags: Annotated[list[str] | None, typer.Argument(help="asset tags to put on it")] = None,
    note: Annotated[str | None, typer.Option(help="a note on the transfer")] = None,
) -> None:
    """Draft a transfer between two lab sites, perhaps with its first assets."""
    with _writing("transfer new") as conn:
        t = transfers.draft_transfer(conn=conn, from_site=from_site, to_site=to_site,
                                     tags=tags or [], by=cli_actor(), note=note)
    _show_transfer(t)


@transfer_app.command("add")
def transfer_add(
    transfer_id: Annotated[str, typer.Argument(metavar="TRANSFER_ID")],
    tags: Annotated[list[str], typer.Argument(help="asset tags to put on the transfer")],
    version: Version = None,
) -> None:
    """Put more assets on a draft transfer."""
    with _writing("transfer add") as conn:
        t = transfers.add_items(conn=conn, transfer_uuid=transfer_id, tags=tags, by=cli_actor(),
                                version=version)
    _show_transfer(t)


@transfer_app.command("ship")
def transfer_ship(
    transfer_id: Annotated[str, typer.Argument(metavar="TRANSFER_ID")],
    carrier: Annotated[str, typer.Option(help="who carries it")],
    version: Version = None,
) -> None:
    """Ship a draft transfer: its assets go in transit."""
    with _writing("transfer ship") as conn:
        t = transfers.ship_transfer(conn=conn, transfer_uuid=transfer_id, carrier=carrier,
                                    by=cli_actor(), version=version)
    _show_transfer(t)


def _site(site: str | None, settings: Settings) -> str:
    if site is not None:
        return site
    if settings.site is None:
        secho("labhub inventory transfer: say which lab site this hub is at (--site, "
                    "or the `site` setting)", fg="red", err=True)
        raise typer.Exit(2)
    return settings.site


SiteOption = Annotated[str | None, typer.Option(
    help="the lab site this hub is at (default: the `site` setting)")]


@transfer_app.command("scan")
def transfer_scan(
    transfer_id: Annotated[str, typer.Argument(metavar="TRANSFER_ID")],
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
                                       site=here, by=cli_actor())
        what = "on the transfer" if scan.on_transfer else "NOT on the transfer (extra)"
        echo(f"{tag:<16} {what}{'' if scan.new else ', already scanned'}")
        count += 1
    echo(f"{count} scanned")


@transfer_app.command("receive")
def transfer_receive(
    transfer_id: Annotated[str, typer.Argument(metavar="TRANSFER_ID")],
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
            conn=conn, transfer_uuid=transfer_id, site=_site(site, settings), by=cli_actor(),
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
    echo(f"audit {a.uuid} at {a.site_code}: {a.status} (version {a.version}), "
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
        echo(f"{finding.finding:<11} {finding.tag:<16} {finding.model_code or '-':<14} "
                   f"{' '.join(p for p in (detail, source, done) if p)}".rstrip())
    for line in r.counts:
        done = " corrected" if line.corrected_at else ""
        echo(f"{'counted':<11} {line.model_code:<16} {line.counted} {line.unit}, stock "
                   f"{line.expected}, difference {line.difference:+d}{done}")
    echo(f"{len(r.found)} found, {len(r.missing)} missing, {len(r.unexpected)} "
               f"unexpected, {len(r.unknown)} unknown")


@audit_app.command("start")
def audit_start(
    site: Annotated[str, typer.Argument(help="the lab site to audit")]
) -> None:
    """Start an audit at a lab site."""
    with _writing("audit start") as conn:
        a = audits.start_audit(conn=conn, site=site, by=cli_actor())
    _show_audit(a)


@audit_app.command("scan")
def audit_scan(
    audit_id: Annotated[str, typer.Argument(metavar="AUDIT_ID")],
    by: ForWhom = None,
    tags: Annotated[list[str] | None, typer.Argument(
        help="scanned tags; none: read one per line from standard input")] = None,
) -> None:
    """Scan tags on the shelves (each committed as it is scanned)."""
    settings = _settings()
    count = 0
    for tag in _tags(tags):
        with _writing("audit scan", settings) as conn:
            scan = audits.scan_tag(conn=conn, audit_uuid=audit_id, tag=tag, by=cli_actor(),
                                   on_behalf_of=by)
        if scan.recorded_site_code is None:
            where = ", no asset has this tag"
        elif scan.recorded_site_code != scan.site_code:
            where = f", recorded at {scan.recorded_site_code} (unexpected here)"
        else:
            where = ""
        echo(f"{tag:<16} {'scanned' if scan.new else 'already scanned'}{where}")
        count += 1
    echo(f"{count} scanned")


@audit_app.command("count")
def audit_count(
    audit_id: Annotated[str, typer.Argument(metavar="AUDIT_ID")],
    model: Annotated[str, typer.Argument(help="a counted model's code")],
    quantity: Annotated[int, typer.Argument(help="how many, in the model's unit")],
    by: ForWhom = None,
) -> None:
    """Record how many of a counted model are on the shelves."""
    with _writing("audit count") as conn:
        a = audits.record_count(conn=conn, audit_uuid=audit_id, model_code=model,
                                quantity=quantity, by=cli_actor(), on_behalf_of=by)
    _show_audit(a)


@audit_app.command("finish")
def audit_finish(
    audit_id: Annotated[str, typer.Argument(metavar="AUDIT_ID")],
    version: Version = None,
) -> None:
    """Finish an audit and print its report."""
    with _writing("audit finish") as conn:
        r = audits.finish_audit(conn=conn, audit_uuid=audit_id, by=cli_actor(), version=version)
    _show_report(r)


@audit_app.command("report")
def audit_report(audit_id: Annotated[str, typer.Argument(metavar="AUDIT_ID")]) -> None:
    """Print the report of a finished audit."""
    with _writing("audit report") as conn:
        r = audits.get_report(conn=conn, audit_uuid=audit_id)
    _show_report(r)


@audit_app.command("apply")
def audit_apply(
    audit_id: Annotated[str, typer.Argument(metavar="AUDIT_ID")],
    version: Version = None,
) -> None:
    """Apply an audit's corrections (missing -> lost, unexpected -> moved here)."""
    with _writing("audit apply") as conn:
        r = audits.apply_corrections(conn=conn, audit_uuid=audit_id, by=cli_actor(),
                                     version=version)
    _show_report(r)


Limit = Annotated[int, typer.Option(help="how many to show")]
Offset = Annotated[int, typer.Option(help="how many to skip")]
SiteUnder = Annotated[str | None, typer.Option(help="site code: there and anywhere under it")]


@audit_app.command("list")
def audit_list(
    site: SiteUnder = None,
    status: Annotated[str | None, typer.Option(help="open, finished or applied")] = None,
    limit: Limit = audits.DEFAULT_LIMIT,
    offset: Offset = 0,
) -> None:
    """List audits, newest first: id, site, status, when started and by whom, how many
    tags were scanned and models counted."""
    from labhub.api.common import iso

    with _writing("audit list") as conn:
        total, items = audits.list_audits(
            conn=conn, site_under=site, status=cast("audits.AuditStatus | None", status),
            limit=limit, offset=offset)
    for a in items:
        echo(f"{a.uuid}  {a.site_code:<16} {a.status:<9} {iso(a.started_at)} "
                   f"{a.started_by}: {a.scanned} scanned, {a.counted} counted")
    echo(f"{len(items)} of {total} audits")


# -- mobile-lab rotations -----------------------------------------------------------------


def _show_rotation(r: rotations.Rotation) -> None:
    echo(f"rotation {r.uuid} of {r.mobile_lab_code}: {r.name}, "
               f"{rotations.rotation_status(r)} (version {r.version})")
    for s in r.stops:
        arrived = f" arrival {s.arrival_transfer_uuid}" if s.arrival_transfer_uuid else ""
        left = f" departure {s.departure_transfer_uuid}" if s.departure_transfer_uuid else ""
        echo(f"  stop {s.seq:<3} {s.site_code:<16} {s.arrive_on} - {s.depart_on}"
                   f"{arrived}{left}")


def _show_manifest(mobile_lab: str, tags: list[str]) -> None:
    for tag in tags:
        echo(f"  {tag}")
    echo(f"{len(tags)} assets on the manifest of {mobile_lab}")


@rotation_app.command("manifest")
def rotation_manifest(
    mobile_lab: Annotated[str, typer.Argument(help="the mobile lab's site code")],
) -> None:
    """Show what travels with a mobile lab."""
    with _writing("rotation manifest") as conn:
        tags = rotations.manifest_of(conn=conn, mobile_lab=mobile_lab)
    _show_manifest(mobile_lab, tags)


@rotation_app.command("manifest-add")
def rotation_manifest_add(
    mobile_lab: Annotated[str, typer.Argument(help="the mobile lab's site code")],
    tags: Annotated[list[str], typer.Argument(help="assets recorded at the mobile lab")],
) -> None:
    """Put assets recorded at the mobile lab on its manifest."""
    with _writing("rotation manifest-add") as conn:
        for tag in tags:
            found = rotations.add_to_manifest(conn=conn, mobile_lab=mobile_lab, tag=tag,
                                              by=cli_actor())
    _show_manifest(mobile_lab, found)


@rotation_app.command("manifest-remove")
def rotation_manifest_remove(
    mobile_lab: Annotated[str, typer.Argument(help="the mobile lab's site code")],
    tags: Annotated[list[str], typer.Argument(help="assets to take off the manifest")],
) -> None:
    """Take assets off a mobile lab's manifest."""
    with _writing("rotation manifest-remove") as conn:
        for tag in tags:
            found = rotations.remove_from_manifest(conn=conn, mobile_lab=mobile_lab, tag=tag,
                                                   by=cli_actor())
    _show_manifest(mobile_lab, found)


def _stop(value: str) -> tuple[str, str, str]:
    site, _, dates = value.partition("@")
    arrive, _, depart = dates.partition("/")
    if not site or not arrive or not depart:
        secho(f"labhub inventory rotation plan: --stop {value!r} is not "
                    "SITE@ARRIVE/DEPART (VL-LP-014@2027-03-01/2027-03-05)", fg="red", err=True)
        raise typer.Exit(2)
    return site, arrive, depart


@rotation_app.command("plan")
def rotation_plan(
    mobile_lab: Annotated[str, typer.Argument(help="the mobile lab's site code")],
    name: Annotated[str, typer.Option(help="the route's name")],
    stop: Annotated[list[str], typer.Option(
        help="a school's lab site and planned dates, SITE@ARRIVE/DEPART (repeat, in order)")],
) -> None:
    """Plan a mobile lab's route of stops, in order, and print it with its id."""
    stops = [_stop(s) for s in stop]
    with _writing("rotation plan") as conn:
        r = rotations.plan_rotation(conn=conn, mobile_lab=mobile_lab, name=name, stops=stops,
                                    by=cli_actor())
    _show_rotation(r)


@rotation_app.command("list")
def rotation_list(
    site: SiteUnder = None,
    status: Annotated[str | None, typer.Option(help="planned, underway or finished")] = None,
    limit: Limit = rotations.DEFAULT_LIMIT,
    offset: Offset = 0,
) -> None:
    """List rotations, newest first (a mobile lab or a stop in ``--site``'s subtree)."""
    with _writing("rotation list") as conn:
        total, items = rotations.list_rotations(
            conn=conn, site_under=site, status=cast("rotations.RotationStatus | None", status),
            limit=limit, offset=offset)
    for r in items:
        echo(f"{r.uuid}  {r.mobile_lab_code:<16} {rotations.rotation_status(r):<9} "
                   f"{len(r.stops)} stops  {r.name}")
    echo(f"{len(items)} of {total} rotations")


@rotation_app.command("show")
def rotation_show(rotation_id: Annotated[str, typer.Argument(metavar="ROTATION_ID")]) -> None:
    """Show a rotation: its stops, dates and the transfers that served them."""
    with _writing("rotation show") as conn:
        r = rotations.get_rotation(conn=conn, rotation_uuid=rotation_id)
    _show_rotation(r)


@rotation_app.command("arrive")
def rotation_arrive(
    rotation_id: Annotated[str, typer.Argument(metavar="ROTATION_ID")],
    seq: Annotated[int, typer.Argument(help="the stop's number, from 1")],
    carrier: Annotated[str, typer.Option(help="who drives")],
    version: Version = None,
) -> None:
    """Arrive at a stop: the manifest is shipped to the school on a transfer, to be
    scanned and received there."""
    with _writing("rotation arrive") as conn:
        r, t = rotations.arrive(conn=conn, rotation_uuid=rotation_id, seq=seq,
                                carrier=carrier, by=cli_actor(), version=version)
    _show_rotation(r)
    _show_transfer(t)


@rotation_app.command("depart")
def rotation_depart(
    rotation_id: Annotated[str, typer.Argument(metavar="ROTATION_ID")],
    seq: Annotated[int, typer.Argument(help="the stop's number, from 1")],
    carrier: Annotated[str, typer.Option(help="who drives")],
    version: Version = None,
) -> None:
    """Leave a stop: what came is shipped back to the mobile lab on a transfer, to be
    scanned and received there."""
    with _writing("rotation depart") as conn:
        r, t = rotations.depart(conn=conn, rotation_uuid=rotation_id, seq=seq,
                                carrier=carrier, by=cli_actor(), version=version)
    _show_rotation(r)
    _show_transfer(t)
