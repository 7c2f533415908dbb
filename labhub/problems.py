"""Errors as ``application/problem+json`` (RFC 9457) answers.

Every error the API returns has a real status code and a body with ``type``, ``title``,
``status`` and ``detail``, plus ``errors`` where a request had several things wrong. The
domains' own errors map to statuses here, so routes stay thin and no error becomes a 500.
An error that passes ("the hub is busy storing", "the board is being reopened") also
carries ``Retry-After``, in whole seconds.

The OpenAPI document describes these answers with one schema, ``Problem``
(:class:`ProblemOut`); :func:`problem_responses` is how a route declares the statuses it
can answer with. A method a path does not take is a 405 whose ``Allow`` header lists the
methods it does take.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

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
    UnknownSiteError,
)
from sensors.pipeline import QueueFullError, StorageFailedError
from sensors.quantities import UnitError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
# A full ingest queue drains in about a second (a batch of 1,000 commits in well under
# that); telling devices two seconds spreads their retries past the next batch.
QUEUE_FULL_RETRY_AFTER_S = 2


class ProblemErrorOut(BaseModel):
    """One thing wrong with a request: where, and what."""

    model_config = ConfigDict(title="ProblemError")

    where: str = Field(description="where in the request: `query.limit`, `body.items.0`, "
                                   "`row 3, column tag`")
    message: str


class ProblemOut(BaseModel):
    """An error answer (RFC 9457 ``application/problem+json``)."""

    model_config = ConfigDict(title="Problem")

    type: str = Field(examples=["about:blank"])
    title: str = Field(examples=["Not found in the inventory"])
    status: int = Field(ge=400, le=599, examples=[404])
    detail: str = Field(examples=["no asset with tag 'VC-0001'"])
    instance: str | None = Field(default=None, description="the path of the request")
    errors: list[ProblemErrorOut] | None = Field(
        default=None, description="each thing wrong, where a request had several")


PROBLEM_SCHEMA_REF = "#/components/schemas/Problem"
# What each status means across the API, as the document's descriptions say it.
_STATUS_MEANING: dict[int, str] = {
    400: "The body is not in the format it says it is",
    401: "No valid session or token: sign in, or send `Authorization: Bearer <token>` "
         "(`WWW-Authenticate` says so)",
    403: "The caller may not do this (here): the detail names the permission missing, or "
         "a write with the session cookie lacks its `X-CSRF-Token` header",
    404: "Something the request names does not exist",
    405: "The path does not take this method (`Allow` lists those it takes)",
    409: "The request conflicts with the current state (taken, stale version, wrong "
         "state); a board being reopened also sends `Retry-After`",
    413: "The body is larger than the hub accepts",
    415: "The body's media type is not one this route reads",
    429: "Too many failed sign-ins for this name or address: `Retry-After` says when to "
         "try again",
    422: "The request is not valid: a parameter or field out of its rules, a query "
         "parameter the route does not take, or a value the domain refuses",
    502: "A request this LabHub made to another one (a hub's contact with its central) "
         "failed: the detail says what failed and where",
    503: "The hub cannot take this now (busy storing, shutting down, storage failing); "
         "`Retry-After` says when to try again",
}
_RETRY_AFTER_HEADER = {
    "Retry-After": {
        "description": "whole seconds to wait before trying again, when the error passes",
        "required": False,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}


_WWW_AUTHENTICATE_HEADER = {
    "WWW-Authenticate": {
        "description": "how to authenticate: `Bearer realm=\"labhub\"`",
        "required": True,
        "schema": {"type": "string"},
    }
}
WWW_AUTHENTICATE = 'Bearer realm="labhub"'


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` entries of problem+json answers with ``statuses``."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {
            "description": _STATUS_MEANING.get(status, "Error"),
            "content": {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_SCHEMA_REF}}},
        }
        if status in (409, 429, 503):
            entry["headers"] = dict(_RETRY_AFTER_HEADER)
        if status == 401:
            entry["headers"] = dict(_WWW_AUTHENTICATE_HEADER)
        out[status] = entry
    return out


def _flat_routes(routes: list[Any]) -> list[Any]:
    """The app's routes, those of included routers among them (FastAPI may keep an
    included router as one entry)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: included routes are copied into the app's list
        return list(routes)
    return [context.original_route for context in iter_route_contexts(routes)]


def meant_template(request: Request) -> tuple[str, list[str]] | None:
    """The path template the request's path means, and the methods of its routes.

    A key in a path may hold slashes (``/sites/{code:path}``), so ``/sites/X/rollout`` also
    matches ``/sites/{code}``; the template with the most fixed text is the one the path
    means, as the document shows it.
    """
    by_template: dict[str, set[str]] = {}
    for route in _flat_routes(request.app.router.routes):
        route_methods = getattr(route, "methods", None)
        template = getattr(route, "path_format", None)
        if not route_methods or template is None:
            continue
        match, _ = route.matches({**request.scope, "method": next(iter(route_methods))})
        if match is not Match.NONE:
            by_template.setdefault(template, set()).update(route_methods)
    if not by_template:
        return None
    meant = max(by_template, key=lambda t: len(re.sub(r"\{[^}]*\}", "", t)))
    return meant, sorted(by_template[meant])


def allowed_methods(request: Request) -> list[str]:
    """The methods the request's path takes: those of every route of the template it
    means (:func:`meant_template`)."""
    meant = meant_template(request)
    return [] if meant is None else meant[1]


def refuse_other_template(request: Request) -> None:
    """A 405 for a method the meant path template does not take, where a route of another
    template caught the path through a key that may hold slashes (``PATCH
    /sites/X/retire`` is not a correction of a site ``X/retire``; a dependency of every
    route)."""
    route = request.scope.get("route")
    template = getattr(route, "path_format", None)
    if template is None or ":path}" not in getattr(route, "path", ""):
        return
    meant = meant_template(request)
    if meant is not None and meant[0] != template:
        raise StarletteHTTPException(405)


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
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A problem+json response; ``retry_after_s`` adds ``Retry-After`` (whole seconds)."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status,
                            "detail": detail}
    if instance is not None:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    headers = dict(headers or {})
    if retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after_s)))
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
    (UnknownSiteError, 422, "Not a site of this hub's inventory"),
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


# What a value that misses a pattern of the schema should be, in words, by pattern (filled
# where each pattern is defined): "should match '^[A-Za-z0-9]...'" tells a teacher little.
# A message may also be made from the value that missed (which character, where).
PATTERN_MESSAGES: dict[str, str | Callable[[Any], str]] = {}


def _message(error: Any) -> str:
    """A validation error's message, in words where its pattern has some."""
    if error.get("type") == "extra_forbidden":
        return "is not a field of this body (a typo, or a field that cannot be sent here)"
    if error.get("type") == "string_pattern_mismatch":
        words = PATTERN_MESSAGES.get(str((error.get("ctx") or {}).get("pattern")))
        if callable(words):
            return words(error.get("input"))
        if words:
            return words
    return str(error.get("msg", ""))


def _retry_after(exc: Exception) -> float | None:
    """When to try again after an error that passes, or None."""
    if isinstance(exc, DeviceReopeningError):
        return exc.retry_after_s
    if isinstance(exc, QueueFullError):
        return QUEUE_FULL_RETRY_AFTER_S
    return None


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into problem+json."""
    # Imported here: the access package reads Problem from this module.
    from labhub.access.accounts import (
        InvalidAccountValueError,
        NameTakenError,
        UnknownAccountError,
    )
    from labhub.access.caller import Forbidden
    from labhub.access.classes import ClassFullError, JoiningClosedError, UnknownClassError
    from labhub.access.gate import NotSignedIn
    from labhub.access.passwords import PasswordRuleError
    from labhub.access.trail import record_refusal

    async def _log_refusal(request: Request, status: int, permission: str | None,
                           site: str | None = None) -> None:
        """The refusal's audit entry (bounded, see ``labhub.access.trail``); a database
        that cannot take it does not change the answer."""
        caller = getattr(request.state, "caller", None)
        try:
            await run_in_threadpool(record_refusal, request, status=status,
                                    permission=permission, site=site,
                                    actor=None if caller is None else caller.name)
        except SQLAlchemyError as exc:
            log.warning("the refusal of %s could not be written to the audit log: %s",
                        request.url.path, exc)

    @app.exception_handler(NotSignedIn)
    async def _not_signed_in(request: Request, exc: NotSignedIn) -> JSONResponse:
        await _log_refusal(request, 401, None if exc.permission is None
                           else exc.permission.value)
        return problem_response(
            401, "Not signed in", "this needs a signed-in person or a token: sign in "
            "(POST /api/v1/auth/sign-in) or send Authorization: Bearer <token>",
            instance=request.url.path, headers={"WWW-Authenticate": WWW_AUTHENTICATE})

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> JSONResponse:
        await _log_refusal(request, 403, exc.permission.value, exc.site)
        return problem_response(403, "Forbidden", str(exc), instance=request.url.path)

    for account_error, account_status, account_title in (
            (UnknownAccountError, 404, "No such account or token"),
            (NameTakenError, 409, "Name taken"),
            (InvalidAccountValueError, 422, "Invalid value"),
            (PasswordRuleError, 422, "Invalid password"),
            (UnknownClassError, 404, "No such class or student"),
            (JoiningClosedError, 404, "No class open for joining"),
            (ClassFullError, 409, "Class full")):

        def _account(status: int = account_status, title: str = account_title) -> Any:
            async def handler(request: Request, exc: Exception) -> JSONResponse:
                return problem_response(status, title, str(exc), instance=request.url.path)

            return handler

        app.add_exception_handler(account_error, _account())

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        headers = {"WWW-Authenticate": WWW_AUTHENTICATE} if exc.status == 401 else None
        return problem_response(exc.status, exc.title, exc.detail, errors=exc.errors,
                                instance=request.url.path, retry_after_s=exc.retry_after_s,
                                headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = {404: "Not found", 405: "Method not allowed",
                 413: "Body too large"}.get(exc.status_code, "Error")
        headers = dict(exc.headers or {})
        detail = str(exc.detail)
        if exc.status_code == 405:
            # Starlette names only the first route that matched the path; a path often has
            # a GET route and a POST route, so ask every route.
            allow = allowed_methods(request)
            headers["Allow"] = ", ".join(allow)
            detail = f"{request.method} is not a method of {request.url.path}; it takes " \
                     f"{', '.join(allow)}"
        return problem_response(exc.status_code, title, detail, instance=request.url.path,
                                headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"where": ".".join(str(p) for p in e.get("loc", ())), "message": _message(e)}
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
