"""The site tree (network, region, municipality, lab; tier, rural, rollout) and each site's
page with its counts: ``/sites``, ``/sites/{code}``, ``POST /sites/{code}/rollout``.

``/sites`` draws the tree of the sites where the person may read the inventory (a site
whose parent they may not see starts a tree of its own), each lab with its tier, rural or
urban and rollout status in words. A lab's page shows its counts
(:func:`inventory.sites.site_counts`: assets by status, kits, open and overdue loans, open
transfers in and out, the last audit and what it found) with links to the assets, loans,
transfers and audits pages filtered for the lab (``?site=CODE``). The page of a network,
region or municipality lists the labs under it with the same counts in one table, a page
of :data:`LABS_PER_PAGE` labs at a time, counted in a few grouped queries whatever the
number of labs. Someone who may change a lab's rollout (``rollout.write``: the ministry)
does it on the lab's page; the form carries the site's version, so a form drawn before
another person's change is a 409 page instead of a silent overwrite, and the change is
the API's own (:func:`inventory.sites.set_rollout_status`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Final
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse

from inventory import sites
from inventory.errors import InvalidTransitionError, InvalidValueError, StaleVersionError
from inventory.sites import Site
from inventory.values import check_note
from labhub.access.gate import On, gated_caller, needs, scope_of
from labhub.access.permissions import Permission as P
from labhub.access.sites import tree_for
from labhub.api.common import actor_of
from labhub.api.deps import HubDep
from labhub.web import i18n, pages
from labhub.web.i18n import N_
from labhub.web.pages import PageRoute
from labhub.wiring import Hub

router = APIRouter(route_class=PageRoute, include_in_schema=False)

LABS_PER_PAGE: Final = 100  # rows of a region's table of labs: a long scroll, one page
PAGE_MAX: Final = 10_000  # a page number beyond any network's labs
KINDS: Final = {"network": N_("Network"), "region": N_("Region"),
                "municipality": N_("Municipality"), "site": N_("Lab")}
TIERS: Final = {"lab_center": N_("Lab Center"), "lab_point": N_("Lab Point"),
                "lab_spark": N_("Lab Spark"), "mobile_lab": N_("Mobile lab")}
ROLLOUT: Final = {"planned": N_("In planning"), "installing": N_("Installing"),
                  "active": N_("Active"), "paused": N_("Paused"), "closed": N_("Closed")}
# A shape beside each rollout status, so it is never told by colour alone.
ROLLOUT_ICONS: Final = {"planned": "○", "installing": "◐", "active": "●", "paused": "‖",
                        "closed": "×"}
STATUSES: Final = {"available": N_("Available assets"), "on_loan": N_("Assets on loan"),
                   "in_transit": N_("Assets in transit"), "in_repair": N_("Assets in repair"),
                   "lost": N_("Lost assets"), "retired": N_("Retired assets")}
FINDINGS: Final = {"found": N_("Found"), "missing": N_("Missing from the shelves"),
                   "unexpected": N_("From another lab"), "unknown": N_("Not in the inventory")}
SAVED: Final = {"rollout": N_("The rollout status was changed.")}


@dataclass
class Node:
    """A site of the tree as ``/sites`` draws it, with the visible sites under it."""

    site: Site
    children: list[Node] = field(default_factory=list)


def _forest(shown: list[Site]) -> list[Node]:
    """The sites as trees: a site whose parent is not shown starts a tree of its own."""
    nodes = {s.code: Node(s) for s in shown}
    roots: list[Node] = []
    for site in shown:  # by code, so children come in code order
        parent = nodes.get(site.parent_code or "")
        (parent.children if parent is not None else roots).append(nodes[site.code])
    return roots


def site_href(request: Request, code: str) -> str:
    """The path of a site's page (a code may hold ``/``)."""
    return pages.root_of(request) + "/sites/" + quote(code, safe="/")


def filtered(request: Request, page: str, code: str) -> str:
    """A link to another equipment page filtered for a site (``/assets?site=CODE``)."""
    return pages.root_of(request) + page + "?" + urlencode({"site": code})


def _words(_: Callable[..., str]) -> dict[str, Any]:
    return {"kind_names": {k: _(v) for k, v in KINDS.items()},
            "tier_names": {k: _(v) for k, v in TIERS.items()},
            "rollout_names": {k: _(v) for k, v in ROLLOUT.items()},
            "rollout_icons": ROLLOUT_ICONS,
            "status_names": {k: _(v) for k, v in STATUSES.items()},
            "finding_names": {k: _(v) for k, v in FINDINGS.items()}}


@router.get("/sites", dependencies=[needs(P.INVENTORY_READ)])
def sites_page(request: Request, hub: HubDep) -> HTMLResponse:
    """The tree of the sites where the person may read the inventory."""
    caller = gated_caller(request)
    with hub.engine.connect() as conn:
        shown = sites.list_sites(conn=conn, only=scope_of(request, P.INVENTORY_READ))
    _ = i18n.gettext_of(pages.language_of(request))
    return pages.render(request, "sites.html", caller=caller, forest=_forest(shown),
                        labs=sum(1 for s in shown if s.kind == "site"),
                        href=lambda code: site_href(request, code), **_words(_))


@dataclass
class RolloutForm:
    """The rollout form as posted: its values and the errors by field."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    stale: bool = False


def _site_page(request: Request, hub: Hub, code: str, *, page: int = 1,
               form: RolloutForm | None = None, status: int = 200) -> HTMLResponse:
    caller = gated_caller(request)
    scope = scope_of(request, P.INVENTORY_READ)
    lang = pages.language_of(request)
    _ = i18n.gettext_of(lang)
    tree = tree_for(request)
    with hub.engine.connect() as conn:
        site = sites.get_site(conn=conn, code=code)
        if site.kind == "site":
            labs, total = [site], 1
            children: list[Site] = []
        else:
            under = sites.list_sites(conn=conn, under=code, only=scope)
            children = [s for s in under if s.parent_code == code and s.kind != "site"]
            every = [s for s in under if s.kind == "site"]
            total = len(every)
            labs = every[(page - 1) * LABS_PER_PAGE:page * LABS_PER_PAGE]
        counts = sites.site_counts(conn=conn, codes=[s.code for s in labs])
        above = [c for c in reversed(tree.ancestors(code)[1:])
                 if scope is None or c in scope]
        names = {s.code: s.name for s in sites.list_sites(conn=conn, only=above)}
    may_rollout = (site.kind == "site" and site.retired_at is None
                   and caller.can(P.ROLLOUT_WRITE, code, tree))
    if form is None:
        form = RolloutForm({"status": "", "note": ""})
    if not form.values.get("status"):
        form.values["status"] = site.rollout_status or ""
    pages_total = max(1, -(-total // LABS_PER_PAGE))
    saved = SAVED.get(request.query_params.get("saved", ""))

    def page_link(number: int) -> str:
        return site_href(request, code) + "?" + urlencode({"page": number})

    return pages.render(
        request, "sites_one.html", status=status, caller=caller, site=site,
        above=[(c, names.get(c, c)) for c in above],
        children=children, labs=labs, total=total, counts=counts, page=page,
        pages_total=pages_total, page_link=page_link, may_rollout=may_rollout, form=form,
        statuses=sites.ROLLOUT_STATUSES, saved=_(saved) if saved else None,
        href=lambda c: site_href(request, c), filtered=lambda p, c: filtered(request, p, c),
        **_words(_))


@router.get("/sites/{code:path}",
            dependencies=[needs(P.INVENTORY_READ, On.path("site", "code"))])
def site_page(request: Request, code: str, hub: HubDep,
              page: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 1) -> HTMLResponse:
    """A lab: its facts and counts, with links to its assets, loans, transfers and audits.
    A network, region or municipality: the sites under it and a table of its labs' counts."""
    return _site_page(request, hub, code, page=page)


def _rollout_errors(_: Callable[..., str], exc: Exception, form: RolloutForm) -> None:
    """A refused change in words beside its field (the domain's English as detail)."""
    text = str(exc)
    if isinstance(exc, InvalidTransitionError) and "closed" in text and "already" not in text:
        form.errors["status"] = _("A closed lab stays closed: its rollout cannot change.")
    elif isinstance(exc, InvalidTransitionError):
        form.errors["status"] = _("The lab is already at this status: choose another.")
    elif "note" in text:
        form.errors["note"] = _("The note is too long or holds characters that cannot be "
                                "shown (%(detail)s).", detail=text)
    else:
        form.errors["status"] = _("Check this value: %(detail)s", detail=text)


@router.post("/sites/{code:path}/rollout",
             dependencies=[needs(P.ROLLOUT_WRITE, On.path("site", "code"))])
async def rollout_form(request: Request, code: str, hub: HubDep) -> Response:
    """Change a lab's rollout status (the API's ``POST /sites/{code}/rollout``), if the
    form's version is still the site's."""
    fields = await pages.signed_form(request)
    _ = i18n.gettext_of(pages.language_of(request))
    form = RolloutForm({"status": fields.get("status", ""), "note": fields.get("note", "")})
    status = form.values["status"]
    if status not in sites.ROLLOUT_STATUSES:
        form.errors["status"] = _("Choose a status of the list.")
    try:
        version: int | None = int(fields.get("version", ""))
    except ValueError:
        version = None

    kind: list[str] = []

    def change() -> None:
        with hub.engine.begin() as conn:
            site = sites.get_site(conn=conn, code=code)
            kind.append(site.kind)
            sites.check_site_version(site, -1 if version is None else version)
            note = check_note(form.values["note"])  # the API's bound on a note, too
            sites.set_rollout_status(conn=conn, code=code, status=status,  # type: ignore[arg-type]
                                     by=actor_of(request), note=note)

    try:
        if not form.errors:
            await run_in_threadpool(change)
    except StaleVersionError:
        stale = RolloutForm({"status": "", "note": form.values["note"]}, stale=True)
        return await run_in_threadpool(_site_page, request, hub, code, form=stale, status=409)
    except (InvalidTransitionError, InvalidValueError) as exc:
        if kind != ["site"]:
            raise  # a network, region or municipality has no rollout (and no form): 422
        _rollout_errors(_, exc, form)
    if form.errors:
        return await run_in_threadpool(_site_page, request, hub, code, form=form, status=422)
    return RedirectResponse(site_href(request, code) + "?saved=rollout", status_code=303)
