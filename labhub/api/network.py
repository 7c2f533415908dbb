"""The network's API on the central: enrolment, a hub's join, hello, batches and down (hub
credentials), and the enrolled hubs (docs/network.md; :mod:`labhub.network.central` does
the work, :mod:`labhub.network.protocol` is the wire format).

Every route here is the central's: asked of a hub (setting ``role = "hub"``), each answers
409 saying so, after its gate.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Depends, Header, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import ClientDisconnect

from labhub.access.gate import CallerDep, gated_caller, needs, require_at, scope_of
from labhub.access.permissions import P
from labhub.api.common import Key, Name, ReadConn, WriteConn
from labhub.api.deps import settings_of
from labhub.api.document import file_response
from labhub.network import central, protocol
from labhub.network.protocol import HEADER_DIGEST, HEADER_LENGTH, HEADER_OFFSET, UploadState
from labhub.problems import PROBLEM_JSON, Problem, problem_responses
from sensors.samples import now_us

router = APIRouter(prefix=protocol.PREFIX, tags=["network"])

UUID_PATTERN = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
HUB_ID_PATTERN = UUID_PATTERN
ENROLMENT_ID_PATTERN = "^[0-9a-f]{16}$"
US = 1_000_000
BIG = 2**62  # the most a count or a time takes (the central keeps them as 64-bit integers)


def central_only(request: Request) -> None:
    """409 unless this LabHub is the network's central."""
    if settings_of(request).role != "central":
        raise Problem(409, "Not a central",
                      f"{request.method} {request.url.path} is a route of the network's "
                      "central, and this LabHub is a hub (setting role = \"hub\"); a hub "
                      "joins a central with `labhub network join <URL> --token ...`")


Central = Depends(central_only)


def _hub_of(request: Request) -> tuple[str, str]:
    caller = gated_caller(request)
    assert caller.hub_id is not None and caller.hub_site is not None
    return caller.hub_id, caller.hub_site


# -- enrolment -------------------------------------------------------------------------------


class EnrolmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    site: Key = Field(description="the lab site (kind `site`) the hub will sync")
    hours: int = Field(default=central.ENROLMENT_HOURS, ge=1, le=central.ENROLMENT_MAX_HOURS,
                       description="how long the token may be used (at most 30 days)")


class EnrolmentOut(BaseModel):
    id: str
    site: str
    created_by: str
    created_at: int = Field(description="µs since the epoch, UTC")
    expires_at: int
    used_at: int | None
    used_by_hub: str | None


class EnrolmentMade(EnrolmentOut):
    token: str = Field(description="the one-time token (`lhe_...`): shown this once only")


@router.post("/enrolments", response_model=EnrolmentMade, status_code=201,
             summary="Make a one-time enrolment token for a lab's hub",
             responses=problem_responses(404, 409),
             dependencies=[needs(P.NETWORK_MANAGE), Central])
def make_enrolment(body: EnrolmentIn, request: Request, conn: WriteConn,
                   caller: CallerDep) -> EnrolmentMade:
    """The token to give `labhub network join` on the lab's hub; only its SHA-256 is
    kept, so it is shown once."""
    require_at(request, P.NETWORK_MANAGE, body.site)
    enrolment, token = central.make_enrolment(conn, site=body.site, hours=body.hours,
                                              by=caller.name)
    return EnrolmentMade(**vars_of(enrolment), token=token)


def vars_of(enrolment: central.Enrolment) -> dict[str, Any]:
    return {name: getattr(enrolment, name) for name in central.Enrolment.__slots__}


@router.get("/enrolments", response_model=list[EnrolmentOut],
            summary="List enrolment tokens (never the tokens themselves)",
            responses=problem_responses(409),
            dependencies=[needs(P.NETWORK_MANAGE), Central])
def list_enrolments(request: Request, conn: ReadConn) -> list[EnrolmentOut]:
    """The enrolments of the labs where the caller has `network.manage`, newest first."""
    sites = scope_of(request, P.NETWORK_MANAGE)
    return [EnrolmentOut(**vars_of(e)) for e in central.list_enrolments(conn, sites=sites)]


@router.delete("/enrolments/{enrolment_id}", status_code=204,
               summary="Withdraw an enrolment token not used yet",
               responses=problem_responses(404, 409),
               dependencies=[needs(P.NETWORK_MANAGE), Central])
def withdraw_enrolment(enrolment_id: Annotated[str, Field(pattern=ENROLMENT_ID_PATTERN)],
                       request: Request, conn: WriteConn) -> Response:
    """A used token cannot be withdrawn: withdraw its hub instead."""
    enrolment = central.get_enrolment(conn, enrolment_id)
    require_at(request, P.NETWORK_MANAGE, enrolment.site)
    central.withdraw_enrolment(conn, enrolment_id)
    return Response(status_code=204)


# -- join and hubs ---------------------------------------------------------------------------


class JoinIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=200, pattern="^lhe_[A-Za-z0-9_-]+$",
                       description="the enrolment token (`lhe_...`)")
    name: Name = Field(description="the hub machine's name")
    version: str = Field(min_length=1, max_length=40, pattern="^[0-9A-Za-z.+_-]+$")
    sent_at_us: int = Field(ge=0, le=BIG, description="the hub's clock as it sent this, µs")
    site: Key | None = Field(
        default=None, description="the lab the hub is set up for (its `site` setting), if "
                                  "any: a token of another lab is refused and not used up")


class JoinOut(BaseModel):
    hub_id: str
    credential: str = Field(description="the hub's credential (`lhh_<hub id>.<secret>`): "
                                        "shown this once only")
    site: str
    central_time_us: int


@router.post("/join", response_model=JoinOut, status_code=201,
             summary="A hub joins with an enrolment token (the token is the credential)",
             responses=problem_responses(401, 409, 410),
             dependencies=[needs(P.PUBLIC), Central])
def join(body: JoinIn, conn: WriteConn) -> JoinOut:
    """Single use. A lab that had a hub: that hub is revoked, naming this one."""
    joined = central.join(conn, token=body.token, name=body.name, version=body.version,
                          expected_site=body.site,
                          sent_at_us=body.sent_at_us)
    return JoinOut(hub_id=joined.hub_id, credential=joined.credential, site=joined.site,
                   central_time_us=joined.central_time_us)


class HubOut(BaseModel):
    id: str
    site: str
    name: str
    enrolled_at: int
    enrolled_by: str
    revoked_at: int | None
    replaced_by: str | None
    last_contact_at: int | None
    version: str | None
    uptime_s: int | None
    free_disk_bytes: int | None
    backlog: int | None
    devices_online: int | None
    dead_letters: int | None
    clock_offset_us: int | None = Field(description="the hub's clock minus the central's, "
                                                    "at its last hello")
    health: dict[str, Any] | None
    state: str = Field(description="never | ok | late | clock | revoked")


@router.get("/hubs", response_model=list[HubOut], summary="List the enrolled hubs",
            responses=problem_responses(409),
            dependencies=[needs(P.NETWORK_READ), Central])
def list_hubs(request: Request, conn: ReadConn) -> list[HubOut]:
    """The hubs of the labs where the caller has `network.read`, with their last contact
    and health."""
    settings = settings_of(request)
    now = now_us()
    tolerance = settings.network_clock_tolerance_min * 60 * US
    return [HubOut(**hub, state=central.health_word(hub, now=now, tolerance_us=tolerance,
                                                     every_s=settings.network_sync_every_s))
            for hub in central.list_hubs(conn, sites=scope_of(request, P.NETWORK_READ))]


@router.delete("/hubs/{hub_id}", status_code=204, summary="Withdraw a hub's credential",
               responses=problem_responses(404, 409),
               dependencies=[needs(P.NETWORK_MANAGE), Central])
def withdraw_hub(hub_id: Annotated[str, Field(pattern=HUB_ID_PATTERN)], request: Request,
                 conn: WriteConn) -> Response:
    """The hub is refused from now on; its lab's data stays on the central."""
    hub = central.get_hub(conn, hub_id)
    require_at(request, P.NETWORK_MANAGE, hub["site"])
    central.withdraw_hub(conn, hub_id)
    return Response(status_code=204)


# -- the protocol (hub credentials) ----------------------------------------------------------


StreamName = Annotated[str, Field(min_length=1, max_length=40, pattern="^[a-z_]+$")]
ExtraKey = Annotated[str, Field(min_length=1, max_length=80, pattern="^[A-Za-z0-9_.:-]+$")]
Scalar = int | float | bool | None


class HealthIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(min_length=1, max_length=40, pattern="^[0-9A-Za-z.+_-]+$")
    uptime_s: int = Field(ge=0, le=BIG)
    free_disk_bytes: int = Field(ge=0, le=BIG)
    backlog: int = Field(ge=0, le=BIG)
    devices_online: int = Field(ge=0, le=2**31 - 1)
    dead_letters: int = Field(ge=0, le=BIG)
    extra: dict[ExtraKey, Scalar | dict[ExtraKey, Scalar]] = Field(
        default_factory=dict, description="more of the hub's figures (numbers, by name)")


class HelloIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    health: HealthIn
    sent_at_us: int = Field(ge=0, le=BIG, description="the hub's clock as it sent this, µs")


class WelcomeOut(BaseModel):
    hub_id: str
    site: str
    central_time_us: int
    positions: dict[str, list[int]]


@router.post("/hello", response_model=WelcomeOut, summary="A hub's hello: health and clock",
             responses=problem_responses(409),
             dependencies=[needs(P.NETWORK_SYNC), Central])
def hello(body: HelloIn, request: Request, conn: WriteConn) -> WelcomeOut:
    """Records the hub's health and clock offset; answers the positions it sends from."""
    received = time.time_ns() // 1000
    hub_id, site = _hub_of(request)
    message = protocol.Hello.from_json(body.model_dump())
    welcome = central.hello(conn, hub_id=hub_id, site=site, message=message,
                            received_at_us=received)
    return WelcomeOut(**welcome.to_json())


class UploadStateOut(BaseModel):
    offset: int
    complete: bool
    positions: dict[str, list[int]] | None = None


def _conflict(state: UploadState, detail: str) -> Response:
    body = {"type": "about:blank", "title": "Upload offset does not match", "status": 409,
            "detail": detail, **state.to_json()}
    return Response(json.dumps(body), status_code=409, media_type=PROBLEM_JSON,
                    headers={HEADER_OFFSET: str(state.offset)})


BatchId = Annotated[str, Field(pattern=UUID_PATTERN, description="the batch's UUID")]
_BATCH_BODY = {"requestBody": {"required": False, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}


@router.get("/batches/{batch_id}", response_model=UploadStateOut,
            summary="How much of a batch the central holds",
            responses=problem_responses(409),
            dependencies=[needs(P.NETWORK_SYNC), Central])
def batch_state(batch_id: BatchId, request: Request, conn: ReadConn) -> UploadStateOut:
    """Offset 0 for a batch of which nothing arrived; `complete` with the positions once
    applied."""
    hub_id, _ = _hub_of(request)
    return UploadStateOut(**central.upload_state(conn, batch_id, hub_id).to_json())


@router.put("/batches/{batch_id}", response_model=UploadStateOut,
            summary="Upload a piece of a batch (resumable)",
            responses=problem_responses(409, 413, 422), openapi_extra=_BATCH_BODY,
            dependencies=[needs(P.NETWORK_SYNC), Central])
async def put_batch(
    batch_id: BatchId, request: Request,
    upload_offset: Annotated[int, Header(alias=HEADER_OFFSET, ge=0, le=BIG)],
    upload_length: Annotated[int, Header(alias=HEADER_LENGTH, ge=1, le=BIG)],
    upload_digest: Annotated[str | None, Header(
        alias=HEADER_DIGEST, pattern="^sha256=[0-9a-f]{64}$")] = None,
) -> Any:
    """Bytes from `Upload-Offset` of a batch of `Upload-Length`; every piece that arrives
    is kept, even of a request cut midway. A 409 (with the state) when the central holds
    another offset. The last byte in: the digest is checked and the batch applied."""
    hub_id, site = _hub_of(request)
    settings = settings_of(request)
    engine = request.app.state.hub.engine
    most = 2 * settings.network_batch_bytes
    if upload_length > most:
        raise Problem(413, "Batch too large",
                      f"header {HEADER_LENGTH}: {upload_length} bytes is over {most}, twice "
                      "the setting network_batch_bytes")

    def start() -> UploadState | str:
        with engine.connect() as conn:
            state = central.upload_state(conn, batch_id, hub_id)
            if state.complete:
                return state
            _, total = central.held(conn, batch_id, hub_id)
        if total is not None and total != upload_length:
            raise Problem(422, "Upload length changed",
                          f"header {HEADER_LENGTH}: {upload_length}, but batch {batch_id} "
                          f"was announced with {total} bytes")
        if total is not None and state.offset == total:
            return _ALL_HELD  # every byte came before (the apply then failed): finish it
        if state.offset != upload_offset:
            return _detail_offset(state.offset)
        return state

    first = await to_thread.run_sync(start)
    if first == _ALL_HELD:
        final = await to_thread.run_sync(_finish, engine, batch_id, hub_id, site,
                                         upload_digest, settings.network_clock_tolerance_min)
        return UploadStateOut(**final.to_json())
    if isinstance(first, str):
        state = await to_thread.run_sync(_state, engine, batch_id, hub_id)
        return _conflict(state, first)
    if first.complete:
        return UploadStateOut(**first.to_json())
    offset = upload_offset

    def flush(piece: bytes, at: int) -> bool:
        with engine.begin() as conn:
            return central.store_part(conn, batch_id=batch_id, hub_id=hub_id, offset=at,
                                      total=upload_length, data=piece)

    buffer = bytearray()
    try:
        async for chunk in request.stream():
            if offset + len(buffer) + len(chunk) > upload_length:
                raise Problem(422, "Upload past its length",
                              f"body: the piece runs past byte {upload_length}, the "
                              f"{HEADER_LENGTH} of batch {batch_id}")
            buffer += chunk
            if len(buffer) >= central.PART_BYTES:
                if not await to_thread.run_sync(flush, bytes(buffer), offset):
                    return _conflict(await to_thread.run_sync(_state, engine, batch_id,
                                                              hub_id),
                                     "another request stored this piece first")
                offset += len(buffer)
                buffer.clear()
    except ClientDisconnect:
        # Keep what came: the hub asks where to go on from. Nobody reads this answer.
        if buffer:
            kept: bool = await to_thread.run_sync(flush, bytes(buffer), offset)
            offset += len(buffer) if kept else 0
        return UploadStateOut(offset=offset, complete=False)
    if buffer:
        if not await to_thread.run_sync(flush, bytes(buffer), offset):
            return _conflict(await to_thread.run_sync(_state, engine, batch_id, hub_id),
                             "another request stored this piece first")
        offset += len(buffer)
    if offset < upload_length:
        return UploadStateOut(offset=offset, complete=False)
    final = await to_thread.run_sync(_finish, engine, batch_id, hub_id, site, upload_digest,
                                     settings.network_clock_tolerance_min)
    return UploadStateOut(**final.to_json())


_ALL_HELD = "all held"


def _detail_offset(held: int) -> str:
    return (f"header {HEADER_OFFSET}: the central holds this batch up to byte {held}; "
            f"send from there")


def _state(engine: Any, batch_id: str, hub_id: str) -> UploadState:
    with engine.connect() as conn:
        return central.upload_state(conn, batch_id, hub_id)


def _finish(engine: Any, batch_id: str, hub_id: str, site: str, given: str | None,
            tolerance_min: int) -> UploadState:
    """Check the whole batch's digest and apply it; a bad one is a dead letter and 422."""
    with engine.connect() as conn:
        if central.applied(conn, batch_id):
            return central.upload_state(conn, batch_id, hub_id)
        data = central.assembled(conn, batch_id)
    try:
        if given is None:
            raise central.BatchInvalid(f"header {HEADER_DIGEST}: the last piece of a batch "
                                       "needs the digest of the whole batch")
        if protocol.digest(data) != given:
            raise central.BatchInvalid(f"header {HEADER_DIGEST}: the {len(data)} bytes "
                                       f"received have digest {protocol.digest(data)}, not "
                                       f"{given}")
        return central.apply_batch(engine, batch_id=batch_id, hub_id=hub_id, site=site,
                                   data=data, tolerance_min=tolerance_min)
    except (central.BatchInvalid, protocol.ProtocolError) as exc:
        central.keep_dead_letter(engine, batch_id=batch_id, hub_id=hub_id, site=site,
                                 data=data, reason=str(exc))
        raise Problem(422, "Batch not valid",
                      f"batch {batch_id}: {exc}; it is kept as a dead letter (source "
                      f"{central.DEAD_LETTER_SOURCE!r}); send it again as a new batch",
                      errors=[{"where": f"batch {batch_id}", "message": str(exc)}]) from None


class DownIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    positions: dict[StreamName, list[Annotated[int, Field(ge=-BIG, le=BIG)]]] = Field(
        default_factory=dict, description="the position the hub applied in each down stream")


@router.post("/down", summary="The next batch of down sections for the hub's lab",
             responses={**file_response("application/octet-stream",
                                        "a batch (`LHB1`...) of down sections"),
                        **problem_responses(409)},
             dependencies=[needs(P.NETWORK_SYNC), Central])
def down(body: DownIn, request: Request, conn: ReadConn) -> Response:
    """Each down stream's sections after the hub's positions, in order, up to about
    `network_batch_bytes`; none when nothing follows."""
    hub_id, site = _hub_of(request)
    data = central.down_batch(conn, hub_id=hub_id, site=site, positions=body.positions,
                              budget_bytes=settings_of(request).network_batch_bytes)
    return Response(data, media_type="application/octet-stream")
