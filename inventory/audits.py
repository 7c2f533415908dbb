"""Audits (stocktake): what is really on a lab site's shelves, against what is recorded.

An audit is started at a lab site, tags are scanned and counted models counted (model
code and quantity), and finishing it freezes a report: for each counted model the
site's stock then (``expected``), the count and the difference, and ``found`` (recorded
at the site, and scanned or seen online there), ``missing`` (recorded at the site as
available or in repair, so physically there, and neither scanned nor seen; on loan and
in transit are away on purpose), ``unexpected`` (scanned or seen there, but recorded at
another site, which the report names) and ``unknown`` (a scanned tag nobody registered).
An ``AssetSighted`` event at the site while the audit was open counts as seen, with the
sighting's source in the report. Applying the corrections writes history for each: a
missing available asset becomes lost (a missing one in repair is only reported: its open
repair is the coordinator's to settle), an unexpected one is moved to the audited site
(available again if it was lost or in transit), a found one that was lost is available
again, and the stock of a counted model that differs from its count is set to the count
(a ``StockAdjusted`` event of :mod:`inventory.stock`, so ``rebuild_stock`` stays true).
Every change raises the audit's ``version`` (409 on a stale write) and is an event.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal, get_args

from sqlalchemy import ColumnElement, Connection, func, insert, select, update

from inventory import stock as stock_levels
from inventory.assets import find_asset
from inventory.catalog import get_model
from inventory.errors import ConflictError, InvalidTransitionError, InvalidValueError, NotFoundError
from inventory.history import record_event
from inventory.sites import get_site, subtree
from inventory.tables import (
    assets,
    audit_counts,
    audit_findings,
    audit_scans,
    audits,
    events,
    models,
    stock,
)
from inventory.values import (
    check_choice,
    check_key,
    check_note,
    check_page,
    check_text,
    is_uuid,
    now_us,
)

AuditStatus = Literal["open", "finished", "applied"]
FindingKind = Literal["found", "missing", "unexpected", "unknown"]
AUDIT_STATUSES: tuple[str, ...] = get_args(AuditStatus)
FINDINGS: tuple[str, ...] = get_args(FindingKind)
# What should be physically at the site: available, and in repair at the lab (a repair
# is done where the asset is recorded; a repair shop elsewhere is a transfer). On loan and
# in transit are away on purpose; lost and retired are already written off.
EXPECTED_ON_SHELF = ("available", "in_repair")
COUNT_MAX = 10_000_000  # a counted quantity in the model's unit; more is a typing slip
LOOKUP_CHUNK = 500  # tags per IN (...) query, far below SQLite's limit of bound parameters
SCAN_SOURCE = "scan"  # the source of a finding that was scanned (a sighting names its hub)
DEFAULT_LIMIT = 50  # audits per page when the caller does not say: a screenful
MAX_LIMIT = 500  # one page of a list; more is paged with offset


@dataclass(frozen=True, slots=True)
class Audit:
    """A stocktake at one lab site, with what was scanned and counted so far."""

    uuid: str
    site_code: str
    status: str
    version: int
    started_at: int
    started_by: str
    finished_at: int | None
    applied_at: int | None
    scanned: tuple[str, ...]
    counts: tuple[tuple[str, int], ...]  # (model code, quantity)


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of an audit report."""

    tag: str
    finding: str
    source: str | None  # "scan", or the source of the sighting that counted it
    model_code: str | None
    recorded_site_code: str | None
    recorded_status: str | None
    corrected_at: int | None


@dataclass(frozen=True, slots=True)
class CountLine:
    """A counted model of an audit: the site's stock when the audit finished, the count,
    and the difference (count minus stock: negative when parts are missing)."""

    model_code: str
    unit: str
    expected: int
    counted: int
    difference: int
    corrected_at: int | None  # when applying the audit set the stock to the count


@dataclass(frozen=True, slots=True)
class AuditReport:
    """What an audit found, grouped, with the counted quantities against the stock."""

    audit: Audit
    found: tuple[Finding, ...]
    missing: tuple[Finding, ...]
    unexpected: tuple[Finding, ...]
    unknown: tuple[Finding, ...]
    counts: tuple[CountLine, ...] = ()


def _audit(conn: Connection, r: Any) -> Audit:
    scanned = conn.execute(
        select(audit_scans.c.tag).where(audit_scans.c.audit_uuid == r.uuid)
        .order_by(audit_scans.c.tag)
    ).scalars()
    counts = conn.execute(
        select(audit_counts.c.model_code, audit_counts.c.quantity)
        .where(audit_counts.c.audit_uuid == r.uuid).order_by(audit_counts.c.model_code)
    )
    return Audit(r.uuid, r.site_code, r.status, r.version, r.started_at, r.started_by,
                 r.finished_at, r.applied_at, tuple(scanned),
                 tuple((c.model_code, c.quantity) for c in counts))


@dataclass(frozen=True, slots=True)
class AuditScan:
    """What one scan did, without the whole audit (a site has thousands of tags)."""

    audit_uuid: str
    site_code: str  # the audited site
    tag: str
    new: bool  # False: the tag had been scanned already, nothing changed
    version: int  # the audit's version after the scan
    scanned: int  # tags scanned so far
    recorded_site_code: str | None  # where the asset is recorded; None: no asset has the tag


def _row(conn: Connection, audit_uuid: str) -> Any:
    row = None if not is_uuid(audit_uuid) else conn.execute(
        select(audits).where(audits.c.uuid == audit_uuid)).first()
    if row is None:
        raise NotFoundError(f"no audit {audit_uuid!r}", what="audit", key=audit_uuid)
    return row


def _head(r: Any) -> Audit:
    """The audit row alone (no scans or counts): for checks of status and version."""
    return Audit(r.uuid, r.site_code, r.status, r.version, r.started_at, r.started_by,
                 r.finished_at, r.applied_at, (), ())


def get_audit(*, conn: Connection, audit_uuid: str) -> Audit:
    """The audit with this UUID; NotFoundError if there is none."""
    return _audit(conn, _row(conn, audit_uuid))


@dataclass(frozen=True, slots=True)
class AuditLine:
    """An audit in a list: its head and how much was scanned and counted, not the tags."""

    uuid: str
    site_code: str
    status: str
    version: int
    started_at: int
    started_by: str
    finished_at: int | None
    applied_at: int | None
    scanned: int  # tags scanned
    counted: int  # counted models


def list_audits(
    *,
    conn: Connection,
    site_under: str | None = None,
    sites: Collection[str] | None = None,
    status: AuditStatus | None = None,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
) -> tuple[int, list[AuditLine]]:
    """A page of audits, newest first, and how many match in all: ``site_under`` takes a
    site and its whole subtree, ``status`` is open, finished or applied."""
    check_page(limit, offset, MAX_LIMIT)
    conditions: list[ColumnElement[bool]] = []
    if status is not None:
        check_choice(status, AUDIT_STATUSES, what="audit status")
        conditions.append(audits.c.status == status)
    if site_under is not None:
        get_site(conn=conn, code=check_key(site_under, what="site code"))
        conditions.append(audits.c.site_code.in_(select(subtree(site_under).c.code)))
    if sites is not None:  # where the person asking may look
        conditions.append(audits.c.site_code.in_(sorted(sites)))
    total = conn.execute(select(func.count()).select_from(audits).where(*conditions)
                         ).scalar_one()
    scanned = (select(func.count()).select_from(audit_scans)
               .where(audit_scans.c.audit_uuid == audits.c.uuid).scalar_subquery())
    counted = (select(func.count()).select_from(audit_counts)
               .where(audit_counts.c.audit_uuid == audits.c.uuid).scalar_subquery())
    rows = conn.execute(
        select(audits, scanned.label("n_scanned"), counted.label("n_counted"))
        .where(*conditions)
        .order_by(audits.c.started_at.desc(), audits.c.uuid).limit(limit).offset(offset))
    return total, [
        AuditLine(r.uuid, r.site_code, r.status, r.version, r.started_at, r.started_by,
                  r.finished_at, r.applied_at, r.n_scanned, r.n_counted)
        for r in rows
    ]


def _check_version(a: Audit, expected: int | None) -> None:
    if expected is not None and expected != a.version:
        raise ConflictError(
            f"audit {a.uuid} is at version {a.version}, not {expected}: it was changed "
            "since you read it; read it again and retry"
        )


def _bump(conn: Connection, a: Audit, **values: Any) -> None:
    """Raise the version (compare-and-set, so a concurrent writer is refused too)."""
    done = conn.execute(
        update(audits).where(audits.c.uuid == a.uuid, audits.c.version == a.version)
        .values(version=a.version + 1, **values)
    )
    if done.rowcount != 1:
        raise ConflictError(f"audit {a.uuid} was changed by someone else meanwhile; "
                            "read it again and retry")


def _require_open(a: Audit, doing: str) -> None:
    if a.status != "open":
        raise InvalidTransitionError(f"audit {a.uuid} is {a.status}; only an open audit can "
                                     f"{doing}")


def start_audit(*, conn: Connection, site: str, by: str, note: str | None = None) -> Audit:
    """Open a stocktake at a lab site; one open audit per site. Writes AuditStarted."""
    by = check_text(by, what="who started the audit ('by')")
    note = check_note(note)
    found = get_site(conn=conn, code=check_key(site, what="the audited site"))
    if found.kind != "site":
        raise InvalidValueError(f"an audit is done at a lab site, and {site!r} is a {found.kind}")
    already = conn.execute(
        select(audits.c.uuid).where(audits.c.site_code == site, audits.c.status == "open")
    ).scalar()
    if already is not None:
        raise ConflictError(f"site {site} already has an open audit, {already}; finish it first")
    key = str(uuid.uuid4())
    event = record_event(conn=conn, kind="AuditStarted", subject=key, by=by, site_code=site,
                         to_state={"status": "open", "site": site}, note=note)
    conn.execute(insert(audits).values(uuid=key, site_code=site, status="open", version=1,
                                       started_at=event.at, started_by=by))
    return get_audit(conn=conn, audit_uuid=key)


def scan_tag(
    *, conn: Connection, audit_uuid: str, tag: str, by: str, version: int | None = None,
    on_behalf_of: str | None = None,
) -> AuditScan:
    """Record a tag scanned on the shelves; any tag is kept (an unknown one is reported).
    Scanning a tag twice changes nothing. Reads only what one scan needs, so scanning a
    whole site stays linear; the answer says where the tag is recorded, for a scanner to
    flag an unexpected item at once. Writes AuditItemScanned (subject: the tag)."""
    a = _head(_row(conn, audit_uuid))
    _check_version(a, version)
    _require_open(a, "take scans")
    tag = check_key(tag, what="scanned tag")
    by = check_text(by, what="who scanned ('by')")
    seen = conn.execute(select(audit_scans.c.tag).where(
        audit_scans.c.audit_uuid == a.uuid, audit_scans.c.tag == tag)).first()
    if seen is None:
        _bump(conn, a)
        event = record_event(conn=conn, kind="AuditItemScanned", subject=tag, by=by,
                             site_code=a.site_code, to_state={"audit": a.uuid},
                             on_behalf_of=on_behalf_of)
        conn.execute(insert(audit_scans).values(audit_uuid=a.uuid, tag=tag,
                                                scanned_at=event.at, scanned_by=by))
    asset = find_asset(conn=conn, tag=tag)
    scanned = conn.execute(select(func.count()).select_from(audit_scans).where(
        audit_scans.c.audit_uuid == a.uuid)).scalar_one()
    return AuditScan(a.uuid, a.site_code, tag, seen is None, a.version + (seen is None), scanned,
                     None if asset is None else asset.site_code)


def record_count(
    *,
    conn: Connection,
    audit_uuid: str,
    model_code: str,
    quantity: int,
    by: str,
    version: int | None = None,
    on_behalf_of: str | None = None,
) -> Audit:
    """Record how many of a counted model are on the shelves (a recount replaces the
    earlier figure). Writes AuditItemCounted (subject: the model code)."""
    a = _head(_row(conn, audit_uuid))
    _check_version(a, version)
    _require_open(a, "take counts")
    by = check_text(by, what="who counted ('by')")
    model = get_model(conn=conn, code=check_key(model_code, what="the counted model"))
    if model.tracking != "counted":
        raise InvalidValueError(
            f"model {model_code!r} is tracked as tagged assets: scan their tags instead of "
            "counting them"
        )
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not (
            0 <= quantity <= COUNT_MAX):
        raise InvalidValueError(
            f"the counted quantity of {model_code!r} must be a whole number in 0..{COUNT_MAX}, "
            f"not {quantity!r}"
        )
    before = conn.execute(select(audit_counts.c.quantity).where(
        audit_counts.c.audit_uuid == a.uuid, audit_counts.c.model_code == model_code)).scalar()
    _bump(conn, a)
    event = record_event(
        conn=conn, kind="AuditItemCounted", subject=model_code, by=by, site_code=a.site_code,
        from_state=None if before is None else {"quantity": before},
        to_state={"audit": a.uuid, "quantity": quantity, "unit": model.unit},
        on_behalf_of=on_behalf_of,
    )
    if before is None:
        conn.execute(insert(audit_counts).values(
            audit_uuid=a.uuid, model_code=model_code, quantity=quantity, counted_at=event.at,
            counted_by=by))
    else:
        conn.execute(update(audit_counts).where(
            audit_counts.c.audit_uuid == a.uuid, audit_counts.c.model_code == model_code
        ).values(quantity=quantity, counted_at=event.at, counted_by=by))
    return get_audit(conn=conn, audit_uuid=a.uuid)


def _sightings(conn: Connection, a: Audit, until: int) -> dict[str, str]:
    """Tag -> source of the first AssetSighted at the audited site while the audit was open."""
    rows = conn.execute(
        select(events.c.subject, events.c.by).where(
            events.c.kind == "AssetSighted", events.c.site_code == a.site_code,
            events.c.at >= a.started_at, events.c.at <= until,
        ).order_by(events.c.at.desc())
    )
    return {r.subject: r.by for r in rows}  # the oldest sighting wins (written last)


def _recorded(conn: Connection, tags: list[str]) -> dict[str, Any]:
    """Tag -> (model_code, site_code, status) row of each of ``tags`` that is an asset."""
    found: dict[str, Any] = {}
    for i in range(0, len(tags), LOOKUP_CHUNK):
        rows = conn.execute(
            select(assets.c.tag, assets.c.model_code, assets.c.site_code, assets.c.status)
            .where(assets.c.tag.in_(tags[i:i + LOOKUP_CHUNK]))
        )
        found.update({r.tag: r for r in rows})
    return found


def finish_audit(
    *, conn: Connection, audit_uuid: str, by: str, version: int | None = None
) -> AuditReport:
    """Close the scanning and freeze the report. Writes AuditFinished."""
    a = get_audit(conn=conn, audit_uuid=audit_uuid)
    _check_version(a, version)
    _require_open(a, "be finished")
    by = check_text(by, what="who finished the audit ('by')")
    until = now_us()
    seen: dict[str, str] = _sightings(conn, a, until)
    seen.update({tag: SCAN_SOURCE for tag in a.scanned})  # a scan wins over a sighting
    known = _recorded(conn, sorted(seen))
    rows: list[dict[str, Any]] = []
    for tag in sorted(seen):
        asset = known.get(tag)
        if asset is None:
            rows.append({"tag": tag, "finding": "unknown", "source": seen[tag],
                         "model_code": None, "recorded_site_code": None,
                         "recorded_status": None})
            continue
        rows.append({
            "tag": tag, "finding": "found" if asset.site_code == a.site_code else "unexpected",
            "source": seen[tag], "model_code": asset.model_code,
            "recorded_site_code": asset.site_code, "recorded_status": asset.status,
        })
    expected = conn.execute(
        select(assets.c.tag, assets.c.model_code, assets.c.status).where(
            assets.c.site_code == a.site_code, assets.c.status.in_(EXPECTED_ON_SHELF),
        ).order_by(assets.c.tag)
    )
    rows += [
        {"tag": r.tag, "finding": "missing", "source": None, "model_code": r.model_code,
         "recorded_site_code": a.site_code, "recorded_status": r.status}
        for r in expected if r.tag not in seen
    ]
    tally = {kind: sum(1 for r in rows if r["finding"] == kind) for kind in FINDINGS}
    event = record_event(
        conn=conn, kind="AuditFinished", subject=a.uuid, by=by, site_code=a.site_code,
        from_state={"status": "open"}, to_state={"status": "finished", **tally},
    )
    _bump(conn, a, status="finished", finished_at=event.at)
    if rows:
        conn.execute(insert(audit_findings), [{"audit_uuid": a.uuid, **row} for row in rows])
    if a.counts:
        on_hand = _stock_at(conn, a.site_code, [code for code, _ in a.counts])
        for code, _ in a.counts:
            conn.execute(update(audit_counts).where(
                audit_counts.c.audit_uuid == a.uuid, audit_counts.c.model_code == code
            ).values(expected=on_hand.get(code, 0)))
    return get_report(conn=conn, audit_uuid=a.uuid)


def _stock_at(conn: Connection, site_code: str, codes: list[str]) -> dict[str, int]:
    """Model code -> the site's stock of it, for those of ``codes`` it has a row for."""
    return {r.model_code: r.quantity for r in conn.execute(
        select(stock.c.model_code, stock.c.quantity)
        .where(stock.c.site_code == site_code, stock.c.model_code.in_(codes)))}


def get_report(*, conn: Connection, audit_uuid: str) -> AuditReport:
    """The report of a finished audit; an open audit has none yet (InvalidTransitionError)."""
    a = get_audit(conn=conn, audit_uuid=audit_uuid)
    if a.status == "open":
        raise InvalidTransitionError(f"audit {a.uuid} is still open; finish it to get its report")
    rows = conn.execute(
        select(audit_findings).where(audit_findings.c.audit_uuid == a.uuid)
        .order_by(audit_findings.c.tag)
    )
    by_kind: dict[str, list[Finding]] = {kind: [] for kind in FINDINGS}
    for r in rows:
        by_kind[r.finding].append(Finding(r.tag, r.finding, r.source, r.model_code,
                                          r.recorded_site_code, r.recorded_status,
                                          r.corrected_at))
    counted = conn.execute(
        select(audit_counts.c.model_code, audit_counts.c.quantity, audit_counts.c.expected,
               audit_counts.c.corrected_at, models.c.unit)
        .join(models, models.c.code == audit_counts.c.model_code)
        .where(audit_counts.c.audit_uuid == a.uuid).order_by(audit_counts.c.model_code)
    )
    lines = tuple(
        CountLine(r.model_code, r.unit or "", r.expected or 0, r.quantity,
                  r.quantity - (r.expected or 0), r.corrected_at)
        for r in counted
    )
    return AuditReport(a, tuple(by_kind["found"]), tuple(by_kind["missing"]),
                       tuple(by_kind["unexpected"]), tuple(by_kind["unknown"]), lines)


def _correction(finding: Finding, site: str, current: Any) -> tuple[dict[str, Any],
                                                                      dict[str, Any]] | None:
    """The (before, after) fields a finding corrects, or None when there is nothing to do
    (the asset changed since the audit finished, or it is retired)."""
    if current is None or current.status == "retired":
        return None
    if finding.finding == "missing":
        if current.site_code == site and current.status == "available":
            return {"status": "available"}, {"status": "lost"}
        return None
    if finding.finding == "found":
        if current.site_code == site and current.status == "lost":
            return {"status": "lost"}, {"status": "available"}
        return None
    if finding.finding == "unexpected" and current.site_code != site:
        before: dict[str, Any] = {"site_code": current.site_code}
        after: dict[str, Any] = {"site_code": site}
        if current.status in ("lost", "in_transit"):
            before["status"], after["status"] = current.status, "available"
        return before, after
    return None


def apply_corrections(
    *, conn: Connection, audit_uuid: str, by: str, version: int | None = None
) -> AuditReport:
    """Make the records say what the audit found, once: a missing available asset becomes
    lost (one in repair stays as it is, reported), an unexpected one moves to the audited
    site (available again if it was lost or in transit), a found one that was lost is
    available again. An asset that changed since the audit finished, or is retired, is
    left as it is (its finding stays uncorrected).
    Writes AuditCorrectionApplied for each asset and AuditCorrectionsApplied."""
    a = get_audit(conn=conn, audit_uuid=audit_uuid)
    _check_version(a, version)
    if a.status != "finished":
        raise InvalidTransitionError(
            f"audit {a.uuid} is {a.status}; corrections are applied once, to a finished audit"
        )
    by = check_text(by, what="who applied the corrections ('by')")
    report = get_report(conn=conn, audit_uuid=a.uuid)
    lines = (*report.found, *report.missing, *report.unexpected)
    current = _recorded(conn, [f.tag for f in lines])
    planned = []
    for finding in lines:
        change = _correction(finding, a.site_code, current.get(finding.tag))
        if change is not None:
            planned.append((finding, *change))
    # A count is applied only if the stock is still what the audit compared it with (a
    # delivery or a loss since the finish would be lost by overwriting it).
    on_hand = _stock_at(conn, a.site_code, [c.model_code for c in report.counts])
    recounts = [c for c in report.counts
                if c.difference and on_hand.get(c.model_code, 0) == c.expected]
    event = record_event(
        conn=conn, kind="AuditCorrectionsApplied", subject=a.uuid, by=by,
        site_code=a.site_code, from_state={"status": "finished"},
        to_state={"status": "applied", "corrected": len(planned), "recounted": len(recounts)},
    )
    _bump(conn, a, status="applied", applied_at=event.at)
    for finding, before, after in planned:
        done = record_event(
            conn=conn, kind="AuditCorrectionApplied", subject=finding.tag, by=by,
            site_code=a.site_code, from_state=before, to_state=after,
            note=f"audit {a.uuid} at {a.site_code}: {finding.finding}",
        )
        was = current[finding.tag]
        changed = conn.execute(update(assets).where(
            assets.c.tag == finding.tag, assets.c.site_code == was.site_code,
            assets.c.status == was.status,
        ).values(updated_at=done.at, version=assets.c.version + 1,
                 **({"location_code": None} if "site_code" in after else {}), **after))
        if changed.rowcount != 1:
            raise ConflictError(f"asset {finding.tag!r} was changed by someone else "
                                "meanwhile; retry")
        conn.execute(update(audit_findings).where(
            audit_findings.c.audit_uuid == a.uuid, audit_findings.c.tag == finding.tag
        ).values(corrected_at=done.at))
    for line in recounts:
        level = stock_levels.adjust(
            conn=conn, site_code=a.site_code, model_code=line.model_code,
            quantity=line.counted, by=by,
            note=f"audit {a.uuid} at {a.site_code}: counted {line.counted}, "
                 f"recorded {line.expected}",
        )
        conn.execute(update(audit_counts).where(
            audit_counts.c.audit_uuid == a.uuid, audit_counts.c.model_code == line.model_code
        ).values(corrected_at=level.updated_at))
    return get_report(conn=conn, audit_uuid=a.uuid)
