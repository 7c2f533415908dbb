"""The kits pages through HTTP (starlette's client, SQLite and PostgreSQL): the kits in
the person's scope, complete or not with what is missing, a kit's contents and losses
after a loan that came back short, a coordinator's change of the contents (read back
through the API; errors beside their field in es and pt; a stale form is a 409), and who
may see and change what."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from web_client import hidden, post_form, sign_in_form
from web_inventory_world import COORDINATOR, COORDINATOR_PASSWORD, make_equipment_world
from web_world import BY, TEACHER, TEACHER_PASSWORD

from inventory import assets, kits, loans
from inventory.values import now_us
from labhub.app import create_app
from labhub.settings import Settings


@pytest.fixture
def client(engine: Engine, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings.model_copy(update={"site": "LAB-A"}))) as test_client:
        make_equipment_world(engine)
        test_client.engine = engine  # type: ignore[attr-defined]
        yield test_client


def _kits(page: str) -> list[str]:
    return re.findall(r'<h2><a href="/kits/[^"]*">([^<]*)</a></h2>', page)


def _error_of(page: str, field_id: str) -> str:
    tag = re.search(rf'<textarea id="{field_id}"[^>]*>', page)
    assert tag is not None, field_id
    assert 'aria-invalid="true"' in tag.group(0) and f"{field_id}-error" in tag.group(0)
    found = re.search(rf'<p class="error" id="{field_id}-error">([^<]*)</p>', page)
    assert found is not None
    return html.unescape(found.group(1))


def test_the_kits_in_scope_complete_or_not(client: TestClient) -> None:
    with client.engine.begin() as conn:  # type: ignore[attr-defined]
        assets.register_asset(conn=conn, tag="KIT-B1", model_code="KIT-ROBOT",
                              site_code="LAB-B", by=BY)
    sign_in_form(client, TEACHER, TEACHER_PASSWORD)
    page = client.get("/kits")
    assert page.status_code == 200
    assert _kits(page.text) == ["KIT-1", "KIT-2"]  # LAB-B's kit is not the teacher's
    assert "1 a 2 de 2 kits" in page.text
    assert 'class="complete">Completo' in page.text
    assert "Todavía no tiene lista de contenido." in page.text  # KIT-2
    with client.engine.begin() as conn:  # type: ignore[attr-defined]
        assets.set_status(conn=conn, tag="UNO-1", status="lost", by=BY)
    page = client.get("/kits")
    assert 'class="incomplete">Incompleto' in page.text
    assert "<li>UNO-1: Perdido</li>" in page.text
    sign_in_form(client, COORDINATOR, COORDINATOR_PASSWORD, lang="pt")
    assert _kits(client.get("/kits").text) == ["KIT-1", "KIT-2", "KIT-B1"]
    assert _kits(client.get("/kits?site=LAB-B").text) == ["KIT-B1"]
    missing = client.get("/kits?site=NOPE")
    assert missing.status_code == 404
    assert _error_of_input(missing.text) == "Nenhum local tem este código."
    assert client.get("/kits?offset=x").status_code == 422


def _error_of_input(page: str) -> str:
    assert re.search(r'<input id="f-site"[^>]*aria-invalid="true"', page)
    found = re.search(r'<p class="error" id="f-site-error">([^<]*)</p>', page)
    assert found is not None
    return html.unescape(found.group(1))


def test_a_kit_back_short_shows_its_losses(client: TestClient) -> None:
    with client.engine.begin() as conn:  # type: ignore[attr-defined]
        loan = loans.check_out(conn=conn, asset_tags=["KIT-1"], borrower="7°B",
                               borrower_kind="group", due_at=now_us() + 86_400_000_000, by=BY)
        loans.check_in(conn=conn, loan_uuid=loan.uuid, by=BY, returns=[loans.ItemReturn(
            "KIT-1", kit=kits.KitReturn(tags=frozenset({"UNO-1"}),
                                        parts={"HC-SR04": 1, "JMP": 35}))])
    sign_in_form(client, TEACHER, TEACHER_PASSWORD)
    page = client.get("/kits/KIT-1")
    assert page.status_code == 200
    assert 'href="/assets/UNO-1">UNO-1</a>' in page.text
    assert "40 × Cable de puente" in page.text and "1 × Sensor ultrasónico" in page.text
    assert "5 × Cable de puente (JMP): perdido" in page.text
    assert "Cambiar el contenido" not in page.text  # a coordinator's
    assert client.get("/kits/UNO-9").status_code == 403
    assert client.get("/kits/NOPE").status_code == 404


def test_a_coordinator_changes_the_contents(client: TestClient) -> None:
    sign_in_form(client, COORDINATOR, COORDINATOR_PASSWORD)
    page = client.get("/kits/KIT-1")
    assert "Cambiar el contenido" in page.text
    fields = {"csrf_token": hidden(page.text, "csrf_token"),
              "version": hidden(page.text, "version")}
    saved = post_form(client, "/kits/KIT-1/contents", fields | {
        "assets": "UNO-1\nUNO-2", "parts": "JMP 30\nHC-SR04 = 2"})
    assert saved.status_code == 303 and saved.headers["location"] == "/kits/KIT-1?done=saved"
    assert client.get("/api/v1/kits/KIT-1/contents").json() | {"version": 0} == {
        "kit": "KIT-1", "version": 0, "assets": ["UNO-1", "UNO-2"],
        "parts": {"HC-SR04": 2, "JMP": 30}}
    assert "El contenido del kit quedó guardado." in client.get(saved.headers["location"]).text
    stale = post_form(client, "/kits/KIT-1/contents", fields | {"assets": "UNO-1",
                                                                "parts": ""})
    assert stale.status_code == 409 and "recargue la página" in stale.text
    page = client.get("/kits/KIT-1")
    fields["version"] = hidden(page.text, "version")
    bad = post_form(client, "/kits/KIT-1/contents", fields | {"assets": "UNO-1",
                                                              "parts": "JMP muchos"})
    assert bad.status_code == 422
    assert _error_of(bad.text, "f-parts").startswith("Escriba una pieza por línea")
    assert "JMP muchos" in bad.text  # what was written stays
    elsewhere = post_form(client, "/kits/KIT-1/contents", fields | {"assets": "UNO-9",
                                                                    "parts": ""})
    assert elsewhere.status_code == 422
    assert _error_of(elsewhere.text, "f-assets").startswith("Cada activo debe estar")
    client.cookies.set("labhub_lang", "pt")
    unknown = post_form(client, "/kits/KIT-1/contents", fields | {"assets": "",
                                                                  "parts": "NOPE 3"})
    assert unknown.status_code == 422
    assert _error_of(unknown.text, "f-parts") == "Nenhuma peça contada tem este código."
    tagged = post_form(client, "/kits/KIT-1/contents", fields | {"assets": "",
                                                                 "parts": "UNO 3"})
    assert _error_of(tagged.text, "f-parts").startswith("Uma peça deve ser contada")


def test_a_teacher_may_not_change_the_contents(client: TestClient) -> None:
    sign_in_form(client, TEACHER, TEACHER_PASSWORD)
    page = client.get("/kits/KIT-2")
    refused = post_form(client, "/kits/KIT-2/contents", {
        "csrf_token": hidden(page.text, "csrf_token"), "assets": "UNO-3", "parts": ""})
    assert refused.status_code == 403 and "text/html" in refused.headers["content-type"]
    assert client.get("/api/v1/kits/KIT-2/contents").json()["assets"] == []
