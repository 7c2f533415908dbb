"""Transfers: ship with a scanned manifest, receive with scans, the discrepancies side by
side, the in-transit list: ``/transfers``.

The pages run the inventory's own transfer functions (``inventory.transfers``: draft,
add and remove items, ship, scan at the destination, receive) with the API's gates
(``labhub.api.inventory_transfers``): drafting needs ``inventory.manage`` at the origin,
building the manifest and shipping at the origin too (the gate's ``transfer``), scanning
and receiving at the destination (``transfer_to``); reading at either end. Every scan is
one of the scan contract's (``labhub.web.equipment``): its key is recorded with
:func:`inventory.receipts.first_time` in the transaction of the scan's work, so a scan
sent twice is done once. A scan at the destination says that it was made there (the
page is the destination's: its gate checked the person may receive there). The
receipt shows, before it is confirmed, what was shipped and not scanned (missing) beside
what was scanned and not shipped (extra). The mobile-lab rotations' stops
(``labhub.web.rotations``) scan and receive their transfers with the same parts.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, cast
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Connection, select

from inventory import receipts
from inventory import sites as inventory_sites
from inventory import transfers as domain
from inventory.errors import (
    ConflictError,
    InvalidTransitionError,
    InventoryError,
    NotFoundError,
    WrongSiteError,
)
from inventory.sites import subtree
from labhub.access.gate import On, gated_caller, needs, require_at, scope_of
from labhub.access.permissions import Permission as P
from labhub.access.sites import tree_for
from labhub.api.common import actor_of
from labhub.api.deps import HubDep
from labhub.web import equipment, i18n, pages
from labhub.web.equipment import Scan, ScanRefused
from labhub.web.i18n import N_
from labhub.web.pages import PageRoute
from labhub.wiring import Hub

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PAGE_SIZE: Final = 20  # transfers a page: a phone's screenful or two
# The statuses as the list's filter names them ("shipped" is the in-transit list).
STATUS_WORDS: Final = {"draft": N_("Draft"), "shipped": N_("In transit"),
                       "received": N_("Received")}
MISSING_WORDS: Final = {"in_transit": N_("Still in transit (it may come later)"),
                        "lost": N_("Lost")}
KIND_WORDS: Final = {"missing": N_("Missing: shipped, not scanned"),
                     "extra": N_("Extra: scanned, not shipped"),
                     "settled": N_("Changed on the way (left as it is)")}


def may(request: Request, permission: P, site: str | None) -> bool:
    """Whether the signed-in person has ``permission`` at ``site``."""
    caller = gated_caller(request)
    return caller.has(permission) and caller.can(permission, site, tree_for(request))


def gettext(request: Request) -> Callable[..., str]:
    return i18n.gettext_of(pages.language_of(request))


# -- what a domain error says to a person ------------------------------------------------------

def said_of_error(_: Callable[..., str], exc: InventoryError, tag: str | None = None) -> str:
    """The words for a refused scan or step (the domain's English text is only shown as
    a detail beside them, never alone)."""
    text = str(exc)
    if isinstance(exc, NotFoundError) and exc.what == "asset":
        return _("No asset has the tag %(tag)s.", tag=exc.key)
    if isinstance(exc, WrongSiteError):
        return _("This transfer goes to %(site)s: it is received there.", site=exc.expected)
    if isinstance(exc, ConflictError) and tag is not None:
        if "already on open transfer" in text:
            return _("%(tag)s is already on another open transfer.", tag=tag)
        if "cannot be put on a transfer" in text:
            return _("%(tag)s is not available (lent, in repair or away): it cannot be "
                     "shipped.", tag=tag)
        if " is at " in text:
            return _("%(tag)s is not recorded at the lab this transfer leaves from.", tag=tag)
        if "already on the manifest" in text:
            return _("%(tag)s is already on a mobile lab's manifest.", tag=tag)
    if isinstance(exc, InvalidTransitionError):
        return _("This step cannot be taken now: the page shows where things stand.")
    return _("This could not be done.")


def is_stale(exc: InventoryError) -> bool:
    """A write refused because it named an older version than the record's."""
    text = str(exc)
    return isinstance(exc, ConflictError) and ("version" in text or "meanwhile" in text)


def version_of(form: Mapping[str, str]) -> int:
    """The version a form carries (0 for none or garbage: stale by any count)."""
    try:
        return max(0, int(form.get("version", "")))
    except ValueError:
        return 0


# -- the receipt: shipped beside scanned ---------------------------------------------------------

@dataclass(frozen=True)
class Receipt:
    """A shipped transfer's items against what was scanned: what a receiver confirms."""

    shipped: tuple[tuple[str, bool], ...]  # (tag, scanned yet)
    missing: tuple[str, ...]  # shipped, not scanned
    extra: tuple[str, ...]  # scanned, not shipped

    @classmethod
    def of(cls, t: domain.Transfer) -> Receipt:
        scanned = set(t.scanned)
        items = set(t.items)
        return cls(tuple((tag, tag in scanned) for tag in t.items),
                   tuple(tag for tag in t.items if tag not in scanned),
                   tuple(tag for tag in t.scanned if tag not in items))


SCAN_ATTEMPTS: Final = 3  # two phones scanning one transfer at once: its version's
# compare-and-set refuses one of them, whose scan then runs again (its key was not kept)


def scan_in_one_transaction(
    hub: Hub, _: Callable[..., str], code: str,
    work: Callable[[Connection], tuple[equipment.Outcome, str]],
) -> tuple[equipment.Outcome, str] | None:
    """``work`` (the scan's receipt and what it does) in one transaction: its outcome, a
    refusal in the person's words, or None when other scans kept winning the race (the
    script keeps the scan and sends it again)."""
    for _attempt in range(SCAN_ATTEMPTS):
        try:
            with hub.engine.begin() as conn:
                return work(conn)
        except InventoryError as exc:
            if isinstance(exc, NotFoundError) and exc.what in ("transfer", "rotation",
                                                                "stop", "site"):
                raise
            if not is_stale(exc):
                return "refused", said_of_error(_, exc, code)
    return None


def busy_answer(request: Request, back: str) -> Response:
    """A scan the hub could not do now: kept by the script and sent again."""
    _ = gettext(request)
    return equipment.scan_answer(request, outcome="warn", back=back, status=503,
                                 said=_("The hub is busy: try again in a few seconds."))


def scan_at_destination(conn: Connection, t: domain.Transfer, scan: Scan, by: str,
                        _: Callable[..., str]) -> tuple[equipment.Outcome, str]:
    """One scan at a shipped transfer's destination, exactly once (in ``conn``'s
    transaction): the outcome and the words to say."""
    if not receipts.first_time(conn=conn, key=scan.key, subject=f"transfer:{t.uuid}",
                               tag=scan.code, by=by):
        return "again", _("%(tag)s was scanned already.", tag=scan.code)
    done = domain.scan_item(conn=conn, transfer_uuid=t.uuid, tag=scan.code,
                            site=t.to_site_code, by=by)
    if not done.new:
        return "again", _("%(tag)s was scanned already.", tag=scan.code)
    if not done.on_transfer:
        return "warn", _("%(tag)s is not on this transfer: it is listed as extra.",
                         tag=scan.code)
    return "ok", _("%(tag)s arrived.", tag=scan.code)


def receive(conn: Connection, t: domain.Transfer, form: Mapping[str, str],
            by: str) -> domain.Transfer:
    """Confirm the receipt of ``t`` with the form's choice for what is missing."""
    given = form.get("missing_as")
    missing_as = cast("domain.MissingAs | None", given if given in domain.MISSING_AS else None)
    return domain.receive_transfer(
        conn=conn, transfer_uuid=t.uuid, site=t.to_site_code, by=by, missing_as=missing_as,
        version=version_of(form), note=form.get("note", "").strip() or None)


# -- the list -----------------------------------------------------------------------------------

@router.get("/transfers", dependencies=[needs(P.INVENTORY_READ)])
def transfers_page(
    request: Request, hub: HubDep,
    site: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[str | None, Query(max_length=16)] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> HTMLResponse:
    """Transfers with an end where the person may read the inventory, newest first;
    ``site`` keeps those with an end at that site or under it, ``status=shipped`` is the
    in-transit list."""
    caller = gated_caller(request)
    scope = scope_of(request, P.INVENTORY_READ)
    site = site or None
    chosen = cast("domain.TransferStatus | None",
                  status if status in domain.TRANSFER_STATUSES else None)
    with hub.engine.connect() as conn:
        places = inventory_sites.list_sites(conn=conn, only=scope)
        sites = scope
        if site is not None:
            inventory_sites.get_site(conn=conn, code=site)  # an unknown site: the 404 page
            under = set(conn.execute(select(subtree(site).c.code)).scalars())
            sites = frozenset(under if scope is None else under & scope)
        total, shown = domain.list_transfers(
            conn=conn, status=chosen, sites=sites,
            limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    def link(**changes: Any) -> str:
        query = {"site": site, "status": chosen, "page": None} | changes
        kept = {k: v for k, v in query.items() if v not in (None, "", 1)}
        return pages.root_of(request) + "/transfers" + ("?" + urlencode(kept) if kept else "")
    return pages.render(
        request, "transfers.html", caller=caller, transfers=shown, total=total,
        first=(page - 1) * PAGE_SIZE + 1, last=(page - 1) * PAGE_SIZE + len(shown),
        previous=link(page=page - 1) if page > 1 else None,
        next=link(page=page + 1) if page * PAGE_SIZE < total else None,
        status_links=[(None, N_("All"), link(status=None))]
        + [(s, words, link(status=s)) for s, words in STATUS_WORDS.items()],
        site=site, chosen=chosen, places=places, status_words=STATUS_WORDS,
        may_draft=caller.has(P.INVENTORY_MANAGE))


# -- drafting ---------------------------------------------------------------------------------

def _lab_sites(hub: Hub, request: Request) -> tuple[list[inventory_sites.Site],
                                                    list[inventory_sites.Site]]:
    """(origins the person may draft from, every lab site as a destination)."""
    with hub.engine.connect() as conn:
        labs = inventory_sites.list_sites(conn=conn, kind="site")
    return [s for s in labs if may(request, P.INVENTORY_MANAGE, s.code)], labs


def _new_page(request: Request, hub: Hub, *, status: int = 200,
              values: Mapping[str, str] | None = None,
              errors: Mapping[str, str] | None = None, detail: str | None = None
              ) -> HTMLResponse:
    origins, labs = _lab_sites(hub, request)
    return pages.render(request, "transfers_new.html", status=status,
                        caller=gated_caller(request), origins=origins, labs=labs,
                        values=values or {}, errors=errors or {}, detail=detail)


@router.get("/transfers/new", dependencies=[needs(P.INVENTORY_MANAGE)])
def new_transfer_page(request: Request, hub: HubDep) -> HTMLResponse:
    """The form to draft a transfer: from a lab the person manages, to another lab."""
    return _new_page(request, hub, values={"from_site": request.query_params.get("from", "")})


@router.post("/transfers", dependencies=[needs(P.INVENTORY_MANAGE, On.ROUTE)])
async def draft_form(request: Request, hub: HubDep) -> Response:
    """Draft the transfer (as ``POST /api/v1/transfers``), then its page to scan items."""
    form = await pages.signed_form(request)
    _ = gettext(request)
    values = {k: form.get(k, "").strip() for k in ("from_site", "to_site", "note")}
    errors: dict[str, str] = {}
    if not values["from_site"]:
        errors["from_site"] = _("Choose the lab it leaves from.")
    if not values["to_site"]:
        errors["to_site"] = _("Choose the lab it goes to.")
    elif values["to_site"] == values["from_site"]:
        errors["to_site"] = _("A transfer goes to another lab: choose a different one.")
    if errors:
        return _new_page(request, hub, status=422, values=values, errors=errors)
    require_at(request, P.INVENTORY_MANAGE, values["from_site"])

    def work() -> domain.Transfer:
        with hub.engine.begin() as conn:
            return domain.draft_transfer(conn=conn, from_site=values["from_site"],
                                         to_site=values["to_site"], by=actor_of(request),
                                         note=values["note"] or None)
    try:
        t = await run_in_threadpool(work)
    except NotFoundError as exc:
        field = "from_site" if exc.key == values["from_site"] else "to_site"
        return _new_page(request, hub, status=422, values=values, detail=str(exc),
                         errors={field: _("There is no lab with the code %(code)s.",
                                          code=exc.key)})
    except InventoryError as exc:
        return _new_page(request, hub, status=422, values=values, detail=str(exc),
                         errors={"to_site": _("Choose a lab site (not a region) it goes to.")})
    return RedirectResponse(f"{pages.root_of(request)}/transfers/{t.uuid}", status_code=303)


# -- one transfer -------------------------------------------------------------------------------

def _one(request: Request, hub: Hub, transfer_id: str, *, status: int = 200,
         template: str = "transfers_one.html", errors: Mapping[str, str] | None = None,
         detail: str | None = None, conflict: bool = False,
         values: Mapping[str, str] | None = None,
         said: tuple[str, str] | None = None) -> HTMLResponse:
    with hub.engine.connect() as conn:
        t = domain.get_transfer(conn=conn, transfer_uuid=transfer_id)
    return pages.render(request, template, status=status, said=said, **transfer_values(
        request, t, errors=errors, detail=detail, conflict=conflict, values=values))


def transfer_values(request: Request, t: domain.Transfer, *,
                    errors: Mapping[str, str] | None = None, detail: str | None = None,
                    conflict: bool = False, values: Mapping[str, str] | None = None
                    ) -> dict[str, Any]:
    """What a transfer's page and its fragment show."""
    root = pages.root_of(request)
    return {
        "caller": gated_caller(request), "t": t, "receipt": Receipt.of(t),
        "may_build": t.status == "draft" and may(request, P.INVENTORY_MANAGE,
                                                 t.from_site_code),
        "may_receive": t.status == "shipped" and may(request, P.INVENTORY_MANAGE,
                                                     t.to_site_code),
        "errors": errors or {}, "detail": detail, "conflict": conflict,
        "values": values or {}, "status_words": STATUS_WORDS, "kind_words": KIND_WORDS,
        "missing_words": MISSING_WORDS,
        "here": f"{root}/transfers/{t.uuid}",
        "receive_action": f"{root}/transfers/{t.uuid}/receive",
        "scan_id": str(uuid.uuid4()),  # the form's key without JavaScript
    }


@router.get("/transfers/{transfer_id}",
            dependencies=[needs(P.INVENTORY_READ, On.path("transfer", "transfer_id"))])
def transfer_page(request: Request, transfer_id: str, hub: HubDep) -> HTMLResponse:
    """A transfer: its manifest (built by scanning while a draft), shipping, and at the
    destination the receipt by scanning with the discrepancies before confirming."""
    said = equipment.said_of(request)
    page = _one(request, hub, transfer_id, said=said)
    if said is not None:
        equipment.forget_said(page)
    return page


async def _scan(request: Request, hub: Hub, transfer_id: str,
                work: Callable[[Connection, domain.Transfer, Scan, str],
                               tuple[equipment.Outcome, str]]) -> Response:
    """Read a scan, do ``work`` in one transaction, answer by the scan contract."""
    _ = gettext(request)
    back = f"/transfers/{transfer_id}"
    try:
        scan = await equipment.scan_fields(request)
    except ScanRefused as refused:
        return equipment.scan_answer(request, outcome="refused", said=refused.said, back=back)
    by = actor_of(request)

    def run(conn: Connection) -> tuple[equipment.Outcome, str]:
        t = domain.get_transfer(conn=conn, transfer_uuid=transfer_id)
        return work(conn, t, scan, by)

    done = await run_in_threadpool(scan_in_one_transaction, hub, _, scan.code, run)
    if done is None:
        return busy_answer(request, back)
    outcome, said = done

    def fragment() -> dict[str, Any]:
        with hub.engine.connect() as conn:
            t = domain.get_transfer(conn=conn, transfer_uuid=transfer_id)
        return transfer_values(request, t)
    values = await run_in_threadpool(fragment)
    del values["caller"]  # scan_answer gives the caller
    return equipment.scan_answer(request, outcome=outcome, said=said, back=back,
                                 template="transfers_work.html", **values)


def _add_scanned(conn: Connection, t: domain.Transfer, scan: Scan, by: str,
                 _: Callable[..., str]) -> tuple[equipment.Outcome, str]:
    if not receipts.first_time(conn=conn, key=scan.key, subject=f"transfer:{t.uuid}",
                               tag=scan.code, by=by):
        return "again", _("%(tag)s is on the transfer.", tag=scan.code)
    if scan.code in t.items:
        return "again", _("%(tag)s is on the transfer already.", tag=scan.code)
    after = domain.add_items(conn=conn, transfer_uuid=t.uuid, tags=[scan.code], by=by)
    return "ok", _("%(tag)s added: %(count)s on the transfer.", tag=scan.code,
                   count=len(after.items))


@router.post("/transfers/{transfer_id}/items",
             dependencies=[needs(P.INVENTORY_MANAGE, On.path("transfer", "transfer_id"))])
async def add_item_scan(request: Request, transfer_id: str, hub: HubDep) -> Response:
    """A scan at the origin puts the asset on the draft (``add_items``), once per key."""
    _ = gettext(request)
    return await _scan(request, hub, transfer_id,
                       lambda conn, t, scan, by: _add_scanned(conn, t, scan, by, _))


@router.post("/transfers/{transfer_id}/scans",
             dependencies=[needs(P.INVENTORY_MANAGE, On.path("transfer_to", "transfer_id"))])
async def receive_scan(request: Request, transfer_id: str, hub: HubDep) -> Response:
    """A scan at the destination (``scan_item``), once per key."""
    _ = gettext(request)
    return await _scan(request, hub, transfer_id,
                       lambda conn, t, scan, by: scan_at_destination(conn, t, scan, by, _))


async def _step(request: Request, hub: Hub, transfer_id: str,
                work: Callable[[Connection, domain.Transfer, Mapping[str, str], str], None],
                check: Callable[[Mapping[str, str]], dict[str, str]] | None = None
                ) -> Response:
    """A form's step on the transfer in one transaction; 303 back, or the page with the
    error beside its field (422), or 409 for a stale version."""
    form = await pages.signed_form(request)
    _ = gettext(request)
    errors = await run_in_threadpool(check, form) if check else {}
    if errors:
        return await run_in_threadpool(lambda: _one(request, hub, transfer_id, status=422,
                                                    errors=errors, values=form))
    by = actor_of(request)

    def run() -> Response:
        try:
            with hub.engine.begin() as conn:
                t = domain.get_transfer(conn=conn, transfer_uuid=transfer_id)
                work(conn, t, form, by)
        except InventoryError as exc:
            if isinstance(exc, NotFoundError) and exc.what == "transfer":
                raise
            if is_stale(exc):
                return _one(request, hub, transfer_id, status=409, conflict=True)
            return _one(request, hub, transfer_id, status=422, values=form,
                        errors={"step": said_of_error(_, exc, form.get("tag"))},
                        detail=str(exc))
        return RedirectResponse(f"{pages.root_of(request)}/transfers/{transfer_id}",
                                status_code=303)
    return await run_in_threadpool(run)


@router.post("/transfers/{transfer_id}/remove",
             dependencies=[needs(P.INVENTORY_MANAGE, On.path("transfer", "transfer_id"))])
async def remove_form(request: Request, transfer_id: str, hub: HubDep) -> Response:
    """Take an asset off the draft (``remove_item``)."""
    def work(conn: Connection, t: domain.Transfer, form: Mapping[str, str], by: str) -> None:
        domain.remove_item(conn=conn, transfer_uuid=t.uuid, tag=form.get("tag", ""), by=by,
                           version=version_of(form))
    return await _step(request, hub, transfer_id, work)


@router.post("/transfers/{transfer_id}/ship",
             dependencies=[needs(P.INVENTORY_MANAGE, On.path("transfer", "transfer_id"))])
async def ship_form(request: Request, transfer_id: str, hub: HubDep) -> Response:
    """Ship the draft (``ship_transfer``): who carries it, and a note."""
    _ = gettext(request)

    def check(form: Mapping[str, str]) -> dict[str, str]:
        carrier = form.get("carrier", "").strip()
        if not carrier:
            return {"carrier": _("Write who carries the transfer.")}
        if len(carrier) > 100:
            return {"carrier": _("At most 100 letters.")}
        return {}

    def work(conn: Connection, t: domain.Transfer, form: Mapping[str, str], by: str) -> None:
        domain.ship_transfer(conn=conn, transfer_uuid=t.uuid,
                             carrier=form.get("carrier", "").strip(), by=by,
                             version=version_of(form), note=form.get("note", "").strip() or None)
    return await _step(request, hub, transfer_id, work, check)


def missing_choice_error(_: Callable[..., str], receipt: Receipt,
                         form: Mapping[str, str]) -> dict[str, str]:
    """A receipt with missing items needs the receiver's choice of what they become."""
    if receipt.missing and form.get("missing_as") not in domain.MISSING_AS:
        return {"missing_as": _("Say what the missing items become.")}
    return {}


@router.post("/transfers/{transfer_id}/receive",
             dependencies=[needs(P.INVENTORY_MANAGE, On.path("transfer_to", "transfer_id"))])
async def receive_form(request: Request, transfer_id: str, hub: HubDep) -> Response:
    """Confirm the receipt (``receive_transfer``): scanned items arrive, the missing ones
    become what the receiver chose, the extra ones are recorded."""
    _ = gettext(request)

    def check(form: Mapping[str, str]) -> dict[str, str]:
        with hub.engine.connect() as conn:
            t = domain.get_transfer(conn=conn, transfer_uuid=transfer_id)
        if t.status != "shipped":
            return {}
        return missing_choice_error(_, Receipt.of(t), form)

    def work(conn: Connection, t: domain.Transfer, form: Mapping[str, str], by: str) -> None:
        receive(conn, t, form, by)
    return await _step(request, hub, transfer_id, work, check)
