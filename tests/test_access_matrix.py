"""The role x route matrix: every route of the app, asked by one real person of each role
with a real API token (made by ``labhub.access.accounts``, sent as ``Authorization:
Bearer``), on SQLite and PostgreSQL, against a small network with records at three labs.

The tree: VL (network) > VL-R1 > LAB-A, LAB-B, LAB-M (a mobile lab), LAB-Y, LAB-Z; VL >
VL-R2 > LAB-C. The people: an admin at ``*``, ministry and a coordinator at VL-R1, a
teacher and a student at LAB-A (the hub's own site). :data:`CASES` holds one request per
route, acting on records at LAB-A, and which roles it lets through (letters: Admin,
Ministry, Coordinator, Teacher, Student): for them any answer but 401 and 403 passes (a
404 or 409 is the route's own business); every other role must get a 403 whose
problem+json ``detail`` names :attr:`Case.permission`. A route of the app with no case
fails the test (docs/testing.md says how to add one).

Refused requests are all sent first, role by role, and must change no row of any table;
then the allowed ones, in the table's order, so a write that deletes or moves something
cannot turn a later refusal into a 404. Writes act on records kept for them (A-DEL is
deleted, A-MOV moved, ...).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import TEST_ALLOWED_HOSTS, _truncate_all
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select
from starlette.routing import Match

from firmware_bridge import registry
from labhub import db
from labhub.access import accounts
from labhub.access.caller import NETWORK
from labhub.access.permissions import Grant, Role
from labhub.app import create_app
from labhub.network.tables import network_conflicts
from labhub.problems import _flat_routes
from labhub.settings import Settings
from labhub.web.pages import PageRoute

V1 = "/api/v1"
HUB_SITE = "LAB-A"
BY = "Ana (coordinadora)"
DUE = int(time.time()) + 7 * 24 * 3600  # a week from now, in epoch seconds
CONFLICT_A = "3f2b8c1e-0d4a-5e6f-8a9b-1c2d3e4f5a6b"
FRAMEWORK_ROUTES = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
OUTSIDE_V1 = frozenset({"/metrics"})  # a case's url that is the whole path (Prometheus's)


def full_url(url: str) -> str:
    """A case's url as the client sends it."""
    return url if url in OUTSIDE_V1 else V1 + url

# One person per role, with the letter the table uses.
PEOPLE: dict[str, tuple[str, Grant]] = {
    "A": ("matrix-admin", Grant(Role.ADMIN, NETWORK)),
    "M": ("matrix-ministry", Grant(Role.MINISTRY, "VL-R1")),
    "C": ("matrix-coordinator", Grant(Role.COORDINATOR, "VL-R1")),
    "T": ("matrix-teacher", Grant(Role.TEACHER, "LAB-A")),
    "S": ("matrix-student", Grant(Role.STUDENT, "LAB-A")),
}
EVERYONE = "AMCTS"
READERS = "AMCT"  # inventory.read, rejects.read: not a student
MANAGERS = "AC"  # inventory.manage in region 1
LENDERS = "ACT"  # loans.write, users.manage, devices.configure, readings.ingest
PUBLIC = "public"  # a case's permission when nobody needs to be signed in


@dataclass(frozen=True)
class Case:
    """One request: ``route`` is "METHOD template" as the app declares it; ``url`` the path
    under /api/v1 with ``{key}`` for the world's ids. ``allowed`` are the letters of the
    roles that pass; a refused role's 403 names ``permission``."""

    route: str  # in ELSEWHERE only the method
    url: str
    allowed: str
    permission: str | None
    json: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    content: str | None = None
    content_type: str | None = None


def _loan(items: list[str]) -> dict[str, Any]:
    return {"items": items, "borrower": "7B", "borrower_kind": "group", "due": DUE}


def _run(site: str, device: str) -> dict[str, Any]:
    return {"title": "Sombra", "site": site, "channels": [{"device": device}]}


def _schedule(site: str, device: str) -> dict[str, Any]:
    return {"title": "Clima", "site": site, "channels": [{"device": device}], "kind": "daily",
            "start_date": "2030-03-04", "end_date": "2030-03-08", "start_time": "08:00",
            "stop_time": "12:00", "weekdays": ["mon", "tue", "wed", "thu", "fri"]}


def _reading(device: str) -> dict[str, Any]:
    return {"device": device, "readings": [{"channel": "temp", "value": 21.5}]}


STOP_ALL = {"command": "stop_all"}
CHECK_OUT = {"borrower": "7B", "borrower_kind": "group", "due": DUE}

CASES: list[Case] = [
    # -- the signed-in person's own account ------------------------------------------------
    Case("POST /api/v1/auth/sign-in", "/auth/sign-in", EVERYONE, PUBLIC,
         json={"name": "nobody", "password": "x" * 1025}),  # a 422, before any hashing
    Case("GET /api/v1/health", "/health", EVERYONE, PUBLIC),
    Case("GET /api/v1/auth/me", "/auth/me", EVERYONE, None),
    Case("PATCH /api/v1/auth/me", "/auth/me", EVERYONE, None, json={"language": "pt"}),
    Case("POST /api/v1/auth/password", "/auth/password", EVERYONE, None,  # a wrong one: 422
         json={"current_password": "not-the-password", "new_password": "new-password-1"}),
    Case("GET /api/v1/tokens", "/tokens", EVERYONE, None),
    Case("POST /api/v1/tokens", "/tokens", EVERYONE, None, json={"name": "spare"}),
    Case("DELETE /api/v1/tokens/{token_id}", "/tokens/0123456789abcdef", EVERYONE, None),
    # -- accounts, device tokens, the audit log --------------------------------------------
    Case("GET /api/v1/users", "/users", LENDERS, "users.manage"),
    Case("POST /api/v1/users", "/users", LENDERS, "users.manage",
         json={"name": "pupil-2", "grants": [{"role": "student", "site": "LAB-A"}]}),
    Case("GET /api/v1/users/{name}", "/users/pupil", LENDERS, "users.manage"),
    Case("PATCH /api/v1/users/{name}", "/users/pupil", LENDERS, "users.manage",
         json={"disabled": False}),
    Case("POST /api/v1/users/{name}/password", "/users/pupil/password", LENDERS,
         "users.manage", json={"password": "una clave larga"}),
    Case("POST /api/v1/device-tokens", "/device-tokens", LENDERS, "devices.configure",
         json={"device_id": "kit-a", "name": "nodo"}),
    Case("GET /api/v1/device-tokens", "/device-tokens", LENDERS, "devices.configure"),
    Case("DELETE /api/v1/device-tokens/{token_id}", "/device-tokens/0123456789abcdef",
         LENDERS, "devices.configure"),
    Case("GET /api/v1/audit-log", "/audit-log", "AMC", "audit_log.read"),
    # -- readings and runs -----------------------------------------------------------------
    Case("POST /api/v1/readings", "/readings", LENDERS, "readings.ingest",
         json=_reading("kit-a")),
    Case("POST /api/v1/devices/{device}/data", "/devices/kit-a/data", LENDERS,
         "readings.ingest", content="temp:21.5\n", content_type="text/plain"),
    Case("GET /api/v1/series", "/series", EVERYONE, "readings.read"),
    Case("GET /api/v1/readings", "/readings", EVERYONE, "readings.read",
         params={"device": "kit-a", "channel": "temp"}),
    Case("GET /api/v1/export.csv", "/export.csv", EVERYONE, "readings.read"),
    Case("GET /api/v1/export.json", "/export.json", EVERYONE, "readings.read"),
    Case("POST /api/v1/runs", "/runs", "ACTS", "runs.write", json=_run("LAB-A", "kit-a")),
    Case("GET /api/v1/runs", "/runs", EVERYONE, "readings.read"),
    Case("GET /api/v1/runs/{run_id}", "/runs/{run_a}", EVERYONE, "readings.read"),
    # run_a is the admin's: a student writes only the runs they started (test_web_runs.py).
    Case("POST /api/v1/runs/{run_id}/notes", "/runs/{run_a}/notes", "ACT", "runs.write",
         json={"text": "hola"}),
    Case("GET /api/v1/runs/{run_id}/readings", "/runs/{run_a}/readings", EVERYONE,
         "readings.read"),
    Case("GET /api/v1/runs/{run_id}/export.csv", "/runs/{run_a}/export.csv", EVERYONE,
         "readings.read"),
    Case("GET /api/v1/runs/{run_id}/export.json", "/runs/{run_a}/export.json", EVERYONE,
         "readings.read"),
    Case("POST /api/v1/runs/{run_id}/stop", "/runs/{run_a}/stop", "ACT", "runs.write"),
    Case("POST /api/v1/run-schedules", "/run-schedules", "ACTS", "runs.write",
         json=_schedule("LAB-A", "kit-a")),
    Case("GET /api/v1/run-schedules", "/run-schedules", EVERYONE, "readings.read"),
    Case("GET /api/v1/run-schedules/{schedule_id}", "/run-schedules/{schedule_a}", EVERYONE,
         "readings.read"),
    # schedule_del is the admin's: a student deletes only the schedules they made.
    Case("DELETE /api/v1/run-schedules/{schedule_id}", "/run-schedules/{schedule_del}",
         "ACT", "runs.write"),
    Case("GET /api/v1/rejects", "/rejects", READERS, "rejects.read"),
    Case("GET /api/v1/counters", "/counters", EVERYONE, "readings.read"),
    # -- devices and the hub's ports -------------------------------------------------------
    Case("GET /api/v1/devices", "/devices", EVERYONE, "devices.read"),
    Case("GET /api/v1/devices/{device_id}", "/devices/kit-a", EVERYONE, "devices.read"),
    Case("PATCH /api/v1/devices/{device_id}", "/devices/kit-a", LENDERS,
         "devices.configure", json={"name": "Kit A"}),
    Case("GET /api/v1/ports", "/ports", EVERYONE, "devices.read"),
    Case("PUT /api/v1/ports", "/ports", "A", "ports.manage", json={"serial_ports": []}),
    Case("GET /api/v1/network/status", "/network/status", "AMC", "network.read"),
    Case("POST /api/v1/network/sync", "/network/sync", MANAGERS, "network.manage"),
    # -- watching the hub: Prometheus's path, outside /api/v1 --------------------------------
    Case("GET /metrics", "/metrics", "A", "metrics.read"),
    Case("POST /api/v1/devices/{device_id}/commands", "/devices/kit-a/commands", "ACTS",
         "devices.stop", json=STOP_ALL),
    Case("GET /api/v1/devices/{device_id}/outputs", "/devices/kit-a/outputs", EVERYONE,
         "devices.read"),
    # -- sites and the catalogue -----------------------------------------------------------
    Case("POST /api/v1/sites", "/sites", MANAGERS, "inventory.manage",
         json={"code": "LAB-N", "name": "N", "kind": "site", "parent": "VL-R1",
               "tier": "lab_point"}),
    Case("GET /api/v1/sites", "/sites", READERS, "inventory.read"),
    Case("GET /api/v1/sites/{code:path}", "/sites/LAB-A", READERS, "inventory.read"),
    Case("PATCH /api/v1/sites/{code:path}", "/sites/LAB-A", MANAGERS, "inventory.manage",
         json={"name": "Lab A"}),
    Case("DELETE /api/v1/sites/{code:path}", "/sites/LAB-Z", MANAGERS, "inventory.manage"),
    Case("POST /api/v1/sites/{code:path}/retire", "/sites/LAB-Y/retire", MANAGERS,
         "inventory.manage", json={}),
    Case("POST /api/v1/sites/{code:path}/rollout", "/sites/LAB-A/rollout", "AM",
         "rollout.write", json={"status": "installing"}),
    Case("POST /api/v1/models", "/models", "A", "inventory.manage",
         json={"code": "NEW", "name": "New", "category": "tool"}),
    Case("GET /api/v1/models", "/models", READERS, "inventory.read"),
    Case("GET /api/v1/models/{code:path}", "/models/UNO", READERS, "inventory.read"),
    Case("PATCH /api/v1/models/{code:path}", "/models/UNO", "A", "inventory.manage",
         json={"name": "Arduino Uno R3"}),
    Case("DELETE /api/v1/models/{code:path}", "/models/MOD-DEL", "A", "inventory.manage"),
    Case("POST /api/v1/models/{code:path}/retire", "/models/MOD-RET/retire", "A",
         "inventory.manage", json={}),
    # -- assets ----------------------------------------------------------------------------
    Case("POST /api/v1/assets", "/assets", MANAGERS, "inventory.manage",
         json={"tag": "A-NEW", "model": "UNO", "site": "LAB-A"}),
    Case("GET /api/v1/assets", "/assets", READERS, "inventory.read"),
    Case("GET /api/v1/assets/by-tag/{tag:path}", "/assets/by-tag/A-1", READERS,
         "inventory.read"),
    Case("GET /api/v1/assets/by-serial/{serial:path}", "/assets/by-serial/SN-A1", READERS,
         "inventory.read"),
    Case("PATCH /api/v1/assets/by-tag/{tag:path}", "/assets/by-tag/A-1", MANAGERS,
         "inventory.manage", json={"notes": "estante 2"}),
    Case("DELETE /api/v1/assets/by-tag/{tag:path}", "/assets/by-tag/A-DEL", MANAGERS,
         "inventory.manage"),
    Case("POST /api/v1/assets/by-tag/{tag:path}/retire", "/assets/by-tag/A-RET/retire",
         MANAGERS, "inventory.manage", json={}),
    Case("POST /api/v1/assets/by-tag/{tag:path}/move", "/assets/by-tag/A-MOV/move",
         MANAGERS, "inventory.manage", json={"to_site": "LAB-B"}),
    Case("POST /api/v1/assets/by-tag/{tag:path}/status", "/assets/by-tag/A-STA/status",
         MANAGERS, "inventory.manage", json={"status": "lost"}),
    Case("GET /api/v1/history/{subject:path}", "/history/A-1", READERS, "inventory.read"),
    # -- transfers, mobile labs, rotations -------------------------------------------------
    Case("POST /api/v1/transfers", "/transfers", MANAGERS, "inventory.manage",
         json={"from_site": "LAB-A", "to_site": "LAB-B"}),
    Case("GET /api/v1/transfers", "/transfers", READERS, "inventory.read"),
    Case("GET /api/v1/transfers/{transfer_id}", "/transfers/{transfer}", READERS,
         "inventory.read"),
    Case("POST /api/v1/transfers/{transfer_id}/items", "/transfers/{transfer}/items",
         MANAGERS, "inventory.manage", json={"tags": ["A-TR2"]}),
    Case("DELETE /api/v1/transfers/{transfer_id}/items/{tag:path}",
         "/transfers/{transfer}/items/A-TR2", MANAGERS, "inventory.manage"),
    Case("POST /api/v1/transfers/{transfer_id}/ship", "/transfers/{transfer}/ship",
         MANAGERS, "inventory.manage", json={"carrier": "Luis"}),
    # The transfer goes to LAB-C: scans and receipt are the destination's (region 2).
    Case("POST /api/v1/transfers/{transfer_id}/scans", "/transfers/{transfer}/scans", "A",
         "inventory.manage", json={"tag": "A-TR"}),
    Case("POST /api/v1/transfers/{transfer_id}/receive", "/transfers/{transfer}/receive",
         "A", "inventory.manage", json={}),
    # The mobile lab is a site of region 1, not under LAB-A: the teacher does not see it.
    Case("GET /api/v1/mobile-labs/{code:path}/manifest", "/mobile-labs/LAB-M/manifest",
         "AMC", "inventory.read"),
    Case("POST /api/v1/mobile-labs/{code:path}/manifest", "/mobile-labs/LAB-M/manifest",
         MANAGERS, "inventory.manage", json={"tag": "M-2"}),
    Case("DELETE /api/v1/mobile-labs/{code:path}/manifest/{tag}",
         "/mobile-labs/LAB-M/manifest/M-2", MANAGERS, "inventory.manage"),
    Case("POST /api/v1/rotations", "/rotations", MANAGERS, "inventory.manage",
         json={"mobile_lab": "LAB-M", "name": "Ruta sur", "stops": [
             {"site": "LAB-B", "arrive_on": "2030-04-01", "depart_on": "2030-04-05"}]}),
    Case("GET /api/v1/rotations", "/rotations", READERS, "inventory.read"),
    Case("GET /api/v1/rotations/{rotation_id}", "/rotations/{rotation}", READERS,
         "inventory.read"),
    Case("POST /api/v1/rotations/{rotation_id}/stops/{seq}/arrive",
         "/rotations/{rotation}/stops/1/arrive", MANAGERS, "inventory.manage",
         json={"carrier": "Luis"}),
    Case("POST /api/v1/rotations/{rotation_id}/stops/{seq}/depart",
         "/rotations/{rotation}/stops/1/depart", MANAGERS, "inventory.manage",
         json={"carrier": "Luis"}),
    # -- locations, stock, kits ------------------------------------------------------------
    Case("POST /api/v1/locations", "/locations", MANAGERS, "inventory.manage",
         json={"site": "LAB-A", "code": "SHELF-2", "name": "Estante 2"}),
    Case("GET /api/v1/locations", "/locations", READERS, "inventory.read"),
    Case("POST /api/v1/assets/by-tag/{tag:path}/location", "/assets/by-tag/A-1/location",
         MANAGERS, "inventory.manage", json={"location": "SHELF-1"}),
    Case("GET /api/v1/stock", "/stock", READERS, "inventory.read"),
    Case("POST /api/v1/stock/receive", "/stock/receive", MANAGERS, "inventory.manage",
         json={"site": "LAB-A", "model": "CABLE", "quantity": 5}),
    Case("POST /api/v1/stock/consume", "/stock/consume", MANAGERS, "inventory.manage",
         json={"site": "LAB-A", "model": "CABLE", "quantity": 1}),
    Case("POST /api/v1/stock/adjust", "/stock/adjust", MANAGERS, "inventory.manage",
         json={"site": "LAB-A", "model": "CABLE", "quantity": 30}),
    Case("POST /api/v1/stock/threshold", "/stock/threshold", MANAGERS, "inventory.manage",
         json={"site": "LAB-A", "model": "CABLE", "threshold": 3}),
    Case("GET /api/v1/reorder", "/reorder", READERS, "inventory.read"),
    Case("GET /api/v1/kits/{tag:path}/contents", "/kits/A-KIT/contents", READERS,
         "inventory.read"),
    Case("PUT /api/v1/kits/{tag:path}/contents", "/kits/A-KIT/contents", MANAGERS,
         "inventory.manage", json={"assets": [], "parts": {"CABLE": 2}}),
    Case("GET /api/v1/kits/{tag:path}/losses", "/kits/A-KIT/losses", READERS,
         "inventory.read"),
    # -- loans and repairs -----------------------------------------------------------------
    Case("POST /api/v1/loans", "/loans", LENDERS, "loans.write", json=_loan(["A-OUT"])),
    Case("GET /api/v1/loans", "/loans", READERS, "inventory.read"),
    Case("GET /api/v1/loans/{loan_id}", "/loans/{loan_a}", READERS, "inventory.read"),
    Case("POST /api/v1/loans/{loan_id}/check-in", "/loans/{loan_a}/check-in", LENDERS,
         "loans.write", json={"returns": [{"tag": "A-LOAN"}]}),
    Case("POST /api/v1/assets/by-tag/{tag:path}/check-out", "/assets/by-tag/A-CO/check-out",
         LENDERS, "loans.write", json=CHECK_OUT),
    Case("POST /api/v1/assets/by-tag/{tag:path}/check-in", "/assets/by-tag/A-CO/check-in",
         LENDERS, "loans.write", json={}),
    Case("POST /api/v1/assets/{tag:path}/repairs", "/assets/A-FIX/repairs", LENDERS,
         "loans.write", json={"fault": "no enciende"}),
    Case("GET /api/v1/assets/{tag:path}/repairs", "/assets/A-REP/repairs", READERS,
         "inventory.read"),
    Case("POST /api/v1/repairs/{repair_id}/finish", "/repairs/{repair}/finish", LENDERS,
         "loans.write", json={"work_done": "cambio del regulador"}),
    # -- reminders and service plans ----------------------------------------------------------
    Case("GET /api/v1/reminders", "/reminders", EVERYONE, None),
    Case("GET /api/v1/assets/{tag:path}/service-plans", "/assets/A-1/service-plans", READERS,
         "inventory.read"),
    Case("PUT /api/v1/assets/{tag:path}/service-plans/{kind}",
         "/assets/A-1/service-plans/calibration", MANAGERS, "inventory.manage",
         json={"every_days": 30}),
    Case("POST /api/v1/assets/{tag:path}/service-plans/{kind}/done",
         "/assets/A-1/service-plans/calibration/done", LENDERS, "loans.write", json={}),
    Case("DELETE /api/v1/assets/{tag:path}/service-plans/{kind}",
         "/assets/A-1/service-plans/maintenance", MANAGERS, "inventory.manage"),
    # -- classes of students ----------------------------------------------------------------
    Case("POST /api/v1/classes", "/classes", LENDERS, "users.manage",
         json={"site": "LAB-A", "name": "Clase nueva"}),
    Case("GET /api/v1/classes", "/classes", LENDERS, "users.manage"),
    Case("GET /api/v1/classes/{class_id:int}", "/classes/{class_a}", LENDERS, "users.manage"),
    Case("PATCH /api/v1/classes/{class_id:int}", "/classes/{class_a}", LENDERS,
         "users.manage", json={"name": "7°B Ciencias"}),
    Case("POST /api/v1/classes/{class_id:int}/students", "/classes/{class_a}/students",
         LENDERS, "users.manage", json={"name": "Pedro"}),
    Case("POST /api/v1/classes/{class_id:int}/students/{name}/pin",
         "/classes/{class_a}/students/Lucía/pin", LENDERS, "users.manage"),
    Case("DELETE /api/v1/classes/{class_id:int}/students/{name}",
         "/classes/{class_a}/students/Borrar", LENDERS, "users.manage"),
    Case("POST /api/v1/classes/{class_id:int}/cards", "/classes/{class_a}/cards", LENDERS,
         "users.manage", json={}),
    Case("POST /api/v1/classes/{class_id:int}/cards.pdf", "/classes/{class_a}/cards.pdf",
         LENDERS, "users.manage", json={}),
    Case("POST /api/v1/classes/join", "/classes/join", EVERYONE, PUBLIC,
         json={"code": "ABCDEF", "name": "Nadie", "pin": "1234"}),
    Case("POST /api/v1/rejects/replay", "/rejects/replay", LENDERS, "readings.ingest",
         json={}),
    # -- imports, exports, labels ----------------------------------------------------------
    Case("POST /api/v1/import/{kind}", "/import/sites", MANAGERS, "inventory.manage",
         params={"dry_run": "true"}, content="code,name,kind\n", content_type="text/csv"),
    Case("GET /api/v1/export/sites.csv", "/export/sites.csv", READERS, "inventory.read"),
    Case("GET /api/v1/export/models.csv", "/export/models.csv", READERS, "inventory.read"),
    Case("GET /api/v1/export/assets.csv", "/export/assets.csv", READERS, "inventory.read"),
    Case("GET /api/v1/export/history.csv", "/export/history.csv", READERS,
         "inventory.read", params={"subject": "A-1"}),
    Case("GET /api/v1/labels.svg", "/labels.svg", READERS, "inventory.read",
         params={"tag": "A-1"}),
    Case("GET /api/v1/labels.pdf", "/labels.pdf", READERS, "inventory.read",
         params={"tag": "A-1"}),
    # -- the network's views (on a central; the matrix's hub answers 404) -----------------
    Case("GET /api/v1/network/rollout", "/network/rollout", "AMC", "network.read"),
    Case("GET /api/v1/network/use", "/network/use", "AMC", "network.read"),
    Case("GET /api/v1/network/rollout.csv", "/network/rollout.csv", "AMC", "network.read",
         params={"lang": "pt"}),
    Case("GET /api/v1/network/use.csv", "/network/use.csv", "AMC", "network.read",
         params={"lang": "en"}),
    # -- audits (last: applying one changes the lab's assets) ------------------------------
    Case("POST /api/v1/audits", "/audits", MANAGERS, "inventory.manage",
         json={"site": "LAB-B"}),
    Case("GET /api/v1/audits", "/audits", READERS, "inventory.read"),
    Case("GET /api/v1/audits/{audit_id}", "/audits/{audit_a}", READERS, "inventory.read"),
    Case("POST /api/v1/audits/{audit_id}/scans", "/audits/{audit_a}/scans", MANAGERS,
         "inventory.manage", json={"tag": "A-1"}),
    Case("POST /api/v1/audits/{audit_id}/counts", "/audits/{audit_a}/counts", MANAGERS,
         "inventory.manage", json={"model": "CABLE", "quantity": 30}),
    Case("POST /api/v1/audits/{audit_id}/finish", "/audits/{audit_a}/finish", MANAGERS,
         "inventory.manage", json={}),
    Case("GET /api/v1/audits/{audit_id}/report", "/audits/{audit_a}/report", READERS,
         "inventory.read"),
    Case("GET /api/v1/export/audit-counts.csv", "/export/audit-counts.csv", READERS,
         "inventory.read", params={"audit": "{audit_a}"}),
    Case("POST /api/v1/audits/{audit_id}/apply", "/audits/{audit_a}/apply", MANAGERS,
         "inventory.manage", json={}),
    # -- the hub's jobs (running one: an allowed role gets 202, or 409 if it is under way) --
    Case("GET /api/v1/jobs", "/jobs", "ACT", "jobs.read"),
    Case("GET /api/v1/jobs/{job_id}", "/jobs/audit-log-prune", "ACT", "jobs.read"),
    Case("POST /api/v1/jobs/{job_id}/run", "/jobs/audit-log-prune/run", "AC", "jobs.run"),
    # -- the network's conflicts ----------------------------------------------------------
    Case("GET /api/v1/network/conflicts", "/network/conflicts", "AMC", "network.read"),
    Case("POST /api/v1/network/conflicts/{conflict_id}/seen",
         "/network/conflicts/{conflict_a}/seen", "AC", "network.manage"),
    # -- the network: a lab's clock corrections (a central's; this hub answers 409) --------
    Case("POST /api/v1/network/sites/{site}/clock-corrections",
         "/network/sites/LAB-A/clock-corrections", MANAGERS, "network.manage",
         json={"from": "2026-11-02T00:00:00Z", "to": "2026-11-09T00:00:00Z",
               "shift_s": 259200}),
    Case("GET /api/v1/network/sites/{site}/clock-corrections",
         "/network/sites/LAB-A/clock-corrections", MANAGERS, "network.manage"),
    # -- the network's central (on this hub each answers 409 after its gate) ---------------
    Case("POST /api/v1/network/enrolments", "/network/enrolments", MANAGERS,
         "network.manage", json={"site": "LAB-A"}),
    Case("GET /api/v1/network/enrolments", "/network/enrolments", MANAGERS, "network.manage"),
    Case("DELETE /api/v1/network/enrolments/{enrolment_id}",
         "/network/enrolments/0123456789abcdef", MANAGERS, "network.manage"),
    Case("POST /api/v1/network/join", "/network/join", EVERYONE, PUBLIC,
         json={"token": "lhe_x", "name": "hub", "version": "1", "sent_at_us": 0}),
    Case("GET /api/v1/network/hubs", "/network/hubs", "AMC", "network.read"),
    Case("DELETE /api/v1/network/hubs/{hub_id}",
         "/network/hubs/00000000-0000-4000-8000-000000000000", MANAGERS, "network.manage"),
    Case("POST /api/v1/network/hello", "/network/hello", "", "network.sync",
         json={"health": {"version": "1", "uptime_s": 1, "free_disk_bytes": 1,
                          "backlog": 0, "devices_online": 0, "dead_letters": 0},
               "sent_at_us": 0}),
    Case("GET /api/v1/network/batches/{batch_id}",
         "/network/batches/00000000-0000-4000-8000-000000000000", "", "network.sync"),
    Case("PUT /api/v1/network/batches/{batch_id}",
         "/network/batches/00000000-0000-4000-8000-000000000000", "", "network.sync",
         content="LHB1", content_type="application/octet-stream"),
    Case("POST /api/v1/network/down", "/network/down", "", "network.sync",
         json={"positions": {}}),
    # -- signing out (last: it must leave the API tokens working) --------------------------
    Case("POST /api/v1/auth/sign-out", "/auth/sign-out", EVERYONE, None),
    Case("POST /api/v1/auth/sign-out-everywhere", "/auth/sign-out-everywhere", EVERYONE,
         None),
]

# A teacher of LAB-A acting on LAB-B (by id, tag, series or device; in the path or in the
# body), and ministry and the coordinator of region 1 acting on LAB-C: each a 403 naming
# the permission, though the role has it at its own sites.
ELSEWHERE: dict[str, list[Case]] = {
    "T": [
        Case("GET", "/sites/LAB-B", "", "inventory.read"),
        Case("GET", "/assets/by-tag/B-1", "", "inventory.read"),
        Case("GET", "/history/B-1", "", "inventory.read"),
        Case("GET", "/runs/{run_b}", "", "readings.read"),
        Case("GET", "/classes/{class_b}", "", "users.manage"),
        Case("POST", "/classes/{class_b}/students", "", "users.manage", json={"name": "Eva"}),
        Case("GET", "/readings", "", "readings.read", params={"device": "kit-b",
                                                          "channel": "temp"}),
        Case("GET", "/devices/kit-b", "", "devices.read"),
        Case("GET", "/loans/{loan_b}", "", "inventory.read"),
        Case("PATCH", "/devices/kit-b", "", "devices.configure", json={"name": "x"}),
        Case("PATCH", "/devices/kit-a", "", "devices.configure", json={"site": "LAB-B"}),
        Case("POST", "/devices/kit-b/commands", "", "devices.stop", json=STOP_ALL),
        Case("POST", "/runs/{run_b}/notes", "", "runs.write", json={"text": "hola"}),
        Case("POST", "/runs/{run_b}/stop", "", "runs.write"),
        Case("POST", "/runs", "", "runs.write", json=_run("LAB-B", "kit-b")),
        Case("GET", "/run-schedules/{schedule_b}", "", "readings.read"),
        Case("DELETE", "/run-schedules/{schedule_b}", "", "runs.write"),
        Case("POST", "/run-schedules", "", "runs.write", json=_schedule("LAB-B", "kit-b")),
        Case("POST", "/readings", "", "readings.ingest", json=_reading("kit-b")),
        Case("POST", "/devices/kit-b/data", "", "readings.ingest", content="temp:1\n",
             content_type="text/plain"),
        Case("POST", "/loans", "", "loans.write", json=_loan(["B-1"])),
        Case("POST", "/loans/{loan_b}/check-in", "", "loans.write",
             json={"returns": [{"tag": "B-LOAN"}]}),
        Case("POST", "/assets/by-tag/B-1/check-out", "", "loans.write", json=CHECK_OUT),
        Case("POST", "/assets/B-1/repairs", "", "loans.write", json={"fault": "roto"}),
        Case("POST", "/assets/B-1/service-plans/calibration/done", "", "loans.write",
             json={}),
        Case("POST", "/device-tokens", "", "devices.configure",
             json={"device_id": "kit-b", "name": "nodo"}),
        Case("POST", "/users", "", "users.manage",
             json={"name": "pupil-b", "grants": [{"role": "student", "site": "LAB-B"}]}),
    ],
    "M": [
        Case("GET", "/sites/LAB-C", "", "inventory.read"),
        Case("GET", "/assets/by-tag/C-1", "", "inventory.read"),
        Case("GET", "/devices/kit-c", "", "devices.read"),
        Case("GET", "/runs/{run_c}", "", "readings.read"),
        Case("GET", "/readings", "", "readings.read", params={"device": "kit-c",
                                                          "channel": "temp"}),
        Case("POST", "/sites/LAB-C/rollout", "", "rollout.write",
             json={"status": "installing"}),
    ],
    "C": [
        Case("GET", "/sites/LAB-C", "", "inventory.read"),
        Case("GET", "/assets/by-tag/C-1", "", "inventory.read"),
        Case("GET", "/runs/{run_c}", "", "readings.read"),
        Case("PATCH", "/assets/by-tag/C-1", "", "inventory.manage", json={"notes": "x"}),
        Case("PUT", "/assets/C-1/service-plans/calibration", "", "inventory.manage",
             json={"every_days": 30}),
        Case("POST", "/assets", "", "inventory.manage",
             json={"tag": "C-NEW", "model": "UNO", "site": "LAB-C"}),
        Case("POST", "/assets/by-tag/A-1/move", "", "inventory.manage",
             json={"to_site": "LAB-C"}),
        Case("POST", "/audits", "", "inventory.manage", json={"site": "LAB-C"}),
        Case("POST", "/stock/receive", "", "inventory.manage",
             json={"site": "LAB-C", "model": "CABLE", "quantity": 5}),
        Case("POST", "/loans", "", "loans.write", json=_loan(["C-1"])),
        Case("PATCH", "/devices/kit-c", "", "devices.configure", json={"name": "x"}),
        Case("POST", "/runs", "", "runs.write", json=_run("LAB-C", "kit-c")),
        Case("POST", "/transfers/{transfer}/scans", "", "inventory.manage",
             json={"tag": "A-TR"}),
        Case("POST", "/transfers/{transfer}/receive", "", "inventory.manage", json={}),
        Case("POST", "/sites", "", "inventory.manage",
             json={"code": "LAB-X", "name": "X", "kind": "site", "parent": "VL-R2",
                   "tier": "lab_point"}),
    ],
}


# -- the world -----------------------------------------------------------------------------

class Api:
    """Requests as the app's document wants them: ``by`` (who did it, in the inventory's
    history) goes in a body or the query only while the operation still declares it."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.document = client.app.openapi()  # type: ignore[attr-defined]
        self.routes = [r for r in _flat_routes(client.app.router.routes)  # type: ignore[attr-defined]
                       if getattr(r, "path", "") not in FRAMEWORK_ROUTES
                       # The web pages are no operations of the API (not in its document,
                       # a browser's redirect instead of a 401): tests/test_web_pages.py
                       # covers their gates. /static is the pages' files.
                       and not isinstance(r, PageRoute)
                       and not getattr(r, "path", "").startswith("/static")]

    def template(self, method: str, path: str) -> str:
        """The route "METHOD template" that ``path`` reaches."""
        scope = {"type": "http", "path": path, "method": method, "root_path": ""}
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return f"{method} {route.path}"
        raise AssertionError(f"no route takes {method} {path}")

    def _operation(self, route: str) -> dict[str, Any]:
        method, template = route.split(" ", 1)
        path = re.sub(r":(path|int)}", "}", template)
        return self.document["paths"][path][method.lower()]  # type: ignore[no-any-return]

    def send(self, case: Case, world: dict[str, str], token: str | None) -> Any:
        method = case.route.split(" ", 1)[0]
        url = full_url(case.url.format(**world))
        route = self.template(method, url)
        operation = self._operation(route)
        params = {k: str(v).format(**world) for k, v in case.params.items()}
        if any(p["name"] == "by" and p["in"] == "query"
               for p in operation.get("parameters", [])):
            params["by"] = BY
        kwargs: dict[str, Any] = {"params": params, "headers": {}}
        if case.json is not None:
            body = dict(case.json)
            schema = operation["requestBody"]["content"]["application/json"]["schema"]
            if "by" in self._schema(schema).get("properties", {}):
                body["by"] = BY
            kwargs["json"] = body
        elif case.content is not None:
            kwargs["content"] = case.content
            kwargs["headers"]["Content-Type"] = case.content_type
        if token is not None:
            kwargs["headers"]["Authorization"] = f"Bearer {token}"
        return self.client.request(method, url, **kwargs)

    def _schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            return self.document["components"]["schemas"][name]  # type: ignore[no-any-return]
        return schema

    def ok(self, method: str, path: str, token: str, json: Any = None,
           params: dict[str, Any] | None = None) -> Any:
        """A request of the world's building; it must succeed."""
        r = self.send(Case(method, path, "", None, json=json, params=params or {}), {}, token)
        assert r.status_code < 300, (method, path, r.status_code, r.text)
        return r.json() if r.content and "json" in r.headers["content-type"] else None


def _people(url: str) -> dict[str, str]:
    """One person per role (and ``pupil``, a student of LAB-A to manage), each with an API
    token, through LabHub's own account functions."""
    engine = db.make_engine(url)
    tokens = {}
    try:
        with engine.begin() as conn:
            for letter, (name, grant) in PEOPLE.items():
                user = accounts.create_user(conn, name=name, password_hash=None,
                                            grants_given=[grant])
                tokens[letter] = accounts.create_api_token(conn, user_id=user.id,
                                                           name="matrix")[1]
            accounts.create_user(conn, name="pupil", password_hash=None,
                                 grants_given=[Grant(Role.STUDENT, "LAB-A")])
    finally:
        engine.dispose()
    return tokens


def _build(api: Api, url: str, admin: str) -> dict[str, str]:
    """The tree, the catalogue, assets at labs A, B, C and the mobile lab, a device with
    readings and a run at each lab, loans at A and B, a transfer A -> C with one item, an
    open audit at A, a repair, a rotation of the mobile lab, stock and a kit."""
    for code, kind, parent, tier in [
            ("VL", "network", None, None), ("VL-R1", "region", "VL", None),
            ("VL-R2", "region", "VL", None), ("LAB-A", "site", "VL-R1", "lab_center"),
            ("LAB-B", "site", "VL-R1", "lab_point"), ("LAB-M", "site", "VL-R1", "mobile_lab"),
            ("LAB-Y", "site", "VL-R1", "lab_spark"), ("LAB-Z", "site", "VL-R1", "lab_spark"),
            ("LAB-C", "site", "VL-R2", "lab_point")]:
        api.ok("POST", "/sites", admin, {"code": code, "name": code, "kind": kind,
                                         "parent": parent, "tier": tier})
    for code, category, extra in [
            ("UNO", "microcontroller_board", {}), ("KIT", "robotics_kit", {}),
            ("MOD-DEL", "tool", {}), ("MOD-RET", "tool", {}),
            ("CABLE", "consumable", {"tracking": "counted", "unit": "pcs"})]:
        api.ok("POST", "/models", admin, {"code": code, "name": code, "category": category}
               | extra)
    tags = {"A-1": "LAB-A", "A-LOAN": "LAB-A", "A-OUT": "LAB-A", "A-CO": "LAB-A",
            "A-REP": "LAB-A", "A-FIX": "LAB-A", "A-DEL": "LAB-A", "A-RET": "LAB-A",
            "A-MOV": "LAB-A", "A-STA": "LAB-A", "A-TR": "LAB-A", "A-TR2": "LAB-A",
            "B-1": "LAB-B", "B-LOAN": "LAB-B", "C-1": "LAB-C", "M-1": "LAB-M",
            "M-2": "LAB-M"}
    for tag, site in tags.items():
        api.ok("POST", "/assets", admin, {"tag": tag, "model": "UNO", "site": site}
               | ({"serial_number": "SN-A1"} if tag == "A-1" else {}))
    api.ok("POST", "/assets", admin, {"tag": "A-KIT", "model": "KIT", "site": "LAB-A"})
    api.ok("PUT", "/kits/A-KIT/contents", admin, {"assets": [], "parts": {"CABLE": 1}})
    api.ok("POST", "/stock/receive", admin, {"site": "LAB-A", "model": "CABLE",
                                             "quantity": 20})
    api.ok("POST", "/locations", admin, {"site": "LAB-A", "code": "SHELF-1",
                                         "name": "Estante 1"})
    api.ok("POST", "/mobile-labs/LAB-M/manifest", admin, {"tag": "M-1"})
    engine = db.make_engine(url)
    try:
        with engine.begin() as conn:
            for lab in "abc":
                registry.record_seen(conn=conn, device_id=f"kit-{lab}", kind="firmata",
                                     site=f"LAB-{lab.upper()}", status="offline")
            conn.execute(insert(network_conflicts).values(
                id=CONFLICT_A, site="LAB-A", kind="assets", key="A-1", kept="{}",
                set_aside="{}", rule="owner wins", detected_at=int(time.time() * 1e6)))
    finally:
        engine.dispose()
    world = {}
    for lab in "abc":
        api.ok("POST", "/readings", admin, _reading(f"kit-{lab}"))
        world[f"run_{lab}"] = api.ok("POST", "/runs", admin,
                                     _run(f"LAB-{lab.upper()}", f"kit-{lab}"))["id"]
    for key, lab in (("schedule_a", "A"), ("schedule_del", "A"), ("schedule_b", "B")):
        world[key] = api.ok("POST", "/run-schedules", admin,
                            _schedule(f"LAB-{lab}", f"kit-{lab.lower()}"))["id"]
    world["conflict_a"] = CONFLICT_A
    world["loan_a"] = api.ok("POST", "/loans", admin, _loan(["A-LOAN"]))["id"]
    world["loan_b"] = api.ok("POST", "/loans", admin, _loan(["B-LOAN"]))["id"]
    world["transfer"] = api.ok("POST", "/transfers", admin, {
        "from_site": "LAB-A", "to_site": "LAB-C", "tags": ["A-TR"]})["id"]
    world["audit_a"] = api.ok("POST", "/audits", admin, {"site": "LAB-A"})["id"]
    world["repair"] = api.ok("POST", "/assets/A-REP/repairs", admin,
                             {"fault": "no enciende"})["id"]
    world["rotation"] = api.ok("POST", "/rotations", admin, {
        "mobile_lab": "LAB-M", "name": "Ruta norte", "stops": [
            {"site": "LAB-A", "arrive_on": "2030-03-01", "depart_on": "2030-03-05"}]})["id"]
    world["class_a"] = str(api.ok("POST", "/classes", admin, {
        "site": "LAB-A", "name": "7°B", "teacher": PEOPLE["T"][0]})["id"])
    for student in ("Lucía", "Borrar"):
        api.ok("POST", f"/classes/{world['class_a']}/students", admin, {"name": student})
    world["class_b"] = str(api.ok("POST", "/classes", admin, {
        "site": "LAB-B", "name": "8°A"})["id"])
    return world


@dataclass
class World:
    api: Api
    url: str
    tokens: dict[str, str]
    ids: dict[str, str]


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[World]:
    """One hub at LAB-A per backend, its people and records, for the whole module."""
    tmp = tmp_path_factory.mktemp("matrix")
    if request.param == "sqlite":
        url = f"sqlite:///{tmp}/labhub.db"
        engine = db.make_engine(url)
        db.upgrade(engine)
        engine.dispose()
    else:
        url = request.getfixturevalue("postgres_url")
        _truncate_all(url)
    # Module-wide: the tests' own labhub.toml (conftest) is not read yet, so the test
    # client's host is named here.
    settings = Settings(data_dir=tmp / "data", database_url=url, site=HUB_SITE,
                        serial_scan=False, allowed_hosts=list(TEST_ALLOWED_HOSTS))
    with TestClient(create_app(settings)) as client:
        api = Api(client)
        tokens = _people(url)
        yield World(api, url, tokens, _build(api, url, tokens["A"]))


@pytest.fixture
def _no_stray_threads() -> None:
    """The app lives across the module: its worker threads end with it."""


# The scheduler's bookkeeping changes on its own clock (a job every minute), not by requests.
SCHEDULER_TABLES = frozenset({"job_runs", "scheduler_jobs", "scheduler_lease"})


def _counts(url: str) -> dict[str, int]:
    """Rows of every table (but the scheduler's)."""
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                    for m in db.ALL_METADATA for t in m.sorted_tables
                    if t.name not in SCHEDULER_TABLES}
    finally:
        engine.dispose()


def _refused(r: Any, permission: str | None, what: str) -> None:
    assert r.status_code == 403, f"{what}: {r.status_code} {r.text}"
    assert r.headers["content-type"] == "application/problem+json", what
    assert f"'{permission}'" in r.json()["detail"], f"{what}: {r.json()['detail']}"


# -- the tests -----------------------------------------------------------------------------

def test_the_matrix_has_a_case_for_every_route_of_the_app(world: World) -> None:
    routes = {f"{m} {r.path}" for r in world.api.routes for m in getattr(r, "methods", ())}
    cased = [c.route for c in CASES]
    assert len(cased) == len(set(cased)), "a route with two cases"
    assert not routes - set(cased), f"routes without a case: {sorted(routes - set(cased))}"
    assert not set(cased) - routes, f"cases of no route: {sorted(set(cased) - routes)}"
    for case in CASES:  # each case's url reaches its own route
        method = case.route.split(" ", 1)[0]
        assert world.api.template(method, full_url(case.url.format(**world.ids))) == case.route


def test_nobody_signed_in_is_a_401_on_every_route_but_the_public_ones(world: World) -> None:
    for case in CASES:
        r = world.api.send(case, world.ids, None)
        if case.permission == PUBLIC:
            assert r.status_code not in (401, 403), (case.route, r.text)
            continue
        assert r.status_code == 401, (case.route, r.status_code, r.text)
        assert r.headers["WWW-Authenticate"].startswith("Bearer"), case.route
        assert r.headers["content-type"] == "application/problem+json", case.route


def test_each_role_gets_its_verdict_on_every_route(world: World) -> None:
    # Refusals first, role by role: nothing changes.
    for letter in PEOPLE:
        before = _counts(world.url)
        for case in CASES:
            if letter not in case.allowed:
                r = world.api.send(case, world.ids, world.tokens[letter])
                _refused(r, case.permission, f"{letter}: {case.route}")
        for case in ELSEWHERE.get(letter, []):
            r = world.api.send(case, world.ids, world.tokens[letter])
            _refused(r, case.permission, f"{letter}: {case.url}")
        after = _counts(world.url)
        # Nothing changed but the audit log, which records the refusals (at most one a
        # minute for each address, path and status).
        refused = [c for c in CASES if letter not in c.allowed] + ELSEWHERE.get(letter, [])
        assert (after.pop("audit_log") > before.pop("audit_log")) == bool(refused), letter
        assert after == before, f"a refusal to {letter} changed rows"
    # Then what each role may do: anything but 401 or 403.
    for case in CASES:
        for letter in case.allowed:
            r = world.api.send(case, world.ids, world.tokens[letter])
            assert r.status_code not in (401, 403), (letter, case.route, r.text)
            assert r.status_code < 500, (letter, case.route, r.text)



def test_the_gate_judges_before_the_body_and_a_body_site_after_it(world: World) -> None:
    """Why the matrix sends valid bodies: the permission (and a record named in the path)
    is judged before the body is validated, but a site named in the body only once the
    body is valid; a body that is not JSON at all is a 422 before anything."""
    c = world.api.client
    student = {"Authorization": f"Bearer {world.tokens['S']}",
               "Content-Type": "application/json"}
    for body in ("{}", '{"tag": 5}'):
        _refused(c.post(V1 + "/assets", content=body, headers=student), "inventory.manage",
                 f"student, {body}")
    assert c.post(V1 + "/assets", content="not json", headers=student).status_code == 422
    teacher = student | {"Authorization": f"Bearer {world.tokens['T']}"}
    r = c.post(V1 + "/loans", content='{"items": ["B-1"]}', headers=teacher)
    assert r.status_code == 422, r.text
