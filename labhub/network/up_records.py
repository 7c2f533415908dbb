"""The up streams of the hub's records: the device registry, runs and their notes."""

from __future__ import annotations

from labhub.network.streams import UpStream

UP: tuple[UpStream, ...] = ()
