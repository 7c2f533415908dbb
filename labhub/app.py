"""The FastAPI application: opens the database and the ingest pipeline for its lifetime.

``create_app`` builds an app for given settings (tests build many, each on its own
database). The embedded SQLite database is migrated to the newest schema at start; a
PostgreSQL database must be upgraded with ``labhub db upgrade`` first, so that a central
server's schema only changes when its admin says so.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi_offline import FastAPIOffline
from sqlalchemy import text

from labhub import __version__, db, problems
from labhub.api import sensors as sensors_api
from labhub.settings import Settings
from sensors.pipeline import IngestPipeline
from sensors.storage import ReadingStore

log = logging.getLogger(__name__)


class SchemaOutdatedError(RuntimeError):
    """The database's schema is older than this LabHub expects."""


def create_app(settings: Settings | None = None) -> FastAPI:
    """The hub's HTTP app for ``settings`` (read from file and environment when None)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = db.make_engine(settings.resolved_database_url())
        if engine.dialect.name == "sqlite":
            db.upgrade(engine)
        elif db.current_revision(engine) != db.head_revision(engine):
            engine.dispose()
            raise SchemaOutdatedError(
                "the PostgreSQL schema is not up to date: run `labhub db upgrade` first"
            )
        pipeline = IngestPipeline(
            ReadingStore(engine),
            batch_size=settings.ingest_batch_size,
            flush_interval_s=settings.ingest_flush_ms / 1000,
            max_queued=settings.ingest_queue_max,
            future_tolerance_s=settings.future_tolerance_s,
        ).start()
        app.state.engine = engine
        app.state.pipeline = pipeline
        try:
            yield
        finally:
            pipeline.close()
            engine.dispose()

    # Docs pages use Swagger UI and ReDoc files shipped in a package: no CDN, works offline.
    app = FastAPIOffline(
        title="LabHub",
        version=__version__,
        summary="Sensor readings, Arduino kits and lab inventory for STEAM innovation labs.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    problems.install(app)
    app.include_router(sensors_api.router)

    @app.get("/api/v1/health", tags=["hub"], summary="Is the hub well?")
    def health(request: Request) -> dict[str, Any]:
        """The hub's version, database and ingest state."""
        engine = request.app.state.engine
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            database = "ok"
        except Exception as exc:  # the health answer reports, it does not fail
            database = f"error: {type(exc).__name__}"
        counters = request.app.state.pipeline.counters()
        return {
            "status": "ok" if database == "ok" else "degraded",
            "version": __version__,
            "database": database,
            "dialect": engine.dialect.name,
            "queued": counters["queued"],
        }

    return app
