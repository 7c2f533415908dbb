"""The readings' up stream: the readings journal's spans after a position, columnar and
compressed (labhub.network.codec)."""

from __future__ import annotations

from labhub.network.streams import UpStream

UP: tuple[UpStream, ...] = ()
