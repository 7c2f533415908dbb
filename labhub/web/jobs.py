"""The jobs page, ``/jobs``: each of the hub's jobs, when it runs, its next run and its last
result (done, or failed with its error in plain words, and when it is tried again), with a
"Run now" button for those who may run jobs (``jobs.run``).

The page reads what the API's ``GET /api/v1/jobs`` reads (:func:`labhub.scheduler.service.
statuses`), so any process of the hub shows the same; "Run now" asks for a run as
``POST /api/v1/jobs/{id}/run`` does, and comes back to the page, which says it was asked
for (or that a run was already under way).

Jobs' titles are English in their specs (``JobSpec.title``); :data:`TITLES` marks them for
the catalogs, and a title with no translation shows in English.
"""

from __future__ import annotations

from typing import Annotated, Any, Final
from urllib.parse import urlencode

from apscheduler.triggers.base import BaseTrigger
from fastapi import APIRouter, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from labhub.access.gate import On, gated_caller, needs
from labhub.access.permissions import Permission as P
from labhub.access.sites import tree_for
from labhub.api.deps import HubDep, settings_of
from labhub.api.jobs import JOB_ID_PATTERN, hub_specs
from labhub.scheduler.service import statuses, timing
from labhub.web import i18n, pages
from labhub.web.i18n import N_
from labhub.web.pages import PageRoute
from labhub.wiring import Hub

router = APIRouter(route_class=PageRoute, include_in_schema=False)

# Every job's title, for the catalogs (a job added to the catalog adds its title here and
# its translations to locale/*/LC_MESSAGES/jobs.po; until then it shows in English).
TITLES: Final = (
    N_("Delete old audit log entries"),
    N_("Drop unfinished batch pieces"),
    N_("Roll up new readings into hourly and daily summaries"),
    N_("Delete old raw readings that are rolled up and safe elsewhere"),
    N_("Nightly backup"),
    N_("Disk guard"),
    N_("Reminders: the day's e-mail digest"),
    N_("Start and stop scheduled runs"),
    N_("Sample slow Firmata boards"),
)
OUTCOMES: Final = {"ok": N_("Done"), "failed": N_("Failed"), "skipped": N_("Skipped"),
                   "running": N_("Running now"), "requested": N_("Asked for, starting")}
WEEKDAYS: Final = {"mon": N_("Mondays"), "tue": N_("Tuesdays"), "wed": N_("Wednesdays"),
                   "thu": N_("Thursdays"), "fri": N_("Fridays"), "sat": N_("Saturdays"),
                   "sun": N_("Sundays")}


def when(trigger: BaseTrigger, _: Any, english: str) -> str:
    """When a job runs, in the page's language (the English description where the
    trigger is of a kind these words do not cover)."""
    found = timing(trigger)
    if found is not None and found.every_s is not None:
        seconds = found.every_s
        if seconds % 3600 == 0:
            return str(_("Every %(n)s h", n=seconds // 3600))
        if seconds % 60 == 0:
            return str(_("Every %(n)s min", n=seconds // 60))
        return str(_("Every %(n)s s", n=seconds))
    if found is not None:
        if found.days is None:
            return str(_("Every day at %(time)s", time=found.at))
        day = WEEKDAYS.get(found.days)
        if day is not None:
            return str(_("%(days)s at %(time)s", days=_(day), time=found.at))
    return english


def _may_run(request: Request) -> bool:
    caller = gated_caller(request)
    return caller.has(P.JOBS_RUN) and caller.can(P.JOBS_RUN, settings_of(request).site,
                                                 tree_for(request))


@router.get("/jobs", dependencies=[needs(P.JOBS_READ, On.HUB)])
def jobs_page(
    request: Request, hub: HubDep,
    asked: Annotated[str | None, Query(max_length=64, pattern=JOB_ID_PATTERN)] = None,
    busy: Annotated[str | None, Query(max_length=64, pattern=JOB_ID_PATTERN)] = None,
) -> HTMLResponse:
    """The hub's jobs with their next and last runs."""
    _ = i18n.gettext_of(pages.language_of(request))
    found = statuses(hub.engine, hub_specs(hub))
    titles = {s.id: _(s.title) for s in found}
    return pages.render(
        request, "jobs.html", caller=gated_caller(request), jobs=found, titles=titles,
        when={s.id: when(s.spec.trigger, _, s.trigger) for s in found},
        outcomes=OUTCOMES, may_run=_may_run(request) and hub.scheduler is not None,
        runs_jobs=hub.scheduler is not None, asked=titles.get(asked or ""),
        busy=titles.get(busy or ""))


@router.post("/jobs/{job_id}/run", dependencies=[needs(P.JOBS_RUN, On.HUB)])
async def run_form(request: Request, hub: HubDep,
                   job_id: Annotated[str, Path(pattern=JOB_ID_PATTERN)]) -> Response:
    """Ask for a run of the job now, as the API does; back to the page, which says so."""
    await pages.signed_form(request)
    asked = await run_in_threadpool(_ask, hub, job_id, gated_caller(request).name)
    key = "asked" if asked else "busy"
    return RedirectResponse(f"{pages.root_of(request)}/jobs?" + urlencode({key: job_id}),
                            status_code=303)


def _ask(hub: Hub, job_id: str, who: str) -> bool:
    from labhub.api.jobs import find_spec
    from labhub.problems import Problem

    find_spec(hub, job_id)  # 404 page for a job this hub does not have
    if hub.scheduler is None:
        raise Problem(503, "This hub runs no jobs", "this hub process does not run jobs")
    return hub.scheduler.request(job_id, requested_by=who) is not None
