"""A stand-in for paho's MQTT client, without a network, shipped next to the real bridge.

:class:`FakeMqttClient` keeps a broker session in memory: tests and virtual kits hand it
to a real :class:`~firmware_bridge.mqtt.MqttBridge` (``client_class=FakeMqttClient``),
deliver messages through it and see what the bridge acknowledged and published. It is the
one fake of the MQTT transport; the real one is paho's client against a real broker.
"""

from __future__ import annotations

import threading
from typing import Any, cast

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from firmware_bridge.mqtt_settings import packet_properties as _properties


class FakeMqttClient(paho.Client):
    """paho's client without a network: a broker session in memory, for tests and
    virtual kits.

    ``loop_start()`` "connects" at once; :meth:`deliver` makes a message arrive (on the
    caller's thread, as paho's network thread would); :meth:`reconnect_now` drops the
    connection and reconnects, delivering again every QoS 1 message not yet acknowledged,
    marked DUP, as a broker keeping the session does. ``acked`` lists acknowledged packet
    ids in order; ``published`` lists ``(topic, payload, qos, retain)``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fake_lock = threading.Lock()
        self.acked: list[int] = []
        self.published: list[tuple[str, bytes, int, bool]] = []
        self.subscriptions: list[str] = []
        self.running = False
        self._unacked: dict[int, paho.MQTTMessage] = {}
        self._next_mid = 0

    def connect_async(
        self,
        host: str,
        port: int = 1883,
        keepalive: int = 60,
        bind_address: str = "",
        bind_port: int = 0,
        clean_start: paho.CleanStartOption = paho.MQTT_CLEAN_START_FIRST_ONLY,
        properties: Properties | None = None,
    ) -> None:
        self.target = (host, port)

    def loop_start(self) -> MQTTErrorCode:
        self.running = True
        self._fake_connect(session_present=False)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def loop_stop(self) -> MQTTErrorCode:
        self.running = False
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def disconnect(
        self, reasoncode: ReasonCode | None = None, properties: Properties | None = None
    ) -> MQTTErrorCode:
        self._fake_disconnect(from_server=False, reason="Normal disconnection")
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def subscribe(  # type: ignore[override]
        self,
        topic: str,
        qos: int = 0,
        options: SubscribeOptions | None = None,
        properties: Properties | None = None,
    ) -> tuple[MQTTErrorCode, int | None]:
        self.subscriptions.append(topic)
        mid = self._mid()
        on_subscribe = cast(paho.CallbackOnSubscribe_v2 | None, self.on_subscribe)
        if on_subscribe is not None:
            on_subscribe(self, None, mid, [ReasonCode(PacketTypes.SUBACK, "Granted QoS 1")],
                         _properties(PacketTypes.SUBACK))
        return MQTTErrorCode.MQTT_ERR_SUCCESS, mid

    def unsubscribe(
        self, topic: str | list[str], properties: Properties | None = None
    ) -> tuple[MQTTErrorCode, int | None]:
        """Answered at once, as a broker with nothing in between would."""
        mid = self._mid()
        on_unsubscribe = cast(paho.CallbackOnUnsubscribe_v2 | None, self.on_unsubscribe)
        if on_unsubscribe is not None:
            on_unsubscribe(self, None, mid, [ReasonCode(PacketTypes.UNSUBACK, "Success")],
                           _properties(PacketTypes.UNSUBACK))
        return MQTTErrorCode.MQTT_ERR_SUCCESS, mid

    def publish(
        self,
        topic: str,
        payload: paho.PayloadType = None,
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> paho.MQTTMessageInfo:
        if isinstance(payload, str):
            data = payload.encode()
        elif isinstance(payload, bytes | bytearray):
            data = bytes(payload)
        else:
            data = b"" if payload is None else str(payload).encode()
        with self._fake_lock:
            self.published.append((topic, data, qos, retain))
        info = paho.MQTTMessageInfo(self._mid())
        info._set_as_published()
        return info

    def ack(self, mid: int, qos: int) -> MQTTErrorCode:
        with self._fake_lock:
            self.acked.append(mid)
            self._unacked.pop(mid, None)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    # -- driving it -----------------------------------------------------------------------

    def deliver(
        self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False
    ) -> int:
        """A message arrives from the broker; returns its packet id."""
        message = paho.MQTTMessage(self._mid(), topic.encode())
        message.payload = payload.encode() if isinstance(payload, str) else payload
        message.qos = qos
        message.retain = retain
        if qos > 0:
            with self._fake_lock:
                self._unacked[message.mid] = message
        self._fake_message(message)
        return message.mid

    def reconnect_now(self) -> None:
        """Drop the connection and reconnect with the session kept: unacknowledged
        messages are delivered again, marked DUP."""
        self._fake_disconnect(from_server=False, reason="Unspecified error")
        self._fake_connect(session_present=True)
        with self._fake_lock:
            again = list(self._unacked.values())
        for message in again:
            message.dup = True
            self._fake_message(message)

    def _mid(self) -> int:
        with self._fake_lock:
            self._next_mid = self._next_mid % 65_535 + 1
            return self._next_mid

    def _fake_message(self, message: paho.MQTTMessage) -> None:
        on_message = self.on_message
        if on_message is not None:
            on_message(self, None, message)

    def _fake_connect(self, *, session_present: bool) -> None:
        if self.on_pre_connect is not None:
            self.on_pre_connect(self, None)
        on_connect = cast(paho.CallbackOnConnect_v2 | None, self.on_connect)
        if on_connect is not None:
            on_connect(self, None, paho.ConnectFlags(session_present),
                       ReasonCode(PacketTypes.CONNACK, "Success"),
                       _properties(PacketTypes.CONNACK))

    def _fake_disconnect(self, *, from_server: bool, reason: str) -> None:
        on_disconnect = cast(paho.CallbackOnDisconnect_v2 | None, self.on_disconnect)
        if on_disconnect is not None:
            on_disconnect(self, None, paho.DisconnectFlags(from_server),
                          ReasonCode(PacketTypes.DISCONNECT, reason),
                          _properties(PacketTypes.DISCONNECT))


__all__ = ["FakeMqttClient"]
