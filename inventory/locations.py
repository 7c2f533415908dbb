"""Locations: the rooms and shelves inside a lab site, and where an asset sits in it.

A location is known by its site's code and a code unique at that site ("SALA-2",
"SALA-2/ESTANTE-B"), with a name for people. An asset may name one location of the
site it is at; moving the asset to another site clears it. Creating a location and
placing an asset are history events like every other change.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, func, insert, select

from inventory.assets import Asset, check_version, get_asset, lab_site, write_asset
from inventory.errors import ConflictError, InvalidTransitionError, NotFoundError
from inventory.history import record_event
from inventory.tables import locations
from inventory.values import check_key, check_page, check_text

DEFAULT_LIMIT = 50  # rows per page when the caller does not say: a screenful
MAX_LIMIT = 500  # one page of a list; more is paged with offset


@dataclass(frozen=True, slots=True)
class Location:
    """A room or shelf at a lab site."""

    site_code: str
    code: str
    name: str


def _location(r: Any) -> Location:
    return Location(r.site_code, r.code, r.name)


def find_location(*, conn: Connection, site_code: str, code: str) -> Location | None:
    """The location ``code`` at ``site_code``, or None."""
    row = conn.execute(
        select(locations).where(locations.c.site_code == site_code, locations.c.code == code)
    ).first()
    return None if row is None else _location(row)


def get_location(*, conn: Connection, site_code: str, code: str) -> Location:
    """The location ``code`` at ``site_code``; NotFoundError if the site has none such."""
    found = find_location(conn=conn, site_code=site_code, code=code)
    if found is None:
        raise NotFoundError(f"site {site_code!r} has no location {code!r}", what="location",
                            key=code)
    return found


def create_location(
    *, conn: Connection, site_code: str, code: str, name: str, by: str
) -> Location:
    """Add a room or shelf to a lab site. Writes LocationCreated (on the site)."""
    code = check_key(code, what="location code")
    name = check_text(name, what=f"the name of location {code!r}")
    lab_site(conn=conn, code=site_code)
    existing = find_location(conn=conn, site_code=site_code, code=code)
    if existing is not None:
        raise ConflictError(
            f"site {site_code!r} already has a location {code!r} ({existing.name})"
        )
    conn.execute(insert(locations).values(site_code=site_code, code=code, name=name))
    record_event(conn=conn, kind="LocationCreated", subject=site_code, by=by,
                 site_code=site_code, to_state={"location_code": code, "name": name})
    return Location(site_code, code, name)


def list_locations(
    *, conn: Connection, site_code: str | None = None, limit: int = DEFAULT_LIMIT,
    offset: int = 0, sites: Collection[str] | None = None,
) -> tuple[int, list[Location]]:
    """A page of locations by site and code, optionally of one lab site, and how many
    there are in all; ``limit`` is capped at ``MAX_LIMIT``. ``sites``, when given, keeps
    only locations at those sites (where the person asking may look), the total too."""
    check_page(limit, offset, MAX_LIMIT)
    conditions: list[ColumnElement[bool]] = []
    if site_code is not None:
        lab_site(conn=conn, code=site_code)
        conditions.append(locations.c.site_code == site_code)
    if sites is not None:
        conditions.append(locations.c.site_code.in_(sorted(sites)))
    total = conn.execute(
        select(func.count()).select_from(locations).where(*conditions)).scalar_one()
    rows = conn.execute(
        select(locations).where(*conditions)
        .order_by(locations.c.site_code, locations.c.code).limit(limit).offset(offset))
    return total, [_location(r) for r in rows]


def place_asset(
    *,
    conn: Connection,
    tag: str,
    location_code: str | None,
    by: str,
    expected_version: int | None = None,
) -> Asset:
    """Put an asset in a location of its site (None: no particular place).

    Writes AssetLocationChanged. A retired or lost asset has no place to be put.
    """
    asset = get_asset(conn=conn, tag=tag)
    check_version(asset, expected_version)
    if location_code is not None:
        get_location(conn=conn, site_code=asset.site_code, code=location_code)
    if asset.status in ("retired", "lost"):
        raise InvalidTransitionError(f"asset {tag!r} is {asset.status} and has no place")
    if location_code == asset.location_code:
        raise InvalidTransitionError(
            f"asset {tag!r} is already at location {location_code!r}" if location_code
            else f"asset {tag!r} has no location to clear"
        )
    event = record_event(
        conn=conn, kind="AssetLocationChanged", subject=tag, by=by, site_code=asset.site_code,
        from_state={"location_code": asset.location_code},
        to_state={"location_code": location_code},
    )
    write_asset(conn=conn, asset=asset, at=event.at, location_code=location_code)
    return get_asset(conn=conn, tag=tag)
