"""The chart page through HTTP (starlette's client, SQLite and PostgreSQL) and in Chromium.

HTTP: only series the person may read are offered, another site's asked for by URL is a
403 page; bad ranges and unknown series are a 422 page with the error beside its field,
in the person's language; the summary and the table hold the right numbers for known
readings; a run's chart covers the run's time and lists its notes.

Browser (``labhub serve`` on SQLite and on PostgreSQL): a student opens a chart by
keyboard alone, zooms and pans with the buttons (each asks the API for new buckets), the
suspect reading is marked; axe-core finds nothing; screenshots in es, pt and en at phone
and laptop widths.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from web_browser import (
    LAPTOP,
    PHONE,
    ZOOM_200,
    assert_accessible,
    open_page,
    served_hub,
    shot,
    tab_to,
)
from web_world import STUDENT, STUDENT_PIN, TEACHER, TEACHER_PASSWORD, WebWorld, make_world

from labhub import db
from labhub.app import create_app
from labhub.settings import Settings
from sensors import runs
from sensors.samples import now_us
from sensors.storage import FLAG_SUSPECT, ReadingStore

FORM = {"content-type": "application/x-www-form-urlencoded"}
ZONE = "America/Bogota"  # the settings' default zone
# The readings: one a minute for an hour from 08:00 in the lab's zone; the 31st is suspect.
T0 = int(datetime(2026, 3, 1, 8, 0, tzinfo=ZoneInfo(ZONE)).timestamp()) * 1_000_000
MINUTE = 60 * 1_000_000
VALUES = [20.0 + 0.2 * i for i in range(60)]
SUSPECT_AT = 30
CUSTOM = {"range": "custom", "start": "2026-03-01T08:00", "end": "2026-03-01T09:00"}


def fill(engine: Engine, *, start: int = T0, count: int = 60) -> None:
    """kit-a's temperature (LAB-A) with the readings above; kit-b's (LAB-B) the same."""
    store = ReadingStore(engine)
    rows = []
    for device, site in (("kit-a", "LAB-A"), ("kit-b", "LAB-B")):
        sid = store.ensure_series(device=device, channel="temp", quantity="temperature",
                                  unit="degC", site=site).id
        rows.extend((sid, start + i * MINUTE, VALUES[i % 60],
                     FLAG_SUSPECT if i % 60 == SUSPECT_AT else 0) for i in range(count))
    writer = store.writer()
    try:
        writer.write([rows])
    finally:
        writer.close()


@pytest.fixture
def lab(settings: Settings, engine: Engine) -> Iterator[tuple[TestClient, WebWorld]]:
    app = create_app(settings.model_copy(update={"site": "LAB-A"}))
    with TestClient(app) as client:
        world = make_world(engine)
        fill(engine)
        yield client, world


def _teacher(client: TestClient) -> None:
    r = client.post("/signin?next=/", content=urlencode(
        {"way": "password", "name": TEACHER, "password": TEACHER_PASSWORD}),
        headers=FORM, follow_redirects=False)
    assert r.status_code == 303, r.text


def _errors(html: str) -> dict[str, str]:
    return dict(re.findall(r'<p class="error" id="([a-z]+)-error">([^<]*)</p>', html))


def test_only_series_of_ones_own_sites_are_offered_and_others_are_refused(
        lab: tuple[TestClient, WebWorld]) -> None:
    client, _ = lab
    assert client.get("/charts", follow_redirects=False).status_code == 303  # sign in first
    _teacher(client)
    page = client.get("/charts?lang=en")
    assert page.status_code == 200
    assert 'value="kit-a/temp"' in page.text
    assert "kit-b" not in page.text
    refused = client.get("/charts?" + urlencode({"s": "kit-b/temp", **CUSTOM}))
    assert refused.status_code == 403
    assert "<figure" not in refused.text and "20.0" not in refused.text
    marks = client.get("/charts/suspect?device=kit-b&channel=temp&start=-1w&end=now")
    assert marks.status_code == 403


def test_bad_ranges_and_series_are_named_beside_their_field(
        lab: tuple[TestClient, WebWorld]) -> None:
    client, _ = lab
    _teacher(client)
    bad = client.get("/charts?" + urlencode(
        {"s": "kit-a/temp", "range": "custom", "start": "ayer", "end": "2026-03-01T07:00"}))
    assert bad.status_code == 422
    assert _errors(bad.text) == {"start": "Escribe una fecha y hora, como 2026-03-01 08:30."}
    assert 'aria-invalid="true" aria-describedby="start-error"' in bad.text
    assert 'value="ayer"' in bad.text  # what was typed stays in the field
    backwards = client.get("/charts?" + urlencode(
        {"s": "kit-a/temp", "range": "custom", "start": "2026-03-01T09:00",
         "end": "2026-03-01T08:00", "lang": "pt"}))
    assert backwards.status_code == 422
    assert _errors(backwards.text) == {"end": "O fim deve vir depois do início."}
    unknown = client.get("/charts?" + urlencode({"s": "nope/x", "range": "week", "lang": "en"}))
    assert unknown.status_code == 422
    assert _errors(unknown.text) == {"s": "There is no series nope/x on this hub.",
                                     "range": "Choose one of the ranges."}
    assert "Traceback" not in unknown.text


def test_the_summary_and_the_table_hold_the_readings_numbers(
        lab: tuple[TestClient, WebWorld]) -> None:
    client, _ = lab
    _teacher(client)
    page = client.get("/charts?" + urlencode({"s": "kit-a/temp", **CUSTOM, "lang": "en"}))
    assert page.status_code == 200, page.text
    text = page.text
    assert ("Temperature from 20.0\u00a0°C to 31.8\u00a0°C, mean 25.9\u00a0°C, over 1 hour "
            "(60 readings). Suspect readings: 1.") in text
    rows = re.findall(r'<tr><th scope="row">([^<]*)</th><td>([^<]*)</td><td>([^<]*)</td>'
                      r'<td>([^<]*)</td><td>([^<]*)</td></tr>', text)
    assert len(rows) == 24  # 2.5 minutes a bucket: 3 or 2 readings each
    assert rows[0][1:] == ("20.00", "20.20", "20.40", "3")
    assert rows[-1][1:] == ("31.60", "31.70", "31.80", "2")
    assert sum(int(r[4]) for r in rows) == 60
    assert rows[0][0].startswith("3/1/26, 8:00")  # the lab's zone, not UTC's 13:00
    figure = re.search(r'<figure class="chart" data-chart([^>]*)>', text)
    assert figure is not None
    assert f'data-start="{T0 // 1000}"' in figure.group(1)
    assert f'data-end="{(T0 + 60 * MINUTE) // 1000}"' in figure.group(1)
    assert 'data-zone="America/Bogota"' in figure.group(1)
    spanish = client.get("/charts?" + urlencode({"s": "kit-a/temp", **CUSTOM, "lang": "es"}))
    assert ("Temperatura de 20,0\u00a0°C a 31,8\u00a0°C, media 25,9\u00a0°C, en 1 hora "
            "(60 lecturas). Lecturas sospechosas: 1.") in spanish.text
    marks = client.get("/charts/suspect?" + urlencode(
        {"device": "kit-a", "channel": "temp", "start": "2026-03-01T13:00:00Z",
         "end": "2026-03-01T14:00:00Z"})).json()
    assert marks == {"count": 1, "marks": [[(T0 + SUSPECT_AT * MINUTE) // 1000, 26.0]]}


def test_a_chart_takes_two_units_at_most_and_says_when_a_range_is_empty(
        lab: tuple[TestClient, WebWorld], engine: Engine) -> None:
    client, _ = lab
    store = ReadingStore(engine)
    for channel, quantity, unit in (("hum", "humidity", "%"), ("pres", "pressure", "hPa")):
        store.ensure_series(device="kit-a", channel=channel, quantity=quantity, unit=unit,
                            site="LAB-A")
    _teacher(client)
    three = client.get("/charts?" + urlencode(
        [("s", "kit-a/temp"), ("s", "kit-a/hum"), ("s", "kit-a/pres"), ("lang", "en")]))
    assert three.status_code == 422
    assert _errors(three.text) == {"s": "A chart shows at most two units: choose series "
                                        "that measure at most two kinds of things."}
    two = client.get("/charts?" + urlencode(
        [("s", "kit-a/temp"), ("s", "kit-a/hum"), ("range", "10m"), ("lang", "en")]))
    assert two.status_code == 200
    assert "Temperature: no readings in this range." in two.text
    assert "Relative humidity: no readings in this range." in two.text
    assert '&#34;unit&#34;: &#34;°C&#34;' in two.text and '&#34;unit&#34;: &#34;%&#34;' in two.text


def test_a_runs_chart_covers_its_time_and_shows_its_notes(
        lab: tuple[TestClient, WebWorld], engine: Engine) -> None:
    client, _ = lab
    with engine.begin() as conn:
        run = runs.start_run(conn=conn, title="Sombra vs sol", channels=[("kit-a", "*")],
                             site="LAB-A", started_at=T0 + 10 * MINUTE)[0]
        runs.add_note(conn=conn, run_id=run.id, text="Nube sobre el patio",
                      ts=T0 + 20 * MINUTE)
        runs.stop_run(conn=conn, run_id=run.id, stopped_at=T0 + 40 * MINUTE)
        other = runs.start_run(conn=conn, title="Otra", channels=[("kit-b", "temp")],
                               site="LAB-B", started_at=T0)[0]
    _teacher(client)
    page = client.get(f"/charts?run={run.id}&lang=en")
    assert page.status_code == 200, page.text
    assert "Run: Sombra vs sol" in page.text
    assert "Nube sobre el patio" in page.text
    assert f'data-start="{(T0 + 10 * MINUTE) // 1000}"' in page.text
    assert '"text": "Nube sobre el patio"' in page.text.replace("&#34;", '"')
    assert "over 30 minutes (31 readings)" in page.text  # 08:10 to 08:40 inclusive
    assert client.get(f"/charts?run={other.id}").status_code == 403
    assert client.get("/charts?run=no-such-run").status_code == 404


# -- in Chromium -------------------------------------------------------------------------------

@dataclass
class ChartHub:
    base: str
    world: WebWorld
    run_id: str


@pytest.fixture
def chart_hub(tmp_path: Path, database_url: str) -> Iterator[ChartHub]:
    """``labhub serve`` on the test's database: the lab, an hour of readings up to now
    (one suspect), and a run over its middle with a note."""
    engine = db.make_engine(database_url)
    start = (now_us() // MINUTE - 59) * MINUTE
    try:
        world = make_world(engine)
        fill(engine, start=start)
        store = ReadingStore(engine)
        hum = store.ensure_series(device="kit-a", channel="hum", quantity="humidity",
                                  unit="%", site="LAB-A").id
        writer = store.writer()
        try:
            writer.write([[(hum, start + i * MINUTE, 60.0 - i * 0.3, 0) for i in range(60)]])
        finally:
            writer.close()
        with engine.begin() as conn:
            run = runs.start_run(conn=conn, title="Sombra vs sol", channels=[("kit-a", "*")],
                                 site="LAB-A", started_at=start + 10 * MINUTE)[0]
            runs.add_note(conn=conn, run_id=run.id, text="Nube sobre el patio",
                          ts=start + 25 * MINUTE)
            runs.stop_run(conn=conn, run_id=run.id, stopped_at=start + 50 * MINUTE)
    finally:
        engine.dispose()
    with served_hub(tmp_path, database_url) as served:
        yield ChartHub(served.base, world, run.id)


def _student(page: Any, hub: ChartHub) -> None:
    page.goto(f"{hub.base}/signin?lang=es")
    form = page.locator("form", has=page.locator("#pin-pin"))
    form.locator("#pin-code").fill(hub.world.class_code)
    form.locator("#pin-name").fill(STUDENT)
    form.locator("#pin-pin").fill(STUDENT_PIN)
    form.locator("button[type=submit]").click()
    page.wait_for_url(f"{hub.base}/")


def _focused(page: Any, selector: str) -> bool:
    return bool(page.evaluate("(s) => document.activeElement?.matches(s) ?? false", selector))


def _drawn(page: Any, count: int) -> None:
    page.wait_for_selector(f"figure.chart[data-drawn='{count}']:not([aria-busy])")


def test_a_student_opens_a_chart_by_keyboard_and_zooms_and_pans_with_buttons(
        browser: Any, chart_hub: ChartHub, database_url: str) -> None:
    hub = chart_hub
    context, page, watched = open_page(browser, hub.base, viewport=LAPTOP, locale="es-CO")
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/api/v1/readings?" in r.url else None)
    try:
        _student(page, hub)
        tab_to(page, lambda p: _focused(p, "a[href='/charts']"))
        page.keyboard.press("Enter")
        page.wait_for_url(f"{hub.base}/charts")
        tab_to(page, lambda p: _focused(p, "input[value='kit-a/temp']"))
        page.keyboard.press("Space")
        tab_to(page, lambda p: _focused(p, "input[name=range]"))  # the checked preset
        page.keyboard.press("ArrowRight")  # Last hour -> Last 24 hours
        page.keyboard.press("ArrowLeft")  # and back: the last hour
        tab_to(page, lambda p: _focused(p, "button[type=submit]"))
        page.keyboard.press("Enter")
        page.wait_for_url("**/charts?s=kit-a%2Ftemp&range=1h**")
        _drawn(page, 1)
        figure = page.locator("figure.chart")
        assert page.locator("figure.chart canvas").count() == 1
        assert figure.get_attribute("data-suspect") == "1"  # the suspect reading's mark
        assert "Lecturas sospechosas: 1." in figure.locator("figcaption").inner_text()
        assert len(asked) == 1 and "buckets=" in asked[0]
        first = _span(asked[0])
        tab_to(page, lambda p: _focused(p, "button[data-act=in]"))
        page.keyboard.press("Enter")
        _drawn(page, 2)
        assert _span(asked[-1]) == pytest.approx(first / 2, rel=0.01)
        assert figure.get_attribute("data-suspect") == "1"  # still inside the zoom
        tab_to(page, lambda p: _focused(p, "button[data-act=earlier]"))
        page.keyboard.press("Space")
        _drawn(page, 3)
        assert len(asked) == 3 and _start(asked[-1]) < _start(asked[-2])
        assert "Mostrando desde" in page.locator(".chart-status").inner_text()
        shown = parse_qs(urlsplit(page.url).query)  # the zoomed chart is a link
        assert shown["range"] == ["custom"] and shown["s"] == ["kit-a/temp"]
        assert page.locator("#chart-start").input_value() == shown["start"][0]
        assert_accessible(page, "chart, es, 1366")
        if database_url.startswith("sqlite"):
            _screenshots(page, hub)
        watched.check()
    finally:
        context.close()


def _when(url: str, name: str) -> float:
    value = parse_qs(urlsplit(url).query)[name][0]
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _start(url: str) -> float:
    return _when(url, "start")


def _span(url: str) -> float:
    return _when(url, "end") - _when(url, "start")


def _screenshots(page: Any, hub: ChartHub) -> None:
    """The chart and a run's chart in es, pt and en at phone and laptop widths."""
    for lang in ("es", "pt", "en"):
        for name, viewport in (("360", PHONE), ("1366", LAPTOP)):
            page.set_viewport_size(viewport)
            page.goto(f"{hub.base}/charts?s=kit-a%2Ftemp&range=1h&lang={lang}")
            _drawn(page, 1)
            page.locator("details.chart-data summary").click()
            shot(page, f"charts-{lang}-{name}")
    page.goto(f"{hub.base}/charts?s=kit-a%2Ftemp&s=kit-a%2Fhum&range=1h&lang=en")
    _drawn(page, 1)
    assert page.locator(".chart-legend li").all_inner_texts() == [
        "Temperature (°C)", "Relative humidity (%)"]
    shot(page, "charts-two-units-en-1366")
    page.set_viewport_size(ZOOM_200)
    page.goto(f"{hub.base}/charts?s=kit-a%2Ftemp&range=1h&lang=es")
    _drawn(page, 1)
    shot(page, "charts-es-683-zoom200")
    assert_accessible(page, "chart, es, 200 % zoom")
    page.set_viewport_size(LAPTOP)
    page.goto(f"{hub.base}/charts?run={hub.run_id}&lang=es")
    _drawn(page, 1)
    assert "Nube sobre el patio" in page.locator(".chart-notes").inner_text()
    shot(page, "charts-run-es-1366")
    assert_accessible(page, "run chart, es, 1366")
    # A 422 page: Chromium logs its status as a console error, so a page of its own.
    errors = page.context.new_page()
    errors.set_viewport_size(PHONE)
    errors.goto(f"{hub.base}/charts?s=kit-a%2Ftemp&range=custom&start=x&end=y&lang=pt")
    assert errors.locator("#start-error").inner_text() == (
        "Escreva uma data e hora, como 2026-03-01 08:30.")
    shot(errors, "charts-error-pt-360")
    assert_accessible(errors, "chart form with errors, pt, 360")
    errors.close()
