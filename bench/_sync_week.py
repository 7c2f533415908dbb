"""A part of ``bench/sync.py`` (see its text)."""

from __future__ import annotations


def measure(smoke: bool) -> list[str]:
    """This part's lines for ``bench/sync.py``."""
    return []
