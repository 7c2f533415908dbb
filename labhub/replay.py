"""Replaying dead letters: readings refused for naming a site the inventory did not have
are stored once the site exists, through the same pipeline as when they arrived.

An HTTP upload or an MQTT message naming a site that is not a site of the inventory's
tree is kept whole as a dead letter of kind ``unknown_site``, with the site it named and,
for an HTTP device upload, its wire format (``IngestPipeline.check_site``). Once a
coordinator adds the site, :func:`replay` decodes each such letter again the way its
source did (a JSON upload's body, a device upload's ``format``, an MQTT topic's leaf),
checks the site again and submits the readings; the dead letter is marked ``replayed_at``
in the same transaction as its readings, so it is replayed once. Readings without their
own time get the letter's arrival time, as they did when they arrived: a replay that is
run twice, or that overlaps a device sending the readings again, stores nothing twice.

A dead letter keeps only the first 64 KiB of its payload (``storage.DEAD_LETTER_PAYLOAD_MAX``);
one whose payload was longer, or whose kept bytes no longer match its digest, is not
replayable, and the answer says so: its readings must be sent again from the device.

``POST /api/v1/rejects/replay`` and ``labhub rejects replay`` both call :func:`replay`
through ``Hub.replay_rejects``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from sensors import decoders, queries
from sensors.errors import DecodeError, UnknownSiteError
from sensors.pipeline import IngestPipeline, StorageFailedError, TransactionHook
from sensors.samples import Sample, now_us
from sensors.storage import DEAD_LETTER_UNKNOWN_SITE

REPLAY_WAIT_S = 60.0  # a letter's readings are durable within this, or the replay fails
MAX_REPLAY = 1000  # dead letters replayed in one call; call again for the rest

Outcome = Literal["stored", "still_refused", "not_replayable"]


@dataclass(frozen=True, slots=True)
class ReplayedLetter:
    """What became of one dead letter."""

    id: str
    source: str
    site: str | None
    outcome: Outcome
    detail: str
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0


@dataclass(slots=True)
class Replayed:
    """What a replay did, letter by letter (oldest first)."""

    letters: list[ReplayedLetter] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        """How many letters came out this way."""
        return sum(1 for letter in self.letters if letter.outcome == outcome)


class _NotReplayable(Exception):
    """A dead letter whose readings cannot be read back; the message says why."""


def replay(
    pipeline: IngestPipeline, *, kind: str = DEAD_LETTER_UNKNOWN_SITE,
    source: str | None = None, site: str | None = None, influx_precision: str = "ns",
    limit: int = MAX_REPLAY,
) -> Replayed:
    """Replay the dead letters of ``kind`` not yet replayed (of ``source``, naming
    ``site``, when given), oldest first; see the module docstring. ``influx_precision``
    reads MQTT ``influx`` payloads as the bridge does."""
    with pipeline.store.engine.connect() as conn:
        letters = queries.replayable_dead_letters(conn=conn, kind=kind, source=source,
                                                  site=site, limit=limit)
    done = Replayed()
    for letter in letters:
        done.letters.append(_replay_one(pipeline, letter, influx_precision))
    return done


def _replay_one(pipeline: IngestPipeline, letter: queries.DeadLetter,
                influx_precision: str) -> ReplayedLetter:
    def answer(outcome: Outcome, detail: str, **counts: int) -> ReplayedLetter:
        return ReplayedLetter(letter.uuid, letter.source, letter.site, outcome, detail,
                              **counts)

    try:
        device, named, samples = _readings_of(letter, influx_precision)
    except _NotReplayable as exc:
        return answer("not_replayable", str(exc))
    try:
        pipeline.check_site(named, where=_where(letter))
    except UnknownSiteError as exc:
        return answer("still_refused", str(exc))
    ticket = pipeline.submit(samples, device=device, site=named, source=letter.source,
                             received_at=letter.received_at, timeout=REPLAY_WAIT_S,
                             in_transaction=_mark_replayed(letter.uuid), flush=True)
    try:
        result = ticket.wait(REPLAY_WAIT_S)
    except TimeoutError:
        raise StorageFailedError(
            f"the readings of dead letter {letter.uuid} were not stored within "
            f"{REPLAY_WAIT_S:.0f} s; storage is behind: replay again later") from None
    detail = (f"{result.accepted} readings stored, {result.duplicate} already stored"
              + (f", {result.rejected} refused (see the newer dead letters)"
                 if result.rejected else ""))
    return answer("stored", detail, accepted=result.accepted, duplicate=result.duplicate,
                  rejected=result.rejected)


def _where(letter: queries.DeadLetter) -> str:
    if letter.source == "mqtt":
        return f"the node's topic {letter.topic}"
    return "the upload's site field" if letter.format is None else \
        "the upload's site query parameter"


def _readings_of(letter: queries.DeadLetter,
                 influx_precision: str) -> tuple[str, str | None, list[Sample]]:
    """The device, the site named and the samples of a dead letter, read back the way its
    source read them when it arrived."""
    if letter.truncated:
        raise _NotReplayable(
            f"dead letter {letter.uuid} kept only the first {len(letter.payload):,} of its "
            f"{letter.size:,} bytes: a body that was not kept whole cannot be replayed; "
            "send the readings again from the device")
    if letter.sha256 is not None and hashlib.sha256(letter.payload).hexdigest() != letter.sha256:
        raise _NotReplayable(
            f"dead letter {letter.uuid}'s kept payload does not match its SHA-256: it "
            "cannot be replayed; send the readings again from the device")
    try:
        if letter.source == "mqtt" and letter.topic and letter.device:
            leaf = letter.topic.rsplit("/", 1)[-1]
            arrived = letter.received_at
            device = letter.device
            samples = [Sample(channel, value, arrived if ts is None else ts, unit,
                              sender or device)
                       for channel, value, ts, unit, sender in decoders.decode_mqtt(
                           leaf, letter.payload, influx_precision=influx_precision)]
            return device, letter.site, samples
        if letter.source == "http" and letter.format is not None and letter.device:
            return letter.device, letter.site, decoders.decode(letter.format, letter.payload)
        if letter.source == "http":
            return _json_upload(letter.payload)
    except (DecodeError, ValueError) as exc:
        raise _NotReplayable(f"dead letter {letter.uuid} does not decode: {exc}") from None
    raise _NotReplayable(
        f"dead letter {letter.uuid} came from {letter.source!r}: only HTTP uploads and "
        "MQTT messages can be replayed")


def _json_upload(payload: bytes) -> tuple[str, str | None, list[Sample]]:
    """A JSON upload's device, site and samples, by the route's own rules."""
    # Imported here: the API module imports the hub, which imports this module.
    from labhub.api.sensors import ReadingsIn, upload_samples
    from labhub.problems import Problem

    doc: Any = json.loads(payload)
    batch = ReadingsIn.model_validate(doc)
    try:
        return batch.device, batch.site, upload_samples(batch)
    except Problem as exc:
        raise ValueError(exc.detail) from None


def _mark_replayed(uuid: str) -> TransactionHook:
    """The transaction hook that marks the dead letter replayed with its readings."""

    def hook(cursor: Any, dialect: str) -> None:
        ph = "%s" if dialect == "postgresql" else "?"
        cursor.execute(f"UPDATE dead_letters SET replayed_at = {ph} WHERE uuid = {ph}",
                       (now_us(), uuid))

    return hook


__all__ = ["MAX_REPLAY", "Replayed", "ReplayedLetter", "replay"]
