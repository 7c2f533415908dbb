"""The live feed: readings and device states, as they happen, for the Live pages' streams.

The ingest pipeline calls :meth:`LiveFeed.readings_committed` on its writer thread once a
submission's readings are committed (a pipeline listener); the app shell calls
:meth:`LiveFeed.status_changed` when a device goes online or offline, and a small thread
of the feed asks the device registry every :data:`STATUS_POLL_S` while someone watches (a
board the supervisor marks offline says so nowhere else). Each becomes an event with an id
that only grows, kept in a ring buffer of fixed size and handed to every subscriber
(an open ``/live/events`` stream) that may see its site.

The writer thread must never wait for a browser: each subscriber has a bounded queue, and
one that falls behind (a phone on a bad link) loses its queue and is told to ``reset``
(the page fetches the current values again) instead of holding up ingest or the others.
A stream that reconnects with ``Last-Event-ID`` gets the events after that id from the
ring, or a ``reset`` when the ring no longer holds them (or the id is from another run of
the hub). With nobody watching, a committed submission costs one check and a counter (so
a later reconnect knows it missed something), unless a page was opened in the last
:data:`LINGER_S`: its stream is about to connect, or a phone lost the network for a
moment, and the ring keeps what they will ask for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, Literal

from sqlalchemy import Engine

from firmware_bridge import registry
from sensors.pipeline import StoredReading

log = logging.getLogger(__name__)

RING_EVENTS: Final = 4096  # events kept for reconnects: minutes of a lab's kits
RING_BYTES: Final = 4_000_000  # and at most this much JSON: the ring's memory bound
QUEUE_EVENTS: Final = 512  # per subscriber; more waiting means it is behind: reset it
QUEUE_BYTES: Final = 2_000_000  # and this much text waiting (big uploads' events) too
SPARK_POINTS: Final = 30  # readings of one series kept per event (a sparkline's length)
STATUS_POLL_S: Final = 3.0  # how often the registry is asked for devices' states
LINGER_S: Final = 120.0  # after a page or a stream, keep events this long for it

Visibility = Callable[[str | None], bool]
Kind = Literal["readings", "status"]


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """One event of the feed: its id, kind, the site it belongs to (None: the hub's own),
    its data as JSON text, and the lines a stream sends."""

    id: int
    kind: Kind
    site: str | None
    data: str
    wire: str  # the event as a stream sends it, made once for every stream


def _event(id: int, kind: Kind, site: str | None, data: str) -> LiveEvent:
    return LiveEvent(id, kind, site, data, f"id: {id}\nevent: {kind}\ndata: {data}\n\n")


class Subscription:
    """One stream's place in the feed: the events it may see, waiting to be sent.

    Filled on the feed's threads, drained on the event loop of its stream."""

    def __init__(self, visible: Visibility, loop: asyncio.AbstractEventLoop) -> None:
        self.visible = visible
        self._loop = loop
        self._wake = asyncio.Event()
        self._queue: deque[LiveEvent] = deque()
        self._bytes = 0
        self._lock = threading.Lock()
        self._pending = False
        self.behind = False  # its queue overflowed: it needs a reset
        self.closed = False

    def push(self, event: LiveEvent) -> None:
        """Queue ``event`` (any thread); never blocks."""
        with self._lock:
            if len(self._queue) >= QUEUE_EVENTS or self._bytes > QUEUE_BYTES:
                self._queue.clear()  # drop them all: the page resyncs from a snapshot
                self._bytes = 0
                self.behind = True
            else:
                self._queue.append(event)
                self._bytes += len(event.wire)
            if self._pending:
                return
            self._pending = True
        self._tell()

    def end(self) -> None:
        """The feed closes: the stream ends."""
        with self._lock:
            self.closed = True
            self._pending = True
        self._tell()

    def _tell(self) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody to tell
            self._loop.call_soon_threadsafe(self._wake.set)

    async def next(self, timeout: float) -> tuple[list[LiveEvent], bool]:
        """The events queued (waiting at most ``timeout`` seconds for one), and whether
        the subscriber fell behind meanwhile (then the list is empty)."""
        if not self._pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
        with self._lock:
            self._wake.clear()
            self._pending = False
            events = list(self._queue)
            self._queue.clear()
            self._bytes = 0
            behind, self.behind = self.behind, False
        return ([] if behind else events), behind


class LiveFeed:
    """The hub's one feed (see the module's docstring). Thread-safe."""

    def __init__(self, engine: Engine | None = None) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        # Ids start at the clock (µs), so an id from an earlier run of the hub is older
        # than the ring and gets a reset, never someone else's events.
        self._last_id = time.time_ns() // 1000
        self._ring: deque[LiveEvent] = deque()
        self._ring_bytes = 0
        self._subs: set[Subscription] = set()
        self._wanted_until = 0.0
        self._online: dict[str, bool] = {}
        self._closed = threading.Event()
        self._poller: threading.Thread | None = None

    # -- producers ---------------------------------------------------------------------

    def readings_committed(self, _source: str, site: str | None,
                           readings: list[StoredReading]) -> None:
        """The pipeline's listener (its writer thread): short, never blocks on a reader."""
        if not self._subs and time.monotonic() > self._wanted_until:
            self._skip()
            return
        kept: dict[tuple[str, str], deque[StoredReading]] = {}
        for reading in readings:
            key = (reading[0], reading[1])
            found = kept.get(key)
            if found is None:
                found = kept[key] = deque(maxlen=SPARK_POINTS)
            found.append(reading)
        rows = [[device, channel, value, unit, ts]
                for series in kept.values()
                for device, channel, value, ts, unit, _quantity in series]
        self._publish("readings", site, json.dumps(rows, separators=(",", ":")))

    def status_changed(self, device: str, site: str | None, online: bool) -> None:
        """A device went online or offline (any thread)."""
        with self._lock:
            if self._online.get(device) == online:
                return
            self._online[device] = online
        if not self._subs and time.monotonic() > self._wanted_until:
            self._skip()
            return
        self._publish("status", site, json.dumps(
            {"device": device, "online": online, "at": time.time_ns() // 1000},
            separators=(",", ":")))

    def _skip(self) -> None:
        """Nobody watches: an event that is not kept still moves the id on, so a stream
        that reconnects later knows it missed one."""
        with self._lock:
            self._last_id += 1
            if self._ring:
                self._ring.clear()
                self._ring_bytes = 0

    def _publish(self, kind: Kind, site: str | None, data: str) -> None:
        with self._lock:
            self._last_id += 1
            event = _event(self._last_id, kind, site, data)
            self._ring.append(event)
            self._ring_bytes += len(event.wire)
            while len(self._ring) > RING_EVENTS or self._ring_bytes > RING_BYTES:
                self._ring_bytes -= len(self._ring.popleft().wire)
            subs = list(self._subs)
        for sub in subs:
            if sub.visible(site):
                sub.push(event)

    # -- consumers ---------------------------------------------------------------------

    @property
    def last_id(self) -> int:
        """The newest event's id (a page rendered now starts its stream after it)."""
        with self._lock:
            return self._last_id

    def page_opened(self) -> int:
        """A page is about to open a stream: keep events for it; the id it starts after."""
        with self._lock:
            self._wanted_until = time.monotonic() + LINGER_S
            return self._last_id

    def subscribe(self, visible: Visibility, loop: asyncio.AbstractEventLoop,
                  since: int | None) -> tuple[Subscription, list[LiveEvent] | None]:
        """A new subscriber, and the events after ``since`` it may see (None: the ring no
        longer holds them all, or ``since`` is not an id of this run: it needs a reset).
        ``since`` None: from now on."""
        sub = Subscription(visible, loop)
        with self._lock:
            if self._closed.is_set():
                sub.closed = True
            self._subs.add(sub)
            last = self._last_id
            if since is None or since == last:
                return sub, []
            oldest = self._ring[0].id if self._ring else last + 1
            if since > last or since < oldest - 1:
                return sub, None
            missed = [e for e in self._ring if e.id > since]
        return sub, [e for e in missed if visible(e.site)]

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)
            self._wanted_until = time.monotonic() + LINGER_S

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    # -- the registry's states ---------------------------------------------------------

    def start(self) -> LiveFeed:
        """Start asking the registry for devices' states (when an engine was given)."""
        if self.engine is not None and self._poller is None:
            self._poller = threading.Thread(target=self._poll, name="live-feed-status",
                                            daemon=True)
            self._poller.start()
        return self

    def _poll(self) -> None:
        first = True
        while not self._closed.wait(0 if first else STATUS_POLL_S):
            if not self._subs and not first:
                continue
            first = False
            try:
                assert self.engine is not None
                with self.engine.connect() as conn:
                    found = [(d.id, d.site, d.online)
                             for d in registry.list_devices(conn=conn)]
            except Exception as exc:  # the next round tries again
                log.warning("live feed: device states not read: %s", exc)
                continue
            self.states(found)

    def states(self, devices: Iterable[tuple[str, str | None, bool]]) -> None:
        """Devices' states as the registry has them: each change becomes an event (the
        first time a device is seen, it is only noted)."""
        for device, site, online in devices:
            with self._lock:
                known = self._online.get(device)
                if known is None:
                    self._online[device] = online
                    continue
            if known != online:
                self.status_changed(device, site, online)

    def close(self) -> None:
        """End every stream and stop the poller (the hub stops)."""
        self._closed.set()
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            sub.end()
        if self._poller is not None and self._poller is not threading.current_thread():
            self._poller.join(5)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()
