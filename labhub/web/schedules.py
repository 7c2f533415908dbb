"""The scheduled runs page (``/run-schedules``): the schedules a person may see with their
next windows in the lab's time, a form to schedule a run (once, or daily on chosen
weekdays), and a button to delete one.

The page calls the API's own functions (:mod:`labhub.api.schedules`: who may make or
delete a schedule, at which site, as whom), never a rule of its own; what the domain
refuses comes back as a :class:`~sensors.run_schedules.ScheduleError` whose ``rule`` the
page says in the person's language next to its field. The channels offered are the runs
form's (the series the person may read). Without JavaScript every form posts and the page
comes back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from labhub.access.gate import On, Visible, gated_caller, needs
from labhub.access.permissions import Permission
from labhub.api import schedules as schedules_api
from labhub.api.deps import HubDep, settings_of
from labhub.api.sensors import RunChannelIn, writes_any_run
from labhub.web import i18n, pages
from labhub.web.i18n import N_
from labhub.web.pages import PageRoute, language_of, render
from labhub.web.runs import CHANNELS_MAX, _series_choices, check_run_fields
from labtext.times import format_local
from sensors import run_schedules as rs
from sensors.samples import now_us

router = APIRouter(route_class=PageRoute, include_in_schema=False)

UPCOMING: Final = 3  # windows shown of each schedule
# The note on a run its schedule started late (sensors.run_schedules.tick writes it).
LATE_NOTE: Final = N_("Started by its schedule %(minutes)s min after the window opened: the "
                      "hub was off or asleep at the start; readings begin now.")


def late_note(lang: str) -> Callable[[int], str]:
    """The late-start note in ``lang``, for the "run-schedules" job."""
    _ = i18n.gettext_of(lang)
    return lambda minutes: _(LATE_NOTE, minutes=minutes)

# Weekdays as the form names them, with their words (Monday first, as in Latin America).
WEEKDAY_WORDS: Final = (("mon", N_("Monday")), ("tue", N_("Tuesday")),
                        ("wed", N_("Wednesday")), ("thu", N_("Thursday")),
                        ("fri", N_("Friday")), ("sat", N_("Saturday")),
                        ("sun", N_("Sunday")))
# What each rule of sensors.run_schedules means, in the person's words.
RULES: Final = {
    "end_before_start": N_("The last day is before the first day."),
    "stop_not_after_start": N_("The stop must come after the start."),
    "daily_stop_not_after_start": N_("The daily stop must come after the daily start: a "
                                     "window ends on the day it starts."),
    "window_too_long": N_("A run may be scheduled for at most %(count)s days at once."),
    "span_too_long": N_("A daily schedule covers at most %(count)s days."),
    "no_weekday": N_("Choose at least one weekday."),
    "over": N_("Every window of this schedule is already over: choose days to come."),
    "bad_date": N_("Write a date: day, month and year."),
    "bad_time": N_("Write a time of day: hours and minutes."),
}
FIELDS: Final = ("start_date", "end_date", "start_time", "stop_time", "weekdays")


def _rule_message(_: Callable[..., str], exc: rs.ScheduleError) -> str:
    message = RULES.get(exc.rule)
    if message is None:
        return _("Check what you wrote.")
    count = rs.WINDOW_MAX_DAYS if exc.rule == "window_too_long" else rs.SPAN_MAX_DAYS
    return _(message, count=count)


def _lab_writer(request: Request, s: rs.Schedule) -> bool:
    caller = gated_caller(request)
    if not caller.has(Permission.RUNS_WRITE):
        return False
    mine = s.created_by is not None and s.created_by == caller.name
    return mine or writes_any_run(request, s.site)


def _page(request: Request, hub: HubDep, *, status: int = 200,
          values: Mapping[str, Any] | None = None,
          errors: Mapping[str, str] | None = None) -> HTMLResponse:
    caller = gated_caller(request)
    lang = language_of(request)
    _ = i18n.gettext_of(lang)
    visible = Visible(request, Permission.READINGS_READ)
    now = now_us()
    zone = settings_of(request).timezone
    with hub.engine.connect() as conn:
        _total, found = rs.list_schedules(conn=conn, limit=10_000)
    items = [{"schedule": s, "upcoming": rs.upcoming(s, now=now, count=UPCOMING),
              "may_delete": _lab_writer(request, s),
              "days_text": ", ".join(_(w) for d, w in WEEKDAY_WORDS if d in s.weekdays)}
             for s in found if visible(s.site)]
    may_write = caller.has(Permission.RUNS_WRITE)
    return render(request, "schedules.html", status=status, caller=caller, items=items,
                  may_write=may_write, now=now, weekday_words=WEEKDAY_WORDS,
                  values=values or {"kind": "daily", "chosen": set(),
                                    "weekdays": {"mon", "tue", "wed", "thu", "fri"}},
                  errors=errors or {}, channels_max=CHANNELS_MAX,
                  choices=_series_choices(request, hub, lang) if may_write else [],
                  local_time=lambda ts: format_local(ts, zone, step_us=60_000_000))


@router.get("/run-schedules", dependencies=[needs(Permission.READINGS_READ)])
def schedule_list(request: Request, hub: HubDep) -> HTMLResponse:
    """The schedules, their next windows in the lab's time, and the form to add one."""
    return _page(request, hub)


def _check(_: Callable[..., str], form: Mapping[str, str],
           choices: list[dict[str, Any]]) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """What is wrong with the text fields and the channels (the times are the domain's)."""
    errors, chosen = check_run_fields(_, form, choices)
    for name in ("start_date", "end_date", "start_time", "stop_time"):
        if not form.get(name, "").strip():
            errors[name] = (_("Write a date: day, month and year.") if name.endswith("date")
                            else _("Write a time of day: hours and minutes."))
    return errors, chosen


@router.post("/run-schedules", dependencies=[needs(Permission.RUNS_WRITE, On.ROUTE)])
async def add_schedule(request: Request, hub: HubDep) -> Response:
    """Schedule a run (the form); the page again after, with the new schedule listed."""
    form = await pages.signed_form(request)
    _ = i18n.gettext_of(language_of(request))
    choices = await run_in_threadpool(_series_choices, request, hub, language_of(request))
    errors, chosen = _check(_, form, choices)
    kind = "once" if form.get("kind") == "once" else "daily"
    days = [d for d, _w in WEEKDAY_WORDS if form.get(f"wd_{d}")]
    values: dict[str, Any] = {key: form.get(key, "")
                              for key in ("title", "group", *FIELDS[:4])}
    values |= {"kind": kind, "weekdays": set(days), "chosen": {c["value"] for c in chosen}}
    if kind == "daily" and not days:
        errors["weekdays"] = _("Choose at least one weekday.")
    if errors:
        return await run_in_threadpool(
            lambda: _page(request, hub, status=422, values=values, errors=errors))

    def add() -> rs.ScheduleError | None:
        body = schedules_api.ScheduleIn.model_construct(
            title=values["title"].strip(), group=values["group"].strip() or None,
            site=chosen[0]["site"], kind=kind, start_date=values["start_date"].strip(),
            end_date=values["end_date"].strip(), start_time=values["start_time"].strip(),
            stop_time=values["stop_time"].strip(), weekdays=days if kind == "daily" else [],
            channels=[RunChannelIn(device=c["device"], channel=c["channel"])
                      for c in chosen])
        try:
            with hub.engine.begin() as conn:
                schedules_api.make(request, conn, body)
        except rs.ScheduleError as exc:
            return exc
        return None

    exc = await run_in_threadpool(add)
    if exc is not None:
        field = exc.where.split("[")[0]
        errors = {field if field in FIELDS else "form": _rule_message(_, exc)}
        return await run_in_threadpool(
            lambda: _page(request, hub, status=422, values=values, errors=errors))
    return RedirectResponse(f"{pages._root(request)}/run-schedules", status_code=303)


@router.post("/run-schedules/{schedule_id}/delete",
             dependencies=[needs(Permission.RUNS_WRITE, On.ROUTE)])
async def delete_schedule(request: Request, hub: HubDep, schedule_id: str) -> Response:
    """Delete a schedule (the API's rules); the page after. One already gone shows the
    page."""
    await pages.signed_form(request)

    def remove() -> None:
        with hub.engine.begin() as conn:
            try:
                rs.get_schedule(conn=conn, schedule_id=schedule_id)
            except rs.UnknownScheduleError:
                return
            schedules_api.remove(request, conn, schedule_id)

    await run_in_threadpool(remove)
    return RedirectResponse(f"{pages._root(request)}/run-schedules", status_code=303)
