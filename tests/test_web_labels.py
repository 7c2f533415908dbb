"""The labels page through HTTP (starlette's client, SQLite and PostgreSQL): choosing by
site, model, search, ticked boxes and typed tags; the sheet's SVG preview and PDF in A4 and
the small printer's format, whose codes hold the tags; a tag that is not one, not known or
at another lab said beside the box; a teacher's scope; the gates; bad values in the
address answered with a page. tests/test_web_labels_browser.py drives the page in Chromium."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from test_inventory_labels import _runs_to_matrix, parse_svg, segno_matrix
from web_client import sign_in_form
from web_inventory_world import COORDINATOR, COORDINATOR_PASSWORD, make_equipment_world
from web_world import BY, STUDENT, STUDENT_PIN, TEACHER, TEACHER_PASSWORD

from inventory import assets, labels
from labhub.app import create_app
from labhub.settings import Settings


@pytest.fixture
def client(engine: Engine, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings.model_copy(update={"site": "LAB-A"}))) as test_client:
        test_client.world = make_equipment_world(engine)  # type: ignore[attr-defined]
        yield test_client


def _svg_tags(svg: str) -> list[str]:
    found = parse_svg(svg)
    for g in found:  # each code holds its tag, nothing else
        expected = segno_matrix(g["tag"])
        assert _runs_to_matrix(g["runs"], len(expected)) == expected
    return [g["tag"] for g in found]


def _links(page: str) -> tuple[str, str]:
    svg = re.search(r'<img src="([^"]+)"', page)
    pdf = re.search(r'<a class="button print" href="([^"]+)"', page)
    assert svg is not None and pdf is not None, page
    return html.unescape(svg.group(1)), html.unescape(pdf.group(1))


def test_a_coordinator_chooses_by_site_and_model_and_sees_the_sheet(client: TestClient) -> None:
    sign_in_form(client, COORDINATOR, COORDINATOR_PASSWORD)
    page = client.get("/labels?site=LAB-A&model=UNO")
    assert page.status_code == 200
    assert "Activos encontrados: 5" in page.text
    for tag in ("UNO-1", "UNO-5"):
        assert f'name="tag" value="{tag}"' in page.text
    assert 'value="UNO-9"' not in page.text and "<img" not in page.text
    chosen = client.get("/labels?" + urlencode(
        [("site", "LAB-A"), ("model", "UNO"), ("tag", "UNO-2"), ("tag", "UNO-3"),
         ("tags", "PRN-1\nKIT-1\n"), ("format", "a4"), ("show", "1")]))
    assert chosen.status_code == 200, chosen.text
    assert "Etiquetas: 4. Páginas: 1." in chosen.text
    # The typed tags not on the list stay chosen, as ticked boxes.
    assert re.search(r'name="tag" value="PRN-1" checked', chosen.text)
    svg, pdf = _links(chosen.text)
    answer = client.get(svg)
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/svg+xml"
    assert answer.headers["x-label-pages"] == "1"
    assert _svg_tags(answer.text) == ["UNO-2", "UNO-3", "PRN-1", "KIT-1"]
    assert 'width="210mm" height="297mm"' in answer.text
    printed = client.get(pdf)
    assert printed.status_code == 200 and printed.headers["content-type"] == "application/pdf"
    assert printed.content.startswith(b"%PDF")
    assert b"/MediaBox [0 0 595.28 841.89]" in printed.content


def test_the_small_format_is_one_label_a_page(client: TestClient, engine: Engine) -> None:
    sign_in_form(client, COORDINATOR, COORDINATOR_PASSWORD, lang="en")
    page = client.get("/labels?" + urlencode(
        [("tags", "KIT-1\nKIT-2\nUNO-4"), ("format", "small"), ("show", "1"), ("sheet", "2")]))
    assert page.status_code == 200, page.text
    assert "Labels: 3. Pages: 3." in page.text and "Page 2 of 3" in page.text
    svg, pdf = _links(page.text)
    answer = client.get(svg)
    assert _svg_tags(answer.text) == ["KIT-2"]
    # Only the page asked for is drawn, and it is that page of the whole sheet.
    with engine.connect() as conn:
        whole = labels.render_svg(labels.labels_for(conn=conn, tags=["KIT-1", "KIT-2", "UNO-4"]),
                                  labels.SMALL_LABEL)
    assert answer.text == whole[1]
    assert 'width="50mm" height="30mm"' in answer.text
    assert answer.headers["x-label-pages"] == "3"
    printed = client.get(pdf)
    assert printed.content.count(b"/MediaBox [0 0 141.73 85.04]") >= 1
    assert printed.content.count(b"/Type /Page\n") == 3
    # The kits are marked in the list.
    listed = client.get("/labels?q=KIT")
    assert listed.text.count('class="badge">kit</span>') == 1  # KIT-1 has a contents list


def test_every_asset_that_matches_and_the_lost_ones(client: TestClient, engine: Engine) -> None:
    with engine.begin() as conn:
        assets.set_status(conn=conn, tag="UNO-5", status="lost", by=BY)
    sign_in_form(client, COORDINATOR, COORDINATOR_PASSWORD)
    page = client.get("/labels?model=UNO&all=1&show=1")
    assert page.status_code == 200, page.text
    # UNO-1..5 at LAB-A and UNO-9 at LAB-B, less the lost one.
    assert "Etiquetas: 5. Páginas: 1." in page.text and "perdidos o en tránsito: 1" in page.text
    svg, _pdf = _links(page.text)
    assert _svg_tags(client.get(svg).text) == ["UNO-1", "UNO-2", "UNO-3", "UNO-4", "UNO-9"]
    with_lost = client.get("/labels?model=UNO&all=1&away=1")
    svg, _pdf = _links(with_lost.text)
    assert "UNO-5" in _svg_tags(client.get(svg).text)


def test_wrong_unknown_and_foreign_tags_are_said_beside_the_box(client: TestClient) -> None:
    sign_in_form(client, TEACHER, TEACHER_PASSWORD)
    page = client.get("/labels?" + urlencode(
        {"tags": "UNO-2\nno es<una>etiqueta\nNOPE-1\nUNO-9", "show": "1"}))
    assert page.status_code == 422
    box = re.search(r'<textarea id="tags"[^>]*>', page.text)
    assert box is not None and 'aria-invalid="true"' in box.group(0)
    assert "tags-error" in box.group(0)
    said = re.search(r'<div class="error" id="tags-error">(.*?)</div>', page.text, re.S)
    assert said is not None
    words = html.unescape(said.group(1))
    assert "“no es<una>etiqueta” no es una etiqueta" in words
    assert "Ningún activo tiene la etiqueta “NOPE-1”." in words
    assert "“UNO-9” está en un laboratorio" in words
    assert "<img" not in page.text  # no sheet until the tags are right
    assert "no es&lt;una&gt;etiqueta" in page.text  # the wrong line stays, escaped


def test_a_teacher_sees_only_their_lab_and_is_refused_another_labs_sheet(
        client: TestClient) -> None:
    sign_in_form(client, TEACHER, TEACHER_PASSWORD)
    page = client.get("/labels?model=UNO")
    assert page.status_code == 200 and "UNO-9" not in page.text and "UNO-1" in page.text
    assert 'value="LAB-B"' not in page.text
    refused = client.get("/labels/sheet.pdf?tag=UNO-9")
    assert refused.status_code == 403 and "<html" in refused.text
    assert client.get("/labels/sheet.svg?tag=UNO-1").status_code == 200
    # Every asset that matches is only those of their lab.
    every = client.get("/labels?model=UNO&all=1")
    svg, _pdf = _links(every.text)
    assert _svg_tags(client.get(svg).text) == ["UNO-1", "UNO-2", "UNO-3", "UNO-4", "UNO-5"]


def test_gates_and_bad_values_answer_pages(client: TestClient) -> None:
    assert client.get("/labels", follow_redirects=False).status_code == 303
    assert client.get("/labels/sheet.pdf?tag=UNO-1", follow_redirects=False).status_code == 303
    world = client.world.web  # type: ignore[attr-defined]
    client.post("/signin?next=/", content=urlencode(
        {"way": "pin", "class_code": world.class_code, "name": STUDENT, "pin": STUDENT_PIN}),
        headers={"content-type": "application/x-www-form-urlencoded"})
    refused = client.get("/labels")
    assert refused.status_code == 403 and "<html" in refused.text
    client.cookies.clear()
    sign_in_form(client, COORDINATOR, COORDINATOR_PASSWORD)
    for path, status in (("/labels?format=huge", 422), ("/labels?page=abc", 422),
                         ("/labels?site=no%20site", 422),
                         ("/labels/sheet.svg?tag=UNO-1&sheet=9", 422),
                         ("/labels/sheet.svg?format=a4", 404), ("/labels/sheet.pdf?tag=NOPE", 404),
                         ("/labels?site=NOWHERE", 404)):
        answer = client.get(path)
        assert answer.status_code == status, (path, answer.text[:300])
        assert answer.headers["content-type"].startswith("text/html"), path
