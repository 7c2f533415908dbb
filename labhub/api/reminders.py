"""Reminders over HTTP: what is due for the person asking (loans, audits, maintenance and
calibration, stock, silent devices), and an asset's service plans, the planned
maintenance and calibration that feed them.

``GET /api/v1/reminders`` lists the caller's reminders: the hub's
(:func:`labhub.reminders.due.gather`), kept to those whose permission the caller holds at
their site (``Caller.can``, as every route), each in words in the caller's language (their
account's, else the hub's). Service plans are thin routes over ``inventory.service``:
setting or removing one needs ``inventory.manage`` at the asset's site; recording the work
done needs ``loans.write`` there (whoever records repairs).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from inventory import service
from labhub.access.caller import Caller
from labhub.access.gate import On, needs
from labhub.access.permissions import P
from labhub.access.sites import tree_for
from labhub.api.common import (
    KEY_PATTERN,
    Actor,
    BodyIn,
    OnBehalfOf,
    PathText,
    ReadConn,
    Text,
    TimeIn,
    WriteConn,
    iso,
    parse_time,
)
from labhub.api.deps import HubDep, settings_of
from labhub.problems import Problem, problem_responses
from labhub.reminders import due
from labhub.web import i18n, reminders_text
from sensors.samples import now_us

router = APIRouter(prefix="/api/v1", tags=["reminders"])

ReminderKind = Literal["loan_overdue", "loan_due", "audit_due", "service_due", "stock_low",
                       "device_silent"]
ServiceKind = Literal["maintenance", "calibration"]


class ReminderOut(BaseModel):
    """One thing that needs the caller's attention."""

    key: str = Field(description="stable while the reminder stays true "
                                 "(`loan-overdue:<loan id>:<due date>`...)",
                     examples=["stock-low:VC-LP-014:LED-5MM-RED"])
    kind: ReminderKind
    site: str | None = Field(description="its site (null: the hub's own)")
    due_at: str | None = Field(description="when it fell due or falls due (a silent "
                                           "device: when it was last heard)")
    text: str = Field(description="in words, in the caller's language")
    link: str = Field(description="the web page of the thing, a path under the hub",
                      examples=["/loans/6f1c2b9e-0000-4000-8000-000000000000"])


def _language(request: Request, caller: Caller) -> str:
    known = i18n.languages()
    lang = caller.language if caller.language in known else settings_of(request).language
    return lang if lang in known else i18n.FIRST


@router.get("/reminders", response_model=list[ReminderOut], summary="My reminders",
            responses=problem_responses(401, 403, 404))
def list_reminders(
    request: Request, hub: HubDep,
    caller: Annotated[Caller, needs(P.SIGNED_IN)],
    site: Annotated[str | None, Query(max_length=64, pattern=KEY_PATTERN,
                                      description="only this site and the sites under it")]
    = None,
) -> list[ReminderOut]:
    """What needs the caller's attention at the sites of their grants, by kind: loans
    overdue or due by tomorrow, audits due, maintenance and calibration due, stock below
    its reorder level, devices silent for ``device_silent_hours``. Each is shown to those
    who can act on it (loans and upkeep: `loans.write`; audits and stock:
    `inventory.manage`; devices: `devices.configure`)."""
    settings = settings_of(request)
    tree = tree_for(request)
    if site is not None and site not in tree.parents:
        raise Problem(404, "Not found in the inventory", f"no site with code {site!r}")
    with hub.engine.connect() as conn:
        found = due.gather(conn, settings, now=now_us())
    lang = _language(request, caller)
    return [ReminderOut(key=r.key, kind=r.kind, site=r.site, due_at=iso(r.due_at),
                        text=reminders_text.describe(r, lang, settings.timezone), link=r.link)
            for r in due.visible_to(found, caller, tree, site=site)]


# -- service plans ------------------------------------------------------------------------------

class ServicePlanOut(BaseModel):
    """An asset's maintenance or calibration, every so many days."""

    tag: str
    kind: ServiceKind
    every_days: int
    last_done_at: str
    due_at: str


class ServicePlanIn(BodyIn):
    """How often the work is done, and (if not now) when it was last done."""

    every_days: Annotated[int, Field(ge=1, le=service.EVERY_DAYS_MAX, examples=[180])]
    last_done_at: TimeIn | None = Field(
        default=None, description="when it was last done (default: as before, or now for a "
                                  "new plan)")
    on_behalf_of: OnBehalfOf = None


class ServiceDoneIn(BodyIn):
    """The work done: when (default now) and a note."""

    at: TimeIn | None = Field(default=None, description="when it was done (default: now)")
    note: Text | None = Field(default=None, examples=["recalibrada con pesas de 100 g"])
    on_behalf_of: OnBehalfOf = None


def _plan_out(p: service.ServicePlan) -> ServicePlanOut:
    return ServicePlanOut(tag=p.asset_tag, kind=p.kind,  # type: ignore[arg-type]
                          every_days=p.every_days, last_done_at=iso(p.last_done_at) or "",
                          due_at=iso(p.due_at) or "")


@router.get("/assets/{tag:path}/service-plans", response_model=list[ServicePlanOut],
            summary="An asset's service plans",
            dependencies=[needs(P.INVENTORY_READ, On.path("asset", "tag"))],
            responses=problem_responses(401, 403, 404))
def list_service_plans(tag: PathText, conn: ReadConn) -> list[ServicePlanOut]:
    """Its maintenance and calibration plans, each with when it is due next."""
    return [_plan_out(p) for p in service.plans_of(conn=conn, tag=tag)]


@router.put("/assets/{tag:path}/service-plans/{kind}", response_model=ServicePlanOut,
            summary="Plan an asset's maintenance or calibration",
            dependencies=[needs(P.INVENTORY_MANAGE, On.path("asset", "tag"))],
            responses=problem_responses(401, 403, 404, 422))
def set_service_plan(tag: PathText, kind: ServiceKind, body: ServicePlanIn, actor: Actor,
                     conn: WriteConn) -> ServicePlanOut:
    """Every ``every_days`` days since it was last done; writes ServicePlanSet on the
    asset's history."""
    return _plan_out(service.set_plan(
        conn=conn, tag=tag, kind=kind, every_days=body.every_days, by=actor,
        last_done_at=parse_time(body.last_done_at, "body.last_done_at"),
        on_behalf_of=body.on_behalf_of))


@router.delete("/assets/{tag:path}/service-plans/{kind}", status_code=204,
               summary="Stop planning an asset's maintenance or calibration",
               dependencies=[needs(P.INVENTORY_MANAGE, On.path("asset", "tag"))],
               responses=problem_responses(401, 403, 404))
def remove_service_plan(tag: PathText, kind: ServiceKind, actor: Actor,
                        conn: WriteConn) -> Response:
    """Writes ServicePlanRemoved on the asset's history."""
    service.remove_plan(conn=conn, tag=tag, kind=kind, by=actor)
    return Response(status_code=204)


@router.post("/assets/{tag:path}/service-plans/{kind}/done", response_model=ServicePlanOut,
             summary="Record an asset's maintenance or calibration done",
             dependencies=[needs(P.LOANS_WRITE, On.path("asset", "tag"))],
             responses=problem_responses(401, 403, 404, 422))
def record_service_done(tag: PathText, kind: ServiceKind, body: ServiceDoneIn, actor: Actor,
                        conn: WriteConn) -> ServicePlanOut:
    """The plan is due again one interval after ``at``; writes ServiceDone on the asset's
    history."""
    return _plan_out(service.record_done(
        conn=conn, tag=tag, kind=kind, by=actor, note=body.note,
        at=parse_time(body.at, "body.at"), on_behalf_of=body.on_behalf_of))
