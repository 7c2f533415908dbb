"""The chart page: one or several series on one time axis, over a preset or a custom
range, or over a run's time with its notes as marks.

A chart is a link: the series (``s=<device>/<channel>``, repeated), the range
(``range=10m|1h|1d|1w|custom`` with ``start``/``end`` in the lab's time zone) or the run
(``run=<id>``) are in the query string. The hub renders the summary and a table of the
data (a few buckets, from the same :func:`sensors.queries.downsample` the API's
``GET /api/v1/readings`` calls), so the page works without JavaScript and a screen reader
has the numbers; ``static/chart.js`` then draws uPlot over it from the API's buckets and
fetches new ones on zoom and pan. Suspect readings come from
``GET /charts/suspect`` (the API's buckets carry no flags).

Only series the person may read are offered; one of another site asked for by URL is a
403 page, an unknown one or a bad range a 422 page with the error beside its field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from babel.dates import format_timedelta
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy import Connection

from firmware_bridge import registry
from labhub.access.caller import Forbidden
from labhub.access.gate import On, Visible, gated_caller, needs, require_at
from labhub.access.permissions import Permission
from labhub.api.common import parse_query_time
from labhub.api.deps import HubDep, settings_of
from labhub.problems import Problem
from labhub.web import i18n
from labhub.web.i18n import N_
from labhub.web.pages import PageRoute, language_of, render
from sensors import export, queries, runs
from sensors.errors import UnknownRunError, UnknownSeriesError
from sensors.quantities import unit_text
from sensors.samples import now_us
from sensors.storage import SeriesRow

router = APIRouter(route_class=PageRoute, include_in_schema=False)

US_PER_S: Final = 1_000_000
# The presets a person picks from: (query value, span in seconds, message).
PRESETS: Final = (("10m", 600, N_("Last 10 minutes")), ("1h", 3600, N_("Last hour")),
                  ("1d", 86_400, N_("Last 24 hours")), ("1w", 7 * 86_400, N_("Last 7 days")))
CUSTOM: Final = "custom"
DEFAULT_PRESET: Final = "1h"
SERIES_MAX: Final = 6  # lines one chart keeps readable (and one colour and dash each)
UNITS_MAX: Final = 2  # one axis on each side of the plot
SPAN_MAX_S: Final = 366 * 86_400  # a custom range of a year at most (a school year)
TABLE_BUCKETS: Final = 24  # rows of the data table: a screen reader's page, not a dump
SUSPECT_MARKS_MAX: Final = 1000  # marks a chart draws per series (the count says the rest)
TIME_INPUT: Final = "%Y-%m-%dT%H:%M"  # what <input type="datetime-local"> sends


@dataclass
class Drawn:
    """One series of a chart: what the page shows of it."""

    row: SeriesRow
    label: str
    unit: str | None  # as a reader of the page's language writes it (°C)
    table: list[queries.Bucket]
    summary: str
    suspect: int
    marks: list[tuple[int, float]] = field(default_factory=list)

    @property
    def key(self) -> str:
        return series_key(self.row)


def series_key(row: SeriesRow) -> str:
    """A series as the query string names it: ``<device>/<channel>``."""
    return f"{row.device}/{row.channel}"


def _offered(request: Request, conn: Connection) -> tuple[list[SeriesRow], list[SeriesRow]]:
    """(the series this person may chart, every stored series), as the API's
    ``GET /api/v1/series`` lists them (renamed channels left out)."""
    visible = Visible(request, Permission.READINGS_READ)
    every = queries.list_series(conn=conn)
    hidden = registry.renamed_channels(conn=conn)
    offered = [r for r in every if visible(r.site)
               and r.channel not in hidden.get(r.device, ())]
    return offered, every


def _local_time(text: str, zone: str) -> int | None:
    """A ``datetime-local`` field's value (the lab's zone) as µs; None if it is not one."""
    try:
        moment = datetime.strptime(text.strip()[:16], TIME_INPUT).replace(tzinfo=ZoneInfo(zone))
    except ValueError:
        return None
    return int(moment.timestamp()) * US_PER_S


def _input_time(ts_us: int, zone: str) -> str:
    return datetime.fromtimestamp(ts_us / US_PER_S, tz=ZoneInfo(zone)).strftime(TIME_INPUT)


def _summary(_: Any, fmt: i18n.Formats, label: str, unit: str | None,
             buckets: list[queries.Bucket], suspect: int, span: str) -> str:
    """The chart's words for one series: lowest, highest and mean over the range."""
    count = sum(b.count for b in buckets)
    if not count:
        return str(_("%(label)s: no readings in this range.", label=label))
    mean = sum(b.mean * b.count for b in buckets) / count
    words = _("%(label)s from %(low)s to %(high)s, mean %(mean)s, over %(span)s "
              "(%(count)s readings).", label=label,
              low=fmt.quantity(min(b.min for b in buckets), unit),
              high=fmt.quantity(max(b.max for b in buckets), unit),
              mean=fmt.quantity(mean, unit), span=span, count=fmt.number(count))
    if suspect:
        words += " " + _("Suspect readings: %(count)s.", count=fmt.number(suspect))
    return str(words)


@router.get("/charts", dependencies=[needs(Permission.READINGS_READ, On.ROUTE)])
def chart_page(request: Request, hub: HubDep) -> HTMLResponse:
    """The chart of the series and range the query string names (none: the form)."""
    caller = gated_caller(request)
    lang = language_of(request)
    _ = i18n.gettext_of(lang)
    zone = settings_of(request).timezone
    fmt = i18n.Formats(lang, zone)
    query = request.query_params
    errors: dict[str, str] = {}
    now = now_us()
    run: runs.Run | None = None
    with hub.engine.connect() as conn:
        offered, every = _offered(request, conn)
        by_key = {series_key(r): r for r in offered}
        chosen: list[SeriesRow] = []
        preset = query.get("range", DEFAULT_PRESET)
        start = end = 0
        if query.get("run"):
            try:
                run = runs.get_run(conn=conn, run_id=query["run"])
            except UnknownRunError:
                raise Problem(404, "Not found", "no such run") from None
            require_at(request, Permission.READINGS_READ, run.site)
            chosen = runs.run_series(conn=conn, run=run)
            require_at(request, Permission.READINGS_READ, *{r.site for r in chosen})
            start, stop = runs.run_window(run)
            end = max(stop if stop is not None else now, start + 1)
            preset = CUSTOM
        else:
            for key in query.getlist("s"):
                row = by_key.get(key)
                if row is None:
                    hidden = [r for r in every if series_key(r) == key]
                    if hidden:
                        raise Forbidden(Permission.READINGS_READ, hidden[0].site)
                    errors["s"] = _("There is no series %(name)s on this hub.", name=key)
                elif row not in chosen:
                    chosen.append(row)
            if len(chosen) > SERIES_MAX:
                errors["s"] = _("A chart shows at most %(count)s series.", count=SERIES_MAX)
            elif len({r.unit for r in chosen}) > UNITS_MAX:
                errors["s"] = _("A chart shows at most two units: choose series that "
                                "measure at most two kinds of things.")
            start, end = _range(_, query, preset, zone, now, errors)
        drawn = draw(conn, chosen, start, end, lang, fmt) if chosen and not errors else []
    status = 422 if errors else 200
    labels = {series_key(r): export.series_label(r, lang) for r in offered}
    units = {series_key(r): unit_text(r.unit, lang) for r in offered if r.unit}
    chosen_keys = {series_key(r) for r in chosen}
    return render(
        request, "charts.html", status=status, caller=caller, offered=offered,
        labels=labels, units=units, chosen=chosen_keys, errors=errors, preset=preset, run=run,
        presets=PRESETS, custom=CUSTOM, drawn=drawn, start=start, end=end,
        start_text=query.get("start") if errors.get("start") else _input_time(
            start or now - 3600 * US_PER_S, zone),
        end_text=query.get("end") if errors.get("end") else _input_time(end or now, zone),
        figure=figure(drawn, run, start, end) if drawn else None)


def draw(conn: Connection, chosen: list[SeriesRow], start: int, end: int, lang: str,
         fmt: i18n.Formats) -> list[Drawn]:
    """What the page shows of each chosen series over [start, end): its table of buckets,
    summary and suspect readings (the chart page's, and a run page's chart)."""
    _ = i18n.gettext_of(lang)
    span = format_timedelta(timedelta(microseconds=end - start), locale=fmt.locale)
    drawn: list[Drawn] = []
    for row in chosen:
        label = export.series_label(row, lang)
        unit = unit_text(row.unit, lang) if row.unit else None
        table = queries.downsample(conn=conn, series_id=row.id,
                                   buckets=TABLE_BUCKETS, start=start, end=end)
        suspect, marks = queries.suspect_readings(
            conn=conn, series_id=row.id, start=start, end=end, limit=SUSPECT_MARKS_MAX)
        drawn.append(Drawn(row, label, unit, table,
                           _summary(_, fmt, label, unit, table, suspect, span),
                           suspect, marks))
    return drawn


def run_chart(conn: Connection, run: runs.Run, lang: str, fmt: i18n.Formats,
              now: int) -> tuple[list[Drawn], dict[str, str] | None]:
    """A run's chart: its series over its time (until now while it runs), its notes as
    marks; the caller has checked the reader may see the run's site."""
    chosen = runs.run_series(conn=conn, run=run)[:SERIES_MAX]
    start, stop = runs.run_window(run)
    end = max(stop if stop is not None else now, start + 1)
    drawn = draw(conn, chosen, start, end, lang, fmt)
    return drawn, (figure(drawn, run, start, end) if drawn else None)


def _range(_: Any, query: Any, preset: str, zone: str, now: int,
           errors: dict[str, str]) -> tuple[int, int]:
    """[start, end) in µs for a preset (ending now) or a custom range; errors by field."""
    for value, seconds, _label in PRESETS:
        if preset == value:
            return now - seconds * US_PER_S, now
    if preset != CUSTOM:
        errors["range"] = _("Choose one of the ranges.")
        return 0, 0
    start = _local_time(query.get("start", ""), zone)
    end = _local_time(query.get("end", ""), zone)
    example = "2026-03-01 08:30"
    if start is None:
        errors["start"] = _("Write a date and time, such as %(example)s.", example=example)
    if end is None:
        errors["end"] = _("Write a date and time, such as %(example)s.", example=example)
    if start is None or end is None:
        return 0, 0
    if end <= start:
        errors["end"] = _("The end must come after the start.")
    elif end - start > SPAN_MAX_S * US_PER_S:
        errors["end"] = _("A chart spans at most a year.")
    return start, end


def figure(drawn: list[Drawn], run: runs.Run | None, start: int, end: int
            ) -> dict[str, str]:
    """The ``data-`` attributes chart.js reads (docs/web.md, "Charts")."""
    series = [{"device": d.row.device, "channel": d.row.channel, "label": d.label,
               "unit": d.unit or ""} for d in drawn]
    marks = [] if run is None else [{"ts": n.ts // 1000, "text": n.text} for n in run.notes]
    # The suspect readings of the whole range, when the page holds them all: a zoom
    # inside it needs no look-up (a scan of every reading's flags) again.
    known = ("" if any(d.suspect > len(d.marks) for d in drawn) else
             json.dumps([[[ts // 1000, v] for ts, v in d.marks] for d in drawn]))
    return {"series": json.dumps(series, ensure_ascii=False),
            "start": str(start // 1000), "end": str(end // 1000),
            "marks": json.dumps(marks, ensure_ascii=False), "suspect": known}


@router.get("/charts/suspect", dependencies=[needs(Permission.READINGS_READ, On.ROUTE)])
def suspect_marks(request: Request, hub: HubDep, device: str, channel: str,
                  start: str, end: str) -> JSONResponse:
    """The suspect readings of one series over ``[start, end)`` for chart.js: ``count``
    and the first marks ``[[ms, value], ...]``. Times as the API takes them."""
    t0, t1 = parse_query_time(start, "start"), parse_query_time(end, "end")
    if t0 is None or t1 is None:
        raise Problem(422, "Invalid time", "start and end are required")
    with hub.engine.connect() as conn:
        try:
            row = queries.get_series(conn=conn, device=device, channel=channel)
        except UnknownSeriesError:
            raise Problem(404, "Not found", "no such series") from None
        require_at(request, Permission.READINGS_READ, row.site)
        count, marks = queries.suspect_readings(conn=conn, series_id=row.id, start=t0,
                                                end=t1, limit=SUSPECT_MARKS_MAX)
    return JSONResponse({"count": count, "marks": [[ts // 1000, v] for ts, v in marks]},
                        headers={"Cache-Control": "no-store"})
