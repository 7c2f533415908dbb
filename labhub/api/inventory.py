"""Inventory API: the site tree, the catalog, tagged assets and their history.

Thin routes over the keyword-only services of ``inventory``: each write runs in one
transaction (``WriteConn``), so a domain error leaves the database as it was, and the
domain errors become problem+json in ``labhub.problems`` (404, 409, 422). Every key in a
path is a stable string (site code, model code, asset tag, serial number); ``{...:path}``
lets a tag like ``VC/0001`` through. The history records who made each change: the
signed-in caller (:data:`labhub.api.common.Actor`), never a name the request sends.

A coordinator corrects sites, models and assets with ``PATCH``: a merge (only the fields
sent change; ``null`` clears an optional one), guarded by the version read (``If-Match``
or ``expected_version``; a stale one is a 409, as for every other write here). A record
made in error and never used is deleted (``DELETE``; the history keeps a tombstone);
anything used is retired instead (``POST .../retire``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from inventory import assets, catalog, corrections, history, sites
from inventory.assets import Condition, Status
from inventory.catalog import Category, Tracking
from inventory.sites import RolloutStatus, SiteKind, Tier
from labhub.access.gate import On, needs, require_any, require_at, require_network, scope_of
from labhub.access.permissions import P
from labhub.access.sites import subject_sites
from labhub.api.common import (
    Actor,
    BodyIn,
    IfMatch,
    Key,
    Name,
    Number,
    Offset,
    PathText,
    ReadConn,
    Text,
    WriteConn,
    check_page,
    expected_version,
    iso,
    limit_query,
)
from labhub.api.deps import settings_of
from labhub.problems import Problem, problem_responses
from labhub.site_uses import site_uses_outside_inventory

router = APIRouter(prefix="/api/v1", tags=["inventory"])

NOTE_MAX = 2000  # a note on a change: a sentence or two, not a document

Note = Annotated[Text | None, Field(max_length=NOTE_MAX)]
NoteQuery = Annotated[Text | None, Query(max_length=NOTE_MAX, description="why")]


class RetireIn(BodyIn):
    """Retire a site, model or asset that was used: it stays, with its history."""

    note: Note = None
    expected_version: int | None = None


def _one_of(*fields: str) -> ConfigDict:
    """A patch's config: it sends at least one of ``fields`` (what :func:`_changes`
    refuses otherwise), stated in the schema."""
    return ConfigDict(json_schema_extra={"anyOf": [{"required": [f]} for f in fields]})


def _changes(body: BaseModel, names: dict[str, str]) -> dict[str, object]:
    """The fields the client sent (a merge: the others stay), by their domain names;
    422 if it sent none."""
    sent = body.model_dump(exclude_unset=True)
    changes = {names.get(k, k): v for k, v in sent.items()
               if k not in ("note", "expected_version")}
    if not changes:
        raise Problem(422, "Nothing to change",
                      "send at least one field to change: "
                      + ", ".join(k for k in type(body).model_fields
                                  if k not in ("note", "expected_version")))
    return changes


def _etag(response: Response, version: int) -> None:
    response.headers["ETag"] = f'"{version}"'


class EventOut(BaseModel):
    """One entry of an item's history."""

    id: str
    at: str
    kind: str
    subject: str
    by: str
    on_behalf_of: str | None
    site: str | None
    from_state: dict[str, object] | None
    to_state: dict[str, object] | None
    note: str | None


def _event_out(e: history.Event) -> EventOut:
    return EventOut(id=e.uuid, at=iso(e.at) or "", kind=e.kind, subject=e.subject, by=e.by,
                    site=e.site_code, from_state=e.from_state, to_state=e.to_state,
                    note=e.note, on_behalf_of=e.on_behalf_of)


# -- sites --------------------------------------------------------------------------------


class SiteIn(BodyIn):
    """A node to add to the network tree; the lab fields are for lab sites only."""

    code: Key = Field(examples=["VL-LP-014"])
    name: Name = Field(examples=["Lab Point Escuela 14"])
    kind: SiteKind
    parent: Key | None = Field(default=None, examples=["VL-M-07"])
    tier: Tier | None = None
    rural: bool | None = None
    latitude: Number | None = None
    longitude: Number | None = None
    institution: Name | None = None
    rollout_status: RolloutStatus = "planned"


class SiteOut(BaseModel):
    """A node of the network tree."""

    code: str
    name: str
    kind: str
    parent: str | None
    tier: str | None
    rural: bool | None
    latitude: float | None
    longitude: float | None
    institution: str | None
    rollout_status: str | None
    rollout_changed_at: str | None
    version: int  # send it back as If-Match or expected_version to refuse stale writes
    retired_at: str | None  # when it was retired; null while in use


class SitePatch(BodyIn):
    """The fields of a site to correct; the others stay as they are."""

    model_config = _one_of("name", "parent", "tier", "rural", "latitude", "longitude",
                           "institution")

    name: Name | SkipJsonSchema[None] = None
    parent: Key | None = Field(default=None, examples=["VL-M-07"])
    tier: Tier | None = None
    rural: bool | None = None
    latitude: float | None = None
    longitude: float | None = None
    institution: Name | None = None
    note: Note = None
    expected_version: int | None = None


class RolloutIn(BodyIn):
    """A lab site's next rollout status."""

    status: RolloutStatus
    note: Note = None
    expected_version: int | None = None


def _site_out(s: sites.Site) -> SiteOut:
    return SiteOut(
        code=s.code, name=s.name, kind=s.kind, parent=s.parent_code, tier=s.tier,
        rural=s.rural, latitude=s.latitude, longitude=s.longitude, institution=s.institution,
        rollout_status=s.rollout_status, rollout_changed_at=iso(s.rollout_changed_at),
        version=s.version, retired_at=iso(s.retired_at),
    )


@router.post("/sites", response_model=SiteOut, status_code=201, summary="Add a site",
             dependencies=[needs(P.INVENTORY_MANAGE, On.ROUTE)])
def create_site(body: SiteIn, actor: Actor, conn: WriteConn, request: Request) -> SiteOut:
    """A network, region, municipality or lab site, under its parent."""
    if body.parent is None:
        require_network(request, P.INVENTORY_MANAGE)
    else:
        require_at(request, P.INVENTORY_MANAGE, body.parent)
    return _site_out(sites.create_site(
        conn=conn, code=body.code, name=body.name, kind=body.kind, by=actor,
        parent_code=body.parent, tier=body.tier, rural=body.rural, latitude=body.latitude,
        longitude=body.longitude, institution=body.institution,
        rollout_status=body.rollout_status,
    ))


@router.get("/sites", response_model=list[SiteOut], summary="List sites",
            responses=problem_responses(404),
            dependencies=[needs(P.INVENTORY_READ, On.NOTHING)])
def list_sites(
    conn: ReadConn, request: Request, under: Key | None = None, kind: SiteKind | None = None
) -> list[SiteOut]:
    """Sites by code: all, or one site and its whole subtree; optionally one kind. Only
    the sites where the caller may read the inventory."""
    return [_site_out(s) for s in sites.list_sites(
        conn=conn, under=under, kind=kind, only=scope_of(request, P.INVENTORY_READ))]


@router.get("/sites/{code:path}", response_model=SiteOut, summary="One site",
            dependencies=[needs(P.INVENTORY_READ, On.path("site", "code"))])
def get_site(code: PathText, conn: ReadConn, response: Response) -> SiteOut:
    """A site by its code; its version is also the ``ETag``."""
    site = sites.get_site(conn=conn, code=code)
    _etag(response, site.version)
    return _site_out(site)


@router.patch("/sites/{code:path}", response_model=SiteOut, summary="Correct a site",
              dependencies=[needs(P.INVENTORY_MANAGE, On.path("site", "code"))])
def edit_site(
    code: PathText, body: SitePatch, conn: WriteConn, response: Response, request: Request,
    actor: Actor,
    if_match: IfMatch = None,
) -> SiteOut:
    """A merge: only the fields sent change (``null`` clears an optional one), each
    recorded in the history (SiteEdited) with its value before and after. A new parent
    needs the same permission there (none: the whole network's)."""
    if "parent" in body.model_fields_set:
        if body.parent is None:
            require_network(request, P.INVENTORY_MANAGE)
        else:
            require_at(request, P.INVENTORY_MANAGE, body.parent)
    site = sites.edit_site(
        conn=conn, code=code, changes=_changes(body, {"parent": "parent_code"}), by=actor,
        note=body.note, expected_version=expected_version(if_match, body.expected_version),
    )
    _etag(response, site.version)
    return _site_out(site)


@router.delete("/sites/{code:path}", response_model=EventOut,
               summary="Delete a site made in error and never used",
               dependencies=[needs(P.INVENTORY_MANAGE, On.path("site", "code"))])
def delete_site(
    code: PathText, actor: Actor, conn: WriteConn, note: NoteQuery = None, if_match: IfMatch = None,
) -> EventOut:
    """Only a site with no history since its creation and nothing that uses it (no sites
    under it, assets, loans, devices, readings ...); the answer is the SiteDeleted
    tombstone the history keeps. A used site is a 409 that says to retire it."""
    return _event_out(corrections.delete_site(
        conn=conn, code=code, by=actor, note=note,
        expected_version=expected_version(if_match, None),
        other_uses=site_uses_outside_inventory(conn, code),
    ))


@router.post("/sites/{code:path}/retire", response_model=SiteOut,
             summary="Retire a site that was used",
             dependencies=[needs(P.INVENTORY_MANAGE, On.path("site", "code"))])
def retire_site(
    code: PathText, body: RetireIn, actor: Actor, conn: WriteConn, if_match: IfMatch = None,
) -> SiteOut:
    """It stays, with its history, and takes nothing new; the sites under it must be
    retired and its assets moved or retired first (409). A lab site becomes closed."""
    return _site_out(corrections.retire_site(
        conn=conn, code=code, by=actor, note=body.note,
        expected_version=expected_version(if_match, body.expected_version),
    ))


@router.post("/sites/{code:path}/rollout", response_model=SiteOut,
             summary="Change a lab site's rollout status",
             dependencies=[needs(P.ROLLOUT_WRITE, On.path("site", "code"))])
def set_rollout(code: PathText, body: RolloutIn, actor: Actor, conn: WriteConn,
                if_match: IfMatch = None) -> SiteOut:
    """planned, installing, active, paused, closed; closed is final. Guarded by the
    version read (``If-Match`` or ``expected_version``), as every other write here."""
    expected = expected_version(if_match, body.expected_version)
    if expected is not None:
        sites.check_site_version(sites.get_site(conn=conn, code=code), expected)
    return _site_out(sites.set_rollout_status(
        conn=conn, code=code, status=body.status, by=actor, note=body.note,
    ))


# -- catalog ------------------------------------------------------------------------------


class ModelIn(BodyIn):
    """An item model to add to the catalog; a counted model needs a unit."""

    code: Key = Field(examples=["ARD-UNO-R3"])
    name: Name = Field(examples=["Arduino Uno R3"])
    category: Category
    tracking: Tracking = "serialized"
    unit: Annotated[Name, Field(max_length=catalog.UNIT_MAX)] | None = Field(
        default=None, examples=["pcs"])


class ModelOut(BaseModel):
    """An item model of the catalog."""

    code: str
    name: str
    category: str
    tracking: str
    unit: str | None
    version: int  # send it back as If-Match or expected_version to refuse stale writes
    retired_at: str | None  # when it was retired; null while in use


class ModelPatch(BodyIn):
    """The fields of a model to correct; the others stay as they are."""

    model_config = _one_of("name", "category", "unit")

    name: Name | SkipJsonSchema[None] = None
    category: Category | SkipJsonSchema[None] = None
    unit: Annotated[Name, Field(max_length=catalog.UNIT_MAX)] | None = Field(
        default=None, examples=["pcs"])
    note: Note = None
    expected_version: int | None = None


def _model_out(m: catalog.Model) -> ModelOut:
    return ModelOut(code=m.code, name=m.name, category=m.category, tracking=m.tracking,
                    unit=m.unit, version=m.version, retired_at=iso(m.retired_at))


@router.post("/models", response_model=ModelOut, status_code=201, summary="Add a model",
             dependencies=[needs(P.INVENTORY_MANAGE, On.NETWORK)])
def create_model(body: ModelIn, actor: Actor, conn: WriteConn) -> ModelOut:
    """A model in a category, serialized (tagged assets) or counted (a quantity)."""
    return _model_out(catalog.create_model(
        conn=conn, code=body.code, name=body.name, category=body.category,
        tracking=body.tracking, unit=body.unit, by=actor,
    ))


@router.get("/models", response_model=list[ModelOut], summary="List models",
            dependencies=[needs(P.INVENTORY_READ, On.NOTHING)])
def list_models(conn: ReadConn, category: Category | None = None) -> list[ModelOut]:
    """Catalog models by code, optionally of one category."""
    return [_model_out(m) for m in catalog.list_models(conn=conn, category=category)]


@router.get("/models/{code:path}", response_model=ModelOut, summary="One model",
            dependencies=[needs(P.INVENTORY_READ, On.NOTHING)])
def get_model(code: PathText, conn: ReadConn, response: Response) -> ModelOut:
    """A catalog model by its code; its version is also the ``ETag``."""
    model = catalog.get_model(conn=conn, code=code)
    _etag(response, model.version)
    return _model_out(model)


@router.patch("/models/{code:path}", response_model=ModelOut, summary="Correct a model",
              dependencies=[needs(P.INVENTORY_MANAGE, On.NETWORK)])
def edit_model(
    code: PathText, body: ModelPatch, actor: Actor, conn: WriteConn, response: Response,
    if_match: IfMatch = None,
) -> ModelOut:
    """A merge: only the name, category or unit sent change, each recorded in the history
    (ModelEdited) with its value before and after."""
    model = catalog.edit_model(
        conn=conn, code=code, changes=_changes(body, {}), by=actor, note=body.note,
        expected_version=expected_version(if_match, body.expected_version),
    )
    _etag(response, model.version)
    return _model_out(model)


@router.delete("/models/{code:path}", response_model=EventOut,
               summary="Delete a model made in error and never used",
               dependencies=[needs(P.INVENTORY_MANAGE, On.NETWORK)])
def delete_model(
    code: PathText, actor: Actor, conn: WriteConn, note: NoteQuery = None, if_match: IfMatch = None,
) -> EventOut:
    """Only a model with no history since its creation, no assets, stock or kit lines;
    the answer is the ModelDeleted tombstone. A used model is a 409: retire it."""
    return _event_out(corrections.delete_model(
        conn=conn, code=code, by=actor, note=note,
        expected_version=expected_version(if_match, None),
    ))


@router.post("/models/{code:path}/retire", response_model=ModelOut,
             summary="Retire a model that was used",
             dependencies=[needs(P.INVENTORY_MANAGE, On.NETWORK)])
def retire_model(
    code: PathText, body: RetireIn, actor: Actor, conn: WriteConn, if_match: IfMatch = None,
) -> ModelOut:
    """Its assets and stock stay; no new assets of it are registered."""
    return _model_out(corrections.retire_model(
        conn=conn, code=code, by=actor, note=body.note,
        expected_version=expected_version(if_match, body.expected_version),
    ))


# -- assets -------------------------------------------------------------------------------


class AssetIn(BodyIn):
    """An item of a serialized model to register, available, at a lab site."""

    tag: Key = Field(examples=["VC-0001"])
    model: Key = Field(examples=["ARD-UNO-R3"])
    site: Key = Field(examples=["VL-LC-01"])
    serial_number: Name | None = None
    condition: Condition = "good"
    notes: Note = None


class AssetOut(BaseModel):
    """A tagged item, where it is and how it is."""

    tag: str
    model: str
    serial_number: str | None
    status: str
    condition: str
    site: str
    location: str | None
    notes: str | None
    updated_at: str
    version: int  # send it back as If-Match or expected_version to refuse stale writes


class AssetPage(BaseModel):
    """One page of assets and how many match in all."""

    total: int
    items: list[AssetOut]


class AssetPatch(BodyIn):
    """The fields of an asset to correct; the others stay as they are. The status and the
    site change by their own steps (status, move, loans, repairs, transfers)."""

    model_config = _one_of("model", "serial_number", "condition", "notes", "location")

    model: Key | SkipJsonSchema[None] = None
    serial_number: Name | None = None
    condition: Condition | SkipJsonSchema[None] = None
    notes: Note = None
    location: Key | None = Field(default=None, examples=["SALA-2"])
    note: Note = None
    expected_version: int | None = None


class MoveIn(BodyIn):
    """The lab site an asset is now at."""

    to_site: Key = Field(examples=["VL-LP-014"])
    note: Note = None
    expected_version: int | None = None


class StatusIn(BodyIn):
    """An asset's next status, and perhaps its condition."""

    status: Status
    condition: Condition | None = None
    note: Note = None
    expected_version: int | None = None


def _asset_out(a: assets.Asset) -> AssetOut:
    return AssetOut(
        tag=a.tag, model=a.model_code, serial_number=a.serial_number, status=a.status,
        condition=a.condition, site=a.site_code, location=a.location_code, notes=a.notes,
        updated_at=iso(a.updated_at) or "", version=a.version,
    )


@router.post("/assets", response_model=AssetOut, status_code=201, summary="Register an asset",
             dependencies=[needs(P.INVENTORY_MANAGE, On.ROUTE)])
def register_asset(body: AssetIn, actor: Actor, conn: WriteConn, request: Request) -> AssetOut:
    """A tagged item of a serialized model at a lab site; a taken tag or serial is a 409."""
    require_at(request, P.INVENTORY_MANAGE, body.site)
    return _asset_out(assets.register_asset(
        conn=conn, tag=body.tag, model_code=body.model, site_code=body.site, by=actor,
        serial_number=body.serial_number, condition=body.condition, notes=body.notes,
    ))


@router.get("/assets", response_model=AssetPage, summary="List assets",
            responses=problem_responses(404),
            dependencies=[needs(P.INVENTORY_READ, On.NOTHING)])
def list_assets(
    request: Request,
    conn: ReadConn,
    site: Key | None = None,
    status: Status | None = None,
    model: Key | None = None,
    search: Name | None = None,
    limit: Annotated[int, limit_query(assets.MAX_LIMIT)] = assets.DEFAULT_LIMIT,
    offset: Offset = 0,
) -> AssetPage:
    """Assets by tag: ``site`` takes the site and its whole subtree; ``search`` matches
    part of the tag, serial number, model code or model name. Only assets at sites where
    the caller may read the inventory, in the total too."""
    check_page(limit, offset, min(settings_of(request).page_limit_max, assets.MAX_LIMIT))
    total, items = assets.list_assets(
        conn=conn, site_under=site, status=status, model_code=model, search=search,
        limit=limit, offset=offset, sites=scope_of(request, P.INVENTORY_READ),
    )
    return AssetPage(total=total, items=[_asset_out(a) for a in items])


@router.get("/assets/by-tag/{tag:path}", response_model=AssetOut,
            summary="One asset by its tag (scanner-friendly)",
            dependencies=[needs(P.INVENTORY_READ, On.path("asset", "tag"))])
def get_by_tag(tag: PathText, conn: ReadConn, response: Response) -> AssetOut:
    """The asset whose label was scanned; its version is also the ``ETag``."""
    asset = assets.get_asset(conn=conn, tag=tag)
    response.headers["ETag"] = f'"{asset.version}"'
    return _asset_out(asset)


@router.get("/assets/by-serial/{serial:path}", response_model=AssetOut,
            summary="One asset by the maker's serial number",
            dependencies=[needs(P.INVENTORY_READ, On.ROUTE)])
def get_by_serial(serial: PathText, conn: ReadConn, request: Request) -> AssetOut:
    """The asset with this serial number (a board's USB serial, a printer's plate)."""
    asset = assets.get_by_serial(conn=conn, serial_number=serial)
    if asset is None:
        raise Problem(404, "Not found", f"no asset with serial number {serial!r}")
    require_at(request, P.INVENTORY_READ, asset.site_code)
    return _asset_out(asset)


@router.patch("/assets/by-tag/{tag:path}", response_model=AssetOut,
              summary="Correct an asset",
              dependencies=[needs(P.INVENTORY_MANAGE, On.path("asset", "tag"))])
def edit_asset(
    tag: PathText, body: AssetPatch, actor: Actor, conn: WriteConn, response: Response,
    if_match: IfMatch = None,
) -> AssetOut:
    """A merge: only the model, serial number, condition, notes or location sent change
    (``null`` clears the serial number, notes or location), each recorded in the history
    (AssetEdited) with its value before and after."""
    asset = assets.edit_asset(
        conn=conn, tag=tag, by=actor, note=body.note,
        changes=_changes(body, {"model": "model_code", "location": "location_code"}),
        expected_version=expected_version(if_match, body.expected_version),
    )
    _etag(response, asset.version)
    return _asset_out(asset)


@router.delete("/assets/by-tag/{tag:path}", response_model=EventOut,
               summary="Delete an asset or kit registered in error and never used",
               dependencies=[needs(P.INVENTORY_MANAGE, On.path("asset", "tag"))])
def delete_asset(
    tag: PathText, actor: Actor, conn: WriteConn, note: NoteQuery = None, if_match: IfMatch = None,
) -> EventOut:
    """Only an asset with no history since it was registered and nothing that names it
    (loans, repairs, kit contents, transfers, audits); the answer is the AssetDeleted
    tombstone. A used asset is a 409: retire it."""
    return _event_out(corrections.delete_asset(
        conn=conn, tag=tag, by=actor, note=note,
        expected_version=expected_version(if_match, None),
    ))


@router.post("/assets/by-tag/{tag:path}/retire", response_model=AssetOut,
             summary="Retire an asset or kit",
             dependencies=[needs(P.INVENTORY_MANAGE, On.path("asset", "tag"))])
def retire_asset(
    tag: PathText, body: RetireIn, actor: Actor, conn: WriteConn, if_match: IfMatch = None,
) -> AssetOut:
    """Its status becomes retired (final); not while on loan or in transit (409)."""
    return _asset_out(corrections.retire_asset(
        conn=conn, tag=tag, by=actor, note=body.note,
        expected_version=expected_version(if_match, body.expected_version),
    ))


@router.post("/assets/by-tag/{tag:path}/move", response_model=AssetOut,
             summary="Record that an asset is now at another lab site",
             dependencies=[needs(P.INVENTORY_MANAGE, On.path("asset", "tag"))])
def move_asset(
    tag: PathText, body: MoveIn, actor: Actor, conn: WriteConn, request: Request,
    if_match: IfMatch = None,
) -> AssetOut:
    """A lost or retired asset does not move, nor one already at ``to_site`` (409); the
    move needs the permission at both sites."""
    require_at(request, P.INVENTORY_MANAGE, body.to_site)
    return _asset_out(assets.move_asset(
        conn=conn, tag=tag, to_site=body.to_site, by=actor, note=body.note,
        expected_version=expected_version(if_match, body.expected_version),
    ))


@router.post("/assets/by-tag/{tag:path}/status", response_model=AssetOut,
             summary="Change an asset's status",
             dependencies=[needs(P.INVENTORY_MANAGE, On.path("asset", "tag"))])
def set_status(
    tag: PathText, body: StatusIn, actor: Actor, conn: WriteConn, if_match: IfMatch = None,
) -> AssetOut:
    """Along the allowed transitions (docs/inventory.md); others are a 409."""
    return _asset_out(assets.set_status(
        conn=conn, tag=tag, status=body.status, by=actor, note=body.note,
        condition=body.condition,
        expected_version=expected_version(if_match, body.expected_version),
    ))


# -- history ------------------------------------------------------------------------------


@router.get("/history/{subject:path}", response_model=list[EventOut],
            summary="The history of an asset or site",
            dependencies=[needs(P.INVENTORY_READ, On.ROUTE)])
def get_history(subject: PathText, conn: ReadConn, request: Request) -> list[EventOut]:
    """Every event about an asset tag, site code or model code, oldest first; a subject
    with no history is a 404. A site's or asset's history needs ``inventory.read`` at one
    of the sites it took place at, and shows only the events at the caller's sites (and
    those at none)."""
    require_any(request, P.INVENTORY_READ, subject_sites(conn, subject))
    events = history.history_of(conn=conn, subject=subject,
                                sites=scope_of(request, P.INVENTORY_READ))
    if not events:
        raise Problem(404, "Not found", f"nothing in the inventory has the key {subject!r}")
    return [_event_out(e) for e in events]
