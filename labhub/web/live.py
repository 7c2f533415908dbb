"""The Live pages: each device of one's lab with its channels' current values, units and
sparklines, updated as readings arrive; a projector view with big numbers; and the stream
of Server-Sent Events that feeds them (``GET /live/events``).

A page is rendered on the hub first (the newest reading of each series the person may
read, and its last minutes for the sparkline), so it shows values without JavaScript;
``live.js`` then opens an ``EventSource`` on ``/live/events?since=<the page's last event
id>`` and updates the values. The stream is the hub's :class:`labhub.live_feed.LiveFeed`,
filtered once per stream by the caller's scope of ``readings.read`` (computed when it
connects). A stream that reconnects sends ``Last-Event-ID`` (or ``since``) and gets what
it missed from the feed's ring, or a ``reset`` event, on which the page fetches
``/live/panel`` (the same panel, current values) and swaps it in.

A stream never keeps the hub from stopping: it ends when the hub closes its feed, and when
uvicorn is asked to stop (uvicorn waits for open responses before the app's shutdown, so a
stream watches uvicorn's ``should_exit`` flag, found through the SIGTERM handler uvicorn
installs; other servers end streams through the feed's close).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, StreamingResponse
from sqlalchemy import Connection

from firmware_bridge import registry
from labhub.access.caller import Caller
from labhub.access.gate import On, Visible, gated_caller, needs
from labhub.access.permissions import Permission
from labhub.api.deps import HubDep
from labhub.live_feed import LiveFeed
from labhub.web import pages
from labhub.web.i18n import N_
from labhub.web.pages import PageRoute
from sensors import queries
from sensors.export import series_label
from sensors.quantities import unit_text

router = APIRouter(route_class=PageRoute, include_in_schema=False)

HEARTBEAT_S: Final = 15.0  # a comment line this often keeps proxies from closing a stream
RETRY_MS: Final = 3000  # how soon a browser reconnects a stream that broke
STREAM_MAX_S: Final = 3600.0  # a stream ends after this; the browser reconnects at once
COALESCE_S: Final = 0.1  # after sending, wait this long for more (latency target: 0.5 s)
EXIT_CHECK_S: Final = 0.5  # how often a stream looks whether the server is stopping
SPARK_WINDOW_US: Final = 5 * 60 * 1_000_000  # a sparkline drawn at first: the last minutes
SPARK_POINTS: Final = 30  # the points of a sparkline (the page keeps as many)
# Series whose sparkline starts with their last minutes (one short query each); past
# these (a network-wide view of hundreds), a sparkline starts with the newest value.
SPARK_HISTORY_SERIES: Final = 100
WHOLE_NUMBERS: Final = frozenset({"analog"})  # quantities shown without decimals

KIND_NAMES: Final = {"lines": N_("USB board"), "firmata": N_("USB board (Firmata)"),
                     "mqtt": N_("Wi-Fi node (MQTT)")}


@dataclass(frozen=True, slots=True)
class LiveChannel:
    """A channel of a device as the page shows it."""

    channel: str
    label: str
    unit: str | None  # as a reader writes it (°C)
    digits: int
    value: float | None
    ts: int | None
    points: list[float]

    def spark(self) -> str:
        """The sparkline's points in its 100 x 24 box (the page's script redraws it)."""
        return spark_points(self.points)


@dataclass(slots=True)
class LiveDevice:
    """A device and its channels; ``online`` None: not in the registry (an upload's);
    ``last_seen``: its newest reading's time."""

    id: str
    name: str
    kind: str | None
    online: bool | None
    last_seen: int | None
    channels: list[LiveChannel] = field(default_factory=list)


def live_devices(conn: Connection, visible: Callable[[str | None], bool],
                 lang: str) -> list[LiveDevice]:
    """The devices and series ``visible`` lets one see, each series with its newest
    reading and the values of its last minutes (the sparkline's first points)."""
    shown: dict[str, LiveDevice] = {
        d.id: LiveDevice(d.id, d.name or d.id, d.kind, d.online, None)
        for d in registry.list_devices(conn=conn) if visible(d.site)}
    hidden = registry.renamed_channels(conn=conn)
    rows = [r for r in queries.list_series(conn=conn)
            if visible(r.site) and r.channel not in hidden.get(r.device, ())]
    newest = queries.latest(conn=conn, series_ids=[r.id for r in rows]) if rows else {}
    for index, row in enumerate(rows):
        last = newest.get(row.id)
        points: list[float] = [] if last is None else [last.value]
        if last is not None and index < SPARK_HISTORY_SERIES:
            recent = queries.read_range(conn=conn, series_id=row.id,
                                        start=last.ts - SPARK_WINDOW_US, end=last.ts + 1)
            points = [value for _, value, _ in recent[-SPARK_POINTS:]]
        device = shown.get(row.device)
        if device is None:
            device = shown[row.device] = LiveDevice(row.device, row.device, None, None, None)
        if last is not None and (device.last_seen is None or last.ts > device.last_seen):
            device.last_seen = last.ts
        device.channels.append(LiveChannel(
            channel=row.channel, label=series_label(row, lang),
            unit=None if row.unit is None else unit_text(row.unit, lang),
            digits=0 if row.quantity in WHOLE_NUMBERS else 1,
            value=None if last is None else last.value, ts=None if last is None else last.ts,
            points=points))
    return sorted(shown.values(), key=lambda d: (d.online is False, d.name.lower(), d.id))


SPARK_WIDTH: Final = 100.0  # the sparkline's box (an SVG viewBox; CSS sizes it)
SPARK_HEIGHT: Final = 24.0


def spark_points(values: list[float]) -> str:
    """An SVG polyline's ``points`` for ``values``, oldest first, filling the box (one
    value: a flat line; none: nothing). live.js draws the same way."""
    if not values:
        return ""
    low, high = min(values), max(values)
    span = high - low or 1.0
    step = SPARK_WIDTH / max(len(values) - 1, 1)
    pad = 2.0
    coords = []
    for i, value in enumerate(values if len(values) > 1 else values * 2):
        y = SPARK_HEIGHT - pad - (value - low) / span * (SPARK_HEIGHT - 2 * pad)
        if high == low:
            y = SPARK_HEIGHT / 2
        coords.append(f"{i * step:.1f},{y:.1f}")
    return " ".join(coords)


def feed_of(request: Request) -> LiveFeed:
    feed: LiveFeed = request.app.state.hub.live
    return feed


def panel_values(request: Request, hub: Any, caller: Caller, *,
                 projector: bool = False) -> dict[str, Any]:
    """What ``live_panel.html`` needs (the Live pages' and the home page's panel)."""
    visible = Visible(request, Permission.READINGS_READ) if caller.has(
        Permission.READINGS_READ) else None
    since = hub.live.page_opened()  # before reading: a reading after it comes as an event
    devices: list[LiveDevice] = []
    if visible is not None:
        with hub.engine.connect() as conn:
            devices = live_devices(conn, visible, pages.language_of(request))
    return {"devices": devices, "since": since, "projector": projector,
            "kind_names": KIND_NAMES, "live_ok": visible is not None}


@router.get("/live", dependencies=[needs(Permission.READINGS_READ, On.NOTHING)])
def live_page(request: Request, hub: HubDep) -> HTMLResponse:
    """The devices of one's lab, live."""
    caller = gated_caller(request)
    return pages.render(request, "live.html", caller=caller,
                        **panel_values(request, hub, caller))


@router.get("/live/projector", dependencies=[needs(Permission.READINGS_READ, On.NOTHING)])
def live_projector(request: Request, hub: HubDep) -> HTMLResponse:
    """The same, with big numbers for a class's projector."""
    caller = gated_caller(request)
    return pages.render(request, "live_projector.html", caller=caller,
                        **panel_values(request, hub, caller, projector=True))


@router.get("/live/panel", dependencies=[needs(Permission.READINGS_READ, On.NOTHING)])
def live_panel(request: Request, hub: HubDep) -> HTMLResponse:
    """The panel alone (the page fetches it after a ``reset`` or a new series):
    ``view=projector`` for the projector's, ``level=3`` for headings under an h2."""
    caller = gated_caller(request)
    level = 3 if request.query_params.get("level") == "3" else 2
    projector = request.query_params.get("view") == "projector"
    return pages.render(request, "live_panel_only.html", caller=caller, level=level,
                        **panel_values(request, hub, caller, projector=projector))


def _since(request: Request) -> int | None:
    given = request.headers.get("last-event-id") or request.query_params.get("since")
    if given is None or not given.isdigit() or len(given) > 20:
        return None if given is None else -1  # an id not of this hub: a reset
    return int(given)


def _exit_flag() -> Callable[[], bool]:
    """Whether the server is stopping: uvicorn's ``should_exit``, read through the
    SIGTERM handler it installs (its bound ``handle_exit``); else never."""
    server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    if server is None or not hasattr(server, "should_exit"):
        return lambda: False
    return lambda: bool(server.should_exit)


async def _stream(feed: LiveFeed, visible: Callable[[str | None], bool],
                  since: int | None, stopping: Callable[[], bool]) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    ends = loop.time() + STREAM_MAX_S
    # Subscribed here, not before the response: a browser gone before its first byte
    # leaves nothing behind.
    sub, missed = feed.subscribe(visible, loop, since)
    try:
        yield f"retry: {RETRY_MS}\n\n"
        if missed is None:
            yield f"id: {feed.last_id}\nevent: reset\ndata: {{}}\n\n"
        elif missed:
            yield "".join(event.wire for event in missed)
        quiet = 0.0
        while not sub.closed and not stopping() and loop.time() < ends:
            events, behind = await sub.next(EXIT_CHECK_S)
            if sub.closed or stopping():
                break
            if behind:
                yield f"id: {feed.last_id}\nevent: reset\ndata: {{}}\n\n"
                quiet = 0.0
            elif events:
                yield "".join(event.wire for event in events)
                quiet = 0.0
                # Events that follow within this time go out together: one write a
                # stream instead of one an event (40 streams, 8 kits: the hub's CPU).
                await asyncio.sleep(COALESCE_S)
            else:
                quiet += EXIT_CHECK_S
                if quiet >= HEARTBEAT_S:
                    yield ": keep-alive\n\n"
                    quiet = 0.0
    finally:
        feed.unsubscribe(sub)


@router.get("/live/events", dependencies=[needs(Permission.READINGS_READ, On.NOTHING)])
async def live_events(request: Request) -> StreamingResponse:
    """Server-Sent Events: ``readings`` (``[[device, channel, value, unit, ts_us], ...]``),
    ``status`` (``{"device", "online", "at"}``) and ``reset`` (fetch the panel again),
    only of the sites where the caller may read readings."""
    visible = await run_in_threadpool(Visible, request, Permission.READINGS_READ)
    return StreamingResponse(
        _stream(feed_of(request), visible, _since(request), _exit_flag()),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

