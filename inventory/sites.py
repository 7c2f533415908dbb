"""Sites: the tree of a lab network, from the network down to each lab.

A network (a ministry's programme, a regional network of labs) holds regions
(departments or states), a region holds municipalities, and lab sites hang under a
municipality or directly under a region. A lab site has a tier (Lab Center, Lab Point,
Lab Spark, mobile lab), rural or urban, coordinates, the school or institution that
hosts it, and a rollout status with the time it last changed. Every site is known by a
stable code. Rooms and shelves inside a site are ``inventory.locations``.

A coordinator corrects a site with :func:`edit_site` (its name, place in the tree and lab
fields; only the fields given change), guarded by the site's ``version``; deleting a site
made in error and retiring one that was used are ``inventory.corrections``. What each lab
holds and has under way (assets by status, kits, open and overdue loans, open transfers,
its last audit) is :func:`site_counts`, a few grouped queries for any number of labs.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from sqlalchemy import CTE, Connection, case, func, insert, or_, select

from inventory.errors import (
    ConflictError,
    InvalidTransitionError,
    InvalidValueError,
    NotFoundError,
)
from inventory.history import record_event
from inventory.tables import (
    assets,
    audit_findings,
    audits,
    kit_contents,
    loans,
    manifest_items,
    models,
    rotation_stops,
    rotations,
    sites,
    transfers,
)
from inventory.values import check_choice, check_key, check_note, check_text, now_us
from inventory.versions import check_version, write_versioned

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
# What :func:`edit_site` may change. The code is the stable key (a wrong one is a site to
# delete and create again); the kind decides what hangs under it; the rollout status has
# its own steps (:func:`set_rollout_status`).
EDITABLE_FIELDS = ("name", "parent_code", "tier", "rural", "latitude", "longitude",
                   "institution")


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
    version: int = 1  # +1 on every change (optimistic concurrency)
    retired_at: int | None = None  # when it was retired; None while in use


def _site(r: Any) -> Site:
    return Site(
        r.code, r.name, r.kind, r.parent_code, r.tier, None if r.rural is None else bool(r.rural),
        r.latitude, r.longitude, r.institution, r.rollout_status, r.rollout_changed_at,
        r.version, r.retired_at,
    )


def check_site_version(site: Site, expected_version: int | None) -> None:
    """StaleVersionError if the writer read another version of ``site`` than is stored."""
    check_version(what="site", key=site.code, version=site.version,
                  expected_version=expected_version)


def write_site(*, conn: Connection, site: Site, **values: Any) -> None:
    """Store changed fields of ``site`` (read in this transaction) and bump its version;
    StaleVersionError if another transaction changed it in between."""
    write_versioned(conn=conn, table=sites, what="site", key=site.code,
                    version=site.version, **values)


def check_not_retired(site: Site, *, doing: str) -> None:
    """InvalidTransitionError if ``site`` was retired: nothing new goes to a retired site."""
    if site.retired_at is not None:
        raise InvalidTransitionError(f"{site.kind} {site.code!r} is retired: {doing}")


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


# -- the rules of a site's fields: one function each, called by create_site and by the CSV
# import (inventory.csvio.importing) for every row, so the two cannot drift.


def check_site_code(code: str) -> str:
    """``code`` as a site code (a stable key); InvalidValueError if malformed."""
    return check_key(code, what="site code")


def check_site_name(name: str, *, code: str | None) -> str:
    """A site's name, stripped; InvalidValueError if empty or too long."""
    return check_text(name, what=f"the name of site {code!r}")


def check_site_kind(kind: str) -> str:
    """``kind`` if it is one of :data:`SITE_KINDS`, else InvalidValueError naming them."""
    return check_choice(kind, SITE_KINDS, what="site kind")


def check_tier(tier: str | None, *, code: str | None) -> str:
    """A lab site's tier: required, one of :data:`TIERS`; InvalidValueError otherwise."""
    if tier is None:
        raise InvalidValueError(f"lab site {code!r} needs a tier: one of {', '.join(TIERS)}")
    return check_choice(tier, TIERS, what=f"the tier of site {code!r}")


def check_rollout_status(status: str, *, code: str | None) -> str:
    """``status`` if it is one of :data:`ROLLOUT_STATUSES`, else InvalidValueError."""
    return check_choice(status, ROLLOUT_STATUSES, what=f"the rollout status of {code!r}")


def check_both_coordinates(*, code: str | None, latitude: bool, longitude: bool) -> None:
    """InvalidValueError unless a site has both coordinates (given: True) or neither."""
    if latitude != longitude:
        raise InvalidValueError(f"site {code!r} needs both latitude and longitude, or neither")


def check_latitude(latitude: float, *, code: str | None) -> float:
    """``latitude`` if it is in -90..90 (NaN is not), else InvalidValueError."""
    if not -90 <= latitude <= 90:
        raise InvalidValueError(f"latitude {latitude} of site {code!r} is not in -90..90")
    return latitude


def check_longitude(longitude: float, *, code: str | None) -> float:
    """``longitude`` if it is in -180..180 (NaN is not), else InvalidValueError."""
    if not -180 <= longitude <= 180:
        raise InvalidValueError(f"longitude {longitude} of site {code!r} is not in -180..180")
    return longitude


def check_institution(institution: str, *, code: str | None) -> str:
    """The institution hosting a lab site, stripped; InvalidValueError if empty or too long."""
    return check_text(institution, what=f"the institution of site {code!r}")


def check_no_lab_fields(*, kind: str, code: str | None, given: list[str]) -> None:
    """InvalidValueError if a network, region or municipality is given lab fields."""
    if given:
        raise InvalidValueError(
            f"{kind} {code!r} is not a lab site: {', '.join(given)} belong to lab sites only"
        )


def check_parent(
    *, code: str | None, kind: str, parent_code: str | None, parent_kind: str | None
) -> None:
    """The tree's rule: a network has no parent, every other kind has one of the kinds in
    :data:`ALLOWED_PARENTS`. ``parent_kind`` is the kind of ``parent_code``, which the
    caller found (in the database, or on an earlier row of a file)."""
    allowed = ALLOWED_PARENTS[kind]
    if not allowed:
        if parent_code is not None:
            raise InvalidValueError(f"network {code!r} is the top of a tree and has no parent")
        return
    if parent_code is None:
        raise InvalidValueError(f"{kind} {code!r} needs a parent: a {' or '.join(allowed)}")
    if parent_kind not in allowed:
        raise InvalidValueError(
            f"{kind} {code!r} cannot be under {parent_kind} {parent_code!r}: "
            f"its parent must be a {' or '.join(allowed)}"
        )


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
    code = check_site_code(code)
    name = check_site_name(name, code=code)
    check_site_kind(kind)
    if kind == "site":
        check_tier(tier, code=code)
        check_rollout_status(rollout_status, code=code)
        check_both_coordinates(code=code, latitude=latitude is not None,
                               longitude=longitude is not None)
        if latitude is not None:
            check_latitude(latitude, code=code)
        if longitude is not None:
            check_longitude(longitude, code=code)
        if institution is not None:
            institution = check_institution(institution, code=code)
        rural = bool(rural)
    else:
        check_no_lab_fields(kind=kind, code=code, given=[
            f for f, v in zip(
                LAB_FIELDS[:-1], (tier, rural, latitude, longitude, institution), strict=True
            ) if v is not None
        ])
    existing = find_site(conn=conn, code=code)
    if existing is not None:
        raise ConflictError(
            f"site code {code!r} is already used by {existing.kind} {existing.name!r}"
            + (f" under {existing.parent_code}" if existing.parent_code else "")
        )
    _check_parent(conn=conn, code=code, kind=kind, parent_code=parent_code)
    if parent_code is not None:
        check_not_retired(get_site(conn=conn, code=parent_code),
                          doing=f"{code!r} cannot be added under it")
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
    parent_kind = None
    if parent_code is not None and ALLOWED_PARENTS[kind]:
        parent = find_site(conn=conn, code=parent_code)
        if parent is None:
            raise NotFoundError(
                f"parent {parent_code!r} of {kind} {code!r} is not a site", what="site",
                key=parent_code,
            )
        parent_kind = parent.kind
    check_parent(code=code, kind=kind, parent_code=parent_code, parent_kind=parent_kind)


def subtree(code: str) -> CTE:
    """A recursive CTE of the codes of ``code`` and all its descendants (column ``code``).

    Plain ``WITH RECURSIVE``: the same SQL runs on SQLite and PostgreSQL.
    """
    tree = select(sites.c.code).where(sites.c.code == code).cte("subtree", recursive=True)
    return tree.union_all(select(sites.c.code).where(sites.c.parent_code == tree.c.code))


def list_sites(
    *, conn: Connection, under: str | None = None, kind: SiteKind | None = None,
    only: Collection[str] | None = None,
) -> list[Site]:
    """Sites by code: all, or ``under`` and its descendants; optionally only one kind,
    and only the sites in ``only`` (where the person asking may look)."""
    query = select(sites).order_by(sites.c.code)
    if only is not None:
        query = query.where(sites.c.code.in_(sorted(only)))
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
    write_site(conn=conn, site=site, rollout_status=status, rollout_changed_at=event.at)
    return get_site(conn=conn, code=code)


def _in_rotations(conn: Connection, code: str) -> bool:
    """Whether a mobile lab's manifest or route, or a route's stop, names site ``code``."""
    for query in (
        select(manifest_items.c.asset_tag).where(manifest_items.c.mobile_lab_code == code),
        select(rotations.c.uuid).where(rotations.c.mobile_lab_code == code),
        select(rotation_stops.c.rotation_uuid).where(rotation_stops.c.site_code == code),
    ):
        if conn.execute(query.limit(1)).first() is not None:
            return True
    return False


def edit_site(
    *,
    conn: Connection,
    code: str,
    changes: Mapping[str, Any],
    by: str,
    note: str | None = None,
    expected_version: int | None = None,
) -> Site:
    """Correct a site: ``changes`` maps fields of :data:`EDITABLE_FIELDS` to their new
    values, and only those change (None clears an optional field). Each field is checked
    by the same rule as :func:`create_site`; a new parent must fit the tree and may not be
    the site itself or under it. Writes SiteEdited with each changed field before and
    after, and raises the version; changes that change nothing write nothing.
    """
    site = get_site(conn=conn, code=code)
    check_site_version(site, expected_version)
    unknown = sorted(set(changes) - set(EDITABLE_FIELDS))
    if unknown:
        raise InvalidValueError(
            f"site {code!r}: {', '.join(unknown)} cannot be edited (editable: "
            f"{', '.join(EDITABLE_FIELDS)}; the rollout status has its own steps)")
    new = {k: v for k, v in changes.items() if getattr(site, k) != v}
    if "name" in new:
        new["name"] = check_site_name(new["name"], code=code)
    if site.kind != "site":
        check_no_lab_fields(kind=site.kind, code=code,
                            given=[f for f in LAB_FIELDS if new.get(f) is not None])
        new = {k: v for k, v in new.items() if k not in LAB_FIELDS}
    else:
        if "tier" in new:
            check_tier(new["tier"], code=code)
            if "mobile_lab" in (site.tier, new["tier"]) and _in_rotations(conn, code):
                raise InvalidTransitionError(
                    f"site {code!r} has a manifest or is on a rotation's route: its tier "
                    "cannot change to or from mobile_lab")
        if "rural" in new and not isinstance(new["rural"], bool):
            raise InvalidValueError(f"site {code!r}: rural is true or false")
        latitude = new.get("latitude", site.latitude)
        longitude = new.get("longitude", site.longitude)
        check_both_coordinates(code=code, latitude=latitude is not None,
                               longitude=longitude is not None)
        if "latitude" in new and latitude is not None:
            check_latitude(latitude, code=code)
        if "longitude" in new and longitude is not None:
            check_longitude(longitude, code=code)
        if new.get("institution") is not None:
            new["institution"] = check_institution(new["institution"], code=code)
    if "parent_code" in new:
        parent_code = new["parent_code"]
        _check_parent(conn=conn, code=code, kind=site.kind, parent_code=parent_code)
        if parent_code is not None:
            below = conn.execute(select(subtree(code).c.code)).scalars()
            if parent_code in set(below):
                raise InvalidValueError(
                    f"{site.kind} {code!r} cannot be put under {parent_code!r}, which is "
                    "itself or under it")
            check_not_retired(get_site(conn=conn, code=parent_code),
                              doing=f"{code!r} cannot be put under it")
    new = {k: v for k, v in new.items() if getattr(site, k) != v}
    if not new:
        return site
    record_event(
        conn=conn, kind="SiteEdited", subject=code, by=by, site_code=code,
        from_state={k: getattr(site, k) for k in new}, to_state=new, note=check_note(note),
    )
    write_site(conn=conn, site=site, **new)
    return get_site(conn=conn, code=code)


# -- what each lab holds and has under way ---------------------------------------------------

COUNT_CHUNK = 500  # site codes per IN (...) query, far below SQLite's bound-parameter limit
KIT_CATEGORY = "robotics_kit"  # inventory.catalog's category of kit models


@dataclass(frozen=True, slots=True)
class LastAudit:
    """A lab's newest finished audit: when it finished, its status (finished or applied)
    and how many tags it found of each kind (found, missing, unexpected, unknown)."""

    uuid: str
    finished_at: int
    status: str
    findings: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SiteCounts:
    """What a lab site holds and has under way."""

    site_code: str
    assets_by_status: dict[str, int] = field(default_factory=dict)  # retired included
    kits: int = 0  # kit assets not retired: a robotics_kit model's, or with a contents list
    open_loans: int = 0
    overdue_loans: int = 0  # open and past due
    transfers_in: int = 0  # open (draft or shipped) transfers coming to the site
    transfers_out: int = 0  # open transfers leaving it
    last_audit: LastAudit | None = None

    @property
    def assets(self) -> int:
        """Every asset recorded at the site, whatever its status."""
        return sum(self.assets_by_status.values())


def site_counts(
    *, conn: Connection, codes: Collection[str], now: int | None = None
) -> dict[str, SiteCounts]:
    """For each site of ``codes``, what it holds and has under way (zeros for a site with
    nothing, or a code that is not a site): six grouped queries per :data:`COUNT_CHUNK`
    codes, never one per site. A loan is overdue when it is open past its due time at
    ``now`` (default: the current time). Read-only."""
    from inventory.transfers import OPEN_STATUSES  # inventory.transfers imports this module

    now = now_us() if now is None else now
    wanted = sorted(set(codes))
    found: dict[str, dict[str, Any]] = {code: {"assets_by_status": {}} for code in wanted}
    for i in range(0, len(wanted), COUNT_CHUNK):
        chunk = wanted[i:i + COUNT_CHUNK]
        for r in conn.execute(
            select(assets.c.site_code, assets.c.status, func.count().label("n"))
            .where(assets.c.site_code.in_(chunk))
            .group_by(assets.c.site_code, assets.c.status)
        ):
            found[r.site_code]["assets_by_status"][r.status] = r.n
        has_contents = select(kit_contents.c.kit_tag).distinct()
        for r in conn.execute(
            select(assets.c.site_code, func.count().label("n"))
            .select_from(assets.join(models, models.c.code == assets.c.model_code))
            .where(assets.c.site_code.in_(chunk), assets.c.status != "retired",
                   or_(models.c.category == KIT_CATEGORY, assets.c.tag.in_(has_contents)))
            .group_by(assets.c.site_code)
        ):
            found[r.site_code]["kits"] = r.n
        overdue = func.sum(case((loans.c.due_at < now, 1), else_=0))
        for r in conn.execute(
            select(loans.c.site_code, func.count().label("n"), overdue.label("late"))
            .where(loans.c.site_code.in_(chunk), loans.c.closed_at.is_(None))
            .group_by(loans.c.site_code)
        ):
            found[r.site_code] |= {"open_loans": r.n, "overdue_loans": int(r.late or 0)}
        for column, key in ((transfers.c.to_site_code, "transfers_in"),
                            (transfers.c.from_site_code, "transfers_out")):
            for r in conn.execute(
                select(column.label("site_code"), func.count().label("n"))
                .where(column.in_(chunk), transfers.c.status.in_(OPEN_STATUSES))
                .group_by(column)
            ):
                found[r.site_code][key] = r.n
        newest = (select(audits.c.site_code, func.max(audits.c.finished_at).label("at"))
                  .where(audits.c.site_code.in_(chunk), audits.c.finished_at.is_not(None))
                  .group_by(audits.c.site_code).subquery())
        last = {r.uuid: r for r in conn.execute(
            select(audits.c.uuid, audits.c.site_code, audits.c.finished_at, audits.c.status)
            .join(newest, (newest.c.site_code == audits.c.site_code)
                  & (newest.c.at == audits.c.finished_at))
            .order_by(audits.c.uuid)
        )}
        tallies: dict[str, dict[str, int]] = {uuid: {} for uuid in last}
        if last:
            for r in conn.execute(
                select(audit_findings.c.audit_uuid, audit_findings.c.finding,
                       func.count().label("n"))
                .where(audit_findings.c.audit_uuid.in_(sorted(last)))
                .group_by(audit_findings.c.audit_uuid, audit_findings.c.finding)
            ):
                tallies[r.audit_uuid][r.finding] = r.n
        for uuid, r in last.items():  # two audits finished in the same µs: the first by uuid
            found[r.site_code].setdefault("last_audit", LastAudit(
                uuid, r.finished_at, r.status, tallies[uuid]))
    return {code: SiteCounts(code, **values) for code, values in found.items()}
