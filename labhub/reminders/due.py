"""What needs a person's attention today, gathered from the domains as reminders.

Each domain offers plain queries of what is due (``inventory.reminders``: loans, audits,
stock; ``inventory.service``: maintenance and calibration; ``firmware_bridge.registry
.silent_devices``: devices that went quiet). :func:`gather` turns their answers into
:class:`Reminder` items, each with

- a stable ``key`` that names the reminder and stays the same while it stays true
  (``loan-overdue:<loan uuid>:<due date>``, ``audit-due:<site>:<due date>``...): the
  digest sends a key to a person once (:mod:`labhub.reminders.digest`), and a new due
  date, a new silence or a new shortage is a new key;
- the site it belongs to and the permission needed to see it there (:data:`PERMISSIONS`:
  those who can act on it), so :func:`visible_to` keeps a person's own with the same
  ``Caller.can`` every route uses;
- a link to the page of the thing, and its facts; the words are made in the reader's
  language when shown (``labhub.web.reminders_text``), never stored.

Dates in keys and words are the lab's (``Settings.timezone``): a loan "due tomorrow" is
due before the end of tomorrow there.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, Literal
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from firmware_bridge import registry
from inventory import reminders as inventory_due
from inventory import service
from labhub.access.caller import Caller, SiteTree
from labhub.access.permissions import Permission
from labhub.settings import Settings

Kind = Literal["loan_overdue", "loan_due", "audit_due", "service_due", "stock_low",
               "device_silent"]
KINDS: Final[tuple[Kind, ...]] = ("loan_overdue", "loan_due", "audit_due", "service_due",
                                  "stock_low", "device_silent")
US_PER_HOUR: Final = 3_600_000_000

# Who sees a reminder at its site: those who can act on it. Loans and the upkeep of
# equipment: whoever lends and repairs (teachers, coordinators); audits and reorders:
# whoever manages the inventory (coordinators); a silent device: whoever sets devices up
# (teachers, coordinators; not students, who read devices but cannot fix one).
PERMISSIONS: Final[dict[Kind, Permission]] = {
    "loan_overdue": Permission.LOANS_WRITE,
    "loan_due": Permission.LOANS_WRITE,
    "audit_due": Permission.INVENTORY_MANAGE,
    "service_due": Permission.LOANS_WRITE,
    "stock_low": Permission.INVENTORY_MANAGE,
    "device_silent": Permission.DEVICES_CONFIGURE,
}


@dataclass(frozen=True, slots=True)
class Reminder:
    """One thing that needs attention: its stable key, kind, site (None: the hub's own),
    the permission to see it, the page of the thing, when it fell due, and its facts."""

    key: str
    kind: Kind
    site: str | None
    permission: Permission
    link: str  # a path of the web app, under the hub's root
    due_at: int | None  # microseconds since the epoch, UTC
    facts: dict[str, str | int | None] = field(default_factory=dict)


def _day(ts_us: int, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(ts_us / 1_000_000, tz=zone).date().isoformat()


def _end_of_tomorrow(now: int, zone: ZoneInfo) -> int:
    today = datetime.fromtimestamp(now / 1_000_000, tz=zone).date()
    start = datetime.combine(today + timedelta(days=2), datetime.min.time(), tzinfo=zone)
    return int(start.timestamp()) * 1_000_000


def gather(conn: Connection, settings: Settings, *, now: int) -> list[Reminder]:
    """Every reminder of the hub at ``now`` (microseconds, UTC), for every site, by kind
    (the order of :data:`KINDS`), then as each query gives them."""
    zone = ZoneInfo(settings.timezone)
    found: list[Reminder] = []
    for loan in inventory_due.loans_due(conn=conn, before=_end_of_tomorrow(now, zone)):
        kind: Kind = "loan_overdue" if loan.due_at < now else "loan_due"
        prefix = "loan-overdue" if kind == "loan_overdue" else "loan-due"
        found.append(Reminder(
            f"{prefix}:{loan.uuid}:{_day(loan.due_at, zone)}", kind, loan.site_code,
            PERMISSIONS[kind], f"/loans/{loan.uuid}", loan.due_at,
            {"borrower": loan.borrower, "items": loan.items_out, "site": loan.site_code}))
    for audit in inventory_due.audits_due(conn=conn, every_months=settings.audit_every_months,
                                          now=now):
        found.append(Reminder(
            f"audit-due:{audit.site_code}:{_day(audit.due_at, zone)}", "audit_due",
            audit.site_code, PERMISSIONS["audit_due"],
            "/audits?" + urlencode({"site": audit.site_code}), audit.due_at,
            {"site": audit.site_code, "site_name": audit.site_name, "last": audit.last_at}))
    for due in service.service_due(conn=conn, by=now):
        plan = due.plan
        found.append(Reminder(
            f"service-due:{plan.asset_tag}:{plan.kind}:{_day(plan.due_at, zone)}",
            "service_due", due.site_code, PERMISSIONS["service_due"],
            f"/assets/{quote(plan.asset_tag)}", plan.due_at,
            {"tag": plan.asset_tag, "service": plan.kind, "model": due.model_name,
             "site": due.site_code, "last": plan.last_done_at}))
    for low in inventory_due.stock_low(conn=conn):
        line = low.line
        found.append(Reminder(
            f"stock-low:{line.site_code}:{line.model_code}", "stock_low", line.site_code,
            PERMISSIONS["stock_low"],
            "/stock/item?" + urlencode({"site": line.site_code, "model": line.model_code}),
            None, {"site": line.site_code, "model": low.model_name, "on_hand": line.on_hand,
                   "threshold": line.threshold, "unit": line.unit}))
    if settings.device_silent_hours > 0:
        since = now - settings.device_silent_hours * US_PER_HOUR
        for device in registry.silent_devices(conn=conn, since=since):
            found.append(Reminder(
                f"device-silent:{device.id}:{device.last_seen}", "device_silent", device.site,
                PERMISSIONS["device_silent"], f"/devices/{quote(device.id, safe='')}",
                device.last_seen, {"device": device.name, "site": device.site,
                                   "last": device.last_seen}))
    return found


def visible_to(reminders: Iterable[Reminder], caller: Caller, tree: SiteTree,
               site: str | None = None) -> list[Reminder]:
    """The reminders ``caller`` may see (their permission at their site), and with
    ``site`` only those at it or under it."""
    under = None if site is None else tree.subtree(site)
    return [r for r in reminders if caller.can(r.permission, r.site, tree)
            and (under is None or (r.site if r.site is not None else tree.hub_site) in under)]


def by_kind(reminders: Iterable[Reminder]) -> list[tuple[Kind, list[Reminder]]]:
    """The reminders grouped by kind, in the order of :data:`KINDS`, empty kinds left out."""
    groups: dict[Kind, list[Reminder]] = {}
    for r in reminders:
        groups.setdefault(r.kind, []).append(r)
    return [(kind, groups[kind]) for kind in KINDS if kind in groups]
