"""The audits pages through HTTP (starlette's client, SQLite and PostgreSQL): a coordinator
starts an audit at a lab, scans a tag of the lab (found), one recorded at another lab
(unexpected), one nobody registered (unknown), sends one scan twice (done once: the
database holds one scan and one receipt), sends something that is not a tag (refused in
words); counts parts, finishes, reads the report, looks at the corrections (nothing
changes by looking) and confirms them. Who may do what (a teacher sees their lab's
audits and scans nothing; another lab's audit is a 403), the errors beside their fields
in es and pt, and a page with the right status for bad values in the address.
tests/test_web_audits_browser.py drives the same pages in Chromium, offline too."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Iterator
from typing import Any, Final
from urllib.parse import unquote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from web_client import hidden, post_form, sign_in_form
from web_inventory_world import COORDINATOR, COORDINATOR_PASSWORD, make_equipment_world
from web_world import TEACHER, TEACHER_PASSWORD

from inventory import assets, audits, stock
from inventory.tables import audit_scans, scan_receipts
from labhub.app import create_app
from labhub.settings import Settings


@pytest.fixture
def client(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    make_equipment_world(engine)
    app = create_app(settings.model_copy(update={"site": "LAB-A"}))
    with TestClient(app) as client:
        yield client


def _coordinator(client: TestClient, lang: str = "es") -> None:
    sign_in_form(client, COORDINATOR, COORDINATOR_PASSWORD, lang=lang)


def _start(client: TestClient, site: str = "LAB-A") -> str:
    page = client.get("/audits")
    r = post_form(client, "/audits", {"csrf_token": hidden(page.text, "csrf_token"),
                                      "site": site})
    assert r.status_code == 303, r.text
    found = re.fullmatch(r"/audits/([0-9a-f-]{36})", r.headers["location"])
    assert found is not None, r.headers["location"]
    return found.group(1)


def _scan(client: TestClient, audit: str, code: str, key: str | None = None, *,
          script: bool = True) -> Any:
    page = client.get(f"/audits/{audit}")
    fields = {"csrf_token": hidden(page.text, "csrf_token"), "code": code,
              "scan_id": key or str(uuid.uuid4())}
    return post_form(client, f"/audits/{audit}/scans", fields,
                     **({"X-Scan": "1"} if script else {}))


def _said(answer: Any) -> str:
    return unquote(answer.headers["x-scan-said"])


def _section(page: str, kind: str) -> str:
    found = re.search(rf'<section class="audit-part part-{kind}".*?</section>', page, re.S)
    assert found is not None, kind
    return html.unescape(found.group(0))


def _error_of(page: str, field_id: str) -> str:
    tag = re.search(rf'<(?:input|select) id="{field_id}"[^>]*>', page)
    assert tag is not None, field_id
    assert 'aria-invalid="true"' in tag.group(0) and f"{field_id}-error" in tag.group(0)
    found = re.search(rf'<p class="error" id="{field_id}-error">([^<]*)</p>', page)
    assert found is not None, field_id
    return html.unescape(found.group(1))


def test_a_coordinator_starts_an_audit_and_the_lists_grow_with_each_scan(
        client: TestClient, engine: Engine) -> None:
    _coordinator(client)
    audit = _start(client)
    page = client.get(f"/audits/{audit}").text
    assert "Auditoría en LAB-A" in page
    assert 'data-scan-result="#audit-lists"' in page and f'data-scan-outbox="audit:{audit}"' in page
    missing = _section(page, "missing")
    for tag in ("KIT-1", "KIT-2", "UNO-1", "UNO-5", "PRN-1"):
        assert tag in missing
    assert "UNO-9" not in missing  # LAB-B's

    known = _scan(client, audit, "UNO-2")
    assert known.status_code == 200 and known.headers["x-scan-outcome"] == "ok"
    assert _said(known) == "UNO-2 encontrado."
    assert "UNO-2" in _section(known.text, "found")
    assert "UNO-2" not in _section(known.text, "missing")
    assert "<html" not in known.text  # the fragment the form's data-scan-result names

    elsewhere = _scan(client, audit, "UNO-9")
    assert elsewhere.headers["x-scan-outcome"] == "warn"
    assert _said(elsewhere) == "UNO-9 está registrado en LAB-B: queda como inesperado."
    assert "registrado en LAB-B" in _section(elsewhere.text, "unexpected")

    unknown = _scan(client, audit, "NADIE-7")
    assert unknown.headers["x-scan-outcome"] == "warn"
    assert "ningún equipo tiene este código" in _section(unknown.text, "unexpected")

    key = str(uuid.uuid4())  # one scan sent twice (its answer was lost): done once
    first = _scan(client, audit, "UNO-3", key)
    again = _scan(client, audit, "UNO-3", key)
    assert first.headers["x-scan-outcome"] == "ok"
    assert again.status_code == 200 and again.headers["x-scan-outcome"] == "again"
    assert "UNO-3" in _section(again.text, "found")
    rescan = _scan(client, audit, "UNO-3")  # the same tag scanned again, a new scan
    assert rescan.headers["x-scan-outcome"] == "again"
    assert _said(rescan) == "UNO-3 ya se había escaneado en esta auditoría."

    refused = _scan(client, audit, "no es <una> etiqueta")
    assert refused.status_code == 422 and refused.headers["x-scan-outcome"] == "refused"
    assert "no es un código: un código tiene solo letras" in _said(refused)
    empty = _scan(client, audit, "   ")
    assert empty.status_code == 422 and _said(empty) == "Escanee una etiqueta o escriba un código."
    with engine.connect() as conn:
        tags = conn.execute(select(audit_scans.c.tag).where(
            audit_scans.c.audit_uuid == audit).order_by(audit_scans.c.tag)).scalars().all()
        kept = conn.execute(select(func.count()).select_from(scan_receipts).where(
            scan_receipts.c.subject == f"audit:{audit}")).scalar_one()
    assert tags == ["NADIE-7", "UNO-2", "UNO-3", "UNO-9"]
    assert kept == 5  # each key once: UNO-2, UNO-9, NADIE-7, UNO-3 (twice sent), UNO-3 again


def test_without_javascript_a_scan_goes_back_to_the_page_which_says_it_once(
        client: TestClient) -> None:
    _coordinator(client, "pt")
    audit = _start(client)
    r = _scan(client, audit, "UNO-4", script=False)
    assert r.status_code == 303 and r.headers["location"] == f"/audits/{audit}"
    page = client.get(f"/audits/{audit}").text
    assert "UNO-4 encontrado." in page and "UNO-4" in _section(page, "found")
    assert "UNO-4 encontrado." not in client.get(f"/audits/{audit}").text  # once


def test_counts_finish_report_and_corrections_after_a_confirmation(
        client: TestClient, engine: Engine) -> None:
    _coordinator(client)
    audit = _start(client)
    for tag in ("KIT-1", "KIT-2", "UNO-1", "UNO-2", "UNO-4", "UNO-5", "PRN-1", "UNO-9",
                "NADIE-7"):
        assert _scan(client, audit, tag).status_code == 200  # UNO-3 stays on no shelf
    page = client.get(f"/audits/{audit}").text
    csrf = hidden(page, "csrf_token")
    r = post_form(client, f"/audits/{audit}/counts", {"csrf_token": csrf, "model": "JMP",
                                                       "quantity": "95"})
    assert r.status_code == 303
    page = client.get(r.headers["location"]).text
    assert "Guardado" in page and "95\u00a0pcs" in page

    # The finish form carries the version the lists were drawn at; a scan since makes it
    # stale (409: reload), the current one finishes.
    version = hidden(page, "version")
    _scan(client, audit, "UNO-2")  # already scanned: the version stays
    with engine.begin() as conn:
        audits.record_count(conn=conn, audit_uuid=audit, model_code="HC-SR04", quantity=3,
                            by="otra persona")
    stale = post_form(client, f"/audits/{audit}/finish", {"csrf_token": csrf,
                                                          "version": version})
    assert stale.status_code == 409 and "recarga la página" in stale.text
    version = hidden(client.get(f"/audits/{audit}").text, "version")
    done = post_form(client, f"/audits/{audit}/finish", {"csrf_token": csrf,
                                                        "version": version})
    assert done.status_code == 303 and done.headers["location"] == f"/audits/{audit}"

    report = client.get(f"/audits/{audit}").text
    assert "Informe de auditoría, LAB-A" in report
    assert "UNO-3" in _section(report, "missing")
    assert "registrado en LAB-B" in _section(report, "unexpected")
    assert "NADIE-7" in _section(report, "unknown")
    assert "UNO-2" in _section(report, "found")
    assert "-5" in report  # JMP: 100 recorded, 95 counted
    closed = _scan(client, audit, "UNO-3")
    assert closed.status_code == 422 and "cerrada" in _said(closed)

    confirm = client.get(f"/audits/{audit}/corrections")
    assert confirm.status_code == 200
    text = html.unescape(confirm.text)
    assert "UNO-3</span>" in text and "quedará registrado como perdido" in text
    assert "pasará de LAB-B a LAB-A" in text
    assert "de 100\u00a0pcs a 95\u00a0pcs" in text
    assert "NADIE-7" not in text and "HC-SR04" not in text  # nothing to change for them
    with engine.connect() as conn:  # looking changed nothing
        assert assets.get_asset(conn=conn, tag="UNO-3").status == "available"
        assert audits.get_audit(conn=conn, audit_uuid=audit).status == "finished"
    applied = post_form(client, f"/audits/{audit}/corrections", {
        "csrf_token": csrf, "version": hidden(confirm.text, "version")})
    assert applied.status_code == 303
    with engine.connect() as conn:
        assert assets.get_asset(conn=conn, tag="UNO-3").status == "lost"
        assert assets.get_asset(conn=conn, tag="UNO-9").site_code == "LAB-A"
        assert stock.get_stock(conn=conn, site_code="LAB-A", model_code="JMP").quantity == 95
    report = client.get(f"/audits/{audit}").text
    assert "Correcciones aplicadas" in report and "corregido" in report
    assert "Revisar las correcciones" not in report
    twice = post_form(client, f"/audits/{audit}/corrections", {
        "csrf_token": csrf, "version": hidden(confirm.text, "version")})
    assert twice.status_code == 409
    assert client.get(f"/audits/{audit}/corrections").status_code == 409


WORDS: Final = {"es": {"site": "Elija el laboratorio que va a auditar.",
                    "open": "LAB-A ya tiene una auditoría abierta",
                    "region": "VL-R1 no lo es",
                    "number": "Escriba un número entero, por ejemplo 12.",
                    "range": "Escriba un número entero de 0 a 10.000.000.",
                    "tagged": "UNO se controla por código", "model": "Elija lo que contó."},
             "pt": {"site": "Escolha o laboratório que vai auditar.",
                    "open": "LAB-A já tem uma auditoria aberta",
                    "region": "VL-R1 não é um",
                    "number": "Escreva um número inteiro, por exemplo 12.",
                    "range": "Digite um número inteiro de 0 a 10.000.000.",
                    "tagged": "UNO é controlado por código",
                    "model": "Escolha o que você contou."}}


def test_form_errors_beside_their_fields_in_the_persons_language(client: TestClient) -> None:
    _coordinator(client)
    audit = _start(client)
    for lang in ("es", "pt"):
        client.cookies.set("labhub_lang", lang)
        _form_errors(client, audit, WORDS[lang])


def _form_errors(client: TestClient, audit: str, words: dict[str, str]) -> None:
    csrf = hidden(client.get("/audits").text, "csrf_token")
    empty = post_form(client, "/audits", {"csrf_token": csrf, "site": ""})
    assert empty.status_code == 422 and _error_of(empty.text, "site") == words["site"]
    second = post_form(client, "/audits", {"csrf_token": csrf, "site": "LAB-A"})
    assert second.status_code == 409 and words["open"] in _error_of(second.text, "site")
    region = post_form(client, "/audits", {"csrf_token": csrf, "site": "VL-R1"})
    assert region.status_code == 422 and words["region"] in _error_of(region.text, "site")
    for fields, field, said in (
            ({"model": "JMP", "quantity": "doce"}, "count-quantity", words["number"]),
            ({"model": "JMP", "quantity": "-1"}, "count-quantity", words["range"]),
            ({"model": "UNO", "quantity": "3"}, "count-model", words["tagged"]),
            ({"model": "", "quantity": "3"}, "count-model", words["model"])):
        r = post_form(client, f"/audits/{audit}/counts", {"csrf_token": csrf, **fields})
        assert r.status_code == 422, fields
        assert said in _error_of(r.text, field), fields


def test_a_teacher_sees_their_labs_audits_and_scans_nothing(
        client: TestClient, engine: Engine) -> None:
    with engine.begin() as conn:
        mine = audits.start_audit(conn=conn, site="LAB-A", by=COORDINATOR).uuid
        theirs = audits.start_audit(conn=conn, site="LAB-B", by=COORDINATOR).uuid
    sign_in_form(client, TEACHER, TEACHER_PASSWORD)
    listing = client.get("/audits").text
    assert mine in listing and theirs not in listing
    assert "Iniciar una auditoría" not in listing  # no start form
    page = client.get(f"/audits/{mine}")
    assert page.status_code == 200 and 'class="scan"' not in page.text
    assert "audit-finish" not in page.text and "count-form" not in page.text
    assert client.get(f"/audits/{theirs}").status_code == 403
    csrf = hidden(page.text, "csrf_token")
    assert post_form(client, "/audits", {"csrf_token": csrf, "site": "LAB-A"}
                     ).status_code == 403
    r = post_form(client, f"/audits/{mine}/scans", {"csrf_token": csrf, "code": "UNO-2",
                                                    "scan_id": str(uuid.uuid4())},
                  **{"X-Scan": "1"})
    assert r.status_code == 403
    for step in ("finish", "counts", "corrections"):
        assert post_form(client, f"/audits/{mine}/{step}", {"csrf_token": csrf}
                         ).status_code == 403
    with engine.connect() as conn:
        assert audits.get_audit(conn=conn, audit_uuid=mine).scanned == ()


def test_the_site_filter_and_the_coordinators_scope(client: TestClient, engine: Engine) -> None:
    with engine.begin() as conn:
        audits.start_audit(conn=conn, site="LAB-B", by="alguien")
    _coordinator(client)
    audit = _start(client, "LAB-A")
    everywhere = client.get("/audits").text
    assert audit in everywhere and "LAB-B" in everywhere
    lab_a = client.get("/audits?site=LAB-A").text
    assert audit in lab_a and "Auditorías en LAB-A" in lab_a
    assert 'class="audit-site">LAB-B' not in lab_a
    assert '<option value="LAB-A" selected>' in lab_a  # the start form takes the site too
    assert client.get("/audits?site=VL-R1").text.count('class="audit-item') == 2


def test_bad_values_in_the_address_give_a_page_in_the_persons_language(
        client: TestClient) -> None:
    _coordinator(client)
    for lang, not_found in (("es", "no está en este hub"), ("pt", "não está neste hub")):
        client.cookies.set("labhub_lang", lang)
        _bad_addresses(client, not_found)


def _bad_addresses(client: TestClient, not_found: str) -> None:
    for path, status in (("/audits/no-es-un-id", 404),
                         (f"/audits/{uuid.uuid4()}", 404),
                         (f"/audits/{uuid.uuid4()}/corrections", 404),
                         ("/audits?site=NOPE", 404),
                         ("/audits?offset=-1", 422),
                         ("/audits?status=perdida", 422),
                         ("/audits?site=%3Cb%3E", 422)):
        r = client.get(path)
        assert r.status_code == status, (path, r.status_code)
        assert "text/html" in r.headers["content-type"], path
        if status == 404:
            assert not_found in r.text, path
    csrf = hidden(client.get("/audits").text, "csrf_token")
    r = post_form(client, f"/audits/{uuid.uuid4()}/scans", {
        "csrf_token": csrf, "code": "UNO-2", "scan_id": str(uuid.uuid4())}, **{"X-Scan": "1"})
    assert r.status_code == 422 and r.headers["x-scan-outcome"] == "refused"
    r = post_form(client, f"/audits/{uuid.uuid4()}/finish", {"csrf_token": csrf})
    assert r.status_code == 404 and "text/html" in r.headers["content-type"]


def test_a_page_load_reads_the_site_again_and_scans_answer_from_it(
        client: TestClient, engine: Engine) -> None:
    """The scans answer from the site's assets as the page load read them (kept half a
    minute: SiteViews); the person's own scans show at once, and someone else's change to
    the site's assets shows when the page is loaded again."""
    _coordinator(client)
    audit = _start(client)
    assert "UNO-5" in _section(client.get(f"/audits/{audit}").text, "missing")
    with engine.begin() as conn:  # meanwhile, someone moves UNO-5 to LAB-B
        assets.move_asset(conn=conn, tag="UNO-5", to_site="LAB-B", by="otra persona")
    page = client.get(f"/audits/{audit}").text
    assert "UNO-5" not in _section(page, "missing")
    r = post_form(client, f"/audits/{audit}/scans", {
        "csrf_token": hidden(page, "csrf_token"), "code": "UNO-5",
        "scan_id": str(uuid.uuid4())}, **{"X-Scan": "1"})
    assert r.headers["x-scan-outcome"] == "warn"
    assert "registrado en LAB-B" in _section(r.text, "unexpected")
    assert "UNO-5" not in _section(r.text, "found")
