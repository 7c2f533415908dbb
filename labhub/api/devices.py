"""Devices API: the registry of boards and nodes, their settings, commands to kits, and
the serial ports the hub reads (changed while it runs).

Routes call the hub's methods; the errors they raise (no such device: 404, settings not
valid or a command not allowed: 422, a board not connected: 409, a board being reopened:
409 with ``Retry-After``) map to problem+json in ``labhub.problems``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Request
from pydantic import BaseModel, BeforeValidator, Field

from firmware_bridge import registry
from firmware_bridge.actuators import CommandName
from firmware_bridge.registry import DeviceSettings
from labhub.access import trail
from labhub.access.gate import On, Visible, needs, require_at
from labhub.access.permissions import P
from labhub.access.sites import device_site
from labhub.api.common import (
    BodyIn,
    Key,
    Name,
    Number,
    PathText,
    ReadConn,
    iso,
    no_boolean,
)
from labhub.api.deps import HubDep
from labhub.problems import problem_responses
from labhub.wiring import MAX_PORT_CHARS

router = APIRouter(prefix="/api/v1", tags=["devices"])


class DeviceOut(BaseModel):
    """A board or node the hub has met."""

    id: str
    kind: str
    name: str
    site: str | None
    port: str | None
    chip: str | None
    serial_number: str | None
    firmware: str | None
    first_seen: str
    last_seen: str
    online: bool
    status: str
    lines: int
    readings: int
    rejects: int
    settings: DeviceSettings


class SiteMoveOut(BaseModel):
    """A device moved to another site by this change: its series moved with it."""

    before: str | None = Field(description="the site it stood at")
    after: str | None = Field(description="the site it stands at now (null: none)")
    series: int = Field(description="its series, listed at the new site from now on")
    at: str = Field(description="when it moved")


class DeviceChanged(DeviceOut):
    """A device after a change, and the site move the change made."""

    moved: SiteMoveOut | None = None


class DevicePatch(BodyIn):
    """What a coordinator may change about a device. Fields left out stay as they are;
    ``site: null`` places the device at no site; ``settings`` are merged into the current
    ones, key by key at the top level."""

    name: Name | None = None
    site: Key | None = Field(default=None,
                             description="code of a site of the lab's tree; null: no site")
    settings: dict[str, Any] | None = None


def _out(d: registry.Device) -> DeviceOut:
    return DeviceOut(
        id=d.id, kind=d.kind, name=d.name, site=d.site, port=d.port, chip=d.chip,
        serial_number=d.serial_number, firmware=d.firmware, first_seen=iso(d.first_seen) or "",
        last_seen=iso(d.last_seen) or "", online=d.online, status=d.status, lines=d.lines,
        readings=d.readings, rejects=d.rejects, settings=d.settings,
    )


@router.get("/devices", response_model=list[DeviceOut], summary="List devices",
            responses=problem_responses(404),
            dependencies=[needs(P.DEVICES_READ, On.NOTHING)])
def list_devices(
    conn: ReadConn, hub: HubDep, request: Request, site: Key | None = None,
    online: bool | None = None, kind: PathText | None = None,
) -> list[DeviceOut]:
    """Every board and node the hub has met, online or not; ``site`` takes the site and
    every site under it in the lab's tree. Only devices at sites where the caller may
    read devices (one with no site is at the hub's own)."""
    sites = None if site is None else hub.site_codes(conn, site)
    visible = Visible(request, P.DEVICES_READ)
    return [_out(d) for d in registry.list_devices(conn=conn, sites=sites, online=online,
                                                   kind=kind) if visible(d.site)]


@router.get("/devices/{device_id}", response_model=DeviceOut, summary="One device",
            dependencies=[needs(P.DEVICES_READ, On.path("device", "device_id"))])
def get_device(device_id: PathText, conn: ReadConn) -> DeviceOut:
    """A device with its status, counters and settings."""
    return _out(registry.get_device(conn=conn, device_id=device_id))


@router.patch("/devices/{device_id}", response_model=DeviceChanged,
              summary="Change a device",
              dependencies=[needs(P.DEVICES_CONFIGURE, On.path("device", "device_id"))])
def patch_device(
    device_id: PathText, body: DevicePatch, hub: HubDep, request: Request,
) -> DeviceChanged:
    """Rename a device, place it at a site of the lab's tree (``null``: at none), or
    change its settings (baud rate, format, channel map; merged into the current ones);
    its board is reopened with the new settings, and commands sent meanwhile wait for it.
    A board identified by asking it (``protocol: "auto"``) is not asked again unless the
    protocol or a baud rate changed. A device moved to another site takes its series
    along, and ``moved`` says so. Moving it needs ``devices.configure`` at the new site
    too (``null``: the hub's own)."""
    if "site" in body.model_fields_set:
        require_at(request, P.DEVICES_CONFIGURE, body.site)
    clear_site = "site" in body.model_fields_set and body.site is None
    changed = body.model_dump(mode="json", exclude_unset=True)
    with trail.audited(request, "device_changed", target=device_id,
                       detail={"changed": changed}) as more:
        done = hub.reconfigure(device_id, name=body.name, site=body.site,
                               settings=body.settings, clear_site=clear_site)
        more["site"] = done.device.site
    moved = done.moved
    return DeviceChanged(
        **_out(done.device).model_dump(),
        moved=None if moved is None else SiteMoveOut(
            before=moved.before, after=moved.after, series=moved.series,
            at=iso(moved.at) or ""),
    )


class PortsIn(BodyIn):
    """The serial ports the settings name, to read from now on."""

    serial_ports: list[Annotated[Name, Field(max_length=MAX_PORT_CHARS)]] = Field(
        max_length=256, examples=[["/dev/ttyUSB0", "socket://192.0.2.10:4000"]],
        description="device paths, socket://host:port or rfc2217://host:port URLs")


class PortsOut(BaseModel):
    """The ports the hub reads because its settings name them."""

    serial_ports: list[str]
    firmata_ports: list[str]


@router.get("/ports", response_model=PortsOut, summary="Serial ports named in the settings",
            dependencies=[needs(P.DEVICES_READ, On.HUB)])
def get_ports(hub: HubDep) -> PortsOut:
    """The ``serial_ports`` read now (changed at run time or as in labhub.toml), and the
    ``firmata_ports``. USB boards are found without being named."""
    return PortsOut(serial_ports=hub.serial_ports(),
                    firmata_ports=list(hub.settings.firmata_ports))


@router.put("/ports", response_model=PortsOut, summary="Change the serial ports read",
            dependencies=[needs(P.PORTS_MANAGE, On.HUB)])
def put_ports(body: PortsIn, hub: HubDep, request: Request) -> PortsOut:
    """Read these ports instead of the ``serial_ports`` so far, from the next scan on
    (within a second, no restart): a port left out is closed and its device marked
    offline, a new one opened. A board on a new path keeps its id if it tells who it is
    (its Firmata firmware, a sketch's id line) and no other board told the same;
    otherwise it is a new device, and its status says so. Until the hub stops: write
    ``serial_ports`` in labhub.toml to keep them."""
    before = hub.serial_ports()
    with trail.audited(request, "ports_changed", target="serial_ports",
                       detail={"before": before, "after": list(body.serial_ports)}):
        ports = hub.set_serial_ports(body.serial_ports)
    return PortsOut(serial_ports=ports, firmata_ports=list(hub.settings.firmata_ports))


class CommandIn(BodyIn):
    """An actuator command for a robotics kit on Firmata."""

    command: CommandName = Field(examples=["servo"])
    # JSON true is not pin 1: the check on booleans wraps the bounds, so the document
    # still states them.
    pin: Annotated[int, Field(ge=0, le=127), BeforeValidator(no_boolean)] | None = Field(
        default=None, examples=[9])
    value: Number | None = Field(default=None, examples=[90])


class PinWriteOut(BaseModel):
    """One write the command made."""

    pin: int
    kind: str
    value: float
    clamped: bool


class CommandOut(BaseModel):
    """What a command did, and every output's last commanded value."""

    device: str
    writes: list[PinWriteOut]
    outputs: dict[int, float]


@router.post("/devices/{device_id}/commands", response_model=CommandOut,
             summary="Drive a kit's outputs (digital, PWM, servo, stop all)",
             dependencies=[needs(P.DEVICES_STOP, On.path("device", "device_id"))])
def send_command(
    device_id: PathText, body: CommandIn, hub: HubDep, request: Request, later: BackgroundTasks,
) -> CommandOut:
    """Only pins declared as outputs in the device's settings can be driven; servo angles
    are clamped to the declared range; ``stop_all`` sets every output to its safe value.
    A command to a board being opened or reopened (after its settings changed) waits for
    it a few seconds, then is answered 409 with ``Retry-After``. ``stop_all`` needs
    ``devices.stop`` at the device's site, every other command ``devices.command``."""
    site = None
    if body.command != "stop_all":
        with hub.engine.connect() as conn:
            known, site = device_site(conn, device_id)
        if known:
            require_at(request, P.DEVICES_COMMAND, site)
    # Written after the answer: a stop_all never waits for a busy database.
    with trail.audited(request, "device_command", target=device_id, site=site, detail={
            "command": body.command, "pin": body.pin, "value": body.value},
            later=later) as more:
        done = hub.command(device_id, body.command, body.pin, body.value)
        more["writes"] = len(done.writes)
    return CommandOut(
        device=device_id,
        writes=[PinWriteOut(pin=w.pin, kind=w.kind, value=w.value, clamped=w.clamped)
                for w in done.writes],
        outputs=done.outputs,
    )


@router.get("/devices/{device_id}/outputs", response_model=dict[int, float],
            summary="Last commanded value of each output",
            dependencies=[needs(P.DEVICES_READ, On.path("device", "device_id"))])
def get_outputs(device_id: PathText, hub: HubDep) -> dict[int, float]:
    """The value each declared output was last set to (read back of commanded state)."""
    return hub.outputs(device_id)
