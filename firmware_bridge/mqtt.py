"""The MQTT bridge: readings published to the lab's broker become stored readings, and a
message is acknowledged only once its readings are durable.

This module owns :class:`MqttBridge` (the connection, the worker that decodes and submits,
the acknowledgements after COMMIT, the redelivery records) and its status counters. Its
parts live next to it and are re-exported here: the settings
(:mod:`firmware_bridge.mqtt_settings`), the topics (:mod:`firmware_bridge.mqtt_topics`),
the order of acknowledgements (:mod:`firmware_bridge.mqtt_acks`) and the fake client
(:mod:`firmware_bridge.mqtt_fake`); payloads are decoded by
:func:`sensors.decoders.decode_mqtt`, next to the other wire formats.

ESP32 and ESP8266 nodes (and Telegraf, and anything else that speaks MQTT) publish to
``<prefix>/<site>/<device>/<leaf>``; the site and the device come from the topic:

- ``.../telemetry``: JSON, any of ThingsBoard's four telemetry shapes (``{"temp": 21.5}``,
  ``[{...}, {...}]``, ``{"ts": <ms>, "values": {...}}`` and arrays of those), or LabHub's
  flat JSON lines (``{"temp": 21.5, "ts": 1714564800}``, one or more lines);
- ``.../influx``: Influx line protocol (timestamps in ns unless configured);
- ``.../<channel>``: one bare number (``21.5``), the way Tasmota- and Homie-style sketches
  publish a value per topic.

The site level must be a site of the inventory's tree (the pipeline's
``check_site``, which the hub gives the inventory's check), or :data:`registry.NO_SITE`,
which names no site: a message naming another is kept whole as a dead letter of kind
``unknown_site`` (with its topic and the site), to be replayed once the site exists.

Leaves ``state``, ``cmd`` and ``status`` are the hub's own outputs and other uses and are
not readings (acknowledged, no dead letter; extensions may act on them, see below), as
are copies the broker keeps with the retain flag: a retained value is an old reading,
not a new one. A node's own timestamp is kept when it sends one (the pipeline refuses
one far in the future with a dead letter), else the arrival time is used.

**Acknowledged only when durable.** The client runs with ``manual_ack=True``: paho's
network thread only stamps and queues a message; a worker thread decodes it and submits
it to the ingest pipeline; the pipeline's writer thread completes the ticket after
COMMIT and only then is the PUBACK sent. A message that does not decode goes to the
dead-letter table with its topic and reason and is acknowledged once *that* row is
committed. A message whose storage fails is not acknowledged: the broker delivers it again
after the next reconnect. PUBACKs go out in the order the messages arrived (MQTT-4.6.0-2),
and never on a later connection than the one that delivered the message (see
``_release``). The session is persistent (MQTT 5 ``clean_start=False`` with a session
expiry; MQTT 3.1.1 ``clean_session=False``), so what arrives while the hub is away or
restarting waits at the broker, and a Receive Maximum bounds how many messages can wait
for their commit at once.

Redelivered messages are stored once: by the pipeline's idempotent key when they carry
their own timestamp, and otherwise because the arrival time given to a message is
remembered with its readings, in the same transaction, by client id and packet id
(:mod:`firmware_bridge.deliveries`), and reused when the broker delivers it again (DUP).
A QoS 1 message that does not decode is recorded the same way, and its dead letter's uuid
derived from the record, so a redelivery finds its dead letter already stored.
What arrives together is decoded and submitted together (one batch per site, up to
:data:`MAX_BURST` messages), so a backlog drains at close to paho's own rate; a batch is
submitted with ``flush=True``, written at once rather than after the pipeline's flush
interval, since it is a batch already and its PUBACKs wait for the COMMIT (what queues
while the writer is busy still goes in one transaction).

With ``share_group`` the hub subscribes to ``$share/<group>/<prefix>/+/+/+``: several
hubs with their own client ids split one stream (central ingest). Reconnection follows
paho's exponential backoff plus a random jitter (:func:`reconnect_jitter_s`).

The hub's own side: a retained ``offline`` will and a retained ``online`` birth message on
``<prefix>/hub/<client_id>/status``, and :meth:`MqttBridge.publish_state` for its readings
out, at QoS 1 to ``<prefix>/<site>/<device>/state``, through the on-disk outbox
(``firmware_bridge.outbox``) when the bridge has one. :class:`MqttExtension` objects add
topics of their own (commands, Home Assistant discovery, node availability): each may
subscribe to more filters, take a message before it is read as readings, and act on
every (re)connection; a retained copy goes only to an extension that asked for retained
copies on a filter it matches (discovery reads its old configs that way, never a command).

:class:`FakeMqttClient` stands in for paho's client without a broker: tests and virtual
kits deliver messages to a real :class:`MqttBridge` and see what it acknowledged and
published.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import sys
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Protocol

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from firmware_bridge.deliveries import (
    DeliveryWrites,
    content_letter_id,
    digest,
    letter_id,
    recorded,
)
from firmware_bridge.deliveries import forget as forget_deliveries
from firmware_bridge.mqtt_acks import ACK, SKIP, WAITING, Ack, AckOrder
from firmware_bridge.mqtt_fake import FakeMqttClient
from firmware_bridge.mqtt_settings import MqttSettings, packet_properties
from firmware_bridge.mqtt_topics import (
    IGNORED_LEAVES,
    TOPIC_FORBIDDEN,
    NodeTopic,
    TopicError,
    parse_topic,
)
from firmware_bridge.outbox import Outbox, OutboxSender, OutboxStatus
from firmware_bridge.registry import NO_SITE
from sensors.decoders import decode_mqtt
from sensors.decoders import decode_mqtt as decode_message  # the name the tests and kits use
from sensors.errors import DecodeError, PipelineClosedError, UnknownSiteError
from sensors.pipeline import IngestPipeline, QueueFullError, Ticket
from sensors.samples import Sample, now_us

log = logging.getLogger(__name__)

SOURCE = "mqtt"
SUBMIT_WAIT_S = 0.5  # a full ingest queue is re-checked this often for a stop request
MAX_WAITING_QOS0 = 50_000  # QoS 0 messages queued for the worker before new ones are dropped
MAX_BURST = 1000  # messages the worker takes at once: one batch, one ticket, one transaction
BURST_WAIT_S = 0.005  # after the first message of a burst the worker lets more arrive this long:
# without it the worker, faster than paho's network thread, wakes and submits for every single
# message (a thread switch, a ticket and a lock round each), which halved the drain rate.
MAX_KNOWN_TOPICS = 10_000  # parsed topics kept (a lab has tens of nodes, a few topics each);
# past this the cache starts again, so a flood of one-off topics cannot grow it
BURST_STREAM = 20  # messages waiting after the first wait that make a stream (4,000 msg/s)
BURST_WAITS = 4  # waits of BURST_WAIT_S at most while a stream fills a burst: each burst is one
# transaction, and fewer, larger ones cost the writer less per message; a trickle (live
# readings) never waits more than one BURST_WAIT_S
DRAIN_TIMEOUT_S = 5.0  # stop() waits this long for received messages to become durable
STATUS_PUBLISH_TIMEOUT_S = 2.0  # stop() waits this long for the retained "offline" to go out
NOT_AUTHORISED = (0x86, 0x87)  # MQTT 5 "bad user name or password", "not authorized"
SHORT_LIVED_S = 10.0  # a connection lost sooner than this after connecting counts as short
SHORT_LIVED_HINT = 2  # after this many in a row, suspect a client id used twice: brokers
# close the older of two connections with one client id, so two hubs (or a hub and a node)
# sharing one throw each other out at every reconnect. Mosquitto 2.0 closes the socket
# without telling why, so only the pattern shows it.
RECONNECT_JITTER = 0.5  # up to this fraction of paho's backoff is added at random, so that the
# hubs and nodes of a school do not all come back in the same instant after a broker restart


def reconnect_jitter_s(attempt: int, min_s: float, max_s: float, draw: float) -> float:
    """Extra wait before reconnection attempt ``attempt`` (1: the first after a success or
    the start), on top of paho's own exponential backoff ``min_s * 2**(attempt-1)``, capped
    at ``max_s``; ``draw`` is a random number in [0, 1)."""
    if attempt < 1:
        return 0.0
    backoff = min(min_s * (1 << min(attempt - 1, 32)), max_s)
    return backoff * RECONNECT_JITTER * draw



class _QuietPaho(logging.Filter):
    """Drops paho 2.2's ERROR "Client is not connected", which its own loop logs after
    every clean disconnect and every failed reconnect attempt; the bridge's status already
    says what happened, in words a teacher can act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Client is not connected")


_paho_log = logging.getLogger(f"{__name__}.paho")
_paho_log.addFilter(_QuietPaho())


# -- status -------------------------------------------------------------------------------


@dataclass(slots=True)
class MqttStats:
    """What the bridge has seen since it was created. Readings count samples, the rest
    count messages."""

    received: int = 0  # messages the broker delivered
    redelivered: int = 0  # of those, marked as a redelivery (DUP)
    readings: int = 0  # samples decoded and handed to the pipeline
    stored: int = 0  # readings newly stored
    duplicates: int = 0  # readings already stored (a redelivery), stored once
    rejected: int = 0  # dead letters: messages that did not decode, readings refused
    ignored: int = 0  # messages on topics that carry no readings, retained copies
    acked: int = 0  # PUBACKs sent
    failed: int = 0  # messages whose storage failed: not acknowledged, delivered again
    dropped: int = 0  # QoS 0 messages dropped while the hub was behind
    published: int = 0  # messages the hub published (state, status)
    publish_failures: int = 0  # ... that paho refused (its queue full): lost
    connects: int = 0  # successful connections
    attempts: int = 0  # connection attempts, the first one included


@dataclass(slots=True)
class MqttStatus:
    """Whether the hub is connected to its broker, and a message a teacher can act on."""

    connected: bool = False
    subscribed: bool = False  # the broker granted the subscription on this connection
    message: str = "not started"
    session_present: bool = False  # the broker had kept the hub's session
    stats: MqttStats = field(default_factory=MqttStats)
    outbox: OutboxStatus | None = None  # the on-disk queue of the hub's own messages


# -- the bridge ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Delivery:
    topic: str
    payload: bytes
    mid: int
    qos: int
    retain: bool
    dup: bool  # the broker marked it as a redelivery
    generation: int
    arrival: int  # microseconds since the epoch, strictly increasing


@dataclass(slots=True)
class _Group:
    """The messages of one site in a burst: submitted together."""

    device: str  # the first message's device (each sample names its own)
    samples: list[Sample] = field(default_factory=list)
    entries: list[Ack | None] = field(default_factory=list)
    records: list[tuple[int, str, int]] = field(default_factory=list)  # (mid, digest, arrival)
    # Each message's first sample, and its topic, record (if any) and payload when it may
    # come again (QoS 1): a refused reading's origin.
    starts: list[int] = field(default_factory=list)
    origins: list[tuple[str, tuple[int, str, int] | None, bytes | None]] = field(
        default_factory=list)

    def origin(self, client_id: str, index: int) -> tuple[str | None, str | None]:
        """The topic of the message holding sample ``index``, and, when the message may be
        delivered again, its dead letter's uuid, the same for the redelivery: derived from
        the record of an untimed message, or from topic and payload for one whose readings
        carry their own times (its readings are stored once by their key, and so is this)."""
        at = bisect_right(self.starts, index) - 1
        topic, record, payload = self.origins[at]
        part = index - self.starts[at]
        if record is not None:
            return topic, letter_id(client_id, record, part)
        if payload is not None:
            return topic, content_letter_id(client_id, digest(topic, payload), part)
        return topic, None


@dataclass(slots=True)
class _Reject:
    """A message that does not decode: its dead letter, submitted after the burst's readings."""

    delivery: _Delivery
    entry: Ack | None
    reason: str
    device: str | None
    record: tuple[int, str, int] | None  # (mid, digest, arrival): QoS 1, may come again
    unknown_site: str | None = None  # refused for naming this site: replayable once it exists


DeviceCallback = Callable[[str, str], None]
StatusCallback = Callable[[MqttStatus], None]


class MqttExtension(Protocol):
    """Topics of the hub's own beyond readings in (see the module docstring)."""

    def subscriptions(self, settings: MqttSettings) -> list[str]:
        """Filters to subscribe to besides the node topics (no overlap with them)."""
        ...

    def retained_subscriptions(self, settings: MqttSettings) -> list[str]:
        """Filters on which the extension also takes retained copies, which the broker
        sends on every subscription (the hub's own publications included: no-local off)."""
        ...

    def handle(self, bridge: MqttBridge, topic: str, payload: bytes) -> bool:
        """A message arrived (on the bridge's worker thread); True: it was this
        extension's, acknowledge it and do not read it as readings."""
        ...

    def connected(self, bridge: MqttBridge) -> None:
        """The bridge (re)connected (on paho's network thread: publish, do not block)."""
        ...


class MqttBridge:
    """Subscribes to the node topics and feeds the ingest pipeline; see the module docstring.

    ``on_device(device_id, site)`` is called (from the bridge's worker thread) the first
    time a node publishes to a reading topic, so the app can register it; ``on_status``
    whenever the connection status changes (from paho's network thread). ``client_class``
    is paho's :class:`~paho.mqtt.client.Client` or :class:`FakeMqttClient`.

    Use as a context manager, or call :meth:`start` and :meth:`stop` (alias :meth:`close`).
    """

    def __init__(
        self,
        settings: MqttSettings,
        pipeline: IngestPipeline,
        *,
        on_device: DeviceCallback | None = None,
        on_status: StatusCallback | None = None,
        client_class: type[paho.Client] = paho.Client,
        outbox: Outbox | None = None,
        extensions: Sequence[MqttExtension] = (),
    ) -> None:
        self.settings = settings
        self._sender = None if outbox is None else OutboxSender(outbox)
        self._extensions = list(extensions)
        self.pipeline = pipeline
        self._on_device = on_device
        self._on_status = on_status
        self._client_class = client_class
        self._client: paho.Client | None = None
        self._cond = threading.Condition()  # guards everything below
        self._status = MqttStatus()
        self._generation = 0  # bumped whenever a connection begins or ends
        self._connected = False
        self._closed = True  # no acknowledgement may be sent (not started, or stopping)
        self._acks = AckOrder()  # received messages, oldest first
        self._inbox: queue.SimpleQueue[_Delivery | None] = queue.SimpleQueue()
        # paho's network thread takes only this small lock per message, never _cond, so
        # that the worker and the writer never keep it from reading the socket.
        self._inbox_lock = threading.Lock()  # guards _accepting, _arrived, _last_arrival
        self._accepting = False
        self._arrived = 0  # deliveries put into the inbox
        self._handled = 0  # deliveries the worker has handled or thrown away (under _cond)
        self._last_arrival = 0  # microseconds: arrival times are made strictly increasing
        # Redelivery records (see firmware_bridge.deliveries), under _cond: written or being
        # written and not yet acknowledged; acknowledged ones to delete with the next batch.
        self._records: dict[int, tuple[str, int]] = {}
        # A PUBACK handed to paho is not yet one the broker has read: a hub killed then
        # gets the message again. So the rows of acknowledged messages are deleted only
        # once an UNSUBSCRIBE sent after their PUBACKs is answered (the broker reads a
        # connection's packets in order): acknowledged, being confirmed, to delete.
        self._unconfirmed: set[int] = set()
        self._confirming: tuple[int, set[int]] | None = None  # (UNSUBSCRIBE packet id, mids)
        self._forget: set[int] = set()
        self._answered: int | None = None  # an UNSUBACK that came before _confirm() returned
        self._forget_all = False  # the broker did not keep the session: no redelivery
        self._prune_before: int | None = None  # rows older than this (us) go with a batch
        self._worker: threading.Thread | None = None
        self._stopping = threading.Event()
        self._seen: set[tuple[str, str]] = set()
        self._topics: dict[str, NodeTopic | None] = {}  # parsed topics (worker thread only)
        self._connected_at = 0.0  # monotonic time of the last successful connection
        self._failed_attempts = 0  # attempts since the last successful connection
        self._random = random.Random()  # noqa: S311 -- jitter, not secrets
        self._short_lived = 0  # connections in a row lost soon after they were made

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> MqttBridge:
        """Connect in the background (retrying with a backoff) and start handling messages."""
        if self._client is not None:
            return self
        s = self.settings
        v5 = s.protocol == "5"
        client = self._client_class(
            CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            clean_session=None if v5 else False,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            manual_ack=True,
        )
        # A callback that raises would end paho's network thread: ours catch everything,
        # and this is the second line of defence.
        client.suppress_exceptions = True
        client.enable_logger(_paho_log)
        if s.username is not None:
            password = s.password.get_secret_value() if s.password is not None else None
            client.username_pw_set(s.username, password)
        if s.uses_tls:
            client.tls_set(
                ca_certs=str(s.tls_ca_file) if s.tls_ca_file else None,
                certfile=str(s.tls_cert_file) if s.tls_cert_file else None,
                keyfile=str(s.tls_key_file) if s.tls_key_file else None,
            )
        client.will_set(s.status_topic, "offline", qos=1, retain=True)
        client.reconnect_delay_set(s.reconnect_min_s, s.reconnect_max_s)
        client.on_pre_connect = self._handle_pre_connect
        client.on_connect = self._handle_connect
        client.on_connect_fail = self._handle_connect_fail
        client.on_disconnect = self._handle_disconnect
        client.on_subscribe = self._handle_subscribe
        client.on_unsubscribe = self._handle_unsubscribe
        client.on_message = self._handle_message
        client.on_publish = self._handle_publish
        properties = None
        if v5:
            properties = packet_properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = s.session_expiry_s
            properties.ReceiveMaximum = s.receive_maximum
        with self._cond:
            self._closed = False
        with self._inbox_lock:
            self._accepting = True
        self._stopping.clear()
        self._worker = threading.Thread(
            target=self._work, name=f"labhub-mqtt-{s.client_id}", daemon=True
        )
        self._worker.start()
        if self._sender is not None:
            self._sender.start()
        self._client = client
        self._set_status(message=f"connecting to {s.host}:{s.port}")
        client.connect_async(s.host, s.port, s.keepalive_s, clean_start=False,
                             properties=properties)
        client.loop_start()
        return self

    def stop(self, timeout: float = DRAIN_TIMEOUT_S) -> None:
        """Stop: wait up to ``timeout`` s for received messages to become durable and be
        acknowledged, say ``offline``, disconnect and end both threads.

        Messages not durable by then stay unacknowledged: the broker keeps them in the
        hub's session and delivers them again on the next start.
        """
        client = self._client
        if client is None:
            return
        with self._inbox_lock:
            self._accepting = False  # what arrives from now on waits for the next session
        self._stopping.set()
        self._inbox.put(None)
        if self._worker is not None:
            self._worker.join(max(timeout, SUBMIT_WAIT_S) + 1)
            if self._worker.is_alive():
                log.error("MQTT worker did not finish in time")
            self._worker = None
        self.drain(timeout)
        if self._sender is not None:
            self._sender.stop(timeout)  # what is not acknowledged stays in the outbox file
        with self._cond:
            self._closed = True  # no acknowledgement after this: paho's loop is ending
            connected = self._connected
            acknowledged, self._forget = sorted(self._forget), set()
        if acknowledged:  # no batch follows to carry their deletion
            try:
                forget_deliveries(self.pipeline.store.engine,
                                  DeliveryWrites(self.settings.client_id, forget=acknowledged))
            except Exception:
                log.exception("forgetting %d acknowledged MQTT deliveries failed",
                              len(acknowledged))
        if connected:
            info = self._publish(self.settings.status_topic, b"offline", retain=True)
            if info is not None:
                try:
                    info.wait_for_publish(STATUS_PUBLISH_TIMEOUT_S)
                except (RuntimeError, ValueError):
                    log.warning("the broker did not take the hub's offline status")
        client.disconnect()
        client.loop_stop()
        self._client = None
        with self._cond:
            self._connected = False
            self._generation += 1
            self._acks.clear()
            self._status.connected = False
        self._set_status(message="stopped")

    close = stop

    def __enter__(self) -> MqttBridge:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every message received so far is settled (durable and acknowledged,
        or failed); False if that took longer than ``timeout`` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._arrived - self._handled or self._acks:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    @property
    def status(self) -> MqttStatus:
        """A snapshot of the connection status and counters."""
        outbox = None if self._sender is None else self._sender.status()
        with self._cond:
            return replace(self._status, stats=replace(self._status.stats), outbox=outbox)

    @property
    def client(self) -> paho.Client | None:
        """The paho client while running (a :class:`FakeMqttClient` in tests)."""
        return self._client

    # -- publishing -----------------------------------------------------------------------

    def publish_state(
        self, site: str, device: str, payload: Mapping[str, Any], *, retain: bool = False
    ) -> bool:
        """Publish the hub's reading of a device to ``<prefix>/<site>/<device>/state`` at QoS 1.

        With an outbox, the message is queued on disk and True is returned. Without one,
        True when paho sent or queued it (queued until the broker is back, in memory
        only); False when paho refused it (its queue full: the message is lost, counted
        in ``publish_failures`` and logged). ``ValueError`` for a site or device that
        cannot be a topic level, or a payload that is not JSON (NaN included);
        ``RuntimeError`` when the bridge is not running.
        """
        for what, name in (("site", site), ("device", device)):
            if not name or TOPIC_FORBIDDEN.search(name):
                raise ValueError(f"{what} {name!r} cannot be an MQTT topic level")
        body = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        topic = f"{self.settings.topic_prefix}/{site}/{device}/state"
        if self._sender is not None:
            if self._client is None:
                raise RuntimeError("the MQTT bridge is not running")
            self._sender.enqueue(topic, body.encode(), retain=retain)
            return True
        return self._publish(topic, body.encode(), retain=retain) is not None

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> bool:
        """Publish at QoS 1 now (paho's memory queue, not the outbox): replies and
        discovery configs, which are worth nothing late. False when paho refused it."""
        return self._publish(topic, payload, retain=retain) is not None

    def _publish(self, topic: str, payload: bytes, *, retain: bool) -> paho.MQTTMessageInfo | None:
        client = self._client
        if client is None:
            raise RuntimeError("the MQTT bridge is not running")
        info = client.publish(topic, payload, qos=1, retain=retain)
        ok = info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN)
        with self._cond:
            if ok:
                self._status.stats.published += 1
            else:
                self._status.stats.publish_failures += 1
            failures = self._status.stats.publish_failures
        if not ok:
            if failures % 1000 == 1:  # the first, then every 1,000th: a full queue stays full
                log.error("MQTT message to %s lost (%d so far): %s", topic, failures,
                          paho.error_string(info.rc))
            return None
        return info

    # -- paho callbacks (network thread) ----------------------------------------------------

    def _handle_pre_connect(self, client: paho.Client, userdata: Any) -> None:
        s = self.settings
        with self._cond:
            self._status.stats.attempts += 1
            retry = self._status.stats.attempts > 1
            if retry:
                self._failed_attempts += 1
            attempt = self._failed_attempts
        if retry:  # paho has waited its backoff; add the jitter (stop() cuts it short)
            self._stopping.wait(reconnect_jitter_s(attempt, s.reconnect_min_s,
                                                   s.reconnect_max_s, self._random.random()))
        with self._cond:
            self._generation += 1
            self._connected = False
            self._acks.clear()
            self._unconfirmed, self._confirming = set(), None  # unknown: their rows stay
            self._cond.notify_all()

    def _handle_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        s = self.settings
        try:
            if reason.is_failure:
                if reason.value in NOT_AUTHORISED:
                    text = "not authorised: check the MQTT user name and password"
                else:
                    text = str(reason).lower()
                self._set_status(connected=False, message=f"broker refused: {text}")
                return
            with self._cond:
                self._generation += 1
                self._connected = True
                self._acks.clear()
                self._status.session_present = bool(flags.session_present)
                if flags.session_present:
                    self._prune_before = now_us() - s.session_expiry_s * 1_000_000
                else:  # nothing of an earlier session can come again
                    self._records.clear()
                    self._forget = set()
                    self._forget_all = True
                self._status.subscribed = False
                reconnect = self._status.stats.connects > 0
                self._status.stats.connects += 1
                self._failed_attempts = 0
                self._connected_at = time.monotonic()
            if reconnect and not flags.session_present:
                log.warning("the broker %s:%s had not kept the hub's session (expired, or lost "
                            "in a broker restart): what nodes sent meanwhile is lost",
                            s.host, s.port)
            if s.protocol == "5":
                # No copies of the hub's own publications; no retained values (old readings)
                # when the subscription is made. No Local on a shared subscription is a
                # protocol error (MQTT-3.8.3-4): there the hub ignores its own topics.
                options = SubscribeOptions(qos=1, noLocal=s.share_group is None,
                                           retainHandling=2)
                client.subscribe(s.subscription, options=options)
            else:
                options = None
                client.subscribe(s.subscription, qos=1)
            for extension in self._extensions:
                for extra in extension.subscriptions(s):
                    if options is not None:
                        client.subscribe(extra, options=options)
                    else:
                        client.subscribe(extra, qos=1)
                for extra in extension.retained_subscriptions(s):
                    if options is not None:
                        client.subscribe(extra, options=SubscribeOptions(
                            qos=1, noLocal=False, retainHandling=0))
                    else:
                        client.subscribe(extra, qos=1)
            self._publish(s.status_topic, b"online", retain=True)
            self._set_status(connected=True, message=f"connected to {s.host}:{s.port}")
            for extension in self._extensions:
                try:
                    extension.connected(self)
                except Exception:
                    log.exception("MQTT extension %s failed on connect", type(extension))
            if self._sender is not None:
                self._sender.connected(client)
        except Exception:
            log.exception("MQTT connect handling failed")

    def _handle_publish(self, client: paho.Client, userdata: Any, mid: int,
                        reason: ReasonCode | None, properties: Properties | None) -> None:
        if self._sender is not None:
            self._sender.acknowledged(mid, reason)

    def _handle_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        # paho calls this inside its `except OSError:`, so the error is the one in flight.
        error = sys.exception()
        s = self.settings
        detail = f": {error}" if error is not None else ""
        self._set_status(connected=False,
                         message=f"cannot reach broker {s.host}:{s.port}{detail}; retrying")

    def _handle_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self._sender is not None:
            self._sender.disconnected()
        with self._cond:
            was_connected = self._connected
            self._generation += 1
            self._connected = False
            self._status.subscribed = False
            self._acks.clear()  # their PUBACKs may not go out on a later connection
            # Whether the broker read the last PUBACKs is unknown: their rows stay (a
            # redelivery finds them; otherwise they are replaced or pruned).
            self._unconfirmed, self._confirming = set(), None
            self._cond.notify_all()
        if self._closed_now():
            self._set_status(connected=False)
            return
        if not was_connected:  # a refused CONNACK: keep saying why
            return
        s = self.settings
        text = str(reason).lower()
        twice = f"another client connected with client id {s.client_id!r}"
        if time.monotonic() - self._connected_at < SHORT_LIVED_S:
            self._short_lived += 1
        else:
            self._short_lived = 0
        if flags.is_disconnect_packet_from_server:
            if reason.value == 0x8E:  # session taken over
                text += f": {twice}"
            message = f"broker {s.host}:{s.port} closed the connection: {text}; reconnecting"
        elif self._short_lived >= SHORT_LIVED_HINT:
            message = (f"connection to {s.host}:{s.port} lost {self._short_lived} times within "
                       f"seconds of connecting: has {twice}? reconnecting")
        else:
            message = f"connection to {s.host}:{s.port} lost ({text}); reconnecting"
        self._set_status(connected=False, message=message)

    def _handle_subscribe(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        failures = [r for r in reasons if r.is_failure]
        if failures:
            self._set_status(message=f"broker refused the subscription to "
                                     f"{self.settings.subscription}: {failures[0]}")
            return
        with self._cond:
            self._status.subscribed = True

    def _handle_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        """Stamp and queue; everything else happens on the worker (this thread must keep
        reading the socket and sending PUBACKs)."""
        try:
            now = time.time_ns() // 1000
            with self._inbox_lock:
                if not self._accepting:
                    return  # stopping: not acknowledged, so delivered again next session
                stats = self._status.stats
                stats.received += 1
                if msg.dup:
                    stats.redelivered += 1
                if msg.qos == 0 and self._arrived - self._handled >= MAX_WAITING_QOS0:
                    stats.dropped += 1
                    return
                # Strictly increasing: two messages of one channel arriving in the same
                # microsecond would otherwise share a reading key, and one would be lost.
                arrival = now if now > self._last_arrival else self._last_arrival + 1
                self._last_arrival = arrival
                self._arrived += 1
                # The generation changes only on this thread (connect, disconnect callbacks).
                payload = msg.payload
                self._inbox.put(_Delivery(
                    msg.topic, payload if type(payload) is bytes else bytes(payload), msg.mid,
                    msg.qos, msg.retain, msg.dup, self._generation, arrival))
        except Exception:
            log.exception("MQTT message handling failed")

    # -- the worker ---------------------------------------------------------------------

    def _work(self) -> None:
        inbox = self._inbox
        stopping = False
        while not stopping:
            first = inbox.get()
            if first is None:
                break
            burst = [first]
            if inbox.qsize() < MAX_BURST:
                time.sleep(BURST_WAIT_S)
                for _ in range(BURST_WAITS - 1):
                    # A stream (a backlog draining) keeps arriving: wait a little more, so
                    # that one transaction carries hundreds of messages; a trickle goes on.
                    waiting = inbox.qsize()
                    if waiting < BURST_STREAM or waiting >= MAX_BURST:
                        break
                    time.sleep(BURST_WAIT_S)
            while len(burst) < MAX_BURST:
                try:
                    more = inbox.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                burst.append(more)
            try:
                self._handle_burst(burst)
            except Exception:
                log.exception("handling %d MQTT messages failed", len(burst))
            finally:
                with self._cond:
                    self._handled += len(burst)
                    self._cond.notify_all()
        # Stopping: what is still queued was never handed to the pipeline, so it is not
        # acknowledged and the broker delivers it again. Nothing more arrives: stop()
        # stopped accepting before it sent the end marker.
        left = 0
        while True:
            try:
                delivery = inbox.get_nowait()
            except queue.Empty:
                break
            if delivery is not None:
                left += 1
        with self._cond:
            self._handled += left
            self._cond.notify_all()

    def _handle_burst(self, burst: list[_Delivery]) -> None:
        """Decode what arrived together and submit it as one batch per site: one ticket,
        one lock round and one transaction for hundreds of messages when a backlog drains."""
        entries: list[Ack | None] = []
        with self._cond:
            generation = self._generation
            acks = self._acks
            for delivery in burst:
                if delivery.generation == generation:  # QoS 0 too: drain() waits for it
                    entries.append(acks.add(delivery.mid, delivery.qos, delivery.generation))
                else:
                    entries.append(None)
        try:
            self._decode_and_submit(burst, entries)
        except BaseException:
            self._settle_many([e for e in entries if e is not None and e.state == WAITING],
                              SKIP)
            raise

    def _decode_and_submit(self, burst: list[_Delivery], entries: list[Ack | None]) -> None:
        s = self.settings
        prefix = s.topic_prefix
        earlier = self._earlier_arrivals(burst)
        groups: dict[str | None, _Group] = {}
        refusals: dict[str, str | None] = {}  # site -> why it is refused (None: it is not)
        rejects: list[_Reject] = []
        done: list[Ack] = []
        ignored = readings = 0
        latest = 0
        extensions = self._extensions
        topics = self._topics
        for delivery, entry in zip(burst, entries, strict=True):
            topic = delivery.topic
            if extensions and self._extension_took(delivery):
                # a command, an RPC request or a node's status: handled, not readings
                if entry is not None:
                    done.append(entry)
                continue
            try:
                if delivery.retain:
                    node = None
                elif topic in topics:
                    node = topics[topic]
                else:
                    node = parse_topic(prefix, topic)
                    if len(topics) >= MAX_KNOWN_TOPICS:
                        topics.clear()
                    topics[topic] = node
                    if node is not None:
                        self._note_device(node)  # once per topic, not per message
            except TopicError as exc:
                rejects.append(self._rejected(delivery, entry, f"topic {topic}: {exc}", None,
                                              earlier))
                continue
            if node is None:
                ignored += 1
                if entry is not None:
                    done.append(entry)
                continue
            try:
                samples = decode_mqtt(node.leaf, delivery.payload,
                                         influx_precision=s.influx_precision)
            except DecodeError as exc:
                rejects.append(self._rejected(delivery, entry, f"topic {topic}: {exc}",
                                              node.device, earlier))
                continue
            if not samples:
                if entry is not None:
                    done.append(entry)
                continue
            # Decoded: readings that would be stored once their site exists (a replay).
            # The hub's own topics put a device at no site under NO_SITE: no site named.
            site = None if node.site == NO_SITE else node.site
            if site is not None:
                if site not in refusals:
                    refusals[site] = self._site_refusal(site)
                refusal = refusals[site]
                if refusal is not None:
                    reject = self._rejected(delivery, entry, f"topic {topic}: {refusal}",
                                            node.device, earlier)
                    reject.unknown_site = site
                    rejects.append(reject)
                    continue
            group = groups.get(site)
            if group is None:
                group = groups[site] = _Group(node.device)
            device = node.device
            out = group.samples
            group.starts.append(len(out))
            record = None
            arrival = delivery.arrival
            untimed = False
            for sample in samples:
                if sample[2] is None:
                    untimed = True
                    break
            if untimed and delivery.qos > 0:
                # Stamp the arrival time here, remembered with the readings: a redelivery
                # then gets the same time and finds its readings already stored.
                record = self._record(delivery, entry, earlier)
                arrival = record[2]
                group.records.append(record)
            group.origins.append(
                (topic, record, delivery.payload if record is None and delivery.qos else None))
            for channel, value, ts, unit, sender in samples:  # one new tuple per sample
                out.append(Sample(channel, value, arrival if ts is None else ts, unit,
                                  sender or device))
            group.entries.append(entry)
            readings += len(samples)
            latest = delivery.arrival  # arrival times increase through a burst
        writes: DeliveryWrites | None = None
        with self._cond:
            stats = self._status.stats
            stats.ignored += ignored
            stats.readings += readings
            for entry in done:
                entry.state = ACK
            confirming = self._confirming[1] if self._confirming is not None else set()
            records = [r for group in groups.values() for r in group.records]
            records += [r.record for r in rejects if r.record is not None]
            for mid, mark, arrival in records:
                self._records[mid] = (mark, arrival)
                # The broker gave the packet id of an acknowledged message to this one:
                # its row is replaced (an upsert), not deleted later.
                self._forget.discard(mid)
                self._unconfirmed.discard(mid)
                confirming.discard(mid)
            if (groups or rejects) and (self._forget or self._forget_all
                                        or self._prune_before is not None):
                writes = DeliveryWrites(s.client_id, forget=sorted(self._forget),
                                        forget_all=self._forget_all,
                                        prune_before=self._prune_before)
                self._forget, self._forget_all, self._prune_before = set(), False, None
            if done:
                self._release()
                self._cond.notify_all()
        pending = [writes] if writes is not None else []

        def hook(records: list[tuple[int, str, int]]) -> DeliveryWrites | None:
            """What a submission writes to mqtt_deliveries: its records, and the pending
            deletions with the first submission of the burst."""
            own = pending.pop() if pending else DeliveryWrites(s.client_id)
            own.records = records
            return own if own else None

        for site, group in groups.items():
            ticket = self._submit(partial(
                self.pipeline.submit, group.samples, device=group.device, site=site,
                source=SOURCE, received_at=latest, in_transaction=hook(group.records),
                origin=partial(group.origin, s.client_id), flush=True))
            self._follow(ticket, [e for e in group.entries if e is not None])
        for reject in rejects:
            record = reject.record
            delivery = reject.delivery
            ticket = self._submit(partial(
                self.pipeline.reject, source=SOURCE,
                payload=delivery.payload, reason=reject.reason,
                device=reject.device, topic=delivery.topic,
                received_at=delivery.arrival if record is None else record[2],
                letter_id=None if record is None else letter_id(s.client_id, record),
                in_transaction=hook([] if record is None else [record]), flush=True,
                unknown_site=reject.unknown_site))
            self._follow(ticket, [] if reject.entry is None else [reject.entry])

    def _site_refusal(self, site: str) -> str | None:
        """Why readings on topics naming ``site`` are not stored (not a site of the hub's
        inventory), or None; asked once per site in a burst."""
        try:
            self.pipeline.check_site(site, where="the node's topic (its site level)")
        except UnknownSiteError as exc:
            return str(exc)
        return None

    @staticmethod
    def _record(delivery: _Delivery, entry: Ack | None,
                earlier: dict[int, tuple[str, int]]) -> tuple[int, str, int]:
        """The delivery record of a QoS 1 message: ``(mid, digest, arrival)``, with the
        arrival time recorded when it was first stored if this is a redelivery of it."""
        mark = digest(delivery.topic, delivery.payload)
        first = earlier.get(delivery.mid)
        arrival = first[1] if first is not None and first[0] == mark else delivery.arrival
        if entry is not None:
            entry.record = True
        return delivery.mid, mark, arrival

    def _rejected(self, delivery: _Delivery, entry: Ack | None, reason: str,
                  device: str | None, earlier: dict[int, tuple[str, int]]) -> _Reject:
        """A message that does not decode; recorded (QoS 1) so that its redelivery finds
        its dead letter already stored."""
        record = self._record(delivery, entry, earlier) if delivery.qos > 0 else None
        return _Reject(delivery, entry, reason, device, record)

    def _earlier_arrivals(self, burst: list[_Delivery]) -> dict[int, tuple[str, int]]:
        """For redelivered messages (DUP): the digest and arrival time recorded when they
        were first stored, by this process (in memory) or an earlier one (the table)."""
        again = [d.mid for d in burst if d.dup and d.qos > 0]
        if not again:
            return {}
        found: dict[int, tuple[str, int]] = {}
        with self._cond:
            for mid in again:
                known = self._records.get(mid)
                if known is not None:
                    found[mid] = known
        missing = [mid for mid in again if mid not in found]
        if missing:
            try:
                found.update(recorded(self.pipeline.store.engine, self.settings.client_id,
                                      missing))
            except Exception:
                log.exception("looking up redelivered MQTT messages failed; they get a new "
                              "arrival time")
        return found

    def _submit(self, send: Callable[..., Ticket]) -> Ticket | None:
        """``send(timeout=...)`` until the pipeline takes it; None if stopping or closed."""
        while True:
            try:
                return send(timeout=SUBMIT_WAIT_S)
            except QueueFullError:
                if self._stopping.is_set():
                    return None
            except PipelineClosedError:
                log.error("the ingest pipeline is closed; MQTT messages stay unacknowledged")
                return None

    def _follow(self, ticket: Ticket | None, entries: list[Ack]) -> None:
        if ticket is None:
            with self._cond:
                self._status.stats.failed += len(entries)
            self._settle_many(entries, SKIP)
            return
        ticket.add_done_callback(partial(self._ticket_done, entries))

    def _ticket_done(self, entries: list[Ack], ticket: Ticket) -> None:
        """On the pipeline's writer thread, after COMMIT (or after the write failed)."""
        result = ticket.result
        with self._cond:
            stats = self._status.stats
            if ticket.error is None:
                stats.rejected += result.rejected
                stats.stored += result.accepted
                stats.duplicates += result.duplicate
            else:
                stats.failed += len(entries)
        if ticket.error is not None:
            log.error("%d MQTT messages not stored, left unacknowledged: %s", len(entries),
                      ticket.error)
            self._settle_many(entries, SKIP)
        else:
            self._settle_many(entries, ACK)

    def _settle_many(self, entries: list[Ack], state: int) -> None:
        with self._cond:
            for entry in entries:
                entry.state = state
            self._release()
            self._cond.notify_all()

    def _release(self) -> None:
        """Send the PUBACKs that are due, in arrival order. Called holding ``_cond``.

        paho 2.2's ``ack()`` appends to a deque and pokes its network thread through a
        socket pair, without a lock: the same path ``publish()`` takes from any thread, so
        calling it from the writer thread is safe. What is not safe is a PUBACK from one
        connection going out on the next, where the packet id may mean another message:
        every connection start and end bumps ``_generation`` and empties ``_acks`` under
        this lock, and an entry is acknowledged only on the connection that delivered it.
        An acknowledged message's delivery row is deleted with the next batch: the broker
        may give its packet id to another message from now on.
        """
        client = self._client
        if not (self._connected and not self._closed and client is not None):
            client = None
        acknowledged = False
        stats = self._status.stats
        for entry in self._acks.due(None if client is None else self._generation):
            assert client is not None
            if client.ack(entry.mid, entry.qos) == MQTTErrorCode.MQTT_ERR_SUCCESS:
                stats.acked += 1
                if entry.record:
                    self._records.pop(entry.mid, None)
                    self._unconfirmed.add(entry.mid)
                    acknowledged = True
        if acknowledged and self._confirming is None and client is not None:
            self._confirm(client)

    def _confirm(self, client: paho.Client) -> None:
        """Ask the broker for a round trip after the PUBACKs sent so far. Holding ``_cond``."""
        self._answered = None
        rc, mid = client.unsubscribe(self.settings.confirm_topic)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            return
        if self._answered == mid:  # answered already, on this thread (the fake client)
            self._forget |= self._unconfirmed
        else:
            self._confirming = (mid, self._unconfirmed)
        self._unconfirmed = set()

    def _handle_unsubscribe(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        """The broker answered the confirming UNSUBSCRIBE: it has read every PUBACK sent
        before it, so those messages will not come again and their rows can go."""
        with self._cond:
            if self._confirming is None or self._confirming[0] != mid:
                self._answered = mid
                return
            self._forget |= self._confirming[1]
            self._confirming = None
            if self._unconfirmed and self._connected and not self._closed:
                self._confirm(client)

    # -- helpers --------------------------------------------------------------------------

    def _extension_took(self, delivery: _Delivery) -> bool:
        """An extension took the message; a retained copy (never a command) only one
        that asked for retained copies on a filter matching its topic."""
        for extension in self._extensions:
            if delivery.retain and not any(
                    paho.topic_matches_sub(f, delivery.topic)
                    for f in extension.retained_subscriptions(self.settings)):
                continue
            try:
                if extension.handle(self, delivery.topic, delivery.payload):
                    with self._cond:
                        self._status.stats.ignored += 1
                    return True
            except Exception:
                log.exception("MQTT extension %s failed on %s", type(extension), delivery.topic)
        return False

    def _note_device(self, node: NodeTopic) -> None:
        key = (node.site, node.device)
        if key in self._seen:
            return
        self._seen.add(key)
        if self._on_device is not None:
            try:
                self._on_device(node.device, node.site)
            except Exception:
                log.exception("registering MQTT node %s failed", node.device)

    def _closed_now(self) -> bool:
        with self._cond:
            return self._closed

    def _set_status(self, *, connected: bool | None = None, message: str | None = None) -> None:
        with self._cond:
            changed = False
            if connected is not None and connected != self._status.connected:
                self._status.connected = connected
                changed = True
            if message is not None and message != self._status.message:
                self._status.message = message
                changed = True
                log.info("MQTT: %s", message)
            snapshot = replace(self._status, stats=replace(self._status.stats))
        if changed and self._on_status is not None:
            try:
                self._on_status(snapshot)
            except Exception:
                log.exception("MQTT status callback failed")


__all__ = [
    "IGNORED_LEAVES",
    "SOURCE",
    "FakeMqttClient",
    "MqttBridge",
    "MqttExtension",
    "MqttSettings",
    "MqttStats",
    "MqttStatus",
    "NodeTopic",
    "TopicError",
    "decode_message",
    "parse_topic",
    "reconnect_jitter_s",
]
