"""The list of conflicts between a lab's hub and the central, each settled by the
documented rule (docs/network.md, "Ownership") and shown to a coordinator until seen.

On the central they come from applying the hubs' batches; on a hub, from what came down
(the central's tree or catalog replacing a local version). Each lists only the labs the
caller may read; marking one seen needs ``network.manage`` at its lab.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from labhub.access.gate import On, needs, require_at, scope_of
from labhub.access.permissions import P
from labhub.api.common import Actor, Offset, ReadConn, WriteConn, iso, limit_query
from labhub.network import conflicts
from labhub.problems import Problem, problem_responses

router = APIRouter(prefix="/api/v1", tags=["network"])

UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


class ConflictOut(BaseModel):
    id: str
    site: str = Field(description="the lab it concerns")
    kind: str = Field(description="the record's table: assets, models, transfers, ...")
    key: str = Field(description="the record's key: an asset tag, a model code, a UUID")
    kept: Any = Field(description="the version the rule kept (null: none)")
    set_aside: Any = Field(description="the other version, kept here")
    rule: str = Field(description="the rule that settled it, in words")
    detected_at: str
    seen_by: str | None
    seen_at: str | None


class ConflictPage(BaseModel):
    total: int
    items: list[ConflictOut]


def _out(c: conflicts.StoredConflict) -> ConflictOut:
    return ConflictOut(id=c.id, site=c.site, kind=c.kind, key=c.key, kept=c.kept,
                       set_aside=c.set_aside, rule=c.rule, detected_at=iso(c.detected_at) or "",
                       seen_by=c.seen_by,
                       seen_at=iso(c.seen_at))


@router.get("/network/conflicts", response_model=ConflictPage,
            summary="Conflicts settled between hubs and the central",
            dependencies=[needs(P.NETWORK_READ, On.NOTHING)])
def list_conflicts(
    request: Request,
    conn: ReadConn,
    unseen: Annotated[bool, Query(description="only those nobody has marked seen")] = False,
    limit: Annotated[int, limit_query(conflicts.MAX_LIMIT)] = 50,
    offset: Offset = 0,
) -> ConflictPage:
    """Newest first, of the labs the caller may read."""
    total, items = conflicts.list_conflicts(
        conn, sites=scope_of(request, P.NETWORK_READ), unseen=unseen, limit=limit,
        offset=offset)
    return ConflictPage(total=total, items=[_out(c) for c in items])


@router.post("/network/conflicts/{conflict_id}/seen", response_model=ConflictOut,
             summary="Mark a conflict seen", responses=problem_responses(404),
             dependencies=[needs(P.NETWORK_MANAGE, On.ROUTE)])
def mark_seen(
    request: Request,
    conflict_id: Annotated[str, Path(pattern=UUID_PATTERN)],
    actor: Actor,
    conn: WriteConn,
) -> ConflictOut:
    """The first person to mark it is kept; marking it again changes nothing."""
    found = conflicts.get_conflict(conn, conflict_id)
    if found is None:
        raise Problem(404, "Not found", f"no conflict {conflict_id!r} on this LabHub")
    require_at(request, P.NETWORK_MANAGE, found.site)
    seen = conflicts.mark_seen(conn, conflict_id, by=actor)
    assert seen is not None
    return _out(seen)
