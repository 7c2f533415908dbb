"""Helpers every router shares: request-scoped connections on the hub's database, times,
paging."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends
from sqlalchemy import Connection, Engine

from labhub.api.deps import HubDep
from labhub.problems import Problem
from sensors.pipeline import IngestPipeline
from sensors.samples import US_PER_S, from_us, to_us


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


ReadConn = Annotated[Connection, Depends(read_conn)]
WriteConn = Annotated[Connection, Depends(write_conn)]
Pipeline = Annotated[IngestPipeline, Depends(pipeline_of)]


def iso(ts: int | None) -> str | None:
    """Microseconds since the epoch as RFC 3339 UTC text (``...Z``)."""
    if ts is None:
        return None
    text = from_us(ts).isoformat(timespec="microseconds" if ts % US_PER_S else "seconds")
    return text.replace("+00:00", "Z")


EPOCH_MS_THRESHOLD = 100_000_000_000  # epoch numbers above this are milliseconds (after 1973)
TIME_MAX_US = 253_402_300_800 * US_PER_S  # 10000-01-01: no later time has an RFC 3339 form


def parse_time(value: Any, where: str) -> int | None:
    """A time given as RFC 3339 text or epoch seconds/milliseconds, as microseconds.

    Raises :class:`Problem` (422) naming ``where`` for anything else, including text
    without a time zone: LabHub never guesses a zone.
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise Problem(422, "Invalid time", f"{where}: a time, not {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise Problem(422, "Invalid time", f"{where}: {value!r} is not a time")
        scaled = value * 1000 if abs(value) >= EPOCH_MS_THRESHOLD else value * US_PER_S
        if not math.isfinite(scaled) or abs(scaled) > TIME_MAX_US:
            raise Problem(422, "Invalid time", f"{where}: {value!r} is past the year 9999")
        return round(scaled)
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            pass
        else:
            return parse_time(number, where)
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise Problem(
                422, "Invalid time",
                f"{where}: {value!r} is not an RFC 3339 time like 2026-03-01T14:05:00Z",
            ) from None
        if moment.tzinfo is None:
            raise Problem(
                422, "Invalid time",
                f"{where}: {value!r} has no time zone; add Z for UTC or an offset like -05:00",
            )
        return to_us(moment.astimezone(UTC))
    raise Problem(422, "Invalid time", f"{where}: {value!r} is not a time")


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
