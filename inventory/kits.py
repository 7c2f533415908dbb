"""Kits: a physical asset with its own tag and a list of what it should hold.

A kit (usually an asset of a ``robotics_kit`` model) lists specific tagged assets ("the
Arduino Uno R3 VC-0001") and counted parts ("40 jumper wires, 10 LEDs": a quantity of a
counted model). :func:`define_contents` replaces the list as a whole (an edit of the kit:
its version goes up). When a kit comes back from a loan, :func:`check_kit` compares what
came back with the list: every shortfall becomes a loss record on the kit (lost, or
damaged when it came back broken), a lost tagged asset becomes ``lost``, and lost or
damaged counted parts lower the counted stock of the kit's site, where the reorder
report shows them. Something that is not on the list, or more of a part than the list
holds, is refused with the part named and nothing written. Loans call the check; this
module does not know about borrowers.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from inventory import stock
from inventory.assets import Asset, check_version, get_asset, write_asset
from inventory.catalog import get_model
from inventory.errors import ConflictError, InvalidTransitionError, InvalidValueError
from inventory.history import NewEvent, record_event, record_events
from inventory.tables import kit_contents, kit_losses
from inventory.values import now_us

KIT_LINES_MAX = 500  # a robotics kit has dozens of parts, not thousands
PART_QUANTITY_MAX = 100_000  # of one counted part in one kit (jumper wires, screws)


@dataclass(frozen=True, slots=True)
class KitContents:
    """What a kit should hold: tagged assets, and counted parts with their quantities."""

    kit_tag: str
    version: int  # the kit asset's version
    assets: tuple[str, ...]
    parts: dict[str, int]

    @property
    def empty(self) -> bool:
        """True when the kit has no contents list (it is then lent as a plain asset)."""
        return not self.assets and not self.parts


@dataclass(frozen=True, slots=True)
class KitLoss:
    """A part that a kit check found missing or broken."""

    uuid: str
    kit_tag: str
    part: str
    kind: str  # asset | model
    damage: str  # lost | damaged
    quantity: int
    loan_uuid: str | None
    site_code: str
    at: int
    by: str


@dataclass(frozen=True, slots=True)
class KitReturn:
    """What came back of a kit: content tags and counted parts, and which of them are
    damaged (a tag, or a model code with how many of the returned parts are broken)."""

    tags: frozenset[str] = frozenset()
    parts: Mapping[str, int] = field(default_factory=dict)
    damaged_tags: frozenset[str] = frozenset()
    damaged_parts: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class KitCheck:
    """The outcome of a kit check: the tags that came back, those damaged and those
    missing, and the loss records."""

    returned: tuple[str, ...]
    damaged: tuple[str, ...]
    missing: tuple[str, ...]
    losses: tuple[KitLoss, ...]


def get_contents(*, conn: Connection, kit_tag: str) -> KitContents:
    """The contents list of ``kit_tag`` (empty if it has none); NotFoundError if no asset."""
    kit = get_asset(conn=conn, tag=kit_tag)
    return contents_of(conn=conn, kit=kit)


def contents_of(*, conn: Connection, kit: Asset) -> KitContents:
    """The contents list of an asset already read (empty if it has none)."""
    return _contents(conn, kit)


def _contents(conn: Connection, kit: Asset) -> KitContents:
    return contents_many(conn=conn, kits=[kit])[kit.tag]


def kit_holding(*, conn: Connection, asset_tag: str) -> str | None:
    """The tag of the kit whose contents list ``asset_tag``, or None."""
    return conn.execute(
        select(kit_contents.c.kit_tag)
        .where(kit_contents.c.part == asset_tag, kit_contents.c.kind == "asset")
    ).scalar()


def holders(*, conn: Connection, tags: Iterable[str]) -> dict[str, str]:
    """For each of ``tags`` that a kit lists, that kit's tag (one query)."""
    wanted = list(tags)
    if not wanted:
        return {}
    return {r.part: r.kit_tag for r in conn.execute(
        select(kit_contents.c.part, kit_contents.c.kit_tag)
        .where(kit_contents.c.part.in_(wanted), kit_contents.c.kind == "asset"))}


def contents_many(*, conn: Connection, kits: Iterable[Asset]) -> dict[str, KitContents]:
    """The contents lists of assets already read, by tag (one query; empty lists too)."""
    read = {k.tag: k for k in kits}
    lines: dict[str, list[Any]] = {tag: [] for tag in read}
    if read:
        for r in conn.execute(select(kit_contents).where(kit_contents.c.kit_tag.in_(list(read)))
                              .order_by(kit_contents.c.kit_tag, kit_contents.c.part)):
            lines[r.kit_tag].append(r)
    return {
        tag: KitContents(tag, read[tag].version,
                         tuple(r.part for r in rows if r.kind == "asset"),
                         {r.part: r.quantity for r in rows if r.kind == "model"})
        for tag, rows in lines.items()
    }


def kits_among(*, conn: Connection, tags: Iterable[str]) -> set[str]:
    """Which of ``tags`` are kits (have a contents list)."""
    wanted = list(tags)
    if not wanted:
        return set()
    return set(conn.execute(
        select(kit_contents.c.kit_tag).where(kit_contents.c.kit_tag.in_(wanted)).distinct()
    ).scalars())


def define_contents(
    *,
    conn: Connection,
    kit_tag: str,
    assets: Iterable[str],
    parts: Mapping[str, int],
    by: str,
    expected_version: int | None = None,
) -> KitContents:
    """Replace what ``kit_tag`` should hold. Writes KitContentsDefined; the kit's version
    goes up.

    Each tagged asset must be at the kit's site, not be the kit itself, a kit, or in
    another kit's list; each part a counted model with a quantity of 1 or more. A kit out
    on loan keeps its list until it is back.
    """
    kit = get_asset(conn=conn, tag=kit_tag)
    check_version(kit, expected_version)
    tags = list(assets)
    if len(tags) + len(parts) > KIT_LINES_MAX:
        raise InvalidValueError(f"kit {kit_tag!r}: more than {KIT_LINES_MAX} lines")
    if kit.status in ("on_loan", "in_transit", "lost", "retired"):
        raise InvalidTransitionError(
            f"kit {kit_tag!r} is {kit.status}: its contents can change once it is available"
        )
    seen: set[str] = set()
    for tag in tags:
        if tag in seen:
            raise InvalidValueError(f"kit {kit_tag!r}: asset {tag!r} is listed twice")
        seen.add(tag)
        if tag == kit_tag:
            raise InvalidValueError(f"kit {kit_tag!r} cannot hold itself")
        part = get_asset(conn=conn, tag=tag)
        if part.site_code != kit.site_code:
            raise InvalidValueError(
                f"asset {tag!r} is at {part.site_code}, kit {kit_tag!r} at {kit.site_code}: "
                "a kit holds what is at its site"
            )
        holder = kit_holding(conn=conn, asset_tag=tag)
        if holder is not None and holder != kit_tag:
            raise ConflictError(f"asset {tag!r} is already in kit {holder!r}")
    if tags and kits_among(conn=conn, tags=tags):
        nested = sorted(kits_among(conn=conn, tags=tags))[0]
        raise InvalidValueError(f"asset {nested!r} is itself a kit: kits do not nest")
    for code, quantity in parts.items():
        model = get_model(conn=conn, code=code)
        if model.tracking != "counted":
            raise InvalidValueError(
                f"kit {kit_tag!r}: model {code!r} is tracked as tagged assets; list the "
                "tags of its assets instead"
            )
        if isinstance(quantity, bool) or not isinstance(quantity, int) or not (
            1 <= quantity <= PART_QUANTITY_MAX
        ):
            raise InvalidValueError(
                f"kit {kit_tag!r}: the quantity of {code} {quantity!r} is not in "
                f"1..{PART_QUANTITY_MAX}"
            )
    before = _contents(conn, kit)
    after = {"assets": sorted(tags), "parts": dict(sorted(parts.items()))}
    event = record_event(
        conn=conn, kind="KitContentsDefined", subject=kit_tag, by=by, site_code=kit.site_code,
        from_state={"assets": list(before.assets), "parts": before.parts},
        to_state=after,
    )
    conn.execute(delete(kit_contents).where(kit_contents.c.kit_tag == kit_tag))
    rows = [{"kit_tag": kit_tag, "part": t, "kind": "asset", "quantity": 1} for t in tags] + [
        {"kit_tag": kit_tag, "part": c, "kind": "model", "quantity": q}
        for c, q in parts.items()
    ]
    if rows:
        conn.execute(insert(kit_contents), rows)
    write_asset(conn=conn, asset=kit, at=event.at)
    return get_contents(conn=conn, kit_tag=kit_tag)


def check_return(
    *, contents: KitContents, before: Mapping[str, tuple[int, int]], now: KitReturn
) -> dict[str, tuple[int, int]]:
    """What has come back of a kit in all, ``(quantity, damaged)`` per part, from what came
    back in earlier partial returns (``before``) and now; InvalidValueError naming the part
    for anything not on the list, a tag back twice, or more of a part than listed."""
    kit = contents.kit_tag
    totals = dict(before)
    for tag in sorted(now.tags):
        if tag not in contents.assets:
            raise InvalidValueError(f"asset {tag!r} is not in the contents of kit {kit!r}")
        if totals.get(tag, (0, 0))[0]:
            raise InvalidValueError(f"kit {kit!r}: asset {tag!r} already came back")
        totals[tag] = (1, 1 if tag in now.damaged_tags else 0)
    damaged_only = sorted(now.damaged_tags - now.tags)
    if damaged_only:
        raise InvalidValueError(
            f"kit {kit!r}: asset {damaged_only[0]!r} is reported damaged but not as come back"
        )
    for code, quantity in sorted(now.parts.items()):
        expected = contents.parts.get(code)
        if expected is None:
            raise InvalidValueError(f"part {code!r} is not in the contents of kit {kit!r}")
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
            raise InvalidValueError(f"kit {kit!r}: {quantity!r} of {code} is not a count")
        damaged = now.damaged_parts.get(code, 0)
        if isinstance(damaged, bool) or not isinstance(damaged, int) or not (
            0 <= damaged <= quantity
        ):
            raise InvalidValueError(
                f"kit {kit!r}: {damaged!r} damaged of {code} is not in 0..{quantity} "
                "(the parts that came back)"
            )
        had, had_damaged = totals.get(code, (0, 0))
        if had + quantity > expected:
            raise InvalidValueError(
                f"kit {kit!r}: {had + quantity} of part {code!r} came back"
                + (f" ({had} earlier, {quantity} now)" if had else "")
                + f", but the kit holds {expected}"
            )
        totals[code] = (had + quantity, had_damaged + damaged)
    damaged_only = sorted(set(now.damaged_parts) - set(now.parts))
    if damaged_only:
        raise InvalidValueError(
            f"kit {kit!r}: part {damaged_only[0]!r} is reported damaged but not as come back"
        )
    return totals


def check_kit(
    *,
    conn: Connection,
    contents: KitContents,
    site_code: str,
    totals: Mapping[str, tuple[int, int]],
    by: str,
    loan_uuid: str | None = None,
    on_behalf_of: str | None = None,
) -> KitCheck:
    """Record the shortfalls of a kit that is back, from ``totals`` (see
    :func:`check_return`): a loss record and a KitPartMissing or KitPartDamaged event
    for each, and lost and damaged parts out of the stock at ``site_code``. The tagged
    assets that came back, and those missing (to become ``lost``), are the caller's to
    change, in the same transaction (``KitCheck.returned``, ``missing``)."""
    kit = contents.kit_tag
    at = now_us()
    losses: list[KitLoss] = []

    def loss(part: str, kind: str, damage: str, quantity: int) -> None:
        losses.append(KitLoss(str(uuid.uuid4()), kit, part, kind, damage, quantity, loan_uuid,
                              site_code, at, by))

    returned: list[str] = []
    damaged: list[str] = []
    missing: list[str] = []
    for tag in contents.assets:
        back, broken = totals.get(tag, (0, 0))
        if not back:
            loss(tag, "asset", "lost", 1)
            missing.append(tag)
            continue
        returned.append(tag)
        if broken:
            loss(tag, "asset", "damaged", 1)
            damaged.append(tag)
    short: dict[str, int] = {}
    for code, expected in contents.parts.items():
        back, broken = totals.get(code, (0, 0))
        for damage, count in (("lost", expected - back), ("damaged", broken)):
            if count:
                loss(code, "model", damage, count)
                short[code] = short.get(code, 0) + count
    if losses:
        conn.execute(insert(kit_losses), [
            {"uuid": x.uuid, "kit_tag": kit, "part": x.part, "kind": x.kind,
             "damage": x.damage, "quantity": x.quantity, "loan_uuid": loan_uuid,
             "site_code": site_code, "at": at, "by": by}
            for x in losses
        ])
        record_events(conn=conn, by=by, on_behalf_of=on_behalf_of, new=[
            NewEvent("KitPartMissing" if x.damage == "lost" else "KitPartDamaged", kit,
                     site_code, to_state={
                         "part": x.part, "quantity": x.quantity, "loss": x.uuid,
                         **({"loan": loan_uuid} if loan_uuid is not None else {})})
            for x in losses
        ])
    where = f"kit {kit}" + (f", loan {loan_uuid}" if loan_uuid else "")
    stock.lower_for_losses(conn=conn, site_code=site_code, losses=short, by=by,
                           note=f"lost or damaged in {where}", on_behalf_of=on_behalf_of)
    return KitCheck(tuple(returned), tuple(damaged), tuple(missing), tuple(losses))


def list_losses(*, conn: Connection, kit_tag: str) -> list[KitLoss]:
    """The loss and damage records of a kit, oldest first."""
    get_asset(conn=conn, tag=kit_tag)
    rows = conn.execute(
        select(kit_losses).where(kit_losses.c.kit_tag == kit_tag)
        .order_by(kit_losses.c.at, kit_losses.c.part)
    )
    return [
        KitLoss(r.uuid, r.kit_tag, r.part, r.kind, r.damage, r.quantity, r.loan_uuid,
                r.site_code, r.at, r.by)
        for r in rows
    ]
