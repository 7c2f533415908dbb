"""The supervisor: watches the ports, starts a reader for each board, keeps the registry.

Every ``scan_interval_s`` it lists the ports (recognised USB boards plus the configured
ones), starts a reader for each board that has none, and stops the reader of a board whose
port is gone. The reader is a :class:`~firmware_bridge.serial_lines.LineReader` for a
sketch, a :class:`~firmware_bridge.firmata.FirmataReader` for a StandardFirmata board, and
for a board whose ``protocol`` is ``auto`` first a :class:`~firmware_bridge.probe.Prober`,
which the next scan after it has decided replaces with the reader of the right kind. Readers
report their status from their own threads; the supervisor writes statuses and counters to
the device registry from its thread, so the database sees one writer of device state. A
board that comes back on another port keeps its id, and so its name, site and settings. Two
boards that claim the same USB serial number (cheap clones do) are told apart by port, and
both say so in their status. ``on_online`` is called with the registry's record each time a
board is adopted (plugged in or back), after it is committed: the app shell uses it to
record sightings of the board's asset, without this package knowing of inventory.

Commands go through :meth:`Supervisor.command`, the one way the API, MQTT and the CLI
drive a kit. A board whose settings changed is reopened: its old reader is stopped (and
the port closed) before the scan adopts it again with the new settings, so two readers
never share a port. A command that arrives while a board is being opened, reopened or
identified waits for it, at most ``command_wait_s``; if the board is not ready by then the
command is refused with :class:`~firmware_bridge.errors.DeviceReopeningError`, which says
when to try again. A command addressed to a site (MQTT topics name one) is checked
against the registry first (:func:`~firmware_bridge.registry.command_target`).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from firmware_bridge import discovery, registry
from firmware_bridge.actuators import CommandName, PinCommand
from firmware_bridge.errors import DeviceReopeningError, DeviceUnavailableError
from firmware_bridge.firmata import (
    SAMPLE_WAIT_S,
    BoardFactory,
    FirmataError,
    FirmataReader,
    open_board,
)
from firmware_bridge.port_reader import ReaderStatus
from firmware_bridge.probe import Kind, Prober, ProbeResult
from firmware_bridge.registry import DeviceProtocol, DeviceSettings
from firmware_bridge.serial_lines import LineReader
from firmware_bridge.serial_poller import LinePoller
from firmware_bridge.serial_transport import LineTransport, SerialTransport
from sensors import storage
from sensors.pipeline import IngestPipeline

log = logging.getLogger(__name__)

SCAN_INTERVAL_S = 0.5  # a board pulled out is marked offline within two scans
# A command waits this long for a board being opened or reopened: a Firmata board
# answers within its reset wait (0.3-2 s by its settings) once its port is open.
COMMAND_WAIT_S = 5.0
RETRY_AFTER_S = 2.0  # told to a command that waited in vain: most reopens take less
FLUSH_WAIT_S = 10.0  # a board found back on a new path: its new readings stored first
WAIT_POLL_S = 0.05  # a waiting command looks again at least this often (s)


Reader = LineReader | FirmataReader | Prober


@dataclass(slots=True)
class _Watched:
    reader: Reader
    url: str
    status: ReaderStatus | None = None  # newest status not yet written to the registry
    written: tuple[int, int, int] = (0, 0, 0)  # lines, readings, rejects already counted
    note: str | None = None  # a standing remark, e.g. a serial number shared with another
    device: registry.Device | None = None  # the registry's record when it was adopted
    online: bool = False  # the reader's last reported state, to notice when it turns
    defaults: tuple[str, ...] = ()  # names the hub made up for it: a better one may replace
    fresh: bool = False  # first seen at this adoption, on a configured port: a board moved?
    renamed: bool = False  # its own name (firmware, id line) was given, or need not be


@dataclass(frozen=True, slots=True)
class Commanded:
    """What a command did: its writes, and every output's last commanded value just after
    (read from the same reader, so an unplug a moment later cannot lose the answer)."""

    writes: list[PinCommand]
    outputs: dict[int, float]


class Supervisor:
    """Keeps one reader per connected board; see the module docstring."""

    def __init__(
        self,
        *,
        engine: Engine,
        pipeline: IngestPipeline,
        configured_ports: Iterable[str] = (),
        scan_usb: bool = True,
        site: str | None = None,
        default_baudrate: int = 9600,
        scan_interval_s: float = SCAN_INTERVAL_S,
        open_transport: Callable[[str, int], LineTransport] = SerialTransport,
        open_firmata: BoardFactory = open_board,
        comports: Callable[[], Iterable[Any]] | None = None,
        firmata_ports: Iterable[str] = (),
        on_online: Callable[[registry.Device], None] | None = None,
        default_protocol: DeviceProtocol = "lines",
        command_wait_s: float = COMMAND_WAIT_S,
    ) -> None:
        self.engine = engine
        self._on_online = on_online
        self.pipeline = pipeline
        self.configured = list(configured_ports)
        self.scan_usb = scan_usb
        self.site = site
        self.default_baudrate = default_baudrate
        self.scan_interval_s = scan_interval_s
        self._open = open_transport
        self._open_firmata = open_firmata
        self._firmata_ports = set(firmata_ports)
        self.default_protocol = default_protocol
        self.command_wait_s = command_wait_s
        self._defaults: dict[str, DeviceSettings] = {}
        self._kits: set[str] = set()  # ports given by add_port (virtual kits), not settings
        self._ids: dict[str, str] = {}  # port -> id of the device known there (see _scan)
        self._names: dict[str, str] = {}  # port -> name of a kit first seen there
        self._kinds: dict[str, Kind] = {}  # device -> what its probe found, while plugged
        self._keep_kind: set[str] = set()  # reconfigured, protocol untouched: no new probe
        self.configured += [p for p in self._firmata_ports if p not in self.configured]
        self._comports = comports or (discovery._comports if scan_usb else (lambda: []))
        self._watched: dict[str, _Watched] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a reader came, went or changed
        self._stopping: set[str] = set()  # reconfigured: old reader still closing its port
        self._pending: set[str] = set()  # reconfigured: expected back with new settings
        self._generation: dict[str, int] = {}  # bumped by each reconfigure of a device
        self._adopting: str | None = None  # the device the scan is adopting right now
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._poller: LinePoller | None = None

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> Supervisor:
        """Start watching on a thread of its own."""
        if self._thread is None:
            self._poller = LinePoller().start()
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name="labhub-supervisor")
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop every reader and mark their devices offline."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        if self._poller is not None:
            self._poller.stop()
            self._poller = None

    def __enter__(self) -> Supervisor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_port(
        self, url: str, *, firmata: bool = False, defaults: DeviceSettings | None = None,
        device_id: str | None = None, name: str | None = None,
    ) -> None:
        """Watch a port from now on (a virtual kit, a network serial server); ``firmata``
        makes a device first seen there a Firmata board; ``defaults`` are the settings of a
        device first seen there. ``device_id`` is the id of the device on it (a virtual
        kit's own, stable whatever pseudo-terminal it gets), ``name`` its name when first
        seen."""
        with self._lock:
            if url not in self.configured:
                self.configured.append(url)
            self._kits.add(url)
            if firmata or (defaults is not None and defaults.protocol == "firmata"):
                self._firmata_ports.add(url)
            if defaults is not None:
                self._defaults[url] = defaults
            if device_id is not None:
                self._ids[url] = device_id
            if name is not None:
                self._names[url] = name
        self._wake.set()

    def serial_ports(self) -> list[str]:
        """The ports read because the settings name them (``serial_ports``), as now."""
        with self._lock:
            return [u for u in self.configured
                    if u not in self._kits and u not in self._firmata_ports]

    def set_serial_ports(self, urls: Iterable[str]) -> list[str]:
        """Read these ports from the next scan on, in place of the ``serial_ports`` so far
        (virtual kits and ``firmata_ports`` stay): a port no longer named is closed and its
        device marked offline; a new one is opened. A board that comes back on a new path
        keeps its id when it tells who it is (see :meth:`_match_moved`)."""
        wanted = [u.strip() for u in dict.fromkeys(urls) if u.strip()]
        with self._lock:
            before = [u for u in self.configured
                      if u not in self._kits and u not in self._firmata_ports]
            fixed = [u for u in self.configured if u not in before and u not in wanted]
            self.configured = [*wanted, *fixed]
        if before != wanted:
            log.info("serial ports now %s (were %s)", ", ".join(wanted) or "none",
                     ", ".join(before) or "none")
        self._wake.set()
        return wanted

    def remove_port(self, url: str) -> None:
        """Stop watching a configured port."""
        with self._lock:
            if url in self.configured:
                self.configured.remove(url)
        self._wake.set()

    def reconfigure(self, device_id: str, *, reprobe: bool = True) -> None:
        """Apply a device's changed settings: its reader stops and closes the port, then
        the scan adopts the board again with them, and its next readings go through
        its new channel map. Commands meanwhile wait (see :meth:`command`).

        ``reprobe=False`` (the change leaves the protocol and baud rates alone): a board
        with ``protocol: "auto"`` that was identified is reopened as what it was found to
        be, without asking it again (a probe costs a Firmata board seconds offline)."""
        with self._lock:
            if reprobe:
                self._kinds.pop(device_id, None)
                self._keep_kind.discard(device_id)
            elif device_id in self._kinds:
                self._keep_kind.add(device_id)
            self._generation[device_id] = self._generation.get(device_id, 0) + 1
            watched = self._watched.pop(device_id, None)
            if watched is not None or self._adopting == device_id:
                self._pending.add(device_id)
            if watched is not None:
                self._stopping.add(device_id)
            self._changed.notify_all()
        try:
            if watched is not None:
                watched.reader.stop()
        finally:
            with self._lock:
                self._stopping.discard(device_id)
                self._changed.notify_all()
            self.pipeline.forget(device_id)
            self._wake.set()

    def command(
        self, device_id: str, command: CommandName, pin: int | None = None,
        value: float | None = None, *, site: str | None = None,
    ) -> Commanded:
        """Send an actuator command to a connected Firmata board (see ``actuators``).

        ``site``, when given, is where the sender believes the device stands (an MQTT
        topic's site level): checked against the registry first. A board being opened,
        reopened or identified is waited for, at most ``command_wait_s``. Raises
        NoSuchDeviceError (never seen), CommandError (wrong site, or not allowed by the
        settings), DeviceReopeningError (not ready in time; try again after its
        ``retry_after_s``) or DeviceUnavailableError (not connected, or a sketch).
        """
        if site is not None:
            with self.engine.connect() as conn:
                registry.command_target(conn=conn, device_id=device_id, site=site,
                                        hub_site=self.site)
        deadline = time.monotonic() + self.command_wait_s
        while True:
            reader = self._ready_reader(device_id, deadline)
            try:
                writes = reader.command(command, pin, value)
            except FirmataError:
                # The port was lost between the check and the write: the reader reopens it.
                if time.monotonic() >= deadline:
                    raise DeviceReopeningError(self._not_ready(device_id, reader),
                                               retry_after_s=RETRY_AFTER_S) from None
                with self._lock:
                    self._changed.wait(WAIT_POLL_S)
                continue
            return Commanded(writes, dict(reader.status.outputs))

    def _ready_reader(self, device_id: str, deadline: float) -> FirmataReader:
        """The device's Firmata reader once its board is open, waiting until ``deadline``
        while it is being opened, reopened or identified."""
        with self._lock:
            while True:
                watched = self._watched.get(device_id)
                reader = None if watched is None else watched.reader
                if isinstance(reader, FirmataReader) and reader.status.online:
                    return reader
                if isinstance(reader, Prober):
                    # Identifying takes the probe's whole timeout; the answer may be "a
                    # sketch", so the command is not held that long.
                    raise DeviceReopeningError(self._not_ready(device_id, reader),
                                               retry_after_s=RETRY_AFTER_S)
                if reader is not None and not isinstance(reader, FirmataReader):
                    raise DeviceUnavailableError(
                        f"device {device_id} runs a sketch, not Firmata: it takes no commands")
                if reader is None and device_id not in self._pending:
                    break  # neither connected nor coming back: see below
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DeviceReopeningError(self._not_ready(device_id, reader),
                                               retry_after_s=RETRY_AFTER_S)
                self._changed.wait(min(remaining, WAIT_POLL_S))
        with self.engine.connect() as conn:
            registry.get_device(conn=conn, device_id=device_id)  # NoSuchDeviceError
        raise DeviceUnavailableError(f"device {device_id} is not connected")

    def _not_ready(self, device_id: str, reader: Reader | None) -> str:
        waited = f"{self.command_wait_s:g} s"
        if isinstance(reader, Prober):
            return (f"device {device_id} is still being identified (Firmata or a sketch?): "
                    "try again in a few seconds")
        if reader is None:
            return (f"device {device_id} is being reopened with its new settings and was "
                    f"not ready within {waited}: try again in a few seconds")
        return (f"device {device_id} is being opened ({reader.status.message}) and was not "
                f"ready within {waited}: try again in a few seconds")

    def outputs(self, device_id: str) -> dict[int, float]:
        """Each declared output's last commanded value on a connected Firmata board;
        NoSuchDeviceError or DeviceUnavailableError if there is none."""
        with self._lock:
            watched = self._watched.get(device_id)
        if watched is not None and isinstance(watched.reader, FirmataReader):
            return dict(watched.reader.status.outputs)
        if watched is None:
            with self.engine.connect() as conn:
                registry.get_device(conn=conn, device_id=device_id)  # NoSuchDeviceError
        raise DeviceUnavailableError(f"no Firmata board {device_id!r} is connected to this hub")

    def sample(self, device_id: str, timeout: float = SAMPLE_WAIT_S) -> dict[str, float]:
        """Take one slow sample of a connected Firmata board whose settings have
        ``sample_every_s`` (see :meth:`FirmataReader.sample`): its values by channel, stored
        through the pipeline. Waits at most ``timeout`` s for the board's answer.
        NoSuchDeviceError (never seen) or DeviceUnavailableError (not connected, not
        sampled slowly, or it did not answer: the next sample time tries again)."""
        with self._lock:
            watched = self._watched.get(device_id)
        if watched is None:
            with self.engine.connect() as conn:
                registry.get_device(conn=conn, device_id=device_id)  # NoSuchDeviceError
            raise DeviceUnavailableError(f"no Firmata board {device_id!r} is connected to "
                                         "this hub")
        reader = watched.reader
        if not isinstance(reader, FirmataReader):
            raise DeviceUnavailableError(f"device {device_id!r} is not a Firmata board (yet)")
        try:
            return reader.sample(timeout)
        except FirmataError as exc:
            raise DeviceUnavailableError(str(exc)) from exc

    def readers(self) -> dict[str, Reader]:
        """The running readers by device id."""
        with self._lock:
            return {k: w.reader for k, w in self._watched.items()}

    # -- the loop ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._scan()
                    self._identified()
                    self._check_readers()
                    self._write_statuses()
                except Exception:
                    log.exception("device supervisor: scan failed; trying again")
                self._wake.wait(self.scan_interval_s)
                self._wake.clear()
        finally:
            with self._lock:
                watched, self._watched = dict(self._watched), {}
                self._pending.clear()
                self._changed.notify_all()
            for w in watched.values():
                w.reader.stop()
            self._write_statuses(watched, final=True)

    def _scan(self) -> None:
        with self._lock:
            configured = list(self.configured)
            known_ids = dict(self._ids)
        ports = discovery.scan(configured, comports=self._comports)
        present: dict[str, discovery.PortInfo] = {}
        clashes: dict[str, str] = {}
        for port in ports:
            if port.url in known_ids:
                # A virtual kit's own id, or a board found to be back on a new path.
                port = dataclasses.replace(port, device_id=known_ids[port.url])
            device_id = port.device_id
            if device_id in present:
                # Two boards claim one serial number: tell the second apart by its port.
                clashes[device_id] = port.url
                device_id = f"{device_id}@{port.url.rsplit('/', 1)[-1]}"
                port = dataclasses.replace(port, device_id=device_id)
            present[device_id] = port
        with self._lock:
            gone = [d for d, w in self._watched.items()
                    if d not in present or present[d].url != w.url]
            if self._pending - present.keys():
                self._pending &= present.keys()  # reconfigured, then unplugged
                self._changed.notify_all()
        for device_id in gone:
            with self._lock:
                self._kinds.pop(device_id, None)  # plugged in again: asked again
            self._retire(device_id, "unplugged: the port is gone")
        for device_id, port in present.items():
            with self._lock:
                # A reconfigured board's old reader is still closing the port: not yet.
                running = device_id in self._watched or device_id in self._stopping
            if not running:
                note = None
                base = device_id.split("@", 1)[0]
                if base in clashes:
                    note = (f"another board has the same USB serial number "
                            f"{port.serial_number!r}; told apart by port")
                self._adopt(port, note)

    def _adopt(self, port: discovery.PortInfo, note: str | None) -> None:
        with self._lock:
            self._adopting = port.device_id
            generation = self._generation.get(port.device_id, 0)
        try:
            self._adopt_as(port, note, generation)
        finally:
            with self._lock:
                self._adopting = None

    def _adopt_as(self, port: discovery.PortInfo, note: str | None, generation: int) -> None:
        firmata_port = port.url in self._firmata_ports
        protocol: DeviceProtocol = "firmata" if firmata_port else self.default_protocol
        made_up = registry.default_name(port=port.url, chip=port.chip, product=port.product,
                                        manufacturer=port.manufacturer)
        with self._lock:
            given_name = self._names.get(port.url)
            kit = port.url in self._ids
        with self.engine.begin() as conn:
            device = registry.record_seen(
                conn=conn, device_id=port.device_id,
                kind="firmata" if protocol == "firmata" else "lines", port=port.url,
                chip=port.chip, vid=port.vid, pid=port.pid, serial_number=port.serial_number,
                site=self.site, status=note or f"found on {port.url}",
                defaults=self._defaults.get(port.url) or DeviceSettings(
                    baudrate=self.default_baudrate, protocol=protocol),
                name=given_name or made_up,
            )
            fresh = device.first_seen == device.last_seen and port.chip is None and not kit
            if fresh:
                registry.update_status(
                    conn=conn, device_id=device.id,
                    status=f"a new device on {port.url}; its readings start a history of "
                           "their own (a board that tells its Firmata firmware or prints an "
                           "id line keeps its id on another path)")
                log.info("a new device %s on %s: its readings start a history of their own",
                         device.id, port.url)
            if device.settings.protocol != "auto" and device.kind != device.settings.protocol:
                registry.set_kind(conn=conn, device_id=device.id,
                                  kind=device.settings.protocol)
        if self._on_online is not None:
            # After the commit: whoever listens (the app shell) sees the device registered.
            try:
                self._on_online(device)
            except Exception:
                log.exception("device supervisor: the on_online callback failed for %s",
                              device.id)
        # The registry's record was just written (settings given as defaults to a device
        # first seen here): its readings go through the channel map it has now.
        self.pipeline.forget(device.id)
        reader: Reader
        with self._lock:
            known_kind = self._kinds.get(device.id) if device.id in self._keep_kind else None
            self._keep_kind.discard(device.id)
        if device.settings.protocol == "auto" and known_kind is not None:
            # Reconfigured with the protocol untouched: reopened as what it was found to be.
            reader = self._reader(device, port.url, known_kind)
        elif device.settings.protocol == "auto":
            reader = Prober(
                url=port.url, device_id=device.id,
                baudrate=device.settings.firmata.baudrate,
                on_status=self._status_callback(device.id, port.url),
                on_done=lambda _result: self._wake.set(),
            )
        else:
            reader = self._reader(device, port.url, device.settings.protocol)
        defaults = [made_up]
        if device.firmware is not None:
            defaults.append(registry.default_name(port=port.url, firmware=device.firmware))
        watched = _Watched(reader, port.url, note=note, device=device,
                           defaults=tuple(defaults), fresh=fresh,
                           renamed=device.name not in defaults)
        with self._lock:
            if self._generation.get(device.id, 0) != generation:
                # Reconfigured while this was read from the registry: adopt it again.
                self._wake.set()
                return
            self._watched[device.id] = watched
            self._pending.discard(device.id)
            self._changed.notify_all()
        watched.reader.start()
        log.info("device %s (%s) on %s", device.id, device.name, port.url)

    def _status_callback(self, device_id: str, url: str) -> Callable[[ReaderStatus], None]:
        """Where a reader's statuses go: the board's entry, for the registry."""
        def on_status(status: ReaderStatus) -> None:
            turned = False
            with self._lock:
                watched = self._watched.get(device_id)
                if watched is not None and watched.url == url:
                    watched.status = status
                    turned, watched.online = status.online != watched.online, status.online
                self._changed.notify_all()  # a command may wait for the board to open
            if turned or not status.online:
                # The registry says at once that a board opened (and its firmware) or
                # closed, not a scan later.
                self._wake.set()
        return on_status

    def _reader(
        self, device: registry.Device, url: str, protocol: str
    ) -> LineReader | FirmataReader:
        """The reader of a board of a known kind (not started)."""
        settings = device.settings
        if protocol == "firmata":
            return FirmataReader(
                url=url, device_id=device.id, pipeline=self.pipeline,
                settings=settings.firmata, site=device.site, open_board=self._open_firmata,
                on_status=self._status_callback(device.id, url),
            )
        return LineReader(
            url=url, device_id=device.id, pipeline=self.pipeline,
            baudrate=settings.baudrate, fmt=settings.format, site=device.site,
            open_transport=self._open,
            on_status=self._status_callback(device.id, url), poller=self._poller,
        )

    def _identified(self) -> None:
        """Put the reader of the right kind in the place of each probe that has decided."""
        with self._lock:
            done = [(d, w) for d, w in self._watched.items()
                    if isinstance(w.reader, Prober) and w.reader.result is not None]
        for device_id, watched in done:
            prober = watched.reader
            assert isinstance(prober, Prober) and prober.result is not None
            result: ProbeResult = prober.result
            prober.stop()
            device = watched.device
            assert device is not None
            with self.engine.begin() as conn:
                registry.set_kind(conn=conn, device_id=device_id, kind=result.kind)
                registry.update_status(conn=conn, device_id=device_id, online=True,
                                       status=result.reason,
                                       firmware=result.firmware)
            reader = self._reader(device, watched.url, result.kind)
            with self._lock:
                if self._watched.get(device_id) is not watched:
                    continue  # unplugged or reconfigured meanwhile
                watched.reader = reader
                self._kinds[device_id] = result.kind
                self._changed.notify_all()
            reader.start()
            log.info("device %s is %s: %s", device_id,
                     "a Firmata board" if result.kind == "firmata" else "a sketch",
                     result.reason)

    def _check_readers(self) -> None:
        """Two things a running reader can tell the scan.

        A board with ``protocol: "auto"`` whose reader lost the port or got no answer may
        have been reflashed (StandardFirmata to a sketch, or back) while its port stayed:
        it is identified again, as at a plug-in, rather than reopened the old way forever.
        A device first seen on a configured port that tells who it is (Firmata firmware, a
        sketch's id line) may be a known board back on a new path (see _match_moved)."""
        with self._lock:
            watched = dict(self._watched)
        for device_id, w in watched.items():
            reader = w.reader
            if isinstance(reader, Prober) or w.device is None:
                continue
            if w.device.settings.protocol == "auto" and reader.status.stats.failures:
                with self._lock:
                    self._kinds.pop(device_id, None)
                log.info("device %s on %s stopped answering as %s: identifying it again",
                         device_id, w.url,
                         "a Firmata board" if isinstance(reader, FirmataReader) else "a sketch")
                self._retire(device_id, f"{reader.status.message}; identifying the board "
                                        "again (reflashed?)")
                self._wake.set()  # adopted again (and probed) at the next scan
                continue
            if w.fresh:
                self._match_moved(device_id, w)

    def _identity(self, w: _Watched) -> str | None:
        """What a board says it is, as the registry's ``firmware`` keeps it."""
        status = w.reader.status
        firmware = getattr(status, "firmware", None)
        if firmware:
            return str(firmware)
        if status.sketch is not None:
            return f"sketch {status.sketch.id}"
        return None

    def _match_moved(self, device_id: str, w: _Watched) -> None:
        """A device first seen on a configured port, once it tells who it is: if exactly
        one earlier configured-port device, now not watched, told the same (the same
        Firmata firmware, the same sketch id line), this is that board on a new path. It
        takes that id back (and the readings it stored meanwhile); otherwise it stays a
        new device, which the log says."""
        identity = self._identity(w)
        if identity is None:
            return
        w.fresh = False
        with self._lock:
            present = [x.url for x in self._watched.values()]
        with self.engine.begin() as conn:
            registry.update_status(conn=conn, device_id=device_id, firmware=identity)
            earlier = registry.same_board_elsewhere(conn=conn, device_id=device_id,
                                                    firmware=identity, present=present)
        if earlier is None:
            log.info("device %s on %s (%s) is a new device: no earlier one told the same",
                     device_id, w.url, identity)
            return
        log.info("device %s on %s is %s (%s) back on another path (was %s): it keeps its "
                 "id, name, site and settings", device_id, w.url, earlier.id, identity,
                 earlier.port)
        with self._lock:
            self._ids[w.url] = earlier.id
        self._retire(device_id, f"this is {earlier.id}, back on {w.url}")
        self.pipeline.flush(FLUSH_WAIT_S)
        with self.engine.begin() as conn:
            moved = storage.move_device_series(conn=conn, old=device_id, new=earlier.id)
            if moved.left == 0:
                registry.forget_device(conn=conn, device_id=device_id)
        self.pipeline.forget(device_id)
        self._wake.set()

    def _retire(self, device_id: str, message: str) -> None:
        with self._lock:
            watched = self._watched.pop(device_id, None)
            self._changed.notify_all()
        if watched is None:
            return
        watched.reader.stop()
        self._write_statuses({device_id: watched}, final=True, message=message)

    def _write_statuses(
        self, watched: dict[str, _Watched] | None = None, *, final: bool = False,
        message: str | None = None,
    ) -> None:
        if watched is None:
            with self._lock:
                watched = dict(self._watched)
        with self.engine.begin() as conn:
            for device_id, w in watched.items():
                status = w.status or w.reader.status
                stats = status.stats
                lines, readings, rejects = stats.lines, stats.readings, stats.rejects
                done = w.written
                if w.status is None and not final and (lines, readings, rejects) == done:
                    continue  # nothing new to say about this device
                w.status = None
                w.written = (lines, readings, rejects)
                firmware = getattr(status, "firmware", None) or (
                    None if status.sketch is None else f"sketch {status.sketch.id}")
                text = message or status.message
                if status.refused:
                    text += f"; readings refused: {status.refused}"
                unmapped = self.pipeline.unmapped_channels(device_id)
                if unmapped:
                    text += (f"; unmapped channels: {', '.join(unmapped)} (kept as plain "
                             "numbers: set their quantity or unit in the channel map)")
                if w.note:
                    text += f"; {w.note}"
                if not w.renamed and (firmware or status.sketch is not None):
                    w.renamed = True
                    sketch = status.sketch
                    better = (sketch.name or sketch.id) if sketch is not None else None
                    registry.rename_if_default(
                        conn=conn, device_id=device_id, defaults=w.defaults,
                        name=registry.default_name(port=w.url, firmware=firmware,
                                                   sketch=better))
                registry.update_status(
                    conn=conn, device_id=device_id, firmware=firmware,
                    online=False if final else status.online,
                    status=text,
                    add_lines=lines - done[0], add_readings=readings - done[1],
                    add_rejects=rejects - done[2],
                )
