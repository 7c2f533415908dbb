"""The served hub's idle RSS and its time from start to API ready. (Part of ``bench/ops.py``.)"""

from __future__ import annotations

from collections.abc import Iterator


def measure(smoke: bool) -> Iterator[str]:
    """The part's lines of figures."""
    yield from ()
