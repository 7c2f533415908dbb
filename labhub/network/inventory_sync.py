"""Inventory between hubs and the central: events and the lab's records up; the site tree,
catalog, people, kits, transfers and rollout down, and a lab's history once to each new
hub; one owner per record.

**Up.** ``events``: the inventory events the hub wrote, in outbox order (position
``[seq]``), stored on the central by UUID; the copies of other labs' history that came
down are noted (``network_down_events``) and left out. ``inventory``: the lab's current
records, snapshot by change: the same outbox entries (its own position ``[seq]``) name
the events' subjects, and the records those subjects are (assets with their kit lists,
losses, loans and repairs; transfers; audits; stock; rooms) go up as they are now, the
lab's own only. The central applies what the lab owns (:mod:`inventory.replica`) and
keeps the rest as conflicts (:mod:`labhub.network.conflicts`).

**Down.** Each stream is the whole set the lab should hold. Its position is ``[n, d]``:
``d`` the digest of the set the hub applied (52 bits of SHA-256), ``n`` how many sets of
the stream it has applied, so a new position always sorts after the old one. The central
sends the set again when its digest is not ``d``, and nothing when it is. A central
restored from a backup has another digest, so the hub gets the whole set again: a
position never skips.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from inventory import replica
from labhub.access.accounts import revoke_sessions
from labhub.access.caller import NETWORK
from labhub.access.tables import grants, users
from labhub.network import conflicts, outbox
from labhub.network.inventory_tables import (
    network_down_events,
    network_down_people,
    network_inventory_marks,
)
from labhub.network.protocol import (
    CODEC_RECORDS,
    Position,
    ProtocolError,
    Section,
    pack_records,
    unpack_records,
)
from labhub.network.streams import DownStream, FromHub, UpStream
from labhub.network.tables import network_membership, sync_outbox
from sensors.samples import now_us

CHANGES_PER_SECTION = 2_000  # outbox entries read per collect, at most
SNAPSHOT_CHUNK = 100  # outbox entries turned into records at a time
RECENT_TRANSFERS_US = 30 * 86_400_000_000  # received transfers still sent down: 30 days


def own_site(conn: Connection) -> str | None:
    """The lab this hub writes for (its membership), None before it joined."""
    return conn.execute(select(network_membership.c.site)
                        .where(network_membership.c.id == 1)).scalar()


def own_changes(conn: Connection, after: Position) -> list[outbox.Change]:
    """The outbox's events after ``after``, those the hub wrote itself (not the copies
    of other labs' history that came down): each with its position."""
    changes = outbox.after(conn, stream="events", seq=_seq(after),
                           limit=CHANGES_PER_SECTION, now_us=now_us())
    keys = [c.key for c in changes]
    copies: set[str] = set()
    for i in range(0, len(keys), replica.CHUNK):
        copies.update(conn.execute(select(network_down_events.c.uuid).where(
            network_down_events.c.uuid.in_(keys[i:i + replica.CHUNK]))).scalars())
    return [c if c.key not in copies else outbox.Change(c.seq, "", c.at) for c in changes]


def own_pending(conn: Connection, after: Position) -> int:
    """How many events the hub wrote itself follow ``after`` (copies left out)."""
    copy = select(network_down_events.c.uuid).where(
        network_down_events.c.uuid == sync_outbox.c.key)
    return int(conn.execute(
        select(func.count()).select_from(sync_outbox)
        .where(sync_outbox.c.seq > _seq(after), sync_outbox.c.stream == "events",
               ~copy.exists())).scalar_one())


def keep_copies(conn: Connection, uuids: Sequence[str]) -> None:
    """Note events that came down as copies, so the up streams leave them out."""
    if uuids:
        at = now_us()
        conn.execute(insert(network_down_events), [{"uuid": u, "at": at} for u in uuids])


def _seq(after: Position) -> int:
    return after[0] if after else 0


def _size(record: dict[str, Any]) -> int:
    return len(json.dumps(record, separators=(",", ":"), ensure_ascii=False))


def _section(name: str, after: Position, to: Position, records: list[dict[str, Any]]) -> Section:
    return Section(stream=name, codec=CODEC_RECORDS, start=list(after), to=to,
                   count=len(records), data=pack_records(records))


def _records(section: Section) -> list[dict[str, Any]]:
    if section.codec != CODEC_RECORDS:
        raise ProtocolError(f"stream {section.stream} is sent as {CODEC_RECORDS}, "
                            f"not {section.codec}")
    return unpack_records(section.data)


# Raw JSON shrinks about fourfold under zlib; a section aims at its budget compressed.
COMPRESSION = 4


@dataclass(slots=True)
class EventsUp:
    """The hub's inventory events by outbox position; the central keeps them by UUID."""

    name: str = "events"

    def collect(self, conn: Connection, after: Position, budget_bytes: int) -> Section | None:
        changes = own_changes(conn, after)
        if not changes:
            return None
        rows = {r["uuid"]: r for r in replica.event_rows(
            conn, [c.key for c in changes if c.key])}
        out: list[dict[str, Any]] = []
        size, last = 0, changes[0].seq
        for change in changes:
            row = rows.get(change.key)
            if row is not None:
                if out and size + _size(row) > budget_bytes * COMPRESSION:
                    break
                out.append(row)
                size += _size(row)
            last = change.seq
        return _section(self.name, after, [last], out)

    def backlog(self, conn: Connection, after: Position) -> int:
        return own_pending(conn, after)

    def apply(self, conn: Connection, hub: FromHub, section: Section) -> int:
        rows = _records(section)
        for n, row in enumerate(rows, start=1):
            if not isinstance(row.get("uuid"), str) or not isinstance(row.get("subject"), str):
                raise ProtocolError(f"event {n} of the events section has no uuid or subject")
        new, refused = replica.apply_events(conn, rows, site=hub.site)
        conflicts.keep(conn, hub.site, refused)
        return new


def _load_marks(conn: Connection, records: Sequence[dict[str, Any]]) -> dict[tuple[str, str], str]:
    wanted: dict[str, set[str]] = {}
    for raw in records:
        table = replica.TABLES.get(str(raw.get("t")))
        if table is not None and isinstance(raw.get("r"), dict):
            try:
                wanted.setdefault(table.name, set()).add(replica.key_of(table, raw["r"]))
            except KeyError:
                raise ProtocolError(f"a {table.name} record lacks its key") from None
    marks: dict[tuple[str, str], str] = {}
    for kind, keys in wanted.items():
        listed = sorted(keys)
        for i in range(0, len(listed), replica.CHUNK):
            marks.update({(r.kind, r.key): r.digest for r in conn.execute(
                select(network_inventory_marks).where(
                    network_inventory_marks.c.kind == kind,
                    network_inventory_marks.c.key.in_(listed[i:i + replica.CHUNK])))})
    return marks


def _save_marks(conn: Connection, site: str, marks: dict[tuple[str, str], str],
                old: dict[tuple[str, str], str]) -> None:
    """Keep the new marks: the changed ones are deleted and written again, a few
    statements for a batch however large."""
    at = now_us()
    changed = {k: v for k, v in marks.items() if old.get(k) != v}
    by_kind: dict[str, list[str]] = {}
    for kind, key in changed:
        by_kind.setdefault(kind, []).append(key)
    for kind, keys in by_kind.items():
        for i in range(0, len(keys), replica.CHUNK):
            conn.execute(delete(network_inventory_marks).where(
                network_inventory_marks.c.kind == kind,
                network_inventory_marks.c.key.in_(keys[i:i + replica.CHUNK])))
    if changed:
        conn.execute(insert(network_inventory_marks), [
            {"site": site, "kind": kind, "key": key, "digest": value, "at": at}
            for (kind, key), value in changed.items()])


@dataclass(slots=True)
class InventoryUp:
    """The lab's own current records, snapshot by change (see the module's text)."""

    name: str = "inventory"

    def collect(self, conn: Connection, after: Position, budget_bytes: int) -> Section | None:
        changes = own_changes(conn, after)
        if not changes:
            return None
        site = own_site(conn)
        found: dict[tuple[str, str], dict[str, Any]] = {}
        size, last = 0, changes[0].seq
        for i in range(0, len(changes), SNAPSHOT_CHUNK):
            chunk = changes[i:i + SNAPSHOT_CHUNK]
            records = replica.lab_records(
                conn, replica.changes_of(conn, [c.key for c in chunk if c.key]), site=site)
            grown = sum(_size(r) for r in records)
            if found and size + grown > budget_bytes * COMPRESSION:
                break
            for r in records:
                table = replica.TABLES[r["t"]]
                found[(r["t"], replica.key_of(table, r["r"]))] = r
            size += grown
            last = chunk[-1].seq
        order = {t.name: n for n, t in enumerate(replica.LAB_TABLES)}
        out = sorted(found.values(), key=lambda r: order[r["t"]])  # stable: per table order
        return _section(self.name, after, [last], out)

    def backlog(self, conn: Connection, after: Position) -> int:
        return own_pending(conn, after)

    def apply(self, conn: Connection, hub: FromHub, section: Section) -> int:
        records = _records(section)
        marks = _load_marks(conn, records)
        try:
            done = replica.apply_lab_records(conn, records, site=hub.site, marks=marks,
                                             by=f"hub {hub.hub_id}")
        except ProtocolError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"the inventory section of lab {hub.site} is not valid: "
                                f"{exc}") from None
        _save_marks(conn, hub.site, done.marks, marks)
        conflicts.keep(conn, hub.site, done.conflicts)
        return done.changed


# -- down --------------------------------------------------------------------------------------

def set_digest(records: Sequence[dict[str, Any]]) -> int:
    """A down set's position: 52 bits of SHA-256 of its canonical JSON."""
    text = json.dumps(list(records), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return int(hashlib.sha256(text.encode()).hexdigest()[:13], 16)


@dataclass(slots=True)
class WholeSetDown:
    """A down stream sent whole when it changed (see the module's text)."""

    name: str
    gather: Callable[[Connection, str], list[dict[str, Any]]]
    take: Callable[[Connection, str, list[dict[str, Any]]], None]

    def collect(self, conn: Connection, site: str, after: Position,
                budget_bytes: int) -> Section | None:
        records = self.gather(conn, site)
        digest = set_digest(records)
        if len(after) == 2 and after[1] == digest:
            return None
        sent = after[0] if len(after) == 2 else 0
        return _section(self.name, after, [sent + 1, digest], records)

    def apply(self, conn: Connection, site: str, section: Section) -> None:
        records = _records(section)
        try:
            self.take(conn, site, records)
        except ProtocolError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"the {self.name} section is not valid: {exc}") from None


def _take_central_owned(conn: Connection, site: str, records: list[dict[str, Any]]) -> None:
    conflicts.keep(conn, site, replica.apply_central_owned(conn, records))


def _scope(conn: Connection, site: str) -> list[str]:
    """The sites whose grants reach the lab: its chain (root first), and the network."""
    return [s["code"] for s in replica.chain(conn, site)] + [NETWORK]


def people_for(conn: Connection, site: str) -> list[dict[str, Any]]:
    """The people with a grant at the lab, above it or on the whole network, with those
    grants and their password hashes (they sign in at the lab while it is offline);
    disabled accounts too, so a hub disables them."""
    scope = _scope(conn, site)
    rows = conn.execute(
        select(users.c.id, users.c.name, users.c.name_key, users.c.password_hash,
               users.c.created_at, users.c.disabled_at, users.c.language,
               grants.c.role, grants.c.site)
        .select_from(users.join(grants, grants.c.user_id == users.c.id))
        .where(grants.c.site.in_(scope))
        .order_by(users.c.name_key, grants.c.role, grants.c.site))
    people: dict[str, dict[str, Any]] = {}
    for r in rows:
        person = people.setdefault(r.name_key, {
            "name": r.name, "name_key": r.name_key, "password_hash": r.password_hash,
            "created_at": r.created_at, "disabled_at": r.disabled_at,
            "language": r.language, "grants": []})
        person["grants"].append([r.role, r.site])
    return [{"t": "scope", "r": {"sites": scope}},
            *({"t": "users", "r": p} for p in people.values())]


def take_people(conn: Connection, site: str, records: list[dict[str, Any]]) -> None:
    """On the hub: the central's people replace the lab's grants of the same people (by
    name, compared as :func:`labhub.access.accounts.name_key` does); a person the central
    sent before and no longer lists loses those grants; a disabled one is disabled here
    and signed out. Local people the central never sent are left as they are."""
    scope = next((r["r"]["sites"] for r in records if r["t"] == "scope"), None)
    if scope is None:
        raise ProtocolError("the people section has no scope record")
    sent: set[str] = set()
    for raw in records:
        if raw["t"] != "users":
            continue
        p = raw["r"]
        sent.add(p["name_key"])
        values = {"name": p["name"], "password_hash": p["password_hash"],
                  "disabled_at": p["disabled_at"], "language": p["language"]}
        found = conn.execute(select(users.c.id, users.c.disabled_at)
                             .where(users.c.name_key == p["name_key"])).first()
        if found is None:
            user_id = conn.execute(insert(users).values(
                name_key=p["name_key"], created_at=p["created_at"], **values)
                .returning(users.c.id)).scalar_one()
        else:
            user_id = found.id
            conn.execute(update(users).where(users.c.id == user_id).values(**values))
            if p["disabled_at"] is not None and found.disabled_at is None:
                revoke_sessions(conn, user_id=user_id)
        conn.execute(delete(grants).where(grants.c.user_id == user_id,
                                          grants.c.site.in_(scope)))
        for role, where in p["grants"]:
            if where in scope:
                conn.execute(insert(grants).values(user_id=user_id, role=role, site=where))
    before = set(conn.execute(select(network_down_people.c.name_key)).scalars())
    for gone in sorted(before - sent):
        user_id = conn.execute(select(users.c.id).where(users.c.name_key == gone)).scalar()
        if user_id is not None:
            conn.execute(delete(grants).where(grants.c.user_id == user_id,
                                              grants.c.site.in_(scope)))
    conn.execute(delete(network_down_people))
    at = now_us()
    if sent:
        conn.execute(insert(network_down_people),
                     [{"name_key": k, "at": at} for k in sorted(sent)])


def _transfers_for(conn: Connection, site: str) -> list[dict[str, Any]]:
    # Whole days, so the set (and its digest) does not change at every contact.
    day = 86_400_000_000
    since = (now_us() - RECENT_TRANSFERS_US) // day * day
    return replica.transfers_for(conn, site, since_us=since)


def _take_transfers(conn: Connection, site: str, records: list[dict[str, Any]]) -> None:
    keep_copies(conn, replica.apply_transfers(conn, site, records))


def _take_rollout(conn: Connection, site: str, records: list[dict[str, Any]]) -> None:
    keep_copies(conn, replica.apply_rollout(conn, records))


def _take_kits(conn: Connection, site: str, records: list[dict[str, Any]]) -> None:
    replica.apply_kits(conn, records)


@dataclass(slots=True)
class HistoryDown:
    """The lab's records and history as the central holds them, sent once to each hub
    (its position is ``[]`` until it applied them, then ``[1]``): a hub that replaces the
    lab's old one (a stolen laptop) takes over the lab's assets, loans, audits, transfers
    and their history. The hub adds only what it does not have
    (:func:`inventory.replica.restore_lab`), so a lab's first hub, whose records the
    central got from it, changes nothing; the events it adds are noted as copies and
    never sent back up."""

    name: str = "history"

    def collect(self, conn: Connection, site: str, after: Position,
                budget_bytes: int) -> Section | None:
        if after:
            return None
        return _section(self.name, after, [1], replica.lab_snapshot(conn, site))

    def apply(self, conn: Connection, site: str, section: Section) -> None:
        try:
            keep_copies(conn, replica.restore_lab(conn, _records(section)))
        except ProtocolError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"the history section is not valid: {exc}") from None


UP: tuple[UpStream, ...] = (EventsUp(), InventoryUp())
DOWN: tuple[DownStream, ...] = (
    WholeSetDown("sites", replica.tree_for, _take_central_owned),
    WholeSetDown("catalog", lambda conn, site: replica.catalog(conn), _take_central_owned),
    WholeSetDown("people", people_for, take_people),
    WholeSetDown("kits", replica.kits_for, _take_kits),
    WholeSetDown("transfers", _transfers_for, _take_transfers),
    WholeSetDown("rollout", replica.rollout_for, _take_rollout),
    HistoryDown(),
)
