"""The hub's outbox: which records changed, in the order they changed (migration 0018's
triggers write it), read after a position by the streams that send records up.

On SQLite one writer at a time commits, so ``seq`` is committed in order. On PostgreSQL
two transactions can commit out of order (``seq`` 11 visible before 10) and a rolled-back
one leaves a hole for good. A reader therefore stops before a hole that is younger than
:data:`HOLE_WAIT_US` (its transaction may still commit) and steps over an older one (a
rollback): a record is never skipped by a reader that went on too early.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from sqlalchemy import Connection, func, select

from labhub.network.tables import sync_outbox

HOLE_WAIT_US = 60_000_000  # a transaction of the hub's lasts far less than a minute


@dataclass(frozen=True, slots=True)
class Change:
    """One outbox entry: ``key`` of ``stream`` changed; ``seq`` is its position."""

    seq: int
    key: str
    at: int


def after(conn: Connection, *, stream: str, seq: int, limit: int,
          now_us: int) -> list[Change]:
    """Up to ``limit`` changes of ``stream`` after ``seq``, in order, stopping before a
    young hole in the sequence (see the module's text). A record changed twice may be
    listed twice: a stream sends its state as it is now, so either is right."""
    query = (select(sync_outbox.c.seq, sync_outbox.c.key, sync_outbox.c.at)
             .where(sync_outbox.c.seq > seq, sync_outbox.c.stream == stream))
    last = _last_safe(conn, seq, now_us)
    if last is not None:
        query = query.where(sync_outbox.c.seq <= last)
    rows = conn.execute(query.order_by(sync_outbox.c.seq).limit(limit)).all()
    return [Change(r.seq, r.key, r.at) for r in rows]


def _last_safe(conn: Connection, seq: int, now_us: int) -> int | None:
    """The last ``seq`` before the first young hole after ``seq``; None if there is none.
    A hole is as young as the entry after it; only the entries of the last
    :data:`HOLE_WAIT_US` are looked at (few)."""
    young: list[int] = list(conn.execute(
        select(sync_outbox.c.seq).where(sync_outbox.c.seq > seq,
                                        sync_outbox.c.at >= now_us - HOLE_WAIT_US)
        .order_by(sync_outbox.c.seq)
    ).scalars())
    if not young:
        return None
    first = young[0]
    below = conn.execute(select(func.max(sync_outbox.c.seq))
                         .where(sync_outbox.c.seq > seq, sync_outbox.c.seq < first)
                         ).scalar_one_or_none()
    if first != (below if below is not None else seq) + 1:
        return below if below is not None else seq
    for before, current in pairwise(young):
        if current != before + 1:
            return before
    return None


def pending(conn: Connection, *, stream: str, seq: int) -> int:
    """How many changes of ``stream`` follow ``seq``."""
    return int(conn.execute(
        select(func.count()).select_from(sync_outbox)
        .where(sync_outbox.c.seq > seq, sync_outbox.c.stream == stream)
    ).scalar_one())
