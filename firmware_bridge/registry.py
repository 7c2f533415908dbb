"""The device registry: every board and node the hub has met, with its settings.

A device is known by a stable id (``usb-2341-0043-<serial>``, ``usb-1a86-7523@<port>``,
an MQTT node's own id), which it keeps when it comes back on another port, so its name,
site and settings (baud rate, format, channel map, calibrations) follow it. The registry
records first and last seen, online or offline with a status message a teacher can act
on, and counters of lines, readings and rejects.

:class:`RegistryChannelMaps` hands each device's channel map to the ingest pipeline
(``sensors.channels.ChannelMaps``), read once per device and kept until the pipeline is
told the device's settings changed (``IngestPipeline.forget``): however a reading arrives,
the device's calibrations apply, and no reading costs a database query.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
    update,
)

from firmware_bridge.actuators import CommandError, OutputSetting
from firmware_bridge.errors import NoSuchDeviceError as NoSuchDeviceError
from firmware_bridge.errors import RegistryError as RegistryError
from labtext.printable import UnprintableTextError, check_name
from sensors import calibration
from sensors.calibration import CalibrationError
from sensors.channels import ChannelMap, ChannelRule
from sensors.quantities import QUANTITIES, UnitError, conversion
from sensors.samples import now_us
from sensors.storage import NAMING_CONVENTION

metadata = MetaData(naming_convention=NAMING_CONVENTION)

devices = Table(
    "devices",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("name", String(200), nullable=False),
    Column("site", String(100), nullable=True),
    Column("port", String(500), nullable=True),
    Column("chip", String(100), nullable=True),
    Column("vid", Integer, nullable=True),
    Column("pid", Integer, nullable=True),
    Column("serial_number", String(200), nullable=True),
    Column("firmware", String(200), nullable=True),
    Column("first_seen", BigInteger, nullable=False),
    Column("last_seen", BigInteger, nullable=False),
    Column("online", Boolean, nullable=False),
    Column("status", Text, nullable=False),
    Column("lines", BigInteger, nullable=False),
    Column("readings", BigInteger, nullable=False),
    Column("rejects", BigInteger, nullable=False),
    Column("settings", Text, nullable=False),  # DeviceSettings as JSON
)

DeviceKind = Literal["lines", "firmata", "mqtt"]
DeviceProtocol = Literal["auto", "lines", "firmata"]
LINE_FORMATS = ("auto", "plotter", "csv", "jsonl", "framed")
MAX_CACHED_MAPS = 10_000  # devices' channel maps kept in memory; a lab has tens of devices
NO_SITE = "unassigned"  # where a device placed at no site, on a hub of no site, stands
# Tells whether a site code names a site of the lab's tree. The registry does not know the
# inventory; the app shell hands it this check (inventory.sites), so a device is placed
# only at a real site.
SiteCheck = Callable[[Connection, str], bool]


class ChannelSetting(BaseModel):
    """How one channel of a device is stored: its name, quantity and calibration."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200,
                             description="store the channel under this name")
    quantity: str | None = Field(default=None, description="quantity key, e.g. temperature")
    unit: str | None = Field(default=None, max_length=40,
                             description="unit of the (calibrated) value")
    calibration: dict[str, Any] | None = Field(
        default=None,
        description='e.g. {"sensor": "tmp36"}, {"linear": [a, b]}, {"table": [[x, y], ...]}',
    )

    @model_validator(mode="after")
    def _check(self) -> ChannelSetting:
        if self.quantity is not None and self.quantity not in QUANTITIES:
            raise ValueError(f"unknown quantity {self.quantity!r}")
        if self.quantity is not None and self.unit is not None:
            try:  # the pipeline's rule: a unit its quantity converts from
                conversion(QUANTITIES[self.quantity], self.unit)
            except UnitError as exc:
                raise ValueError(str(exc)) from None
        if self.calibration is not None:
            try:
                calibration.build(self.calibration)
            except CalibrationError as exc:
                raise ValueError(str(exc)) from None
        return self


class FirmataSettings(BaseModel):
    """What the hub reads from and drives on a StandardFirmata board."""

    model_config = ConfigDict(extra="forbid")

    baudrate: int = Field(default=57_600, ge=300, le=2_000_000,
                          description="StandardFirmata talks at 57600 baud")
    layout: Literal["arduino", "arduino_mega", "arduino_due", "arduino_nano"] = Field(
        default="arduino", description="the board's pin layout (arduino = Uno)")
    sampling_ms: int = Field(default=100, ge=10, le=16_383,
                             description="analog sampling interval, in ms")
    analog_pins: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4, 5],
                                   description="analog inputs to report, as A0.. numbers")
    digital_inputs: list[int] = Field(default_factory=list,
                                      description="digital pins to report (buttons, sensors)")
    outputs: dict[int, OutputSetting] = Field(
        default_factory=dict, description="pins the hub may drive, and how")
    reset_wait_s: float = Field(
        default=3.0, ge=0, le=10,
        description="time the board needs after the port opens (auto-reset), in s")
    sample_every_s: int | None = Field(
        default=None, ge=1, le=86_400,
        description="slow sampling for a long unattended log: every this many seconds the "
        "hub takes one reading of each channel (reporting on, the first fresh values, "
        "reporting off) and the board is quiet between; null: continuous reporting every "
        "sampling_ms")


class DeviceSettings(BaseModel):
    """A device's settings, kept with it across ports."""

    model_config = ConfigDict(extra="forbid")

    protocol: DeviceProtocol = Field(
        default="lines",
        description="a sketch printing lines, a StandardFirmata board, or auto: find out at "
        "each plug-in by asking the board for Firmata (see firmware_bridge.probe)")
    firmata: FirmataSettings = Field(default_factory=FirmataSettings)
    baudrate: int = Field(default=9600, ge=300, le=2_000_000)
    format: Literal["auto", "plotter", "csv", "jsonl", "framed"] = "auto"
    channels: dict[str, ChannelSetting] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Device:
    """A registered device."""

    id: str
    kind: str
    name: str
    site: str | None
    port: str | None
    chip: str | None
    serial_number: str | None
    firmware: str | None
    first_seen: int
    last_seen: int
    online: bool
    status: str
    lines: int
    readings: int
    rejects: int
    settings: DeviceSettings


def parse_settings(raw: str | dict[str, Any]) -> DeviceSettings:
    """Settings from JSON text or a dict; RegistryError naming what is wrong."""
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
        return DeviceSettings.model_validate(data)
    except (ValidationError, ValueError) as exc:
        raise RegistryError(f"device settings are not valid: {exc}") from None


def _device(r: Any) -> Device:
    return Device(
        r.id, r.kind, r.name, r.site, r.port, r.chip, r.serial_number, r.firmware,
        r.first_seen, r.last_seen, bool(r.online), r.status, r.lines, r.readings, r.rejects,
        parse_settings(r.settings),
    )


def channel_map(settings: DeviceSettings) -> ChannelMap | None:
    """The channel map that a device's settings give the pipeline (None: no channel set)."""
    if not settings.channels:
        return None
    rules = {}
    for raw, s in settings.channels.items():
        quantity, unit = s.quantity, s.unit
        given = None if s.calibration is None else calibration.output_of(s.calibration)
        if given is not None and quantity is None:
            # A preset sensor's calibration says what its result is (an LDR: light level %).
            quantity, unit = given[0], unit or given[1]
        rules[raw] = ChannelRule(
            name=s.name, quantity=quantity, unit=unit,
            calibration=None if s.calibration is None else calibration.build(s.calibration),
        )
    return ChannelMap(rules)


class RegistryChannelMaps:
    """Devices' channel maps from their registry settings, for the ingest pipeline.

    A device's map is read from the database the first time the pipeline asks for it (a
    device not registered has none, and that is kept too) and kept until :meth:`forget`.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._maps: dict[str, ChannelMap | None] = {}
        self._generation = 0  # bumped by forget(): a map read before it is not kept

    def channel_map(self, device: str) -> ChannelMap | None:
        """The device's channel map, or None."""
        with self._lock:
            if device in self._maps:
                return self._maps[device]
            generation = self._generation
        with self.engine.connect() as conn:
            found = find_device(conn=conn, device_id=device)
        mapped = None if found is None else channel_map(found.settings)
        with self._lock:
            if generation == self._generation:
                if len(self._maps) >= MAX_CACHED_MAPS:
                    self._maps.clear()  # uploads naming ever new devices: start over
                self._maps[device] = mapped
        return mapped

    def forget(self, device: str | None = None) -> None:
        """Read the device's settings (every device's when None) again when next asked."""
        with self._lock:
            self._generation += 1
            if device is None:
                self._maps.clear()
            else:
                self._maps.pop(device, None)


def renamed_channels(*, conn: Connection) -> dict[str, dict[str, str]]:
    """Per device, the channels its channel map stores under another name now (``A0`` ->
    ``temp``): series kept under the old name are no longer written."""
    found: dict[str, dict[str, str]] = {}
    for row in conn.execute(select(devices.c.id, devices.c.settings)):
        try:
            channels = json.loads(row.settings).get("channels") or {}
        except (ValueError, AttributeError):
            continue
        renamed = {raw: rule["name"] for raw, rule in channels.items()
                   if isinstance(rule, dict) and rule.get("name") not in (None, raw)}
        if renamed:
            found[row.id] = renamed
    return found


def get_device(*, conn: Connection, device_id: str) -> Device:
    """The device with ``device_id``; NoSuchDeviceError if it was never seen."""
    row = conn.execute(select(devices).where(devices.c.id == device_id)).first()
    if row is None:
        raise NoSuchDeviceError(f"no device with id {device_id!r} on this hub")
    return _device(row)


def find_device(*, conn: Connection, device_id: str) -> Device | None:
    """The device with ``device_id``, or None."""
    row = conn.execute(select(devices).where(devices.c.id == device_id)).first()
    return None if row is None else _device(row)


def command_target(
    *, conn: Connection, device_id: str, site: str, hub_site: str | None
) -> Device:
    """The device a command addressed to ``site`` may drive (an MQTT topic names the site):
    NoSuchDeviceError if it was never seen, CommandError if it stands at another site.

    A device placed at no site stands at the hub's own site, or at ``no_site`` if the hub
    has none either (the site level of its topics).
    """
    device = get_device(conn=conn, device_id=device_id)
    at = device.site or hub_site or NO_SITE
    if at != site:
        raise CommandError(f"device {device_id} is at site {at!r}, not {site!r}")
    return device


def list_devices(
    *, conn: Connection, site: str | None = None, online: bool | None = None,
    kind: str | None = None, sites: Sequence[str] | None = None,
) -> list[Device]:
    """Registered devices, by id; ``sites``: at any of these sites (a subtree's codes)."""
    query = select(devices).order_by(devices.c.id)
    if site is not None:
        query = query.where(devices.c.site == site)
    if sites is not None:
        query = query.where(devices.c.site.in_(list(sites)))
    if online is not None:
        query = query.where(devices.c.online == online)
    if kind is not None:
        query = query.where(devices.c.kind == kind)
    return [_device(r) for r in conn.execute(query)]


def silent_devices(*, conn: Connection, since: int) -> list[Device]:
    """Devices that sent nothing since ``since`` (microseconds, UTC): their last sign of
    life is older, whether the hub still counts them online or not. By id."""
    query = select(devices).where(devices.c.last_seen < since).order_by(devices.c.id)
    return [_device(r) for r in conn.execute(query)]


def record_seen(
    *,
    conn: Connection,
    device_id: str,
    kind: DeviceKind,
    port: str | None = None,
    chip: str | None = None,
    vid: int | None = None,
    pid: int | None = None,
    serial_number: str | None = None,
    site: str | None = None,
    status: str = "online",
    at: int | None = None,
    defaults: DeviceSettings | None = None,
    name: str | None = None,
) -> Device:
    """Register a device on first sight, or mark a known one online on its current port.

    A device first seen gets ``name``, else :func:`default_name` of its port and chip. A
    known device keeps its name, site and settings; only where and when it was seen
    change.
    """
    now = now_us() if at is None else at
    known = find_device(conn=conn, device_id=device_id)
    if known is None:
        conn.execute(
            insert(devices).values(
                id=device_id, kind=kind,
                name=name or default_name(port=port or device_id, chip=chip), site=site,
                port=port, chip=chip, vid=vid, pid=pid, serial_number=serial_number,
                firmware=None, first_seen=now, last_seen=now, online=True, status=status,
                lines=0, readings=0, rejects=0,
                settings=(defaults or DeviceSettings()).model_dump_json(),
            )
        )
    else:
        conn.execute(
            update(devices).where(devices.c.id == device_id).values(
                port=port, last_seen=now, online=True, status=status,
                **({"site": site} if site is not None and known.site is None else {}),
            )
        )
    return get_device(conn=conn, device_id=device_id)


def set_kind(*, conn: Connection, device_id: str, kind: DeviceKind) -> None:
    """Record what kind of device this is (a sketch's lines, Firmata, MQTT)."""
    conn.execute(update(devices).where(devices.c.id == device_id).values(kind=kind))


def port_short_name(port: str) -> str:
    """A port as people say it: ``ttyUSB0``, ``pts/3``, ``COM3``, ``192.0.2.10:4000``."""
    if "://" in port:
        return port.split("://", 1)[1].strip("/") or port
    if port.startswith("/dev/"):
        return port[len("/dev/"):]
    return port.rstrip("/").rsplit("/", 1)[-1] or port


def default_name(
    *, port: str, chip: str | None = None, product: str | None = None,
    manufacturer: str | None = None, firmware: str | None = None, sketch: str | None = None,
) -> str:
    """A readable name until a coordinator gives one, from the best that is known: a
    sketch's own name (its id line), the Firmata firmware (``StandardFirmata on ttyACM0``),
    the USB product or maker (``Arduino Uno on ttyACM0``), the chip (``CH340 on
    ttyUSB0``), else the port (``Board on pts/3``)."""
    where = port_short_name(port)
    if sketch:
        return sketch
    if firmware:
        name = firmware.split(" ", 1)[0].removesuffix(".ino").removesuffix(".INO")
        return f"{name or 'Firmata board'} on {where}"
    for what in (product, manufacturer, chip):
        if what and what.strip() and what.strip().lower() not in GENERIC_PRODUCTS:
            return f"{what.strip()} on {where}"
    return f"Board on {where}"


# USB product strings that say nothing about the board (a clone's serial chip).
GENERIC_PRODUCTS = frozenset({"usb serial", "usb2.0-serial", "usb-serial", "usb serial port",
                              "usb2.0-ser!", "n/a"})


def rename_if_default(
    *, conn: Connection, device_id: str, name: str, defaults: Sequence[str]
) -> bool:
    """Give the device ``name`` if its name is still one the hub made up (one of
    ``defaults``), never over a coordinator's; True if renamed."""
    done = conn.execute(
        update(devices).where(devices.c.id == device_id, devices.c.name.in_(list(defaults)),
                              devices.c.name != name).values(name=name)
    )
    return bool(done.rowcount)


def same_board_elsewhere(
    *, conn: Connection, device_id: str, firmware: str, present: Sequence[str]
) -> Device | None:
    """The one other configured-port device that identified itself the same way
    (``firmware``: its Firmata firmware, or a sketch's id line) and whose port is no longer
    watched (``present``: the ports watched now): the same board back on another path.
    None when there is no such device, or more than one (then they cannot be told apart)."""
    rows = conn.execute(
        select(devices).where(devices.c.firmware == firmware, devices.c.id != device_id,
                              devices.c.id.like("port-%"), devices.c.online.is_(False))
    ).all()
    found = [r for r in rows if r.port not in present]
    return _device(found[0]) if len(found) == 1 else None


def forget_device(*, conn: Connection, device_id: str) -> None:
    """Remove a device's record (one found to be another device, back on a new path)."""
    conn.execute(delete(devices).where(devices.c.id == device_id))


def update_status(
    *,
    conn: Connection,
    device_id: str,
    online: bool | None = None,
    status: str | None = None,
    firmware: str | None = None,
    add_lines: int = 0,
    add_readings: int = 0,
    add_rejects: int = 0,
    at: int | None = None,
) -> None:
    """Change a device's state and add to its counters."""
    values: dict[str, Any] = {}
    if online is not None:
        values["online"] = online
    if status is not None:
        values["status"] = status
    if firmware is not None:
        values["firmware"] = firmware
    if online or add_lines or add_readings:
        values["last_seen"] = now_us() if at is None else at
    if add_lines:
        values["lines"] = devices.c.lines + add_lines
    if add_readings:
        values["readings"] = devices.c.readings + add_readings
    if add_rejects:
        values["rejects"] = devices.c.rejects + add_rejects
    if values:
        conn.execute(update(devices).where(devices.c.id == device_id).values(**values))


def _printable(what: str, text: str) -> str:
    """``text`` if :mod:`labtext.printable` lets it be a name, else RegistryError (422)."""
    try:
        return check_name(text)
    except UnprintableTextError as exc:
        raise RegistryError(f"{what} {exc}") from None


def configure(
    *,
    conn: Connection,
    device_id: str,
    name: str | None = None,
    site: str | None = None,
    settings: DeviceSettings | None = None,
    clear_site: bool = False,
    site_known: SiteCheck | None = None,
) -> Device:
    """Rename a device, place it at a site (``clear_site``: at none), or change its
    settings. With ``site_known``, a site it says is not a site of the lab is refused
    (RegistryError naming it)."""
    get_device(conn=conn, device_id=device_id)
    values: dict[str, Any] = {}
    if name is not None:
        if not name.strip():
            raise RegistryError("a device name cannot be empty")
        values["name"] = _printable("the device name", name.strip())
    if clear_site:
        values["site"] = None
    elif site is not None:
        if not site.strip():
            raise RegistryError('a device\'s site cannot be empty: give a site code, or '
                                'null to place the device at no site')
        if site_known is not None and not site_known(conn, site):
            raise RegistryError(f"there is no site {site!r} in the lab's sites: create it "
                                "first (POST /api/v1/sites) or give an existing site code")
        values["site"] = _printable("the device's site", site)
    if settings is not None:
        values["settings"] = settings.model_dump_json()
    if values:
        conn.execute(update(devices).where(devices.c.id == device_id).values(**values))
    return get_device(conn=conn, device_id=device_id)
