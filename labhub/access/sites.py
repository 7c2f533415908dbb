"""The inventory's site tree as the access checks need it, and where each record a path
names stands in it.

:func:`tree_for` reads the tree once per request (one query of code and parent) and
keeps it on ``request.state``. :func:`sites_of` finds the site of a record a path names
(a site code, an asset tag, a device id, a run id, a loan, transfer, audit, rotation or
repair id): None when no such record exists, so the route answers its own 404 and a
caller learns nothing the route would not tell them. A device, series or run with no
site counts as at the hub's own site (``Settings.site``).

Models are the network's one catalogue: reading them needs ``inventory.read`` anywhere;
changing them needs ``inventory.manage`` for the whole network, a grant at ``*`` or at
every top site of the tree (:func:`network_wide`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from fastapi import Request
from sqlalchemy import Connection, select

from firmware_bridge.registry import devices as device_table
from inventory import tables as inv
from labhub.access.caller import NETWORK, Caller
from labhub.access.permissions import Permission
from sensors.storage import runs as run_table
from sensors.storage import series as series_table


@dataclass
class Tree:
    """The site tree: each code's parent (None at the top)."""

    parents: dict[str, str | None]
    hub_site: str | None = None
    _children: dict[str, list[str]] | None = field(default=None, repr=False)

    def ancestors(self, code: str) -> list[str]:
        """``code`` and the codes above it up to the top; ``[code]`` for an unknown code."""
        out = [code]
        seen = {code}
        parent = self.parents.get(code)
        while parent is not None and parent not in seen:  # a cycle would never end
            out.append(parent)
            seen.add(parent)
            parent = self.parents.get(parent)
        return out

    def subtree(self, code: str) -> frozenset[str]:
        """``code`` and the codes of every site under it."""
        if self._children is None:
            children: dict[str, list[str]] = {}
            for child, parent in self.parents.items():
                if parent is not None:
                    children.setdefault(parent, []).append(child)
            self._children = children
        out = {code}
        todo = [code]
        while todo:
            for child in self._children.get(todo.pop(), ()):
                if child not in out:
                    out.add(child)
                    todo.append(child)
        return frozenset(out)

    def roots(self) -> list[str]:
        """The codes at the top of the tree."""
        return sorted(code for code, parent in self.parents.items() if parent is None)


def load_tree(conn: Connection, hub_site: str | None) -> Tree:
    """The tree as stored now."""
    rows = conn.execute(select(inv.sites.c.code, inv.sites.c.parent_code))
    return Tree({code: parent for code, parent in rows}, hub_site)


def tree_for(request: Request) -> Tree:
    """The tree for this request, read once and kept on ``request.state``."""
    tree: Tree | None = getattr(request.state, "site_tree", None)
    if tree is None:
        with request.app.state.hub.engine.connect() as conn:
            tree = load_tree(conn, request.app.state.settings.site)
        request.state.site_tree = tree
    return tree


def network_wide(caller: Caller, permission: Permission, tree: Tree) -> bool:
    """Whether ``permission`` holds for the whole network: a grant at ``*``, or at every
    top site of the tree (a tree with one top site: a grant there)."""
    if caller.can(permission, NETWORK, tree):
        return True
    roots = tree.roots()
    return bool(roots) and all(caller.can(permission, root, tree) for root in roots)


def _one(conn: Connection, query: object) -> tuple[str | None, ...] | None:
    row = conn.execute(query).first()  # type: ignore[call-overload]
    return None if row is None else tuple(row)


def sites_of(conn: Connection, kind: str, key: str) -> tuple[str | None, ...] | None:
    """The sites of the record of ``kind`` named ``key``, the one a write acts on first;
    None if there is no such record. A None among them is the hub's own site."""
    if kind == "site":
        found = conn.execute(select(inv.sites.c.code).where(inv.sites.c.code == key)).first()
        return None if found is None else (key,)
    if kind == "asset":
        return _one(conn, select(inv.assets.c.site_code).where(inv.assets.c.tag == key))
    if kind == "device":
        return _one(conn, select(device_table.c.site).where(device_table.c.id == key))
    if kind == "run":
        return _one(conn, select(run_table.c.site).where(run_table.c.id == key))
    if kind == "loan":
        return _one(conn, select(inv.loans.c.site_code).where(inv.loans.c.uuid == key))
    if kind == "audit":
        return _one(conn, select(inv.audits.c.site_code).where(inv.audits.c.uuid == key))
    if kind in ("transfer", "transfer_to"):
        t = inv.transfers.c
        found_t = _one(conn, select(t.from_site_code, t.to_site_code).where(t.uuid == key))
        if found_t is None or kind == "transfer":
            return found_t
        return (found_t[1], found_t[0])
    if kind == "rotation":
        r = inv.rotations.c
        lab = _one(conn, select(r.mobile_lab_code).where(r.uuid == key))
        if lab is None:
            return None
        s = inv.rotation_stops.c
        stops = conn.execute(select(s.site_code).where(s.rotation_uuid == key)
                             .order_by(s.seq)).scalars()
        return (*lab, *stops)
    if kind == "repair":
        r = inv.repairs.c
        return _one(conn, select(inv.assets.c.site_code)
                    .join(inv.repairs, r.asset_tag == inv.assets.c.tag).where(r.uuid == key))
    raise ValueError(f"no sites for records of kind {kind!r}")


def device_site(conn: Connection, device_id: str) -> tuple[bool, str | None]:
    """Whether the registry knows ``device_id``, and its site."""
    found = _one(conn, select(device_table.c.site).where(device_table.c.id == device_id))
    return (found is not None, None if found is None else found[0])


def devices_outside(conn: Connection, scope: Collection[str]) -> set[str]:
    """The devices at a site outside ``scope``: their registry site, or for a device the
    registry does not place, the site of one of its series (a dead letter's device tells
    where it came from; one with no known site is at the hub's own)."""
    d, s = device_table.c, series_table.c
    seen = sorted(scope)
    placed_in = set(conn.execute(select(d.id).where(d.site.in_(seen))).scalars())
    placed_out = set(conn.execute(select(d.id).where(d.site.is_not(None),
                                                     d.site.not_in(seen))).scalars())
    by_series = set(conn.execute(select(s.device).where(s.site.is_not(None),
                                                        s.site.not_in(seen)).distinct()
                                 ).scalars())
    return placed_out | (by_series - placed_in)


def narrow(scope: frozenset[str] | None, wanted: Iterable[str] | None
           ) -> frozenset[str] | None:
    """The sites a list shows: the caller's ``scope`` (None: everywhere) within the
    ``wanted`` filter (None: no filter)."""
    if wanted is None:
        return scope
    wanted_set = frozenset(wanted)
    return wanted_set if scope is None else scope & wanted_set


def with_unsited(scope: Collection[str] | None, tree: Tree) -> bool:
    """Whether records with no site (counted at the hub's own site) are in ``scope``."""
    return scope is None or (tree.hub_site is not None and tree.hub_site in scope)


def subject_sites(conn: Connection, subject: str) -> list[str]:
    """The sites the history of ``subject`` (a tag, a site or model code) took place at."""
    e = inv.events.c
    return list(conn.execute(select(e.site_code).where(e.subject == subject,
                                                       e.site_code.is_not(None))
                             .distinct()).scalars())


def asset_sites(conn: Connection, tags: Collection[str]) -> list[str]:
    """The sites of the assets with ``tags`` (tags that name nothing are left out: the
    route answers their 404)."""
    a = inv.assets.c
    return sorted(set(conn.execute(select(a.site_code).where(a.tag.in_(list(tags))))
                      .scalars()))
