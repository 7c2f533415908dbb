"""The gate: every route declares, with :func:`needs`, the permission it needs and the
site it acts on; the enumeration test fails on a route without a declaration.

``on`` says where the site comes from:

- ``On.NOTHING``: the permission anywhere is enough (lists, which the route filters to
  :meth:`Caller.scope`; one's own account; the hub's machine-wide settings);
- ``On.path(kind, param)``: the site of the record a path parameter names (a site code,
  an asset tag, a device id, a run id, ...), checked here before the route runs;
- ``On.ROUTE``: the route checks with ``Caller.require`` once it knows the site (a body
  field, or a record loaded by its id);
- ``On.HUB``: the hub's own site (``Settings.site``): its ports, its ingest counters,
  its dead letters;
- ``On.NETWORK``: the whole network (the catalogue of models): a grant at ``*`` or at
  every top site of the tree. Imports of sites and assets check each row's site instead.

A path that names no record passes the gate, and the route answers its 404; a record
that exists at a site outside the caller's grants is a 403. Keys are not secrets (tags
are printed on labels, ids are random UUIDs), so telling "not yours" from "not there"
gives nothing away that a label does not.

For a record with several sites (a transfer: origin and destination; a rotation: the
mobile lab and its stops), a read passes at any of them; a write needs the first: the
origin of a transfer (``transfer``; ``transfer_to`` for the destination, which scans and
receives), the mobile lab of a rotation.

With ``Settings.student_commands`` on, a student's grant also gives ``devices.command``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Annotated, Any, ClassVar, Literal

from fastapi import Depends, Request

from labhub.access import who
from labhub.access.caller import NETWORK, Caller, Forbidden
from labhub.access.permissions import Permission, Role
from labhub.access.sites import Tree, network_wide, sites_of, tree_for

PathKind = Literal["site", "asset", "device", "run", "series", "loan", "transfer",
                   "transfer_to", "audit", "rotation", "repair", "model"]

_NO_TREE = Tree({})
# Reads pass at any site of a record with several (a transfer's either end).
READS = frozenset({Permission.READINGS_READ, Permission.REJECTS_READ,
                   Permission.DEVICES_READ, Permission.INVENTORY_READ})


@dataclass(frozen=True, slots=True)
class On:
    """Where the site a route acts on comes from."""

    how: Literal["nothing", "path", "route", "hub", "network"]
    kind: PathKind | None = None
    param: str | None = None

    NOTHING: ClassVar[On]
    ROUTE: ClassVar[On]
    HUB: ClassVar[On]
    NETWORK: ClassVar[On]

    @classmethod
    def path(cls, kind: PathKind, param: str) -> On:
        return cls("path", kind, param)


On.NOTHING = On("nothing")
On.ROUTE = On("route")
On.HUB = On("hub")
On.NETWORK = On("network")


class NotSignedIn(Exception):
    """No valid session or token: a 401 with ``WWW-Authenticate``; ``permission`` is what
    the route needs (for the audit log's entry of the refusal)."""

    def __init__(self, permission: Permission | None = None) -> None:
        super().__init__("not signed in")
        self.permission = permission


@dataclass(frozen=True, slots=True)
class Gate:
    """The dependency :func:`needs` makes; the caller it returns is the route's."""

    permission: Permission
    on: On

    def __call__(self, request: Request) -> Caller | None:
        caller = who.identify(request)
        if self.permission is Permission.PUBLIC:
            return caller
        if caller is None:
            raise NotSignedIn(self.permission)
        if getattr(request.app.state.settings, "student_commands", False):
            caller = replace(caller, extra=caller.extra | {
                (Role.STUDENT, Permission.DEVICES_COMMAND)})
        request.state.caller = caller
        if not caller.has(self.permission):
            raise Forbidden(self.permission)
        self._check_site(request, caller)
        return caller

    def _check_site(self, request: Request, caller: Caller) -> None:
        how, permission = self.on.how, self.permission
        if how in ("nothing", "route") or caller.can(permission, NETWORK, _NO_TREE):
            return  # a grant for the whole network holds at every site: no look-up
        if how == "hub":
            caller.require(permission, None, tree_for(request))
        elif how == "network" or (how == "path" and self.on.kind == "model"):
            if not network_wide(caller, permission, tree_for(request)):
                raise Forbidden(permission, NETWORK)
        elif how == "path":
            assert self.on.kind is not None and self.on.param is not None
            key = request.path_params.get(self.on.param)
            if key is None:
                return
            with request.app.state.hub.engine.connect() as conn:
                sites = sites_of(conn, self.on.kind, str(key))
            if sites is None:
                return  # no such record: the route answers its 404
            tree = tree_for(request)
            if permission in READS:
                if not any(caller.can(permission, site, tree) for site in sites):
                    raise Forbidden(permission, sites[0])
            else:
                caller.require(permission, sites[0], tree)


def needs(permission: Permission, on: On | None = None) -> Any:
    """The declaration a route puts in its ``dependencies`` (or takes as a parameter to
    get the :class:`Caller`)."""
    return Depends(Gate(permission, on or On.NOTHING))


def gated_caller(request: Request) -> Caller:
    """The caller the route's gate let through (a route's ``dependencies`` run before its
    parameters are solved, so the gate has run). For routes that check a site themselves
    (``On.ROUTE``) or filter a list to the caller's scope."""
    caller: Caller | None = getattr(request.state, "caller", None)
    if caller is None:
        raise RuntimeError(f"{request.url.path}: the route asks for the caller but "
                           "declares no gate that needs one")
    return caller


CallerDep = Annotated[Caller, Depends(gated_caller)]


def gates_of(route: Any) -> list[Gate]:
    """The gates among a route's dependencies, however deep (an empty list for a route
    that declares none, or one that is not an API route)."""
    found: list[Gate] = []
    todo = [getattr(route, "dependant", None)]
    while todo:
        dependant = todo.pop()
        if dependant is None:
            continue
        if isinstance(dependant.call, Gate):
            found.append(dependant.call)
        todo.extend(dependant.dependencies)
    return found


def require_at(request: Request, permission: Permission, *sites: str | None) -> None:
    """For a route that finds its site itself (``On.ROUTE``): raise :class:`Forbidden`
    unless the caller its gate let through has ``permission`` at every one of ``sites``
    (None: the hub's own site)."""
    caller = gated_caller(request)
    if caller.can(permission, NETWORK, _NO_TREE):
        return
    tree = tree_for(request)
    for site in sites:
        caller.require(permission, site, tree)


def require_network(request: Request, permission: Permission) -> None:
    """Raise :class:`Forbidden` unless the caller has ``permission`` for the whole
    network (a site at the top of the tree, a model of the catalogue)."""
    if not network_wide(gated_caller(request), permission, tree_for(request)):
        raise Forbidden(permission, NETWORK)


def require_any(request: Request, permission: Permission, sites: Iterable[str | None]) -> None:
    """Raise :class:`Forbidden` unless the caller has ``permission`` at one of ``sites``
    at least (none given: the permission anywhere is enough)."""
    caller = gated_caller(request)
    wanted = list(sites)
    if not wanted or caller.can(permission, NETWORK, _NO_TREE):
        return
    tree = tree_for(request)
    if not any(caller.can(permission, site, tree) for site in wanted):
        raise Forbidden(permission, wanted[0])


def scope_of(request: Request, permission: Permission) -> frozenset[str] | None:
    """The sites where the caller its gate let through has ``permission``, for a list to
    show only those (None: everywhere)."""
    caller = gated_caller(request)
    if caller.can(permission, NETWORK, _NO_TREE):
        return None
    return caller.scope(permission, tree_for(request))


class Visible:
    """Whether a record at a site (None: the hub's own) is in the caller's scope of
    ``permission``, for lists filtered after reading (devices, series: tens per lab)."""

    def __init__(self, request: Request, permission: Permission) -> None:
        self.scope = scope_of(request, permission)
        self.hub_site = None if self.scope is None else tree_for(request).hub_site

    def __call__(self, site: str | None) -> bool:
        if self.scope is None:
            return True
        place = site if site is not None else self.hub_site
        return place is not None and place in self.scope
