"""Long ranges from rollups, and rollup upkeep during ingest. (Part of ``bench/ops.py``.)"""

from __future__ import annotations

from collections.abc import Iterator


def measure(smoke: bool) -> Iterator[str]:
    """The part's lines of figures."""
    yield from ()
