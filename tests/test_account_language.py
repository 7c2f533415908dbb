"""A person's own language over HTTP, on SQLite and PostgreSQL: ``GET /api/v1/auth/me``
shows it, ``PATCH /api/v1/auth/me`` sets it (null forgets it), only languages the hub has
catalogs for; a device token has no account to keep one; the pages then speak it, before
the browser's ``Accept-Language``; a language chosen in a page's header is kept too."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from labhub.access import accounts, passwords
from labhub.access.permissions import Grant, Role
from labhub.app import create_app
from labhub.settings import Settings

PASSWORD = "una clave de prueba"
NAME = "Lucía"


@pytest.fixture
def client(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        with engine.begin() as conn:
            accounts.create_user(conn, name=NAME, grants_given=[Grant(Role.TEACHER, "LAB-A")],
                                 password_hash=passwords.hash_password(PASSWORD))
        yield c


def _sign_in(client: TestClient) -> str:
    answer = client.post("/api/v1/auth/sign-in", json={"name": NAME, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    csrf: str = answer.json()["csrf_token"]
    return csrf


def _stored(engine: Engine) -> str | None:
    with engine.connect() as conn:
        user = accounts.get_user(conn, name=NAME)
        return accounts.language_of(conn, user_id=user.id)


def test_a_person_sets_shows_and_forgets_their_language(client: TestClient,
                                                       engine: Engine) -> None:
    csrf = _sign_in(client)
    assert client.get("/api/v1/auth/me").json()["language"] is None
    write = {"X-CSRF-Token": csrf}
    assert client.patch("/api/v1/auth/me", json={"language": "pt"}).status_code == 403  # CSRF
    changed = client.patch("/api/v1/auth/me", json={"language": "pt"}, headers=write)
    assert changed.status_code == 200, changed.text
    assert changed.json()["language"] == "pt" and changed.json()["name"] == NAME
    assert client.get("/api/v1/auth/me").json()["language"] == "pt"
    assert _stored(engine) == "pt"
    # A field left out changes nothing; null forgets the choice.
    assert client.patch("/api/v1/auth/me", json={}, headers=write).json()["language"] == "pt"
    forgot = client.patch("/api/v1/auth/me", json={"language": None}, headers=write)
    assert forgot.json()["language"] is None and _stored(engine) is None


@pytest.mark.parametrize("body", [{"language": "qu"}, {"language": "xx"},
                                  {"language": "Portuguese"}, {"language": 5},
                                  {"language": "pt", "theme": "dark"}])
def test_only_a_language_the_hub_has_is_kept(client: TestClient, engine: Engine,
                                             body: dict[str, object]) -> None:
    csrf = _sign_in(client)
    refused = client.patch("/api/v1/auth/me", json=body, headers={"X-CSRF-Token": csrf})
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    if body == {"language": "qu"}:  # well formed, but no catalog: the answer lists them
        assert "es, pt, en" in refused.json()["detail"]
    assert _stored(engine) is None


def test_a_device_token_has_no_language_to_keep(client: TestClient, engine: Engine) -> None:
    with engine.begin() as conn:
        _, token = accounts.create_device_token(conn, device_id="node-1", site=None,
                                                name="nodo")
    answer = client.patch("/api/v1/auth/me", json={"language": "en"},
                          headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 403


def test_the_pages_speak_the_persons_language_before_the_browsers(
        client: TestClient, engine: Engine) -> None:
    csrf = _sign_in(client)
    spanish = {"Accept-Language": "es-CO,es;q=0.9"}
    assert '<html lang="es">' in client.get("/", headers=spanish).text
    client.patch("/api/v1/auth/me", json={"language": "en"}, headers={"X-CSRF-Token": csrf})
    page = client.get("/", headers=spanish)
    assert '<html lang="en">' in page.text and "Sign out" in page.text
    # The header's switch keeps the choice in the account (no cookie needed after it).
    chosen = client.get("/?lang=pt", headers=spanish)
    assert '<html lang="pt">' in chosen.text
    assert _stored(engine) == "pt"
    client.cookies.delete("labhub_lang")
    assert '<html lang="pt">' in client.get("/", headers=spanish).text
    # Signed out, the account's choice no longer applies: the cookie's, else the browser's.
    signed_out = TestClient(client.app)
    assert '<html lang="es">' in signed_out.get("/signin", headers=spanish).text
