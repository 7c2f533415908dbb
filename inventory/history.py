"""History: every change to a site, model or asset is an event row, never updated or deleted.

Each service that changes state calls :func:`record_event` on the caller's connection,
so the current-state tables and the history are written in the same transaction and
cannot disagree. :func:`rebuild_assets` replays the asset events (registrations, moves,
status changes, loans, repairs, and the steps of transfers and audit corrections that move
an asset or change its status) to reconstruct each asset's place, status and condition,
and :func:`rebuild_stock` replays the stock events to reconstruct each site's counted
stock; tests check both against the tables.
Within one subject, events get strictly increasing times (a change in the same
microsecond as the previous one is put one microsecond later), so replay order is the
order in which the changes were made.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from sqlalchemy import Connection, func, insert, or_, select

from inventory.errors import InventoryError
from inventory.tables import events
from inventory.values import check_text, now_us

EventKind = Literal[
    "SiteCreated",
    "SiteRolloutChanged",
    "ModelCreated",
    "AssetRegistered",
    "AssetMoved",
    "AssetStatusChanged",
    "AssetSighted",
    # corrections (inventory.sites, catalog, assets and corrections): an edit carries the
    # changed fields before and after; a deletion is the tombstone of a record made in
    # error and never used (its last state in ``from_state``); a retirement keeps it
    "SiteEdited",
    "SiteRetired",
    "SiteDeleted",
    "ModelEdited",
    "ModelRetired",
    "ModelDeleted",
    "AssetEdited",
    "AssetDeleted",
    # transfers (inventory.transfers): the transfer's own steps, subject the transfer UUID
    "TransferDrafted",
    "TransferItemAdded",
    "TransferItemRemoved",
    "TransferShipped",
    "TransferReceived",
    # ... and each item's steps, subject the asset tag (or the scanned tag)
    "TransferItemShipped",
    "TransferItemScanned",
    "TransferItemReceived",
    "TransferDiscrepancyRecorded",
    # mobile-lab rotations (inventory.rotations)
    "ManifestItemAdded",
    "ManifestItemRemoved",
    "RotationPlanned",
    "RotationStopArrived",
    "RotationStopDeparted",
    # audits (inventory.audits)
    "AuditStarted",
    "AuditItemScanned",
    "AuditItemCounted",
    "AuditFinished",
    "AuditCorrectionApplied",
    "AuditCorrectionsApplied",
    # movements: locations, counted stock, kits, loans, repairs
    "LocationCreated",
    "AssetLocationChanged",
    "StockReceived",
    "StockConsumed",
    "StockAdjusted",
    "ReorderThresholdSet",
    "KitContentsDefined",
    "KitPartsReturned",
    "KitPartMissing",
    "KitPartDamaged",
    "AssetCheckedOut",
    "AssetCheckedIn",
    "RepairStarted",
    "RepairFinished",
    # service plans (inventory.service): maintenance and calibration every so many days
    "ServicePlanSet",
    "ServicePlanRemoved",
    "ServiceDone",
]
EVENT_KINDS: tuple[str, ...] = get_args(EventKind)

# The events that may change an asset's (site_code, status, condition), in replay. One
# that carries none of those fields changes nothing (an extra scanned on a transfer whose
# tag is not even registered is such an event).
ASSET_STATE_EVENTS = (
    "AssetRegistered", "AssetMoved", "AssetStatusChanged", "AssetEdited", "AssetDeleted",
    "AssetCheckedOut", "AssetCheckedIn", "RepairStarted", "RepairFinished",
    "TransferItemShipped", "TransferItemReceived", "TransferDiscrepancyRecorded",
    "AuditCorrectionApplied",
)
ASSET_STATE_FIELDS = ("site_code", "status", "condition")
# The first event of each kind of record: what a record made in error and never used has
# as its only history since it was (last) created.
CREATION_EVENTS = ("SiteCreated", "ModelCreated", "AssetRegistered")
# The events that change a site's counted stock of a model (subject: the model code,
# ``site_code``: the site), each with the new ``quantity`` and/or ``reorder_threshold``.
STOCK_EVENTS = ("StockReceived", "StockConsumed", "StockAdjusted", "ReorderThresholdSet")
STOCK_FIELDS = ("quantity", "reorder_threshold")


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of an item's history."""

    uuid: str
    at: int
    kind: str
    subject: str
    by: str
    site_code: str | None
    from_state: dict[str, Any] | None
    to_state: dict[str, Any] | None
    note: str | None
    # the person the change was recorded for, when not the one who recorded it (``by``)
    on_behalf_of: str | None = None


@dataclass(frozen=True, slots=True)
class StockState:
    """How much of a counted model a site holds, as far as its history tells."""

    quantity: int
    reorder_threshold: int | None


@dataclass(frozen=True, slots=True)
class AssetState:
    """Where an asset is and how it is, as far as its history tells."""

    site_code: str
    status: str
    condition: str


def _dump(state: dict[str, Any] | None) -> str | None:
    return None if state is None else json.dumps(state, sort_keys=True, ensure_ascii=False)


def _load(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    data: dict[str, Any] = json.loads(text)
    return data


def record_event(
    *,
    conn: Connection,
    kind: EventKind,
    subject: str,
    by: str,
    site_code: str | None = None,
    from_state: dict[str, Any] | None = None,
    to_state: dict[str, Any] | None = None,
    note: str | None = None,
    at: int | None = None,
    on_behalf_of: str | None = None,
) -> Event:
    """Append one event; ``at`` defaults to now, kept after the subject's previous event.
    ``by`` is who made the change (the signed-in caller); ``on_behalf_of`` the person it
    was recorded for, when someone else."""
    if kind not in EVENT_KINDS:
        raise InventoryError(f"unknown event kind {kind!r}")
    by = check_text(by, what="who made the change ('by')")
    on_behalf_of = check_behalf(on_behalf_of)
    if at is None:
        last = conn.execute(
            select(func.max(events.c.at)).where(events.c.subject == subject)
        ).scalar()
        at = now_us() if last is None else max(now_us(), last + 1)
    event = Event(str(uuid.uuid4()), at, kind, subject, by, site_code, from_state, to_state, note,
                  on_behalf_of)
    conn.execute(
        insert(events).values(
            uuid=event.uuid, at=event.at, kind=event.kind, subject=event.subject, by=event.by,
            site_code=event.site_code, from_state=_dump(from_state), to_state=_dump(to_state),
            note=event.note, on_behalf_of=event.on_behalf_of,
        )
    )
    return event


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append with :func:`record_events` (its time and UUID are given there)."""

    kind: EventKind
    subject: str
    site_code: str | None = None
    from_state: dict[str, Any] | None = None
    to_state: dict[str, Any] | None = None
    note: str | None = None


def record_events(*, conn: Connection, new: Sequence[NewEvent], by: str,
                  on_behalf_of: str | None = None) -> list[Event]:
    """Append several events in one round trip each for reading and writing (a kit's
    thirty parts): the same rules as :func:`record_event`, in the order given."""
    if not new:
        return []
    for item in new:
        if item.kind not in EVENT_KINDS:
            raise InventoryError(f"unknown event kind {item.kind!r}")
    by = check_text(by, what="who made the change ('by')")
    on_behalf_of = check_behalf(on_behalf_of)
    subjects = sorted({item.subject for item in new})
    last: dict[str, int] = {
        r.subject: r.last for r in conn.execute(
            select(events.c.subject, func.max(events.c.at).label("last"))
            .where(events.c.subject.in_(subjects)).group_by(events.c.subject)
        )
    }
    now = now_us()
    written: list[Event] = []
    for item in new:
        at = now if item.subject not in last else max(now, last[item.subject] + 1)
        last[item.subject] = at
        written.append(Event(str(uuid.uuid4()), at, item.kind, item.subject, by, item.site_code,
                             item.from_state, item.to_state, item.note, on_behalf_of))
    conn.execute(insert(events), [
        {"uuid": e.uuid, "at": e.at, "kind": e.kind, "subject": e.subject, "by": e.by,
         "site_code": e.site_code, "from_state": _dump(e.from_state),
         "to_state": _dump(e.to_state), "note": e.note, "on_behalf_of": e.on_behalf_of}
        for e in written
    ])
    return written


def check_behalf(on_behalf_of: str | None) -> str | None:
    """The person a change is recorded for, checked as ``by`` is (None: nobody else)."""
    if on_behalf_of is None:
        return None
    return check_text(on_behalf_of, what="who the change was made for ('on_behalf_of')")


def _event(r: Any) -> Event:
    return Event(
        r.uuid, r.at, r.kind, r.subject, r.by, r.site_code, _load(r.from_state),
        _load(r.to_state), r.note, r.on_behalf_of,
    )


def history_of(
    *, conn: Connection, subject: str, sites: Collection[str] | None = None
) -> list[Event]:
    """Every event about ``subject`` (an asset tag, site code or model code), oldest first;
    with ``sites``, only the events at those sites and those at no site (where the person
    asking may look: an asset that moved keeps its past at other labs to itself)."""
    query = (
        select(events).where(events.c.subject == subject).order_by(events.c.at, events.c.uuid)
    )
    if sites is not None:
        query = query.where(or_(events.c.site_code.is_(None),
                                events.c.site_code.in_(sorted(sites))))
    return [_event(r) for r in conn.execute(query)]


def rebuild_assets(*, conn: Connection) -> dict[str, AssetState]:
    """Each asset's (site, status, condition) reconstructed from its events alone (an asset
    deleted as made in error is gone from the result, as from the table)."""
    query = (
        select(events)
        .where(events.c.kind.in_(ASSET_STATE_EVENTS))
        .order_by(events.c.subject, events.c.at, events.c.uuid)
    )
    states: dict[str, dict[str, Any]] = {}
    for row in conn.execute(query):
        if row.kind == "AssetDeleted":
            states.pop(row.subject, None)
            continue
        change = _load(row.to_state) or {}
        if row.kind != "AssetRegistered" and not change.keys() & set(ASSET_STATE_FIELDS):
            continue
        if row.kind == "AssetRegistered":
            states[row.subject] = {}
        elif row.subject not in states:
            raise InventoryError(
                f"the history of asset {row.subject!r} has {row.kind} before AssetRegistered"
            )
        states[row.subject].update({k: v for k, v in change.items() if k in ASSET_STATE_FIELDS})
    return {tag: AssetState(**state) for tag, state in states.items()}


def rebuild_stock(*, conn: Connection) -> dict[tuple[str, str], StockState]:
    """Each (site code, model code)'s stock and reorder threshold from its events alone."""
    query = (
        select(events)
        .where(events.c.kind.in_(STOCK_EVENTS))
        .order_by(events.c.subject, events.c.site_code, events.c.at, events.c.uuid)
    )
    states: dict[tuple[str, str], dict[str, Any]] = {}
    for row in conn.execute(query):
        change = _load(row.to_state) or {}
        state = states.setdefault((row.site_code, row.subject),
                                  {"quantity": 0, "reorder_threshold": None})
        state.update({k: v for k, v in change.items() if k in STOCK_FIELDS})
    return {key: StockState(**state) for key, state in states.items()}
