"""The ministry's view of the network, on the central: ``/network`` (the rollout: every lab
with its tier, region, rural or urban, rollout status and history, its hub's last contact,
version and backlog, and a map), ``/network/use`` (what each lab did and holds, and the
readings of the last months) and ``/network/labs/{site}`` (one lab: its weeks and months),
with the rollout and use tables as CSV files in the person's language
(``/network/rollout.csv``, ``/network/use.csv``; the API's ``/api/v1/network/...`` give
the same, :mod:`labhub.api.network_views`).

The queries are :mod:`labhub.network.views`. Everyone with ``network.read`` somewhere sees
the labs under their grants (a region's coordinators their region's labs; the ministry its
grant's subtree; an admin all). The filters (region, tier, rural or urban) are a plain GET
form. The map is an SVG drawn here: a plain equirectangular projection fitted to the
labs, each lab a link to its page whose status shows by colour and shape together
(:data:`MARKS`), with a legend and the regions' names; it loads nothing from elsewhere.

The pages exist on a central only (``role = "central"``): on a hub each is a 404 page
that says so.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from babel.dates import format_date
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from inventory import replica
from inventory.errors import NotFoundError
from inventory.values import now_us
from labhub.access.gate import On, gated_caller, needs, scope_of
from labhub.access.permissions import Permission as P
from labhub.access.sites import tree_for
from labhub.api.common import actor_of
from labhub.api.deps import HubDep, settings_of
from labhub.network import conflicts, views
from labhub.network.views import Filters, Lab, RolloutRow, UseRow
from labhub.settings import Settings
from labhub.web import i18n, pages
from labhub.web.i18n import N_
from labhub.web.pages import PageRoute
from labhub.web.sites import ROLLOUT, TIERS
from labtext.csvtext import guard_formula

router = APIRouter(route_class=PageRoute, include_in_schema=False)

LABS_PER_PAGE: Final = 100
PAGE_MAX: Final = 10_000
STATES: Final = {"online": N_("Online"), "offline": N_("Offline"), "never": N_("Never")}
# Each rollout status's mark on the map and in the tables: a colour and a shape together
# (a shape alone tells it, for a person who does not see the colour, and in print).
MARKS: Final = {
    "planned": ("#0b5cad", "square"),
    "installing": ("#8a4b00", "triangle"),
    "active": ("#1b6e3a", "circle"),
    "paused": ("#6f42c1", "diamond"),
    "closed": ("#4f5b66", "cross"),
}
NO_STATUS_MARK: Final = ("#4f5b66", "circle")
# The CSV dialect of each language: what its spreadsheets open without asking.
DIALECTS: Final = {"en": (",", ".")}
DEFAULT_DIALECT: Final = (";", ",")  # es, pt and the others: semicolons, decimal comma

Rural = Literal["", "rural", "urban"]
Tier = Literal["", "lab_center", "lab_point", "lab_spark", "mobile_lab"]
KEY_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$|^$"


class NotCentral(Exception):
    """A page of the central asked of a hub."""


def check_central(settings: Settings) -> None:
    if settings.role != "central":
        raise NotCentral


def _not_central_page(request: Request) -> HTMLResponse:
    _ = i18n.gettext_of(pages.language_of(request))
    return pages.render(
        request, "refused.html", status=404, title=N_("Not found"),
        caller=getattr(request.state, "caller", None),
        reason=_("The network's pages are on the central LabHub, which gathers every "
                 "lab's hub. This LabHub is a lab's hub: open the central's address."))


def filters_of(region: str, tier: str, rural: str) -> Filters:
    return Filters(region=region or None, tier=tier or None,
                   rural=None if not rural else rural == "rural")


def scoped_labs(request: Request, conn: Connection) -> list[Lab]:
    """The labs the caller may see with ``network.read``."""
    return views.all_labs(conn=conn, only=scope_of(request, P.NETWORK_READ))


# -- words -------------------------------------------------------------------------------

def _words(_: Callable[..., str]) -> dict[str, Any]:
    return {"tier_names": {k: _(v) for k, v in TIERS.items()},
            "rollout_names": {k: _(v) for k, v in ROLLOUT.items()},
            "state_names": {k: _(v) for k, v in STATES.items()},
            "marks": MARKS, "no_mark": NO_STATUS_MARK}


def contact_words(_: Callable[..., str], contact: views.Contact, fmt: i18n.Formats) -> str:
    """A hub's contact in a few words: online, offline N days, never."""
    if contact.state == "online":
        return _("Online")
    if contact.state == "offline":
        days = contact.days_offline or 0
        if days == 0:
            return _("Offline since %(time)s", time=fmt.time(contact.last_contact_at, "short"))
        return _("Offline %(days)s days", days=fmt.number(days))
    if contact.hubs == 0:
        return _("No hub enrolled")
    return _("Never in contact")


def month_formats(lang: str) -> dict[str, Any]:
    """``fmt_month`` (``marzo de 2026``) and ``fmt_month_short`` (``mar``) in ``lang``."""
    locale = i18n.number_locale(lang)
    return {"fmt_month": lambda d: format_date(d, "LLLL y", locale=locale),
            "fmt_month_short": lambda d: format_date(d, "LLL", locale=locale)}


def lab_href(request: Request, code: str) -> str:
    return pages.root_of(request) + "/network/labs/" + quote(code, safe="/")


# -- CSV ---------------------------------------------------------------------------------

ROLLOUT_COLUMNS: Final = (
    N_("Lab code"), N_("Lab"), N_("Region"), N_("Tier"), N_("Rural or urban"),
    N_("Rollout status"), N_("Status since"), N_("Rollout history"), N_("Hub"),
    N_("Last contact"), N_("Days offline"), N_("Hub version"), N_("Backlog"),
    N_("Latitude"), N_("Longitude"))
USE_COLUMNS: Final = (
    N_("Lab code"), N_("Lab"), N_("Region"), N_("Tier"), N_("Rural or urban"),
    N_("Readings, last 7 days"), N_("Readings a week (12-week average)"),
    N_("Active devices"), N_("Runs"), N_("Runs, last 30 days"), N_("Kits"),
    N_("Kits planned"), N_("Boards"), N_("Boards planned"), N_("Kits on loan"),
    N_("Open loans"), N_("Overdue loans"), N_("Audits with missing items"),
    N_("Items missing"))


def _local(ts: int | None, zone: str) -> str:
    if ts is None:
        return ""
    at = datetime.fromtimestamp(ts / 1_000_000, tz=UTC).astimezone(ZoneInfo(zone))
    return at.strftime("%Y-%m-%d %H:%M")


def _csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]], lang: str) -> str:
    """The file: a byte order mark (Excel reads UTF-8 then), the header, ``\\r\\n`` line
    ends, the language's delimiter and decimal mark, text cells guarded against formulas
    (:func:`labtext.csvtext.guard_formula`); numbers never are."""
    delimiter, decimal = DIALECTS.get(lang, DEFAULT_DIALECT)
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        cells = []
        for value in row:
            if value is None:
                cells.append("")
            elif isinstance(value, bool):
                cells.append(str(int(value)))
            elif isinstance(value, float):
                cells.append(repr(value).replace(".", decimal))
            elif isinstance(value, int):
                cells.append(str(value))
            else:
                cells.append(guard_formula(str(value)))
        writer.writerow(cells)
    return out.getvalue()


def _rural(_: Callable[..., str], rural: bool | None) -> str:
    return "" if rural is None else _("Rural") if rural else _("Urban")


def rollout_csv(rows: Sequence[RolloutRow], lang: str, zone: str) -> str:
    """The rollout table as CSV, its header and words in ``lang``."""
    _ = i18n.gettext_of(lang)
    statuses = {k: _(v) for k, v in ROLLOUT.items()}
    tiers = {k: _(v) for k, v in TIERS.items()}
    fmt = i18n.Formats(lang, zone)
    lines = []
    for row in rows:
        lab, contact = row.lab, row.contact
        history = " → ".join(
            f"{statuses.get(c.to_status, c.to_status)} ({_local(c.at, zone)[:10]})"
            for c in row.history)
        lines.append([
            lab.code, lab.name, lab.region_name or "", tiers.get(lab.tier or "", lab.tier),
            _rural(_, lab.rural), statuses.get(lab.rollout_status or "", lab.rollout_status),
            _local(lab.rollout_changed_at, zone), history,
            contact_words(_, contact, fmt), _local(contact.last_contact_at, zone),
            contact.days_offline, contact.version, contact.backlog, lab.latitude,
            lab.longitude])
    return _csv_text([_(c) for c in ROLLOUT_COLUMNS], lines, lang)


def use_csv(rows: Sequence[UseRow], lang: str) -> str:
    """The use table as CSV, its header and words in ``lang``."""
    _ = i18n.gettext_of(lang)
    tiers = {k: _(v) for k, v in TIERS.items()}
    lines = []
    for row in rows:
        lab, use = row.lab, row.use
        lines.append([
            lab.code, lab.name, lab.region_name or "", tiers.get(lab.tier or "", lab.tier),
            _rural(_, lab.rural), use.readings_week, use.readings_weekly_avg,
            use.devices_active, use.runs, use.runs_recent, use.kits, use.kits_planned,
            use.boards, use.boards_planned, use.kits_on_loan, use.open_loans,
            use.overdue_loans, use.audits_missing, use.missing_items])
    return _csv_text([_(c) for c in USE_COLUMNS], lines, lang)


def csv_file(text: str, name: str) -> Response:
    return Response(text.encode("utf-8"), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"',
                             "Cache-Control": "no-store"})


# -- pages -------------------------------------------------------------------------------

Region = Annotated[str, Query(max_length=64, pattern=KEY_PATTERN)]


@dataclass(frozen=True)
class Chosen:
    """The filters as the form sent them (strings, for the form to show again)."""

    region: str
    tier: str
    rural: str

    def filters(self) -> Filters:
        return filters_of(self.region, self.tier, self.rural)

    def query(self, **more: Any) -> str:
        kept = [(k, v) for k, v in (("region", self.region), ("tier", self.tier),
                                     ("rural", self.rural)) if v]
        kept += [(k, v) for k, v in more.items() if v]
        return ("?" + urlencode(kept)) if kept else ""


def _common(request: Request, chosen: Chosen, labs: list[Lab]) -> dict[str, Any]:
    _ = i18n.gettext_of(pages.language_of(request))
    return {"caller": gated_caller(request), "chosen": chosen,
            "regions": views.regions(labs), "tiers": views.TIERS,
            "href": lambda code: lab_href(request, code), **_words(_)}


def _refused_on_a_hub(request: Request) -> Response | None:
    """The page that says the network's pages are on the central, on a lab's hub."""
    try:
        check_central(settings_of(request))
    except NotCentral:
        return _not_central_page(request)
    return None


@router.get("/network", dependencies=[needs(P.NETWORK_READ)])
def rollout_page(request: Request, hub: HubDep, region: Region = "", tier: Tier = "",
                 rural: Rural = "",
                 page: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 1) -> Response:
    """Every lab's rollout and its hub's contact, filtered; a map of them."""
    settings = settings_of(request)
    if (refused := _refused_on_a_hub(request)) is not None:
        return refused
    chosen = Chosen(region, tier, rural)
    now = now_us()
    with hub.engine.connect() as conn:
        every = scoped_labs(request, conn)
        labs = views.filtered(every, chosen.filters())
        shown = labs[(page - 1) * LABS_PER_PAGE:page * LABS_PER_PAGE]
        seen = views.contacts(conn=conn, codes=[lab.code for lab in labs], now=now,
                              every_s=settings.network_sync_every_s)
        changes = views.histories(conn=conn, codes=[lab.code for lab in shown])
    rows = [RolloutRow(lab, seen[lab.code], changes[lab.code]) for lab in shown]
    tally = {state: sum(1 for c in seen.values() if c.state == state) for state in STATES}
    statuses = {s: sum(1 for lab in labs if lab.rollout_status == s)
                for s in views.ROLLOUT_STATUSES}
    pages_total = max(1, -(-len(labs) // LABS_PER_PAGE))
    root = pages.root_of(request)
    _ = i18n.gettext_of(pages.language_of(request))
    fmt = i18n.Formats(pages.language_of(request), settings.timezone)
    return pages.render(
        request, "network.html", rows=rows, total=len(labs), tally=tally, statuses=statuses,
        map=views.layout(labs), page=page, pages_total=pages_total,
        page_link=lambda n: root + "/network" + chosen.query(page=str(n)),
        csv_link=root + "/network/rollout.csv" + chosen.query(),
        use_link=root + "/network/use" + chosen.query(),
        contact=lambda c: contact_words(_, c, fmt), now=now,
        online_minutes=views.ONLINE_INTERVALS * settings.network_sync_every_s // 60,
        **_common(request, chosen, every))


@router.get("/network/rollout.csv", dependencies=[needs(P.NETWORK_READ)])
def rollout_csv_page(request: Request, hub: HubDep, region: Region = "", tier: Tier = "",
                     rural: Rural = "") -> Response:
    """The rollout table (every lab the filters keep) as CSV in the person's language."""
    settings = settings_of(request)
    if (refused := _refused_on_a_hub(request)) is not None:
        return refused
    with hub.engine.connect() as conn:
        labs = views.filtered(scoped_labs(request, conn), filters_of(region, tier, rural))
        rows = views.rollout(conn=conn, labs=labs, now=now_us(),
                             every_s=settings.network_sync_every_s)
    lang = pages.language_of(request)
    return csv_file(rollout_csv(rows, lang, settings.timezone), f"rollout-{lang}.csv")


@router.get("/network/use", dependencies=[needs(P.NETWORK_READ)])
def use_page(request: Request, hub: HubDep, region: Region = "", tier: Tier = "",
             rural: Rural = "", page: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 1
             ) -> Response:
    """What each lab did and holds, and the readings of the last months."""
    if (refused := _refused_on_a_hub(request)) is not None:
        return refused
    chosen = Chosen(region, tier, rural)
    now = now_us()
    with hub.engine.connect() as conn:
        every = scoped_labs(request, conn)
        labs = views.filtered(every, chosen.filters())
        shown = labs[(page - 1) * LABS_PER_PAGE:page * LABS_PER_PAGE]
        rows = views.use(conn=conn, labs=shown, now=now)
        everything = scope_of(request, P.NETWORK_READ) is None and chosen.filters() == Filters()
        months = views.monthly(conn=conn, now=now,
                               codes=None if everything else [lab.code for lab in labs])
    pages_total = max(1, -(-len(labs) // LABS_PER_PAGE))
    root = pages.root_of(request)
    return pages.render(
        request, "network_use.html", rows=rows, total=len(labs), months=months,
        chart=bars(months), page=page, pages_total=pages_total,
        page_link=lambda n: root + "/network/use" + chosen.query(page=str(n)),
        csv_link=root + "/network/use.csv" + chosen.query(),
        rollout_link=root + "/network" + chosen.query(), weeks=views.WEEKS,
        plan=views.PLAN, **month_formats(pages.language_of(request)),
        **_common(request, chosen, every))


@router.get("/network/use.csv", dependencies=[needs(P.NETWORK_READ)])
def use_csv_page(request: Request, hub: HubDep, region: Region = "", tier: Tier = "",
                 rural: Rural = "") -> Response:
    """The use table (every lab the filters keep) as CSV in the person's language."""
    if (refused := _refused_on_a_hub(request)) is not None:
        return refused
    with hub.engine.connect() as conn:
        labs = views.filtered(scoped_labs(request, conn), filters_of(region, tier, rural))
        rows = views.use(conn=conn, labs=labs, now=now_us())
    lang = pages.language_of(request)
    return csv_file(use_csv(rows, lang), f"use-{lang}.csv")


@dataclass(frozen=True)
class Bar:
    label: str  # the month, as the template formats it
    value: int
    x: float
    y: float
    height: float


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Any]
    top: int  # the highest value


def bars(values: Sequence[tuple[Any, int]], *, width: int = 360, height: int = 150
         ) -> Chart:
    """A bar chart's geometry: one bar a value, scaled to the highest."""
    top = max((v for _, v in values), default=0)
    step = width / max(1, len(values))
    drawn = []
    for index, (label, value) in enumerate(values):
        h = 0.0 if top == 0 else round(value / top * (height - 24), 1)
        drawn.append(Bar(label, value, round(index * step + step * 0.15, 1),
                         round(height - 20 - h, 1), h))
    return Chart(width, height, drawn, top)


@router.get("/network/labs/{site:path}",
            dependencies=[needs(P.NETWORK_READ, On.path("site", "site"))])
def lab_page(request: Request, site: str, hub: HubDep) -> Response:
    """One lab: its facts, hub, rollout history, use, readings by week and by month."""
    settings = settings_of(request)
    if (refused := _refused_on_a_hub(request)) is not None:
        return refused
    now = now_us()
    with hub.engine.connect() as conn:
        found = [lab for lab in views.all_labs(conn=conn, only=[site])]
        if not found:
            raise NotFoundError(f"no lab site {site!r} in the network", what="site",
                                key=site)
        lab = found[0]
        row = views.rollout(conn=conn, labs=[lab], now=now,
                            every_s=settings.network_sync_every_s)[0]
        used = views.use(conn=conn, labs=[lab], now=now)[0].use
        weeks = views.weekly(conn=conn, code=lab.code, now=now)
        months = views.monthly(conn=conn, codes=[lab.code], now=now)
        differing, kept_apart = conflicts.list_conflicts(conn, sites=[lab.code],
                                                         limit=CONFLICTS_SHOWN)
    caller = gated_caller(request)
    may_mark = (caller.has(P.NETWORK_MANAGE)
                and caller.can(P.NETWORK_MANAGE, lab.code, tree_for(request)))
    lang = pages.language_of(request)
    _ = i18n.gettext_of(lang)
    fmt = i18n.Formats(lang, settings.timezone)
    root = pages.root_of(request)
    return pages.render(
        request, "network_lab.html", lab=lab, row=row, use=used, weeks=weeks,
        months=months, chart=bars(months), day_us=views.DAY_US, **month_formats(lang),
        contact=contact_words(_, row.contact, fmt),
        site_link=root + "/sites/" + quote(lab.code, safe="/"),
        caller=caller, back=root + "/network", conflicts=kept_apart,
        conflict_kind=lambda kind: _(CONFLICT_KINDS[kind]) if kind in CONFLICT_KINDS else kind,
        conflict_rule=lambda rule: rule_words(_, rule),
        conflicts_total=differing, may_mark=may_mark,
        seen_action=lambda c: (root + "/network/labs/" + quote(lab.code, safe="/")
                               + "/conflicts/" + c.id + "/seen"),
        use_link=root + "/network/use", **_words(_))


CONFLICTS_SHOWN = 20  # a lab's newest conflicts on its page; the API pages through all
# What kind of record a conflict is about, in the person's words (by its table).
CONFLICT_KINDS: Final = {
    "models": N_("Model"), "assets": N_("Asset"), "locations": N_("Room or shelf"),
    "stock": N_("Counted stock"), "kit_contents": N_("Kit list"),
    "kit_losses": N_("Kit part lost"), "loans": N_("Loan"), "loan_items": N_("Loan"),
    "loan_kit_returns": N_("Loan"), "repairs": N_("Repair"), "transfers": N_("Transfer"),
    "transfer_items": N_("Transfer"), "transfer_scans": N_("Transfer"),
    "transfer_discrepancies": N_("Transfer"), "audits": N_("Audit"),
    "audit_scans": N_("Audit"), "audit_counts": N_("Audit"), "audit_findings": N_("Audit"),
    "sites": N_("Site"), "events": N_("History entry"),
}


# The rule that settled a conflict, in the person's words, by its id in replica.RULES (a
# record's kind is said apart, so "own_records" leaves out what the record is).
RULE_WORDS: Final = {
    "own_history": N_("A lab sends only its own history: this entry is at %(at)s, and the "
                      "hub writes for %(site)s. It was not stored."),
    "owner_wins": N_("The owner wins: lab %(site)s owns this record and changed it while the "
                     "central's copy was changed too. The lab's version is kept; the "
                     "central's is set aside."),
    "central_catalog": N_("The central owns the catalog: the central's model is kept and "
                          "goes down to the lab; the lab's version is set aside."),
    "central_tree": N_("The central owns the tree of sites: the central's site is kept; "
                       "the hub's own version is set aside."),
    "serial_taken": N_("Serial number %(serial)s is asset %(holder)s's on the central. "
                       "%(tag)s is kept without it until one of the two is corrected."),
    "asset_elsewhere": N_("A lab owns its assets while they are at its site: this version "
                          "places %(tag)s at %(at)s, not at %(site)s."),
    "asset_owned_there": N_("The owner wins: asset %(tag)s is at %(at)s on the central, and "
                            "that lab owns it. Lab %(site)s's version is set aside."),
    "own_records": N_("A lab owns only its own records: this one is at %(at)s, and the hub "
                      "writes for %(site)s. It was not applied."),
    "transfer_not_here": N_("Transfer %(transfer)s goes from %(origin)s to %(destination)s; "
                            "lab %(site)s is neither end. It was not applied."),
}


def rule_words(_: Callable[..., str], rule: str) -> str:
    """A conflict's rule (as stored, in English) in the person's language; words no rule
    gives (cut short where stored) as they are."""
    found = replica.read_rule(rule)
    if found is None or found[0] not in RULE_WORDS:
        return rule
    rule_id, values = found
    return _(RULE_WORDS[rule_id], **values)


@router.post("/network/labs/{site:path}/conflicts/{conflict_id}/seen",
             dependencies=[needs(P.NETWORK_MANAGE, On.path("site", "site"))])
async def conflict_seen_form(request: Request, site: str, conflict_id: str,
                             hub: HubDep) -> Response:
    """A coordinator has read a conflict of the lab (the API's
    ``POST /network/conflicts/{id}/seen``); back to the lab's page."""
    await pages.signed_form(request)
    if (refused := _refused_on_a_hub(request)) is not None:
        return refused

    def mark() -> bool:
        with hub.engine.begin() as conn:
            found = conflicts.get_conflict(conn, conflict_id)
            if found is None or found.site != site:
                return False
            conflicts.mark_seen(conn, conflict_id, by=actor_of(request))
            return True

    if not await run_in_threadpool(mark):
        raise NotFoundError(f"no conflict {conflict_id!r} at lab {site!r}",
                            what="conflict", key=conflict_id)
    return RedirectResponse(pages.root_of(request) + "/network/labs/"
                            + quote(site, safe="/") + "#conflicts-title", status_code=303)

