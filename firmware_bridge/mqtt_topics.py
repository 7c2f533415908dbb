"""MQTT topics: which topics carry a node's readings, and what a topic may contain.

Nodes publish to ``<prefix>/<site>/<device>/<leaf>``: :func:`parse_topic` reads the site,
the device and the leaf (``telemetry``, ``influx`` or a channel name) from such a topic
and tells apart the topics that carry no readings (outside the prefix, another depth, or
one of :data:`IGNORED_LEAVES`, the hub's own outputs and other uses). What the payload of
each leaf means is :func:`sensors.decoders.decode_mqtt`'s business, not this module's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

IGNORED_LEAVES: Final = frozenset({"state", "cmd", "status"})  # the hub's own topics, other uses
TOPIC_FORBIDDEN: Final = re.compile(r"[/+#\x00]")  # never inside one topic level: a level
# separator, the two wildcards, and NUL, which MQTT forbids in any string


@dataclass(frozen=True, slots=True)
class NodeTopic:
    """A topic a node publishes readings on: ``<prefix>/<site>/<device>/<leaf>``."""

    site: str
    device: str
    leaf: str  # "telemetry", "influx", or a channel name


class TopicError(ValueError):
    """A topic under the prefix that cannot carry readings (an empty site or device)."""


def parse_topic(prefix: str, topic: str) -> NodeTopic | None:
    """The site, device and leaf of ``topic``; ``None`` for a topic that is not for readings.

    Not for readings: outside the prefix, another depth, or a leaf in
    :data:`IGNORED_LEAVES`. :class:`TopicError` for an empty site or device level.
    """
    if not topic.startswith(prefix + "/"):
        return None
    parts = topic[len(prefix) + 1 :].split("/")
    if len(parts) != 3 or parts[2] in IGNORED_LEAVES:
        return None
    site, device, leaf = parts
    if not site or not device or not leaf:
        raise TopicError("site, device and channel levels must not be empty")
    return NodeTopic(site, device, leaf)



__all__ = ["IGNORED_LEAVES", "TOPIC_FORBIDDEN", "NodeTopic", "TopicError", "parse_topic"]
