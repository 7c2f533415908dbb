"""Telling a StandardFirmata board from a sketch that prints lines, on a port never seen.

A board whose settings say ``protocol: "auto"`` (the default for a board seen for the first
time) is probed each time it is plugged in: the port is opened at Firmata's baud rate
(57600), the Firmata version and firmware queries are sent, and sent again every
``RESEND_S`` while the board may still be resetting (opening the port resets an Uno), and
the answer decides:

- a firmware report (``F0 79 major minor name F7``) or a protocol version report
  (``F9 02 minor``): a Firmata board, read and driven with Firmata;
- a line of printable text: a sketch printing at this baud rate, read as lines;
- nothing of either within ``timeout_s``: a sketch (most print at 9600 baud, which reads as
  noise at 57600), read as lines at the device's own baud rate.

The probe waits in blocking reads with a timeout, on its own thread, so it costs no CPU
while a board boots and never holds up other boards, the API or ingest. It is re-done at
every plug-in, so a board that was reflashed from StandardFirmata to a climate sketch (or
back) between two classes is read the right way. A fixed ``protocol`` skips it.

What the probe writes (``F9 F0 79 F7``) is harmless to a sketch that reads its serial input
for commands of its own: four bytes outside printable ASCII.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from firmware_bridge.firmata_protocol import (
    FROM_BOARD,
    QUERY_FIRMWARE,
    QUERY_VERSION,
    REPORT_VERSION,
    START_SYSEX,
    Decoder,
    parse_firmware,
)
from firmware_bridge.serial_lines import PortGoneError, PortReader, ReaderStatus, SerialTransport

log = logging.getLogger(__name__)

QUERY = QUERY_VERSION + QUERY_FIRMWARE
FIRMATA_BAUDRATE = 57_600
TIMEOUT_S = 4.0  # an Uno's bootloader plus StandardFirmata's setup take under 2 s
RESEND_S = 0.5  # queries sent while the bootloader ran are lost: ask again this often
READ_S = 0.1  # one blocking read waits at most this long
MAX_BYTES = 4096  # what the probe looks at, at most (a flood of noise is not kept)
MIN_TEXT = 3  # printable characters a line needs to count as a sketch's output
FIRMWARE_NAME_MAX = 64
RETRY_FIRST_S = 0.5  # a port that cannot be opened yet (permissions, busy): try again
RETRY_MAX_S = 5.0

Kind = Literal["firmata", "lines"]


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What the probe found: the kind of board and what made it decide."""

    kind: Kind
    reason: str
    firmware: str | None = None  # "StandardFirmata.ino 2.5" when the board said so


def _printable(byte: int) -> bool:
    return 0x20 <= byte < 0x7F or byte in (0x09, 0x0D)


def analyse(data: bytes) -> ProbeResult | None:
    """The verdict on what a port sent after the query, or None while it is still open.

    Firmata evidence wins over text: a board answering both ways is a Firmata board (its
    firmware name is text inside a sysex).
    """
    version: tuple[int, int] | None = None
    for message in Decoder(FROM_BOARD).feed(data):
        if message.command == START_SYSEX:
            report = parse_firmware(message.data)
            if report is not None:
                firmware = f"{report.name[:FIRMWARE_NAME_MAX]} {report.major}.{report.minor}"
                return ProbeResult("firmata", f"answered the Firmata firmware query: "
                                   f"{firmware.strip()}", firmware.strip())
        elif message.command == REPORT_VERSION:
            major, minor = message.data
            if major == 2 and minor < 0x10:
                version = (major, minor)
    if version is not None:
        return ProbeResult("firmata", f"answered the Firmata version query: protocol "
                           f"{version[0]}.{version[1]}")
    # Text: a whole line of printable characters after the first newline (the first line
    # may be the tail of one printed before the port opened, or noise of the reset).
    lines = data.split(b"\n")
    for line in lines[1:-1]:
        if len(line.strip()) >= MIN_TEXT and all(_printable(x) for x in line):
            shown = line.strip().decode("ascii")[:40]
            return ProbeResult("lines", f"prints text lines ({shown!r})")
    return None


def probe(
    url: str,
    *,
    baudrate: int = FIRMATA_BAUDRATE,
    timeout_s: float = TIMEOUT_S,
    stop: threading.Event | None = None,
) -> ProbeResult:
    """Open ``url``, ask for Firmata, and decide (see the module docstring).

    PortGoneError when the port cannot be opened or fails; ``stop`` cuts the wait short
    (the result is then "lines", reason "stopped").
    """
    port = SerialTransport(url, baudrate)
    received = bytearray()
    try:
        started = time.monotonic()
        next_query = started
        while True:
            now = time.monotonic()
            if stop is not None and stop.is_set():
                return ProbeResult("lines", "stopped before the board answered")
            if now - started >= timeout_s:
                return ProbeResult(
                    "lines", f"no Firmata answer at {baudrate} baud within {timeout_s:g} s: "
                    "read as a sketch printing lines")
            if now >= next_query:
                port.write(QUERY)
                next_query = now + RESEND_S
            chunk = port.read_chunk(min(READ_S, max(0.0, next_query - now)))
            if chunk:
                received += chunk
                if len(received) > MAX_BYTES:
                    del received[:len(received) - MAX_BYTES]
                verdict = analyse(bytes(received))
                if verdict is not None:
                    return verdict
    except PortGoneError as exc:
        raise PortGoneError(f"the port failed while probing: {exc}") from exc
    finally:
        port.close()


class Prober(PortReader):
    """A probe on a thread of its own, shaped like a reader so the supervisor can hold it
    in a board's place while it decides; ``result`` is set once, then ``on_done`` is
    called. A port that cannot be opened yet is tried again with a backoff."""

    THREAD_PREFIX = "labhub-probe"

    def __init__(
        self,
        *,
        url: str,
        device_id: str,
        baudrate: int = FIRMATA_BAUDRATE,
        timeout_s: float = TIMEOUT_S,
        on_status: Callable[[ReaderStatus], None] | None = None,
        on_done: Callable[[ProbeResult], None] | None = None,
    ) -> None:
        super().__init__(device_id=device_id, on_status=on_status)
        self.url = url
        self.baudrate = baudrate
        self.timeout_s = timeout_s
        self._on_done = on_done
        self.result: ProbeResult | None = None
        self.status = ReaderStatus(
            online=True, message=f"identifying the board on {url}: StandardFirmata or a "
            "sketch?")

    def _run(self) -> None:
        self._set_status()  # the registry says what is going on while the board boots
        backoff = RETRY_FIRST_S
        while not self._stop.is_set():
            try:
                result = probe(self.url, baudrate=self.baudrate, timeout_s=self.timeout_s,
                               stop=self._stop)
            except PortGoneError as exc:
                self._set_status(online=False, message=f"{exc}; trying again")
                if self._stop.wait(backoff):
                    return
                backoff = min(backoff * 2, RETRY_MAX_S)
                continue
            if self._stop.is_set():
                return
            log.info("device %s on %s: %s", self.device_id, self.url, result.reason)
            self.result = result
            if self._on_done is not None:
                try:
                    self._on_done(result)
                except Exception:
                    log.exception("probe callback of %s failed", self.device_id)
            return
