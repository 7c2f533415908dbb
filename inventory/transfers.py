"""Transfers: tagged assets shipped from one lab site to another, and checked on arrival.

A transfer is drafted at its origin (assets added and removed by tag), shipped (its
assets go ``in_transit``, with who carries them and when) and received at its
destination, where each item is confirmed by scanning its tag. Finishing the receipt
moves every scanned item to the destination, ``available``, and records a discrepancy
row for each item shipped but not scanned (``missing``: it stays ``in_transit`` or
becomes ``lost``, as the receiver chooses explicitly) and for each tag scanned that was
not on the transfer (``extra``: left as it is, for an audit to correct). The hub that
scans says which site it is at; a receipt at any other site is refused. Every change
raises the transfer's ``version`` by one, and a write that names an older version is
refused (someone else changed the transfer since it was read). Each step is an event:
the transfer's own (subject: its UUID) and each item's (subject: the tag), so an asset's
history shows every leg of its trip.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal, get_args

from sqlalchemy import ColumnElement, Connection, delete, func, insert, or_, select, update

from inventory.assets import MAX_LIMIT
from inventory.errors import (
    ConflictError,
    InvalidTransitionError,
    InvalidValueError,
    NotFoundError,
    WrongSiteError,
)
from inventory.history import record_event
from inventory.sites import Site, get_site, subtree
from inventory.tables import (
    assets,
    transfer_discrepancies,
    transfer_items,
    transfer_scans,
    transfers,
)
from inventory.values import check_choice, check_key, check_note, check_text, is_uuid, now_us

TransferStatus = Literal["draft", "shipped", "received"]
MissingAs = Literal["in_transit", "lost"]
TRANSFER_STATUSES: tuple[str, ...] = get_args(TransferStatus)
MISSING_AS: tuple[str, ...] = get_args(MissingAs)
OPEN_STATUSES = ("draft", "shipped")  # an asset is on at most one open transfer
DEFAULT_LIMIT = 50
LOOKUP_CHUNK = 500  # tags per IN (...) query, far below SQLite's limit of bound parameters


@dataclass(frozen=True, slots=True)
class Discrepancy:
    """What did not match on receipt.

    ``kind`` is ``missing`` (shipped, not scanned; ``resolution`` ``in_transit`` or
    ``lost``), ``extra`` (scanned, not on the transfer; ``unchanged`` for a registered
    asset, recorded at ``recorded_site_code``, or ``unknown`` for a tag nobody
    registered) or ``settled`` (on the transfer, but no longer in transit when it was
    received because someone changed it on the way; ``unchanged``).
    """

    tag: str
    kind: str
    resolution: str
    recorded_site_code: str | None
    recorded_at: int


@dataclass(frozen=True, slots=True)
class Transfer:
    """A shipment between two lab sites, with its items, scans and discrepancies."""

    uuid: str
    from_site_code: str
    to_site_code: str
    status: str
    version: int
    created_at: int
    created_by: str
    shipped_at: int | None
    carrier: str | None
    received_at: int | None
    received_by: str | None
    missing_as: str | None
    note: str | None
    items: tuple[str, ...]
    scanned: tuple[str, ...]
    discrepancies: tuple[Discrepancy, ...]


def _items(conn: Connection, transfer_uuid: str) -> list[str]:
    return list(conn.execute(
        select(transfer_items.c.asset_tag).where(transfer_items.c.transfer_uuid == transfer_uuid)
        .order_by(transfer_items.c.asset_tag)
    ).scalars())


def _scanned(conn: Connection, transfer_uuid: str) -> list[str]:
    return list(conn.execute(
        select(transfer_scans.c.tag).where(transfer_scans.c.transfer_uuid == transfer_uuid)
        .order_by(transfer_scans.c.tag)
    ).scalars())


def _head(r: Any) -> Transfer:
    """The transfer row alone (no items, scans or discrepancies): for checks that need
    only its status, sites and version."""
    return Transfer(
        r.uuid, r.from_site_code, r.to_site_code, r.status, r.version, r.created_at,
        r.created_by, r.shipped_at, r.carrier, r.received_at, r.received_by, r.missing_as,
        r.note, (), (), (),
    )


def _transfer(conn: Connection, r: Any) -> Transfer:
    found = conn.execute(
        select(transfer_discrepancies).where(transfer_discrepancies.c.transfer_uuid == r.uuid)
        .order_by(transfer_discrepancies.c.kind, transfer_discrepancies.c.tag)
    )
    return Transfer(
        r.uuid, r.from_site_code, r.to_site_code, r.status, r.version, r.created_at,
        r.created_by, r.shipped_at, r.carrier, r.received_at, r.received_by, r.missing_as,
        r.note, tuple(_items(conn, r.uuid)), tuple(_scanned(conn, r.uuid)),
        tuple(Discrepancy(d.tag, d.kind, d.resolution, d.recorded_site_code, d.recorded_at)
              for d in found),
    )


@dataclass(frozen=True, slots=True)
class TransferScan:
    """What one scan did, without the whole transfer (a scanner sends hundreds)."""

    transfer_uuid: str
    tag: str
    new: bool  # False: the tag had been scanned already, nothing changed
    on_transfer: bool  # False: an extra
    version: int  # the transfer's version after the scan
    scanned: int  # tags scanned so far


def _row(conn: Connection, transfer_uuid: str) -> Any:
    row = None if not is_uuid(transfer_uuid) else conn.execute(
        select(transfers).where(transfers.c.uuid == transfer_uuid)).first()
    if row is None:
        raise NotFoundError(f"no transfer {transfer_uuid!r}", what="transfer", key=transfer_uuid)
    return row


def get_transfer(*, conn: Connection, transfer_uuid: str) -> Transfer:
    """The transfer with this UUID; NotFoundError if there is none."""
    return _transfer(conn, _row(conn, transfer_uuid))


def _lab_site(conn: Connection, code: str, role: str) -> Site:
    site = get_site(conn=conn, code=check_key(code, what=f"the transfer's {role}"))
    if site.kind != "site":
        raise InvalidValueError(f"a transfer's {role} must be a lab site, and {code!r} is a "
                                f"{site.kind}")
    return site


def _check_version(t: Transfer, expected: int | None) -> None:
    if expected is not None and expected != t.version:
        raise ConflictError(
            f"transfer {t.uuid} is at version {t.version}, not {expected}: it was changed "
            "since you read it; read it again and retry"
        )


def _bump(conn: Connection, t: Transfer, **values: Any) -> None:
    """Raise the version (compare-and-set, so a concurrent writer is refused too)."""
    done = conn.execute(
        update(transfers).where(transfers.c.uuid == t.uuid, transfers.c.version == t.version)
        .values(version=t.version + 1, **values)
    )
    if done.rowcount != 1:
        raise ConflictError(f"transfer {t.uuid} was changed by someone else meanwhile; "
                            "read it again and retry")


def _require_status(t: Transfer, status: str, doing: str) -> None:
    if t.status != status:
        raise InvalidTransitionError(
            f"transfer {t.uuid} is {t.status}; only a {status} transfer can {doing}"
        )


def open_transfer_of(*, conn: Connection, tag: str) -> str | None:
    """The UUID of the draft or shipped transfer that holds asset ``tag``, or None."""
    return conn.execute(
        select(transfers.c.uuid).select_from(
            transfer_items.join(transfers, transfers.c.uuid == transfer_items.c.transfer_uuid)
        ).where(transfer_items.c.asset_tag == tag, transfers.c.status.in_(OPEN_STATUSES))
    ).scalar()


@dataclass(frozen=True, slots=True)
class _Draft:
    """The parts of a transfer not written yet that its first items are checked against."""

    uuid: str
    from_site_code: str


def _recorded(conn: Connection, tags: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """For ``tags``: each asset's (tag, site_code, status) row, and the open transfer that
    holds each one that is on one. A few queries for a whole shipment, not a few per tag."""
    found: dict[str, Any] = {}
    holders: dict[str, str] = {}
    for i in range(0, len(tags), LOOKUP_CHUNK):
        chunk = tags[i:i + LOOKUP_CHUNK]
        found.update({r.tag: r for r in conn.execute(
            select(assets.c.tag, assets.c.site_code, assets.c.status)
            .where(assets.c.tag.in_(chunk)))})
        holders.update({r.asset_tag: r.uuid for r in conn.execute(
            select(transfer_items.c.asset_tag, transfers.c.uuid).select_from(
                transfer_items.join(transfers,
                                    transfers.c.uuid == transfer_items.c.transfer_uuid))
            .where(transfer_items.c.asset_tag.in_(chunk),
                   transfers.c.status.in_(OPEN_STATUSES)))})
    return found, holders


def _check_shippable(conn: Connection, t: Transfer | _Draft, tags: list[str]) -> dict[str, Any]:
    """Refuse, naming the first tag that cannot go on transfer ``t`` now: not registered,
    not available, not at the origin, or on another open transfer. Returns the rows."""
    found, holders = _recorded(conn, tags)
    for tag in tags:
        asset = found.get(tag)
        if asset is None:
            raise NotFoundError(f"no asset with tag {tag!r}", what="asset", key=tag)
        if asset.status != "available":
            raise ConflictError(
                f"asset {tag!r} is {asset.status} and cannot be put on a transfer "
                "(only an available asset can)"
            )
        if asset.site_code != t.from_site_code:
            raise ConflictError(
                f"asset {tag!r} is at {asset.site_code}, not at {t.from_site_code} "
                f"where transfer {t.uuid} leaves from"
            )
        holder = holders.get(tag)
        if holder is not None and holder != t.uuid:
            raise ConflictError(f"asset {tag!r} is already on open transfer {holder}")
    return found


def _check_tags(
    conn: Connection, t: Transfer | _Draft, tags: tuple[str, ...] | list[str], on: tuple[str, ...]
) -> list[str]:
    """The tags to add to ``t`` (already holding ``on``), each checked; refuses naming one."""
    new: list[str] = []
    for raw in tags:
        tag = check_key(raw, what="asset tag")
        if tag in on or tag in new:
            raise ConflictError(f"asset {tag!r} is already on transfer {t.uuid}")
        new.append(tag)
    _check_shippable(conn, t, new)
    return new


def _insert_items(conn: Connection, t: Transfer | _Draft, tags: list[str], by: str) -> None:
    """Write checked tags onto ``t``: one TransferItemAdded each, and the rows."""
    rows = []
    for tag in tags:
        event = record_event(conn=conn, kind="TransferItemAdded", subject=t.uuid, by=by,
                             site_code=t.from_site_code, to_state={"asset_tag": tag})
        rows.append({"transfer_uuid": t.uuid, "asset_tag": tag, "added_at": event.at})
    if rows:
        conn.execute(insert(transfer_items), rows)


def draft_transfer(
    *,
    conn: Connection,
    from_site: str,
    to_site: str,
    by: str,
    tags: tuple[str, ...] | list[str] = (),
    note: str | None = None,
) -> Transfer:
    """Start a transfer between two lab sites, perhaps with its first assets. Writes
    TransferDrafted (and TransferItemAdded for each tag)."""
    by = check_text(by, what="who drafted the transfer ('by')")
    note = check_note(note)
    _lab_site(conn, from_site, "origin")
    _lab_site(conn, to_site, "destination")
    if from_site == to_site:
        raise InvalidValueError(f"a transfer goes between two sites, and both are {from_site}")
    key = str(uuid.uuid4())
    first = _check_tags(conn, _Draft(key, from_site), tags, ())
    at = now_us()
    conn.execute(insert(transfers).values(
        uuid=key, from_site_code=from_site, to_site_code=to_site, status="draft", version=1,
        created_at=at, created_by=by, note=note,
    ))
    record_event(conn=conn, kind="TransferDrafted", subject=key, by=by, site_code=from_site,
                 to_state={"status": "draft", "from_site": from_site, "to_site": to_site},
                 note=note)
    if first:
        t = _head(_row(conn, key))
        _bump(conn, t)
        _insert_items(conn, t, first, by)
    return get_transfer(conn=conn, transfer_uuid=key)


def add_items(
    *,
    conn: Connection,
    transfer_uuid: str,
    tags: tuple[str, ...] | list[str],
    by: str,
    version: int | None = None,
) -> Transfer:
    """Put assets on a draft transfer. Each must be available at the origin and on no
    other open transfer (ConflictError naming the tag). Writes TransferItemAdded."""
    t = get_transfer(conn=conn, transfer_uuid=transfer_uuid)
    _check_version(t, version)
    _require_status(t, "draft", "take items")
    if not tags:
        raise InvalidValueError("give at least one asset tag to add")
    new = _check_tags(conn, t, tags, t.items)
    _bump(conn, t)
    _insert_items(conn, t, new, by)
    return get_transfer(conn=conn, transfer_uuid=t.uuid)


def remove_item(
    *, conn: Connection, transfer_uuid: str, tag: str, by: str, version: int | None = None
) -> Transfer:
    """Take an asset off a draft transfer. Writes TransferItemRemoved."""
    t = get_transfer(conn=conn, transfer_uuid=transfer_uuid)
    _check_version(t, version)
    _require_status(t, "draft", "have items removed")
    if tag not in t.items:
        raise NotFoundError(f"asset {tag!r} is not on transfer {t.uuid}", what="transfer item",
                            key=tag)
    _bump(conn, t)
    record_event(conn=conn, kind="TransferItemRemoved", subject=t.uuid, by=by,
                 site_code=t.from_site_code, from_state={"asset_tag": tag})
    conn.execute(delete(transfer_items).where(
        transfer_items.c.transfer_uuid == t.uuid, transfer_items.c.asset_tag == tag))
    return get_transfer(conn=conn, transfer_uuid=t.uuid)


def ship_transfer(
    *,
    conn: Connection,
    transfer_uuid: str,
    carrier: str,
    by: str,
    version: int | None = None,
    note: str | None = None,
) -> Transfer:
    """Send a draft transfer on its way: its assets go in_transit. Writes TransferShipped
    and, for each asset, TransferItemShipped."""
    t = get_transfer(conn=conn, transfer_uuid=transfer_uuid)
    _check_version(t, version)
    _require_status(t, "draft", "be shipped")
    carrier = check_text(carrier, what="who carries the transfer ('carrier')")
    by = check_text(by, what="who shipped the transfer ('by')")
    note = check_note(note)
    if not t.items:
        raise InvalidTransitionError(f"transfer {t.uuid} has no items to ship")
    _check_shippable(conn, t, list(t.items))  # lent or sent to repair since it was added?
    event = record_event(
        conn=conn, kind="TransferShipped", subject=t.uuid, by=by, site_code=t.from_site_code,
        from_state={"status": "draft"},
        to_state={"status": "shipped", "carrier": carrier, "items": len(t.items)}, note=note,
    )
    _bump(conn, t, status="shipped", shipped_at=event.at, carrier=carrier)
    leg = f"transfer {t.uuid} from {t.from_site_code} to {t.to_site_code}, carried by {carrier}"
    for tag in t.items:
        item = record_event(conn=conn, kind="TransferItemShipped", subject=tag, by=by,
                            site_code=t.from_site_code, from_state={"status": "available"},
                            to_state={"status": "in_transit"}, note=leg)
        _set_asset(conn, tag, "available", item.at, status="in_transit")
    return get_transfer(conn=conn, transfer_uuid=t.uuid)


def _set_asset(conn: Connection, tag: str, was: str, at: int, **values: Any) -> None:
    """Change an asset that must still be ``was``: a concurrent change is refused. Its
    version goes up like every asset change, and a move to another site leaves the room
    or shelf it had behind."""
    if "site_code" in values:
        values["location_code"] = None
    done = conn.execute(update(assets).where(assets.c.tag == tag, assets.c.status == was)
                        .values(updated_at=at, version=assets.c.version + 1, **values))
    if done.rowcount != 1:
        raise ConflictError(f"asset {tag!r} was changed by someone else meanwhile; retry")


def _check_site(t: Transfer, site: str) -> None:
    if site != t.to_site_code:
        raise WrongSiteError(
            f"transfer {t.uuid} goes to {t.to_site_code}, and this hub is at {site}: "
            f"it can only be received at {t.to_site_code}",
            expected=t.to_site_code, actual=site,
        )


def scan_item(
    *,
    conn: Connection,
    transfer_uuid: str,
    tag: str,
    site: str,
    by: str,
    version: int | None = None,
) -> TransferScan:
    """Record that ``tag`` was scanned at ``site`` while receiving a shipped transfer.

    ``site`` is where the scanning hub is; any site but the destination is refused
    (WrongSiteError naming both). A tag off the transfer, even one nobody registered, is
    kept to be reported as an extra. Scanning a tag twice changes nothing. Reads only
    what one scan needs, so scanning a large shipment stays linear. Writes
    TransferItemScanned (subject: the tag).
    """
    t = _head(_row(conn, transfer_uuid))
    _check_version(t, version)
    _require_status(t, "shipped", "be received")
    tag = check_key(tag, what="scanned tag")
    by = check_text(by, what="who scanned ('by')")
    _check_site(t, check_key(site, what="the site of the scanning hub"))
    on_transfer = conn.execute(select(transfer_items.c.asset_tag).where(
        transfer_items.c.transfer_uuid == t.uuid, transfer_items.c.asset_tag == tag)
    ).first() is not None
    seen = conn.execute(select(transfer_scans.c.tag).where(
        transfer_scans.c.transfer_uuid == t.uuid, transfer_scans.c.tag == tag)).first()
    if seen is None:
        _bump(conn, t)
        event = record_event(
            conn=conn, kind="TransferItemScanned", subject=tag, by=by, site_code=site,
            to_state={"transfer": t.uuid, "on_transfer": on_transfer},
        )
        conn.execute(insert(transfer_scans).values(
            transfer_uuid=t.uuid, tag=tag, scanned_at=event.at, scanned_by=by))
    scanned = conn.execute(select(func.count()).select_from(transfer_scans).where(
        transfer_scans.c.transfer_uuid == t.uuid)).scalar_one()
    return TransferScan(t.uuid, tag, seen is None, on_transfer,
                        t.version + (seen is None), scanned)


def receive_transfer(
    *,
    conn: Connection,
    transfer_uuid: str,
    site: str,
    by: str,
    missing_as: MissingAs | None = None,
    version: int | None = None,
    note: str | None = None,
) -> Transfer:
    """Finish the receipt of a shipped transfer at its destination ``site``.

    Every scanned item still in transit becomes available at the destination
    (TransferItemReceived). Each item shipped and not scanned is a ``missing``
    discrepancy: ``missing_as`` says whether it stays ``in_transit`` (it may still turn
    up, e.g. on the next truck) or becomes ``lost``; there is no default, so a receipt
    with missing items and no choice is refused. Each scanned tag that was not on the
    transfer is an ``extra`` discrepancy, left as it is (an audit at the destination
    corrects where it is recorded). An item whose status someone changed on the way is
    ``settled`` and left as it is. Writes TransferDiscrepancyRecorded for each and
    TransferReceived.
    """
    t = get_transfer(conn=conn, transfer_uuid=transfer_uuid)
    _check_version(t, version)
    _require_status(t, "shipped", "be received")
    by = check_text(by, what="who received the transfer ('by')")
    note = check_note(note)
    _check_site(t, check_key(site, what="the site of the receiving hub"))
    if missing_as is not None:
        check_choice(missing_as, MISSING_AS, what="what missing items become ('missing_as')")
    scanned = set(t.scanned)
    current, _ = _recorded(conn, list(t.items))
    travelling = [tag for tag in t.items if current[tag].status == "in_transit"]
    missing = [tag for tag in travelling if tag not in scanned]
    if missing and missing_as is None:
        raise InvalidValueError(
            f"{len(missing)} item(s) of transfer {t.uuid} were shipped and not scanned "
            f"({', '.join(missing)}): say whether they stay in_transit or become lost "
            "(missing_as)"
        )
    event = record_event(
        conn=conn, kind="TransferReceived", subject=t.uuid, by=by, site_code=site,
        from_state={"status": "shipped"},
        to_state={"status": "received", "received": len(travelling) - len(missing),
                  "missing": len(missing), "extra": len(scanned - set(t.items)),
                  "missing_as": missing_as if missing else None},
        note=note,
    )
    _bump(conn, t, status="received", received_at=event.at, received_by=by,
          missing_as=missing_as if missing else None)
    leg = f"transfer {t.uuid} from {t.from_site_code} to {t.to_site_code}"
    for tag in travelling:
        if tag in scanned:
            item = record_event(
                conn=conn, kind="TransferItemReceived", subject=tag, by=by, site_code=site,
                from_state={"status": "in_transit", "site_code": current[tag].site_code},
                to_state={"status": "available", "site_code": site}, note=leg,
            )
            _set_asset(conn, tag, "in_transit", item.at, status="available", site_code=site)
    rows: list[tuple[str, str, str, str | None]] = []
    rows += [(tag, "missing", missing_as or "in_transit", None) for tag in missing]
    rows += [(tag, "settled", "unchanged", current[tag].site_code)
             for tag in t.items if tag not in travelling]
    extras, _ = _recorded(conn, sorted(scanned - set(t.items)))
    for tag in sorted(scanned - set(t.items)):
        extra = extras.get(tag)
        rows.append((tag, "extra", "unknown" if extra is None else "unchanged",
                     None if extra is None else extra.site_code))
    for tag, kind, resolution, recorded_site in rows:
        before: dict[str, Any] | None = None
        after: dict[str, Any] = {"transfer": t.uuid, "discrepancy": kind,
                                 "resolution": resolution}
        if kind == "missing" and resolution == "lost":
            before, after = {"status": "in_transit"}, {**after, "status": "lost"}
        d = record_event(conn=conn, kind="TransferDiscrepancyRecorded", subject=tag, by=by,
                         site_code=site, from_state=before, to_state=after, note=leg)
        if before is not None:
            _set_asset(conn, tag, "in_transit", d.at, status="lost")
        conn.execute(insert(transfer_discrepancies).values(
            transfer_uuid=t.uuid, tag=tag, kind=kind, resolution=resolution,
            recorded_site_code=recorded_site, recorded_at=d.at,
        ))
    return get_transfer(conn=conn, transfer_uuid=t.uuid)


def list_transfers(
    *,
    conn: Connection,
    status: TransferStatus | None = None,
    from_under: str | None = None,
    to_under: str | None = None,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
    sites: Collection[str] | None = None,
) -> tuple[int, list[Transfer]]:
    """A page of transfers, newest first, and how many match in all.

    ``from_under`` and ``to_under`` take a site and its whole subtree (a region's
    outgoing or incoming transfers). ``limit`` is capped at ``assets.MAX_LIMIT``.
    ``sites``, when given, keeps only transfers with either end at one of those sites
    (where the person asking may look), the total too.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidValueError(f"limit {limit} is not in 1..{MAX_LIMIT}")
    if offset < 0:
        raise InvalidValueError(f"offset {offset} is negative")
    conditions: list[ColumnElement[bool]] = []
    if status is not None:
        check_choice(status, TRANSFER_STATUSES, what="transfer status")
        conditions.append(transfers.c.status == status)
    for column, code in ((transfers.c.from_site_code, from_under),
                         (transfers.c.to_site_code, to_under)):
        if code is not None:
            get_site(conn=conn, code=check_key(code, what="site code"))
            # Read the subtree first: two recursive CTEs of one name cannot share a query.
            codes = list(conn.execute(select(subtree(code).c.code)).scalars())
            conditions.append(column.in_(codes))
    if sites is not None:
        seen = sorted(sites)
        conditions.append(or_(transfers.c.from_site_code.in_(seen),
                              transfers.c.to_site_code.in_(seen)))
    total = conn.execute(
        select(func.count()).select_from(transfers).where(*conditions)
    ).scalar_one()
    rows = conn.execute(
        select(transfers).where(*conditions)
        .order_by(transfers.c.created_at.desc(), transfers.c.uuid).limit(limit).offset(offset)
    ).all()
    return total, [_transfer(conn, r) for r in rows]
