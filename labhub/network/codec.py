"""The readings on the wire (:data:`labhub.network.protocol.CODEC_READINGS`): columnar,
per series, compressed. Lossless: every float comes back bit for bit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SeriesReadings:
    """One series' readings in a section, oldest first (times in microseconds, UTC)."""

    device: str
    channel: str
    quantity: str | None
    unit: str | None
    ts: list[int]
    values: list[float]
    flags: list[int]


def encode(series: Sequence[SeriesReadings]) -> bytes:
    """The bytes of a readings section."""
    raise NotImplementedError


def decode(data: bytes) -> list[SeriesReadings]:
    """A readings section read back; ``labhub.network.protocol.ProtocolError`` saying what
    is wrong and where."""
    raise NotImplementedError
