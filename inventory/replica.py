"""Replication: the inventory's records as they travel between a lab's hub and the central.

A record travels as ``{"t": <table>, "r": {<column>: <value>}}`` (every column of the
row; keys are stable strings, never integer ids). Applying is idempotent: a record that
is already there as it is changes nothing, so a batch sent twice is harmless.

**One owner per record** (the rule is Open mSupply's: a record is edited at the site
that owns it). The central owns the tree of sites and the catalog; a lab owns its
assets while they are at its site, and its stock, rooms, loans, repairs, kit lists and
losses, audits, and the transfers it sends. The lab a transfer goes to owns its
receipt: an asset on a transfer changes owner when the destination receives it.

What the owner sends is applied; what someone else sends about a record they do not own
is refused, and the refusal is returned as a :class:`Conflict` (what was kept, what was
set aside, and the rule in words) for the caller to keep: nothing is dropped silently.
When the owner's version arrives for a record that was also changed on the other side
since the owner last sent it, the owner's version wins and the other one is returned as
a conflict as well. To see "changed since", the caller keeps the digest of each record
as last applied (``marks``) and passes it back.

This module knows nothing of hubs, batches or HTTP: it takes a connection and records.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import Connection, Table, and_, bindparam, delete, insert, or_, select, update

from inventory.history import STOCK_EVENTS, record_event
from inventory.tables import (
    assets,
    audit_counts,
    audit_findings,
    audit_scans,
    audits,
    events,
    kit_contents,
    kit_losses,
    loan_items,
    loan_kit_returns,
    loans,
    locations,
    models,
    repairs,
    sites,
    stock,
    transfer_discrepancies,
    transfer_items,
    transfer_scans,
    transfers,
)

Record = dict[str, Any]
CHUNK = 500  # keys per IN (...) query

# The lab's records, in the order they are applied (what a row refers to comes first).
LAB_TABLES: tuple[Table, ...] = (
    models, assets, locations, stock, kit_contents, kit_losses, loans, loan_items,
    loan_kit_returns, repairs, transfers, transfer_items, transfer_scans,
    transfer_discrepancies, audits, audit_scans, audit_counts, audit_findings,
)
TABLES: dict[str, Table] = {t.name: t for t in (*LAB_TABLES, sites, events)}
# How far a transfer has gone; a record never goes back along it.
TRANSFER_RANK = {"draft": 0, "shipped": 1, "received": 2}
# Columns that count changes or say when, not what: a local version that differs only
# in them is replaced without a conflict.
BOOKKEEPING = frozenset({"version", "rollout_changed_at"})
# The rules a conflict is settled by, each a template by id. A conflict keeps its rule in
# these words (English, as the API and the logs give it); :func:`read_rule` finds the id
# and the values again, so the web app can say it in the person's language.
RULES: Final[dict[str, str]] = {
    "own_history": "a lab sends only its own history: this event is at {at}, and the hub "
                   "writes for {site}; it was not stored",
    "owner_wins": "owner wins: lab {site} owns this record and changed it while the "
                  "central's copy was changed too; the lab's version is kept and the "
                  "central's is set aside",
    "central_catalog": "the central owns the catalog: the central's model is kept and comes "
                       "down to the lab; the lab's version is set aside",
    "central_tree": "the central owns the tree of sites: the central's site is kept; the "
                    "hub's local version is set aside",
    "serial_taken": "serial number {serial} is asset {holder}'s on the central; {tag} is "
                    "kept without it until one of the two is corrected",
    "asset_elsewhere": "a lab owns its assets while they are at its site: this version "
                       "places {tag} at {at}, not at {site}",
    "asset_owned_there": "owner wins: asset {tag} is at {at} on the central, and that lab "
                         "owns it; lab {site}'s version is set aside",
    "own_records": "a lab owns only its own records: this {what} is at {at}, and the hub "
                   "writes for {site}; it was not applied",
    "transfer_not_here": "transfer {transfer} goes from {origin} to {destination}; lab {site} "
                         "is neither end; it was not applied",
}
_RULE_PATTERNS: Final = {
    rule_id: re.compile("".join(
        f"(?P<{part[1:-1]}>.*?)" if part.startswith("{") else re.escape(part)
        for part in re.split(r"(\{\w+\})", text) if part) + "$", re.S)
    for rule_id, text in RULES.items()}


def rule_text(rule_id: str, **values: object) -> str:
    """A rule of :data:`RULES` in words, with its values."""
    return RULES[rule_id].format(**values)


def read_rule(text: str) -> tuple[str, dict[str, str]] | None:
    """The id and the values of a rule in words (None: words no rule of these gives, such
    as a rule cut short where it was stored)."""
    for rule_id, pattern in _RULE_PATTERNS.items():
        found = pattern.match(text)
        if found is not None:
            return rule_id, found.groupdict()
    return None


@dataclass(frozen=True, slots=True)
class Conflict:
    """A record both sides had in different versions, settled by ``rule``."""

    kind: str  # the table
    key: str  # its primary key, parts joined by "/"
    kept: Record | None  # the version kept (None: there was none)
    set_aside: Record  # the other version
    rule: str


@dataclass(slots=True)
class Applied:
    """What applying records did."""

    changed: int = 0  # records written (new or changed)
    conflicts: list[Conflict] = field(default_factory=list)
    marks: dict[tuple[str, str], str] = field(default_factory=dict)  # (table, key): digest


def row_of(table: Table, r: Any) -> Record:
    """Every column of a row, as a plain dict."""
    m = r._mapping
    return {c.name: m[c.name] for c in table.columns}


def record(table: Table, row: Mapping[str, Any]) -> Record:
    return {"t": table.name, "r": dict(row)}


def key_of(table: Table, row: Mapping[str, Any]) -> str:
    return "/".join(str(row[c.name]) for c in table.primary_key.columns)


def digest(row: Mapping[str, Any]) -> str:
    """A row's fingerprint: SHA-256 of its canonical JSON (first 32 hex digits)."""
    text = json.dumps(dict(row), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _rows(conn: Connection, table: Table, column: Any, values: Iterable[Any]) -> list[Record]:
    keys = sorted(set(values))
    out: list[Record] = []
    for i in range(0, len(keys), CHUNK):
        out += [row_of(table, r) for r in conn.execute(
            select(table).where(column.in_(keys[i:i + CHUNK])))]
    return out


def _where_pk(table: Table, row: Mapping[str, Any]) -> Any:
    return and_(*(c == row[c.name] for c in table.primary_key.columns))


def _current(conn: Connection, table: Table, row: Mapping[str, Any]) -> Record | None:
    found = conn.execute(select(table).where(_where_pk(table, row))).first()
    return None if found is None else row_of(table, found)


def _clean(table: Table, row: Mapping[str, Any]) -> Record:
    """Only the table's columns (a newer hub may send more; an older one fewer)."""
    return {c.name: row.get(c.name) for c in table.columns}


def _put(conn: Connection, table: Table, row: Record, now: Record | None) -> bool:
    """Insert or update ``row``; False when it was there as it is."""
    if now is None:
        conn.execute(insert(table).values(**row))
        return True
    if now == row:
        return False
    conn.execute(update(table).where(_where_pk(table, row)).values(**row))
    return True


# -- up: the lab's records, collected on its hub ---------------------------------------------

@dataclass(frozen=True, slots=True)
class Change:
    """What an event says changed: its subject, kind and site."""

    subject: str
    kind: str
    site_code: str | None


def changes_of(conn: Connection, uuids: Sequence[str]) -> list[Change]:
    """The subjects, kinds and sites of the events with these UUIDs."""
    out: list[Change] = []
    for i in range(0, len(uuids), CHUNK):
        out += [Change(r.subject, r.kind, r.site_code) for r in conn.execute(
            select(events.c.subject, events.c.kind, events.c.site_code)
            .where(events.c.uuid.in_(list(uuids[i:i + CHUNK]))))]
    return out


def event_rows(conn: Connection, uuids: Sequence[str]) -> list[Record]:
    """The events with these UUIDs, in the order given."""
    found = {r["uuid"]: r for r in _rows(conn, events, events.c.uuid, uuids)}
    return [found[u] for u in uuids if u in found]


def lab_records(conn: Connection, changes: Iterable[Change], *, site: str | None) -> list[Record]:
    """The current records the events' subjects name, that the lab ``site`` owns (all of
    them when ``site`` is None), in :data:`LAB_TABLES` order: each asset with its kit
    list, losses, loans and repairs; each transfer and audit with their rows; stock; rooms.
    The models they use go first, so the central can adopt one it does not know."""
    subjects: set[str] = set()
    stock_keys: set[tuple[str, str]] = set()
    location_sites: set[str] = set()
    for c in changes:
        if c.kind in STOCK_EVENTS and c.site_code is not None:
            stock_keys.add((c.site_code, c.subject))
        elif c.kind == "LocationCreated":
            location_sites.add(c.subject)
        else:
            subjects.add(c.subject)

    def mine(code: str | None) -> bool:
        return site is None or code == site

    out: dict[str, list[Record]] = defaultdict(list)
    tags = [r for r in _rows(conn, assets, assets.c.tag, subjects) if mine(r["site_code"])]
    out["assets"] = tags
    tag_keys = [r["tag"] for r in tags]
    out["kit_contents"] = _rows(conn, kit_contents, kit_contents.c.kit_tag, tag_keys)
    out["kit_losses"] = [r for r in _rows(conn, kit_losses, kit_losses.c.kit_tag, tag_keys)
                         if mine(r["site_code"])]
    out["repairs"] = _rows(conn, repairs, repairs.c.asset_tag, tag_keys)
    loan_keys = {r["loan_uuid"] for r in _rows(conn, loan_items, loan_items.c.asset_tag, tag_keys)}
    out["loans"] = [r for r in _rows(conn, loans, loans.c.uuid, loan_keys) if mine(r["site_code"])]
    own_loans = [r["uuid"] for r in out["loans"]]
    out["loan_items"] = _rows(conn, loan_items, loan_items.c.loan_uuid, own_loans)
    out["loan_kit_returns"] = _rows(conn, loan_kit_returns, loan_kit_returns.c.loan_uuid,
                                    own_loans)
    for site_code, model_code in sorted(stock_keys):
        if mine(site_code):
            found = conn.execute(select(stock).where(stock.c.site_code == site_code,
                                                     stock.c.model_code == model_code)).first()
            if found is not None:
                out["stock"].append(row_of(stock, found))
    out["locations"] = [r for r in _rows(conn, locations, locations.c.site_code, location_sites)
                        if mine(r["site_code"])]
    moving = [r for r in _rows(conn, transfers, transfers.c.uuid, subjects)
              if mine(r["from_site_code"]) or mine(r["to_site_code"])]
    out["transfers"] = moving
    moving_keys = [r["uuid"] for r in moving]
    # Items the lab received as missing and marked lost: the receipt is the lab's to report.
    lost_here = [r["uuid"] for r in moving if r["status"] == "received"
                 and site is not None and r["to_site_code"] == site]
    lost = {r["tag"] for r in _rows(conn, transfer_discrepancies,
                                    transfer_discrepancies.c.transfer_uuid, lost_here)
            if r["kind"] == "missing" and r["resolution"] == "lost"}
    out["assets"] += [r for r in _rows(conn, assets, assets.c.tag, lost - set(tag_keys))
                      if r["status"] == "lost"]
    for table, column in ((transfer_items, transfer_items.c.transfer_uuid),
                          (transfer_scans, transfer_scans.c.transfer_uuid),
                          (transfer_discrepancies, transfer_discrepancies.c.transfer_uuid)):
        out[table.name] = _rows(conn, table, column, moving_keys)
    counted = [r for r in _rows(conn, audits, audits.c.uuid, subjects) if mine(r["site_code"])]
    out["audits"] = counted
    audit_keys = [r["uuid"] for r in counted]
    for table, column in ((audit_scans, audit_scans.c.audit_uuid),
                          (audit_counts, audit_counts.c.audit_uuid),
                          (audit_findings, audit_findings.c.audit_uuid)):
        out[table.name] = _rows(conn, table, column, audit_keys)
    used = ({r["model_code"] for r in tags} | {r["model_code"] for r in out["stock"]}
            | {r["model_code"] for r in out["audit_counts"]})
    out["models"] = _rows(conn, models, models.c.code, used)
    return [record(t, row) for t in LAB_TABLES for row in out.get(t.name, [])]


# -- up: applied on the central --------------------------------------------------------------

def apply_events(conn: Connection, rows: Sequence[Mapping[str, Any]], *,
                 site: str) -> tuple[int, list[Conflict]]:
    """Store the lab ``site``'s events by UUID (one already there is left as it is):
    ``(new, refused)``. An event at another site of the tree is refused: each lab sends
    its own. An event at a site the tree does not have is the hub's own history of a
    site it made for itself before it joined, and is kept."""
    have = {r["uuid"] for r in _rows(conn, events, events.c.uuid, [r["uuid"] for r in rows])}
    known = set(_site_rows(conn, {r["site_code"] for r in rows
                                  if r.get("site_code") not in (None, site)}))
    new: list[Record] = []
    refused: list[Conflict] = []
    for raw in rows:
        row = _clean(events, raw)
        if row["uuid"] in have:
            continue
        have.add(row["uuid"])
        if row["site_code"] not in (None, site) and row["site_code"] in known:
            refused.append(Conflict(
                "events", row["uuid"], None, row,
                rule_text("own_history", at=row["site_code"], site=site)))
            continue
        new.append(row)
    if new:
        conn.execute(insert(events), new)
    return len(new), refused


def _refuse(table: Table, row: Record, now: Record | None, rule: str) -> Conflict:
    return Conflict(table.name, key_of(table, row), now, row, rule)


def _owner_wins(table: Table, row: Record, now: Record, site: str) -> Conflict:
    return Conflict(table.name, key_of(table, row), row, now,
                    rule_text("owner_wins", site=site))


class _Central:
    """The central's side of one batch of a lab's records."""

    def __init__(self, conn: Connection, site: str, marks: Mapping[tuple[str, str], str],
                 by: str) -> None:
        self.conn, self.site, self.marks, self.by = conn, site, marks, by
        self.done = Applied()
        # The central's rows of the batch's records, read a table at a time, and the
        # writes, sent a table at a time (a week offline is thousands of records).
        self.cache: dict[str, dict[str, Record]] = {}
        self.inserts: dict[str, list[Record]] = defaultdict(list)
        self.updates: dict[str, list[Record]] = defaultdict(list)
        self.serial_of: dict[str | None, str] = {}

    def prefetch(self, table: Table, rows: Sequence[Record]) -> None:
        first = next(iter(table.primary_key.columns))
        found: dict[str, Record] = {}
        for row in _rows(self.conn, table, first, {r[first.name] for r in rows}):
            found[key_of(table, row)] = row
        self.cache[table.name] = found

    def current(self, table: Table, row: Record) -> Record | None:
        cached = self.cache.get(table.name)
        if cached is None:
            return _current(self.conn, table, row)
        return cached.get(key_of(table, row))

    def put(self, table: Table, row: Record, now: Record | None) -> bool:
        """Queue ``row``'s insert or update; False when it is there as it is."""
        if now == row:
            return False
        (self.inserts if now is None else self.updates)[table.name].append(row)
        self.cache.setdefault(table.name, {})[key_of(table, row)] = row
        return True

    def flush(self, table: Table) -> None:
        """Send the queued writes of ``table``: one statement for the inserts, one
        (executed for many rows) for the updates."""
        new = self.inserts.pop(table.name, [])
        if new:
            self.conn.execute(insert(table), new)
        changed = self.updates.pop(table.name, [])
        if changed:
            pk = list(table.primary_key.columns)
            statement = update(table).where(and_(*(c == bindparam(f"k_{c.name}") for c in pk)))\
                .values({c.name: bindparam(f"v_{c.name}") for c in table.columns})
            self.conn.execute(statement, [
                {**{f"k_{c.name}": row[c.name] for c in pk},
                 **{f"v_{c.name}": row[c.name] for c in table.columns}} for row in changed])

    def owned_put(self, table: Table, row: Record, *, handover: bool = False) -> None:
        """Write a record the lab owns; a central-side change since the lab last sent it
        is kept as a conflict (owner wins)."""
        now = self.current(table, row)
        key = key_of(table, row)
        if now is not None and now != row and not handover:
            mark = self.marks.get((table.name, key))
            if mark is None or mark != digest(now):
                self.done.conflicts.append(_owner_wins(table, row, now, self.site))
        if self.put(table, row, now):
            self.done.changed += 1
        self.done.marks[(table.name, key)] = digest(row)

    def model(self, row: Record) -> None:
        now = _current(self.conn, models, row)
        if now is None:
            self.conn.execute(insert(models).values(**row))
            record_event(conn=self.conn, kind="ModelCreated", subject=row["code"], by=self.by,
                         to_state={k: row[k] for k in ("name", "category", "tracking", "unit")},
                         note=f"adopted from the catalog of lab {self.site}'s hub")
            self.done.changed += 1
            return
        fields = ("name", "category", "tracking", "unit", "retired_at")
        if any(now[f] != row[f] for f in fields):
            self.done.conflicts.append(_refuse(models, row, now, rule_text("central_catalog")))

    def serials(self, rows: Sequence[Record]) -> None:
        """Which tag holds each serial number of ``rows`` on the central."""
        self.serial_of = {r["serial_number"]: r["tag"] for r in _rows(
            self.conn, assets, assets.c.serial_number,
            {r["serial_number"] for r in rows if r["serial_number"] is not None})}

    def asset(self, row: Record) -> None:
        now = self.current(assets, row)
        if now == row:
            return  # a replay, or a copy the central already holds as it is
        holder = self.serial_of.get(row["serial_number"])
        if row["serial_number"] is not None and holder not in (None, row["tag"]):
            # Serial numbers are unique on the central: two labs typed the same one.
            self.done.conflicts.append(_refuse(
                assets, row, now, rule_text("serial_taken", serial=repr(row["serial_number"]),
                                            holder=holder, tag=row["tag"])))
            row = {**row, "serial_number": None}
            if now == row:
                return
        self.serial_of[row["serial_number"]] = row["tag"]
        if (now is not None and row["site_code"] == now["site_code"] != self.site
                and now["status"] == "in_transit" and row["status"] == "lost"
                and self._coming_here(row["tag"])):
            self.owned_put(assets, row, handover=True)  # missing on receipt, marked lost
            return
        if row["site_code"] != self.site:
            self.done.conflicts.append(_refuse(
                assets, row, now, rule_text("asset_elsewhere", tag=row["tag"],
                                            at=row["site_code"], site=self.site)))
            return
        if now is None or now["site_code"] == self.site:
            self.owned_put(assets, row)
            return
        if now["status"] == "in_transit" and self._coming_here(row["tag"]):
            self.owned_put(assets, row, handover=True)  # the receipt: the owner changes
            return
        self.done.conflicts.append(_refuse(
            assets, row, now, rule_text("asset_owned_there", tag=row["tag"],
                                        at=now["site_code"], site=self.site)))

    def _coming_here(self, tag: str) -> bool:
        return self.conn.execute(
            select(transfers.c.uuid).select_from(transfer_items.join(
                transfers, transfers.c.uuid == transfer_items.c.transfer_uuid))
            .where(transfer_items.c.asset_tag == tag, transfers.c.to_site_code == self.site,
                   transfers.c.status.in_(("shipped", "received")))
        ).first() is not None

    def at_site(self, table: Table, row: Record, site_code: str | None, what: str) -> None:
        if site_code == self.site:
            self.owned_put(table, row)
            return
        now = self.current(table, row)
        if now != row:
            self.done.conflicts.append(_refuse(
                table, row, now,
                rule_text("own_records", what=what, at=site_code, site=self.site)))

    def _site_of(self, table: Table, column: Any, key: Any, pending: Mapping[str, Record],
                 field_: str) -> str | None:
        if key in pending:
            return str(pending[key][field_])
        found = self.conn.execute(select(getattr(table.c, field_)).where(column == key)).first()
        return None if found is None else found[0]

    def transfer(self, row: Record) -> bool:
        """Apply a transfer's row; True if its child rows may be applied too."""
        now = self.current(transfers, row)
        rank = TRANSFER_RANK.get(row["status"], -1)
        had = -1 if now is None else TRANSFER_RANK.get(now["status"], -1)
        if row["from_site_code"] == self.site and row["status"] != "received":
            if rank < had:
                return False  # older than what the destination already reported
            self.owned_put(transfers, row)
            return True
        if row["to_site_code"] == self.site:
            if row["status"] != "received" or now is None:
                return False  # the destination owns only the receipt
            if had < rank:
                self.owned_put(transfers, row, handover=True)
            return True
        if row["from_site_code"] == self.site:
            return False  # the sender's copy of a receipt: the destination reports it
        self.done.conflicts.append(_refuse(
            transfers, row, now, rule_text(
                "transfer_not_here", transfer=row["uuid"], origin=row["from_site_code"],
                destination=row["to_site_code"], site=self.site)))
        return False

    def child(self, table: Table, row: Record) -> None:
        """A row that is only ever added (scans, findings, discrepancies, items)."""
        if self.put(table, row, self.current(table, row)):
            self.done.changed += 1


def apply_lab_records(conn: Connection, records: Sequence[Mapping[str, Any]], *, site: str,
                      marks: Mapping[tuple[str, str], str], by: str) -> Applied:
    """Apply the records lab ``site``'s hub sent (see the module's text): what the lab
    owns is written, the rest refused as conflicts. ``marks``: each record's digest as
    last applied from its owner (for the records in this batch at least); the result's
    ``marks`` are the new ones to keep. ``by`` names the hub in the events written here
    (a model adopted from the lab's catalog)."""
    grouped: dict[str, list[Record]] = defaultdict(list)
    for raw in records:
        table = TABLES.get(str(raw.get("t")))
        if table is None or table.name not in {t.name for t in LAB_TABLES}:
            raise ValueError(f"a lab's records do not include {raw.get('t')!r}")
        grouped[table.name].append(_clean(table, raw["r"]))
    c = _Central(conn, site, marks, by)

    def phase(table: Table, apply_one: Any) -> None:
        rows = grouped[table.name]
        if rows:
            c.prefetch(table, rows)
            for row in rows:
                apply_one(row)
            c.flush(table)

    def asset_site(tag: str) -> str | None:
        found = c.current(assets, {"tag": tag})
        return None if found is None else str(found["site_code"])

    for row in grouped["models"]:
        c.model(row)
    c.serials(grouped["assets"])
    phase(assets, c.asset)
    phase(locations, lambda row: c.at_site(locations, row, row["site_code"], "room"))
    phase(stock, lambda row: c.at_site(stock, row, row["site_code"], "stock"))
    kit_sites = {r["kit_tag"]: asset_site(r["kit_tag"]) for r in grouped["kit_contents"]}
    for kit, where in kit_sites.items():
        if where == site:  # the kit's list is replaced whole, as on the hub
            conn.execute(delete(kit_contents).where(kit_contents.c.kit_tag == kit))
    own_lists = [r for r in grouped["kit_contents"] if kit_sites[r["kit_tag"]] == site]
    if own_lists:
        conn.execute(insert(kit_contents), own_lists)
    for row in grouped["kit_contents"]:
        if kit_sites[row["kit_tag"]] != site:
            c.at_site(kit_contents, row, kit_sites[row["kit_tag"]], "kit list")
    c.flush(kit_contents)
    phase(kit_losses, lambda row: c.at_site(kit_losses, row, row["site_code"], "kit loss"))
    loan_rows = {r["uuid"]: r for r in grouped["loans"]}
    phase(loans, lambda row: c.at_site(loans, row, row["site_code"], "loan"))
    for name in ("loan_items", "loan_kit_returns"):
        phase(TABLES[name], lambda row, name=name: c.at_site(
            TABLES[name], row,
            c._site_of(loans, loans.c.uuid, row["loan_uuid"], loan_rows, "site_code"),
            "loan's item"))
    phase(repairs, lambda row: c.at_site(repairs, row, asset_site(row["asset_tag"]), "repair"))
    open_transfers: dict[str, bool] = {}
    phase(transfers, lambda row: open_transfers.__setitem__(row["uuid"], c.transfer(row)))
    for row in grouped["transfers"]:
        if open_transfers[row["uuid"]] and row["status"] == "draft":
            conn.execute(delete(transfer_items).where(
                transfer_items.c.transfer_uuid == row["uuid"]))
    for name in ("transfer_items", "transfer_scans", "transfer_discrepancies"):
        phase(TABLES[name], lambda row, name=name: c.child(TABLES[name], row)
              if open_transfers.get(row["transfer_uuid"]) else None)
    audit_rows = {r["uuid"]: r for r in grouped["audits"]}
    phase(audits, lambda row: c.at_site(audits, row, row["site_code"], "audit"))
    for name in ("audit_scans", "audit_counts", "audit_findings"):
        def audit_row(row: Record, name: str = name) -> None:
            where = c._site_of(audits, audits.c.uuid, row["audit_uuid"], audit_rows,
                               "site_code")
            if where == site:
                c.child(TABLES[name], row)
            else:
                c.at_site(TABLES[name], row, where, "audit's row")
        phase(TABLES[name], audit_row)
    return c.done


# -- down: what the central sends a lab, and how its hub takes it in -----------------------------

def _site_rows(conn: Connection, codes: Iterable[str]) -> dict[str, Record]:
    return {r["code"]: r for r in _rows(conn, sites, sites.c.code, codes)}


def chain(conn: Connection, code: str) -> list[Record]:
    """The site ``code`` and its ancestors, the root first."""
    out: list[Record] = []
    seen: set[str] = set()
    at: str | None = code
    while at is not None and at not in seen:
        seen.add(at)
        found = _site_rows(conn, [at]).get(at)
        if found is None:
            break
        out.append(found)
        at = found["parent_code"]
    return out[::-1]


def tree_for(conn: Connection, site: str) -> list[Record]:
    """The tree a lab's hub holds: its ancestors, the lab, and the lab's siblings; parents
    before children."""
    out = chain(conn, site)
    if not out:
        return []
    parent = out[-1]["parent_code"]
    if parent is not None:
        out += [row_of(sites, r) for r in conn.execute(
            select(sites).where(sites.c.parent_code == parent, sites.c.code != site)
            .order_by(sites.c.code))]
    return [record(sites, r) for r in out]


def catalog(conn: Connection) -> list[Record]:
    """Every model of the catalog."""
    return [record(models, row_of(models, r))
            for r in conn.execute(select(models).order_by(models.c.code))]


def _put_central_owned(conn: Connection, table: Table, row: Record, rule: str) -> Conflict | None:
    """On a hub: write the central's version of a record the central owns. A different
    local version is replaced, and returned as a conflict (the central's is kept)."""
    now = _current(conn, table, row)
    _put(conn, table, row, now)
    if now is not None and any(now[k] != row[k] for k in row if k not in BOOKKEEPING):
        return Conflict(table.name, key_of(table, row), row, now, rule)
    return None


def apply_central_owned(conn: Connection, records: Sequence[Mapping[str, Any]]) -> list[Conflict]:
    """On a hub: the central's sites (parents first) and models, replacing local versions
    (each replaced one is returned as a conflict). Local sites and models the central
    does not know are left as they are."""
    found: list[Conflict] = []
    for raw in records:
        table = TABLES[str(raw["t"])]
        if table.name not in ("sites", "models"):
            raise ValueError(f"{table.name!r} is not a record the central owns")
        row = _clean(table, raw["r"])
        rule = rule_text("central_tree" if table is sites else "central_catalog")
        if table is sites and row["parent_code"] is not None and not _site_rows(
                conn, [row["parent_code"]]):
            raise ValueError(f"site {row['code']} came before its parent {row['parent_code']}")
        conflict = _put_central_owned(conn, table, row, rule)
        if conflict is not None:
            found.append(conflict)
    return found


def put_events(conn: Connection, rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Insert the events not already there (by UUID); the UUIDs of the new ones."""
    fresh = [_clean(events, r) for r in rows]
    have = {r["uuid"] for r in _rows(conn, events, events.c.uuid, [r["uuid"] for r in fresh])}
    new = [r for r in fresh if r["uuid"] not in have]
    if new:
        conn.execute(insert(events), new)
    return [r["uuid"] for r in new]


def rollout_for(conn: Connection, site: str) -> list[Record]:
    """The lab's rollout status and its history (its SiteRolloutChanged events)."""
    found = _site_rows(conn, [site]).get(site)
    if found is None:
        return []
    head = {"code": site, "rollout_status": found["rollout_status"],
            "rollout_changed_at": found["rollout_changed_at"]}
    history = [row_of(events, r) for r in conn.execute(
        select(events).where(events.c.subject == site, events.c.kind == "SiteRolloutChanged")
        .order_by(events.c.at, events.c.uuid))]
    return [{"t": "rollout", "r": head}, *(record(events, e) for e in history)]


def apply_rollout(conn: Connection, records: Sequence[Mapping[str, Any]]) -> list[str]:
    """On a hub: the lab's rollout status as the central has it, and its history; the
    UUIDs of the events that were new here (copies of the central's)."""
    for raw in records:
        if raw["t"] == "rollout":
            r = raw["r"]
            conn.execute(update(sites).where(sites.c.code == r["code"]).values(
                rollout_status=r["rollout_status"], rollout_changed_at=r["rollout_changed_at"]))
    return put_events(conn, [raw["r"] for raw in records if raw["t"] == "events"])


def kits_for(conn: Connection, site: str) -> list[Record]:
    """The lists of the kits at lab ``site``, as the central holds them."""
    rows = conn.execute(
        select(kit_contents).select_from(kit_contents.join(
            assets, assets.c.tag == kit_contents.c.kit_tag))
        .where(assets.c.site_code == site)
        .order_by(kit_contents.c.kit_tag, kit_contents.c.part))
    return [record(kit_contents, row_of(kit_contents, r)) for r in rows]


def apply_kits(conn: Connection, records: Sequence[Mapping[str, Any]]) -> int:
    """On a hub: a kit's list from the central where the hub has the kit and no list for
    it (a replacement hub gets its kits' lists back); a list the hub has is its own and
    stays. How many kits got a list."""
    by_kit: dict[str, list[Record]] = defaultdict(list)
    for raw in records:
        by_kit[raw["r"]["kit_tag"]].append(_clean(kit_contents, raw["r"]))
    done = 0
    for kit, rows in by_kit.items():
        known = conn.execute(select(assets.c.tag).where(assets.c.tag == kit)).first()
        listed = conn.execute(select(kit_contents.c.part)
                              .where(kit_contents.c.kit_tag == kit)).first()
        if known is not None and listed is None:
            conn.execute(insert(kit_contents), rows)
            done += 1
    return done


def transfers_for(conn: Connection, site: str, *, since_us: int) -> list[Record]:
    """The transfers to or from lab ``site`` that are open or were received after
    ``since_us``, with what the lab needs to take them in: the other end's sites (its
    chain), the items' assets as the central has them and their histories, the transfer's
    own events, rows, scans and discrepancies, and the lists of the kits on them."""
    rows = [row_of(transfers, r) for r in conn.execute(
        select(transfers).where(
            or_(transfers.c.from_site_code == site, transfers.c.to_site_code == site),
            transfers.c.status != "draft",
            or_(transfers.c.status != "received", transfers.c.received_at >= since_us))
        .order_by(transfers.c.created_at, transfers.c.uuid))]
    keys = [r["uuid"] for r in rows]
    items = _rows(conn, transfer_items, transfer_items.c.transfer_uuid, keys)
    tags = sorted({r["asset_tag"] for r in items})
    ends = sorted({r["from_site_code"] for r in rows} | {r["to_site_code"] for r in rows})
    out: list[Record] = []
    seen: set[str] = set()
    for end in ends:
        for s in chain(conn, end):
            if s["code"] not in seen:
                seen.add(s["code"])
                out.append(record(sites, s))
    out += [record(assets, r) for r in _rows(conn, assets, assets.c.tag, tags)]
    history = _rows(conn, events, events.c.subject, [*tags, *keys])
    history.sort(key=lambda e: (e["at"], e["uuid"]))
    out += [record(events, e) for e in history]
    out += [record(transfers, r) for r in rows]
    out += [record(transfer_items, r) for r in items]
    for table, column in ((transfer_scans, transfer_scans.c.transfer_uuid),
                          (transfer_discrepancies, transfer_discrepancies.c.transfer_uuid)):
        out += [record(table, r) for r in _rows(conn, table, column, keys)]
    out += [record(kit_contents, r)
            for r in _rows(conn, kit_contents, kit_contents.c.kit_tag, tags)]
    return out


def _free_serial(conn: Connection, row: Record) -> Record:
    """An asset row from elsewhere, without its serial number when another asset here has
    it (serial numbers are unique in a database; the row's owner corrects one of them)."""
    if row.get("serial_number") is None:
        return row
    holder = conn.execute(select(assets.c.tag).where(
        assets.c.serial_number == row["serial_number"])).scalar()
    return row if holder in (None, row["tag"]) else {**row, "serial_number": None}


def apply_transfers(conn: Connection, site: str,
                    records: Sequence[Mapping[str, Any]]) -> list[str]:
    """On lab ``site``'s hub: the transfers to and from it as the central has them.

    A transfer coming to the lab is taken in with its items' assets (at the sender, in
    transit) and their histories, so the hub's own receive flow works on it. The lab's
    own assets stay as the hub has them, except those it shipped on a transfer the
    central reports received: those now belong to the destination, and take the
    central's version. A transfer never goes back (draft, shipped, received). Returns
    the UUIDs of the events that were new here (copies of other labs' history)."""
    grouped: dict[str, list[Record]] = defaultdict(list)
    for raw in records:
        grouped[str(raw["t"])].append(_clean(TABLES[str(raw["t"])], raw["r"]))
    for row in grouped["sites"]:
        if _current(conn, sites, row) is None:
            conn.execute(insert(sites).values(**row))
    central = {r["uuid"]: r for r in grouped["transfers"]}
    handed_over = {r["asset_tag"] for r in grouped["transfer_items"]
                   if central[r["transfer_uuid"]]["status"] == "received"
                   and central[r["transfer_uuid"]]["from_site_code"] == site}
    for row in grouped["assets"]:
        now = _current(conn, assets, row)
        if now is None or now["site_code"] != site or (
                row["tag"] in handed_over and now["status"] == "in_transit"):
            _put(conn, assets, _free_serial(conn, row), now)
    copies = put_events(conn, grouped["events"])
    for row in grouped["transfers"]:
        now = _current(conn, transfers, row)
        if now is None or TRANSFER_RANK.get(now["status"], -1) < TRANSFER_RANK.get(
                row["status"], -1):
            _put(conn, transfers, row, now)
    for name in ("transfer_items", "transfer_scans", "transfer_discrepancies"):
        for row in grouped[name]:
            if _current(conn, TABLES[name], row) is None:
                conn.execute(insert(TABLES[name]).values(**row))
    kits = defaultdict(list)
    for row in grouped["kit_contents"]:
        kits[row["kit_tag"]].append(row)
    for kit, rows in kits.items():
        owner = conn.execute(select(assets.c.site_code).where(assets.c.tag == kit)).scalar()
        if owner != site:
            conn.execute(delete(kit_contents).where(kit_contents.c.kit_tag == kit))
            conn.execute(insert(kit_contents), rows)
    return copies


# -- a replacement hub: the lab's own records back from the central ---------------------------

def lab_snapshot(conn: Connection, site: str) -> list[Record]:
    """Everything of lab ``site`` the central holds, for a hub that replaces the lab's
    old one (a stolen laptop): its records as :func:`lab_records` gives them, the sites
    and assets its transfers name at other labs, and its history (the events at the lab
    and those of its assets), oldest first."""
    tags = list(conn.execute(select(assets.c.tag).where(assets.c.site_code == site)
                             .order_by(assets.c.tag)).scalars())
    moved = list(conn.execute(select(transfers.c.uuid).where(
        or_(transfers.c.from_site_code == site, transfers.c.to_site_code == site))).scalars())
    counted = list(conn.execute(select(audits.c.uuid).where(audits.c.site_code == site))
                   .scalars())
    stocked = list(conn.execute(select(stock.c.model_code).where(stock.c.site_code == site))
                   .scalars())
    changes = ([Change(t, "AssetRegistered", site) for t in tags]
               + [Change(u, "TransferDrafted", site) for u in moved]
               + [Change(u, "AuditStarted", site) for u in counted]
               + [Change(m, "StockAdjusted", site) for m in stocked]
               + [Change(site, "LocationCreated", site)])
    records = lab_records(conn, changes, site=site)
    items = {r["r"]["asset_tag"] for r in records if r["t"] == "transfer_items"}
    elsewhere = [r for r in _rows(conn, assets, assets.c.tag, items - set(tags))]
    ends = {r["r"][k] for r in records if r["t"] == "transfers"
            for k in ("from_site_code", "to_site_code")}
    out: list[Record] = []
    seen: set[str] = set()
    for end in sorted(ends - {site}):
        for s in chain(conn, end):
            if s["code"] not in seen:
                seen.add(s["code"])
                out.append(record(sites, s))
    out += [record(models, r) for r in _rows(conn, models, models.c.code,
                                             {r["model_code"] for r in elsewhere})]
    out += [record(assets, r) for r in elsewhere]
    out += records
    history = _rows(conn, events, events.c.site_code, [site])
    known = {e["uuid"] for e in history}
    history += [e for e in _rows(conn, events, events.c.subject, tags) if e["uuid"] not in known]
    history.sort(key=lambda e: (e["at"], e["uuid"]))
    return out + [record(events, e) for e in history]


def restore_lab(conn: Connection, records: Sequence[Mapping[str, Any]]) -> list[str]:
    """On a replacement hub: take in :func:`lab_snapshot`'s records, adding only what the
    hub does not have (nothing it holds is changed). The UUIDs of the events added."""
    history: list[Record] = []
    for raw in records:
        table = TABLES[str(raw["t"])]
        row = _clean(table, raw["r"])
        if table is events:
            history.append(row)
        elif _current(conn, table, row) is None:
            conn.execute(insert(table).values(**(_free_serial(conn, row) if table is assets
                                                  else row)))
    return put_events(conn, history)
