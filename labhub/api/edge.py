"""What every request meets before a route works on it: a limit on its body's size, and no
control character in its path and query, nor NUL in its body.

:class:`BodyLimit` is ASGI middleware around the whole app. Uploads (a readings batch, a
device's own data, an inventory CSV import) may be up to ``max_body_bytes``; every other
request up to ``max_json_body_bytes``. A ``Content-Length`` over the limit is answered 413
at once, before a byte of the body is read; a body without one (chunked) is counted as it
streams in, and refused at the first chunk past the limit, so the hub never holds more
than the limit of any request.

:func:`refuse_nul` is a dependency of every route: a path or query parameter holding a
character that free text may not hold (:mod:`labtext.printable`: a control character
other than a tab or a line break, or a bidirectional text control), or a NUL in any string
of a JSON body, is a 422 naming where it is. PostgreSQL text refuses NUL (a lookup or a
write with one would be a 500), and no name, key or note of LabHub ever holds one. The
OpenAPI document says the same: every string parameter and body field has a pattern
(``labhub.api.common``'s ``Name``, ``Text``, ``Key`` ...), so the fields a body declares
are refused by their schema first; the check of the body is for what a schema cannot
reach.

:class:`HostAllowList` answers 400, before any routing, a request whose ``Host`` is not a
name the hub answers to (``allowed_hosts``): a web page on a name of its own that the
attacker points at the hub's address (DNS rebinding) gets nothing. :func:`refuse_media_type`
(a dependency of every route) answers 415 to a body whose ``Content-Type`` is not one the
route's ``requestBody`` lists in the OpenAPI document: a cross-site form or a ``text/plain``
fetch cannot write through a JSON route, as only ``application/json`` makes a browser ask
first (CORS), and the hub answers no such question. :class:`SecurityHeaders` gives every
answer ``nosniff``, a referrer policy, no framing, and a content security policy: pages run
only scripts and styles served by the hub itself.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from collections.abc import Iterable, Iterator
from typing import Any, Final

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from labhub.access.who import is_page_path
from labhub.api import document
from labhub.problems import Problem, problem_response
from labhub.settings import Settings
from labtext.printable import NUL, UnprintableTextError, unprintable_in

log = logging.getLogger(__name__)

# Routes whose body is an upload (up to ``max_body_bytes``): they read it themselves, as
# it streams, and keep a bad one as a dead letter. Every other route takes a small body.
UPLOAD_ROUTES: Final = (
    ("POST", re.compile(r"/api/v1/readings")),
    ("POST", re.compile(r"/api/v1/devices/[^/]+/data")),
    ("POST", re.compile(r"/api/v1/import/[^/]+")),
    ("POST", re.compile(r"/import")),  # the import page's upload (labhub.web.imports)
)
TOO_LARGE_TITLE: Final = "Body too large"
# A central takes a hub's batch in pieces of up to twice ``network_batch_bytes`` (a batch
# is about that size; its last section may run over): labhub.api.network.
NETWORK_BATCH_ROUTE: Final = ("PUT", re.compile(r"/api/v1/network/batches/[^/]+"))


def body_limit(settings: Settings, method: str, path: str) -> tuple[int, str]:
    """The largest body, in bytes, the hub reads for ``method`` on ``path``, and the name
    of the setting that sets it."""
    if method == NETWORK_BATCH_ROUTE[0] and NETWORK_BATCH_ROUTE[1].fullmatch(path):
        return 2 * settings.network_batch_bytes, "network_batch_bytes"
    for upload_method, pattern in UPLOAD_ROUTES:
        if method == upload_method and pattern.fullmatch(path):
            return settings.max_body_bytes, "max_body_bytes"
    return settings.max_json_body_bytes, "max_json_body_bytes"


class BodyTooLargeError(StarletteHTTPException):
    """A body that streamed past its route's limit (raised from ``receive``; answered 413
    by the app's HTTP error handler, or by :class:`BodyLimit` if it gets that far)."""

    def __init__(self, detail: str) -> None:
        super().__init__(413, detail)


class BodyLimit:
    """ASGI middleware: refuse a request body past its route's limit with a 413."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        limit, setting = body_limit(self.settings, method, path)
        detail = (f"the body is over {limit} bytes, the most {method} {path} takes "
                  f"(setting {setting})")
        declared = _content_length(scope)
        # A page's form reads its body and meets the limit as it streams, so the person
        # gets a page that says "too large" in their language rather than JSON.
        if declared is not None and declared > limit and not is_page_path(path):
            await problem_response(413, TOO_LARGE_TITLE, detail, instance=path)(
                scope, receive, send)
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(detail)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLargeError:
            if started:
                raise
            await problem_response(413, TOO_LARGE_TITLE, detail, instance=path)(
                scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


# -- NUL ------------------------------------------------------------------------------------


def _strings(doc: Any, where: str) -> Iterator[tuple[str, str]]:
    """Every string of a JSON document (keys too) with its place, ``body.items.3.tag``;
    without recursion, as a document may nest as deep as the JSON parser allows."""
    stack: list[tuple[Any, str]] = [(doc, where)]
    while stack:
        value, place = stack.pop()
        if isinstance(value, str):
            yield value, place
        elif isinstance(value, dict):
            for key, item in value.items():
                yield str(key), place
                stack.append((item, f"{place}.{key}"))
        elif isinstance(value, list):
            stack.extend((item, f"{place}.{i}") for i, item in enumerate(value))


def _refuse(place: str, text: str) -> None:
    position = text.find(NUL)
    if position < 0:
        return
    message = str(UnprintableTextError(NUL, position + 1))
    raise Problem(422, "Invalid text",
                  f"{place}: {message}; no text LabHub stores may hold NUL",
                  errors=[{"where": place, "message": message}])


def _refuse_unprintable(place: str, text: str) -> None:
    bad = unprintable_in(text, free_text=True)
    if bad is None:
        return
    message = str(UnprintableTextError(bad[1], bad[0]))
    raise Problem(422, "Invalid text",
                  f"{place}: {message}; a path or query may hold no control character "
                  "other than a tab or a line break",
                  errors=[{"where": place, "message": message}])


async def refuse_nul(request: Request) -> None:
    """422 for a control character in a path or query parameter (a tab or a line break
    aside), or a NUL in a JSON body's strings (a dependency of every route; an upload's
    body is the pipeline's to judge)."""
    for name, value in request.path_params.items():
        if isinstance(value, str):
            _refuse_unprintable(f"path.{name}", value)
    for name, value in request.query_params.multi_items():
        _refuse_unprintable("query", name)
        _refuse_unprintable(f"query.{name}", value)
    route = request.scope.get("route")
    if getattr(route, "body_field", None) is None or not await request.body():
        return
    try:
        doc = await request.json()  # the route parsed it already; this is its copy
    except ValueError:
        return  # not JSON: the route's own validation answers
    for text, place in _strings(doc, "body"):
        _refuse(place, text)


# -- Host -----------------------------------------------------------------------------------

_ANY_ADDRESS: Final = frozenset({"0.0.0.0", "::", ""})  # noqa: S104 (names, not a bind)


def default_allowed_hosts(settings: Settings) -> list[str]:
    """The names the hub answers to when ``allowed_hosts`` is empty: this computer by its
    loopback names, its own name (and ``name.local``, as mDNS gives it on the school's
    network), and the address it listens on when that is one address."""
    names = ["localhost", "127.0.0.1", "::1"]
    hostname = socket.gethostname().lower().rstrip(".")
    if hostname:
        short = hostname.split(".", 1)[0]
        for name in dict.fromkeys((hostname, short)):
            names += [name, name if name.endswith(".local") else f"{name}.local"]
    host = settings.host.strip().lower().strip("[]")
    if host not in _ANY_ADDRESS:
        names.append(host)
    return list(dict.fromkeys(names))


def allowed_hosts(settings: Settings) -> frozenset[str]:
    """The names in ``Host`` the hub answers to (``allowed_hosts``, or the default list);
    an IP address is answered besides (:func:`host_answered`)."""
    return frozenset(settings.allowed_hosts or default_allowed_hosts(settings))


def host_name(header: str) -> str:
    """The name of a ``Host`` header, without its port, lower case: ``[::1]:8000`` is
    ``::1``, ``Lab.Local.:8000`` is ``lab.local``."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def host_answered(name: str, allowed: Iterable[str]) -> bool:
    """Whether the hub answers a request for ``name`` (a :func:`host_name`): a name on the
    list, or any IP address. An address cannot be a rebinding: a page that a browser
    fetched from an address has that address as its origin."""
    if name in allowed:
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostAllowList:
    """ASGI middleware: a 400 problem+json for a request whose ``Host`` is not one the hub
    answers to, before the request reaches any route."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.allowed = allowed_hosts(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        header = _header(scope, b"host")
        name = host_name(header) if header is not None else ""
        if host_answered(name, self.allowed):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        detail = (f"this hub does not answer to host {name!r}; add it to allowed_hosts"
                  if header is not None else
                  "the request has no Host header; this hub answers only requests that "
                  "name one of its allowed_hosts")
        await _log_foreign_host(scope, name)
        await problem_response(400, "Host not allowed", detail, instance=scope["path"])(
            scope, receive, send)


async def _log_foreign_host(scope: Scope, name: str) -> None:
    """The audit entry of a request to a Host the hub does not answer to (a DNS rebinding
    attempt, or a name missing from ``allowed_hosts``), bounded like every refusal."""
    from labhub.access.trail import record_refusal  # the access package reads this one

    app = scope.get("app")
    if app is None or getattr(app.state, "hub", None) is None:
        return  # not started: nothing to write to
    try:
        await run_in_threadpool(record_refusal, Request(scope), status=400, permission=None,
                                why=f"host {name!r} is not in allowed_hosts")
    except SQLAlchemyError as exc:
        log.warning("the refusal of host %r could not be written to the audit log: %s",
                    name, exc)


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == wanted:
            text: str = value.decode("latin-1")
            return text
    return None


# -- media types ----------------------------------------------------------------------------

UNSUPPORTED_TITLE: Final = "Unsupported media type"
# A body sent without a Content-Type is bytes of no stated kind (RFC 9110, 8.3).
NO_TYPE: Final = "application/octet-stream"


def media_type(content_type: str | None) -> str:
    """The media type of a ``Content-Type`` header, without parameters, lower case."""
    if not content_type:
        return NO_TYPE
    return content_type.split(";", 1)[0].strip().lower() or NO_TYPE


def takes_media_type(sent: str, takes: Iterable[str]) -> bool:
    """Whether a route that takes the media types ``takes`` reads a body of ``sent``: one
    of them, or any ``application/...+json`` where it takes ``application/json``."""
    taken = {media_type(t) for t in takes}
    if sent in taken:
        return True
    return ("application/json" in taken and sent.startswith("application/")
            and sent.endswith("+json"))


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    if length is not None:
        return length.strip() not in ("", "0")
    return "transfer-encoding" in request.headers


def refuse_media_type(request: Request) -> None:
    """415 for a body whose media type is not one the route reads, as its operation's
    ``requestBody`` in the OpenAPI document lists them (a dependency of every route); a
    route without a body in the document, or a request without one, passes."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not _has_body(request):
        return
    takes = document.body_media_types(request.app, route, request.method.lower())
    if takes is None:
        return
    header = request.headers.get("content-type")
    sent = media_type(header)
    if takes_media_type(sent, takes):
        return
    what = f"the body is {sent}" if header else "the body has no Content-Type"
    raise Problem(415, UNSUPPORTED_TITLE,
                  f"{what}; {request.method} {route.path_format} takes "
                  f"{' or '.join(media_type(t) for t in takes)} (send it with that "
                  "Content-Type)")


# -- security headers -----------------------------------------------------------------------

# Pages: scripts, styles and images of the hub's own only; nothing inline, no plugins, no
# framing. Every other answer (JSON, CSV, SVG) loads and runs nothing if opened by itself;
# a PDF only may not be framed (the browser's PDF viewer is a plugin of its own).
# 'wasm-unsafe-eval' lets a page compile WebAssembly, and nothing else (no eval, no new
# Function): the scan forms' camera reads QR codes with ZXing-C++ compiled to WebAssembly
# (static/camera.js) where the browser has no BarcodeDetector, the .wasm served by the hub.
PAGE_POLICY: Final = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "
                      "img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                      "frame-ancestors 'none'")
DATA_POLICY: Final = "default-src 'none'; frame-ancestors 'none'"
PDF_POLICY: Final = "frame-ancestors 'none'"


def content_policy(content_type: bytes) -> bytes:
    """The ``Content-Security-Policy`` of an answer of ``content_type``."""
    kind = content_type.split(b";", 1)[0].strip().lower()
    if kind == b"text/html":
        return PAGE_POLICY.encode()
    if kind == b"application/pdf":
        return PDF_POLICY.encode()
    return DATA_POLICY.encode()
_ALWAYS: Final = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
)


class SecurityHeaders:
    """ASGI middleware: the headers every answer carries. A route's own
    ``Content-Security-Policy`` (the docs pages') is kept."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                for name, value in _ALWAYS:
                    if name not in present:
                        headers.append((name, value))
                if b"content-security-policy" not in present:
                    content_type = next((v for n, v in headers if n.lower() == b"content-type"),
                                        b"")
                    headers.append((b"content-security-policy", content_policy(content_type)))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
