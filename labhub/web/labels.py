"""QR label sheets for chosen assets and kits (A4, and a small label printer's format),
previewed in the page: ``/labels``.

A person chooses the labels on one GET form, so the page works without JavaScript and a
sheet is a link: by site, model and a search (a paged list with a checkbox each, the page's
buttons carrying the boxes ticked so far), by tags typed or scanned one per line (a USB
scanner types each tag and Enter into the box), or every asset that matches the filters.
The sheet is previewed as an image of its SVG page (``/labels/sheet.svg``), and "Print"
opens the PDF (``/labels/sheet.pdf``); both are drawn by :mod:`inventory.labels`, whose QR
codes hold the tag as plain text, nothing else, so the scan pages read a printed label
back. The rules are the API's (``/api/v1/labels.pdf``): only assets at sites where the
person may read the inventory, lost and in-transit ones left out unless asked for
(:func:`inventory.labels.select_labels`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Final
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import Connection

from inventory import assets, catalog, kits, labels
from inventory import sites as inventory_sites
from inventory.errors import InvalidValueError, NotFoundError
from inventory.values import check_key
from labhub.access.gate import gated_caller, needs, require_at, scope_of
from labhub.access.permissions import Permission as P
from labhub.access.sites import asset_sites
from labhub.api.deps import HubDep
from labhub.web import i18n, pages
from labhub.web.i18n import N_
from labhub.web.pages import PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PER_PAGE: Final = 20  # assets listed a page: a phone scrolls through 20 checkboxes
TYPED_MAX: Final = 2_000  # tags typed at once: a box of scanned labels, not a database
SEARCH_MAX: Final = 200  # characters of a search
LIST_PAGE_MAX: Final = 10_000  # a page number beyond any lab's assets
# The formats offered: the API's A4 sheet (3 x 8) and one label a page for a small printer.
FORMATS: Final = {"a4": labels.A4_SHEET, "small": labels.SMALL_LABEL}
FORMAT_NAMES: Final = {"a4": N_("A4 sheet, 24 labels a page (office printer)"),
                       "small": N_("One label of 50 × 30 mm a page (small label printer)")}
# The statuses whose assets a sheet leaves out unless asked (labels.AWAY_STATUSES), said in
# the list so that a person knows why a ticked one is not on the sheet.
STATUS_NAMES: Final = {"lost": N_("lost: left out of the sheet unless asked"),
                       "in_transit": N_("in transit: left out of the sheet unless asked")}


@dataclass
class Choice:
    """What the form asks for: the filters of the list, the tags chosen (ticked and typed,
    in order, once each) or every asset that matches, the format and the sheet's page."""

    site: str | None = None
    model: str | None = None
    q: str = ""
    page: int = 1
    tags: list[str] = field(default_factory=list)
    typed: list[str] = field(default_factory=list)  # lines of the box that are not tags
    every: bool = False
    format: str = "a4"
    away: bool = False
    sheet: int = 1

    @property
    def grid(self) -> labels.Grid:
        return FORMATS[self.format]

    def sheet_query(self, **more: Any) -> str:
        """The query of the sheet's SVG and PDF: the same labels, format and choices."""
        items: list[tuple[str, Any]] = [("format", self.format)]
        if self.away:
            items.append(("away", "1"))
        if self.every:
            items += [("all", "1"), *self.filters()]
        else:
            items += [("tag", t) for t in self.tags]
        items += list(more.items())
        return urlencode(items)

    def filters(self) -> list[tuple[str, str]]:
        return [(k, v) for k, v in (("site", self.site), ("model", self.model), ("q", self.q))
                if v]


def _number(text: str | None, *, low: int, high: int, default: int) -> int:
    if text is None or text == "":
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise InvalidValueError(f"{text!r} is not a number in {low}..{high}")
    return int(text)


def read_choice(request: Request) -> Choice:
    """The form's values from the address; InvalidValueError (a 422 page) for a value no
    form of this page sends."""
    q = request.query_params
    choice = Choice()
    for name in ("site", "model"):
        value = q.get(name, "").strip()
        if value:
            setattr(choice, name, check_key(value, what=name))
    choice.q = q.get("q", "").strip()[:SEARCH_MAX]
    choice.page = _number(q.get("page"), low=1, high=LIST_PAGE_MAX, default=1)
    choice.sheet = _number(q.get("sheet"), low=1, high=labels.MAX_LABELS, default=1)
    choice.format = q.get("format") or "a4"
    if choice.format not in FORMATS:
        raise InvalidValueError(f"format {choice.format!r} is not one of {', '.join(FORMATS)}")
    choice.away = q.get("away") == "1"
    choice.every = q.get("all") == "1"
    ticked = [check_key(t.strip(), what="tag") for t in q.getlist("tag") if t.strip()]
    lines = [line.strip() for line in q.get("tags", "").splitlines() if line.strip()]
    if len(ticked) + len(lines) > TYPED_MAX:
        raise InvalidValueError(f"more than {TYPED_MAX} tags at once")
    typed = []
    for line in lines:
        try:
            typed.append(check_key(line, what="tag"))
        except InvalidValueError:
            choice.typed.append(line)
    choice.tags = list(dict.fromkeys(ticked + typed))
    return choice


def _every_tag(conn: Connection, choice: Choice, scope: frozenset[str] | None) -> list[str]:
    """The tags of every asset that matches the filters, in the caller's sites (at most
    :data:`inventory.labels.MAX_LABELS`; more is refused by the layout)."""
    found: list[str] = []
    while True:
        total, page = assets.list_assets(
            conn=conn, site_under=choice.site, model_code=choice.model, search=choice.q or None,
            limit=assets.MAX_LIMIT, offset=len(found), sites=scope)
        found += [a.tag for a in page]
        if not page or len(found) >= total or len(found) > labels.MAX_LABELS:
            return found


def select(conn: Connection, request: Request, choice: Choice) -> labels.LabelSelection:
    """The labels of the choice, with the API's rules: a tag at a site outside the
    caller's is a 403, an unknown one a 404 (:class:`NotFoundError`)."""
    scope = scope_of(request, P.INVENTORY_READ)
    tags = _every_tag(conn, choice, scope) if choice.every else choice.tags
    if not tags:
        raise NotFoundError("no assets match", what="asset", key="")
    require_at(request, P.INVENTORY_READ, *asset_sites(conn, tags))
    return labels.select_labels(conn=conn, tags=tags, leave_out=() if choice.away
                                else labels.AWAY_STATUSES)


def _check_tags(conn: Connection, request: Request, choice: Choice,
                _: Callable[..., str]) -> list[str]:
    """What is wrong with the tags chosen, in the person's words (empty: nothing)."""
    said = [_("“%(line)s” is not a tag: a tag has letters, digits and . _ / - only, up to "
              "64.", line=line[:80]) for line in choice.typed]
    if choice.tags:
        found: dict[str, assets.Asset] = {}
        wanted = list(choice.tags)
        while wanted:  # the domain names the first tag no asset has: each is said
            try:
                found = assets.get_assets(conn=conn, tags=wanted)
                break
            except NotFoundError as missing:
                wanted.remove(missing.key)
        scope = scope_of(request, P.INVENTORY_READ)
        for tag in choice.tags:
            asset = found.get(tag)
            if asset is None:
                said.append(_("No asset has the tag “%(tag)s”.", tag=tag))
            elif scope is not None and asset.site_code not in scope:
                said.append(_("“%(tag)s” is at a lab whose inventory you may not see.",
                              tag=tag))
    return said


@router.get("/labels", dependencies=[needs(P.INVENTORY_READ)])
def labels_page(request: Request, hub: HubDep) -> HTMLResponse:
    """Choose the labels, see the sheet, print it."""
    caller = gated_caller(request)
    _ = i18n.gettext_of(pages.language_of(request))
    choice = read_choice(request)
    scope = scope_of(request, P.INVENTORY_READ)
    values: dict[str, Any] = {"choice": choice, "formats": FORMAT_NAMES,
                              "status_names": STATUS_NAMES, "errors": []}
    with hub.engine.connect() as conn:
        values["sites"] = inventory_sites.list_sites(conn=conn, only=scope)
        models = catalog.list_models(conn=conn)
        values["models"] = [m for m in models if m.tracking == "serialized"]
        names = {m.code: m.name for m in models}
        total, found = assets.list_assets(
            conn=conn, site_under=choice.site, model_code=choice.model,
            search=choice.q or None, limit=PER_PAGE, offset=(choice.page - 1) * PER_PAGE,
            sites=scope)
        shown = {a.tag for a in found}
        values.update(
            total=total, found=found, model_names=names,
            kits=kits.kits_among(conn=conn, tags=shown),
            last_page=max(1, math.ceil(total / PER_PAGE)),
            others=[t for t in choice.tags if t not in shown])
        errors = _check_tags(conn, request, choice, _)
        values["errors"] = errors
        if not errors and (choice.tags or choice.every):
            try:
                picked = select(conn, request, choice)
            except NotFoundError:
                values["nothing"] = True
            else:
                count = len(picked.labels)
                sheets = math.ceil(count / choice.grid.per_page)
                values["sheet"] = {
                    "count": count, "pages": sheets, "left_out": picked.left_out_total,
                    "page": min(choice.sheet, sheets),
                    "svg": pages.root_of(request) + "/labels/sheet.svg?"
                    + choice.sheet_query(sheet=min(choice.sheet, sheets)),
                    "pdf": pages.root_of(request) + "/labels/sheet.pdf?" + choice.sheet_query(),
                }
    if choice.every and "sheet" not in values and "nothing" not in values:
        values["nothing"] = True
    values["sheet_link"] = _sheet_link(request, choice)
    status = 422 if values["errors"] else 200
    return pages.render(request, "labels.html", status=status, caller=caller, **values)


def _sheet_link(request: Request, choice: Choice) -> Callable[[int], str]:
    """The page's own address showing another page of the sheet."""
    def link(sheet: int) -> str:
        kept = [(k, v) for k, v in request.query_params.multi_items()
                if k not in ("sheet", "lang")]
        return request.url.path + "?" + urlencode([*kept, ("sheet", str(sheet))])
    return link


@router.get("/labels/sheet.svg", dependencies=[needs(P.INVENTORY_READ)])
def sheet_svg(request: Request, hub: HubDep,
              sheet: Annotated[int, Query(ge=1, le=labels.MAX_LABELS)] = 1) -> Response:
    """One page of the sheet as SVG (the preview); ``X-Label-Pages`` says how many.
    The labels are chosen as for the PDF (the same rules and order), and only the page
    asked for is drawn."""
    choice = read_choice(request)
    with hub.engine.connect() as conn:
        picked = select(conn, request, choice)
    per_page = choice.grid.per_page
    count = math.ceil(len(picked.labels) / per_page)
    if sheet > count:
        raise InvalidValueError(f"page {sheet}: the labels fill {count} page(s)")
    # Only this page's labels are drawn: a page of the grid is the same whichever pages
    # come before it (a cell's place is its index on the page).
    [drawn] = labels.render_svg(picked.labels[(sheet - 1) * per_page:sheet * per_page],
                                choice.grid)
    return Response(drawn, media_type="image/svg+xml",
                    headers={"X-Label-Pages": str(count), "Cache-Control": "no-store"})


@router.get("/labels/sheet.pdf", dependencies=[needs(P.INVENTORY_READ)])
def sheet_pdf(request: Request, hub: HubDep) -> Response:
    """The whole sheet as one PDF, to print."""
    choice = read_choice(request)
    with hub.engine.connect() as conn:
        picked = select(conn, request, choice)
    return Response(labels.render_pdf(picked.labels, choice.grid), media_type="application/pdf",
                    headers={"Content-Disposition": 'inline; filename="labels.pdf"',
                             "Cache-Control": "no-store"})
