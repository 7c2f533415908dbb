"""The sites pages through HTTP (starlette's client, SQLite and PostgreSQL): the tree
shows only the sites a person may see, each lab with its tier, setting and rollout in
words; a lab's page counts what the equipment world holds (assets by status, kits, open
and overdue loans, transfers in and out, the last audit and what it found) and links to
the other pages filtered for it; a region's page counts its labs in one table, paged, in
the same few queries however many labs it has; the ministry changes a lab's rollout
(guarded by the site's version: a stale form is a 409 page), errors beside the field in
es and pt; and a page, never a traceback, for what may not be done or is not there.
tests/test_web_sites_browser.py drives the pages in Chromium."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, update
from web_client import hidden, post_form, sign_in_form
from web_inventory_world import (
    COORDINATOR,
    COORDINATOR_PASSWORD,
    EquipmentWorld,
    make_equipment_world,
)
from web_world import BY, STUDENT, STUDENT_PIN, TEACHER, TEACHER_PASSWORD, password_hash

from inventory import audits, loans, sites, transfers
from inventory.history import history_of
from inventory.tables import loans as loans_table
from inventory.values import now_us
from labhub.access import accounts
from labhub.access.permissions import Grant, Role
from labhub.app import create_app
from labhub.settings import Settings
from labhub.web.sites import LABS_PER_PAGE

MINISTRY = "Mónica (ministerio)"
MINISTRY_PASSWORD = "clave del ministerio"
DAY_US = 86_400_000_000


@pytest.fixture
def lab(settings: Settings, engine: Engine) -> Iterator[tuple[TestClient, EquipmentWorld]]:
    app = create_app(settings.model_copy(update={"site": "LAB-A"}))
    with TestClient(app) as client:
        world = make_equipment_world(engine)
        with engine.begin() as conn:
            accounts.create_user(conn, name=MINISTRY,
                                 password_hash=password_hash(MINISTRY_PASSWORD),
                                 grants_given=[Grant(Role.MINISTRY, "*")])
        yield client, world


def _text(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def _fact(page: str, label: str) -> str:
    """What a page's list of facts says for ``label``."""
    found = re.search(rf"<dt>{re.escape(label)}</dt><dd>(.*?)</dd>", page, re.S)
    assert found is not None, label
    return _text(found.group(1))


def _row(page: str, code: str) -> list[str]:
    """The cells of the labs table's row of ``code``, in the order of its columns."""
    for row in re.findall(r"<tr>(.*?)</tr>", page, re.S):
        if f'<span class="code">{code}</span>' in row:
            return [_text(c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
    raise AssertionError(f"no row for {code}")


def _error_of(page: str, field_id: str) -> str:
    tag = re.search(rf'<(?:input|select) id="{field_id}"[^>]*>', page)
    assert tag is not None, field_id
    assert 'aria-invalid="true"' in tag.group(0) and f"{field_id}-error" in tag.group(0)
    found = re.search(rf'<p class="error" id="{field_id}-error">([^<]*)</p>', page)
    assert found is not None
    return html.unescape(found.group(1))


def _under_way(engine: Engine) -> str:
    """A loan of UNO-2 past due, a transfer of UNO-3 drafted from LAB-A to LAB-B, an
    audit of LAB-A finished (KIT-1, UNO-1 and UNO-9 scanned); the audit's uuid."""
    with engine.begin() as conn:
        loan = loans.check_out(conn=conn, asset_tags=["UNO-2"], borrower="7°B",
                               borrower_kind="group", due_at=now_us() + DAY_US, by=BY)
        conn.execute(update(loans_table).where(loans_table.c.uuid == loan.uuid)
                     .values(due_at=now_us() - DAY_US))  # a loan a week late
        transfers.draft_transfer(conn=conn, from_site="LAB-A", to_site="LAB-B",
                                 tags=["UNO-3"], by=BY)
        audit = audits.start_audit(conn=conn, site="LAB-A", by=BY)
        for tag in ("KIT-1", "UNO-1", "UNO-9"):
            audits.scan_tag(conn=conn, audit_uuid=audit.uuid, tag=tag, by=BY)
        audits.finish_audit(conn=conn, audit_uuid=audit.uuid, by=BY)
    return audit.uuid


# -- the tree ----------------------------------------------------------------------------------

def test_the_tree_shows_only_the_sites_one_may_see(lab: tuple[TestClient, EquipmentWorld]) -> None:
    client, _ = lab
    assert client.get("/sites", follow_redirects=False).status_code == 303  # sign in first
    sign_in_form(client, TEACHER, TEACHER_PASSWORD)
    page = client.get("/sites")
    assert page.status_code == 200
    text = _text(page.text)
    assert "Escuela Simón Bolívar" in text and 'href="/sites/LAB-A"' in page.text
    assert "Lab Point · Urbano · ○ Implementación: En planeación" in text  # words and a shape
    assert "Colegio Nariño" not in text and "LAB-B" not in text and "VL-R1" not in text
    assert "Los laboratorios de la red cuyos equipos usted puede ver: 1." in text

    sign_in_form(client, COORDINATOR, COORDINATOR_PASSWORD, lang="pt")
    page = client.get("/sites")
    text = _text(page.text)
    assert "Os laboratórios da rede cujos equipamentos você pode ver: 3." in text
    for code in ("VL-R1", "LAB-A", "LAB-B", "VL-ML-1"):
        assert f'href="/sites/{code}"' in page.text, code
    assert 'href="/sites/VL"' not in page.text  # the network is above her region
    assert "Laboratório móvel" in text and "Região" in text
    tree = page.text[page.text.index('class="site-tree"'):]
    assert tree.index("VL-R1") < tree.index("LAB-A")  # the labs hang under their region

    sign_in_form(client, MINISTRY, MINISTRY_PASSWORD)
    assert 'href="/sites/VL"' in client.get("/sites").text


def test_a_student_may_not_see_the_equipment(lab: tuple[TestClient, EquipmentWorld]) -> None:
    client, world = lab
    r = post_form(client, "/signin?next=/", {"way": "pin", "class_code": world.web.class_code,
                                            "name": STUDENT, "pin": STUDENT_PIN})
    assert r.status_code == 303
    for path in ("/sites", "/sites/LAB-A"):
        page = client.get(path)
        assert page.status_code == 403 and "text/html" in page.headers["content-type"]


# -- a lab's page ------------------------------------------------------------------------------

def test_a_labs_page_counts_what_it_holds_and_links_to_its_pages(
        lab: tuple[TestClient, EquipmentWorld], engine: Engine) -> None:
    client, _ = lab
    _under_way(engine)
    sign_in_form(client, COORDINATOR, COORDINATOR_PASSWORD)
    page = client.get("/sites/LAB-A")
    assert page.status_code == 200
    text = page.text
    assert "<h1>Escuela Simón Bolívar</h1>" in text
    assert _fact(text, "Nivel") == "Lab Point" and _fact(text, "Zona") == "Urbano"
    assert _fact(text, "Implementación").startswith("○ En planeación desde el ")
    # KIT-1, KIT-2, UNO-1 to UNO-5, PRN-1; UNO-2 lent; KIT-1 and KIT-2 are kits.
    assert _fact(text, "Activos") == "8"
    assert _fact(text, "Activos disponibles") == "7"
    assert _fact(text, "Activos prestados") == "1"
    assert _fact(text, "Activos en tránsito") == "0"
    assert _fact(text, "Activos dados de baja") == "0"
    assert _fact(text, "Kits") == "2"
    assert _fact(text, "Préstamos abiertos") == "1"
    assert _fact(text, "Préstamos vencidos") == "⚠ 1"
    assert _fact(text, "Traslados que salen") == "1"
    assert _fact(text, "Traslados que llegan") == "0"
    audit = _text(re.search(r'<p class="audit">(.*?)</p>', text, re.S).group(1))  # type: ignore[union-attr]
    # Found KIT-1 and UNO-1; UNO-9 is LAB-B's; the others available at LAB-A are missing.
    assert re.fullmatch(r"Terminada el .+: Encontrados: 2 · Faltantes: 5 · "
                        r"De otro laboratorio: 1 · Fuera del inventario: 0\.", audit), audit
    for part in ("assets", "stock", "loans", "transfers", "audits"):
        assert f'href="/{part}?site=LAB-A"' in text, part
    assert 'action="/sites/LAB-A/rollout"' not in text  # a coordinator has no rollout form
    assert 'href="/sites/VL-R1"' in text  # where it is: her region
    assert 'href="/sites/VL"' not in text

    other = client.get("/sites/LAB-B")
    assert _fact(other.text, "Traslados que llegan") == "1"
    assert _fact(other.text, "Activos") == "1"
    assert "Aún no se ha terminado ninguna auditoría aquí." in other.text


def test_a_lab_outside_ones_scope_or_not_there_is_a_page(
        lab: tuple[TestClient, EquipmentWorld]) -> None:
    client, _ = lab
    sign_in_form(client, TEACHER, TEACHER_PASSWORD, lang="pt")
    refused = client.get("/sites/LAB-B")
    assert refused.status_code == 403 and "text/html" in refused.headers["content-type"]
    assert "Colegio Nariño" not in refused.text
    assert client.get("/sites/VL-R1").status_code == 403
    missing = client.get("/sites/NO-SUCH-LAB")
    assert missing.status_code in (403, 404) and "text/html" in missing.headers["content-type"]
    sign_in_form(client, MINISTRY, MINISTRY_PASSWORD, lang="pt")
    missing = client.get("/sites/NO-SUCH-LAB")
    assert missing.status_code == 404 and "text/html" in missing.headers["content-type"]
    assert client.get("/sites/VL-R1?page=0").status_code == 422
    assert client.get("/sites/VL-R1?page=x").status_code == 422


# -- a region's page ---------------------------------------------------------------------------

def test_a_regions_page_counts_its_labs_in_one_table_in_a_few_queries(
        lab: tuple[TestClient, EquipmentWorld], engine: Engine) -> None:
    client, _ = lab
    _under_way(engine)
    sign_in_form(client, COORDINATOR, COORDINATOR_PASSWORD)
    page = client.get("/sites/VL-R1")
    assert page.status_code == 200
    assert "Sus laboratorios: 3" in _text(page.text)
    # Lab, rollout, assets, available, kits, open loans, overdue, in, out, last audit
    a = _row(page.text, "LAB-A")
    assert a[0].startswith("Escuela Simón Bolívar LAB-A · Lab Point · Urbano")
    assert a[1:9] == ["○ En planeación", "8", "7", "2", "1", "⚠ 1", "0", "1"]
    assert a[9] != "ninguna todavía"
    assert _row(page.text, "LAB-B")[1:10] == ["○ En planeación", "1", "1", "0", "0", "0", "1", "0",
                                              "ninguna todavía"]
    assert _row(page.text, "VL-ML-1")[2] == "0"
    assert 'tabindex="0" role="region" aria-labelledby="labs-title"' in page.text

    hub_engine = client.app.state.hub.engine  # type: ignore[attr-defined]
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    def queries(path: str) -> int:
        statements.clear()
        event.listen(hub_engine, "before_cursor_execute", count)
        try:
            assert client.get(path).status_code == 200
        finally:
            event.remove(hub_engine, "before_cursor_execute", count)
        return len(statements)

    few = queries("/sites/VL-R1")
    with engine.begin() as conn:
        for i in range(LABS_PER_PAGE + 1):
            sites.create_site(conn=conn, code=f"VL-LS-{i:03}", name=f"Lab Spark {i}",
                              kind="site", parent_code="VL-R1", tier="lab_spark", by=BY)
    assert queries("/sites/VL-R1") == few  # no query per lab
    page = client.get("/sites/VL-R1")
    assert "Sus laboratorios: 104" in _text(page.text)
    assert page.text.count('<th scope="row">') == LABS_PER_PAGE
    assert "Página 1 de 2" in page.text and 'href="/sites/VL-R1?page=2"' in page.text
    last = client.get("/sites/VL-R1?page=2")
    assert last.text.count('<th scope="row">') == 4


# -- the rollout -------------------------------------------------------------------------------

def test_the_ministry_changes_a_labs_rollout_guarded_by_its_version(
        lab: tuple[TestClient, EquipmentWorld], engine: Engine) -> None:
    client, _ = lab
    sign_in_form(client, MINISTRY, MINISTRY_PASSWORD)
    page = client.get("/sites/LAB-A")
    assert 'action="/sites/LAB-A/rollout"' in page.text
    form = {"csrf_token": hidden(page.text, "csrf_token"),
            "version": hidden(page.text, "version")}
    r = post_form(client, "/sites/LAB-A/rollout", form | {"status": "installing",
                                                           "note": "llegó el equipo"})
    assert (r.status_code, r.headers["location"]) == (303, "/sites/LAB-A?saved=rollout")
    page = client.get(r.headers["location"])
    assert "Se cambió el estado de implementación." in page.text
    assert _fact(page.text, "Implementación").startswith("◐ En instalación")
    api = client.get("/api/v1/sites/LAB-A").json()
    assert api["rollout_status"] == "installing" and api["version"] == int(form["version"]) + 1
    with engine.connect() as conn:
        changed = [e for e in history_of(conn=conn, subject="LAB-A")
                   if e.kind == "SiteRolloutChanged"]
    assert [(e.by, e.note, e.to_state) for e in changed] == [
        (MINISTRY, "llegó el equipo", {"rollout_status": "installing"})]

    stale = post_form(client, "/sites/LAB-A/rollout", form | {"status": "active"})
    assert stale.status_code == 409
    assert "Alguien cambió este laboratorio mientras usted lo miraba" in stale.text
    assert client.get("/api/v1/sites/LAB-A").json()["rollout_status"] == "installing"
    fresh = {"csrf_token": form["csrf_token"], "version": hidden(stale.text, "version")}

    same = post_form(client, "/sites/LAB-A/rollout", fresh | {"status": "installing"})
    assert same.status_code == 422
    assert _error_of(same.text, "rollout-status") == (
        "El laboratorio ya está en este estado: elija otro.")
    client.cookies.set("labhub_lang", "pt")
    wrong = post_form(client, "/sites/LAB-A/rollout", fresh | {"status": "demolished"})
    assert wrong.status_code == 422
    assert _error_of(wrong.text, "rollout-status") == "Escolha um status da lista."
    long_note = post_form(client, "/sites/LAB-A/rollout",
                          fresh | {"status": "active", "note": "x" * 3000})
    assert long_note.status_code == 422
    assert _error_of(long_note.text, "rollout-note").startswith("A nota é longa demais")
    assert 'value="' + "x" * 3000 + '"' in long_note.text  # what was typed stays

    closed = post_form(client, "/sites/LAB-A/rollout", fresh | {"status": "closed"})
    assert closed.status_code == 303
    again = client.get("/sites/LAB-A")
    after = post_form(client, "/sites/LAB-A/rollout",
                      fresh | {"version": hidden(again.text, "version"), "status": "active"})
    assert after.status_code == 422
    assert _error_of(after.text, "rollout-status") == (
        "Um laboratório encerrado continua encerrado: a implantação não pode mudar.")

    region = post_form(client, "/sites/VL-R1/rollout", {"csrf_token": form["csrf_token"],
                                                        "version": "1", "status": "active"})
    assert region.status_code == 422 and "text/html" in region.headers["content-type"]


def test_only_who_may_change_the_rollout_can(lab: tuple[TestClient, EquipmentWorld]) -> None:
    client, _ = lab
    sign_in_form(client, COORDINATOR, COORDINATOR_PASSWORD)
    page = client.get("/sites/LAB-A")
    r = post_form(client, "/sites/LAB-A/rollout", {
        "csrf_token": hidden(page.text, "csrf_token"), "version": "1", "status": "active"})
    assert r.status_code == 403 and "text/html" in r.headers["content-type"]
    assert client.get("/api/v1/sites/LAB-A").json()["rollout_status"] == "planned"
    sign_in_form(client, MINISTRY, MINISTRY_PASSWORD)
    r = post_form(client, "/sites/LAB-A/rollout", {"version": "1", "status": "active"})
    assert r.status_code == 403  # no CSRF value: refused, nothing changed
    assert client.get("/api/v1/sites/LAB-A").json()["rollout_status"] == "planned"
