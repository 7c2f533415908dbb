"""How the hub process hands memory it has freed back to the system.

The hub takes bodies of up to 16 MiB (an HTTP upload, a CSV import) in whichever worker
thread serves the request. glibc's malloc serves a block that big with its own mmap and
unmaps it when freed, but after the first such free it raises that threshold to the
block's size, so the next ones come from the heap of the thread's arena, and a freed
block there stays in the process: each of up to 8 arenas per core keeps its own 16 to
32 MiB, and the hub's resident memory climbed under mixed traffic and stayed up. Fixing
the threshold at 1 MiB keeps every big block in its own mapping, given back when freed;
small allocations, the hot path, are not touched. Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # mallopt parameter, from glibc's <malloc.h>
MMAP_THRESHOLD_BYTES = 1024 * 1024  # blocks from 1 MiB up get a mapping of their own


def return_large_frees_to_the_system() -> bool:
    """Fix glibc's mmap threshold at 1 MiB for this process; False where there is no
    glibc ``mallopt`` (musl, macOS, Windows), which changes nothing there."""
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) != 1:
        log.warning("mallopt(M_MMAP_THRESHOLD) refused; freed memory may stay in the process")
        return False
    return True
