"""The transfers pages through HTTP (starlette's client, SQLite and PostgreSQL): a
coordinator drafts a transfer from LAB-A to LAB-B, builds its manifest by scanning,
ships it, and receives it at LAB-B with one item not scanned and one that was not
shipped; the discrepancies are shown side by side before the receipt is confirmed; a
scan sent twice with one key is done once; the in-transit list; gates and scope (a
teacher at LAB-A sees LAB-A's transfers and may not draft); errors beside their
fields in es and pt, a stale version's 409, and pages (never a traceback) for bad
values in the address. tests/test_web_transfers_browser.py drives the same pages in
Chromium."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from web_client import hidden, post_form, sign_in_form
from web_inventory_world import COORDINATOR, COORDINATOR_PASSWORD, make_equipment_world
from web_world import BY, TEACHER, TEACHER_PASSWORD

from inventory import assets, receipts, transfers
from inventory.errors import ConflictError
from labhub.app import create_app
from labhub.settings import Settings
from labhub.web import i18n
from labhub.web import transfers as web_transfers


@pytest.fixture
def lab(settings: Settings, engine: Engine) -> Iterator[tuple[TestClient, Engine]]:
    app = create_app(settings.model_copy(update={"site": "LAB-A"}))
    with TestClient(app) as client:
        make_equipment_world(engine)
        yield client, engine


def _coordinator(client: TestClient, lang: str = "es") -> None:
    sign_in_form(client, COORDINATOR, COORDINATOR_PASSWORD, lang=lang)


def _draft(client: TestClient) -> str:
    page = client.get("/transfers/new")
    assert page.status_code == 200, page.text
    r = post_form(client, "/transfers", {"csrf_token": hidden(page.text, "csrf_token"),
                                         "from_site": "LAB-A", "to_site": "LAB-B"})
    assert r.status_code == 303, r.text
    found = re.fullmatch(r"/transfers/([0-9a-f-]{36})", r.headers["location"])
    assert found is not None, r.headers["location"]
    return found.group(1)


def _scan(client: TestClient, path: str, code: str, *, key: str | None = None,
          script: bool = True) -> Any:
    page = client.get(path.rsplit("/", 1)[0])
    fields = {"csrf_token": hidden(page.text, "csrf_token"), "code": code,
              "scan_id": key or str(uuid.uuid4())}
    return post_form(client, path, fields, **({"X-Scan": "1"} if script else {}))


def _status(engine: Engine, tag: str) -> tuple[str, str]:
    with engine.connect() as conn:
        a = assets.get_asset(conn=conn, tag=tag)
    return a.status, a.site_code


def _ship(client: TestClient, tid: str, carrier: str = "Luis") -> Any:
    page = client.get(f"/transfers/{tid}")
    return post_form(client, f"/transfers/{tid}/ship", {
        "csrf_token": hidden(page.text, "csrf_token"), "carrier": carrier,
        "version": re.search(r'action="/transfers/[^"]+/ship".*?name="version" value="(\d+)"',
                             page.text, re.S).group(1)})  # type: ignore[union-attr]


def test_ship_and_receive_with_one_missing_and_one_extra(
        lab: tuple[TestClient, Engine]) -> None:
    client, engine = lab
    _coordinator(client)
    tid = _draft(client)
    for tag in ("UNO-2", "UNO-3", "UNO-4"):
        r = _scan(client, f"/transfers/{tid}/items", tag)
        assert r.status_code == 200 and r.headers["X-Scan-Outcome"] == "ok", r.text
        assert f'<span class="tag">{tag}</span>' in r.text  # the fragment lists it
    # Taken off again, by the remove button (a form without JavaScript).
    page = client.get(f"/transfers/{tid}")
    version = re.search(r'name="version" value="(\d+)"', page.text).group(1)  # type: ignore[union-attr]
    r = post_form(client, f"/transfers/{tid}/remove", {
        "csrf_token": hidden(page.text, "csrf_token"), "version": version, "tag": "UNO-4"})
    assert r.status_code == 303
    # An asset at LAB-B cannot go from LAB-A: refused in the person's words.
    r = _scan(client, f"/transfers/{tid}/items", "UNO-9")
    assert r.status_code == 422 and r.headers["X-Scan-Outcome"] == "refused"
    assert "UNO-9" in _said(r) and "laboratorio" in _said(r)
    r = _ship(client, tid)
    assert r.status_code == 303, r.text
    assert _status(engine, "UNO-2") == ("in_transit", "LAB-A")
    # The in-transit list shows it; the received list does not.
    assert tid in client.get("/transfers?status=shipped").text
    assert tid not in client.get("/transfers?status=received").text
    # At LAB-B: UNO-2 scanned, UNO-3 not, UNO-9 (LAB-B's own) scanned as an extra.
    r = _scan(client, f"/transfers/{tid}/scans", "UNO-2")
    assert r.headers["X-Scan-Outcome"] == "ok" and "UNO-2 llegó" in _said(r)
    r = _scan(client, f"/transfers/{tid}/scans", "UNO-9")
    assert r.headers["X-Scan-Outcome"] == "warn"
    page = client.get(f"/transfers/{tid}").text
    missing = re.search(r'<section aria-labelledby="missing-title".*?</section>', page, re.S)
    extra = re.search(r'<section aria-labelledby="extra-title".*?</section>', page, re.S)
    assert missing and "UNO-3" in missing.group(0) and "UNO-2" not in missing.group(0)
    assert extra and "UNO-9" in extra.group(0) and "UNO-3" not in extra.group(0)
    assert "Faltan (1)" in page and "Sobran (1)" in page
    # Confirming without saying what the missing item becomes: the error beside it.
    version = re.search(r'class="stacked confirm">.*?name="version" value="(\d+)"',
                        page, re.S).group(1)  # type: ignore[union-attr]
    r = post_form(client, f"/transfers/{tid}/receive", {
        "csrf_token": hidden(page, "csrf_token"), "version": version})
    assert r.status_code == 422
    assert 'id="missing_as-error"' in r.text and "Diga en qué quedan los ítems" in r.text
    r = post_form(client, f"/transfers/{tid}/receive", {
        "csrf_token": hidden(page, "csrf_token"), "version": version, "missing_as": "lost"})
    assert r.status_code == 303, r.text
    assert _status(engine, "UNO-2") == ("available", "LAB-B")
    assert _status(engine, "UNO-3") == ("lost", "LAB-A")
    assert _status(engine, "UNO-4") == ("available", "LAB-A")
    done = client.get(f"/transfers/{tid}").text
    assert "UNO-3" in done and "Perdido" in done and "UNO-9" in done
    with engine.connect() as conn:
        t = transfers.get_transfer(conn=conn, transfer_uuid=tid)
    assert [(d.tag, d.kind) for d in t.discrepancies] == [("UNO-9", "extra"),
                                                         ("UNO-3", "missing")]
    assert t.created_by == COORDINATOR and t.received_by == COORDINATOR


def test_a_scan_sent_twice_is_done_once(lab: tuple[TestClient, Engine]) -> None:
    client, engine = lab
    _coordinator(client)
    tid = _draft(client)
    key = str(uuid.uuid4())
    first = _scan(client, f"/transfers/{tid}/items", "UNO-2", key=key)
    again = _scan(client, f"/transfers/{tid}/items", "UNO-2", key=key)
    assert first.headers["X-Scan-Outcome"] == "ok"
    assert again.status_code == 200 and again.headers["X-Scan-Outcome"] == "again"
    # Without JavaScript: a 303 back, and the page says it once.
    r = _scan(client, f"/transfers/{tid}/items", "UNO-3", script=False)
    assert r.status_code == 303 and r.headers["location"] == f"/transfers/{tid}"
    shown = client.get(f"/transfers/{tid}").text
    assert "UNO-3 agregado" in shown and 'class="scan-said-page outcome-ok"' in shown
    assert "scan-said-page" not in client.get(f"/transfers/{tid}").text
    assert _ship(client, tid).status_code == 303
    key = str(uuid.uuid4())
    for _ in range(2):
        _scan(client, f"/transfers/{tid}/scans", "UNO-2", key=key)
    with engine.connect() as conn:
        t = transfers.get_transfer(conn=conn, transfer_uuid=tid)
        assert receipts.received(conn=conn, subject=f"transfer:{tid}") == 3
    assert t.items == ("UNO-2", "UNO-3") and t.scanned == ("UNO-2",)
    assert t.version == 5  # drafted 1, two items, shipped, one scan


def test_the_list_filters_by_site_and_keeps_to_the_persons_scope(
        lab: tuple[TestClient, Engine]) -> None:
    client, engine = lab
    with engine.begin() as conn:
        mine = transfers.draft_transfer(conn=conn, from_site="LAB-A", to_site="LAB-B",
                                        tags=["UNO-5"], by=BY)
        other = transfers.draft_transfer(conn=conn, from_site="LAB-B", to_site="VL-ML-1",
                                         tags=["UNO-9"], by=BY)
    sign_in_form(client, TEACHER, TEACHER_PASSWORD, lang="pt")
    page = client.get("/transfers")
    assert page.status_code == 200 and mine.uuid in page.text and other.uuid not in page.text
    assert "Nova transferência" not in page.text  # a teacher does not draft
    assert client.get("/transfers/new").status_code == 403
    assert client.get(f"/transfers/{other.uuid}").status_code == 403
    one = client.get(f"/transfers/{mine.uuid}")
    assert one.status_code == 200 and 'action="/transfers/' not in one.text  # no forms
    r = _scan(client, f"/transfers/{mine.uuid}/items", "UNO-2")
    assert r.status_code == 403
    client.cookies.clear()
    _coordinator(client)
    assert other.uuid in client.get("/transfers?site=VL-ML-1").text
    assert mine.uuid not in client.get("/transfers?site=VL-ML-1").text
    assert mine.uuid in client.get("/transfers?site=VL-R1").text
    assert client.get("/transfers?site=NOPE").status_code == 404
    assert client.get("/transfers?page=0").status_code == 422
    assert client.get("/transfers/not-a-transfer").status_code == 404
    assert client.get(f"/transfers/{uuid.uuid4()}").status_code == 404
    assert "text/html" in client.get(f"/transfers/{uuid.uuid4()}").headers["content-type"]


@pytest.mark.parametrize(("lang", "carrier_words", "same_words"), [
    ("es", "Escriba quién lleva", "elija otro"), ("pt", "Escreva quem leva", "escolha outro")])
def test_errors_beside_their_fields_in_the_persons_language(
        lab: tuple[TestClient, Engine], lang: str, carrier_words: str, same_words: str) -> None:
    client, _ = lab
    _coordinator(client, lang)
    page = client.get("/transfers/new")
    r = post_form(client, "/transfers", {"csrf_token": hidden(page.text, "csrf_token"),
                                         "from_site": "LAB-A", "to_site": "LAB-A"})
    assert r.status_code == 422 and same_words in r.text
    assert re.search(r'<select id="to_site"[^>]*aria-invalid="true"', r.text)
    tid = _draft(client)
    _scan(client, f"/transfers/{tid}/items", "UNO-2")
    page = client.get(f"/transfers/{tid}")
    version = re.search(r'action="/transfers/[^"]+/ship".*?name="version" value="(\d+)"',
                        page.text, re.S).group(1)  # type: ignore[union-attr]
    r = post_form(client, f"/transfers/{tid}/ship", {
        "csrf_token": hidden(page.text, "csrf_token"), "carrier": " ", "version": version})
    assert r.status_code == 422 and carrier_words in r.text
    assert re.search(r'<input id="carrier"[^>]*aria-invalid="true"[^>]*carrier-error', r.text)
    # A stale version (someone scanned meanwhile) is a 409 that says to check again.
    _scan(client, f"/transfers/{tid}/items", "UNO-3")
    r = post_form(client, f"/transfers/{tid}/ship", {
        "csrf_token": hidden(page.text, "csrf_token"), "carrier": "Luis", "version": version})
    assert r.status_code == 409 and 'role="alert"' in r.text
    # A tag no asset has, in the person's words.
    r = _scan(client, f"/transfers/{tid}/items", "NO-SUCH")
    assert r.status_code == 422 and "NO-SUCH" in _said(r)
    assert "asset" not in _said(r)  # not the domain's English


def test_a_scan_that_loses_the_version_race_runs_again(engine: Engine) -> None:
    """Two phones scanning one transfer: the version's compare-and-set refuses one scan,
    which runs again in a new transaction; after three losses the script is told to keep
    it (None: a 503 it retries), never that the scan was refused."""
    tries: list[int] = []

    def work(conn: Any, losses: int) -> tuple[str, str]:
        tries.append(1)
        if len(tries) <= losses:
            raise ConflictError("transfer x was changed by someone else meanwhile; retry")
        return "ok", "done"
    def taken(conn: Any) -> tuple[str, str]:
        raise ConflictError("asset 'UNO-2' is already on open transfer y")

    hub: Any = SimpleNamespace(engine=engine)  # what the function uses of the Hub
    _ = i18n.gettext_of("es")
    run = web_transfers.scan_in_one_transaction
    assert run(hub, _, "UNO-2", lambda conn: work(conn, 2)) == ("ok", "done")
    assert len(tries) == 3
    tries.clear()
    assert run(hub, _, "UNO-2", lambda conn: work(conn, 3)) is None
    assert len(tries) == 3
    assert run(hub, _, "UNO-2", taken) == ("refused", "UNO-2 ya está en otro traslado abierto.")


def _said(r: Any) -> str:
    from urllib.parse import unquote

    return unquote(r.headers["X-Scan-Said"])
