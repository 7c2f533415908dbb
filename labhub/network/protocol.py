"""The network's wire format, shared by the hub and the central; pure (no I/O).

**Transport.** HTTPS requests to the central's API under :data:`PREFIX`, nothing else, so
school proxies pass them. A hub authenticates with its credential (``Authorization:
Bearer lhh_...``) made at enrolment; only :data:`JOIN` takes an enrolment token instead.

**A contact**, as the hub makes it:

1. ``POST`` :data:`HELLO` with :class:`Hello` (its health and its clock) -> :class:`Welcome`
   (the central's clock and the hub's acknowledged position in every up stream). The hub
   takes the central's positions as the truth: a central restored from an older backup
   answers older positions, and the hub sends again from there.
2. Up: the hub packs what follows those positions into batches (:func:`pack_batch`, at
   most ``network_batch_bytes``) and uploads each with ``PUT`` :data:`BATCH` (see
   *resumable uploads*). The answer to the last piece carries the new positions.
3. Down: ``POST`` :data:`DOWN` with the positions the hub has applied -> a batch of
   :data:`DOWN_STREAMS` sections for its lab, applied by the hub in one transaction.

**Positions** are lists of integers compared element by element (:func:`position_key`):
``[seq]`` in the outbox, ``[seq, ts]`` in the readings' journal. A stream's section
carries the position it starts ``from`` and the one it reaches (``to``). The central
applies every section (its keys make a replay harmless: readings by series and time,
records by UUID) but moves its position to ``to`` only when ``from`` is not after where
it is, so a gap (a central restored from an older backup) is sent again, never skipped.

**Resumable uploads.** A batch has a UUID and a length. ``PUT`` :data:`BATCH` sends bytes
from ``Upload-Offset`` (header) of ``Upload-Length``; the central keeps every piece that
arrived, even of a request cut midway, and answers :class:`UploadState`. ``GET``
:data:`BATCH` answers the same without a body, so a hub whose connection was cut asks
where to go on from. A piece at an offset the central does not hold is a 409 with the
state. When the last byte is in, the central checks ``Upload-Digest`` (SHA-256 of the
whole batch) and applies the batch in one transaction; a batch applied before is
answered ``complete`` again and not applied twice.

**A batch** (:func:`pack_batch`): ``LHB1``, the header's length (4 bytes, big-endian),
the header (JSON, UTF-8: :class:`BatchHeader`) and each section's bytes in order. A
section's codec says how its bytes read: :data:`CODEC_READINGS` (columnar, compressed:
``labhub.network.codec``) or :data:`CODEC_RECORDS` (JSON records, zlib:
:func:`pack_records`).
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

PREFIX = "/api/v1/network"
JOIN = f"{PREFIX}/join"  # POST: enrolment token -> hub credential
HELLO = f"{PREFIX}/hello"  # POST: health and clock -> positions and the central's clock
BATCH = PREFIX + "/batches/{batch_id}"  # PUT: a piece of a batch; GET: how much arrived
DOWN = f"{PREFIX}/down"  # POST: the hub's down positions -> a batch of down sections

HEADER_OFFSET = "Upload-Offset"
HEADER_LENGTH = "Upload-Length"
HEADER_DIGEST = "Upload-Digest"  # "sha256=<hex>" of the whole batch

CREDENTIAL_PREFIX = "lhh_"  # a hub's credential
ENROLMENT_PREFIX = "lhe_"  # a one-time enrolment token

MAGIC = b"LHB1"
CODEC_READINGS = "readings/1"
CODEC_RECORDS = "records/1"

# Up streams, in the order a contact sends them: the registry before the readings that
# name its devices, runs before their notes.
UP_STREAMS = ("devices", "readings", "runs", "notes", "events", "inventory")
# Down streams, in the order the hub applies them: the tree before what hangs on it, and
# the lab's history (once to each hub, for a replacement hub) last.
DOWN_STREAMS = ("sites", "catalog", "people", "kits", "transfers", "rollout", "history")

Position = list[int]

# On the central, a hub's device is known by its lab's site code and its own id, so two
# labs' "estacion-1" stay two devices (series, registry rows, run channels).
DEVICE_SEPARATOR = "/"


def network_device(site: str, device: str) -> str:
    """The central's id of device ``device`` of the lab ``site``: ``site/device``."""
    return f"{site}{DEVICE_SEPARATOR}{device}"


def split_network_device(name: str) -> tuple[str, str]:
    """``(site, device)`` of a central's device id made by :func:`network_device`."""
    site, sep, device = name.partition(DEVICE_SEPARATOR)
    if not sep or not site or not device:
        raise ProtocolError(f"{name!r} is not a network device id (site/device)")
    return site, device


class ProtocolError(ValueError):
    """Bytes that are not a batch of this protocol: what is wrong, and where."""


def position_key(position: Sequence[int] | None) -> tuple[int, ...]:
    """A position as a sortable tuple; no position (nothing yet) sorts first."""
    return tuple(position) if position else ()


def loads_position(text: str | None) -> Position:
    """A stored position (JSON list of integers); ``[]`` for none."""
    if not text:
        return []
    value = json.loads(text)
    if not isinstance(value, list) or not all(isinstance(v, int) for v in value):
        raise ProtocolError(f"a position is a list of integers, not {text[:60]!r}")
    return value


@dataclass(frozen=True, slots=True)
class Health:
    """How the hub is, as it reports at each hello."""

    version: str
    uptime_s: int
    free_disk_bytes: int
    backlog: int  # readings and records not yet acknowledged by the central
    devices_online: int
    dead_letters: int
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Hello:
    """``POST`` :data:`HELLO`'s body. ``sent_at_us`` is the hub's clock as it sent it."""

    health: Health
    sent_at_us: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Hello:
        return cls(health=Health(**data["health"]), sent_at_us=int(data["sent_at_us"]))


@dataclass(frozen=True, slots=True)
class Welcome:
    """:data:`HELLO`'s answer: the central's clock as it answered, and the positions it
    holds for this hub in every up stream (a stream it has nothing of: ``[]``)."""

    hub_id: str
    site: str
    central_time_us: int
    positions: dict[str, Position]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Welcome:
        return cls(hub_id=str(data["hub_id"]), site=str(data["site"]),
                   central_time_us=int(data["central_time_us"]),
                   positions={k: list(v) for k, v in data["positions"].items()})


def clock_offset_us(sent_at_us: int, central_time_us: int, received_at_us: int) -> int:
    """The hub's clock minus the central's, from one request: the central's time is taken
    to be the middle of the round trip (NTP's assumption)."""
    return (sent_at_us + received_at_us) // 2 - central_time_us


@dataclass(frozen=True, slots=True)
class UploadState:
    """How much of a batch the central holds; ``positions`` once it is applied."""

    offset: int
    complete: bool
    positions: dict[str, Position] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UploadState:
        positions = data.get("positions")
        return cls(offset=int(data["offset"]), complete=bool(data["complete"]),
                   positions=({k: list(v) for k, v in positions.items()}
                              if positions is not None else None))


@dataclass(frozen=True, slots=True)
class Section:
    """One stream's part of a batch."""

    stream: str
    codec: str
    start: Position  # "from" on the wire
    to: Position
    count: int  # items in it (readings, records)
    data: bytes


@dataclass(frozen=True, slots=True)
class Batch:
    """A batch as read back: its UUID, who made it, when, and its sections in order."""

    batch_id: str
    hub_id: str
    made_at_us: int
    sections: list[Section]


def pack_batch(*, batch_id: str, hub_id: str, made_at_us: int,
               sections: Sequence[Section]) -> bytes:
    """The bytes of a batch (see the module's text)."""
    header = {
        "batch": batch_id, "hub": hub_id, "made_at_us": made_at_us,
        "sections": [{"stream": s.stream, "codec": s.codec, "from": s.start, "to": s.to,
                      "count": s.count, "length": len(s.data)} for s in sections],
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    return b"".join([MAGIC, struct.pack(">I", len(head)), head, *(s.data for s in sections)])


def unpack_batch(data: bytes) -> Batch:
    """A batch read back; :class:`ProtocolError` saying what is wrong and at which byte."""
    if data[:4] != MAGIC:
        raise ProtocolError("not a LabHub batch: it does not start with LHB1")
    if len(data) < 8:
        raise ProtocolError("the batch ends inside its header's length (byte 4)")
    (size,) = struct.unpack(">I", data[4:8])
    if 8 + size > len(data):
        raise ProtocolError(f"the header is {size} bytes but the batch ends at byte "
                            f"{len(data)}")
    try:
        header = json.loads(data[8:8 + size])
        at = 8 + size
        sections = []
        for i, s in enumerate(header["sections"]):
            length = int(s["length"])
            if at + length > len(data):
                raise ProtocolError(f"section {i} ({s['stream']}) runs past the end of the "
                                    f"batch (byte {at} + {length} > {len(data)})")
            sections.append(Section(stream=str(s["stream"]), codec=str(s["codec"]),
                                    start=list(s["from"]), to=list(s["to"]),
                                    count=int(s["count"]), data=data[at:at + length]))
            at += length
        if at != len(data):
            raise ProtocolError(f"{len(data) - at} bytes after the last section (byte {at})")
        return Batch(batch_id=str(header["batch"]), hub_id=str(header["hub"]),
                     made_at_us=int(header["made_at_us"]), sections=sections)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ProtocolError):
            raise
        raise ProtocolError(f"the batch's header is not valid: {exc}") from None


def digest(data: bytes) -> str:
    """``Upload-Digest``'s value for ``data``."""
    return "sha256=" + hashlib.sha256(data).hexdigest()


def pack_records(records: Sequence[Mapping[str, Any]]) -> bytes:
    """:data:`CODEC_RECORDS`: JSON records, one a line, compressed with zlib."""
    text = "\n".join(json.dumps(r, separators=(",", ":"), ensure_ascii=False)
                     for r in records)
    return zlib.compress(text.encode(), 6)


def unpack_records(data: bytes) -> list[dict[str, Any]]:
    """The records of :func:`pack_records`; :class:`ProtocolError` naming the bad line."""
    try:
        text = zlib.decompress(data).decode()
    except (zlib.error, UnicodeDecodeError) as exc:
        raise ProtocolError(f"a records section is not zlib-compressed UTF-8: {exc}") from None
    out: list[dict[str, Any]] = []
    for n, line in enumerate(text.split("\n") if text else [], start=1):
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise ProtocolError(f"record {n} is not JSON: {exc}") from None
        if not isinstance(record, dict):
            raise ProtocolError(f"record {n} is not a JSON object")
        out.append(record)
    return out
