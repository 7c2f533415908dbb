"""Mobile-lab rotations: the route's stops and, at each, the manifest checked by scan:
``/rotations``.

The pages run the inventory's rotation functions (``inventory.rotations``: plan, the
mobile lab's manifest, arrive, depart) with the API's gates
(``labhub.api.inventory_transfers``): planning needs ``inventory.manage`` at the mobile
lab and at every stop, arriving and leaving at the mobile lab (the gate's
``rotation``), editing the manifest at the mobile lab. A stop is four steps, each on
the stop's page (``/rotations/{id}/stops/{seq}``): arrive (the manifest is shipped to
the school on a transfer), scan at the school what came (each item ticked, the missing
and the extra side by side) and confirm the arrival (the transfer is received there);
leave (what came is shipped back), scan at the mobile lab and confirm the return. The
scans and the receipt are the transfers page's own (``labhub.web.transfers``): each
scan once by its key, at the receiving end, which the person must manage.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Annotated, Any, Final
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Connection

from inventory import assets as inventory_assets
from inventory import receipts
from inventory import rotations as domain
from inventory import sites as inventory_sites
from inventory import transfers as inventory_transfers
from inventory.errors import ConflictError, InventoryError, NotFoundError
from labhub.access.gate import On, gated_caller, needs, require_at, scope_of
from labhub.access.permissions import Permission as P
from labhub.api.common import actor_of
from labhub.api.deps import HubDep
from labhub.web import equipment, pages
from labhub.web.equipment import ScanRefused
from labhub.web.i18n import N_
from labhub.web.pages import PageRoute
from labhub.web.transfers import (
    Receipt,
    busy_answer,
    gettext,
    is_stale,
    may,
    missing_choice_error,
    receive,
    said_of_error,
    scan_at_destination,
    scan_in_one_transaction,
    version_of,
)
from labhub.wiring import Hub

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PAGE_SIZE: Final = 20  # rotations a page
STOP_ROWS: Final = 5  # stop rows of the plan form (a page form without script cannot add rows)
STATUS_WORDS: Final = {"planned": N_("Planned"), "underway": N_("Underway"),
                       "finished": N_("Finished")}
# A stop's state, from its two transfers (see :func:`stop_state`).
STOP_WORDS: Final = {
    "planned": N_("Not arrived yet"),
    "arriving": N_("Arriving: scan at the school what came"),
    "there": N_("At the school"),
    "leaving": N_("Leaving: scan at the mobile lab what came back"),
    "left": N_("Left"),
}


@dataclass(frozen=True)
class StopView:
    """A stop with its transfers read."""

    stop: domain.Stop
    state: str
    arrival: inventory_transfers.Transfer | None
    departure: inventory_transfers.Transfer | None

    @property
    def leg(self) -> inventory_transfers.Transfer | None:
        """The transfer being scanned now (shipped, not received), if any."""
        for t in (self.departure, self.arrival):
            if t is not None and t.status == "shipped":
                return t
        return None


def day_us(iso_day: str) -> int:
    """A planned day (YYYY-MM-DD) as microseconds at noon UTC, for ``fmt.date``: the same
    day in every lab's zone (UTC-12 to UTC+11)."""
    return int(datetime.combine(date.fromisoformat(iso_day), time(12), UTC).timestamp()
               * 1_000_000)


def stop_state(arrival: inventory_transfers.Transfer | None,
               departure: inventory_transfers.Transfer | None) -> str:
    if departure is not None:
        return "left" if departure.status == "received" else "leaving"
    if arrival is not None:
        return "there" if arrival.status == "received" else "arriving"
    return "planned"


def _view(conn: Connection, s: domain.Stop) -> StopView:
    def read(key: str | None) -> inventory_transfers.Transfer | None:
        return None if key is None else inventory_transfers.get_transfer(
            conn=conn, transfer_uuid=key)
    arrival, departure = read(s.arrival_transfer_uuid), read(s.departure_transfer_uuid)
    return StopView(s, stop_state(arrival, departure), arrival, departure)


# -- the list ---------------------------------------------------------------------------------

@router.get("/rotations", dependencies=[needs(P.INVENTORY_READ)])
def rotations_page(
    request: Request, hub: HubDep,
    site: Annotated[str | None, Query(max_length=64)] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> HTMLResponse:
    """Rotations whose mobile lab or a stop is where the person may read the inventory;
    ``site`` keeps a site's (and those under it), and lists the mobile labs' manifests."""
    caller = gated_caller(request)
    scope = scope_of(request, P.INVENTORY_READ)
    site = site or None
    with hub.engine.connect() as conn:
        total, shown = domain.list_rotations(conn=conn, site_under=site, sites=scope,
                                             limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
        labs = [s for s in inventory_sites.list_sites(conn=conn, kind="site", only=scope)
                if s.tier == "mobile_lab"]
        places = inventory_sites.list_sites(conn=conn, only=scope)

    def link(to: int) -> str:
        kept = {k: v for k, v in (("site", site), ("page", to)) if v not in (None, 1)}
        return pages.root_of(request) + "/rotations" + ("?" + urlencode(kept) if kept else "")
    return pages.render(
        request, "rotations.html", caller=caller, rotations=shown, total=total,
        first=(page - 1) * PAGE_SIZE + 1, last=(page - 1) * PAGE_SIZE + len(shown),
        previous=link(page - 1) if page > 1 else None,
        next=link(page + 1) if page * PAGE_SIZE < total else None, site=site,
        places=places, labs=labs, status_of=domain.rotation_status,
        status_words=STATUS_WORDS,
        may_plan=any(may(request, P.INVENTORY_MANAGE, lab.code) for lab in labs))


# -- planning ---------------------------------------------------------------------------------

def _plan_page(request: Request, hub: Hub, *, status: int = 200,
               values: Mapping[str, str] | None = None,
               errors: Mapping[str, str] | None = None,
               detail: str | None = None) -> HTMLResponse:
    with hub.engine.connect() as conn:
        sites = inventory_sites.list_sites(conn=conn, kind="site")
    labs = [s for s in sites if s.tier == "mobile_lab"
            and may(request, P.INVENTORY_MANAGE, s.code)]
    schools = [s for s in sites if s.tier != "mobile_lab"]
    return pages.render(request, "rotations_new.html", status=status,
                        caller=gated_caller(request), labs=labs, schools=schools,
                        rows=range(1, STOP_ROWS + 1), values=values or {},
                        errors=errors or {}, detail=detail)


@router.get("/rotations/new", dependencies=[needs(P.INVENTORY_MANAGE)])
def plan_page(request: Request, hub: HubDep) -> HTMLResponse:
    """The form to plan a mobile lab's route: its name and up to five stops."""
    return _plan_page(request, hub)


_STOP_ERROR = re.compile(r"stop (\d+)")


@router.post("/rotations", dependencies=[needs(P.INVENTORY_MANAGE, On.ROUTE)])
async def plan_form(request: Request, hub: HubDep) -> Response:
    """Plan the rotation (as ``POST /api/v1/rotations``), then its page."""
    form = await pages.signed_form(request)
    _ = gettext(request)
    values = {k: v.strip() for k, v in form.items() if k != "csrf_token"}
    errors: dict[str, str] = {}
    if not values.get("mobile_lab"):
        errors["mobile_lab"] = _("Choose the mobile lab.")
    if not values.get("name"):
        errors["name"] = _("Give the route a name.")
    stops: list[tuple[str, str, str]] = []
    for n in range(1, STOP_ROWS + 1):
        row = [values.get(f"{part}{n}", "") for part in ("site", "arrive", "depart")]
        if any(row) and not all(row):
            errors[f"stop{n}"] = _("Fill in the school and both dates, or leave the row "
                                   "empty.")
        elif all(row):
            stops.append((row[0], row[1], row[2]))
    if not stops and not any(k.startswith("stop") for k in errors):
        errors["stop1"] = _("Add at least one stop.")
    if errors:
        return _plan_page(request, hub, status=422, values=values, errors=errors)
    require_at(request, P.INVENTORY_MANAGE, values["mobile_lab"], *(s[0] for s in stops))
    filled = [n for n in range(1, STOP_ROWS + 1) if values.get(f"site{n}")]

    def work() -> domain.Rotation:
        with hub.engine.begin() as conn:
            return domain.plan_rotation(conn=conn, mobile_lab=values["mobile_lab"],
                                        name=values["name"], stops=stops,
                                        by=actor_of(request))
    try:
        r = await run_in_threadpool(work)
    except InventoryError as exc:
        text = str(exc)
        found = _STOP_ERROR.match(text)
        if found is None:
            field, words = "mobile_lab", _("Choose a mobile lab.")
        else:
            field = f"stop{filled[int(found.group(1)) - 1]}"
            if "before the previous" in text:
                words = _("It arrives before the previous stop leaves.")
            elif "is before arrival" in text:
                words = _("It leaves before it arrives.")
            elif "not a date" in text:
                words = _("Write the dates as YYYY-MM-DD.")
            else:
                words = _("Choose a school's lab.")
        return _plan_page(request, hub, status=422, values=values, errors={field: words},
                          detail=text)
    return RedirectResponse(f"{pages.root_of(request)}/rotations/{r.uuid}", status_code=303)


# -- one rotation -----------------------------------------------------------------------------

@router.get("/rotations/{rotation_id}",
            dependencies=[needs(P.INVENTORY_READ, On.path("rotation", "rotation_id"))])
def rotation_page(request: Request, rotation_id: str, hub: HubDep) -> HTMLResponse:
    """The route: each stop, its dates and where it stands, with a link to check it."""
    with hub.engine.connect() as conn:
        r = domain.get_rotation(conn=conn, rotation_uuid=rotation_id)
        stops = [_view(conn, s) for s in r.stops]
        manifest = domain.manifest_of(conn=conn, mobile_lab=r.mobile_lab_code)
    return pages.render(request, "rotations_one.html", caller=gated_caller(request), r=r,
                        stops=stops, manifest=manifest, stop_words=STOP_WORDS,
                        rotation_status=domain.rotation_status(r), day_us=day_us,
                        status_words=STATUS_WORDS)


def _stop_values(request: Request, conn: Connection, r: domain.Rotation, seq: int, *,
                 errors: Mapping[str, str] | None = None, detail: str | None = None,
                 values: Mapping[str, str] | None = None, conflict: bool = False
                 ) -> dict[str, Any]:
    stop = next((s for s in r.stops if s.seq == seq), None)
    if stop is None:
        raise NotFoundError(f"rotation {r.uuid} has no stop {seq}", what="stop", key=str(seq))
    view = _view(conn, stop)
    leg = view.leg
    # What must arrive: the manifest until the arrival ships it, then what it shipped.
    coming = (view.arrival.items if view.arrival is not None
              else tuple(domain.manifest_of(conn=conn, mobile_lab=r.mobile_lab_code)))
    found = inventory_assets.get_assets(conn=conn, tags=coming)
    here = f"{pages.root_of(request)}/rotations/{r.uuid}/stops/{seq}"
    _ = gettext(request)
    manages_lab = may(request, P.INVENTORY_MANAGE, r.mobile_lab_code)
    return {
        "caller": gated_caller(request), "r": r, "view": view, "seq": seq, "leg": leg,
        "t": leg, "receipt": None if leg is None else Receipt.of(leg),
        "coming": [(tag, found.get(tag)) for tag in coming], "here": here,
        "may_receive": leg is not None and may(request, P.INVENTORY_MANAGE, leg.to_site_code),
        "may_arrive": manages_lab and view.state == "planned",
        "may_depart": manages_lab and view.state == "there",
        "receive_action": here + "/receive",
        "receive_extra": {} if leg is None else {"transfer": leg.uuid},
        "confirm_words": None if leg is None else (
            _("Confirm the arrival") if leg is view.arrival else _("Confirm the return")),
        "stop_words": STOP_WORDS, "errors": errors or {}, "detail": detail, "day_us": day_us,
        "values": values or {}, "conflict": conflict, "scan_id": str(uuid.uuid4()),
    }


def _stop_page(request: Request, hub: Hub, rotation_id: str, seq: int, *,
               status: int = 200, said: tuple[str, str] | None = None,
               **options: Any) -> HTMLResponse:
    with hub.engine.connect() as conn:
        r = domain.get_rotation(conn=conn, rotation_uuid=rotation_id)
        values = _stop_values(request, conn, r, seq, **options)
    return pages.render(request, "rotations_stop.html", status=status, said=said, **values)


@router.get("/rotations/{rotation_id}/stops/{seq}",
            dependencies=[needs(P.INVENTORY_READ, On.path("rotation", "rotation_id"))])
def stop_page(request: Request, rotation_id: str, seq: int, hub: HubDep) -> HTMLResponse:
    """A stop: what must arrive (and leave), checked by scan before each is confirmed."""
    said = equipment.said_of(request)
    page = _stop_page(request, hub, rotation_id, seq, said=said)
    if said is not None:
        equipment.forget_said(page)
    return page


async def _stop_step(request: Request, hub: Hub, rotation_id: str, seq: int,
                     work: Callable[[Connection, Mapping[str, str], str], None],
                     check: Callable[[Mapping[str, str]], dict[str, str]]) -> Response:
    form = await pages.signed_form(request)
    _ = gettext(request)
    errors = await run_in_threadpool(check, form)
    if errors:
        return await run_in_threadpool(lambda: _stop_page(
            request, hub, rotation_id, seq, status=422, errors=errors, values=form))
    by = actor_of(request)

    def run() -> Response:
        try:
            with hub.engine.begin() as conn:
                work(conn, form, by)
        except InventoryError as exc:
            if isinstance(exc, NotFoundError) and exc.what in ("rotation", "stop"):
                raise
            if is_stale(exc):
                return _stop_page(request, hub, rotation_id, seq, status=409, conflict=True)
            return _stop_page(request, hub, rotation_id, seq, status=422, values=form,
                              errors={"step": said_of_error(_, exc)}, detail=str(exc))
        return RedirectResponse(
            f"{pages.root_of(request)}/rotations/{rotation_id}/stops/{seq}", status_code=303)
    return await run_in_threadpool(run)


def _carrier_check(request: Request) -> Callable[[Mapping[str, str]], dict[str, str]]:
    _ = gettext(request)

    def check(form: Mapping[str, str]) -> dict[str, str]:
        carrier = form.get("carrier", "").strip()
        if not carrier or len(carrier) > 100:
            return {"carrier": _("Write who drives the mobile lab (at most 100 letters).")}
        return {}
    return check


@router.post("/rotations/{rotation_id}/stops/{seq}/arrive",
             dependencies=[needs(P.INVENTORY_MANAGE, On.path("rotation", "rotation_id"))])
async def arrive_form(request: Request, rotation_id: str, seq: int, hub: HubDep) -> Response:
    """Arrive (``arrive``): the manifest is shipped to the school, to be scanned there."""
    def work(conn: Connection, form: Mapping[str, str], by: str) -> None:
        domain.arrive(conn=conn, rotation_uuid=rotation_id, seq=seq,
                      carrier=form.get("carrier", "").strip(), by=by,
                      version=version_of(form))
    return await _stop_step(request, hub, rotation_id, seq, work, _carrier_check(request))


@router.post("/rotations/{rotation_id}/stops/{seq}/depart",
             dependencies=[needs(P.INVENTORY_MANAGE, On.path("rotation", "rotation_id"))])
async def depart_form(request: Request, rotation_id: str, seq: int, hub: HubDep) -> Response:
    """Leave (``depart``): what came is shipped back to the mobile lab, to be scanned there."""
    def work(conn: Connection, form: Mapping[str, str], by: str) -> None:
        domain.depart(conn=conn, rotation_uuid=rotation_id, seq=seq,
                      carrier=form.get("carrier", "").strip(), by=by,
                      version=version_of(form))
    return await _stop_step(request, hub, rotation_id, seq, work, _carrier_check(request))


def _leg_of(conn: Connection, rotation_id: str, seq: int, key: str
            ) -> inventory_transfers.Transfer:
    """The stop's transfer the form names (its arrival or its departure)."""
    r = domain.get_rotation(conn=conn, rotation_uuid=rotation_id)
    stop = next((s for s in r.stops if s.seq == seq), None)
    if stop is None or key not in (stop.arrival_transfer_uuid, stop.departure_transfer_uuid):
        raise NotFoundError(f"stop {seq} of rotation {rotation_id} has no transfer {key!r}",
                            what="stop", key=str(seq))
    return inventory_transfers.get_transfer(conn=conn, transfer_uuid=key)


@router.post("/rotations/{rotation_id}/stops/{seq}/scans",
             dependencies=[needs(P.INVENTORY_MANAGE, On.ROUTE)])
async def stop_scan(request: Request, rotation_id: str, seq: int, hub: HubDep) -> Response:
    """A scan at the receiving end of the stop's transfer (the school on arrival, the
    mobile lab on the way back): ``scan_item``, once per key."""
    _ = gettext(request)
    back = f"/rotations/{rotation_id}/stops/{seq}"
    try:
        scan = await equipment.scan_fields(request)
    except ScanRefused as refused:
        return equipment.scan_answer(request, outcome="refused", said=refused.said, back=back)
    by = actor_of(request)

    def run() -> tuple[equipment.Outcome, str] | None:
        with hub.engine.connect() as conn:
            leg = _leg_of(conn, rotation_id, seq, scan.fields.get("transfer", ""))
        require_at(request, P.INVENTORY_MANAGE, leg.to_site_code)
        return scan_in_one_transaction(
            hub, _, scan.code, lambda conn: scan_at_destination(conn, leg, scan, by, _))

    done = await run_in_threadpool(run)
    if done is None:
        return busy_answer(request, back)
    outcome, said = done

    def fragment() -> dict[str, Any]:
        with hub.engine.connect() as conn:
            r = domain.get_rotation(conn=conn, rotation_uuid=rotation_id)
            values = _stop_values(request, conn, r, seq)
        del values["caller"]  # scan_answer gives the caller
        return values
    values = await run_in_threadpool(fragment)
    return equipment.scan_answer(request, outcome=outcome, said=said, back=back,
                                 template="rotations_stop_work.html", **values)


@router.post("/rotations/{rotation_id}/stops/{seq}/receive",
             dependencies=[needs(P.INVENTORY_MANAGE, On.ROUTE)])
async def stop_receive(request: Request, rotation_id: str, seq: int,
                       hub: HubDep) -> Response:
    """Confirm the arrival (or the return): the stop's transfer is received where it went."""
    _ = gettext(request)

    def check(form: Mapping[str, str]) -> dict[str, str]:
        with hub.engine.connect() as conn:
            leg = _leg_of(conn, rotation_id, seq, form.get("transfer", ""))
        require_at(request, P.INVENTORY_MANAGE, leg.to_site_code)
        if leg.status != "shipped":
            return {}
        return missing_choice_error(_, Receipt.of(leg), form)

    def work(conn: Connection, form: Mapping[str, str], by: str) -> None:
        leg = _leg_of(conn, rotation_id, seq, form.get("transfer", ""))
        receive(conn, leg, form, by)
    return await _stop_step(request, hub, rotation_id, seq, work, check)


# -- a mobile lab's manifest ------------------------------------------------------------------

def _manifest_values(request: Request, conn: Connection, code: str, mode: str
                     ) -> dict[str, Any]:
    tags = domain.manifest_of(conn=conn, mobile_lab=code)
    lab = inventory_sites.get_site(conn=conn, code=code)
    found = inventory_assets.get_assets(conn=conn, tags=tags)
    return {"caller": gated_caller(request), "lab": lab,
            "items": [(tag, found.get(tag)) for tag in tags],
            "may_edit": may(request, P.INVENTORY_MANAGE, code), "mode": mode,
            "here": f"{pages.root_of(request)}/rotations/manifests/{code}",
            "scan_id": str(uuid.uuid4())}


@router.get("/rotations/manifests/{code}",
            dependencies=[needs(P.INVENTORY_READ, On.path("site", "code"))])
def manifest_page(request: Request, code: str, hub: HubDep,
                  mode: Annotated[str, Query(pattern="^(add|remove)$")] = "add"
                  ) -> HTMLResponse:
    """What travels with a mobile lab; a coordinator adds (or removes) assets by scan."""
    said = equipment.said_of(request)
    with hub.engine.connect() as conn:
        values = _manifest_values(request, conn, code, mode)
    page = pages.render(request, "rotations_manifest.html", said=said, **values)
    if said is not None:
        equipment.forget_said(page)
    return page


@router.post("/rotations/manifests/{code}/scans",
             dependencies=[needs(P.INVENTORY_MANAGE, On.path("site", "code"))])
async def manifest_scan(request: Request, code: str, hub: HubDep) -> Response:
    """A scan puts the asset on the manifest (``add_to_manifest``) or, in remove mode,
    takes it off (``remove_from_manifest``), once per key."""
    _ = gettext(request)
    try:
        scan = await equipment.scan_fields(request)
    except ScanRefused as refused:
        return equipment.scan_answer(request, outcome="refused", said=refused.said,
                                     back=f"/rotations/manifests/{code}")
    mode = "remove" if scan.fields.get("mode") == "remove" else "add"
    back = f"/rotations/manifests/{code}" + ("?mode=remove" if mode == "remove" else "")
    by = actor_of(request)

    def run() -> tuple[equipment.Outcome, str]:
        try:
            with hub.engine.begin() as conn:
                on = scan.code in domain.manifest_of(conn=conn, mobile_lab=code)
                if not receipts.first_time(conn=conn, key=scan.key,
                                           subject=f"manifest:{code}", tag=scan.code, by=by):
                    return "again", _("%(tag)s was scanned already.", tag=scan.code)
                if mode == "add":
                    if on:
                        return "again", _("%(tag)s is on the manifest already.", tag=scan.code)
                    tags = domain.add_to_manifest(conn=conn, mobile_lab=code, tag=scan.code,
                                                  by=by)
                    return "ok", _("%(tag)s added: %(count)s on the manifest.",
                                   tag=scan.code, count=len(tags))
                if not on:
                    return "again", _("%(tag)s is not on the manifest.", tag=scan.code)
                tags = domain.remove_from_manifest(conn=conn, mobile_lab=code,
                                                   tag=scan.code, by=by)
                return "ok", _("%(tag)s taken off: %(count)s on the manifest.",
                               tag=scan.code, count=len(tags))
        except ConflictError as exc:
            if " is at " in str(exc):
                return "refused", _("%(tag)s is not recorded at this mobile lab: move it "
                                    "here first.", tag=scan.code)
            return "refused", said_of_error(_, exc, scan.code)
        except InventoryError as exc:
            return "refused", said_of_error(_, exc, scan.code)

    outcome, said = await run_in_threadpool(run)

    def fragment() -> dict[str, Any]:
        with hub.engine.connect() as conn:
            values = _manifest_values(request, conn, code, mode)
        del values["caller"]
        return values
    values = await run_in_threadpool(fragment)
    return equipment.scan_answer(request, outcome=outcome, said=said, back=back,
                                 template="rotations_manifest_items.html", **values)


@router.post("/rotations/manifests/{code}/remove",
             dependencies=[needs(P.INVENTORY_MANAGE, On.path("site", "code"))])
async def manifest_remove(request: Request, code: str, hub: HubDep) -> Response:
    """Take an asset off the manifest by its button (no scan)."""
    form = await pages.signed_form(request)
    by = actor_of(request)

    def run() -> None:
        with hub.engine.begin() as conn:
            domain.remove_from_manifest(conn=conn, mobile_lab=code, tag=form.get("tag", ""),
                                        by=by)
    await run_in_threadpool(run)
    return RedirectResponse(f"{pages.root_of(request)}/rotations/manifests/{code}",
                            status_code=303)
