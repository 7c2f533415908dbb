"""Scheduled runs: a class's run that starts and stops by itself.

``/api/v1/run-schedules`` creates, lists, shows and deletes schedules
(:mod:`sensors.run_schedules`); the hub's "run-schedules" job starts and stops their runs.
Times are wall-clock times in the lab's time zone (the hub's ``timezone`` setting, kept with
each schedule). The site rules are the runs': ``runs.write`` at the schedule's site to make
or delete one (a student: only the schedules they made), ``readings.read`` to see it; a
schedule with no site is at the hub's own.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import Connection

from labhub.access.gate import On, gated_caller, needs, require_at, scope_of
from labhub.access.permissions import P
from labhub.access.sites import tree_for, with_unsited
from labhub.api.common import (
    BodyIn,
    Key,
    Name,
    Offset,
    PathText,
    ReadConn,
    WriteConn,
    check_page,
    iso,
    limit_query,
)
from labhub.api.deps import settings_of
from labhub.api.sensors import RunChannelIn, writes_any_run
from labhub.problems import Problem, problem_responses
from sensors import run_schedules as rs
from sensors.samples import now_us

router = APIRouter(prefix="/api/v1", tags=["runs"])

UPCOMING = 5  # windows a schedule's answer lists
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DateText = Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$", examples=["2026-03-02"])]
ClockText = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", examples=["08:00"])]


class ScheduleIn(BodyIn):
    """A run to schedule: once (``start_date start_time`` to ``end_date stop_time``) or
    daily (``start_time`` to ``stop_time`` on each of ``weekdays`` from ``start_date`` to
    ``end_date``), in the lab's wall-clock time."""

    title: Name = Field(examples=["Clima del aula 7B"])
    group: Name | None = Field(default=None, examples=["7B"])
    site: Key | None = None
    channels: list[RunChannelIn] = Field(min_length=1, max_length=64)
    kind: Literal["once", "daily"] = Field(examples=["daily"])
    start_date: DateText
    end_date: DateText
    start_time: ClockText
    stop_time: ClockText
    weekdays: list[Weekday] = Field(default_factory=list, max_length=7,
                                    description="daily: the days it records on; once: none")


class WindowOut(BaseModel):
    """One window of a schedule: when its run starts and stops."""

    starts_at: str
    ends_at: str


class ScheduleOut(BaseModel):
    """A schedule and its next windows."""

    id: str
    title: str
    group: str | None
    site: str | None
    kind: str
    timezone: str = Field(description="the IANA zone of its wall-clock times")
    start_date: str
    end_date: str
    start_time: str
    stop_time: str
    weekdays: list[str]
    channels: list[RunChannelIn]
    created_by: str | None
    created_at: str
    upcoming: list[WindowOut] = Field(description="the next windows not yet over (an "
                                                  "open one first), at most 5")
    runs: list[str] = Field(description="the runs its windows started, oldest first")


class SchedulePage(BaseModel):
    """One page of schedules."""

    total: int
    items: list[ScheduleOut]


def schedule_out(conn: Connection, s: rs.Schedule, now: int) -> ScheduleOut:
    """The API's view of a schedule at ``now``."""
    return ScheduleOut(
        id=s.id, title=s.title, group=s.group_name, site=s.site, kind=s.kind,
        timezone=s.timezone, start_date=s.start_date.isoformat(),
        end_date=s.end_date.isoformat(), start_time=f"{s.start_time:%H:%M}",
        stop_time=f"{s.stop_time:%H:%M}", weekdays=list(s.weekdays),
        channels=[RunChannelIn(device=d, channel=c) for d, c in s.channels],
        created_by=s.created_by, created_at=iso(s.created_at) or "",
        upcoming=[WindowOut(starts_at=iso(w.starts_at) or "", ends_at=iso(w.ends_at) or "")
                  for w in rs.upcoming(s, now=now, count=UPCOMING)],
        runs=[run_id for _w, run_id, _closed in rs.window_runs(conn=conn, schedule_id=s.id)])


def _invalid(exc: rs.ScheduleError) -> Problem:
    return Problem(422, "Invalid schedule", str(exc),
                   errors=[{"where": f"body.{exc.where}", "message": str(exc)}])


def make(request: Request, conn: Connection, body: ScheduleIn) -> rs.Schedule:
    """Store the schedule ``body`` describes, made by the caller (the web form's way too);
    :class:`~sensors.run_schedules.ScheduleError` says what cannot be."""
    require_at(request, P.RUNS_WRITE, body.site)
    return rs.add_schedule(
        conn=conn, title=body.title, group_name=body.group, site=body.site,
        channels=[(c.device, c.channel) for c in body.channels], kind=body.kind,
        timezone=settings_of(request).timezone, start_date=body.start_date,
        end_date=body.end_date, start_time=body.start_time, stop_time=body.stop_time,
        weekdays=body.weekdays, created_by=gated_caller(request).name)


def create(request: Request, conn: Connection, body: ScheduleIn) -> rs.Schedule:
    """:func:`make`, with what cannot be as a 422 naming the field."""
    try:
        return make(request, conn, body)
    except rs.ScheduleError as exc:
        raise _invalid(exc) from None


def _found(conn: Connection, schedule_id: str) -> rs.Schedule:
    try:
        return rs.get_schedule(conn=conn, schedule_id=schedule_id)
    except rs.UnknownScheduleError as exc:
        raise Problem(404, "No such run schedule", str(exc)) from None


def visible(request: Request, conn: Connection, schedule_id: str) -> rs.Schedule:
    """The schedule if the caller may read readings at its site: else 404 or 403."""
    s = _found(conn, schedule_id)
    require_at(request, P.READINGS_READ, s.site)
    return s


def remove(request: Request, conn: Connection, schedule_id: str) -> rs.Schedule:
    """Delete the schedule (its running run stops now) if the caller may."""
    s = _found(conn, schedule_id)
    require_at(request, P.RUNS_WRITE, s.site)
    caller = gated_caller(request)
    if not (s.created_by is not None and s.created_by == caller.name) \
            and not writes_any_run(request, s.site):
        raise Problem(403, "Not your schedule", "a student's 'runs.write' covers only the "
                      "schedules they made")
    return rs.remove_schedule(conn=conn, schedule_id=schedule_id)


@router.post("/run-schedules", response_model=ScheduleOut, status_code=201,
             summary="Schedule a run", responses=problem_responses(422),
             dependencies=[needs(P.RUNS_WRITE, On.ROUTE)])
def create_schedule(body: ScheduleIn, conn: WriteConn, request: Request) -> ScheduleOut:
    """Schedule a run (at ``site``; none: the hub's own) in the lab's wall-clock time; the
    hub starts it at each window's start and stops it at the end, as the caller. A 422
    names the field: an end before the start, a stop not after the start, a window longer
    than 31 days, a daily span longer than 366, no weekday, or every window already over."""
    return schedule_out(conn, create(request, conn, body), now_us())


@router.get("/run-schedules", response_model=SchedulePage, summary="List run schedules",
            dependencies=[needs(P.READINGS_READ, On.NOTHING)])
def list_schedules(
    request: Request, conn: ReadConn,
    limit: Annotated[int, limit_query()] = 100, offset: Offset = 0,
) -> SchedulePage:
    """Schedules at sites where the caller may read readings, soonest start first."""
    check_page(limit, offset, settings_of(request).page_limit_max)
    scope = scope_of(request, P.READINGS_READ)
    total, items = rs.list_schedules(conn=conn, sites=scope,
                                     unsited=with_unsited(scope, tree_for(request)),
                                     limit=limit, offset=offset)
    now = now_us()
    return SchedulePage(total=total, items=[schedule_out(conn, s, now) for s in items])


@router.get("/run-schedules/{schedule_id}", response_model=ScheduleOut,
            summary="One run schedule", responses=problem_responses(404),
            dependencies=[needs(P.READINGS_READ, On.ROUTE)])
def get_schedule(schedule_id: PathText, conn: ReadConn, request: Request) -> ScheduleOut:
    """A schedule, its next windows and the runs it started."""
    return schedule_out(conn, visible(request, conn, schedule_id), now_us())


@router.delete("/run-schedules/{schedule_id}", status_code=204,
               summary="Delete a run schedule", responses=problem_responses(404),
               dependencies=[needs(P.RUNS_WRITE, On.ROUTE)])
def delete_schedule(schedule_id: PathText, conn: WriteConn, request: Request) -> Response:
    """Delete a schedule: no more runs start; its run recording now is stopped. The runs
    it made stay, with their readings."""
    remove(request, conn, schedule_id)
    return Response(status_code=204)
