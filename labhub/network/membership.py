"""The hub's membership of a network: the one ``network_membership`` row (id 1) that
``labhub network join`` writes, and what each contact records in it.

The row holds the central's address, the hub's id and credential, the lab it writes for,
the positions the central acknowledged for each up stream (``up_positions``: retention
reads them, a hub never deletes what the central has not acknowledged), the positions of
the down streams the hub applied (``down_positions``), and how the last contact went.
Every function takes the caller's connection and runs inside its transaction; the sync
thread keeps its transactions short, so the ingest never waits on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from labhub.network.protocol import Position, ProtocolError, loads_position
from labhub.network.tables import network_membership

ROW_ID = 1
MAX_ERROR_CHARS = 2000  # a last error longer than this is cut (the column is text)


@dataclass(frozen=True, slots=True)
class Membership:
    """The hub's membership, as stored."""

    central_url: str
    hub_id: str
    credential: str
    site: str
    joined_at: int  # µs
    up_positions: dict[str, Position]  # as the central acknowledged them
    down_positions: dict[str, Position]  # as the hub applied them
    last_contact_at: int | None  # µs: the last contact that went through
    last_error: str | None  # what failed at the last contact (None when it went through)
    clock_offset_us: int | None  # the hub's clock minus the central's, at the last hello


def dumps_positions(positions: dict[str, Position]) -> str:
    """Positions by stream as stored (JSON, keys sorted)."""
    return json.dumps(positions, sort_keys=True, separators=(",", ":"))


def loads_positions(text: str | None) -> dict[str, Position]:
    """Positions by stream, as :func:`dumps_positions` stored them."""
    if not text:
        return {}
    value: Any = json.loads(text)
    if not isinstance(value, dict):
        raise ProtocolError(f"stored positions are not a JSON object: {text[:60]!r}")
    return {str(k): loads_position(json.dumps(v)) for k, v in value.items()}


def get(conn: Connection) -> Membership | None:
    """The hub's membership; None when it has not joined a network."""
    row = conn.execute(select(network_membership)
                       .where(network_membership.c.id == ROW_ID)).first()
    if row is None:
        return None
    return Membership(
        central_url=row.central_url, hub_id=row.hub_id, credential=row.credential,
        site=row.site, joined_at=row.joined_at,
        up_positions=loads_positions(row.up_positions),
        down_positions=loads_positions(row.down_positions),
        last_contact_at=row.last_contact_at, last_error=row.last_error,
        clock_offset_us=row.clock_offset_us,
    )


def store_joined(conn: Connection, *, central_url: str, hub_id: str, credential: str,
                 site: str, joined_at: int, clock_offset_us: int | None = None
                 ) -> Membership:
    """Make the hub a member (joining again replaces the row: a new hub id starts with
    no positions, the central's answer at the next hello is the truth); the clock offset
    measured at the join, when the central said its time."""
    conn.execute(delete(network_membership).where(network_membership.c.id == ROW_ID))
    conn.execute(insert(network_membership).values(
        id=ROW_ID, central_url=central_url, hub_id=hub_id, credential=credential,
        site=site, joined_at=joined_at, up_positions="{}", down_positions="{}",
        clock_offset_us=clock_offset_us,
    ))
    found = get(conn)
    assert found is not None
    return found


def leave(conn: Connection) -> bool:
    """Forget the membership; whether there was one."""
    gone = conn.execute(delete(network_membership)
                        .where(network_membership.c.id == ROW_ID)).rowcount
    return bool(gone)


def record_hello(conn: Connection, *, at: int, clock_offset_us: int,
                 up_positions: dict[str, Position]) -> None:
    """A hello went through: the clock offset and the central's positions (the truth)."""
    conn.execute(update(network_membership).where(network_membership.c.id == ROW_ID).values(
        clock_offset_us=clock_offset_us, up_positions=dumps_positions(up_positions),
        last_contact_at=at,
    ))


def record_acknowledged(conn: Connection, up_positions: dict[str, Position]) -> None:
    """The central acknowledged these positions (its answer to a batch's last piece)."""
    conn.execute(update(network_membership).where(network_membership.c.id == ROW_ID)
                 .values(up_positions=dumps_positions(up_positions)))


def record_down(conn: Connection, down_positions: dict[str, Position]) -> None:
    """The hub applied the down streams up to these positions (same transaction)."""
    conn.execute(update(network_membership).where(network_membership.c.id == ROW_ID)
                 .values(down_positions=dumps_positions(down_positions)))


def record_outcome(conn: Connection, *, at: int, error: str | None) -> None:
    """How a contact ended: ``error`` None when it went through (``last_contact_at`` is
    then ``at``); else what failed and where, kept until a contact goes through."""
    values: dict[str, Any] = {"last_error": None if error is None else error[:MAX_ERROR_CHARS]}
    if error is None:
        values["last_contact_at"] = at
    conn.execute(update(network_membership).where(network_membership.c.id == ROW_ID)
                 .values(**values))


def acknowledged(conn: Connection, stream: str) -> Position | None:
    """The position of up stream ``stream`` the central acknowledged (``[]``: nothing
    yet); None when the hub is in no network. What the hub may delete of a stream ends
    there: a hub never deletes what the central has not acknowledged (in no network it
    deletes by its own rules only)."""
    found = get(conn)
    if found is None:
        return None
    return list(found.up_positions.get(stream, []))
