"""The import page through HTTP (starlette's client, SQLite and PostgreSQL): a file with
errors on several rows is shown row by row and column in the person's language, with
nothing written; a good file is checked, then imported with "Import" (once); the CSRF
value of the multipart form and of "Import" is checked; a file over the limit, a workbook
and an empty or unreadable file are refused with words beside the field; the gates
(a teacher may not import; a coordinator's rows outside their sites are row errors); the
templates."""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from web_client import hidden, post_form, sign_in_form
from web_inventory_world import COORDINATOR, COORDINATOR_PASSWORD, make_equipment_world
from web_world import TEACHER, TEACHER_PASSWORD

from inventory.tables import assets
from labhub.app import create_app
from labhub.settings import Settings

BAD = ("tag;model;site;serial_number\n"
       "UNO-20;UNO;LAB-A;SN-20\n"
       "UNO-21;NOSUCH;LAB-A;\n"       # row 3: no such model
       "UNO-20;UNO;LAB-A;\n"          # row 4: the tag again
       "UNO-23;UNO;LAB-B;\n"          # row 5: fine for a coordinator of the region
       "UNO-24;UNO;;\n")              # row 6: no site
GOOD = "tag;model;site\nUNO-20;UNO;LAB-A\nUNO-21;UNO;LAB-A\nUNO-22;UNO;LAB-B\n"
LIMIT = 4096  # max_body_bytes of these tests' hub


@pytest.fixture
def client(engine: Engine, settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update={"site": "LAB-A", "max_body_bytes": LIMIT}))
    with TestClient(app) as test_client:
        test_client.world = make_equipment_world(engine)  # type: ignore[attr-defined]
        test_client.engine = engine  # type: ignore[attr-defined]
        yield test_client


def _count(client: TestClient) -> int:
    with client.engine.connect() as conn:  # type: ignore[attr-defined]
        return int(conn.execute(select(func.count()).select_from(assets)).scalar_one())


def _upload(client: TestClient, text: str | bytes, *, kind: str = "assets",
            csrf: str | None = None, name: str = "inventario.csv") -> Any:
    if csrf is None:
        csrf = hidden(client.get("/import").text, "csrf_token")
    data = text.encode() if isinstance(text, str) else text
    return client.post("/import", data={"csrf_token": csrf, "kind": kind},
                       files={"file": (name, data, "text/csv")}, follow_redirects=False)


def _rows(page: str) -> list[tuple[str, str, str]]:
    body = re.search(r'<table class="row-errors">.*?<tbody>(.*?)</tbody>', page, re.S)
    assert body is not None, page
    rows = re.findall(r"<tr><td>(\d+)</td><td>(.*?)</td><td>(.*?)</td></tr>", body.group(1))
    return [(r, html.unescape(re.sub("<[^>]+>", "", c)), html.unescape(re.sub("<[^>]+>", "", w)))
            for r, c, w in rows]


def test_a_file_with_errors_shows_every_row_and_writes_nothing(client: TestClient) -> None:
    sign_in_form(client, COORDINATOR, COORDINATOR_PASSWORD)
    before = _count(client)
    page = _upload(client, BAD)
    assert page.status_code == 422
    rows = _rows(page.text)
    assert [r for r, _c, _w in rows] == ["3", "4", "6"]
    assert rows[0][1].startswith("la columna modelo")
    assert "No hay ningún modelo con este código en el catálogo." in rows[0][2]
    assert "no model with code 'NOSUCH'" in rows[0][2]  # the domain's words, secondary
    assert "Esto ya está en una fila anterior del archivo." in rows[1][2]
    assert "Esta celda está vacía: llénela." in rows[2][2]
    assert "Filas con errores: 3 de 5. No se guardó nada." in html.unescape(page.text)
    assert 'name="key"' not in page.text  # no "Import" for a file with errors
    assert _count(client) == before


def test_a_good_file_is_checked_then_imported_once(client: TestClient) -> None:
    sign_in_form(client, COORDINATOR, COORDINATOR_PASSWORD, lang="pt")
    before = _count(client)
    page = _upload(client, GOOD)
    assert page.status_code == 200, page.text
    assert "Linhas conferidas: 3 (Patrimônio). Todas estão certas." in html.unescape(page.text)
    assert _count(client) == before  # checked, not written
    fields = {"csrf_token": hidden(page.text, "csrf_token"), "kind": "assets",
              "key": hidden(page.text, "key")}
    done = post_form(client, "/import/confirm", fields)
    assert done.status_code == 303 and done.headers["location"] == "/import?done=assets&created=3"
    assert _count(client) == before + 3
    shown = client.get(done.headers["location"])
    assert "Linhas importadas: 3 (Patrimônio)." in shown.text
    again = post_form(client, "/import/confirm", fields)
    assert again.status_code == 409 and "já foi importado" in again.text
    assert _count(client) == before + 3
    # The same file again: every tag is taken now.
    taken = _upload(client, GOOD)
    assert taken.status_code == 422 and "Isto já está no inventário." in taken.text


def test_import_refuses_a_file_that_went_wrong_since_its_check(client: TestClient) -> None:
    sign_in_form(client, COORDINATOR, COORDINATOR_PASSWORD, lang="en")
    first = _upload(client, GOOD)
    second = _upload(client, GOOD)
    for page in (first, second):
        assert page.status_code == 200
    fields = [{"csrf_token": hidden(p.text, "csrf_token"), "kind": "assets",
               "key": hidden(p.text, "key")} for p in (first, second)]
    assert post_form(client, "/import/confirm", fields[0]).status_code == 303
    late = post_form(client, "/import/confirm", fields[1])
    assert late.status_code == 409
    assert "Something changed in the inventory since the check" in late.text
    assert _count(client) == 12  # the world's 9 and the first file's 3


def test_forms_without_the_csrf_value_are_refused(client: TestClient) -> None:
    sign_in_form(client, COORDINATOR, COORDINATOR_PASSWORD)
    before = _count(client)
    refused = _upload(client, GOOD, csrf="not-the-session-s")
    assert refused.status_code == 403 and "<html" in refused.text
    plain = post_form(client, "/import", {"kind": "assets"})
    assert plain.status_code == 403
    good = _upload(client, GOOD)
    assert post_form(client, "/import/confirm", {"kind": "assets", "key": hidden(
        good.text, "key")}).status_code == 403
    assert _count(client) == before


def test_huge_binary_empty_and_unreadable_files_are_refused_with_words(
        client: TestClient) -> None:
    sign_in_form(client, COORDINATOR, COORDINATOR_PASSWORD)
    huge = _upload(client, "tag;model;site\n" + "UNO-30;UNO;LAB-A\n" * 400)
    assert huge.status_code == 413
    assert "El archivo pesa más de" in huge.text and 'id="file-error"' in huge.text
    workbook = _upload(client, b"PK\x03\x04" + b"\x00" * 100, name="inventario.xlsx")
    assert workbook.status_code == 415 and "quizás es un libro de Excel" in workbook.text
    empty = _upload(client, b"")
    assert empty.status_code == 422
    latin1 = _upload(client, "tag;model;site\nUNO-30;Año;LAB-A\n".encode("latin-1"))
    assert latin1.status_code == 422 and "no es texto UTF-8" in latin1.text
    columns = _upload(client, "etiqueta;color\nUNO-30;rojo\n")
    assert columns.status_code == 422 and "nombra columnas que este tipo no acepta" in columns.text
    nothing = client.post("/import", data={"csrf_token": hidden(client.get("/import").text,
                                                                "csrf_token")},
                          files={"file": ("a.csv", b"x", "text/csv")})
    assert nothing.status_code == 422 and 'id="kind-error"' in nothing.text


def test_gates_reach_and_templates(client: TestClient) -> None:
    assert client.get("/import", follow_redirects=False).status_code == 303
    sign_in_form(client, TEACHER, TEACHER_PASSWORD)
    assert client.get("/import").status_code == 403
    assert client.get("/import/template/assets.csv").status_code == 403
    client.cookies.clear()
    sign_in_form(client, COORDINATOR, COORDINATOR_PASSWORD)
    # A coordinator of VL-R1 may not import models (the whole network's catalogue) ...
    models = _upload(client, "code;name;category\nESP32;ESP32;microcontroller_board\n",
                     kind="models")
    assert models.status_code == 403
    # ... nor assets at a site outside theirs (a row error, as in the API).
    with client.engine.begin() as conn:  # type: ignore[attr-defined]
        from inventory import sites

        sites.create_site(conn=conn, code="VL-R2", name="Otra región", kind="region",
                          parent_code="VL", by="test")
        sites.create_site(conn=conn, code="LAB-Z", name="Lejos", kind="site",
                          parent_code="VL-R2", tier="lab_point", by="test")
    outside = _upload(client, "tag;model;site\nUNO-40;UNO;LAB-Z\n")
    assert outside.status_code == 422
    assert "Esta sede está fuera de las sedes que usted administra." in outside.text
    for kind in ("sites", "models", "assets"):
        template = client.get(f"/import/template/{kind}.csv")
        assert template.status_code == 200 and template.headers["content-type"].startswith(
            "text/csv")
        rows = list(csv.reader(io.StringIO(template.content.decode("utf-8-sig")),
                               delimiter=";"))
        assert len(rows) == 2 and len(rows[0]) == len(rows[1])
    assert client.get("/import/template/people.csv").status_code == 422
