"""Exactly-once scans: each scan a page sends carries an idempotency key (a UUID made in
the browser when the scan was taken), and is recorded here in the same transaction as what
the scan does. A key seen before means the scan already happened (its answer was lost, or
a page that was offline sent it again): the caller does nothing twice.

Two sends of one key at the same moment race on the primary key; the insert skips a key
that is there (``ON CONFLICT DO NOTHING ... RETURNING``, on SQLite and PostgreSQL alike: the
driver's row count is not reliable for it), so exactly one of them does the scan's work.
"""

from __future__ import annotations

import re
from typing import Final

from sqlalchemy import Connection, func, select
from sqlalchemy.dialects import postgresql, sqlite

from inventory.errors import InvalidValueError
from inventory.tables import scan_receipts
from inventory.values import check_key, now_us

UUID_RE: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def check_scan_key(key: str) -> str:
    """``key`` as a scan's idempotency key (a UUID, lower case); InvalidValueError if not."""
    if not isinstance(key, str) or UUID_RE.fullmatch(key.strip().lower()) is None:
        raise InvalidValueError(f"scan key {key!r} is not a UUID")
    return key.strip().lower()


def first_time(*, conn: Connection, key: str, subject: str, tag: str, by: str) -> bool:
    """Record scan ``key`` of ``tag`` for ``subject`` (``"audit:<uuid>"``,
    ``"transfer:<uuid>"``...); True the first time, False for a key already received (the
    scan was done: do not do it again). Call it in the transaction that does the scan."""
    key = check_scan_key(key)
    tag = check_key(tag, what="tag")
    values = {"key": key, "subject": subject, "tag": tag, "received_at": now_us(),
              "received_by": by}
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = (insert(scan_receipts).values(**values).on_conflict_do_nothing()
                 .returning(scan_receipts.c.key))  # a row back: this send inserted it
    return conn.execute(statement).first() is not None


def received(*, conn: Connection, subject: str) -> int:
    """How many scans of ``subject`` were received (each key once)."""
    return int(conn.execute(select(func.count()).select_from(scan_receipts)
                            .where(scan_receipts.c.subject == subject)).scalar_one())
