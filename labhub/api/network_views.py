"""The ministry's view of the network as data: rollout, use and their CSV exports.

``GET /api/v1/network/rollout`` and ``/use`` (JSON) and their ``.csv`` forms (the web
pages' files; headers and words in ``lang``), filtered by region, tier and rural, scoped
to the labs under the caller's ``network.read`` grants (:mod:`labhub.network.views`). On
a hub (``role = "hub"``) each is a 404 that says this is not a central.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from inventory.values import now_us
from labhub.access.gate import needs, scope_of
from labhub.access.permissions import Permission as P
from labhub.api.common import ReadConn, iso
from labhub.api.deps import settings_of
from labhub.api.document import file_response
from labhub.network import views
from labhub.network.views import Lab
from labhub.problems import Problem, problem_responses
from labhub.web.network import rollout_csv, use_csv

router = APIRouter(prefix="/api/v1/network", tags=["network: the ministry's view"])

Region = Annotated[str | None, Query(min_length=1, max_length=64,
                                     pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$",
                                     description="a region's site code: its labs only")]
Tier = Annotated[Literal["lab_center", "lab_point", "lab_spark", "mobile_lab"] | None,
                 Query(description="labs of this tier only")]
Rural = Annotated[bool | None, Query(description="true: rural labs only; false: urban")]
Lang = Annotated[Literal["es", "pt", "en"], Query(
    description="the language of the file's header and words (es and pt: `;` and a "
                "decimal comma; en: `,` and a decimal point)")]
_CSV = file_response("text/csv", "The table as CSV (UTF-8 with a byte order mark)")


class LabOut(BaseModel):
    code: str
    name: str
    region: str | None = Field(description="the code of the lab's region")
    region_name: str | None
    tier: str | None
    rural: bool | None
    latitude: float | None
    longitude: float | None


class ChangeOut(BaseModel):
    at: str
    from_status: str | None
    to_status: str
    by: str
    note: str | None


class RolloutOut(BaseModel):
    lab: LabOut
    rollout_status: str | None
    rollout_changed_at: str | None
    history: list[ChangeOut]
    hub: Literal["online", "offline", "never"] = Field(
        description="online: heard within 3 sync intervals; offline; never (no hub, or "
                    "none ever called)")
    hubs: int = Field(description="hubs enrolled for the lab and not revoked")
    last_contact_at: str | None
    days_offline: int | None
    version: str | None
    backlog: int | None


class UseOut(BaseModel):
    lab: LabOut
    readings_week: int
    readings_weekly_avg: int
    devices_active: int
    runs: int
    runs_recent: int
    kits: int
    kits_planned: int | None
    boards: int
    boards_planned: int | None
    kits_on_loan: int
    open_loans: int
    overdue_loans: int
    audits_missing: int
    missing_items: int


def _central(request: Request) -> None:
    if settings_of(request).role != "central":
        raise Problem(404, "Not a central",
                      f"{request.url.path}: the network's views are on the central LabHub "
                      "(role = \"central\"); this LabHub is a lab's hub")


def _labs(request: Request, conn: ReadConn, region: str | None, tier: str | None,
          rural: bool | None) -> list[Lab]:
    _central(request)
    labs = views.all_labs(conn=conn, only=scope_of(request, P.NETWORK_READ))
    return views.filtered(labs, views.Filters(region, tier, rural))


def _lab(lab: Lab) -> LabOut:
    return LabOut(code=lab.code, name=lab.name, region=lab.region,
                  region_name=lab.region_name, tier=lab.tier, rural=lab.rural,
                  latitude=lab.latitude, longitude=lab.longitude)


_NOT_CENTRAL = problem_responses(404, 422)


@router.get("/rollout", summary="Every lab's rollout and its hub's contact",
            responses=_NOT_CENTRAL, dependencies=[needs(P.NETWORK_READ)])
def network_rollout(request: Request, conn: ReadConn, region: Region = None,
                    tier: Tier = None, rural: Rural = None) -> list[RolloutOut]:
    """The labs under the caller's grants, by region and name, each with its rollout
    status and history and its hub's last contact, version and backlog."""
    labs = _labs(request, conn, region, tier, rural)
    rows = views.rollout(conn=conn, labs=labs, now=now_us(),
                         every_s=settings_of(request).network_sync_every_s)
    return [RolloutOut(
        lab=_lab(r.lab), rollout_status=r.lab.rollout_status,
        rollout_changed_at=iso(r.lab.rollout_changed_at),
        history=[ChangeOut(at=iso(c.at) or "", from_status=c.from_status,
                           to_status=c.to_status, by=c.by, note=c.note) for c in r.history],
        hub=r.contact.state, hubs=r.contact.hubs,
        last_contact_at=iso(r.contact.last_contact_at), days_offline=r.contact.days_offline,
        version=r.contact.version, backlog=r.contact.backlog) for r in rows]


@router.get("/use", summary="What each lab did and holds", responses=_NOT_CENTRAL,
            dependencies=[needs(P.NETWORK_READ)])
def network_use(request: Request, conn: ReadConn, region: Region = None, tier: Tier = None,
                rural: Rural = None) -> list[UseOut]:
    """The labs under the caller's grants: readings (last 7 days; a week on average over
    12 weeks), active devices, runs, kits and boards against the plan of the lab's tier,
    kits on loan, open and overdue loans, audits that found items missing."""
    labs = _labs(request, conn, region, tier, rural)
    rows = views.use(conn=conn, labs=labs, now=now_us())
    return [UseOut(lab=_lab(r.lab), **vars(r.use)) for r in rows]


@router.get("/rollout.csv", summary="The rollout table as CSV",
            responses={**_CSV, **_NOT_CENTRAL}, dependencies=[needs(P.NETWORK_READ)])
def network_rollout_csv(request: Request, conn: ReadConn, lang: Lang = "es",
                        region: Region = None, tier: Tier = None,
                        rural: Rural = None) -> Response:
    """The rollout page's table, every lab the filters keep, in ``lang``."""
    labs = _labs(request, conn, region, tier, rural)
    settings = settings_of(request)
    rows = views.rollout(conn=conn, labs=labs, now=now_us(),
                         every_s=settings.network_sync_every_s)
    return _file(rollout_csv(rows, lang, settings.timezone), f"rollout-{lang}.csv")


@router.get("/use.csv", summary="The use table as CSV",
            responses={**_CSV, **_NOT_CENTRAL}, dependencies=[needs(P.NETWORK_READ)])
def network_use_csv(request: Request, conn: ReadConn, lang: Lang = "es",
                    region: Region = None, tier: Tier = None,
                    rural: Rural = None) -> Response:
    """The use page's table, every lab the filters keep, in ``lang``."""
    labs = _labs(request, conn, region, tier, rural)
    rows = views.use(conn=conn, labs=labs, now=now_us())
    return _file(use_csv(rows, lang), f"use-{lang}.csv")


def _file(text: str, name: str) -> Response:
    return Response(text.encode("utf-8"), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
