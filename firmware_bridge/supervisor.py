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
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from firmware_bridge import discovery, registry
from firmware_bridge.actuators import CommandName, PinCommand
from firmware_bridge.firmata import BoardFactory, FirmataError, FirmataReader, open_board
from firmware_bridge.port_reader import ReaderStatus
from firmware_bridge.probe import Prober, ProbeResult
from firmware_bridge.registry import DeviceProtocol, DeviceSettings
from firmware_bridge.serial_lines import LineReader
from firmware_bridge.serial_poller import LinePoller
from firmware_bridge.serial_transport import LineTransport, SerialTransport
from sensors.pipeline import IngestPipeline

log = logging.getLogger(__name__)

SCAN_INTERVAL_S = 0.5  # a board pulled out is marked offline within two scans


Reader = LineReader | FirmataReader | Prober


@dataclass(slots=True)
class _Watched:
    reader: Reader
    url: str
    status: ReaderStatus | None = None  # newest status not yet written to the registry
    written: tuple[int, int, int] = (0, 0, 0)  # lines, readings, rejects already counted
    note: str | None = None  # a standing remark, e.g. a serial number shared with another
    device: registry.Device | None = None  # the registry's record when it was adopted


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
        self._defaults: dict[str, DeviceSettings] = {}
        self.configured += [p for p in self._firmata_ports if p not in self.configured]
        self._comports = comports or (discovery._comports if scan_usb else (lambda: []))
        self._watched: dict[str, _Watched] = {}
        self._lock = threading.Lock()
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
        self, url: str, *, firmata: bool = False, defaults: DeviceSettings | None = None
    ) -> None:
        """Watch a port from now on (a virtual kit, a network serial server); ``firmata``
        makes a device first seen there a Firmata board; ``defaults`` are the settings of a
        device first seen there."""
        with self._lock:
            if url not in self.configured:
                self.configured.append(url)
            if firmata or (defaults is not None and defaults.protocol == "firmata"):
                self._firmata_ports.add(url)
            if defaults is not None:
                self._defaults[url] = defaults
        self._wake.set()

    def remove_port(self, url: str) -> None:
        """Stop watching a configured port."""
        with self._lock:
            if url in self.configured:
                self.configured.remove(url)
        self._wake.set()

    def reconfigure(self, device_id: str) -> None:
        """Apply a device's changed settings: its reader restarts with them, and its next
        readings go through its new channel map."""
        with self._lock:
            watched = self._watched.pop(device_id, None)
        if watched is not None:
            watched.reader.stop()
        self.pipeline.forget(device_id)
        self._wake.set()

    def command(
        self, device_id: str, command: CommandName, pin: int | None = None,
        value: float | None = None,
    ) -> list[PinCommand]:
        """Send an actuator command to a connected Firmata board (see ``actuators``)."""
        with self._lock:
            watched = self._watched.get(device_id)
        if watched is None:
            raise FirmataError(f"device {device_id} is not connected")
        if isinstance(watched.reader, Prober):
            raise FirmataError(f"device {device_id} is still being identified (Firmata or "
                               "a sketch?): try again in a few seconds")
        if not isinstance(watched.reader, FirmataReader):
            raise FirmataError(f"device {device_id} runs a sketch, not Firmata: it takes no "
                               "commands")
        return watched.reader.command(command, pin, value)

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
                    self._write_statuses()
                except Exception:
                    log.exception("device supervisor: scan failed; trying again")
                self._wake.wait(self.scan_interval_s)
                self._wake.clear()
        finally:
            with self._lock:
                watched, self._watched = dict(self._watched), {}
            for w in watched.values():
                w.reader.stop()
            self._write_statuses(watched, final=True)

    def _scan(self) -> None:
        with self._lock:
            configured = list(self.configured)
        ports = discovery.scan(configured, comports=self._comports)
        present: dict[str, discovery.PortInfo] = {}
        clashes: dict[str, str] = {}
        for port in ports:
            device_id = port.device_id
            if device_id in present:
                # Two boards claim one serial number: tell the second apart by its port.
                clashes[device_id] = port.url
                device_id = f"{device_id}@{port.url.rsplit('/', 1)[-1]}"
                port = discovery.PortInfo(port.url, device_id, port.chip, port.vid, port.pid,
                                          port.serial_number, port.description)
            present[device_id] = port
        with self._lock:
            gone = [d for d, w in self._watched.items()
                    if d not in present or present[d].url != w.url]
        for device_id in gone:
            self._retire(device_id, "unplugged: the port is gone")
        for device_id, port in present.items():
            with self._lock:
                running = device_id in self._watched
            if not running:
                note = None
                base = device_id.split("@", 1)[0]
                if base in clashes:
                    note = (f"another board has the same USB serial number "
                            f"{port.serial_number!r}; told apart by port")
                self._adopt(port, note)

    def _adopt(self, port: discovery.PortInfo, note: str | None) -> None:
        firmata_port = port.url in self._firmata_ports
        protocol: DeviceProtocol = "firmata" if firmata_port else self.default_protocol
        with self.engine.begin() as conn:
            device = registry.record_seen(
                conn=conn, device_id=port.device_id,
                kind="firmata" if protocol == "firmata" else "lines", port=port.url,
                chip=port.chip, vid=port.vid, pid=port.pid, serial_number=port.serial_number,
                site=self.site, status=note or f"found on {port.url}",
                defaults=self._defaults.get(port.url) or DeviceSettings(
                    baudrate=self.default_baudrate, protocol=protocol),
            )
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
        if device.settings.protocol == "auto":
            reader = Prober(
                url=port.url, device_id=device.id,
                baudrate=device.settings.firmata.baudrate,
                on_status=self._status_callback(device.id, port.url),
                on_done=lambda _result: self._wake.set(),
            )
        else:
            reader = self._reader(device, port.url, device.settings.protocol)
        watched = _Watched(reader, port.url, note=note, device=device)
        with self._lock:
            self._watched[device.id] = watched
        watched.reader.start()
        log.info("device %s (%s) on %s", device.id, device.name, port.url)

    def _status_callback(self, device_id: str, url: str) -> Callable[[ReaderStatus], None]:
        """Where a reader's statuses go: the board's entry, for the registry."""
        def on_status(status: ReaderStatus) -> None:
            with self._lock:
                watched = self._watched.get(device_id)
            if watched is not None and watched.url == url:
                watched.status = status
            if not status.online:
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
            reader.start()
            log.info("device %s is %s: %s", device_id,
                     "a Firmata board" if result.kind == "firmata" else "a sketch",
                     result.reason)

    def _retire(self, device_id: str, message: str) -> None:
        with self._lock:
            watched = self._watched.pop(device_id, None)
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
                firmware = getattr(status, "firmware", None)
                registry.update_status(
                    conn=conn, device_id=device_id, firmware=firmware,
                    online=False if final else status.online,
                    status=(message or status.message) + (f"; {w.note}" if w.note else ""),
                    add_lines=lines - done[0], add_readings=readings - done[1],
                    add_rejects=rejects - done[2],
                )
