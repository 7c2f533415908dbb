"""The central's corrections of a lab's clock (``labhub.network.clocks``): shift the
readings a hub stamped while its clock was wrong, and list what was shifted."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from labhub.access.gate import On, needs
from labhub.access.permissions import P
from labhub.api.common import Actor, PathText, ReadConn, TimeIn, WriteConn, iso, parse_time
from labhub.api.deps import settings_of
from labhub.network import clocks
from labhub.problems import Problem, problem_responses

router = APIRouter(prefix="/api/v1", tags=["network"])

US_PER_S = 1_000_000


def _no_boolean(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is a boolean, not a number of seconds")
    return value


class ClockCorrectionIn(BaseModel):
    """Shift the lab's readings of ``[from, to)`` by ``shift_s`` seconds (the hub's clock
    was 3 days behind: ``259200``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: TimeIn = Field(alias="from", description="RFC 3339 with a zone, or epoch s",
                          examples=["2026-11-02T00:00:00Z"])
    to: TimeIn = Field(description="the end, excluded", examples=["2026-11-09T00:00:00Z"])
    shift_s: Annotated[int, BeforeValidator(_no_boolean)] = Field(
        description="seconds to add to each reading's time (negative: earlier)",
        examples=[259200])


class ClockCorrectionOut(BaseModel):
    id: str
    site: str
    from_: str = Field(alias="from")
    to: str
    shift_s: float
    readings: int = Field(description="readings moved")
    conflicts: int = Field(description="readings whose new time was taken: dead letters")
    by: str
    at: str

    model_config = ConfigDict(populate_by_name=True)


def _out(c: clocks.Correction) -> ClockCorrectionOut:
    return ClockCorrectionOut.model_validate({
        "id": c.id, "site": c.site, "from": iso(c.from_us) or "", "to": iso(c.to_us) or "",
        "shift_s": c.shift_us / US_PER_S, "readings": c.readings, "conflicts": c.conflicts,
        "by": c.by, "at": iso(c.at) or ""})


def _central_only(request: Request) -> None:
    if settings_of(request).role != "central":
        raise Problem(409, "Not a central", "clock corrections are made on the central, "
                      "which holds the labs' readings; this LabHub runs as a hub")


@router.post("/network/sites/{site}/clock-corrections", status_code=201,
             response_model=ClockCorrectionOut, response_model_by_alias=True,
             summary="Correct a lab's clock over a time range",
             responses=problem_responses(409, 422),
             dependencies=[needs(P.NETWORK_MANAGE, On.path("site", "site"))])
def add_clock_correction(site: PathText, body: ClockCorrectionIn, request: Request,
                         conn: WriteConn, actor: Actor) -> ClockCorrectionOut:
    """Every reading of the lab's devices with ``from <= time < to`` moves by ``shift_s``
    and loses its clock flag, in one transaction. A reading whose new time another reading
    of its series already has goes to the dead letters with the reason (counted in
    ``conflicts``), never dropped."""
    _central_only(request)
    start = parse_time(body.from_, "body.from")
    end = parse_time(body.to, "body.to")
    if start is None or end is None:
        raise Problem(422, "Invalid time", "body.from and body.to: both are needed")
    try:
        done = clocks.correct(conn=conn, site=site, from_us=start, to_us=end,
                              shift_us=body.shift_s * US_PER_S, by=actor)
    except clocks.ClockCorrectionError as exc:
        raise Problem(422, "Invalid clock correction", f"body.{exc.where}: {exc}",
                      errors=[{"where": f"body.{exc.where}", "message": str(exc)}]) from None
    return _out(done)


@router.get("/network/sites/{site}/clock-corrections",
            response_model=list[ClockCorrectionOut], response_model_by_alias=True,
            summary="The corrections of a lab's clock",
            dependencies=[needs(P.NETWORK_MANAGE, On.path("site", "site"))])
def list_clock_corrections(site: PathText, conn: ReadConn) -> list[ClockCorrectionOut]:
    """Newest first: who shifted which range by how much, and how many readings moved."""
    return [_out(c) for c in clocks.corrections(conn=conn, site=site)]
