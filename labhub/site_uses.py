"""What outside the inventory names a lab site: devices, reading series and runs.

A site of the inventory may be deleted only if nothing ever used it (``inventory.
corrections``). The inventory cannot see the readings side, and the readings side never
imports the inventory, so the app shell asks here and passes the answer in words.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select

from firmware_bridge.registry import devices
from sensors.storage import runs, series


def site_uses_outside_inventory(conn: Connection, code: str) -> list[str]:
    """``N device(s)``, ``N reading series`` and ``N run(s)`` placed at site ``code``."""
    out = []
    table: Any
    for what, table in (("device(s)", devices), ("reading series", series),
                        ("run(s)", runs)):
        n = conn.execute(select(func.count()).select_from(table)
                         .where(table.c.site == code)).scalar_one()
        if n:
            out.append(f"{n} {what}")
    return out
