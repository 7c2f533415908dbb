"""The audit log: who signed in (or failed to), made or revoked a token, gave or took a
role, commanded a device or was refused, from where, and how it ended.

Entries are kept ``audit_log_days`` (a setting): older ones are deleted when the hub
starts and, at most once an hour, when an entry is written.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, delete, func, insert, select

from labhub.access.tables import DETAIL_MAX, audit_log

US_PER_DAY = 86_400 * 1_000_000
PRUNE_EVERY_S = 3600  # deleting old entries at most hourly keeps writes cheap

_pruned_at: dict[str, float] = {}  # by database URL: when old entries were last deleted
_prune_lock = threading.Lock()


def now_us() -> int:
    """Microseconds since the epoch, UTC."""
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: int
    actor: str
    on_behalf_of: str | None
    action: str
    target: str | None
    site: str | None
    address: str | None
    outcome: str
    detail: str | None


def _bounded(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    return text if len(text) <= limit else text[: limit - 1] + "…"


def record(conn: Connection, *, actor: str, action: str, outcome: str = "ok",
           target: str | None = None, site: str | None = None, address: str | None = None,
           on_behalf_of: str | None = None, detail: Any = None,
           keep_days: int | None = None) -> None:
    """Write one entry on ``conn`` (in the caller's transaction); ``detail`` that is not
    text is stored as JSON, cut to :data:`DETAIL_MAX` characters. With ``keep_days``,
    entries older than that are deleted too, at most once an hour."""
    if detail is not None and not isinstance(detail, str):
        detail = json.dumps(detail, ensure_ascii=False, sort_keys=True, default=str)
    conn.execute(insert(audit_log).values(
        at=now_us(), actor=_bounded(actor, 100) or "", on_behalf_of=_bounded(on_behalf_of, 100),
        action=action, target=_bounded(target, 200), site=_bounded(site, 64),
        address=_bounded(address, 64), outcome=outcome, detail=_bounded(detail, DETAIL_MAX)))
    if keep_days is not None:
        key = conn.engine.url.render_as_string(hide_password=True)
        with _prune_lock:
            due = time.monotonic() - _pruned_at.get(key, -PRUNE_EVERY_S) >= PRUNE_EVERY_S
            if due:
                _pruned_at[key] = time.monotonic()
        if due:
            prune(conn, keep_days=keep_days)


def prune(conn: Connection, *, keep_days: int) -> int:
    """Delete entries older than ``keep_days``; how many were deleted."""
    cutoff = now_us() - keep_days * US_PER_DAY
    return conn.execute(delete(audit_log).where(audit_log.c.at < cutoff)).rowcount or 0


def prune_at_start(engine: Engine, *, keep_days: int) -> int:
    """:func:`prune` in a transaction of its own (the hub starting)."""
    with engine.begin() as conn:
        deleted = prune(conn, keep_days=keep_days)
    _pruned_at[engine.url.render_as_string(hide_password=True)] = time.monotonic()
    return deleted


def entries(conn: Connection, *, since: int | None = None, action: str | None = None,
            actor: str | None = None, limit: int = 100, offset: int = 0,
            sites: frozenset[str] | None = None) -> tuple[int, list[AuditEntry]]:
    """Entries newest first, filtered (to entries at ``sites`` when given); and how many
    match in all."""
    where: list[ColumnElement[bool]] = []
    if sites is not None:
        where.append(audit_log.c.site.in_(sorted(sites)))
    if since is not None:
        where.append(audit_log.c.at >= since)
    if action is not None:
        where.append(audit_log.c.action == action)
    if actor is not None:
        where.append(audit_log.c.actor == actor)
    total = conn.execute(select(func.count()).select_from(audit_log).where(*where)).scalar_one()
    rows = conn.execute(select(audit_log).where(*where)
                        .order_by(audit_log.c.at.desc(), audit_log.c.id.desc())
                        .limit(limit).offset(offset)).all()
    return int(total), [AuditEntry(**row._mapping) for row in rows]
