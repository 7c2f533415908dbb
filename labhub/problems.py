"""Errors as ``application/problem+json`` (RFC 9457) answers.

Every error the API returns has a real status code and a body with ``type``, ``title``,
``status`` and ``detail``, plus ``errors`` where a request had several things wrong. The
domains' own errors map to statuses here, so routes stay thin and no error becomes a 500.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from inventory.errors import (
    ConflictError,
    InvalidTransitionError,
    InvalidValueError,
    NotFoundError,
    StaleVersionError,
    WrongSiteError,
)
from sensors.errors import (
    DecodeError,
    PipelineClosedError,
    RunStateError,
    UnknownRunError,
    UnknownSeriesError,
)
from sensors.pipeline import QueueFullError, StorageFailedError
from sensors.quantities import UnitError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """An error answer: raise it from a route to return problem+json."""

    def __init__(
        self, status: int, title: str, detail: str, *, errors: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors


def problem_response(
    status: int, title: str, detail: str, *, errors: list[dict[str, Any]] | None = None,
    instance: str | None = None,
) -> JSONResponse:
    """A problem+json response."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status,
                            "detail": detail}
    if instance is not None:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


_DOMAIN_STATUS: list[tuple[type[Exception], int, str]] = [
    (DecodeError, 400, "Payload does not decode"),
    (UnitError, 422, "Unit does not fit"),
    (UnknownSeriesError, 404, "No such series"),
    (UnknownRunError, 404, "No such run"),
    (RunStateError, 409, "Run state does not allow this"),
    (QueueFullError, 503, "Hub is busy storing readings"),
    (PipelineClosedError, 503, "Hub is shutting down"),
    (StorageFailedError, 503, "Storage failed"),
    (NotFoundError, 404, "Not found in the inventory"),
    (WrongSiteError, 409, "Wrong site"),
    (StaleVersionError, 409, "Changed since it was read"),
    (ConflictError, 409, "Already taken"),
    (InvalidTransitionError, 409, "Not allowed in the current state"),
    (InvalidValueError, 422, "Invalid value"),
]


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into problem+json."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.title, exc.detail, errors=exc.errors,
                                instance=request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "Error")
        return problem_response(exc.status_code, title, str(exc.detail),
                                instance=request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"where": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{e['where']}: {e['message']}" for e in errors)
        return problem_response(422, "Invalid request", detail, errors=errors,
                                instance=request.url.path)

    for exc_type, status, title in _DOMAIN_STATUS:

        def _make(status: int = status, title: str = title) -> Any:
            async def handler(request: Request, exc: Exception) -> JSONResponse:
                return problem_response(status, title, str(exc), instance=request.url.path)

            return handler

        app.add_exception_handler(exc_type, _make())

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem_response(500, "Internal error",
                                f"the hub hit an unexpected {type(exc).__name__}; see its log",
                                instance=request.url.path)
