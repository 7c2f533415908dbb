"""Permissions and roles: the one table of who may do what (``docs/security.md`` shows
it in words).

A role is always given at a site of the inventory's tree and covers that site and every
site under it (:class:`Grant`). A person may hold several grants. An API token carries a
subset of its person's permissions; a device token carries only ``readings.ingest`` for
its own device.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Permission(StrEnum):
    """What a route needs. ``public`` and ``signed_in`` are not given by roles: the first
    needs nobody, the second anyone signed in."""

    PUBLIC = "public"  # health, the sign-in itself
    SIGNED_IN = "signed_in"  # one's own account, sessions and tokens
    READINGS_READ = "readings.read"  # series, readings, exports, counters, runs
    READINGS_INGEST = "readings.ingest"  # uploads of readings (device tokens too)
    RUNS_WRITE = "runs.write"  # start and stop runs, notes (a student: their own)
    REJECTS_READ = "rejects.read"  # dead letters
    DEVICES_READ = "devices.read"  # devices, their status and outputs
    DEVICES_CONFIGURE = "devices.configure"  # settings, outputs, servo ranges, calibration
    DEVICES_COMMAND = "devices.command"  # drive motors and outputs
    DEVICES_STOP = "devices.stop"  # stop_all: anyone signed in at the lab
    PORTS_MANAGE = "ports.manage"  # the hub's own serial ports (the machine, not a site)
    INVENTORY_READ = "inventory.read"
    INVENTORY_MANAGE = "inventory.manage"  # sites, models, assets, stock, transfers, audits
    LOANS_WRITE = "loans.write"  # check-out and check-in, repairs
    ROLLOUT_WRITE = "rollout.write"  # a lab site's rollout status
    USERS_MANAGE = "users.manage"  # accounts of lower roles, classes, PIN resets
    AUDIT_LOG_READ = "audit_log.read"
    # the network (docs/network.md), on the central: its labs' hubs, rollout and use
    NETWORK_READ = "network.read"
    # enrolment tokens, revoking a hub, clock corrections, conflicts seen
    NETWORK_MANAGE = "network.manage"
    # a hub's own sync with the central: hub credentials only, no person's role
    NETWORK_SYNC = "network.sync"
    # the hub's routine work (docs/operations.md): its jobs, their runs, running one now
    JOBS_READ = "jobs.read"
    JOBS_RUN = "jobs.run"
    # /metrics for Prometheus (a token with this scope, or an admin)
    METRICS_READ = "metrics.read"


class Role(StrEnum):
    """Highest first: a role may manage accounts only of roles below its own."""

    ADMIN = "admin"
    MINISTRY = "ministry"
    COORDINATOR = "coordinator"
    TEACHER = "teacher"
    STUDENT = "student"


P = Permission
_READS = frozenset({P.READINGS_READ, P.REJECTS_READ, P.DEVICES_READ, P.INVENTORY_READ})

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(P) - {P.PUBLIC, P.SIGNED_IN, P.NETWORK_SYNC},
    Role.MINISTRY: _READS | {P.ROLLOUT_WRITE, P.AUDIT_LOG_READ, P.NETWORK_READ},
    Role.COORDINATOR: _READS | {
        P.READINGS_INGEST, P.RUNS_WRITE, P.DEVICES_CONFIGURE, P.DEVICES_COMMAND,
        P.DEVICES_STOP, P.INVENTORY_MANAGE, P.LOANS_WRITE, P.USERS_MANAGE, P.AUDIT_LOG_READ,
        P.NETWORK_READ, P.NETWORK_MANAGE, P.JOBS_READ, P.JOBS_RUN,
    },
    Role.TEACHER: _READS | {
        P.READINGS_INGEST, P.RUNS_WRITE, P.DEVICES_CONFIGURE, P.DEVICES_COMMAND,
        P.DEVICES_STOP, P.LOANS_WRITE, P.USERS_MANAGE, P.JOBS_READ,
    },
    # Commands to the kits of their lab only where the lab's setting allows it
    # (``Settings.student_commands``); the gate adds DEVICES_COMMAND then.
    Role.STUDENT: frozenset({P.READINGS_READ, P.DEVICES_READ, P.RUNS_WRITE, P.DEVICES_STOP}),
}

# Which roles a role may give, change or reset (a teacher: their classes' students).
MANAGES: dict[Role, frozenset[Role]] = {
    Role.ADMIN: frozenset(Role),
    Role.MINISTRY: frozenset(),
    Role.COORDINATOR: frozenset({Role.TEACHER, Role.STUDENT}),
    Role.TEACHER: frozenset({Role.STUDENT}),
    Role.STUDENT: frozenset(),
}


@dataclass(frozen=True, slots=True)
class Grant:
    """A role at a site: it covers ``site`` and every site under it."""

    role: Role
    site: str
