"""Optimistic concurrency for the inventory's versioned rows (sites, models).

A writer names the version it read (``expected_version``, ``If-Match``); a write bumps the
version only if the row still has the version read in this transaction, so of two
coordinators editing at once, the second gets :class:`StaleVersionError` and changes
nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table, select, update

from inventory.errors import StaleVersionError


def check_version(*, what: str, key: str, version: int, expected_version: int | None) -> None:
    """StaleVersionError if the writer read another version than ``version``, the stored."""
    if expected_version is not None and expected_version != version:
        raise StaleVersionError(what=what, key=key, expected=expected_version, actual=version)


def write_versioned(*, conn: Connection, table: Table, what: str, key: str, version: int,
                    **values: Any) -> None:
    """Store ``values`` in the row whose ``code`` is ``key`` and bump its version, if it is
    still at ``version`` (read in this transaction); else StaleVersionError."""
    done = conn.execute(
        update(table).where(table.c.code == key, table.c.version == version)
        .values(version=version + 1, **values)
    )
    if done.rowcount != 1:
        actual = conn.execute(select(table.c.version).where(table.c.code == key)).scalar_one()
        raise StaleVersionError(what=what, key=key, expected=version, actual=actual)
