"""The hub's side of the network: joining a central, and a contact with it
(:mod:`labhub.network.protocol` says what a contact is).

A **contact** (:func:`contact`):

1. **Hello**: the hub's health (:mod:`labhub.network.health`) and clock; the answer gives
   the central's clock (the hub stores its offset) and the positions the central holds
   for every up stream, which the hub takes as the truth (stored as acknowledged).
2. **Up**: for each up stream in order, what follows those positions is packed into
   batches of about ``network_batch_bytes`` (several streams may share a batch), each
   with a new UUID, and uploaded resumably: after a cut the hub asks how much the central
   holds (``GET``) and goes on from there; a 409 carries the same answer. The central's
   answer to a batch's last piece gives the new positions. At most
   :data:`MAX_BATCHES` batches a contact, so other work gets its turn; the next contact
   comes at once when more is waiting.
3. **Down**: the positions the hub applied go to the central, and every section of its
   answer is applied, with the new positions stored, in one transaction; again until the
   central has nothing more.

Each step reads or writes the hub's database in a short transaction of its own and never
while a request is under way, so the ingest never waits on the network. How a contact
ended (when, or what failed and where) is stored in the membership row.

:class:`SyncLoop` is the thread of ``labhub serve`` that makes a contact every
``network_sync_every_s``, sooner again after a failure (exponential backoff with jitter,
capped at that period).
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from labhub import __version__
from labhub.network import health, membership
from labhub.network.client_http import (
    CutError,
    NetworkError,
    RefusedError,
    StoppedError,
    Transport,
)
from labhub.network.membership import Membership
from labhub.network.protocol import (
    BATCH,
    CREDENTIAL_PREFIX,
    DOWN,
    ENROLMENT_PREFIX,
    HEADER_DIGEST,
    HEADER_LENGTH,
    HEADER_OFFSET,
    HELLO,
    JOIN,
    Hello,
    Position,
    ProtocolError,
    Section,
    UploadState,
    Welcome,
    clock_offset_us,
    digest,
    pack_batch,
    position_key,
    unpack_batch,
)
from labhub.network.streams import (
    Compacting,
    DownStream,
    UpStream,
    down_streams,
    up_streams,
)
from labhub.settings import Settings
from sensors.samples import now_us

log = logging.getLogger(__name__)

MAX_BATCHES = 20  # batches sent up in one contact, at most
MAX_DOWN_ROUNDS = 20  # down requests in one contact, at most
MAX_CUTS = 5  # tries again after cuts in a row that gain no byte, then the batch is given up
MIN_SECTION_BYTES = 1024  # a batch with less room left than this is closed
BACKOFF_BASE_S = 2.0  # the first wait after a failed contact (about)
CLOSE_WAIT_S = 5.0  # how long closing the hub waits for the sync thread


class NotMemberError(Exception):
    """This hub has not joined a network (``labhub network join``)."""


class JoinRefusedError(Exception):
    """Joining a network was refused on this side (before anything was stored)."""


# -- joining ---------------------------------------------------------------------------


def join(engine: Engine, settings: Settings, central_url: str, token: str, *,
         name: str | None = None) -> Membership:
    """Enrol this hub with the central at ``central_url`` with a one-time enrolment
    token, and store the membership (replacing any). ``JoinRefusedError`` when the token
    enrols the hub for another lab than its ``site`` setting (nothing stored);
    :class:`NetworkError` when the central cannot be reached or refuses."""
    if not token.startswith(ENROLMENT_PREFIX):
        raise JoinRefusedError(f"an enrolment token starts with {ENROLMENT_PREFIX!r}: ask "
                               "a coordinator of the central for one (labhub network token)")
    try:
        transport = Transport(central_url, ca_file=settings.network_ca_file)
    except ValueError as exc:
        raise JoinRefusedError(str(exc)) from None
    sent_at = now_us()
    body = {"token": token, "name": name or socket.gethostname(), "version": __version__,
            "sent_at_us": sent_at}
    if settings.site is not None:
        body["site"] = settings.site  # the central refuses another lab's token, unused
    where = f"POST {transport.url(JOIN)}"
    try:
        answer = transport.request("POST", JOIN, what="joining the network",
                                   body=_json(body),
                                   headers={"Content-Type": "application/json"})
        data = answer.json("joining the network", where)
        received_at = now_us()
    finally:
        transport.close()
    try:
        hub_id, site, credential = (str(data["hub_id"]), str(data["site"]),
                                    str(data["credential"]))
    except (KeyError, TypeError):
        raise NetworkError("joining the network", where,
                           "the answer lacks hub_id, site or credential") from None
    if not credential.startswith(CREDENTIAL_PREFIX):
        raise NetworkError("joining the network", where,
                           f"the credential given does not start with {CREDENTIAL_PREFIX!r}")
    if settings.site is not None and settings.site != site:
        raise JoinRefusedError(
            f"the token enrols this hub for lab {site!r}, but its site setting is "
            f"{settings.site!r}: nothing was stored. Ask for a token for {settings.site!r}, "
            f"or set site = {site!r} in labhub.toml, then join with a new token")
    central_time = data.get("central_time_us")
    offset = (clock_offset_us(sent_at, central_time, received_at)
              if isinstance(central_time, int) else None)
    with engine.begin() as conn:
        return membership.store_joined(conn, central_url=transport.base_url, hub_id=hub_id,
                                       credential=credential, site=site,
                                       joined_at=received_at, clock_offset_us=offset)


# -- a contact -------------------------------------------------------------------------


@dataclass(slots=True)
class ContactSummary:
    """What one contact did."""

    hub_id: str
    site: str
    central_url: str
    clock_offset_us: int | None = None
    batches: int = 0  # batches uploaded
    bytes_up: int = 0  # body bytes sent up (pieces sent again after a cut included)
    resumed: int = 0  # uploads resumed after a cut or a 409
    sent: dict[str, int] = field(default_factory=dict)  # items per up stream
    received: dict[str, int] = field(default_factory=dict)  # items per down stream
    up_positions: dict[str, Position] = field(default_factory=dict)
    down_positions: dict[str, Position] = field(default_factory=dict)
    more: bool = False  # more was waiting when the contact stopped (bounded)
    took_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """The contact in words, a line each, for ``labhub network sync``."""
        out = [f"contact with {self.central_url} as hub {self.hub_id} of lab {self.site} "
               f"in {self.took_s:.1f} s"]
        if self.clock_offset_us is not None:
            out.append(f"clock: this hub is {self.clock_offset_us / 1e6:+.3f} s from the "
                       "central's")
        up = ", ".join(f"{n} {k}" for k, n in self.sent.items() if n) or "nothing"
        out.append(f"up: {up} in {self.batches} batch(es), {self.bytes_up} bytes"
                   + (f", {self.resumed} resumed" if self.resumed else ""))
        down = ", ".join(f"{n} {k}" for k, n in self.received.items() if n) or "nothing"
        out.append(f"down: {down}")
        if self.more:
            out.append("more is waiting: the next contact goes on at once")
        return out


TransportFactory = Callable[[Membership, Settings, threading.Event], Transport]


def _transport(m: Membership, settings: Settings, stop: threading.Event) -> Transport:
    return Transport(m.central_url, credential=m.credential,
                     ca_file=settings.network_ca_file,
                     bandwidth_kbit=settings.network_bandwidth_kbit, stop=stop,
                     cut_pause_s=settings.network_cut_pause_ms / 1000)


def contact(engine: Engine, settings: Settings, *,
            up: Mapping[str, UpStream] | None = None,
            down: Mapping[str, DownStream] | None = None,
            stop: threading.Event | None = None,
            make_transport: TransportFactory = _transport,
            on_transport: Callable[[Transport | None], None] | None = None,
            max_batches: int = MAX_BATCHES) -> ContactSummary:
    """One contact with the central (see the module's text). ``NotMemberError`` if the
    hub has not joined; :class:`NetworkError` (recorded as the last error) if it failed.
    ``up`` and ``down``: the streams (the registry's by default)."""
    up = up_streams() if up is None else up
    down = down_streams() if down is None else down
    stop = stop or threading.Event()
    with engine.connect() as conn:
        m = membership.get(conn)
    if m is None:
        raise NotMemberError("this hub has not joined a network: labhub network join "
                             "<central URL> --token lhe_...")
    started = time.monotonic()
    summary = ContactSummary(hub_id=m.hub_id, site=m.site, central_url=m.central_url,
                             up_positions=dict(m.up_positions),
                             down_positions=dict(m.down_positions))
    transport = make_transport(m, settings, stop)
    if on_transport is not None:
        on_transport(transport)
    try:
        _hello(engine, settings, transport, m, up, summary)
        _up(engine, transport, m, up, summary, max_batches, settings.network_batch_bytes)
        _down(engine, transport, m, down, summary)
    except Exception as exc:
        if not isinstance(exc, StoppedError):  # a hub stopping is no failure of the link
            _record(engine, _error_text(exc))
        if isinstance(exc, NetworkError):
            raise
        if isinstance(exc, ProtocolError):
            raise NetworkError("reading the central's answer", m.central_url,
                               str(exc)) from None
        raise
    finally:
        if on_transport is not None:
            on_transport(None)
        transport.close()
        summary.bytes_up = transport.bytes_uploaded
        summary.took_s = time.monotonic() - started
    _record(engine, None)
    _compact(engine, up, summary.up_positions)
    return summary


def _compact(engine: Engine, up: Mapping[str, UpStream],
             acknowledged: Mapping[str, Position]) -> None:
    """Let each stream that keeps a journal shrink what the central acknowledged (the
    readings' spans: one per series and day instead of one per batch)."""
    for name, stream in up.items():
        if isinstance(stream, Compacting) and acknowledged.get(name):
            try:
                with engine.begin() as conn:
                    stream.compact(conn, list(acknowledged[name]))
            except SQLAlchemyError as exc:  # only tidying: the next contact tries again
                log.warning("could not compact the %s journal: %s", name, exc)


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, NetworkError | ProtocolError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _record(engine: Engine, error: str | None) -> None:
    try:
        with engine.begin() as conn:
            membership.record_outcome(conn, at=now_us(), error=error)
    except SQLAlchemyError as exc:
        log.warning("the outcome of the contact with the central was not stored: %s", exc)


def _json(value: Any) -> bytes:
    import json

    return json.dumps(value, separators=(",", ":")).encode()


def _hello(engine: Engine, settings: Settings, transport: Transport, m: Membership,
           up: Mapping[str, UpStream], summary: ContactSummary) -> None:
    with engine.connect() as conn:
        now_health = health.collect(conn, data_dir=settings.data_dir, streams=up,
                                    positions=m.up_positions)
    sent_at = now_us()
    body = Hello(health=now_health, sent_at_us=sent_at).to_json()
    answer = transport.request("POST", HELLO, what="hello", body=_json(body),
                               headers={"Content-Type": "application/json"})
    received_at = now_us()
    data = answer.json("hello", f"POST {transport.url(HELLO)}")
    try:
        welcome = Welcome.from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise NetworkError("hello", f"POST {transport.url(HELLO)}",
                           f"the answer is not a welcome: {exc}") from None
    offset = clock_offset_us(sent_at, welcome.central_time_us, received_at)
    summary.clock_offset_us = offset
    summary.up_positions = {name: list(welcome.positions.get(name, [])) for name in up}
    for name, position in welcome.positions.items():
        summary.up_positions.setdefault(name, list(position))
    with engine.begin() as conn:
        membership.record_hello(conn, at=received_at, clock_offset_us=offset,
                                up_positions=summary.up_positions)


def _pack(engine: Engine, up: Mapping[str, UpStream], after: Mapping[str, Position],
          budget: int) -> list[Section]:
    """The sections of the next batch: each stream in order, after ``after``, until the
    batch holds about ``budget`` bytes."""
    sections: list[Section] = []
    left = budget
    at = dict(after)
    with engine.connect() as conn:
        for name, stream in up.items():
            while left >= MIN_SECTION_BYTES or not sections:
                section = stream.collect(conn, at.get(name, []), max(left, MIN_SECTION_BYTES))
                if section is None:
                    break
                if position_key(section.to) <= position_key(at.get(name, [])):
                    raise ProtocolError(f"the {name} stream's section does not move past "
                                        f"{at.get(name, [])} (to {section.to})")
                sections.append(section)
                left -= len(section.data)
                at[name] = list(section.to)
            if left < MIN_SECTION_BYTES and sections:
                break
    return sections


def _up(engine: Engine, transport: Transport, m: Membership, up: Mapping[str, UpStream],
        summary: ContactSummary, max_batches: int, budget: int) -> None:
    for _ in range(max_batches):
        sections = _pack(engine, up, summary.up_positions, budget)
        if not sections:
            return
        batch_id = str(uuid.uuid4())
        data = pack_batch(batch_id=batch_id, hub_id=m.hub_id, made_at_us=now_us(),
                          sections=sections)
        state = _upload(transport, batch_id, data, summary)
        if state.positions is None:
            raise NetworkError(f"uploading batch {batch_id}",
                               f"PUT {transport.url(BATCH.format(batch_id=batch_id))}",
                               "the central said the batch is complete but gave no positions")
        before = dict(summary.up_positions)
        summary.up_positions.update({k: list(v) for k, v in state.positions.items()})
        summary.batches += 1
        for s in sections:
            summary.sent[s.stream] = summary.sent.get(s.stream, 0) + s.count
        with engine.begin() as conn:
            membership.record_acknowledged(conn, summary.up_positions)
        if all(position_key(summary.up_positions.get(s.stream)) <= position_key(
                before.get(s.stream)) for s in sections):
            log.warning("the central took batch %s but moved none of its positions; "
                        "the next contact sends from where it stands", batch_id)
            return
    summary.more = bool(_pack(engine, up, summary.up_positions, MIN_SECTION_BYTES))


def _upload(transport: Transport, batch_id: str, data: bytes,
            summary: ContactSummary) -> UploadState:
    """Upload one batch resumably; the central's final state (complete)."""
    path = BATCH.format(batch_id=batch_id)
    what = f"uploading batch {batch_id}"
    where = f"PUT {transport.url(path)}"
    offset = 0
    cuts = 0
    while True:
        state: UploadState | None = None
        cut = False
        try:
            answer = transport.request(
                "PUT", path, what=what, body=data[offset:], throttle=True,
                headers={"Content-Type": "application/octet-stream",
                         HEADER_OFFSET: str(offset), HEADER_LENGTH: str(len(data)),
                         HEADER_DIGEST: digest(data)})
            state = _state(answer.json(what, where), what, where)
        except RefusedError as exc:
            if exc.status != 409 or not isinstance(exc.body, dict) or "offset" not in exc.body:
                raise
            state = _state(exc.body, what, where)
            summary.resumed += 1
        except CutError as exc:
            cut = True
            cuts += 1
            if cuts > MAX_CUTS:
                raise
            log.info("upload of batch %s cut at offset %d (%s); asking the central where "
                     "to go on", batch_id, offset, exc.why)
            if transport.stop.wait(transport.cut_pause_s * 2 ** (cuts - 1)):
                raise StoppedError(what, where, "the hub is stopping") from None
            try:
                state = _state(transport.request("GET", path, what=what).json(what, where),
                               what, where)
            except CutError:
                continue  # the next PUT tries from the same offset (a 409 corrects it)
            except RefusedError as refused:
                if refused.status != 404:
                    raise
                state = UploadState(offset=0, complete=False)  # nothing of it arrived
            summary.resumed += 1
        if state.complete:
            return state
        if state.offset > len(data) or state.offset < 0:
            raise NetworkError(what, where, f"the central holds offset {state.offset} of a "
                               f"batch of {len(data)} bytes")
        if state.offset > offset:
            cuts = 0
        elif state.offset == offset and not cut:
            cuts += 1  # an answer that gains nothing: as many as cuts, then give up
            if cuts > MAX_CUTS:
                raise NetworkError(what, where, f"the central takes no more of the batch "
                                   f"than byte {offset} of {len(data)}")
        offset = state.offset
        if offset == len(data):
            raise NetworkError(what, where, "the central holds every byte but did not apply "
                               "the batch")


def _state(data: Any, what: str, where: str) -> UploadState:
    try:
        return UploadState.from_json(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise NetworkError(what, where, f"the answer is not an upload state: {exc}") from None


def _down(engine: Engine, transport: Transport, m: Membership,
          down: Mapping[str, DownStream], summary: ContactSummary) -> None:
    what = "taking what comes down"
    where = f"POST {transport.url(DOWN)}"
    for _ in range(MAX_DOWN_ROUNDS):
        answer = transport.request("POST", DOWN, what=what,
                                   body=_json({"positions": summary.down_positions}),
                                   headers={"Content-Type": "application/json"})
        if not answer.body:
            return
        batch = unpack_batch(answer.body)
        if not batch.sections:
            return
        positions = dict(summary.down_positions)
        for s in batch.sections:
            if s.stream not in down:
                raise NetworkError(what, where, f"the central sent a section of stream "
                                   f"{s.stream!r}, which this hub does not know (update it)")
        with engine.begin() as conn:
            for s in batch.sections:
                down[s.stream].apply(conn, m.site, s)
                positions[s.stream] = list(s.to)
            membership.record_down(conn, positions)
        moved = any(position_key(positions.get(s.stream)) > position_key(
            summary.down_positions.get(s.stream)) for s in batch.sections)
        summary.down_positions = positions
        for s in batch.sections:
            summary.received[s.stream] = summary.received.get(s.stream, 0) + s.count
        if not moved:
            return


# -- the sync thread -------------------------------------------------------------------


def backoff_delay(failures: int, cap_s: float, rng: random.Random,
                  base_s: float = BACKOFF_BASE_S) -> float:
    """Seconds to wait after ``failures`` failed contacts in a row: doubling from
    ``base_s``, capped at ``cap_s``, the upper half jittered (hubs that lost the same
    central do not all come back at once)."""
    ceiling = min(float(cap_s), base_s * 2.0 ** max(0, failures - 1))
    return ceiling / 2 + float(rng.uniform(0, ceiling / 2))


class SyncLoop:
    """The thread of a serving hub that makes a contact every ``network_sync_every_s``.

    It reads the membership each cycle (a ``labhub network join`` run while the hub
    serves takes effect at the next cycle, with no restart); after a failure it tries
    again sooner (:func:`backoff_delay`), after a contact that left more waiting at
    once. :meth:`sync_now` makes a contact on request (the API's), one at a time with the
    thread's. :meth:`close` ends a contact under way (its socket is shut) and the thread.
    """

    def __init__(self, engine: Engine, settings: Settings, *,
                 up: Mapping[str, UpStream] | None = None,
                 down: Mapping[str, DownStream] | None = None,
                 make_transport: TransportFactory = _transport,
                 rng: random.Random | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.up = up
        self.down = down
        self.make_transport = make_transport
        self.rng = rng or random.Random()  # noqa: S311 (jitter, not a secret)
        self.failures = 0
        self.contacts = 0  # contacts made by the thread (through or not)
        self.next_delay_s: float | None = None  # the wait before the next cycle
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._current: Transport | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SyncLoop:
        self._thread = threading.Thread(target=self._run, name="labhub-network-sync",
                                        daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        """Start the next cycle now."""
        self._wake.set()

    def _set_current(self, transport: Transport | None) -> None:
        self._current = transport

    def sync_now(self) -> ContactSummary:
        """One contact now (waiting for one under way to end first)."""
        with self._lock:
            if self._stop.is_set():
                raise StoppedError("a contact", "the hub", "the hub is stopping")
            return contact(self.engine, self.settings, up=self.up, down=self.down,
                           stop=self._stop, make_transport=self.make_transport,
                           on_transport=self._set_current)

    def _cycle(self) -> float:
        """One cycle; the seconds to wait before the next."""
        every = float(self.settings.network_sync_every_s)
        try:
            summary = self.sync_now()
        except NotMemberError:
            self.failures = 0
            return every
        except StoppedError:
            return 0.0
        except NetworkError as exc:
            self.failures += 1
            self.contacts += 1
            delay = backoff_delay(self.failures, every, self.rng)
            log.warning("contact with the central failed (%d in a row; next try in %.0f s): "
                        "%s", self.failures, delay, exc)
            return delay
        except Exception:  # a defect: logged whole, and the thread goes on
            self.failures += 1
            self.contacts += 1
            log.exception("the contact with the central failed unexpectedly")
            return backoff_delay(self.failures, every, self.rng)
        self.contacts += 1
        self.failures = 0
        return 0.0 if summary.more else every

    def _run(self) -> None:
        while not self._stop.is_set():
            delay = self._cycle()
            self.next_delay_s = delay
            if self._stop.is_set():
                break
            if self._wake.wait(delay):
                self._wake.clear()

    def close(self, timeout_s: float = CLOSE_WAIT_S) -> None:
        """Stop the thread: a contact under way is cut short (it resumes next time)."""
        self._stop.set()
        self._wake.set()
        current = self._current
        if current is not None:
            current.abort()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("the network sync thread did not stop within %.0f s", timeout_s)


# -- status ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Status:
    """The hub's membership and how its sync stands, for ``labhub network status`` and
    ``GET /api/v1/network/status``; ``membership`` None when it has not joined."""

    membership: Membership | None
    backlog: dict[str, int]  # items of each up stream the central has not acknowledged

    def to_json(self) -> dict[str, Any]:
        m = self.membership
        if m is None:
            return {"member": False, "backlog": self.backlog}
        return {
            "member": True, "central_url": m.central_url, "hub_id": m.hub_id, "site": m.site,
            "joined_at_us": m.joined_at, "last_contact_at_us": m.last_contact_at,
            "last_error": m.last_error, "clock_offset_us": m.clock_offset_us,
            "backlog": self.backlog, "up_positions": m.up_positions,
            "down_positions": m.down_positions,
        }


def status(engine: Engine, *, up: Mapping[str, UpStream] | None = None) -> Status:
    """The membership and each up stream's backlog after its acknowledged position."""
    up = up_streams() if up is None else up
    with engine.connect() as conn:
        m = membership.get(conn)
        backlog = health.backlogs(conn, up, m.up_positions if m is not None else {})
    return Status(membership=m, backlog=backlog)
