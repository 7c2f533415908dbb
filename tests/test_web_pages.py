"""The web pages through HTTP (starlette's client, a real database): gates and redirects,
the sign-in forms without JavaScript (the API's own checks, cookie, rate limit and audit
log), cross-site posts, sign-out with its CSRF field, the home page's scope, languages.
tests/test_web_browser.py drives the same pages in Chromium."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from web_world import (
    STUDENT,
    STUDENT_PIN,
    TEACHER,
    TEACHER_PASSWORD,
    WebWorld,
    make_world,
)

from labhub.access import passwords
from labhub.access.gate import gates_of
from labhub.access.limits import FREE_FAILURES, SignInLimiter
from labhub.access.permissions import Permission
from labhub.access.tables import audit_log
from labhub.access.who import SESSION_COOKIE
from labhub.app import create_app
from labhub.problems import _flat_routes
from labhub.settings import Settings
from labhub.web import pages
from labhub.web.pages import PageRoute

FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture
def lab(settings: Settings, engine: Engine) -> Iterator[tuple[TestClient, WebWorld]]:
    app = create_app(settings.model_copy(update={"site": "LAB-A"}))
    with TestClient(app) as client:
        yield client, make_world(engine)


def _post(client: TestClient, path: str, fields: dict[str, str], **headers: str):  # type: ignore[no-untyped-def]
    return client.post(path, content=urlencode(fields), headers=FORM | headers,
                       follow_redirects=False)


def _password(client: TestClient, password: str = TEACHER_PASSWORD, next_: str = "/",
              **headers: str):  # type: ignore[no-untyped-def]
    return _post(client, f"/signin?next={next_}",
                 {"way": "password", "name": TEACHER, "password": password}, **headers)


def _errors(html: str) -> list[str]:
    return re.findall(r'<p class="error[^"]*"[^>]*>([^<]*)</p>', html)


def _actions(engine: Engine) -> list[tuple[str, str, str]]:
    with engine.connect() as conn:
        return [(r.actor, r.action, r.outcome) for r in conn.execute(
            select(audit_log.c.actor, audit_log.c.action, audit_log.c.outcome)
            .order_by(audit_log.c.id))]


def test_every_page_declares_a_gate_and_stays_out_of_the_api_document(
        lab: tuple[TestClient, WebWorld]) -> None:
    client, _ = lab
    pages = [r for r in _flat_routes(client.app.router.routes)  # type: ignore[attr-defined]
             if isinstance(r, PageRoute)]
    assert {"/", "/signin", "/signout"} <= {r.path for r in pages}
    for route in pages:
        assert gates_of(route), route.path
        assert not route.include_in_schema, route.path
    public = {f"{m} {r.path}" for r in pages for m in r.methods
              if any(g.permission is Permission.PUBLIC for g in gates_of(r))}
    assert public == {"GET /signin", "POST /signin"}
    paths = client.get("/openapi.json").json()["paths"]  # the document is public
    assert not {r.path for r in pages} & set(paths)


def test_a_page_without_a_session_sends_the_browser_to_sign_in(
        lab: tuple[TestClient, WebWorld]) -> None:
    client, _ = lab
    r = client.get("/?lang=pt", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/signin?next=%2F%3Flang%3Dpt"
    r = _post(client, "/signout", {"csrf_token": "x"})
    assert (r.status_code, r.headers["location"]) == (303, "/signin?next=%2Fsignout")
    assert client.get("/api/v1/auth/me").status_code == 401  # the API still answers 401


def test_a_teacher_signs_in_with_the_form_and_sees_the_lab(
        lab: tuple[TestClient, WebWorld], engine: Engine) -> None:
    client, _ = lab
    r = _password(client, next_="/%3Flang%3Den")
    assert r.status_code == 303 and r.headers["location"] == "/?lang=en"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=") and "HttpOnly" in cookie
    assert "samesite=lax" in cookie.lower()
    home = client.get("/", headers={"accept-language": "es-CO,es;q=0.9"})
    assert home.status_code == 200
    assert "<h1>Hola, Ana Pérez</h1>" in home.text
    assert "Docente</span> · <span class=\"site\">LAB-A" in home.text
    assert "Estación del patio" in home.text and "Invernadero" in home.text
    assert "Estación de Nariño" not in home.text  # LAB-B is not the teacher's
    assert '<span class="kind">Placa USB</span>' in home.text
    assert 'href="/?lang=pt"' in home.text
    assert 'href="/signin?next=%2Fx&amp;lang=en"' in client.get("/signin?next=/x&lang=pt").text
    assert '<span class="status">en línea</span>' in home.text
    assert '<span class="status">sin conexión</span>' in home.text
    assert _actions(engine)[-1] == (TEACHER, "sign_in", "ok")
    # The API takes the same session.
    assert client.get("/api/v1/auth/me").json()["name"] == TEACHER


def test_a_wrong_password_is_told_beside_the_form_in_the_persons_language(
        lab: tuple[TestClient, WebWorld], engine: Engine) -> None:
    client, _ = lab
    r = _password(client, "no es esta", **{"accept-language": "pt-BR"})
    assert r.status_code == 401 and SESSION_COOKIE not in r.headers.get("set-cookie", "")
    assert _errors(r.text) == ["Nome ou senha incorretos."]
    assert f'value="{TEACHER}"' in r.text and "no es esta" not in r.text
    assert _actions(engine)[-1] == (TEACHER, "sign_in_failed", "refused")
    r = _post(client, "/signin", {"way": "password", "name": "", "password": ""})
    assert r.status_code == 422
    assert _errors(r.text) == ["Escribe tu nombre.", "Escribe tu contraseña."]
    assert 'aria-describedby="pw-name-error"' in r.text


def test_the_forms_share_the_apis_rate_limit(lab: tuple[TestClient, WebWorld]) -> None:
    client, _ = lab
    # The app's own limiter on a clock that stands still: the waits do not run out.
    client.app.state.sign_in_limiter = SignInLimiter(clock=lambda: 1000.0)  # type: ignore[attr-defined]
    statuses = [_password(client, "mal").status_code for _ in range(FREE_FAILURES + 2)]
    assert statuses == [401] * (FREE_FAILURES + 1) + [429]
    r = _password(client)  # even the right password waits now
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    assert "Demasiados intentos fallidos" in _errors(r.text)[0]
    api = client.post("/api/v1/auth/sign-in",
                      json={"name": TEACHER, "password": TEACHER_PASSWORD})
    assert api.status_code == 429


def test_a_busy_hub_asks_the_form_to_try_again_in_a_few_seconds(
        lab: tuple[TestClient, WebWorld], monkeypatch: pytest.MonkeyPatch) -> None:
    client, _ = lab
    monkeypatch.setattr(passwords, "CHECK_WAIT_S", 0.2)
    held = 0
    try:
        for _ in range(passwords.CHECKS_AT_ONCE):  # every password check slot taken
            assert passwords._CHECKS.acquire(timeout=5)
            held += 1
        r = _password(client, **{"accept-language": "es"})
    finally:
        for _ in range(held):
            passwords._CHECKS.release()
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    assert _errors(r.text) == ["El hub está ocupado: vuelve a intentarlo en unos segundos."]
    assert SESSION_COOKIE not in r.headers.get("set-cookie", "")
    assert _password(client).status_code == 303  # a slot free: the same form signs in


def test_a_student_signs_in_with_class_code_name_and_pin(
        lab: tuple[TestClient, WebWorld]) -> None:
    client, world = lab
    bad = _post(client, "/signin", {"way": "pin", "class_code": "12", "name": STUDENT,
                                    "pin": "ab"})
    assert bad.status_code == 422
    assert _errors(bad.text) == ["El código de la clase tiene 6 letras o cifras.",
                                 "El PIN tiene de 4 a 6 cifras."]
    wrong = _post(client, "/signin", {"way": "pin", "class_code": world.class_code.lower(),
                                      "name": STUDENT, "pin": "0000"})
    assert _errors(wrong.text) == ["Código de clase, nombre o PIN incorrectos."]
    r = _post(client, "/signin", {"way": "pin", "class_code": world.class_code.lower(),
                                  "name": STUDENT, "pin": STUDENT_PIN})
    assert (r.status_code, r.headers["location"]) == (303, "/")
    home = client.get("/").text
    assert f"<h1>Hola, {STUDENT}</h1>" in home  # not the account's name class-1/Sofía
    assert "Estudiante</span> · <span class=\"site\">LAB-A" in home
    assert "Estación del patio" in home and "Estación de Nariño" not in home


def test_a_sign_in_form_posted_from_another_site_is_refused(
        lab: tuple[TestClient, WebWorld]) -> None:
    client, _ = lab
    for headers in ({"origin": "http://evil.example"}, {"sec-fetch-site": "cross-site"},
                    {"sec-fetch-site": "same-site"}):
        r = _password(client, **headers)
        assert r.status_code == 403, headers
        assert "set-cookie" not in r.headers
    ok = _password(client, origin="http://testserver", **{"sec-fetch-site": "same-origin"})
    assert ok.status_code == 303


def test_after_sign_in_only_this_hubs_pages(lab: tuple[TestClient, WebWorld]) -> None:
    client, _ = lab
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        r = _password(client, next_=target)
        assert r.headers["location"] == "/", target


def test_sign_out_needs_the_sessions_csrf_value(
        lab: tuple[TestClient, WebWorld]) -> None:
    client, _ = lab
    _password(client)
    home = client.get("/").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', home)
    assert csrf is not None
    refused = _post(client, "/signout", {"csrf_token": "not-it"})
    assert refused.status_code == 403
    assert client.get("/", follow_redirects=False).status_code == 200  # still signed in
    r = _post(client, "/signout", {"csrf_token": csrf.group(1)})
    assert (r.status_code, r.headers["location"]) == (303, "/signin")
    assert f'{SESSION_COOKIE}=""' in r.headers["set-cookie"]
    client.cookies.clear()
    assert client.get("/", follow_redirects=False).status_code == 303


def test_every_page_form_of_a_session_needs_its_csrf_value(
        lab: tuple[TestClient, WebWorld]) -> None:
    """Each page route that takes a post (but the sign-in form) refuses one without the
    session's CSRF value, whatever the route: ``pages.signed_form`` is the one check, and
    the API's CSRF check leaves page paths to it."""
    client, _ = lab
    _password(client)
    posts = sorted(r.path for r in _flat_routes(client.app.router.routes)  # type: ignore[attr-defined]
                   if isinstance(r, PageRoute) and "POST" in r.methods and r.path != "/signin")
    assert "/signout" in posts
    for path in posts:
        target = re.sub(r"\{[^}]+\}", "kit-a", path)  # a device of the teacher's lab
        for fields in ({}, {"csrf_token": "not-it"}):
            r = _post(client, target, fields)
            assert r.status_code in (403, 404), (path, fields, r.status_code)
            assert "text/html" in r.headers["content-type"], path
    assert client.get("/", follow_redirects=False).status_code == 200  # still signed in


def test_the_language_comes_from_the_switch_then_the_browser_then_the_hub(
        settings: Settings, engine: Engine) -> None:
    app = create_app(settings.model_copy(update={"language": "en"}))
    with TestClient(app) as client:
        assert "<title>Sign in · LabHub</title>" in client.get("/signin").text
        assert 'lang="pt"' in client.get("/signin", headers={
            "accept-language": "fr, pt;q=0.8, es;q=0.5"}).text
        switched = client.get("/signin?lang=es", headers={"accept-language": "pt"})
        assert "<title>Iniciar sesión · LabHub</title>" in switched.text
        assert "labhub_lang=es" in switched.headers["set-cookie"]
        assert 'lang="es"' in client.get("/signin", headers={"accept-language": "pt"}).text


def test_pages_load_only_the_hubs_own_files(lab: tuple[TestClient, WebWorld]) -> None:
    client, _ = lab
    page = client.get("/signin")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert not re.search(r"<script(?![^>]*\ssrc=)", page.text)  # no inline script
    assert " style=" not in page.text and "<style" not in page.text
    assert not re.search(r'(src|href)="(https?:)?//', page.text)  # nothing from elsewhere
    loaded = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)
    assert "/static/vendor/htmx.min.js" in loaded  # npm's copy (make builds it)
    for path in loaded:
        assert client.get(path).status_code == 200, path
    assert client.get("/static/app.css").headers["content-type"].startswith("text/css")


def test_the_browser_libraries_are_pinned_and_served_with_their_licences(
        lab: tuple[TestClient, WebWorld]) -> None:
    client, _ = lab
    frontend = Path(pages.__file__).parent / "frontend"
    wanted = json.loads((frontend / "package.json").read_text())["dependencies"]
    lock = json.loads((frontend / "package-lock.json").read_text())["packages"]
    for name, version in wanted.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} is not pinned: {version}"
        assert lock[f"node_modules/{name}"]["version"] == version
        assert lock[f"node_modules/{name}"]["integrity"].startswith("sha512-")
    for file in ("htmx.min.js", "uPlot.iife.min.js", "uPlot.min.css", "htmx.LICENSE.txt",
                 "uPlot.LICENSE.txt", "barcode-detector.ponyfill.js",
                 "barcode-detector.LICENSE.txt", "zxing_reader.wasm", "zxing-wasm.LICENSE.txt"):
        assert client.get(f"/static/vendor/{file}").status_code == 200, file
    assert "htmx" in client.get("/static/vendor/htmx.min.js").text
    # The camera's QR reader: its WebAssembly from the hub (never a CDN), as WebAssembly.
    wasm = client.get("/static/vendor/zxing_reader.wasm")
    assert wasm.content.startswith(b"\0asm")
    assert wasm.headers["content-type"] == "application/wasm"
    lock_zxing = lock["node_modules/zxing-wasm"]["version"]
    assert f"zxing-wasm@{lock_zxing}/" in client.get(
        "/static/vendor/barcode-detector.ponyfill.js").text  # the glue of that very .wasm


def test_a_bad_address_gives_a_page_in_the_persons_language_never_json(
        lab: tuple[TestClient, WebWorld]) -> None:
    client, _ = lab
    _password(client)
    r = client.get("/no-such-page?lang=pt", follow_redirects=False)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert "Não encontrado: esta página, ou o que ela indica, não está neste hub." in r.text
    assert "<h1>Não encontrado</h1>" in r.text  # a heading that names the status
    assert 'href="/account">Minha conta</a>' in r.text  # the signed-in person's menu
    assert client.get("/api/v1/no-such-route").headers["content-type"] == (
        "application/problem+json")
    r = client.post("/", content=b"{}", headers={"content-type": "application/json"})
    assert r.status_code == 405
    assert r.headers["content-type"].startswith("text/html")
