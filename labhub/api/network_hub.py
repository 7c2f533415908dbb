"""The network's API on a hub: its membership and sync status, and a contact now.

On the central these answer a 409 problem: the central is not a member of a network, it
is the network (its own routes are under the same prefix: docs/network.md).
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from labhub.access.gate import On, needs
from labhub.access.permissions import P
from labhub.api.common import iso
from labhub.api.deps import HubDep
from labhub.network import client
from labhub.network.client_http import NetworkError
from labhub.problems import Problem, problem_responses
from labhub.wiring import Hub

router = APIRouter(prefix="/api/v1/network", tags=["network"])


class NetworkStatusOut(BaseModel):
    """This hub's membership of a network and how its sync stands."""

    member: bool = Field(description="whether the hub has joined a network")
    central_url: str | None = None
    hub_id: str | None = Field(default=None, description="its id on the central")
    site: str | None = Field(default=None, description="the lab it writes for")
    joined_at: str | None = None
    last_contact_at: str | None = Field(
        default=None, description="the last contact that went through (null: never)")
    last_error: str | None = Field(
        default=None, description="what failed at the last contact, and where (null: it "
                                  "went through)")
    clock_offset_ms: float | None = Field(
        default=None, description="this hub's clock minus the central's at the last hello")
    backlog: dict[str, int] = Field(
        description="items of each up stream the central has not acknowledged")
    up_positions: dict[str, list[int]] = Field(
        default_factory=dict, description="each up stream's position the central holds")
    down_positions: dict[str, list[int]] = Field(
        default_factory=dict, description="each down stream's position the hub applied")


class ContactOut(BaseModel):
    """What a contact with the central did."""

    central_url: str
    hub_id: str
    site: str
    clock_offset_ms: float | None
    batches: int = Field(description="batches uploaded")
    bytes_up: int = Field(description="bytes sent up")
    resumed: int = Field(description="uploads resumed after a cut")
    sent: dict[str, int] = Field(description="items sent up, per stream")
    received: dict[str, int] = Field(description="items taken down, per stream")
    up_positions: dict[str, list[int]]
    down_positions: dict[str, list[int]]
    more: bool = Field(description="more is waiting: the next contact goes on at once")
    took_s: float


def _not_central(hub: Hub) -> None:
    if hub.settings.role == "central":
        raise Problem(409, "This LabHub is the central",
                      "this LabHub is the network's central: it has no central to sync "
                      "with (its hubs are at GET /api/v1/network/hubs)")


def _ms(us: int | None) -> float | None:
    return None if us is None else us / 1000


@router.get("/status", response_model=NetworkStatusOut, summary="This hub's network sync",
            responses=problem_responses(409),
            dependencies=[needs(P.NETWORK_READ, On.HUB)])
def network_status(hub: HubDep) -> NetworkStatusOut:
    """Whether the hub has joined a network, its last contact with the central (or what
    failed), its clock offset, and each up stream's backlog and acknowledged position."""
    _not_central(hub)
    found = client.status(hub.engine)
    m = found.membership
    if m is None:
        return NetworkStatusOut(member=False, backlog=found.backlog)
    return NetworkStatusOut(
        member=True, central_url=m.central_url, hub_id=m.hub_id, site=m.site,
        joined_at=iso(m.joined_at), last_contact_at=iso(m.last_contact_at),
        last_error=m.last_error, clock_offset_ms=_ms(m.clock_offset_us),
        backlog=found.backlog, up_positions=m.up_positions, down_positions=m.down_positions)


@router.post("/sync", response_model=ContactOut, summary="A contact with the central now",
             responses=problem_responses(409, 502),
             dependencies=[needs(P.NETWORK_MANAGE, On.HUB)])
def network_sync(hub: HubDep) -> ContactOut:
    """Make a contact with the central now (after the one under way, if any): send up
    what waits, take down what the central has. A hub that has not joined is a 409; a
    contact that failed a 502 whose detail says what failed and where."""
    _not_central(hub)
    if hub.network is None:
        raise Problem(409, "Not syncing", "this hub does not run its network sync "
                      "(it was started without it)")
    try:
        s = hub.network.sync_now()
    except client.NotMemberError as exc:
        raise Problem(409, "Not in a network", str(exc)) from None
    except NetworkError as exc:
        raise Problem(502, "The contact with the central failed", str(exc)) from None
    return ContactOut(
        central_url=s.central_url, hub_id=s.hub_id, site=s.site,
        clock_offset_ms=_ms(s.clock_offset_us), batches=s.batches, bytes_up=s.bytes_up,
        resumed=s.resumed, sent=s.sent, received=s.received, up_positions=s.up_positions,
        down_positions=s.down_positions, more=s.more, took_s=round(s.took_s, 3))
