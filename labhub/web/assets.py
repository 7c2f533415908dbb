"""Asset search and an asset's page: ``/assets``, ``/assets.csv``, ``/assets/{tag}``.

``/assets`` finds assets by text (part of the tag, serial number, model code or name),
model, status and site (a region takes every lab in it), paged with totals: the API's
list (:func:`labhub.api.inventory.list_assets`: the same scope, caps and errors). Every
filter is in the address (``/assets?site=LAB-A&status=on_loan&q=uno``), so other pages
link to a filtered list. ``/assets.csv`` is the same list as a spreadsheet: without text
it is the API's own export (:func:`labhub.api.inventory_io.export_assets`); with text the
same rows the page finds, written by the same CSV writer (``inventory.csvio``). Spanish and
Portuguese files use ``;`` and a decimal comma, all start with a byte order mark (what
Excel needs to read UTF-8).

``/assets/{tag}`` shows the asset (model, site, place, status, condition, serial number,
the kit that holds it, its open loan and transfer) and its history, newest first and
paged, each event in words with who, when and where (``inventory.history``: only the
events at the person's sites). Beside it, repairs: a person with ``loans.write`` at the
asset's site starts one (the fault) and finishes it (the work done, the condition after)
through the API's own routes; a coordinator (``inventory.manage``) changes the status
along the allowed transitions, or the condition. Every form carries the asset's version:
a stale one is a 409 page that says to reload.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import Connection

from inventory import (
    assets,
    catalog,
    csvio,
    history,
    kits,
    loans,
    maintenance,
    service,
    sites,
    transfers,
)
from inventory.errors import (
    ConflictError,
    InvalidTransitionError,
    InvalidValueError,
    NotFoundError,
    StaleVersionError,
)
from inventory.values import TEXT_MAX, check_key
from labhub.access.gate import On, gated_caller, needs, scope_of
from labhub.access.permissions import Permission as P
from labhub.access.sites import tree_for
from labhub.api import inventory as inventory_api
from labhub.api import inventory_io
from labhub.api import inventory_movements as movements_api
from labhub.api.deps import HubDep
from labhub.web import i18n, pages
from labhub.web.i18n import N_
from labhub.web.pages import PageRoute, language_of, signed_form

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PER_PAGE: Final = 25  # assets a page: a phone scrolls through 25
EVENTS_PER_PAGE: Final = 50  # of an asset's history (a busy kit has 1,000+ events)
CSV_PAGE: Final = assets.MAX_LIMIT  # rows a query while writing a searched CSV
OFFSET_MAX: Final = 10_000_000  # beyond any network's assets or events

STATUS_NAMES: Final = {"available": N_("Available"), "on_loan": N_("On loan"),
                       "in_transit": N_("In transit"), "in_repair": N_("In repair"),
                       "lost": N_("Lost"), "retired": N_("Retired")}
CONDITION_NAMES: Final = {"good": N_("Good"), "fair": N_("Fair"), "poor": N_("Poor"),
                          "broken": N_("Broken")}
# Each event kind as a person reads it in an asset's timeline.
EVENT_NAMES: Final = {
    "AssetRegistered": N_("Registered"),
    "AssetMoved": N_("Moved to another lab"),
    "AssetStatusChanged": N_("Status changed"),
    "AssetSighted": N_("Seen online at a lab"),
    "AssetEdited": N_("Details corrected"),
    "AssetDeleted": N_("Deleted (registered in error)"),
    "AssetLocationChanged": N_("Put in another place"),
    "AssetCheckedOut": N_("Lent"),
    "AssetCheckedIn": N_("Returned"),
    "RepairStarted": N_("Repair started"),
    "RepairFinished": N_("Repair finished"),
    "ServicePlanSet": N_("Maintenance or calibration planned"),
    "ServicePlanRemoved": N_("Maintenance or calibration no longer planned"),
    "ServiceDone": N_("Maintenance or calibration done"),
    "KitContentsDefined": N_("Kit contents defined"),
    "KitPartsReturned": N_("Kit parts returned (partly)"),
    "KitPartMissing": N_("Kit part missing"),
    "KitPartDamaged": N_("Kit part damaged"),
    "TransferItemShipped": N_("Shipped in a transfer"),
    "TransferItemScanned": N_("Scanned on arrival"),
    "TransferItemReceived": N_("Received from a transfer"),
    "TransferDiscrepancyRecorded": N_("Transfer discrepancy recorded"),
    "ManifestItemAdded": N_("Added to a mobile lab's manifest"),
    "ManifestItemRemoved": N_("Removed from a mobile lab's manifest"),
    "AuditItemScanned": N_("Scanned in an audit"),
    "AuditCorrectionApplied": N_("Corrected after an audit"),
}
OTHER_EVENT: Final = N_("Other change")
# The fields of an event's state a person is shown, in this order, with their words.
EVENT_FIELDS: Final = (
    ("status", N_("Status")), ("condition", N_("Condition")), ("site_code", N_("Site")),
    ("location_code", N_("Place")), ("borrower", N_("Borrower")), ("fault", N_("Fault")),
    ("work_done", N_("Work done")), ("part", N_("Part")), ("quantity", N_("Quantity")),
    ("seen_at_site", N_("Seen at")),
)


# -- the search ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Filters:
    """The search as the address gives it (each checked; "" is no filter)."""

    q: str = ""
    site: str = ""
    status: str = ""
    model: str = ""

    def query(self, **more: object) -> str:
        """The address's query of these filters (and ``more``), empty ones left out."""
        pairs = [(k, v) for k, v in (("q", self.q), ("site", self.site),
                                     ("status", self.status), ("model", self.model)) if v]
        pairs += [(k, str(v)) for k, v in more.items() if v not in (None, "", 0)]
        return urlencode(pairs)


def _offset(text: str | None) -> int | None:
    """An ``offset`` from the address; None when it is not a page's."""
    if not text:
        return 0
    if not text.isdigit() or int(text) > OFFSET_MAX:
        return None
    return int(text)


def read_filters(request: Request, _: Any) -> tuple[Filters, dict[str, str]]:
    """The filters of the address and what is wrong with each (in the person's words)."""
    params = request.query_params
    values = {k: params.get(k, "").strip() for k in ("q", "site", "status", "model")}
    errors: dict[str, str] = {}
    if len(values["q"]) > TEXT_MAX or any(ord(c) < 32 for c in values["q"]):
        errors["q"] = _("Write at most %(count)s letters, on one line.", count=TEXT_MAX)
    for field in ("site", "model"):
        if values[field]:
            try:
                check_key(values[field], what=field)
            except InvalidValueError:
                errors[field] = _("A code has letters, digits and . _ / - only, up to 64.")
    if values["status"] and values["status"] not in assets.STATUSES:
        errors["status"] = _("Choose a status from the list.")
    return Filters(**{k: ("" if k in errors else v) for k, v in values.items()}), errors


def _search(conn: Connection, request: Request, found: Filters, offset: int
            ) -> inventory_api.AssetPage:
    """One page of the search: the API's own list (scope, caps, its errors)."""
    return inventory_api.list_assets(
        request=request, conn=conn, site=found.site or None,
        status=found.status or None,  # type: ignore[arg-type]
        model=found.model or None, search=found.q or None, limit=PER_PAGE, offset=offset)


def _site_names(conn: Connection, codes: set[str]) -> dict[str, str]:
    return {s.code: s.name for s in sites.list_sites(conn=conn, only=codes)} if codes else {}


@router.get("/assets", dependencies=[needs(P.INVENTORY_READ)])
def search_page(request: Request, hub: HubDep) -> HTMLResponse:
    """The search form, one page of what it finds, the total and the CSV link."""
    caller = gated_caller(request)
    _ = i18n.gettext_of(language_of(request))
    found, errors = read_filters(request, _)
    offset = _offset(request.query_params.get("offset"))
    status = 422 if errors else 200
    if offset is None:
        errors["offset"] = _("This page of the list does not exist.")
        offset, status = 0, 422
    total, items = 0, []
    with hub.engine.connect() as conn:
        models = [m for m in catalog.list_models(conn=conn) if m.tracking == "serialized"]
        if not errors:
            try:
                page = _search(conn, request, found, offset)
                total, items = page.total, page.items
                if offset and offset >= total:
                    errors["offset"] = _("This page of the list does not exist.")
                    status = 404
            except NotFoundError:
                errors["site"] = _("No site has this code.")
                status = 404
        names = _site_names(conn, {a.site for a in items})
    model_names = {m.code: m.name for m in models}
    root = pages.root_of(request)
    return pages.render(
        request, "assets.html", status=status, caller=caller, found=found, errors=errors,
        items=items, total=total, offset=offset, per_page=PER_PAGE, site_names=names,
        model_names=model_names, models=models, status_names=STATUS_NAMES,
        condition_names=CONDITION_NAMES,
        previous=(f"{root}/assets?{found.query(offset=max(0, offset - PER_PAGE))}"
                  if offset > 0 else None),
        next=(f"{root}/assets?{found.query(offset=offset + PER_PAGE)}"
              if offset + PER_PAGE < total else None),
        csv=f"{root}/assets.csv?{found.query()}".rstrip("?"))


def csv_options(lang: str) -> csvio.CsvOptions:
    """A spreadsheet in the person's language opens the file as it is: ``;`` and a
    decimal comma in Spanish and Portuguese (the readings' and runs' exports do the same),
    and a byte order mark so that Excel reads UTF-8 (accents, ñ)."""
    comma_decimal = lang in ("es", "pt")
    return csvio.CsvOptions(delimiter=";" if comma_decimal else ",",
                            decimal="," if comma_decimal else ".", bom=True)


# The columns of csvio's asset file, from an asset as the API gives it.
_CSV_FIELDS: Final = {"tag": "tag", "model": "model", "site": "site",
                      "serial_number": "serial_number", "status": "status",
                      "condition": "condition", "notes": "notes"}


@router.get("/assets.csv", dependencies=[needs(P.INVENTORY_READ)])
def search_csv(request: Request, hub: HubDep) -> Response:
    """The search's assets (all pages) as CSV, in the person's spreadsheet dialect."""
    _ = i18n.gettext_of(language_of(request))
    found, errors = read_filters(request, _)
    if errors:
        raise InvalidValueError("; ".join(sorted(errors)))
    options = csv_options(language_of(request))
    with hub.engine.connect() as conn:
        if not found.q:
            return inventory_io.export_assets(
                conn=conn, options=options, request=request, site=found.site or None,
                status=found.status or None,  # type: ignore[arg-type]
                model=found.model or None)
        inventory_io._readable(request, found.site or None)

        def rows() -> Iterator[list[object]]:
            offset = 0
            while True:
                page = inventory_api.list_assets(
                    request=request, conn=conn, site=found.site or None,
                    status=found.status or None,  # type: ignore[arg-type]
                    model=found.model or None, search=found.q, limit=CSV_PAGE, offset=offset)
                for a in page.items:
                    yield [getattr(a, _CSV_FIELDS[c]) for c in csvio.COLUMNS["assets"]]
                offset += CSV_PAGE
                if offset >= page.total or not page.items:
                    return

        text = csvio.export_text(csvio.iter_csv(csvio.COLUMNS["assets"], rows(), options))
    return Response(text.encode("utf-8"), media_type=inventory_io.CSV_MEDIA,
                    headers={"Content-Disposition": 'attachment; filename="assets.csv"'})


# -- one asset -------------------------------------------------------------------------------

def _words(_: Any, value: object) -> str:
    """A state's value in words: a status or condition translated, others as they are."""
    if isinstance(value, str):
        if value in STATUS_NAMES:
            return str(_(STATUS_NAMES[value]))
        if value in CONDITION_NAMES:
            return str(_(CONDITION_NAMES[value]))
    return str(value)


@dataclass(frozen=True)
class Entry:
    """One event of the timeline, in words."""

    at: int
    what: str
    by: str
    on_behalf_of: str | None
    site: str | None
    details: list[tuple[str, str]]
    note: str | None


def timeline_entry(_: Any, event: history.Event) -> Entry:
    state = event.to_state or {}
    details = [(str(_(label)), _words(_, state[key])) for key, label in EVENT_FIELDS
               if key in state and state[key] not in (None, "")]
    return Entry(at=event.at, what=str(_(EVENT_NAMES.get(event.kind, OTHER_EVENT))),
                 by=event.by, on_behalf_of=event.on_behalf_of, site=event.site_code,
                 details=details, note=event.note)


def _asset_values(request: Request, conn: Connection, tag: str, offset: int) -> dict[str, Any]:
    """What the asset's page shows."""
    _ = i18n.gettext_of(language_of(request))
    caller = gated_caller(request)
    asset = assets.get_asset(conn=conn, tag=tag)
    model = catalog.get_model(conn=conn, code=asset.model_code)
    events = history.history_of(conn=conn, subject=tag,
                                sites=scope_of(request, P.INVENTORY_READ))
    events.reverse()  # newest first
    if offset and offset >= len(events):
        raise NotFoundError("no such page of the history", what="page", key=str(offset))
    shown = events[offset:offset + EVENTS_PER_PAGE]
    names = _site_names(conn, {asset.site_code} | {e.site_code for e in shown if e.site_code})
    loan = loans.open_loan_of(conn=conn, asset_tag=tag)
    transfer_id = transfers.open_transfer_of(conn=conn, tag=tag)
    transfer = (None if transfer_id is None
                else transfers.get_transfer(conn=conn, transfer_uuid=transfer_id))
    contents = kits.contents_of(conn=conn, kit=asset)
    repairs = maintenance.repairs_of(conn=conn, tag=tag)
    repairs.reverse()
    tree = tree_for(request)
    may_repair = caller.can(P.LOANS_WRITE, asset.site_code, tree)
    may_manage = caller.can(P.INVENTORY_MANAGE, asset.site_code, tree)
    root = pages.root_of(request)
    here = f"{root}/assets/{quote(tag)}"
    return {
        "asset": asset, "model": model, "site_names": names, "loan": loan,
        "transfer": transfer, "kit": kits.kit_holding(conn=conn, asset_tag=tag),
        "is_kit": not contents.empty or model.category == "robotics_kit",
        "entries": [timeline_entry(_, e) for e in shown], "events_total": len(events),
        "offset": offset, "per_page": EVENTS_PER_PAGE,
        "newer": (f"{here}?{urlencode({'offset': max(0, offset - EVENTS_PER_PAGE)})}"
                  if offset > 0 else None),
        "older": (f"{here}?{urlencode({'offset': offset + EVENTS_PER_PAGE})}"
                  if offset + EVENTS_PER_PAGE < len(events) else None),
        "repairs": repairs, "open_repair": next((r for r in repairs if r.open), None),
        "service_plans": service.plans_of(conn=conn, tag=tag),
        "service_names": SERVICE_NAMES,
        "may_repair": may_repair, "may_manage": may_manage,
        "next_statuses": [s for s in assets.TRANSITIONS[asset.status]
                          if s not in assets.BY_RECORD_ONLY],
        "status_names": STATUS_NAMES, "condition_names": CONDITION_NAMES,
        "here": here,
    }


DONE: Final = {"repair_started": N_("The repair has started: the asset is out of service."),
               "repair_finished": N_("The repair is finished: the asset is available again."),
               "state": N_("Saved."),
               "service_done": N_("Recorded: it is due again one interval from today.")}
SERVICE_NAMES: Final = {"maintenance": N_("Maintenance"), "calibration": N_("Calibration")}


def _asset_page(request: Request, hub: HubDep, tag: str, *, status: int = 200,
                form: str | None = None, values: Mapping[str, str] | None = None,
                errors: Mapping[str, str] | None = None, detail: str | None = None
                ) -> HTMLResponse:
    offset = _offset(request.query_params.get("offset"))
    if offset is None:
        raise InvalidValueError("offset is not a page of the history")
    with hub.engine.connect() as conn:
        shown = _asset_values(request, conn, tag, offset)
    done = request.query_params.get("done")
    return pages.render(request, "assets_one.html", status=status,
                        caller=gated_caller(request), form=form, values=values or {},
                        errors=errors or {}, detail=detail,
                        done=DONE.get(done or ""), **shown)


@router.get("/assets/{tag:path}", dependencies=[needs(P.INVENTORY_READ, On.path("asset", "tag"))])
def asset_page(tag: str, request: Request, hub: HubDep) -> HTMLResponse:
    """One asset: its details, repairs and history (``?offset=`` pages the history)."""
    return _asset_page(request, hub, tag)


def _domain_words(_: Any, exc: Exception) -> tuple[int, str]:
    """A refused change: the status and the person's words (the domain's English is shown
    beside them as detail)."""
    if isinstance(exc, StaleVersionError):
        return 409, _("Someone changed this asset meanwhile: reload the page and try again.")
    if isinstance(exc, NotFoundError):
        return 404, _("Not found: this page, or what it names, is not on this hub.")
    if isinstance(exc, (InvalidTransitionError, ConflictError)):
        return 409, _("The asset's state does not allow this now.")
    return 422, _("Something in the form is not valid.")


def _version(form: Mapping[str, str]) -> int | None:
    text = form.get("version", "")
    return int(text) if text.isdigit() and len(text) < 12 else None


def _fields(exc: ValidationError, names: Mapping[str, str], _: Any) -> dict[str, str]:
    """Which form field each of a body's validation errors is about, in words."""
    errors: dict[str, str] = {}
    for problem in exc.errors():
        where = str(problem["loc"][0]) if problem["loc"] else ""
        field = names.get(where, "form")
        errors.setdefault(field, _("Write what was wrong, on at most %(count)s letters.",
                                   count=maintenance.FAULT_MAX)
                          if field in ("fault", "work_done")
                          else _("Choose a value from the list."))
    return errors


@router.post("/assets/{tag:path}/repair",
             dependencies=[needs(P.LOANS_WRITE, On.path("asset", "tag"))])
async def repair_form(tag: str, request: Request, hub: HubDep) -> Response:
    """Start a repair (``action=start``: the fault) or finish the open one
    (``action=finish``: the work done and the condition after), through the API's routes."""
    form = await signed_form(request)
    _ = i18n.gettext_of(language_of(request))
    action = form.get("action", "")
    if action not in ("start", "finish"):
        raise InvalidValueError("action is start or finish")
    version = _version(form)
    actor = gated_caller(request).name
    condition = form.get("condition") or None
    try:
        if action == "start":
            start = movements_api.RepairIn(fault=form.get("fault", "").strip(),
                                           condition=condition,  # type: ignore[arg-type]
                                           expected_version=version)
        else:
            finish = movements_api.RepairDoneIn(
                work_done=form.get("work_done", "").strip(),
                condition=condition or "good",  # type: ignore[arg-type]
                expected_version=version)
    except ValidationError as exc:
        errors = _fields(exc, {"fault": "fault", "work_done": "work_done",
                               "condition": "condition"}, _)
        return await run_in_threadpool(_asset_page, request, hub, tag, status=422, form=action,
                                       values=form, errors=errors)

    def write() -> None:
        with hub.engine.begin() as conn:
            if action == "start":
                movements_api.start_repair(tag=tag, body=start, actor=actor, conn=conn)
                return
            repair = maintenance.get_repair(conn=conn, repair_uuid=form.get("repair", ""))
            if repair.asset_tag != tag:
                raise NotFoundError("no such repair of this asset", what="repair",
                                    key=repair.uuid)
            movements_api.finish_repair(repair_id=repair.uuid, body=finish, actor=actor,
                                        conn=conn)

    try:
        await run_in_threadpool(write)
    except (StaleVersionError, NotFoundError, InvalidTransitionError, ConflictError,
            InvalidValueError) as exc:
        status, words = _domain_words(_, exc)
        if status == 404 and not isinstance(exc, NotFoundError):
            raise
        return await run_in_threadpool(_asset_page, request, hub, tag, status=status,
                                       form=action, values=form, errors={"form": words},
                                       detail=str(exc))
    done = "repair_started" if action == "start" else "repair_finished"
    return RedirectResponse(f"{pages.root_of(request)}/assets/{quote(tag)}?done={done}",
                            status_code=303)


@router.post("/assets/{tag:path}/state",
             dependencies=[needs(P.INVENTORY_MANAGE, On.path("asset", "tag"))])
async def state_form(tag: str, request: Request, hub: HubDep) -> Response:
    """A coordinator's change of status (along the allowed transitions) or condition,
    through the API's own routes (``POST .../status``, ``PATCH``)."""
    form = await signed_form(request)
    _ = i18n.gettext_of(language_of(request))
    version = _version(form)
    actor = gated_caller(request).name
    wanted_status = form.get("status", "")
    wanted_condition = form.get("condition", "")
    errors: dict[str, str] = {}
    if wanted_status and wanted_status not in assets.STATUSES:
        errors["state_status"] = _("Choose a status from the list.")
    if wanted_condition not in assets.CONDITIONS:
        errors["state_condition"] = _("Choose a value from the list.")
    note = form.get("note", "").strip() or None
    if note is not None and (len(note) > inventory_api.NOTE_MAX):
        errors["state_note"] = _("Write at most %(count)s letters.",
                                 count=inventory_api.NOTE_MAX)
    if errors:
        return await run_in_threadpool(_asset_page, request, hub, tag, status=422,
                                       form="state", values=form, errors=errors)

    def write() -> None:
        with hub.engine.begin() as conn:
            asset = assets.get_asset(conn=conn, tag=tag)
            if wanted_status and wanted_status != asset.status:
                inventory_api.set_status(tag=tag, body=inventory_api.StatusIn(
                    status=wanted_status,  # type: ignore[arg-type]
                    condition=wanted_condition,  # type: ignore[arg-type]
                    note=note, expected_version=version), actor=actor, conn=conn)
            elif wanted_condition != asset.condition:
                inventory_api.edit_asset(tag=tag, body=inventory_api.AssetPatch(
                    condition=wanted_condition,  # type: ignore[arg-type]
                    note=note, expected_version=version),
                    actor=actor, conn=conn, response=Response())
            elif version is not None and version != asset.version:
                raise StaleVersionError(what="asset", key=tag, expected=version,
                                        actual=asset.version)

    try:
        await run_in_threadpool(write)
    except ValidationError:
        return await run_in_threadpool(_asset_page, request, hub, tag, status=422,
                                       form="state", values=form,
                                       errors={"state_note": _("Write the note on printable "
                                                         "letters.")})
    except (StaleVersionError, InvalidTransitionError, ConflictError,
            InvalidValueError) as exc:
        status, words = _domain_words(_, exc)
        return await run_in_threadpool(_asset_page, request, hub, tag, status=status,
                                       form="state", values=form, errors={"form": words},
                                       detail=str(exc))
    return RedirectResponse(f"{pages.root_of(request)}/assets/{quote(tag)}?done=state",
                            status_code=303)
