"""A virtual climate station: a pseudo-terminal whose far end prints Serial Plotter lines.

It behaves like a student's Arduino sketch with a temperature/humidity sensor and an LDR:
``temp:21.43,hum:61.2,light:512`` once per interval, values following a day (temperature
peaking mid-afternoon, humidity moving against it, light following the sun) plus sensor
noise. The hub opens ``station.url`` like any serial port. ``unplug()`` closes the far end
as pulling the cable would; ``replug()`` gives a new port.
"""

from __future__ import annotations

import math
import os
import random
import threading
import time

from firmware_bridge.sim.pty import close_fds, open_raw_pty
from sensors.samples import US_PER_S, now_us

BAUD_BITS_PER_BYTE = 10  # start bit, 8 data bits, stop bit
KIT_ID = "virtual-climate-station"  # the device id the hub knows the virtual station by
KIT_NAME = "Climate station (virtual)"


def climate_at(ts_us: int, rng: random.Random | None = None) -> tuple[float, float, float]:
    """Temperature (degC), relative humidity (%) and light (0..1023 counts) at a moment."""
    day = (ts_us / US_PER_S / 86_400) % 1.0  # fraction of the UTC day
    # Warmest around 15:00, coolest around 03:00; light from 06:00 to 18:00.
    temp = 18.0 + 6.0 * math.sin(2 * math.pi * (day - 0.375))
    hum = 65.0 - 15.0 * math.sin(2 * math.pi * (day - 0.375))
    sun = max(0.0, math.sin(math.pi * (day - 0.25) / 0.5)) if 0.25 <= day <= 0.75 else 0.0
    light = 20.0 + 900.0 * sun
    if rng is not None:
        temp += rng.gauss(0, 0.05)
        hum += rng.gauss(0, 0.3)
        light += rng.gauss(0, 5)
    return round(temp, 2), round(min(100.0, max(0.0, hum)), 1), round(max(0.0, light))


class VirtualClimateStation:
    """A pseudo-terminal printing Serial Plotter lines; see the module docstring.

    ``interval_s`` is the time between lines; with ``baudrate`` set, lines are also paced
    as a real UART at that speed would carry them (``interval_s=0`` then means "as fast as
    the link allows").
    """

    def __init__(
        self, *, interval_s: float = 1.0, baudrate: int | None = None, seed: int = 1,
        line_format: str = "plotter", kit_id: str = KIT_ID, name: str = KIT_NAME,
    ) -> None:
        # A pty's number changes with every start: the kit's own id and name, the same at
        # every start (a board with a USB serial number has its own, as stable).
        self.kit_id = kit_id
        self.name = name
        self.interval_s = interval_s
        self.baudrate = baudrate
        self.line_format = line_format
        self.rng = random.Random(seed)  # noqa: S311 -- sensor noise, not secrets
        self.lines_sent = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._master = -1
        self._slave = -1
        self.url = ""
        self._open_pty()

    def _open_pty(self) -> None:
        # The station holds the slave open itself, so its prints do not fail (EIO) while
        # the hub has the port closed. The new URL first, then "plugged": a reader that
        # sees the station plugged must never open the old URL, whose pty number another
        # process may already be using (it would hold that process's port with an
        # exclusive lock).
        master, slave, url = open_raw_pty()
        self.url = url
        self._master, self._slave = master, slave

    def line(self) -> bytes:
        """The next line the station prints."""
        temp, hum, light = climate_at(now_us(), self.rng)
        if self.line_format == "csv":
            return f"{temp},{hum},{light:.0f}\r\n".encode()
        return f"temp:{temp},hum:{hum},light:{light:.0f}\r\n".encode()

    def write(self, data: bytes) -> None:
        """Put raw bytes on the line (noise, a cut line, ...), as the sketch would."""
        with self._lock:
            if self._master >= 0:
                os.write(self._master, data)

    def start(self) -> VirtualClimateStation:
        """Start printing on a thread of its own."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name="labhub-virtual-climate")
            self._thread.start()
        return self

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            line = self.line()
            try:
                self.write(line)
            except OSError:
                # Nobody reads and the pty's buffer is full, or the port is unplugged.
                self._stop.wait(0.05)
                continue
            self.lines_sent += 1
            pace = self.interval_s
            if self.baudrate:
                pace = max(pace, len(line) * BAUD_BITS_PER_BYTE / self.baudrate)
            next_at += pace
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            elif delay < -1.0:
                next_at = time.monotonic()  # fell behind (machine busy): do not burst

    @property
    def plugged(self) -> bool:
        """False between ``unplug()`` and ``replug()``: ``url`` then names a stale port."""
        return self._master >= 0

    def unplug(self) -> None:
        """Close the station's end: the hub sees the port fail, as when a cable is pulled."""
        with self._lock:
            close_fds(self._master, self._slave)
            self._master = self._slave = -1

    def replug(self) -> str:
        """Plug back in, on a new pseudo-terminal; returns its URL."""
        with self._lock:
            if self._master < 0:
                self._open_pty()
        return self.url

    def close(self) -> None:
        """Stop printing and close the pseudo-terminal."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self.unplug()

    def __enter__(self) -> VirtualClimateStation:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
