"""The loans pages through HTTP (starlette's client, SQLite and PostgreSQL): a loan to a
person, a group and a class with its due day in the hub's zone (read back through the
API), each error beside its field naming the tag in es and pt, a partial return then the
rest (a kit with a part missing, recorded as the API's check-in records it), the overdue
list by how late, filters and pages, the scope (a teacher at LAB-A sees no LAB-B loan
and cannot lend LAB-B's UNO-9), the gates, and a page (never a traceback) for bad values
in a URL. tests/test_web_loans_browser.py drives the same pages in Chromium."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, update
from web_client import hidden, post_form, sign_in_form
from web_inventory_world import COORDINATOR, COORDINATOR_PASSWORD, make_equipment_world
from web_world import BY, STUDENT, STUDENT_PIN, TEACHER, TEACHER_PASSWORD

from inventory import assets, loans
from inventory.tables import loans as loan_table
from inventory.values import now_us
from labhub.access import accounts, classes, passwords
from labhub.access.permissions import Grant, Role
from labhub.app import create_app
from labhub.settings import Settings
from labhub.web.loans import LOANS_PER_PAGE, due_of, read_tags

DAY_US = 86_400 * 1_000_000
READER = "Rita Lectora"
READER_PASSWORD = "clave de solo lectura"


@pytest.fixture
def client(engine: Engine, settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update={"site": "LAB-A"}))
    with TestClient(app) as test_client:
        test_client.world = make_equipment_world(engine)  # type: ignore[attr-defined]
        test_client.engine = engine  # type: ignore[attr-defined]
        yield test_client


def _zone(client: TestClient) -> ZoneInfo:
    return ZoneInfo(client.app.state.settings.timezone)  # type: ignore[attr-defined]


def _today(client: TestClient) -> date:
    return datetime.now(tz=_zone(client)).date()


def _new_form(client: TestClient) -> dict[str, str]:
    page = client.get("/loans/new")
    assert page.status_code == 200, page.text
    return {"csrf_token": hidden(page.text, "csrf_token")}


def _lend(client: TestClient, **fields: str) -> Any:
    due = (_today(client) + timedelta(days=3)).isoformat()
    return post_form(client, "/loans/new", _new_form(client) | {"due": due} | fields)


def _loan_id(answer: Any) -> str:
    assert answer.status_code == 303, answer.text
    found = re.fullmatch(r"/loans/([0-9a-f-]{36})\?done=lent", answer.headers["location"])
    assert found is not None, answer.headers["location"]
    return found.group(1)


def _api_loan(client: TestClient, loan_id: str) -> dict[str, Any]:
    answer = client.get(f"/api/v1/loans/{loan_id}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _error_of(page: str, field_id: str) -> str:
    """The error beside a field: the field points at it and is marked invalid."""
    tag = re.search(rf'<(?:input|select|textarea) id="{field_id}"[^>]*>', page)
    assert tag is not None, field_id
    assert 'aria-invalid="true"' in tag.group(0), tag.group(0)
    assert f"{field_id}-error" in tag.group(0)
    found = re.search(rf'<p class="error" id="{field_id}-error"[^>]*>([^<]*)</p>', page)
    assert found is not None, field_id
    return html.unescape(found.group(1))


def _class_id(client: TestClient) -> int:
    with client.engine.connect() as conn:  # type: ignore[attr-defined]
        [group] = classes.list_classes(conn)
    return group.id


# -- lending -------------------------------------------------------------------------------

def test_a_teacher_lends_to_a_person_a_group_and_her_class(client: TestClient) -> None:
    sign_in_form(client, TEACHER, TEACHER_PASSWORD)
    form = client.get("/loans/new").text
    week = (_today(client) + timedelta(days=7)).isoformat()
    assert f'name="due" type="date" value="{week}"' in form  # a week, in the hub's zone
    assert "7°B Ciencias (LAB-A)" in form  # her class, to choose
    day = _today(client) + timedelta(days=3)
    person = _loan_id(_lend(client, kind="person", borrower="Lucía Pérez", tags="UNO-2",
                            due=day.isoformat(), purpose="Feria de ciencias"))
    group = _loan_id(_lend(client, kind="group", borrower="Club de robótica",
                           tags="UNO-3\r\nUNO-4\r\n"))  # as a USB scanner types them
    klass = _loan_id(_lend(client, kind="class", **{"class": str(_class_id(client))},
                           borrower="ignored for a class", tags="KIT-1"))
    one = _api_loan(client, person)
    assert (one["borrower"], one["borrower_kind"], one["site"]) == ("Lucía Pérez", "person",
                                                                    "LAB-A")
    assert [i["tag"] for i in one["items"]] == ["UNO-2"] and one["by"] == TEACHER
    due = datetime.fromisoformat(one["due_at"]).astimezone(_zone(client))
    assert (due.date(), due.hour, due.minute) == (day, 23, 59)  # the end of that day
    assert one["purpose"] == "Feria de ciencias"
    two = _api_loan(client, group)
    assert (two["borrower"], two["borrower_kind"]) == ("Club de robótica", "group")
    assert [i["tag"] for i in two["items"]] == ["UNO-3", "UNO-4"]
    three = _api_loan(client, klass)
    assert (three["borrower"], three["borrower_kind"]) == ("7°B Ciencias", "group")
    assert three["items"] == [{"tag": "KIT-1", "kit": True, "returned_at": None,
                               "condition": None}]
    page = client.get(f"/loans/{klass}?done=lent")
    assert page.status_code == 200
    assert "Prestado. Los ítems están prestados hasta el" in page.text
    assert "<h1>Préstamo a 7°B Ciencias</h1>" in page.text
    assert client.get("/api/v1/assets/by-tag/UNO-1").json()["status"] == "on_loan"  # in the kit
    listed = client.get("/loans").text
    assert "Préstamos abiertos: 3" in listed
    for loan_id in (person, group, klass):
        assert f'href="/loans/{loan_id}"' in listed


def test_the_tags_of_the_form_are_read_one_a_line_or_separated() -> None:
    assert read_tags("KIT-1\r\nUNO-2\n\n") == ["KIT-1", "UNO-2"]
    assert read_tags(" UNO-2, UNO-3;UNO-4 ") == ["UNO-2", "UNO-3", "UNO-4"]
    assert read_tags("  \n") == []


def test_errors_show_beside_their_fields_naming_the_tag(client: TestClient) -> None:
    sign_in_form(client, TEACHER, TEACHER_PASSWORD)
    empty = _lend(client, kind="person", borrower=" ", tags="", due="")
    assert empty.status_code == 422
    assert _error_of(empty.text, "borrower") == "Escriba el nombre de la persona."
    assert _error_of(empty.text, "tags") == "Escriba o escanee al menos una etiqueta."
    assert _error_of(empty.text, "due").startswith("Elija un día, como ")
    assert "El préstamo no se registró" in empty.text
    no_class = _lend(client, kind="class", tags="UNO-2")
    assert _error_of(no_class.text, "class") == "Elija una de las clases del laboratorio."
    past = _lend(client, kind="group", borrower="Club", tags="UNO-2",
                 due=(_today(client) - timedelta(days=1)).isoformat())
    assert _error_of(past.text, "due") == "Ese día ya pasó: elija hoy o un día posterior."
    far = _lend(client, kind="group", borrower="Club", tags="UNO-2",
                due=(_today(client) + timedelta(days=500)).isoformat())
    assert far.status_code == 422
    assert _error_of(far.text, "due").startswith("Un préstamo dura como máximo 400 días")
    bad_kind = _lend(client, kind="room", borrower="Sala 2", tags="UNO-2")
    assert "Elija quién lo lleva" in bad_kind.text and bad_kind.status_code == 422
    cases = {
        "UNO-2\nUNO-77": "Ningún activo tiene la etiqueta “UNO-77”.",
        "UNO-2\nUNO 1!": "“1!” no es un código",
        "UNO-1": "“UNO-1” está en el kit “KIT-1”: preste el kit.",
        "UNO-2\nUNO-2": "“UNO-2” está dos veces en la lista.",
        "UNO-2\nUNO-9": "“UNO-9” está en LAB-B, donde usted no puede prestar.",
    }
    for tags, words in cases.items():
        answer = _lend(client, kind="person", borrower="Lucía", tags=tags)
        assert answer.status_code in (403, 409, 422), (tags, answer.status_code)
        assert _error_of(answer.text, "tags").startswith(words), tags
        assert f">{html.escape(tags)}</textarea>" in answer.text  # kept to correct
    with client.engine.begin() as conn:  # type: ignore[attr-defined]
        for tag in ("UNO-1", "PRN-1"):
            assets.set_status(conn=conn, tag=tag, status="lost", by=BY)
    lost = _lend(client, kind="person", borrower="Lucía", tags="UNO-3\nPRN-1")
    assert lost.status_code == 409
    assert _error_of(lost.text, "tags") == ("“PRN-1” no se puede prestar ahora: no está "
                                            "disponible.")
    short = _lend(client, kind="person", borrower="Lucía", tags="KIT-1")
    assert _error_of(short.text, "tags") == ("El kit “KIT-1” no puede salir: su pieza "
                                             "“UNO-1” no está aquí o no está disponible.")
    _loan_id(_lend(client, kind="person", borrower="Lucía", tags="UNO-2"))
    again = _lend(client, kind="person", borrower="Marta", tags="UNO-3\nUNO-2")
    assert again.status_code == 409
    assert _error_of(again.text, "tags") == "“UNO-2” ya está prestado."
    client.cookies.set("labhub_lang", "pt")  # the same in Portuguese
    answer = _lend(client, kind="person", borrower="", tags="UNO-88")
    assert _error_of(answer.text, "borrower") == "Escreva o nome da pessoa."
    answer = _lend(client, kind="person", borrower="Lúcia", tags="UNO-88")
    assert _error_of(answer.text, "tags") == "Nenhum patrimônio tem a etiqueta “UNO-88”."
    with client.engine.connect() as conn:  # type: ignore[attr-defined]
        assert loans.list_loans(conn=conn)[0] == 1  # only the one that was good


# -- taking back ---------------------------------------------------------------------------

def _check_in(client: TestClient, loan_id: str, fields: dict[str, str]) -> Any:
    page = client.get(f"/loans/{loan_id}")
    base = {"csrf_token": hidden(page.text, "csrf_token"),
            "version": hidden(page.text, "version")}
    return post_form(client, f"/loans/{loan_id}/check-in", base | fields)


def test_a_partial_return_then_the_rest_with_a_kit_part_missing(client: TestClient) -> None:
    sign_in_form(client, TEACHER, TEACHER_PASSWORD)
    loan_id = _loan_id(_lend(client, kind="class", **{"class": str(_class_id(client))},
                             tags="KIT-1\nUNO-2"))
    page = client.get(f"/loans/{loan_id}").text
    assert "KIT-1 volvió ahora" in page and "UNO-2 volvió ahora" in page
    assert "Cable de puente (JMP) devueltos, de 40" in page
    nothing = _check_in(client, loan_id, {"action": "review"})
    assert nothing.status_code == 422
    assert _error_of(nothing.text, "b-1") == "Marque al menos un ítem que volvió."
    review = _check_in(client, loan_id, {"action": "review", "back:UNO-2": "1",
                                         "condition:UNO-2": "fair"})
    assert review.status_code == 200
    assert "Devolución: lo que se registrará" in review.text
    assert "Siguen prestados después de esto: KIT-1" in review.text
    assert _api_loan(client, loan_id)["items"][1]["returned_at"] is None  # not yet
    edit = post_form(client, f"/loans/{loan_id}/check-in", {
        "csrf_token": hidden(review.text, "csrf_token"), "action": "edit",
        "version": hidden(review.text, "version"), "back:UNO-2": "1",
        "condition:UNO-2": "fair"})
    assert edit.status_code == 200  # the form again, as it was chosen
    assert re.search(r'id="b-2" name="back:UNO-2" type="checkbox" value="1" checked', edit.text)
    assert '<option value="fair" selected>' in edit.text
    done = post_form(client, f"/loans/{loan_id}/check-in", {
        "csrf_token": hidden(review.text, "csrf_token"), "action": "confirm",
        "version": hidden(review.text, "version"), "back:UNO-2": "1",
        "condition:UNO-2": "fair"})
    assert done.status_code == 303 and done.headers["location"] == f"/loans/{loan_id}?done=back"
    loan = _api_loan(client, loan_id)
    assert loan["open"] and [(i["tag"], i["condition"], i["returned_at"] is not None)
                             for i in loan["items"]] == [("KIT-1", None, False),
                                                         ("UNO-2", "fair", True)]
    assert client.get("/api/v1/assets/by-tag/UNO-2").json()["status"] == "available"
    page = client.get(f"/loans/{loan_id}?done=back").text
    assert "Los demás ítems siguen prestados" in page and "UNO-2 volvió ahora" not in page
    stale = post_form(client, f"/loans/{loan_id}/check-in", {  # drawn before the return
        "csrf_token": hidden(review.text, "csrf_token"), "action": "confirm",
        "version": hidden(review.text, "version"), "back:KIT-1": "1"})
    assert stale.status_code == 409 and "recargue su página" in stale.text
    too_many = _check_in(client, loan_id, {"action": "review", "back:KIT-1": "1",
                                           "asset:KIT-1:UNO-1": "1", "part:KIT-1:JMP": "41",
                                           "part:KIT-1:HC-SR04": "1"})
    assert too_many.status_code == 422
    assert _error_of(too_many.text, "p-1-2") == "Escriba cuántas volvieron: de 0 a 40."
    review = _check_in(client, loan_id, {"action": "review", "back:KIT-1": "1",
                                         "part:KIT-1:JMP": "35", "part:KIT-1:HC-SR04": "1"})
    assert review.status_code == 200, review.text
    said = html.unescape(review.text)
    assert "Falta, se registra como perdido: 1 × UNO-1" in said
    assert "Falta, se registra como perdido: 5 × Cable de puente (JMP)" in said
    assert "Después de esto no queda nada prestado: el préstamo se cierra." in said
    fields = {"csrf_token": hidden(review.text, "csrf_token"), "action": "confirm",
              "version": hidden(review.text, "version"), "back:KIT-1": "1",
              "part:KIT-1:JMP": hidden(review.text, "part:KIT-1:JMP"),
              "part:KIT-1:HC-SR04": hidden(review.text, "part:KIT-1:HC-SR04")}
    assert "asset:KIT-1:UNO-1" not in review.text  # unticked: not sent on
    assert post_form(client, f"/loans/{loan_id}/check-in", fields).status_code == 303
    loan = _api_loan(client, loan_id)
    assert not loan["open"] and loan["closed_at"] is not None
    losses = client.get("/api/v1/kits/KIT-1/losses").json()
    assert sorted((x["part"], x["damage"], x["quantity"], x["loan"]) for x in losses) == [
        ("JMP", "lost", 5, loan_id), ("UNO-1", "lost", 1, loan_id)]
    assert client.get("/api/v1/assets/by-tag/UNO-1").json()["status"] == "lost"
    assert client.get("/api/v1/assets/by-tag/KIT-1").json()["status"] == "available"
    page = html.unescape(client.get(f"/loans/{loan_id}?done=back").text)
    assert "El préstamo está cerrado: ya no queda nada prestado." in page
    assert "Falta: 5 × Cable de puente (JMP)" in page and "Falta: 1 × UNO-1" in page
    assert "Registrar devolución…" not in page  # nothing left to take back
    closed = post_form(client, f"/loans/{loan_id}/check-in", fields)  # sent again
    assert closed.status_code == 409 and "recargue su página" in closed.text


# -- lists ---------------------------------------------------------------------------------

def _lent(client: TestClient, tag: str, borrower: str, days: float) -> str:
    """A loan of ``tag`` made through the domain, due ``days`` from now (past: overdue)."""
    with client.engine.begin() as conn:  # type: ignore[attr-defined]
        loan = loans.check_out(conn=conn, asset_tags=[tag], borrower=borrower,
                               borrower_kind="person", due_at=now_us() + DAY_US, by=BY)
        conn.execute(update(loan_table).where(loan_table.c.uuid == loan.uuid)
                     .values(due_at=now_us() + int(days * DAY_US)))
    return loan.uuid


def test_the_overdue_list_is_sorted_by_how_late(client: TestClient) -> None:
    _lent(client, "UNO-2", "Dos días tarde", -2.5)
    _lent(client, "UNO-3", "Diez días tarde", -10.5)
    _lent(client, "UNO-4", "Aún a tiempo", 3)
    _lent(client, "UNO-5", "Ayer", -0.5)
    sign_in_form(client, TEACHER, TEACHER_PASSWORD)
    page = client.get("/loans?overdue=1").text
    assert "<h1>Préstamos vencidos</h1>" in page and "Préstamos vencidos: 3" in page
    order = [page.index(name) for name in ("Diez días tarde", "Dos días tarde", "Ayer")]
    assert order == sorted(order) and "Aún a tiempo" not in page
    assert "Vencido · días de atraso: 10" in page and "Vencido · días de atraso: 0" in page
    every = client.get("/loans").text
    assert "Préstamos abiertos: 4" in every and "Aún a tiempo" in every
    assert every.count('class="loan late"') == 3


def test_filters_returned_loans_and_pages(client: TestClient) -> None:
    with client.engine.begin() as conn:  # type: ignore[attr-defined]
        for n in range(LOANS_PER_PAGE + 2):
            assets.register_asset(conn=conn, tag=f"SNS-{n:02}", model_code="UNO",
                                  site_code="LAB-A", by=BY)
    for n in range(LOANS_PER_PAGE + 2):
        _lent(client, f"SNS-{n:02}", f"Estudiante {n:02}", 1 + n)
    returned = _lent(client, "UNO-2", "Marta devolvió", 2)
    with client.engine.begin() as conn:  # type: ignore[attr-defined]
        loans.check_in(conn=conn, loan_uuid=returned, by=BY,
                       returns=[loans.ItemReturn("UNO-2")])
    sign_in_form(client, COORDINATOR, COORDINATOR_PASSWORD, lang="pt")
    first = client.get("/loans").text
    assert f"Empréstimos em aberto: {LOANS_PER_PAGE + 2}" in first
    assert "Página 1 de 2" in first and "Estudiante 19" in first
    assert "Estudiante 20" not in first and 'href="?page=2"' in first
    second = client.get("/loans?page=2").text
    assert "Estudiante 20" in second and "Estudiante 21" in second and "Página 2 de 2" in second
    assert "Marta devolvió" not in first + second
    every = client.get("/loans?all=1&borrower=marta").text
    assert "Empréstimos: 1" in every and "Marta devolvió" in every and "Devolvido em" in every
    named = client.get("/loans?borrower=estudiante+0").text
    assert "Empréstimos em aberto: 10" in named
    assert 'href="?borrower=Estudiante' not in named  # one page: no pager
    by_site = client.get("/loans?site=LAB-B").text
    assert "Empréstimos em aberto: 0" in by_site and "Nenhum empréstimo corresponde." in by_site
    assert '<option value="LAB-B" selected>' in by_site
    region = client.get("/loans?site=VL-R1&page=2").text  # a site and its subtree
    assert "Estudiante 21" in region


# -- scope and gates -----------------------------------------------------------------------

def test_a_teacher_sees_no_loan_of_another_lab_and_cannot_lend_there(
        client: TestClient) -> None:
    other = _lent(client, "UNO-9", "Grupo de Nariño", 2)
    mine = _lent(client, "UNO-2", "Grupo del patio", 2)
    sign_in_form(client, TEACHER, TEACHER_PASSWORD)
    page = client.get("/loans").text
    assert "Grupo del patio" in page and "Grupo de Nariño" not in page
    assert "Préstamos abiertos: 1" in page
    assert '<option value="LAB-B"' not in page  # no site of another lab to filter by
    refused = client.get(f"/loans/{other}")
    assert refused.status_code == 403 and "<html" in refused.text
    other_lab = client.get("/loans?site=LAB-B").text  # a link to it: none of its loans
    assert "Préstamos abiertos: 0" in other_lab and "Grupo de Nariño" not in other_lab
    region = client.get("/loans?site=VL-R1").text  # her region: her lab's loans only
    assert "Préstamos abiertos: 1" in region and "Grupo del patio" in region
    answer = _lend(client, kind="person", borrower="Lucía", tags="UNO-9")
    assert answer.status_code == 403
    assert _error_of(answer.text, "tags") == ("“UNO-9” está en LAB-B, donde usted no "
                                              "puede prestar.")
    form = client.get(f"/loans/{mine}").text
    back = post_form(client, f"/loans/{other}/check-in", {
        "csrf_token": hidden(form, "csrf_token"), "version": "1", "action": "confirm",
        "back:UNO-9": "1"})
    assert back.status_code == 403
    with client.engine.connect() as conn:  # type: ignore[attr-defined]
        assert loans.get_loan(conn=conn, loan_uuid=other).open
    sign_in_form(client, COORDINATOR, COORDINATOR_PASSWORD)  # the region's coordinator
    page = client.get("/loans").text
    assert "Grupo del patio" in page and "Grupo de Nariño" in page
    assert "Registrar devolución…" in client.get(f"/loans/{other}").text


def test_who_may_see_and_who_may_lend(client: TestClient) -> None:
    loan_id = _lent(client, "UNO-2", "Lucía", 2)
    with client.engine.begin() as conn:  # type: ignore[attr-defined]
        accounts.create_user(conn, name=READER,
                             password_hash=passwords.hash_password(READER_PASSWORD),
                             grants_given=[Grant(Role.MINISTRY, "VL")])
    assert client.get("/loans", follow_redirects=False).headers["location"].startswith(
        "/signin?next=")
    sign_in_form(client, READER, READER_PASSWORD)  # inventory.read, no loans.write
    page = client.get("/loans").text
    assert "Lucía" in page and 'href="/loans/new"' not in page
    one = client.get(f"/loans/{loan_id}").text
    assert "Lucía" in one and "/check-in" not in one
    assert client.get("/loans/new").status_code == 403
    refused = post_form(client, "/loans/new", {"csrf_token": hidden(one, "csrf_token"),
                                               "kind": "person", "borrower": "X",
                                               "tags": "UNO-3"})
    assert refused.status_code == 403
    world = client.world.web  # type: ignore[attr-defined]
    student = TestClient(client.app)
    post_form(student, "/signin?next=/", {"way": "pin", "class_code": world.class_code,
                                          "name": STUDENT, "pin": STUDENT_PIN})
    assert student.get("/loans").status_code == 403
    assert student.get(f"/loans/{loan_id}").status_code == 403
    sign_in_form(client, TEACHER, TEACHER_PASSWORD)
    assert 'href="/loans/new"' in client.get("/loans").text


def test_bad_values_in_the_address_give_a_page(client: TestClient) -> None:
    sign_in_form(client, TEACHER, TEACHER_PASSWORD)
    for path, status in (("/loans?page=0", 422), ("/loans?overdue=quizás", 422),
                         ("/loans/no-such-loan", 404), ("/loans?site=NOPE", 404),
                         ("/loans?borrower=" + "x" * 200, 422)):
        answer = client.get(path)
        assert answer.status_code == status, path
        assert "text/html" in answer.headers["content-type"] and "<html" in answer.text


def test_the_due_day_is_the_end_of_that_day_in_the_zone() -> None:
    zone = ZoneInfo("America/Bogota")
    due = due_of(date(2026, 12, 12), zone)
    assert datetime.fromtimestamp(due / 1e6, tz=zone).isoformat() == "2026-12-12T23:59:00-05:00"
