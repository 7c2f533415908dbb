"""Who did it, and what the audit log keeps: the history records the signed-in caller
(and who it was done for), device commands and settings changes are logged, and a refused
request (401, 403) writes one bounded audit entry and changes nothing else, nor stores
its body."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from signed_in import TEST_ADMIN, as_admin
from sqlalchemy import Engine, func, inspect, select, table
from waiting import wait_for

from firmware_bridge import registry
from firmware_bridge.sim.firmata_board import VirtualFirmataBoard
from labhub import db
from labhub.access import accounts, audit, passwords
from labhub.access.audit import US_PER_DAY
from labhub.access.limits import FREE_FAILURES_ADDRESS, SignInLimiter
from labhub.access.permissions import Grant, Role
from labhub.access.tables import audit_log
from labhub.app import create_app
from labhub.settings import Settings

V1 = "/api/v1"
DUE = int(time.time()) + 7 * 24 * 3600  # a week from now, epoch seconds


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    found = db.make_engine(database_url)
    yield found
    found.dispose()


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url,
                        serial_scan=False)
    with as_admin(TestClient(create_app(settings), raise_server_exceptions=False)) as c:
        yield c


def _ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def _rows(engine: Engine) -> dict[str, int]:
    """Rows in every table of the database."""
    names = sorted(inspect(engine).get_table_names())
    with engine.connect() as conn:
        return {n: conn.execute(select(func.count()).select_from(table(n))).scalar_one()
                for n in names}


def _refusals(engine: Engine) -> list[audit.AuditEntry]:
    with engine.connect() as conn:
        return audit.entries(conn, action="refused", limit=1000)[1]


def _lab(client: TestClient) -> None:
    for body in ({"code": "VL", "name": "ValleLabs", "kind": "network"},
                 {"code": "VL-R1", "name": "Valle", "kind": "region", "parent": "VL"},
                 {"code": "LAB-A", "name": "A", "kind": "site", "parent": "VL-R1",
                  "tier": "lab_point"},
                 {"code": "LAB-B", "name": "B", "kind": "site", "parent": "VL-R1",
                  "tier": "lab_point"}):
        _ok(client.post(f"{V1}/sites", json=body), 201)
    _ok(client.post(f"{V1}/models", json={"code": "UNO", "name": "Arduino Uno",
                                          "category": "microcontroller_board"}), 201)
    _ok(client.post(f"{V1}/assets", json={"tag": "A-1", "model": "UNO", "site": "LAB-A"}), 201)


def _person(engine: Engine, name: str, role: Role, site: str,
            expires_at: int | None = None) -> tuple[str, str]:
    """A person with one grant and an API token: (token id, token)."""
    with engine.begin() as conn:
        user = accounts.create_user(conn, name=name, password_hash=None,
                                    grants_given=[Grant(role, site)])
        made, token = accounts.create_api_token(conn, user_id=user.id, name="t",
                                                expires_at=expires_at)
    return made.id, token


# -- who did it ---------------------------------------------------------------------------


def test_the_history_records_the_signed_in_caller_and_who_it_was_for(
        client: TestClient, engine: Engine) -> None:
    _lab(client)
    before = _rows(engine)
    r = client.post(f"{V1}/assets/by-tag/A-1/check-out", json={
        "borrower": "7B", "borrower_kind": "group", "due": DUE, "by": "Someone else"})
    assert r.status_code == 422 and "by" in r.json()["detail"]
    assert _rows(engine) == before  # a body naming who did it is refused whole

    _ok(client.post(f"{V1}/assets/by-tag/A-1/check-out", json={
        "borrower": "7B", "borrower_kind": "group", "due": DUE,
        "on_behalf_of": "Lucía Pérez"}), 201)
    _ok(client.post(f"{V1}/assets/by-tag/A-1/check-in", json={"condition": "good"}))
    events = _ok(client.get(f"{V1}/history/A-1"))
    assert [(e["kind"], e["by"], e["on_behalf_of"]) for e in events] == [
        ("AssetRegistered", TEST_ADMIN, None),
        ("AssetCheckedOut", TEST_ADMIN, "Lucía Pérez"),
        ("AssetCheckedIn", TEST_ADMIN, None)]


# -- device commands and settings ---------------------------------------------------------


def test_device_commands_settings_and_ports_are_in_the_audit_log(
        client: TestClient, engine: Engine) -> None:
    with engine.begin() as conn:
        registry.record_seen(conn=conn, device_id="kit-1", kind="firmata", site=None,
                             status="offline")
    _ok(client.patch(f"{V1}/devices/kit-1", json={"name": "Mesa 3"}))
    r = client.post(f"{V1}/devices/kit-1/commands", json={"command": "stop_all"})
    assert r.status_code >= 400  # the board is not connected
    _ok(client.put(f"{V1}/ports", json={"serial_ports": ["socket://192.0.2.10:4000"]}))

    with engine.connect() as conn:
        found = {e.action: e for e in audit.entries(conn, limit=100)[1]}
    changed = found["device_changed"]
    assert (changed.actor, changed.target, changed.outcome) == (TEST_ADMIN, "kit-1", "ok")
    assert json.loads(changed.detail or "")["changed"] == {"name": "Mesa 3"}
    command = found["device_command"]
    assert (command.actor, command.target, command.outcome) == (TEST_ADMIN, "kit-1", "failed")
    assert json.loads(command.detail or "")["command"] == "stop_all"
    assert command.address is not None
    ports = found["ports_changed"]
    assert json.loads(ports.detail or "") == {"before": [],
                                              "after": ["socket://192.0.2.10:4000"]}


# -- refusals -----------------------------------------------------------------------------


def test_refused_tokens_write_one_entry_and_change_nothing(
        client: TestClient, engine: Engine) -> None:
    _lab(client)
    _, expired = _person(engine, "Caducado", Role.COORDINATOR, "LAB-A",
                         expires_at=audit.now_us() - US_PER_DAY)
    revoked_id, revoked = _person(engine, "Revocado", Role.COORDINATOR, "LAB-A")
    with engine.begin() as conn:
        accounts.revoke_api_token(conn, token_id=revoked_id)
        registry.record_seen(conn=conn, device_id="node-a", kind="mqtt", site="LAB-A",
                             status="offline")
        _, device_a = accounts.create_device_token(conn, device_id="node-a", site="LAB-A",
                                                   name="node A")
    _, student = _person(engine, "Estudiante", Role.STUDENT, "LAB-A")
    forged = "lhp_" + "x" * 43
    new_site = {"code": "LAB-Z", "name": "Z", "kind": "site", "parent": "VL-R1",
                "tier": "lab_point"}
    reading = {"device": "node-a", "site": "LAB-B",
               "readings": [{"channel": "t", "value": 21.5, "unit": "degC"}]}
    cases: list[tuple[str, str, dict[str, Any], int]] = [
        (expired, "/sites", new_site, 401),
        (revoked, "/sites", new_site, 401),
        (forged, "/sites", new_site, 401),
        (device_a, "/readings", reading, 403),  # lab A's node uploading for lab B
        (student, "/sites", new_site, 403),  # a coordinator's route
    ]
    before = _rows(engine)
    for token, path, body, status in cases:
        r = client.post(V1 + path, json=body, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == status, (path, r.text)
    after = _rows(engine)
    # one per address, path and status: the three 401s on /sites are one entry
    assert after.pop("audit_log") == before.pop("audit_log") + 3
    assert after == before
    refused = _refusals(engine)
    assert sorted((e.outcome, e.target) for e in refused) == [
        ("401", "/api/v1/sites"), ("403", "/api/v1/readings"), ("403", "/api/v1/sites")]
    assert all(e.address for e in refused)
    readings = next(e for e in refused if e.target == "/api/v1/readings")
    assert readings.actor == "device node-a" and readings.site == "LAB-B"
    first_401 = json.loads(next(e for e in refused if e.outcome == "401").detail or "")
    assert first_401["permission"] == "inventory.manage"
    assert first_401["credential"] == "person token"

    again = _rows(engine)
    for _ in range(50):  # a flood within the minute: counted, not written
        assert client.post(f"{V1}/sites", json=new_site,
                           headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    assert _rows(engine) == again


def test_a_refused_upload_stores_nothing_and_only_counts_its_bytes(
        client: TestClient, engine: Engine) -> None:
    counted = _ok(client.get(f"{V1}/counters"))["unauthenticated_bytes"]
    before = _rows(engine)
    body = json.dumps({"device": "x", "readings": [{"channel": "t", "value": "no"}] * 300})
    for path in ("/readings", "/devices/x/data?format=csv"):
        r = client.post(V1 + path, content=body.encode(),
                        headers={"Authorization": "", "content-type": "application/json"})
        assert r.status_code == 401, r.text
    after = _rows(engine)
    assert after.pop("audit_log") == before.pop("audit_log") + 2
    assert after == before  # no dead letter, no reading
    counters = _ok(client.get(f"{V1}/counters"))
    assert counters["unauthenticated_bytes"] == counted + 2 * len(body)
    assert counters["refused_requests"] >= 2


FLOOD = 1_000  # tries: every one past the address's free failures is a 429


@pytest.fixture
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Password checks at argon2's smallest parameters in this process: for a test of what
    failed sign-ins do, not of what each costs (about 0.4 s at the hub's own
    ARGON2_PARAMETERS; a flood's first 21 tries are checked)."""
    cheap = passwords.hasher(passwords.Argon2Parameters(1, 8 * 1024, 1))
    monkeypatch.setattr(passwords, "_HASHER", cheap)
    monkeypatch.setattr(passwords, "_DUMMY_HASH", cheap.hash("labhub: no such account"))


@pytest.mark.usefixtures("cheap_argon2")
def test_a_flood_of_failed_sign_ins_is_limited_and_logged_in_a_few_rows(
        client: TestClient, engine: Engine) -> None:
    anonymous = TestClient(client.app, raise_server_exceptions=False)
    # The limiter's clock stands still, so no wait runs out during the flood.
    client.app.state.sign_in_limiter = SignInLimiter(clock=lambda: 1000.0)  # type: ignore[attr-defined]
    before = _rows(engine)
    statuses: dict[int, int] = {}
    for i in range(FLOOD):
        r = anonymous.post(f"{V1}/auth/sign-in", json={"name": f"nadie{i % 7}",
                                                        "password": "no es esta"})
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
    # The address's free failures and the one that starts its wait are wrong passwords
    # (401); every later try waits (429).
    tried = FREE_FAILURES_ADDRESS + 1
    assert statuses == {401: tried, 429: FLOOD - tried}
    after = _rows(engine)
    written = after.pop("audit_log") - before.pop("audit_log")
    assert after == before
    # One entry per wrong password, and one a minute for the rate-limited ones.
    assert written == tried + 1
    with engine.connect() as conn:
        limited = audit.entries(conn, action="sign_in_failed", limit=100)[1][0]
    assert limited.outcome == "rate_limited"


def test_a_megabyte_password_and_look_alike_names_change_nothing(
        client: TestClient, engine: Engine) -> None:
    anonymous = TestClient(client.app, raise_server_exceptions=False)
    _ok(client.post(f"{V1}/users", json={"name": "Ana", "password": "una clave larga 1",
                                         "grants": [{"role": "teacher", "site": "VL"}]}), 201)
    before = _rows(engine)
    r = anonymous.post(f"{V1}/auth/sign-in", json={"name": "Ana", "password": "x" * 1_000_000})
    assert r.status_code in (413, 422), r.text
    # Fullwidth letters are the same name after NFKC: not a second account.
    r = client.post(f"{V1}/users", json={"name": "Ａｎａ", "password": "otra clave larga",
                                         "grants": [{"role": "teacher", "site": "VL"}]})
    assert r.status_code == 409, r.text
    assert _rows(engine) == before
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(audit_log)).scalar_one() == \
            before["audit_log"]


def test_a_command_that_drives_a_board_is_logged_ok(
        database_url: str, tmp_path: Path, engine: Engine) -> None:
    servo_kit = {"protocol": "firmata", "firmata": {
        "reset_wait_s": 0.3, "sampling_ms": 50, "analog_pins": [], "digital_inputs": [],
        "outputs": {"9": {"kind": "servo", "min_angle": 0, "max_angle": 180, "safe": 90}}}}
    with VirtualFirmataBoard() as board:
        settings = Settings(data_dir=tmp_path / "data", database_url=database_url,
                            serial_scan=False, firmata_ports=[board.url])
        with as_admin(TestClient(create_app(settings))) as client:
            wait_for(lambda: len(client.get(f"{V1}/devices").json()) == 1, 15, "the kit")
            kit = client.get(f"{V1}/devices").json()[0]["id"]
            _ok(client.patch(f"{V1}/devices/{kit}", json={"settings": servo_kit}))
            wait_for(lambda: client.post(f"{V1}/devices/{kit}/commands", json={
                "command": "servo", "pin": 9, "value": 200}).status_code == 200, 15,
                "the kit reopened")
    with engine.connect() as conn:
        done = [e for e in audit.entries(conn, action="device_command", limit=100)[1]
                if e.outcome == "ok"]
    assert done and done[0].actor == TEST_ADMIN and done[0].target == kit
    assert json.loads(done[0].detail or "") == {"command": "servo", "pin": 9, "value": 200,
                                                "writes": 1}
    with engine.connect() as conn:
        changed = audit.entries(conn, action="device_changed", limit=10)[1][0]
    assert json.loads(changed.detail or "")["changed"]["settings"]["firmata"]["outputs"][
        "9"]["kind"] == "servo"
