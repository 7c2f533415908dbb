"""Conflicts: records two sides had in different versions, settled by the documented rule
(docs/network.md, "Ownership") and kept in ``network_conflicts`` for a coordinator.

A conflict's id is derived from what it is (lab, table, key and the version set aside),
so the same batch applied twice keeps one row, not two.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from inventory.replica import Conflict, digest
from labhub.network.tables import network_conflicts
from sensors.samples import now_us

NAMESPACE = uuid.UUID("6f1d8e52-4a7c-4c1e-9b1e-2f7f3d9a6c10")
RULE_MAX = 200
MAX_LIMIT = 500


@dataclass(frozen=True, slots=True)
class StoredConflict:
    id: str
    site: str
    kind: str
    key: str
    kept: Any
    set_aside: Any
    rule: str
    detected_at: int
    seen_by: str | None
    seen_at: int | None


def conflict_id(site: str, c: Conflict) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{site}|{c.kind}|{c.key}|{digest(c.set_aside)}"))


def keep(conn: Connection, site: str, found: Iterable[Conflict]) -> int:
    """Keep each conflict once; how many were new."""
    new = 0
    for c in found:
        cid = conflict_id(site, c)
        if conn.execute(select(network_conflicts.c.id)
                        .where(network_conflicts.c.id == cid)).first() is not None:
            continue
        rule = c.rule if len(c.rule) <= RULE_MAX else c.rule[:RULE_MAX - 1] + "…"
        conn.execute(insert(network_conflicts).values(
            id=cid, site=site, kind=c.kind[:40], key=c.key[:64],
            kept=json.dumps(c.kept, sort_keys=True, ensure_ascii=False),
            set_aside=json.dumps(c.set_aside, sort_keys=True, ensure_ascii=False),
            rule=rule, detected_at=now_us()))
        new += 1
    return new


def _stored(r: Any) -> StoredConflict:
    return StoredConflict(r.id, r.site, r.kind, r.key, json.loads(r.kept),
                          json.loads(r.set_aside), r.rule, r.detected_at, r.seen_by, r.seen_at)


def list_conflicts(conn: Connection, *, sites: Collection[str] | None = None,
                   unseen: bool = False, limit: int = 50,
                   offset: int = 0) -> tuple[int, list[StoredConflict]]:
    """A page of conflicts, newest first, and how many match; ``sites`` keeps those of
    the labs the person asking may look at."""
    conditions = []
    if sites is not None:
        conditions.append(network_conflicts.c.site.in_(sorted(sites)))
    if unseen:
        conditions.append(network_conflicts.c.seen_at.is_(None))
    total = conn.execute(select(func.count()).select_from(network_conflicts)
                         .where(*conditions)).scalar_one()
    rows = conn.execute(select(network_conflicts).where(*conditions)
                        .order_by(network_conflicts.c.detected_at.desc(),
                                  network_conflicts.c.id).limit(limit).offset(offset))
    return int(total), [_stored(r) for r in rows]


def get_conflict(conn: Connection, conflict_id: str) -> StoredConflict | None:
    found = conn.execute(select(network_conflicts)
                         .where(network_conflicts.c.id == conflict_id)).first()
    return None if found is None else _stored(found)


def mark_seen(conn: Connection, conflict_id: str, *, by: str) -> StoredConflict | None:
    """Record that ``by`` has seen the conflict (the first time counts); None if unknown."""
    conn.execute(update(network_conflicts).where(network_conflicts.c.id == conflict_id,
                                                 network_conflicts.c.seen_at.is_(None))
                 .values(seen_by=by, seen_at=now_us()))
    return get_conflict(conn, conflict_id)
