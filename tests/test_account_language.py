"""A person's own language and account page over HTTP, on SQLite and PostgreSQL:
``GET /api/v1/auth/me`` shows the language, ``PATCH /api/v1/auth/me`` sets it (null
forgets it), only languages the hub has catalogs for; a device token has no account to
keep one; the pages then speak it, before the browser's ``Accept-Language``; a language
chosen in a page's header is kept too. ``/account`` keeps a language (errors beside the
choices) and signs out everywhere."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert

from labhub.access import accounts, passwords
from labhub.access.permissions import Grant, Role
from labhub.app import create_app
from labhub.network.inventory_tables import network_down_people
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


FORM = {"content-type": "application/x-www-form-urlencoded"}


def _post_account(client: TestClient, fields: dict[str, str], **headers: str):  # type: ignore[no-untyped-def]
    return client.post("/account", content=urlencode(fields), headers=FORM | headers,
                       follow_redirects=False)


def test_the_account_page_keeps_a_language_and_signs_out_everywhere(
        client: TestClient, engine: Engine) -> None:
    assert client.get("/account", follow_redirects=False).headers["location"] == (
        "/signin?next=%2Faccount")
    other = TestClient(client.app)  # the same person on another device
    _sign_in(other)
    csrf = _sign_in(client)
    spanish = {"Accept-Language": "es"}
    page = client.get("/account", headers=spanish).text
    assert "<h1>Mi cuenta</h1>" in page and NAME in page and "Docente" in page
    radios = re.findall(r'<input type="radio" id="language-(\w+)" name="language" '
                        r'value="(\w*)"( checked)?>', page)
    assert radios == [("es", "es", ""), ("pt", "pt", ""), ("en", "en", ""),
                      ("browser", "", " checked")]
    assert page.count("<tr") == 3  # a header row and two sessions
    assert "(este dispositivo)" in page
    # A language the hub lacks: the form again, with the error beside the choices.
    wrong = _post_account(client, {"csrf_token": csrf, "action": "language",
                                   "language": "qu"}, **spanish)
    assert wrong.status_code == 422
    assert 'aria-describedby="language-error"' in wrong.text
    assert "Elige uno de los idiomas de la lista." in wrong.text
    # Portuguese: every page after is in it, though the browser asks for Spanish.
    kept = _post_account(client, {"csrf_token": csrf, "action": "language",
                                  "language": "pt"}, **spanish)
    assert (kept.status_code, kept.headers["location"]) == (303, "/account?done=language")
    assert _stored(engine) == "pt"
    client.cookies.delete("labhub_lang")
    done = client.get("/account?done=language", headers=spanish).text
    assert '<html lang="pt">' in done and "Salvo: suas páginas agora estão em Português." in done
    assert '<html lang="pt">' in other.get("/", headers=spanish).text  # on any device
    # "As my browser is set" forgets the choice.
    _post_account(client, {"csrf_token": csrf, "action": "language", "language": ""})
    assert _stored(engine) is None
    assert '<html lang="es">' in client.get("/account", headers=spanish).text
    # Sign out everywhere: this session and the other device's end.
    out = _post_account(client, {"csrf_token": csrf, "action": "sign_out_everywhere"})
    assert (out.status_code, out.headers["location"]) == (303, "/signin")
    for device in (client, other):
        assert device.get("/account", follow_redirects=False).status_code == 303
        assert device.get("/api/v1/auth/me").status_code == 401


def test_an_account_form_without_its_action_says_so(client: TestClient) -> None:
    csrf = _sign_in(client)
    answer = _post_account(client, {"csrf_token": csrf, "action": "delete"},
                           **{"Accept-Language": "en"})
    assert answer.status_code == 422
    assert "The form did not arrive whole: try again." in answer.text


def test_the_account_page_changes_ones_own_password(client: TestClient, engine: Engine) -> None:
    """In Spanish: each mistake said beside its field, nothing changed; then the change,
    the other device signed out and this one kept; a student with a PIN gets no form."""
    other = TestClient(client.app)  # the same person on another device
    _sign_in(other)
    csrf = _sign_in(client)
    spanish = {"Accept-Language": "es"}
    page = client.get("/account", headers=spanish).text
    assert '<h2 id="password-title">Tu contraseña</h2>' in page
    assert 'autocomplete="current-password"' in page
    new = "mi nueva clave de laboratorio"

    def change(current: str, typed: str, again: str) -> Any:
        return _post_account(client, {"csrf_token": csrf, "action": "password",
                                      "current_password": current, "new_password": typed,
                                      "new_password_again": again}, **spanish)

    mismatch = change(PASSWORD, new, new + "!")
    assert mismatch.status_code == 422
    assert 'id="new-password-again-error">Las dos contraseñas nuevas no son iguales' in (
        mismatch.text)
    short = change(PASSWORD, "corta", "corta")
    assert 'id="new-password-error">La contraseña nueva necesita al menos 8 caracteres' in (
        short.text)
    wrong = change("no es la clave", new, new)
    assert wrong.status_code == 422
    assert 'id="current-password-error">Esa no es tu contraseña actual.' in (
        wrong.text)
    assert 'aria-invalid="true"' in wrong.text
    assert new not in wrong.text and "no es la clave" not in wrong.text
    assert other.get("/api/v1/auth/me").status_code == 200  # nothing changed yet
    done = change(PASSWORD, new, new)
    assert (done.status_code, done.headers["location"]) == (
        303, "/account?done=password-others")
    said = client.get("/account?done=password-others", headers=spanish).text
    assert "Guardada: tu nueva contraseña. Se cerró tu sesión en tus otros dispositivos." in said
    assert other.get("/api/v1/auth/me").status_code == 401
    assert client.get("/api/v1/auth/me").status_code == 200
    again = TestClient(client.app)
    assert again.post("/api/v1/auth/sign-in", json={"name": NAME, "password": new}
                      ).status_code == 200
    # A student who signs in with a class PIN: no password, so no form; whom to ask.
    with engine.begin() as conn:
        accounts.create_user(conn, name="Estu", grants_given=[Grant(Role.STUDENT, "LAB-A")],
                             password_hash=None)
        estu = accounts.get_user(conn, name="Estu")
        _, secret = accounts.create_api_token(conn, user_id=estu.id, name="estu")
    student = client.get("/account", headers=spanish | {"Authorization": f"Bearer {secret}"})
    assert 'id="password-title"' not in student.text
    assert ("Para cambiar tu contraseña o tu PIN, pídeselo a la coordinación de tu "
            "laboratorio o a tu docente.") in student.text


def test_a_person_the_central_keeps_changes_their_password_there(
        client: TestClient, engine: Engine) -> None:
    """On a hub in a network, the central sends its people down with their passwords: a
    change here would be undone at the next sync, so the page says where to change it and
    the API refuses (409); nothing is changed."""
    with engine.begin() as conn:
        conn.execute(insert(network_down_people).values(name_key=accounts.name_key(NAME),
                                                        at=1))
    csrf = _sign_in(client)
    page = client.get("/account", headers={"Accept-Language": "es"}).text
    assert "Tu cuenta viene de la central de la red: cambia tu contraseña allá." in page
    assert 'autocomplete="current-password"' not in page
    refused = client.post("/api/v1/auth/password", headers={"X-CSRF-Token": csrf}, json={
        "current_password": PASSWORD, "new_password": "otra clave larga"})
    assert refused.status_code == 409 and refused.json()["title"] == "Kept by the central"
    form = _post_account(client, {"csrf_token": csrf, "action": "password",
                                  "current_password": PASSWORD, "new_password": "otra clave "
                                  "larga", "new_password_again": "otra clave larga"},
                         **{"Accept-Language": "es"})
    assert form.status_code == 409 and "Tu cuenta viene de la central" in form.text
    again = TestClient(client.app)
    assert again.post("/api/v1/auth/sign-in", json={"name": NAME, "password": PASSWORD}
                      ).status_code == 200  # the old password still signs in


def test_a_manager_resets_a_central_persons_password_on_the_central(
        client: TestClient, engine: Engine) -> None:
    """The same for a reset: the API refuses it on the hub (409), the command does it, for
    a way back in while the network is down, and says it lasts until the next sync."""
    from signed_in import admin_token
    from typer.testing import CliRunner

    from labhub.cli import app as cli_app

    with engine.begin() as conn:
        conn.execute(insert(network_down_people).values(name_key=accounts.name_key(NAME),
                                                        at=1))
    token = admin_token(str(engine.url.render_as_string(hide_password=False)))
    refused = client.post(f"/api/v1/users/{NAME}/password", json={"password": "nueva clave 1"},
                          headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 409 and "reset the password there" in refused.json()["detail"]
    done = CliRunner().invoke(cli_app, ["users", "reset-password", NAME, "--password-stdin"],
                              input="nueva clave 1\n", env={
                                  "LABHUB_DATABASE_URL": engine.url.render_as_string(
                                      hide_password=False)})
    assert done.exit_code == 0, done.output
    assert f"password of {NAME} reset" in done.output
    assert "comes from the network's central" in done.output
