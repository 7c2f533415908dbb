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
        self._known: dict[tuple[str, str, str], Entity] = {}  # (site, device, channel)
        self._entities: dict[str, tuple[Entity, bytes]] = {}  # config topic -> config

    def note(self, bridge: MqttBridge, entity: Entity) -> None:
        """A channel is in a state message: publish its config if it is new (or changed)."""
        key = (entity.site, entity.device, entity.channel)
        with self._lock:
            if self._known.get(key) == entity:
                return
            self._known[key] = entity
        topic = config_topic(self.settings.ha_discovery_prefix, entity)
        try:
            name = self._device_name(entity.device)
        except Exception:
            log.exception("no name for %s; using its id", entity.device)
            name = entity.device
        body = json.dumps(config_payload(self.settings, entity, name), ensure_ascii=False,
                          separators=(",", ":")).encode()
        with self._lock:
            self._entities[topic] = (entity, body)
        if bridge.status.connected:
            bridge.publish(topic, body, retain=True)

    def configs(self) -> dict[str, bytes]:
        """Every config published so far, by topic."""
        with self._lock:
            return {topic: body for topic, (_, body) in self._entities.items()}

    # -- MqttExtension --------------------------------------------------------------------

    def subscriptions(self, settings: MqttSettings) -> list[str]:
        return []

    def handle(self, bridge: MqttBridge, topic: str, payload: bytes) -> bool:
        return False

    def connected(self, bridge: MqttBridge) -> None:
        for topic, body in self.configs().items():
            bridge.publish(topic, body, retain=True)


__all__ = ["HA_SENSORS", "Entity", "HaDiscovery", "config_payload", "config_topic", "slug"]
