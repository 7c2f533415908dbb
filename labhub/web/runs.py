"""The web app's runs pages: start a run of chosen channels, add notes while it runs,
stop it, list one's runs (and, for a teacher, the lab's), export it.

The pages call the API's own run functions (:mod:`labhub.api.sensors`: who may start,
stop or annotate, the idempotent start, ``started_by``), never a rule of their own. The
start form carries a key made when the form is shown (a UUID, the run's id): sent twice,
it starts one run. A note's form posts here without JavaScript; ``runs.js`` posts it to
the API instead, keeps the draft in the tab's ``sessionStorage`` while it is typed, and on
an expired session asks to sign in again with the draft kept (see docs/web.md, "Runs").
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Final
from urllib.parse import quote, unquote, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from firmware_bridge import registry
from inventory.values import NOTE_MAX, TEXT_MAX
from labhub.access.caller import Caller
from labhub.access.gate import On, Visible, gated_caller, needs
from labhub.access.permissions import Permission, Role
from labhub.api import sensors as sensors_api
from labhub.api.deps import HubDep, settings_of
from labhub.web import charts, i18n, pages
from labhub.web.pages import PageRoute, language_of, render
from labtext.printable import FILLED_TEXT_PATTERN, NAME_PATTERN
from labtext.times import format_time
from sensors import export, queries, runs
from sensors.errors import RunStateError
from sensors.samples import now_us
from sensors.storage import SeriesRow

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PAGE_SIZE: Final = 20  # runs a list page shows: a class's runs of a week fit on two
CHANNEL_FIELD: Final = re.compile(r"ch[0-9]{1,3}")
# A page's form fields past these (csrf_token, key, title, group) are chosen channels:
# A run records at most this many channels (a form and a chart stay readable).
CHANNELS_MAX: Final = 16


def _choice(device: str, channel: str) -> str:
    """A channel's checkbox value: device and channel, each %-quoted, joined by ``/``."""
    return f"{quote(device, safe='')}/{quote(channel, safe='')}"


def _unchoice(value: str) -> tuple[str, str] | None:
    device, slash, channel = value.partition("/")
    return (unquote(device), unquote(channel)) if slash and device and channel else None


def _rfc3339(ts_us: int | None) -> str:
    return "" if ts_us is None else format_time(ts_us)


def _lab_view(caller: Caller) -> bool:
    """Whether the caller sees the lab's runs besides their own (a role above student)."""
    return any(g.role is not Role.STUDENT for g in caller.grants)


def _series_choices(request: Request, hub: HubDep, lang: str) -> list[dict[str, Any]]:
    """The series the caller may record (the devices' they may read), with the devices'
    names and the quantities' labels in ``lang``."""
    visible = Visible(request, Permission.READINGS_READ)
    with hub.engine.connect() as conn:
        names = {d.id: d.name for d in registry.list_devices(conn=conn)}
        rows = [r for r in queries.list_series(conn=conn) if visible(r.site)]
    return [{"device": r.device, "channel": r.channel, "site": r.site,
             "device_name": names.get(r.device) or r.device,
             "label": export.series_label(r, lang), "value": _choice(r.device, r.channel)}
            for r in sorted(rows, key=lambda r: (names.get(r.device) or r.device, r.channel))]


# -- list ------------------------------------------------------------------------------------

@router.get("/runs", dependencies=[needs(Permission.READINGS_READ)])
def run_list(request: Request, hub: HubDep,
             page: Annotated[int, Query(ge=1, le=10_000)] = 1,
             who: Annotated[str, Query(pattern="^(mine|lab)$")] = "mine") -> HTMLResponse:
    """My runs, newest first; a teacher also the lab's (``who=lab``)."""
    caller = gated_caller(request)
    lab_view = _lab_view(caller)
    if not lab_view:
        who = "mine"
    limit = PAGE_SIZE
    with hub.engine.connect() as conn:
        answer = sensors_api.list_runs(request, conn, limit=limit,
                                       offset=(page - 1) * limit, mine=who == "mine")
        items = [runs.get_run(conn=conn, run_id=item.id) for item in answer.items]
    pages_total = max(1, -(-answer.total // limit))

    def link(n: int) -> str:
        return request.url.path + "?" + urlencode({"who": who, "page": n})

    return render(request, "runs_list.html", caller=caller, runs=items, who=who,
                  lab_view=lab_view, page=page, pages_total=pages_total, total=answer.total,
                  prev_link=link(page - 1) if page > 1 else None,
                  next_link=link(page + 1) if page < pages_total else None,
                  may_start=caller.has(Permission.RUNS_WRITE))


# -- start -----------------------------------------------------------------------------------

def _new_page(request: Request, hub: HubDep, *, status: int = 200, key: str | None = None,
              values: Mapping[str, Any] | None = None,
              errors: Mapping[str, str] | None = None) -> HTMLResponse:
    lang = language_of(request)
    return render(request, "runs_new.html", status=status, caller=gated_caller(request),
                  key=key or str(uuid.uuid4()), values=values or {"chosen": set()},
                  errors=errors or {}, choices=_series_choices(request, hub, lang),
                  channels_max=CHANNELS_MAX)


@router.get("/runs/new", dependencies=[needs(Permission.RUNS_WRITE)])
def new_run(request: Request, hub: HubDep) -> HTMLResponse:
    """The form that starts a run: title, group, the channels to record."""
    return _new_page(request, hub)


def check_run_fields(_: Callable[..., str], form: Mapping[str, str],
                     choices: list[dict[str, Any]]) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """What is wrong with a run's title, group and channels (the start form's and a
    schedule's), and the channels chosen among ``choices``."""
    errors: dict[str, str] = {}
    title = form.get("title", "").strip()
    if not title:
        errors["title"] = _("Write a title for the run.")
    elif len(title) > TEXT_MAX or re.fullmatch(NAME_PATTERN, title) is None:
        errors["title"] = _("A title has at most %(count)s letters, without control "
                            "characters.", count=TEXT_MAX)
    group = form.get("group", "").strip()
    if group and (len(group) > TEXT_MAX or re.fullmatch(NAME_PATTERN, group) is None):
        errors["group"] = _("A group has at most %(count)s letters, without control "
                            "characters.", count=TEXT_MAX)
    offered = {c["value"]: c for c in choices}
    picked = [v for k, v in form.items() if CHANNEL_FIELD.fullmatch(k)]
    chosen = [offered[v] for v in picked if v in offered]
    if len(chosen) != len(picked) or any(_unchoice(v) is None for v in picked):
        errors["channels"] = _("A channel you chose is no longer here: choose again.")
    elif not chosen:
        errors["channels"] = _("Choose at least one channel to record.")
    elif len(chosen) > CHANNELS_MAX:
        errors["channels"] = _("Choose at most %(count)s channels.", count=CHANNELS_MAX)
    elif len({c["site"] for c in chosen}) > 1:
        errors["channels"] = _("Choose channels of one lab only.")
    return errors, chosen


def _check_start(_: Callable[..., str], form: Mapping[str, str],
                 choices: list[dict[str, Any]]) -> tuple[dict[str, str], list[SeriesRow]]:
    """What is wrong with each field of the start form, and the chosen series."""
    errors, chosen = check_run_fields(_, form, choices)
    rows = [SeriesRow(0, c["device"], c["channel"], None, None, c["site"]) for c in chosen]
    return errors, rows


@router.post("/runs", dependencies=[needs(Permission.RUNS_WRITE, On.ROUTE)])
async def start_run(request: Request, hub: HubDep) -> Response:
    """Start a run (the form without JavaScript); the run's page after."""
    form = await pages.signed_form(request)
    _ = i18n.gettext_of(language_of(request))
    choices = await run_in_threadpool(_series_choices, request, hub, language_of(request))
    key = form.get("key", "")
    try:
        key = str(uuid.UUID(key))
    except ValueError:
        key = str(uuid.uuid4())
    errors, rows = _check_start(_, form, choices)
    values = {"title": form.get("title", ""), "group": form.get("group", ""),
              "chosen": {_choice(r.device, r.channel) for r in rows}}
    if errors:
        return await run_in_threadpool(_again, request, hub, 422, key, values,
                                       errors)
    try:
        body = sensors_api.RunIn(
            id=uuid.UUID(key), title=form["title"].strip(),
            group=form.get("group", "").strip() or None, site=rows[0].site,
            channels=[sensors_api.RunChannelIn(device=r.device, channel=r.channel)
                      for r in rows])
    except ValidationError:
        return await run_in_threadpool(_again, request, hub, 422, key, values,
                                       {"form": _("Check what you wrote.")})

    def start() -> str:
        with hub.engine.begin() as conn:
            run, _new = sensors_api.start_run(request, conn, body)
        return run.id

    try:
        run_id = await run_in_threadpool(start)
    except RunStateError:  # the key is another run's: this form was changed after sending
        return await run_in_threadpool(
            _again, request, hub, 409, str(uuid.uuid4()), values,
            {"form": _("This form already started another run: check it and start "
                       "again.")})
    return RedirectResponse(f"{pages._root(request)}/runs/{quote(run_id)}", status_code=303)


def _again(request: Request, hub: HubDep, status: int, key: str,
           values: Mapping[str, Any], errors: Mapping[str, str]) -> HTMLResponse:
    """The start form again, with what was written and what is wrong."""
    return _new_page(request, hub, status=status, key=key, values=values, errors=errors)


# -- one run ---------------------------------------------------------------------------------

def _export_links(root: str, run_id: str, lang: str) -> dict[str, str]:
    """The run's CSV in the person's spreadsheet dialect (es, pt: ``;`` and decimal
    comma), and its JSON, both in the lab's time zone."""
    comma_decimal = lang in ("es", "pt")
    csv_query = urlencode({"delimiter": "semicolon" if comma_decimal else "comma",
                           "decimal": "comma" if comma_decimal else "point",
                           "lang": lang, "tz": "local"})
    base = f"{root}/api/v1/runs/{quote(run_id)}"
    return {"csv": f"{base}/export.csv?{csv_query}",
            "json": f"{base}/export.json?" + urlencode({"lang": lang, "tz": "local"})}


def _run_page(request: Request, hub: HubDep, run_id: str, *, status: int = 200,
              note: str = "", errors: Mapping[str, str] | None = None) -> HTMLResponse:
    caller = gated_caller(request)
    lang = language_of(request)
    with hub.engine.connect() as conn:
        sensors_api.get_run(run_id, conn)  # the API's answer for a run that is not there
        run = runs.get_run(conn=conn, run_id=run_id)
        series = runs.run_series(conn=conn, run=run)
        names = {d.id: d.name for d in registry.list_devices(conn=conn)}
        drawn, figure = charts.run_chart(conn, run, lang, i18n.Formats(
            lang, settings_of(request).timezone), now_us())
    may_write = (caller.has(Permission.RUNS_WRITE)
                 and ((run.started_by is not None and run.started_by == caller.name)
                      or sensors_api.writes_any_run(request, run.site)))
    root = pages._root(request)
    channels = [{"device_name": names.get(d) or d, "channel": c,
                 "label": next((export.series_label(s, lang) for s in series
                                if s.device == d and s.channel == c), c)}
                for d, c in run.channels]
    return render(request, "runs_run.html", status=status, caller=caller, run=run,
                  channels=channels, may_write=may_write, note=note, errors=errors or {},
                  exports=_export_links(root, run.id, lang) if series else None,
                  figure=figure, drawn=drawn, notes_elsewhere=True, note_max=NOTE_MAX,
                  starter=None if run.started_by is None else pages.shown_name(run.started_by),
                  rfc3339=_rfc3339,
                  signin=f"{root}/signin?" + urlencode({"next": request.url.path}))


@router.get("/runs/{run_id}", dependencies=[needs(Permission.READINGS_READ,
                                                  On.path("run", "run_id"))])
def run_page(request: Request, hub: HubDep, run_id: str) -> HTMLResponse:
    """A run: its state, channels, notes and chart; stop and note forms; exports."""
    return _run_page(request, hub, run_id)


@router.post("/runs/{run_id}/stop", dependencies=[needs(Permission.RUNS_WRITE,
                                                        On.path("run", "run_id"))])
async def stop_run(request: Request, hub: HubDep, run_id: str) -> Response:
    """Stop the run (the API's rules: a student, a run they started); its page after. A
    run already stopped (a second click) shows its page."""
    await pages.signed_form(request)

    def stop() -> None:
        with hub.engine.begin() as conn:
            run = runs.get_run(conn=conn, run_id=run_id)
            if run.running:
                sensors_api.stop_run(run_id, conn, request)
            else:
                sensors_api.require_run_writer(request, run)

    await run_in_threadpool(stop)
    return RedirectResponse(f"{pages._root(request)}/runs/{quote(run_id)}", status_code=303)


@router.post("/runs/{run_id}/notes", dependencies=[needs(Permission.RUNS_WRITE,
                                                         On.path("run", "run_id"))])
async def add_note(request: Request, hub: HubDep, run_id: str) -> Response:
    """Add a note (the form without JavaScript); the run's page after."""
    form = await pages.signed_form(request)
    _ = i18n.gettext_of(language_of(request))
    text = form.get("text", "")
    error = None
    if not text.strip():
        error = _("Write the note first.")
    elif len(text) > NOTE_MAX or re.fullmatch(FILLED_TEXT_PATTERN, text) is None:
        error = _("A note has at most %(count)s letters, without control characters.",
                  count=NOTE_MAX)
    if error is not None:
        return await run_in_threadpool(
            lambda: _run_page(request, hub, run_id, status=422, note=text,
                              errors={"text": error}))

    def add() -> None:
        with hub.engine.begin() as conn:
            sensors_api.add_note(run_id, sensors_api.NoteIn(text=text), conn, request)

    await run_in_threadpool(add)
    return RedirectResponse(f"{pages._root(request)}/runs/{quote(run_id)}#notes",
                            status_code=303)
