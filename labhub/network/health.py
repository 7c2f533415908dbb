"""How the hub is, as it tells the central at each hello (:class:`protocol.Health`)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy import Connection, func, select

from firmware_bridge.registry import devices
from labhub import __version__
from labhub.network.protocol import Health, Position
from labhub.network.streams import UpStream
from sensors.storage import dead_letters

# When this process started, near enough: the network's modules are imported as the hub
# starts (``labhub serve``) or as a command runs.
_STARTED_MONOTONIC = time.monotonic()


def uptime_s() -> int:
    """Seconds since the process started (see :data:`_STARTED_MONOTONIC`)."""
    return int(time.monotonic() - _STARTED_MONOTONIC)


def free_disk_bytes(data_dir: Path) -> int:
    """Free bytes on the disk of the data directory (of its nearest existing parent)."""
    where = data_dir
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        return int(shutil.disk_usage(where).free)
    except OSError:
        return 0


def backlogs(conn: Connection, streams: Mapping[str, UpStream],
             positions: Mapping[str, Position]) -> dict[str, int]:
    """Items of each up stream that follow the central's acknowledged position."""
    return {name: int(stream.backlog(conn, positions.get(name, [])))
            for name, stream in streams.items()}


def collect(conn: Connection, *, data_dir: Path, streams: Mapping[str, UpStream],
            positions: Mapping[str, Position]) -> Health:
    """The hub's health now: version, uptime, free disk, backlog (every up stream's,
    after ``positions``), devices online and dead letters."""
    by_stream = backlogs(conn, streams, positions)
    online = conn.execute(select(func.count()).select_from(devices)
                          .where(devices.c.online.is_(True))).scalar_one()
    letters = conn.execute(select(func.count()).select_from(dead_letters)).scalar_one()
    return Health(version=__version__, uptime_s=uptime_s(),
                  free_disk_bytes=free_disk_bytes(data_dir), backlog=sum(by_stream.values()),
                  devices_online=int(online), dead_letters=int(letters),
                  extra={"backlog_by_stream": by_stream})
