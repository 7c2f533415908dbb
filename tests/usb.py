"""What pyserial's ``list_ports`` tells about a USB serial port, for tests that hand the
supervisor a list of ports of their own (real pseudo-terminals behind USB ids)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class UsbPort:
    """One entry of ``serial.tools.list_ports.comports()``: the fields discovery reads."""

    device: str
    vid: int | None
    pid: int | None
    serial_number: str | None
    description: str = "USB serial"
    location: str | None = None
