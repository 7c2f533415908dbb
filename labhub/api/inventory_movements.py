"""Inventory movements API: locations, counted stock and the reorder report, kit
contents, loans (with scanner check-out and check-in by tag) and repairs.

Thin routes over ``inventory.locations``, ``stock``, ``kits``, ``loans`` and
``maintenance``: each write is one transaction (``WriteConn``), so a refused request
changes nothing, and domain errors become problem+json in ``labhub.problems``. Writes
that change a versioned thing (an asset or kit, a loan, a stock level) take the version
the client read, as ``expected_version`` in the body or an ``If-Match`` header; a stale
one is a 409. Times go in and out as RFC 3339 UTC text.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from inventory import kits, loans, locations, maintenance, stock
from inventory.assets import Condition
from inventory.loans import BorrowerKind
from inventory.values import now_us
from labhub.access.gate import On, needs, require_at, scope_of
from labhub.access.permissions import P
from labhub.access.sites import asset_sites
from labhub.api.common import (
    Actor,
    BodyIn,
    FilledText,
    IfMatch,
    Key,
    Name,
    Offset,
    OnBehalfOf,
    PathText,
    ReadConn,
    TimeIn,
    WriteConn,
    check_page,
    expected_version,
    iso,
    limit_query,
    parse_time,
)
from labhub.api.deps import settings_of
from labhub.api.inventory import AssetOut, Note, _asset_out
from labhub.problems import Problem, problem_responses
from labtext.times import US_PER_S, format_time

router = APIRouter(prefix="/api/v1", tags=["inventory movements"])

Count = Annotated[int, Field(ge=0, le=stock.QUANTITY_MAX)]


def _cap(request: Request, limit: int, offset: int, domain_max: int) -> None:
    check_page(limit, offset, min(settings_of(request).page_limit_max, domain_max))


# -- locations ----------------------------------------------------------------------------


class LocationIn(BodyIn):
    """A room or shelf to add to a lab site."""

    site: Key
    code: Key = Field(examples=["SALA-2/ESTANTE-B"])
    name: Name = Field(examples=["Sala 2, estante B"])


class LocationOut(BaseModel):
    """A room or shelf at a lab site."""

    site: str
    code: str
    name: str


class PlaceIn(BodyIn):
    """Where at its site an asset now is (null: no particular place)."""

    location: Key | None = None
    expected_version: int | None = None


def _location_out(x: locations.Location) -> LocationOut:
    return LocationOut(site=x.site_code, code=x.code, name=x.name)


@router.post("/locations", response_model=LocationOut, status_code=201,
             summary="Add a room or shelf to a lab site",
             dependencies=[needs(P.INVENTORY_MANAGE, On.ROUTE)])
def create_location(
    body: LocationIn, actor: Actor, conn: WriteConn, request: Request,
) -> LocationOut:
    """A code already used at the site is a 409."""
    require_at(request, P.INVENTORY_MANAGE, body.site)
    return _location_out(locations.create_location(
        conn=conn, site_code=body.site, code=body.code, name=body.name, by=actor))


class LocationPage(BaseModel):
    """One page of locations and how many match in all."""

    total: int
    items: list[LocationOut]


@router.get("/locations", response_model=LocationPage, summary="List locations",
            responses=problem_responses(404),
            dependencies=[needs(P.INVENTORY_READ, On.NOTHING)])
def list_locations(
    request: Request, conn: ReadConn, site: Key | None = None,
    limit: Annotated[int, limit_query(locations.MAX_LIMIT)] = locations.DEFAULT_LIMIT,
    offset: Offset = 0,
) -> LocationPage:
    """Locations by site and code, optionally of one lab site. Only locations at sites
    where the caller may read the inventory, in the total too."""
    _cap(request, limit, offset, locations.MAX_LIMIT)
    total, items = locations.list_locations(conn=conn, site_code=site, limit=limit,
                                            offset=offset,
                                            sites=scope_of(request, P.INVENTORY_READ))
    return LocationPage(total=total, items=[_location_out(x) for x in items])


@router.post("/assets/by-tag/{tag:path}/location", response_model=AssetOut,
             summary="Put an asset in a room or shelf of its site",
             dependencies=[needs(P.INVENTORY_MANAGE, On.path("asset", "tag"))])
def place_asset(
    tag: PathText, body: PlaceIn, actor: Actor, conn: WriteConn, if_match: IfMatch = None,
) -> AssetOut:
    """The location must be at the asset's site; moving to another site clears it."""
    return _asset_out(locations.place_asset(
        conn=conn, tag=tag, location_code=body.location, by=actor,
        expected_version=expected_version(if_match, body.expected_version)))


# -- stock --------------------------------------------------------------------------------


class StockOut(BaseModel):
    """How much of a counted model a lab site holds."""

    site: str
    model: str
    quantity: int
    unit: str
    reorder_threshold: int | None
    version: int
    updated_at: str | None


class StockPage(BaseModel):
    """One page of stock levels and how many match in all."""

    total: int
    items: list[StockOut]


class StockMoveIn(BodyIn):
    """A quantity of a counted model received or consumed at a lab site."""

    site: Key
    model: Key
    quantity: Annotated[int, Field(ge=1, le=stock.QUANTITY_MAX)]
    note: Note = None


class StockUseIn(StockMoveIn):
    """A quantity of a counted model used up at a lab site (perhaps by a student the
    signed-in person records it for)."""

    on_behalf_of: OnBehalfOf = None


class StockCountIn(BodyIn):
    """A recount: the quantity a lab site holds now."""

    site: Key
    model: Key
    quantity: Count
    note: Note = None
    expected_version: int | None = None


class ThresholdIn(BodyIn):
    """The stock level under which a model is reordered at a site (null: never)."""

    site: Key
    model: Key
    threshold: Annotated[int | None, Field(ge=1, le=stock.QUANTITY_MAX)] = None
    expected_version: int | None = None


class ReorderOut(BaseModel):
    """A site and model below the reorder threshold."""

    site: str
    model: str
    unit: str
    on_hand: int
    threshold: int
    shortfall: int


def _stock_out(x: stock.StockLevel) -> StockOut:
    return StockOut(site=x.site_code, model=x.model_code, quantity=x.quantity, unit=x.unit,
                    reorder_threshold=x.reorder_threshold, version=x.version,
                    updated_at=iso(x.updated_at) if x.version else None)


@router.get("/stock", response_model=StockPage, summary="Counted stock by site and model",
            responses=problem_responses(404),
            dependencies=[needs(P.INVENTORY_READ, On.NOTHING)])
def list_stock(
    request: Request, conn: ReadConn, site: Key | None = None, model: Key | None = None,
    limit: Annotated[int, limit_query(stock.MAX_LIMIT)] = stock.DEFAULT_LIMIT,
    offset: Offset = 0,
) -> StockPage:
    """``site`` takes the site and its whole subtree. Only stock at sites where the
    caller may read the inventory, in the total too."""
    _cap(request, limit, offset, stock.MAX_LIMIT)
    total, items = stock.list_stock(conn=conn, site_under=site, model_code=model, limit=limit,
                                    offset=offset, sites=scope_of(request, P.INVENTORY_READ))
    return StockPage(total=total, items=[_stock_out(x) for x in items])


@router.post("/stock/receive", response_model=StockOut, summary="Record a delivery",
             dependencies=[needs(P.INVENTORY_MANAGE, On.ROUTE)])
def receive_stock(body: StockMoveIn, actor: Actor, conn: WriteConn, request: Request) -> StockOut:
    """Adds ``quantity`` to the site's stock of a counted model."""
    require_at(request, P.INVENTORY_MANAGE, body.site)
    return _stock_out(stock.receive(conn=conn, site_code=body.site, model_code=body.model,
                                    quantity=body.quantity, by=actor, note=body.note))


@router.post("/stock/consume", response_model=StockOut, summary="Record parts used up",
             dependencies=[needs(P.INVENTORY_MANAGE, On.ROUTE)])
def consume_stock(body: StockUseIn, actor: Actor, conn: WriteConn, request: Request) -> StockOut:
    """Takes ``quantity`` out; more than the site holds is a 422."""
    require_at(request, P.INVENTORY_MANAGE, body.site)
    return _stock_out(stock.consume(conn=conn, site_code=body.site, model_code=body.model,
                                    quantity=body.quantity, by=actor, note=body.note,
                                    on_behalf_of=body.on_behalf_of))


@router.post("/stock/adjust", response_model=StockOut, summary="Record a recount",
             dependencies=[needs(P.INVENTORY_MANAGE, On.ROUTE)])
def adjust_stock(
    body: StockCountIn, actor: Actor, conn: WriteConn, request: Request, if_match: IfMatch = None,
) -> StockOut:
    """Sets the site's stock to the counted ``quantity``."""
    require_at(request, P.INVENTORY_MANAGE, body.site)
    return _stock_out(stock.adjust(
        conn=conn, site_code=body.site, model_code=body.model, quantity=body.quantity,
        by=actor, note=body.note,
        expected_version=expected_version(if_match, body.expected_version)))


@router.post("/stock/threshold", response_model=StockOut,
             summary="Set the reorder threshold of a model at a site",
             dependencies=[needs(P.INVENTORY_MANAGE, On.ROUTE)])
def set_threshold(
    body: ThresholdIn, actor: Actor, conn: WriteConn, request: Request, if_match: IfMatch = None,
) -> StockOut:
    """The model shows on the reorder report while its stock is below the threshold."""
    require_at(request, P.INVENTORY_MANAGE, body.site)
    return _stock_out(stock.set_reorder_threshold(
        conn=conn, site_code=body.site, model_code=body.model, threshold=body.threshold,
        by=actor, expected_version=expected_version(if_match, body.expected_version)))


class ReorderPage(BaseModel):
    """One page of the reorder report and how many lines it has in all."""

    total: int
    items: list[ReorderOut]


@router.get("/reorder", response_model=ReorderPage, summary="The reorder report",
            responses=problem_responses(404),
            dependencies=[needs(P.INVENTORY_READ, On.NOTHING)])
def reorder(
    request: Request, conn: ReadConn, site: Key | None = None, model: Key | None = None,
    limit: Annotated[int, limit_query(stock.MAX_LIMIT)] = stock.DEFAULT_LIMIT,
    offset: Offset = 0,
) -> ReorderPage:
    """Every site and model below its threshold, by site and model, with the shortfall;
    ``site`` takes the site and its whole subtree. Only sites where the caller may read
    the inventory, in the total too."""
    _cap(request, limit, offset, stock.MAX_LIMIT)
    total, lines = stock.reorder_report(conn=conn, site_under=site, model_code=model,
                                        limit=limit, offset=offset,
                                        sites=scope_of(request, P.INVENTORY_READ))
    return ReorderPage(total=total, items=[
        ReorderOut(site=x.site_code, model=x.model_code, unit=x.unit, on_hand=x.on_hand,
                   threshold=x.threshold, shortfall=x.shortfall)
        for x in lines
    ])


# -- kits ---------------------------------------------------------------------------------


class KitContentsIn(BodyIn):
    """What a kit should hold: tags of its assets, and counted parts with quantities."""

    assets: list[Key] = Field(default=[], max_length=kits.KIT_LINES_MAX,
                              examples=[["VC-0001"]])
    parts: dict[Key, Annotated[int, Field(ge=1, le=kits.PART_QUANTITY_MAX)]] = Field(
        default={}, examples=[{"JMP-WIRE": 40, "LED-5MM": 10}])
    expected_version: int | None = None


class KitContentsOut(BaseModel):
    """A kit's contents list and the kit's version."""

    kit: str
    version: int
    assets: list[str]
    parts: dict[Key, int]


class KitLossOut(BaseModel):
    """A part that a kit check found missing or broken."""

    id: str
    kit: str
    part: str
    kind: str
    damage: str
    quantity: int
    loan: str | None
    site: str
    at: str
    by: str


def _contents_out(x: kits.KitContents) -> KitContentsOut:
    return KitContentsOut(kit=x.kit_tag, version=x.version, assets=list(x.assets),
                          parts=x.parts)


@router.get("/kits/{tag:path}/contents", response_model=KitContentsOut,
            summary="What a kit should hold",
            dependencies=[needs(P.INVENTORY_READ, On.path("asset", "tag"))])
def get_contents(tag: PathText, conn: ReadConn) -> KitContentsOut:
    """Empty lists for an asset that has no contents list."""
    return _contents_out(kits.get_contents(conn=conn, kit_tag=tag))


@router.put("/kits/{tag:path}/contents", response_model=KitContentsOut,
            summary="Define or replace what a kit should hold",
            dependencies=[needs(P.INVENTORY_MANAGE, On.path("asset", "tag"))])
def define_contents(
    tag: PathText, body: KitContentsIn, actor: Actor, conn: WriteConn, if_match: IfMatch = None
) -> KitContentsOut:
    """Replaces the whole list; the kit's version goes up."""
    return _contents_out(kits.define_contents(
        conn=conn, kit_tag=tag, assets=body.assets, parts=body.parts, by=actor,
        expected_version=expected_version(if_match, body.expected_version)))


@router.get("/kits/{tag:path}/losses", response_model=list[KitLossOut],
            summary="A kit's loss and damage records",
            dependencies=[needs(P.INVENTORY_READ, On.path("asset", "tag"))])
def list_losses(tag: PathText, conn: ReadConn) -> list[KitLossOut]:
    """Oldest first."""
    return [
        KitLossOut(id=x.uuid, kit=x.kit_tag, part=x.part, kind=x.kind, damage=x.damage,
                   quantity=x.quantity, loan=x.loan_uuid, site=x.site_code,
                   at=iso(x.at) or "", by=x.by)
        for x in kits.list_losses(conn=conn, kit_tag=tag)
    ]


# -- loans --------------------------------------------------------------------------------


# A due time the document shows: a week from when the hub started, so it is valid now.
_DUE_EXAMPLE = format_time((now_us() // US_PER_S + 7 * 24 * 3600) * US_PER_S)


class LoanIn(BodyIn):
    """Assets and kits of one lab site to lend."""

    items: list[Key] = Field(min_length=1, max_length=loans.LOAN_ITEMS_MAX,
                             examples=[["VC-KIT-07"]])
    borrower: Name = Field(examples=["Prof. Marta Ruiz, 7B"])
    borrower_kind: BorrowerKind
    due: TimeIn = Field(examples=[_DUE_EXAMPLE], description="in the future")
    purpose: Name | None = None
    # The version of each item the client read, where it wants a stale one refused.
    expected_versions: dict[Key, int] = Field(default={}, examples=[{"VC-KIT-07": 3}])
    on_behalf_of: OnBehalfOf = None


class ScanOutIn(BodyIn):
    """One scanned asset or kit to lend."""

    borrower: Name = Field(examples=["Prof. Marta Ruiz, 7B"])
    borrower_kind: BorrowerKind
    due: TimeIn = Field(examples=[_DUE_EXAMPLE], description="in the future")
    purpose: Name | None = None
    expected_version: int | None = None
    on_behalf_of: OnBehalfOf = None


class KitBackIn(BodyIn):
    """What came back of a kit: tags of its assets, and counts of its counted parts,
    with which of them are damaged."""

    assets: list[Key] = Field(default=[], max_length=kits.KIT_LINES_MAX)
    parts: dict[Key, Count] = Field(default={}, examples=[{"JMP-WIRE": 37, "LED-5MM": 10}])
    damaged_assets: list[Key] = Field(default=[], max_length=kits.KIT_LINES_MAX)
    damaged_parts: dict[Key, Count] = Field(default={}, examples=[{"LED-5MM": 2}])

    def domain(self) -> kits.KitReturn:
        """As the domain's kit return."""
        return kits.KitReturn(frozenset(self.assets), dict(self.parts),
                              frozenset(self.damaged_assets), dict(self.damaged_parts))


class ReturnIn(BodyIn):
    """One item that came back; ``kit`` omitted for a kit means it came back complete."""

    tag: Key
    condition: Condition | None = None
    kit: KitBackIn | None = None
    rest_later: bool = False


class CheckInIn(BodyIn):
    """Items of a loan that came back now (the others stay out)."""

    returns: list[ReturnIn] = Field(min_length=1, max_length=loans.LOAN_ITEMS_MAX)
    note: Note = None
    expected_version: int | None = None
    on_behalf_of: OnBehalfOf = None


class ScanInIn(BodyIn):
    """A scanned asset or kit that came back."""

    condition: Condition | None = None
    kit: KitBackIn | None = None
    rest_later: bool = False
    note: Note = None
    expected_version: int | None = None
    on_behalf_of: OnBehalfOf = None


class LoanItemOut(BaseModel):
    """One item of a loan."""

    tag: str
    kit: bool
    returned_at: str | None
    condition: str | None


class LoanOut(BaseModel):
    """A loan and its items."""

    id: str
    borrower: str
    borrower_kind: str
    purpose: str | None
    site: str
    checked_out_at: str
    due_at: str
    closed_at: str | None
    open: bool
    overdue: bool
    by: str
    version: int
    items: list[LoanItemOut]


class LoanPage(BaseModel):
    """One page of loans and how many match in all."""

    total: int
    items: list[LoanOut]


def _loan_out(x: loans.Loan) -> LoanOut:
    return LoanOut(
        id=x.uuid, borrower=x.borrower, borrower_kind=x.borrower_kind, purpose=x.purpose,
        site=x.site_code, checked_out_at=iso(x.checked_out_at) or "", due_at=iso(x.due_at) or "",
        closed_at=iso(x.closed_at), open=x.open, overdue=x.open and x.due_at < now_us(),
        by=x.by, version=x.version,
        items=[LoanItemOut(tag=i.asset_tag, kit=i.is_kit, returned_at=iso(i.returned_at),
                           condition=i.condition) for i in x.items],
    )


def _due(value: str | float) -> int:
    due = parse_time(value, "body.due")
    if due is None:
        raise Problem(422, "Invalid time", "body.due: a loan needs a due time")
    return due


@router.post("/loans", response_model=LoanOut, status_code=201, summary="Lend assets and kits",
             dependencies=[needs(P.LOANS_WRITE, On.ROUTE)])
def create_loan(body: LoanIn, actor: Actor, conn: WriteConn, request: Request) -> LoanOut:
    """Every item becomes on_loan (a kit's tagged contents too); an item that is not
    available is a 409 naming it. Lending needs ``loans.write`` at the items' site."""
    require_at(request, P.LOANS_WRITE, *asset_sites(conn, body.items))
    return _loan_out(loans.check_out(
        conn=conn, asset_tags=body.items, borrower=body.borrower,
        borrower_kind=body.borrower_kind, due_at=_due(body.due), by=actor,
        purpose=body.purpose, expected_versions=body.expected_versions,
        on_behalf_of=body.on_behalf_of))


@router.get("/loans", response_model=LoanPage, summary="List loans",
            responses=problem_responses(404),
            dependencies=[needs(P.INVENTORY_READ, On.NOTHING)])
def list_loans(
    request: Request, conn: ReadConn, borrower: Name | None = None, site: Key | None = None,
    open: bool | None = None, overdue: bool = False, due_soon: bool = False,
    limit: Annotated[int, limit_query(loans.MAX_LIMIT)] = loans.DEFAULT_LIMIT,
    offset: Offset = 0,
) -> LoanPage:
    """Loans by due time. ``borrower`` matches part of the name; ``site`` the lending
    site and its subtree; ``open=true`` open loans, ``open=false`` closed ones;
    ``overdue=true`` open loans past due; ``due_soon=true`` open loans due within 48 h."""
    _cap(request, limit, offset, loans.MAX_LIMIT)
    total, items = loans.list_loans(conn=conn, borrower=borrower, site_under=site,
                                    open_only=open, overdue=overdue, due_soon=due_soon,
                                    limit=limit, offset=offset,
                                    sites=scope_of(request, P.INVENTORY_READ))
    return LoanPage(total=total, items=[_loan_out(x) for x in items])


@router.get("/loans/{loan_id}", response_model=LoanOut, summary="One loan",
            dependencies=[needs(P.INVENTORY_READ, On.path("loan", "loan_id"))])
def get_loan(loan_id: PathText, conn: ReadConn) -> LoanOut:
    """A loan by its id."""
    return _loan_out(loans.get_loan(conn=conn, loan_uuid=loan_id))


def _return(r: ReturnIn) -> loans.ItemReturn:
    return loans.ItemReturn(tag=r.tag, condition=r.condition,
                            kit=None if r.kit is None else r.kit.domain(),
                            rest_later=r.rest_later)


@router.post("/loans/{loan_id}/check-in", response_model=LoanOut,
             summary="Take back items of a loan",
             dependencies=[needs(P.LOANS_WRITE, On.path("loan", "loan_id"))])
def check_in(
    loan_id: PathText, body: CheckInIn, actor: Actor, conn: WriteConn, if_match: IfMatch = None,
) -> LoanOut:
    """Some items now, the rest later; a kit is checked against its list. An item not
    out on this loan is a 409; a kit part not on its list, or more than it holds, a 422.
    ``expected_version`` / ``If-Match`` is the loan's."""
    return _loan_out(loans.check_in(
        conn=conn, loan_uuid=loan_id, returns=[_return(r) for r in body.returns], by=actor,
        note=body.note, expected_version=expected_version(if_match, body.expected_version),
        on_behalf_of=body.on_behalf_of))


@router.post("/assets/by-tag/{tag:path}/check-out", response_model=LoanOut, status_code=201,
             summary="Lend one scanned asset or kit",
             dependencies=[needs(P.LOANS_WRITE, On.path("asset", "tag"))])
def check_out_tag(
    tag: PathText, body: ScanOutIn, actor: Actor, conn: WriteConn, if_match: IfMatch = None,
) -> LoanOut:
    """A loan of one item; ``expected_version`` / ``If-Match`` is the asset's."""
    version = expected_version(if_match, body.expected_version)
    return _loan_out(loans.check_out(
        conn=conn, asset_tags=[tag], borrower=body.borrower, borrower_kind=body.borrower_kind,
        due_at=_due(body.due), by=actor, purpose=body.purpose,
        expected_versions=None if version is None else {tag: version},
        on_behalf_of=body.on_behalf_of))


@router.post("/assets/by-tag/{tag:path}/check-in", response_model=LoanOut,
             summary="Take back one scanned asset or kit",
             dependencies=[needs(P.LOANS_WRITE, On.path("asset", "tag"))])
def check_in_tag(
    tag: PathText, body: ScanInIn, actor: Actor, conn: WriteConn, if_match: IfMatch = None,
) -> LoanOut:
    """From whichever open loan holds it; an asset not on loan is a 409 naming it."""
    return _loan_out(loans.check_in_tag(
        conn=conn, tag=tag, by=actor, condition=body.condition,
        kit=None if body.kit is None else body.kit.domain(), rest_later=body.rest_later,
        note=body.note, expected_version=expected_version(if_match, body.expected_version),
        on_behalf_of=body.on_behalf_of))


# -- repairs ------------------------------------------------------------------------------


class RepairIn(BodyIn):
    """An asset to take out of service, and why."""

    fault: Annotated[FilledText, Field(max_length=maintenance.FAULT_MAX)] = Field(
                       examples=["no enciende"])
    condition: Condition | None = None
    expected_version: int | None = None


class RepairDoneIn(BodyIn):
    """What was done, and the condition the asset is in."""

    work_done: Annotated[FilledText, Field(max_length=maintenance.FAULT_MAX)] = Field(
                           examples=["cambio del regulador de 5 V"])
    condition: Condition = "good"
    expected_version: int | None = None


class RepairOut(BaseModel):
    """One spell of an asset out of service."""

    id: str
    tag: str
    fault: str
    started_at: str
    started_by: str
    finished_at: str | None
    finished_by: str | None
    work_done: str | None
    condition_after: str | None
    open: bool


def _repair_out(x: maintenance.Repair) -> RepairOut:
    return RepairOut(id=x.uuid, tag=x.asset_tag, fault=x.fault, started_at=iso(x.started_at) or "",
                     started_by=x.started_by, finished_at=iso(x.finished_at),
                     finished_by=x.finished_by, work_done=x.work_done,
                     condition_after=x.condition_after, open=x.open)


@router.post("/assets/{tag:path}/repairs", response_model=RepairOut, status_code=201,
             summary="Take an asset out of service for repair",
             dependencies=[needs(P.LOANS_WRITE, On.path("asset", "tag"))])
def start_repair(
    tag: PathText, body: RepairIn, actor: Actor, conn: WriteConn, if_match: IfMatch = None,
) -> RepairOut:
    """The asset becomes in_repair; one out on loan is checked in first (409)."""
    return _repair_out(maintenance.start_repair(
        conn=conn, tag=tag, fault=body.fault, by=actor, condition=body.condition,
        expected_version=expected_version(if_match, body.expected_version)))


@router.get("/assets/{tag:path}/repairs", response_model=list[RepairOut],
            summary="An asset's repair history",
            dependencies=[needs(P.INVENTORY_READ, On.path("asset", "tag"))])
def list_repairs(tag: PathText, conn: ReadConn) -> list[RepairOut]:
    """Oldest first."""
    return [_repair_out(x) for x in maintenance.repairs_of(conn=conn, tag=tag)]


@router.post("/repairs/{repair_id}/finish", response_model=RepairOut,
             summary="Put a repaired asset back in service",
             dependencies=[needs(P.LOANS_WRITE, On.path("repair", "repair_id"))])
def finish_repair(
    repair_id: PathText, body: RepairDoneIn, actor: Actor, conn: WriteConn, if_match: IfMatch = None
) -> RepairOut:
    """The asset is available again, in ``condition``; ``If-Match`` is the asset's version."""
    return _repair_out(maintenance.finish_repair(
        conn=conn, repair_uuid=repair_id, work_done=body.work_done, by=actor,
        condition=body.condition,
        expected_version=expected_version(if_match, body.expected_version)))
