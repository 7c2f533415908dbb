"""Sites: the tree of a lab network, from the network down to each lab.

A network (a ministry's programme, a regional network of labs) holds regions
(departments or states), a region holds municipalities, and lab sites hang under a
municipality or directly under a region. A lab site has a tier (Lab Center, Lab Point,
Lab Spark, mobile lab), rural or urban, coordinates, the school or institution that
hosts it, and a rollout status with the time it last changed. Every site is known by a
stable code. Rooms and shelves inside a site are ``inventory.locations``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

from sqlalchemy import CTE, Connection, insert, select, update

from inventory.errors import (
    ConflictError,
    InvalidTransitionError,
    InvalidValueError,
    NotFoundError,
)
from inventory.history import record_event
from inventory.tables import sites
from inventory.values import check_choice, check_key, check_text, now_us

SiteKind = Literal["network", "region", "municipality", "site"]
Tier = Literal["lab_center", "lab_point", "lab_spark", "mobile_lab"]
RolloutStatus = Literal["planned", "installing", "active", "paused", "closed"]
SITE_KINDS: tuple[str, ...] = get_args(SiteKind)
TIERS: tuple[str, ...] = get_args(Tier)
ROLLOUT_STATUSES: tuple[str, ...] = get_args(RolloutStatus)

# Which kind of site may hang under which: a lab site under a municipality, or directly
# under a region where a network does not track municipalities.
ALLOWED_PARENTS: dict[str, tuple[str, ...]] = {
    "network": (),
    "region": ("network",),
    "municipality": ("region",),
    "site": ("municipality", "region"),
}
LAB_FIELDS = ("tier", "rural", "latitude", "longitude", "institution", "rollout_status")


@dataclass(frozen=True, slots=True)
class Site:
    """A node of the network tree; the lab fields are None except for a lab site."""

    code: str
    name: str
    kind: str
    parent_code: str | None
    tier: str | None
    rural: bool | None
    latitude: float | None
    longitude: float | None
    institution: str | None
    rollout_status: str | None
    rollout_changed_at: int | None


def _site(r: Any) -> Site:
    return Site(
        r.code, r.name, r.kind, r.parent_code, r.tier, None if r.rural is None else bool(r.rural),
        r.latitude, r.longitude, r.institution, r.rollout_status, r.rollout_changed_at,
    )


def find_site(*, conn: Connection, code: str) -> Site | None:
    """The site with ``code``, or None."""
    row = conn.execute(select(sites).where(sites.c.code == code)).first()
    return None if row is None else _site(row)


def get_site(*, conn: Connection, code: str) -> Site:
    """The site with ``code``; NotFoundError if there is none."""
    site = find_site(conn=conn, code=code)
    if site is None:
        raise NotFoundError(f"no site with code {code!r}", what="site", key=code)
    return site


def create_site(
    *,
    conn: Connection,
    code: str,
    name: str,
    kind: SiteKind,
    by: str,
    parent_code: str | None = None,
    tier: Tier | None = None,
    rural: bool | None = None,
    latitude: float | None = None,
    longitude: float | None = None,
    institution: str | None = None,
    rollout_status: RolloutStatus = "planned",
) -> Site:
    """Add a node to the tree, checking that it fits under its parent; writes SiteCreated."""
    code = check_key(code, what="site code")
    name = check_text(name, what=f"the name of site {code!r}")
    check_choice(kind, SITE_KINDS, what="site kind")
    if kind == "site":
        if tier is None:
            raise InvalidValueError(f"lab site {code!r} needs a tier: one of {', '.join(TIERS)}")
        check_choice(tier, TIERS, what=f"the tier of site {code!r}")
        check_choice(rollout_status, ROLLOUT_STATUSES, what=f"the rollout status of {code!r}")
        if (latitude is None) != (longitude is None):
            raise InvalidValueError(f"site {code!r} needs both latitude and longitude, or neither")
        if latitude is not None and not -90 <= latitude <= 90:
            raise InvalidValueError(f"latitude {latitude} of site {code!r} is not in -90..90")
        if longitude is not None and not -180 <= longitude <= 180:
            raise InvalidValueError(f"longitude {longitude} of site {code!r} is not in -180..180")
        if institution is not None:
            institution = check_text(institution, what=f"the institution of site {code!r}")
        rural = bool(rural)
    else:
        given = [
            f for f, v in zip(
                LAB_FIELDS[:-1], (tier, rural, latitude, longitude, institution), strict=True
            ) if v is not None
        ]
        if given:
            raise InvalidValueError(
                f"{kind} {code!r} is not a lab site: {', '.join(given)} belong to lab sites only"
            )
    existing = find_site(conn=conn, code=code)
    if existing is not None:
        raise ConflictError(
            f"site code {code!r} is already used by {existing.kind} {existing.name!r}"
            + (f" under {existing.parent_code}" if existing.parent_code else "")
        )
    _check_parent(conn=conn, code=code, kind=kind, parent_code=parent_code)
    now = now_us()
    values: dict[str, Any] = {
        "code": code, "name": name, "kind": kind, "parent_code": parent_code, "tier": tier,
        "rural": rural if kind == "site" else None, "latitude": latitude,
        "longitude": longitude, "institution": institution,
        "rollout_status": rollout_status if kind == "site" else None,
        "rollout_changed_at": now if kind == "site" else None,
    }
    conn.execute(insert(sites).values(**values))
    state = {k: v for k, v in values.items() if v is not None and k != "rollout_changed_at"}
    record_event(
        conn=conn, kind="SiteCreated", subject=code, by=by, site_code=code, to_state=state,
        at=now,
    )
    return get_site(conn=conn, code=code)


def _check_parent(*, conn: Connection, code: str, kind: str, parent_code: str | None) -> None:
    allowed = ALLOWED_PARENTS[kind]
    if not allowed:
        if parent_code is not None:
            raise InvalidValueError(f"network {code!r} is the top of a tree and has no parent")
        return
    if parent_code is None:
        raise InvalidValueError(f"{kind} {code!r} needs a parent: a {' or '.join(allowed)}")
    parent = find_site(conn=conn, code=parent_code)
    if parent is None:
        raise NotFoundError(
            f"parent {parent_code!r} of {kind} {code!r} is not a site", what="site",
            key=parent_code,
        )
    if parent.kind not in allowed:
        raise InvalidValueError(
            f"{kind} {code!r} cannot be under {parent.kind} {parent_code!r}: "
            f"its parent must be a {' or '.join(allowed)}"
        )


def subtree(code: str) -> CTE:
    """A recursive CTE of the codes of ``code`` and all its descendants (column ``code``).

    Plain ``WITH RECURSIVE``: the same SQL runs on SQLite and PostgreSQL.
    """
    tree = select(sites.c.code).where(sites.c.code == code).cte("subtree", recursive=True)
    return tree.union_all(select(sites.c.code).where(sites.c.parent_code == tree.c.code))


def list_sites(
    *, conn: Connection, under: str | None = None, kind: SiteKind | None = None
) -> list[Site]:
    """Sites by code: all, or ``under`` and its descendants; optionally only one kind."""
    query = select(sites).order_by(sites.c.code)
    if under is not None:
        get_site(conn=conn, code=under)
        tree = subtree(under)
        query = query.where(sites.c.code.in_(select(tree.c.code)))
    if kind is not None:
        check_choice(kind, SITE_KINDS, what="site kind")
        query = query.where(sites.c.kind == kind)
    return [_site(r) for r in conn.execute(query)]


def set_rollout_status(
    *,
    conn: Connection,
    code: str,
    status: RolloutStatus,
    by: str,
    note: str | None = None,
) -> Site:
    """Move a lab site along its rollout; ``closed`` is final. Writes SiteRolloutChanged."""
    site = get_site(conn=conn, code=code)
    check_choice(status, ROLLOUT_STATUSES, what="rollout status")
    if site.kind != "site":
        raise InvalidValueError(f"{site.kind} {code!r} is not a lab site and has no rollout")
    if site.rollout_status == status:
        raise InvalidTransitionError(f"site {code!r} is already {status}")
    if site.rollout_status == "closed":
        raise InvalidTransitionError(f"site {code!r} is closed; a closed site cannot be {status}")
    event = record_event(
        conn=conn, kind="SiteRolloutChanged", subject=code, by=by, site_code=code,
        from_state={"rollout_status": site.rollout_status}, to_state={"rollout_status": status},
        note=note,
    )
    conn.execute(
        update(sites).where(sites.c.code == code).values(
            rollout_status=status, rollout_changed_at=event.at
        )
    )
    return get_site(conn=conn, code=code)
