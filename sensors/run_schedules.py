"""Scheduled runs: a class's run that starts and stops by itself.

A schedule names the run (title, group, site, the channels it records, who made it) and
when it records, in wall-clock times of the lab's time zone (an IANA name kept with the
schedule), in one of two kinds:

- ``once``: one window, from ``start_date start_time`` to ``end_date stop_time``
  ("start Monday 08:00, stop Friday 16:00");
- ``daily``: a window from ``start_time`` to ``stop_time`` on each chosen weekday from
  ``start_date`` to ``end_date`` ("08:00-12:00 every school day for a week").

Each window's start and stop instants come from :mod:`zoneinfo`, day by day, so a 08:00
start is 08:00 on the wall clock on both sides of a daylight-saving change. On a day whose
clocks skip an hour, a time in the gap is taken as the offset before the jump gives it, so
it moves forward by the gap (02:30 where 02:00 jumps to 03:00 starts at 03:30); a window
that this leaves empty (02:30-03:15 on that day) is skipped. On a day whose clocks repeat
an hour, a time in it is its first occurrence.

The work of a schedule is :func:`tick`, called by the hub's "run-schedules" job with the
time: a window that is open and has no run gets one (started at the window's start, or
when the schedule was made if that is later, as the schedule's author, with a note when
the hub started it late: it was off or asleep at the start), and a run whose window has
ended is stopped at the window's end (a hub that was off then stops it when it comes
back). A window's run has an id made from the schedule and the window's start
(``window_run_id``), and ``run_schedule_windows`` keeps a row per window with that key:
two hub processes or a repeated tick start one run per window, never two. A window the
hub was off for from start to end has no run (nothing was recorded).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Connection,
    ForeignKey,
    MetaData,
    Row,
    String,
    Table,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from sensors import runs
from sensors.errors import RunStateError, SensorsError
from sensors.samples import now_us
from sensors.storage import NAMING_CONVENTION

ScheduleKind = Literal["once", "daily"]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # datetime.weekday() order
WINDOW_MAX_DAYS = 31  # one window: a month-long unattended log at most; longer is a typo
SPAN_MAX_DAYS = 366  # a daily schedule covers at most a school year
LATE_NOTE_AFTER_US = 120 * 1_000_000  # started this late: the run's note says so
US = 1_000_000

metadata = MetaData(naming_convention=NAMING_CONVENTION)

run_schedules = Table(
    "run_schedules",
    metadata,
    Column("id", String(36), primary_key=True),  # UUID: schedules merge across hubs
    Column("title", String(200), nullable=False),  # the title of each run it starts
    Column("group_name", String(200), nullable=True),
    Column("site", String(100), nullable=True),
    Column("kind", String(10), nullable=False),  # once | daily
    Column("timezone", String(64), nullable=False),  # IANA zone of the wall-clock times
    Column("start_date", String(10), nullable=False),  # YYYY-MM-DD
    Column("end_date", String(10), nullable=False),
    Column("start_time", String(5), nullable=False),  # HH:MM
    Column("stop_time", String(5), nullable=False),
    Column("weekdays", String(27), nullable=False),  # "mon,tue,...": daily only ("" once)
    Column("created_by", String(200), nullable=True),
    Column("created_at", BigInteger, nullable=False),
)

run_schedule_channels = Table(
    "run_schedule_channels",
    metadata,
    Column("schedule_id", String(36), ForeignKey("run_schedules.id", ondelete="CASCADE"),
           primary_key=True),
    Column("device", String(200), primary_key=True),
    Column("channel", String(200), primary_key=True),  # "*": every channel of the device
)

# One row per window a run was started for: the key that makes a window's run once only.
run_schedule_windows = Table(
    "run_schedule_windows",
    metadata,
    Column("schedule_id", String(36), ForeignKey("run_schedules.id", ondelete="CASCADE"),
           primary_key=True),
    Column("starts_at", BigInteger, primary_key=True),  # µs since the epoch, UTC
    Column("ends_at", BigInteger, nullable=False),
    Column("run_id", String(36), nullable=False, unique=True),
    Column("closed", Boolean, nullable=False, default=False, index=True),  # run stopped
)


class ScheduleError(SensorsError):
    """A schedule that cannot be: ``where`` names the field (``"stop_time"``), ``rule`` the
    rule it breaks (``"stop_not_after_start"``), for pages to say it in the person's
    language."""

    def __init__(self, message: str, *, where: str, rule: str) -> None:
        super().__init__(message)
        self.where = where
        self.rule = rule


class UnknownScheduleError(SensorsError):
    """A schedule id that is not stored."""


@dataclass(frozen=True, slots=True)
class Window:
    """One window of a schedule: ``[starts_at, ends_at)`` in µs since the epoch (UTC)."""

    starts_at: int
    ends_at: int


@dataclass(frozen=True, slots=True)
class Schedule:
    """A scheduled run and when it records."""

    id: str
    title: str
    group_name: str | None
    site: str | None
    kind: ScheduleKind
    timezone: str
    start_date: date
    end_date: date
    start_time: time
    stop_time: time
    weekdays: tuple[str, ...]  # daily: the chosen days, in week order; once: ()
    channels: tuple[tuple[str, str], ...]
    created_by: str | None
    created_at: int

    def windows(self, since: int | None = None, until: int | None = None) -> list[Window]:
        """The windows (oldest first) that end after ``since`` and start before ``until``."""
        return windows(self, since=since, until=until)


# -- times ------------------------------------------------------------------------------------

def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; :class:`ScheduleError` if there is none by that name."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"{name!r} is not a time zone (an IANA name such as "
                            "America/Santiago)", where="timezone", rule="bad_zone") from None


def instant(day: date, at: time, tz: ZoneInfo) -> int:
    """The instant (µs, UTC) of the wall-clock ``day at`` in ``tz``: a time that the clocks
    skip moves forward by the gap; a time they repeat is its first occurrence."""
    local = datetime.combine(day, at.replace(fold=0), tzinfo=tz)
    return int(local.timestamp()) * US


def parse_date(text: str, where: str) -> date:
    """``YYYY-MM-DD``, or :class:`ScheduleError` naming ``where``."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ScheduleError(f"{text!r} is not a date (YYYY-MM-DD)", where=where,
                            rule="bad_date") from None


def parse_clock(text: str, where: str) -> time:
    """``HH:MM`` (24 hours), or :class:`ScheduleError` naming ``where``."""
    hours, colon, minutes = text.strip().partition(":")
    if (colon and len(hours) in (1, 2) and len(minutes) == 2 and hours.isdigit()
            and minutes.isdigit() and int(hours) < 24 and int(minutes) < 60):
        return time(int(hours), int(minutes))
    raise ScheduleError(f"{text!r} is not a time of day (HH:MM, 00:00 to 23:59)", where=where,
                        rule="bad_time")


def parse_weekdays(names: Sequence[str]) -> tuple[str, ...]:
    """Weekday names (``mon``..``sun``) in week order, each once; :class:`ScheduleError`
    naming the first unknown one."""
    chosen = set()
    for i, name in enumerate(names):
        key = name.strip().lower()
        key = _SHORT.get(key, key)
        if key not in WEEKDAYS:
            raise ScheduleError(f"{name!r} is not a weekday (mon, tue, wed, thu, fri, sat, "
                                "sun)", where=f"weekdays[{i}]", rule="bad_weekday")
        chosen.add(key)
    return tuple(d for d in WEEKDAYS if d in chosen)


_SHORT = {"monday": "mon", "tuesday": "tue", "wednesday": "wed", "thursday": "thu",
          "friday": "fri", "saturday": "sat", "sunday": "sun"}


def windows(schedule: Schedule, *, since: int | None = None,
            until: int | None = None) -> list[Window]:
    """The schedule's windows (oldest first) that end after ``since`` and start before
    ``until`` (µs; None: no bound). A daily window emptied by a skipped hour is left out."""
    tz = zone(schedule.timezone)
    if schedule.kind == "once":
        found = [Window(instant(schedule.start_date, schedule.start_time, tz),
                        instant(schedule.end_date, schedule.stop_time, tz))]
    else:
        first, last = schedule.start_date, schedule.end_date
        if since is not None:  # windows are within one local day: skip the days before
            day_before = (datetime.fromtimestamp(since / US, tz).date() - timedelta(days=1))
            first = max(first, day_before)
        if until is not None:
            day_after = datetime.fromtimestamp(until / US, tz).date() + timedelta(days=1)
            last = min(last, day_after)
        found = []
        day = first
        while day <= last:
            if WEEKDAYS[day.weekday()] in schedule.weekdays:
                found.append(Window(instant(day, schedule.start_time, tz),
                                    instant(day, schedule.stop_time, tz)))
            day += timedelta(days=1)
    return [w for w in found if w.ends_at > w.starts_at
            and (since is None or w.ends_at > since)
            and (until is None or w.starts_at < until)]


def check(schedule: Schedule, *, now: int) -> None:
    """:class:`ScheduleError` naming the field if the schedule cannot be: its end before its
    start, a daily stop not after its start, a window longer than ``WINDOW_MAX_DAYS``, a
    daily span longer than ``SPAN_MAX_DAYS``, no weekday chosen, or no window left after
    ``now`` (its end is past)."""
    tz = zone(schedule.timezone)
    if schedule.end_date < schedule.start_date:
        raise ScheduleError(f"the end date {schedule.end_date} is before the start date "
                            f"{schedule.start_date}", where="end_date", rule="end_before_start")
    if schedule.kind == "once":
        start = instant(schedule.start_date, schedule.start_time, tz)
        stop = instant(schedule.end_date, schedule.stop_time, tz)
        if stop <= start:
            raise ScheduleError(f"the stop ({schedule.end_date} {schedule.stop_time:%H:%M}) "
                                f"is not after the start ({schedule.start_date} "
                                f"{schedule.start_time:%H:%M})", where="stop_time",
                                rule="stop_not_after_start")
        if stop - start > WINDOW_MAX_DAYS * 86_400 * US:
            raise ScheduleError(f"a run may be scheduled for at most {WINDOW_MAX_DAYS} days "
                                "at once", where="end_date", rule="window_too_long")
    else:
        if schedule.stop_time <= schedule.start_time:
            raise ScheduleError(f"the daily stop {schedule.stop_time:%H:%M} is not after the "
                                f"daily start {schedule.start_time:%H:%M} (a window ends on "
                                "the day it starts)", where="stop_time",
                                rule="daily_stop_not_after_start")
        if (schedule.end_date - schedule.start_date).days + 1 > SPAN_MAX_DAYS:
            raise ScheduleError(f"a daily schedule covers at most {SPAN_MAX_DAYS} days",
                                where="end_date", rule="span_too_long")
        if not schedule.weekdays:
            raise ScheduleError("choose at least one weekday", where="weekdays", rule="no_weekday")
    if not windows(schedule, since=now):
        raise ScheduleError("every window of this schedule is already over (or none falls "
                            "on a chosen weekday)", where="end_date", rule="over")


# -- records ----------------------------------------------------------------------------------

def _checked_text(what: str, text: str) -> str:
    from labtext import printable

    try:
        return printable.check_name(text)
    except printable.UnprintableTextError as exc:
        raise ScheduleError(f"{what} {exc}", where=what.split()[-1], rule="text") from None


def add_schedule(
    *, conn: Connection, title: str, channels: Sequence[tuple[str, str]],
    kind: ScheduleKind, timezone: str, start_date: str, end_date: str, start_time: str,
    stop_time: str, weekdays: Sequence[str] = (), group_name: str | None = None,
    site: str | None = None, created_by: str | None = None, now: int | None = None,
    schedule_id: str | None = None,
) -> Schedule:
    """Store a schedule after :func:`check`; :class:`ScheduleError` names what is wrong."""
    title = _checked_text("the title", title.strip())
    if not title:
        raise ScheduleError("a scheduled run needs a title", where="title", rule="no_title")
    if group_name is not None:
        _checked_text("the group", group_name)
    if not channels:
        raise ScheduleError("a scheduled run needs at least one device and channel",
                            where="channels", rule="no_channel")
    if kind not in ("once", "daily"):
        raise ScheduleError(f"{kind!r} is not a kind of schedule (once, daily)", where="kind",
                            rule="bad_kind")
    zone(timezone)
    days = parse_weekdays(weekdays) if kind == "daily" else ()
    if kind == "once" and weekdays:
        raise ScheduleError("weekdays are for a daily schedule; a once schedule has one "
                            "window", where="weekdays", rule="weekdays_once")
    when = now_us() if now is None else now
    schedule = Schedule(
        id=str(uuid.UUID(schedule_id)) if schedule_id else str(uuid.uuid4()), title=title,
        group_name=group_name, site=site, kind=kind, timezone=timezone,
        start_date=parse_date(start_date, "start_date"),
        end_date=parse_date(end_date, "end_date"),
        start_time=parse_clock(start_time, "start_time"),
        stop_time=parse_clock(stop_time, "stop_time"), weekdays=days,
        channels=tuple(dict.fromkeys((d, c) for d, c in channels)), created_by=created_by,
        created_at=when)
    check(schedule, now=when)
    conn.execute(insert(run_schedules).values(
        id=schedule.id, title=title, group_name=group_name, site=site, kind=kind,
        timezone=timezone, start_date=schedule.start_date.isoformat(),
        end_date=schedule.end_date.isoformat(), start_time=f"{schedule.start_time:%H:%M}",
        stop_time=f"{schedule.stop_time:%H:%M}", weekdays=",".join(days),
        created_by=created_by, created_at=when))
    conn.execute(insert(run_schedule_channels), [
        {"schedule_id": schedule.id, "device": d, "channel": c} for d, c in schedule.channels])
    return schedule


def _schedule(conn: Connection, r: Row[Any]) -> Schedule:
    chans = tuple((c.device, c.channel) for c in conn.execute(
        select(run_schedule_channels).where(run_schedule_channels.c.schedule_id == r.id)
        .order_by(run_schedule_channels.c.device, run_schedule_channels.c.channel)))
    return Schedule(
        id=r.id, title=r.title, group_name=r.group_name, site=r.site, kind=r.kind,
        timezone=r.timezone, start_date=date.fromisoformat(r.start_date),
        end_date=date.fromisoformat(r.end_date), start_time=time.fromisoformat(r.start_time),
        stop_time=time.fromisoformat(r.stop_time),
        weekdays=tuple(d for d in r.weekdays.split(",") if d), channels=chans,
        created_by=r.created_by, created_at=r.created_at)  # kind: as stored, checked


def get_schedule(*, conn: Connection, schedule_id: str) -> Schedule:
    """The schedule; :class:`UnknownScheduleError` if there is none."""
    row = conn.execute(select(run_schedules).where(run_schedules.c.id == schedule_id)).first()
    if row is None:
        raise UnknownScheduleError(f"no run schedule with id {schedule_id!r}")
    return _schedule(conn, row)


def list_schedules(
    *, conn: Connection, sites: Collection[str] | None = None, unsited: bool = True,
    limit: int = 100, offset: int = 0,
) -> tuple[int, list[Schedule]]:
    """The total and one page of schedules, soonest start first; ``sites`` keeps those at
    these sites (and those with none when ``unsited``)."""
    count = select(func.count()).select_from(run_schedules)
    page = select(run_schedules).order_by(run_schedules.c.start_date,
                                          run_schedules.c.start_time, run_schedules.c.id)
    if sites is not None:
        where: ColumnElement[bool] = run_schedules.c.site.in_(sorted(sites))
        if unsited:
            where = or_(where, run_schedules.c.site.is_(None))
        count, page = count.where(where), page.where(where)
    total = int(conn.execute(count).scalar_one())
    rows = conn.execute(page.limit(limit).offset(offset)).all()
    return total, [_schedule(conn, r) for r in rows]


def remove_schedule(*, conn: Connection, schedule_id: str, now: int | None = None) -> Schedule:
    """Delete a schedule; a run of it still recording is stopped now (its readings and the
    runs it made stay, as runs of their own)."""
    schedule = get_schedule(conn=conn, schedule_id=schedule_id)
    at = now_us() if now is None else now
    w = run_schedule_windows.c
    for (run_id,) in conn.execute(select(w.run_id).where(w.schedule_id == schedule_id,
                                                         w.closed.is_(False))).all():
        _stop(conn, run_id, at)
    conn.execute(delete(run_schedules).where(run_schedules.c.id == schedule_id))
    return schedule


def window_run_id(schedule_id: str, starts_at: int) -> str:
    """The id of the run of a schedule's window: the same in every process."""
    return str(uuid.uuid5(uuid.UUID(schedule_id), f"window/{starts_at}"))


def window_runs(*, conn: Connection, schedule_id: str) -> list[tuple[Window, str, bool]]:
    """The windows a run was started for: each window, its run's id, whether closed."""
    w = run_schedule_windows.c
    return [(Window(r.starts_at, r.ends_at), r.run_id, bool(r.closed)) for r in conn.execute(
        select(run_schedule_windows).where(w.schedule_id == schedule_id)
        .order_by(w.starts_at))]


# -- the job's work -----------------------------------------------------------------------

@dataclass(slots=True)
class TickResult:
    """What one tick did: runs started (late ones among them) and stopped."""

    started: list[str]
    late: list[str]
    stopped: list[str]


def _stop(conn: Connection, run_id: str, at: int) -> bool:
    """Stop the run at ``at`` if it still records (someone may have stopped it by hand)."""
    try:
        run = runs.get_run(conn=conn, run_id=run_id)
    except SensorsError:
        return False
    if not run.running:
        return False
    try:
        runs.stop_run(conn=conn, run_id=run_id, stopped_at=max(at, run.started_at))
    except RunStateError:
        return False
    return True


def late_note_en(minutes: int) -> str:
    """The note of a run its schedule started ``minutes`` late (the app passes its own,
    in the lab's language)."""
    return (f"Started by its schedule {minutes} min after the window opened: the hub was "
            "off or asleep at the start; readings begin now.")


def tick(*, conn: Connection, now: int,
         late_note: Callable[[int], str] = late_note_en) -> TickResult:
    """Start the run of each open window that has none and stop the runs of windows that
    ended; see the module docstring. Safe to repeat and to run in two processes at once.
    A run started late gets the note ``late_note(minutes late)``."""
    done = TickResult([], [], [])
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    w = run_schedule_windows.c
    # Stop first: a window that ended is closed even when the next one opens this minute.
    for r in conn.execute(select(run_schedule_windows).where(
            w.closed.is_(False), w.ends_at <= now).order_by(w.ends_at)).all():
        if _stop(conn, r.run_id, r.ends_at):
            done.stopped.append(r.run_id)
        conn.execute(update(run_schedule_windows).where(
            w.schedule_id == r.schedule_id, w.starts_at == r.starts_at).values(closed=True))
    schedules = [_schedule(conn, r) for r in conn.execute(
        select(run_schedules).where(run_schedules.c.start_date <= _local_day_bound(now, +1),
                                    run_schedules.c.end_date >= _local_day_bound(now, -1))
    ).all()]
    for schedule in schedules:
        for window in schedule.windows(since=now, until=now + 1):
            run_id = window_run_id(schedule.id, window.starts_at)
            conn.execute(dialect.insert(run_schedule_windows).values(
                schedule_id=schedule.id, starts_at=window.starts_at, ends_at=window.ends_at,
                run_id=run_id, closed=False).on_conflict_do_nothing())
            # A schedule made while its first window is open records from when it was made.
            begins = max(window.starts_at, schedule.created_at)
            run, new = runs.start_run(
                conn=conn, title=schedule.title, channels=schedule.channels,
                group_name=schedule.group_name, site=schedule.site,
                started_at=begins, started_by=schedule.created_by, run_id=run_id)
            if not new:
                continue
            done.started.append(run.id)
            if now - begins > LATE_NOTE_AFTER_US:
                done.late.append(run.id)
                late_by = (now - window.starts_at) // (60 * US)
                runs.add_note(conn=conn, run_id=run.id, ts=now, text=late_note(late_by))
    return done


def _local_day_bound(now: int, days: int) -> str:
    """The UTC day of ``now`` plus ``days``, as stored dates are written: the local day of
    ``now`` anywhere is within a day of it (zones are within ±14 h)."""
    return (datetime.fromtimestamp(now / US, ZoneInfo("UTC")).date()
            + timedelta(days=days)).isoformat()


def upcoming(schedule: Schedule, *, now: int, count: int = 5) -> list[Window]:
    """The next ``count`` windows not yet over at ``now`` (an open one first)."""
    return schedule.windows(since=now)[:count]
