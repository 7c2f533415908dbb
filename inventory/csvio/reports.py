"""Reports as CSV: an item's history and a finished audit's count lines.

They are written with the same options and writer as the other exports
(:mod:`inventory.csvio.exporting`) but have no import: a history is made by the services,
and an audit's counts by counting. Times are RFC 3339 in UTC (:func:`labtext.times.format_time`).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator

from sqlalchemy import Connection

from inventory.audits import get_report
from inventory.csvio.columns import CsvOptions
from inventory.csvio.exporting import iter_csv
from inventory.errors import NotFoundError
from inventory.history import history_of
from labtext.times import format_time

HISTORY_COLUMNS = ("at", "kind", "subject", "by", "on_behalf_of", "site", "from_state",
                   "to_state", "note", "uuid")
AUDIT_COUNT_COLUMNS = ("audit", "site", "model", "unit", "expected", "counted", "difference",
                       "corrected_at")


def export_history(
    *, conn: Connection, subject: str, options: CsvOptions, sites: Collection[str] | None = None
) -> Iterator[str]:
    """Every event about ``subject`` as CSV, oldest first; times RFC 3339 UTC; with
    ``sites``, only the events at those sites and at none."""
    found = history_of(conn=conn, subject=subject, sites=sites)
    if not found:
        raise NotFoundError(f"nothing in the inventory has the key {subject!r}",
                            what="history", key=subject)
    rows = ((format_time(e.at), e.kind, e.subject, e.by, e.on_behalf_of, e.site_code,
             None if e.from_state is None else json.dumps(e.from_state, sort_keys=True,
                                                          ensure_ascii=False),
             None if e.to_state is None else json.dumps(e.to_state, sort_keys=True,
                                                        ensure_ascii=False),
             e.note, e.uuid) for e in found)
    return iter_csv(HISTORY_COLUMNS, rows, options)


def export_audit_counts(
    *, conn: Connection, audit_uuid: str, options: CsvOptions
) -> Iterator[str]:
    """The count lines of a finished audit as CSV, by model code: the site's stock when the
    audit finished (``expected``), the count, the difference (count minus stock) and when
    applying the audit set the stock to the count (RFC 3339 UTC, empty if it did not).
    An open audit has no report yet (InvalidTransitionError)."""
    report = get_report(conn=conn, audit_uuid=audit_uuid)
    a = report.audit
    rows = ((a.uuid, a.site_code, c.model_code, c.unit, c.expected, c.counted, c.difference,
             None if c.corrected_at is None else format_time(c.corrected_at))
            for c in report.counts)
    return iter_csv(AUDIT_COUNT_COLUMNS, rows, options)
