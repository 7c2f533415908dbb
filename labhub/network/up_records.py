"""The up streams of the hub's records: the device registry, runs and their notes
(:data:`UP`), both sides: collected on the hub, applied on the central.

- ``runs`` and ``notes`` go by the hub's outbox (:mod:`labhub.network.outbox`), position
  ``[seq]``, as records (:func:`labhub.network.protocol.pack_records`): each run or note
  as it is now, by its UUID. The central upserts them into its own ``runs``,
  ``run_channels`` and ``run_notes``, a device named ``site/device``
  (:func:`~labhub.network.protocol.network_device`); a run with no site is the lab's. A
  note carries its run's record too, so a note never arrives before its run.
- ``devices`` is a snapshot of the hub's registry, sent when it changed: position
  ``[n, d]``, with ``d`` a 63-bit digest of the rows as sent and ``n`` one more than the
  acknowledged ``n`` (positions only move forward). The central upserts the lab's devices
  under ``site/device`` with the lab as their site, and marks the lab's devices the hub
  no longer lists as offline (it never deletes one: readings and runs name it).

A hub writes only its own lab's data: a run of another site, or a UUID the central
already holds for another lab, makes the batch a :class:`ProtocolError` (kept as a dead
letter on the central, nothing applied).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from firmware_bridge.registry import devices
from labhub.network import outbox
from labhub.network.protocol import (
    CODEC_RECORDS,
    Position,
    ProtocolError,
    Section,
    network_device,
    pack_records,
    unpack_records,
)
from labhub.network.streams import FromHub, UpStream
from sensors.storage import run_channels, run_notes, runs

# Records read from the outbox at a time; a section stops at its byte budget (zlib packs
# runs ~5x: the budget is counted on the JSON before compression, so a section is smaller).
OUTBOX_READ = 500
DEVICE_FIELDS = ("id", "kind", "name", "site", "chip", "vid", "pid", "serial_number",
                 "firmware", "first_seen", "last_seen", "online", "status", "lines",
                 "readings", "rejects", "settings")
RUN_FIELDS = ("id", "title", "group_name", "site", "started_at", "stopped_at", "created_at",
              "started_by")


def _now_us() -> int:
    return time.time_ns() // 1000


def _insert(conn: Connection) -> Any:
    return (sqlite if conn.dialect.name == "sqlite" else postgresql).insert


def _size(record: dict[str, Any]) -> int:
    return len(json.dumps(record, separators=(",", ":"), ensure_ascii=False)) + 1


def _field(record: dict[str, Any], name: str, kind: type | tuple[type, ...], n: int,
           *, optional: bool = False) -> Any:
    value = record.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ProtocolError(f"record {n}: field {name!r} is missing or not of its type")
    return value


# -- runs ------------------------------------------------------------------------------------


def _run_record(conn: Connection, run_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(*(runs.c[f] for f in RUN_FIELDS)).where(runs.c.id == run_id)
                       ).first()
    if row is None:
        return None
    record = dict(row._mapping)
    record["channels"] = [[d, c] for d, c in conn.execute(
        select(run_channels.c.device, run_channels.c.channel)
        .where(run_channels.c.run_id == run_id)
        .order_by(run_channels.c.device, run_channels.c.channel))]
    return record


def _note_record(conn: Connection, note_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(run_notes).where(run_notes.c.id == note_id)).first()
    if row is None:
        return None
    run = _run_record(conn, row.run_id)
    if run is None:
        return None
    return {"id": row.id, "run_id": row.run_id, "ts": row.ts, "text": row.text, "run": run}


def _lab_site(record: dict[str, Any], hub: FromHub, n: int) -> str:
    site = record.get("site")
    if site is None:
        return hub.site
    if site != hub.site:
        raise ProtocolError(f"record {n}: run {record.get('id')!r} is of site {site!r}, "
                            f"not of this hub's lab {hub.site!r}")
    return hub.site


def _check_runs(conn: Connection, records: Sequence[dict[str, Any]], hub: FromHub
                ) -> set[str]:
    """The run ids already on the central; ProtocolError for one of another lab."""
    ids = [r["id"] for r in records]
    there: set[str] = set()
    for start in range(0, len(ids), 500):
        for run_id, site in conn.execute(select(runs.c.id, runs.c.site)
                                         .where(runs.c.id.in_(ids[start:start + 500]))):
            if site != hub.site:
                raise ProtocolError(f"run {run_id!r} is on the central already, at site "
                                    f"{site!r}, not at this hub's lab {hub.site!r}")
            there.add(run_id)
    return there


def _upsert_runs(conn: Connection, records: Sequence[dict[str, Any]], hub: FromHub) -> int:
    """Store runs by UUID (with their channels); how many were new."""
    rows = []
    for n, r in enumerate(records, start=1):
        rows.append({
            "id": _field(r, "id", str, n), "title": _field(r, "title", str, n),
            "group_name": _field(r, "group_name", str, n, optional=True),
            "site": _lab_site(r, hub, n), "started_at": _field(r, "started_at", int, n),
            "stopped_at": _field(r, "stopped_at", int, n, optional=True),
            "created_at": _field(r, "created_at", int, n),
            "started_by": _field(r, "started_by", str, n, optional=True)})
        channels = _field(r, "channels", list, n)
        if not all(isinstance(c, list) and len(c) == 2 and all(isinstance(x, str) for x in c)
                   for c in channels):
            raise ProtocolError(f"record {n}: channels are [device, channel] pairs")
    if not rows:
        return 0
    by_id = {row["id"]: row for row in rows}  # a run listed twice: its last state
    there = _check_runs(conn, list(by_id.values()), hub)
    stmt = _insert(conn)(runs)
    conn.execute(stmt.on_conflict_do_update(
        index_elements=["id"],
        set_={f: stmt.excluded[f] for f in RUN_FIELDS if f not in ("id", "created_at")}),
        list(by_id.values()))
    conn.execute(delete(run_channels).where(run_channels.c.run_id.in_(list(by_id))))
    channel_rows = {(r["id"], network_device(hub.site, d), c): None
                    for r in records for d, c in r["channels"]}
    if channel_rows:
        conn.execute(insert(run_channels), [{"run_id": i, "device": d, "channel": c}
                                            for i, d, c in channel_rows])
    return len(set(by_id) - there)


class _OutboxStream:
    """A stream of outbox records (runs, notes): position ``[seq]``."""

    name = ""

    def _record(self, conn: Connection, key: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def collect(self, conn: Connection, after: Position, budget_bytes: int) -> Section | None:
        seq = after[0] if after else 0
        records: dict[str, dict[str, Any]] = {}
        size = 0
        last = seq
        while True:
            changes = outbox.after(conn, stream=self.name, seq=last, limit=OUTBOX_READ,
                                   now_us=_now_us())
            if not changes:
                break
            for change in changes:
                record = self._record(conn, change.key)
                cost = _size(record) if record is not None else 0
                if records and size + cost > budget_bytes:
                    break
                last = change.seq
                if record is not None:  # a record gone since (none is deleted today)
                    records.pop(change.key, None)
                    records[change.key] = record
                    size += cost
            else:
                continue
            break
        if last == seq:
            return None
        items = list(records.values())
        return Section(stream=self.name, codec=CODEC_RECORDS, start=list(after), to=[last],
                       count=len(items), data=pack_records(items))

    def backlog(self, conn: Connection, after: Position) -> int:
        return outbox.pending(conn, stream=self.name, seq=after[0] if after else 0)

    def apply(self, conn: Connection, hub: FromHub, section: Section) -> int:
        raise NotImplementedError


def _records(section: Section) -> list[dict[str, Any]]:
    if section.codec != CODEC_RECORDS:
        raise ProtocolError(f"the {section.stream} stream's codec is {CODEC_RECORDS}, not "
                            f"{section.codec!r}")
    return unpack_records(section.data)


class RunsStream(_OutboxStream):
    name = "runs"

    def _record(self, conn: Connection, key: str) -> dict[str, Any] | None:
        return _run_record(conn, key)

    def apply(self, conn: Connection, hub: FromHub, section: Section) -> int:
        return _upsert_runs(conn, _records(section), hub)


class NotesStream(_OutboxStream):
    name = "notes"

    def _record(self, conn: Connection, key: str) -> dict[str, Any] | None:
        return _note_record(conn, key)

    def apply(self, conn: Connection, hub: FromHub, section: Section) -> int:
        records = _records(section)
        notes = []
        for n, r in enumerate(records, start=1):
            run = _field(r, "run", dict, n)
            if run.get("id") != r.get("run_id"):
                raise ProtocolError(f"record {n}: the note's run is not its run_id")
            notes.append({"id": _field(r, "id", str, n), "run_id": _field(r, "run_id", str, n),
                          "ts": _field(r, "ts", int, n), "text": _field(r, "text", str, n)})
        runs_of = {r["run"]["id"]: r["run"] for r in records}
        there = set(conn.execute(select(runs.c.id).where(runs.c.id.in_(list(runs_of))))
                    .scalars())
        missing = [run for run_id, run in runs_of.items() if run_id not in there]
        if missing:  # the note came before its run's own record: take the run from it
            _upsert_runs(conn, missing, hub)
        _check_runs(conn, list(runs_of.values()), hub)
        by_id = {note["id"]: note for note in notes}
        held = {i: run_id for i, run_id in conn.execute(
            select(run_notes.c.id, run_notes.c.run_id)
            .where(run_notes.c.id.in_(list(by_id))))}
        for note_id, run_id in held.items():
            if by_id[note_id]["run_id"] != run_id:
                raise ProtocolError(f"note {note_id!r} is on the central already, of run "
                                    f"{run_id!r}")
        if not by_id:
            return 0
        stmt = _insert(conn)(run_notes)
        conn.execute(stmt.on_conflict_do_update(
            index_elements=["id"], set_={"ts": stmt.excluded.ts, "text": stmt.excluded.text}),
            list(by_id.values()))
        return len(set(by_id) - set(held))


# -- devices ---------------------------------------------------------------------------------


def _registry(conn: Connection) -> list[dict[str, Any]]:
    rows = conn.execute(select(*(devices.c[f] for f in DEVICE_FIELDS))
                        .order_by(devices.c.id))
    return [{**dict(r._mapping), "online": bool(r.online)} for r in rows]


def snapshot_digest(records: Iterable[dict[str, Any]]) -> int:
    """A 63-bit digest of the registry's rows as sent (first 8 bytes of SHA-256)."""
    text = json.dumps(list(records), separators=(",", ":"), sort_keys=True)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


class DevicesStream:
    """The hub's device registry, as a snapshot (see the module's text)."""

    name = "devices"

    def collect(self, conn: Connection, after: Position, budget_bytes: int) -> Section | None:
        records = _registry(conn)
        d = snapshot_digest(records)
        if len(after) == 2 and after[1] == d:
            return None
        n = (after[0] if after else 0) + 1
        return Section(stream=self.name, codec=CODEC_RECORDS, start=list(after), to=[n, d],
                       count=len(records), data=pack_records(records))

    def backlog(self, conn: Connection, after: Position) -> int:
        return 0 if self.collect(conn, after, 0) is None else 1

    def apply(self, conn: Connection, hub: FromHub, section: Section) -> int:
        records = _records(section)
        rows = []
        for n, r in enumerate(records, start=1):
            device = _field(r, "id", str, n)
            if r.get("site") not in (None, hub.site):
                raise ProtocolError(f"record {n}: device {device!r} is of site "
                                    f"{r.get('site')!r}, not of this hub's lab {hub.site!r}")
            row = {f: r.get(f) for f in DEVICE_FIELDS}
            row.update(id=network_device(hub.site, device), site=hub.site, port=None,
                       online=bool(r.get("online")))
            for name in ("kind", "name", "status", "settings"):
                _field(r, name, str, n)
            for name in ("first_seen", "last_seen", "lines", "readings", "rejects"):
                _field(r, name, int, n)
            rows.append(row)
        prefix = network_device(hub.site, "")
        ids = [row["id"] for row in rows]
        lab = select(devices.c.id).where(devices.c.id.startswith(prefix, autoescape=True))
        there = set(conn.execute(lab).scalars())
        if rows:
            stmt = _insert(conn)(devices)
            conn.execute(stmt.on_conflict_do_update(
                index_elements=["id"],
                set_={f: stmt.excluded[f] for f in DEVICE_FIELDS if f not in ("id",
                                                                             "first_seen")}),
                rows)
        gone = sorted(there - set(ids))
        if gone:
            conn.execute(update(devices).where(devices.c.id.in_(gone))
                         .values(online=False))
        return len(set(ids) - there)


UP: tuple[UpStream, ...] = (DevicesStream(), RunsStream(), NotesStream())
