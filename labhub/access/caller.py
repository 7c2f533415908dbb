"""The caller of one request: a signed-in person, a script with a person's API token, a
sensor node with a device token, or (on a central) a lab's hub with its hub credential;
and what it may do at a site of the tree.

A hub (``via="hub"``) may do one thing: sync its own lab (``network.sync`` at
``hub_site``, nowhere else). It is not a person: routes for anyone signed in refuse it.

A grant covers its site and every site under it; :data:`NETWORK` as a grant's site means
the whole network (an admin or a ministry on a hub whose tree is still empty). Something
with no site (a board not yet placed) counts as at the hub's own site (``Settings.site``);
on a hub with no site set, only network-wide grants reach it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from labhub.access.permissions import ROLE_PERMISSIONS, Grant, Permission, Role

NETWORK = "*"


class SiteTree(Protocol):
    """The inventory's tree as the checks need it (``labhub.access.sites`` gives one per
    request, reading the database once)."""

    hub_site: str | None

    def ancestors(self, code: str) -> list[str]:
        """``code`` and the codes above it up to the top; ``[code]`` for an unknown code."""
        ...

    def subtree(self, code: str) -> frozenset[str]:
        """``code`` and the codes of every site under it."""
        ...


class Forbidden(Exception):
    """The caller lacks ``permission`` (at ``site``, when given): a 403 naming it."""

    def __init__(self, permission: Permission, site: str | None = None) -> None:
        where = f" at site {site!r}" if site else ""
        super().__init__(f"this needs the permission {permission.value!r}{where}")
        self.permission = permission
        self.site = site


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking, with their grants. ``name`` is what the history records as the
    actor; ``token_permissions`` narrows a person's rights to an API token's subset."""

    name: str
    via: Literal["session", "token", "device", "system", "hub"]
    grants: tuple[Grant, ...] = ()
    user_id: int | None = None
    token_permissions: frozenset[Permission] | None = None
    device_id: str | None = None
    address: str | None = None
    extra: frozenset[tuple[Role, Permission]] = field(default_factory=frozenset)
    # A device token's site: it may upload its own readings there and do nothing else.
    device_site: str | None = None
    # The language the person chose for the pages (labhub.web.pages.language_of).
    language: str | None = None
    # A hub's credential: the hub's id and the lab site it syncs (network.sync there only).
    hub_id: str | None = None
    hub_site: str | None = None

    @classmethod
    def system(cls, name: str = "system") -> Caller:
        """The hub itself (CLI on the hub's own machine, scheduled jobs): everything."""
        return cls(name=name, via="system", grants=(Grant(Role.ADMIN, NETWORK),))

    def _device_may(self, permission: Permission, place: str | None) -> bool:
        return permission is Permission.READINGS_INGEST and place == self.device_site

    def _gives(self, grant: Grant, permission: Permission) -> bool:
        if self.token_permissions is not None and permission not in self.token_permissions:
            return False
        return (permission in ROLE_PERMISSIONS[grant.role]
                or (grant.role, permission) in self.extra)

    def has(self, permission: Permission) -> bool:
        """Whether some grant gives ``permission`` somewhere."""
        if permission is Permission.PUBLIC:
            return True
        if self.via == "hub":
            return permission is Permission.NETWORK_SYNC and self.hub_site is not None
        if permission is Permission.SIGNED_IN:
            return True
        if self.via == "device":
            return permission is Permission.READINGS_INGEST
        return any(self._gives(g, permission) for g in self.grants)

    def can(self, permission: Permission, site: str | None, tree: SiteTree) -> bool:
        """Whether ``permission`` is given at ``site`` (None: the hub's own site)."""
        if permission is Permission.PUBLIC:
            return True
        if self.via == "hub":
            return (permission is Permission.NETWORK_SYNC and self.hub_site is not None
                    and site == self.hub_site)
        if permission is Permission.SIGNED_IN:
            return True
        place = site if site is not None else tree.hub_site
        if self.via == "device":
            return self._device_may(permission, place)
        above = set(tree.ancestors(place)) if place is not None else set()
        return any(self._gives(g, permission) and (g.site == NETWORK or g.site in above)
                   for g in self.grants)

    def require(self, permission: Permission, site: str | None, tree: SiteTree) -> None:
        """Raise :class:`Forbidden` unless :meth:`can`."""
        if not self.can(permission, site, tree):
            raise Forbidden(permission, site)

    def scope(self, permission: Permission, tree: SiteTree) -> frozenset[str] | None:
        """The site codes where ``permission`` holds, for filtering a list; None means
        everywhere (a network-wide grant). Unsited records are visible when the hub's own
        site is in the set."""
        if self.via == "hub":
            sync = permission is Permission.NETWORK_SYNC and self.hub_site is not None
            return frozenset({self.hub_site} if sync and self.hub_site else ())
        if self.via == "device":
            ingest = permission is Permission.READINGS_INGEST and self.device_site is not None
            return frozenset({self.device_site} if ingest and self.device_site else ())
        codes: set[str] = set()
        for g in self.grants:
            if not self._gives(g, permission):
                continue
            if g.site == NETWORK:
                return None
            codes |= tree.subtree(g.site)
        return frozenset(codes)
