"""Helpers every router shares: request-scoped connections on the hub's database, times,
paging, and the body types of numbers and times that refuse booleans."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends
from pydantic import BeforeValidator
from sqlalchemy import Connection, Engine

from labhub.api.deps import HubDep
from labhub.problems import Problem
from labtext import times
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


def _no_boolean(value: Any) -> Any:
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
Number = Annotated[float, BeforeValidator(_no_boolean)]
# A time in a body, read by parse_time: RFC 3339 text or epoch seconds/ms, never a boolean.
TimeIn = Annotated[str | float, BeforeValidator(_no_boolean_time)]
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
    ``3``) or the body's ``expected_version``; 422 if it is not a number or they differ."""
    if if_match is None or if_match.strip() in ("", "*"):
        return body_version
    text = if_match.strip().removeprefix("W/").strip('"')
    if not text.isdigit():
        raise Problem(422, "Invalid If-Match",
                      f"If-Match: {if_match!r} is not a version number like \"3\"")
    version = int(text)
    if body_version is not None and body_version != version:
        raise Problem(422, "Invalid If-Match",
                      f"If-Match says version {version}, expected_version {body_version}")
    return version
