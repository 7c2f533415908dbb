"""The line poller: one thread that reads every open serial port of the hub.

A thread per port wakes up per chunk on every port and hands the interpreter lock back and
forth; :class:`LinePoller` waits on all the ports' file descriptors at once, lets chunks
fill up, and hands each port's bytes to the callback its reader registered. Readers of
network ports (no file descriptor) read on their own threads instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from firmware_bridge.serial_transport import READ_COALESCE_S, READ_MAX_BYTES, READ_TIMEOUT_S

log = logging.getLogger(__name__)


class LinePoller:
    """One thread that reads every open line port: many boards, one wake-up per interval.

    A thread per port wakes up per chunk on every port and hands the interpreter lock back
    and forth; one poller waits on all of them at once, sleeps ``READ_COALESCE_S`` so
    chunks fill up, then reads every port that has data. Readers register a port's file
    descriptor while it is open; ``on_data`` and ``on_lost`` run on the poller's thread.
    Registrations are applied by the poller itself (woken through a pipe), so nothing
    changes the selector while it waits.
    """

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._requests: list[tuple[int, _PollTarget | None, threading.Event]] = []
        self._stop = False
        self._thread: threading.Thread | None = None

    def start(self) -> LinePoller:
        """Start the poller's thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name="labhub-line-poller")
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop reading; registered readers see nothing more."""
        self._stop = True
        self._wake()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def __enter__(self) -> LinePoller:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def register(self, fd: int, on_data: Callable[[bytes], None],
                 on_lost: Callable[[str], None]) -> None:
        """Read ``fd`` from now on; returns once the poller has taken it."""
        self._request(fd, _PollTarget(on_data, on_lost))

    def unregister(self, fd: int) -> None:
        """Stop reading ``fd``; once this returns, no callback for it runs any more."""
        self._request(fd, None)

    def _request(self, fd: int, target: _PollTarget | None) -> None:
        done = threading.Event()
        with self._lock:
            if self._thread is None or self._stop:
                return
            self._requests.append((fd, target, done))
        self._wake()
        done.wait(5)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # the pipe is full (already woken) or closed
            os.write(self._wake_w, b"\0")

    def _apply(self) -> None:
        with self._lock:
            requests, self._requests = self._requests, []
        for fd, target, done in requests:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(fd)
            if target is not None:
                self._selector.register(fd, selectors.EVENT_READ, target)
            done.set()

    def _run(self) -> None:
        while not self._stop:
            self._apply()
            try:
                events = self._selector.select(READ_TIMEOUT_S * 5)
            except OSError:
                log.exception("line poller: select failed")
                time.sleep(READ_TIMEOUT_S)
                continue
            ports = [key for key, _ in events if key.data is not None]
            if any(key.data is None for key, _ in events):
                with contextlib.suppress(OSError):
                    os.read(self._wake_r, 4096)
            if not ports:
                continue
            time.sleep(READ_COALESCE_S)
            for key in ports:
                target: _PollTarget = key.data
                fd = int(key.fd)
                try:
                    data = os.read(fd, READ_MAX_BYTES)
                except OSError as exc:
                    self._drop(fd, target, str(exc) or type(exc).__name__)
                    continue
                if not data:
                    self._drop(fd, target, "device reports readiness to read but returned no "
                                           "data")
                    continue
                try:
                    target.on_data(data)
                except Exception:
                    log.exception("line poller: handling data failed")
        with self._lock:
            for _fd, _target, done in self._requests:
                done.set()

    def _drop(self, fd: int, target: _PollTarget, reason: str) -> None:
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(fd)
        try:
            target.on_lost(reason)
        except Exception:
            log.exception("line poller: lost-port callback failed")


@dataclass(frozen=True, slots=True)
class _PollTarget:
    on_data: Callable[[bytes], None]
    on_lost: Callable[[str], None]
