"""A lab's clock, on the central: correcting the times of readings a hub sent while its
clock was wrong.

A Raspberry Pi has no clock battery and an offline lab has no NTP, so a hub can stamp a
week of readings three days early. The hub measures its offset at each contact
(:func:`labhub.network.protocol.clock_offset_us`); while it is beyond the central's
tolerance, the central flags what the hub sends (:data:`sensors.storage.FLAG_CLOCK`). A
coordinator who knows by how much the clock was off shifts the lab's readings of a time
range (:func:`correct`): every reading of the lab's devices with ``from <= ts < to`` moves
to ``ts + shift`` and loses its clock flag, in one transaction. A reading whose new time is
already taken by another reading of its series (one not moved) is not dropped: it goes to
the dead letters with the reason, and the correction counts it. The correction is
recorded (``network_clock_corrections``) with who made it and how many readings moved.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import Connection, desc, insert, select, text

from labhub.network.protocol import network_device
from labhub.network.tables import network_clock_corrections, network_daily
from sensors.samples import now_us
from sensors.storage import FLAG_CLOCK, dead_letters, ensure_partitions

US_PER_DAY = 86_400_000_000
MAX_SHIFT_US = 366 * US_PER_DAY  # a clock a year off is not a clock to correct this way
DEAD_LETTER_SOURCE = "clock-correction"
DEAD_LETTER_KIND = "clock_conflict"


class ClockCorrectionError(ValueError):
    """A correction that cannot be made as asked: what, and which field."""

    def __init__(self, message: str, where: str) -> None:
        super().__init__(message)
        self.where = where


@dataclass(frozen=True, slots=True)
class Correction:
    """A correction as recorded: ``readings`` moved, ``conflicts`` kept as dead letters."""

    id: str
    site: str
    from_us: int
    to_us: int
    shift_us: int
    readings: int
    conflicts: int
    by: str
    at: int


def _series_filter(site: str) -> tuple[str, dict[str, str]]:
    # The lab's devices are "site/device" on the central: match the prefix literally.
    prefix = network_device(site, "x")[:-1]
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return "s.device LIKE :prefix ESCAPE '\\'", {"prefix": escaped + "%"}


def correct(*, conn: Connection, site: str, from_us: int, to_us: int, shift_us: int,
            by: str) -> Correction:
    """Shift lab ``site``'s readings of ``[from_us, to_us)`` by ``shift_us`` (see the
    module's text); :class:`ClockCorrectionError` for a range or shift that makes no sense."""
    if to_us <= from_us:
        raise ClockCorrectionError("the range is empty: 'to' must be after 'from'", "to")
    if shift_us == 0:
        raise ClockCorrectionError("a shift of 0 changes nothing", "shift_s")
    if abs(shift_us) > MAX_SHIFT_US:
        raise ClockCorrectionError(f"a shift of more than {MAX_SHIFT_US // US_PER_DAY} days "
                                   "is not a clock's error", "shift_s")
    where, params = _series_filter(site)
    args = {**params, "a": from_us, "b": to_us, "shift": shift_us}
    moving = (f"FROM readings r JOIN series s ON s.id = r.series_id WHERE {where} "
              "AND r.ts >= :a AND r.ts < :b")
    taken = ("EXISTS (SELECT 1 FROM readings o WHERE o.series_id = r.series_id "
             "AND o.ts = r.ts + :shift AND NOT (o.ts >= :a AND o.ts < :b))")
    correction_id = str(uuid.uuid4())
    at = now_us()
    conflicts = conn.execute(text(
        f"SELECT s.device, s.channel, r.ts, r.value, r.flags {moving} AND {taken}"), args).all()
    if conflicts:
        conn.execute(insert(dead_letters), [
            _dead_letter(correction_id, at, site, row.device, row.channel, row.ts, row.value,
                         row.flags, shift_us) for row in conflicts])
    old_days: Counter[int] = Counter(dict(conn.execute(text(
        f"SELECT r.ts / {US_PER_DAY} AS day, count(*) {moving} GROUP BY r.ts / {US_PER_DAY}"),
        args).all()))
    conn.execute(text("DROP TABLE IF EXISTS clock_shift"))
    conn.execute(text(
        "CREATE TEMPORARY TABLE clock_shift (series_id INTEGER NOT NULL, ts BIGINT NOT NULL, "
        "value FLOAT NOT NULL, flags SMALLINT NOT NULL)"))
    # Made and dropped inside the caller's transaction: a failure rolls it back with the
    # rest (no DROP after an error, which PostgreSQL would refuse in an aborted transaction).
    conn.execute(text(
        "INSERT INTO clock_shift (series_id, ts, value, flags) "
        f"SELECT r.series_id, r.ts + :shift, r.value, r.flags & {~FLAG_CLOCK & 0x7FFF} "
        f"{moving} AND NOT {taken}"), args)
    conn.execute(text(
        "DELETE FROM readings WHERE ts >= :a AND ts < :b AND series_id IN "
        f"(SELECT s.id FROM series s WHERE {where})"), args)
    moved = int(conn.execute(text("SELECT count(*) FROM clock_shift")).scalar_one())
    if moved:
        ensure_partitions(conn, from_us + shift_us, to_us + shift_us)
        conn.execute(text("INSERT INTO readings (series_id, ts, value, flags) "
                          "SELECT series_id, ts, value, flags FROM clock_shift"))
    new_days: Counter[int] = Counter(dict(conn.execute(text(
        f"SELECT ts / {US_PER_DAY} AS day, count(*) FROM clock_shift "
        f"GROUP BY ts / {US_PER_DAY}")).all()))
    conn.execute(text("DROP TABLE clock_shift"))
    _recount(conn, site, old_days, new_days)
    correction = Correction(correction_id, site, from_us, to_us, shift_us, moved,
                            len(conflicts), by, at)
    conn.execute(insert(network_clock_corrections).values(
        id=correction_id, site=site, from_us=from_us, to_us=to_us, shift_us=shift_us,
        readings=moved, by=by, at=at))
    return correction


def _recount(conn: Connection, site: str, old: Counter[int], new: Counter[int]) -> None:
    """Move the readings' daily counts from the days they left to the days they reached."""
    change = Counter(new)
    change.subtract(old)
    for day, delta in sorted(change.items()):
        if not delta:
            continue
        done = conn.execute(network_daily.update()
                            .where(network_daily.c.site == site, network_daily.c.day == day)
                            .values(readings=network_daily.c.readings + delta))
        if not done.rowcount:
            conn.execute(insert(network_daily).values(site=site, day=day,
                                                      readings=max(delta, 0)))


def _dead_letter(correction_id: str, at: int, site: str, device: str, channel: str, ts: int,
                 value: float, flags: int, shift_us: int) -> dict[str, object]:
    payload = json.dumps({"device": device, "channel": channel, "ts": ts, "value": value,
                          "flags": flags, "shifted_ts": ts + shift_us},
                         separators=(",", ":")).encode()
    return {
        "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"clock:{correction_id}:{device}:{channel}"
                               f":{ts}")),
        "received_at": at, "source": DEAD_LETTER_SOURCE, "device": device,
        "reason": (f"clock correction {correction_id}: the reading of {device} {channel!r} "
                   f"at {ts} µs, shifted by {shift_us} µs, lands on a reading already "
                   f"stored at {ts + shift_us} µs; kept here instead"),
        "payload": payload, "payload_bytes": len(payload),
        "payload_sha256": hashlib.sha256(payload).hexdigest(), "kind": DEAD_LETTER_KIND,
        "site": site, "topic": None, "format": None,
    }


def corrections(*, conn: Connection, site: str) -> list[Correction]:
    """The corrections made to lab ``site``'s clock, newest first."""
    t = network_clock_corrections
    rows = conn.execute(select(t).where(t.c.site == site).order_by(desc(t.c.at))).all()
    kept = Counter(r.reason.split(":", 1)[0].removeprefix("clock correction ")
                   for r in conn.execute(select(dead_letters.c.reason).where(
                       dead_letters.c.source == DEAD_LETTER_SOURCE,
                       dead_letters.c.site == site)))
    return [Correction(r.id, r.site, r.from_us, r.to_us, r.shift_us, r.readings,
                       kept.get(r.id, 0), r.by, r.at) for r in rows]
