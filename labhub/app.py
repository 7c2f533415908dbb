"""The FastAPI application: opens the database and the ingest pipeline for its lifetime.

``create_app`` builds an app for given settings (tests build many, each on its own
database). The hub itself (database, ingest pipeline, hardware) is ``labhub.wiring.Hub``; the app
holds one for its lifetime, and routes reach it through ``labhub.api.deps.HubDep``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi_offline import FastAPIOffline
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from firmware_bridge.registry import DeviceSettings
from labhub import __version__, heap, metrics, problems
from labhub.access import audit
from labhub.access.gate import needs
from labhub.access.limits import SignInLimiter
from labhub.access.permissions import P
from labhub.access.who import is_page_path
from labhub.api import access as access_api
from labhub.api import classes as classes_api
from labhub.api import deps, docs_pages, document, edge, inventory_movements
from labhub.api import devices as devices_api
from labhub.api import inventory as inventory_api
from labhub.api import inventory_io as inventory_io_api
from labhub.api import inventory_transfers as inventory_transfers_api
from labhub.api import jobs as jobs_api
from labhub.api import metrics as metrics_api
from labhub.api import network as network_api
from labhub.api import network_admin as network_admin_api
from labhub.api import network_conflicts as network_conflicts_api
from labhub.api import network_hub as network_hub_api
from labhub.api import network_views as network_views_api
from labhub.api import reminders as reminders_api
from labhub.api import schedules as schedules_api
from labhub.api import sensors as sensors_api
from labhub.settings import Settings
from labhub.web import pages as web_pages
from labhub.wiring import Hub, Kit

log = logging.getLogger(__name__)

PAGE_GZIP_LEVEL = 6  # HTML, CSS and JS shrink ~4x; level 9 gains ~1% for twice the CPU


class PagesCompressed:
    """ASGI middleware: gzip for the pages and their files (HTML, CSS, JS) when the browser
    takes it; never the API's answers (their streams and sizes stay as they are), nor an
    event stream (Starlette leaves ``text/event-stream`` alone: a stream must not wait
    for a compressor's buffer)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=500, compresslevel=PAGE_GZIP_LEVEL)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_page_path(scope["path"]):
            await self.gzip(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def create_app(
    settings: Settings | None = None, *,
    kits: Sequence[Kit | tuple[str, DeviceSettings]] = (),
    hardware: bool = True,
    jobs: bool | None = None,
) -> FastAPI:
    """The hub's HTTP app for ``settings`` (read from file and environment when None);
    ``kits`` are extra ports with the settings of the device on each (virtual kits).
    ``hardware=False`` serves the API and pages only (a worker of a central's
    ``labhub serve --workers N``): no serial ports, MQTT or sync in this process.
    ``jobs``: run the scheduler (by default as ``hardware``; the workers do, and take
    turns)."""
    settings = settings or Settings()
    heap.return_large_frees_to_the_system()  # big upload bodies must not stay resident

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        hub = Hub(settings)
        try:
            hub.start(hardware=hardware, jobs=jobs)
        except BaseException:
            hub.close()
            raise
        for kit in kits:
            if not isinstance(kit, Kit):
                kit = Kit(*kit)
            hub.attach(kit.url, kit.settings, device_id=kit.device_id, name=kit.name)
        audit.prune_at_start(hub.engine, keep_days=settings.audit_log_days)
        metrics.for_hub(hub)  # the commit histogram counts from the start, not the first scrape
        deps.install(app, hub)
        try:
            yield
        finally:
            hub.close()

    # Docs pages use Swagger UI and ReDoc files shipped in a package: no CDN, works offline;
    # the pages themselves are labhub's (docs_pages: no inline script).
    app = FastAPIOffline(
        docs_url=None, redoc_url=None,
        title="LabHub",
        version=__version__,
        summary="Sensor readings, Arduino kits and lab inventory for STEAM innovation labs.",
        lifespan=lifespan,
        dependencies=[
            # A method the path's own template does not take is a 405, even where a key
            # with slashes lets another template's route catch the path.
            Depends(problems.refuse_other_template),
            # A body of a media type the route does not read (a cross-site form, text/plain
            # to a JSON route) is a 415, before anything reads it as JSON.
            Depends(edge.refuse_media_type),
            # Every route refuses a query parameter it does not declare (a filter it lacks).
            Depends(document.refuse_unknown_query),
            Depends(edge.refuse_nul),  # no NUL in any path, query or JSON body
        ],
    )
    app.state.settings = settings
    app.state.sign_in_limiter = SignInLimiter()  # failed sign-ins, in memory
    app.add_middleware(PagesCompressed)  # the pages travel compressed (phones, old Wi-Fi)
    app.add_middleware(edge.BodyLimit, settings=settings)  # every body has a size limit
    # Outermost last: a Host the hub does not answer to meets nothing else, and every
    # answer (that 400 too) carries the security headers.
    app.add_middleware(edge.HostAllowList, settings=settings)
    app.add_middleware(edge.SecurityHeaders)
    problems.install(app)
    app.include_router(access_api.router)
    app.include_router(classes_api.router)
    app.include_router(sensors_api.router)
    app.include_router(devices_api.router)
    app.include_router(inventory_api.router)
    app.include_router(inventory_transfers_api.router)
    app.include_router(inventory_movements.router)
    app.include_router(inventory_io_api.router)
    app.include_router(network_api.router)
    app.include_router(network_hub_api.router)
    app.include_router(network_views_api.router)
    app.include_router(network_admin_api.router)
    app.include_router(network_conflicts_api.router)
    app.include_router(jobs_api.router)
    app.include_router(reminders_api.router)
    app.include_router(schedules_api.router)
    app.include_router(metrics_api.router)

    @app.get("/api/v1/health", tags=["hub"], summary="Is the hub well?",
             dependencies=[needs(P.PUBLIC)])
    def health(hub: deps.HubDep) -> dict[str, Any]:
        """The hub's version, database and ingest state; with MQTT on, whether the broker
        is connected (and why not) and the outbox: messages queued, dropped, delivered."""
        return hub.health()

    document.install(app)
    docs_pages.install(app)
    web_pages.install(app)  # the web pages and /static
    return app
