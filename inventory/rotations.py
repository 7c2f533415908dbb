"""Mobile-lab rotations: a mobile lab's manifest and its planned route of school stops.

A mobile lab is a lab site of tier ``mobile_lab``: the vehicle and what it carries. Its
manifest is the list of assets that travel with it (each recorded at the mobile lab when
added). A rotation is a planned route of stops, each a school's lab site with planned
arrival and departure dates. Every stop is built on transfers: arriving drafts and ships
a transfer of the manifest (what is at the mobile lab and available) from the mobile lab
to the school, and departing ships the items received there back to the mobile lab.
Each of those transfers is then checked like any other, by scanning the tags at the
receiving end (``transfers.scan_item`` and ``transfers.receive_transfer``), which
records what is missing or extra. A stop is arrived at only after the previous stop's
departure transfer was received back, so the route is followed in order. A rotation is
``planned`` until its first arrival, ``underway`` until every stop was left, then
``finished`` (:func:`list_rotations` filters by it).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date
from typing import Literal, get_args

from sqlalchemy import ColumnElement, Connection, delete, exists, func, insert, or_, select, update

from inventory.assets import get_asset
from inventory.errors import ConflictError, InvalidTransitionError, InvalidValueError, NotFoundError
from inventory.history import record_event
from inventory.sites import Site, get_site, subtree
from inventory.tables import assets, manifest_items, rotation_stops, rotations
from inventory.transfers import Transfer, draft_transfer, get_transfer, ship_transfer
from inventory.values import check_choice, check_key, check_page, check_text, is_uuid

MAX_STOPS = 200  # a school year of weekly stops, several times over
DEFAULT_LIMIT = 50  # rotations per page when the caller does not say: a screenful
MAX_LIMIT = 500  # one page of a list; more is paged with offset
RotationStatus = Literal["planned", "underway", "finished"]
ROTATION_STATUSES: tuple[str, ...] = get_args(RotationStatus)


@dataclass(frozen=True, slots=True)
class Stop:
    """One school on a route, with its planned dates and the transfers that served it."""

    seq: int
    site_code: str
    arrive_on: str  # ISO date, YYYY-MM-DD
    depart_on: str
    arrival_transfer_uuid: str | None
    departure_transfer_uuid: str | None


@dataclass(frozen=True, slots=True)
class Rotation:
    """A mobile lab's planned route."""

    uuid: str
    mobile_lab_code: str
    name: str
    version: int
    created_at: int
    created_by: str
    stops: tuple[Stop, ...]


def rotation_status(r: Rotation) -> str:
    """``planned`` (no stop arrived at), ``finished`` (every stop left) or ``underway``."""
    if all(s.arrival_transfer_uuid is None for s in r.stops):
        return "planned"
    if all(s.departure_transfer_uuid is not None for s in r.stops):
        return "finished"
    return "underway"


def _status_condition(status: str) -> ColumnElement[bool]:
    """The rows of ``rotations`` in ``status``, by the rule of :func:`rotation_status`."""
    mine = rotation_stops.c.rotation_uuid == rotations.c.uuid
    arrived = exists().where(mine, rotation_stops.c.arrival_transfer_uuid.is_not(None))
    not_left = exists().where(mine, rotation_stops.c.departure_transfer_uuid.is_(None))
    if status == "planned":
        return ~arrived
    if status == "finished":
        return ~not_left
    return arrived & not_left


def list_rotations(
    *,
    conn: Connection,
    site_under: str | None = None,
    status: RotationStatus | None = None,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
    sites: Collection[str] | None = None,
) -> tuple[int, list[Rotation]]:
    """A page of rotations, newest first, and how many match in all. ``site_under`` takes
    a site and its whole subtree: rotations of a mobile lab there, or with a stop there;
    ``status`` is planned, underway or finished (:func:`rotation_status`). ``sites``, when
    given, keeps only rotations whose mobile lab or a stop is at one of those sites (where
    the person asking may look), the total too."""
    check_page(limit, offset, MAX_LIMIT)
    conditions: list[ColumnElement[bool]] = []
    if status is not None:
        check_choice(status, ROTATION_STATUSES, what="rotation status")
        conditions.append(_status_condition(status))
    if site_under is not None:
        get_site(conn=conn, code=check_key(site_under, what="site code"))
        # Read the subtree first: one recursive CTE used twice in a query is refused.
        codes = list(conn.execute(select(subtree(site_under).c.code)).scalars())
        conditions.append(or_(
            rotations.c.mobile_lab_code.in_(codes),
            exists().where(rotation_stops.c.rotation_uuid == rotations.c.uuid,
                           rotation_stops.c.site_code.in_(codes)),
        ))
    if sites is not None:
        seen = sorted(sites)
        conditions.append(or_(
            rotations.c.mobile_lab_code.in_(seen),
            exists().where(rotation_stops.c.rotation_uuid == rotations.c.uuid,
                           rotation_stops.c.site_code.in_(seen)),
        ))
    total = conn.execute(select(func.count()).select_from(rotations).where(*conditions)
                         ).scalar_one()
    keys = conn.execute(
        select(rotations.c.uuid).where(*conditions)
        .order_by(rotations.c.created_at.desc(), rotations.c.uuid).limit(limit).offset(offset)
    ).scalars().all()
    return total, [get_rotation(conn=conn, rotation_uuid=k) for k in keys]


def _mobile_lab(conn: Connection, code: str) -> Site:
    site = get_site(conn=conn, code=check_key(code, what="mobile lab code"))
    if site.kind != "site" or site.tier != "mobile_lab":
        raise InvalidValueError(f"site {code!r} is not a mobile lab (a lab site of tier "
                                "mobile_lab)")
    return site


def manifest_of(*, conn: Connection, mobile_lab: str) -> list[str]:
    """The tags of the assets that travel with ``mobile_lab``, in order."""
    _mobile_lab(conn, mobile_lab)
    return list(conn.execute(
        select(manifest_items.c.asset_tag).where(manifest_items.c.mobile_lab_code == mobile_lab)
        .order_by(manifest_items.c.asset_tag)
    ).scalars())


def add_to_manifest(*, conn: Connection, mobile_lab: str, tag: str, by: str) -> list[str]:
    """Put an asset recorded at the mobile lab on its manifest. Writes ManifestItemAdded."""
    _mobile_lab(conn, mobile_lab)
    asset = get_asset(conn=conn, tag=check_key(tag, what="asset tag"))
    holder = conn.execute(
        select(manifest_items.c.mobile_lab_code).where(manifest_items.c.asset_tag == asset.tag)
    ).scalar()
    if holder is not None:
        raise ConflictError(f"asset {asset.tag!r} is already on the manifest of {holder}")
    if asset.site_code != mobile_lab:
        raise ConflictError(f"asset {asset.tag!r} is at {asset.site_code}; move it to "
                            f"{mobile_lab} before putting it on that mobile lab's manifest")
    event = record_event(conn=conn, kind="ManifestItemAdded", subject=asset.tag, by=by,
                         site_code=mobile_lab, to_state={"manifest": mobile_lab})
    conn.execute(insert(manifest_items).values(asset_tag=asset.tag, mobile_lab_code=mobile_lab,
                                               added_at=event.at))
    return manifest_of(conn=conn, mobile_lab=mobile_lab)


def remove_from_manifest(*, conn: Connection, mobile_lab: str, tag: str, by: str) -> list[str]:
    """Take an asset off a mobile lab's manifest. Writes ManifestItemRemoved."""
    if tag not in manifest_of(conn=conn, mobile_lab=mobile_lab):
        raise NotFoundError(f"asset {tag!r} is not on the manifest of {mobile_lab}",
                            what="manifest item", key=tag)
    record_event(conn=conn, kind="ManifestItemRemoved", subject=tag, by=by,
                 site_code=mobile_lab, from_state={"manifest": mobile_lab})
    conn.execute(delete(manifest_items).where(manifest_items.c.asset_tag == tag))
    return manifest_of(conn=conn, mobile_lab=mobile_lab)


def _date(value: str, what: str) -> date:
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise InvalidValueError(f"{what} {value!r} is not a date like 2027-03-01") from None


def get_rotation(*, conn: Connection, rotation_uuid: str) -> Rotation:
    """The rotation with this UUID and its stops; NotFoundError if there is none."""
    row = None if not is_uuid(rotation_uuid) else conn.execute(
        select(rotations).where(rotations.c.uuid == rotation_uuid)).first()
    if row is None:
        raise NotFoundError(f"no rotation {rotation_uuid!r}", what="rotation", key=rotation_uuid)
    stops = conn.execute(select(rotation_stops).where(
        rotation_stops.c.rotation_uuid == rotation_uuid).order_by(rotation_stops.c.seq))
    return Rotation(row.uuid, row.mobile_lab_code, row.name, row.version, row.created_at,
                    row.created_by, tuple(
                        Stop(s.seq, s.site_code, s.arrive_on, s.depart_on,
                             s.arrival_transfer_uuid, s.departure_transfer_uuid)
                        for s in stops))


def plan_rotation(
    *,
    conn: Connection,
    mobile_lab: str,
    name: str,
    stops: list[tuple[str, str, str]],
    by: str,
) -> Rotation:
    """Plan a route for a mobile lab: ``stops`` are (school site code, arrival date,
    departure date), in order, each leaving no earlier than it arrives and arriving no
    earlier than the previous stop left. Writes RotationPlanned."""
    _mobile_lab(conn, mobile_lab)
    name = check_text(name, what="the rotation's name")
    by = check_text(by, what="who planned the rotation ('by')")
    if not 1 <= len(stops) <= MAX_STOPS:
        raise InvalidValueError(f"a rotation has 1..{MAX_STOPS} stops, not {len(stops)}")
    previous: date | None = None
    for seq, (code, arrive, depart) in enumerate(stops, start=1):
        where = f"stop {seq}"
        school = get_site(conn=conn, code=check_key(code, what=f"{where}: school site"))
        if school.kind != "site" or school.tier == "mobile_lab":
            raise InvalidValueError(f"{where}: {code!r} is not a school's lab site")
        arrive_on, depart_on = _date(arrive, f"{where}: arrival"), _date(depart, f"{where}: "
                                                                         "departure")
        if depart_on < arrive_on:
            raise InvalidValueError(f"{where} at {code}: departure {depart} is before arrival "
                                    f"{arrive}")
        if previous is not None and arrive_on < previous:
            raise InvalidValueError(f"{where} at {code}: arrival {arrive} is before the "
                                    f"previous stop's departure {previous.isoformat()}")
        previous = depart_on
    key = str(uuid.uuid4())
    event = record_event(conn=conn, kind="RotationPlanned", subject=key, by=by,
                         site_code=mobile_lab,
                         to_state={"mobile_lab": mobile_lab, "name": name,
                                   "stops": [s[0] for s in stops]})
    conn.execute(insert(rotations).values(uuid=key, mobile_lab_code=mobile_lab, name=name,
                                          version=1, created_at=event.at, created_by=by))
    for seq, (code, arrive, depart) in enumerate(stops, start=1):
        conn.execute(insert(rotation_stops).values(
            rotation_uuid=key, seq=seq, site_code=code, arrive_on=arrive, depart_on=depart))
    return get_rotation(conn=conn, rotation_uuid=key)


def _stop(r: Rotation, seq: int) -> Stop:
    for s in r.stops:
        if s.seq == seq:
            return s
    raise NotFoundError(f"rotation {r.uuid} has no stop {seq} (it has 1..{len(r.stops)})",
                        what="stop", key=str(seq))


def _bump(conn: Connection, r: Rotation, expected: int | None) -> None:
    if expected is not None and expected != r.version:
        raise ConflictError(f"rotation {r.uuid} is at version {r.version}, not {expected}: "
                            "read it again and retry")
    done = conn.execute(update(rotations).where(
        rotations.c.uuid == r.uuid, rotations.c.version == r.version
    ).values(version=r.version + 1))
    if done.rowcount != 1:
        raise ConflictError(f"rotation {r.uuid} was changed by someone else meanwhile")


def arrive(
    *,
    conn: Connection,
    rotation_uuid: str,
    seq: int,
    carrier: str,
    by: str,
    version: int | None = None,
) -> tuple[Rotation, Transfer]:
    """The mobile lab arrives at stop ``seq``: the manifest (what is at the mobile lab and
    available) is shipped to the school on a new transfer, to be scanned and received
    there. Writes RotationStopArrived and the transfer's events."""
    r = get_rotation(conn=conn, rotation_uuid=rotation_uuid)
    stop = _stop(r, seq)
    if stop.arrival_transfer_uuid is not None:
        raise InvalidTransitionError(f"rotation {r.uuid} already arrived at stop {seq} "
                                     f"({stop.site_code})")
    if seq > 1:
        before = _stop(r, seq - 1)
        back = (None if before.departure_transfer_uuid is None
                else get_transfer(conn=conn, transfer_uuid=before.departure_transfer_uuid))
        if back is None or back.status != "received":
            raise InvalidTransitionError(
                f"stop {seq - 1} ({before.site_code}) of rotation {r.uuid} has not been left "
                f"yet: its departure must be received back at {r.mobile_lab_code} first")
    tags = [
        t for t in manifest_of(conn=conn, mobile_lab=r.mobile_lab_code)
        if conn.execute(select(assets.c.tag).where(
            assets.c.tag == t, assets.c.site_code == r.mobile_lab_code,
            assets.c.status == "available")).first() is not None
    ]
    if not tags:
        raise InvalidTransitionError(
            f"nothing on the manifest of {r.mobile_lab_code} is there and available to "
            f"bring to {stop.site_code}")
    _bump(conn, r, version)
    note = f"rotation {r.uuid} ({r.name}), stop {seq}: arrival"
    transfer = draft_transfer(conn=conn, from_site=r.mobile_lab_code, to_site=stop.site_code,
                              by=by, tags=tags, note=note)
    transfer = ship_transfer(conn=conn, transfer_uuid=transfer.uuid, carrier=carrier, by=by)
    record_event(conn=conn, kind="RotationStopArrived", subject=r.uuid, by=by,
                 site_code=stop.site_code,
                 to_state={"stop": seq, "site": stop.site_code, "transfer": transfer.uuid})
    conn.execute(update(rotation_stops).where(
        rotation_stops.c.rotation_uuid == r.uuid, rotation_stops.c.seq == seq
    ).values(arrival_transfer_uuid=transfer.uuid))
    return get_rotation(conn=conn, rotation_uuid=r.uuid), transfer


def depart(
    *,
    conn: Connection,
    rotation_uuid: str,
    seq: int,
    carrier: str,
    by: str,
    version: int | None = None,
) -> tuple[Rotation, Transfer]:
    """The mobile lab leaves stop ``seq``: what its arrival brought and is still at the
    school and available is shipped back to the mobile lab, to be scanned and received
    there. Writes RotationStopDeparted and the transfer's events."""
    r = get_rotation(conn=conn, rotation_uuid=rotation_uuid)
    stop = _stop(r, seq)
    if stop.departure_transfer_uuid is not None:
        raise InvalidTransitionError(f"rotation {r.uuid} already left stop {seq} "
                                     f"({stop.site_code})")
    came = (None if stop.arrival_transfer_uuid is None
            else get_transfer(conn=conn, transfer_uuid=stop.arrival_transfer_uuid))
    if came is None or came.status != "received":
        raise InvalidTransitionError(
            f"stop {seq} ({stop.site_code}) of rotation {r.uuid} has not been arrived at: "
            "its arrival must be received there first")
    tags: list[str] = []
    for tag in came.items:
        a = get_asset(conn=conn, tag=tag)
        if a.site_code == stop.site_code and a.status == "available":
            tags.append(tag)
    if not tags:
        raise InvalidTransitionError(f"nothing that came with the mobile lab is at "
                                     f"{stop.site_code} and available to take away")
    _bump(conn, r, version)
    note = f"rotation {r.uuid} ({r.name}), stop {seq}: departure"
    transfer = draft_transfer(conn=conn, from_site=stop.site_code, to_site=r.mobile_lab_code,
                              by=by, tags=tags, note=note)
    transfer = ship_transfer(conn=conn, transfer_uuid=transfer.uuid, carrier=carrier, by=by)
    record_event(conn=conn, kind="RotationStopDeparted", subject=r.uuid, by=by,
                 site_code=stop.site_code,
                 to_state={"stop": seq, "site": stop.site_code, "transfer": transfer.uuid})
    conn.execute(update(rotation_stops).where(
        rotation_stops.c.rotation_uuid == r.uuid, rotation_stops.c.seq == seq
    ).values(departure_transfer_uuid=transfer.uuid))
    return get_rotation(conn=conn, rotation_uuid=r.uuid), transfer
