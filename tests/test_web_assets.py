"""The assets pages through HTTP (starlette's client, SQLite and PostgreSQL): the search's
filters, paging and totals against the API's list, the CSV in each language's dialect
and scope, an asset's timeline (newest first, paged, in words), repairs started and
finished through the page (read back through the API), a coordinator's status change,
and refusals and bad values as pages in the person's language."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from web_client import hidden, post_form, sign_in_form
from web_inventory_world import COORDINATOR, COORDINATOR_PASSWORD, make_equipment_world
from web_world import BY, STUDENT, STUDENT_PIN, TEACHER, TEACHER_PASSWORD

from inventory import assets, history
from labhub.app import create_app
from labhub.settings import Settings


@pytest.fixture
def client(engine: Engine, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings.model_copy(update={"site": "LAB-A"}))) as test_client:
        test_client.world = make_equipment_world(engine)  # type: ignore[attr-defined]
        test_client.engine = engine  # type: ignore[attr-defined]
        yield test_client


def _tags(page: str) -> list[str]:
    return re.findall(r'class="tag-link" href="/assets/[^"]*">([^<]*)</a>', page)


def _error_of(page: str, field_id: str) -> str:
    tag = re.search(rf'<(?:input|select|textarea) id="{field_id}"[^>]*>', page)
    assert tag is not None, field_id
    assert 'aria-invalid="true"' in tag.group(0), tag.group(0)
    assert f"{field_id}-error" in tag.group(0)
    found = re.search(rf'<p class="error" id="{field_id}-error">([^<]*)</p>', page)
    assert found is not None
    return html.unescape(found.group(1))


def test_the_search_filters_in_the_teachers_scope(client: TestClient) -> None:
    sign_in_form(client, TEACHER, TEACHER_PASSWORD)
    page = client.get("/assets")
    assert page.status_code == 200
    assert _tags(page.text) == ["KIT-1", "KIT-2", "PRN-1", "UNO-1", "UNO-2", "UNO-3",
                                "UNO-4", "UNO-5"]  # LAB-B's UNO-9 is not the teacher's
    assert "1 a 8 de 8 activos" in page.text
    assert _tags(client.get("/assets?q=uno").text) == [f"UNO-{i}" for i in range(1, 6)]
    assert _tags(client.get("/assets?q=impresora").text) == ["PRN-1"]  # the model's name
    assert _tags(client.get("/assets?model=KIT-ROBOT").text) == ["KIT-1", "KIT-2"]
    assert _tags(client.get("/assets?site=LAB-B").text) == []
    assert "No se encontraron activos." in client.get("/assets?site=LAB-B").text
    api = client.get("/api/v1/assets", params={"search": "uno", "status": "available"}).json()
    page = client.get("/assets?q=uno&status=available")
    assert _tags(page.text) == [a["tag"] for a in api["items"]]
    assert 'href="/assets.csv?q=uno&amp;status=available"' in page.text
    assert '<option value="available" selected>Disponible</option>' in page.text


def test_pages_of_the_search_keep_the_filters(client: TestClient) -> None:
    with client.engine.begin() as conn:  # type: ignore[attr-defined]
        for i in range(30):
            assets.register_asset(conn=conn, tag=f"UNO-B{i:02d}", model_code="UNO",
                                  site_code="LAB-B", by=BY)
    sign_in_form(client, COORDINATOR, COORDINATOR_PASSWORD, lang="pt")
    first = client.get("/assets?site=VL-R1&model=UNO")
    assert first.status_code == 200
    assert "1 a 25 de 36 equipamentos" in first.text
    assert len(_tags(first.text)) == 25
    link = re.search(r'href="([^"]*)" rel="next">Próxima página', first.text)
    assert link is not None
    assert html.unescape(link.group(1)) == "/assets?site=VL-R1&model=UNO&offset=25"
    second = client.get(html.unescape(link.group(1)))
    assert "26 a 36 de 36 equipamentos" in second.text
    assert _tags(second.text)[-1] == "UNO-B29"  # tags sort as text: UNO-9 < UNO-B00
    assert 'rel="prev">Página anterior' in second.text and 'rel="next"' not in second.text


def test_bad_filters_are_shown_beside_their_field(client: TestClient) -> None:
    sign_in_form(client, TEACHER, TEACHER_PASSWORD)
    page = client.get("/assets?status=broken-ish&site=LAB-A")
    assert page.status_code == 422
    assert _error_of(page.text, "f-status") == "Elija un estado de la lista."
    page = client.get("/assets?site=NO-SUCH")
    assert page.status_code == 404
    assert _error_of(page.text, "f-site") == "Ningún sitio tiene este código."
    page = client.get("/assets?site=a%20b", headers={"cookie": "labhub_lang=pt"})
    client.cookies.set("labhub_lang", "pt")
    page = client.get("/assets?site=a%20b")
    assert page.status_code == 422
    assert _error_of(page.text, "f-site").startswith("Um código tem só letras")
    assert client.get("/assets?offset=-3").status_code == 422
    beyond = client.get("/assets?offset=100")
    assert beyond.status_code == 404 and "Esta página da lista não existe." in beyond.text
    refused = client.get("/assets.csv?status=nope")
    assert refused.status_code == 422 and "text/html" in refused.headers["content-type"]


def test_the_csv_is_the_search_in_the_persons_spreadsheet_dialect(client: TestClient) -> None:
    sign_in_form(client, TEACHER, TEACHER_PASSWORD)
    spanish = client.get("/assets.csv?model=UNO")
    assert spanish.status_code == 200
    assert spanish.headers["content-type"].startswith("text/csv")
    assert spanish.content.startswith(b"\xef\xbb\xbf")  # Excel reads UTF-8 with it
    lines = spanish.content.decode("utf-8-sig").splitlines()
    assert lines[0] == "tag;model;site;serial_number;status;condition;notes"
    assert [line.split(";")[0] for line in lines[1:]] == [f"UNO-{i}" for i in range(1, 6)]
    api = client.get("/api/v1/export/assets.csv",
                     params={"model": "UNO", "delimiter": "semicolon", "bom": "true"})
    assert spanish.content == api.content  # the API's own export
    client.cookies.set("labhub_lang", "en")
    searched = client.get("/assets.csv?q=prn")
    lines = searched.content.decode("utf-8-sig").splitlines()
    assert lines == ["tag,model,site,serial_number,status,condition,notes",
                     "PRN-1,PRN-3D,LAB-A,,available,good,"]
    assert client.get("/assets.csv?site=LAB-B").status_code == 403  # not the teacher's


def test_an_assets_timeline_is_newest_first_and_paged(client: TestClient) -> None:
    with client.engine.begin() as conn:  # type: ignore[attr-defined]
        history.record_events(conn=conn, by="Hub LAB-A", new=[
            history.NewEvent("AssetSighted", "UNO-2", "LAB-A",
                             to_state={"seen_at_site": "LAB-A", "serial_number": f"S{i}"})
            for i in range(120)])
        assets.edit_asset(conn=conn, tag="UNO-2", changes={"condition": "fair"}, by=BY,
                          note="pin 13 flojo")
    sign_in_form(client, TEACHER, TEACHER_PASSWORD)
    page = client.get("/assets/UNO-2")
    assert page.status_code == 200
    assert "1 a 50 de 122 eventos, los más recientes primero" in page.text
    whats = re.findall(r'<p class="what">([^<]*)</p>', page.text)
    assert whats[0] == "Datos corregidos" and whats[1] == "Visto en línea en un laboratorio"
    assert len(whats) == 50
    assert "Condición: Regular" in page.text and "pin 13 flojo" in page.text
    assert f"por {BY}" in page.text and "en Escuela Simón Bolívar" in page.text
    older = client.get("/assets/UNO-2?offset=100")
    whats = re.findall(r'<p class="what">([^<]*)</p>', older.text)
    assert whats[-1] == "Registrado" and len(whats) == 22
    assert "101 a 122 de 122 eventos" in older.text
    assert 'href="/assets/UNO-2?offset=50" rel="prev"' in older.text
    assert client.get("/assets/UNO-2?offset=x").status_code == 422
    assert client.get("/assets/UNO-2?offset=150").status_code == 404


def test_an_asset_shows_its_kit_and_its_details(client: TestClient) -> None:
    sign_in_form(client, TEACHER, TEACHER_PASSWORD, lang="pt")
    page = client.get("/assets/UNO-1")
    assert page.status_code == 200
    assert 'href="/kits/KIT-1"' in page.text  # the kit that holds it
    assert "Arduino Uno R3" in page.text and "Disponível" in page.text
    kit = client.get("/assets/KIT-1")
    assert 'href="/kits/KIT-1">Seu conteúdo' in kit.text


def test_repairs_start_and_finish_through_the_page(client: TestClient) -> None:
    sign_in_form(client, TEACHER, TEACHER_PASSWORD)
    page = client.get("/assets/UNO-3")
    assert "Iniciar la reparación" in page.text
    assert "Cambiar estado o condición" not in page.text  # a coordinator's
    fields = {"csrf_token": hidden(page.text, "csrf_token"),
              "version": hidden(page.text, "version"), "action": "start"}
    empty = post_form(client, "/assets/UNO-3/repair", fields | {"fault": "  "})
    assert empty.status_code == 422
    assert _error_of(empty.text, "fault").startswith("Escriba qué pasó")
    started = post_form(client, "/assets/UNO-3/repair", fields | {"fault": "no enciende",
                                                                  "condition": "broken"})
    assert started.status_code == 303
    assert started.headers["location"] == "/assets/UNO-3?done=repair_started"
    [repair] = client.get("/api/v1/assets/UNO-3/repairs").json()
    assert repair["fault"] == "no enciende" and repair["started_by"] == TEACHER
    again = post_form(client, "/assets/UNO-3/repair", fields | {"fault": "otra vez"})
    assert again.status_code == 409  # the version the form was drawn with is stale
    assert "recargue la página" in again.text
    page = client.get(started.headers["location"])
    assert "La reparación empezó" in page.text and "En reparación" in page.text
    assert "Terminar la reparación" in page.text
    finish = {"csrf_token": hidden(page.text, "csrf_token"), "action": "finish",
              "version": hidden(page.text, "version"), "repair": hidden(page.text, "repair")}
    assert hidden(page.text, "repair") == repair["id"]
    done = post_form(client, "/assets/UNO-3/repair", finish | {"work_done": "regulador nuevo",
                                                               "condition": "good"})
    assert done.status_code == 303
    asset = client.get("/api/v1/assets/by-tag/UNO-3").json()
    assert asset["status"] == "available" and asset["condition"] == "good"
    page = client.get("/assets/UNO-3")
    assert "Reparación terminada" in page.text and "regulador nuevo" in page.text
    other = post_form(client, "/assets/UNO-4/repair", finish | {"work_done": "x"})
    assert other.status_code == 404  # a repair of another asset


def test_a_repair_of_an_asset_on_loan_is_refused_in_words(client: TestClient) -> None:
    sign_in_form(client, COORDINATOR, COORDINATOR_PASSWORD)
    page = client.get("/assets/UNO-4")
    csrf, version = hidden(page.text, "csrf_token"), hidden(page.text, "version")
    lost = post_form(client, "/assets/UNO-4/state", {"csrf_token": csrf, "version": version,
                                                     "status": "lost", "condition": "good"})
    assert lost.status_code == 303
    assert client.get("/api/v1/assets/by-tag/UNO-4").json()["status"] == "lost"
    page = client.get("/assets/UNO-4")
    assert "Iniciar la reparación" not in page.text and "Una reparación se inicia" in page.text
    refused = post_form(client, "/assets/UNO-4/repair", {
        "csrf_token": csrf, "version": hidden(page.text, "version"), "action": "start",
        "fault": "no enciende"})
    assert refused.status_code == 409
    assert "El estado del activo no lo permite ahora." in refused.text
    assert 'lang="en"' in refused.text  # the hub's English detail, secondary
    bad = post_form(client, "/assets/UNO-4/state", {"csrf_token": csrf, "status": "on_fire",
                                                    "condition": "good"})
    assert bad.status_code == 422
    assert _error_of(bad.text, "state-status") == "Elija un estado de la lista."


def test_who_may_see_and_do_what(client: TestClient) -> None:
    sign_in_form(client, TEACHER, TEACHER_PASSWORD)
    refused = client.get("/assets/UNO-9")  # LAB-B's
    assert refused.status_code == 403 and "text/html" in refused.headers["content-type"]
    assert client.get("/assets/NO-SUCH").status_code == 404
    page = client.get("/assets/UNO-5")
    csrf = hidden(page.text, "csrf_token")
    state = post_form(client, "/assets/UNO-5/state", {"csrf_token": csrf, "status": "lost",
                                                      "condition": "good"})
    assert state.status_code == 403  # a coordinator's
    other = post_form(client, "/assets/UNO-9/repair", {"csrf_token": csrf, "action": "start",
                                                       "fault": "x"})
    assert other.status_code == 403
    client.cookies.clear()
    client.post("/signin?next=/", content=f"way=pin&class_code={client.world.web.class_code}"  # type: ignore[attr-defined]
                f"&name={STUDENT}&pin={STUDENT_PIN}",
                headers={"content-type": "application/x-www-form-urlencoded"})
    assert client.get("/assets").status_code == 403
    assert client.get("/assets", follow_redirects=False).status_code == 403
