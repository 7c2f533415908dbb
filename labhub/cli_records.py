"""``labhub inventory sites | models | assets``: list the records, correct them, delete a
record made in error, retire one that was used.

Each group lists when called alone (``labhub inventory sites --under VL-R1``) and has the
verbs ``edit``, ``delete`` and ``retire``. They call the same services as the API
(``inventory.sites``, ``catalog``, ``assets``, ``corrections``), each command in one
transaction: ``edit`` changes only the options given (``--clear FIELD`` empties an optional
one), ``--version N`` refuses the change if the record changed since you read version N,
and a refused command prints the reason in red, exits 1 and changes nothing.
"""

from __future__ import annotations

from typing import Annotated, Any, cast

import typer

from inventory import assets, catalog, corrections, history, sites
from labhub import cli_movements
from labhub.cli_common import cli_actor, echo, secho

sites_app = typer.Typer(help="The network tree: list, correct, delete, retire sites.")
models_app = typer.Typer(help="The catalog: list, correct, delete, retire models.")
assets_app = typer.Typer(help="Tagged assets and kits: list, correct, delete, retire.")

Version = Annotated[int | None, typer.Option(
    help="the version you read; refused if it changed since")]
Note = Annotated[str | None, typer.Option(help="why (kept in the history)")]
Clear = Annotated[list[str] | None, typer.Option(
    help="empty this optional field (repeatable)")]


# The same connection as the movement commands: one way to open the hub's database and
# to turn an inventory error into a red line.
_conn = cli_movements.inventory_conn


def _changes(command: str, given: dict[str, Any], clear: list[str] | None,
             clearable: tuple[str, ...]) -> dict[str, Any]:
    """The options given, plus None for each ``--clear``; exit 2 if there is nothing."""
    changes = {k: v for k, v in given.items() if v is not None}
    for name in clear or []:
        field = name.replace("-", "_")
        if field not in clearable:
            secho(f"labhub inventory {command}: --clear {name}: only "
                        f"{', '.join(clearable)} can be cleared", fg="red", err=True)
            raise typer.Exit(2)
        changes[field] = None
    if not changes:
        secho(f"labhub inventory {command}: give at least one field to change",
                    fg="red", err=True)
        raise typer.Exit(2)
    return changes


def _tombstone(e: history.Event) -> None:
    from labhub.api.common import iso  # the web stack only when something is printed

    echo(f"{e.kind} {e.subject} by {e.by} at {iso(e.at)}; the history keeps what it "
               "was")


# -- sites --------------------------------------------------------------------------------


@sites_app.callback(invoke_without_command=True)
def list_sites(
    ctx: typer.Context,
    under: Annotated[str | None, typer.Option(
        help="only this site and everything under it (a region, a municipality)")] = None,
) -> None:
    """List the network tree: code, kind, tier and rollout status of lab sites, name."""
    if ctx.invoked_subcommand is not None:
        return
    with _conn("sites", write=False) as conn:
        found = sites.list_sites(conn=conn, under=under)
    codes = {s.code for s in found}
    children: dict[str | None, list[sites.Site]] = {}
    for s in found:
        children.setdefault(s.parent_code if s.parent_code in codes else None, []).append(s)

    def show(parent: str | None, depth: int) -> None:
        for s in children.get(parent, []):
            lab = f"{s.tier} {s.rollout_status}" if s.kind == "site" else ""
            retired = " (retired)" if s.retired_at is not None else ""
            echo(f"{'  ' * depth}{s.code:<{24 - 2 * depth}} {s.kind:<13} {lab:<24} "
                       f"{s.name}{retired}".rstrip())
            show(s.code, depth + 1)

    show(None, 0)
    echo(f"{len(found)} sites")


def _show_site(s: sites.Site) -> None:
    lab = (f", {s.tier}, {'rural' if s.rural else 'urban'}, {s.rollout_status}"
           if s.kind == "site" else "")
    where = f" at {s.latitude}, {s.longitude}" if s.latitude is not None else ""
    retired = ", retired" if s.retired_at is not None else ""
    echo(f"{s.kind} {s.code}: {s.name} under {s.parent_code or '-'}{lab}{where}"
               f"{retired} (version {s.version})")


@sites_app.command("edit")
def edit_site(
    code: Annotated[str, typer.Argument(help="the site's code")],
    name: Annotated[str | None, typer.Option()] = None,
    parent: Annotated[str | None, typer.Option(help="the site it hangs under")] = None,
    tier: Annotated[str | None, typer.Option(
        help="lab_center, lab_point, lab_spark or mobile_lab")] = None,
    rural: Annotated[bool | None, typer.Option("--rural/--urban")] = None,
    latitude: Annotated[float | None, typer.Option()] = None,
    longitude: Annotated[float | None, typer.Option()] = None,
    institution: Annotated[str | None, typer.Option()] = None,
    clear: Clear = None,
    note: Note = None,
    version: Version = None,
) -> None:
    """Correct a site: only the options given change, each recorded in its history."""
    changes = _changes("sites edit", {
        "name": name, "parent_code": parent, "tier": tier, "rural": rural,
        "latitude": latitude, "longitude": longitude, "institution": institution,
    }, [f for c in clear or [] for f in (("latitude", "longitude") if c == "coordinates"
                                         else (c,))],
        ("institution", "latitude", "longitude"))
    with _conn("sites edit") as conn:
        site = sites.edit_site(conn=conn, code=code, changes=changes, by=cli_actor(), note=note,
                               expected_version=version)
    _show_site(site)


@sites_app.command("delete")
def delete_site(
    code: Annotated[str, typer.Argument(help="the site's code")],
    note: Note = None, version: Version = None,
) -> None:
    """Delete a site made in error and never used (a used one is retired instead)."""
    from labhub.site_uses import site_uses_outside_inventory

    with _conn("sites delete") as conn:
        event = corrections.delete_site(
            conn=conn, code=code, by=cli_actor(), note=note, expected_version=version,
            other_uses=site_uses_outside_inventory(conn, code))
    _tombstone(event)


@sites_app.command("retire")
def retire_site(
    code: Annotated[str, typer.Argument(help="the site's code")],
    note: Note = None, version: Version = None,
) -> None:
    """Retire a site that was used: it keeps its history and takes nothing new."""
    with _conn("sites retire") as conn:
        site = corrections.retire_site(conn=conn, code=code, by=cli_actor(), note=note,
                                       expected_version=version)
    _show_site(site)


# -- models -------------------------------------------------------------------------------


def _show_model(m: catalog.Model) -> None:
    unit = f" in {m.unit}" if m.unit else ""
    retired = ", retired" if m.retired_at is not None else ""
    echo(f"{m.code:<16} {m.category:<21} {m.tracking}{unit}{retired}  {m.name} "
               f"(version {m.version})")


@models_app.callback(invoke_without_command=True)
def list_models(
    ctx: typer.Context,
    category: Annotated[str | None, typer.Option(help="only this category")] = None,
) -> None:
    """List the catalog: code, category, tracking (and unit), name, version."""
    if ctx.invoked_subcommand is not None:
        return
    with _conn("models", write=False) as conn:
        found = catalog.list_models(conn=conn,
                                    category=cast("catalog.Category | None", category))
    for m in found:
        _show_model(m)
    echo(f"{len(found)} models")


@models_app.command("edit")
def edit_model(
    code: Annotated[str, typer.Argument(help="the model's code")],
    name: Annotated[str | None, typer.Option()] = None,
    category: Annotated[str | None, typer.Option()] = None,
    unit: Annotated[str | None, typer.Option(help="a counted model's unit: pcs, m")] = None,
    note: Note = None, version: Version = None,
) -> None:
    """Correct a model's name, category or unit, each recorded in its history."""
    changes = _changes("models edit", {"name": name, "category": category, "unit": unit},
                       None, ())
    with _conn("models edit") as conn:
        model = catalog.edit_model(conn=conn, code=code, changes=changes, by=cli_actor(),
                                   note=note, expected_version=version)
    _show_model(model)


@models_app.command("delete")
def delete_model(
    code: Annotated[str, typer.Argument(help="the model's code")],
    note: Note = None, version: Version = None,
) -> None:
    """Delete a model made in error and never used (a used one is retired instead)."""
    with _conn("models delete") as conn:
        event = corrections.delete_model(conn=conn, code=code, by=cli_actor(), note=note,
                                         expected_version=version)
    _tombstone(event)


@models_app.command("retire")
def retire_model(
    code: Annotated[str, typer.Argument(help="the model's code")],
    note: Note = None, version: Version = None,
) -> None:
    """Retire a model that was used: no new assets of it are registered."""
    with _conn("models retire") as conn:
        model = corrections.retire_model(conn=conn, code=code, by=cli_actor(), note=note,
                                         expected_version=version)
    _show_model(model)


# -- assets -------------------------------------------------------------------------------


def _asset_line(a: assets.Asset) -> str:
    return (f"{a.tag:<16} {a.model_code:<16} {a.status:<11} {a.condition:<7} "
            f"{a.site_code:<16} {a.serial_number or '-'}")


@assets_app.callback(invoke_without_command=True)
def list_assets(
    ctx: typer.Context,
    site: Annotated[str | None, typer.Option(
        help="site code: assets there and anywhere under it")] = None,
    status: Annotated[str | None, typer.Option(
        help="available, on_loan, in_transit, in_repair, lost or retired")] = None,
    search: Annotated[str | None, typer.Option(
        help="part of the tag, serial number, model code or model name")] = None,
    limit: Annotated[int, typer.Option(help="how many to show")] = 50,
    offset: Annotated[int, typer.Option(help="how many to skip")] = 0,
) -> None:
    """List assets by tag: tag, model, status, condition, site, serial number."""
    if ctx.invoked_subcommand is not None:
        return
    with _conn("assets", write=False) as conn:
        total, items = assets.list_assets(
            conn=conn, site_under=site, status=cast("assets.Status | None", status),
            search=search, limit=limit, offset=offset,
        )
    for a in items:
        echo(_asset_line(a))
    echo(f"{len(items)} of {total} assets")


def _show_asset(a: assets.Asset) -> None:
    where = f" ({a.location_code})" if a.location_code else ""
    echo(f"{_asset_line(a)}{where} (version {a.version})")
    if a.notes:
        echo(f"  {a.notes}")


@assets_app.command("edit")
def edit_asset(
    tag: Annotated[str, typer.Argument(help="the asset's tag")],
    model: Annotated[str | None, typer.Option(help="a serialized model's code")] = None,
    serial: Annotated[str | None, typer.Option(help="the maker's serial number")] = None,
    condition: Annotated[str | None, typer.Option(help="good, fair, poor or broken")] = None,
    notes: Annotated[str | None, typer.Option()] = None,
    location: Annotated[str | None, typer.Option(help="a room or shelf of its site")] = None,
    clear: Clear = None,
    note: Note = None, version: Version = None,
) -> None:
    """Correct an asset: only the options given change, each recorded in its history."""
    changes = _changes("assets edit", {
        "model_code": model, "serial_number": serial, "condition": condition,
        "notes": notes, "location_code": location,
    }, [{"serial": "serial_number", "location": "location_code"}.get(c, c)
        for c in clear or []], ("serial_number", "notes", "location_code"))
    with _conn("assets edit") as conn:
        asset = assets.edit_asset(conn=conn, tag=tag, changes=changes, by=cli_actor(), note=note,
                                  expected_version=version)
    _show_asset(asset)


@assets_app.command("delete")
def delete_asset(
    tag: Annotated[str, typer.Argument(help="the asset's (or kit's) tag")],
    note: Note = None, version: Version = None,
) -> None:
    """Delete an asset or kit registered in error and never used (a used one is retired)."""
    with _conn("assets delete") as conn:
        event = corrections.delete_asset(conn=conn, tag=tag, by=cli_actor(), note=note,
                                         expected_version=version)
    _tombstone(event)


@assets_app.command("retire")
def retire_asset(
    tag: Annotated[str, typer.Argument(help="the asset's (or kit's) tag")],
    note: Note = None, version: Version = None,
) -> None:
    """Retire an asset or kit: its status becomes retired, for good."""
    with _conn("assets retire") as conn:
        asset = corrections.retire_asset(conn=conn, tag=tag, by=cli_actor(), note=note,
                                         expected_version=version)
    _show_asset(asset)


def register(group: typer.Typer) -> None:
    """Hang ``sites``, ``models`` and ``assets`` under ``labhub inventory``."""
    group.add_typer(sites_app, name="sites")
    group.add_typer(models_app, name="models")
    group.add_typer(assets_app, name="assets")
