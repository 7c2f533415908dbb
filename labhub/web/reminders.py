"""The reminders page, ``/reminders``: what needs the person's attention, by kind.

The hub's reminders (:func:`labhub.reminders.due.gather`: loans overdue or due by
tomorrow, audits due, maintenance and calibration due, stock below its reorder level,
silent devices) kept to the person's (each reminder's permission at its site, as the API's
``GET /api/v1/reminders``), grouped by kind, each in words (``reminders_text``) with a
link to the page of the thing. ``?site=`` keeps one site and the sites under it. The
home page shows how many there are (:func:`count_for`).

An asset's page lists its service plans; its "Done today" button posts to
``/assets/{tag}/service-done`` (``loans.write`` at the asset's site), which records the
work done through the API's own route and comes back to the asset's page.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse

from inventory.errors import InvalidValueError
from labhub.access.caller import Caller
from labhub.access.gate import On, gated_caller, needs
from labhub.access.permissions import Permission
from labhub.access.sites import tree_for
from labhub.api import reminders as reminders_api
from labhub.api.common import KEY_PATTERN
from labhub.api.deps import HubDep, settings_of
from labhub.problems import Problem
from labhub.reminders import due
from labhub.web import pages, reminders_text
from labhub.web.pages import PageRoute, signed_form
from sensors.samples import now_us

router = APIRouter(route_class=PageRoute, include_in_schema=False)


def mine(request: Request, hub: HubDep, caller: Caller, site: str | None = None
         ) -> list[due.Reminder]:
    """The caller's reminders now (at ``site`` and under it, when given); worked out once
    per request."""
    cached: dict[str | None, list[due.Reminder]] = getattr(request.state, "reminders", {})
    if site not in cached:
        with hub.engine.connect() as conn:
            found = due.gather(conn, settings_of(request), now=now_us())
        cached[site] = due.visible_to(found, caller, tree_for(request), site=site)
        request.state.reminders = cached
    return cached[site]


def count_for(request: Request, hub: HubDep, caller: Caller) -> int | None:
    """How many reminders the caller has; None for one who may act on none (a student,
    a ministry's reader), for whom the home page says nothing of them."""
    if not any(caller.has(p) for p in set(due.PERMISSIONS.values())):
        return None
    return len(mine(request, hub, caller))


@router.get("/reminders", dependencies=[needs(Permission.SIGNED_IN)])
def reminders_page(
    request: Request, hub: HubDep,
    site: Annotated[str | None, Query(max_length=64, pattern=KEY_PATTERN)] = None,
) -> HTMLResponse:
    """The person's reminders, by kind, each linking to its loan, audit, asset, stock or
    device."""
    caller = gated_caller(request)
    if site is not None and site not in tree_for(request).parents:
        raise Problem(404, "Not found in the inventory", f"no site with code {site!r}")
    lang = pages.language_of(request)
    zone = settings_of(request).timezone
    groups = [(reminders_text.heading(kind, lang), kind,
               [(r, reminders_text.describe(r, lang, zone)) for r in items])
              for kind, items in due.by_kind(mine(request, hub, caller, site))]
    return pages.render(request, "reminders.html", caller=caller, groups=groups, site=site,
                        total=sum(len(items) for _, _, items in groups))


@router.post("/assets/{tag:path}/service-done",
             dependencies=[needs(Permission.LOANS_WRITE, On.path("asset", "tag"))])
async def service_done_form(tag: str, request: Request, hub: HubDep) -> RedirectResponse:
    """Record an asset's maintenance or calibration done today (``kind``)."""
    form = await signed_form(request)
    kind = form.get("kind", "")
    if kind not in ("maintenance", "calibration"):
        raise InvalidValueError("kind is maintenance or calibration")
    actor = gated_caller(request).name

    def write() -> None:
        with hub.engine.begin() as conn:
            reminders_api.record_service_done(
                tag=tag, kind=kind,  # type: ignore[arg-type]
                body=reminders_api.ServiceDoneIn(), actor=actor, conn=conn)

    await run_in_threadpool(write)
    return RedirectResponse(f"{pages.root_of(request)}/assets/{quote(tag)}?done=service_done",
                            status_code=303)
