"""The hub: opens the database, the ingest pipeline and the hardware, and joins them.

Domains never import each other or the app shell; this is where they meet. The device
supervisor (``firmware_bridge``) feeds the ingest pipeline (``sensors``), and the
pipeline asks the supervisor's device settings which quantity a channel is, through a
plain function, so neither needs to know how the other is built. A board with a USB
serial number that comes online marks the inventory asset with that serial number as
sighted at the hub's site (``record_sighting``), through the supervisor's ``on_online``
callback: hardware and inventory never import each other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Engine

from firmware_bridge import registry
from firmware_bridge.mqtt import MqttBridge
from firmware_bridge.registry import DeviceSettings
from firmware_bridge.supervisor import Supervisor
from inventory import assets as inventory_assets
from inventory.errors import InventoryError
from labhub import db
from labhub.settings import Settings
from sensors.pipeline import IngestPipeline
from sensors.quantities import ChannelSpec, resolve_channel
from sensors.storage import ReadingStore

log = logging.getLogger(__name__)


class SchemaOutdatedError(RuntimeError):
    """The database's schema is older than this LabHub expects."""


class Hub:
    """Everything a running hub holds open; ``start()`` then ``close()``."""

    def __init__(
        self, settings: Settings, *, engine: Engine | None = None,
        comports: Callable[[], Iterable[Any]] | None = None,
    ) -> None:
        """``comports`` lists the USB serial ports (pyserial's by default; a test's own)."""
        self.settings = settings
        self._comports = comports
        self.engine = engine or db.make_engine(settings.resolved_database_url())
        self.supervisor: Supervisor | None = None
        self.mqtt: MqttBridge | None = None
        self.pipeline = IngestPipeline(
            ReadingStore(self.engine),
            batch_size=settings.ingest_batch_size,
            flush_interval_s=settings.ingest_flush_ms / 1000,
            max_queued=settings.ingest_queue_max,
            future_tolerance_s=settings.future_tolerance_s,
            channel_resolver=self._resolve,
        )

    def _resolve(self, device: str, channel: str, unit: str | None) -> ChannelSpec:
        if self.supervisor is not None:
            return self.supervisor.resolve(device, channel, unit)
        return resolve_channel(channel, unit)

    def migrate(self) -> None:
        """Upgrade an embedded database; refuse to run on an outdated PostgreSQL schema."""
        if self.engine.dialect.name == "sqlite":
            db.upgrade(self.engine)
        elif db.current_revision(self.engine) != db.head_revision(self.engine):
            raise SchemaOutdatedError(
                "the PostgreSQL schema is not up to date: run `labhub db upgrade` first"
            )

    def start(self) -> Hub:
        """Migrate, start the pipeline, then the hardware."""
        self.migrate()
        self.pipeline.start()
        s = self.settings
        if s.serial_scan or s.serial_ports or s.firmata_ports:
            self.supervisor = Supervisor(
                engine=self.engine, pipeline=self.pipeline, configured_ports=s.serial_ports,
                firmata_ports=s.firmata_ports, scan_usb=s.serial_scan, site=s.site,
                default_baudrate=s.serial_baudrate, comports=self._comports,
                on_online=self._board_online,
            ).start()
        if s.mqtt is not None:
            self.mqtt = MqttBridge(s.mqtt, self.pipeline, on_device=self._node_seen).start()
        return self

    def _node_seen(self, device_id: str, site: str | None) -> None:
        """A node published for the first time since the hub started: register it."""
        try:
            with self.engine.begin() as conn:
                registry.record_seen(conn=conn, device_id=device_id, kind="mqtt", site=site,
                                     status="publishing over MQTT")
        except Exception:
            log.exception("registering MQTT node %s failed", device_id)

    def _board_online(self, device: registry.Device) -> None:
        """A board came online: its asset (same serial number) was seen at the hub's site."""
        site = self.settings.site
        if device.serial_number is None or site is None:
            return
        try:
            with self.engine.begin() as conn:
                inventory_assets.record_sighting(
                    conn=conn, serial_number=device.serial_number, site_code=site,
                    seen_at=device.last_seen, source=device.id,
                )
        except InventoryError as exc:
            log.warning("sighting of board %s at site %s not recorded: %s", device.id, site, exc)
        except Exception:
            log.exception("recording the sighting of board %s failed", device.id)

    def attach(self, url: str, device_settings: DeviceSettings) -> None:
        """Read one more port, with the settings of the device on it (a virtual kit)."""
        if self.supervisor is None:
            self.supervisor = Supervisor(
                engine=self.engine, pipeline=self.pipeline, scan_usb=False,
                site=self.settings.site, default_baudrate=self.settings.serial_baudrate,
                on_online=self._board_online,
            ).start()
        self.supervisor.add_port(url, defaults=device_settings)

    def close(self) -> None:
        """Stop the hardware first (no new readings), then drain the pipeline."""
        if self.mqtt is not None:
            self.mqtt.stop()
        if self.supervisor is not None:
            self.supervisor.stop()
        self.pipeline.close()
        self.engine.dispose()
