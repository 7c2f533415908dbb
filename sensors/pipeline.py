"""The ingest pipeline: the one way readings get into storage, from every source.

HTTP uploads, serial sketches, Firmata boards, MQTT nodes and SD-card imports all call
:meth:`IngestPipeline.submit` with channels named as the device sends them. Submitting
applies the device's channel map (:mod:`sensors.channels`: rename, calibrate, resolve the
quantity; the same for every source), validates and converts on the caller's thread
(finite numbers, timestamps in a sane window, units to the canonical unit, a ``suspect``
flag outside the plausible range), then queues the rows; one writer thread stores them in
batches (flushed on size or after a short delay). Every submission returns a
:class:`Ticket` that completes once its rows are committed, so a caller that must not
acknowledge before the data is durable (MQTT) can wait for it or register a callback.

Listeners (:meth:`IngestPipeline.add_listener`) hear about readings once they are
committed, as stored (converted to the canonical unit), with their source: the hub
republishes its kits' readings over MQTT that way without any source knowing of MQTT.

Nothing is lost silently: a reading that cannot be stored goes to the dead-letter table
with the reason, and when storage falls behind the bounded queue makes producers wait
(back-pressure) instead of dropping anything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import repeat
from typing import Any

from labtext.printable import UnprintableTextError, check_name
from sensors.calibration import Calibration
from sensors.channels import ChannelMaps, route_channel
from sensors.errors import PipelineClosedError, SensorsError, UnknownSiteError
from sensors.quantities import ChannelSpec, UnitError, normalize_unit
from sensors.samples import US_PER_S, Sample, now_us
from sensors.storage import (
    DEAD_LETTER_PAYLOAD_MAX,
    DEAD_LETTER_UNKNOWN_SITE,
    FLAG_SUSPECT,
    MAX_TOPIC_CHARS,
    BatchWriter,
    DeadLetterRow,
    ReadingRow,
    ReadingStore,
)

log = logging.getLogger(__name__)

EARLIEST_TS_US = 946_684_800 * US_PER_S  # 2000-01-01: older times are a device clock never set
WRITE_RETRIES = 5  # a locked or restarting database gets this many tries per batch
WRITE_RETRY_FIRST_S = 0.1  # then 0.2, 0.4, ... seconds between tries

# device, channel, value, ts (us), unit, quantity: one reading as stored
StoredReading = tuple[str, str, float, int, "str | None", "str | None"]
# source, site, the readings of one submission in order; called on the writer thread
ReadingsListener = Callable[[str, "str | None", list[StoredReading]], None]
# More work for the transaction that stores a submission's readings, called with the DBAPI
# cursor and the dialect name ("sqlite" or "postgresql") before COMMIT: a source keeps its
# own bookkeeping (MQTT: which deliveries are stored) atomic with the readings.
TransactionHook = Callable[[Any, str], None]
# Where a refused reading of a submission came from, given its index in the submission:
# (topic, dead-letter uuid), either None. A source whose input can arrive twice (MQTT
# redeliveries) derives the uuid from the delivery, so the second dead letter is the first.
DeadLetterOrigin = Callable[[int], "tuple[str | None, str | None]"]
# Whether a site code is a site of the hub's inventory. The readings domain does not know
# the inventory: the app shell hands the pipeline this check (labhub.wiring.SiteCodes).
SiteCheck = Callable[[str], bool]
# Whether dead letters keep their bodies now: False while the hub's disk is low on space
# (the app shell's disk guard, labhub.disk). A letter then keeps its reason, the payload's
# size and SHA-256, and is counted; its body is dropped, except for letters kept to be
# replayed (an unknown site's readings), which are readings nobody else holds.
KeepBodies = Callable[[], bool]
BODY_NOT_KEPT = " [body not kept: the hub's disk was low on space]"

# Told the duration in seconds of each batch the writer committed (a write that failed is
# not told), on the writer thread after COMMIT: the hub's /metrics keeps a histogram of it.
CommitObserver = Callable[[float], None]


_BY_SOURCE = ("accepted", "duplicate", "rejected", "failed")  # counters_by_source's keys

# Resolved (device, channel, unit) routes kept in memory, ~400 bytes each: a lab has
# hundreds, but every new name a client sends (a fuzzer, a misconfigured node) adds one,
# and without a bound the hub's memory grew with them for as long as it ran.
MAX_ROUTES = 50_000
MAX_NAME_CHARS = 200  # device and channel names: the width of their columns
MAX_UNIT_CHARS = 40
MAX_SITE_CHARS = 100


class BadNameError(SensorsError):
    """A device, channel or unit name that cannot be stored (empty, too long, control bytes)."""


def _check_name(kind: str, name: str, limit: int = MAX_NAME_CHARS) -> None:
    if not isinstance(name, str) or not name.strip():
        raise BadNameError(f"{kind} name {name!r} is empty")
    if len(name) > limit:
        raise BadNameError(f"{kind} name {name[:40]!r}... is longer than {limit} characters")
    try:
        check_name(name)
    except UnprintableTextError as exc:
        raise BadNameError(f"{kind} name {name!r} {exc}") from None
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise BadNameError(f"{kind} name {name!r} is not valid Unicode text") from None


class QueueFullError(SensorsError):
    """The ingest queue stayed full for longer than the caller was willing to wait."""


class StorageFailedError(SensorsError):
    """Readings could not be written after every retry; the cause is chained."""


@dataclass(slots=True)
class IngestResult:
    """What became of one submission's readings."""

    accepted: int = 0  # newly stored
    duplicate: int = 0  # already stored (a retry or replay), stored once
    suspect: int = 0  # stored with the suspect flag (outside the plausible range)
    rejected: int = 0  # not storable: in the dead-letter table with the reason
    reason: str | None = None  # why the last refused reading was refused


class Ticket:
    """Completes when a submission is durable (committed) or has failed for good."""

    __slots__ = ("_callbacks", "_event", "_lock", "error", "result")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[Ticket], None]] = []
        self.result = IngestResult()
        self.error: BaseException | None = None

    def done(self) -> bool:
        """True once the submission is durable or has failed."""
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> IngestResult:
        """Block until durable; raise the storage error if it failed, TimeoutError on timeout."""
        if not self._event.wait(timeout):
            raise TimeoutError("readings not yet durable")
        if self.error is not None:
            raise self.error
        return self.result

    def add_done_callback(self, callback: Callable[[Ticket], None]) -> None:
        """Call ``callback(ticket)`` when done (at once if already done).

        Callbacks run on the writer thread: keep them short (send an MQTT ack, set a flag).
        """
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return
        callback(self)

    def _finish(self, error: BaseException | None = None) -> None:
        with self._lock:
            self.error = error
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback(self)
            except Exception:
                log.exception("ingest ticket callback failed")


@dataclass(slots=True)
class _Item:
    ticket: Ticket
    rows: list[ReadingRow]
    dead: list[DeadLetterRow]
    hook: TransactionHook | None = None
    flush: bool = False  # the writer takes it without waiting (flush(), or submit(flush=True))
    source: str = ""  # where the readings came from, for the counts by source


@dataclass(slots=True)
class _Route:
    """A resolved (device, channel as sent, unit): where its values go, under which name,
    and how they convert (the calibration, if any, first)."""

    series_id: int
    scale: float
    offset: float
    low: float
    high: float
    unit: str | None = None
    quantity: str | None = None
    channel: str = ""  # the stored name, after the device's channel map
    calibration: Calibration | None = None


class IngestPipeline:
    """Validate, convert, batch and write readings; see the module docstring.

    Use as a context manager, or call :meth:`start` and :meth:`close`.
    """

    def __init__(
        self,
        store: ReadingStore,
        *,
        batch_size: int = 1000,
        flush_interval_s: float = 0.2,
        max_queued: int = 200_000,
        future_tolerance_s: float = 600,
        channel_maps: ChannelMaps | None = None,
        site_known: SiteCheck | None = None,
        keep_dead_letter_bodies: KeepBodies | None = None,
        commit_observer: CommitObserver | None = None,
    ) -> None:
        """``commit_observer``: see :data:`CommitObserver` (also :meth:`add_commit_observer`)."""
        self.store = store
        self._site_known = site_known
        self._keep_bodies = keep_dead_letter_bodies
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.max_queued = max_queued
        self.future_tolerance_us = int(future_tolerance_s * US_PER_S)
        self._maps = channel_maps
        self._routes: dict[tuple[str, str, str | None], _Route] = {}
        self._unmapped: dict[str, set[str]] = {}  # device -> channels kept as plain numbers
        self._generation = 0  # bumped by forget(): a route made from older maps is not kept
        self._cond = threading.Condition()
        self._items: deque[_Item] = deque()
        self._queued = 0  # readings plus dead letters waiting for the writer
        self._oldest = 0.0  # monotonic time the oldest waiting item was queued
        self._closing = False
        self._flush_requests = 0  # flush() calls waiting: the writer must not wait for a batch
        self._thread: threading.Thread | None = None
        self._listeners: list[tuple[frozenset[str] | None, ReadingsListener]] = []
        self._commit_observers: list[CommitObserver] = (
            [] if commit_observer is None else [commit_observer])
        # source -> [accepted, duplicate, rejected, failed], counted by the writer
        self._by_source: dict[str, list[int]] = {}
        self._counts = {
            "submitted": 0,
            "accepted": 0,
            "duplicate": 0,
            "suspect": 0,
            "rejected": 0,
            "failed": 0,
            "batches": 0,
        }

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> IngestPipeline:
        """Start the writer thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="labhub-ingest", daemon=True)
            self._thread.start()
        return self

    def close(self, timeout: float | None = 30.0) -> None:
        """Write everything still queued, then stop the writer thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("ingest writer did not finish within %s s", timeout)
            self._thread = None

    def __enter__(self) -> IngestPipeline:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- producers ----------------------------------------------------------------------

    def submit(
        self,
        samples: Iterable[Sample],
        *,
        device: str,
        source: str,
        site: str | None = None,
        received_at: int | None = None,
        timeout: float | None = None,
        in_transaction: TransactionHook | None = None,
        origin: DeadLetterOrigin | None = None,
        flush: bool = False,
    ) -> Ticket:
        """Queue readings of ``device`` from ``source``; the ticket completes when durable.

        ``received_at`` (microseconds) stamps samples that carry no time of their own.
        Blocks while the queue is full (back-pressure); raises :class:`QueueFullError` if
        that lasts longer than ``timeout`` seconds. ``in_transaction`` runs in the same
        transaction as these readings (see :data:`TransactionHook`); if it fails, the
        batch fails and is retried like any failed write. ``origin`` gives the topic and
        uuid of each refused reading's dead letter (see :data:`DeadLetterOrigin`).
        ``flush``: write without waiting for the flush interval, for a caller that batched
        already and waits for the commit (MQTT acknowledges after it); while the writer is
        busy, what queues up meanwhile still goes in one transaction.
        """
        now = now_us() if received_at is None else received_at
        latest = now + self.future_tolerance_us
        routes = self._routes
        rows: list[ReadingRow] = []
        append = rows.append
        rejects: list[tuple[int, Sample, str]] = []
        kept: list[StoredReading] | None = None
        if self._listeners and any(wanted is None or source in wanted
                                   for wanted, _ in self._listeners):
            kept = []
        suspect = 0
        count = 0
        for sample in samples:
            count += 1
            channel, value, ts, unit, sender = sample
            dev = device if sender is None else sender
            route = routes.get((dev, channel, unit))
            if route is None:
                try:
                    route = self._route(dev, channel, unit, site)
                except (UnitError, BadNameError) as exc:
                    rejects.append((count - 1, sample, str(exc)))
                    continue
            try:
                if route.calibration is not None:
                    value = route.calibration(value)
                value = value * route.scale + route.offset
            except TypeError:
                rejects.append((count - 1, sample,
                                f"value {value!r} of channel {channel!r} is not a number"))
                continue
            except (ValueError, ArithmeticError) as exc:
                rejects.append((count - 1, sample, f"calibration of channel {channel!r} "
                                                   f"failed on {value!r}: {exc}"))
                continue
            if value - value != 0:  # NaN and infinities: no arithmetic identity holds
                rejects.append((count - 1, sample,
                                f"value {value!r} of channel {channel!r} is not finite"))
                continue
            if ts is None:
                ts = now
            elif ts > latest or ts < EARLIEST_TS_US:
                rejects.append((count - 1, sample, _bad_time_reason(ts, now, channel)))
                continue
            if route.low <= value <= route.high:
                append((route.series_id, ts, value, 0))
            else:
                suspect += 1
                append((route.series_id, ts, value, FLAG_SUSPECT))
            if kept is not None:
                kept.append((dev, route.channel, value, ts, route.unit, route.quantity))
        keep = self._keep_bodies is None or not rejects or self._keep_bodies()
        dead = [
            _dead_row(source, s.device or device, reason, _sample_json(s), now,
                      *(origin(i) if origin is not None else (None, None)), keep_body=keep)
            for i, s, reason in rejects
        ]
        ticket = Ticket()
        ticket.result.suspect = suspect
        ticket.result.rejected = len(rejects)
        if rejects:
            ticket.result.reason = rejects[-1][2]
        self._enqueue(_Item(ticket, rows, dead, in_transaction, flush, source), timeout,
                      submitted=count)
        if kept:
            ticket.add_done_callback(partial(self._tell, source, site, kept))
        return ticket

    def check_site(self, site: str | None, *, where: str) -> None:
        """Refuse readings that name a site the hub's inventory does not have: raise
        :class:`~sensors.errors.UnknownSiteError` (``where``: where the source named it,
        for the message). No site, or no check given (a tool's own pipeline): nothing to
        refuse. Sources that name a site of their own (HTTP uploads, MQTT topics, imports)
        call it before :meth:`submit`, and keep what they refuse as a dead letter of kind
        ``unknown_site`` (:meth:`reject`), which ``labhub rejects replay`` stores once the
        site exists."""
        if site is not None and self._site_known is not None and not self._site_known(site):
            raise UnknownSiteError(site, where=where)

    def add_listener(
        self, listener: ReadingsListener, *, sources: Iterable[str] | None = None
    ) -> None:
        """Call ``listener(source, site, readings)`` after each submission's readings are
        committed (not when the write failed), on the writer thread: keep it short.
        ``sources`` limits it to submissions from those sources (the others cost nothing)."""
        self._listeners.append((None if sources is None else frozenset(sources), listener))

    def add_commit_observer(self, observer: CommitObserver) -> None:
        """Tell ``observer`` each committed batch's duration (see :data:`CommitObserver`);
        it runs on the writer thread, so it must be cheap (a histogram's observe)."""
        self._commit_observers.append(observer)

    def _tell(self, source: str, site: str | None, readings: list[StoredReading],
              ticket: Ticket) -> None:
        if ticket.error is not None:
            return
        for wanted, listener in self._listeners:
            if wanted is not None and source not in wanted:
                continue
            try:
                listener(source, site, readings)
            except Exception:
                log.exception("ingest listener failed")
    def submit_columns(
        self,
        channels: Sequence[str],
        times: Sequence[int],
        columns: Sequence[Sequence[float]],
        *,
        device: str,
        source: str,
        site: str | None = None,
        timeout: float | None = None,
    ) -> Ticket:
        """Queue readings given as columns: ``columns[j][i]`` is ``channels[j]`` at ``times[i]``.

        The same as :meth:`submit` of ``Sample(channels[j], columns[j][i], times[i])`` line
        by line (no units, times given), with the same results, rows, counts and dead
        letters, but checked a column at a time: one route per channel, then bulk passes
        (conversion, a finite sum, the column's minimum and maximum, the times' range)
        instead of work per reading. Any column those passes cannot clear (a reading out
        of range, not finite, not a number, a route to make) goes through :meth:`submit`.
        The rows reach storage channel by channel instead of line by line, which stores
        the same rows (each key is one channel's).
        """
        count = len(times)
        if len(columns) != len(channels) or any(len(column) != count for column in columns):
            raise ValueError("submit_columns needs one column per channel, one value per time")
        now = now_us()
        if count == 0 or not channels or min(times) < EARLIEST_TS_US \
                or max(times) > now + self.future_tolerance_us:
            return self._submit_lines(channels, times, columns, device, source, site, timeout)
        routes = self._routes
        rows: list[ReadingRow] = []
        taken: list[tuple[str, list[float], _Route]] = []
        suspect = 0
        for channel, column in zip(channels, columns, strict=True):
            route = routes.get((device, channel, None))
            if route is None:
                return self._submit_lines(channels, times, columns, device, source, site,
                                          timeout)
            scale, offset, low, high = route.scale, route.offset, route.low, route.high
            calibrate = route.calibration
            try:
                if calibrate is not None:
                    column = [calibrate(value) for value in column]
                values = [value * scale + offset for value in column]
                total = sum(values)
                # A finite sum means no NaN or infinity (a huge one overflowing goes the
                # slow way too); then the extremes tell whether all are in range.
                if total - total != 0:
                    raise TypeError
                if low <= min(values) and max(values) <= high:
                    flags: Iterable[int] = repeat(0, count)
                else:
                    flags = [0 if low <= value <= high else FLAG_SUSPECT for value in values]
                    suspect += count - flags.count(0)
            except (TypeError, ValueError, ArithmeticError):
                # Not numbers, not finite, or a calibration failed: submit() makes the
                # dead letters, each at its reading.
                return self._submit_lines(channels, times, columns, device, source, site,
                                          timeout)
            rows += zip(repeat(route.series_id, count), times, values, flags, strict=True)
            taken.append((route.channel, values, route))
        ticket = Ticket()
        ticket.result.suspect = suspect
        self._enqueue(_Item(ticket, rows, [], source=source), timeout,
                      submitted=count * len(channels))
        if self._listeners and any(wanted is None or source in wanted
                                   for wanted, _ in self._listeners):
            # Listeners get the readings line by line, as submit() gives them.
            kept: list[StoredReading] = [
                (device, channel, values[i], ts, route.unit, route.quantity)
                for i, ts in enumerate(times)
                for channel, values, route in taken
            ]
            ticket.add_done_callback(partial(self._tell, source, site, kept))
        return ticket

    def _submit_lines(
        self,
        channels: Sequence[str],
        times: Sequence[int],
        columns: Sequence[Sequence[float]],
        device: str,
        source: str,
        site: str | None,
        timeout: float | None,
    ) -> Ticket:
        make = tuple.__new__  # Sample's own __new__ is a Python function, 3x slower
        samples = [
            make(Sample, (channel, column[i], ts, None, None))
            for i, ts in enumerate(times)
            for channel, column in zip(channels, columns, strict=True)
        ]
        return self.submit(samples, device=device, source=source, site=site, timeout=timeout)

    def reject(
        self,
        *,
        source: str,
        payload: bytes | str,
        reason: str,
        device: str | None = None,
        timeout: float | None = None,
        topic: str | None = None,
        received_at: int | None = None,
        letter_id: str | None = None,
        in_transaction: TransactionHook | None = None,
        flush: bool = False,
        unknown_site: str | None = None,
        fmt: str | None = None,
    ) -> Ticket:
        """Put input that could not be decoded into the dead-letter table, with the reason.

        ``topic`` is where in its source it came from (the MQTT topic); ``received_at``
        (microseconds) its arrival, now by default; ``letter_id`` the dead letter's uuid
        when the source derives it (written again, it is stored once), else a new one;
        ``in_transaction`` runs in the dead letter's transaction, and ``flush`` writes it
        without waiting, as for :meth:`submit`. ``unknown_site``: the input was refused for
        naming this site (:meth:`check_site`), kept as kind ``unknown_site`` with the site
        and ``fmt`` (an HTTP device upload's wire format) so that it can be replayed.
        """
        raw = payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else payload
        at = now_us() if received_at is None else received_at
        ticket = Ticket()
        ticket.result.rejected = 1
        keep = self._keep_bodies is None or unknown_site is not None or self._keep_bodies()
        row = _dead_row(source, device, reason, raw, at, topic, letter_id,
                        None if unknown_site is None else DEAD_LETTER_UNKNOWN_SITE,
                        unknown_site, fmt, keep_body=keep)
        self._enqueue(_Item(ticket, [], [row], in_transaction, flush, source), timeout)
        return ticket

    def flush(self, timeout: float | None = None) -> IngestResult:
        """Wait until everything submitted before this call is durable."""
        ticket = Ticket()
        self._enqueue(_Item(ticket, [], [], flush=True), None, force=True)
        return ticket.wait(timeout)

    def forget(self, device: str | None = None) -> None:
        """A device's channel map changed (all devices' when None): its next readings are
        routed under the new map. Drops the cached routes and what the channel maps keep."""
        self._generation += 1
        if self._maps is not None:
            self._maps.forget(device)
        if device is None:
            self._routes.clear()
            self._unmapped.clear()
        else:
            for key in [k for k in self._routes if k[0] == device]:
                self._routes.pop(key, None)
            self._unmapped.pop(device, None)

    def unmapped_channels(self, device: str) -> list[str]:
        """The device's channels stored as plain numbers because their name suggests a
        quantity whose unit nothing says (``light`` as a raw count), sorted: a teacher maps
        them in the device's channel map."""
        return sorted(self._unmapped.get(device, ()))

    def counters(self) -> dict[str, int]:
        """Totals since the pipeline started, and what waits in the queue now."""
        with self._cond:
            return {**self._counts, "queued": self._queued}

    def counters_by_source(self) -> dict[str, dict[str, int]]:
        """For each source (``serial``, ``mqtt``, ``http``, ...), the readings written since
        the pipeline started: ``accepted`` (newly stored), ``duplicate``, ``rejected``
        (dead letters stored) and ``failed`` (not stored after every retry)."""
        with self._cond:
            return {source: dict(zip(_BY_SOURCE, counts, strict=True))
                    for source, counts in self._by_source.items()}

    # -- internals ----------------------------------------------------------------------

    def _route(self, device: str, channel: str, unit: str | None, site: str | None) -> _Route:
        _check_name("device", device)
        _check_name("channel", channel)
        if unit is not None:
            _check_name("unit", unit, MAX_UNIT_CHARS)
        if site is not None:
            _check_name("site", site, MAX_SITE_CHARS)
        generation = self._generation
        channel_map = None if self._maps is None else self._maps.channel_map(device)
        found = route_channel(channel_map, channel, unit)
        name, spec = found.name, found.spec
        if name != channel:
            _check_name("channel", name)
        row = self.store.ensure_series(
            device=device, channel=name, quantity=spec.quantity, unit=spec.unit, site=site
        )
        if spec.unmapped and row.quantity is None:
            self._unmapped.setdefault(device, set()).add(name)
        elif device in self._unmapped:
            self._unmapped[device].discard(name)
        if (row.quantity, row.unit) != (spec.quantity, spec.unit):
            # The series was created earlier with another quantity or unit: convert to it.
            if row.quantity is not None:
                spec = route_channel(channel_map, channel, unit, quantity=row.quantity).spec
            elif found.unit is not None and normalize_unit(found.unit) != row.unit:
                raise UnitError(
                    f"channel {name!r} of {device!r} is stored in {row.unit!r}, "
                    f"not {normalize_unit(found.unit)!r}"
                )
            else:
                spec = ChannelSpec(None, row.unit, 1.0, 0.0, float("-inf"), float("inf"))
        route = _Route(row.id, spec.scale, spec.offset, spec.low, spec.high, spec.unit,
                       spec.quantity, name, found.calibration)
        if generation == self._generation:  # no forget() meanwhile: the map still holds
            if len(self._routes) >= MAX_ROUTES:
                # Start over rather than evict one: other threads read the dict without a
                # lock.
                self._routes = {}
            self._routes[(device, channel, unit)] = route
        return route

    def _enqueue(
        self, item: _Item, timeout: float | None, *, submitted: int = 0, force: bool = False
    ) -> None:
        size = len(item.rows) + len(item.dead)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            if self._closing:
                raise PipelineClosedError("the ingest pipeline is closed")
            while not force and self._queued and self._queued + size > self.max_queued:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise QueueFullError(
                        f"ingest queue full ({self._queued} readings waiting); storage is behind"
                    )
                self._cond.wait(remaining)
                if self._closing:
                    raise PipelineClosedError("the ingest pipeline is closed")
            if not self._items:
                self._oldest = time.monotonic()
            self._items.append(item)
            self._queued += size
            self._counts["submitted"] += submitted
            self._counts["suspect"] += item.ticket.result.suspect
            self._counts["rejected"] += len(item.dead)
            if item.flush:
                self._flush_requests += 1
            if self._queued >= self.batch_size or item.flush:
                self._cond.notify_all()
            elif len(self._items) == 1:
                self._cond.notify_all()  # the writer starts its flush timer

    def _take(self) -> list[_Item] | None:
        with self._cond:
            while True:
                if self._items:
                    if self._queued >= self.batch_size or self._closing:
                        break
                    if self._flush_requests:
                        break
                    remaining = self._oldest + self.flush_interval_s - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                elif self._closing:
                    return None
                else:
                    self._cond.wait()
            batch: list[_Item] = []
            taken = 0
            while self._items and (not batch or taken < self.batch_size):
                item = self._items.popleft()
                batch.append(item)
                taken += len(item.rows) + len(item.dead)
                if item.flush:
                    self._flush_requests -= 1
            self._oldest = time.monotonic()
            return batch

    def _run(self) -> None:
        writer: BatchWriter | None = None
        try:
            while (batch := self._take()) is not None:
                writer = self._write(writer, batch)
        finally:
            if writer is not None:
                writer.close()

    def _write(self, writer: BatchWriter | None, batch: list[_Item]) -> BatchWriter | None:
        """Write one batch, retrying with a fresh connection; settle every ticket."""
        groups = [item.rows for item in batch]
        dead = [row for item in batch for row in item.dead]
        hooks = [item.hook for item in batch if item.hook is not None]
        size = sum(len(g) for g in groups) + len(dead)
        error: BaseException | None = None
        stored: list[int] = []
        for attempt in range(WRITE_RETRIES):
            if attempt:
                time.sleep(WRITE_RETRY_FIRST_S * 2 ** (attempt - 1))
            try:
                if writer is None:
                    writer = self.store.writer()
                began = time.perf_counter()
                stored = writer.write(groups, dead, hooks) if hooks else writer.write(groups, dead)
                took = time.perf_counter() - began
                error = None
                for observe in self._commit_observers:
                    try:
                        observe(took)
                    except Exception:
                        log.exception("ingest commit observer failed")
                break
            except Exception as exc:
                error = exc
                log.warning("writing %d readings failed (try %d): %s", size, attempt + 1, exc)
                if writer is not None:
                    try:
                        writer.close()
                    except Exception:
                        log.debug("closing a failed writer connection", exc_info=True)
                    writer = None
        with self._cond:
            self._queued -= size
            self._counts["batches"] += 1
            if error is None:
                accepted = sum(stored)
                self._counts["accepted"] += accepted
                self._counts["duplicate"] += sum(len(g) for g in groups) - accepted
            else:
                self._counts["failed"] += size
            by_source = self._by_source
            for item, new in zip(batch, stored or [0] * len(batch), strict=True):
                if not item.source:
                    continue  # a flush() marker
                counts = by_source.get(item.source)
                if counts is None:
                    counts = by_source[item.source] = [0, 0, 0, 0]
                if error is None:
                    counts[0] += new
                    counts[1] += len(item.rows) - new
                    counts[2] += len(item.dead)
                else:
                    counts[3] += len(item.rows) + len(item.dead)
            self._cond.notify_all()
        for item, new in zip(batch, stored or [0] * len(batch), strict=True):
            if error is None:
                item.ticket.result.accepted = new
                item.ticket.result.duplicate = len(item.rows) - new
                item.ticket._finish()
            else:
                item.ticket._finish(StorageFailedError(f"readings not stored: {error}"))
        return writer


def _bad_time_reason(ts: int, now: int, channel: str) -> str:
    if ts < EARLIEST_TS_US:
        return (
            f"timestamp {ts / US_PER_S:.0f} s of channel {channel!r} is before 2000: "
            "is the device clock set?"
        )
    ahead = (ts - now) / US_PER_S
    return (
        f"timestamp of channel {channel!r} is {ahead:.0f} s in the future: "
        "check the device clock"
    )


def _sample_json(sample: Sample) -> bytes:
    fields: dict[str, Any] = {k: v for k, v in asdict_sample(sample).items() if v is not None}
    value = fields.get("value")
    if isinstance(value, float) and value - value != 0:
        fields["value"] = repr(value)  # JSON has no NaN or Infinity
    try:
        return json.dumps(fields, ensure_ascii=False).encode()
    except UnicodeEncodeError:  # lone surrogates: keep them as JSON escapes
        return json.dumps(fields).encode()


def asdict_sample(sample: Sample) -> dict[str, Any]:
    """A sample as a plain dict (for dead letters and debugging)."""
    return dict(sample._asdict())


def _safe_text(text: str, limit: int) -> str:
    """Text any database column takes: no NUL, no lone surrogates, within its width."""
    clean = text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    return clean[:limit]


def _dead_row(
    source: str, device: str | None, reason: str, payload: bytes, received_at: int,
    topic: str | None = None, letter_id: str | None = None, kind: str | None = None,
    site: str | None = None, fmt: str | None = None, *, keep_body: bool = True,
) -> DeadLetterRow:
    # A dead letter must always be storable, whatever the bad input held: one that failed
    # would fail the whole batch it is written with. It keeps the payload's start, its
    # size and its digest (storage.DEAD_LETTER_PAYLOAD_MAX says why); without its body
    # (KeepBodies) the size and digest only, and its reason says so.
    return (
        str(uuid.uuid4()) if letter_id is None else letter_id,
        received_at,
        _safe_text(source, 40),
        None if device is None else _safe_text(device, MAX_NAME_CHARS),
        _safe_text(reason, 10_000) if keep_body
        else _safe_text(reason, 10_000 - len(BODY_NOT_KEPT)) + BODY_NOT_KEPT,
        payload[:DEAD_LETTER_PAYLOAD_MAX] if keep_body else b"",
        None if topic is None else _safe_text(topic, MAX_TOPIC_CHARS),
        len(payload),
        hashlib.sha256(payload).hexdigest(),
        kind,
        None if site is None else _safe_text(site, MAX_SITE_CHARS),
        None if fmt is None else _safe_text(fmt, 40),
    )


__all__ = [
    "DeadLetterOrigin",
    "IngestPipeline",
    "IngestResult",
    "KeepBodies",
    "QueueFullError",
    "ReadingsListener",
    "SiteCheck",
    "StorageFailedError",
    "StoredReading",
    "Ticket",
    "TransactionHook",
]
