"""Inventory API for what moves and what is counted: transfers, mobile-lab rotations, audits.

Thin routes over ``inventory.transfers``, ``inventory.rotations`` and ``inventory.audits``:
each write is one transaction (``WriteConn``) and domain errors become problem+json in
``labhub.problems`` (404, 409, 422). Operations are verbs (``POST /transfers/{id}/ship``).
Writes that change a transfer, rotation or audit may carry the ``version`` the client
read; a stale one is a 409 and changes nothing. A scan or receipt says which site the
scanning hub is at (``site``; the hub's own ``site`` setting when left out), and a
transfer received anywhere but its destination is a 409 naming both sites.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from inventory import assets, audits, rotations, transfers
from inventory.audits import AuditStatus, Finding
from inventory.rotations import RotationStatus
from inventory.transfers import MissingAs, TransferStatus
from inventory.values import NOTE_MAX
from labhub.access.gate import On, needs, require_at, scope_of
from labhub.access.permissions import P
from labhub.api.common import (
    KEY_PATTERN,
    Actor,
    BodyIn,
    Key,
    Name,
    Offset,
    OnBehalfOf,
    PathText,
    ReadConn,
    Text,
    WriteConn,
    check_page,
    iso,
    limit_query,
)
from labhub.api.deps import settings_of
from labhub.problems import PATTERN_MESSAGES, Problem, problem_responses

router = APIRouter(prefix="/api/v1", tags=["inventory: transfers and audits"])

TAGS_MAX = 500  # tags in one request: a full shipment, within one transaction

Note = Annotated[Text | None, Field(max_length=NOTE_MAX)]
KeyPath = Annotated[str, Path(pattern=KEY_PATTERN)]
Version = Annotated[int | None, Field(ge=1, description="the version you read; a stale one "
                                                       "is a 409")]


def _hub_site(request: Request, site: str | None) -> str:
    """The site a scan happens at: as given, or the hub's own ``site`` setting."""
    if site is not None:
        return site
    configured: str | None = settings_of(request).site
    if configured is None:
        raise Problem(422, "Invalid request",
                      "body.site: say which lab site this hub is at (this hub has no `site` "
                      "setting)", errors=[{"where": "body.site", "message": "Field required"}])
    return configured


# -- transfers ----------------------------------------------------------------------------


class TransferIn(BodyIn):
    """A transfer to draft between two lab sites, perhaps with its first assets."""

    from_site: Key = Field(examples=["VL-LC-01"])
    to_site: Key = Field(examples=["VL-LP-014"])
    tags: list[Key] = Field(default_factory=list, max_length=TAGS_MAX)
    note: Note = None


class DiscrepancyOut(BaseModel):
    """Something that did not match on receipt."""

    tag: str
    kind: str
    resolution: str
    recorded_site: str | None
    recorded_at: str


class TransferOut(BaseModel):
    """A transfer, its items, what was scanned and what did not match."""

    id: str
    from_site: str
    to_site: str
    status: str
    version: int
    created_at: str
    created_by: str
    shipped_at: str | None
    carrier: str | None
    received_at: str | None
    received_by: str | None
    missing_as: str | None
    note: str | None
    items: list[str]
    scanned: list[str]
    discrepancies: list[DiscrepancyOut]


class TransferPage(BaseModel):
    """One page of transfers and how many match in all."""

    total: int
    items: list[TransferOut]


class ItemsIn(BodyIn):
    """Assets to put on a draft transfer."""

    tags: list[Key] = Field(min_length=1, max_length=TAGS_MAX, examples=[["VC-0001"]])
    version: Version = None


class ShipIn(BodyIn):
    """Who carries the transfer."""

    carrier: Name = Field(examples=["Luis (conductor)"])
    version: Version = None
    note: Note = None


class TransferScanIn(BodyIn):
    """A tag scanned at the destination."""

    tag: Key = Field(examples=["VC-0001"])
    site: Key | None = Field(default=None,
                             description="where the scanning hub is (default: its setting)")
    version: Version = None


class ReceiveIn(BodyIn):
    """Finish the receipt; ``missing_as`` is needed when something was not scanned."""

    site: Key | None = Field(default=None,
                             description="where the receiving hub is (default: its setting)")
    missing_as: MissingAs | None = None
    version: Version = None
    note: Note = None


def _transfer_out(t: transfers.Transfer) -> TransferOut:
    return TransferOut(
        id=t.uuid, from_site=t.from_site_code, to_site=t.to_site_code, status=t.status,
        version=t.version, created_at=iso(t.created_at) or "", created_by=t.created_by,
        shipped_at=iso(t.shipped_at), carrier=t.carrier, received_at=iso(t.received_at),
        received_by=t.received_by, missing_as=t.missing_as, note=t.note, items=list(t.items),
        scanned=list(t.scanned),
        discrepancies=[
            DiscrepancyOut(tag=d.tag, kind=d.kind, resolution=d.resolution,
                           recorded_site=d.recorded_site_code,
                           recorded_at=iso(d.recorded_at) or "")
            for d in t.discrepancies
        ],
    )


@router.post("/transfers", response_model=TransferOut, status_code=201,
             summary="Draft a transfer between two lab sites",
             dependencies=[needs(P.INVENTORY_MANAGE, On.ROUTE)])
def draft_transfer(
    body: TransferIn, actor: Actor, conn: WriteConn, request: Request,
) -> TransferOut:
    """An asset that is not available at the origin, or already on an open transfer, is a
    409 naming its tag. Drafting needs ``inventory.manage`` at the origin."""
    require_at(request, P.INVENTORY_MANAGE, body.from_site)
    return _transfer_out(transfers.draft_transfer(
        conn=conn, from_site=body.from_site, to_site=body.to_site, tags=body.tags,
        by=actor, note=body.note,
    ))


@router.get("/transfers", response_model=TransferPage, summary="List transfers",
            responses=problem_responses(404),
            dependencies=[needs(P.INVENTORY_READ, On.NOTHING)])
def list_transfers(
    request: Request,
    conn: ReadConn,
    status: TransferStatus | None = None,
    from_site: Annotated[str | None, Query(pattern=KEY_PATTERN)] = None,
    to_site: Annotated[str | None, Query(pattern=KEY_PATTERN)] = None,
    limit: Annotated[int, limit_query(assets.MAX_LIMIT)] = transfers.DEFAULT_LIMIT,
    offset: Offset = 0,
) -> TransferPage:
    """Newest first; ``from_site`` and ``to_site`` take the site and its whole subtree.
    Only transfers with an end at a site where the caller may read the inventory, in the
    total too."""
    check_page(limit, offset, min(settings_of(request).page_limit_max,
                                  assets.MAX_LIMIT))
    total, items = transfers.list_transfers(
        conn=conn, status=status, from_under=from_site, to_under=to_site, limit=limit,
        offset=offset, sites=scope_of(request, P.INVENTORY_READ),
    )
    return TransferPage(total=total, items=[_transfer_out(t) for t in items])


@router.get("/transfers/{transfer_id}", response_model=TransferOut, summary="One transfer",
            dependencies=[needs(P.INVENTORY_READ, On.path("transfer", "transfer_id"))])
def get_transfer(transfer_id: PathText, conn: ReadConn) -> TransferOut:
    """A transfer with its items, scans and discrepancies."""
    return _transfer_out(transfers.get_transfer(conn=conn, transfer_uuid=transfer_id))


@router.post("/transfers/{transfer_id}/items", response_model=TransferOut,
             summary="Put assets on a draft transfer",
             dependencies=[needs(P.INVENTORY_MANAGE, On.path("transfer", "transfer_id"))])
def add_items(transfer_id: PathText, body: ItemsIn, actor: Actor, conn: WriteConn) -> TransferOut:
    """Each asset must be available at the origin and on no other open transfer (409)."""
    return _transfer_out(transfers.add_items(
        conn=conn, transfer_uuid=transfer_id, tags=body.tags, by=actor, version=body.version,
    ))


@router.delete("/transfers/{transfer_id}/items/{tag:path}", response_model=TransferOut,
               summary="Take an asset off a draft transfer",
               dependencies=[needs(P.INVENTORY_MANAGE, On.path("transfer", "transfer_id"))])
def remove_item(
    transfer_id: PathText,
    tag: PathText,
    conn: WriteConn,
    actor: Actor,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> TransferOut:
    """``version`` goes in the query: a DELETE has no body."""
    return _transfer_out(transfers.remove_item(
        conn=conn, transfer_uuid=transfer_id, tag=tag, by=actor, version=version,
    ))


@router.post("/transfers/{transfer_id}/ship", response_model=TransferOut,
             summary="Ship a draft transfer: its assets go in transit",
             dependencies=[needs(P.INVENTORY_MANAGE, On.path("transfer", "transfer_id"))])
def ship_transfer(
    transfer_id: PathText, body: ShipIn, actor: Actor, conn: WriteConn,
) -> TransferOut:
    """Every item is checked again (one lent since it was added is a 409)."""
    return _transfer_out(transfers.ship_transfer(
        conn=conn, transfer_uuid=transfer_id, carrier=body.carrier, by=actor,
        version=body.version, note=body.note,
    ))


class TransferScanOut(BaseModel):
    """What a scan did: short, because a scanner sends one per item."""

    transfer: str
    tag: str
    new: bool = Field(description="false: already scanned, nothing changed")
    on_transfer: bool = Field(description="false: an extra, not on the transfer")
    version: int
    scanned: int = Field(description="tags scanned so far")


@router.post("/transfers/{transfer_id}/scans", response_model=TransferScanOut,
             summary="Scan a tag while receiving a shipped transfer",
             dependencies=[needs(P.INVENTORY_MANAGE, On.path("transfer_to", "transfer_id"))])
def scan_transfer_item(
    transfer_id: PathText, body: TransferScanIn, actor: Actor, request: Request, conn: WriteConn
) -> TransferScanOut:
    """A tag off the transfer is kept as an extra; a second scan changes nothing; a scan
    at a site that is not the destination is a 409 naming both."""
    scan = transfers.scan_item(
        conn=conn, transfer_uuid=transfer_id, tag=body.tag, site=_hub_site(request, body.site),
        by=actor, version=body.version,
    )
    return TransferScanOut(transfer=scan.transfer_uuid, tag=scan.tag, new=scan.new,
                           on_transfer=scan.on_transfer, version=scan.version,
                           scanned=scan.scanned)


@router.post("/transfers/{transfer_id}/receive", response_model=TransferOut,
             summary="Finish receiving a transfer at its destination",
             dependencies=[needs(P.INVENTORY_MANAGE, On.path("transfer_to", "transfer_id"))])
def receive_transfer(
    transfer_id: PathText, body: ReceiveIn, actor: Actor, request: Request, conn: WriteConn
) -> TransferOut:
    """Scanned items become available at the destination; missing and extra items are
    recorded as discrepancies. With something missing, ``missing_as`` (``in_transit`` or
    ``lost``) is required (422 without it)."""
    return _transfer_out(transfers.receive_transfer(
        conn=conn, transfer_uuid=transfer_id, site=_hub_site(request, body.site), by=actor,
        missing_as=body.missing_as, version=body.version, note=body.note,
    ))


# -- mobile-lab rotations -----------------------------------------------------------------


class ManifestIn(BodyIn):
    """An asset, recorded at the mobile lab, to travel with it."""

    tag: Key = Field(examples=["ML-0001"])


class ManifestOut(BaseModel):
    """The assets that travel with a mobile lab."""

    mobile_lab: str
    tags: list[str]


# A day of a rotation's plan, as ISO 8601 (YYYY-MM-DD).
Day = Annotated[str, Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
                           json_schema_extra={"format": "date"})]
PATTERN_MESSAGES[r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"] = "a day must be written YYYY-MM-DD"


class StopIn(BodyIn):
    """A school on the route and the planned dates (YYYY-MM-DD)."""

    site: Key = Field(examples=["VL-LP-014"])
    arrive_on: Day = Field(examples=["2027-03-01"])
    depart_on: Day = Field(examples=["2027-03-05"])


class RotationIn(BodyIn):
    """A mobile lab's planned route."""

    mobile_lab: Key = Field(examples=["VL-ML-1"])
    name: Name = Field(examples=["Ruta norte 2027"])
    stops: list[StopIn] = Field(min_length=1, max_length=rotations.MAX_STOPS)


class StopOut(BaseModel):
    """A stop and the transfers that served it."""

    seq: int
    site: str
    arrive_on: str
    depart_on: str
    arrival_transfer: str | None
    departure_transfer: str | None


class RotationOut(BaseModel):
    """A mobile lab's route."""

    id: str
    mobile_lab: str
    name: str
    status: str  # planned (no stop arrived at), underway, finished (every stop left)
    version: int
    created_at: str
    created_by: str
    stops: list[StopOut]


class StopMoveIn(BodyIn):
    """Arrive at or leave a stop: who drives."""

    carrier: Name = Field(examples=["Luis (conductor)"])
    version: Version = None


class StopMoveOut(BaseModel):
    """The rotation, and the transfer to scan and receive at the other end."""

    rotation: RotationOut
    transfer: TransferOut


def _rotation_out(r: rotations.Rotation) -> RotationOut:
    return RotationOut(
        id=r.uuid, mobile_lab=r.mobile_lab_code, name=r.name,
        status=rotations.rotation_status(r), version=r.version,
        created_at=iso(r.created_at) or "", created_by=r.created_by,
        stops=[StopOut(seq=s.seq, site=s.site_code, arrive_on=s.arrive_on,
                       depart_on=s.depart_on, arrival_transfer=s.arrival_transfer_uuid,
                       departure_transfer=s.departure_transfer_uuid) for s in r.stops],
    )


@router.get("/mobile-labs/{code:path}/manifest", response_model=ManifestOut,
            summary="What travels with a mobile lab",
            dependencies=[needs(P.INVENTORY_READ, On.path("site", "code"))])
def get_manifest(code: KeyPath, conn: ReadConn) -> ManifestOut:
    """The tags on the mobile lab's manifest."""
    return ManifestOut(mobile_lab=code, tags=rotations.manifest_of(conn=conn, mobile_lab=code))


@router.post("/mobile-labs/{code:path}/manifest", response_model=ManifestOut,
             summary="Put an asset on a mobile lab's manifest",
             dependencies=[needs(P.INVENTORY_MANAGE, On.path("site", "code"))])
def add_to_manifest(code: KeyPath, body: ManifestIn, actor: Actor, conn: WriteConn) -> ManifestOut:
    """The asset must be recorded at the mobile lab and on no other manifest (409)."""
    tags = rotations.add_to_manifest(conn=conn, mobile_lab=code, tag=body.tag, by=actor)
    return ManifestOut(mobile_lab=code, tags=tags)


@router.delete("/mobile-labs/{code:path}/manifest/{tag}", response_model=ManifestOut,
               summary="Take an asset off a mobile lab's manifest",
               dependencies=[needs(P.INVENTORY_MANAGE, On.path("site", "code"))])
def remove_from_manifest(
    code: KeyPath, tag: KeyPath, conn: WriteConn,
    actor: Actor,
) -> ManifestOut:
    """A DELETE has no body: the actor is the signed-in caller."""
    tags = rotations.remove_from_manifest(conn=conn, mobile_lab=code, tag=tag, by=actor)
    return ManifestOut(mobile_lab=code, tags=tags)


@router.post("/rotations", response_model=RotationOut, status_code=201,
             summary="Plan a mobile lab's route",
             dependencies=[needs(P.INVENTORY_MANAGE, On.ROUTE)])
def plan_rotation(body: RotationIn, actor: Actor, conn: WriteConn, request: Request) -> RotationOut:
    """Stops in order; each leaves no earlier than it arrives, and arrives no earlier than
    the previous one left (422 naming the stop otherwise). Needs ``inventory.manage`` at
    the mobile lab and at every stop."""
    require_at(request, P.INVENTORY_MANAGE, body.mobile_lab, *(s.site for s in body.stops))
    return _rotation_out(rotations.plan_rotation(
        conn=conn, mobile_lab=body.mobile_lab, name=body.name, by=actor,
        stops=[(s.site, s.arrive_on, s.depart_on) for s in body.stops],
    ))


class RotationPage(BaseModel):
    """One page of rotations and how many match in all."""

    total: int
    items: list[RotationOut]


@router.get("/rotations", response_model=RotationPage, summary="List rotations",
            responses=problem_responses(404),
            dependencies=[needs(P.INVENTORY_READ, On.NOTHING)])
def list_rotations(
    request: Request,
    conn: ReadConn,
    site: Key | None = None,
    status: RotationStatus | None = None,
    limit: Annotated[int, limit_query(rotations.MAX_LIMIT)] = rotations.DEFAULT_LIMIT,
    offset: Offset = 0,
) -> RotationPage:
    """Newest first; ``site`` takes the site and its whole subtree (a mobile lab there, or
    a stop there); ``status`` is planned, underway or finished. Only rotations whose mobile
    lab or a stop is where the caller may read the inventory, in the total too."""
    check_page(limit, offset, min(settings_of(request).page_limit_max, rotations.MAX_LIMIT))
    total, items = rotations.list_rotations(conn=conn, site_under=site, status=status,
                                            limit=limit, offset=offset,
                                            sites=scope_of(request, P.INVENTORY_READ))
    return RotationPage(total=total, items=[_rotation_out(r) for r in items])


@router.get("/rotations/{rotation_id}", response_model=RotationOut, summary="One rotation",
            dependencies=[needs(P.INVENTORY_READ, On.path("rotation", "rotation_id"))])
def get_rotation(rotation_id: PathText, conn: ReadConn) -> RotationOut:
    """A rotation with its stops and their transfers."""
    return _rotation_out(rotations.get_rotation(conn=conn, rotation_uuid=rotation_id))


@router.post("/rotations/{rotation_id}/stops/{seq}/arrive", response_model=StopMoveOut,
             summary="Arrive at a stop: ship the manifest to the school",
             dependencies=[needs(P.INVENTORY_MANAGE, On.path("rotation", "rotation_id"))])
def arrive(
    rotation_id: PathText, seq: int, body: StopMoveIn, actor: Actor, conn: WriteConn,
) -> StopMoveOut:
    """Returns the shipped transfer, to be scanned and received at the school."""
    r, t = rotations.arrive(conn=conn, rotation_uuid=rotation_id, seq=seq,
                            carrier=body.carrier, by=actor, version=body.version)
    return StopMoveOut(rotation=_rotation_out(r), transfer=_transfer_out(t))


@router.post("/rotations/{rotation_id}/stops/{seq}/depart", response_model=StopMoveOut,
             summary="Leave a stop: ship what came back to the mobile lab",
             dependencies=[needs(P.INVENTORY_MANAGE, On.path("rotation", "rotation_id"))])
def depart(
    rotation_id: PathText, seq: int, body: StopMoveIn, actor: Actor, conn: WriteConn,
) -> StopMoveOut:
    """Returns the shipped transfer, to be scanned and received at the mobile lab."""
    r, t = rotations.depart(conn=conn, rotation_uuid=rotation_id, seq=seq,
                            carrier=body.carrier, by=actor, version=body.version)
    return StopMoveOut(rotation=_rotation_out(r), transfer=_transfer_out(t))


# -- audits -------------------------------------------------------------------------------


class AuditIn(BodyIn):
    """Start a stocktake at a lab site."""

    site: Key = Field(examples=["VL-LP-014"])
    note: Note = None


class CountOut(BaseModel):
    """A counted quantity of a counted model."""

    model: str
    quantity: int


class AuditOut(BaseModel):
    """An audit and what was scanned and counted so far."""

    id: str
    site: str
    status: str
    version: int
    started_at: str
    started_by: str
    finished_at: str | None
    applied_at: str | None
    scanned: list[str]
    counts: list[CountOut]


class AuditScanIn(BodyIn):
    """A tag scanned on the shelves."""

    tag: Key = Field(examples=["VC-0001"])
    version: Version = None
    on_behalf_of: OnBehalfOf = None


class AuditCountIn(BodyIn):
    """How many of a counted model are on the shelves, in its unit."""

    model: Key = Field(examples=["JMP-WIRE"])
    quantity: int = Field(ge=0, le=audits.COUNT_MAX)
    version: Version = None
    on_behalf_of: OnBehalfOf = None


class AuditStepIn(BodyIn):
    """Finish an audit or apply its corrections."""

    version: Version = None


class FindingOut(BaseModel):
    """One line of an audit report."""

    tag: str
    model: str | None
    source: str | None
    recorded_site: str | None
    recorded_status: str | None
    corrected_at: str | None


class CountLineOut(BaseModel):
    """A counted model against the site's stock when the audit finished."""

    model: str
    unit: str
    expected: int = Field(description="the site's stock of the model when the audit finished")
    counted: int
    difference: int = Field(description="counted minus expected: negative when parts are "
                                        "missing")
    corrected_at: str | None = Field(description="when applying set the stock to the count")


class ReportOut(BaseModel):
    """What an audit found, and its counts against the stock."""

    audit: AuditOut
    found: list[FindingOut]
    missing: list[FindingOut]
    unexpected: list[FindingOut]
    unknown: list[FindingOut]
    counts: list[CountLineOut]


def _audit_out(a: audits.Audit) -> AuditOut:
    return AuditOut(
        id=a.uuid, site=a.site_code, status=a.status, version=a.version,
        started_at=iso(a.started_at) or "", started_by=a.started_by,
        finished_at=iso(a.finished_at), applied_at=iso(a.applied_at), scanned=list(a.scanned),
        counts=[CountOut(model=m, quantity=q) for m, q in a.counts],
    )


def _findings(found: tuple[Finding, ...]) -> list[FindingOut]:
    return [FindingOut(tag=f.tag, model=f.model_code, source=f.source,
                       recorded_site=f.recorded_site_code, recorded_status=f.recorded_status,
                       corrected_at=iso(f.corrected_at)) for f in found]


def _report_out(r: audits.AuditReport) -> ReportOut:
    return ReportOut(audit=_audit_out(r.audit), found=_findings(r.found),
                     missing=_findings(r.missing), unexpected=_findings(r.unexpected),
                     unknown=_findings(r.unknown),
                     counts=[CountLineOut(model=c.model_code, unit=c.unit, expected=c.expected,
                                          counted=c.counted, difference=c.difference,
                                          corrected_at=iso(c.corrected_at))
                             for c in r.counts])


@router.post("/audits", response_model=AuditOut, status_code=201,
             summary="Start an audit (stocktake) at a lab site",
             dependencies=[needs(P.INVENTORY_MANAGE, On.ROUTE)])
def start_audit(body: AuditIn, actor: Actor, conn: WriteConn, request: Request) -> AuditOut:
    """One open audit per site (a second is a 409 naming the first)."""
    require_at(request, P.INVENTORY_MANAGE, body.site)
    return _audit_out(audits.start_audit(conn=conn, site=body.site, by=actor, note=body.note))


class AuditLineOut(BaseModel):
    """An audit in a list: how many tags were scanned and models counted, not which."""

    id: str
    site: str
    status: str
    version: int
    started_at: str
    started_by: str
    finished_at: str | None
    applied_at: str | None
    scanned: int
    counted: int


class AuditPage(BaseModel):
    """One page of audits and how many match in all."""

    total: int
    items: list[AuditLineOut]


@router.get("/audits", response_model=AuditPage, summary="List audits",
            responses=problem_responses(404),
            dependencies=[needs(P.INVENTORY_READ, On.NOTHING)])
def list_audits(
    request: Request,
    conn: ReadConn,
    site: Key | None = None,
    status: AuditStatus | None = None,
    limit: Annotated[int, limit_query(audits.MAX_LIMIT)] = audits.DEFAULT_LIMIT,
    offset: Offset = 0,
) -> AuditPage:
    """Newest first; ``site`` takes the site and its whole subtree; ``status`` is open,
    finished or applied."""
    check_page(limit, offset, min(settings_of(request).page_limit_max, audits.MAX_LIMIT))
    total, items = audits.list_audits(conn=conn, site_under=site, status=status, limit=limit,
                                      offset=offset, sites=scope_of(request, P.INVENTORY_READ))
    return AuditPage(total=total, items=[
        AuditLineOut(id=a.uuid, site=a.site_code, status=a.status, version=a.version,
                     started_at=iso(a.started_at) or "", started_by=a.started_by,
                     finished_at=iso(a.finished_at), applied_at=iso(a.applied_at),
                     scanned=a.scanned, counted=a.counted)
        for a in items
    ])


@router.get("/audits/{audit_id}", response_model=AuditOut, summary="One audit",
            dependencies=[needs(P.INVENTORY_READ, On.path("audit", "audit_id"))])
def get_audit(audit_id: PathText, conn: ReadConn) -> AuditOut:
    """An audit with its scans and counts."""
    return _audit_out(audits.get_audit(conn=conn, audit_uuid=audit_id))


class AuditScanOut(BaseModel):
    """What a scan did: short, because a scanner sends one per item."""

    audit: str
    tag: str
    new: bool = Field(description="false: already scanned, nothing changed")
    version: int
    scanned: int = Field(description="tags scanned so far")
    recorded_site: str | None = Field(
        description="where the asset is recorded (another site: unexpected); null: no "
                    "asset has this tag")


@router.post("/audits/{audit_id}/scans", response_model=AuditScanOut,
             summary="Scan a tag on the shelves",
             dependencies=[needs(P.INVENTORY_MANAGE, On.path("audit", "audit_id"))])
def scan_audit_tag(
    audit_id: PathText, body: AuditScanIn, actor: Actor, conn: WriteConn,
) -> AuditScanOut:
    """Any tag is kept (an unknown one is reported); a second scan changes nothing."""
    scan = audits.scan_tag(conn=conn, audit_uuid=audit_id, tag=body.tag, by=actor,
                           version=body.version, on_behalf_of=body.on_behalf_of)
    return AuditScanOut(audit=scan.audit_uuid, tag=scan.tag, new=scan.new,
                        version=scan.version, scanned=scan.scanned,
                        recorded_site=scan.recorded_site_code)


@router.post("/audits/{audit_id}/counts", response_model=AuditOut,
             summary="Record the counted quantity of a counted model",
             dependencies=[needs(P.INVENTORY_MANAGE, On.path("audit", "audit_id"))])
def count_audit_model(
    audit_id: PathText, body: AuditCountIn, actor: Actor, conn: WriteConn,
) -> AuditOut:
    """A recount replaces the earlier figure; a serialized model is a 422 (scan its tags)."""
    return _audit_out(audits.record_count(
        conn=conn, audit_uuid=audit_id, model_code=body.model, quantity=body.quantity,
        by=actor, version=body.version, on_behalf_of=body.on_behalf_of,
    ))


@router.post("/audits/{audit_id}/finish", response_model=ReportOut,
             summary="Finish an audit and freeze its report",
             dependencies=[needs(P.INVENTORY_MANAGE, On.path("audit", "audit_id"))])
def finish_audit(audit_id: PathText, body: AuditStepIn, actor: Actor, conn: WriteConn) -> ReportOut:
    """The report: found, missing, unexpected (with where each is recorded), unknown."""
    return _report_out(audits.finish_audit(conn=conn, audit_uuid=audit_id, by=actor,
                                           version=body.version))


@router.get("/audits/{audit_id}/report", response_model=ReportOut,
            summary="The report of a finished audit",
            dependencies=[needs(P.INVENTORY_READ, On.path("audit", "audit_id"))])
def get_report(audit_id: PathText, conn: ReadConn) -> ReportOut:
    """An open audit has no report yet (409)."""
    return _report_out(audits.get_report(conn=conn, audit_uuid=audit_id))


@router.post("/audits/{audit_id}/apply", response_model=ReportOut,
             summary="Apply an audit's corrections, with history",
             dependencies=[needs(P.INVENTORY_MANAGE, On.path("audit", "audit_id"))])
def apply_corrections(
    audit_id: PathText, body: AuditStepIn, actor: Actor, conn: WriteConn,
) -> ReportOut:
    """Missing -> lost, unexpected -> moved to the audited site; once (a second is a 409)."""
    return _report_out(audits.apply_corrections(conn=conn, audit_uuid=audit_id, by=actor,
                                                version=body.version))
