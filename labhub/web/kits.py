"""Kits: their contents and whether each is complete: ``/kits``, ``/kits/{tag}``.

A kit is an asset of a ``robotics_kit`` model with a contents list (``inventory.kits``):
tagged assets and counted parts. ``/kits`` lists the kits at the person's sites (a
``?site=`` narrows to a site's subtree), paged, each complete or not with what is
missing; ``/kits/{tag}`` shows the list (each tagged asset with its status, each counted
part with its quantity) and the kit's loss records, newest first.

**Complete** is what a loan asks of a kit (``inventory.loans.check_out``): every tagged
asset on its list is at the kit's site and neither lost, in repair nor retired; a kit
with such an asset cannot go out until it is found or repaired, or the list changes.
Counted parts that a kit check found lost or damaged came out of the lab's stock (the
stock page shows what to reorder); they are listed with the kit's losses.

A coordinator (``inventory.manage`` at the kit's site) replaces the list through the
API's own route (``PUT /api/v1/kits/{tag}/contents``): the tags, one a line (or separated
by spaces or commas), and the counted parts as ``CODE QUANTITY`` lines; the form carries
the kit's version (a stale one is a 409 page).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import Connection

from inventory import assets, catalog, kits
from inventory.assets import Asset
from inventory.errors import (
    ConflictError,
    InvalidTransitionError,
    InvalidValueError,
    NotFoundError,
    StaleVersionError,
)
from inventory.values import check_key
from labhub.access.gate import On, gated_caller, needs, scope_of
from labhub.access.permissions import Permission as P
from labhub.access.sites import tree_for
from labhub.api import inventory_movements as movements_api
from labhub.api.deps import HubDep
from labhub.web import i18n, pages
from labhub.web.assets import CONDITION_NAMES, STATUS_NAMES, _offset, _site_names
from labhub.web.i18n import N_
from labhub.web.pages import PageRoute, language_of, signed_form

router = APIRouter(route_class=PageRoute, include_in_schema=False)

KITS_PER_PAGE: Final = 20  # kits a page, each with what it is missing
KIT_CATEGORY: Final = "robotics_kit"
NOT_WITH_KIT: Final = ("lost", "in_repair", "retired")  # what keeps a kit from going out
_PART_LINE: Final = re.compile(r"\s*(\S+)\s*(?:[=:x×]\s*)?(\d+)\s*")
_SPLIT: Final = re.compile(r"[\s,;]+")


@dataclass(frozen=True)
class Missing:
    """A tagged asset on a kit's list that is not with the kit, and why."""

    tag: str
    status: str
    elsewhere: str | None  # the site it is at, when not the kit's


@dataclass(frozen=True)
class KitState:
    """A kit, its list and what of it is missing."""

    kit: Asset
    contents: kits.KitContents
    missing: list[Missing]

    @property
    def complete(self) -> bool:
        return not self.missing


def kit_states(conn: Connection, found: list[Asset]) -> list[KitState]:
    """Each kit's list and the tagged assets on it that are not with it (two queries)."""
    lists = kits.contents_many(conn=conn, kits=found)
    inside = {tag for c in lists.values() for tag in c.assets}
    parts = assets.get_assets(conn=conn, tags=sorted(inside)) if inside else {}
    states = []
    for kit in found:
        contents = lists[kit.tag]
        missing = [Missing(tag, parts[tag].status,
                           parts[tag].site_code if parts[tag].site_code != kit.site_code
                           else None)
                   for tag in contents.assets
                   if parts[tag].status in NOT_WITH_KIT or parts[tag].site_code != kit.site_code]
        states.append(KitState(kit, contents, missing))
    return states


def _kit_page_of(conn: Connection, request: Request, site: str | None, offset: int
                 ) -> tuple[int, list[Asset]]:
    """One page of the kits (assets of a kit model) at the person's sites, and how many
    there are: the asset list the API's has (the same scope), model by model."""
    codes = [m.code for m in catalog.list_models(conn=conn, category=KIT_CATEGORY)]
    scope = scope_of(request, P.INVENTORY_READ)
    totals = [assets.list_assets(conn=conn, site_under=site, model_code=code, limit=1,
                                 sites=scope)[0] for code in codes]
    total = sum(totals)
    found: list[Asset] = []
    skip, wanted = offset, KITS_PER_PAGE
    for code, count in zip(codes, totals, strict=True):
        if skip >= count:
            skip -= count
            continue
        _, page = assets.list_assets(conn=conn, site_under=site, model_code=code,
                                     limit=min(wanted, assets.MAX_LIMIT), offset=skip,
                                     sites=scope)
        found.extend(page)
        wanted -= len(page)
        skip = 0
        if wanted <= 0:
            break
    return total, found


@router.get("/kits", dependencies=[needs(P.INVENTORY_READ)])
def kits_page(request: Request, hub: HubDep) -> HTMLResponse:
    """The kits at the person's sites (``?site=`` a site's subtree), complete or not."""
    caller = gated_caller(request)
    _ = i18n.gettext_of(language_of(request))
    site = request.query_params.get("site", "").strip()
    errors: dict[str, str] = {}
    status = 200
    if site:
        try:
            check_key(site, what="site")
        except InvalidValueError:
            errors["site"] = _("A code has letters, digits and . _ / - only, up to 64.")
            site, status = "", 422
    offset = _offset(request.query_params.get("offset"))
    if offset is None:
        raise InvalidValueError("offset is not a page of the list")
    total, states, names = 0, [], {}
    with hub.engine.connect() as conn:
        if not errors:
            try:
                total, found = _kit_page_of(conn, request, site or None, offset)
            except NotFoundError:
                errors["site"] = _("No site has this code.")
                status, found = 404, []
            states = kit_states(conn, found)
            names = _site_names(conn, {s.kit.site_code for s in states})
    root = pages.root_of(request)

    def at(where: int) -> str:
        return f"{root}/kits?" + urlencode([(k, v) for k, v in (("site", site),
                                                                 ("offset", str(where)))
                                            if v and v != "0"])

    return pages.render(
        request, "kits.html", status=status, caller=caller, states=states, total=total,
        offset=offset, site=site, errors=errors, site_names=names,
        status_names=STATUS_NAMES,
        previous=at(max(0, offset - KITS_PER_PAGE)).rstrip("?") if offset > 0 else None,
        next=at(offset + KITS_PER_PAGE) if offset + KITS_PER_PAGE < total else None)


def _kit_values(request: Request, conn: Connection, tag: str) -> dict[str, Any]:
    caller = gated_caller(request)
    kit = assets.get_asset(conn=conn, tag=tag)
    [state] = kit_states(conn, [kit])
    parts = assets.get_assets(conn=conn, tags=state.contents.assets)
    models = {m.code: m for m in catalog.list_models(conn=conn)}
    losses = kits.list_losses(conn=conn, kit_tag=tag)
    losses.reverse()
    return {
        "state": state, "kit": kit, "parts": parts, "models": models, "losses": losses,
        "site_names": _site_names(conn, {kit.site_code}),
        "may_edit": caller.can(P.INVENTORY_MANAGE, kit.site_code, tree_for(request)),
        "status_names": STATUS_NAMES, "condition_names": CONDITION_NAMES,
        "here": f"{pages.root_of(request)}/kits/{quote(tag)}",
    }


def _kit_page(request: Request, hub: HubDep, tag: str, *, status: int = 200,
              values: Mapping[str, str] | None = None,
              errors: Mapping[str, str] | None = None, detail: str | None = None
              ) -> HTMLResponse:
    with hub.engine.connect() as conn:
        shown = _kit_values(request, conn, tag)
    contents = shown["state"].contents
    drawn = {"assets": "\n".join(contents.assets),
             "parts": "\n".join(f"{c} {q}" for c, q in contents.parts.items())}
    return pages.render(request, "kits_one.html", status=status,
                        caller=gated_caller(request), values=values or drawn,
                        errors=errors or {}, detail=detail,
                        saved=request.query_params.get("done") == "saved", **shown)


@router.get("/kits/{tag:path}", dependencies=[needs(P.INVENTORY_READ, On.path("asset", "tag"))])
def kit_page(tag: str, request: Request, hub: HubDep) -> HTMLResponse:
    """One kit: its list, what is missing, its losses; the list's form for a coordinator."""
    return _kit_page(request, hub, tag)


def read_parts(text: str) -> dict[str, int] | None:
    """``CODE QUANTITY`` lines (``JMP 40``, ``JMP = 40``, ``JMP: 40``); None if a line is
    not one."""
    parts: dict[str, int] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        found = _PART_LINE.fullmatch(line)
        if found is None or found.group(1) in parts or len(found.group(2)) > 9:
            return None
        parts[found.group(1)] = int(found.group(2))
    return parts


CONTENTS_DONE: Final = N_("The kit's contents are saved.")


@router.post("/kits/{tag:path}/contents",
             dependencies=[needs(P.INVENTORY_MANAGE, On.path("asset", "tag"))])
async def contents_form(tag: str, request: Request, hub: HubDep) -> Response:
    """Replace the kit's list (the API's ``PUT .../contents``), then back to the kit."""
    form = await signed_form(request)
    _ = i18n.gettext_of(language_of(request))
    shown = {"assets": form.get("assets", ""), "parts": form.get("parts", "")}
    tags = [t for t in _SPLIT.split(shown["assets"]) if t]
    parts = read_parts(shown["parts"])
    errors: dict[str, str] = {}
    if parts is None:
        errors["parts"] = _("Write one part a line: its code, a space and how many "
                            "(JMP 40).")
    version_text = form.get("version", "")
    version = int(version_text) if version_text.isdigit() and len(version_text) < 12 else None
    body = None
    if not errors:
        try:
            body = movements_api.KitContentsIn(assets=tags, parts=parts or {},
                                               expected_version=version)
        except ValidationError as exc:
            for problem in exc.errors():
                field = "parts" if problem["loc"] and problem["loc"][0] == "parts" else "assets"
                errors.setdefault(field, _("Write tags and codes with letters, digits and "
                                           ". _ / - only; quantities from 1 to %(max)s.",
                                           max=kits.PART_QUANTITY_MAX))
    if errors or body is None:
        return await run_in_threadpool(_kit_page, request, hub, tag, status=422,
                                       values=shown, errors=errors)
    actor = gated_caller(request).name

    def write() -> None:
        with hub.engine.begin() as conn:
            movements_api.define_contents(tag=tag, body=body, actor=actor, conn=conn)

    try:
        await run_in_threadpool(write)
    except (StaleVersionError, InvalidTransitionError, ConflictError, InvalidValueError,
            NotFoundError) as exc:
        text = str(exc)
        if isinstance(exc, StaleVersionError):
            status, field, words = 409, "form", _("Someone changed this kit meanwhile: reload "
                                                  "the page and try again.")
        elif isinstance(exc, InvalidTransitionError):
            status, field, words = 409, "form", _("The kit is out (on loan, in transit, lost "
                                                  "or retired): its contents change once it "
                                                  "is back.")
        elif isinstance(exc, NotFoundError) and exc.what == "model":
            status, field, words = 422, "parts", _("No counted part has this code.")
        elif isinstance(exc, NotFoundError):
            status, field, words = 422, "assets", _("No asset has this tag.")
        elif "part" in text or "model" in text or "quantity" in text:
            status, field, words = 422, "parts", _("A part must be counted (not tagged), "
                                                   "from 1 to %(max)s.",
                                                   max=kits.PART_QUANTITY_MAX)
        else:
            status, field, words = (409 if isinstance(exc, ConflictError) else 422), "assets", _(
                "Each asset must be at the kit's site, listed once, not a kit and in no "
                "other kit.")
        return await run_in_threadpool(_kit_page, request, hub, tag, status=status,
                                       values=shown, errors={field: words}, detail=text)
    return RedirectResponse(f"{pages.root_of(request)}/kits/{quote(tag)}?done=saved",
                            status_code=303)
