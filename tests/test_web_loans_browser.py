"""A teacher's loan flow in Chromium, in Portuguese, by keyboard alone (no mouse), against
``labhub serve`` in a process of its own, on SQLite (at a phone's width) and PostgreSQL
(at a laptop's): she signs in, opens the loans from the menu, lends KIT-1 and UNO-2 to
her class until a day she types (a tag typed wrong first: the error beside the field
names it), finds the loan in the list, checks UNO-2 back in (a partial return), then
KIT-1 with its ultrasonic sensor missing, confirming what will be recorded each time.
Every step checks that the focus is visible (tests/web_browser.tab_to), every page is
checked by axe-core and screenshotted (``loans-*``); what was recorded is read back
through the API.

Without Chromium or the ``playwright`` package the tests are skipped (tests/web_browser.py
says why); under ``CI=true`` they fail."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from signed_in import admin_token
from sqlalchemy import update
from web_browser import (
    LAPTOP,
    PHONE,
    ServedHub,
    assert_accessible,
    open_page,
    served_hub,
    shot,
    tab_to,
)
from web_inventory_world import make_equipment_world
from web_world import BY, TEACHER, TEACHER_PASSWORD

from inventory import loans
from inventory.tables import loans as loan_table
from inventory.values import now_us
from labhub import db

DAY_US = 86_400 * 1_000_000
ZONE = "America/Bogota"


def _world(database_url: str) -> None:
    """The equipment world, with an overdue loan at LAB-A and one at LAB-B."""
    engine = db.make_engine(database_url)
    try:
        if engine.dialect.name == "sqlite":
            db.upgrade(engine)
        make_equipment_world(engine)
        with engine.begin() as conn:
            for tag, who in (("UNO-5", "Clube de robótica"), ("UNO-9", "Grupo de Nariño")):
                loan = loans.check_out(conn=conn, asset_tags=[tag], borrower=who,
                                       borrower_kind="group", due_at=now_us() + DAY_US, by=BY)
                conn.execute(update(loan_table).where(loan_table.c.uuid == loan.uuid)
                             .values(due_at=now_us() - 3 * DAY_US))
    finally:
        engine.dispose()


@pytest.fixture
def hub(tmp_path: Path, database_url: str) -> Iterator[ServedHub]:
    _world(database_url)
    with served_hub(tmp_path, database_url, env={"LABHUB_TIMEZONE": ZONE}) as served:
        yield served


def _at(selector: str) -> Callable[[Any], bool]:
    """Whether the focused element matches ``selector``."""
    return lambda page: bool(page.evaluate(
        "s => document.activeElement !== null && document.activeElement.matches(s)",
        selector))


def _press(page: Any, key: str) -> None:
    """Press ``key`` where a form is sent or a link followed: wait for the next page."""
    with page.expect_navigation():
        page.keyboard.press(key)


def _type_date(page: Any, day: datetime) -> None:
    """Type a day into the focused date field, part by part. Chromium orders the parts by
    its own language (mm/dd/yyyy here), which the page's language does not change: when
    that order does not give the day, back to the first part (two arrows left) and type
    them day first (dd/mm/aaaa, as a Brazilian Chromium shows them)."""
    page.keyboard.type(f"{day:%m%d%Y}")
    if page.evaluate("() => document.activeElement.value") != f"{day:%Y-%m-%d}":
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("ArrowLeft")
        page.keyboard.type(f"{day:%d%m%Y}")


def _look(page: Any, name: str, width: str) -> None:
    assert_accessible(page, name)
    shot(page, f"loans-{name}-pt-{width}")


@pytest.mark.parametrize("database_url", ["sqlite", pytest.param(
    "postgres", marks=pytest.mark.postgres)], indirect=True)
def test_a_teachers_loan_flow_in_portuguese_by_keyboard_alone(
        browser: Any, hub: ServedHub, database_url: str) -> None:
    size, width = (PHONE, "360") if database_url.startswith("sqlite") else (LAPTOP, "1366")
    context, page, watched = open_page(browser, hub.base, viewport=size, locale="pt-BR")
    try:
        page.goto(f"{hub.base}/signin?lang=pt")
        tab_to(page, _at("#pw-name"))
        page.keyboard.type(TEACHER)
        tab_to(page, _at("#pw-password"))
        page.keyboard.type(TEACHER_PASSWORD)
        _press(page, "Enter")
        tab_to(page, _at('nav.menu a[href="/equipment"]'))
        _press(page, "Enter")
        tab_to(page, _at('main a[href="/loans"]'))
        _press(page, "Enter")
        page.get_by_role("heading", level=1, name="Empréstimos").wait_for()
        assert "Empréstimos em aberto: 1" in page.get_by_role("status").inner_text()
        assert "Nariño" not in page.content()  # LAB-B's loan is not hers to see
        _look(page, "list", width)
        tab_to(page, _at('a[href="/loans?overdue=1"]'))
        _press(page, "Enter")
        page.get_by_role("heading", level=1, name="Empréstimos atrasados").wait_for()
        assert "Atrasado · dias de atraso: 3" in page.locator(".loan").inner_text()
        _look(page, "overdue", width)

        tab_to(page, _at('a[href="/loans/new"]'))
        _press(page, "Enter")
        page.get_by_role("heading", level=1, name="Novo empréstimo").wait_for()
        _look(page, "new", width)
        tab_to(page, _at("#kind-person"))  # the group's checked radio takes the focus
        page.keyboard.press("ArrowDown")
        page.keyboard.press("ArrowDown")
        assert page.get_by_label("Uma das turmas do laboratório").is_checked()
        tab_to(page, _at("#class"))
        page.keyboard.type("7")
        assert page.locator("#class option:checked").inner_text() == "7°B Ciencias (LAB-A)"
        tab_to(page, _at("#due"))
        due = datetime.now().astimezone() + timedelta(days=5)
        _type_date(page, due)
        assert page.locator("#due").input_value() == f"{due:%Y-%m-%d}"
        tab_to(page, _at("#tags"))
        for tag in ("KIT-1", "UNO-22"):  # as a USB scanner types: each tag, then Enter
            page.keyboard.type(tag)
            page.keyboard.press("Enter")
        tab_to(page, _at('form.loan-form button[type="submit"]'))
        _press(page, "Enter")
        tags = page.get_by_label("Ativos e kits, por etiqueta")
        assert tags.get_attribute("aria-invalid") == "true"
        assert page.locator("#tags-error").inner_text().endswith(
            "Nenhum patrimônio tem a etiqueta “UNO-22”.")
        assert page.locator("#class option:checked").inner_text() == "7°B Ciencias (LAB-A)"
        assert page.locator("#due").input_value() == f"{due:%Y-%m-%d}"  # kept
        _look(page, "new-error", width)
        assert [e for e in watched.errors if "422" not in e] == []  # the form's status
        watched.errors.clear()
        tab_to(page, _at("#tags"))
        page.keyboard.press("Control+End")
        page.keyboard.press("Backspace")  # the line's end, then the wrong 2
        page.keyboard.press("Backspace")
        assert tags.input_value().split() == ["KIT-1", "UNO-2"]
        tab_to(page, _at('form.loan-form button[type="submit"]'))
        _press(page, "Enter")
        page.get_by_role("heading", level=1, name="Empréstimo para 7°B Ciencias").wait_for()
        assert "Emprestado. Os itens estão emprestados até" in page.get_by_role(
            "status").inner_text()
        loan_url = page.url.split("?")[0]
        _look(page, "lent", width)

        tab_to(page, _at('.crumbs a[href="/loans"]'))  # the list holds it
        _press(page, "Enter")
        assert "Empréstimos em aberto: 2" in page.get_by_role("status").inner_text()
        tab_to(page, _at(f'a[href="{loan_url.removeprefix(hub.base)}"]'))
        _press(page, "Enter")
        tab_to(page, _at('input[name="back:UNO-2"]'))
        page.keyboard.press("Space")
        tab_to(page, _at('button[value="review"]'))
        _press(page, "Enter")
        review = page.get_by_role("region", name="Devolução: o que será registrado")
        assert "Continuam emprestados depois disto: KIT-1" in review.inner_text()
        _look(page, "review-part", width)
        tab_to(page, _at('button[value="confirm"]'))
        _press(page, "Enter")
        assert "Os demais itens continuam emprestados." in page.get_by_role(
            "status").inner_text()

        tab_to(page, _at('input[name="back:KIT-1"]'))
        page.keyboard.press("Space")
        _look(page, "check-in", width)
        tab_to(page, _at('input[name="part:KIT-1:HC-SR04"]'))
        page.keyboard.press("ArrowDown")  # 1 sensor lent, 0 back
        assert page.get_by_label("Sensor ultrasónico (HC-SR04) devolvidos, de 1"
                                 ).input_value() == "0"
        tab_to(page, _at('button[value="review"]'))
        _press(page, "Enter")
        said = page.get_by_role("region", name="Devolução: o que será registrado"
                                ).inner_text()
        assert "Falta, registrado como perdido: 1 × Sensor ultrasónico (HC-SR04)" in said
        assert "Depois disto nada continua emprestado: o empréstimo é encerrado." in said
        _look(page, "review-kit", width)
        tab_to(page, _at('button[value="confirm"]'))
        _press(page, "Enter")
        assert "O empréstimo está encerrado: nada continua emprestado." in page.get_by_role(
            "status").inner_text()
        assert "Falta: 1 × Sensor ultrasónico (HC-SR04)" in page.locator(".items").inner_text()
        _look(page, "closed", width)
        watched.check()
    finally:
        context.close()
    loan_id = loan_url.rsplit("/", 1)[1]
    with httpx2.Client(base_url=hub.base, timeout=10, headers={
            "Authorization": f"Bearer {admin_token(hub.database_url)}"}) as api:
        loan = api.get(f"/api/v1/loans/{loan_id}").json()
        losses = api.get("/api/v1/kits/KIT-1/losses").json()
    assert (loan["borrower"], loan["borrower_kind"], loan["open"]) == ("7°B Ciencias",
                                                                        "group", False)
    assert [i["tag"] for i in loan["items"]] == ["KIT-1", "UNO-2"]
    assert loan["due_at"].startswith(f"{due + timedelta(days=1):%Y-%m-%d}T04:59")  # 23:59 -5
    assert [(x["part"], x["damage"], x["quantity"]) for x in losses] == [
        ("HC-SR04", "lost", 1)]
