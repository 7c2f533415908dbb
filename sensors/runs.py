"""Runs: what students record in one data-collection session.

A run is like an experiment in a data-logger app: a title, the student group, the site,
the channels it records, a start and (once stopped) a stop time, and timestamped notes
("10:42 moved the sensor into the shade"). Readings are not copied into a run: the
readings of its channels between start and stop belong to it. Runs carry UUIDs so that
runs from many hubs can merge on a central server.

A run records who started it (``started_by``, the account's name: a student's "my runs").
Starting is idempotent when the caller brings the run's id (a form's key made when it was
shown): the same id with the same values answers the run already there, never a second
one; the same id with other values is a :class:`RunStateError`.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, Connection, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from labtext import printable
from sensors.errors import InvalidTextError, RunStateError, UnknownRunError
from sensors.samples import now_us
from sensors.storage import SeriesRow, run_channels, run_notes, runs, series

ALL_CHANNELS = "*"  # a run channel entry that records every channel of a device


@dataclass(frozen=True, slots=True)
class RunNote:
    """A timestamped note a student wrote during a run."""

    id: str
    ts: int
    text: str


@dataclass(frozen=True, slots=True)
class Run:
    """A data-collection session and what it records."""

    id: str
    title: str
    group_name: str | None
    site: str | None
    started_at: int
    stopped_at: int | None
    channels: tuple[tuple[str, str], ...]
    notes: tuple[RunNote, ...] = field(default=())
    started_by: str | None = None

    @property
    def running(self) -> bool:
        """True until the run is stopped."""
        return self.stopped_at is None


def _checked(what: str, text: str, *, free_text: bool = False) -> str:
    """``text`` if :mod:`labtext.printable` lets it be a name (a note with ``free_text``),
    else :class:`InvalidTextError` naming ``what``."""
    try:
        return printable.check_free_text(text) if free_text else printable.check_name(text)
    except printable.UnprintableTextError as exc:
        raise InvalidTextError(f"{what} {exc}") from None


def start_run(
    *,
    conn: Connection,
    title: str,
    channels: Sequence[tuple[str, str]],
    group_name: str | None = None,
    site: str | None = None,
    started_at: int | None = None,
    started_by: str | None = None,
    run_id: str | None = None,
) -> tuple[Run, bool]:
    """Start a run and say whether it is new. A ``run_id`` (a UUID) already used by a run
    with the same title, group, site, channels and starter (and start, when given)
    answers that run (``False``): a form sent twice starts one run. Used by a run with
    other values, it is a :class:`RunStateError`."""
    title = _checked("the run's title", title.strip())
    if not title:
        raise RunStateError("a run needs a title")
    if group_name is not None:
        _checked("the run's group", group_name)
    if site is not None:
        _checked("the run's site", site)
    if started_by is not None:
        _checked("the run's starter", started_by)
    if not channels:
        raise RunStateError("a run needs at least one device and channel to record")
    now = now_us()
    if run_id is None:
        run_id = str(uuid.uuid4())
    else:
        try:
            run_id = str(uuid.UUID(run_id))
        except ValueError:
            raise RunStateError(f"a run's id is a UUID, not {run_id!r}") from None
    unique = list(dict.fromkeys((d, c) for d, c in channels))
    values = {"id": run_id, "title": title, "group_name": group_name, "site": site,
              "started_at": now if started_at is None else started_at, "stopped_at": None,
              "created_at": now, "started_by": started_by}
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    added = conn.execute(dialect.insert(runs).values(**values)
                         .on_conflict_do_nothing(index_elements=["id"])
                         .returning(runs.c.id)).first()
    if added is None:  # the id is taken: by this same run (a second submit), or another
        there = get_run(conn=conn, run_id=run_id)
        same = (there.title == title and there.group_name == group_name
                and there.site == site and there.started_by == started_by
                and set(there.channels) == set(unique)
                and (started_at is None or there.started_at == started_at))
        if not same:
            raise RunStateError(f"the id {run_id!r} is another run's")
        return there, False
    conn.execute(
        insert(run_channels), [{"run_id": run_id, "device": d, "channel": c} for d, c in unique]
    )
    return get_run(conn=conn, run_id=run_id), True


def get_run(*, conn: Connection, run_id: str) -> Run:
    """The run with its channels and notes; :class:`UnknownRunError` if there is none."""
    r = conn.execute(select(runs).where(runs.c.id == run_id)).first()
    if r is None:
        raise UnknownRunError(f"no run with id {run_id!r}")
    chans = tuple(
        (c.device, c.channel)
        for c in conn.execute(
            select(run_channels)
            .where(run_channels.c.run_id == run_id)
            .order_by(run_channels.c.device, run_channels.c.channel)
        )
    )
    notes = tuple(
        RunNote(n.id, n.ts, n.text)
        for n in conn.execute(
            select(run_notes).where(run_notes.c.run_id == run_id).order_by(run_notes.c.ts)
        )
    )
    return Run(r.id, r.title, r.group_name, r.site, r.started_at, r.stopped_at, chans, notes,
               r.started_by)


def list_runs(
    *, conn: Connection, site: str | None = None, limit: int = 100, offset: int = 0,
    sites: Collection[str] | None = None, unsited: bool = True,
    started_by: str | None = None,
) -> tuple[int, list[Run]]:
    """The total count and one page of runs, newest first. ``sites``, when given, keeps
    only runs at those sites, and runs with no site when ``unsited`` (where the person
    asking may look), the total too; ``started_by``, only the runs that person started."""
    count = select(func.count()).select_from(runs)
    page = (select(runs.c.id).order_by(runs.c.started_at.desc(), runs.c.id)
            .limit(limit).offset(offset))
    if started_by is not None:
        count = count.where(runs.c.started_by == started_by)
        page = page.where(runs.c.started_by == started_by)
    if site is not None:
        count = count.where(runs.c.site == site)
        page = page.where(runs.c.site == site)
    if sites is not None:
        where: ColumnElement[bool] = runs.c.site.in_(sorted(sites))
        if unsited:
            where = or_(where, runs.c.site.is_(None))
        count = count.where(where)
        page = page.where(where)
    total = int(conn.execute(count).scalar_one())
    return total, [get_run(conn=conn, run_id=rid) for (rid,) in conn.execute(page)]


def stop_run(*, conn: Connection, run_id: str, stopped_at: int | None = None) -> Run:
    """Stop a running run; stopping one that is stopped is a :class:`RunStateError`."""
    run = get_run(conn=conn, run_id=run_id)
    if not run.running:
        raise RunStateError(f"run {run_id!r} is already stopped")
    at = now_us() if stopped_at is None else stopped_at
    if at < run.started_at:
        raise RunStateError("a run cannot stop before it started")
    conn.execute(update(runs).where(runs.c.id == run_id).values(stopped_at=at))
    return get_run(conn=conn, run_id=run_id)


def add_note(*, conn: Connection, run_id: str, text: str, ts: int | None = None) -> RunNote:
    """Add a timestamped note to a run."""
    get_run(conn=conn, run_id=run_id)
    text = _checked("the note", text.strip(), free_text=True)
    if not text:
        raise RunStateError("a note needs some text")
    note = RunNote(str(uuid.uuid4()), now_us() if ts is None else ts, text)
    conn.execute(insert(run_notes).values(id=note.id, run_id=run_id, ts=note.ts, text=note.text))
    return note


def run_series(*, conn: Connection, run: Run) -> list[SeriesRow]:
    """The stored series that the run records, ordered by device then channel."""
    found: dict[int, SeriesRow] = {}
    for device, channel in run.channels:
        query = select(series).where(series.c.device == device)
        if channel != ALL_CHANNELS:
            query = query.where(series.c.channel == channel)
        for r in conn.execute(query):
            found[r.id] = SeriesRow(r.id, r.device, r.channel, r.quantity, r.unit, r.site)
    return sorted(found.values(), key=lambda s: (s.device, s.channel))


def run_window(run: Run) -> tuple[int, int | None]:
    """``[start, end)`` of the run's readings; ``end`` is None while it runs."""
    return run.started_at, None if run.stopped_at is None else run.stopped_at + 1
