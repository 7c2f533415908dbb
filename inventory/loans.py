"""Loans: lending assets and kits to a person, a student group or a room, and back.

A loan (known by a UUID) lends one or more items of one lab site to a borrower, with the
kind of borrower (``person``, ``group`` such as a teacher's class, or ``room``), a due
time and a purpose. Checking out sets each item ``on_loan`` (a kit's tagged contents
too) with an ``AssetCheckedOut`` event. Checking in may return some items now and the
rest later; a kit may come back in parts (``rest_later``), summed until its kit check
(``inventory.kits``) records what is missing. Each returned item gets
``AssetCheckedIn`` with its condition (a kit's tagged asset as soon as it is back, in
a partial return too); the loan closes when the last item is back. A
loan has a version that goes up with each check-in, for writers that name the version
they read. :func:`list_loans` gives the open, overdue and due-soon lists.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    bindparam,
    func,
    insert,
    select,
    update,
)

from inventory import kits
from inventory.assets import (
    CONDITIONS,
    Asset,
    Condition,
    StateChange,
    change_states,
    check_version,
    get_asset,
    get_assets,
)
from inventory.errors import (
    InvalidTransitionError,
    InvalidValueError,
    NotFoundError,
    StaleVersionError,
)
from inventory.history import record_event
from inventory.sites import get_site, subtree
from inventory.tables import loan_items, loan_kit_returns, loans
from inventory.values import TEXT_MAX, check_choice, check_text, now_us

BorrowerKind = Literal["person", "group", "room"]
BORROWER_KINDS: tuple[str, ...] = get_args(BorrowerKind)
DEFAULT_LIMIT = 50  # rows per page when the caller does not say: a screenful
MAX_LIMIT = 500  # one page of a list; more is paged with offset
LOAN_ITEMS_MAX = 200  # a class set of kits, not a warehouse
DUE_SOON_US = 48 * 3600 * 1_000_000  # due within two days: a class meets at least twice a week
LOAN_MAX_US = 400 * 86_400 * 1_000_000  # a school year and a bit; longer is a transfer


@dataclass(frozen=True, slots=True)
class LoanItem:
    """One asset or kit of a loan, and when and how it came back."""

    asset_tag: str
    is_kit: bool
    returned_at: int | None
    condition: str | None


@dataclass(frozen=True, slots=True)
class Loan:
    """Items lent from a lab site to a borrower until a due time."""

    uuid: str
    borrower: str
    borrower_kind: str
    purpose: str | None
    site_code: str
    checked_out_at: int
    due_at: int
    closed_at: int | None
    by: str
    version: int
    items: tuple[LoanItem, ...]

    @property
    def open(self) -> bool:
        """True while some item is still out."""
        return self.closed_at is None


@dataclass(frozen=True, slots=True)
class ItemReturn:
    """One item that comes back: its condition (None: as it went out) and, for a kit,
    what came back of it (None: everything, in good shape). ``rest_later`` keeps a kit
    out on loan: its parts are summed until the return that completes it."""

    tag: str
    condition: Condition | None = None
    kit: kits.KitReturn | None = None
    rest_later: bool = False


def _loans_with_items(conn: Connection, rows: Sequence[Any]) -> list[Loan]:
    ids = [r.uuid for r in rows]
    items: dict[str, list[Any]] = {i: [] for i in ids}
    if ids:
        for it in conn.execute(
            select(loan_items).where(loan_items.c.loan_uuid.in_(ids))
            .order_by(loan_items.c.asset_tag)
        ):
            items[it.loan_uuid].append(it)
    kit_tags = kits.kits_among(conn=conn, tags={it.asset_tag for v in items.values() for it in v})
    return [
        Loan(r.uuid, r.borrower, r.borrower_kind, r.purpose, r.site_code, r.checked_out_at,
             r.due_at, r.closed_at, r.by, r.version,
             tuple(LoanItem(it.asset_tag, it.asset_tag in kit_tags, it.returned_at,
                            it.condition) for it in items[r.uuid]))
        for r in rows
    ]


def find_loan(*, conn: Connection, loan_uuid: str) -> Loan | None:
    """The loan with this UUID, or None."""
    row = conn.execute(select(loans).where(loans.c.uuid == loan_uuid)).first()
    return None if row is None else _loans_with_items(conn, [row])[0]


def get_loan(*, conn: Connection, loan_uuid: str) -> Loan:
    """The loan with this UUID; NotFoundError if there is none."""
    loan = find_loan(conn=conn, loan_uuid=loan_uuid)
    if loan is None:
        raise NotFoundError(f"no loan with id {loan_uuid!r}", what="loan", key=loan_uuid)
    return loan


def open_loan_of(*, conn: Connection, asset_tag: str) -> Loan | None:
    """The open loan that holds ``asset_tag`` as one of its items (not yet back), or None."""
    loan_uuid = conn.execute(
        select(loan_items.c.loan_uuid)
        .where(loan_items.c.asset_tag == asset_tag, loan_items.c.returned_at.is_(None))
    ).scalar()
    return None if loan_uuid is None else get_loan(conn=conn, loan_uuid=loan_uuid)


def check_out(
    *,
    conn: Connection,
    asset_tags: Sequence[str],
    borrower: str,
    borrower_kind: BorrowerKind,
    due_at: int,
    by: str,
    purpose: str | None = None,
    on_behalf_of: str | None = None,
    expected_versions: Mapping[str, int] | None = None,
) -> Loan:
    """Lend available assets and kits of one lab site to ``borrower`` until ``due_at``
    (microseconds since the epoch, UTC, in the future). Writes AssetCheckedOut for each
    item and for each tagged asset inside a lent kit, by ``by`` (who recorded it) for
    ``on_behalf_of`` (the person it was recorded for, when someone else).

    ``expected_versions`` maps a tag to the version its writer read (StaleVersionError if
    it changed since). An asset listed in a kit is lent with its kit, not alone.
    """
    borrower = check_text(borrower, what="the borrower")
    check_choice(borrower_kind, BORROWER_KINDS, what="borrower kind")
    if purpose is not None:
        purpose = check_text(purpose, what="the purpose of the loan")
    now = now_us()
    if due_at <= now:
        raise InvalidValueError("the due time of a loan must be in the future")
    if due_at > now + LOAN_MAX_US:
        raise InvalidValueError(
            f"the due time of a loan is at most {LOAN_MAX_US // 86_400_000_000} days away; "
            "a longer stay is a transfer"
        )
    tags = list(asset_tags)
    if not tags:
        raise InvalidValueError("a loan needs at least one asset tag")
    if len(tags) > LOAN_ITEMS_MAX:
        raise InvalidValueError(f"a loan holds at most {LOAN_ITEMS_MAX} items")
    if len(set(tags)) != len(tags):
        twice = next(t for t in tags if tags.count(t) > 1)
        raise InvalidValueError(f"asset {twice!r} is listed twice in the loan")
    read = get_assets(conn=conn, tags=tags)
    held = kits.holders(conn=conn, tags=tags)
    lists = kits.contents_many(conn=conn, kits=read.values())
    inside = get_assets(conn=conn, tags=[p for c in lists.values() for p in c.assets])
    first = read[tags[0]]
    for tag, asset in read.items():
        check_version(asset, (expected_versions or {}).get(tag))
        _check_available(conn, asset)
        if tag in held:
            raise InvalidTransitionError(
                f"asset {tag!r} is part of kit {held[tag]!r}: lend the kit, or take the asset "
                "out of the kit's contents first"
            )
        if asset.site_code != first.site_code:
            raise InvalidValueError(
                f"asset {tag!r} is at {asset.site_code}, {first.tag!r} at "
                f"{first.site_code}: one loan lends from one site"
            )
        for part in lists[tag].assets:
            if inside[part].status != "available":
                raise InvalidTransitionError(
                    f"kit {tag!r} cannot go out: its asset {part!r} is {inside[part].status}"
                )
            if inside[part].site_code != asset.site_code:
                raise InvalidTransitionError(
                    f"kit {tag!r} cannot go out: its asset {part!r} is at "
                    f"{inside[part].site_code}, the kit at {asset.site_code}"
                )
    loan_uuid = str(uuid.uuid4())
    conn.execute(insert(loans).values(
        uuid=loan_uuid, borrower=borrower, borrower_kind=borrower_kind, purpose=purpose,
        site_code=first.site_code, checked_out_at=now, due_at=due_at, closed_at=None, by=by,
        version=1,
    ))
    conn.execute(insert(loan_items), [{"loan_uuid": loan_uuid, "asset_tag": tag,
                                       "returned_at": None, "condition": None}
                                      for tag in read])
    details = {"loan": loan_uuid, "borrower": borrower}
    changes: list[StateChange] = []
    for tag, asset in read.items():
        changes.append(StateChange(asset, "AssetCheckedOut", status="on_loan", note=purpose,
                                   details=details))
        changes += [StateChange(inside[part], "AssetCheckedOut", status="on_loan",
                                note=f"in kit {tag}", details={**details, "kit": tag})
                    for part in lists[tag].assets]
    change_states(conn=conn, changes=changes, by=by, on_behalf_of=on_behalf_of)
    # Everything the loan holds was just written: answer it without reading it back.
    return Loan(loan_uuid, borrower, borrower_kind, purpose, first.site_code, now, due_at,
                None, by, 1, tuple(LoanItem(tag, not lists[tag].empty, None, None)
                                   for tag in sorted(read)))


def _check_available(conn: Connection, asset: Asset) -> None:
    if asset.status == "available":
        return
    if asset.status == "on_loan":
        loan = open_loan_of(conn=conn, asset_tag=asset.tag)
        holder = kits.kit_holding(conn=conn, asset_tag=asset.tag)
        where = (f" (loan {loan.uuid} to {loan.borrower})" if loan is not None
                 else f" (in kit {holder})" if holder else "")
        raise InvalidTransitionError(f"asset {asset.tag!r} is already on loan{where}")
    raise InvalidTransitionError(
        f"asset {asset.tag!r} is {asset.status} and cannot be lent"
    )


def _returned_parts(conn: Connection, loan_uuid: str, kit_tag: str) -> dict[str, tuple[int, int]]:
    rows = conn.execute(select(loan_kit_returns).where(
        loan_kit_returns.c.loan_uuid == loan_uuid, loan_kit_returns.c.kit_tag == kit_tag))
    return {r.part: (r.quantity, r.damaged) for r in rows}


def _complete(contents: kits.KitContents, before: Mapping[str, tuple[int, int]]) -> kits.KitReturn:
    """Everything of the kit that is still out, in good shape."""
    return kits.KitReturn(
        tags=frozenset(t for t in contents.assets if not before.get(t, (0, 0))[0]),
        parts={c: q - before.get(c, (0, 0))[0] for c, q in contents.parts.items()
               if q - before.get(c, (0, 0))[0] > 0},
    )


def check_in(
    *,
    conn: Connection,
    loan_uuid: str,
    returns: Sequence[ItemReturn],
    by: str,
    note: str | None = None,
    expected_version: int | None = None,
    on_behalf_of: str | None = None,
) -> Loan:
    """Take back some or all items of a loan. Writes AssetCheckedIn for each item (and
    each tagged asset of a kit) that is back, KitPartsReturned for a kit coming back in
    parts, and the kit check's losses (see ``inventory.kits``).

    A tag that is not out on this loan is an InvalidTransitionError naming it; a kit
    return with something not on the kit's list, or more than it holds, an
    InvalidValueError naming the part. Everything is checked before anything is written.
    """
    loan = get_loan(conn=conn, loan_uuid=loan_uuid)
    if expected_version is not None and expected_version != loan.version:
        raise StaleVersionError(what="loan", key=loan_uuid, expected=expected_version,
                                actual=loan.version)
    if not returns:
        raise InvalidValueError("a check-in needs at least one item that came back")
    if note is not None:
        note = check_text(note, what="the note of a check-in", max_len=TEXT_MAX * 10,
                          free_text=True)
    out = {it.asset_tag: it for it in loan.items if it.returned_at is None}
    every = {it.asset_tag: it for it in loan.items}
    seen: set[str] = set()
    for back in returns:
        if back.tag in seen:
            raise InvalidValueError(f"asset {back.tag!r} is listed twice in the check-in")
        seen.add(back.tag)
        if back.tag not in out:
            raise InvalidTransitionError(
                f"asset {back.tag!r} already came back from loan {loan_uuid}"
                if back.tag in every else f"asset {back.tag!r} is not on loan {loan_uuid}"
            )
        if back.condition is not None:
            check_choice(back.condition, CONDITIONS, what=f"the condition of asset {back.tag!r}")
        if not out[back.tag].is_kit and (back.kit is not None or back.rest_later):
            raise InvalidValueError(f"asset {back.tag!r} is not a kit: it has no parts to count")
    read = get_assets(conn=conn, tags=[b.tag for b in returns])
    lists = kits.contents_many(conn=conn, kits=[read[b.tag] for b in returns
                                                if out[b.tag].is_kit])
    plans: list[tuple[ItemReturn, Asset, kits.KitContents | None, dict[str, tuple[int, int]]]]
    plans = []
    early: dict[str, frozenset[str]] = {}  # kit -> its tagged assets back in an earlier part
    for back in returns:
        totals: dict[str, tuple[int, int]] = {}
        contents = lists.get(back.tag)
        if contents is not None:
            before = _returned_parts(conn, loan_uuid, back.tag)
            now = back.kit if back.kit is not None else _complete(contents, before)
            totals = kits.check_return(contents=contents, before=before, now=now)
            early[back.tag] = frozenset(t for t in contents.assets if before.get(t, (0, 0))[0])
        plans.append((back, read[back.tag], contents, totals))
    at = now_us()
    details = {"loan": loan_uuid}
    inside = get_assets(conn=conn, tags=[p for _, _, c, _ in plans if c is not None
                                         for p in c.assets])
    changes: list[StateChange] = []
    back_now: list[dict[str, Any]] = []
    for back, asset, contents, totals in plans:
        if contents is not None and back.rest_later:
            _store_partial(conn, loan_uuid, asset, totals, by, on_behalf_of)
            # A tagged board back now is at the site again (lendable, repairable) while
            # the rest of the kit stays out; the kit check at the last part counts it.
            now_back = [t for t in contents.assets
                        if totals.get(t, (0, 0))[0] and t not in early[asset.tag]]
            changes += _boards_back(inside, asset.tag, loan_uuid, now_back,
                                    {t for t in now_back if totals[t][1]})
            continue
        if contents is not None:
            check = kits.check_kit(conn=conn, contents=contents, site_code=asset.site_code,
                                   totals=totals, by=by, loan_uuid=loan_uuid,
                                   on_behalf_of=on_behalf_of)
            changes += _boards_back(
                inside, asset.tag, loan_uuid,
                [t for t in check.returned if t not in early[asset.tag]], set(check.damaged))
            where = f"kit {asset.tag}, loan {loan_uuid}"
            changes += [
                StateChange(inside[part], "AssetStatusChanged", status="lost",
                            note=f"missing from {where}")
                for part in check.missing if inside[part].status != "lost"
            ]
        changes.append(StateChange(asset, "AssetCheckedIn", status="available",
                                   condition=back.condition, note=note, details=details))
        back_now.append({"b_tag": back.tag, "b_condition": back.condition or asset.condition})
    change_states(conn=conn, changes=changes, by=by, on_behalf_of=on_behalf_of)
    if back_now:
        conn.execute(
            update(loan_items)
            .where(loan_items.c.loan_uuid == loan_uuid,
                   loan_items.c.asset_tag == bindparam("b_tag"))
            .values(returned_at=at, condition=bindparam("b_condition")),
            back_now,
        )
    still_out = set(out) - {b.tag for b, _, c, _ in plans if c is None or not b.rest_later}
    done = conn.execute(
        update(loans).where(loans.c.uuid == loan_uuid, loans.c.version == loan.version)
        .values(version=loan.version + 1, closed_at=None if still_out else at)
    )
    if done.rowcount != 1:
        raise StaleVersionError(what="loan", key=loan_uuid, expected=loan.version,
                                actual=loan.version + 1)
    # The loan as just written, without reading it back.
    came_back = {b["b_tag"]: b["b_condition"] for b in back_now}
    return replace(
        loan, version=loan.version + 1, closed_at=None if still_out else at,
        items=tuple(replace(it, returned_at=at, condition=came_back[it.asset_tag])
                    if it.asset_tag in came_back else it for it in loan.items),
    )


def _boards_back(
    inside: Mapping[str, Asset], kit_tag: str, loan_uuid: str, tags: Sequence[str],
    damaged: set[str],
) -> list[StateChange]:
    """AssetCheckedIn (available; broken if ``damaged``) for tagged assets of a kit that
    came back on ``loan_uuid``."""
    return [StateChange(inside[t], "AssetCheckedIn", status="available",
                        condition="broken" if t in damaged else None, note=f"in kit {kit_tag}",
                        details={"loan": loan_uuid, "kit": kit_tag})
            for t in tags]


def _store_partial(
    conn: Connection, loan_uuid: str, kit: Asset, totals: Mapping[str, tuple[int, int]], by: str,
    on_behalf_of: str | None,
) -> None:
    before = _returned_parts(conn, loan_uuid, kit.tag)
    changed = {p: v for p, v in totals.items() if before.get(p) != v}
    record_event(
        conn=conn, kind="KitPartsReturned", subject=kit.tag, by=by, site_code=kit.site_code,
        on_behalf_of=on_behalf_of,
        to_state={"loan": loan_uuid,
                  "parts": {p: q for p, (q, _) in sorted(changed.items())}},
    )
    for part, (quantity, damaged) in changed.items():
        if part in before:
            conn.execute(
                update(loan_kit_returns)
                .where(loan_kit_returns.c.loan_uuid == loan_uuid,
                       loan_kit_returns.c.kit_tag == kit.tag, loan_kit_returns.c.part == part)
                .values(quantity=quantity, damaged=damaged)
            )
        else:
            conn.execute(insert(loan_kit_returns).values(
                loan_uuid=loan_uuid, kit_tag=kit.tag, part=part, quantity=quantity,
                damaged=damaged,
            ))


def check_in_tag(
    *,
    conn: Connection,
    tag: str,
    by: str,
    condition: Condition | None = None,
    kit: kits.KitReturn | None = None,
    rest_later: bool = False,
    note: str | None = None,
    expected_version: int | None = None,
    on_behalf_of: str | None = None,
) -> Loan:
    """Take back one scanned item from whichever open loan holds it (see :func:`check_in`);
    ``expected_version`` is the asset's. An item not on loan is an InvalidTransitionError
    naming it."""
    asset = get_asset(conn=conn, tag=tag)
    check_version(asset, expected_version)
    loan = open_loan_of(conn=conn, asset_tag=tag)
    if loan is None:
        holder = kits.kit_holding(conn=conn, asset_tag=tag)
        if holder is not None and asset.status == "on_loan":
            raise InvalidTransitionError(
                f"asset {tag!r} is not on loan by itself: it is part of kit {holder!r}, "
                "check in the kit"
            )
        raise InvalidTransitionError(f"asset {tag!r} is not on loan (it is {asset.status})")
    return check_in(conn=conn, loan_uuid=loan.uuid, by=by, note=note,
                    on_behalf_of=on_behalf_of, returns=[
        ItemReturn(tag=tag, condition=condition, kit=kit, rest_later=rest_later)])


def list_loans(
    *,
    conn: Connection,
    borrower: str | None = None,
    site_under: str | None = None,
    sites: Collection[str] | None = None,
    open_only: bool | None = None,
    overdue: bool = False,
    due_soon: bool = False,
    now: int | None = None,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
) -> tuple[int, list[Loan]]:
    """A page of loans by due time, and how many match in all.

    ``borrower`` matches part of the borrower's name in any case; ``site_under`` the
    lending site and its subtree; ``open_only`` True keeps open loans, False closed ones;
    ``overdue`` open loans past due; ``due_soon`` open loans due within ``DUE_SOON_US``.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidValueError(f"limit {limit} is not in 1..{MAX_LIMIT}")
    if offset < 0:
        raise InvalidValueError(f"offset {offset} is negative")
    now = now_us() if now is None else now
    conditions: list[ColumnElement[bool]] = []
    if borrower is not None and borrower.strip():
        conditions.append(loans.c.borrower.icontains(borrower.strip()[:TEXT_MAX],
                                                     autoescape=True))
    if site_under is not None:
        get_site(conn=conn, code=site_under)
        conditions.append(loans.c.site_code.in_(select(subtree(site_under).c.code)))
    if sites is not None:  # where the person asking may look
        conditions.append(loans.c.site_code.in_(sorted(sites)))
    if open_only is not None:
        conditions.append(loans.c.closed_at.is_(None) if open_only
                          else loans.c.closed_at.is_not(None))
    if overdue:
        conditions.append(and_(loans.c.closed_at.is_(None), loans.c.due_at < now))
    if due_soon:
        conditions.append(and_(loans.c.closed_at.is_(None), loans.c.due_at >= now,
                               loans.c.due_at < now + DUE_SOON_US))
    total = conn.execute(select(func.count()).select_from(loans).where(*conditions)).scalar_one()
    rows = conn.execute(
        select(loans).where(*conditions).order_by(loans.c.due_at, loans.c.uuid)
        .limit(limit).offset(offset)
    ).all()
    return total, _loans_with_items(conn, rows)

