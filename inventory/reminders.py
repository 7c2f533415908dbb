"""What in the inventory needs a person's attention: plain queries of what is due.

Loans open past (or near) their due time, lab sites whose audit is due, counted stock
below its reorder level; maintenance and calibration due are
:func:`inventory.service.service_due`. The app shell (``labhub.reminders``) turns these
into reminders for people; nothing here knows who reads them or in which language.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, func, select

from inventory.stock import MAX_LIMIT, ReorderLine, reorder_report
from inventory.tables import audits, events, loan_items, loans, models, sites


@dataclass(frozen=True, slots=True)
class LoanDue:
    """An open loan and what is still out of it."""

    uuid: str
    site_code: str
    borrower: str
    due_at: int  # microseconds since the epoch, UTC
    items_out: int


@dataclass(frozen=True, slots=True)
class AuditDue:
    """A lab site whose audit is due: since ``due_at``, ``every_months`` after its last
    finished audit (``last_at``) or, never audited, after it was created."""

    site_code: str
    site_name: str
    last_at: int | None  # the newest finished audit; None: none yet
    due_at: int


@dataclass(frozen=True, slots=True)
class StockLow:
    """A (site, model) below its reorder level."""

    line: ReorderLine
    model_name: str


def loans_due(*, conn: Connection, before: int) -> list[LoanDue]:
    """Open loans due before ``before`` (microseconds, UTC): overdue ones and those due
    soon, by due time."""
    out = (select(loan_items.c.loan_uuid, func.count().label("n"))
           .where(loan_items.c.returned_at.is_(None))
           .group_by(loan_items.c.loan_uuid).subquery())
    rows = conn.execute(
        select(loans.c.uuid, loans.c.site_code, loans.c.borrower, loans.c.due_at,
               func.coalesce(out.c.n, 0).label("n"))
        .outerjoin(out, out.c.loan_uuid == loans.c.uuid)
        .where(loans.c.closed_at.is_(None), loans.c.due_at < before)
        .order_by(loans.c.due_at, loans.c.uuid))
    return [LoanDue(r.uuid, r.site_code, r.borrower, r.due_at, int(r.n)) for r in rows]


def add_months(ts_us: int, months: int) -> int:
    """``ts_us`` plus whole calendar months (the 31st of a shorter month: its last day)."""
    at = datetime.fromtimestamp(ts_us / 1_000_000, tz=UTC)
    index = at.month - 1 + months
    year, month = at.year + index // 12, index % 12 + 1
    day = min(at.day, calendar.monthrange(year, month)[1])
    moved = at.replace(year=year, month=month, day=day)
    return int(moved.timestamp()) * 1_000_000 + at.microsecond


def audits_due(*, conn: Connection, every_months: int, now: int) -> list[AuditDue]:
    """Lab sites in use whose audit is due at ``now``: ``every_months`` after the newest
    finished audit, or after the site was created when it has none. ``every_months`` 0:
    none are."""
    if every_months <= 0:
        return []
    # Each lab's creation, looked up by subject (the history's index on subject and
    # time): the history holds every loan, scan and move, and reading it by kind would
    # read all of it, more every year.
    created = (select(func.min(events.c.at))
               .where(events.c.subject == sites.c.code, events.c.kind == "SiteCreated")
               .scalar_subquery())
    labs = conn.execute(select(sites.c.code, sites.c.name, created)
                        .where(sites.c.kind == "site", sites.c.retired_at.is_(None))
                        .order_by(sites.c.code)).all()
    last = dict(conn.execute(
        select(audits.c.site_code, func.max(audits.c.finished_at))
        .where(audits.c.finished_at.is_not(None)).group_by(audits.c.site_code)).all())
    found = []
    for code, name, created_at in labs:
        since = last.get(code) or created_at
        if since is None:
            continue  # a site with neither (imported from an old hub): nothing to count from
        due = add_months(since, every_months)
        if due <= now:
            found.append(AuditDue(code, name, last.get(code), due))
    return found


def stock_low(*, conn: Connection) -> list[StockLow]:
    """Every (site, model) below its reorder level, by site and model."""
    lines: list[ReorderLine] = []
    while True:
        total, page = reorder_report(conn=conn, limit=MAX_LIMIT, offset=len(lines))
        lines += page
        if not page or len(lines) >= total:
            break
    names = dict(conn.execute(select(models.c.code, models.c.name).where(
        models.c.code.in_(sorted({line.model_code for line in lines})))).all()) if lines else {}
    return [StockLow(line, names.get(line.model_code, line.model_code)) for line in lines]
