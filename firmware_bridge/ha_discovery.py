"""Home Assistant MQTT discovery: the lab's sensors appear in Home Assistant by themselves.

When ``ha_discovery`` is on, every channel of a kit whose readings the hub publishes on
its ``state`` topic gets a retained config message on
``<discovery prefix>/sensor/<node_id>/<object_id>/config`` (prefix ``homeassistant`` by
default), published the first time the channel is seen and again on every (re)connection
(Home Assistant may have restarted, or the broker lost its retained messages). The config
says where the value is (``state_topic`` plus a ``value_template`` into the state JSON,
keeping the entity's current state when a message lacks the channel), what it is
(``device_class`` and ``unit_of_measurement`` from the channel's quantity where Home
Assistant knows it, ``state_class: measurement``), that it is available while the hub
is (``availability_topic``: the hub's status topic, ``online``/``offline``) and which
kit it belongs to (``device: {identifiers, name}``). ``node_id`` is
``labhub_<site>_<device>`` and ``object_id`` the channel, both reduced to the letters,
digits, ``_`` and ``-`` Home Assistant takes in a topic.

A kit moved to another site gets a new node id, so a new config topic: the config under
the old topic is then cleared (an empty retained message, which is how Home Assistant
removes a discovered entity). The hub knows the old topic from what it published since it
started, and, for what it published before a restart, from the broker itself: it
subscribes to ``<discovery prefix>/sensor/+/+/config`` with the retained copies sent on
every subscription, and takes as its own the configs whose ``availability_topic`` is its
status topic, reading the kit from ``state_topic`` and the channel from ``name``. A config
of a (device, channel) under another topic than the one it publishes now is cleared,
whichever of the two the hub learns first.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from firmware_bridge.mqtt import MqttBridge, MqttSettings

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")

# quantity key -> (Home Assistant device class or None, unit as Home Assistant writes it)
HA_SENSORS: dict[str, tuple[str | None, str | None]] = {
    "temperature": ("temperature", "°C"),
    "humidity": ("humidity", "%"),
    "pressure": ("atmospheric_pressure", "hPa"),
    "illuminance": ("illuminance", "lx"),
    "soil_moisture": ("moisture", "%"),
    "co2": ("carbon_dioxide", "ppm"),
    "pm2_5": ("pm25", "µg/m³"),
    "pm10": ("pm10", "µg/m³"),
    "uv_index": (None, "UV index"),
    "rainfall": ("precipitation", "mm"),
    "wind_speed": ("wind_speed", "m/s"),
    "sound_level": ("sound_pressure", "dB"),
    "distance": ("distance", "cm"),
    "voltage": ("voltage", "V"),
    "light_level": (None, "%"),
    "position": (None, "%"),
    "analog": (None, None),  # ADC counts: a number without a unit
}
_UNITS = {"degC": "°C", "ug/m3": "µg/m³"}  # LabHub's unit names that HA writes otherwise


def slug(text: str) -> str:
    """``text`` as a discovery topic level: letters, digits, ``_`` and ``-`` only."""
    return _UNSAFE.sub("_", text).strip("_") or "_"


@dataclass(frozen=True, slots=True)
class Entity:
    """One channel of one kit, as Home Assistant will see it."""

    site: str
    device: str
    channel: str
    unit: str | None
    quantity: str | None


def config_topic(discovery_prefix: str, entity: Entity) -> str:
    node = slug(f"labhub_{entity.site}_{entity.device}")
    return f"{discovery_prefix}/sensor/{node}/{slug(entity.channel)}/config"


def config_payload(settings: MqttSettings, entity: Entity, device_name: str) -> dict[str, Any]:
    """The discovery config of one entity."""
    node = slug(f"labhub_{entity.site}_{entity.device}")
    key = json.dumps(entity.channel, ensure_ascii=False)  # a Jinja string literal
    template = (f"{{% if {key} in value_json['values'] %}}{{{{ value_json['values'][{key}] }}}}"
                "{% else %}{{ this.state }}{% endif %}")
    config: dict[str, Any] = {
        "name": entity.channel,
        "unique_id": f"{node}_{slug(entity.channel)}",
        "state_topic": f"{settings.topic_prefix}/{entity.site}/{entity.device}/state",
        "value_template": template,
        "state_class": "measurement",
        "availability_topic": settings.status_topic,
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": {"identifiers": [node], "name": device_name, "manufacturer": "LabHub"},
        "origin": {"name": "LabHub"},
    }
    device_class, unit = HA_SENSORS.get(entity.quantity or "", (None, None))
    if entity.quantity is None and entity.unit is not None:
        unit = _UNITS.get(entity.unit, entity.unit)
    if device_class is not None:
        config["device_class"] = device_class
    if unit is not None:
        config["unit_of_measurement"] = unit
    return config


class HaDiscovery:
    """Publishes discovery configs; an :class:`~firmware_bridge.mqtt.MqttExtension`.

    :meth:`note` is called for every channel in every state message (cheap after the
    first time); ``device_name(device_id)`` gives the kit's name from the registry.
    """

    def __init__(self, settings: MqttSettings,
                 device_name: Callable[[str], str] | None = None) -> None:
        self.settings = settings
        self._device_name = device_name or (lambda device: device)
        self._lock = threading.Lock()
        self._known: dict[tuple[str, str], Entity] = {}  # (device, channel) -> entity
        self._entities: dict[str, tuple[Entity, bytes]] = {}  # config topic -> config
        self._retained: dict[str, tuple[str, str]] = {}  # ours on the broker -> (device, channel)
        self._to_clear: set[str] = set()  # stale config topics not yet cleared

    def note(self, bridge: MqttBridge, entity: Entity) -> None:
        """A channel is in a state message: publish its config if it is new (or changed)."""
        key = (entity.device, entity.channel)
        topic = config_topic(self.settings.ha_discovery_prefix, entity)
        with self._lock:
            before = self._known.get(key)
            if before == entity:
                return
            self._known[key] = entity
            if before is not None:
                old = config_topic(self.settings.ha_discovery_prefix, before)
                if old != topic:
                    self._entities.pop(old, None)
                    self._to_clear.add(old)
            for seen, owner in list(self._retained.items()):
                if owner == key and seen != topic:
                    del self._retained[seen]
                    self._to_clear.add(seen)
        try:
            name = self._device_name(entity.device)
        except Exception:
            log.exception("no name for %s; using its id", entity.device)
            name = entity.device
        body = json.dumps(config_payload(self.settings, entity, name), ensure_ascii=False,
                          separators=(",", ":")).encode()
        with self._lock:
            self._entities[topic] = (entity, body)
            self._to_clear.discard(topic)
        if bridge.status.connected:
            self._clear(bridge)
            bridge.publish(topic, body, retain=True)

    def _clear(self, bridge: MqttBridge) -> None:
        """Publish an empty retained config to every stale topic: HA removes the entity."""
        with self._lock:
            stale, self._to_clear = self._to_clear, set()
        for topic in sorted(stale):
            if not bridge.publish(topic, b"", retain=True):
                with self._lock:
                    self._to_clear.add(topic)

    def configs(self) -> dict[str, bytes]:
        """Every config published so far, by topic."""
        with self._lock:
            return {topic: body for topic, (_, body) in self._entities.items()}

    # -- MqttExtension --------------------------------------------------------------------

    def subscriptions(self, settings: MqttSettings) -> list[str]:
        return []

    def retained_subscriptions(self, settings: MqttSettings) -> list[str]:
        return [f"{settings.ha_discovery_prefix}/sensor/+/+/config"]

    def handle(self, bridge: MqttBridge, topic: str, payload: bytes) -> bool:
        """A config on the broker (a retained copy, or the echo of one the hub published):
        if it is this hub's and its (device, channel) is now published elsewhere, clear it."""
        prefix = self.settings.ha_discovery_prefix
        if not (topic.startswith(f"{prefix}/sensor/") and topic.endswith("/config")):
            return False
        key = self._owner(payload)
        with self._lock:
            if key is None:  # not ours, or an empty (removed) config
                self._retained.pop(topic, None)
                return True
            current = self._known.get(key)
            if current is None or config_topic(prefix, current) == topic:
                self._retained[topic] = key
                return True
            self._entities.pop(topic, None)
            self._to_clear.add(topic)
        if bridge.status.connected:
            self._clear(bridge)
        return True

    def _owner(self, payload: bytes) -> tuple[str, str] | None:
        """(device, channel) of a config this hub published; None for any other."""
        try:
            config = json.loads(payload)
        except (ValueError, RecursionError):
            return None
        if not isinstance(config, dict) or config.get("availability_topic") != \
                self.settings.status_topic:
            return None
        state, name = config.get("state_topic"), config.get("name")
        head = self.settings.topic_prefix + "/"
        if not (isinstance(state, str) and isinstance(name, str) and state.startswith(head)):
            return None
        levels = state[len(head):].split("/")
        if len(levels) != 3 or levels[2] != "state":
            return None
        return levels[1], name

    def connected(self, bridge: MqttBridge) -> None:
        self._clear(bridge)
        for topic, body in self.configs().items():
            bridge.publish(topic, body, retain=True)


__all__ = ["HA_SENSORS", "Entity", "HaDiscovery", "config_payload", "config_topic", "slug"]
