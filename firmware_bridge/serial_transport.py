"""Serial transports: one open port, read a chunk at a time, and the fake that stands in for it.

:class:`LineTransport` is the small interface the port readers need (``read_chunk`` and
``close``); :class:`SerialTransport` implements it on a real port through pyserial (device
paths, and ``socket://`` or ``rfc2217://`` URLs), reading whatever arrived in one system
call (pyserial's ``readline`` costs ~220 us of CPU per line); :class:`FakeLineTransport`
is fed by its caller, for tests and for virtual devices in one process. A port that
vanishes or fails raises :class:`PortGoneError`. The read timings shared with the
:mod:`~firmware_bridge.serial_poller` live here.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import threading
import time
from typing import Protocol

log = logging.getLogger(__name__)

READ_COALESCE_S = 0.05  # wait this long after data arrives so one read takes many lines
READ_MAX_BYTES = 65_536  # more than a 115200-baud link carries in READ_COALESCE_S
READ_TIMEOUT_S = 0.2  # an idle port is checked this often for a stop request


class PortGoneError(OSError):
    """The port vanished or failed (unplugged, reset, permission lost)."""


def describe_open_error(url: str, exc: BaseException) -> str:
    """Why ``url`` could not be opened, once and in words a teacher can act on (pyserial
    repeats the path and the errno: "could not open port /dev/pts/0: [Errno 2] No such
    file or directory: '/dev/pts/0'")."""
    number = getattr(exc, "errno", None)
    text = str(exc)
    if number == errno.ENOENT or "No such file" in text:
        why = "it is not there (is the board plugged in, and is the path right?)"
    elif number in (errno.EACCES, errno.EPERM) or "Permission denied" in text:
        why = ("no permission to open it (add the hub's user to the dialout group, then "
               "log in again)")
    elif number in (errno.EBUSY, errno.EAGAIN) or "exclusively lock" in text:
        why = ("another program has it open (the Arduino IDE's Serial Monitor or "
               "uploader?); close it and the hub opens the port by itself")
    elif isinstance(exc, ValueError):
        why = f"not a port the hub can open ({text})"
    else:
        reason = getattr(exc, "strerror", None) or text.rsplit(": ", 1)[-1] or type(exc).__name__
        why = f"{reason}"
    return f"cannot open {url}: {why}"


class LineTransport(Protocol):
    """One open serial port, as the line reader needs it."""

    def read_chunk(self, timeout: float) -> bytes:
        """Bytes that arrived, or ``b""`` after ``timeout`` s; PortGoneError when it is gone."""
        ...

    def close(self) -> None:
        """Close the port."""
        ...


class SerialTransport:
    """A real port through pyserial (device paths and ``socket://``/``rfc2217://`` URLs)."""

    def __init__(self, url: str, baudrate: int) -> None:
        import serial

        self._serial_mod = serial
        try:
            self._port = serial.serial_for_url(url, baudrate=baudrate, timeout=0,
                                               exclusive=True if url.startswith("/") else None)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise PortGoneError(describe_open_error(url, exc)) from exc
        self._fd: int | None = None
        if url.startswith("/"):
            self._fd = self._port.fileno()

    def read_chunk(self, timeout: float) -> bytes:
        serial = self._serial_mod
        try:
            fd = self._fd
            if fd is None:  # a network port (socket://, rfc2217://): pyserial reads it
                self._port.timeout = timeout
                first: bytes = self._port.read(1)
                if not first:
                    return b""
                time.sleep(READ_COALESCE_S)
                return first + bytes(self._port.read(self._port.in_waiting or 0))
            # A device file: wait on it directly and read everything in one call, so a
            # chunk of many lines costs three system calls (pyserial's own read would also
            # reconfigure the port whenever the timeout changes).
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                return b""
            time.sleep(READ_COALESCE_S)
            data = os.read(fd, READ_MAX_BYTES)
        except (serial.SerialException, OSError, TypeError, ValueError) as exc:
            raise PortGoneError(str(exc) or type(exc).__name__) from exc
        if not data:  # readable but empty: the device is gone (unplugged)
            raise PortGoneError("device reports readiness to read but returned no data")
        return data

    def write(self, data: bytes) -> None:
        """Send bytes to the board (the Firmata probe's queries); PortGoneError if it is gone."""
        try:
            self._port.write(data)
        except (self._serial_mod.SerialException, OSError, TypeError, ValueError) as exc:
            raise PortGoneError(str(exc) or type(exc).__name__) from exc

    def fileno(self) -> int | None:
        """The device file's descriptor for a shared poller, or None (network ports)."""
        return self._fd

    def close(self) -> None:
        try:
            self._port.close()
        except Exception:
            log.debug("closing a port that had failed", exc_info=True)

    def __enter__(self) -> SerialTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FakeLineTransport:
    """A transport fed by the caller: for tests and for virtual devices in one process.

    ``feed(b"...")`` makes bytes arrive; ``unplug()`` makes the next read fail.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._data = bytearray()
        self._gone = False
        self.closed = False

    def feed(self, data: bytes) -> None:
        with self._cond:
            self._data += data
            self._cond.notify_all()

    def unplug(self) -> None:
        with self._cond:
            self._gone = True
            self._cond.notify_all()

    def read_chunk(self, timeout: float) -> bytes:
        with self._cond:
            if not self._data and not self._gone:
                self._cond.wait(timeout)
            if self._data:
                out = bytes(self._data)
                self._data.clear()
                return out
            if self._gone:
                raise PortGoneError("unplugged")
            return b""

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> FakeLineTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
