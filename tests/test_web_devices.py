"""The devices pages and the dead letters through HTTP (starlette's client, SQLite and
PostgreSQL): who sees which devices, the settings forms (saved through the API's own
change and read back through the API, errors beside their fields in es and pt, the 409
of two people editing at once), the calibration preview, the dead letters with their
payloads escaped, and a page (never a traceback) for bad values in a URL.
tests/test_web_devices_browser.py drives the same pages in Chromium."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from signed_in import admin_token
from sqlalchemy import Engine
from web_world import STUDENT, STUDENT_PIN, TEACHER, TEACHER_PASSWORD, WebWorld, make_world

from firmware_bridge import registry
from labhub.app import create_app
from labhub.settings import Settings
from labhub.web.devices import parse_number

FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture
def lab(settings: Settings, engine: Engine) -> Iterator[tuple[TestClient, WebWorld]]:
    app = create_app(settings.model_copy(update={"site": "LAB-A"}))
    with TestClient(app) as client:
        yield client, make_world(engine)


def _teacher(client: TestClient, lang: str = "es") -> None:
    r = client.post("/signin?next=/", content=urlencode(
        {"way": "password", "name": TEACHER, "password": TEACHER_PASSWORD}),
        headers=FORM, follow_redirects=False)
    assert r.status_code == 303, r.text
    client.cookies.set("labhub_lang", lang)


def _student(client: TestClient, world: WebWorld) -> None:
    r = client.post("/signin?next=/", content=urlencode(
        {"way": "pin", "class_code": world.class_code, "name": STUDENT, "pin": STUDENT_PIN}),
        headers=FORM, follow_redirects=False)
    assert r.status_code == 303, r.text


def _hidden(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found is not None, name
    return html.unescape(found.group(1))


def _settings_form(client: TestClient, device: str = "kit-a") -> dict[str, str]:
    page = client.get(f"/devices/{device}/settings")
    assert page.status_code == 200, page.text
    return {"csrf_token": _hidden(page.text, "csrf_token"),
            "version": _hidden(page.text, "version")}


def _post(client: TestClient, path: str, fields: dict[str, str]) -> Any:
    return client.post(path, content=urlencode(fields), headers=FORM, follow_redirects=False)


def _error_of(page: str, field_id: str) -> str:
    """The error shown beside a field: the field points at it, and it says ``text``."""
    tag = re.search(rf'<(?:input|select) id="{field_id}"[^>]*>', page)
    assert tag is not None, field_id
    assert 'aria-invalid="true"' in tag.group(0), tag.group(0)
    assert f"{field_id}-error" in tag.group(0)
    found = re.search(rf'<p class="error" id="{field_id}-error">([^<]*)</p>', page)
    assert found is not None
    return html.unescape(found.group(1))


def _api_device(client: TestClient, device: str = "kit-a") -> dict[str, Any]:
    r = client.get(f"/api/v1/devices/{device}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _readings(client: TestClient, device: str, values: dict[str, float]) -> None:
    token = admin_token(client.app.state.settings.resolved_database_url())  # type: ignore[attr-defined]
    r = client.post("/api/v1/readings", json={
        "device": device, "readings": [{"channel": k, "value": v} for k, v in values.items()]},
        headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text


def _bad_upload(client: TestClient, body: bytes) -> None:
    token = admin_token(client.app.state.settings.resolved_database_url())  # type: ignore[attr-defined]
    r = client.post("/api/v1/readings", content=body, headers={
        "Authorization": f"Bearer {token}", "content-type": "application/json"})
    assert r.status_code in (400, 422), r.text


# -- the list and one device ----------------------------------------------------------------

def test_the_list_shows_only_the_teachers_lab(lab: tuple[TestClient, WebWorld]) -> None:
    client, _ = lab
    _teacher(client)
    page = client.get("/devices")
    assert page.status_code == 200
    text = page.text
    assert "Estación del patio" in text and "Invernadero" in text
    assert "Estación de Nariño" not in text and "kit-b" not in text
    assert 'href="/devices/kit-a"' in text and 'href="/devices/kit-a2"' in text
    assert "en línea" in text and "sin conexión" in text
    assert "Lo que el hub recibió desde que arrancó" in text  # the hub's counters
    one = client.get("/devices/kit-a")
    assert one.status_code == 200
    assert 'href="/devices/kit-a/settings"' in one.text
    assert client.get("/devices/kit-b").status_code == 403  # LAB-B's
    assert "text/html" in client.get("/devices/kit-b").headers["content-type"]


def test_a_device_shows_its_channels_latest_values(lab: tuple[TestClient, WebWorld]) -> None:
    client, _ = lab
    _readings(client, "kit-a", {"temp": 21.5, "A0": 512})
    _teacher(client, "pt")
    page = client.get("/devices/kit-a").text
    assert "21,50\u00a0degC" in page or "21,50\u00a0°C" in page, page
    assert "<code>A0</code>" in page and "512,00" in page


def test_a_student_sees_devices_but_not_their_settings(
        lab: tuple[TestClient, WebWorld]) -> None:
    client, world = lab
    _student(client, world)
    assert client.get("/devices").status_code == 200
    one = client.get("/devices/kit-a")
    assert one.status_code == 200
    assert "/devices/kit-a/settings" not in one.text
    refused = client.get("/devices/kit-a/settings")
    assert refused.status_code == 403
    assert "text/html" in refused.headers["content-type"]
    csrf = _hidden(one.text, "csrf_token")
    assert _post(client, "/devices/kit-a/settings", {
        "csrf_token": csrf, "form": "device", "action": "save",
        "name": "mine now"}).status_code == 403
    assert _post(client, "/devices/kit-a/settings/preview", {
        "csrf_token": csrf, "sample": "1"}).status_code == 403
    assert client.get("/rejects").status_code == 403  # dead letters: teachers and up
    assert 'href="/rejects"' not in client.get("/devices").text  # nor in the menu


BAD_URLS = ("/devices/no-such-kit", "/devices/no-such-kit/settings", "/devices/%F0%9F%92%A5",
            "/rejects?page=0", "/rejects?page=many", "/rejects?source=" + "x" * 300)


def test_bad_values_in_a_url_give_a_page(lab: tuple[TestClient, WebWorld]) -> None:
    client, _ = lab
    _teacher(client)
    for path in BAD_URLS:
        r = client.get(path)
        assert r.status_code in (404, 422), (path, r.status_code)
        assert "text/html" in r.headers["content-type"]
        assert "<h1>" in r.text and "Traceback" not in r.text
        assert 'lang="es"' in r.text


# -- the settings ---------------------------------------------------------------------------

def test_a_channels_calibration_saves_and_the_api_reads_it_back(
        lab: tuple[TestClient, WebWorld]) -> None:
    client, _ = lab
    _teacher(client)
    fields = _settings_form(client)
    r = _post(client, "/devices/kit-a/settings", fields | {
        "form": "new-channel", "action": "save", "channel": "A0", "name": "temp_patio",
        "quantity": "temperature", "unit": "degC", "cal": "linear", "a": "0,5",
        "b": "-10"})
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/devices/kit-a/settings?saved=channel"
    channel = _api_device(client)["settings"]["channels"]["A0"]
    assert channel == {"name": "temp_patio", "quantity": "temperature", "unit": "degC",
                       "calibration": {"linear": [0.5, -10.0]}}
    page = client.get(r.headers["location"]).text
    assert "Guardado." in page
    assert 'value="0.5"' in page and 'value="-10"' in page  # the form shows it back
    # The channel's own form: a table of two points instead.
    fields = _settings_form(client)
    r = _post(client, "/devices/kit-a/settings", fields | {
        "form": "channel", "action": "save", "channel": "A0", "name": "temp_patio",
        "quantity": "temperature", "unit": "degC", "cal": "table",
        "points": "0 = -40; 1023 = 125"})
    assert r.status_code == 303, r.text
    assert _api_device(client)["settings"]["channels"]["A0"]["calibration"] == {
        "table": [[0.0, -40.0], [1023.0, 125.0]]}
    fields = _settings_form(client)
    r = _post(client, "/devices/kit-a/settings", fields | {
        "form": "channel", "action": "remove", "channel": "A0"})
    assert r.status_code == 303
    assert _api_device(client)["settings"]["channels"] == {}


def test_name_site_and_a_servo_save(lab: tuple[TestClient, WebWorld]) -> None:
    client, _ = lab
    _teacher(client)
    fields = _settings_form(client)
    r = _post(client, "/devices/kit-a/settings", fields | {
        "form": "device", "action": "save", "name": "Estación nueva", "site": "LAB-A"})
    assert r.status_code == 303, r.text
    assert _api_device(client)["name"] == "Estación nueva"
    fields = _settings_form(client)
    r = _post(client, "/devices/kit-a/settings", fields | {
        "form": "new-output", "action": "save", "pin": "9", "kind": "servo",
        "label": "brazo", "min_angle": "10", "max_angle": "170", "safe": "90"})
    assert r.status_code == 303, r.text
    outputs = _api_device(client)["settings"]["firmata"]["outputs"]
    assert outputs == {"9": {"kind": "servo", "safe": 90.0, "min_angle": 10.0,
                             "max_angle": 170.0, "label": "brazo"}}
    # A site where the teacher may not place it: refused beside the field.
    fields = _settings_form(client)
    r = _post(client, "/devices/kit-a/settings", fields | {
        "form": "device", "action": "save", "name": "Estación nueva", "site": "LAB-B"})
    assert r.status_code == 422
    assert _error_of(r.text, "dev-site") == "No puedes poner dispositivos en este sitio."
    assert _api_device(client)["site"] == "LAB-A"
    r = _post(client, "/devices/kit-a/settings", fields | {
        "form": "output", "action": "remove", "pin": "9"})
    assert r.status_code == 303
    assert _api_device(client)["settings"]["firmata"]["outputs"] == {}


@pytest.mark.parametrize(("lang", "words"), [
    ("es", {"max": "El ángulo mayor está por debajo del menor.",
            "unit": "Esta unidad no sirve para la magnitud Temperatura: escribe degC.",
            "name": "Escribe un nombre para el dispositivo."}),
    ("pt", {"max": "O ângulo maior está abaixo do menor.",
            "unit": "Esta unidade não serve para a grandeza Temperatura: escreva degC.",
            "name": "Escreva um nome para o dispositivo."}),
])
def test_errors_show_beside_their_field_in_the_persons_language(
        lab: tuple[TestClient, WebWorld], lang: str, words: dict[str, str]) -> None:
    client, _ = lab
    _teacher(client, lang)
    before = _api_device(client)
    fields = _settings_form(client)
    servo = _post(client, "/devices/kit-a/settings", fields | {
        "form": "new-output", "action": "save", "pin": "9", "kind": "servo",
        "min_angle": "170", "max_angle": "10", "safe": "90"})
    assert servo.status_code == 422
    assert _error_of(servo.text, "newout-max_angle") == words["max"]
    assert 'value="170"' in servo.text  # what was typed stays
    unit = _post(client, "/devices/kit-a/settings", fields | {
        "form": "new-channel", "action": "save", "channel": "A1",
        "quantity": "temperature", "unit": "furlongs", "cal": ""})
    assert unit.status_code == 422
    assert _error_of(unit.text, "newch-unit") == words["unit"]
    empty = _post(client, "/devices/kit-a/settings", fields | {
        "form": "device", "action": "save", "name": "  ", "site": "LAB-A"})
    assert empty.status_code == 422
    assert _error_of(empty.text, "dev-name") == words["name"]
    number = _post(client, "/devices/kit-a/settings", fields | {
        "form": "new-channel", "action": "save", "channel": "A1", "cal": "linear",
        "a": "dos"})
    assert number.status_code == 422
    assert _error_of(number.text, "newch-a")
    assert _api_device(client) == before  # nothing was saved


def test_two_teachers_editing_at_once_do_not_overwrite_each_other(
        lab: tuple[TestClient, WebWorld]) -> None:
    client, _ = lab
    _teacher(client)
    fields = _settings_form(client)  # drawn now
    first = _post(client, "/devices/kit-a/settings", fields | {
        "form": "device", "action": "save", "name": "Primero", "site": "LAB-A"})
    assert first.status_code == 303
    late = _post(client, "/devices/kit-a/settings", fields | {
        "form": "new-channel", "action": "save", "channel": "A0", "cal": "linear",
        "a": "2"})
    assert late.status_code == 409
    assert "cambió la configuración de este dispositivo mientras" in late.text
    assert 'value="Primero"' in late.text  # the page shows the settings as they are now
    assert _api_device(client)["settings"]["channels"] == {}


PREVIEWS: list[tuple[dict[str, str], str]] = [
    ({"cal": "linear", "a": "0,5", "b": "-10", "sample": "512", "quantity": "temperature"},
     "El valor crudo 512 se vuelve 246,00\u00a0°C"),
    ({"cal": "table", "points": "0 = 0; 1023 = 100", "sample": "511.5"},
     "El valor crudo 511,5 se vuelve 50,00"),
    ({"cal": "sensor", "sensor": "tmp36", "sample": "153,45"},
     "El valor crudo 153,45 se vuelve 25,00\u00a0°C"),
    ({"cal": "sensor", "sensor": "soil", "dry": "800", "wet": "300", "sample": "550"},
     "El valor crudo 550 se vuelve 50,00\u00a0%"),
    ({"cal": "", "quantity": "temperature", "unit": "degF", "sample": "212"},
     "El valor crudo 212 se vuelve 100,00\u00a0°C"),
    ({"cal": "linear", "a": "x", "sample": "3"}, "Corrige los campos marcados"),
    ({"cal": "linear", "a": "1"}, "Escribe un valor crudo para ver en qué se convierte."),
]


def test_the_preview_computes_raw_to_calibrated(lab: tuple[TestClient, WebWorld]) -> None:
    client, _ = lab
    _teacher(client)
    csrf = _settings_form(client)["csrf_token"]
    for fields, shown in PREVIEWS:
        _preview_shows(client, csrf, fields, shown)


def _preview_shows(client: TestClient, csrf: str, fields: dict[str, str], shown: str) -> None:
    r = client.post("/devices/kit-a/settings/preview", content=urlencode(
        {"channel": "A0", **fields}), headers=FORM | {"X-CSRF-Token": csrf,
                                                      "HX-Request": "true"})
    assert r.status_code == 200, r.text
    assert "<html" not in r.text  # a fragment
    assert shown in html.unescape(r.text), r.text
    # Without JavaScript: the Preview button of the same form shows it in the page.
    page = _post(client, "/devices/kit-a/settings", {
        "csrf_token": csrf, "form": "new-channel", "action": "preview", "channel": "A0",
        **fields})
    assert page.status_code in (200, 422)
    assert shown in html.unescape(page.text)
    assert _api_device(client)["settings"]["channels"] == {}  # a preview saves nothing


def test_the_preview_starts_from_the_latest_raw_value(
        lab: tuple[TestClient, WebWorld]) -> None:
    client, _ = lab
    _readings(client, "kit-a", {"A0": 300})
    _teacher(client)
    page = client.get("/devices/kit-a/settings").text
    assert re.search(r'id="ch1-sample" name="sample" type="text" value="300"', page), page


def test_numbers_read_as_people_write_them() -> None:
    assert parse_number("2,5") == 2.5
    assert parse_number(" 1 023 ") == 1023
    assert parse_number("-0.25") == -0.25
    for bad in ("", "dos", "nan", "inf", "1,2,3"):
        with pytest.raises(ValueError, match=r"."):
            parse_number(bad)


# -- dead letters ---------------------------------------------------------------------------

def test_dead_letters_show_their_reason_and_payload_escaped(
        lab: tuple[TestClient, WebWorld]) -> None:
    client, _ = lab
    script = ('{"device": "kit-a", "readings": [{"channel": "t", '
              '"value": "<script>alert(1)</script>"}]}')
    _bad_upload(client, script.encode())
    _bad_upload(client, b"{not json " + b"x" * 10_000)
    _teacher(client)
    page = client.get("/rejects")
    assert page.status_code == 200
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "Lecturas rechazadas: 2" in page.text
    assert re.search(r"<details>\s*<summary>", page.text)
    assert "Solo se muestra el comienzo: 4.000 de 10.010 bytes." in page.text
    # Newest first: the big one, then the script.
    assert page.text.index("not JSON") < page.text.index("&lt;script&gt;")
    # Filters: by device (the script's), by source.
    mine = client.get("/rejects?device=kit-a").text
    assert "&lt;script&gt;" in mine and "not JSON" not in mine
    assert "Lecturas rechazadas: 1" in mine
    assert "not JSON" not in client.get("/rejects?source=mqtt").text
    device = client.get("/devices/kit-a").text
    assert "&lt;script&gt;" in device and 'href="/rejects?device=kit-a"' in device


def test_dead_letters_page_through(lab: tuple[TestClient, WebWorld]) -> None:
    client, _ = lab
    for n in range(23):
        _bad_upload(client, f'{{"device": "kit-a", "n": {n}}}'.encode())
    _teacher(client, "en")
    first = client.get("/rejects").text
    assert "Page 1 of 2" in first and 'href="?page=2"' in first
    second = client.get("/rejects?page=2").text
    assert second.count('class="letter"') == 3
    assert '"n": 0' in html.unescape(second)  # the oldest
    by_device = client.get("/rejects?device=kit-a&page=2").text
    assert by_device.count('class="letter"') == 3
    assert 'href="?device=kit-a&amp;page=1"' in by_device


def test_a_teacher_of_another_lab_sees_none_of_lab_as_letters(
        lab: tuple[TestClient, WebWorld], engine: Engine) -> None:
    client, _ = lab
    _bad_upload(client, b'{"device": "kit-b", "x": 1}')
    with engine.begin() as conn:  # the teacher's lab is LAB-A: kit-b's letter stays hidden
        assert registry.get_device(conn=conn, device_id="kit-b").site == "LAB-B"
    _teacher(client, "en")
    page = client.get("/rejects").text
    assert "kit-b" not in page, page
    assert "Dead letters: 0" in page
    assert client.get("/rejects?device=kit-b").status_code == 200
    assert "kit-b&#34;" not in client.get("/rejects?device=kit-b").text


def test_letters_refused_for_an_unknown_site_can_be_replayed(
        lab: tuple[TestClient, WebWorld]) -> None:
    client, _ = lab
    token = admin_token(client.app.state.settings.resolved_database_url())  # type: ignore[attr-defined]
    r = client.post("/api/v1/readings", json={
        "device": "kit-a", "site": "LAB-Z", "readings": [{"channel": "temp", "value": 20}]},
        headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 422, r.text
    _teacher(client)
    page = client.get("/rejects").text
    assert 'href="/devices/kit-a">Estación del patio</a>' in page
    assert "Reprocesar lecturas rechazadas" in page
    done = _post(client, "/rejects/replay", {"csrf_token": _hidden(page, "csrf_token")})
    assert done.status_code == 303
    assert done.headers["location"] == "/rejects?stored=0&still=1"  # LAB-Z is still unknown
    assert "Reprocesadas: 0 guardadas, 1 aún rechazadas." in client.get(
        done.headers["location"]).text


def test_a_firmata_board_is_set_to_sample_slowly_and_back(
        lab: tuple[TestClient, WebWorld], engine: Engine) -> None:
    """A robot kit's board at LAB-A: "one sample every 10 minutes" is stored as
    ``firmata.sample_every_s`` 600 and shown so again; a bad number is said beside its
    field; "all the time" clears it. A board that does not speak Firmata has no such form."""
    client, _ = lab
    with engine.begin() as conn:
        registry.record_seen(conn=conn, device_id="robot-1", kind="firmata", site="LAB-A",
                             name="Kit de robótica")
    _teacher(client)
    page = client.get("/devices/robot-1/settings").text
    assert '<h2 id="sampling-title">Cada cuánto lee</h2>' in page
    assert re.search(r'id="sampling-continuous" name="mode" value="continuous" checked', page)
    assert "Todo el tiempo (cada 100 ms)" in page
    bad = _post(client, "/devices/robot-1/settings", _settings_form(client, "robot-1") | {
        "form": "sampling", "action": "save", "mode": "slow", "every": "25", "unit": "h"})
    assert bad.status_code == 422
    assert _error_of(bad.text, "sampling-every") == (
        "Escribe un número entero: de un segundo a un día (24 horas).")
    assert _api_device(client, "robot-1")["settings"]["firmata"]["sample_every_s"] is None
    saved = _post(client, "/devices/robot-1/settings", _settings_form(client, "robot-1") | {
        "form": "sampling", "action": "save", "mode": "slow", "every": "10", "unit": "min"})
    assert saved.headers["location"] == "/devices/robot-1/settings?saved=sampling"
    assert _api_device(client, "robot-1")["settings"]["firmata"]["sample_every_s"] == 600
    page = client.get("/devices/robot-1/settings").text
    assert re.search(r'id="sampling-slow" name="mode" value="slow" checked', page)
    assert 'id="sampling-every" name="every" type="text" value="10"' in page
    assert '<option value="min" selected>minutos</option>' in page
    back = _post(client, "/devices/robot-1/settings", _settings_form(client, "robot-1") | {
        "form": "sampling", "action": "save", "mode": "continuous", "every": "10",
        "unit": "min"})
    assert back.status_code == 303
    assert _api_device(client, "robot-1")["settings"]["firmata"]["sample_every_s"] is None
    # A board that sends lines: no sampling form, and a post of one is refused.
    assert 'id="sampling-title"' not in client.get("/devices/kit-a/settings").text
    refused = _post(client, "/devices/kit-a/settings", _settings_form(client) | {
        "form": "sampling", "action": "save", "mode": "slow", "every": "1", "unit": "min"})
    assert refused.status_code == 400
    assert _api_device(client)["settings"]["firmata"]["sample_every_s"] is None
