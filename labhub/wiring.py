"""The hub: opens the database, the ingest pipeline and the hardware, and joins them.

Domains never import each other or the app shell; this is where they meet. The device
supervisor (``firmware_bridge``) feeds the ingest pipeline (``sensors``), and the
pipeline takes each device's channel map and calibrations from the device registry's
settings (``registry.RegistryChannelMaps``, built once here), so they apply to every
source alike and neither package needs to know how the other is built.

With MQTT on, the hub also listens to the pipeline: the readings of its serial and
Firmata kits, once committed, go out as ``state`` messages through the on-disk outbox
(MQTT nodes' own readings are not echoed, nor HTTP uploads or imports), with Home
Assistant discovery configs when enabled; commands on ``cmd`` and RPC topics go to the
supervisor, the path the API takes; and nodes silent too long are marked offline.

Routes, pages and CLI commands use the hub through its methods (``command``,
``outputs``, ``reconfigure``, ``import_file``, ``health``), never through the
supervisor's internals; ``labhub serve``, ``labhub demo`` and ``labhub import`` all build
this one ``Hub``. Which device a command may reach, and from which site, is the hardware
side's rule (``Supervisor.command``, ``registry.command_target``), not the hub's.

Device and series sites must be sites of the inventory's tree: the registry is given
``site_of_the_lab`` for a device's site, and the pipeline ``SiteCodes.known`` for the site
an upload, an MQTT topic or an import names (what it refuses waits as a dead letter, and
``replay_rejects`` stores it once the site exists).

A board with a USB serial number that comes online marks the inventory asset with that
serial number as sighted at the hub's site (``record_sighting``), through the
supervisor's ``on_online`` callback: hardware and inventory never import each other.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from firmware_bridge import registry
from firmware_bridge.actuators import CommandName, PinCommand
from firmware_bridge.errors import DeviceUnavailableError
from firmware_bridge.firmata import SOURCE as FIRMATA_SOURCE
from firmware_bridge.ha_discovery import Entity, HaDiscovery
from firmware_bridge.mqtt import MqttBridge, MqttExtension
from firmware_bridge.mqtt_commands import MqttCommands
from firmware_bridge.mqtt_out import Reading, sample_sets, state_payload
from firmware_bridge.node_watch import NodeWatch
from firmware_bridge.outbox import OUTBOX_FILE, Outbox
from firmware_bridge.outbox import status_dict as outbox_status_dict
from firmware_bridge.registry import NO_SITE, DeviceSettings
from firmware_bridge.serial_lines import SOURCE as SERIAL_SOURCE
from firmware_bridge.supervisor import Commanded, Supervisor
from inventory import assets as inventory_assets
from inventory import sites as inventory_sites
from inventory.errors import InventoryError
from labhub import __version__, db, replay
from labhub.access import trail
from labhub.disk import DiskGuard
from labhub.live_feed import LiveFeed
from labhub.network.client import SyncLoop
from labhub.scheduler.service import Scheduler
from labhub.settings import Settings
from labtext import printable
from sensors import storage as reading_storage
from sensors.importer import ImportSummary
from sensors.importer import import_file as import_readings
from sensors.pipeline import IngestPipeline, StoredReading
from sensors.samples import now_us
from sensors.storage import ReadingStore

log = logging.getLogger(__name__)

KIT_SOURCES = frozenset({SERIAL_SOURCE, FIRMATA_SOURCE})  # readings the hub itself takes
CLOSE_FLUSH_S = 10.0  # closing waits this long for the kits' last readings to commit


@dataclass(frozen=True, slots=True)
class Kit:
    """A virtual kit to attach: its port, settings, and its own id and name."""

    url: str
    settings: DeviceSettings
    device_id: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class SiteMove:
    """A device moved from one site to another, taking its series along."""

    before: str | None
    after: str | None
    series: int  # series that moved with it
    at: int  # when, in µs


@dataclass(frozen=True, slots=True)
class Reconfigured:
    """A device after a change, and the site move the change made (or None)."""

    device: registry.Device
    moved: SiteMove | None


MAX_PORT_CHARS = 500  # the registry's port column


def site_of_the_lab(conn: Connection, code: str) -> bool:
    """Whether ``code`` is a site of the inventory's tree: the check the device registry
    is given (it does not know the inventory)."""
    return inventory_sites.find_site(conn=conn, code=code) is not None


# A site found in the inventory is trusted this long without asking the database again: a
# site deleted (made in error) stops taking readings within a minute. A site not found is
# asked every time, so one created a moment ago takes readings at once.
SITE_KNOWN_TTL_S = 60.0
MAX_KNOWN_SITES = 10_000  # a network's sites are a few hundred; past this, start over


class SiteCodes:
    """Whether a site code is a site of the inventory's tree, for readings that name one
    (HTTP uploads, MQTT topics, imports): the check the ingest pipeline is given.

    Sites are few and rarely change, and every upload and MQTT burst asks, so the codes
    found are kept for :data:`SITE_KNOWN_TTL_S`. A code not found is not kept: the next
    reading naming it asks the database again, so a site created through the API, the
    CSV import or another process is accepted on the very next upload, with no event to
    miss. Thread-safe (uploads' worker threads and the MQTT worker ask at once).
    """

    def __init__(self, engine: Engine, *, ttl_s: float = SITE_KNOWN_TTL_S) -> None:
        self.engine = engine
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._found: dict[str, float] = {}  # code -> monotonic time it was found

    def known(self, code: str) -> bool:
        """True if ``code`` is a site of the inventory's tree."""
        now = time.monotonic()
        with self._lock:
            found = self._found.get(code)
        if found is not None and now - found < self.ttl_s:
            return True
        with self.engine.connect() as conn:
            there = site_of_the_lab(conn, code)
        with self._lock:
            if there:
                if len(self._found) >= MAX_KNOWN_SITES:
                    self._found.clear()
                self._found[code] = now
            else:
                self._found.pop(code, None)
        return there

    def forget(self) -> None:
        """Ask the database again for every code (a site was deleted)."""
        with self._lock:
            self._found.clear()


def site_subtree(conn: Connection, site: str) -> list[str]:
    """``site`` and the codes of all the sites under it (the inventory's lists take a
    subtree the same way)."""
    codes = [s.code for s in inventory_sites.list_sites(conn=conn, under=site)]
    return codes if site in codes else [site, *codes]


def _probe_matters(before: DeviceSettings, after: DeviceSettings) -> bool:
    """Whether a change of settings must identify an ``auto`` board again: its protocol or
    a baud rate changed (what the probe and the readers open the port with)."""
    return (before.protocol, before.baudrate, before.firmata.baudrate) != (
        after.protocol, after.baudrate, after.firmata.baudrate)


class SchemaOutdatedError(RuntimeError):
    """The database's schema is older than this LabHub expects."""


class CentralNeedsPostgresError(RuntimeError):
    """``role = "central"`` on a database that is not PostgreSQL."""


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
        self.outbox: Outbox | None = None
        self.discovery: HaDiscovery | None = None
        self.commands: MqttCommands | None = None
        self.nodes: NodeWatch | None = None
        self.network: SyncLoop | None = None  # a serving hub's contacts with its central
        self.scheduler: Scheduler | None = None  # the routine jobs (docs/operations.md)
        self.disk = DiskGuard(settings)  # free space, checked by a job
        self.sites = SiteCodes(self.engine)
        self.pipeline = IngestPipeline(
            # A central's own ingest keeps no journal: it sends nothing up.
            ReadingStore(self.engine, journal=settings.role != "central"),
            batch_size=settings.ingest_batch_size,
            flush_interval_s=settings.ingest_flush_ms / 1000,
            max_queued=settings.ingest_queue_max,
            future_tolerance_s=settings.future_tolerance_s,
            channel_maps=registry.RegistryChannelMaps(self.engine),
            site_known=self.sites.known,
            keep_dead_letter_bodies=self.disk.keep_bodies,  # False while the disk is low
        )
        # The Live pages' feed: every committed reading, and devices' states.
        self.live = LiveFeed(self.engine)
        self.pipeline.add_listener(self.live.readings_committed)

    def migrate(self) -> None:
        """Upgrade an embedded database; refuse to run on an outdated PostgreSQL schema."""
        if self.engine.dialect.name == "sqlite":
            self._backup_before_upgrade()
            db.upgrade(self.engine)
        elif db.current_revision(self.engine) != db.head_revision(self.engine):
            raise SchemaOutdatedError(
                "the PostgreSQL schema is not up to date: run `labhub db upgrade` first"
            )

    def _backup_before_upgrade(self) -> None:
        """An SQLite database with a schema older than this LabHub's is copied into the
        backup folder before the hub migrates it (as ``labhub db upgrade`` does): an
        upgrade that goes wrong can be undone with ``labhub restore``. A copy that cannot
        be made stops the start (SchemaOutdatedError says why): nothing is migrated
        without one."""
        from labhub import backup

        settings = self.settings
        try:
            made = backup.backup_before_upgrade(
                self.engine, settings.resolved_backup_dir(),
                make_folder=settings.backup_dir is None, keep_free_mb=settings.disk_min_free_mb)
        except (backup.BackupError, OSError) as exc:
            raise SchemaOutdatedError(
                f"the database's schema ({db.current_revision(self.engine)}) is older than "
                f"this LabHub's and could not be copied before its upgrade: {exc}. Make room "
                "or plug in the backup stick and start again, or run `labhub db upgrade "
                "--no-backup` to upgrade without a copy") from exc
        if made is not None:
            log.info("the database (schema %s) was copied to %s before its upgrade",
                     made.revision, made.path)

    def start(self, *, hardware: bool = True, jobs: bool | None = None) -> Hub:
        """Migrate, start the pipeline, then (unless ``hardware`` is False, as for
        ``labhub import``) the serial ports and MQTT the settings name. ``jobs`` (by default
        as ``hardware``): the scheduler too, where ``jobs_enabled`` allows (each worker of
        ``labhub serve --workers N`` starts one; they run each job once between them)."""
        self.migrate()
        if self.settings.role == "central":
            self._start_central()
        self.pipeline.start()
        self.live.start()
        s = self.settings
        if s.site is not None and not self.sites.known(s.site):
            log.warning("this hub's site %r is not a site of its inventory: readings that "
                        "name it (MQTT topics, uploads) are kept as dead letters until it "
                        "is added (POST /api/v1/sites), then `labhub rejects replay`", s.site)
        if (hardware if jobs is None else jobs) and s.jobs_enabled:
            self.scheduler = Scheduler(self).start()
        if not hardware:
            return self
        if s.role == "hub":  # it makes contacts once `labhub network join` has run
            self.network = SyncLoop(self.engine, s).start()
        if s.serial_scan or s.serial_ports or s.firmata_ports:
            self._start_supervisor()
        if s.mqtt is not None:
            self._start_mqtt()
        return self

    def _start_central(self) -> None:
        """The network's central runs on PostgreSQL only, and marks its database as a
        central's (the hub-side outbox triggers then write nothing): docs/network.md."""
        if self.engine.dialect.name != "postgresql":
            raise CentralNeedsPostgresError(
                "role = \"central\" needs PostgreSQL (setting database_url = "
                "\"postgresql://...\"): a central takes every lab's readings and many "
                "hubs at once, which SQLite cannot (docs/network.md, Operating a central)")
        from labhub.network.central import ensure_central

        with self.engine.begin() as conn:
            ensure_central(conn)

    def _start_supervisor(self) -> Supervisor:
        """The hub's one supervisor, with every port setting (built once, by whichever
        comes first: ``start`` or ``attach``)."""
        if self.supervisor is None:
            s = self.settings
            self.supervisor = Supervisor(
                engine=self.engine, pipeline=self.pipeline, configured_ports=s.serial_ports,
                firmata_ports=s.firmata_ports, scan_usb=s.serial_scan, site=s.site,
                default_baudrate=s.serial_baudrate, default_protocol=s.serial_protocol,
                comports=self._comports, on_online=self._board_online,
            ).start()
        return self.supervisor

    # -- what routes, pages and commands use --------------------------------------------

    def _supervisor_for(self, device_id: str) -> Supervisor:
        """The supervisor that drives ``device_id``'s board: NoSuchDeviceError for a device
        the registry does not know, DeviceUnavailableError on a hub without serial ports."""
        if self.supervisor is None:
            with self.engine.connect() as conn:
                registry.get_device(conn=conn, device_id=device_id)  # NoSuchDeviceError
            raise DeviceUnavailableError("this hub does not watch serial ports")
        return self.supervisor

    def command(
        self, device_id: str, command: CommandName, pin: int | None = None,
        value: float | None = None, *, site: str | None = None,
    ) -> Commanded:
        """Drive a kit's outputs (see ``Supervisor.command`` for the rules and errors)."""
        return self._supervisor_for(device_id).command(device_id, command, pin, value,
                                                       site=site)

    def outputs(self, device_id: str) -> dict[int, float]:
        """Each output's last commanded value on a connected Firmata board."""
        return self._supervisor_for(device_id).outputs(device_id)

    def sample(self, device_id: str, timeout: float | None = None) -> dict[str, float]:
        """One slow sample of a Firmata board with ``sample_every_s`` (see
        ``Supervisor.sample``): its values by channel, stored like any reading."""
        supervisor = self._supervisor_for(device_id)
        if timeout is None:
            return supervisor.sample(device_id)
        return supervisor.sample(device_id, timeout)

    def reconfigure(
        self, device_id: str, *, name: str | None = None, site: str | None = None,
        settings: dict[str, Any] | None = None, clear_site: bool = False,
    ) -> Reconfigured:
        """Rename a device, place it at a site of the lab's tree (``clear_site``: at none),
        or change some of its settings (merged into the current ones); its board is
        reopened with them. A device moved to another site takes its series along: they
        are listed at the new site from then on, and the answer and the log say so.
        NoSuchDeviceError, or RegistryError naming what is not valid (a site that is not
        one of the inventory's)."""
        with self.engine.begin() as conn:
            current = registry.get_device(conn=conn, device_id=device_id)
            merged = None
            if settings is not None:
                merged = registry.parse_settings({**current.settings.model_dump(), **settings})
            device = registry.configure(conn=conn, device_id=device_id, name=name, site=site,
                                        settings=merged, clear_site=clear_site,
                                        site_known=site_of_the_lab)
            moved: SiteMove | None = None
            if device.site != current.site:
                count = reading_storage.set_device_site(conn=conn, device=device_id,
                                                        site=device.site)
                moved = SiteMove(current.site, device.site, count, now_us())
        if moved is not None:
            log.info("device %s moved from site %s to %s; its %d series with it",
                     device_id, moved.before or "(none)", moved.after or "(none)",
                     moved.series)
        # Committed: the reopened reader reads the new settings back. A board identified
        # by a probe is asked again only when what the probe depends on changed.
        reprobe = merged is not None and _probe_matters(current.settings, merged)
        if self.supervisor is not None:
            self.supervisor.reconfigure(device_id, reprobe=reprobe)
        else:
            self.pipeline.forget(device_id)
        return Reconfigured(device, moved)

    def serial_ports(self) -> list[str]:
        """The ports read because the settings name them, as they are now."""
        if self.supervisor is None:
            return list(self.settings.serial_ports)
        return self.supervisor.serial_ports()

    def set_serial_ports(self, urls: Iterable[str]) -> list[str]:
        """Read these ports from the supervisor's next scan on, instead of the ones so far
        (no restart). Kept until the hub stops: ``serial_ports`` in labhub.toml is what
        it starts with."""
        wanted = [u.strip() for u in urls]
        for url in wanted:
            if not url or len(url) > MAX_PORT_CHARS or printable.unprintable_in(url):
                raise registry.RegistryError(
                    f"port {url[:60]!r} is not a port: give a device path "
                    "(/dev/ttyUSB0, COM3), socket://host:port or rfc2217://host:port")
        supervisor = self._start_supervisor()
        return supervisor.set_serial_ports(wanted)

    def site_codes(self, conn: Connection, site: str) -> list[str]:
        """``site`` and every site under it in the lab's tree (a site the tree does not
        know stands for itself: series stored before readings were refused for naming
        one may still be there)."""
        return site_subtree(conn, site)

    def import_file(
        self, path: Path, *, device: str, fmt: str = "auto", site: str | None = None,
        start: int | None = None, interval_s: float | None = None,
        progress: Callable[[int], object] | None = None, zone: tzinfo | None = None,
    ) -> ImportSummary:
        """Import readings logged offline (an SD card's file) through the hub's pipeline;
        ``zone`` is the zone of times the file writes without one. UnknownSiteError for a
        ``site`` that is not one of the inventory's (nothing imported: the file stays)."""
        self.pipeline.check_site(site, where="the --site option")
        return import_readings(path, pipeline=self.pipeline, device=device, fmt=fmt,
                               site=site, start=start, interval_s=interval_s,
                               progress=progress, zone=zone)

    def replay_rejects(
        self, *, source: str | None = None, site: str | None = None,
    ) -> replay.Replayed:
        """Store the readings refused for naming a site the inventory did not have, now
        that it may (see ``labhub.replay``); those whose site is still unknown stay."""
        m = self.settings.mqtt
        return replay.replay(self.pipeline, source=source, site=site,
                             influx_precision="ns" if m is None else m.influx_precision)

    def health(self) -> dict[str, Any]:
        """The hub's version, database and ingest state; with MQTT on, whether the broker
        is connected (and why not) and the outbox: messages queued, dropped, delivered."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            database = "ok"
        except Exception as exc:  # the health answer reports, it does not fail
            database = f"error: {type(exc).__name__}"
        answer: dict[str, Any] = {
            "status": "ok" if database == "ok" else "degraded",
            "version": __version__,
            "database": database,
            "dialect": self.engine.dialect.name,
            "queued": self.pipeline.counters()["queued"],
        }
        if self.mqtt is not None:
            mqtt = self.mqtt.status
            answer["mqtt"] = {
                "connected": mqtt.connected, "message": mqtt.message,
                "outbox": None if mqtt.outbox is None else outbox_status_dict(mqtt.outbox),
            }
        disk = self.disk.status()
        if disk is not None:
            answer["disk"] = disk
        return answer

    def _start_mqtt(self) -> None:
        m = self.settings.mqtt
        assert m is not None
        extensions: list[MqttExtension] = []
        self.nodes = NodeWatch(m, self._node_changed)
        extensions.append(self.nodes)
        if m.commands:
            self.commands = MqttCommands(self._run_command)
            extensions.append(self.commands)
        if m.ha_discovery:
            self.discovery = HaDiscovery(m, self._device_name)
            extensions.append(self.discovery)
        self.outbox = Outbox(self.settings.data_dir / OUTBOX_FILE, max_rows=m.outbox_max_rows,
                             max_bytes=m.outbox_max_bytes)
        self.mqtt = MqttBridge(m, self.pipeline, on_device=self._node_seen, outbox=self.outbox,
                               extensions=extensions).start()
        with self.engine.connect() as conn:
            for node in registry.list_devices(conn=conn, kind="mqtt", online=True):
                self.nodes.expect(node.site or NO_SITE, node.id)
        self.nodes.start()
        if m.publish_state:
            self.pipeline.add_listener(self._readings_taken, sources=KIT_SOURCES)

    def _readings_taken(self, source: str, site: str | None,
                        readings: list[StoredReading]) -> None:
        """The pipeline committed readings (its writer thread): a kit's go out as state
        messages, one per sample set."""
        bridge = self.mqtt
        if bridge is None or source not in KIT_SOURCES:
            return
        by_device: dict[str, list[Reading]] = defaultdict(list)
        for device, channel, value, ts, unit, quantity in readings:
            by_device[device].append(Reading(channel, value, ts, unit, quantity))
        where = site or self.settings.site or NO_SITE
        for device, taken in by_device.items():
            try:
                for sample_set in sample_sets(taken):
                    if self.discovery is not None:
                        for r in sample_set:
                            self.discovery.note(bridge, Entity(where, device, r.channel,
                                                               r.unit, r.quantity))
                    bridge.publish_state(where, device, state_payload(sample_set))
            except (ValueError, RuntimeError) as exc:
                log.warning("readings of %s not published over MQTT: %s", device, exc)

    def _device_name(self, device_id: str) -> str:
        with self.engine.connect() as conn:
            found = registry.find_device(conn=conn, device_id=device_id)
        return device_id if found is None else found.name

    def _run_command(self, site: str, device_id: str, command: CommandName,
                     pin: int | None, value: float | None) -> list[PinCommand]:
        """A command over MQTT: the API's path, addressed to the site the topic names, and
        written to the audit log (actor ``mqtt``: the broker knows the client, not the hub)."""
        keep = self.settings.audit_log_days
        try:
            writes = self.command(device_id, command, pin, value, site=site).writes
        except Exception as exc:
            self._audit_command(device_id, site, command, pin, value, "failed",
                                str(exc) or type(exc).__name__, keep)
            raise
        self._audit_command(device_id, site, command, pin, value, "ok", None, keep)
        return writes

    def _audit_command(self, device_id: str, site: str, command: CommandName,
                       pin: int | None, value: float | None, outcome: str,
                       error: str | None, keep_days: int) -> None:
        """The audit entry of an MQTT command; a database that cannot take it is logged
        and does not change the command's answer."""
        try:
            trail.record_mqtt_command(self.engine, device_id=device_id, site=site,
                                      command=command, pin=pin, value=value,
                                      outcome=outcome, error=error, keep_days=keep_days)
        except SQLAlchemyError as exc:
            log.warning("the MQTT command to %s could not be written to the audit log: %s",
                        device_id, exc)

    def _registered_site(self, site: str | None) -> str | None:
        """The site a node's topic names, if it is a site of the inventory's tree: a
        device is placed only at a real site (else at none, as a new node would be)."""
        return site if site is not None and self.sites.known(site) else None

    def _node_changed(self, device_id: str, site: str, online: bool, why: str) -> None:
        """A node went silent, said offline, or came back: the registry says so (and
        the live feed)."""
        self.live.status_changed(device_id, self._registered_site(site), online)
        try:
            with self.engine.begin() as conn:
                if registry.find_device(conn=conn, device_id=device_id) is None:
                    registry.record_seen(conn=conn, device_id=device_id, kind="mqtt",
                                         site=self._registered_site(site), status=why)
                registry.update_status(conn=conn, device_id=device_id, online=online,
                                       status=why)
        except Exception:
            log.exception("recording MQTT node %s failed", device_id)

    def _node_seen(self, device_id: str, site: str | None) -> None:
        """A node published for the first time since the hub started: register it (at the
        site its topic names when that is a site of the inventory, else at none)."""
        try:
            at = self._registered_site(site)
            with self.engine.begin() as conn:
                registry.record_seen(conn=conn, device_id=device_id, kind="mqtt", site=at,
                                     status="publishing over MQTT")
        except Exception:
            log.exception("registering MQTT node %s failed", device_id)

    def _board_online(self, device: registry.Device) -> None:
        """A board came online: its asset (same serial number) was seen at the hub's site."""
        self.live.status_changed(device.id, device.site, True)
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

    def attach(
        self, url: str, device_settings: DeviceSettings, *, device_id: str | None = None,
        name: str | None = None,
    ) -> None:
        """Read one more port, with the settings of the device on it (a virtual kit);
        ``device_id`` and ``name``: the kit's own, the same whatever pty it gets."""
        self._start_supervisor().add_port(url, defaults=device_settings, device_id=device_id,
                                          name=name)

    def close(self) -> None:
        """Stop the hardware first (no new readings), then MQTT (its messages in become
        durable, its messages out reach the outbox file), then drain the pipeline."""
        if self.scheduler is not None:  # a job under way stops at its next chunk
            self.scheduler.close()
        if self.network is not None:  # a contact under way is cut; it resumes next time
            self.network.close()
        self.live.close()  # the Live pages' streams end
        if self.nodes is not None:
            self.nodes.stop()
        if self.supervisor is not None:
            self.supervisor.stop()
        if self.mqtt is not None:
            try:  # the kits' last readings committed, so their state messages are queued
                self.pipeline.flush(CLOSE_FLUSH_S)
            except Exception as exc:
                log.warning("last readings not flushed before MQTT stopped: %s", exc)
            self.mqtt.stop()
        self.pipeline.close()
        if self.outbox is not None:
            self.outbox.close()
        self.engine.dispose()
