"""Accounts over HTTP on SQLite and PostgreSQL: signing in and out, the same answer for a
wrong password and an unknown name, CSRF on cookie writes, tokens and their permissions,
the rate limit, and what the audit log keeps."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from signed_in import as_admin
from sqlalchemy import select

from labhub import db
from labhub.access import accounts, passwords
from labhub.access.caller import NETWORK, Caller
from labhub.access.limits import FREE_FAILURES
from labhub.access.permissions import Grant, Permission, Role
from labhub.access.tables import api_tokens, audit_log, users
from labhub.app import create_app
from labhub.settings import Settings

PASSWORD = "correct horse battery"


def _add(database_url: str, name: str, role: Role, site: str, password: str | None = PASSWORD
         ) -> None:
    engine = db.make_engine(database_url)
    with engine.begin() as conn:
        accounts.create_user(conn, name=name, grants_given=[Grant(role, site)],
                             password_hash=None if password is None
                             else passwords.hash_password(password))
    engine.dispose()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


def _sign_in(client: TestClient, name: str, password: str = PASSWORD) -> dict[str, str]:
    r = client.post("/api/v1/auth/sign-in", json={"name": name, "password": password})
    assert r.status_code == 200, r.text
    body: dict[str, str] = r.json()
    return body


def test_sign_in_me_and_sign_out(client: TestClient, database_url: str) -> None:
    _add(database_url, "Ana", Role.TEACHER, "VC-LP-014")
    answer = _sign_in(client, "ana")  # names compare without case
    assert answer["name"] == "Ana"
    assert answer["grants"] == [{"role": "teacher", "site": "VC-LP-014"}]
    cookie = client.cookies.get("labhub_session")
    assert cookie
    me = client.get("/api/v1/auth/me").json()
    assert me["via"] == "session" and me["csrf_token"] == answer["csrf_token"]
    assert "users.manage" in me["permissions"]
    # A write with the cookie needs the CSRF header.
    refused = client.post("/api/v1/auth/sign-out")
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    engine = db.make_engine(database_url)
    try:
        with engine.connect() as conn:
            entry = conn.execute(select(audit_log).where(audit_log.c.action == "refused")
                                 ).one()
    finally:
        engine.dispose()
    assert (entry.actor, entry.outcome, entry.target) == ("Ana", "403", "/api/v1/auth/sign-out")
    assert "missing or wrong X-CSRF-Token header" in str(entry.detail)
    done = client.post("/api/v1/auth/sign-out", headers={"X-CSRF-Token": answer["csrf_token"]})
    assert done.status_code == 204
    client.cookies.set("labhub_session", cookie)  # the old cookie no longer works
    assert client.get("/api/v1/auth/me").status_code == 401


def test_wrong_password_and_unknown_name_answer_alike(client: TestClient,
                                                      database_url: str) -> None:
    _add(database_url, "Ana", Role.TEACHER, "VC-LP-014")
    wrong = client.post("/api/v1/auth/sign-in", json={"name": "Ana", "password": "nope nope"})
    unknown = client.post("/api/v1/auth/sign-in", json={"name": "Zoe", "password": "nope no"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"]
    assert wrong.headers["www-authenticate"] == 'Bearer realm="labhub"'
    log = as_admin(client).get("/api/v1/audit-log", params={"action": "sign_in_failed"})
    assert {e["actor"] for e in log.json()["items"]} == {"Ana", "Zoe"}
    assert all(e["address"] == "testclient" for e in log.json()["items"])


def test_a_megabyte_password_is_refused_before_hashing(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed: list[int] = []  # argon2 runs: none for a password refused by its length
    real_verify, real_hash = PasswordHasher.verify, PasswordHasher.hash
    monkeypatch.setattr(PasswordHasher, "verify",
                        lambda self, *a, **k: hashed.append(1) or real_verify(self, *a, **k))
    monkeypatch.setattr(PasswordHasher, "hash",
                        lambda self, *a, **k: hashed.append(1) or real_hash(self, *a, **k))
    r = client.post("/api/v1/auth/sign-in", json={"name": "Ana", "password": "x" * 1_000_000})
    assert r.status_code == 422
    assert hashed == []
    assert len(client.app.state.sign_in_limiter) == 0  # type: ignore[attr-defined]
    # The same request with a short wrong password does run argon2 (the check can fail).
    client.post("/api/v1/auth/sign-in", json={"name": "Ana", "password": "x" * 12})
    assert hashed


def test_rehash_when_the_parameters_change(client: TestClient, database_url: str) -> None:
    engine = db.make_engine(database_url)
    weak = passwords.hasher(passwords.Argon2Parameters(1, 8 * 1024, 1)).hash(PASSWORD)
    with engine.begin() as conn:
        accounts.create_user(conn, name="Ana", password_hash=weak,
                             grants_given=[Grant(Role.STUDENT, "VC-LP-014")])
    _sign_in(client, "Ana")
    with engine.connect() as conn:
        stored = conn.execute(select(users.c.password_hash)).scalar_one()
    engine.dispose()
    assert stored != weak and not passwords.needs_rehash(stored)
    assert passwords.verify(stored, PASSWORD)


def test_rate_limit_backs_off_and_is_audited(client: TestClient, database_url: str) -> None:
    _add(database_url, "Ana", Role.TEACHER, "VC-LP-014")
    for _ in range(FREE_FAILURES + 1):
        r = client.post("/api/v1/auth/sign-in", json={"name": "Ana", "password": "wrongwrong"})
        assert r.status_code == 401
    limited = client.post("/api/v1/auth/sign-in", json={"name": "ANA", "password": PASSWORD})
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    log = as_admin(client).get("/api/v1/audit-log", params={"action": "sign_in_failed"}).json()
    outcomes = [e["outcome"] for e in log["items"]]
    assert outcomes.count("refused") == FREE_FAILURES + 1
    assert outcomes.count("rate_limited") == 1


def test_names_that_differ_only_in_normalisation_are_one(client: TestClient) -> None:
    as_admin(client)
    first = client.post("/api/v1/users", json={
        "name": "Jose\u0301", "grants": [{"role": "teacher", "site": "VC-LP-014"}]})
    assert first.status_code == 201, first.text
    second = client.post("/api/v1/users", json={
        "name": "JOSÉ", "grants": [{"role": "student", "site": "VC-LP-014"}]})
    assert second.status_code == 409


def test_tokens_subset_expiry_revocation_and_forgery(client: TestClient,
                                                     database_url: str) -> None:
    _add(database_url, "Ana", Role.TEACHER, "VC-LP-014")
    csrf = _sign_in(client, "Ana")["csrf_token"]
    headers = {"X-CSRF-Token": csrf}
    too_much = client.post("/api/v1/tokens", headers=headers,
                           json={"name": "x", "permissions": ["audit_log.read"]})
    assert too_much.status_code == 422
    made = client.post("/api/v1/tokens", headers=headers,
                       json={"name": "logger", "permissions": ["readings.read"]})
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    assert token.startswith("lhp_")
    listed = client.get("/api/v1/tokens").json()
    assert [t["name"] for t in listed] == ["logger"] and "token" not in listed[0]
    bearer = TestClient(client.app)
    with bearer:
        bearer.headers["Authorization"] = f"Bearer {token}"
        me = bearer.get("/api/v1/auth/me").json()
        assert me["via"] == "token" and me["permissions"] == ["readings.read"]
        # No CSRF header needed with a bearer token; the subset cannot grow.
        assert bearer.post("/api/v1/tokens", json={
            "name": "y", "permissions": ["devices.command"]}).status_code == 422
        bearer.headers["Authorization"] = f"Bearer {token[:-2]}xx"  # forged
        assert bearer.get("/api/v1/auth/me").status_code == 401
        assert client.delete(f"/api/v1/tokens/{made.json()['id']}",
                             headers=headers).status_code == 204
        bearer.headers["Authorization"] = f"Bearer {token}"
        assert bearer.get("/api/v1/auth/me").status_code == 401  # revoked at once
    engine = db.make_engine(database_url)
    with engine.begin() as conn:
        user = accounts.get_user(conn, name="Ana")
        _, expired = accounts.create_api_token(conn, user_id=user.id, name="old",
                                               expires_at=1)
        count = conn.execute(select(api_tokens.c.id)).all()
    engine.dispose()
    with TestClient(client.app) as other:
        other.headers["Authorization"] = f"Bearer {expired}"
        assert other.get("/api/v1/auth/me").status_code == 401
        assert other.post("/api/v1/tokens", json={"name": "z"}).status_code == 401
    engine = db.make_engine(database_url)
    with engine.connect() as conn:
        assert conn.execute(select(api_tokens.c.id)).all() == count  # nothing made
    engine.dispose()


def test_managers_give_only_the_roles_they_manage(client: TestClient,
                                                  database_url: str) -> None:
    _add(database_url, "Ana", Role.TEACHER, "VC-LP-014")
    csrf = _sign_in(client, "Ana")["csrf_token"]
    headers = {"X-CSRF-Token": csrf}
    student = client.post("/api/v1/users", headers=headers, json={
        "name": "Luis", "password": "abcdefgh",
        "grants": [{"role": "student", "site": "VC-LP-014"}]})
    assert student.status_code == 201, student.text
    teacher = client.post("/api/v1/users", headers=headers, json={
        "name": "Eva", "grants": [{"role": "teacher", "site": "VC-LP-014"}]})
    assert teacher.status_code == 403
    elsewhere = client.post("/api/v1/users", headers=headers, json={
        "name": "Eva", "grants": [{"role": "student", "site": "VC-LP-999"}]})
    assert elsewhere.status_code == 403
    network = client.post("/api/v1/users", headers=headers, json={
        "name": "Eva", "grants": [{"role": "teacher", "site": NETWORK}]})
    assert network.status_code == 422
    assert [u["name"] for u in client.get("/api/v1/users").json()] == ["Ana", "Luis"]


class _Flat:
    """A tree of two unrelated lab sites."""

    hub_site = "VC-LP-014"

    def ancestors(self, code: str) -> list[str]:
        return [code]

    def subtree(self, code: str) -> frozenset[str]:
        return frozenset({code})


def test_a_device_token_uploads_only_at_its_site(client: TestClient) -> None:
    as_admin(client)
    made = client.post("/api/v1/device-tokens", json={"device_id": "esp-a", "name": "patio"})
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    assert token.startswith("lhd_") and made.json()["site"] is None  # hub without a site
    with TestClient(client.app) as node:
        node.headers["Authorization"] = f"Bearer {token}"
        me = node.get("/api/v1/auth/me").json()
        assert me["via"] == "device" and me["permissions"] == ["readings.ingest"]
        assert node.get("/api/v1/tokens").status_code == 403  # a device has no account
        assert client.delete(f"/api/v1/device-tokens/{made.json()['id']}").status_code == 204
        assert node.get("/api/v1/auth/me").status_code == 401
    device = Caller(name="device esp-a", via="device", device_id="esp-a",
                    device_site="VC-LP-014")
    assert device.can(Permission.READINGS_INGEST, "VC-LP-014", _Flat())
    assert device.can(Permission.READINGS_INGEST, None, _Flat())  # the hub's own site
    assert not device.can(Permission.READINGS_INGEST, "VC-LP-999", _Flat())
    assert not device.can(Permission.READINGS_READ, "VC-LP-014", _Flat())
    assert device.scope(Permission.READINGS_INGEST, _Flat()) == frozenset({"VC-LP-014"})


def test_sign_out_everywhere_ends_every_session(client: TestClient, database_url: str) -> None:
    _add(database_url, "Ana", Role.TEACHER, "VC-LP-014")
    first = _sign_in(client, "Ana")
    with TestClient(client.app) as phone:
        _sign_in(phone, "Ana")
        assert phone.get("/api/v1/auth/me").status_code == 200
        ended = client.post("/api/v1/auth/sign-out-everywhere",
                            headers={"X-CSRF-Token": first["csrf_token"]})
        assert ended.json() == {"sessions_ended": 2}
        assert phone.get("/api/v1/auth/me").status_code == 401
    assert client.get("/api/v1/auth/me").status_code == 401


def test_a_person_changes_their_own_password(client: TestClient, database_url: str) -> None:
    _add(database_url, "Ana", Role.TEACHER, "VC-LP-014")
    first = _sign_in(client, "Ana")
    write = {"X-CSRF-Token": first["csrf_token"]}
    change = "/api/v1/auth/password"
    new = "a new one, longer"
    with TestClient(client.app) as phone:
        _sign_in(phone, "Ana")
        # Without the CSRF header, a wrong current password, a short new one: refused.
        assert client.post(change, json={"current_password": PASSWORD,
                                         "new_password": new}).status_code == 403
        wrong = client.post(change, headers=write, json={"current_password": "not it at all",
                                                         "new_password": new})
        assert wrong.status_code == 422 and wrong.json()["title"] == "Wrong password"
        assert wrong.json()["errors"] == [{
            "where": "body.current_password",
            "message": "this is not the account's current password"}]
        short = client.post(change, headers=write, json={"current_password": PASSWORD,
                                                         "new_password": "short"})
        assert short.status_code == 422 and "new_password" in short.text
        assert phone.get("/api/v1/auth/me").status_code == 200  # nothing changed yet
        done = client.post(change, headers=write, json={"current_password": PASSWORD,
                                                        "new_password": new})
        assert done.status_code == 200 and done.json() == {"sessions_ended": 1}
        assert phone.get("/api/v1/auth/me").status_code == 401  # the other device: out
    assert client.get("/api/v1/auth/me").status_code == 200  # this one stays
    old = client.post("/api/v1/auth/sign-in", json={"name": "Ana", "password": PASSWORD})
    assert old.status_code == 401
    _sign_in(client, "Ana", new)
    log = as_admin(client).get("/api/v1/audit-log", params={"actor": "Ana"}).json()
    actions = [e["action"] for e in log["items"]]
    assert actions.count("password_changed") == 1
    assert actions.count("password_change_failed") == 1


def test_guessing_through_the_password_change_is_held_back(
        client: TestClient, database_url: str) -> None:
    """A session left open on a lab PC: wrong current passwords count as failed sign-ins
    for the name, and a student who signs in with a PIN has no password to change."""
    _add(database_url, "Ana", Role.TEACHER, "VC-LP-014")
    write = {"X-CSRF-Token": _sign_in(client, "Ana")["csrf_token"]}
    for _ in range(FREE_FAILURES + 1):
        r = client.post("/api/v1/auth/password", headers=write,
                        json={"current_password": "a guess, wrong", "new_password": "x" * 12})
        assert r.status_code == 422
    held = client.post("/api/v1/auth/password", headers=write,
                       json={"current_password": PASSWORD, "new_password": "x" * 12})
    assert held.status_code == 429 and int(held.headers["retry-after"]) >= 1
    refused = client.post("/api/v1/auth/sign-in", json={"name": "Ana", "password": PASSWORD})
    assert refused.status_code == 429  # the same count as the sign-in page's
    _add(database_url, "Estu", Role.STUDENT, "VC-LP-014", password=None)
    engine = db.make_engine(database_url)
    try:
        with engine.begin() as conn:
            estu = accounts.get_user(conn, name="Estu")
            _, secret = accounts.create_api_token(conn, user_id=estu.id, name="estu")
    finally:
        engine.dispose()
    none = client.post("/api/v1/auth/password", headers={"Authorization": f"Bearer {secret}"},
                       json={"current_password": "anything", "new_password": "x" * 12})
    assert none.status_code == 409 and none.json()["title"] == "No password to change"


def test_a_sign_in_waits_for_a_free_check_and_is_told_to_retry_when_none_frees(
    client: TestClient, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Password checks run at most one a core at once; a sign-in that finds every slot
    taken for CHECK_WAIT_S is a 503 with Retry-After, changes nothing and counts as no
    failure, and the same sign-in passes once a slot is free."""
    _add(database_url, "Ana", Role.TEACHER, "VC-LP-014")
    monkeypatch.setattr(passwords, "CHECK_WAIT_S", 0.2)
    held = 0
    try:
        for _ in range(passwords.CHECKS_AT_ONCE):  # a spray of sign-ins holding every slot
            assert passwords._CHECKS.acquire(timeout=5)
            held += 1
        busy = client.post("/api/v1/auth/sign-in", json={"name": "Ana", "password": PASSWORD})
    finally:
        for _ in range(held):
            passwords._CHECKS.release()
    assert busy.status_code == 503, busy.text
    assert busy.headers["retry-after"] == "5"
    assert "busy checking other sign-ins" in busy.json()["detail"]
    assert "labhub_session" not in busy.cookies
    assert len(client.app.state.sign_in_limiter) == 0  # type: ignore[attr-defined]
    assert _sign_in(client, "Ana")["name"] == "Ana"
