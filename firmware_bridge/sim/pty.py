"""Pseudo-terminals for the virtual kits: making one, and seeing the host open it.

The virtual climate station and the virtual Firmata board both sit on the master end of a
pseudo-terminal and hand the slave's path to the hub as a board's port. This module owns
what they share: a new pty in raw mode (:func:`open_raw_pty`), closing one
(:func:`close_fds`), and :class:`OpenWatch`, which counts the host's opens of the slave with
inotify, as a real Uno's auto-reset needs (a pty has no DTR line to pulse).
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys
import tty
from typing import NamedTuple


class Pty(NamedTuple):
    """A new pseudo-terminal: the kit's end, the host's end and the host's path to it."""

    master: int
    slave: int
    url: str


def open_raw_pty() -> Pty:
    """A new pseudo-terminal with both ends raw: no echo or line editing before the host
    sets its own modes, so bytes pass as a UART passes them."""
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    return Pty(master, slave, os.ttyname(slave))


def close_fds(*fds: int) -> None:
    """Close the given descriptors, skipping the ones already marked closed (negative)."""
    for fd in fds:
        if fd >= 0:
            os.close(fd)


class OpenWatch:
    """Counts opens of a path with inotify (Linux): every open of the port, however short.

    A hang-up poll alone misses a close and reopen between two looks; a real Uno resets on
    each. Where inotify is missing, :meth:`create` gives None and the caller watches for
    the hang-up instead.
    """

    IN_OPEN = 0x20
    EVENT_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len of the name that follows

    def __init__(self, fd: int, libc: ctypes.CDLL) -> None:
        self.fd = fd
        self._libc = libc
        self._wd = -1

    @classmethod
    def create(cls) -> OpenWatch | None:
        if not sys.platform.startswith("linux"):
            return None
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = int(libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC))
        except (OSError, AttributeError):
            return None
        return cls(fd, libc) if fd >= 0 else None

    def watch(self, path: str) -> None:
        """Watch ``path`` (the old watch ends by itself when its pty goes)."""
        self._wd = int(self._libc.inotify_add_watch(self.fd, os.fsencode(path), self.IN_OPEN))
        if self._wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_add_watch {path}: {os.strerror(err)}")

    def read_opens(self) -> int:
        """Opens of the watched path since the last call."""
        opens = 0
        while True:
            try:
                data = os.read(self.fd, 4096)
            except OSError:  # EAGAIN: all read; EBADF: closed by replug or close
                return opens
            if not data:
                return opens
            offset = 0
            while offset + self.EVENT_HEADER.size <= len(data):
                wd, mask, _cookie, length = self.EVENT_HEADER.unpack_from(data, offset)
                offset += self.EVENT_HEADER.size + length
                if wd == self._wd and mask & self.IN_OPEN:
                    opens += 1

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
