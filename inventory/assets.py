"""Assets: the individual items of serialized models, each known by its asset tag.

An asset has a model, perhaps the maker's serial number (unique when present), a status,
a condition, the lab site where it is and free notes. Every change (registered, moved,
status changed, sighted online at a hub) is written to the history in the same
transaction. :func:`record_sighting` is where the device registry meets inventory: the
app shell calls it with the serial number of a board seen online, and the asset with
that serial gets an ``AssetSighted`` event; inventory itself knows nothing of hardware.
A coordinator corrects an asset's model, serial number, condition, notes or location with
:func:`edit_asset` (``AssetEdited``), guarded by its ``version`` like every other change.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from sqlalchemy import ColumnElement, Connection, bindparam, func, insert, or_, select, update

from inventory.catalog import check_model_in_use, get_model
from inventory.errors import (
    ConflictError,
    InvalidTransitionError,
    InvalidValueError,
    InventoryError,
    NotFoundError,
    StaleVersionError,
)
from inventory.history import Event, EventKind, NewEvent, record_event, record_events
from inventory.sites import Site, check_not_retired, get_site, subtree
from inventory.tables import assets, locations, models
from inventory.values import TEXT_MAX, check_choice, check_key, check_note, check_text, now_us

Status = Literal["available", "on_loan", "in_transit", "in_repair", "lost", "retired"]
Condition = Literal["good", "fair", "poor", "broken"]
STATUSES: tuple[str, ...] = get_args(Status)
CONDITIONS: tuple[str, ...] = get_args(Condition)

# Which status may follow which. Retired is final; a lost asset that turns up is
# available again (or written off as retired). Loans set on_loan and repairs in_repair,
# each with its record; :func:`set_status` refuses them (``BY_RECORD_ONLY``).
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "available": ("on_loan", "in_transit", "in_repair", "lost", "retired"),
    "on_loan": ("available", "in_repair", "lost"),
    "in_transit": ("available", "lost"),
    "in_repair": ("available", "retired"),
    "lost": ("available", "retired"),
    "retired": (),
}

DEFAULT_LIMIT = 50
MAX_LIMIT = 500  # one page of a list; more is paged with offset
SIGHTING_FUTURE_TOLERANCE_US = 60_000_000  # a hub's clock may run a little ahead; 1 min
BATCH_MAX = 500  # tags per IN (...) query: well under every backend's parameter limit
# What :func:`edit_asset` may change. The tag is the stable key; the status and the site
# change by their own steps (set_status, loans, repairs, move_asset, transfers), each with
# its rules and its event.
EDITABLE_FIELDS = ("model_code", "serial_number", "condition", "notes", "location_code")
# Statuses that only come with their record: a loan (who has it, until when) or a repair
# (the fault). Set by hand they would leave an item on loan to nobody, or in a repair
# that no one can finish; the value is the command that sets it.
BY_RECORD_ONLY: dict[str, str] = {
    "on_loan": "check it out on a loan (labhub inventory lend, POST /loans)",
    "in_repair": "start a repair (labhub inventory repair, POST /assets/{tag}/repairs)",
}


@dataclass(frozen=True, slots=True)
class Asset:
    """An individual item with its tag."""

    tag: str
    model_code: str
    serial_number: str | None
    status: str
    condition: str
    site_code: str
    notes: str | None
    updated_at: int
    location_code: str | None = None  # a room or shelf at ``site_code``
    version: int = 1  # +1 on every change (optimistic concurrency)


def _asset(r: Any) -> Asset:
    return Asset(
        r.tag, r.model_code, r.serial_number, r.status, r.condition, r.site_code, r.notes,
        r.updated_at, r.location_code, r.version,
    )


def check_version(asset: Asset, expected_version: int | None) -> None:
    """StaleVersionError if the writer read another version of ``asset`` than is stored."""
    if expected_version is not None and expected_version != asset.version:
        raise StaleVersionError(what="asset", key=asset.tag, expected=expected_version,
                                actual=asset.version)


def write_asset(*, conn: Connection, asset: Asset, at: int, **values: Any) -> None:
    """Store changed fields of ``asset`` (read in this transaction) and bump its version.

    The update only matches the version that was read, so an edit committed by another
    transaction in between makes this one a StaleVersionError (the caller's transaction
    then rolls back, events included) instead of overwriting it.
    """
    done = conn.execute(
        update(assets)
        .where(assets.c.tag == asset.tag, assets.c.version == asset.version)
        .values(updated_at=at, version=asset.version + 1, **values)
    )
    if done.rowcount != 1:
        current = get_asset(conn=conn, tag=asset.tag)
        raise StaleVersionError(what="asset", key=asset.tag, expected=asset.version,
                                actual=current.version)


def find_asset(*, conn: Connection, tag: str) -> Asset | None:
    """The asset with ``tag``, or None."""
    row = conn.execute(select(assets).where(assets.c.tag == tag)).first()
    return None if row is None else _asset(row)


def get_asset(*, conn: Connection, tag: str) -> Asset:
    """The asset with ``tag``; NotFoundError if no asset has it."""
    asset = find_asset(conn=conn, tag=tag)
    if asset is None:
        raise NotFoundError(f"no asset with tag {tag!r}", what="asset", key=tag)
    return asset


def get_assets(*, conn: Connection, tags: Iterable[str]) -> dict[str, Asset]:
    """The assets with these tags, by tag, in one query; NotFoundError naming the first
    tag (in order) that no asset has."""
    wanted = list(dict.fromkeys(tags))
    found: dict[str, Asset] = {}
    for start in range(0, len(wanted), BATCH_MAX):
        chunk = wanted[start:start + BATCH_MAX]
        found.update((r.tag, _asset(r))
                     for r in conn.execute(select(assets).where(assets.c.tag.in_(chunk))))
    for tag in wanted:
        if tag not in found:
            raise NotFoundError(f"no asset with tag {tag!r}", what="asset", key=tag)
    return {tag: found[tag] for tag in wanted}


def get_by_serial(*, conn: Connection, serial_number: str) -> Asset | None:
    """The asset with this maker's serial number, or None."""
    row = conn.execute(select(assets).where(assets.c.serial_number == serial_number)).first()
    return None if row is None else _asset(row)


# -- the rules of an asset's fields: one function each, called by the services here and by
# the CSV import (inventory.csvio.importing) for every row, so the two cannot drift.


def asset_words(tag: str | None) -> str:
    """How a message names an asset: ``asset 'VC-0001'``, or ``the asset with no tag``
    (a CSV row whose tag cell is missing or wrong; the row error gives its row)."""
    return "the asset with no tag" if tag is None else f"asset {tag!r}"


def check_tag(tag: str) -> str:
    """``tag`` as an asset tag (a stable key); InvalidValueError if malformed."""
    return check_key(tag, what="asset tag")


def check_serial_number(serial_number: str, *, tag: str | None) -> str:
    """A maker's serial number, stripped; InvalidValueError if empty, too long or not text."""
    return check_text(serial_number, what=f"the serial number of {asset_words(tag)}")


def check_condition(condition: str, *, tag: str | None) -> str:
    """``condition`` if it is one of :data:`CONDITIONS`, else InvalidValueError naming them."""
    return check_choice(condition, CONDITIONS, what=f"the condition of {asset_words(tag)}")


def check_notes(notes: str | None, *, tag: str | None) -> str | None:
    """An asset's notes: None or blank is none; InvalidValueError if too long."""
    return check_note(notes, what=f"the notes of {asset_words(tag)}")


def check_status_by_hand(status: str, *, tag: str | None, imported: bool = False) -> str:
    """``status`` if a person may give it to asset ``tag`` by hand, with :func:`set_status`
    or in a CSV import (``imported``).

    InvalidValueError for a status that is not one of :data:`STATUSES`;
    InvalidTransitionError for ``on_loan`` and ``in_repair`` (:data:`BY_RECORD_ONLY`),
    saying which record sets them instead: an asset there without its loan or repair
    would be on loan to nobody, or in a repair no one can finish.
    """
    asset = asset_words(tag)
    check_choice(status, STATUSES, what=f"the status of {asset}")
    if status in BY_RECORD_ONLY:
        if imported:
            raise InvalidTransitionError(
                f"{asset} cannot be imported {status}: import it available, then "
                f"{BY_RECORD_ONLY[status]}"
            )
        raise InvalidTransitionError(
            f"{asset} is not set {status} by hand: {BY_RECORD_ONLY[status]}"
        )
    return status


def check_tracks_assets(*, code: str, tracking: str, unit: str | None) -> None:
    """InvalidValueError unless the model ``code`` is serialized (has tagged assets)."""
    if tracking != "serialized":
        raise InvalidValueError(
            f"model {code!r} is counted in {unit}, not tracked as tagged assets"
        )


def check_lab_site_kind(*, code: str, kind: str) -> None:
    """InvalidValueError unless ``kind`` is a lab site's: assets are kept at lab sites."""
    if kind != "site":
        raise InvalidValueError(f"assets are kept at lab sites, and {code!r} is a {kind}")


def lab_site(*, conn: Connection, code: str) -> Site:
    """The lab site ``code``; InvalidValueError for a network, region or municipality."""
    site = get_site(conn=conn, code=code)
    check_lab_site_kind(code=code, kind=site.kind)
    return site


def register_asset(
    *,
    conn: Connection,
    tag: str,
    model_code: str,
    site_code: str,
    by: str,
    serial_number: str | None = None,
    condition: Condition = "good",
    notes: str | None = None,
) -> Asset:
    """Register an item of a serialized model at a lab site, available. Writes AssetRegistered."""
    tag = check_tag(tag)
    check_condition(condition, tag=tag)
    if serial_number is not None:
        serial_number = check_serial_number(serial_number, tag=tag)
    notes = check_notes(notes, tag=tag)
    existing = find_asset(conn=conn, tag=tag)
    if existing is not None:
        raise ConflictError(
            f"asset tag {tag!r} is already registered "
            f"(model {existing.model_code} at {existing.site_code})"
        )
    model = get_model(conn=conn, code=model_code)
    check_tracks_assets(code=model_code, tracking=model.tracking, unit=model.unit)
    check_model_in_use(model, doing="no new assets are registered of it")
    check_not_retired(lab_site(conn=conn, code=site_code),
                      doing="no assets are registered there")
    if serial_number is not None:
        holder = get_by_serial(conn=conn, serial_number=serial_number)
        if holder is not None:
            raise ConflictError(
                f"serial number {serial_number!r} is already registered as asset "
                f"{holder.tag!r} (model {holder.model_code} at {holder.site_code})"
            )
    state: dict[str, Any] = {
        "model_code": model_code, "serial_number": serial_number, "status": "available",
        "condition": condition, "site_code": site_code,
    }
    event = record_event(
        conn=conn, kind="AssetRegistered", subject=tag, by=by, site_code=site_code,
        to_state={k: v for k, v in state.items() if v is not None}, note=notes,
    )
    conn.execute(insert(assets).values(tag=tag, notes=notes, updated_at=event.at, **state))
    return get_asset(conn=conn, tag=tag)


def move_asset(
    *, conn: Connection, tag: str, to_site: str, by: str, note: str | None = None,
    expected_version: int | None = None,
) -> Asset:
    """Record that an asset is now at another lab site. Writes AssetMoved.

    A retired or lost asset does not move (a lost one is first found: status available).
    Shipping with an in-transit state is the job of transfers, not built yet. The asset's
    location (a room or shelf of the old site) is cleared.
    """
    asset = get_asset(conn=conn, tag=tag)
    check_version(asset, expected_version)
    check_not_retired(lab_site(conn=conn, code=to_site), doing="no assets move there")
    if asset.status in ("retired", "lost"):
        raise InvalidTransitionError(f"asset {tag!r} is {asset.status} and cannot be moved")
    if asset.site_code == to_site:
        raise InvalidTransitionError(f"asset {tag!r} is already at {to_site}")
    event = record_event(
        conn=conn, kind="AssetMoved", subject=tag, by=by, site_code=to_site,
        from_state={"site_code": asset.site_code}, to_state={"site_code": to_site}, note=note,
    )
    write_asset(conn=conn, asset=asset, at=event.at, site_code=to_site, location_code=None)
    return get_asset(conn=conn, tag=tag)


def edit_asset(
    *,
    conn: Connection,
    tag: str,
    changes: Mapping[str, Any],
    by: str,
    note: str | None = None,
    expected_version: int | None = None,
) -> Asset:
    """Correct an asset: ``changes`` maps fields of :data:`EDITABLE_FIELDS` to new values
    and only those change (None clears the serial number, notes or location). The same
    rules as registering it: a serialized model still in the catalog, a serial number no
    other asset has, a condition of :data:`CONDITIONS`, a location of the asset's site
    (none for a lost or retired asset). Writes AssetEdited with the changed fields before
    and after, and raises the version; changes that change nothing write nothing.
    """
    asset = get_asset(conn=conn, tag=tag)
    check_version(asset, expected_version)
    unknown = sorted(set(changes) - set(EDITABLE_FIELDS))
    if unknown:
        raise InvalidValueError(
            f"asset {tag!r}: {', '.join(unknown)} cannot be edited (editable: "
            f"{', '.join(EDITABLE_FIELDS)}; the status and site change by their own steps)")
    new = {k: v for k, v in changes.items() if getattr(asset, k) != v}
    if "model_code" in new:
        model = get_model(conn=conn, code=check_key(new["model_code"], what="model code"))
        check_tracks_assets(code=model.code, tracking=model.tracking, unit=model.unit)
        check_model_in_use(model, doing=f"asset {tag!r} cannot become one")
    if "condition" in new:
        check_condition(new["condition"], tag=tag)
    if "notes" in new:
        new["notes"] = check_notes(new["notes"], tag=tag)
    if new.get("serial_number") is not None:
        serial = new["serial_number"] = check_serial_number(new["serial_number"], tag=tag)
        holder = get_by_serial(conn=conn, serial_number=serial)
        if holder is not None and holder.tag != tag:
            raise ConflictError(
                f"serial number {serial!r} is already registered as asset {holder.tag!r} "
                f"(model {holder.model_code} at {holder.site_code})")
    if new.get("location_code") is not None:
        if asset.status in ("retired", "lost"):
            raise InvalidTransitionError(f"asset {tag!r} is {asset.status} and has no place")
        found = conn.execute(select(locations.c.code).where(
            locations.c.site_code == asset.site_code,
            locations.c.code == new["location_code"])).first()
        if found is None:
            raise NotFoundError(f"site {asset.site_code!r} has no location "
                                f"{new['location_code']!r}", what="location",
                                key=str(new["location_code"]))
    new = {k: v for k, v in new.items() if getattr(asset, k) != v}
    if not new:
        return asset
    event = record_event(
        conn=conn, kind="AssetEdited", subject=tag, by=by, site_code=asset.site_code,
        from_state={k: getattr(asset, k) for k in new}, to_state=new, note=check_note(note),
    )
    write_asset(conn=conn, asset=asset, at=event.at, **new)
    return get_asset(conn=conn, tag=tag)


def set_status(
    *,
    conn: Connection,
    tag: str,
    status: Status,
    by: str,
    note: str | None = None,
    condition: Condition | None = None,
    expected_version: int | None = None,
) -> Asset:
    """Change an asset's status (and optionally its condition) along ``TRANSITIONS``.

    Writes AssetStatusChanged with the changed fields before and after. ``on_loan`` and
    ``in_repair`` are refused (InvalidTransitionError saying what sets them): only a loan
    or a repair, with its record, puts an asset there.
    """
    asset = get_asset(conn=conn, tag=tag)
    check_version(asset, expected_version)
    check_status_by_hand(status, tag=tag)
    if condition is not None:
        check_condition(condition, tag=tag)
    check_transition(asset, status)
    change_state(conn=conn, asset=asset, kind="AssetStatusChanged", by=by, status=status,
                 condition=condition, note=note)
    return get_asset(conn=conn, tag=tag)


def check_transition(asset: Asset, status: str) -> None:
    """InvalidTransitionError naming both states unless ``TRANSITIONS`` allows the change."""
    if status == asset.status:
        raise InvalidTransitionError(f"asset {asset.tag!r} is already {status}")
    allowed = TRANSITIONS[asset.status]
    if status not in allowed:
        raise InvalidTransitionError(
            f"asset {asset.tag!r} cannot go from {asset.status} to {status}"
            + (f" (from {asset.status}: {', '.join(allowed)})" if allowed
               else f" ({asset.status} is final)")
        )


def change_state(
    *,
    conn: Connection,
    asset: Asset,
    kind: EventKind,
    by: str,
    status: str | None = None,
    condition: str | None = None,
    note: str | None = None,
    details: dict[str, Any] | None = None,
) -> Event:
    """Write event ``kind`` with the asset's changed status and condition, then store them.

    The caller has checked the change (``check_transition``); ``details`` (a loan id, a
    repair id) go into the event's ``to_state`` next to the changed fields. Returns the event.
    """
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    if status is not None and status != asset.status:
        before["status"], after["status"] = asset.status, status
    if condition is not None and condition != asset.condition:
        before["condition"], after["condition"] = asset.condition, condition
    event = record_event(
        conn=conn, kind=kind, subject=asset.tag, by=by, site_code=asset.site_code,
        from_state=before or None, to_state={**after, **(details or {})} or None, note=note,
    )
    write_asset(conn=conn, asset=asset, at=event.at, **after)
    return event


@dataclass(frozen=True, slots=True)
class StateChange:
    """One asset's checked change of status and/or condition, for :func:`change_states`."""

    asset: Asset
    kind: EventKind
    status: str | None = None
    condition: str | None = None
    note: str | None = None
    details: dict[str, Any] | None = None


def change_states(*, conn: Connection, changes: Sequence[StateChange], by: str,
                  on_behalf_of: str | None = None) -> list[Event]:
    """:func:`change_state` for many assets (a kit and its contents) in a few round trips:
    their events in one insert, their rows in one guarded update (each matches only the
    version that was read; StaleVersionError if any was changed since)."""
    if not changes:
        return []
    if len({c.asset.tag for c in changes}) != len(changes):
        raise InventoryError("change_states: an asset appears twice in one batch")
    new: list[NewEvent] = []
    for c in changes:
        before: dict[str, Any] = {}
        after: dict[str, Any] = {}
        if c.status is not None and c.status != c.asset.status:
            before["status"], after["status"] = c.asset.status, c.status
        if c.condition is not None and c.condition != c.asset.condition:
            before["condition"], after["condition"] = c.asset.condition, c.condition
        new.append(NewEvent(c.kind, c.asset.tag, c.asset.site_code, before or None,
                            {**after, **(c.details or {})} or None, c.note))
    written = record_events(conn=conn, new=new, by=by, on_behalf_of=on_behalf_of)
    rows = [
        {"b_tag": c.asset.tag, "b_version": c.asset.version, "b_new": c.asset.version + 1,
         "b_at": e.at, "b_status": c.status or c.asset.status,
         "b_condition": c.condition or c.asset.condition}
        for c, e in zip(changes, written, strict=True)
    ]
    done = conn.execute(
        update(assets)
        .where(assets.c.tag == bindparam("b_tag"), assets.c.version == bindparam("b_version"))
        .values(status=bindparam("b_status"), condition=bindparam("b_condition"),
                updated_at=bindparam("b_at"), version=bindparam("b_new")),
        rows,
    )
    if done.rowcount != len(rows):
        current = get_assets(conn=conn, tags=[c.asset.tag for c in changes])
        stale = next(c.asset for c in changes if current[c.asset.tag].version != c.asset.version)
        raise StaleVersionError(what="asset", key=stale.tag, expected=stale.version,
                                actual=current[stale.tag].version)
    return written


def record_sighting(
    *, conn: Connection, serial_number: str, site_code: str, seen_at: int, source: str
) -> Asset | None:
    """Record that the asset with ``serial_number`` was seen online at ``site_code``.

    ``seen_at`` is in microseconds since the epoch, UTC; ``source`` says who saw it (a
    hub, a device id). Writes AssetSighted and changes nothing else: where the asset
    is recorded stays as it is, and an audit decides what a sighting elsewhere means.
    Returns the asset, or None when no asset has that serial number (nothing written).
    """
    source = check_text(source, what="the source of a sighting")
    if seen_at > now_us() + SIGHTING_FUTURE_TOLERANCE_US:
        raise InvalidValueError(f"sighting of serial {serial_number!r} is in the future")
    asset = get_by_serial(conn=conn, serial_number=serial_number)
    if asset is None:
        return None
    get_site(conn=conn, code=site_code)
    record_event(
        conn=conn, kind="AssetSighted", subject=asset.tag, by=source, site_code=site_code,
        to_state={"seen_at_site": site_code, "serial_number": serial_number}, at=seen_at,
    )
    return asset


def list_assets(
    *,
    conn: Connection,
    site_under: str | None = None,
    status: Status | None = None,
    model_code: str | None = None,
    search: str | None = None,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
    sites: Collection[str] | None = None,
) -> tuple[int, list[Asset]]:
    """A page of assets by tag, and how many match in all.

    ``site_under`` takes a site and its whole subtree (a region lists every lab in it);
    ``search`` matches part of the tag, serial number, model code or model name, in any
    case. ``limit`` is capped at ``MAX_LIMIT``. ``sites``, when given, keeps only assets
    at those sites (where the person asking may look), the total too.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidValueError(f"limit {limit} is not in 1..{MAX_LIMIT}")
    if offset < 0:
        raise InvalidValueError(f"offset {offset} is negative")
    conditions: list[ColumnElement[bool]] = []
    if site_under is not None:
        get_site(conn=conn, code=site_under)
        tree = subtree(site_under)
        conditions.append(assets.c.site_code.in_(select(tree.c.code)))
    if sites is not None:
        conditions.append(assets.c.site_code.in_(sorted(sites)))
    if status is not None:
        check_choice(status, STATUSES, what="asset status")
        conditions.append(assets.c.status == status)
    if model_code is not None:
        conditions.append(assets.c.model_code == model_code)
    searching = search is not None and bool(search.strip())
    if search is not None and searching:
        term = search.strip()[:TEXT_MAX]
        conditions.append(or_(
            assets.c.tag.icontains(term, autoescape=True),
            assets.c.serial_number.icontains(term, autoescape=True),
            models.c.code.icontains(term, autoescape=True),
            models.c.name.icontains(term, autoescape=True),
        ))
    # Only a search term needs the model's code and name; every asset has its model (a
    # foreign key), so without one the join changes nothing and only costs time.
    source = (assets.join(models, models.c.code == assets.c.model_code) if searching
              else assets)
    total = conn.execute(
        select(func.count()).select_from(source).where(*conditions)
    ).scalar_one()
    # The page's tags first (answered from the indexes alone), then just those rows.
    tags = list(conn.execute(
        select(assets.c.tag).select_from(source).where(*conditions)
        .order_by(assets.c.tag).limit(limit).offset(offset)
    ).scalars())
    if not tags:
        return total, []
    rows = conn.execute(
        select(assets).where(assets.c.tag.in_(tags)).order_by(assets.c.tag)
    )
    return total, [_asset(r) for r in rows]
