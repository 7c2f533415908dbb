"""The central's side of the network: enrolment, a hub's join, hello, batches up (resumable)
and down, and the enrolled hubs (:mod:`labhub.network.protocol` is the wire format).

**Enrolment.** A coordinator or an admin makes a one-time token (``lhe_...``) for a lab
site of the central's tree; only its SHA-256 is stored. ``labhub network join`` on the
lab's hub trades it for the hub's credential (``lhh_<hub id>.<secret>``, stored as its
SHA-256 too). A lab that already had a hub (a stolen laptop, a new disk) has that hub
revoked, naming its replacement: the lab's data on the central is keyed by the lab's site,
never by the hub, so the new hub takes over the lab's history.

**Hello.** The hub's health goes into ``network_hubs`` and its clock offset is estimated
from one request: the hello's ``sent_at_us`` minus the central's clock as it received it.
That estimate is off by the request's one-way latency (milliseconds, a few seconds on a
bad satellite link), far below the tolerance (``network_clock_tolerance_min``, minutes)
that flags a hub's readings as suspect.

**Batches.** Pieces of a batch are stored in ``network_upload_parts`` as they arrive
(every :data:`PART_BYTES`), so a request cut midway keeps what came and any worker can
go on with it. When the last byte is in, the digest is checked and the whole batch is
applied in one transaction: every section by its stream's ``apply``, each stream's
position moved to the section's ``to`` when its ``from`` is not after the position held
(a gap is sent again, never skipped), the batch recorded by its UUID (inserted first, so
two workers finishing the same batch apply it once), the lab's daily counts, and the
parts deleted. A batch that is not valid is kept as a dead letter (source ``network``)
and answered 422. :func:`prune_parts` drops the parts of batches left unfinished for
:data:`PARTS_KEEP_DAYS` days.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from inventory import sites as inventory_sites
from labhub.access.accounts import secret_hash
from labhub.network import protocol
from labhub.network.protocol import (
    CREDENTIAL_PREFIX,
    ENROLMENT_PREFIX,
    UP_STREAMS,
    Hello,
    Position,
    ProtocolError,
    Section,
    UploadState,
    Welcome,
    position_key,
)
from labhub.network.streams import FromHub, down_streams, up_streams
from labhub.network.tables import (
    network_batches,
    network_central,
    network_daily,
    network_enrolments,
    network_hubs,
    network_positions,
    network_upload_parts,
)
from labhub.problems import Problem
from sensors.samples import now_us
from sensors.storage import DEAD_LETTER_PAYLOAD_MAX, dead_letters

ENROLMENT_HOURS = 72  # an enrolment token's life by default
ENROLMENT_MAX_HOURS = 30 * 24
TOKEN_BYTES = 32
PART_BYTES = 64 * 1024  # a piece of an upload is stored every this many bytes
PARTS_KEEP_DAYS = 3  # parts of a batch never finished are dropped after this
DEAD_LETTER_SOURCE = "network"
US_PER_HOUR = 3_600_000_000
US_PER_DAY = 24 * US_PER_HOUR


def _when(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _insert(conn: Connection) -> Any:
    return (sqlite if conn.dialect.name == "sqlite" else postgresql).insert


# -- the central's own row -------------------------------------------------------------------


def ensure_central(conn: Connection) -> None:
    """Mark this database as a central's (the hub-side outbox triggers then write
    nothing): one row in ``network_central``."""
    conn.execute(_insert(conn)(network_central).values(id=1, since=now_us())
                 .on_conflict_do_nothing(index_elements=["id"]))


# -- enrolment -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Enrolment:
    id: str
    site: str
    created_by: str
    created_at: int
    expires_at: int
    used_at: int | None
    used_by_hub: str | None


def _enrolment(r: Any) -> Enrolment:
    return Enrolment(r.id, r.site, r.created_by, r.created_at, r.expires_at, r.used_at,
                     r.used_by_hub)


def check_lab_site(conn: Connection, code: str) -> None:
    """404 unless ``code`` is a site of the central's tree; 422 unless it is a lab site
    (kind ``site``): only a lab has a hub."""
    site = inventory_sites.find_site(conn=conn, code=code)
    if site is None:
        raise Problem(404, "No such site",
                      f"body.site: {code!r} is not a site of this central's tree; add the "
                      "lab first (POST /api/v1/sites)")
    if site.kind != "site":
        raise Problem(422, "Not a lab site",
                      f"body.site: {code!r} is a {site.kind}, not a lab site: a hub is "
                      "enrolled for a lab (a site of kind 'site')",
                      errors=[{"where": "body.site", "message": f"{code!r} is a {site.kind}"}])


def make_enrolment(conn: Connection, *, site: str, hours: int, by: str) -> tuple[Enrolment, str]:
    """A one-time enrolment token for lab ``site``, valid ``hours``: the record and the
    token (shown once; only its SHA-256 is kept)."""
    if not 1 <= hours <= ENROLMENT_MAX_HOURS:
        raise Problem(422, "Invalid request",
                      f"body.hours: an enrolment token lasts 1 to {ENROLMENT_MAX_HOURS} hours "
                      f"(30 days), not {hours}")
    check_lab_site(conn, site)
    token = ENROLMENT_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
    now = now_us()
    made = Enrolment(id=secrets.token_hex(8), site=site, created_by=by, created_at=now,
                     expires_at=now + hours * US_PER_HOUR, used_at=None, used_by_hub=None)
    conn.execute(insert(network_enrolments).values(token_hash=secret_hash(token), **{
        name: getattr(made, name) for name in Enrolment.__slots__}))
    return made, token


def list_enrolments(conn: Connection, *, sites: Collection[str] | None) -> list[Enrolment]:
    """Enrolments, newest first; ``sites`` None: every lab's."""
    query = select(network_enrolments).order_by(network_enrolments.c.created_at.desc(),
                                                network_enrolments.c.id)
    if sites is not None:
        query = query.where(network_enrolments.c.site.in_(sorted(sites)))
    return [_enrolment(r) for r in conn.execute(query)]


def get_enrolment(conn: Connection, enrolment_id: str) -> Enrolment:
    row = conn.execute(select(network_enrolments)
                       .where(network_enrolments.c.id == enrolment_id)).first()
    if row is None:
        raise Problem(404, "No such enrolment", f"no enrolment token has the id {enrolment_id!r}")
    return _enrolment(row)


def withdraw_enrolment(conn: Connection, enrolment_id: str) -> None:
    """Delete an enrolment token not used yet (a used one is its hub's history)."""
    e = get_enrolment(conn, enrolment_id)
    if e.used_at is not None:
        raise Problem(409, "Enrolment already used",
                      f"enrolment {enrolment_id!r} was used by hub {e.used_by_hub!r} at "
                      f"{_when(e.used_at)}: withdraw the hub instead "
                      f"(DELETE /api/v1/network/hubs/{e.used_by_hub})")
    conn.execute(delete(network_enrolments).where(network_enrolments.c.id == enrolment_id,
                                                  network_enrolments.c.used_at.is_(None)))


@dataclass(frozen=True, slots=True)
class Joined:
    hub_id: str
    credential: str
    site: str
    central_time_us: int
    replaced: list[str]  # the lab's hubs this one replaced


def join(conn: Connection, *, token: str, name: str, version: str,
         sent_at_us: int | None = None, expected_site: str | None = None) -> Joined:
    """Trade an enrolment token for a hub credential (see the module's text); the hub's
    clock as it sent the request gives its first clock offset. A hub set up for
    ``expected_site`` is refused a token of another lab, and the token stays unused."""
    row = conn.execute(select(network_enrolments)
                       .where(network_enrolments.c.token_hash == secret_hash(token))).first()
    again = ("ask a coordinator for a new token (on the central: "
             "`labhub network token --site CODE`)")
    if row is None:
        raise Problem(401, "Unknown enrolment token",
                      f"body.token: no enrolment has this token (mistyped, or withdrawn); {again}")
    now = now_us()
    if row.used_at is not None:
        raise Problem(410, "Enrolment token already used",
                      f"body.token: this token of lab {row.site!r} was used at "
                      f"{_when(row.used_at)} by hub {row.used_by_hub!r}; a token is single "
                      f"use: {again}")
    if row.expires_at <= now:
        raise Problem(410, "Enrolment token expired",
                      f"body.token: this token of lab {row.site!r} expired at "
                      f"{_when(row.expires_at)}; {again}")
    if expected_site is not None and expected_site != row.site:
        raise Problem(409, "Enrolment token of another lab",
                      f"body.site: this hub is set up for lab {expected_site!r} (its `site` "
                      f"setting) but the token enrols lab {row.site!r}; the token is still "
                      f"unused: run the join on {row.site!r}'s hub, or ask for a token of "
                      f"{expected_site!r}")
    hub_id = str(uuid.uuid4())
    taken = conn.execute(update(network_enrolments)
                         .where(network_enrolments.c.id == row.id,
                                network_enrolments.c.used_at.is_(None))
                         .values(used_at=now, used_by_hub=hub_id)).rowcount
    if taken != 1:  # another join took it a moment ago
        raise Problem(410, "Enrolment token already used",
                      f"body.token: this token of lab {row.site!r} was just used; {again}")
    credential = f"{CREDENTIAL_PREFIX}{hub_id}.{secrets.token_urlsafe(TOKEN_BYTES)}"
    replaced = list(conn.execute(
        update(network_hubs)
        .where(network_hubs.c.site == row.site, network_hubs.c.revoked_at.is_(None))
        .values(revoked_at=now, replaced_by=hub_id).returning(network_hubs.c.id)).scalars())
    conn.execute(insert(network_hubs).values(
        id=hub_id, site=row.site, name=name, credential_hash=secret_hash(credential),
        enrolled_at=now, enrolled_by=row.created_by, version=version[:40],
        clock_offset_us=None if sent_at_us is None else sent_at_us - now))
    return Joined(hub_id, credential, row.site, now_us(), replaced)


def revoked_detail(hub_id: str, site: str, revoked_at: int, replaced_by: str | None) -> str:
    """Why a revoked hub's credential is refused, in words."""
    if replaced_by is not None:
        return (f"hub {hub_id} of lab {site!r} was replaced by hub {replaced_by} at "
                f"{_when(revoked_at)}: the lab enrolled another hub, which now holds its "
                "history; to use this machine again, enrol it with a new token "
                "(`labhub network join`)")
    return (f"hub {hub_id} of lab {site!r} was withdrawn by the central at "
            f"{_when(revoked_at)}; to sync again, enrol it with a new token "
            "(`labhub network join`)")


# -- hubs ------------------------------------------------------------------------------------


def list_hubs(conn: Connection, *, sites: Collection[str] | None,
              include_revoked: bool = True) -> list[dict[str, Any]]:
    """The enrolled hubs (lab, then newest first); ``sites`` None: every lab's."""
    query = select(network_hubs).order_by(network_hubs.c.site,
                                          network_hubs.c.enrolled_at.desc())
    if sites is not None:
        query = query.where(network_hubs.c.site.in_(sorted(sites)))
    if not include_revoked:
        query = query.where(network_hubs.c.revoked_at.is_(None))
    out = []
    for r in conn.execute(query):
        hub = dict(r._mapping)
        hub.pop("credential_hash")
        hub["health"] = json.loads(hub["health"]) if hub["health"] else None
        out.append(hub)
    return out


def get_hub(conn: Connection, hub_id: str) -> dict[str, Any]:
    row = conn.execute(select(network_hubs).where(network_hubs.c.id == hub_id)).first()
    if row is None:
        raise Problem(404, "No such hub", f"no hub has the id {hub_id!r}")
    hub = dict(row._mapping)
    hub.pop("credential_hash")
    return hub


def withdraw_hub(conn: Connection, hub_id: str) -> None:
    """Revoke a hub's credential (its lab's data stays; the lab may enrol another hub)."""
    hub = get_hub(conn, hub_id)
    if hub["revoked_at"] is not None:
        raise Problem(409, "Hub already revoked",
                      revoked_detail(hub_id, hub["site"], hub["revoked_at"], hub["replaced_by"]))
    conn.execute(update(network_hubs).where(network_hubs.c.id == hub_id,
                                            network_hubs.c.revoked_at.is_(None))
                 .values(revoked_at=now_us()))


def health_word(hub: Mapping[str, Any], *, now: int, tolerance_us: int,
                every_s: int = 3600) -> str:
    """``never``, ``revoked``, ``ok``, ``late`` (no contact for 3 sync periods, at least a
    day), ``clock`` (its clock beyond the tolerance) in that order of precedence."""
    if hub["revoked_at"] is not None:
        return "revoked"
    if hub["last_contact_at"] is None:
        return "never"
    if now - hub["last_contact_at"] > max(3 * every_s * 1_000_000, US_PER_DAY):
        return "late"
    offset = hub["clock_offset_us"]
    if offset is not None and abs(offset) > tolerance_us:
        return "clock"
    return "ok"


# -- hello -----------------------------------------------------------------------------------


def positions_of(conn: Connection, hub_id: str) -> dict[str, Position]:
    """The hub's acknowledged position in every up stream (``[]``: nothing yet)."""
    held = {r.stream: protocol.loads_position(r.position) for r in conn.execute(
        select(network_positions.c.stream, network_positions.c.position)
        .where(network_positions.c.hub_id == hub_id))}
    out = {name: held.pop(name, []) for name in UP_STREAMS}
    out.update(held)
    return out


def hello(conn: Connection, *, hub_id: str, site: str, message: Hello,
          received_at_us: int) -> Welcome:
    """Record the hub's health and clock offset; the positions it should send from."""
    h = message.health
    conn.execute(update(network_hubs).where(network_hubs.c.id == hub_id).values(
        last_contact_at=received_at_us, version=h.version[:40], uptime_s=h.uptime_s,
        free_disk_bytes=h.free_disk_bytes, backlog=h.backlog,
        devices_online=h.devices_online, dead_letters=h.dead_letters,
        clock_offset_us=message.sent_at_us - received_at_us,
        health=json.dumps(message.to_json()["health"], separators=(",", ":"))))
    return Welcome(hub_id=hub_id, site=site, central_time_us=now_us(),
                   positions=positions_of(conn, hub_id))


def from_hub(conn: Connection, hub_id: str, site: str, *, tolerance_min: int) -> FromHub:
    offset = conn.execute(select(network_hubs.c.clock_offset_us)
                          .where(network_hubs.c.id == hub_id)).scalar_one_or_none()
    suspect = offset is not None and abs(offset) > tolerance_min * 60_000_000
    return FromHub(hub_id=hub_id, site=site, clock_offset_us=offset, clock_suspect=suspect,
                   received_at_us=now_us())


# -- uploads ---------------------------------------------------------------------------------


def applied(conn: Connection, batch_id: str) -> bool:
    return conn.execute(select(network_batches.c.id)
                        .where(network_batches.c.id == batch_id)).first() is not None


def held(conn: Connection, batch_id: str, hub_id: str) -> tuple[int, int | None]:
    """Bytes held of a batch (contiguous from 0) and its length as first announced
    (None: nothing held). A batch another hub holds pieces of is a 409."""
    rows = conn.execute(
        select(network_upload_parts.c.hub_id, network_upload_parts.c.total,
               func.max(network_upload_parts.c.offset
                        + func.length(network_upload_parts.c.data)).label("end"))
        .where(network_upload_parts.c.batch_id == batch_id)
        .group_by(network_upload_parts.c.hub_id, network_upload_parts.c.total)).all()
    if not rows:
        return 0, None
    if any(r.hub_id != hub_id for r in rows):
        raise Problem(409, "Batch of another hub",
                      f"path.batch_id: batch {batch_id} is being uploaded by another hub")
    return max(int(r.end) for r in rows), int(rows[0].total)


def upload_state(conn: Connection, batch_id: str, hub_id: str) -> UploadState:
    if applied(conn, batch_id):
        return UploadState(offset=_batch_bytes(conn, batch_id), complete=True,
                           positions=positions_of(conn, hub_id))
    offset, _ = held(conn, batch_id, hub_id)
    return UploadState(offset=offset, complete=False)


def _batch_bytes(conn: Connection, batch_id: str) -> int:
    return int(conn.execute(select(network_batches.c.bytes)
                            .where(network_batches.c.id == batch_id)).scalar_one())


def store_part(conn: Connection, *, batch_id: str, hub_id: str, offset: int, total: int,
               data: bytes) -> bool:
    """Keep a piece; False when a piece at that offset is there already (another request
    of the same batch got there first)."""
    result = conn.execute(_insert(conn)(network_upload_parts).values(
        batch_id=batch_id, offset=offset, hub_id=hub_id, total=total, data=data,
        received_at=now_us()).on_conflict_do_nothing(index_elements=["batch_id", "offset"])
        .returning(network_upload_parts.c.offset))
    return result.first() is not None


def assembled(conn: Connection, batch_id: str) -> bytes:
    """The batch's bytes from its parts; ProtocolError if they leave a hole."""
    out = bytearray()
    for offset, data in conn.execute(
            select(network_upload_parts.c.offset, network_upload_parts.c.data)
            .where(network_upload_parts.c.batch_id == batch_id)
            .order_by(network_upload_parts.c.offset)):
        if offset != len(out):
            raise ProtocolError(f"the stored pieces of batch {batch_id} leave a hole at "
                                f"byte {len(out)}")
        out += data
    return bytes(out)


class BatchInvalid(Exception):
    """A batch that cannot be applied: what and where (kept as a dead letter)."""


def apply_batch(engine: Engine, *, batch_id: str, hub_id: str, site: str, data: bytes,
                tolerance_min: int) -> UploadState:
    """Apply a whole batch in one transaction (see the module's text); a batch applied
    before (by this request or another worker) is answered complete and not applied
    again. :class:`BatchInvalid` when the batch is not valid (its parts are kept until the
    caller stores the dead letter)."""
    try:
        batch = protocol.unpack_batch(data)
    except ProtocolError as exc:
        raise BatchInvalid(str(exc)) from None
    if batch.batch_id != batch_id:
        raise BatchInvalid(f"the batch's header names batch {batch.batch_id}, not "
                           f"{batch_id} of the path")
    if batch.hub_id != hub_id:
        raise BatchInvalid(f"the batch's header names hub {batch.hub_id}, not this hub "
                           f"({hub_id})")
    streams = up_streams()
    for i, s in enumerate(batch.sections):
        if s.stream not in streams:
            raise BatchInvalid(f"section {i} is of stream {s.stream!r}, which this central "
                               f"does not take (it takes: {', '.join(streams) or 'none'})")
    with engine.begin() as conn:
        now = now_us()
        # RETURNING, not rowcount: the driver's rowcount of an INSERT is not reliable.
        first = conn.execute(_insert(conn)(network_batches).values(
            id=batch_id, hub_id=hub_id, applied_at=now, bytes=len(data), items=0,
            positions="{}").on_conflict_do_nothing(index_elements=["id"])
            .returning(network_batches.c.id)).first()
        if not first:  # applied already, by an earlier request or another worker
            conn.execute(delete(network_upload_parts)
                         .where(network_upload_parts.c.batch_id == batch_id))
            return UploadState(offset=len(data), complete=True,
                               positions=positions_of(conn, hub_id))
        who = from_hub(conn, hub_id, site, tolerance_min=tolerance_min)
        positions = positions_of(conn, hub_id)
        items = 0
        for i, section in enumerate(batch.sections):
            try:
                items += streams[section.stream].apply(conn, who, section)
            except ProtocolError as exc:
                raise BatchInvalid(f"section {i} ({section.stream}): {exc}") from None
            _move(conn, hub_id, section, positions, now)
        conn.execute(update(network_batches).where(network_batches.c.id == batch_id).values(
            items=items, positions=json.dumps(positions, separators=(",", ":"))))
        _count_day(conn, site, now, batches=1, size=len(data))
        conn.execute(delete(network_upload_parts)
                     .where(network_upload_parts.c.batch_id == batch_id))
        return UploadState(offset=len(data), complete=True, positions=positions)


def _move(conn: Connection, hub_id: str, section: Section, positions: dict[str, Position],
          now: int) -> None:
    """Move the stream's position to the section's end when the section starts where the
    central is (or before): a section that starts after it leaves a gap, sent again."""
    at = positions.get(section.stream, [])
    if position_key(section.start) > position_key(at):
        return
    if position_key(section.to) <= position_key(at):
        return  # an older section sent again: the position stays ahead
    positions[section.stream] = list(section.to)
    text = json.dumps(section.to, separators=(",", ":"))
    conn.execute(_insert(conn)(network_positions).values(
        hub_id=hub_id, stream=section.stream, position=text, updated_at=now)
        .on_conflict_do_update(index_elements=["hub_id", "stream"],
                               set_={"position": text, "updated_at": now}))


def day_of(us: int) -> int:
    return us // US_PER_DAY


def _count_day(conn: Connection, site: str, now: int, *, batches: int = 0, size: int = 0,
               readings: int = 0) -> None:
    stmt = _insert(conn)(network_daily).values(site=site, day=day_of(now), readings=readings,
                                               batches=batches, bytes=size)
    conn.execute(stmt.on_conflict_do_update(
        index_elements=["site", "day"],
        set_={"readings": network_daily.c.readings + readings,
              "batches": network_daily.c.batches + batches,
              "bytes": network_daily.c.bytes + size}))


def count_readings(conn: Connection, site: str, readings: int, *, at_us: int | None = None) -> None:
    """Add ``readings`` to lab ``site``'s count of the day (the readings stream's apply)."""
    _count_day(conn, site, now_us() if at_us is None else at_us, readings=readings)


def keep_dead_letter(engine: Engine, *, batch_id: str, hub_id: str, site: str, data: bytes,
                     reason: str) -> None:
    """Keep a batch that could not be applied as a dead letter, and drop its parts."""
    with engine.begin() as conn:
        conn.execute(_insert(conn)(dead_letters).values(
            uuid=batch_id, received_at=now_us(), source=DEAD_LETTER_SOURCE, device=None,
            reason=f"batch {batch_id} of hub {hub_id} (lab {site}): {reason}"[:4000],
            payload=data[:DEAD_LETTER_PAYLOAD_MAX], payload_bytes=len(data),
            payload_sha256=hashlib.sha256(data).hexdigest(), site=site)
            .on_conflict_do_nothing(index_elements=["uuid"]))
        conn.execute(delete(network_upload_parts)
                     .where(network_upload_parts.c.batch_id == batch_id))


def prune_parts(conn: Connection, *, keep_days: int = PARTS_KEEP_DAYS,
                now: int | None = None) -> int:
    """Drop the pieces of batches whose last piece came more than ``keep_days`` ago (a
    hub that went on will start those batches again); how many pieces went."""
    cutoff = (now_us() if now is None else now) - keep_days * US_PER_DAY
    stale = (select(network_upload_parts.c.batch_id)
             .group_by(network_upload_parts.c.batch_id)
             .having(func.max(network_upload_parts.c.received_at) < cutoff))
    return int(conn.execute(delete(network_upload_parts)
                            .where(network_upload_parts.c.batch_id.in_(stale))).rowcount)


# -- down ------------------------------------------------------------------------------------


def down_batch(conn: Connection, *, hub_id: str, site: str,
               positions: Mapping[str, Iterable[int]], budget_bytes: int) -> bytes:
    """The next batch of down sections for lab ``site`` after the hub's ``positions``:
    each down stream in order, until about ``budget_bytes``."""
    sections: list[Section] = []
    left = budget_bytes
    for name, stream in down_streams().items():
        at = list(positions.get(name, []))
        while left > 0:
            section = stream.collect(conn, site, at, left)
            if section is None or position_key(section.to) <= position_key(at):
                break
            sections.append(section)
            left -= len(section.data)
            at = list(section.to)
        if left <= 0:
            break
    return protocol.pack_batch(batch_id=str(uuid.uuid4()), hub_id=hub_id,
                               made_at_us=now_us(), sections=sections)

