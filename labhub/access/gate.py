"""The gate: every route declares, with :func:`needs`, the permission it needs and the
site it acts on; the enumeration test fails on a route without a declaration.

``on`` says where the site comes from:

- ``On.NOTHING``: the permission anywhere is enough (lists, which the route filters to
  :meth:`Caller.scope`; one's own account; the hub's machine-wide settings);
- ``On.path(kind, param)``: the site of the record a path parameter names (a site code,
  an asset tag, a device id, a run id, ...), checked here before the route runs;
- ``On.ROUTE``: the route checks with ``Caller.require`` once it knows the site (a body
  field, or a record loaded by its id).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Depends, Request

from labhub.access import who
from labhub.access.caller import Caller
from labhub.access.permissions import Permission

PathKind = Literal["site", "asset", "device", "run", "series", "loan", "transfer",
                   "audit", "rotation", "repair", "model"]


@dataclass(frozen=True, slots=True)
class On:
    """Where the site a route acts on comes from."""

    how: Literal["nothing", "path", "route"]
    kind: PathKind | None = None
    param: str | None = None

    @classmethod
    def path(cls, kind: PathKind, param: str) -> On:
        return cls("path", kind, param)


On.NOTHING = On("nothing")  # type: ignore[attr-defined]
On.ROUTE = On("route")  # type: ignore[attr-defined]


class NotSignedIn(Exception):
    """No valid session or token: a 401 with ``WWW-Authenticate``."""


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
            raise NotSignedIn()
        request.state.caller = caller
        return caller


def needs(permission: Permission, on: On | None = None) -> Any:
    """The declaration a route puts in its ``dependencies`` (or takes as a parameter to
    get the :class:`Caller`)."""
    return Depends(Gate(permission, on or On.NOTHING))  # type: ignore[attr-defined]
