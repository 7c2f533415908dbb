"""Maintenance and repair: an asset out of service with its fault, and back in service
with what was done.

:func:`start_repair` takes an available asset out of service (status ``in_repair``) and
opens a repair record (a UUID) with the fault; :func:`finish_repair` closes it with the
work done and the condition the asset is in, and the asset is ``available`` again. Both
write their event (``RepairStarted``, ``RepairFinished``) on the asset's history with the
repair's id. An asset out on a loan is checked in first, so a loan never holds an item
that is on the workbench. :func:`repairs_of` is an asset's repair history.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select, update

from inventory.assets import CONDITIONS, Condition, change_state, check_transition, get_asset
from inventory.assets import check_version as check_asset_version
from inventory.errors import InvalidTransitionError, NotFoundError
from inventory.loans import open_loan_of
from inventory.tables import repairs
from inventory.values import TEXT_MAX, check_choice, check_text

FAULT_MAX = TEXT_MAX * 10  # a fault or the work done: a few sentences


@dataclass(frozen=True, slots=True)
class Repair:
    """One spell of an asset out of service."""

    uuid: str
    asset_tag: str
    fault: str
    started_at: int
    started_by: str
    finished_at: int | None
    finished_by: str | None
    work_done: str | None
    condition_after: str | None

    @property
    def open(self) -> bool:
        """True while the asset is still out of service."""
        return self.finished_at is None


def _repair(r: Any) -> Repair:
    return Repair(r.uuid, r.asset_tag, r.fault, r.started_at, r.started_by, r.finished_at,
                  r.finished_by, r.work_done, r.condition_after)


def get_repair(*, conn: Connection, repair_uuid: str) -> Repair:
    """The repair record with this UUID; NotFoundError if there is none."""
    row = conn.execute(select(repairs).where(repairs.c.uuid == repair_uuid)).first()
    if row is None:
        raise NotFoundError(f"no repair with id {repair_uuid!r}", what="repair", key=repair_uuid)
    return _repair(row)


def start_repair(
    *,
    conn: Connection,
    tag: str,
    fault: str,
    by: str,
    condition: Condition | None = None,
    expected_version: int | None = None,
) -> Repair:
    """Take an asset out of service for ``fault`` (status in_repair, and ``condition`` if
    given). Writes RepairStarted."""
    fault = check_text(fault, what=f"the fault of asset {tag!r}", max_len=FAULT_MAX,
                       free_text=True)
    if condition is not None:
        check_choice(condition, CONDITIONS, what=f"the condition of asset {tag!r}")
    # The loan first, then the asset: on SQLite each read before the first write sees the
    # latest commit, so a loan committed meanwhile shows as a newer version (stale), not
    # as a loan found after the version check passed.
    loan = open_loan_of(conn=conn, asset_tag=tag)
    asset = get_asset(conn=conn, tag=tag)
    check_asset_version(asset, expected_version)
    if loan is not None:
        raise InvalidTransitionError(
            f"asset {tag!r} is on loan {loan.uuid} to {loan.borrower}: check it in first"
        )
    if asset.status == "on_loan":
        raise InvalidTransitionError(
            f"asset {tag!r} is on loan inside a kit: check the kit in first"
        )
    check_transition(asset, "in_repair")
    repair_uuid = str(uuid.uuid4())
    event = change_state(conn=conn, asset=asset, kind="RepairStarted", by=by,
                         status="in_repair", condition=condition, note=fault,
                         details={"repair": repair_uuid})
    conn.execute(insert(repairs).values(
        uuid=repair_uuid, asset_tag=tag, fault=fault, started_at=event.at, started_by=by,
    ))
    return get_repair(conn=conn, repair_uuid=repair_uuid)


def finish_repair(
    *,
    conn: Connection,
    repair_uuid: str,
    work_done: str,
    by: str,
    condition: Condition = "good",
    expected_version: int | None = None,
) -> Repair:
    """Put the asset of an open repair back in service (available, in ``condition``) with
    what was done. Writes RepairFinished. ``expected_version`` is the asset's."""
    repair = get_repair(conn=conn, repair_uuid=repair_uuid)
    work_done = check_text(work_done, what="the work done", max_len=FAULT_MAX,
                           free_text=True)
    check_choice(condition, CONDITIONS, what=f"the condition of asset {repair.asset_tag!r}")
    if not repair.open:
        raise InvalidTransitionError(f"repair {repair_uuid} of asset {repair.asset_tag!r} "
                                     "is already finished")
    asset = get_asset(conn=conn, tag=repair.asset_tag)
    check_asset_version(asset, expected_version)
    check_transition(asset, "available")
    event = change_state(conn=conn, asset=asset, kind="RepairFinished", by=by,
                         status="available", condition=condition, note=work_done,
                         details={"repair": repair_uuid})
    conn.execute(update(repairs).where(repairs.c.uuid == repair_uuid).values(
        finished_at=event.at, finished_by=by, work_done=work_done, condition_after=condition,
    ))
    return get_repair(conn=conn, repair_uuid=repair_uuid)


def repairs_of(*, conn: Connection, tag: str) -> list[Repair]:
    """An asset's repairs, oldest first."""
    get_asset(conn=conn, tag=tag)
    rows = conn.execute(
        select(repairs).where(repairs.c.asset_tag == tag).order_by(repairs.c.started_at)
    )
    return [_repair(r) for r in rows]
