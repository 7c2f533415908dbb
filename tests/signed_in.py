"""Signing a test's HTTP client in: ``as_admin(TestClient(create_app(settings)))`` makes
an admin of the whole network (no password: no argon2 cost) and an API token on the app's
database, and sends the token with every request of the client."""

from __future__ import annotations

from fastapi.testclient import TestClient

from labhub import db
from labhub.access import accounts
from labhub.access.caller import NETWORK
from labhub.access.permissions import Grant, Role

TEST_ADMIN = "test-admin"


def admin_token(database_url: str, name: str = TEST_ADMIN) -> str:
    """A new API token of the admin ``name`` (made when missing) on ``database_url``."""
    engine = db.make_engine(database_url)
    try:
        if engine.dialect.name == "sqlite":
            db.upgrade(engine)  # a new file: the hub would migrate it at start too
        with engine.begin() as conn:
            user = accounts.find_user(conn, name=name) or accounts.create_user(
                conn, name=name, password_hash=None, grants_given=[Grant(Role.ADMIN, NETWORK)])
            _, token = accounts.create_api_token(conn, user_id=user.id, name="tests")
    finally:
        engine.dispose()
    return token


def person_token(database_url: str, name: str, grant: Grant) -> str:
    """A new API token of the person ``name`` (made with ``grant`` when missing) on
    ``database_url``, a database the app has migrated."""
    engine = db.make_engine(database_url)
    try:
        with engine.begin() as conn:
            user = accounts.find_user(conn, name=name) or accounts.create_user(
                conn, name=name, password_hash=None, grants_given=[grant])
            _, token = accounts.create_api_token(conn, user_id=user.id, name="tests")
    finally:
        engine.dispose()
    return token


def as_admin(client: TestClient) -> TestClient:
    """``client`` signed in as an admin at ``*`` with an API token (before or after the
    app started)."""
    settings = client.app.state.settings  # type: ignore[attr-defined]
    token = admin_token(settings.resolved_database_url())
    client.headers["Authorization"] = f"Bearer {token}"
    return client
