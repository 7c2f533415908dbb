"""The network pages and the network API on a central (starlette's client, PostgreSQL):
the rollout page with its filters (a plain GET form) and its map (every lab with a
position a link, placed, its status by colour and shape, a legend), a hub's contact in
words; a region's coordinator sees their region's labs only, in the pages, the JSON and
the CSV; the CSV files in es, pt and en (header, delimiter, decimal mark, formula guard);
the use page and a lab's page; and on a hub each page is a 404 page that says so, the
menu has no "Network". The world is tests/test_network_views.py's."""

from __future__ import annotations

import csv
import functools
import html
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, update
from test_network_views import World, network_world
from web_client import hidden, post_form, sign_in_form

from inventory import replica
from inventory.tables import sites
from labhub.access import accounts, passwords
from labhub.access.permissions import Grant, Role
from labhub.app import create_app
from labhub.network import conflicts
from labhub.settings import Settings
from labhub.web.network import MARKS

MINISTRY, COORDINATOR, TEACHER = "Mónica (ministerio)", "Sur (coordinación)", "Tomás"
PASSWORD = "una clave de prueba"
CENTRAL_DB = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
pytestmark = CENTRAL_DB


@functools.cache
def _hashed() -> str:
    return passwords.hash_password(PASSWORD)


def _people(engine: Engine) -> None:
    with engine.begin() as conn:
        for name, grant in ((MINISTRY, Grant(Role.MINISTRY, "VL")),
                            (COORDINATOR, Grant(Role.COORDINATOR, "VL-R2")),
                            (TEACHER, Grant(Role.TEACHER, "LAB-A"))):
            accounts.create_user(conn, name=name, password_hash=_hashed(),
                                 grants_given=[grant])


@pytest.fixture
def central(settings: Settings, engine: Engine) -> Iterator[tuple[TestClient, World]]:
    with engine.begin() as conn:
        world = network_world(conn)
        conn.execute(update(sites).where(sites.c.code == "LAB-C")
                     .values(name="=HYPERLINK(1) Dagua"))  # a name a spreadsheet would run
    _people(engine)
    app = create_app(settings.model_copy(update={"role": "central", "site": None}))
    with TestClient(app) as client:
        yield client, world


def _text(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def _rows(page: str) -> list[str]:
    return re.findall(r'<th scope="row"><a href="/network/labs/([^"]+)"', page)


def _csv(answer: object, delimiter: str) -> list[list[str]]:
    text = answer.content.decode("utf-8")  # type: ignore[attr-defined]
    assert text.startswith("\ufeff") and "\r\n" in text
    return list(csv.reader(io.StringIO(text[1:]), delimiter=delimiter))


def test_the_rollout_page_its_map_the_use_page_and_the_csv_files(
        central: tuple[TestClient, World]) -> None:
    client, _ = central
    sign_in_form(client, MINISTRY, PASSWORD, lang="es")
    home = client.get("/").text
    assert 'href="/network">Red</a>' in home  # the menu, on a central
    page = client.get("/network").text
    assert _rows(page) == ["LAB-A", "LAB-B", "LAB-C", "LAB-D"]
    words = _text(page)
    assert "Laboratorios: 4." in words
    assert "Hub en línea: 1 · sin conexión: 1 · nunca conectado: 2." in words
    assert "Sin conexión hace 3 días" in words and "Sin hub inscrito" in words
    assert "Nunca se ha conectado" in words and "1.4.0" in words and "48.000" in words
    # The map: the three labs with a position, each a link named by lab and status,
    # coloured and shaped by its status; the regions' names; a legend of every status.
    svg = page.split('<svg class="map"', 1)[1].split("</svg>", 1)[0]
    points = re.findall(r'<a href="/network/labs/([^"]+)" aria-label="([^"]+)" '
                        r'data-lab="[^"]+" data-status="([^"]*)" data-shape="(\w+)">\s*'
                        r'<(\w+)[^>]*?(?:fill|stroke)="(#[0-9a-f]{6})"', svg)
    assert {(code, html.unescape(name), status, shape, tag, colour)
            for code, name, status, shape, tag, colour in points} == {
        ("LAB-A", "Lab Center Cali: Activo", "active", "circle", "circle", "#1b6e3a"),
        ("LAB-B", "Lab Point Buga: En instalación", "installing", "triangle", "polygon",
         "#8a4b00"),
        ("LAB-C", "=HYPERLINK(1) Dagua: En planeación", "planned", "square", "rect",
         "#0b5cad")}
    assert MARKS["active"][1] != MARKS["paused"][1]  # no two statuses share a shape
    assert len({shape for _, shape in MARKS.values()}) == len(MARKS)
    xy = {code: tuple(map(float, re.search(
        rf'data-lab="{code}"[^>]*>\s*<\w+ (?:cx|x|points)="?([\d.]+)[", ]+(?:cy=")?([\d.]+)',
        svg).groups())) for code in ("LAB-A", "LAB-B")}  # type: ignore[union-attr]
    assert xy["LAB-B"][1] < xy["LAB-A"][1]  # Buga is north of Cali: higher up
    assert ">Norte</text>" in svg and ">Sur</text>" in svg
    assert "Laboratorios sin ubicación, fuera del mapa: 1." in words
    legend = _text(page.split('class="legend"', 1)[1].split("</ul>", 1)[0])
    assert "En pausa (1)" in legend and "Cerrado (0)" in legend
    # The filters: a GET form; the CSV link keeps them.
    only = client.get("/network?region=VL-R2&tier=&rural=").text
    assert _rows(only) == ["LAB-C", "LAB-D"]
    assert 'href="/network/rollout.csv?region=VL-R2" download' in only
    assert _rows(client.get("/network?rural=rural").text) == ["LAB-B", "LAB-C"]
    assert _rows(client.get("/network?tier=lab_point&rural=urban").text) == ["LAB-D"]
    assert client.get("/network?tier=castle").status_code == 422
    _the_csv_files_in_three_languages(client)
    _the_use_page_and_a_labs_page(client)


def test_a_regions_coordinator_sees_its_labs_only_a_teacher_none(
        central: tuple[TestClient, World]) -> None:
    client, _ = central
    sign_in_form(client, COORDINATOR, PASSWORD, lang="en")
    assert _rows(client.get("/network").text) == ["LAB-C", "LAB-D"]
    assert _rows(client.get("/network/use").text) == ["LAB-C", "LAB-D"]
    assert [r["lab"]["code"] for r in client.get("/api/v1/network/rollout").json()] == [
        "LAB-C", "LAB-D"]
    assert [r["lab"]["code"] for r in client.get("/api/v1/network/use").json()] == [
        "LAB-C", "LAB-D"]
    rows = _csv(client.get("/network/use.csv"), ",")
    assert [r[0] for r in rows[1:]] == ["LAB-C", "LAB-D"]
    assert client.get("/network/labs/LAB-A").status_code == 403
    assert client.get("/network/labs/LAB-C").status_code == 200
    assert client.get("/network/labs/NOPE").status_code == 404


    # A teacher has no network.read: no menu entry, a 403 page and a 403 problem.
    client.cookies.clear()
    sign_in_form(client, TEACHER, PASSWORD, lang="es")
    assert 'href="/network"' not in client.get("/").text
    assert client.get("/network").status_code == 403
    assert client.get("/api/v1/network/rollout").status_code == 403


def _the_csv_files_in_three_languages(client: TestClient) -> None:
    es = _csv(client.get("/network/rollout.csv?lang=es"), ";")
    assert es[0][:6] == ["Código del laboratorio", "Laboratorio", "Región", "Nivel",
                         "Rural o urbano", "Estado de implementación"]
    by_code = {r[0]: r for r in es[1:]}
    assert list(by_code) == ["LAB-A", "LAB-B", "LAB-C", "LAB-D"]
    assert by_code["LAB-C"][1] == "'=HYPERLINK(1) Dagua"  # guarded
    assert by_code["LAB-B"][8] == "Sin conexión hace 3 días" and by_code["LAB-B"][10] == "3"
    assert by_code["LAB-A"][13] == "3,45" and by_code["LAB-B"][4] == "Rural"
    assert re.fullmatch(r"En instalación \(\d{4}-\d\d-\d\d\) → Activo \(\S+\) → "
                        r"En pausa \(\S+\)", by_code["LAB-D"][7]), by_code["LAB-D"][7]
    pt = _csv(client.get("/network/use.csv?lang=pt"), ";")
    assert pt[0][5] == "Leituras, últimos 7 dias"
    assert {r[0]: r[5] for r in pt[1:]}["LAB-A"] == "150"
    en = _csv(client.get("/api/v1/network/rollout.csv?lang=en&region=VL-R1"), ",")
    assert en[0][:3] == ["Lab code", "Lab", "Region"]
    assert [r[0] for r in en[1:]] == ["LAB-A", "LAB-B"] and en[1][13] == "3.45"
    use = {r["lab"]["code"]: r for r in client.get("/api/v1/network/use").json()}
    assert (use["LAB-A"]["readings_week"], use["LAB-A"]["overdue_loans"]) == (150, 1)


def _the_use_page_and_a_labs_page(client: TestClient) -> None:
    use = client.get("/network/use?lang=pt").text
    assert _rows(use) == ["LAB-A", "LAB-B", "LAB-C", "LAB-D"]
    first = _text(use.split('class="use-table', 1)[1].split("</tr>", 2)[1])
    assert "150" in first and "3 / 20" in first and "3 / 40" in first
    assert 'role="img" aria-labelledby="months-title"' in use
    lab = client.get("/network/labs/LAB-A").text
    words = _text(lab)
    assert "On-line" in words and "1.4.0" in words
    assert words.count("Semana de") == 1 and "Leituras por semana" in words
    history = _text(lab.split('class="history-full"', 1)[1].split("</ol>", 1)[0])
    assert "Em instalação" in history and "Ativo" in history


def test_on_a_hub_the_pages_say_they_are_on_the_central(
        settings: Settings, engine: Engine, tmp_path: Path) -> None:
    _people(engine)
    with TestClient(create_app(settings)) as client:
        sign_in_form(client, MINISTRY, PASSWORD, lang="es")
        assert 'href="/network"' not in client.get("/").text
        for path in ("/network", "/network/use", "/network/labs/LAB-A",
                     "/network/rollout.csv"):
            answer = client.get(path)
            assert answer.status_code == 404, path
            assert "Este LabHub es el hub de un laboratorio" in answer.text, path
        problem = client.get("/api/v1/network/rollout")
        assert problem.status_code == 404
        assert "this LabHub is a lab's hub" in problem.json()["detail"]


def test_a_labs_conflicts_are_shown_and_a_coordinator_marks_them_seen(
        central: tuple[TestClient, World], engine: Engine) -> None:
    client, _ = central
    with engine.begin() as conn:
        kept = conflicts.keep(conn, "LAB-C", [replica.Conflict(
            kind="assets", key="KIT-07", kept={"status": "available"},
            set_aside={"status": "on_loan"},
            rule=replica.rule_text("asset_owned_there", tag="KIT-07", at="LAB-C",
                                   site="LAB-D"))])
    assert kept == 1
    with engine.connect() as conn:
        (stored,) = conflicts.list_conflicts(conn, sites=["LAB-C"])[1]
    sign_in_form(client, COORDINATOR, PASSWORD, lang="es")
    page = client.get("/network/labs/LAB-C").text
    assert "Conflictos con la central" in page and "Activo KIT-07" in page
    assert ("Gana el dueño: el activo KIT-07 está en LAB-C según la central, y ese "
            "laboratorio es su dueño. La versión del laboratorio LAB-D queda aparte."
            ) in html.unescape(page)  # the rule in the person's language
    assert client.get("/network/labs/LAB-D").text.count("Sin conflictos") == 1
    seen = f"/network/labs/LAB-C/conflicts/{stored.id}/seen"
    assert post_form(client, seen, {"csrf_token": "wrong"}).status_code == 403
    done = post_form(client, seen, {"csrf_token": hidden(page, "csrf_token")})
    assert done.status_code == 303 and done.headers["location"].endswith(
        "/network/labs/LAB-C#conflicts-title")
    assert f"Visto por {COORDINATOR}" in html.unescape(client.get("/network/labs/LAB-C").text)
    # Another lab's path does not reach it; the ministry reads it but may not mark it.
    other = post_form(client, f"/network/labs/LAB-D/conflicts/{stored.id}/seen",
                      {"csrf_token": hidden(page, "csrf_token")})
    assert other.status_code == 404
    client.cookies.clear()
    sign_in_form(client, MINISTRY, PASSWORD, lang="en")
    page = client.get("/network/labs/LAB-C").text
    assert "Conflicts with the central" in page and "Mark as seen" not in page
    assert "The owner wins: asset KIT-07 is at LAB-C on the central" in html.unescape(page)
    assert post_form(client, seen, {"csrf_token": hidden(page, "csrf_token")}
                     ).status_code == 403

