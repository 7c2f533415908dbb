"""What a route may use, one typed dependency each: the running ``Hub`` (hardware,
pipeline, database), the settings, and the limiter that keeps uploads waiting on storage
from taking every worker thread.

Routes declare ``hub: HubDep`` and call the hub's methods; none reaches into
``request.app.state`` or the supervisor's readers. The app's lifespan opens the hub and
hands it over with :func:`install`.
"""

from __future__ import annotations

from typing import Annotated

from anyio import CapacityLimiter
from fastapi import Depends, FastAPI, Request

from labhub.settings import Settings
from labhub.wiring import Hub

# Uploads that wait for storage run on worker threads; at most this many at once, apart
# from the pool other routes use, so a stalled database never leaves a stop_all command
# or the health check without a thread.
UPLOAD_THREADS = 20


def install(app: FastAPI, hub: Hub) -> None:
    """Make ``hub`` the app's hub (from its lifespan, inside the event loop)."""
    app.state.hub = hub
    app.state.upload_limiter = CapacityLimiter(UPLOAD_THREADS)


def get_hub(request: Request) -> Hub:
    """The running hub."""
    hub: Hub = request.app.state.hub
    return hub


def settings_of(request: Request) -> Settings:
    """The hub's settings (the app's, also before its lifespan opened the hub)."""
    settings: Settings = request.app.state.settings
    return settings


def get_upload_limiter(request: Request) -> CapacityLimiter:
    """The limiter of the threads uploads wait on."""
    limiter: CapacityLimiter = request.app.state.upload_limiter
    return limiter


HubDep = Annotated[Hub, Depends(get_hub)]
SettingsDep = Annotated[Settings, Depends(settings_of)]
UploadLimiter = Annotated[CapacityLimiter, Depends(get_upload_limiter)]
