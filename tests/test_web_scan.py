"""The scan page (``/scan``) through HTTP (starlette's client, SQLite and PostgreSQL): a
scan answers what the item is and whether it is out (a fragment to the page's script, a
303 to the item's page without it); an asset is lent and taken back; a kit's check-in
lists what is missing and what is extra, side by side, before anything is written; a scan
key sent twice does its work once; who may scan what; errors beside their fields in es
and pt. tests/test_web_scan_browser.py drives the same page in Chromium."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from web_client import hidden, post_form, sign_in_form
from web_inventory_world import COORDINATOR, COORDINATOR_PASSWORD, make_equipment_world
from web_world import STUDENT, STUDENT_PIN, TEACHER, TEACHER_PASSWORD

from inventory import assets, kits, loans
from inventory.history import history_of
from labhub.app import create_app
from labhub.settings import Settings


@pytest.fixture
def client(engine: Engine, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings.model_copy(update={"site": "LAB-A"}))) as test_client:
        test_client.world = make_equipment_world(engine)  # type: ignore[attr-defined]
        yield test_client


def _scan(client: TestClient, code: str, *, key: str | None = None, script: bool = True,
          page: str = "/scan") -> Any:
    form = client.get(page)
    assert form.status_code == 200, form.text
    return post_form(client, "/scan", {"csrf_token": hidden(form.text, "csrf_token"),
                                       "scan_id": key or str(uuid.uuid4()), "code": code},
                     **({"X-Scan": "1"} if script else {}))


def _said(answer: Any) -> str:
    return unquote(answer.headers["x-scan-said"])


def _action(client: TestClient, tag: str, form_class: str = "scan-action") -> dict[str, str]:
    """The hidden fields of the item page's action form."""
    page = client.get(f"/scan/{tag}")
    assert page.status_code == 200, page.text
    found = re.search(r'<form method="post" action="[^"]*" class="' + form_class
                      + r'".*?</form>', page.text, re.S)
    assert found is not None, page.text
    return {name: hidden(found.group(0), name)
            for name in ("csrf_token", "scan_id", "code", "version")}


def _due(days: int = 7) -> str:
    return (datetime.now(UTC).date() + timedelta(days=days)).isoformat()


def _lend(client: TestClient, tag: str, **fields: str) -> Any:
    return post_form(client, f"/scan/{tag}/check-out", _action(client, tag) | {
        "borrower": "7B", "borrower_kind": "group", "due": _due(), "purpose": ""} | fields)


def _status(engine: Engine, tag: str) -> str:
    with engine.connect() as conn:
        return assets.get_asset(conn=conn, tag=tag).status


def _events(engine: Engine, tag: str, kind: str) -> int:
    with engine.connect() as conn:
        return sum(1 for e in history_of(conn=conn, subject=tag) if e.kind == kind)


def _error_of(page: str, field_id: str) -> str:
    tag = re.search(rf'<input id="{field_id}"[^>]*>', page)
    assert tag is not None, field_id
    assert 'aria-invalid="true"' in tag.group(0) and f"{field_id}-error" in tag.group(0)
    found = re.search(rf'<p class="error" id="{field_id}-error">([^<]*)</p>', page)
    assert found is not None
    return found.group(1)


# -- a scan ----------------------------------------------------------------------------------

def test_a_scan_says_what_it_is_and_whether_it_is_out(client: TestClient) -> None:
    sign_in_form(client, TEACHER, TEACHER_PASSWORD)
    page = client.get("/scan")
    assert page.status_code == 200
    assert 'data-scan-outbox="scan"' in page.text and 'data-scan-result="#scan-result"' in page.text
    assert "/static/camera.js" in page.text and 'class="scan-camera" hidden' in page.text
    answer = _scan(client, "UNO-2")
    assert answer.status_code == 200 and answer.headers["x-scan-outcome"] == "ok"
    assert _said(answer) == "UNO-2 (Arduino Uno R3) está en el laboratorio: se puede prestar."
    assert "<html" not in answer.text and 'action="/scan/UNO-2/check-out"' in answer.text
    assert "Prestar UNO-2" in answer.text
    # Without JavaScript: a 303 to the item's page, which says it once.
    plain = _scan(client, "UNO-2", script=False)
    assert plain.status_code == 303 and plain.headers["location"] == "/scan/UNO-2"
    shown = client.get("/scan/UNO-2")
    assert "se puede prestar" in shown.text and 'class="scan-said-page outcome-ok"' in shown.text
    assert 'class="scan-said-page' not in client.get("/scan/UNO-2").text  # once


def test_scans_that_cannot_be_taken_are_refused_in_words(client: TestClient) -> None:
    sign_in_form(client, TEACHER, TEACHER_PASSWORD, lang="pt")
    nothing = _scan(client, "NO-SUCH-TAG")
    assert nothing.status_code == 422 and nothing.headers["x-scan-outcome"] == "refused"
    assert _said(nothing) == "Nenhum ativo ou kit tem o código NO-SUCH-TAG."
    elsewhere = _scan(client, "UNO-9")  # LAB-B's: the teacher is at LAB-A
    assert elsewhere.status_code == 422
    assert _said(elsewhere) == "UNO-9 pertence a LAB-B: você não pode emprestá-lo nem recebê-lo."
    not_a_tag = _scan(client, "UNO 2; drop")
    assert not_a_tag.status_code == 422 and "não é um código" in _said(not_a_tag)
    empty = _scan(client, "   ")
    assert empty.status_code == 422 and _said(empty) == "Escaneie uma etiqueta ou digite um código."


def test_the_same_scan_key_twice_is_one_scan(client: TestClient, engine: Engine) -> None:
    sign_in_form(client, TEACHER, TEACHER_PASSWORD)
    key = str(uuid.uuid4())
    assert _scan(client, "KIT-1", key=key).headers["x-scan-outcome"] == "ok"
    again = _scan(client, "KIT-1", key=key)
    assert again.status_code == 200 and again.headers["x-scan-outcome"] == "again"
    assert "Prestar KIT-1" in again.text  # the item as it is now
    from inventory import receipts
    with engine.connect() as conn:
        assert receipts.received(conn=conn, subject="scan:LAB-A") == 1


# -- check-out and check-in ------------------------------------------------------------------

def test_an_asset_is_lent_and_taken_back(client: TestClient, engine: Engine) -> None:
    sign_in_form(client, TEACHER, TEACHER_PASSWORD)
    lent = _lend(client, "UNO-2", borrower="Prof. Marta Ruiz", borrower_kind="person",
                 purpose="Feria de ciencias")
    assert lent.status_code == 303 and lent.headers["location"] == "/scan/UNO-2"
    page = client.get("/scan/UNO-2")
    assert "UNO-2 quedó prestado a Prof. Marta Ruiz hasta el" in page.text
    assert "Prestado a" in page.text and "Prof. Marta Ruiz (Una persona)" in page.text
    assert 'action="/scan/UNO-2/check-in"' in page.text and "Confirmar: UNO-2 volvió" in page.text
    assert _status(engine, "UNO-2") == "on_loan"
    with engine.connect() as conn:
        loan = loans.open_loan_of(conn=conn, asset_tag="UNO-2")
        assert loan is not None and loan.by == TEACHER and loan.borrower_kind == "person"
        assert loan.purpose == "Feria de ciencias"
    back = post_form(client, "/scan/UNO-2/check-in", _action(client, "UNO-2") | {
        "step": "confirm", "condition": "fair"})
    assert back.status_code == 303
    assert "UNO-2 volvió." in client.get("/scan/UNO-2").text
    assert _status(engine, "UNO-2") == "available"
    with engine.connect() as conn:
        assert assets.get_asset(conn=conn, tag="UNO-2").condition == "fair"


def test_a_kits_check_in_shows_missing_and_extra_before_it_is_confirmed(
        client: TestClient, engine: Engine) -> None:
    sign_in_form(client, COORDINATOR, COORDINATOR_PASSWORD)
    assert _lend(client, "KIT-1").status_code == 303
    assert _status(engine, "KIT-1") == "on_loan" and _status(engine, "UNO-1") == "on_loan"
    fields = _action(client, "KIT-1")
    # A board that is not the kit's (UNO-5), 35 of 40 jumper wires, 2 of 1 sensors.
    page = post_form(client, "/scan/KIT-1/check-in", fields | {
        "step": "add", "board": "UNO-5", "boards": "", "part:JMP": "35", "part:HC-SR04": "2"})
    assert page.status_code == 200, page.text
    missing = re.search(r'<section class="side missing".*?</section>', page.text, re.S)
    extra = re.search(r'<section class="side extra".*?</section>', page.text, re.S)
    assert missing is not None and extra is not None
    assert "<li>UNO-1</li>" in missing.group(0) and "5 × Cable de puente" in missing.group(0)
    assert "<li>UNO-5</li>" in extra.group(0) and "1 × Sensor ultrasónico" in extra.group(0)
    assert hidden(page.text, "boards") == "UNO-5"
    assert 'data-camera-field' in page.text and 'id="back-board-camera"' in page.text
    assert _status(engine, "KIT-1") == "on_loan"  # nothing written yet
    assert _events(engine, "KIT-1", "KitPartMissing") == 0
    # The kit's own board is scanned: no longer missing.
    page = post_form(client, "/scan/KIT-1/check-in", fields | {
        "step": "add", "board": "UNO-1", "boards": "UNO-5", "part:JMP": "35",
        "part:HC-SR04": "2"})
    missing = re.search(r'<section class="side missing".*?</section>', page.text, re.S)
    assert missing is not None and "UNO-1" not in missing.group(0)
    assert hidden(page.text, "boards") == "UNO-5 UNO-1"
    done = post_form(client, "/scan/KIT-1/check-in", fields | {
        "step": "confirm", "boards": "UNO-5 UNO-1", "part:JMP": "35", "part:HC-SR04": "2"})
    assert done.status_code == 303
    assert "KIT-1 volvió, con 5 faltantes y 2 de más" in client.get("/scan/KIT-1").text
    assert _status(engine, "KIT-1") == "available" and _status(engine, "UNO-1") == "available"
    assert _status(engine, "UNO-5") == "available"  # the extra board was set aside, not sent
    with engine.connect() as conn:
        lost = [(x.part, x.quantity) for x in kits.list_losses(conn=conn, kit_tag="KIT-1")]
    assert lost == [("JMP", 5)]


def test_a_kit_back_whole_has_nothing_missing(client: TestClient, engine: Engine) -> None:
    sign_in_form(client, COORDINATOR, COORDINATOR_PASSWORD, lang="en")
    assert _lend(client, "KIT-1").status_code == 303
    page = client.get("/scan/KIT-1")
    assert "Missing" in page.text and "<li>UNO-1</li>" in page.text  # not scanned yet
    fields = _action(client, "KIT-1")
    done = post_form(client, "/scan/KIT-1/check-in", fields | {
        "step": "confirm", "boards": "UNO-1", "part:JMP": "40", "part:HC-SR04": "1"})
    assert done.status_code == 303
    assert "KIT-1 is back." in client.get("/scan/KIT-1").text
    with engine.connect() as conn:
        assert kits.list_losses(conn=conn, kit_tag="KIT-1") == []


def test_a_form_sent_twice_lends_and_takes_back_once(client: TestClient, engine: Engine) -> None:
    sign_in_form(client, TEACHER, TEACHER_PASSWORD)
    fields = _action(client, "UNO-3") | {"borrower": "7B", "borrower_kind": "group",
                                          "due": _due(), "purpose": ""}
    assert post_form(client, "/scan/UNO-3/check-out", fields).status_code == 303
    client.get("/scan/UNO-3")  # the words of the first
    again = post_form(client, "/scan/UNO-3/check-out", fields)
    assert again.status_code == 303
    assert "Este préstamo ya estaba hecho. UNO-3 (Arduino Uno R3) está prestado a 7B" in (
        client.get("/scan/UNO-3").text)
    assert _events(engine, "UNO-3", "AssetCheckedOut") == 1
    back = _action(client, "UNO-3") | {"step": "confirm"}
    assert post_form(client, "/scan/UNO-3/check-in", back).status_code == 303
    client.get("/scan/UNO-3")
    assert post_form(client, "/scan/UNO-3/check-in", back).status_code == 303
    assert "Esta devolución ya estaba hecha." in client.get("/scan/UNO-3").text
    assert _events(engine, "UNO-3", "AssetCheckedIn") == 1


# -- who may, and errors ---------------------------------------------------------------------

def test_who_may_scan_what(client: TestClient) -> None:
    assert client.get("/scan", follow_redirects=False).headers["location"].startswith(
        "/signin?next=%2Fscan")
    sign_in_form(client, TEACHER, TEACHER_PASSWORD)
    refused = client.get("/scan/UNO-9")  # LAB-B's
    assert refused.status_code == 403 and "<html" in refused.text
    fields = _action(client, "UNO-2") | {"code": "UNO-9", "borrower": "7B",
                                          "borrower_kind": "group", "due": _due()}
    assert post_form(client, "/scan/UNO-9/check-out", fields).status_code == 403
    missing = client.get("/scan/NOPE")
    assert missing.status_code == 404 and "No encontrado" in missing.text
    assert client.get("/scan/bad%20tag").status_code == 404
    # A form that names another tag than its address is refused, not done.
    other = _action(client, "UNO-2") | {"code": "UNO-4", "borrower": "7B",
                                         "borrower_kind": "group", "due": _due()}
    assert post_form(client, "/scan/UNO-2/check-out", other).status_code == 422


def test_a_student_may_not_scan(client: TestClient) -> None:
    world = client.world.web  # type: ignore[attr-defined]
    post_form(client, "/signin?next=/", {"way": "pin", "class_code": world.class_code,
                                         "name": STUDENT, "pin": STUDENT_PIN})
    page = client.get("/scan")
    assert page.status_code == 403 and "<html" in page.text


@pytest.mark.parametrize(("lang", "words"), [
    ("es", ("Escriba quién se lo lleva.", "Elija a quién se presta.",
            "El día de devolución debe ser hoy o después.")),
    ("pt", ("Escreva quem vai levar.", "Escolha para quem é o empréstimo.",
            "O dia da devolução deve ser hoje ou depois.")),
])
def test_check_out_errors_show_beside_their_fields(client: TestClient, engine: Engine,
                                                   lang: str, words: tuple[str, ...]) -> None:
    sign_in_form(client, TEACHER, TEACHER_PASSWORD, lang=lang)
    page = _lend(client, "UNO-4", borrower=" ", borrower_kind="army", due=_due(-3))
    assert page.status_code == 422
    assert _error_of(page.text, "out-borrower") == words[0]
    assert f'<p class="error" id="out-borrower_kind-error">{words[1]}</p>' in page.text
    assert _error_of(page.text, "out-due") == words[2]
    assert _status(engine, "UNO-4") == "available"
    bad_date = _lend(client, "UNO-4", due="next week")
    assert bad_date.status_code == 422 and "out-due-error" in bad_date.text
    too_long = _lend(client, "UNO-4", due=_due(500))
    assert too_long.status_code == 422 and "400" in _error_of(too_long.text, "out-due")


def test_check_in_errors_and_a_stale_form(client: TestClient, engine: Engine) -> None:
    sign_in_form(client, COORDINATOR, COORDINATOR_PASSWORD, lang="pt")
    assert _lend(client, "KIT-1").status_code == 303
    fields = _action(client, "KIT-1")
    page = post_form(client, "/scan/KIT-1/check-in", fields | {
        "step": "count", "part:JMP": "muitos", "boards": ""})
    assert page.status_code == 422
    assert _error_of(page.text, "back-part-JMP") == (
        "Escreva quantos voltaram: um número inteiro, 0 ou mais.")
    page = post_form(client, "/scan/KIT-1/check-in", fields | {"step": "add", "board": "a b"})
    assert page.status_code == 422 and "não é um código" in page.text
    assert 'id="back-board-error"' in page.text
    stale = post_form(client, "/scan/KIT-1/check-in", fields | {
        "step": "confirm", "version": "1", "boards": "UNO-1"})
    assert stale.status_code == 409
    assert "Algo mudou" in stale.text or "recarregue" in stale.text.lower()
    assert _status(engine, "KIT-1") == "on_loan"
