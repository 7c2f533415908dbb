"""Devices API: the registry of boards and nodes, and their settings."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from firmware_bridge import registry
from firmware_bridge.actuators import CommandError, CommandName
from firmware_bridge.firmata import FirmataError, FirmataReader
from firmware_bridge.registry import DeviceSettings, RegistryError
from labhub.api.common import ReadConn, iso
from labhub.problems import Problem

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


class DevicePatch(BaseModel):
    """What a coordinator may change about a device."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    site: str | None = Field(default=None, max_length=100)
    settings: dict[str, Any] | None = None


def _out(d: registry.Device) -> DeviceOut:
    return DeviceOut(
        id=d.id, kind=d.kind, name=d.name, site=d.site, port=d.port, chip=d.chip,
        serial_number=d.serial_number, firmware=d.firmware, first_seen=iso(d.first_seen) or "",
        last_seen=iso(d.last_seen) or "", online=d.online, status=d.status, lines=d.lines,
        readings=d.readings, rejects=d.rejects, settings=d.settings,
    )


@router.get("/devices", response_model=list[DeviceOut], summary="List devices")
def list_devices(
    conn: ReadConn, site: str | None = None, online: bool | None = None,
    kind: str | None = None,
) -> list[DeviceOut]:
    """Every board and node the hub has met, online or not."""
    return [_out(d) for d in registry.list_devices(conn=conn, site=site, online=online,
                                                   kind=kind)]


@router.get("/devices/{device_id}", response_model=DeviceOut, summary="One device")
def get_device(device_id: str, conn: ReadConn) -> DeviceOut:
    """A device with its status, counters and settings."""
    try:
        return _out(registry.get_device(conn=conn, device_id=device_id))
    except RegistryError as exc:
        raise Problem(404, "No such device", str(exc)) from None


@router.patch("/devices/{device_id}", response_model=DeviceOut, summary="Change a device")
def patch_device(
    device_id: str, body: DevicePatch, conn: ReadConn, request: Request
) -> DeviceOut:
    """Rename a device, place it at a site, or change its settings (baud rate, format,
    channel map); its reader restarts with the new settings."""
    try:
        current = registry.get_device(conn=conn, device_id=device_id)
    except RegistryError as exc:
        raise Problem(404, "No such device", str(exc)) from None
    settings = None
    if body.settings is not None:
        merged = {**current.settings.model_dump(), **body.settings}
        try:
            settings = registry.parse_settings(merged)
        except RegistryError as exc:
            raise Problem(422, "Invalid device settings", str(exc)) from None
    device = registry.configure(conn=conn, device_id=device_id, name=body.name,
                                site=body.site, settings=settings)
    conn.commit()  # before the reader restarts and reads the settings back
    hub = request.app.state.hub
    if hub.supervisor is not None:
        hub.supervisor.reconfigure(device_id)
    else:
        hub.pipeline.forget(device_id)
    return _out(device)


class CommandIn(BaseModel):
    """An actuator command for a robotics kit on Firmata."""

    command: CommandName = Field(examples=["servo"])
    pin: int | None = Field(default=None, ge=0, le=127, examples=[9])
    value: float | None = Field(default=None, examples=[90])


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
             summary="Drive a kit's outputs (digital, PWM, servo, stop all)")
def send_command(device_id: str, body: CommandIn, request: Request) -> CommandOut:
    """Only pins declared as outputs in the device's settings can be driven; servo angles
    are clamped to the declared range; ``stop_all`` sets every output to its safe value."""
    hub = request.app.state.hub
    if hub.supervisor is None:
        raise Problem(409, "No hardware", "this hub does not watch serial ports")
    try:
        writes = hub.supervisor.command(device_id, body.command, body.pin, body.value)
    except CommandError as exc:
        raise Problem(422, "Command not allowed", str(exc)) from None
    except FirmataError as exc:
        raise Problem(409, "Device cannot take commands now", str(exc)) from None
    reader = hub.supervisor.readers()[device_id]
    return CommandOut(
        device=device_id,
        writes=[PinWriteOut(pin=w.pin, kind=w.kind, value=w.value, clamped=w.clamped)
                for w in writes],
        outputs=dict(reader.status.outputs),
    )


@router.get("/devices/{device_id}/outputs", response_model=dict[int, float],
            summary="Last commanded value of each output")
def get_outputs(device_id: str, request: Request) -> dict[int, float]:
    """The value each declared output was last set to (read back of commanded state)."""
    hub = request.app.state.hub
    reader = hub.supervisor.readers().get(device_id) if hub.supervisor else None
    if reader is None or not isinstance(reader, FirmataReader):
        raise Problem(404, "No connected Firmata device", f"no Firmata board {device_id!r} "
                      "is connected to this hub")
    return dict(reader.status.outputs)
