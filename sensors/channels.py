"""A device's channel map: what each channel a device sends is called, and how it is stored.

A coordinator sets, per device, for each channel as the device sends it (``A0``, ``t``):
the name it is stored under, a calibration from raw values to a physical one (an LM35, a
soil probe, a table), and the quantity and unit of the calibrated value. This module owns
that rule and the one function that applies it, :func:`route_channel`: rename, then
calibrate, then resolve the quantity (its canonical unit, conversion and plausible range).
The ingest pipeline calls it once per (device, channel, unit) for every source alike,
serial, Firmata, MQTT, HTTP uploads and imports, and caches the result, so no reader
renames or calibrates on its own.

Where the maps come from is not this package's business: the pipeline asks a
:class:`ChannelMaps` (the hub's device registry implements it, cached) for a device's map,
and tells it to forget a device whose settings changed. :class:`StaticChannelMaps` is a
plain in-memory one, for tests and for tools that have no registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from sensors.calibration import Calibration
from sensors.quantities import ChannelSpec, resolve_channel


@dataclass(frozen=True, slots=True)
class ChannelRule:
    """How one channel, as the device sends it, is stored.

    ``name`` is the name it is stored under (None: as sent); ``calibration`` turns the raw
    value into the physical one; ``quantity`` and ``unit`` say what the calibrated value is
    (None: what the stored name and the unit sent suggest).
    """

    name: str | None = None
    quantity: str | None = None
    unit: str | None = None
    calibration: Calibration | None = None


@dataclass(frozen=True, slots=True)
class ChannelMap:
    """A device's rules, by the channel name the device sends."""

    rules: Mapping[str, ChannelRule] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChannelRoute:
    """Where a channel's values go: the stored name, the calibration (or None) applied
    first, then the spec's conversion and range; ``unit`` is the unit of the calibrated
    value (the rule's, else the one sent)."""

    name: str
    calibration: Calibration | None
    spec: ChannelSpec
    unit: str | None


def route_channel(
    channel_map: ChannelMap | None, channel: str, unit: str | None,
    *, quantity: str | None = None,
) -> ChannelRoute:
    """Rename, calibrate and resolve ``channel`` sent in ``unit`` under ``channel_map``.

    ``quantity`` forces the quantity (a series stored earlier keeps its own). Raises
    :class:`~sensors.quantities.UnitError` for a unit its quantity cannot take.
    """
    rule = None if channel_map is None else channel_map.rules.get(channel)
    if rule is None:
        return ChannelRoute(channel, None, resolve_channel(channel, unit, quantity=quantity),
                            unit)
    name = rule.name or channel
    sent = rule.unit or unit
    spec = resolve_channel(name, sent, quantity=quantity or rule.quantity)
    return ChannelRoute(name, rule.calibration, spec, sent)


class ChannelMaps(Protocol):
    """Where the pipeline finds each device's channel map.

    ``channel_map`` is called when the pipeline meets a (device, channel, unit) it has no
    route for, so it may read a database; ``forget`` drops what it keeps of one device (or
    all) after their settings changed.
    """

    def channel_map(self, device: str) -> ChannelMap | None:
        """The device's map, or None when it has none."""
        ...

    def forget(self, device: str | None = None) -> None:
        """Drop what is kept of ``device`` (all devices when None)."""
        ...


class StaticChannelMaps:
    """Channel maps held in memory: set one with :meth:`set`, then ``pipeline.forget``."""

    def __init__(self, maps: Mapping[str, ChannelMap] | None = None) -> None:
        self.maps: dict[str, ChannelMap] = dict(maps or {})

    def set(self, device: str, channel_map: ChannelMap | None) -> None:
        """Give ``device`` this map (None: no map)."""
        if channel_map is None:
            self.maps.pop(device, None)
        else:
            self.maps[device] = channel_map

    def channel_map(self, device: str) -> ChannelMap | None:
        return self.maps.get(device)

    def forget(self, device: str | None = None) -> None:
        """Nothing is cached: the maps are the source."""


__all__ = [
    "ChannelMap",
    "ChannelMaps",
    "ChannelRoute",
    "ChannelRule",
    "StaticChannelMaps",
    "route_channel",
]
