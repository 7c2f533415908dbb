"""The ministry's view of the network, on the central: what the rollout and use pages,
their CSV files and ``/api/v1/network/rollout`` and ``/use`` show.

Everything is read from the central's ordinary tables, a few grouped queries per page
whatever the number of labs (never one query per lab):

- the labs: ``sites`` of kind ``site`` not retired, each with its region (the nearest
  ancestor of kind ``region``), tier, rural or urban, position and rollout status; their
  rollout history is the ``SiteRolloutChanged`` events;
- each lab's hub: ``network_hubs`` (the hubs not revoked; the one heard from last speaks
  for the lab): its last contact, version and backlog. A lab is **online** when its hub
  was heard within :data:`ONLINE_INTERVALS` sync intervals (``network_sync_every_s``),
  **offline** (for whole days) after that, and **never** when no hub of it ever called
  (or none is enrolled);
- use: ``network_daily`` (readings a day, kept up as batches arrive), the central's
  ``devices`` and ``runs`` rows whose ``site`` is the lab, and the replicated inventory
  (``assets``, ``loans``, ``audits`` and ``audit_findings`` with ``site_code`` = the lab).

The plan of equipment (:data:`PLAN`) is the number of robotics kits and microcontroller
boards each tier of lab is meant to have; the inventory keeps no plan of its own.

Scope: every function takes ``only``, the site codes the caller may see (None: all), as
:func:`labhub.access.gate.scope_of` gives it for ``network.read``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Final, Literal

from sqlalchemy import Connection, and_, case, func, or_, select

from firmware_bridge.registry import devices
from inventory.sites import KIT_CATEGORY
from inventory.tables import (
    assets,
    audit_findings,
    audits,
    events,
    kit_contents,
    loans,
    models,
    sites,
)
from labhub.network.tables import network_daily, network_hubs
from sensors.storage import runs

DAY_US: Final = 86_400_000_000
WEEK_US: Final = 7 * DAY_US
ONLINE_INTERVALS: Final = 3  # a hub heard within 3 sync intervals is online
WEEKS: Final = 12  # the weeks a lab's page shows, and the use table's weekly average
MONTHS: Final = 12  # the months of the trends
RUNS_RECENT_DAYS: Final = 30
BOARD_CATEGORY: Final = "microcontroller_board"
TIERS: Final = ("lab_center", "lab_point", "lab_spark", "mobile_lab")
ROLLOUT_STATUSES: Final = ("planned", "installing", "active", "paused", "closed")
CHUNK: Final = 2000  # site codes per IN list

# The equipment each tier of lab is meant to have: (robotics kits, microcontroller
# boards). A kit is an asset of a ``robotics_kit`` model or one with contents; a board one
# of a ``microcontroller_board`` model; retired ones do not count.
PLAN: Final[dict[str, tuple[int, int]]] = {
    "lab_center": (20, 40),
    "lab_point": (10, 20),
    "lab_spark": (4, 8),
    "mobile_lab": (8, 16),
}

State = Literal["online", "offline", "never"]


@dataclass(frozen=True)
class Filters:
    """The rollout and use pages' filters: a region's code, a tier, rural (True) or urban
    (False); None: any."""

    region: str | None = None
    tier: str | None = None
    rural: bool | None = None


@dataclass(frozen=True)
class Lab:
    """A lab site as the views show it."""

    code: str
    name: str
    tier: str | None
    region: str | None  # the code of its region, None when it hangs under none
    region_name: str | None
    rural: bool | None
    latitude: float | None
    longitude: float | None
    rollout_status: str | None
    rollout_changed_at: int | None


@dataclass(frozen=True)
class Contact:
    """A lab's hub as the central last heard it."""

    state: State
    hubs: int  # hubs enrolled for the lab and not revoked
    last_contact_at: int | None = None
    days_offline: int | None = None  # whole days since the last contact, when offline
    version: str | None = None
    backlog: int | None = None


@dataclass(frozen=True)
class Change:
    """One change of a lab's rollout status (a ``SiteRolloutChanged`` event)."""

    at: int
    from_status: str | None
    to_status: str
    by: str
    note: str | None


@dataclass(frozen=True)
class RolloutRow:
    lab: Lab
    contact: Contact
    history: list[Change] = field(default_factory=list)


@dataclass(frozen=True)
class Use:
    """What a lab did and holds."""

    readings_week: int = 0  # the last 7 days
    readings_weekly_avg: int = 0  # a week on average over the last WEEKS weeks
    devices_active: int = 0  # online, or seen within a week
    runs: int = 0
    runs_recent: int = 0  # started in the last RUNS_RECENT_DAYS days
    kits: int = 0
    boards: int = 0
    kits_on_loan: int = 0
    open_loans: int = 0
    overdue_loans: int = 0
    audits_missing: int = 0  # finished audits that found items missing
    missing_items: int = 0  # the items those audits found missing
    kits_planned: int | None = None  # PLAN for the lab's tier (None: no tier)
    boards_planned: int | None = None


@dataclass(frozen=True)
class UseRow:
    lab: Lab
    use: Use


def _chunks(codes: Sequence[str]) -> Iterable[list[str]]:
    for i in range(0, len(codes), CHUNK):
        yield list(codes[i:i + CHUNK])


# -- labs and regions --------------------------------------------------------------------

def all_labs(*, conn: Connection, only: Collection[str] | None = None) -> list[Lab]:
    """Every lab site not retired that ``only`` lets the caller see, by region then name."""
    rows = conn.execute(select(
        sites.c.code, sites.c.name, sites.c.kind, sites.c.parent_code, sites.c.tier,
        sites.c.rural, sites.c.latitude, sites.c.longitude, sites.c.rollout_status,
        sites.c.rollout_changed_at, sites.c.retired_at)).all()
    by_code = {r.code: r for r in rows}

    def region_of(code: str) -> str | None:
        seen = 0
        parent = by_code[code].parent_code
        while parent is not None and parent in by_code and seen < 64:
            if by_code[parent].kind == "region":
                return str(parent)
            parent, seen = by_code[parent].parent_code, seen + 1
        return None

    labs = []
    for r in rows:
        if r.kind != "site" or r.retired_at is not None or (
                only is not None and r.code not in only):
            continue
        region = region_of(r.code)
        labs.append(Lab(r.code, r.name, r.tier, region,
                        by_code[region].name if region else None,
                        None if r.rural is None else bool(r.rural), r.latitude, r.longitude,
                        r.rollout_status, r.rollout_changed_at))
    labs.sort(key=lambda lab: (lab.region_name or "\uffff", lab.name.casefold(), lab.code))
    return labs


def regions(labs: Iterable[Lab]) -> list[tuple[str, str]]:
    """The regions of ``labs``: (code, name) by name."""
    found = {lab.region: lab.region_name or lab.region for lab in labs if lab.region}
    return sorted(found.items(), key=lambda item: (item[1].casefold(), item[0]))


def filtered(labs: Iterable[Lab], filters: Filters) -> list[Lab]:
    return [lab for lab in labs
            if (filters.region is None or lab.region == filters.region)
            and (filters.tier is None or lab.tier == filters.tier)
            and (filters.rural is None or lab.rural is filters.rural)]


# -- rollout -----------------------------------------------------------------------------

def contact_state(last_contact_at: int | None, *, now: int, every_s: int) -> State:
    """online (heard within :data:`ONLINE_INTERVALS` sync intervals), offline, never."""
    if last_contact_at is None:
        return "never"
    if now - last_contact_at <= ONLINE_INTERVALS * every_s * 1_000_000:
        return "online"
    return "offline"


def contacts(*, conn: Connection, codes: Sequence[str], now: int, every_s: int
             ) -> dict[str, Contact]:
    """Each lab's hub as last heard: the hub not revoked with the latest contact."""
    best: dict[str, tuple[int, int, str | None, int | None]] = {}
    counts: dict[str, int] = {}
    for chunk in _chunks(codes):
        for r in conn.execute(
                select(network_hubs.c.site, network_hubs.c.last_contact_at,
                       network_hubs.c.version, network_hubs.c.backlog)
                .where(network_hubs.c.site.in_(chunk), network_hubs.c.revoked_at.is_(None))):
            counts[r.site] = counts.get(r.site, 0) + 1
            at = -1 if r.last_contact_at is None else int(r.last_contact_at)
            if r.site not in best or at > best[r.site][0]:
                best[r.site] = (at, 0, r.version, r.backlog)
    found = {}
    for code in codes:
        if code not in best:
            found[code] = Contact("never", counts.get(code, 0))
            continue
        at, _, version, backlog = best[code]
        last = None if at < 0 else at
        state = contact_state(last, now=now, every_s=every_s)
        days = (now - last) // DAY_US if state == "offline" and last is not None else None
        found[code] = Contact(state, counts[code], last, days, version,
                              None if backlog is None else int(backlog))
    return found


def histories(*, conn: Connection, codes: Sequence[str]) -> dict[str, list[Change]]:
    """Each lab's rollout changes, oldest first."""
    import json

    found: dict[str, list[Change]] = {code: [] for code in codes}
    for chunk in _chunks(codes):
        for r in conn.execute(
                select(events.c.subject, events.c.at, events.c.by, events.c.note,
                       events.c.from_state, events.c.to_state)
                .where(events.c.subject.in_(chunk), events.c.kind == "SiteRolloutChanged")
                .order_by(events.c.subject, events.c.at)):
            before = json.loads(r.from_state or "{}").get("rollout_status")
            after = json.loads(r.to_state or "{}").get("rollout_status")
            if after is not None:
                found[r.subject].append(Change(r.at, before, after, r.by, r.note))
    return found


def rollout(*, conn: Connection, labs: Sequence[Lab], now: int, every_s: int,
            history: bool = True) -> list[RolloutRow]:
    """The rollout table of ``labs``: each with its hub's contact and (``history``) its
    rollout changes."""
    codes = [lab.code for lab in labs]
    seen = contacts(conn=conn, codes=codes, now=now, every_s=every_s)
    changes = histories(conn=conn, codes=codes) if history else {}
    return [RolloutRow(lab, seen[lab.code], changes.get(lab.code, [])) for lab in labs]


# -- use ---------------------------------------------------------------------------------

def today(now: int) -> int:
    """The day of ``now`` (µs) in days since 1970-01-01, UTC: ``network_daily.day``."""
    return now // DAY_US


def use(*, conn: Connection, labs: Sequence[Lab], now: int) -> list[UseRow]:
    """The use table of ``labs``: a few grouped queries per :data:`CHUNK` labs."""
    codes = [lab.code for lab in labs]
    found: dict[str, dict[str, int]] = {code: {} for code in codes}
    r: Any
    day = today(now)
    week_from, weeks_from = day - 6, day - 7 * WEEKS + 1
    kits = or_(models.c.category == KIT_CATEGORY,
               assets.c.tag.in_(select(kit_contents.c.kit_tag).distinct()))
    for chunk in _chunks(codes):
        for r in conn.execute(
                select(network_daily.c.site,
                       func.sum(case((network_daily.c.day >= week_from,
                                      network_daily.c.readings), else_=0)).label("week"),
                       func.sum(network_daily.c.readings).label("weeks"))
                .where(network_daily.c.site.in_(chunk), network_daily.c.day >= weeks_from,
                       network_daily.c.day <= day)
                .group_by(network_daily.c.site)):
            found[r.site] |= {"readings_week": int(r.week or 0),
                              "readings_weekly_avg": round(int(r.weeks or 0) / WEEKS)}
        for r in conn.execute(
                select(devices.c.site, func.count().label("n"))
                .where(devices.c.site.in_(chunk),
                       or_(devices.c.online.is_(True), devices.c.last_seen >= now - WEEK_US))
                .group_by(devices.c.site)):
            found[r.site]["devices_active"] = int(r.n)
        recent = now - RUNS_RECENT_DAYS * DAY_US
        for r in conn.execute(
                select(runs.c.site, func.count().label("n"),
                       func.sum(case((runs.c.started_at >= recent, 1), else_=0)).label("new"))
                .where(runs.c.site.in_(chunk)).group_by(runs.c.site)):
            found[r.site] |= {"runs": int(r.n), "runs_recent": int(r.new or 0)}
        is_kit = case((kits, 1), else_=0)
        for r in conn.execute(
                select(assets.c.site_code,
                       func.sum(is_kit).label("kits"),
                       func.sum(case((models.c.category == BOARD_CATEGORY, 1), else_=0))
                       .label("boards"),
                       func.sum(case((and_(kits, assets.c.status == "on_loan"), 1), else_=0))
                       .label("lent"))
                .select_from(assets.join(models, models.c.code == assets.c.model_code))
                .where(assets.c.site_code.in_(chunk), assets.c.status != "retired")
                .group_by(assets.c.site_code)):
            found[r.site_code] |= {"kits": int(r.kits or 0), "boards": int(r.boards or 0),
                                   "kits_on_loan": int(r.lent or 0)}
        for r in conn.execute(
                select(loans.c.site_code, func.count().label("n"),
                       func.sum(case((loans.c.due_at < now, 1), else_=0)).label("late"))
                .where(loans.c.site_code.in_(chunk), loans.c.closed_at.is_(None))
                .group_by(loans.c.site_code)):
            found[r.site_code] |= {"open_loans": int(r.n), "overdue_loans": int(r.late or 0)}
        for r in conn.execute(
                select(audits.c.site_code,
                       func.count(func.distinct(audits.c.uuid)).label("audits"),
                       func.count().label("items"))
                .select_from(audits.join(audit_findings,
                                         audit_findings.c.audit_uuid == audits.c.uuid))
                .where(audits.c.site_code.in_(chunk), audits.c.finished_at.is_not(None),
                       audit_findings.c.finding == "missing")
                .group_by(audits.c.site_code)):
            found[r.site_code] |= {"audits_missing": int(r.audits),
                                   "missing_items": int(r.items)}
    rows = []
    for lab in labs:
        planned = PLAN.get(lab.tier or "")
        rows.append(UseRow(lab, Use(**found[lab.code],
                                    kits_planned=planned[0] if planned else None,
                                    boards_planned=planned[1] if planned else None)))
    return rows


def week_start(day: int) -> int:
    """The Monday of ``day``'s week (1970-01-01, day 0, was a Thursday)."""
    return day - (day + 3) % 7


def weekly(*, conn: Connection, code: str, now: int, weeks: int = WEEKS
           ) -> list[tuple[int, int]]:
    """Readings a week of one lab, the last ``weeks`` weeks (this one last, partly gone):
    (the week's Monday as days since 1970, readings), weeks without any included."""
    last = week_start(today(now))
    first = last - 7 * (weeks - 1)
    totals = dict.fromkeys(range(first, last + 1, 7), 0)
    for r in conn.execute(
            select(network_daily.c.day, network_daily.c.readings)
            .where(network_daily.c.site == code, network_daily.c.day >= first,
                   network_daily.c.day <= today(now))):
        totals[week_start(int(r.day))] += int(r.readings)
    return sorted(totals.items())


def month_start(now: int, back: int) -> date:
    """The first day of the month ``back`` months before ``now``'s (UTC)."""
    at = datetime.fromtimestamp(now / 1_000_000, tz=UTC)
    index = at.year * 12 + at.month - 1 - back
    return date(index // 12, index % 12 + 1, 1)


def monthly(*, conn: Connection, codes: Sequence[str] | None, now: int,
            months: int = MONTHS) -> list[tuple[date, int]]:
    """Readings a month of ``codes`` together (None: every lab, read without a list of
    codes), the last ``months`` months (this one last, partly gone): (the month's first
    day, readings), months without any included."""
    first = month_start(now, months - 1)
    first_day = (first - date(1970, 1, 1)).days
    totals = {month_start(now, back): 0 for back in range(months - 1, -1, -1)}
    if codes is not None and not codes:
        return list(totals.items())
    by_day: dict[int, int] = {}
    for chunk in [None] if codes is None else _chunks(codes):
        query = (select(network_daily.c.day, func.sum(network_daily.c.readings).label("n"))
                 .where(network_daily.c.day >= first_day, network_daily.c.day <= today(now))
                 .group_by(network_daily.c.day))
        if chunk is not None:
            query = query.where(network_daily.c.site.in_(chunk))
        for r in conn.execute(query):
            by_day[int(r.day)] = by_day.get(int(r.day), 0) + int(r.n or 0)
    epoch = date(1970, 1, 1).toordinal()
    for day, n in by_day.items():
        when = date.fromordinal(epoch + day)
        totals[date(when.year, when.month, 1)] += n
    return list(totals.items())


# -- the map -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Point:
    lab: Lab
    x: float
    y: float


@dataclass(frozen=True)
class MapLayout:
    """Where each lab with a position goes on a ``width`` x ``height`` picture, and where
    each region's name goes (the middle of its labs)."""

    width: int
    height: int
    points: list[Point]
    labels: list[tuple[str, float, float]]
    unplaced: int  # labs without latitude and longitude


def layout(labs: Sequence[Lab], *, width: int = 400, height: int = 320, pad: int = 24
           ) -> MapLayout:
    """A plain equirectangular projection fitted to the labs: longitude to x, latitude to
    y, both scaled by the same factor (longitude shrunk by the cosine of the middle
    latitude, so distances read true near the labs), centred in the picture."""
    placed = [lab for lab in labs if lab.latitude is not None and lab.longitude is not None]
    if not placed:
        return MapLayout(width, height, [], [], len(labs))
    lats = [float(lab.latitude) for lab in placed]  # type: ignore[arg-type]
    lons = [float(lab.longitude) for lab in placed]  # type: ignore[arg-type]
    shrink = max(0.1, math.cos(math.radians((max(lats) + min(lats)) / 2)))
    span_x = max((max(lons) - min(lons)) * shrink, 1e-6)
    span_y = max(max(lats) - min(lats), 1e-6)
    scale = min((width - 2 * pad) / span_x, (height - 2 * pad) / span_y)
    off_x = (width - span_x * scale) / 2
    off_y = (height - span_y * scale) / 2

    def where(lat: float, lon: float) -> tuple[float, float]:
        return (round(off_x + (lon - min(lons)) * shrink * scale, 1),
                round(off_y + (max(lats) - lat) * scale, 1))

    points = [Point(lab, *where(float(lab.latitude), float(lab.longitude)))  # type: ignore[arg-type]
              for lab in placed]
    groups: dict[str, list[Point]] = {}
    for point in points:
        if point.lab.region:
            groups.setdefault(point.lab.region_name or point.lab.region, []).append(point)
    labels = [(name, round(sum(p.x for p in group) / len(group), 1),
               round(min(p.y for p in group) - 16, 1))
              for name, group in sorted(groups.items())]
    labels = [(name, min(max(x, 60.0), width - 60.0), max(y, 16.0)) for name, x, y in labels]
    return MapLayout(width, height, points, labels, len(labs) - len(placed))
