"""Errors raised by the inventory domain.

The tree::

    InventoryError
    ├── NotFoundError           a site, model or asset that is not stored
    ├── ConflictError           a code, tag or serial number that is already taken
    │   ├── WrongSiteError      a transfer scanned or received at a site it does not go to
    │   └── StaleVersionError   a write based on a version someone else has changed since
    ├── InvalidTransitionError  a change the item's current state does not allow
    │   └── InUseError          deleting a record that was used: it is retired instead
    └── InvalidValueError       a value that is not valid on its own (empty name, bad code)

Every message names the thing and the problem in words a coordinator can act on
("asset tag 'VC-0001' is already registered (model ARD-UNO-R3 at VC-LP-014)"), so the API
and the CLI can show it as it is. A service raises before it writes anything, and it
writes through the caller's connection: an error inside ``engine.begin()`` leaves the
database as it was.
"""

from __future__ import annotations


class InventoryError(Exception):
    """Base of every error the inventory domain raises on purpose."""


class NotFoundError(InventoryError):
    """A site, model or asset that is not stored.

    ``what`` names the kind of thing (``"site"``, ``"model"``, ``"asset"``) and ``key``
    the code, tag or serial number that was looked up.
    """

    def __init__(self, message: str, *, what: str, key: str) -> None:
        self.what = what
        self.key = key
        super().__init__(message)


class ConflictError(InventoryError):
    """A site code, model code, asset tag or serial number that is already taken."""


class StaleVersionError(ConflictError):
    """A write that names the version it read (``expected_version``, ``If-Match``) when the
    thing has changed since: someone else's edit won, and this one changed nothing.

    ``what`` and ``key`` name the thing (``"asset"``, ``"VC-0001"``); ``expected`` is the
    version the writer read and ``actual`` the one stored now.
    """

    def __init__(self, *, what: str, key: str, expected: int, actual: int) -> None:
        self.what = what
        self.key = key
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"{what} {key!r} is at version {actual}, not {expected}: it was changed "
            "since it was read; read it again and redo the change"
        )


class InvalidTransitionError(InventoryError):
    """A status change or move that the item's current state does not allow."""


class InUseError(InvalidTransitionError):
    """Deleting a site, model or asset that has history beyond its creation, or that other
    records use: only a record made in error and never used is deleted; this one is
    retired instead.

    ``what`` and ``key`` name the record, ``uses`` says in words what uses it
    (``"2 assets"``, ``"history: SiteRolloutChanged"``), and ``retire`` how to retire it.
    """

    def __init__(self, *, what: str, key: str, uses: list[str], retire: str) -> None:
        self.what = what
        self.key = key
        self.uses = uses
        self.retire = retire
        super().__init__(
            f"{what} {key!r} cannot be deleted: it was used ({'; '.join(uses)}). Only a "
            f"record made in error and never used is deleted; retire it instead: {retire}"
        )


class InvalidValueError(InventoryError):
    """A value that is not valid on its own: an empty name, a malformed code, an unknown status."""


class WrongSiteError(ConflictError):
    """A transfer scanned or received at a site that is not its destination.

    ``expected`` is the destination and ``actual`` the site the scanning hub is at.
    """

    def __init__(self, message: str, *, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(message)
