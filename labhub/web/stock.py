"""Counted consumables per site and the low-stock list by reorder level: ``/stock``,
``/stock/low``, one site's stock of one model at ``/stock/item?site=&model=``, and the
coordinator's forms (``POST /stock/receive``, ``/stock/consume``, ``/stock/adjust``,
``/stock/threshold``).

The lists are the API's (:func:`inventory.stock.list_stock` and the reorder report,
:func:`inventory.stock.reorder_report`: ``site`` takes a site and its whole subtree, only
the sites where the person may read the inventory, paged with totals). A coordinator
(``inventory.manage`` at the site) records a delivery, parts used up, a recount and the
reorder level with the same services as the API's ``/stock/*`` routes, which check every
value; a refused value shows beside its field in the person's words. A recount and a
reorder level carry the version of the stock they were drawn from: a form drawn before
someone else's change is a 409 page that shows the stock as it is now.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Final
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse

from inventory import catalog, sites, stock
from inventory.catalog import Model
from inventory.errors import InvalidValueError, NotFoundError, StaleVersionError
from inventory.values import check_note
from labhub.access.gate import On, gated_caller, needs, require_at, scope_of
from labhub.access.permissions import Permission as P
from labhub.access.sites import tree_for
from labhub.api.common import actor_of
from labhub.api.deps import HubDep
from labhub.web import i18n, pages
from labhub.web.i18n import N_
from labhub.web.pages import PageRoute
from labhub.web.sites import site_href
from labhub.wiring import Hub

router = APIRouter(route_class=PageRoute, include_in_schema=False)

ROWS_PER_PAGE: Final = 50  # a phone scrolls through 50 lines; more pages below
PAGE_MAX: Final = 10_000  # a page number beyond any network's stock
ACTIONS: Final = ("receive", "consume", "adjust", "threshold")
SAVED: Final = {"receive": N_("The delivery was recorded."),
                "consume": N_("The parts used up were recorded."),
                "adjust": N_("The recount was recorded."),
                "threshold": N_("The reorder level was saved.")}
# Which fields each form has (the site and model are chosen on the list's delivery form,
# fixed on a stock item's page).
FIELDS: Final = {"receive": ("quantity", "note"), "consume": ("quantity", "note"),
                 "adjust": ("quantity", "note"), "threshold": ("threshold",)}


@dataclass
class StockForm:
    """A stock form as posted: which one, its values, and the errors by field."""

    action: str
    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    stale: bool = False


def _item_href(request: Request, site: str, model: str, **more: str) -> str:
    return (pages.root_of(request) + "/stock/item?"
            + urlencode({"site": site, "model": model, **more}))


def _counted_models(hub: Hub) -> dict[str, Model]:
    with hub.engine.connect() as conn:
        return {m.code: m for m in catalog.list_models(conn=conn) if m.tracking == "counted"}


def _manage_sites(request: Request, hub: Hub) -> list[sites.Site]:
    """The lab sites where the caller may record stock (none: they may not)."""
    caller = gated_caller(request)
    if not caller.has(P.INVENTORY_MANAGE):
        return []
    with hub.engine.connect() as conn:
        return [s for s in sites.list_sites(conn=conn, kind="site",
                                            only=scope_of(request, P.INVENTORY_MANAGE))
                if s.retired_at is None]


def _list_page(request: Request, hub: Hub, *, low: bool, site: str | None, model: str | None,
               page: int, form: StockForm | None = None, status: int = 200) -> HTMLResponse:
    caller = gated_caller(request)
    scope = scope_of(request, P.INVENTORY_READ)
    offset = (page - 1) * ROWS_PER_PAGE
    with hub.engine.connect() as conn:
        rows: list[stock.ReorderLine] | list[stock.StockLevel]
        if low:
            total, rows = stock.reorder_report(conn=conn, site_under=site, model_code=model,
                                               limit=ROWS_PER_PAGE, offset=offset, sites=scope)
        else:
            total, rows = stock.list_stock(conn=conn, site_under=site, model_code=model,
                                           limit=ROWS_PER_PAGE, offset=offset, sites=scope)
        choices = sites.list_sites(conn=conn, only=scope)
        low_total = None if low else stock.reorder_report(
            conn=conn, site_under=site, model_code=model, limit=1, sites=scope)[0]
    models = _counted_models(hub)
    manage = _manage_sites(request, hub)
    names = {s.code: s.name for s in choices}
    here = pages.root_of(request) + ("/stock/low" if low else "/stock")
    kept = {k: v for k, v in (("site", site), ("model", model)) if v}

    def page_link(number: int) -> str:
        return here + "?" + urlencode({**kept, "page": number})

    saved = SAVED.get(request.query_params.get("saved", ""))
    _ = i18n.gettext_of(pages.language_of(request))
    return pages.render(
        request, "stock.html", status=status, caller=caller, low=low, rows=rows,
        total=total, low_total=low_total, site=site or "", model=model or "",
        choices=choices, models=models, names=names, page=page,
        pages_total=max(1, -(-total // ROWS_PER_PAGE)), page_link=page_link,
        item_href=lambda s, m: _item_href(request, s, m), kept=urlencode(kept),
        manage_sites=bool(manage), site_options=[(s.code, f"{s.name} ({s.code})") for s in manage],
        model_options=[(m.code, f"{m.name} ({m.code})") for m in models.values()
                       if m.retired_at is None],
        form=form or StockForm("receive", {"site": site or "", "model": model or ""}),
        saved=_(saved) if saved else None)


SiteQuery = Annotated[str | None, Query(max_length=200)]


@router.get("/stock", dependencies=[needs(P.INVENTORY_READ)])
def stock_page(request: Request, hub: HubDep, site: SiteQuery = None, model: SiteQuery = None,
               page: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 1) -> HTMLResponse:
    """Counted stock by site and model (``site``: a site and its subtree), paged."""
    return _list_page(request, hub, low=False, site=site or None, model=model or None,
                      page=page)


@router.get("/stock/low", dependencies=[needs(P.INVENTORY_READ)])
def low_stock_page(request: Request, hub: HubDep, site: SiteQuery = None, model: SiteQuery = None,
                   page: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 1) -> HTMLResponse:
    """The reorder report: each site and model below its reorder level, with how many
    are missing to reach it."""
    return _list_page(request, hub, low=True, site=site or None, model=model or None,
                      page=page)


def _item_page(request: Request, hub: Hub, site: str, model: str, *,
               form: StockForm | None = None, status: int = 200) -> HTMLResponse:
    caller = gated_caller(request)
    with hub.engine.connect() as conn:
        level = stock.get_stock(conn=conn, site_code=site, model_code=model)
        where = sites.get_site(conn=conn, code=site)
        what = catalog.get_model(conn=conn, code=model)
    may_manage = caller.can(P.INVENTORY_MANAGE, site, tree_for(request))
    saved = SAVED.get(request.query_params.get("saved", ""))
    _ = i18n.gettext_of(pages.language_of(request))
    forms = {action: StockForm(action, {}) for action in ACTIONS}
    forms["threshold"].values["threshold"] = (
        "" if level.reorder_threshold is None else str(level.reorder_threshold))
    if form is not None and not form.stale:
        forms[form.action] = form
    return pages.render(
        request, "stock_item.html", status=status, caller=caller, level=level, site=where,
        model=what, may_manage=may_manage, forms=forms, stale=form is not None and form.stale,
        low=level.reorder_threshold is not None and level.quantity < level.reorder_threshold,
        saved=_(saved) if saved else None,
        site_href=site_href(request, site))


@router.get("/stock/item", dependencies=[needs(P.INVENTORY_READ, On.ROUTE)])
def stock_item_page(request: Request, hub: HubDep,
                    site: Annotated[str, Query(max_length=200)],
                    model: Annotated[str, Query(max_length=200)]) -> HTMLResponse:
    """One site's stock of one counted model; a coordinator's forms to change it."""
    require_at(request, P.INVENTORY_READ, site)
    return _item_page(request, hub, site, model)


# -- the forms ---------------------------------------------------------------------------------

def _whole(_: Callable[..., str], text: str, form: StockForm, name: str, *,
           optional: bool = False) -> int | None:
    text = text.strip().replace("\u00a0", "").replace(" ", "")
    if not text:
        if not optional:
            form.errors[name] = _("Write how many, such as 12.")
        return None
    try:
        return int(text)
    except ValueError:
        form.errors[name] = _("Write a whole number, such as 12.")
        return None


def _domain_error(_: Callable[..., str], exc: Exception, form: StockForm,
                  held: int | None, number_text: Callable[[int], str]) -> None:
    """A value the domain refused, in words beside its field (its English as detail)."""
    text = str(exc)
    number = "threshold" if form.action == "threshold" else "quantity"
    if isinstance(exc, NotFoundError):
        where = "model" if exc.what == "model" else "site"
        form.errors[where] = (_("Choose a model of the list.") if where == "model"
                              else _("Choose a lab of the list."))
    elif "tracked as tagged assets" in text:
        form.errors["model"] = _("This model is counted one by one with its tags, not in "
                                 "stock: choose another.")
    elif "assets are kept at lab sites" in text:
        form.errors["site"] = _("Choose a lab of the list.")
    elif "cannot be consumed" in text and held is not None:
        form.errors["quantity"] = _("The lab holds only %(held)s: it cannot use up more.",
                                    held=number_text(held))
    elif " is not in " in text:
        low = 0 if form.action == "adjust" else 1
        form.errors[number] = _("Write a whole number from %(low)s to %(high)s.", low=low,
                                high=number_text(stock.QUANTITY_MAX))
    elif "note" in text:
        form.errors["note"] = _("The note is too long or holds characters that cannot be "
                                "shown (%(detail)s).", detail=text)
    else:
        form.errors[number] = _("Check this value: %(detail)s", detail=text)


async def _stock_form(request: Request, hub: Hub, action: str) -> Response:
    """Read, check and record one of the stock forms; its page again with the errors."""
    fields = await pages.signed_form(request)
    _ = i18n.gettext_of(pages.language_of(request))
    origin = "list" if fields.get("origin") == "list" else "item"
    site, model = fields.get("site", "").strip(), fields.get("model", "").strip()
    form = StockForm(action, {k: fields.get(k, "") for k in ("site", "model", *FIELDS[action])})
    if not site:
        form.errors["site"] = _("Choose a lab of the list.")
    if not model:
        form.errors["model"] = _("Choose a model of the list.")
    if site:
        require_at(request, P.INVENTORY_MANAGE, site)  # a site not one's own: a 403 page
    number = "threshold" if action == "threshold" else "quantity"
    amount = _whole(_, fields.get(number, ""), form, number, optional=action == "threshold")
    note = fields.get("note", "").strip() or None
    try:
        version = int(fields["version"]) if action in ("adjust", "threshold") else None
    except (KeyError, ValueError):
        version = -1  # no version, or not one: a form from nowhere, refused as stale
    by = actor_of(request)
    held: list[int] = []

    def record() -> None:
        checked = check_note(note)  # the API's bound on a note, too
        with hub.engine.begin() as conn:
            if action == "consume":
                held.append(stock.get_stock(conn=conn, site_code=site, model_code=model
                                            ).quantity)
                stock.consume(conn=conn, site_code=site, model_code=model,
                              quantity=amount or 0, by=by, note=checked)
            elif action == "receive":
                stock.receive(conn=conn, site_code=site, model_code=model,
                              quantity=amount or 0, by=by, note=checked)
            elif action == "adjust":
                stock.adjust(conn=conn, site_code=site, model_code=model,
                             quantity=amount or 0, by=by, note=checked, expected_version=version)
            else:
                stock.set_reorder_threshold(conn=conn, site_code=site, model_code=model,
                                            threshold=amount, by=by,
                                            expected_version=version)

    status = 422
    try:
        if not form.errors:
            await run_in_threadpool(record)
    except StaleVersionError:
        form = StockForm(action, {k: v for k, v in form.values.items() if k == "note"},
                         stale=True)
        status = 409
    except (InvalidValueError, NotFoundError) as exc:
        if origin == "item" and isinstance(exc, NotFoundError):
            raise  # a page's fixed site or model that is not there: a 404 page
        formats = i18n.Formats(pages.language_of(request), "UTC")
        _domain_error(_, exc, form, held[0] if held else None, formats.number)
    if not form.errors and not form.stale:
        if origin == "list":
            return RedirectResponse(pages.root_of(request) + "/stock?" + urlencode(
                {"site": site, "model": model, "saved": action}), status_code=303)
        return RedirectResponse(_item_href(request, site, model, saved=action),
                                status_code=303)
    if origin == "list":
        return await run_in_threadpool(_list_page, request, hub, low=False, site=None,
                                       model=None, page=1, form=form, status=status)
    return await run_in_threadpool(_item_page, request, hub, site, model, form=form,
                                   status=status)


def _route(action: str) -> Callable[..., Any]:
    async def post(request: Request, hub: HubDep) -> Response:
        return await _stock_form(request, hub, action)

    post.__name__ = f"stock_{action}_form"
    post.__doc__ = {"receive": "Record a delivery (the API's POST /stock/receive).",
                    "consume": "Record parts used up (the API's POST /stock/consume).",
                    "adjust": "Record a recount (the API's POST /stock/adjust).",
                    "threshold": "Set the reorder level (the API's POST /stock/threshold)."
                    }[action]
    return post


for _action in ACTIONS:
    router.add_api_route(f"/stock/{_action}", _route(_action), methods=["POST"],
                         dependencies=[needs(P.INVENTORY_MANAGE, On.ROUTE)])

