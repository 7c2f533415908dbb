"""The streams that go up and come down, each with its two sides.

An up stream is collected on the hub (after the position the central acknowledged) and
applied on the central; a down stream is collected on the central (for one lab, after the
position the hub applied) and applied on the hub. Each side runs inside the caller's
transaction: the central applies a whole batch, and moves the positions, in one.

Each stream lives in the module of its records:

- ``devices``, ``runs``, ``notes``: :mod:`labhub.network.up_records`;
- ``readings``: :mod:`labhub.network.up_readings`;
- ``events``, ``inventory`` up, and every down stream: :mod:`labhub.network.inventory_sync`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Protocol, runtime_checkable

from sqlalchemy import Connection

from labhub.network.protocol import DOWN_STREAMS, UP_STREAMS, Position, Section


@dataclass(frozen=True, slots=True)
class FromHub:
    """Who sent a batch, as the central applies it."""

    hub_id: str
    site: str  # the lab site the hub writes for
    clock_offset_us: int | None  # at its last hello: its clock minus the central's
    clock_suspect: bool  # the offset was beyond the central's tolerance
    received_at_us: int  # the central's clock


class UpStream(Protocol):
    name: str

    def collect(self, conn: Connection, after: Position, budget_bytes: int) -> Section | None:
        """Hub: the next section after ``after``, of about ``budget_bytes`` at most (at
        least one item, however large); None when nothing follows."""
        ...

    def backlog(self, conn: Connection, after: Position) -> int:
        """Hub: how many items follow ``after`` (an estimate is fine for readings)."""
        ...

    def apply(self, conn: Connection, hub: FromHub, section: Section) -> int:
        """Central: store the section's items (a replay changes nothing); the number of
        new items. Raises :class:`labhub.network.protocol.ProtocolError` on bad bytes."""
        ...


@runtime_checkable
class Compacting(Protocol):
    """An up stream that keeps a journal on the hub may also shrink it: the client calls
    ``compact`` after each contact with the position the central acknowledged."""

    def compact(self, conn: Connection, acknowledged: Position) -> int:
        """Hub: merge or drop what is kept for items before ``acknowledged``; how many
        entries went."""
        ...


class DownStream(Protocol):
    name: str

    def collect(self, conn: Connection, site: str, after: Position,
                budget_bytes: int) -> Section | None:
        """Central: the next section for lab ``site`` after ``after``; None if nothing."""
        ...

    def apply(self, conn: Connection, site: str, section: Section) -> None:
        """Hub: take the section in (the hub's own lab is ``site``)."""
        ...


@cache
def up_streams() -> dict[str, UpStream]:
    """Every up stream by name, in :data:`UP_STREAMS` order."""
    from labhub.network import inventory_sync, up_readings, up_records

    found: dict[str, UpStream] = {}
    for module in (up_records, up_readings, inventory_sync):
        for stream in module.UP:
            found[stream.name] = stream
    return {name: found[name] for name in UP_STREAMS if name in found}


@cache
def down_streams() -> dict[str, DownStream]:
    """Every down stream by name, in :data:`DOWN_STREAMS` order."""
    from labhub.network import inventory_sync

    found = {stream.name: stream for stream in inventory_sync.DOWN}
    return {name: found[name] for name in DOWN_STREAMS if name in found}
