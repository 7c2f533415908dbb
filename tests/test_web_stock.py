"""The stock pages through HTTP (starlette's client, SQLite and PostgreSQL): the counted
stock and the low-stock list show only the sites a person may see, filtered by site and
model and paged with totals; a coordinator records a delivery, parts used up, a recount
and a reorder level with the API's own services (read back through the API and the
history, by the signed-in person); errors beside their fields in es and pt; a recount or
reorder level drawn before someone else's change is a 409 page; and a page, never a
traceback, for what may not be done or is not there."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from web_client import hidden, post_form, sign_in_form
from web_inventory_world import (
    COORDINATOR,
    COORDINATOR_PASSWORD,
    EquipmentWorld,
    make_equipment_world,
)
from web_world import BY, TEACHER, TEACHER_PASSWORD

from inventory import catalog, sites, stock
from inventory.history import history_of
from labhub.app import create_app
from labhub.settings import Settings
from labhub.web.stock import ROWS_PER_PAGE

JMP_A = "/stock/item?site=LAB-A&model=JMP"


@pytest.fixture
def lab(settings: Settings, engine: Engine) -> Iterator[tuple[TestClient, EquipmentWorld]]:
    """The equipment world, with 10 jumper wires at LAB-B and a lab of another region
    (LAB-C, under VL-R2: not the coordinator's) with 4."""
    app = create_app(settings.model_copy(update={"site": "LAB-A"}))
    with TestClient(app) as client:
        world = make_equipment_world(engine)
        with engine.begin() as conn:
            sites.create_site(conn=conn, code="VL-R2", name="Cauca", kind="region",
                              parent_code="VL", by=BY)
            sites.create_site(conn=conn, code="LAB-C", name="Escuela Popayán", kind="site",
                              parent_code="VL-R2", tier="lab_spark", rural=True, by=BY)
            for site, quantity in (("LAB-B", 10), ("LAB-C", 4)):
                stock.receive(conn=conn, site_code=site, model_code="JMP", quantity=quantity,
                              by=BY)
        yield client, world


def _text(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def _rows(page: str) -> list[list[str]]:
    """The stock table's rows: model and lab, on hand, state, reorder level."""
    body = re.search(r"<tbody>(.*?)</tbody>", page, re.S)
    if body is None:
        return []
    return [[_text(c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", body.group(1), re.S)]


def _fact(page: str, label: str) -> str:
    found = re.search(rf"<dt>{re.escape(label)}</dt><dd>(.*?)</dd>", page, re.S)
    assert found is not None, label
    return _text(found.group(1))


def _error_of(page: str, field_id: str) -> str:
    tag = re.search(rf'<(?:input|select) id="{field_id}"[^>]*>', page)
    assert tag is not None, field_id
    assert 'aria-invalid="true"' in tag.group(0) and f"{field_id}-error" in tag.group(0)
    found = re.search(rf'<p class="error" id="{field_id}-error">([^<]*)</p>', page)
    assert found is not None
    return html.unescape(found.group(1))


def _api_stock(client: TestClient, site: str = "LAB-A", model: str = "JMP") -> dict[str, int]:
    items = client.get(f"/api/v1/stock?site={site}&model={model}").json()["items"]
    return {"quantity": items[0]["quantity"], "threshold": items[0]["reorder_threshold"],
            "version": items[0]["version"]}


def _form(client: TestClient, path: str = JMP_A) -> dict[str, str]:
    page = client.get(path)
    assert page.status_code == 200, page.text
    fields = {"csrf_token": hidden(page.text, "csrf_token")}
    if "/stock/item" in path:
        fields |= {"site": hidden(page.text, "site"), "model": hidden(page.text, "model"),
                   "version": hidden(page.text, "version")}
    return fields


# -- the lists ---------------------------------------------------------------------------------

def test_the_stock_shows_only_ones_sites_filtered_and_paged(
        lab: tuple[TestClient, EquipmentWorld], engine: Engine) -> None:
    client, _ = lab
    sign_in_form(client, TEACHER, TEACHER_PASSWORD)
    page = client.get("/stock")
    assert page.status_code == 200
    assert _rows(page.text) == [
        ["Sensor ultrasónico HC-SR04 Escuela Simón Bolívar LAB-A", "3 pcs",
         "⚠ Bajo: faltan 2", "5 pcs"],
        ["Cable de puente JMP Escuela Simón Bolívar LAB-A", "100 pcs", "Suficiente",
         "60 pcs"]]
    assert "Líneas de existencias: 2" in _text(page.text)
    assert "Por agotarse: 1" in _text(page.text)  # the tab says how many run low
    assert 'href="/stock/item?site=LAB-A&amp;model=JMP"' in page.text
    assert 'action="/stock/receive"' not in page.text  # a teacher records nothing
    assert _rows(client.get("/stock?site=LAB-B").text) == []  # not the teacher's lab
    low = client.get("/stock/low")
    assert [r[0] for r in _rows(low.text)] == [
        "Sensor ultrasónico HC-SR04 Escuela Simón Bolívar LAB-A"]
    assert "Por debajo del nivel de reposición: 1" in _text(low.text)

    sign_in_form(client, COORDINATOR, COORDINATOR_PASSWORD, lang="pt")
    page = client.get("/stock")
    assert [r[0] for r in _rows(page.text)] == [
        "Sensor ultrasónico HC-SR04 Escuela Simón Bolívar LAB-A",
        "Cable de puente JMP Escuela Simón Bolívar LAB-A",
        "Cable de puente JMP Colegio Nariño LAB-B"]  # not LAB-C: another region
    assert "Linhas de estoque: 3" in _text(page.text)
    assert 'action="/stock/receive"' in page.text
    only_b = client.get("/stock?site=LAB-B&model=JMP")
    assert [r[1] for r in _rows(only_b.text)] == ["10 pcs"]
    region = client.get("/stock?site=VL-R1&model=JMP")  # a site takes its subtree
    assert len(_rows(region.text)) == 2
    assert _rows(client.get("/stock?site=LAB-C").text) == []
    assert _rows(client.get("/stock/low?model=JMP").text) == []

    with engine.begin() as conn:  # enough lines for two pages
        for i in range(ROWS_PER_PAGE):
            catalog.create_model(conn=conn, code=f"LED-{i:02}", name=f"LED {i}",
                                 category="consumable", tracking="counted", unit="pcs", by=BY)
            stock.receive(conn=conn, site_code="LAB-A", model_code=f"LED-{i:02}", quantity=5,
                          by=BY)
    first = client.get("/stock?site=LAB-A")
    assert len(_rows(first.text)) == ROWS_PER_PAGE
    assert "Página 1 de 2" in first.text
    assert 'href="/stock?site=LAB-A&amp;page=2"' in first.text
    second = client.get("/stock?site=LAB-A&page=2")
    assert len(_rows(second.text)) == 2 and "Página 2 de 2" in second.text


def test_bad_values_in_the_address_give_a_page(lab: tuple[TestClient, EquipmentWorld]) -> None:
    client, _ = lab
    sign_in_form(client, COORDINATOR, COORDINATOR_PASSWORD)
    for path, status in (("/stock?page=0", 422), ("/stock?page=x", 422),
                         ("/stock?site=NO-SUCH", 404), ("/stock/low?model=NO-SUCH", 404),
                         ("/stock/item?site=LAB-A", 422),
                         ("/stock/item?site=LAB-A&model=UNO", 422),  # tagged, not counted
                         ("/stock/item?site=VL-R1&model=JMP", 422),  # a region, not a lab
                         ("/stock/item?site=LAB-A&model=NO-SUCH", 404),
                         ("/stock/item?site=LAB-C&model=JMP", 403)):  # another region's
        r = client.get(path)
        assert r.status_code == status, (path, r.status_code)
        assert "text/html" in r.headers["content-type"], path


# -- the forms ---------------------------------------------------------------------------------

def test_a_coordinator_records_deliveries_use_recounts_and_reorder_levels(
        lab: tuple[TestClient, EquipmentWorld], engine: Engine) -> None:
    client, _ = lab
    sign_in_form(client, COORDINATOR, COORDINATOR_PASSWORD)
    page = client.get(JMP_A)
    assert "<h1>Cable de puente en Escuela Simón Bolívar</h1>" in page.text
    assert _fact(page.text, "Disponible") == "100 pcs"
    assert _fact(page.text, "Nivel de reposición") == "60 pcs"
    form = _form(client)
    r = post_form(client, "/stock/receive", form | {"quantity": "25", "note": "donación"})
    assert (r.status_code, r.headers["location"]) == (
        303, "/stock/item?site=LAB-A&model=JMP&saved=receive")
    page = client.get(r.headers["location"])
    assert "Se registró la entrega." in page.text and _fact(page.text, "Disponible") == "125 pcs"
    r = post_form(client, "/stock/consume", form | {"quantity": "5"})
    assert r.status_code == 303 and _api_stock(client)["quantity"] == 120
    form = _form(client)
    r = post_form(client, "/stock/adjust", form | {"quantity": "110", "note": "recuento"})
    assert r.status_code == 303 and _api_stock(client)["quantity"] == 110
    form = _form(client)
    r = post_form(client, "/stock/threshold", form | {"threshold": "150"})
    assert r.status_code == 303
    page = client.get(r.headers["location"])
    assert "Se guardó el nivel de reposición." in page.text
    assert _fact(page.text, "Estado") == "⚠ Bajo: faltan 40"
    form = _form(client)
    r = post_form(client, "/stock/threshold", form | {"threshold": ""})  # never reorder
    assert r.status_code == 303 and _api_stock(client)["threshold"] is None
    with engine.connect() as conn:
        kinds = [(e.kind, e.by, e.note, e.to_state) for e in history_of(conn=conn, subject="JMP")
                 if e.site_code == "LAB-A" and e.by == COORDINATOR]
    assert kinds == [
        ("StockReceived", COORDINATOR, "donación", {"quantity": 125}),
        ("StockConsumed", COORDINATOR, None, {"quantity": 120}),
        ("StockAdjusted", COORDINATOR, "recuento", {"quantity": 110}),
        ("ReorderThresholdSet", COORDINATOR, None, {"reorder_threshold": 150}),
        ("ReorderThresholdSet", COORDINATOR, None, {"reorder_threshold": None})]

    listed = _form(client, "/stock")  # the list's delivery form: a lab and a model chosen
    r = post_form(client, "/stock/receive", listed | {
        "origin": "list", "site": "LAB-B", "model": "HC-SR04", "quantity": "7"})
    assert (r.status_code, r.headers["location"]) == (
        303, "/stock?site=LAB-B&model=HC-SR04&saved=receive")
    page = client.get(r.headers["location"])
    assert "Se registró la entrega." in page.text
    assert [r[1] for r in _rows(page.text)] == ["7 pcs"]


def test_errors_show_beside_their_fields_in_the_persons_language(
        lab: tuple[TestClient, EquipmentWorld]) -> None:
    client, _ = lab
    sign_in_form(client, COORDINATOR, COORDINATOR_PASSWORD)
    form = _form(client)
    for action, value, words in (
            ("receive", "", "Escriba cuántos, por ejemplo 12."),
            ("receive", "doce", "Escriba un número entero, por ejemplo 12."),
            ("receive", "2.5", "Escriba un número entero, por ejemplo 12."),
            ("receive", "0", "Escriba un número entero de 1 a 10.000.000."),
            ("consume", "101", "El laboratorio solo tiene 100: no puede gastar más."),
            ("adjust", "-1", "Escriba un número entero de 0 a 10.000.000.")):
        r = post_form(client, f"/stock/{action}", form | {"quantity": value})
        assert r.status_code == 422, (action, value)
        assert _error_of(r.text, f"{action}-quantity") == words
        assert "No se registró nada: revise los campos marcados abajo." in r.text
        assert f'id="{action}-quantity" name="quantity" type="text" value="{value}"' in r.text
    r = post_form(client, "/stock/threshold", form | {"threshold": "muchos"})
    assert _error_of(r.text, "threshold-threshold") == "Escriba un número entero, por ejemplo 12."
    assert _api_stock(client) == {"quantity": 100, "threshold": 60, "version": 2}

    client.cookies.set("labhub_lang", "pt")
    r = post_form(client, "/stock/receive", form | {"quantity": "3", "note": "x" * 2001})
    assert r.status_code == 422
    assert _error_of(r.text, "receive-note").startswith("A nota é longa demais")
    listed = _form(client, "/stock") | {"origin": "list"}
    r = post_form(client, "/stock/receive", listed | {"quantity": "3"})
    assert r.status_code == 422
    assert _error_of(r.text, "receive-site") == "Escolha um laboratório da lista."
    assert _error_of(r.text, "receive-model") == "Escolha um modelo da lista."
    r = post_form(client, "/stock/receive", listed | {"site": "LAB-A", "model": "UNO",
                                                      "quantity": "3"})
    assert _error_of(r.text, "receive-model").startswith("Este modelo é contado um a um")
    r = post_form(client, "/stock/receive", listed | {"site": "LAB-A", "model": "NO-SUCH",
                                                      "quantity": "3"})
    assert _error_of(r.text, "receive-model") == "Escolha um modelo da lista."
    r = post_form(client, "/stock/receive", listed | {"site": "VL-R1", "model": "JMP",
                                                      "quantity": "3"})
    assert _error_of(r.text, "receive-site") == "Escolha um laboratório da lista."
    assert _api_stock(client)["quantity"] == 100


def test_a_recount_drawn_before_another_change_is_refused(
        lab: tuple[TestClient, EquipmentWorld]) -> None:
    client, _ = lab
    sign_in_form(client, COORDINATOR, COORDINATOR_PASSWORD)
    drawn = _form(client)
    assert post_form(client, "/stock/receive", drawn | {"quantity": "1"}).status_code == 303
    for action, field in (("adjust", "quantity"), ("threshold", "threshold")):
        r = post_form(client, f"/stock/{action}", drawn | {field: "80"})
        assert r.status_code == 409, action
        assert "Alguien cambió estas existencias mientras usted las miraba" in r.text
        assert _fact(r.text, "Disponible") == "101 pcs"  # as it is now
        assert hidden(r.text, "version") == str(_api_stock(client)["version"])
    r = post_form(client, "/stock/adjust", drawn | {"quantity": "80", "version": "x"})
    assert r.status_code == 409
    assert _api_stock(client) == {"quantity": 101, "threshold": 60, "version": 3}


def test_only_a_coordinator_of_the_site_records_stock(
        lab: tuple[TestClient, EquipmentWorld]) -> None:
    client, _ = lab
    sign_in_form(client, TEACHER, TEACHER_PASSWORD)
    page = client.get(JMP_A)
    assert page.status_code == 200 and 'action="/stock/receive"' not in page.text
    csrf = hidden(page.text, "csrf_token")
    r = post_form(client, "/stock/receive", {"csrf_token": csrf, "site": "LAB-A",
                                             "model": "JMP", "quantity": "5"})
    assert r.status_code == 403 and "text/html" in r.headers["content-type"]
    assert client.get("/stock/item?site=LAB-B&model=JMP").status_code == 403
    sign_in_form(client, COORDINATOR, COORDINATOR_PASSWORD)
    form = _form(client)
    r = post_form(client, "/stock/receive", form | {"site": "LAB-C", "quantity": "5"})
    assert r.status_code == 403 and "text/html" in r.headers["content-type"]
    r = post_form(client, "/stock/receive", {"site": "LAB-A", "model": "JMP", "quantity": "5"})
    assert r.status_code == 403  # no CSRF value
    assert _api_stock(client)["quantity"] == 100
