"""MQTT nodes online and offline: by their own status message, or by silence.

A node counts as online while it publishes. Two things mark it offline: its own
``<prefix>/<site>/<device>/status`` message ``offline`` (the last will most ESP32 sketches
set, the same convention as the hub's own status topic; ``online`` marks it back), and
silence: no message from it for ``node_silence_s`` seconds. Its next message of any kind
marks it online again. Messages *to* a node (``cmd``, RPC) and the hub's own ``state``
messages say nothing about the node and are not counted.

:class:`NodeWatch` is an :class:`~firmware_bridge.mqtt.MqttExtension`: the bridge shows it
every message first. It keeps the time each node was last heard from, and a thread of its
own checks for silence; the app's ``on_change(device, site, online, why)`` writes the
device registry (it runs on the watch's or the bridge's thread, never paho's).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from firmware_bridge.mqtt import MqttBridge, MqttSettings

log = logging.getLogger(__name__)

CHECK_MAX_S = 5.0  # silence is checked this often at most (a quarter of the period below that)
NOT_FROM_NODE = frozenset({"cmd", "rpc", "state"})  # leaves published to or about a node
HUB_SITE = "hub"  # <prefix>/hub/<client_id>/status is a hub's own availability

ChangeCallback = Callable[[str, str, bool, str], None]


class NodeWatch:
    """Marks nodes offline by silence or their status message; see the module docstring."""

    def __init__(self, settings: MqttSettings, on_change: ChangeCallback,
                 *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.silence_s = settings.node_silence_s
        self._on_change = on_change
        self._clock = clock
        self._lock = threading.Lock()
        self._heard: dict[tuple[str, str], float] = {}  # (site, device) -> last message
        self._offline: set[tuple[str, str]] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> NodeWatch:
        if self._thread is None and self.silence_s > 0:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="labhub-mqtt-nodes",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    close = stop

    # -- MqttExtension ----------------------------------------------------------------------

    def subscriptions(self, settings: MqttSettings) -> list[str]:
        return []

    def retained_subscriptions(self, settings: MqttSettings) -> list[str]:
        return []

    def connected(self, bridge: MqttBridge) -> None:
        return None

    def handle(self, bridge: MqttBridge, topic: str, payload: bytes) -> bool:
        prefix = self.settings.topic_prefix
        if not topic.startswith(prefix + "/"):
            return False
        parts = topic[len(prefix) + 1 :].split("/")
        if len(parts) < 3 or not parts[0] or not parts[1] or parts[0] == HUB_SITE:
            return False
        if parts[2] in NOT_FROM_NODE:
            return False
        key = (parts[0], parts[1])
        if len(parts) == 3 and parts[2] == "status":
            said = payload.strip().lower()
            if said == b"offline":
                self._mark(key, online=False, why="said offline (its MQTT status)", said=True)
                return True
            self._heard_from(key)
            return True
        self._heard_from(key)
        return False

    def expect(self, site: str, device: str) -> None:
        """A node the registry says is online: heard from now, so that its silence counts
        from the hub's start (it may have gone quiet while the hub was off)."""
        with self._lock:
            self._heard.setdefault((site, device), self._clock())

    # -- inside -----------------------------------------------------------------------------

    def _heard_from(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._heard[key] = self._clock()
            back = key in self._offline
        if back:
            self._mark(key, online=True, why="publishing over MQTT again")

    def _mark(self, key: tuple[str, str], *, online: bool, why: str, said: bool = False
              ) -> None:
        """Record a change; ``said``: the node said so itself, which is recorded even when
        silence had already marked it offline (its reason is the better one)."""
        with self._lock:
            if online:
                if key not in self._offline:
                    return
                self._offline.discard(key)
            else:
                if key in self._offline and not said:
                    return
                self._offline.add(key)
                self._heard.setdefault(key, self._clock())
        site, device = key
        log.info("MQTT node %s at %s %s", device, site, why)
        try:
            self._on_change(device, site, online, why)
        except Exception:
            log.exception("recording MQTT node %s %s failed", device,
                          "online" if online else "offline")

    def check(self) -> None:
        """Mark every node silent for longer than the period offline (the thread's step)."""
        now = self._clock()
        with self._lock:
            silent = [k for k, t in self._heard.items()
                      if now - t > self.silence_s and k not in self._offline]
        for key in silent:
            self._mark(key, online=False, why=f"silent for more than {self.silence_s} s")

    def _run(self) -> None:
        period = min(CHECK_MAX_S, self.silence_s / 4)
        while not self._stop.wait(period):
            try:
                self.check()
            except Exception:
                log.exception("checking MQTT nodes for silence failed")


__all__ = ["NodeWatch"]
