"""`labhub schedules`: scheduled runs (list, add, remove), on the hub's own database.

The same rules as the API (:mod:`sensors.run_schedules`): times are wall-clock times in
the lab's time zone (the ``timezone`` setting), a schedule that cannot be is one red line
naming the option and exit 1. A schedule made here is made by ``labhub CLI (<login>)``,
whose name its runs carry as their starter. The hub's "run-schedules" job starts and stops
the runs; this command only keeps the schedules.
"""

from __future__ import annotations

from typing import Annotated

import typer

from labhub.cli_common import cli_actor, echo, hub_engine, secho, settings_or_exit
from labtext.times import format_local
from sensors import run_schedules as rs
from sensors.samples import now_us

schedules_app = typer.Typer(help="Scheduled runs: a class's run that starts and stops by "
                                 "itself, in the lab's time.", no_args_is_help=True)

_OPTION = {"start_date": "--from", "end_date": "--to", "start_time": "--start",
           "stop_time": "--stop", "timezone": "timezone setting", "title": "TITLE",
           "group": "--group", "channels": "--channel", "kind": "--daily",
           "weekdays": "--daily"}


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``labhub``."""
    app.add_typer(schedules_app, name="schedules")


def _show(s: rs.Schedule, now: int, upcoming: int) -> None:
    when = (f"{s.start_date} {s.start_time:%H:%M} to {s.end_date} {s.stop_time:%H:%M}"
            if s.kind == "once" else
            f"{s.start_time:%H:%M}-{s.stop_time:%H:%M} on {','.join(s.weekdays)} from "
            f"{s.start_date} to {s.end_date}")
    site = s.site or "the hub's site"
    echo(f"{s.id}  {s.title}  ({s.group_name or 'no group'}, {site}): {when} "
         f"({s.timezone})")
    echo("  records " + ", ".join(f"{d}/{c}" for d, c in s.channels))
    for w in rs.upcoming(s, now=now, count=upcoming):
        state = "  now" if w.starts_at <= now else ""
        echo(f"  {format_local(w.starts_at, s.timezone, step_us=60_000_000)} -> "
             f"{format_local(w.ends_at, s.timezone, step_us=60_000_000)}{state}")


@schedules_app.command("list")
def list_schedules(
    upcoming: Annotated[int, typer.Option(min=0, max=50,
                                          help="windows to show of each")] = 3,
) -> None:
    """Every schedule with its next windows, in the lab's time."""
    with hub_engine("schedules list", write=False) as engine, engine.connect() as conn:
        total, items = rs.list_schedules(conn=conn, limit=10_000)
    now = now_us()
    for s in items:
        _show(s, now, upcoming)
    echo(f"{total} schedules")


@schedules_app.command("add")
def add_schedule(
    title: Annotated[str, typer.Argument(help="the title of each run it starts")],
    channel: Annotated[list[str], typer.Option(
        "--channel", help="DEVICE or DEVICE/CHANNEL to record (repeat it)")],
    start_date: Annotated[str, typer.Option("--from", help="first day, YYYY-MM-DD")],
    end_date: Annotated[str, typer.Option("--to", help="last day, YYYY-MM-DD")],
    start_time: Annotated[str, typer.Option("--start", help="start time, HH:MM")],
    stop_time: Annotated[str, typer.Option("--stop", help="stop time, HH:MM")],
    daily: Annotated[str | None, typer.Option(
        "--daily", help="record each of these weekdays (mon,tue,...) from --start to "
                        "--stop; without it: one window from --from --start to --to "
                        "--stop")] = None,
    group: Annotated[str | None, typer.Option(help="the student group")] = None,
    site: Annotated[str | None, typer.Option(help="the lab site (none: the hub's)")] = None,
) -> None:
    """Schedule a run: once (--from --start to --to --stop) or daily (--daily mon,wed)."""
    settings = settings_or_exit()
    channels = []
    for given in channel:
        device, _slash, name = given.partition("/")
        channels.append((device, name or "*"))
    try:
        with hub_engine("schedules add", write=True, settings=settings) as engine, \
                engine.begin() as conn:
            s = rs.add_schedule(
                conn=conn, title=title, channels=channels,
                kind="daily" if daily is not None else "once", timezone=settings.timezone,
                start_date=start_date, end_date=end_date, start_time=start_time,
                stop_time=stop_time,
                weekdays=[d for d in (daily or "").split(",") if d.strip()],
                group_name=group, site=site, created_by=cli_actor())
    except rs.ScheduleError as exc:
        option = _OPTION.get(exc.where.split("[")[0], exc.where)
        secho(f"labhub schedules add: {option}: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    _show(s, now_us(), 3)


@schedules_app.command("remove")
def remove_schedule(
    schedule_id: Annotated[str, typer.Argument(metavar="SCHEDULE_ID")],
) -> None:
    """Delete a schedule; its run recording now stops (the runs it made stay)."""
    try:
        with hub_engine("schedules remove", write=True) as engine, engine.begin() as conn:
            s = rs.remove_schedule(conn=conn, schedule_id=schedule_id)
    except rs.UnknownScheduleError as exc:
        secho(f"labhub schedules remove: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    echo(f"removed {s.id} ({s.title})")
