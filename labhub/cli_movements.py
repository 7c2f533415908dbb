"""``labhub inventory`` commands that move things: lend and take back assets and kits,
loan lists, kit contents, counted stock and the reorder report, repairs.

They write through the same domain services as the API (``inventory.loans``, ``kits``,
``stock``, ``maintenance``), each command in one transaction, so a refused command
changes nothing and prints the domain's reason in red (exit 1). :func:`register` adds
them to the ``inventory`` group of ``labhub.cli``. The history records each change as
made by ``labhub CLI (<login>)`` (:func:`labhub.cli_common.cli_actor`); on lend, return
and consume, ``--by`` names the person it was done for (``on_behalf_of``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, cast

import typer
from sqlalchemy import Connection

from inventory import kits, loans, maintenance, stock
from inventory.assets import Condition
from inventory.errors import InventoryError
from inventory.loans import BorrowerKind
from inventory.values import now_us
from labhub.api.common import iso, parse_time
from labhub.cli_common import ForWhom, cli_actor, echo, hub_engine, secho
from labhub.problems import Problem

Site = Annotated[str | None, typer.Option(help="site code: there and anywhere under it")]


@contextmanager
def inventory_conn(command: str, *, write: bool = True) -> Iterator[Connection]:
    """A connection (in a transaction when ``write``); an inventory error is a red line
    naming the command, exit 1, with nothing written."""
    with hub_engine(f"inventory {command}", write=write) as engine:
        try:
            with engine.begin() if write else engine.connect() as conn:
                yield conn
        except (InventoryError, Problem) as exc:
            secho(f"labhub inventory {command}: {exc}", fg="red", err=True)
            raise typer.Exit(1) from None


def _counts(values: list[str], *, what: str) -> dict[str, int]:
    """``MODEL=N`` options as a dict; a bare ``MODEL`` counts 1."""
    counts: dict[str, int] = {}
    for value in values:
        code, _, number = value.partition("=")
        if not code or (number and not number.isdigit()):
            secho(f"labhub inventory: {what} {value!r} is not MODEL=COUNT", fg="red",
                        err=True)
            raise typer.Exit(2)
        counts[code] = counts.get(code, 0) + (int(number) if number else 1)
    return counts


def _loan_line(x: loans.Loan) -> str:
    state = "closed" if not x.open else "overdue" if x.due_at < now_us() else "open"
    out = [i.asset_tag + (" (kit)" if i.is_kit else "") for i in x.items
           if i.returned_at is None]
    items = ", ".join(out) if x.open else f"{len(x.items)} items back"
    return (f"{x.uuid}  due {iso(x.due_at)}  {state:<7}  {x.borrower_kind:<6} "
            f"{x.borrower}: {items}")


def lend(
    tags: Annotated[list[str], typer.Argument(metavar="TAG...", help="assets and kits to lend")],
    to: Annotated[str, typer.Option("--to", help="the borrower: a person, a class, a room")],
    due: Annotated[str, typer.Option(help="when it comes back: 2026-12-04T17:00:00Z")],
    kind: Annotated[str, typer.Option(help="person, group or room")] = "person",
    purpose: Annotated[str | None, typer.Option(help="what it is lent for")] = None,
    by: ForWhom = None,
) -> None:
    """Lend assets and kits of one lab site (each becomes on_loan); prints the loan id."""
    with inventory_conn("lend") as conn:
        due_at = parse_time(due, "--due")
        if due_at is None:
            raise Problem(422, "Invalid time", "--due: a loan needs a due time")
        loan = loans.check_out(conn=conn, asset_tags=tags, borrower=to,
                               borrower_kind=cast("BorrowerKind", kind), due_at=due_at,
                               by=cli_actor(), purpose=purpose, on_behalf_of=by)
    echo(f"loan {loan.uuid}: {', '.join(i.asset_tag for i in loan.items)} to "
               f"{loan.borrower} ({loan.borrower_kind}), due {iso(loan.due_at)}")


def return_(
    tag: Annotated[str, typer.Argument(help="the asset or kit that came back")],
    condition: Annotated[str | None, typer.Option(help="good, fair, poor or broken")] = None,
    asset: Annotated[list[str], typer.Option(
        "--asset", help="for a kit: a tagged asset of it that came back (repeat)")] = [],  # noqa: B006
    part: Annotated[list[str], typer.Option(
        help="for a kit: MODEL=COUNT of a counted part that came back (repeat)")] = [],  # noqa: B006
    damaged: Annotated[list[str], typer.Option(
        help="for a kit: a returned TAG, or MODEL=COUNT, that came back broken")] = [],  # noqa: B006
    rest_later: Annotated[bool, typer.Option(
        help="a kit: more of it comes back later (keep it on loan)")] = False,
    by: ForWhom = None,
) -> None:
    """Take back an asset or kit from the loan that holds it. For a kit, name what came
    back with --asset and --part (nothing named: it came back complete); the kit check
    records what is missing."""
    kit = None
    if asset or part or damaged:
        damaged_tags = frozenset(d for d in damaged if "=" not in d)
        kit = kits.KitReturn(
            tags=frozenset(asset), parts=_counts(part, what="--part"),
            damaged_tags=damaged_tags,
            damaged_parts=_counts([d for d in damaged if "=" in d], what="--damaged"),
        )
    with inventory_conn("return") as conn:
        loan = loans.check_in_tag(conn=conn, tag=tag, by=cli_actor(), on_behalf_of=by,
                                  condition=cast("Condition | None", condition), kit=kit,
                                  rest_later=rest_later)
        losses = [x for x in kits.list_losses(conn=conn, kit_tag=tag)
                  if x.loan_uuid == loan.uuid] if not rest_later else []
    left = [i.asset_tag for i in loan.items if i.returned_at is None]
    echo(f"{tag} back from loan {loan.uuid}" + (" (more to come)" if rest_later else ""))
    for x in losses:
        echo(f"  {x.damage} {x.quantity} x {x.part}")
    echo("loan closed" if not loan.open else f"still out: {', '.join(left)}")


def _print_loans(total: int, found: list[loans.Loan]) -> None:
    for x in found:
        echo(_loan_line(x))
    echo(f"{len(found)} of {total} loans")


def list_loans(
    borrower: Annotated[str | None, typer.Option(help="part of the borrower's name")] = None,
    site: Site = None,
    all_: Annotated[bool, typer.Option("--all", help="closed loans too")] = False,
    limit: Annotated[int, typer.Option(help="how many to show")] = 50,
    offset: Annotated[int, typer.Option(help="how many to skip")] = 0,
) -> None:
    """List open loans (--all: closed too) by due time: id, due, state, borrower, items out."""
    with inventory_conn("loans", write=False) as conn:
        total, found = loans.list_loans(conn=conn, borrower=borrower, site_under=site,
                                        open_only=None if all_ else True, limit=limit,
                                        offset=offset)
    _print_loans(total, found)


def overdue(
    site: Site = None,
    soon: Annotated[bool, typer.Option(
        help="loans due within 48 hours instead of those past due")] = False,
    limit: Annotated[int, typer.Option(help="how many to show")] = 50,
) -> None:
    """List open loans past their due time (or --soon: due within 48 hours)."""
    with inventory_conn("overdue", write=False) as conn:
        total, found = loans.list_loans(conn=conn, site_under=site, overdue=not soon,
                                        due_soon=soon, limit=limit)
    _print_loans(total, found)


def kit_contents(
    kit: Annotated[str, typer.Argument(help="the kit's tag")],
    asset: Annotated[list[str], typer.Option(
        "--asset", help="a tagged asset the kit holds (repeat); replaces the list")] = [],  # noqa: B006
    part: Annotated[list[str], typer.Option(
        help="MODEL=COUNT of a counted part the kit holds (repeat); replaces the list")] = [],  # noqa: B006
) -> None:
    """Show what a kit should hold, or replace the list with --asset and --part."""
    with inventory_conn("kit-contents", write=bool(asset or part)) as conn:
        if asset or part:
            contents = kits.define_contents(conn=conn, kit_tag=kit, assets=asset,
                                            parts=_counts(part, what="--part"), by=cli_actor())
        else:
            contents = kits.get_contents(conn=conn, kit_tag=kit)
    for tag in contents.assets:
        echo(f"  asset {tag}")
    for code, quantity in contents.parts.items():
        echo(f"  {quantity:>5} x {code}")
    echo(f"kit {kit} (version {contents.version}): {len(contents.assets)} assets, "
               f"{len(contents.parts)} counted parts")


def show_stock(
    site: Site = None,
    model: Annotated[str | None, typer.Option(help="one counted model")] = None,
    limit: Annotated[int, typer.Option(help="how many to show")] = 50,
    offset: Annotated[int, typer.Option(help="how many to skip")] = 0,
) -> None:
    """List counted stock by site and model: quantity, unit, reorder threshold."""
    with inventory_conn("stock", write=False) as conn:
        total, levels = stock.list_stock(conn=conn, site_under=site, model_code=model,
                                         limit=limit, offset=offset)
    for x in levels:
        threshold = "-" if x.reorder_threshold is None else str(x.reorder_threshold)
        echo(f"{x.site_code:<16} {x.model_code:<16} {x.quantity:>8} {x.unit:<6} "
                   f"reorder below {threshold}")
    echo(f"{len(levels)} of {total} stock levels")


Quantity = Annotated[int, typer.Argument(help="how many, in the model's unit")]
SiteArg = Annotated[str, typer.Argument(help="the lab site's code")]
ModelArg = Annotated[str, typer.Argument(help="a counted model's code")]
Note = Annotated[str | None, typer.Option(help="a note for the history")]


def _level(x: stock.StockLevel) -> None:
    echo(f"{x.site_code} {x.model_code}: {x.quantity} {x.unit}")


def receive(site: SiteArg, model: ModelArg, quantity: Quantity, note: Note = None) -> None:
    """Record a delivery of a counted model at a lab site."""
    with inventory_conn("receive") as conn:
        _level(stock.receive(conn=conn, site_code=site, model_code=model, quantity=quantity,
                             by=cli_actor(), note=note))


def consume(site: SiteArg, model: ModelArg, quantity: Quantity, note: Note = None,
            by: ForWhom = None) -> None:
    """Record parts of a counted model used up at a lab site."""
    with inventory_conn("consume") as conn:
        _level(stock.consume(conn=conn, site_code=site, model_code=model, quantity=quantity,
                             by=cli_actor(), note=note, on_behalf_of=by))


def recount(site: SiteArg, model: ModelArg, quantity: Quantity, note: Note = None) -> None:
    """Set a lab site's stock of a counted model to what was counted."""
    with inventory_conn("recount") as conn:
        _level(stock.adjust(conn=conn, site_code=site, model_code=model, quantity=quantity,
                            by=cli_actor(), note=note))


def threshold(
    site: SiteArg, model: ModelArg,
    level: Annotated[int, typer.Argument(help="reorder below this; 0: never")],
) -> None:
    """Set the stock level under which a counted model is reordered at a site."""
    with inventory_conn("threshold") as conn:
        x = stock.set_reorder_threshold(conn=conn, site_code=site, model_code=model,
                                        threshold=level or None, by=cli_actor())
    echo(f"{x.site_code} {x.model_code}: reorder below {x.reorder_threshold or '-'}")


def reorder(
    site: Site = None,
    model: Annotated[str | None, typer.Option(help="one counted model")] = None,
    limit: Annotated[int, typer.Option(help="how many to show")] = 500,
    offset: Annotated[int, typer.Option(help="how many to skip")] = 0,
) -> None:
    """The reorder report: every site and model below its threshold, with the shortfall."""
    with inventory_conn("reorder", write=False) as conn:
        total, lines = stock.reorder_report(conn=conn, site_under=site, model_code=model,
                                            limit=limit, offset=offset)
    for x in lines:
        echo(f"{x.site_code:<16} {x.model_code:<16} on hand {x.on_hand} {x.unit}, "
                   f"threshold {x.threshold}, short {x.shortfall}")
    echo(f"{len(lines)} of {total} to reorder")


def repair(
    tag: Annotated[str, typer.Argument(help="the asset to take out of service")],
    fault: Annotated[str, typer.Option(help="what is wrong")],
    condition: Annotated[str | None, typer.Option(help="good, fair, poor or broken")] = None,
) -> None:
    """Take an asset out of service for repair (status in_repair); prints the repair id."""
    with inventory_conn("repair") as conn:
        x = maintenance.start_repair(conn=conn, tag=tag, fault=fault, by=cli_actor(),
                                     condition=cast("Condition | None", condition))
    echo(f"repair {x.uuid}: {tag} in_repair ({x.fault})")


def repaired(
    tag: Annotated[str, typer.Argument(help="the asset back in service")],
    done: Annotated[str, typer.Option(help="what was done")],
    condition: Annotated[str, typer.Option(help="good, fair, poor or broken")] = "good",
) -> None:
    """Put an asset in repair back in service with what was done (status available)."""
    with inventory_conn("repaired") as conn:
        open_ = [r for r in maintenance.repairs_of(conn=conn, tag=tag) if r.open]
        if not open_:
            raise InventoryError(f"asset {tag!r} has no open repair")
        x = maintenance.finish_repair(conn=conn, repair_uuid=open_[-1].uuid, work_done=done,
                                      by=cli_actor(), condition=cast("Condition", condition))
    echo(f"{tag} back in service ({x.condition_after}): {x.work_done}")


def register(group: typer.Typer) -> None:
    """Add the movement commands to the ``labhub inventory`` group."""
    for name, command in (
        ("lend", lend), ("return", return_), ("loans", list_loans), ("overdue", overdue),
        ("kit-contents", kit_contents), ("stock", show_stock), ("receive", receive),
        ("consume", consume), ("recount", recount), ("threshold", threshold),
        ("reorder", reorder), ("repair", repair), ("repaired", repaired),
    ):
        group.command(name)(command)
