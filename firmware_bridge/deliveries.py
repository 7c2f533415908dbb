"""MQTT deliveries the hub has stored: what makes a redelivered message stored once.

A QoS 1 message that was committed but not yet acknowledged when the hub stopped (a
crash, a power cut, a dropped connection) is delivered again by the broker, with the DUP
flag and the same packet id. A reading with the node's own timestamp is then stored once
by the readings key; one without gets its arrival time, which would differ the second time.
So for every message with such a reading the hub writes a row here, keyed by its client id
(the session) and the packet id, holding a digest of topic and payload and the arrival time
used, in the same transaction as the readings (:func:`transaction_hook`). A redelivery that
matches a row (same packet id, same digest) reuses that arrival time, and the readings key
finds them already stored.

Dead letters go the same way: a message that does not decode gets a row too, written with
its dead letter, and the dead letter's uuid is derived from the row (:func:`letter_id`:
client id, packet id, digest and arrival time), as is that of a reading refused in a
recorded message. A redelivery that matches the row gets the same uuid, and the dead
letter, written again, is found already stored (``ON CONFLICT (uuid) DO NOTHING``). A
message whose readings all carry their own times needs no row: the uuid of a refused
reading's dead letter is derived from its topic and payload (:func:`content_letter_id`).

A row is deleted once its message is acknowledged (the broker may reuse the packet id
after that), with the next batch; all rows of a client id go when the broker says the
session was not kept (nothing can be delivered again); rows older than the session expiry
are pruned. What is left after a crash between a PUBACK and that deletion is a stale row
that could match only a redelivery with the same packet id and the very same topic and
payload: Mosquitto hands out packet ids in turn, so not before 65,535 more messages.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BigInteger, Column, Engine, Index, Integer, MetaData, String, Table, select

from sensors.storage import NAMING_CONVENTION

metadata = MetaData(naming_convention=NAMING_CONVENTION)

ROWS_PER_STATEMENT = 500  # 2,000 parameters per INSERT: far below SQLite's 32,766 and
# PostgreSQL's 65,535
DIGEST_BYTES = 16  # blake2b of topic and payload: 128 bits, no accidental match in a session
# The namespace of dead-letter uuids derived from deliveries (uuid5, RFC 9562): fixed, so
# that a hub restarted, or another process on the same session, derives the same ones.
LETTER_NAMESPACE = uuid.UUID("6f1d9a52-8a0e-4c4b-9d38-2f1c0d8f5b7e")

mqtt_deliveries = Table(
    "mqtt_deliveries",
    metadata,
    Column("client_id", String(200), primary_key=True),  # the hub's session at the broker
    Column("mid", Integer, primary_key=True),  # the packet id the broker delivered it with
    Column("digest", String(2 * DIGEST_BYTES), nullable=False),
    Column("received_at", BigInteger, nullable=False),  # the arrival time used, microseconds
    Index("ix_mqtt_deliveries_received_at", "received_at"),
)


def digest(topic: str, payload: bytes) -> str:
    """What tells one message from another with the same packet id."""
    h = hashlib.blake2b(topic.encode("utf-8", "surrogateescape"), digest_size=DIGEST_BYTES)
    h.update(b"\x00")
    h.update(payload)
    return h.hexdigest()


def letter_id(client_id: str, record: tuple[int, str, int], part: int = -1) -> str:
    """The uuid of the dead letter of a recorded delivery ``(mid, digest, arrival)``:
    the whole message (``part`` -1) or its reading number ``part``."""
    mid, mark, arrival = record
    return str(uuid.uuid5(LETTER_NAMESPACE, f"{client_id}\x00{mid}\x00{mark}\x00{arrival}"
                                            f"\x00{part}"))


def content_letter_id(client_id: str, mark: str, part: int) -> str:
    """The uuid of the dead letter of reading ``part`` of a message whose readings carry
    their own times, from the digest of its topic and payload alone: no row is needed,
    since a redelivery (or the very same message sent again, whose readings the readings
    key would find stored too) derives the same uuid."""
    return str(uuid.uuid5(LETTER_NAMESPACE, f"{client_id}\x00timed\x00{mark}\x00{part}"))


@dataclass(slots=True)
class DeliveryWrites:
    """What one batch writes to ``mqtt_deliveries``; called as a transaction hook."""

    client_id: str
    records: list[tuple[int, str, int]] = field(default_factory=list)  # (mid, digest, arrival)
    forget: list[int] = field(default_factory=list)  # acknowledged packet ids
    forget_all: bool = False  # the broker did not keep the session
    prune_before: int | None = None  # microseconds: rows older than this go

    def __bool__(self) -> bool:
        return bool(self.records or self.forget or self.forget_all or self.prune_before)

    def __call__(self, cursor: Any, dialect: str) -> None:
        ph = "%s" if dialect == "postgresql" else "?"
        table = mqtt_deliveries.name
        client = self.client_id
        if self.forget_all:
            cursor.execute(f"DELETE FROM {table} WHERE client_id = {ph}", (client,))
        # Many rows per statement, not one statement per row: a drained backlog deletes and
        # inserts one row per message, and per-row statements cost the writer more than
        # the readings themselves.
        forget = self.forget
        for start in range(0, len(forget), ROWS_PER_STATEMENT):
            mids = forget[start : start + ROWS_PER_STATEMENT]
            cursor.execute(f"DELETE FROM {table} WHERE client_id = {ph} AND mid IN "
                           f"({', '.join([ph] * len(mids))})", (client, *mids))
        if self.prune_before is not None:
            cursor.execute(f"DELETE FROM {table} WHERE client_id = {ph} AND received_at < {ph}",
                           (client, self.prune_before))
        # One row per packet id: a message and its redelivery can meet in one batch (the
        # first delivery's connection dropped before it was stored), and PostgreSQL refuses
        # an upsert that touches one row twice. The later record wins, as row by row.
        records = [(mid, *kept) for mid, kept in
                   {mid: (mark, at) for mid, mark, at in self.records}.items()]
        for start in range(0, len(records), ROWS_PER_STATEMENT):
            chunk = records[start : start + ROWS_PER_STATEMENT]
            values = ", ".join([f"({ph}, {ph}, {ph}, {ph})"] * len(chunk))
            cursor.execute(
                f"INSERT INTO {table} (client_id, mid, digest, received_at) VALUES {values} "
                "ON CONFLICT (client_id, mid) DO UPDATE "
                "SET digest = excluded.digest, received_at = excluded.received_at",
                [field for mid, mark, at in chunk for field in (client, mid, mark, at)],
            )


def recorded(engine: Engine, client_id: str, mids: Iterable[int]) -> dict[int, tuple[str, int]]:
    """The stored ``(digest, arrival)`` of these packet ids of ``client_id``."""
    wanted: Sequence[int] = sorted(set(mids))
    if not wanted:
        return {}
    t = mqtt_deliveries.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(t.mid, t.digest, t.received_at).where(
                t.client_id == client_id, t.mid.in_(wanted))
        ).all()
    return {row.mid: (row.digest, row.received_at) for row in rows}


def forget(engine: Engine, writes: DeliveryWrites) -> None:
    """Write ``writes`` in a transaction of their own (when no batch of readings follows)."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        writes(cursor, engine.dialect.name)
        cursor.close()
        raw.commit()
    finally:
        raw.close()


__all__ = ["DeliveryWrites", "content_letter_id", "digest", "forget", "letter_id", "metadata",
           "mqtt_deliveries", "recorded"]
