"""Loans to a person, a group or a class, with due dates; partial returns; the overdue list:
``/loans``.

``/loans`` lists the loans the person may see (their ``inventory.read`` scope), open ones
by default, by due time: the most overdue first. Filters: ``site`` (the lending site and
its subtree: other pages link ``/loans?site=CODE``), ``borrower`` (part of the name),
``overdue=1`` (the overdue list, sorted by how late) and ``all=1`` (returned loans too);
paged with totals, as the API's ``GET /loans``. ``/loans/new`` lends assets and kits by
tag (a textarea, one tag a line: typed, or a USB scanner typing into it) to a person, a
group or one of the lab's classes (lent as a group of that name), until the end of a due
day in the hub's time zone; it runs what the API's ``POST /loans`` runs (the site check
of :func:`labhub.access.gate.require_at`, then :func:`inventory.loans.check_out`), and
each error shows beside its field naming the tag, in the person's language.
``/loans/{id}`` shows one loan and, to those who may take it back (``loans.write`` at
its site), a check-in form: some items now and the rest later; a kit's tagged assets and
counted parts that did not come back are recorded as missing by the domain's kit check,
as the API's check-in does. The form first shows what will be recorded; the
confirmation carries the loan's version, so a loan changed meanwhile is a 409 page.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time
from typing import Annotated, Any, Final
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Connection

from inventory import catalog, kits, loans
from inventory import sites as inventory_sites
from inventory.assets import CONDITIONS, Condition, get_assets
from inventory.errors import (
    InvalidTransitionError,
    InvalidValueError,
    NotFoundError,
)
from inventory.values import TEXT_MAX, check_key, now_us
from labhub.access import classes
from labhub.access.caller import Forbidden
from labhub.access.gate import On, gated_caller, needs, require_at, scope_of
from labhub.access.permissions import Permission as P
from labhub.access.sites import tree_for
from labhub.api.common import actor_of
from labhub.api.deps import HubDep, settings_of
from labhub.web import i18n, pages
from labhub.web.i18n import N_
from labhub.web.pages import PageRoute
from labhub.wiring import Hub

router = APIRouter(route_class=PageRoute, include_in_schema=False)

LOANS_PER_PAGE: Final = 20  # a phone scrolls through 20 loans; more pages below
PAGE_MAX: Final = 10_000  # a page number beyond any network's loans
DUE_DEFAULT_DAYS: Final = 7  # a class meets again within a week
BORROWER_MAX: Final = 100  # the filter's text: part of a name
# The borrower kinds the form offers; a class is lent as a group with the class's name.
FORM_KINDS: Final = {"person": N_("A person"), "group": N_("A group"),
                     "class": N_("One of the lab's classes")}
KIND_NAMES: Final = {"person": N_("Person"), "group": N_("Group or class"),
                     "room": N_("Room")}
CONDITION_NAMES: Final = {"good": N_("Good"), "fair": N_("Fair"), "poor": N_("Poor"),
                          "broken": N_("Broken")}
_QUOTED: Final = re.compile(r"'([^']+)'")


# -- the list ------------------------------------------------------------------------------

@router.get("/loans", dependencies=[needs(P.INVENTORY_READ)])
def loans_page(
    request: Request, hub: HubDep,
    site: Annotated[str | None, Query(max_length=64)] = None,
    borrower: Annotated[str | None, Query(max_length=BORROWER_MAX)] = None,
    overdue: bool = False,
    returned: Annotated[bool, Query(alias="all")] = False,
    page: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 1,
) -> HTMLResponse:
    """Open loans (or all) the person may see, by due time; filters and pages."""
    caller = gated_caller(request)
    site = site or None
    borrower = (borrower or "").strip() or None
    scope = scope_of(request, P.INVENTORY_READ)
    now = now_us()
    with hub.engine.connect() as conn:
        choices = inventory_sites.list_sites(conn=conn, only=scope)
        if site is not None and site not in {s.code for s in choices}:
            # A region above the person's lab, or another lab: its loans in their scope
            # (an unknown code is a 404 page).
            choices.append(inventory_sites.get_site(conn=conn, code=site))
        total, found = loans.list_loans(
            conn=conn, borrower=borrower, site_under=site, sites=scope,
            open_only=None if returned and not overdue else True, overdue=overdue, now=now,
            limit=LOANS_PER_PAGE, offset=(page - 1) * LOANS_PER_PAGE)
    names = {s.code: s.name for s in choices}
    pages_count = max(1, -(-total // LOANS_PER_PAGE))
    kept = {k: v for k, v in (("site", site), ("borrower", borrower),
                              ("overdue", "1" if overdue else None),
                              ("all", "1" if returned else None)) if v}
    return pages.render(
        request, "loans.html", caller=caller, loans=found, total=total, page=page,
        pages_count=pages_count, site=site, borrower=borrower or "", overdue=overdue,
        returned=returned, sites=choices, site_names=names, now=now, kind_names=KIND_NAMES,
        may_lend=caller.has(P.LOANS_WRITE), days_late=_days_late,
        link=lambda n: "?" + urlencode({**kept, "page": n}))


def _days_late(due_at: int, now: int) -> int:
    """Whole days a loan is past due (0 on its first day late)."""
    return max(0, (now - due_at) // (86_400 * 1_000_000))


# -- a new loan ----------------------------------------------------------------------------

@dataclass
class Outcome:
    """What a form said: the values to show again and the errors by field."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)


def _zone(request: Request) -> ZoneInfo:
    return ZoneInfo(settings_of(request).timezone)


def _today(request: Request) -> date:
    return datetime.now(tz=_zone(request)).date()


def due_of(day: date, zone: ZoneInfo) -> int:
    """A loan due on ``day`` is due at the end of that day in the hub's zone (µs, UTC)."""
    end = datetime.combine(day, day_time(23, 59), tzinfo=zone)
    return int(end.astimezone(UTC).timestamp()) * 1_000_000


def _classes_for(request: Request, hub: Hub) -> list[classes.Class]:
    """The classes at sites where the person may lend."""
    scope = scope_of(request, P.LOANS_WRITE)
    with hub.engine.connect() as conn:
        every = classes.list_classes(conn)
    return [c for c in every if scope is None or c.site in scope]


def _new_page(request: Request, hub: Hub, outcome: Outcome, *, status: int = 200
              ) -> HTMLResponse:
    return pages.render(request, "loans_new.html", status=status,
                        caller=gated_caller(request), f=outcome, kinds=FORM_KINDS,
                        classes=_classes_for(request, hub), today=_today(request).isoformat())


@router.get("/loans/new", dependencies=[needs(P.LOANS_WRITE)])
def new_loan_page(request: Request, hub: HubDep) -> HTMLResponse:
    """The form of a new loan: who, until when, what (tags)."""
    due = _today(request) + timedelta(days=DUE_DEFAULT_DAYS)
    return _new_page(request, hub, Outcome({"kind": "person", "due": due.isoformat()}))


def read_tags(text: str) -> list[str]:
    """The tags of the form's textarea: one a line (as a scanner types them), or
    separated by spaces or commas."""
    return [t for t in re.split(r"[\s,;]+", text) if t]


def _tag_error(_: Callable[..., str], exc: Exception) -> str:
    """A domain error of a check-out, in the person's words, naming the tag."""
    text = str(exc)
    named = _QUOTED.findall(text)
    tag = named[0] if named else ""
    if isinstance(exc, NotFoundError):
        return _("No asset has the tag “%(tag)s”.", tag=exc.key)
    if "listed twice" in text:
        return _("“%(tag)s” is listed twice.", tag=tag)
    if "already on loan" in text:
        return _("“%(tag)s” is already on loan.", tag=tag)
    if "is part of kit" in text:
        return _("“%(tag)s” is in kit “%(kit)s”: lend the kit.", tag=tag,
                 kit=named[1] if len(named) > 1 else "")
    if "one loan lends from one site" in text:
        return _("“%(tag)s” is at another lab than the other items: one loan lends from "
                 "one lab.", tag=tag)
    if "cannot go out" in text:
        return _("Kit “%(tag)s” cannot go out: its part “%(part)s” is not here or not "
                 "available.", tag=tag, part=named[1] if len(named) > 1 else "")
    if "cannot be lent" in text:
        return _("“%(tag)s” cannot be lent now: it is not available.", tag=tag)
    if "at most" in text:
        return _("A loan holds at most %(count)s items.", count=loans.LOAN_ITEMS_MAX)
    return _("Check the tags: %(detail)s", detail=text)


def _read_new(_: Callable[..., str], request: Request, hub: Hub, form: Mapping[str, str]
              ) -> tuple[Outcome, dict[str, Any]]:
    """The loan the form describes (the check-out's arguments), or the errors by field."""
    outcome = Outcome({k: form.get(k, "") for k in ("kind", "borrower", "class", "due",
                                                     "tags", "purpose")})
    v, errors = outcome.values, outcome.errors
    kind = v["kind"]
    borrower = v["borrower"].strip()
    if kind not in FORM_KINDS:
        errors["kind"] = _("Choose who borrows: a person, a group or a class.")
    elif kind == "class":
        chosen = {str(c.id): c for c in _classes_for(request, hub)}
        if v["class"] not in chosen:
            errors["class"] = _("Choose one of the lab's classes.")
        else:
            borrower = chosen[v["class"]].name
    elif not borrower:
        errors["borrower"] = (_("Write the person's name.") if kind == "person"
                              else _("Write the group's name."))
    elif len(borrower) > TEXT_MAX:
        errors["borrower"] = _("A name has at most %(limit)s characters.", limit=TEXT_MAX)
    due_at = 0
    try:
        day = date.fromisoformat(v["due"].strip())
    except ValueError:
        errors["due"] = _("Choose a day, such as %(day)s.",
                          day=(_today(request) + timedelta(days=DUE_DEFAULT_DAYS)).isoformat())
    else:
        if day < _today(request):
            errors["due"] = _("This day has passed: choose today or a later day.")
        due_at = due_of(day, _zone(request))
    tags = read_tags(v["tags"])
    if not tags:
        errors["tags"] = _("Write or scan at least one tag.")
    for tag in tags:
        try:
            check_key(tag, what="tag")
        except InvalidValueError:
            errors["tags"] = _("“%(code)s” is not a tag: a tag has letters, digits and "
                               ". _ / - only, up to 64.", code=tag[:80])
            break
    purpose = v["purpose"].strip() or None
    if purpose is not None and len(purpose) > TEXT_MAX:
        errors["purpose"] = _("At most %(limit)s characters.", limit=TEXT_MAX)
    return outcome, {"asset_tags": tags, "borrower": borrower,
                     "borrower_kind": "group" if kind == "class" else kind,
                     "due_at": due_at, "purpose": purpose}


def _lend(request: Request, hub: Hub, form: Mapping[str, str]) -> Response:
    _ = i18n.gettext_of(pages.language_of(request))
    outcome, args = _read_new(_, request, hub, form)
    if outcome.errors:
        return _new_page(request, hub, outcome, status=422)
    errors = outcome.errors
    status = 422
    try:
        with hub.engine.begin() as conn:
            found = _assets_here(_, conn, args["asset_tags"], errors)
            for tag, site in found.items():  # the API's require_at, tag by tag
                try:
                    require_at(request, P.LOANS_WRITE, site)
                except Forbidden:
                    errors["tags"] = _("“%(tag)s” is at %(site)s, where you may not lend.",
                                       tag=tag, site=site)
                    status = 403
                    break
            if errors:
                return _new_page(request, hub, outcome, status=status)
            loan = loans.check_out(conn=conn, by=actor_of(request), **args)
    except (InvalidValueError, InvalidTransitionError) as exc:
        text = str(exc)
        if "due time" in text and "future" in text:  # the day ended as it was sent
            errors["due"] = _("This day has passed: choose today or a later day.")
        elif "due time" in text:
            errors["due"] = _("A loan lasts at most %(days)s days; a longer stay is a "
                              "transfer.", days=loans.LOAN_MAX_US // 86_400_000_000)
        elif "borrower" in text:
            errors["borrower"] = _("Use letters, digits and signs, without control "
                                   "characters.")
        elif "purpose" in text:
            errors["purpose"] = _("Use letters, digits and signs, without control "
                                  "characters.")
        else:
            errors["tags"] = _tag_error(_, exc)
        status = 409 if isinstance(exc, InvalidTransitionError) else 422
        return _new_page(request, hub, outcome, status=status)
    return RedirectResponse(f"{pages.root_of(request)}/loans/{loan.uuid}?done=lent",
                            status_code=303)


def _assets_here(_: Callable[..., str], conn: Connection, tags: list[str],
                 errors: dict[str, str]) -> dict[str, str]:
    """Each tag's site (the first unknown tag: an error beside the tags)."""
    try:
        found = get_assets(conn=conn, tags=tags)
    except NotFoundError as exc:
        errors["tags"] = _tag_error(_, exc)
        return {}
    return {tag: asset.site_code for tag, asset in found.items()}


@router.post("/loans/new", dependencies=[needs(P.LOANS_WRITE, On.ROUTE)])
async def new_loan_form(request: Request, hub: HubDep) -> Response:
    """Lend: the loan's page (303), or the form again with its errors beside their fields
    (422; 409 for an item that is not available; 403 for one at a lab where the person may
    not lend)."""
    form = await pages.signed_form(request)
    return await run_in_threadpool(_lend, request, hub, form)


# -- one loan, and its check-in ------------------------------------------------------------

@dataclass(frozen=True)
class KitLine:
    """A line of a kit's contents list: a tagged asset or a counted part."""

    key: str  # the tag or the model code
    name: str  # the model's name, for a counted part
    quantity: int  # 1 for a tagged asset


@dataclass(frozen=True)
class OutItem:
    """An item still out on a loan, with its kit's list when it is a kit."""

    tag: str
    assets: tuple[KitLine, ...] = ()
    parts: tuple[KitLine, ...] = ()


@dataclass
class CheckIn:
    """What the check-in form says: for each item back, its condition and, for a kit,
    the tags and counts that came back; or the errors by field."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    returns: list[loans.ItemReturn] = field(default_factory=list)
    missing: dict[str, list[tuple[str, int]]] = field(default_factory=dict)


def _out_items(conn: Connection, loan: loans.Loan) -> list[OutItem]:
    out = [it for it in loan.items if it.returned_at is None]
    kit_assets = get_assets(conn=conn, tags=[it.asset_tag for it in out if it.is_kit])
    lists = kits.contents_many(conn=conn, kits=kit_assets.values())
    names: dict[str, str] = {}
    items = []
    for it in out:
        contents = lists.get(it.asset_tag)
        if contents is None:
            items.append(OutItem(it.asset_tag))
            continue
        for code in contents.parts:
            if code not in names:
                names[code] = catalog.get_model(conn=conn, code=code).name
        items.append(OutItem(
            it.asset_tag, tuple(KitLine(t, "", 1) for t in contents.assets),
            tuple(KitLine(c, names[c], q) for c, q in sorted(contents.parts.items()))))
    return items


def _losses(conn: Connection, loan: loans.Loan) -> dict[str, list[tuple[kits.KitLoss, str]]]:
    """What each kit of the loan that came back was missing (or came back broken), each
    with the words that name it (a counted part's model name and code; a tag)."""
    found: dict[str, list[tuple[kits.KitLoss, str]]] = {}
    for it in loan.items:
        if not it.is_kit or it.returned_at is None:
            continue
        found[it.asset_tag] = [
            (x, f"{catalog.get_model(conn=conn, code=x.part).name} ({x.part})"
             if x.kind == "model" else x.part)
            for x in kits.list_losses(conn=conn, kit_tag=it.asset_tag)
            if x.loan_uuid == loan.uuid]
    return found


def _loan_page(request: Request, hub: Hub, loan_id: str, *, checkin: CheckIn | None = None,
               review: bool = False, status: int = 200) -> HTMLResponse:
    caller = gated_caller(request)
    with hub.engine.connect() as conn:
        loan = loans.get_loan(conn=conn, loan_uuid=loan_id)
        out = _out_items(conn, loan) if loan.open else []
        losses = _losses(conn, loan)
        site = inventory_sites.get_site(conn=conn, code=loan.site_code)
    may_take_back = loan.open and caller.can(P.LOANS_WRITE, loan.site_code, tree_for(request))
    if checkin is None:
        checkin = CheckIn(_default_checkin(out))
    done = request.query_params.get("done")
    return pages.render(
        request, "loans_one.html", status=status, caller=caller, loan=loan, out=out,
        losses=losses, site=site, may_take_back=may_take_back, f=checkin, review=review,
        kit_tags={it.tag for it in out if it.assets or it.parts},
        now=now_us(), kind_names=KIND_NAMES, conditions=CONDITION_NAMES,
        done=done if done in ("lent", "back") else None, days_late=_days_late)


def _default_checkin(out: list[OutItem]) -> dict[str, str]:
    """The form as drawn: nothing ticked as back; a kit's list all present."""
    values: dict[str, str] = {}
    for it in out:
        for line in it.assets:
            values[f"asset:{it.tag}:{line.key}"] = "1"
        for line in it.parts:
            values[f"part:{it.tag}:{line.key}"] = str(line.quantity)
    return values


@router.get("/loans/{loan_id}", dependencies=[needs(P.INVENTORY_READ, On.path("loan", "loan_id"))])
def loan_page(request: Request, loan_id: str, hub: HubDep) -> HTMLResponse:
    """One loan: who, what, until when, what came back; the check-in form."""
    return _loan_page(request, hub, loan_id)


def _read_checkin(_: Callable[..., str], out: list[OutItem], form: Mapping[str, str]
                  ) -> CheckIn:
    """The returns the check-in form describes, checked against the loan's own items."""
    values = {k: v for k, v in form.items() if k.split(":")[0] in
              ("back", "condition", "asset", "part")}
    checkin = CheckIn(values)
    for it in out:
        if form.get(f"back:{it.tag}") != "1":
            continue
        condition = form.get(f"condition:{it.tag}", "")
        if condition and condition not in CONDITIONS:
            checkin.errors[f"condition:{it.tag}"] = _("Choose a condition of the list.")
            continue
        kit: kits.KitReturn | None = None
        missing: list[tuple[str, int]] = []
        if it.assets or it.parts:
            tags = frozenset(line.key for line in it.assets
                             if form.get(f"asset:{it.tag}:{line.key}") == "1")
            missing += [(line.key, 1) for line in it.assets if line.key not in tags]
            counts: dict[str, int] = {}
            for line in it.parts:
                name = f"part:{it.tag}:{line.key}"
                text = form.get(name, "").strip()
                if not text.isdigit() or int(text) > line.quantity:
                    checkin.errors[name] = _("Write how many came back: 0 to %(count)s.",
                                             count=line.quantity)
                    continue
                counts[line.key] = int(text)
                if int(text) < line.quantity:
                    missing.append((f"{line.name} ({line.key})", line.quantity - int(text)))
            if missing:  # everything back: the domain's "complete" (earlier parts too)
                kit = kits.KitReturn(tags=tags, parts=counts)
        checkin.missing[it.tag] = missing
        shown: Condition | None = condition or None  # type: ignore[assignment]
        checkin.returns.append(loans.ItemReturn(tag=it.tag, condition=shown, kit=kit))
    if not checkin.returns and not checkin.errors:
        checkin.errors["back"] = _("Tick at least one item that came back.")
    return checkin


def _check_in(request: Request, hub: Hub, loan_id: str, form: Mapping[str, str]) -> Response:
    _ = i18n.gettext_of(pages.language_of(request))
    with hub.engine.connect() as conn:
        loan = loans.get_loan(conn=conn, loan_uuid=loan_id)
        out = _out_items(conn, loan) if loan.open else []
    version = form.get("version", "")
    if not loan.open or not version.isdigit() or int(version) != loan.version:
        return pages.render(request, "refused.html", status=409, caller=gated_caller(request),
                            reason=_("This loan changed meanwhile: reload its page and "
                                     "check again what came back."))
    checkin = _read_checkin(_, out, form)
    action = form.get("action", "review")
    if checkin.errors or action == "edit":
        return _loan_page(request, hub, loan_id, checkin=checkin,
                          status=422 if checkin.errors else 200)
    if action != "confirm":
        return _loan_page(request, hub, loan_id, checkin=checkin, review=True)
    try:
        with hub.engine.begin() as conn:
            loans.check_in(conn=conn, loan_uuid=loan_id, returns=checkin.returns,
                           by=actor_of(request), expected_version=loan.version)
    except InvalidValueError as exc:  # a kit's part the list does not hold as counted
        named = _QUOTED.findall(str(exc))
        where = next((k for k in checkin.values if k.startswith("part:")
                      and named and k.endswith(":" + named[-1])), "back")
        checkin.errors[where] = _("The kit's list does not allow this count: %(detail)s",
                                  detail=str(exc))
        return _loan_page(request, hub, loan_id, checkin=checkin, status=422)
    return RedirectResponse(f"{pages.root_of(request)}/loans/{loan_id}?done=back",
                            status_code=303)


@router.post("/loans/{loan_id}/check-in",
             dependencies=[needs(P.LOANS_WRITE, On.path("loan", "loan_id"))])
async def check_in_form(request: Request, loan_id: str, hub: HubDep) -> Response:
    """The check-in: first what will be recorded (``action=review``), then, confirmed
    (``action=confirm``, with the loan's version), the domain's check-in and a 303 back to
    the loan; ``action=edit`` draws the form again with what was chosen."""
    form = await pages.signed_form(request)
    return await run_in_threadpool(_check_in, request, hub, loan_id, form)
