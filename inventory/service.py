"""Service plans: an asset's planned maintenance and calibration, each every so many days.

A plan (an asset tag and a kind, ``maintenance`` or ``calibration``) holds an interval in
days and when the work was last done. It is due at last done + interval; recording the
work done (:func:`record_done`) moves "last done" to that moment, and the next time is
due one interval later. A plan set without a last-done time counts from the moment it is
set. Each change writes its event on the asset's history (``ServicePlanSet``,
``ServicePlanRemoved``, ``ServiceDone``), with the asset's site, in the same transaction.
:func:`service_due` lists the plans due by a time, for the reminders; assets lost or
retired are left out (there is nothing to service).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal, get_args

from sqlalchemy import BigInteger, Connection, delete, insert, literal, select, update

from inventory.assets import get_asset
from inventory.errors import InvalidValueError, NotFoundError
from inventory.history import record_event
from inventory.tables import assets, models, service_plans
from inventory.values import check_choice, check_note, now_us

ServiceKind = Literal["maintenance", "calibration"]
SERVICE_KINDS: tuple[str, ...] = get_args(ServiceKind)
EVERY_DAYS_MAX = 3650  # ten years: a balance's calibration is yearly, a 3D printer's weekly
US_PER_DAY = 86_400_000_000
IDLE_STATUSES = ("lost", "retired")  # assets whose plans are never due


@dataclass(frozen=True, slots=True)
class ServicePlan:
    """An asset's maintenance or calibration, every ``every_days`` since ``last_done_at``."""

    asset_tag: str
    kind: str
    every_days: int
    last_done_at: int  # microseconds since the epoch, UTC
    updated_at: int

    @property
    def due_at(self) -> int:
        """When the work is due next (microseconds since the epoch, UTC)."""
        return self.last_done_at + self.every_days * US_PER_DAY


@dataclass(frozen=True, slots=True)
class DueService:
    """A plan that is due, with what a reminder shows of its asset."""

    plan: ServicePlan
    site_code: str
    model_code: str
    model_name: str


def _plan(r: Any) -> ServicePlan:
    return ServicePlan(r.asset_tag, r.kind, r.every_days, r.last_done_at, r.updated_at)


def check_every_days(every_days: int, *, tag: str) -> int:
    """An interval in whole days, 1 to :data:`EVERY_DAYS_MAX`."""
    if isinstance(every_days, bool) or not isinstance(every_days, int) \
            or not 1 <= every_days <= EVERY_DAYS_MAX:
        raise InvalidValueError(f"the interval of a service plan of asset {tag!r} is a whole "
                                f"number of days from 1 to {EVERY_DAYS_MAX}, not {every_days!r}")
    return every_days


def find_plan(*, conn: Connection, tag: str, kind: str) -> ServicePlan | None:
    """The plan of ``kind`` of asset ``tag``, or None."""
    row = conn.execute(select(service_plans).where(service_plans.c.asset_tag == tag,
                                                   service_plans.c.kind == kind)).first()
    return None if row is None else _plan(row)


def plans_of(*, conn: Connection, tag: str) -> list[ServicePlan]:
    """The plans of asset ``tag`` (calibration, then maintenance); NotFoundError for no
    such asset."""
    get_asset(conn=conn, tag=tag)
    rows = conn.execute(select(service_plans).where(service_plans.c.asset_tag == tag)
                        .order_by(service_plans.c.kind))
    return [_plan(r) for r in rows]


def set_plan(
    *, conn: Connection, tag: str, kind: str, every_days: int, by: str,
    last_done_at: int | None = None, on_behalf_of: str | None = None,
) -> ServicePlan:
    """Plan ``kind`` of asset ``tag`` every ``every_days`` days, counting from
    ``last_done_at`` (default: the plan's own last-done time, or now for a new plan).
    Writes ServicePlanSet."""
    check_choice(kind, SERVICE_KINDS, what="the kind of service")
    check_every_days(every_days, tag=tag)
    asset = get_asset(conn=conn, tag=tag)
    now = now_us()
    if last_done_at is not None and last_done_at > now:
        raise InvalidValueError(f"the last {kind} of asset {tag!r} cannot be in the future")
    before = find_plan(conn=conn, tag=tag, kind=kind)
    done = last_done_at if last_done_at is not None else (
        before.last_done_at if before is not None else now)
    if before is None:
        conn.execute(insert(service_plans).values(
            asset_tag=tag, kind=kind, every_days=every_days, last_done_at=done, updated_at=now))
    else:
        conn.execute(update(service_plans).where(
            service_plans.c.asset_tag == tag, service_plans.c.kind == kind,
        ).values(every_days=every_days, last_done_at=done, updated_at=now))
    record_event(
        conn=conn, kind="ServicePlanSet", subject=tag, by=by, site_code=asset.site_code,
        from_state=None if before is None else {
            "service": kind, "every_days": before.every_days,
            "last_done_at": before.last_done_at},
        to_state={"service": kind, "every_days": every_days, "last_done_at": done},
        on_behalf_of=on_behalf_of,
    )
    plan = find_plan(conn=conn, tag=tag, kind=kind)
    assert plan is not None
    return plan


def _existing(conn: Connection, tag: str, kind: str) -> ServicePlan:
    check_choice(kind, SERVICE_KINDS, what="the kind of service")
    get_asset(conn=conn, tag=tag)
    plan = find_plan(conn=conn, tag=tag, kind=kind)
    if plan is None:
        raise NotFoundError(f"asset {tag!r} has no {kind} plan", what="service plan",
                            key=f"{tag}/{kind}")
    return plan


def remove_plan(*, conn: Connection, tag: str, kind: str, by: str,
                on_behalf_of: str | None = None) -> None:
    """Stop planning ``kind`` of asset ``tag``. Writes ServicePlanRemoved."""
    plan = _existing(conn, tag, kind)
    asset = get_asset(conn=conn, tag=tag)
    conn.execute(delete(service_plans).where(service_plans.c.asset_tag == tag,
                                             service_plans.c.kind == kind))
    record_event(conn=conn, kind="ServicePlanRemoved", subject=tag, by=by,
                 site_code=asset.site_code,
                 from_state={"service": kind, "every_days": plan.every_days,
                             "last_done_at": plan.last_done_at},
                 on_behalf_of=on_behalf_of)


def record_done(
    *, conn: Connection, tag: str, kind: str, by: str, note: str | None = None,
    at: int | None = None, on_behalf_of: str | None = None,
) -> ServicePlan:
    """Record ``kind`` of asset ``tag`` done (now, or at ``at`` in the past, not before the
    last time): the plan is due again one interval later. Writes ServiceDone."""
    plan = _existing(conn, tag, kind)
    note = check_note(note)
    now = now_us()
    done = now if at is None else at
    if done > now:
        raise InvalidValueError(f"the {kind} of asset {tag!r} cannot be recorded in the future")
    if done < plan.last_done_at:
        raise InvalidValueError(f"the {kind} of asset {tag!r} was last recorded later than "
                                "that time")
    asset = get_asset(conn=conn, tag=tag)
    conn.execute(update(service_plans).where(
        service_plans.c.asset_tag == tag, service_plans.c.kind == kind,
    ).values(last_done_at=done, updated_at=now))
    record_event(conn=conn, kind="ServiceDone", subject=tag, by=by, site_code=asset.site_code,
                 from_state={"service": kind, "last_done_at": plan.last_done_at},
                 to_state={"service": kind, "last_done_at": done}, note=note,
                 on_behalf_of=on_behalf_of)
    found = find_plan(conn=conn, tag=tag, kind=kind)
    assert found is not None
    return found


def service_due(*, conn: Connection, by: int, sites: Collection[str] | None = None
                ) -> list[DueService]:
    """Every plan due at ``by`` or before (microseconds, UTC), of assets neither lost nor
    retired (at ``sites`` when given), by site, tag and kind."""
    # in 64 bits: PostgreSQL multiplies two integers in 32 and overflows
    due = service_plans.c.last_done_at + service_plans.c.every_days * literal(
        US_PER_DAY, BigInteger)
    query = (
        select(service_plans, assets.c.site_code, assets.c.model_code,
               models.c.name.label("model_name"))
        .join(assets, assets.c.tag == service_plans.c.asset_tag)
        .join(models, models.c.code == assets.c.model_code)
        .where(due <= by, assets.c.status.not_in(IDLE_STATUSES))
        .order_by(assets.c.site_code, service_plans.c.asset_tag, service_plans.c.kind)
    )
    if sites is not None:
        query = query.where(assets.c.site_code.in_(sorted(sites)))
    return [DueService(_plan(r), r.site_code, r.model_code, r.model_name)
            for r in conn.execute(query)]
