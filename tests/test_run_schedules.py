"""Scheduled runs: windows in the lab's wall-clock time across daylight-saving changes, and
the "run-schedules" job starting and stopping runs at the right instants, catching up after
the hub was off, and never starting two runs for one window (two processes included).

The job's body is driven with instants the test chooses (``run_schedules_at``), never by
waiting for real minutes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import cast

import pytest
from sqlalchemy import Engine, func, select

from labhub.jobs import schedules as schedule_jobs
from labhub.scheduler.catalog import job_specs
from labhub.scheduler.jobs import JobContext
from labhub.settings import Settings
from labhub.wiring import Hub
from sensors import run_schedules as rs
from sensors import runs
from sensors.storage import runs as runs_table

US = 1_000_000
H = 3600 * US
BERLIN = "Europe/Berlin"
SANTIAGO = "America/Santiago"
BOGOTA = "America/Bogota"


def utc(text: str) -> int:
    """µs of an ISO time written in UTC (``2026-03-27T07:00``)."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * US


def schedule(kind: rs.ScheduleKind = "daily", tz: str = BERLIN, start_date: str = "2026-03-27",
             end_date: str = "2026-03-30", start_time: str = "08:00", stop_time: str = "12:00",
             weekdays: tuple[str, ...] = rs.WEEKDAYS) -> rs.Schedule:
    return rs.Schedule(
        id="5c4a8e9e-1f0b-4a4e-9c1e-000000000001", title="Clima 7B", group_name="7B",
        site=None, kind=kind, timezone=tz, start_date=rs.parse_date(start_date, "start_date"),
        end_date=rs.parse_date(end_date, "end_date"),
        start_time=rs.parse_clock(start_time, "start_time"),
        stop_time=rs.parse_clock(stop_time, "stop_time"),
        weekdays=weekdays if kind == "daily" else (), channels=(("station-1", "*"),),
        created_by="profe", created_at=0)


# -- windows across daylight-saving changes (pure) ---------------------------------------------

def test_a_daily_window_keeps_its_wall_clock_time_across_the_spring_change() -> None:
    # Berlin: 2026-03-29 02:00 CET jumps to 03:00 CEST. 08:00 local is 07:00Z before, 06:00Z after.
    found = schedule().windows()
    assert [(w.starts_at, w.ends_at) for w in found] == [
        (utc("2026-03-27T07:00"), utc("2026-03-27T11:00")),
        (utc("2026-03-28T07:00"), utc("2026-03-28T11:00")),
        (utc("2026-03-29T06:00"), utc("2026-03-29T10:00")),
        (utc("2026-03-30T06:00"), utc("2026-03-30T10:00")),
    ]


def test_one_window_across_a_change_is_an_hour_shorter_in_real_time() -> None:
    once = schedule("once", start_date="2026-03-27", end_date="2026-03-30",
                    start_time="08:00", stop_time="16:00")
    (w,) = once.windows()
    assert w.starts_at == utc("2026-03-27T07:00")
    assert w.ends_at == utc("2026-03-30T14:00")
    assert w.ends_at - w.starts_at == (3 * 24 + 8 - 1) * H


def test_santiago_autumn_and_spring_changes_at_midnight() -> None:
    # Chile: 2026-04-05 00:00 -03 goes back to 04-04 23:00 -04; 2026-09-06 00:00 -04 jumps
    # to 01:00 -03.
    autumn = schedule(tz=SANTIAGO, start_date="2026-04-03", end_date="2026-04-06")
    assert [w.starts_at for w in autumn.windows()] == [
        utc("2026-04-03T11:00"), utc("2026-04-04T11:00"),
        utc("2026-04-05T12:00"), utc("2026-04-06T12:00")]
    spring = schedule(tz=SANTIAGO, start_date="2026-09-05", end_date="2026-09-07")
    assert [w.starts_at for w in spring.windows()] == [
        utc("2026-09-05T12:00"), utc("2026-09-06T11:00"), utc("2026-09-07T11:00")]


def test_a_skipped_time_moves_forward_by_the_gap_and_an_emptied_window_is_skipped() -> None:
    # Santiago 2026-09-06 00:30 does not exist: it starts at 01:30 -03 (04:30Z).
    gap = schedule(tz=SANTIAGO, start_date="2026-09-06", end_date="2026-09-06",
                   start_time="00:30", stop_time="02:00")
    assert [(w.starts_at, w.ends_at) for w in gap.windows()] == [
        (utc("2026-09-06T04:30"), utc("2026-09-06T05:00"))]
    # Berlin 2026-03-29 02:30-02:50: both in the gap, an hour later, still 20 min.
    both = schedule(start_date="2026-03-29", end_date="2026-03-29",
                    start_time="02:30", stop_time="02:50")
    assert [(w.starts_at, w.ends_at) for w in both.windows()] == [
        (utc("2026-03-29T01:30"), utc("2026-03-29T01:50"))]
    # 02:30-03:15: the start moves to 03:30, after the stop: no window that day.
    emptied = schedule(start_date="2026-03-28", end_date="2026-03-30",
                       start_time="02:30", stop_time="03:15")
    assert [w.starts_at for w in emptied.windows()] == [utc("2026-03-28T01:30"),
                                                        utc("2026-03-30T00:30")]


def test_a_repeated_time_is_its_first_occurrence() -> None:
    # Berlin 2026-10-25 03:00 CEST goes back to 02:00 CET: 02:30 happens twice.
    (w,) = schedule(start_date="2026-10-25", end_date="2026-10-25", start_time="02:30",
                    stop_time="04:00").windows()
    assert w.starts_at == utc("2026-10-25T00:30")  # 02:30 CEST
    assert w.ends_at == utc("2026-10-25T03:00")  # 04:00 CET: 2 h 30 min of real time
    # Santiago 2026-04-04 23:30 happens twice (at 00:00 the clocks go back to 23:00).
    (late,) = schedule(tz=SANTIAGO, start_date="2026-04-04", end_date="2026-04-04",
                       start_time="23:00", stop_time="23:45").windows()
    assert late.starts_at == utc("2026-04-05T02:00")


def test_bogota_has_no_change() -> None:
    found = schedule(tz=BOGOTA, start_date="2026-03-27", end_date="2026-11-02",
                     weekdays=("mon",)).windows()
    assert {datetime.fromtimestamp(w.starts_at / US, UTC).hour for w in found} == {13}
    assert len(found) == 32


def test_weekdays_pick_the_days_and_bounds_pick_the_windows() -> None:
    week = schedule(start_date="2026-03-23", end_date="2026-03-29",
                    weekdays=rs.parse_weekdays(["Monday", "wed", "FRI"]))
    starts = [datetime.fromtimestamp(w.starts_at / US, UTC).date().isoformat()
              for w in week.windows()]
    assert starts == ["2026-03-23", "2026-03-25", "2026-03-27"]
    assert [w.starts_at for w in week.windows(since=utc("2026-03-25T10:00"),
                                              until=utc("2026-03-25T10:01"))] == [
        utc("2026-03-25T07:00")]


@pytest.mark.parametrize(("changes", "where", "words"), [
    ({"end_date": "2026-03-20"}, "end_date", "before the start date"),
    ({"kind": "once", "end_date": "2026-03-27", "stop_time": "07:00"}, "stop_time",
     "not after the start"),
    ({"stop_time": "08:00"}, "stop_time", "daily stop 08:00 is not after"),
    ({"kind": "once", "end_date": "2026-05-27"}, "end_date", "at most 31 days"),
    ({"end_date": "2027-06-01"}, "end_date", "at most 366 days"),
    ({"start_date": "2026-01-01", "end_date": "2026-01-05"}, "end_date", "already over"),
    ({"weekdays": ()}, "weekdays", "at least one weekday"),
])
def test_a_schedule_that_cannot_be_says_what_and_where(
    changes: dict[str, object], where: str, words: str,
) -> None:
    values: dict[str, object] = {"start_date": "2026-03-27", "end_date": "2026-03-30"}
    values.update(changes)
    s = schedule(**values)  # type: ignore[arg-type]
    with pytest.raises(rs.ScheduleError, match=words) as caught:
        rs.check(s, now=utc("2026-02-01T00:00"))
    assert caught.value.where == where


def test_bad_words_say_where() -> None:
    with pytest.raises(rs.ScheduleError) as caught:
        rs.parse_weekdays(["mon", "funday"])
    assert caught.value.where == "weekdays[1]"
    with pytest.raises(rs.ScheduleError, match="time of day") as caught:
        rs.parse_clock("24:00", "stop_time")
    with pytest.raises(rs.ScheduleError, match="not a date"):
        rs.parse_date("2026-02-30", "start_date")
    with pytest.raises(rs.ScheduleError, match="not a time zone") as caught:
        rs.zone("Mars/Olympus")
    assert caught.value.where == "timezone"


def test_the_jobs_are_in_the_catalog() -> None:
    ids = {s.id: s for s in job_specs(Settings())}
    assert ids["run-schedules"].coalesce and ids["firmata-sampling"].coalesce


# -- the job on a real database -------------------------------------------------------------

def _ctx(engine: Engine) -> JobContext:
    # The job reads only the hub's engine: a stand-in of our own Hub seam.
    return JobContext(hub=cast(Hub, SimpleNamespace(engine=engine, settings=Settings())),
                      job_id="run-schedules")


def _add(engine: Engine, **kw: object) -> rs.Schedule:
    values: dict[str, object] = dict(
        title="Clima 7B", channels=[("station-1", "*")], kind="daily", timezone=BERLIN,
        start_date="2026-03-27", end_date="2026-03-30", start_time="08:00",
        stop_time="12:00", weekdays=list(rs.WEEKDAYS), group_name="7B", created_by="profe",
        now=utc("2026-03-01T00:00"))
    values.update(kw)
    with engine.begin() as conn:
        return rs.add_schedule(conn=conn, **values)  # type: ignore[arg-type]


def _runs(engine: Engine) -> list[runs.Run]:
    with engine.connect() as conn:
        return sorted(runs.list_runs(conn=conn)[1], key=lambda r: r.started_at)


def test_the_job_starts_and_stops_each_window_once_across_the_change(engine: Engine) -> None:
    s = _add(engine)
    ctx = _ctx(engine)
    tick = schedule_jobs.run_schedules_at
    assert tick(ctx, utc("2026-03-27T06:59")) == "no scheduled run to start or stop"
    assert tick(ctx, utc("2026-03-27T07:00")).startswith("started 1")
    assert tick(ctx, utc("2026-03-27T07:01")) == "no scheduled run to start or stop"
    (run,) = _runs(engine)
    assert run.running and run.started_at == utc("2026-03-27T07:00")
    assert (run.title, run.group_name, run.started_by) == ("Clima 7B", "7B", "profe")
    assert run.channels == (("station-1", "*"),)
    assert run.notes == ()  # on time: no note
    assert "stopped 1" in tick(ctx, utc("2026-03-27T11:00"))
    # Ticks every 29 minutes across the change: one run per day, 08:00-12:00 local.
    minute = 60 * US
    for t in range(utc("2026-03-27T11:00"), utc("2026-03-30T12:00"), minute * 29):
        tick(ctx, t)
    tick(ctx, utc("2026-03-31T00:00"))
    found = _runs(engine)
    assert [(r.started_at, r.stopped_at) for r in found] == [
        (w.starts_at, w.ends_at) for w in s.windows()]
    assert found[2].started_at == utc("2026-03-29T06:00")  # 08:00 CEST
    assert not any(r.running for r in found)


def test_a_hub_that_was_off_catches_up(engine: Engine) -> None:
    s = _add(engine)
    ctx = _ctx(engine)
    # Off from before 08:00 until 09:30 local on the 27th: the run starts when it is back,
    # at the window's start, with a note that says so.
    assert "1 late" in schedule_jobs.run_schedules_at(ctx, utc("2026-03-27T08:30"))
    (run,) = _runs(engine)
    assert run.started_at == utc("2026-03-27T07:00") and run.running
    assert run.notes[0].text == (  # in the hub's language (Settings: es)
        "La inició su programación 90 min después de abrirse la ventana: el hub estaba "
        "apagado o dormido al comienzo; las lecturas empiezan ahora.")
    # Off again from 11:00 until the 28th at 09:00 (local 10:00): the first run is stopped
    # at its window's end, the second started.
    text = schedule_jobs.run_schedules_at(ctx, utc("2026-03-28T09:00"))
    assert "stopped 1" in text and "started 1" in text
    first, second = _runs(engine)
    assert first.stopped_at == utc("2026-03-27T11:00")
    assert second.running and second.started_at == s.windows()[1].starts_at
    # Off over the whole window of the 29th: no run for it; the 28th's run stops.
    schedule_jobs.run_schedules_at(ctx, utc("2026-03-29T20:00"))
    assert len(_runs(engine)) == 2 and not any(r.running for r in _runs(engine))


def test_a_run_stopped_by_hand_is_neither_restarted_nor_stopped_again(engine: Engine) -> None:
    _add(engine)
    ctx = _ctx(engine)
    schedule_jobs.run_schedules_at(ctx, utc("2026-03-27T07:05"))
    (run,) = _runs(engine)
    with engine.begin() as conn:
        runs.stop_run(conn=conn, run_id=run.id, stopped_at=utc("2026-03-27T08:00"))
    assert schedule_jobs.run_schedules_at(ctx, utc("2026-03-27T09:00")).startswith("no ")
    schedule_jobs.run_schedules_at(ctx, utc("2026-03-27T12:00"))
    (run,) = _runs(engine)
    assert run.stopped_at == utc("2026-03-27T08:00")


def test_a_schedule_made_during_a_window_records_from_then_without_a_late_note(
    engine: Engine,
) -> None:
    made = utc("2026-03-27T08:40")
    _add(engine, now=made)
    schedule_jobs.run_schedules_at(_ctx(engine), made + 50 * US)
    (run,) = _runs(engine)
    assert run.started_at == made and run.notes == ()


def test_removing_a_schedule_stops_its_run_and_keeps_it(engine: Engine) -> None:
    s = _add(engine)
    schedule_jobs.run_schedules_at(_ctx(engine), utc("2026-03-27T07:05"))
    with engine.begin() as conn:
        rs.remove_schedule(conn=conn, schedule_id=s.id, now=utc("2026-03-27T08:00"))
    (run,) = _runs(engine)
    assert run.stopped_at == utc("2026-03-27T08:00")
    assert schedule_jobs.run_schedules_at(_ctx(engine), utc("2026-03-28T07:05")).startswith(
        "no ")


_RACE = textwrap.dedent("""
    import sys
    from labhub.db import make_engine
    from sensors import run_schedules
    engine = make_engine(sys.argv[1])
    ticks = [int(t) for t in sys.argv[2:]]
    sys.stdin.readline()  # both processes start ticking together
    for now in ticks:
        with engine.begin() as conn:
            run_schedules.tick(conn=conn, now=now)
    engine.dispose()
""")


def test_two_processes_ticking_together_start_one_run_per_window(
    engine: Engine, database_url: str,
) -> None:
    s = _add(engine)
    ticks = [str(utc("2026-03-27T07:00") + k * 20 * US) for k in range(20)]
    ticks += [str(w.starts_at + k * US) for w in s.windows()[1:] for k in range(5)]
    procs = [subprocess.Popen([sys.executable, "-c", _RACE, database_url, *ticks],
                              stdin=subprocess.PIPE) for _ in range(2)]
    for p in procs:
        assert p.stdin is not None
        p.stdin.write(b"go\n")
        p.stdin.flush()
        p.stdin.close()
    for p in procs:
        assert p.wait(60) == 0
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(runs_table)).scalar_one() == 4
        assert len(rs.window_runs(conn=conn, schedule_id=s.id)) == 4


def test_upcoming_windows_start_with_the_open_one(engine: Engine) -> None:
    s = _add(engine)
    assert [w.starts_at for w in rs.upcoming(s, now=utc("2026-03-28T08:00"), count=2)] == [
        utc("2026-03-28T07:00"), utc("2026-03-29T06:00")]
    with engine.connect() as conn:
        total, items = rs.list_schedules(conn=conn)
        assert total == 1 and items[0] == rs.get_schedule(conn=conn, schedule_id=s.id)
        with pytest.raises(rs.UnknownScheduleError):
            rs.get_schedule(conn=conn, schedule_id="nope")
