"""Audits: a scan session on a phone (found, missing and unexpected grow as you scan), the
report, the corrections: ``/audits``.

``/audits`` lists the audits the person may see (``?site=`` a site and its subtree, as the
API's ``GET /audits``), open and finished, and starts one at a lab site
(:func:`inventory.audits.start_audit`, as ``POST /api/v1/audits``). ``/audits/{id}`` is
the scan session while the audit is open: the scan form of ``_scan.html`` posts each scan
to ``/audits/{id}/scans``, which records the scan's key
(:func:`inventory.receipts.first_time`) and the tag
(:func:`inventory.audits.scan_tag`) in one transaction and answers the three lists as a
fragment (the scan contract of :mod:`labhub.web.equipment`). The lists of an open audit
are drawn from the audit's scans (read fresh for each answer) and the site's assets
(:func:`inventory.assets.list_assets`; read when the page loads, then kept for the scans
of the next half minute: :class:`SiteViews`), with the domain's own idea of what should be
on the shelf (:data:`inventory.audits.EXPECTED_ON_SHELF`); finishing freezes the domain's report,
which the same page shows after. The corrections are shown before they are applied: the
confirmation page runs :func:`inventory.audits.apply_corrections` in a transaction that
it rolls back, so it lists exactly what the domain would change, and the form below it
applies them for real, guarded by the audit's version.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import Connection

from inventory import assets, catalog, receipts
from inventory import audits as inventory_audits
from inventory import sites as inventory_sites
from inventory.assets import Asset
from inventory.audits import Audit, AuditReport
from inventory.errors import (
    ConflictError,
    InvalidTransitionError,
    InvalidValueError,
    NotFoundError,
)
from inventory.values import check_key
from labhub.access.caller import Caller
from labhub.access.gate import On, gated_caller, needs, require_at, scope_of
from labhub.access.permissions import Permission as P
from labhub.access.sites import tree_for
from labhub.api.common import actor_of
from labhub.api.deps import HubDep
from labhub.web import equipment, i18n, pages
from labhub.web.i18n import N_
from labhub.web.pages import PageRoute
from labhub.wiring import Hub

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PER_PAGE: Final = 20  # audits on one page of the list: a phone's few screens
LIST_SHOWN: Final = 100  # tags shown in each of a session's lists; the report has them all
VIEW_TTL_S: Final = 30.0  # a site's assets, read once, serve the scans of this long
PAGE_MAX: Final = 100_000  # an offset beyond any network's audits
STATUS_WORDS: Final = {"open": N_("Open: scanning"), "finished": N_("Finished"),
                       "applied": N_("Corrections applied")}
# An asset's recorded status in an audit's lists (the domain's statuses).
RECORDED_WORDS: Final = {"available": N_("recorded as available"),
                         "on_loan": N_("recorded as on loan"),
                         "in_transit": N_("recorded as in transit"),
                         "in_repair": N_("recorded as in repair"),
                         "lost": N_("recorded as lost"),
                         "retired": N_("recorded as retired")}

AuditGate = needs(P.INVENTORY_READ, On.path("audit", "audit_id"))
AuditWrite = needs(P.INVENTORY_MANAGE, On.path("audit", "audit_id"))


def _may_manage(request: Request, caller: Caller, site: str) -> bool:
    return caller.can(P.INVENTORY_MANAGE, site, tree_for(request))


def _gettext(request: Request) -> Callable[..., str]:
    return i18n.gettext_of(pages.language_of(request))


# -- the list, and starting an audit -------------------------------------------------------

def _lab_sites(conn: Connection, request: Request) -> list[inventory_sites.Site]:
    """The lab sites where the caller may start an audit."""
    caller = gated_caller(request)
    if not caller.has(P.INVENTORY_MANAGE):
        return []
    return [s for s in inventory_sites.list_sites(conn=conn, kind="site")
            if _may_manage(request, caller, s.code)]


def _list_page(request: Request, hub: Hub, *, site: str | None, status: str | None,
               offset: int, code: int = 200, errors: Mapping[str, str] | None = None,
               chosen: str | None = None) -> HTMLResponse:
    caller = gated_caller(request)
    with hub.engine.connect() as conn:
        total, items = inventory_audits.list_audits(
            conn=conn, site_under=site, status=status,  # type: ignore[arg-type]
            limit=PER_PAGE, offset=offset, sites=scope_of(request, P.INVENTORY_READ))
        startable = _lab_sites(conn, request)
    here = pages.root_of(request) + "/audits"

    def page_link(at: int) -> str:
        kept = {k: v for k, v in (("site", site), ("status", status)) if v}
        return here + "?" + urlencode({**kept, "offset": at})

    return pages.render(
        request, "audits.html", status=code, caller=caller, items=items, total=total,
        offset=offset, per_page=PER_PAGE, site=site, status_filter=status,
        status_words=STATUS_WORDS, startable=startable, errors=errors or {},
        chosen=chosen or site or "",
        previous=page_link(max(0, offset - PER_PAGE)) if offset > 0 else None,
        next=page_link(offset + PER_PAGE) if offset + PER_PAGE < total else None)


@router.get("/audits", dependencies=[needs(P.INVENTORY_READ)])
def audits_page(
    request: Request, hub: HubDep,
    site: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[str | None, Query(pattern="^(open|finished|applied)$")] = None,
    offset: Annotated[int, Query(ge=0, le=PAGE_MAX)] = 0,
) -> HTMLResponse:
    """The audits the person may see, newest first: open ones to go on scanning, finished
    ones with their report."""
    if site is not None:
        site = check_key(site.strip(), what="site code") if site.strip() else None
    return _list_page(request, hub, site=site, status=status, offset=offset)


@router.post("/audits", dependencies=[needs(P.INVENTORY_MANAGE, On.ROUTE)])
async def start_form(request: Request, hub: HubDep) -> Response:
    """Start an audit at a lab site (as ``POST /api/v1/audits``), then go to its scans."""
    form = await pages.signed_form(request)

    def work() -> Response:
        _ = _gettext(request)
        site = form.get("site", "").strip()
        if not site:
            return _list_page(request, hub, site=None, status=None, offset=0, code=422,
                              errors={"site": _("Choose the lab site to audit.")})
        try:
            site = check_key(site, what="site code")
        except InvalidValueError:
            return _list_page(request, hub, site=None, status=None, offset=0, code=422,
                              errors={"site": _("Choose the lab site to audit.")})
        require_at(request, P.INVENTORY_MANAGE, site)
        try:
            with hub.engine.begin() as conn:
                audit = inventory_audits.start_audit(conn=conn, site=site,
                                                     by=actor_of(request))
        except NotFoundError:
            return _list_page(request, hub, site=None, status=None, offset=0, code=422,
                              errors={"site": _("There is no site %(site)s.", site=site)})
        except InvalidValueError:
            return _list_page(request, hub, site=None, status=None, offset=0, code=422,
                              errors={"site": _("An audit is done at a lab site, and "
                                                "%(site)s is not one.", site=site)},
                              chosen=site)
        except ConflictError:
            return _list_page(request, hub, site=None, status=None, offset=0, code=409,
                              errors={"site": _("%(site)s already has an open audit: go on "
                                                "with it, or finish it first.", site=site)},
                              chosen=site)
        return RedirectResponse(f"{pages.root_of(request)}/audits/{audit.uuid}",
                                status_code=303)

    return await run_in_threadpool(work)


# -- the scan session ------------------------------------------------------------------------

@dataclass(frozen=True)
class Line:
    """A tag in one of a session's lists, with what the records say of it."""

    tag: str
    model: str | None
    site: str | None  # where it is recorded (None: no asset has the tag)
    status: str | None


@dataclass(frozen=True)
class Lists:
    """An open audit's lists as they stand: what was scanned and belongs here (found),
    what should be on the shelf and was not scanned yet (missing), what was scanned and is
    recorded elsewhere or nowhere (unexpected)."""

    audit: Audit
    found: list[Line]
    missing: list[Line]
    unexpected: list[Line]


def _site_assets(conn: Connection, site: str) -> dict[str, Asset]:
    """Every asset recorded at ``site``, by tag (paged as the domain's list allows)."""
    found: dict[str, Asset] = {}
    offset = 0
    while True:
        total, page = assets.list_assets(conn=conn, site_under=site, limit=assets.MAX_LIMIT,
                                         offset=offset)
        found.update((a.tag, a) for a in page)
        offset += assets.MAX_LIMIT
        if not page or offset >= total:
            return found


@dataclass
class _View:
    """What the records said of an audit's site when it was read (a monotonic time)."""

    read_at: float
    here: dict[str, Asset]
    elsewhere: dict[str, Asset | None]  # scanned tags not recorded at the site


class SiteViews:
    """The assets of each open audit's site, read once and kept for ``VIEW_TTL_S``: a scan
    answers with its lists without reading a site's thousands of assets again. The audit's
    own scans are always read fresh (a scan shows at once); a change someone else makes to
    the site's assets meanwhile shows within ``VIEW_TTL_S``, or when the page is reloaded
    (a page load reads the site again). The report (``finish_audit``) never uses it."""

    def __init__(self) -> None:
        self._views: dict[str, _View] = {}
        self._lock = threading.Lock()

    def lists(self, conn: Connection, audit_uuid: str, *, fresh: bool) -> Lists:
        """The open audit's three lists, from its scans and the site's assets."""
        audit = inventory_audits.get_audit(conn=conn, audit_uuid=audit_uuid)
        now = time.monotonic()
        with self._lock:
            view = self._views.get(audit.uuid)
        if fresh or view is None or now - view.read_at > VIEW_TTL_S:
            view = _View(now, _site_assets(conn, audit.site_code), {})
        for tag in audit.scanned:
            if tag not in view.here and tag not in view.elsewhere:
                view.elsewhere[tag] = assets.find_asset(conn=conn, tag=tag)
        with self._lock:
            self._views[audit.uuid] = view
            for stale in [k for k, v in self._views.items() if now - v.read_at > VIEW_TTL_S]:
                del self._views[stale]
        return _lists(audit, view)


def _lists(audit: Audit, view: _View) -> Lists:
    scanned = set(audit.scanned)
    found: list[Line] = []
    unexpected: list[Line] = []
    for tag in audit.scanned:
        asset = view.here.get(tag) or view.elsewhere.get(tag)
        line = Line(tag, None, None, None) if asset is None else Line(
            tag, asset.model_code, asset.site_code, asset.status)
        (found if asset is not None and asset.site_code == audit.site_code
         else unexpected).append(line)
    missing = [Line(a.tag, a.model_code, a.site_code, a.status) for a in view.here.values()
               if a.status in inventory_audits.EXPECTED_ON_SHELF and a.tag not in scanned]
    return Lists(audit, found, missing, unexpected)


def site_views(request: Request) -> SiteViews:
    """This hub's :class:`SiteViews` (one per app: each test's hub has its own)."""
    views: SiteViews | None = getattr(request.app.state, "audit_site_views", None)
    if views is None:
        views = request.app.state.audit_site_views = SiteViews()
    return views


def _session_values(request: Request, conn: Connection, audit_uuid: str,
                    last: str | None = None, *, fresh: bool) -> dict[str, Any]:
    lists = site_views(request).lists(conn, audit_uuid, fresh=fresh)
    caller = gated_caller(request)
    return {"audit": lists.audit, "lists": lists, "last": last, "shown": LIST_SHOWN,
            "recorded_words": RECORDED_WORDS,
            "may_manage": _may_manage(request, caller, lists.audit.site_code)}


def _counted_models(conn: Connection) -> list[catalog.Model]:
    return [m for m in catalog.list_models(conn=conn) if m.tracking == "counted"]


def _session_page(request: Request, conn: Connection, audit: Audit, *, code: int = 200,
                  errors: Mapping[str, str] | None = None,
                  values: Mapping[str, str] | None = None) -> HTMLResponse:
    units = {m.code: m for m in _counted_models(conn)}
    said = equipment.said_of(request)
    counted = request.query_params.get("counted")
    page = pages.render(
        request, "audits_session.html", status=code, caller=gated_caller(request),
        models=list(units.values()), units=units, errors=errors or {}, values=values or {},
        said=said, scan_id=str(uuid.uuid4()),
        counted=counted if counted in dict(audit.counts) else None,
        **_session_values(request, conn, audit.uuid, fresh=True))
    return equipment.forget_said(page) if said else page  # type: ignore[return-value]


def _report_page(request: Request, conn: Connection, audit: Audit) -> HTMLResponse:
    report = inventory_audits.get_report(conn=conn, audit_uuid=audit.uuid)
    caller = gated_caller(request)
    return pages.render(request, "audits_report.html", caller=caller, audit=report.audit,
                        report=report, recorded_words=RECORDED_WORDS,
                        status_words=STATUS_WORDS,
                        may_manage=_may_manage(request, caller, audit.site_code))


@router.get("/audits/{audit_id}", dependencies=[AuditGate])
def audit_page(request: Request, audit_id: str, hub: HubDep) -> HTMLResponse:
    """An open audit: the scan session; a finished one: its report."""
    with hub.engine.connect() as conn:
        audit = inventory_audits.get_audit(conn=conn, audit_uuid=audit_id)
        if audit.status == "open":
            return _session_page(request, conn, audit)
        return _report_page(request, conn, audit)


@router.post("/audits/{audit_id}/scans", dependencies=[AuditWrite])
async def scan_form(request: Request, audit_id: str, hub: HubDep) -> Response:
    """One scan of the session: recorded once (its key), answered with the lists."""
    back = f"/audits/{audit_id}"
    try:
        scan = await equipment.scan_fields(request)
    except equipment.ScanRefused as refused:
        return equipment.scan_answer(request, outcome="refused", said=refused.said, back=back)

    def work() -> Response:
        _ = _gettext(request)
        by = actor_of(request)
        try:
            with hub.engine.begin() as conn:
                audit = inventory_audits.get_audit(conn=conn, audit_uuid=audit_id)
                if audit.status != "open":
                    return equipment.scan_answer(
                        request, outcome="refused", back=back,
                        said=_("This audit is closed: scans are no longer taken."))
                subject = f"audit:{audit.uuid}"
                new = receipts.first_time(conn=conn, key=scan.key, subject=subject,
                                          tag=scan.code, by=by)
                done = None
                if new:
                    done = inventory_audits.scan_tag(conn=conn, audit_uuid=audit.uuid,
                                                     tag=scan.code, by=by)
        except NotFoundError:
            return equipment.scan_answer(request, outcome="refused", back="/audits",
                                         said=_("This audit is not on this hub."))
        except InvalidTransitionError:  # finished since the status was read
            return equipment.scan_answer(
                request, outcome="refused", back=back,
                said=_("This audit is closed: scans are no longer taken."))
        with hub.engine.connect() as conn:  # the lists, read after the scan's transaction
            values = _session_values(request, conn, audit_id, last=scan.code, fresh=False)
        outcome, said = _scan_words(_, values, scan.code, done)
        return equipment.scan_answer(request, outcome=outcome, said=said, back=back,
                                     template="audits_lists.html", **values)

    return await run_in_threadpool(work)


def _scan_words(_: Callable[..., str], values: Mapping[str, Any], tag: str,
                done: inventory_audits.AuditScan | None) -> tuple[equipment.Outcome, str]:
    """What a scan did, in words: found here, recorded elsewhere, unknown, or already."""
    if done is None:
        return "again", _("%(tag)s: this scan had arrived already.", tag=tag)
    if not done.new:
        return "again", _("%(tag)s was scanned already in this audit.", tag=tag)
    if done.recorded_site_code is None:
        return "warn", _("%(tag)s: no asset has this tag. It is listed as unexpected.",
                         tag=tag)
    if done.recorded_site_code != done.site_code:
        return "warn", _("%(tag)s is recorded at %(site)s: listed as unexpected.", tag=tag,
                         site=done.recorded_site_code)
    return "ok", _("%(tag)s found.", tag=tag)


@router.post("/audits/{audit_id}/counts", dependencies=[AuditWrite])
async def count_form(request: Request, audit_id: str, hub: HubDep) -> Response:
    """The counted quantity of a counted model (a recount replaces it)."""
    form = await pages.signed_form(request)

    def work() -> Response:
        _ = _gettext(request)
        model = form.get("model", "").strip()
        text = form.get("quantity", "").strip()
        values = {"model": model, "quantity": text}
        errors: dict[str, str] = {}
        quantity = -1
        if not model:
            errors["model"] = _("Choose what you counted.")
        try:
            quantity = int(text)
        except ValueError:
            errors["quantity"] = _("Write a whole number, such as 12.")
        else:
            if not 0 <= quantity <= inventory_audits.COUNT_MAX:
                errors["quantity"] = _("Write a whole number from 0 to %(max)s.", max=i18n.Formats(
                    pages.language_of(request), "UTC").number(inventory_audits.COUNT_MAX))
        if not errors:
            try:
                with hub.engine.begin() as conn:
                    inventory_audits.record_count(conn=conn, audit_uuid=audit_id,
                                                  model_code=model, quantity=quantity,
                                                  by=actor_of(request))
            except NotFoundError as error:
                if error.what == "audit":
                    raise
                errors["model"] = _("There is no model %(model)s.", model=model)
            except InvalidValueError as error:
                if "tracked as tagged" in str(error):
                    errors["model"] = _("%(model)s is tracked by tag: scan each one instead "
                                        "of counting.", model=model)
                else:
                    errors["model"] = _("Choose what you counted.")
        if errors:
            with hub.engine.connect() as conn:
                audit = inventory_audits.get_audit(conn=conn, audit_uuid=audit_id)
                if audit.status != "open":
                    raise InvalidTransitionError("the audit is closed")
                return _session_page(request, conn, audit, code=422, errors=errors,
                                     values=values)
        return RedirectResponse(f"{pages.root_of(request)}/audits/{audit_id}?" + urlencode(
            {"counted": model}) + "#counts", status_code=303)

    return await run_in_threadpool(work)


def _version(form: Mapping[str, str]) -> int | None:
    try:
        version = int(form.get("version", ""))
    except ValueError:
        return None
    return version if version >= 1 else None


@router.post("/audits/{audit_id}/finish", dependencies=[AuditWrite])
async def finish_form(request: Request, audit_id: str, hub: HubDep) -> Response:
    """Close the scanning and freeze the report (the version the page was drawn at)."""
    form = await pages.signed_form(request)

    def work() -> Response:
        with hub.engine.begin() as conn:
            inventory_audits.finish_audit(conn=conn, audit_uuid=audit_id, by=actor_of(request),
                                          version=_version(form))
        return RedirectResponse(f"{pages.root_of(request)}/audits/{audit_id}",
                                status_code=303)

    return await run_in_threadpool(work)


# -- the corrections -----------------------------------------------------------------------

def planned_corrections(conn: Connection, audit_uuid: str, by: str) -> AuditReport:
    """The report as :func:`inventory.audits.apply_corrections` would leave it, without
    applying anything: applied in a transaction that is rolled back. A finding or count
    with ``corrected_at`` set is one that applying would change."""
    try:
        return inventory_audits.apply_corrections(conn=conn, audit_uuid=audit_uuid, by=by)
    finally:
        conn.rollback()


@router.get("/audits/{audit_id}/corrections", dependencies=[AuditWrite])
def corrections_page(request: Request, audit_id: str, hub: HubDep) -> HTMLResponse:
    """What applying the audit's corrections will change, and the form that applies them."""
    with hub.engine.connect() as conn:
        audit = inventory_audits.get_audit(conn=conn, audit_uuid=audit_id)
        if audit.status != "finished":
            raise InvalidTransitionError(f"audit {audit.uuid} is {audit.status}")
        planned = planned_corrections(conn, audit.uuid, actor_of(request))
    changes = [f for f in (*planned.found, *planned.missing, *planned.unexpected)
               if f.corrected_at is not None]
    recounts = [c for c in planned.counts if c.corrected_at is not None]
    return pages.render(request, "audits_corrections.html", caller=gated_caller(request),
                        audit=audit, changes=changes, recounts=recounts,
                        recorded_words=RECORDED_WORDS)


@router.post("/audits/{audit_id}/corrections", dependencies=[AuditWrite])
async def corrections_form(request: Request, audit_id: str, hub: HubDep) -> Response:
    """Apply the corrections the confirmation page listed (at the version it showed)."""
    form = await pages.signed_form(request)

    def work() -> Response:
        with hub.engine.begin() as conn:
            inventory_audits.apply_corrections(conn=conn, audit_uuid=audit_id,
                                               by=actor_of(request), version=_version(form))
        return RedirectResponse(f"{pages.root_of(request)}/audits/{audit_id}",
                                status_code=303)

    return await run_in_threadpool(work)
