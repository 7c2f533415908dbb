"""The equipment index (``/equipment``) and the menu: each person sees only the equipment
pages their roles allow; a student sees none and is refused the index with a page."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from web_client import post_form, sign_in_form
from web_inventory_world import COORDINATOR, COORDINATOR_PASSWORD, make_equipment_world
from web_world import STUDENT, STUDENT_PIN, TEACHER, TEACHER_PASSWORD

from labhub.app import create_app
from labhub.settings import Settings


@pytest.fixture
def client(engine: Engine, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings.model_copy(update={"site": "LAB-A"}))) as test_client:
        test_client.world = make_equipment_world(engine)  # type: ignore[attr-defined]
        yield test_client


def test_a_coordinator_sees_every_equipment_page(client: TestClient) -> None:
    sign_in_form(client, COORDINATOR, COORDINATOR_PASSWORD)
    page = client.get("/equipment")
    assert page.status_code == 200
    for path, words in (("/sites", "Sedes"), ("/assets", "Activos"), ("/scan", "Escanear"),
                        ("/audits", "Auditorías"), ("/import", "Importar")):
        assert f'href="{path}"' in page.text and words in page.text
    assert 'href="/equipment" aria-current="page"' in page.text


def test_a_teacher_does_not_see_the_import(client: TestClient) -> None:
    sign_in_form(client, TEACHER, TEACHER_PASSWORD, lang="en")
    page = client.get("/equipment")
    assert page.status_code == 200
    assert 'href="/scan"' in page.text and 'href="/import"' not in page.text


def test_a_student_has_no_equipment_menu_and_is_refused_the_index(client: TestClient) -> None:
    world = client.world.web  # type: ignore[attr-defined]
    answer = post_form(client, "/signin?next=/", {"way": "pin", "class_code": world.class_code,
                                                  "name": STUDENT, "pin": STUDENT_PIN})
    assert answer.status_code == 303
    home = client.get("/")
    assert home.status_code == 200 and 'href="/equipment"' not in home.text
    assert 'href="/scan"' not in home.text
    refused = client.get("/equipment")
    assert refused.status_code == 403 and "<html" in refused.text


def test_without_a_session_the_index_sends_to_sign_in(client: TestClient) -> None:
    page = client.get("/equipment", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/signin")
