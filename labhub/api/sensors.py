"""Readings API: upload, series, latest values, ranges, downsampling, runs, rejects, export.

Uploads read the raw body themselves instead of letting the framework validate it, so
that a malformed body is both answered with a clear problem+json and kept in the
dead-letter table with the reason; nothing a device sends is dropped silently. Once the
body is read, an upload waits for its readings to be durable on a worker thread of its
own (``deps.UPLOAD_THREADS`` at most), never on the event loop: a slow commit delays that
upload, not the health check or a ``stop_all`` command. A queue that stays full for
``SUBMIT_WAIT_S`` is a 503 with ``Retry-After``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial
from typing import Annotated, Any, Literal
from uuid import UUID

from anyio import to_thread
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import Connection

from firmware_bridge import registry
from labhub.access import trail
from labhub.access.caller import Forbidden
from labhub.access.gate import On, Visible, gated_caller, needs, require_at, scope_of
from labhub.access.permissions import P, Role
from labhub.access.sites import device_site, devices_outside, tree_for, with_unsited
from labhub.api.common import (
    BodyIn,
    FilledText,
    Key,
    Name,
    Number,
    Offset,
    PathText,
    Pipeline,
    ReadConn,
    TimeIn,
    WriteConn,
    check_page,
    iso,
    limit_query,
    parse_query_time,
    parse_time,
    time_query,
    zone_of,
)
from labhub.api.deps import HubDep, UploadLimiter, get_hub, settings_of
from labhub.api.document import file_response, json_body
from labhub.problems import Problem, problem_responses
from labtext import times
from labtext.csvtext import DELIMITER_NAMES
from sensors import decoders, export, queries, runs
from sensors.errors import DecodeError, UnknownSiteError
from sensors.pipeline import IngestPipeline, IngestResult
from sensors.samples import Sample
from sensors.storage import DEAD_LETTER_PAYLOAD_MAX, FLAG_SUSPECT, SeriesRow

router = APIRouter(prefix="/api/v1", tags=["readings"])

INGEST_WAIT_S = 30.0  # an upload answers once its readings are durable, or fails after this
# A full queue means storage is far behind: an upload waits this long for room, then is
# told to come back (503, Retry-After) rather than held while devices pile up behind it.
SUBMIT_WAIT_S = 2.0
MAX_READINGS_PER_UPLOAD = 50_000

# -- uploads ------------------------------------------------------------------------------


class ReadingIn(BaseModel):
    """One reading in an upload."""

    channel: Name = Field(examples=["temp"])
    value: Number = Field(examples=[21.5])
    ts: TimeIn | None = Field(
        default=None, description="RFC 3339 time or epoch seconds/ms; arrival time if absent."
    )
    unit: Annotated[Name, Field(max_length=40)] | None = Field(default=None, examples=["degC"])


class ReadingsIn(BaseModel):
    """A batch of readings from one device."""

    device: Name = Field(examples=["station-1"])
    site: Annotated[Name, Field(max_length=100)] | None = Field(default=None,
                                                                examples=["VC-LP-014"])
    readings: list[ReadingIn] = Field(max_length=MAX_READINGS_PER_UPLOAD)


class IngestOut(BaseModel):
    """What the hub did with an upload."""

    accepted: int
    duplicate: int
    suspect: int
    rejected: int


async def _body(request: Request) -> bytes:
    limit: int = settings_of(request).max_body_bytes
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise Problem(413, "Upload too large", f"the body is over {limit} bytes")
    return bytes(body)


def _reject(
    pipeline: IngestPipeline, source: str, body: bytes, reason: str, device: str | None
) -> None:
    pipeline.reject(source=source, payload=body, reason=reason, device=device,
                    timeout=SUBMIT_WAIT_S).wait(INGEST_WAIT_S)


def _store(pipeline: IngestPipeline, samples: list[Sample], device: str,
           site: str | None, body: bytes, where: str, fmt: str | None = None) -> IngestOut:
    """Queue an upload's readings and wait until they are durable (a worker thread). A
    ``site`` that is not one of the inventory's refuses the upload whole: a 422 naming
    ``where`` (the field), and the body kept as a dead letter to replay once it exists."""
    try:
        pipeline.check_site(site, where=f"the upload's {where}")
    except UnknownSiteError as exc:
        pipeline.reject(source="http", payload=body, reason=str(exc), device=device,
                        timeout=SUBMIT_WAIT_S, unknown_site=site,
                        fmt=fmt).wait(INGEST_WAIT_S)
        raise Problem(422, "Not a site of this hub's inventory", str(exc),
                      errors=[{"where": where, "message": str(exc)}]) from None
    ticket = pipeline.submit(samples, device=device, site=site, source="http",
                             timeout=SUBMIT_WAIT_S)
    return _answer(ticket.wait(INGEST_WAIT_S))


async def _off_loop(limiter: UploadLimiter, work: Callable[[], IngestOut]) -> IngestOut:
    """Run an upload's blocking part on a worker thread, keeping the event loop free."""
    return await to_thread.run_sync(work, limiter=limiter)


def _answer(result: IngestResult) -> IngestOut:
    out = IngestOut(
        accepted=result.accepted,
        duplicate=result.duplicate,
        suspect=result.suspect,
        rejected=result.rejected,
    )
    if result.rejected and not (result.accepted or result.duplicate):
        raise Problem(
            422, "Readings rejected",
            f"none of the {result.rejected} readings could be stored; "
            "see GET /api/v1/rejects for each reason",
        )
    return out


# The route reads its body itself (to keep what it cannot store); the document still says
# what it takes, as a schema of its components.
_READINGS_SCHEMA = json_body(ReadingsIn)


@router.post(
    "/readings", response_model=IngestOut, openapi_extra=_READINGS_SCHEMA,
    summary="Upload a batch of readings (JSON)", responses=problem_responses(400, 503),
             dependencies=[needs(P.READINGS_INGEST, On.ROUTE)])
async def post_readings(
    request: Request, pipeline: Pipeline, limiter: UploadLimiter
) -> IngestOut:
    """Store readings of one device; answers once they are durable."""
    body = await _body(request)
    return await _off_loop(limiter, partial(_readings, pipeline, body,
                                            partial(_may_ingest, request)))


def _may_ingest(request: Request, device: str, site: str | None) -> str | None:
    """The site ``device``'s readings are stored at (as given, or the device's site in the
    registry; none: the hub's own), once the caller may upload there; Forbidden otherwise.
    A device token uploads only its own device's readings."""
    caller = gated_caller(request)
    if caller.device_id is not None and caller.device_id != device:
        raise Forbidden(P.READINGS_INGEST, site)
    if site is None:
        with get_hub(request).engine.connect() as conn:
            site = device_site(conn, device)[1]
    require_at(request, P.READINGS_INGEST, site)
    return site


def _readings(pipeline: IngestPipeline, body: bytes,
              may_ingest: Callable[[str, str | None], str | None]) -> IngestOut:
    """Decode, check and store a JSON upload (a worker thread)."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        # json raises RecursionError, not JSONDecodeError, for nesting deeper than ~1,000
        reason = (f"body is not JSON: {exc}" if not isinstance(exc, RecursionError)
                  else "body is not JSON: arrays or objects nested too deeply")
        _reject(pipeline, "http", body, reason, None)
        raise Problem(400, "Body is not JSON", reason) from None
    try:
        batch = ReadingsIn.model_validate(doc)
    except ValueError as exc:
        errors = _validation_errors(exc)
        reason = "; ".join(f"{e['where']}: {e['message']}" for e in errors)
        device = doc.get("device") if isinstance(doc, dict) else None
        _reject(pipeline, "http", body, reason, device if isinstance(device, str) else None)
        raise Problem(422, "Invalid readings", reason, errors=errors) from None
    site = may_ingest(batch.device, batch.site)
    try:
        samples = upload_samples(batch)
    except Problem as exc:
        _reject(pipeline, "http", body, exc.detail, batch.device)
        raise
    return _store(pipeline, samples, batch.device, site, body, "body.site")


def upload_samples(batch: ReadingsIn) -> list[Sample]:
    """An upload's readings as samples (a Problem for a time that does not parse)."""
    return [Sample(r.channel, r.value, parse_time(r.ts, f"readings.{i}.ts"), r.unit)
            for i, r in enumerate(batch.readings)]


def _validation_errors(exc: ValueError) -> list[dict[str, Any]]:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        return [
            {"where": ".".join(str(p) for p in e.get("loc", ())) or "body",
             "message": e.get("msg", "")}
            for e in errors()
        ]
    return [{"where": "body", "message": str(exc)}]


FORMATS = tuple(decoders.DECODERS)
_TEXT: dict[str, Any] = {"schema": {"type": "string", "minLength": 1}}
# The media types a device's own data may come as (each format says what is in it; a body
# without a Content-Type is application/octet-stream). The hub answers 415 to any other,
# a form among them: labhub.api.edge.refuse_media_type reads this list from the document.
# CSV and JSON lines are text of any shape: their schema only says so (a "string" schema
# would make schemathesis send a "non-string" body there, which on the wire is text too).
DEVICE_DATA_MEDIA: dict[str, Any] = {
    "text/plain": _TEXT,
    "text/csv": {"schema": {"description": "CSV text (format csv or opensensemap-csv)"}},
    "application/json": {"schema": {}},
    "application/x-ndjson": {"schema": {"description": "JSON lines (format jsonl)"}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary",
                                            "minLength": 1}},
}


@router.post(
    "/devices/{device}/data", response_model=IngestOut,
    summary="Upload a device's own wire format (Serial Plotter, CSV, JSON lines, Influx, ...)",
    responses=problem_responses(400, 503),
    openapi_extra={"requestBody": {"required": True, "content": DEVICE_DATA_MEDIA}},
    dependencies=[needs(P.READINGS_INGEST, On.ROUTE)],
)
async def post_device_data(
    device: PathText,
    request: Request,
    pipeline: Pipeline,
    limiter: UploadLimiter,
    format: Annotated[str, Query(description=f"one of: {', '.join(FORMATS)}",
                                 json_schema_extra={"enum": list(FORMATS)})] = "plotter",
    site: Key | None = None,
) -> IngestOut:
    """Decode the body in ``format`` and store its readings as ``device``'s."""
    site = await to_thread.run_sync(_may_ingest, request, device, site)
    body = await _body(request)
    if not body:
        raise Problem(422, "Invalid request", "body: the upload is empty",
                      errors=[{"where": "body", "message": "Field required"}])
    if format not in decoders.DECODERS:
        raise Problem(422, "Unknown format",
                      f"format {format!r} is not one of: {', '.join(FORMATS)}")
    return await _off_loop(limiter, partial(_device_data, pipeline, body, device, format,
                                            site))


def _device_data(pipeline: IngestPipeline, body: bytes, device: str, format: str,
                 site: str | None) -> IngestOut:
    """Decode and store a device's own wire format (a worker thread)."""
    try:
        samples = decoders.decode(format, body)
    except DecodeError as exc:
        _reject(pipeline, "http", body, str(exc), device)
        raise Problem(400, "Payload does not decode", str(exc)) from None
    return _store(pipeline, samples, device, site, body, "query.site", format)


# -- series and readings ------------------------------------------------------------------


class SeriesOut(BaseModel):
    """A stored series: one channel of one device."""

    device: str
    channel: str
    quantity: str | None
    label: str
    unit: str | None
    site: str | None
    latest_ts: str | None = None
    latest_value: float | None = None
    latest_suspect: bool | None = None


Lang = Annotated[Literal["es", "en", "pt"] | None, Query(description="language of labels")]


def _lang(request: Request, lang: str | None) -> str:
    return lang or settings_of(request).language


@router.get("/series", response_model=list[SeriesOut], summary="List series with latest values",
            responses=problem_responses(404),
            dependencies=[needs(P.READINGS_READ, On.NOTHING)])
def list_series(
    request: Request,
    conn: ReadConn,
    hub: HubDep,
    device: PathText | None = None,
    site: Key | None = None,
    quantity: PathText | None = None,
    lang: Lang = None,
    renamed: Annotated[bool, Query(description=(
        "also list series that a device's channel map now stores under another name "
        "(their readings are kept, no new ones come)"))] = False,
) -> list[SeriesOut]:
    """Every stored series matching the filters, with its newest reading. ``site`` takes
    the site and every site under it in the lab's tree. A channel that the device's
    channel map renames (``A0`` stored as ``temp``) is listed under its new name only,
    unless ``renamed=true``. Only series at sites where the caller may read readings
    (one with no site is at the hub's own)."""
    sites = None if site is None else hub.site_codes(conn, site)
    visible = Visible(request, P.READINGS_READ)
    rows = [r for r in queries.list_series(conn=conn, device=device, sites=sites,
                                           quantity=quantity) if visible(r.site)]
    if not renamed:
        hidden = registry.renamed_channels(conn=conn)
        rows = [r for r in rows if r.channel not in hidden.get(r.device, ())]
    newest = queries.latest(conn=conn, series_ids=[r.id for r in rows]) if rows else {}
    language = _lang(request, lang)
    out = []
    for r in rows:
        last = newest.get(r.id)
        out.append(
            SeriesOut(
                device=r.device, channel=r.channel, quantity=r.quantity,
                label=export.series_label(r, language), unit=r.unit, site=r.site,
                latest_ts=iso(last.ts) if last else None,
                latest_value=last.value if last else None,
                latest_suspect=bool(last.flags & FLAG_SUSPECT) if last else None,
            )
        )
    return out


class PointOut(BaseModel):
    """One reading."""

    ts: str
    value: float
    suspect: bool


class BucketOut(BaseModel):
    """Aggregates of one time bucket."""

    start: str
    end: str
    count: int
    min: float
    mean: float
    max: float


class RangeOut(BaseModel):
    """Readings of one series over a time range, raw or in buckets."""

    device: str
    channel: str
    quantity: str | None
    unit: str | None
    start: str | None
    end: str | None
    points: list[PointOut] | None = None
    buckets: list[BucketOut] | None = None


Start = Annotated[str | None, time_query(
    "RFC 3339 time, epoch seconds, `now`, or a time before now such as `-30m`, `-1h`, "
    "`-2d`, `-1w` (inclusive)")]
End = Annotated[str | None, time_query(
    "RFC 3339 time, epoch seconds, `now`, or a time before now such as `-30m`, `-1h`, "
    "`-2d`, `-1w` (exclusive)")]
Buckets = Annotated[
    int | None,
    Query(ge=1, le=10_000, description="downsample into this many time buckets (min/mean/max)"),
]


def _range(
    conn: Connection, row: SeriesRow, start: int | None, end: int | None,
    buckets: int | None, limit: int, offset: int,
) -> RangeOut:
    out = RangeOut(device=row.device, channel=row.channel, quantity=row.quantity, unit=row.unit,
                   start=iso(start), end=iso(end))
    if buckets:
        out.buckets = [
            BucketOut(start=iso(b.start) or "", end=iso(b.end) or "", count=b.count,
                      min=b.min, mean=b.mean, max=b.max)
            for b in queries.downsample(conn=conn, series_id=row.id, buckets=buckets,
                                        start=start, end=end)
        ]
    else:
        out.points = [
            PointOut(ts=iso(ts) or "", value=value, suspect=bool(flags & FLAG_SUSPECT))
            for ts, value, flags in queries.read_range(
                conn=conn, series_id=row.id, start=start, end=end, limit=limit, offset=offset
            )
        ]
    return out


@router.get("/readings", response_model=RangeOut, summary="Readings of one series",
            responses=problem_responses(404),
            dependencies=[needs(P.READINGS_READ, On.ROUTE)])
def get_readings(
    request: Request,
    conn: ReadConn,
    device: PathText,
    channel: PathText,
    start: Start = None,
    end: End = None,
    buckets: Buckets = None,
    limit: Annotated[int, limit_query()] = 1000,
    offset: Offset = 0,
) -> RangeOut:
    """Raw readings (paged) or, with ``buckets``, a downsampled range of one series."""
    check_page(limit, offset, settings_of(request).page_limit_max)
    row = queries.get_series(conn=conn, device=device, channel=channel)
    require_at(request, P.READINGS_READ, row.site)
    return _range(conn, row, parse_query_time(start, "start"), parse_query_time(end, "end"),
                  buckets, limit, offset)


# -- export -------------------------------------------------------------------------------

Delimiter = Literal["comma", "semicolon", "tab", ",", ";", "\t"]
# The names of labtext's CSV dialect, and the characters themselves.
_DELIMITERS = {**DELIMITER_NAMES, **{char: char for char in DELIMITER_NAMES.values()}}


def _select(
    request: Request, conn: Connection, device: list[str] | None, channel: list[str] | None,
    site: str | None,
) -> list[SeriesRow]:
    """The series an export takes: a 403 for a ``site`` or a ``device`` outside the
    caller's sites; without them, only the series at the caller's sites."""
    if site is not None:
        require_at(request, P.READINGS_READ, site)
    rows = queries.list_series(conn=conn, site=site)
    if device:
        rows = [r for r in rows if r.device in device]
    if channel:
        rows = [r for r in rows if r.channel in channel]
    visible = Visible(request, P.READINGS_READ)
    hidden = [r for r in rows if not visible(r.site)]
    if hidden and device:
        raise Forbidden(P.READINGS_READ, hidden[0].site or visible.hub_site)
    rows = [r for r in rows if visible(r.site)]
    if not rows:
        raise Problem(404, "Nothing to export", "no stored series match the selection")
    return rows


def _step(conn: Connection, rows: list[SeriesRow], start: int | None, end: int | None,
          precision: str) -> tuple[int, int]:
    """The precision of the times and the window of a shared row (see export.shared_rows)."""
    interval = queries.typical_interval(conn=conn, series_ids=[r.id for r in rows],
                                        start=start, end=end)
    step = times.step_named(precision, interval)
    return step, export.row_window(step, interval)


def _stream_rows(
    request: Request, ids: list[int], start: int | None, end: int | None,
    step: tuple[int, int], notes: list[tuple[int, str]] | None = None,
) -> Iterator[export.Row | export.NotedRow]:
    # The response streams after the route returns, so it opens its own connection.
    with get_hub(request).engine.connect() as conn:
        yield from export.shared_rows(
            queries.iter_wide(conn=conn, series_ids=ids, start=start, end=end),
            width=len(ids), step_us=step[0], window_us=step[1], notes=notes)


def _csv_response(
    request: Request, conn: Connection, rows: list[SeriesRow], start: int | None,
    end: int | None, options: export.CsvOptions, filename: str, precision: str,
    notes: list[tuple[int, str]] | None = None,
) -> StreamingResponse:
    step = _step(conn, rows, start, end, precision)
    body = export.iter_csv(export.columns_for(rows, options.lang),
                           _stream_rows(request, [r.id for r in rows], start, end, step, notes),
                           options, notes=notes is not None)
    return StreamingResponse(
        (chunk.encode("utf-8") for chunk in body),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'},
    )


def _csv_options(
    request: Request, delimiter: str, decimal: str, bom: bool, split: bool, tz: str | None,
    lang: str | None,
) -> export.CsvOptions:
    try:
        return export.CsvOptions(
            delimiter=_DELIMITERS[delimiter],
            decimal="," if decimal == "comma" else ".",
            bom=bom,
            split_datetime=split,
            timezone=zone_of(tz, settings_of(request).timezone),
            lang=_lang(request, lang),
        )
    except ValueError as exc:
        raise Problem(422, "Invalid export options", str(exc)) from None


Decimal = Annotated[Literal["point", "comma"], Query(description="decimal separator")]
# A zone's name as the tz database spells them (America/Argentina/Buenos_Aires, Etc/GMT+5).
TZ_PATTERN = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$"
Tz = Annotated[str | None, Query(
    pattern=TZ_PATTERN, max_length=64,
    description="time zone of the times: `local` (the lab's `timezone` setting, the "
                "default), `UTC`, or an IANA name such as `America/Lima`")]
Precision = Annotated[Literal["auto", "s", "ms", "us"], Query(
    description="precision of the times: `auto` (whole seconds for readings a second or more "
                "apart, milliseconds for faster ones), `s`, `ms` or `us`")]


@router.get("/export.csv", summary="Export readings as CSV (streamed, no caps)",
            response_class=StreamingResponse,
            responses={**file_response("text/csv", "The readings as CSV"),
                       **problem_responses(404)},
            dependencies=[needs(P.READINGS_READ, On.NOTHING)])
def export_csv(
    request: Request,
    conn: ReadConn,
    device: Annotated[list[PathText] | None, Query()] = None,
    channel: Annotated[list[PathText] | None, Query()] = None,
    site: Key | None = None,
    start: Start = None,
    end: End = None,
    delimiter: Delimiter = "comma",
    decimal: Decimal = "point",
    bom: bool = False,
    split: bool = False,
    tz: Tz = None,
    lang: Lang = None,
    precision: Precision = "auto",
) -> StreamingResponse:
    """A wide CSV: one row per time, one column per channel, units in the header."""
    options = _csv_options(request, delimiter, decimal, bom, split, tz, lang)
    rows = _select(request, conn, device, channel, site)
    return _csv_response(request, conn, rows, parse_query_time(start, "start"),
                         parse_query_time(end, "end"), options, "labhub-readings", precision)


@router.get("/export.json", summary="Export readings as JSON (streamed, no caps)",
            response_class=StreamingResponse,
            responses={**file_response("application/json", "The readings as one JSON "
                                       "document", schema={"type": "object"}),
                       **problem_responses(404)},
            dependencies=[needs(P.READINGS_READ, On.NOTHING)])
def export_json(
    request: Request,
    conn: ReadConn,
    device: Annotated[list[PathText] | None, Query()] = None,
    channel: Annotated[list[PathText] | None, Query()] = None,
    site: Key | None = None,
    start: Start = None,
    end: End = None,
    lang: Lang = None,
    tz: Tz = None,
    precision: Precision = "auto",
) -> StreamingResponse:
    """The same selection as the CSV export, as one JSON document."""
    zone = zone_of(tz, settings_of(request).timezone)
    rows = _select(request, conn, device, channel, site)
    t0, t1 = parse_query_time(start, "start"), parse_query_time(end, "end")
    body = export.iter_json(
        export.columns_for(rows, _lang(request, lang)),
        _stream_rows(request, [r.id for r in rows], t0, t1, _step(conn, rows, t0, t1, precision)),
        timezone=zone,
    )
    return StreamingResponse((c.encode() for c in body), media_type="application/json")


# -- runs ---------------------------------------------------------------------------------
# A student may stop and annotate only the runs they started (the role table: "runs.write,
# a student: their own"); a teacher, coordinator or admin any run at their sites.


class RunChannelIn(BodyIn):
    """A channel a run records; ``channel`` ``*`` records every channel of the device."""

    device: Name
    channel: Name = runs.ALL_CHANNELS


class RunIn(BodyIn):
    """A run to start."""

    id: UUID | None = Field(
        default=None, description="the run's id, made by the client (a form's key): the "
        "same id again with the same values answers the run already started (200), not a "
        "second one; with other values it is a 409")
    title: Name = Field(examples=["Sombra vs sol"])
    group: Name | None = Field(default=None, examples=["7B"])
    site: Key | None = None
    channels: list[RunChannelIn] = Field(min_length=1)
    started_at: TimeIn | None = None


class NoteIn(BodyIn):
    """A note to add to a run."""

    text: FilledText
    ts: TimeIn | None = None


class NoteOut(BaseModel):
    """A note of a run."""

    id: str
    ts: str
    text: str


class RunOut(BaseModel):
    """A run with its channels and notes."""

    id: str
    title: str
    group: str | None
    site: str | None
    started_at: str
    stopped_at: str | None
    running: bool
    started_by: str | None = Field(description="the account that started it (null: "
                                               "not known, a run from before it was kept)")
    channels: list[RunChannelIn]
    notes: list[NoteOut]


class RunPage(BaseModel):
    """One page of runs."""

    total: int
    items: list[RunOut]


def _run_out(run: runs.Run) -> RunOut:
    return RunOut(
        id=run.id, title=run.title, group=run.group_name, site=run.site,
        started_at=iso(run.started_at) or "", stopped_at=iso(run.stopped_at),
        running=run.running, started_by=run.started_by,
        channels=[RunChannelIn(device=d, channel=c) for d, c in run.channels],
        notes=[NoteOut(id=n.id, ts=iso(n.ts) or "", text=n.text) for n in run.notes],
    )


def writes_any_run(request: Request, site: str | None) -> bool:
    """Whether the caller its gate let through may stop and annotate anyone's runs at
    ``site``: ``runs.write`` there from a role other than student."""
    caller = gated_caller(request)
    others = replace(caller, grants=tuple(g for g in caller.grants
                                          if g.role is not Role.STUDENT))
    return others.can(P.RUNS_WRITE, site, tree_for(request))


def require_run_writer(request: Request, run: runs.Run) -> None:
    """A 403 unless the caller started ``run`` or may write anyone's runs at its site."""
    caller = gated_caller(request)
    if run.started_by is not None and run.started_by == caller.name:
        return
    if not writes_any_run(request, run.site):
        raise Problem(403, "Not your run", "a student's 'runs.write' covers only the runs "
                      "they started: stopping them and adding notes")


def start_run(request: Request, conn: Connection, body: RunIn) -> tuple[runs.Run, bool]:
    """Start the run ``body`` describes for the caller; whether it is new (see
    :func:`sensors.runs.start_run`: a used ``id`` answers its run)."""
    require_at(request, P.RUNS_WRITE, body.site)
    return runs.start_run(
        conn=conn, title=body.title, group_name=body.group, site=body.site,
        channels=[(c.device, c.channel) for c in body.channels],
        started_at=parse_time(body.started_at, "started_at"),
        started_by=gated_caller(request).name,
        run_id=None if body.id is None else str(body.id),
    )


@router.post("/runs", response_model=RunOut, status_code=201, summary="Start a run",
             responses={200: {"model": RunOut, "description": "The run already started "
                                                               "with this id"},
                        **problem_responses(409)},
             dependencies=[needs(P.RUNS_WRITE, On.ROUTE)])
def create_run(body: RunIn, conn: WriteConn, request: Request, response: Response) -> RunOut:
    """Start recording a data-collection session (at ``site``; none: the hub's own), as
    the signed-in caller (``started_by``)."""
    run, new = start_run(request, conn, body)
    if not new:
        response.status_code = 200
    return _run_out(run)


@router.get("/runs", response_model=RunPage, summary="List runs",
            dependencies=[needs(P.READINGS_READ, On.NOTHING)])
def list_runs(
    request: Request, conn: ReadConn, site: Key | None = None,
    limit: Annotated[int, limit_query()] = 100, offset: Offset = 0,
    mine: Annotated[bool, Query(description="only the runs the caller started")] = False,
) -> RunPage:
    """Runs, newest first. Only runs at sites where the caller may read readings (one
    with no site is at the hub's own), in the total too."""
    check_page(limit, offset, settings_of(request).page_limit_max)
    scope = scope_of(request, P.READINGS_READ)
    total, items = runs.list_runs(conn=conn, site=site, limit=limit, offset=offset,
                                  sites=scope, unsited=with_unsited(scope, tree_for(request)),
                                  started_by=gated_caller(request).name if mine else None)
    return RunPage(total=total, items=[_run_out(r) for r in items])


@router.get("/runs/{run_id}", response_model=RunOut, summary="One run",
            dependencies=[needs(P.READINGS_READ, On.path("run", "run_id"))])
def get_run(run_id: PathText, conn: ReadConn) -> RunOut:
    """A run with its channels and notes."""
    return _run_out(runs.get_run(conn=conn, run_id=run_id))


@router.post("/runs/{run_id}/stop", response_model=RunOut, summary="Stop a run",
             responses=problem_responses(409),
             dependencies=[needs(P.RUNS_WRITE, On.path("run", "run_id"))])
def stop_run(run_id: PathText, conn: WriteConn, request: Request) -> RunOut:
    """Stop recording (a student: a run they started)."""
    require_run_writer(request, runs.get_run(conn=conn, run_id=run_id))
    return _run_out(runs.stop_run(conn=conn, run_id=run_id))


@router.post("/runs/{run_id}/notes", response_model=NoteOut, status_code=201,
             summary="Add a note to a run", responses=problem_responses(409),
             dependencies=[needs(P.RUNS_WRITE, On.path("run", "run_id"))])
def add_note(run_id: PathText, body: NoteIn, conn: WriteConn, request: Request) -> NoteOut:
    """A timestamped note ("10:42 moved the sensor into the shade"; a student: on a run
    they started)."""
    require_run_writer(request, runs.get_run(conn=conn, run_id=run_id))
    note = runs.add_note(conn=conn, run_id=run_id, text=body.text,
                         ts=parse_time(body.ts, "ts"))
    return NoteOut(id=note.id, ts=iso(note.ts) or "", text=note.text)


@router.get("/runs/{run_id}/readings", response_model=list[RangeOut],
            summary="Readings of every channel of a run",
            dependencies=[needs(P.READINGS_READ, On.path("run", "run_id"))])
def run_readings(
    request: Request, run_id: PathText, conn: ReadConn, buckets: Buckets = None,
    limit: Annotated[int, limit_query()] = 1000, offset: Offset = 0,
) -> list[RangeOut]:
    """Each channel's readings between the run's start and stop, raw or downsampled."""
    check_page(limit, offset, settings_of(request).page_limit_max)
    run = runs.get_run(conn=conn, run_id=run_id)
    start, end = runs.run_window(run)
    return [_range(conn, row, start, end, buckets, limit, offset)
            for row in runs.run_series(conn=conn, run=run)]


def _run_rows(conn: Connection, run_id: str) -> tuple[runs.Run, list[SeriesRow]]:
    run = runs.get_run(conn=conn, run_id=run_id)
    rows = runs.run_series(conn=conn, run=run)
    if not rows:
        raise Problem(404, "Nothing to export", f"run {run_id!r} has no stored readings yet")
    return run, rows


@router.get("/runs/{run_id}/export.csv", summary="Export a run as CSV",
            response_class=StreamingResponse,
            responses=file_response("text/csv", "The run's readings as CSV"),
            dependencies=[needs(P.READINGS_READ, On.path("run", "run_id"))])
def export_run_csv(
    request: Request,
    run_id: PathText,
    conn: ReadConn,
    delimiter: Delimiter = "comma",
    decimal: Decimal = "point",
    bom: bool = False,
    split: bool = False,
    tz: Tz = None,
    lang: Lang = None,
    precision: Precision = "auto",
) -> StreamingResponse:
    """The run's channels between its start and stop, as a wide CSV, with the run's notes
    in a last column (on the row of their time, or on a row of their own)."""
    options = _csv_options(request, delimiter, decimal, bom, split, tz, lang)
    run, rows = _run_rows(conn, run_id)
    start, end = runs.run_window(run)
    return _csv_response(request, conn, rows, start, end, options,
                         f"labhub-run-{run.id[:8]}", precision,
                         notes=[(n.ts, n.text) for n in run.notes])


@router.get("/runs/{run_id}/export.json", summary="Export a run as JSON",
            response_class=StreamingResponse,
            responses={**file_response("application/json", "The run's readings as one JSON "
                                       "document", schema={"type": "object"}),
                       **problem_responses(404)},
            dependencies=[needs(P.READINGS_READ, On.path("run", "run_id"))])
def export_run_json(
    request: Request,
    run_id: PathText,
    conn: ReadConn,
    lang: Lang = None,
    tz: Tz = None,
    precision: Precision = "auto",
) -> StreamingResponse:
    """The run's channels between its start and stop, as the JSON export writes them
    (``/export.json``); its notes are in ``GET /runs/{run_id}``."""
    zone = zone_of(tz, settings_of(request).timezone)
    run, rows = _run_rows(conn, run_id)
    start, end = runs.run_window(run)
    body = export.iter_json(
        export.columns_for(rows, _lang(request, lang)),
        _stream_rows(request, [r.id for r in rows], start, end,
                     _step(conn, rows, start, end, precision)),
        timezone=zone,
    )
    return StreamingResponse(
        (c.encode() for c in body), media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="labhub-run-{run.id[:8]}.json"'})


# -- rejects, counters --------------------------------------------------------------------


class RejectOut(BaseModel):
    """Input the hub could not store, kept with the reason."""

    id: str
    received_at: str
    source: str
    device: str | None
    topic: str | None = Field(
        description="the MQTT topic it came in on; null for other sources and for dead "
                    "letters stored before LabHub kept it apart from the reason")
    reason: str
    payload: str | None = Field(
        description="the raw payload, as UTF-8 text (bad bytes escaped); only its first "
                    "64 KiB are kept; null unless the list was asked `with_payload=true`")
    payload_bytes: int = Field(description="the raw payload's size in bytes as it arrived")
    payload_truncated: bool = Field(description="true when only the payload's start is kept")
    payload_sha256: str | None = Field(
        description="the SHA-256 (hex) of the whole raw payload; null for dead letters "
                    "stored before LabHub kept it")
    kind: str | None = Field(
        default=None, description="why, as a word: `unknown_site` (the readings named a "
                                  "site that is not a site of the hub's inventory; "
                                  "replayable); null for the other reasons")
    site: str | None = Field(default=None, description="the site the readings named")
    replayed_at: str | None = Field(
        default=None, description="when its readings were replayed into storage; null "
                                  "while they were not")


class RejectPage(BaseModel):
    """One page of rejects."""

    total: int
    items: list[RejectOut]


@router.get("/rejects", response_model=RejectPage, summary="Dead letters: what was not stored",
            dependencies=[needs(P.REJECTS_READ, On.HUB)])
def list_rejects(
    request: Request, conn: ReadConn, source: PathText | None = None,
    topic: PathText | None = None,
    limit: Annotated[int, limit_query()] = 100, offset: Offset = 0,
    with_payload: Annotated[bool, Query(description="include each payload's kept start "
                                                    "(up to 64 KiB each)")] = False,
) -> RejectPage:
    """Everything the hub could not decode or store, newest first, with the reason; the
    payloads themselves only with ``with_payload=true``. Not those of devices at sites
    where the caller may not read dead letters (one of no known device is at the hub's
    own site), in the total too."""
    check_page(limit, offset, settings_of(request).page_limit_max)
    scope = scope_of(request, P.REJECTS_READ)
    hidden = None if scope is None else devices_outside(conn, scope)
    items = queries.list_dead_letters(conn=conn, limit=limit, offset=offset, source=source,
                                      topic=topic, with_payload=with_payload,
                                      leave_out_devices=hidden)
    return RejectPage(
        total=queries.count_dead_letters(conn=conn, source=source, topic=topic,
                                         leave_out_devices=hidden),
        items=[
            RejectOut(id=d.uuid, received_at=iso(d.received_at) or "", source=d.source,
                      device=d.device, topic=d.topic, reason=d.reason,
                      payload=(d.payload.decode("utf-8", "backslashreplace")
                               if with_payload else None),
                      payload_bytes=d.size,
                      payload_truncated=d.size > DEAD_LETTER_PAYLOAD_MAX,
                      payload_sha256=d.sha256, kind=d.kind, site=d.site,
                      replayed_at=iso(d.replayed_at))
            for d in items
        ],
    )


class ReplayIn(BodyIn):
    """Which dead letters to replay."""

    kind: Literal["unknown_site"] = Field(
        default="unknown_site", description="the reason they were refused: `unknown_site`, "
                                            "readings naming a site the inventory lacked")
    source: Literal["http", "mqtt"] | None = None
    site: Key | None = Field(default=None, description="only those naming this site")


class ReplayedOut(BaseModel):
    """What became of one dead letter."""

    id: str
    source: str
    site: str | None
    outcome: Literal["stored", "still_refused", "not_replayable"]
    detail: str
    accepted: int
    duplicate: int
    rejected: int


class ReplayOut(BaseModel):
    """What a replay did."""

    stored: int = Field(description="dead letters whose readings are now stored")
    still_refused: int = Field(description="dead letters whose site is still not a site "
                                           "of the inventory (kept, to replay later)")
    not_replayable: int = Field(description="dead letters that cannot be replayed (a "
                                            "payload not kept whole): send them again")
    items: list[ReplayedOut]


@router.post("/rejects/replay", response_model=ReplayOut,
             summary="Replay dead letters refused for a site the inventory lacked",
             responses=problem_responses(503),
             dependencies=[needs(P.READINGS_INGEST, On.HUB)])
def replay_rejects(body: ReplayIn, hub: HubDep) -> ReplayOut:
    """Store, through the same pipeline, the readings refused for naming a site that was
    not a site of the hub's inventory (oldest first, up to 1,000 letters a call); each
    replayed dead letter is marked so. Readings stored already are stored once."""
    done = hub.replay_rejects(source=body.source, site=body.site)
    return ReplayOut(
        stored=done.count("stored"), still_refused=done.count("still_refused"),
        not_replayable=done.count("not_replayable"),
        items=[ReplayedOut(id=r.id, source=r.source, site=r.site, outcome=r.outcome,
                           detail=r.detail, accepted=r.accepted, duplicate=r.duplicate,
                           rejected=r.rejected)
               for r in done.letters],
    )


@router.get("/counters", summary="Ingest counters",
            dependencies=[needs(P.READINGS_READ, On.HUB)])
def counters(pipeline: Pipeline, request: Request) -> dict[Key, int]:
    """Accepted, duplicate, suspect, rejected and queued readings since the hub started;
    and the requests refused as not signed in or not allowed (``refused_requests``) with
    the bytes their bodies said they carried (``unauthenticated_bytes``), never read nor
    stored."""
    return {**pipeline.counters(), **trail.refusal_counters(request)}
