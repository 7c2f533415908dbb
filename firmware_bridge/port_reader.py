"""The port reader base: what every reader of one port shares, and its status.

:class:`PortReader` runs a reader on a thread of its own (opening a port never blocks the
caller), with ``start``/``stop`` and a :class:`ReaderStatus` (online, a message a teacher
can act on, :class:`ReaderStats` counters) reported to a callback whenever it changes. The
line reader (:mod:`~firmware_bridge.serial_lines`), the Firmata reader and the Firmata
probe build on it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Self

log = logging.getLogger(__name__)

REMIND_S = 600.0  # a repeated status (still offline) goes to the INFO log this often


@dataclass(slots=True)
class ReaderStats:
    """What a reader has seen since it started."""

    lines: int = 0
    readings: int = 0
    rejects: int = 0
    overlong: int = 0
    connects: int = 0
    failures: int = 0  # opens that failed and ports lost: the board may have changed


@dataclass(slots=True)
class SketchId:
    """What a sketch says it is, in its id line (``#id:climate-7B Estación 7B``)."""

    id: str
    name: str | None = None


@dataclass(slots=True)
class ReaderStatus:
    """Whether the port is open, and a message a teacher can act on."""

    online: bool = False
    message: str = "not started"
    fmt: str | None = None
    stats: ReaderStats = field(default_factory=ReaderStats)
    refused: str | None = None  # why the pipeline refused the device's last refused reading
    sketch: SketchId | None = None  # the sketch's own id line, when it prints one


class PortReader:
    """What every reader of one port shares: a thread of its own that opens and reads the
    port (and reopens it after a failure), ``start``/``stop``, and a status reported to a
    callback whenever it changes."""

    THREAD_PREFIX = "labhub-reader"
    STOP_TIMEOUT_S = 5.0
    status: ReaderStatus

    def __init__(
        self, *, device_id: str, on_status: Callable[[ReaderStatus], None] | None
    ) -> None:
        self.device_id = device_id
        self._on_status = on_status
        self._told: dict[str, float] = {}  # messages logged at INFO, and when
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._life = threading.Lock()  # start and stop may come from two threads

    def start(self) -> Self:
        """Start on a thread of its own (opening a port never blocks the caller); a reader
        stopped before it started (reconfigured meanwhile) stays stopped."""
        with self._life:
            if self._thread is None and not self._stop.is_set():
                thread = threading.Thread(target=self._run, daemon=True,
                                          name=f"{self.THREAD_PREFIX}-{self.device_id}")
                thread.start()
                self._thread = thread
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop reading and close the port (from any thread, started or not)."""
        self._stop.set()
        self._stopping()
        with self._life:
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(self.STOP_TIMEOUT_S if timeout is None else timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True while the reader's thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def _stopping(self) -> None:
        """Wake the reader's thread wherever it waits (a subclass hook)."""

    def _set_status(self, *, online: bool | None = None, message: str | None = None) -> None:
        if online is not None:
            if online and not self.status.online:
                self._told.clear()  # open again: the next trouble is news
            self.status.online = online
        if message is not None and message != self.status.message:
            self.status.message = message
            # Each message once per spell offline at INFO; a reader that keeps trying (a
            # board left unplugged, a port that never answers) repeats it only at DEBUG,
            # with a reminder at INFO every REMIND_S.
            now = time.monotonic()
            if message not in self._told or now - self._told[message] >= REMIND_S:
                self._told[message] = now
                log.info("device %s: %s", self.device_id, message)
            else:
                log.debug("device %s: %s", self.device_id, message)
        if self._on_status is not None:
            try:
                self._on_status(self.status)
            except Exception:
                log.exception("status callback of %s failed", self.device_id)

    def _run(self) -> None:
        raise NotImplementedError
