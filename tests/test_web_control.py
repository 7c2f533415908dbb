"""A robot kit's control panel through HTTP (starlette's client, a real database, a
virtual Firmata board on a pseudo-terminal that the hub drives byte for byte): who sees
which controls, the forms without JavaScript (their CSRF field, the API's own rules, a
303 back to the panel) and a refused command's words in the person's language.
tests/test_web_control_browser.py drives the same panel in Chromium."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from waiting import wait_for
from web_world import (
    STUDENT,
    STUDENT_PIN,
    TEACHER,
    TEACHER_PASSWORD,
    WebWorld,
    make_world,
    password_hash,
)

from firmware_bridge import registry
from firmware_bridge.errors import DeviceReopeningError
from firmware_bridge.sim.firmata_board import VirtualFirmataBoard
from labhub.access import accounts
from labhub.access.permissions import Grant, Role
from labhub.access.tables import audit_log
from labhub.app import create_app
from labhub.settings import Settings

FORM = {"content-type": "application/x-www-form-urlencoded"}
OTHER_TEACHER = "Luis Gómez"  # a teacher of LAB-B
OTHER_PASSWORD = "otra clave de prueba"
# The demo's robot kit (labhub.cli demo): an LED, a motor, a servo arm.
ROBOT = {"protocol": "firmata", "firmata": {
    "reset_wait_s": 0.3, "sampling_ms": 100, "analog_pins": [], "digital_inputs": [],
    "outputs": {"13": {"kind": "digital", "label": "LED"},
                "5": {"kind": "pwm", "label": "motor"},
                "9": {"kind": "servo", "min_angle": 0, "max_angle": 180, "safe": 90,
                      "label": "arm"}}}}


@dataclass
class Lab:
    client: TestClient
    world: WebWorld
    board: VirtualFirmataBoard
    kit: str

    @property
    def panel(self) -> str:
        return f"/devices/{self.kit}/control"


def attach_robot(engine: Engine, hub: Any, board: VirtualFirmataBoard) -> str:
    """The id of the board the hub found on its Firmata port, once it is open with the
    robot's outputs declared."""
    def found() -> str | None:
        with engine.connect() as conn:
            kits = [d for d in registry.list_devices(conn=conn) if d.kind == "firmata"]
        return kits[0].id if kits else None

    wait_for(lambda: found() is not None, 15, "the virtual board")
    kit = found()
    assert kit is not None
    hub.reconfigure(kit, settings=ROBOT)

    def ready() -> bool:
        try:
            return set(hub.outputs(kit)) == {13, 5, 9}
        except Exception:
            return False

    wait_for(ready, 15, "the robot's outputs")
    return kit


@pytest.fixture
def lab(settings: Settings, engine: Engine) -> Iterator[Lab]:
    world = make_world(engine)
    with engine.begin() as conn:
        accounts.create_user(
            conn, name=OTHER_TEACHER, password_hash=password_hash(OTHER_PASSWORD),
            grants_given=[Grant(Role.TEACHER, "LAB-B")])
    with VirtualFirmataBoard() as board:
        app = create_app(settings.model_copy(update={
            "site": "LAB-A", "serial_scan": False, "firmata_ports": [board.url]}))
        with TestClient(app) as client:
            kit = attach_robot(engine, app.state.hub, board)
            yield Lab(client, world, board, kit)


def _post(client: TestClient, path: str, fields: dict[str, str], **headers: str):  # type: ignore[no-untyped-def]
    return client.post(path, content=urlencode(fields), headers=FORM | headers,
                       follow_redirects=False)


def _as_teacher(lab: Lab, name: str = TEACHER, password: str = TEACHER_PASSWORD) -> None:
    lab.client.cookies.clear()
    r = _post(lab.client, "/signin", {"way": "password", "name": name, "password": password})
    assert r.status_code == 303, r.text


def _as_student(lab: Lab) -> None:
    lab.client.cookies.clear()
    r = _post(lab.client, "/signin", {"way": "pin", "class_code": lab.world.class_code,
                                      "name": STUDENT, "pin": STUDENT_PIN})
    assert r.status_code == 303, r.text


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def _errors(html: str) -> list[str]:
    return re.findall(r'<p class="error[^"]*"[^>]*>([^<]+)</p>', html)


def _state(html: str, pin: int) -> str:
    found = re.search(rf'id="out-{pin}-state" data-readback>([^<]*)<', html)
    assert found is not None, pin
    return found.group(1)


def test_a_teacher_drives_the_kit_with_the_forms_and_the_board_gets_it(lab: Lab) -> None:
    _as_teacher(lab)
    page = lab.client.get(f"{lab.panel}?lang=en")
    assert page.status_code == 200
    html = page.text
    assert "<h1>Control panel: " in html
    assert html.index('id="stop-all"') < html.index("<h1>")  # first in the tab order
    assert 'aria-pressed="false"' in html and html.count('type="range"') == 2
    assert _state(html, 13) == "OFF" and _state(html, 9) == "90°" and _state(html, 5) == "0 %"
    csrf = _csrf(html)

    r = _post(lab.client, lab.panel, {"csrf_token": csrf, "command": "digital_write",
                                      "pin": "13", "value": "1"})
    assert (r.status_code, r.headers["location"]) == (
        303, f"{lab.panel}?done=sent#out-13")
    r = _post(lab.client, lab.panel, {"csrf_token": csrf, "command": "servo", "pin": "9",
                                      "value": "135"})
    assert r.status_code == 303
    r = _post(lab.client, lab.panel, {"csrf_token": csrf, "command": "pwm", "pin": "5",
                                      "value": "40"})  # percent on the page's slider
    assert r.status_code == 303
    assert lab.board.wait_for(lambda: lab.board.servo_angles.get(9) == 135
                              and lab.board.outputs.get(13) == 1
                              and lab.board.pwm.get(5) == round(0.4 * 255))
    html = lab.client.get(f"{lab.panel}?done=sent&lang=es").text
    assert "Enviado: el kit recibió la orden." in html
    assert (_state(html, 13), _state(html, 9), _state(html, 5)) == ("ENCENDIDO", "135°", "40 %")
    assert 'aria-pressed="true"' in html

    r = _post(lab.client, lab.panel, {"csrf_token": csrf, "command": "stop_all"})
    assert (r.status_code, r.headers["location"]) == (303, f"{lab.panel}?done=stopped")
    assert lab.board.wait_for(lambda: lab.board.servo_angles.get(9) == 90
                              and lab.board.outputs.get(13) == 0 and lab.board.pwm.get(5) == 0)
    html = lab.client.get(r.headers["location"]).text
    assert (_state(html, 13), _state(html, 9), _state(html, 5)) == ("APAGADO", "90°", "0 %")


def test_a_student_sees_only_stop_all_and_is_told_why_a_drive_form_is_refused(
        lab: Lab, engine: Engine) -> None:
    _as_student(lab)
    html = lab.client.get(f"{lab.panel}?lang=pt").text
    assert 'id="stop-all"' in html and "PARAR TUDO" in html
    assert 'type="range"' not in html and "aria-pressed" not in html
    assert "o seu professor aciona as saídas" in html
    r = _post(lab.client, lab.panel, {"csrf_token": _csrf(html), "command": "servo",
                                      "pin": "9", "value": "10"})
    assert r.status_code == 403
    assert _errors(r.text) == [
        "Você não pode acionar as saídas deste kit. PARAR TUDO você sempre pode apertar."]
    assert lab.board.servo_angles.get(9) != 10
    with engine.connect() as conn:
        last = conn.execute(select(audit_log.c.action, audit_log.c.outcome)
                            .order_by(audit_log.c.id.desc()).limit(1)).one()
    assert tuple(last) == ("refused", "403")
    r = _post(lab.client, lab.panel, {"csrf_token": _csrf(html), "command": "stop_all"})
    assert r.status_code == 303  # STOP ALL is every student's


def test_a_teacher_of_another_lab_gets_a_refusal_page(lab: Lab) -> None:
    _as_teacher(lab, OTHER_TEACHER, OTHER_PASSWORD)
    r = lab.client.get(f"{lab.panel}?lang=es")
    assert r.status_code == 403 and r.headers["content-type"].startswith("text/html")
    assert "No puedes hacer esto aquí" in r.text and "stop-all" not in r.text
    home = lab.client.get("/").text
    r = _post(lab.client, lab.panel, {"csrf_token": _csrf(home), "command": "stop_all"})
    assert r.status_code == 403 and "text/html" in r.headers["content-type"]
    assert lab.board.servo_angles.get(9) == 90  # the stop_all on opening, nothing since


def test_refused_commands_are_told_in_words_beside_the_control(lab: Lab) -> None:
    _as_teacher(lab)
    csrf = _csrf(lab.client.get(lab.panel).text)
    out_of_range = _post(lab.client, f"{lab.panel}?lang=es", {
        "csrf_token": csrf, "command": "pwm", "pin": "5", "value": "150"})
    assert out_of_range.status_code == 422
    assert _errors(out_of_range.text) == [
        "La configuración del kit no lo permite: el pin no es una de sus salidas, o el "
        "valor está fuera de rango."]
    assert 'aria-invalid="true" aria-describedby="out-5-error"' in out_of_range.text
    not_an_output = _post(lab.client, f"{lab.panel}?lang=pt", {
        "csrf_token": csrf, "command": "digital_write", "pin": "7", "value": "1"})
    assert not_an_output.status_code == 422
    assert "não é uma das saídas" in not_an_output.text
    nonsense = _post(lab.client, lab.panel, {"csrf_token": csrf, "command": "fly"})
    assert nonsense.status_code == 422
    gone = _post(lab.client, "/devices/ghost/control?lang=pt",
                 {"csrf_token": csrf, "command": "stop_all"})
    assert gone.status_code == 404 and "Não encontrado" in gone.text
    assert lab.client.get("/devices/ghost/control").status_code == 404

    # A kit that reads lines is no robot: the panel says there is nothing to drive, and
    # a command to it is refused (not connected for commands).
    html = lab.client.get("/devices/kit-a/control?lang=en").text
    assert "This device has no outputs to drive" in html and "stop-all" not in html
    r = _post(lab.client, "/devices/kit-a/control?lang=en", {"csrf_token": csrf,
                                                             "command": "stop_all"})
    assert r.status_code == 409
    assert "The kit is not connected: check its USB cable" in r.text

    # A board being reopened: try again in the seconds the hub says.
    supervisor = lab.client.app.state.hub.supervisor  # type: ignore[attr-defined]

    def reopening(*args: Any, **kw: Any) -> Any:
        raise DeviceReopeningError("being reopened", retry_after_s=2.2)

    supervisor.command = reopening
    try:
        busy = _post(lab.client, f"{lab.panel}?lang=es", {
            "csrf_token": csrf, "command": "servo", "pin": "9", "value": "45"})
    finally:
        del supervisor.command
    assert busy.status_code == 409 and busy.headers["retry-after"] == "3"
    assert _errors(busy.text) == ["El kit está arrancando: vuelve a intentarlo en 3 s."]
