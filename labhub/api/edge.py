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
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Final

from fastapi import Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from labhub.problems import Problem, problem_response
from labhub.settings import Settings
from labtext.printable import NUL, UnprintableTextError, unprintable_in

# Routes whose body is an upload (up to ``max_body_bytes``): they read it themselves, as
# it streams, and keep a bad one as a dead letter. Every other route takes a small body.
UPLOAD_ROUTES: Final = (
    ("POST", re.compile(r"/api/v1/readings")),
    ("POST", re.compile(r"/api/v1/devices/[^/]+/data")),
    ("POST", re.compile(r"/api/v1/import/[^/]+")),
)
TOO_LARGE_TITLE: Final = "Body too large"


def body_limit(settings: Settings, method: str, path: str) -> tuple[int, str]:
    """The largest body, in bytes, the hub reads for ``method`` on ``path``, and the name
    of the setting that sets it."""
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
        if declared is not None and declared > limit:
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
