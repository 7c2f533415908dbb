"""How the hub reaches its MQTT broker: the ``[mqtt]`` settings and what follows from them.

:class:`MqttSettings` holds the broker's address, the credentials, TLS, the protocol
version, the session and window sizes and the topic prefix, with the checks that make a
bad value fail at start-up rather than at the first message (and, inherited from
:class:`~firmware_bridge.mqtt_out.MqttOutSettings`, what the hub publishes). The topics
the hub itself uses (its status, its subscription filter) are derived here, so that the
bridge and its extensions name them the same way.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal

from paho.mqtt.properties import Properties
from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from firmware_bridge.mqtt_out import MqttOutSettings
from firmware_bridge.mqtt_topics import TOPIC_FORBIDDEN

SESSION_EXPIRY_S = 7 * 24 * 3600  # a hub switched off over a week-long school break keeps its queue
RECEIVE_MAXIMUM = 2000  # messages waiting for their commit; throughput <= this / commit delay


def packet_properties(packet_type: int) -> Properties:
    """MQTT 5 properties for a packet (paho's constructor carries no type hints)."""
    return Properties(packet_type)  # type: ignore[no-untyped-call]


def _default_client_id() -> str:
    return f"labhub-{socket.gethostname()}"


class MqttSettings(MqttOutSettings):
    """How the hub reaches its broker, and where nodes publish (and, inherited, what the
    hub publishes: ``firmware_bridge.mqtt_out``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(default="127.0.0.1", min_length=1, description="the broker's host name")
    port: int = Field(default=1883, ge=1, le=65_535, description="1883, or 8883 with TLS")
    client_id: str = Field(
        default_factory=_default_client_id, min_length=1, max_length=200,
        description="the hub's client id; the broker keeps the session under it, so two "
                    "hubs must never share one")
    username: str | None = Field(default=None, description="MQTT user name, if the broker asks")
    password: SecretStr | None = Field(default=None, description="MQTT password")
    tls: bool = Field(default=False, description="TLS with the system's certificate authorities")
    tls_ca_file: Path | None = Field(default=None, description="a CA file (implies TLS)")
    tls_cert_file: Path | None = Field(default=None, description="client certificate (PEM)")
    tls_key_file: Path | None = Field(default=None, description="client key (PEM)")
    keepalive_s: int = Field(default=60, ge=5, le=65_535,
                             description="seconds between pings on an idle connection")
    protocol: Literal["5", "3.1.1"] = Field(
        default="5",
        description="MQTT protocol version; 3.1.1 costs paho a third less CPU per message "
                    "but gets the hub's own state and status back, and leaves the in-flight "
                    "window and the session's lifetime to the broker (docs/mqtt.md)")
    topic_prefix: str = Field(default="labhub", min_length=1, max_length=100,
                              description="nodes publish to <prefix>/<site>/<device>/...")
    session_expiry_s: int = Field(
        default=SESSION_EXPIRY_S, ge=0, le=0xFFFF_FFFE,
        description="how long the broker keeps the hub's queue while it is away (MQTT 5; "
                    "for 3.1.1 the broker's persistent_client_expiration decides)")
    receive_maximum: int = Field(
        default=RECEIVE_MAXIMUM, ge=1, le=65_535,
        description="messages the broker may send before their acknowledgements (MQTT 5)")
    reconnect_min_s: int = Field(default=1, ge=1, description="first wait before reconnecting")
    reconnect_max_s: int = Field(default=60, ge=1, description="longest wait between attempts")
    influx_precision: Literal["ns", "us", "ms", "s"] = Field(
        default="ns", description="unit of the timestamps in Influx lines")
    share_group: str | None = Field(
        default=None, min_length=1, max_length=100,
        description="central ingest: hubs with the same group share one subscription "
                    "($share/<group>/...), each message goes to one of them (MQTT 5, and "
                    "3.1.1 on Mosquitto 2, EMQX, HiveMQ and VerneMQ)")

    @field_validator("client_id")
    @classmethod
    def _plain_client_id(cls, value: str) -> str:
        if TOPIC_FORBIDDEN.search(value):
            raise ValueError("a client id cannot contain /, +, # or NUL (it is part of a topic)")
        return value

    @field_validator("share_group")
    @classmethod
    def _plain_group(cls, value: str | None) -> str | None:
        if value is not None and TOPIC_FORBIDDEN.search(value):
            raise ValueError("a share group cannot contain /, +, # or NUL (it is a topic level)")
        return value

    @field_validator("topic_prefix")
    @classmethod
    def _plain_prefix(cls, value: str) -> str:
        if value.startswith("/") or value.endswith("/") or "//" in value:
            raise ValueError("a topic prefix has no leading, trailing or double /")
        if any(char in value for char in "+#\x00"):
            raise ValueError("a topic prefix cannot contain + or # (wildcards) or NUL")
        return value

    @model_validator(mode="after")
    def _check(self) -> MqttSettings:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must not be shorter than reconnect_min_s")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("a client certificate needs its key, and a key its certificate")
        return self

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.tls_ca_file is not None or self.tls_cert_file is not None

    @property
    def status_topic(self) -> str:
        """Where the hub's retained ``online``/``offline`` lives."""
        return f"{self.topic_prefix}/hub/{self.client_id}/status"

    @property
    def confirm_topic(self) -> str:
        """A filter the hub never subscribes to: unsubscribing from it is a round trip that
        tells the hub the broker has read its PUBACKs."""
        return f"{self.topic_prefix}/hub/{self.client_id}/confirm"

    @property
    def subscription(self) -> str:
        """The one filter the hub subscribes to.

        One filter, not one per leaf: with overlapping filters (``.../telemetry`` and
        ``.../+``) Mosquitto 2 delivers a message once per match to MQTT 5 clients. With a
        ``share_group``, the shared subscription ``$share/<group>/<prefix>/+/+/+``.
        """
        topics = f"{self.topic_prefix}/+/+/+"
        return topics if self.share_group is None else f"$share/{self.share_group}/{topics}"



__all__ = ["RECEIVE_MAXIMUM", "SESSION_EXPIRY_S", "MqttSettings", "packet_properties"]
