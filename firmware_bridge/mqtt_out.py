"""The hub's data out over MQTT: its settings, and how its own readings become ``state``
messages.

Serial and Firmata kits' readings are published to ``<prefix>/<site>/<device>/state`` as
JSON in ThingsBoard's ``{"ts": <ms>, "values": {...}}`` shape, and only that (ThingsBoard
refuses any other key next to ``ts`` and ``values``), so a second LabHub or anything that
takes ThingsBoard telemetry reads them unchanged: ``{"ts": 1714564800123, "values":
{"temp": 21.43, "hum": 61.2}}``, values in the unit each channel is stored in (the
quantity's canonical unit: degC, %, hPa, lx, ...). One message carries one *sample set*: the
readings of one line of a sketch, or one round of a Firmata board's pins, not one message
per channel. A sample set ends where a channel repeats, so a line ``temp:21.4,hum:61``
is one message and the next line the next one; its ``ts`` is the newest reading's time.

The settings below belong to the ``[mqtt]`` table (:class:`~firmware_bridge.mqtt.MqttSettings`
inherits them): the bounds of the on-disk outbox (``firmware_bridge.outbox``), Home
Assistant discovery (``firmware_bridge.ha_discovery``), commands over MQTT
(``firmware_bridge.mqtt_commands``) and the silence after which a node counts as offline.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

US_PER_MS = 1000  # state messages carry epoch milliseconds, as ThingsBoard's telemetry does
OUTBOX_MAX_ROWS = 100_000  # about a day of one kit's lines at one a second
OUTBOX_MAX_BYTES = 64 * 1024 * 1024  # a small share of a Raspberry Pi's SD card
NODE_SILENCE_S = 600  # ten minutes: most sketches publish every few seconds to a minute
_DISCOVERY_PREFIX = re.compile(r"[A-Za-z0-9_\-]+(?:/[A-Za-z0-9_\-]+)*")


class MqttOutSettings(BaseModel):
    """What the hub publishes, and how long it keeps it while the broker is away."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    publish_state: bool = Field(
        default=True,
        description="publish serial and Firmata kits' readings to <prefix>/<site>/<device>/state")
    outbox_max_rows: int = Field(
        default=OUTBOX_MAX_ROWS, ge=1,
        description="messages the on-disk outbox keeps while the broker is away; then the "
                    "oldest are dropped (counted)")
    outbox_max_bytes: int = Field(
        default=OUTBOX_MAX_BYTES, ge=1024,
        description="bytes (topics and payloads) the outbox keeps; then the oldest are dropped")
    ha_discovery: bool = Field(
        default=False, description="publish Home Assistant MQTT discovery configs (retained)")
    ha_discovery_prefix: str = Field(
        default="homeassistant", min_length=1, max_length=100,
        description="Home Assistant's discovery prefix")
    commands: bool = Field(
        default=True,
        description="take actuator commands on .../cmd and ThingsBoard RPC on "
                    ".../rpc/request/<id>")
    node_silence_s: int = Field(
        default=NODE_SILENCE_S, ge=0,
        description="a node silent this long (seconds) is marked offline; 0: never")

    @field_validator("ha_discovery_prefix")
    @classmethod
    def _plain_discovery_prefix(cls, value: str) -> str:
        if not _DISCOVERY_PREFIX.fullmatch(value):
            raise ValueError("a discovery prefix is topic levels of letters, digits, _ and -")
        return value


@dataclass(frozen=True, slots=True)
class Reading:
    """One reading the hub took, as stored: channel, value, time (us) and unit."""

    channel: str
    value: float
    ts: int
    unit: str | None = None
    quantity: str | None = None


def sample_sets(readings: Iterable[Reading]) -> list[list[Reading]]:
    """Readings in submission order cut into sample sets: a set ends where a channel
    repeats (one line of a sketch, one round of a board's pins)."""
    sets: list[list[Reading]] = []
    current: list[Reading] = []
    names: set[str] = set()
    for reading in readings:
        if reading.channel in names:
            sets.append(current)
            current, names = [], set()
        current.append(reading)
        names.add(reading.channel)
    if current:
        sets.append(current)
    return sets


def state_payload(readings: Sequence[Reading]) -> dict[str, Any]:
    """The JSON document of one ``state`` message for one sample set (not empty)."""
    ts = max(r.ts for r in readings)
    return {"ts": ts // US_PER_MS, "values": {r.channel: r.value for r in readings}}


__all__ = ["MqttOutSettings", "Reading", "sample_sets", "state_payload"]
