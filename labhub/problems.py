"""Errors as ``application/problem+json`` (RFC 9457) answers.

Every error the API returns has a real status code and a body with ``type``, ``title``,
``status`` and ``detail``, plus ``errors`` where a request had several things wrong. The
domains' own errors map to statuses here, so routes stay thin and no error becomes a 500.
An error that passes ("the hub is busy storing", "the board is being reopened") also
carries ``Retry-After``, in whole seconds.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from firmware_bridge.actuators import CommandError
from firmware_bridge.errors import (
    DeviceReopeningError,
    DeviceUnavailableError,
    NoSuchDeviceError,
    RegistryError,
)
from firmware_bridge.firmata import FirmataError
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
    InvalidTextError,
    PipelineClosedError,
    RunStateError,
    UnknownRunError,
    UnknownSeriesError,
)
from sensors.pipeline import QueueFullError, StorageFailedError
from sensors.quantities import UnitError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
# A full ingest queue drains in about a second (a batch of 1,000 commits in well under
# that); telling devices two seconds spreads their retries past the next batch.
QUEUE_FULL_RETRY_AFTER_S = 2


class Problem(Exception):
    """An error answer: raise it from a route to return problem+json."""

    def __init__(
        self, status: int, title: str, detail: str, *, errors: list[dict[str, Any]] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors
        self.retry_after_s = retry_after_s


def problem_response(
    status: int, title: str, detail: str, *, errors: list[dict[str, Any]] | None = None,
    instance: str | None = None, retry_after_s: float | None = None,
) -> JSONResponse:
    """A problem+json response; ``retry_after_s`` adds ``Retry-After`` (whole seconds)."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status,
                            "detail": detail}
    if instance is not None:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    headers = (None if retry_after_s is None
               else {"Retry-After": str(max(1, math.ceil(retry_after_s)))})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


# An error maps by the nearest of these classes in its MRO (a subclass before its base).
_DOMAIN_STATUS: list[tuple[type[Exception], int, str]] = [
    (NoSuchDeviceError, 404, "No such device"),
    (RegistryError, 422, "Invalid device settings"),
    (CommandError, 422, "Command not allowed"),
    (DeviceReopeningError, 409, "Device is being opened"),
    (DeviceUnavailableError, 409, "Device cannot take commands now"),
    (FirmataError, 409, "Device cannot take commands now"),
    (DecodeError, 400, "Payload does not decode"),
    (UnitError, 422, "Unit does not fit"),
    (UnknownSeriesError, 404, "No such series"),
    (UnknownRunError, 404, "No such run"),
    (RunStateError, 409, "Run state does not allow this"),
    (InvalidTextError, 422, "Invalid text"),
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


def _retry_after(exc: Exception) -> float | None:
    """When to try again after an error that passes, or None."""
    if isinstance(exc, DeviceReopeningError):
        return exc.retry_after_s
    if isinstance(exc, QueueFullError):
        return QUEUE_FULL_RETRY_AFTER_S
    return None


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into problem+json."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.title, exc.detail, errors=exc.errors,
                                instance=request.url.path, retry_after_s=exc.retry_after_s)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = {404: "Not found", 405: "Method not allowed",
                 413: "Body too large"}.get(exc.status_code, "Error")
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
                return problem_response(status, title, str(exc), instance=request.url.path,
                                        retry_after_s=_retry_after(exc))

            return handler

        app.add_exception_handler(exc_type, _make())

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem_response(500, "Internal error",
                                f"the hub hit an unexpected {type(exc).__name__}; see its log",
                                instance=request.url.path)
