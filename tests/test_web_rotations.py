"""The mobile-lab rotations pages through HTTP (starlette's client, SQLite and
PostgreSQL): the coordinator edits the mobile lab's manifest by scanning (add, a key
twice done once, remove), plans a route from the form (errors beside the stop, in es
and pt), and at a stop arrives, scans what came at the school (one item missing shown
before confirming), confirms the arrival, leaves and confirms the return by scan; a
teacher at LAB-A sees the route that stops there but may do none of it."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from web_client import hidden, post_form, sign_in_form
from web_inventory_world import COORDINATOR, COORDINATOR_PASSWORD, make_equipment_world
from web_world import BY, TEACHER, TEACHER_PASSWORD

from inventory import assets, rotations
from labhub.app import create_app
from labhub.settings import Settings

ML = "/rotations/manifests/VL-ML-1"


@pytest.fixture
def lab(settings: Settings, engine: Engine) -> Iterator[tuple[TestClient, Engine]]:
    app = create_app(settings.model_copy(update={"site": "LAB-A"}))
    with TestClient(app) as client:
        make_equipment_world(engine)
        with engine.begin() as conn:
            for tag in ("ML-1", "ML-2", "ML-3"):
                assets.register_asset(conn=conn, tag=tag, model_code="UNO",
                                      site_code="VL-ML-1", by=BY)
        yield client, engine


def _scan(client: TestClient, page_path: str, action: str, code: str, *,
          key: str | None = None, **extra: str) -> Any:
    page = client.get(page_path)
    assert page.status_code == 200, page.text
    fields = {"csrf_token": hidden(page.text, "csrf_token"), "code": code,
              "scan_id": key or str(uuid.uuid4()), **extra}
    return post_form(client, action, fields, **{"X-Scan": "1"})


def _said(r: Any) -> str:
    return unquote(r.headers["X-Scan-Said"])


def _plan(client: TestClient, **fields: str) -> Any:
    page = client.get("/rotations/new")
    assert page.status_code == 200, page.text
    return post_form(client, "/rotations", {"csrf_token": hidden(page.text, "csrf_token"),
                                            **fields})


def test_manifest_route_and_a_stop_checked_by_scan(lab: tuple[TestClient, Engine]) -> None:
    client, engine = lab
    sign_in_form(client, COORDINATOR, COORDINATOR_PASSWORD)
    key = str(uuid.uuid4())
    for code in ("ML-1", "ML-2", "ML-3"):
        r = _scan(client, ML, f"{ML}/scans", code, key=key if code == "ML-1" else None,
                  mode="add")
        assert r.headers["X-Scan-Outcome"] == "ok", _said(r)
    r = _scan(client, ML, f"{ML}/scans", "ML-1", key=key, mode="add")
    assert r.headers["X-Scan-Outcome"] == "again"
    r = _scan(client, ML, f"{ML}/scans", "UNO-2", mode="add")  # at LAB-A
    assert r.status_code == 422 and "UNO-2" in _said(r) and "móvil" in _said(r)
    r = _scan(client, ML, f"{ML}/scans", "ML-3", mode="remove")
    assert r.headers["X-Scan-Outcome"] == "ok" and "ML-3 quitado" in _said(r)
    with engine.connect() as conn:
        assert rotations.manifest_of(conn=conn, mobile_lab="VL-ML-1") == ["ML-1", "ML-2"]
    r = _plan(client, mobile_lab="VL-ML-1", name="Ruta norte", site1="LAB-A",
              arrive1="2027-03-01", depart1="2027-03-05")
    assert r.status_code == 303, r.text
    rid = r.headers["location"].rsplit("/", 1)[1]
    route = client.get(f"/rotations/{rid}").text
    assert "Parada 1: LAB-A" in route and "Todavía no llegó" in route
    stop = f"/rotations/{rid}/stops/1"
    page = client.get(stop).text
    assert "Lo que debe llegar (2)" in page and "ML-1" in page
    r = post_form(client, f"{stop}/arrive", {"csrf_token": hidden(page, "csrf_token"),
                                             "version": hidden(page, "version"),
                                             "carrier": "Luis"})
    assert r.status_code == 303, r.text
    page = client.get(stop).text
    transfer = hidden(page, "transfer")
    r = _scan(client, stop, f"{stop}/scans", "ML-1", transfer=transfer)
    assert r.headers["X-Scan-Outcome"] == "ok"
    assert re.search(r'class="scanned".*ML-1', r.text) and re.search(r'class="waiting".*ML-2',
                                                                      r.text)
    missing = re.search(r'aria-labelledby="missing-title".*?</section>', r.text, re.S)
    assert missing and "ML-2" in missing.group(0)
    page = client.get(stop).text
    version = re.search(r'class="stacked confirm">.*?name="version" value="(\d+)"',
                        page, re.S).group(1)  # type: ignore[union-attr]
    r = post_form(client, f"{stop}/receive", {"csrf_token": hidden(page, "csrf_token"),
                                              "version": version, "transfer": transfer})
    assert r.status_code == 422 and 'id="missing_as-error"' in r.text
    r = post_form(client, f"{stop}/receive", {
        "csrf_token": hidden(page, "csrf_token"), "version": version, "transfer": transfer,
        "missing_as": "in_transit"})
    assert r.status_code == 303, r.text
    assert "En la escuela" in client.get(stop).text
    with engine.connect() as conn:
        assert assets.get_asset(conn=conn, tag="ML-1").site_code == "LAB-A"
    page = client.get(stop).text
    r = post_form(client, f"{stop}/depart", {"csrf_token": hidden(page, "csrf_token"),
                                             "version": hidden(page, "version"),
                                             "carrier": "Luis"})
    assert r.status_code == 303, r.text
    page = client.get(stop).text
    back = hidden(page, "transfer")
    assert back != transfer and "Confirmar el regreso" in page
    r = _scan(client, stop, f"{stop}/scans", "ML-1", transfer=back)
    assert r.headers["X-Scan-Outcome"] == "ok"
    # A scan kept offline for the arrival's leg, sent after it was received: refused.
    r = _scan(client, stop, f"{stop}/scans", "ML-2", transfer=transfer)
    assert r.headers["X-Scan-Outcome"] == "refused"
    page = client.get(stop).text
    version = re.search(r'class="stacked confirm">.*?name="version" value="(\d+)"',
                        page, re.S).group(1)  # type: ignore[union-attr]
    r = post_form(client, f"{stop}/receive", {"csrf_token": hidden(page, "csrf_token"),
                                              "version": version, "transfer": back})
    assert r.status_code == 303, r.text
    assert "Ya salió" in client.get(stop).text
    with engine.connect() as conn:
        assert assets.get_asset(conn=conn, tag="ML-1").site_code == "VL-ML-1"
        r2 = rotations.get_rotation(conn=conn, rotation_uuid=rid)
    assert rotations.rotation_status(r2) == "finished"
    assert "Terminada" in client.get("/rotations").text


@pytest.mark.parametrize(("lang", "words"), [("es", "Sale antes de llegar"),
                                             ("pt", "Sai antes de chegar")])
def test_plan_errors_beside_the_stop(lab: tuple[TestClient, Engine], lang: str,
                                     words: str) -> None:
    client, _ = lab
    sign_in_form(client, COORDINATOR, COORDINATOR_PASSWORD, lang=lang)
    r = _plan(client, mobile_lab="VL-ML-1", name="Ruta", site2="LAB-B",
              arrive2="2027-03-05", depart2="2027-03-01")
    assert r.status_code == 422 and words in r.text
    assert re.search(r'<select id="site2"[^>]*aria-invalid="true"', r.text)
    assert 'id="stop2-error"' in r.text and 'lang="en"' in r.text  # the detail, secondary
    r = _plan(client, mobile_lab="VL-ML-1", name="", site1="LAB-A")
    assert r.status_code == 422 and 'id="name-error"' in r.text and 'id="stop1-error"' in r.text


def test_a_teacher_sees_the_route_and_may_do_none_of_it(
        lab: tuple[TestClient, Engine]) -> None:
    client, engine = lab
    with engine.begin() as conn:
        rotations.add_to_manifest(conn=conn, mobile_lab="VL-ML-1", tag="ML-1", by=BY)
        mine = rotations.plan_rotation(conn=conn, mobile_lab="VL-ML-1", name="Ruta A", by=BY,
                                       stops=[("LAB-A", "2027-03-01", "2027-03-02")])
        other = rotations.plan_rotation(conn=conn, mobile_lab="VL-ML-1", name="Ruta B", by=BY,
                                        stops=[("LAB-B", "2027-03-01", "2027-03-02")])
    sign_in_form(client, TEACHER, TEACHER_PASSWORD)
    listed = client.get("/rotations").text
    assert "Ruta A" in listed and "Ruta B" not in listed
    assert "Planificar una ruta" not in listed
    assert client.get(f"/rotations/{other.uuid}").status_code == 403
    page = client.get(f"/rotations/{mine.uuid}/stops/1")
    assert page.status_code == 200 and "/arrive" not in page.text
    r = post_form(client, f"/rotations/{mine.uuid}/stops/1/arrive", {
        "csrf_token": hidden(page.text, "csrf_token"), "carrier": "Luis"})
    assert r.status_code == 403
    assert client.get("/rotations/new").status_code == 403
    assert client.get(ML).status_code == 403  # the mobile lab is not the teacher's
    assert client.get(f"/rotations/{mine.uuid}/stops/9").status_code == 404
    assert client.get(f"/rotations/{mine.uuid}/stops/x").status_code == 422
    assert client.get(f"/rotations/{uuid.uuid4()}").status_code == 404
    assert client.get("/rotations?site=NOPE").status_code == 404
