"""Helpers every router shares: request-scoped connections on the hub's database, times,
paging, and the body types of numbers and times that refuse booleans.

Paging is ``limit`` and ``offset`` on every list, bounded in the OpenAPI document itself
(``Offset``, :func:`limit_query`), so a client reads the rule there and a value outside it
is a 422, never a number the database cannot hold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from sqlalchemy import Connection, Engine

from inventory.values import KEY_MAX, KEY_RE, NOTE_MAX, TEXT_MAX
from labhub.access.gate import gated_caller
from labhub.api.deps import HubDep
from labhub.problems import PATTERN_MESSAGES, Problem
from labtext import times
from labtext.printable import (
    FILLED_TEXT_PATTERN,
    FREE_TEXT_PATTERN,
    NAME_PATTERN,
    UnprintableTextError,
    unprintable_in,
)
from labtext.times import format_time
from sensors.pipeline import IngestPipeline


def engine_of(hub: HubDep) -> Engine:
    """The hub's database engine."""
    return hub.engine


def pipeline_of(hub: HubDep) -> IngestPipeline:
    """The hub's ingest pipeline."""
    return hub.pipeline


def read_conn(hub: HubDep) -> Iterator[Connection]:
    """A connection for a request that reads, or that commits by itself when it must."""
    with hub.engine.connect() as conn:
        yield conn


def write_conn(hub: HubDep) -> Iterator[Connection]:
    """A connection in a transaction that commits when the route returns without error."""
    with hub.engine.begin() as conn:
        yield conn


# A code or tag as the inventory takes it (inventory.values.check_key), stated in the schema.
KEY_PATTERN = f"^{KEY_RE.pattern}$"
Key = Annotated[str, Field(min_length=1, max_length=KEY_MAX, pattern=KEY_PATTERN)]
PATTERN_MESSAGES[KEY_PATTERN] = ("a code or tag may hold only letters, digits and . _ / - "
                                 "(no spaces), and must start with a letter or digit")

# Text as labtext.printable takes it, stated in the schema, for every string a request
# sends (body fields, path and query parameters): a name (a site's or model's name, a run
# title, who did it) holds no control character and is not blank; free text (a note)
# may also hold tabs and line breaks. Narrow the length with another Field where the
# domain's limit is other: ``Annotated[Name, Field(max_length=16)]``.
Name = Annotated[str, Field(min_length=1, max_length=TEXT_MAX, pattern=NAME_PATTERN)]
Text = Annotated[str, Field(max_length=NOTE_MAX, pattern=FREE_TEXT_PATTERN)]


def actor_of(request: Request) -> str:
    """Who makes a change, as the history records it: the caller the route's gate let
    through (a person's account name, or ``device <id>`` for a device token). A request
    never names it."""
    return gated_caller(request).name


Actor = Annotated[str, Depends(actor_of)]
# The person a change is recorded for, when not the one signed in (a coordinator checking
# in a loan for a student); the history keeps both.
OnBehalfOf = Annotated[Name | None, Field(
    description="the person this was done for, when not the one signed in (the history "
                "keeps both)", examples=["Lucía Pérez, 7B"])]
# Free text that must say something (a fault, the work done on a repair).
FilledText = Annotated[str, Field(min_length=1, max_length=NOTE_MAX,
                                  pattern=FILLED_TEXT_PATTERN)]


def _unprintable(*, free_text: bool) -> Callable[[Any], str]:
    def words(value: Any) -> str:
        bad = unprintable_in(str(value), free_text=free_text)
        if bad is not None:
            return str(UnprintableTextError(bad[1], bad[0]))
        return "is blank"
    return words


PATTERN_MESSAGES[NAME_PATTERN] = _unprintable(free_text=False)
PATTERN_MESSAGES[FREE_TEXT_PATTERN] = _unprintable(free_text=True)
PATTERN_MESSAGES[FILLED_TEXT_PATTERN] = _unprintable(free_text=True)
# A key in a path: looked up as it is (a key that names nothing is a 404), so only the
# free-text rule, which the edge (labhub.api.edge) holds every path and query to.
PathText = Annotated[str, Field(pattern=FREE_TEXT_PATTERN)]


class BodyIn(BaseModel):
    """A request body: a field it does not declare is a 422, never silently dropped (a
    typo would otherwise change nothing and say nothing)."""

    model_config = ConfigDict(extra="forbid")


# What If-Match may hold: a version (3, "3", W/"3"), * or nothing (expected_version).
_IF_MATCH_PATTERN = r'^(\*|(W/)?"?[0-9]+"?)?$'
IfMatch = Annotated[str | None, Header(pattern=_IF_MATCH_PATTERN),
                    WithJsonSchema({"type": "string", "pattern": _IF_MATCH_PATTERN})]
PATTERN_MESSAGES[_IF_MATCH_PATTERN] = 'If-Match must be a version number like "3" (or W/"3")'

# The forms of a time that labtext.times.parse_time reads, stated in the schema: RFC 3339
# with a zone, epoch seconds as digits (up to 11: below the milliseconds threshold), or a
# number of epoch seconds or milliseconds up to the end of the year 9999.
TIME_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "format": "date-time"},
        {"type": "string", "pattern": "^[0-9]{1,11}$"},
        {"type": "number", "minimum": 0, "maximum": times.TIME_MAX_US // times.US_PER_MS},
    ],
    "description": "RFC 3339 time with a zone (2026-03-01T14:05:00Z), or epoch seconds "
                   "(milliseconds from 10^11 on)",
}
# A query's time may also be now or a time before it (labtext.times.parse_query_time).
RELATIVE_TIME_SCHEMA: dict[str, Any] = {
    "type": "string", "pattern": r"^(now|(now\s*)?-\s*[0-9]{1,12}\s*(s|m|min|h|d|w))$"}


def time_query(description: str) -> Any:
    """A query parameter that takes a time: ``TIME_SCHEMA``'s text forms, or ``now`` and a
    time before now (``-1h``), read by :func:`parse_query_time`."""
    return Query(description=description,
                 json_schema_extra={"anyOf": [*TIME_SCHEMA["anyOf"][:2], RELATIVE_TIME_SCHEMA]})


# An offset past this skips more rows than any hub lists, and stays far below the 64-bit
# integers SQLite and PostgreSQL take for OFFSET (2**63 was a 500 on both).
OFFSET_MAX = 1_000_000_000

Offset = Annotated[int, Query(ge=0, le=OFFSET_MAX,
                              description="rows to skip, for the next pages")]


def limit_query(cap: int | None = None) -> Any:
    """The ``limit`` parameter of a list: 1 to ``cap`` rows (the hub's ``page_limit_max``
    also caps it, and the document says the smaller)."""
    return Query(ge=1, le=cap, description="rows in a page")


# A read connection lives until the response is sent: a streamed export reads from it.
ReadConn = Annotated[Connection, Depends(read_conn)]
# A write commits when the route returns, before the response starts (scope "function"):
# FastAPI's default would run the commit after the response is sent, so a client could be
# told 201 for a write it cannot see yet, or for one whose commit then fails.
WriteConn = Annotated[Connection, Depends(write_conn, scope="function")]
Pipeline = Annotated[IngestPipeline, Depends(pipeline_of)]


def iso(ts: int | None) -> str | None:
    """Microseconds since the epoch as RFC 3339 UTC text (``...Z``)."""
    return None if ts is None else format_time(ts)


def parse_time(value: Any, where: str) -> int | None:
    """A time by the rules of :func:`labtext.times.parse_time` (RFC 3339 with a zone, or
    epoch seconds/milliseconds), as microseconds; ``None`` or ``""`` is no time.

    Raises :class:`Problem` (422) naming ``where`` for anything else, a time without a
    zone included: LabHub never guesses one.
    """
    if value is None or value == "":
        return None
    try:
        return times.parse_time(value)
    except times.TimeTextError as exc:
        raise Problem(422, "Invalid time", f"{where}: {exc}") from None


def no_boolean(value: Any) -> Any:
    # JSON true/false would pass as 1.0/0.0 (pydantic's lax floats): the decoders' rule
    # for JSON readings (sensors.decoders) refuses them, and so does every body here.
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is a boolean, not a number")
    return value


def _no_boolean_time(value: Any) -> Any:
    if isinstance(value, bool):  # else it is epoch second 1 or 0, in 1970
        raise ValueError(f"{str(value).lower()} is a boolean, not a time: give RFC 3339 text "
                         "like 2026-03-01T14:05:00Z, or epoch seconds")
    return value


# A number in a body: JSON true and false are refused, not read as 1.0 and 0.0.
Number = Annotated[float, BeforeValidator(no_boolean)]
# A time in a body, read by parse_time: RFC 3339 text or epoch seconds/ms, never a boolean.
TimeIn = Annotated[str | float, BeforeValidator(_no_boolean_time), WithJsonSchema(TIME_SCHEMA)]
def parse_query_time(value: Any, where: str) -> int | None:
    """A time a query asks for: :func:`parse_time`'s, or ``now`` or a time before now
    (``-30m``, ``-1h``, ``-2d``, ``-1w``; :func:`labtext.times.parse_query_time`).

    Raises :class:`Problem` (422) naming ``where`` for anything else.
    """
    if value is None or value == "":
        return None
    try:
        return times.parse_query_time(value)
    except times.TimeTextError as exc:
        raise Problem(422, "Invalid time", f"{where}: {exc}") from None


def zone_of(tz: str | None, lab_zone: str, where: str = "tz") -> str:
    """The IANA zone a request names: the lab's (``lab_zone``) for none or ``local``;
    422 naming ``where`` for a zone that does not exist."""
    try:
        return times.zone_name(tz, local=lab_zone)
    except times.TimeTextError as exc:
        raise Problem(422, "Invalid time zone", f"{where}: {exc}") from None


def check_page(limit: int, offset: int, cap: int) -> None:
    """Refuse a page larger than the configured cap, naming the cap."""
    if limit < 1 or limit > cap:
        raise Problem(422, "Invalid page", f"limit must be between 1 and {cap}, not {limit}")
    if offset < 0:
        raise Problem(422, "Invalid page", f"offset must be 0 or more, not {offset}")


def expected_version(if_match: str | None, body_version: int | None) -> int | None:
    """The version a writer read, from an ``If-Match`` header (``"3"``, ``W/"3"`` or
    ``3``) or the body's ``expected_version``; 422 if it is not a number, 409 if the two
    differ."""
    if if_match is None or if_match.strip() in ("", "*"):
        return body_version
    text = if_match.strip().removeprefix("W/").strip('"')
    if not text.isdigit():
        raise Problem(422, "Invalid If-Match",
                      f"If-Match: {if_match!r} is not a version number like \"3\"")
    version = int(text)
    if body_version is not None and body_version != version:
        # Two versions read: at most one is the stored one, so the write is stale either
        # way (a 409, as a stale version is; no schema can tie a header to a body field).
        raise Problem(409, "Changed since it was read",
                      f"If-Match says version {version}, expected_version {body_version}: "
                      "at most one of them is the current version")
    return version
