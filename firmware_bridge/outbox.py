"""The hub's outbox: what it publishes waits on disk until the broker has acknowledged it.

School Wi-Fi drops, and paho keeps unsent messages in memory only, capped at 65,535 (a
16-bit packet id) past which ``publish()`` refuses them. So the hub's ``state`` messages
go through :class:`Outbox`, a small SQLite file in the hub's ``data_dir`` (WAL, so it is
cheap and it works the same when the main database is a remote PostgreSQL), and one
thread, :class:`OutboxSender`, moves them to the broker:

- what callers hand over is written to the file in order (one transaction per handful);
- while connected, the oldest rows not yet sent are published at QoS 1, at most
  ``window`` at a time; ``publish().rc`` is checked, and a refusal (paho's queue full)
  leaves the row for the next try;
- a row is deleted only once its PUBACK has arrived. A connection lost with messages in
  flight is no loss: paho sends them again after it reconnects, and a hub restarted with
  rows still in the file publishes them again (QoS 1 means at least once: a subscriber
  may see one twice after a restart, never miss one);
- the file is bounded (``max_rows`` and ``max_bytes``, topics plus payloads): when a new
  message would pass a bound, the oldest rows not in flight are dropped, counted (the
  count survives restarts) and logged. Nothing else is ever dropped.

The outbox orders messages by a row id; the broker then keeps that order for each
subscriber (MQTT 4.6), so a subscriber sees them in the order they were queued.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger(__name__)

OUTBOX_FILE = "mqtt-outbox.db"  # in the hub's data_dir
WINDOW = 200  # messages published and waiting for their PUBACK; paho sends 20 at a time
# (its max_inflight_messages) and queues the rest in memory, far below its 65,535 cap
IDLE_WAIT_S = 0.5  # the sender looks again this often even when nothing woke it
STOP_WAIT_S = 5.0  # stop() waits this long for messages in flight to be acknowledged
DROP_LOG_EVERY = 1000  # a full outbox stays full: log the first drop, then every 1,000th
QueuedMessage = tuple[str, bytes, bool]  # topic, payload, retain


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One message waiting in the outbox."""

    seq: int
    topic: str
    payload: bytes
    retain: bool


@dataclass(frozen=True, slots=True)
class OutboxStatus:
    """What the outbox holds and has done; ``dropped`` counts since the file was made."""

    queued: int  # messages waiting on disk (in flight included)
    queued_bytes: int
    in_flight: int  # published, waiting for their PUBACK
    delivered: int  # acknowledged by the broker since the hub started
    refused: int  # refused by the broker or by paho for good (a PUBACK error), not retried
    dropped: int  # oldest messages dropped because a bound was hit
    max_rows: int
    max_bytes: int


class Outbox:
    """The SQLite file behind the outbox; safe to use from several threads."""

    def __init__(self, path: Path, *, max_rows: int, max_bytes: int) -> None:
        self.path = path
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # survives a crash of the hub
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            "topic TEXT NOT NULL, payload BLOB NOT NULL, retain INTEGER NOT NULL, "
            "size INTEGER NOT NULL, queued_at REAL NOT NULL)")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox_counts (name TEXT PRIMARY KEY, "
            "value INTEGER NOT NULL)")
        rows, size = self._db.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM outbox").fetchone()
        self._rows: int = rows
        self._bytes: int = size
        found = self._db.execute(
            "SELECT value FROM outbox_counts WHERE name = 'dropped'").fetchone()
        self._dropped: int = 0 if found is None else found[0]

    def put(self, messages: Sequence[QueuedMessage], *, in_flight_upto: int = 0) -> int:
        """Append ``messages`` in order; drop the oldest rows above ``in_flight_upto`` while
        a bound is passed. Returns how many were dropped."""
        if not messages:
            return 0
        now = time.time()
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                added = 0
                for topic, payload, retain in messages:
                    size = len(topic.encode()) + len(payload)
                    db.execute(
                        "INSERT INTO outbox (topic, payload, retain, size, queued_at) "
                        "VALUES (?, ?, ?, ?, ?)", (topic, payload, int(retain), size, now))
                    added += size
                rows = self._rows + len(messages)
                size_total = self._bytes + added
                dropped = 0
                if rows > self.max_rows or size_total > self.max_bytes:
                    victims: list[int] = []
                    for seq, size in db.execute(
                            "SELECT seq, size FROM outbox WHERE seq > ? ORDER BY seq",
                            (in_flight_upto,)):
                        if rows <= self.max_rows and size_total <= self.max_bytes:
                            break
                        victims.append(seq)
                        rows -= 1
                        size_total -= size
                    db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in victims])
                    dropped = len(victims)
                    if dropped:
                        db.execute(
                            "INSERT INTO outbox_counts (name, value) VALUES ('dropped', ?) "
                            "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                            (dropped,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._rows, self._bytes = rows, size_total
            before = self._dropped
            self._dropped += dropped
        if dropped and (before // DROP_LOG_EVERY != self._dropped // DROP_LOG_EVERY
                        or before == 0):
            log.warning("MQTT outbox full (%d messages, %d bytes at most): dropped the %d "
                        "oldest, %d so far", self.max_rows, self.max_bytes, dropped,
                        self._dropped)
        return dropped

    def after(self, seq: int, limit: int) -> list[OutboxRow]:
        """Up to ``limit`` rows after ``seq``, oldest first."""
        with self._lock:
            found = self._db.execute(
                "SELECT seq, topic, payload, retain FROM outbox WHERE seq > ? ORDER BY seq "
                "LIMIT ?", (seq, limit)).fetchall()
        return [OutboxRow(s, t, bytes(p), bool(r)) for s, t, p, r in found]

    def delete(self, seqs: Sequence[int]) -> None:
        """Remove rows the broker has acknowledged (rows already dropped are skipped)."""
        if not seqs:
            return
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                removed = 0
                size = 0
                for seq in seqs:
                    row = db.execute("DELETE FROM outbox WHERE seq = ? RETURNING size",
                                     (seq,)).fetchone()
                    if row is not None:
                        removed += 1
                        size += row[0]
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._rows -= removed
            self._bytes -= size

    def counts(self) -> tuple[int, int, int]:
        """Rows, bytes and dropped so far."""
        with self._lock:
            return self._rows, self._bytes, self._dropped

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(slots=True)
class _InFlight:
    seq: int
    info: paho.MQTTMessageInfo


class OutboxSender:
    """Moves the outbox's rows to the broker on its own thread; see the module docstring.

    The MQTT bridge calls :meth:`connected` and :meth:`disconnected` from paho's network
    thread, and :meth:`acknowledged` from its ``on_publish``; producers call
    :meth:`enqueue` from any thread (it only appends to a list).
    """

    def __init__(self, outbox: Outbox, *, window: int = WINDOW) -> None:
        self.outbox = outbox
        self.window = window
        self._cond = threading.Condition()  # guards the fields below; never held in publish()
        self._pending: list[QueuedMessage] = []
        self._client: paho.Client | None = None  # set while connected
        self._refusals: deque[tuple[int, str]] = deque()  # (mid, reason) of PUBACK errors
        self._stopping = False
        self._stop_by = 0.0  # monotonic deadline for PUBACKs once stopping
        self._wake = False
        self._thread: threading.Thread | None = None
        # Only the sender thread touches these:
        self._in_flight: deque[_InFlight] = deque()
        self._cursor = 0  # the newest row handed to paho
        self._delivered = 0
        self._refused = 0

    # -- called by the bridge and by producers -------------------------------------------

    def enqueue(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Queue a message; it is on disk within moments and sent when the broker is there."""
        with self._cond:
            if self._stopping:
                raise RuntimeError("the MQTT outbox is stopping")
            self._pending.append((topic, payload, retain))
            self._wake = True
            self._cond.notify_all()

    def connected(self, client: paho.Client) -> None:
        with self._cond:
            self._client = client
            self._wake = True
            self._cond.notify_all()

    def disconnected(self) -> None:
        with self._cond:
            self._client = None

    def acknowledged(self, mid: int, reason: ReasonCode | None) -> None:
        """paho's ``on_publish`` for any message: wake the sender; note a refusal."""
        with self._cond:
            if reason is not None and reason.is_failure:
                self._refusals.append((mid, str(reason)))
            self._wake = True
            self._cond.notify_all()

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> OutboxSender:
        if self._thread is None:
            with self._cond:
                self._stopping = False
            # A new paho client: what the last one had in flight is in the file still and
            # is sent again from the first row.
            self._in_flight.clear()
            self._cursor = 0
            self._thread = threading.Thread(target=self._run, name="labhub-mqtt-outbox",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = STOP_WAIT_S) -> None:
        """Write what was handed over to disk, wait up to ``timeout`` s for messages in
        flight to be acknowledged, and end the thread. What is left stays in the file."""
        thread = self._thread
        if thread is None:
            return
        with self._cond:
            self._stopping = True
            self._stop_by = time.monotonic() + timeout
            self._wake = True
            self._cond.notify_all()
        thread.join(timeout + 5)
        if thread.is_alive():
            log.error("MQTT outbox sender did not finish in time")
        self._thread = None

    def status(self) -> OutboxStatus:
        rows, size, dropped = self.outbox.counts()
        return OutboxStatus(
            queued=rows, queued_bytes=size, in_flight=len(self._in_flight),
            delivered=self._delivered, refused=self._refused, dropped=dropped,
            max_rows=self.outbox.max_rows, max_bytes=self.outbox.max_bytes,
        )

    # -- the thread -------------------------------------------------------------------

    def _run(self) -> None:
        more = True  # rows after the cursor may be waiting on disk
        while True:
            with self._cond:
                while not (self._wake or self._stopping or (
                        more and self._client is not None
                        and len(self._in_flight) < self.window)):
                    self._cond.wait(IDLE_WAIT_S)
                    if self._in_flight:
                        break  # a PUBACK may have come without a wake (a race with publish)
                self._wake = False
                pending, self._pending = self._pending, []
                client = self._client
                stopping = self._stopping
                refusals = list(self._refusals)
                self._refusals.clear()
            try:
                if pending:
                    self.outbox.put(pending, in_flight_upto=self._cursor)
                    more = True
                self._settle(refusals)
                if client is not None and not stopping:
                    more = self._send(client)
            except Exception:
                log.exception("MQTT outbox: a step failed; trying again")
                time.sleep(IDLE_WAIT_S)
            if stopping:
                if not self._in_flight or client is None or time.monotonic() > self._stop_by:
                    break
                time.sleep(0.01)
        with self._cond:
            pending, self._pending = self._pending, []
        if pending:
            try:
                self.outbox.put(pending, in_flight_upto=self._cursor)
            except Exception:
                log.exception("MQTT outbox: %d messages could not be saved", len(pending))

    def _settle(self, refusals: list[tuple[int, str]]) -> None:
        """Delete the rows whose PUBACK has arrived."""
        refused_mids = dict(refusals)
        done: list[int] = []
        in_flight = self._in_flight
        # PUBACKs come in publishing order (MQTT 4.6), so the acknowledged ones are at the
        # front; one acknowledged out of order is settled with those before it.
        while in_flight and in_flight[0].info.is_published():
            entry = in_flight.popleft()
            done.append(entry.seq)
            reason = refused_mids.get(entry.info.mid)
            if reason is not None:
                self._refused += 1
                log.error("the broker refused MQTT message %d: %s", entry.seq, reason)
            else:
                self._delivered += 1
        self.outbox.delete(done)

    def _send(self, client: paho.Client) -> bool:
        """Publish the next rows while the window has room; True if more may be waiting."""
        room = self.window - len(self._in_flight)
        if room <= 0:
            return True
        rows = self.outbox.after(self._cursor, room)
        for row in rows:
            info = client.publish(row.topic, row.payload, qos=1, retain=row.retain)
            if info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                # NO_CONN: the connection just dropped; paho keeps it and sends it after
                # the reconnect, like every other message in flight.
                self._in_flight.append(_InFlight(row.seq, info))
                self._cursor = row.seq
            elif info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
                return True  # paho's queue is full: try again once PUBACKs have come
            else:
                self._refused += 1
                self._cursor = row.seq
                self.outbox.delete([row.seq])
                log.error("MQTT message to %s cannot be sent, dropped: %s", row.topic,
                          paho.error_string(info.rc))
        return len(rows) == room


def status_dict(status: OutboxStatus) -> dict[str, Any]:
    """The outbox status as plain data (for the API and the CLI)."""
    return {name: getattr(status, name) for name in OutboxStatus.__slots__}


__all__ = ["OUTBOX_FILE", "Outbox", "OutboxRow", "OutboxSender", "OutboxStatus", "status_dict"]
