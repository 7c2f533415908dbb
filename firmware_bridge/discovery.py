"""Finding boards: which serial ports hold an Arduino or a common clone, and a stable id each.

pyserial's ``list_ports`` tells every USB serial port with its vendor and product ids,
serial number and bus location. Boards are recognised by their USB chip (Arduino's own
ids, CH340, FTDI, CP210x, ...). A board keeps one id wherever it is plugged in: the USB
serial number when the chip has one (Arduino's, FTDI, CP210x); a CH340 has none, so its id
is VID:PID plus the port, which is the best any software can do for those clones.
Ports named in the settings (``/dev/ttyUSB0``, ``socket://host:port``, ``rfc2217://...``)
are always included, recognised or not.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

# (vid, pid or None for every product of the vendor) -> the chip or maker, as users know it
KNOWN_USB: dict[tuple[int, int | None], str] = {
    (0x2341, None): "Arduino",
    (0x2A03, None): "Arduino (arduino.org)",
    (0x1A86, 0x7523): "CH340",
    (0x1A86, 0x5523): "CH341",
    (0x1A86, 0x55D4): "CH9102",
    (0x0403, 0x6001): "FTDI FT232R",
    (0x0403, 0x6015): "FTDI FT231X",
    (0x10C4, 0xEA60): "CP210x",
    (0x239A, None): "Adafruit",
    (0x303A, None): "Espressif",
    (0x2E8A, None): "Raspberry Pi Pico",
    (0x1B4F, None): "SparkFun",
}


@dataclass(frozen=True, slots=True)
class PortInfo:
    """A serial port that holds (or may hold) a board."""

    url: str  # what to open: /dev/ttyACM0, socket://..., rfc2217://...
    device_id: str  # stable id of the board behind it
    chip: str | None  # the recognised USB chip or maker, None for a configured port
    vid: int | None = None
    pid: int | None = None
    serial_number: str | None = None
    description: str | None = None
    product: str | None = None  # what the USB device calls itself ("Arduino Uno")
    manufacturer: str | None = None


def chip_of(vid: int | None, pid: int | None) -> str | None:
    """The name of a recognised USB chip, or None."""
    if vid is None:
        return None
    return KNOWN_USB.get((vid, pid)) or KNOWN_USB.get((vid, None))


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def stable_id(
    *, vid: int | None, pid: int | None, serial_number: str | None, url: str,
    location: str | None = None,
) -> str:
    """The board's id: ``usb-2341-0043-<serial>``; without a serial number
    ``usb-1a86-7523@<USB socket>`` (the physical socket, e.g. ``1-1.4``, survives the
    system renumbering ttyUSB devices), else ``@<port>``; a configured port ``port-<url>``."""
    if vid is None or pid is None:
        return "port-" + _UNSAFE.sub("_", url).strip("_")
    base = f"usb-{vid:04x}-{pid:04x}"
    serial = (serial_number or "").strip()
    if serial:
        return f"{base}-{_UNSAFE.sub('_', serial)}"
    where = (location or "").split(":", 1)[0] or url.rsplit("/", 1)[-1]
    return f"{base}@{_UNSAFE.sub('_', where).strip('_')}"


def _comports() -> list[Any]:
    from serial.tools import list_ports

    return list(list_ports.comports())


def scan(
    configured: Sequence[str] = (),
    *,
    comports: Callable[[], Iterable[Any]] = _comports,
) -> list[PortInfo]:
    """Recognised boards on USB serial ports, plus every configured port, sorted by URL."""
    found: dict[str, PortInfo] = {}
    for port in comports():
        chip = chip_of(port.vid, port.pid)
        if chip is None:
            continue
        found[port.device] = PortInfo(
            url=port.device,
            device_id=stable_id(vid=port.vid, pid=port.pid, serial_number=port.serial_number,
                                url=port.device, location=getattr(port, "location", None)),
            chip=chip,
            vid=port.vid,
            pid=port.pid,
            serial_number=port.serial_number,
            description=port.description,
            product=getattr(port, "product", None),
            manufacturer=getattr(port, "manufacturer", None),
        )
    for url in configured:
        if url not in found:
            found[url] = PortInfo(url=url, device_id=stable_id(vid=None, pid=None,
                                                                serial_number=None, url=url),
                                  chip=None)
    return [found[k] for k in sorted(found)]
