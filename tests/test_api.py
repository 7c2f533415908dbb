"""The HTTP API on every backend, end to end: upload, series, ranges, export, runs, rejects,
and errors as problem+json, never a 500."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import sqlite3
import statistics
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from served_app import served_app
from signed_in import admin_token, as_admin
from waiting import wait_for

from firmware_bridge.sim.firmata_board import VirtualFirmataBoard
from labhub.app import create_app
from labhub.settings import Settings
from labtext.times import format_time, now_us, parse_time

PROBLEM = "application/problem+json"
JSON = {"content-type": "application/json"}


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with as_admin(TestClient(create_app(settings))) as c:
        yield c


def _upload(client: TestClient, device: str, readings: list[dict[str, object]],
            site: str | None = None) -> dict[str, int]:
    r = client.post("/api/v1/readings", json={"device": device, "site": site,
                                              "readings": readings})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _rejects(client: TestClient) -> list[dict[str, str]]:
    body = client.get("/api/v1/rejects", params={"with_payload": "true"}).json()
    assert body["total"] == len(body["items"])
    return body["items"]  # type: ignore[no-any-return]


def _add_site(client: TestClient, code: str) -> None:
    """A lab site of the inventory's tree: readings may name only those."""
    for doc in ({"code": "VC", "name": "Red", "kind": "network"},
                {"code": "VC-R", "name": "Región", "kind": "region", "parent": "VC"},
                {"code": code, "name": f"Lab {code}", "kind": "site", "parent": "VC-R",
                 "tier": "lab_point"}):
        r = client.post("/api/v1/sites", json=doc)
        assert r.status_code in (201, 409), r.text


def test_a_posted_reading_shows_in_series_range_and_a_spanish_csv(client: TestClient) -> None:
    _add_site(client, "VC-LP-014")
    result = _upload(client, "station-1", [
        {"channel": "temp", "value": 21.5, "ts": "2026-03-01T14:00:00Z"},
        {"channel": "temp", "value": 22.25, "ts": "2026-03-01T14:01:00Z"},
        {"channel": "hum", "value": 40, "ts": 1772373600},
        {"channel": "temp", "value": -3.5, "ts": "2026-03-01T14:02:00Z"},
    ], site="VC-LP-014")
    assert result == {"accepted": 4, "duplicate": 0, "suspect": 0, "rejected": 0}

    listed = client.get("/api/v1/series", params={"lang": "es"}).json()
    assert [(s["device"], s["channel"], s["quantity"], s["unit"], s["label"]) for s in listed] == [
        ("station-1", "hum", "humidity", "%", "Humedad relativa"),
        ("station-1", "temp", "temperature", "degC", "Temperatura"),
    ]
    assert listed[1]["latest_value"] == -3.5
    assert listed[1]["latest_ts"] == "2026-03-01T14:02:00Z"
    assert listed[1]["site"] == "VC-LP-014"

    ranged = client.get("/api/v1/readings", params={
        "device": "station-1", "channel": "temp", "buckets": 2,
        "start": "2026-03-01T14:00:00Z", "end": "2026-03-01T14:04:00Z"}).json()
    assert [(b["start"], b["count"], b["min"], b["max"]) for b in ranged["buckets"]] == [
        ("2026-03-01T14:00:00Z", 2, 21.5, 22.25),
        ("2026-03-01T14:02:00Z", 1, -3.5, -3.5),
    ]
    assert ranged["buckets"][0]["mean"] == pytest.approx(21.875)

    r = client.get("/api/v1/export.csv", params={
        "device": "station-1", "delimiter": "semicolon", "decimal": "comma", "bom": "true",
        "lang": "es"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    raw = r.content.decode("utf-8")
    assert raw.startswith("\ufeff")
    table = list(csv.reader(io.StringIO(raw.lstrip("\ufeff")), delimiter=";"))
    assert table[0][1:] == ["station-1 Humedad relativa (%)", "station-1 Temperatura (°C)"]
    assert table[1:] == [
        [table[1][0], "40,0", "21,5"],
        [table[2][0], "", "22,25"],
        [table[3][0], "", "-3,5"],
    ]
    assert table[1][0] == "2026-03-01T09:00:00-05:00"  # the lab's zone (America/Bogota)


def test_raw_readings_are_paged(client: TestClient) -> None:
    _upload(client, "d", [{"channel": "t", "value": i, "ts": 1_772_373_600 + i}
                          for i in range(30)])
    page = client.get("/api/v1/readings", params={"device": "d", "channel": "t",
                                                  "limit": 10, "offset": 25}).json()
    assert [p["value"] for p in page["points"]] == [25.0, 26.0, 27.0, 28.0, 29.0]
    r = client.get("/api/v1/readings", params={"device": "d", "channel": "t",
                                               "limit": 100_000})
    assert r.status_code == 422 and "limit must be between 1 and 1000" in r.json()["detail"]


def test_uploading_the_same_batch_twice_stores_it_once(client: TestClient) -> None:
    batch = [{"channel": "temp", "value": 20.0 + i, "ts": 1_772_373_600 + i} for i in range(10)]
    assert _upload(client, "d", batch)["accepted"] == 10
    assert _upload(client, "d", batch) == {"accepted": 0, "duplicate": 10, "suspect": 0,
                                           "rejected": 0}


@pytest.mark.parametrize(
    ("body", "status", "reason_part"),
    [
        (b"{not json", 400, "not JSON"),
        (b"\xff\xfe\x00", 400, "not JSON"),
        (b"[" * 20_000, 400, "nested too deeply"),  # json's RecursionError, not a 500
        (b"[1, 2]", 422, "body"),
        (b'{"device": "d"}', 422, "readings"),
        (b'{"device": "d", "readings": [{"channel": "t"}]}', 422, "readings.0.value"),
        (b'{"device": "d", "readings": [{"channel": "t", "value": "warm"}]}', 422,
         "readings.0.value"),
        (b'{"device": "d", "readings": [{"channel": "t", "value": 1, "ts": "yesterday"}]}', 422,
         "readings.0.ts"),
        (b'{"device": "d", "readings": [{"channel": "t", "value": 1, '
         b'"ts": "2026-03-01T14:00:00"}]}', 422, "no time zone"),
    ],
)
def test_malformed_bodies_get_problem_json_and_a_dead_letter(
    client: TestClient, body: bytes, status: int, reason_part: str
) -> None:
    r = client.post("/api/v1/readings", content=body,
                    headers={"content-type": "application/json"})
    assert r.status_code == status
    assert r.headers["content-type"] == PROBLEM
    problem = r.json()
    assert problem["status"] == status and reason_part in problem["detail"]
    rejects = _rejects(client)
    assert len(rejects) == 1
    assert reason_part in rejects[0]["reason"]
    assert rejects[0]["source"] == "http"
    assert rejects[0]["payload"] == body.decode("utf-8", "backslashreplace")


def test_a_big_bad_upload_keeps_its_start_its_size_and_its_digest(
    client: TestClient,
) -> None:
    body = b"{" + b"x" * (2 * 2**20)  # 2 MiB that is not JSON
    assert client.post("/api/v1/readings", content=body, headers=JSON).status_code == 400
    [reject] = _rejects(client)
    assert reject["payload"] == body[: 64 * 1024].decode()
    assert reject["payload_bytes"] == len(body) and reject["payload_truncated"] is True
    assert reject["payload_sha256"] == hashlib.sha256(body).hexdigest()


def test_readings_that_cannot_be_stored_are_refused_and_kept(client: TestClient) -> None:
    r = client.post("/api/v1/readings", content=b'{"device": "d", "readings": '
                    b'[{"channel": "temp", "value": NaN, "ts": 1772373600}]}', headers=JSON)
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    assert "none of the 1 readings" in r.json()["detail"]
    assert "not finite" in _rejects(client)[0]["reason"]


def test_device_formats_upload_through_the_same_pipeline(client: TestClient) -> None:
    r = client.post("/api/v1/devices/uno-7/data", params={"format": "plotter"},
                    content=b"temp:21.5,hum:40\ntemp:21.6,hum:41\n")
    assert r.status_code == 200, r.text
    # Two lines without time at the same arrival instant: the second is a duplicate key.
    assert r.json()["accepted"] + r.json()["duplicate"] == 4
    r = client.post("/api/v1/devices/esp-3/data", params={"format": "influx"},
                    content=b"weather temp=20.5,hum=55i 1772373600000000000\n")
    assert r.json()["accepted"] == 2
    r = client.post("/api/v1/devices/esp-4/data", params={"format": "thingsboard"},
                    content=b'{"ts": 1772373600000, "values": {"temperature": 19.5}}')
    assert r.json()["accepted"] == 1
    channels = {(s["device"], s["channel"]) for s in client.get("/api/v1/series").json()}
    assert {("uno-7", "temp"), ("esp-3", "temp"), ("esp-4", "temperature")} <= channels

    r = client.post("/api/v1/devices/uno-7/data", params={"format": "plotter"},
                    content=b"temp:21.5,hum:warm\n")
    assert r.status_code == 400 and r.headers["content-type"] == PROBLEM
    assert "warm" in r.json()["detail"]
    assert _rejects(client)[0]["device"] == "uno-7"
    r = client.post("/api/v1/devices/uno-7/data", params={"format": "morse"}, content=b"x")
    assert r.status_code == 422 and "plotter" in r.json()["detail"]


def test_runs_record_channels_notes_and_export(client: TestClient) -> None:
    _upload(client, "st", [{"channel": "temp", "value": v, "ts": 1_772_373_600 + 60 * i}
                           for i, v in enumerate([20.0, 21.0, 22.0, 23.0])])
    r = client.post("/api/v1/runs", json={
        "title": "Sol y sombra", "group": "7B", "site": "VC-LP-014",
        "channels": [{"device": "st", "channel": "temp"}],
        "started_at": "2026-03-01T14:01:00Z"})
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["running"] and run["channels"] == [{"device": "st", "channel": "temp"}]
    r = client.post(f"/api/v1/runs/{run['id']}/notes",
                    json={"text": "moved the sensor into the shade", "ts": 1_772_373_690})
    assert r.status_code == 201
    client.post(f"/api/v1/runs/{run['id']}/stop")
    r = client.post(f"/api/v1/runs/{run['id']}/stop")
    assert r.status_code == 409 and "already stopped" in r.json()["detail"]
    got = client.get(f"/api/v1/runs/{run['id']}").json()
    assert not got["running"]
    assert [n["text"] for n in got["notes"]] == ["moved the sensor into the shade"]
    assert got["notes"][0]["ts"] == "2026-03-01T14:01:30Z"
    readings = client.get(f"/api/v1/runs/{run['id']}/readings").json()
    assert [p["value"] for p in readings[0]["points"]] == [21.0, 22.0, 23.0]
    csv_text = client.get(f"/api/v1/runs/{run['id']}/export.csv", params={"tz": "UTC"}).text
    assert csv_text.splitlines() == [
        "fecha y hora (UTC),st Temperatura (°C),nota",
        "2026-03-01T14:01:00Z,21.0,",
        "2026-03-01T14:01:30Z,,moved the sensor into the shade",
        "2026-03-01T14:02:00Z,22.0,",
        "2026-03-01T14:03:00Z,23.0,",
    ]
    page = client.get("/api/v1/runs").json()
    assert page["total"] == 1 and page["items"][0]["title"] == "Sol y sombra"
    assert client.get("/api/v1/runs/nope").status_code == 404


def test_unknown_things_are_404_problems(client: TestClient) -> None:
    for path in ("/api/v1/nothing", "/api/v1/readings?device=x&channel=y",
                 "/api/v1/export.csv?device=x"):
        r = client.get(path)
        assert r.status_code == 404, path
        assert r.headers["content-type"] == PROBLEM


def test_health_counters_and_openapi(client: TestClient) -> None:
    health = client.get("/api/v1/health").json()
    assert health["status"] == "ok" and health["database"] == "ok"
    _upload(client, "d", [{"channel": "temp", "value": 200.0, "ts": 1_772_373_600}])
    counters = client.get("/api/v1/counters").json()
    assert counters["accepted"] == 1 and counters["suspect"] == 1 and counters["queued"] == 0
    spec = client.get("/openapi.json").json()
    assert "/api/v1/readings" in spec["paths"]
    body_schema = spec["paths"]["/api/v1/readings"]["post"]["requestBody"]
    ref = body_schema["content"]["application/json"]["schema"]["$ref"]
    body = spec["components"]["schemas"][ref.removeprefix("#/components/schemas/")]
    assert "readings" in body["properties"]


@hsettings(max_examples=60, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(
    st.binary(max_size=200),
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.text(max_size=10) | st.integers(),
        lambda inner: st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["device", "readings", "channel", "value", "ts",
                                           "unit", "site"]), inner, max_size=5),
        max_leaves=12,
    ).map(lambda doc: json.dumps(doc).encode()),
))
def test_no_body_makes_a_500(client: TestClient, body: bytes) -> None:
    for path in ("/api/v1/readings", "/api/v1/devices/d/data?format=jsonl",
                 "/api/v1/devices/d/data?format=thingsboard"):
        r = client.post(path, content=body, headers={"content-type": "application/json"})
        assert r.status_code < 500, (path, body, r.text)
        if r.status_code >= 400:
            assert r.headers["content-type"] == PROBLEM


def test_the_docs_pages_work_offline(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert "swagger-ui-bundle.js" in page.text
    assert "https://" not in page.text, "the docs page must not load anything from the internet"
    script = page.text.split('src="', 1)[1].split('"', 1)[0]
    assert client.get(script).status_code == 200
    assert client.get("/redoc").status_code == 200


# -- a slow database stalls no other request ----------------------------------------------

SERVO_KIT = {"protocol": "firmata", "firmata": {
    "reset_wait_s": 0.3, "sampling_ms": 50, "analog_pins": [], "digital_inputs": [],
    "outputs": {"9": {"kind": "servo", "min_angle": 0, "max_angle": 180, "safe": 90}}}}
LOCKED_S = 5.0  # how long the test holds the database's write lock


class Answer:
    """An HTTP answer from the real server."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status_code = status
        self.headers = headers
        self.text = body.decode()

    def json(self) -> Any:
        return json.loads(self.text)


AUTH: dict[str, str] = {}  # the signed-in admin's token of the served app


def _http(base: str, method: str, path: str, body: object = None) -> Answer:
    """One request over a real socket (a new connection each time)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        base + path, data=data, method=method,
        headers={"content-type": "application/json", **AUTH})
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return Answer(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read())


def _batch(n: int, first_ts: int) -> dict[str, object]:
    return {"device": "station-1", "readings": [
        {"channel": "temp", "value": 20.0, "ts": first_ts + i} for i in range(n)]}


def test_a_locked_database_stalls_neither_the_health_check_nor_a_stop_all(
    sqlite_template: Path, tmp_path: Path
) -> None:
    """One upload waits for a database another program holds locked: the health check and
    a stop_all command still answer at once, and an upload that finds the queue full is
    told to come back instead of being held."""
    path = tmp_path / "labhub.db"
    shutil.copy(sqlite_template, path)
    with VirtualFirmataBoard() as board:
        settings = Settings(database_url=f"sqlite:///{path}", data_dir=tmp_path / "data",
                            serial_scan=False, firmata_ports=[board.url],
                            ingest_queue_max=1000)
        app = create_app(settings)
        AUTH["Authorization"] = f"Bearer {admin_token(settings.resolved_database_url())}"
        with served_app(app) as base:
            wait_for(lambda: len(_http(base, "GET", "/api/v1/devices").json()) == 1, 15,
                     "the kit")
            kit = _http(base, "GET", "/api/v1/devices").json()[0]["id"]
            r = _http(base, "PATCH", f"/api/v1/devices/{kit}", {"settings": SERVO_KIT})
            assert r.status_code == 200, r.text
            stop_all = f"/api/v1/devices/{kit}/commands"
            assert _http(base, "POST", stop_all, {"command": "stop_all"}).status_code == 200
            first = _http(base, "POST", "/api/v1/readings", _batch(1, 1_772_000_000))
            assert first.status_code == 200, first.text
            pipeline = app.state.hub.pipeline

            locker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            locker.execute("BEGIN EXCLUSIVE")
            locked = time.monotonic()
            slow: list[Answer] = []
            uploader = threading.Thread(target=lambda: slow.append(_http(
                base, "POST", "/api/v1/readings", _batch(1000, 1_772_000_100))))
            try:
                uploader.start()
                wait_for(lambda: pipeline.counters()["queued"] >= 1000, 10, "the upload queued")
                # Five of each: the median is the answer time, the slowest shows that
                # none of them waited for the lock (it is held for 5 s).
                health_s: list[float] = []
                stop_s: list[float] = []
                for _ in range(5):
                    started = time.monotonic()
                    health = _http(base, "GET", "/api/v1/health")
                    health_s.append(time.monotonic() - started)
                    assert health.status_code == 200 and health.json()["queued"] >= 1000
                    started = time.monotonic()
                    stopped = _http(base, "POST", stop_all, {"command": "stop_all"})
                    stop_s.append(time.monotonic() - started)
                    assert stopped.status_code == 200, stopped.text
                for what, times in (("the health check", health_s), ("stop_all", stop_s)):
                    assert statistics.median(times) < 0.1, f"{what} took {times} s"
                    assert max(times) < 1.0, f"{what} took {times} s"
                started = time.monotonic()
                full = _http(base, "POST", "/api/v1/readings", _batch(1, 1_772_002_000))
                waited = time.monotonic() - started
                assert full.status_code == 503, full.text
                assert full.headers["content-type"] == PROBLEM
                assert full.headers["retry-after"] == "2"
                assert "queue full" in full.json()["detail"]
                assert waited < LOCKED_S, f"a full queue held the upload {waited:.1f} s"
                time.sleep(max(0.0, LOCKED_S - (time.monotonic() - locked)))
                assert uploader.is_alive() and not slow, "the upload did not wait for the lock"
            finally:
                locker.execute("ROLLBACK")
                locker.close()
                uploader.join(60)
            assert slow[0].status_code == 200, slow[0].text
            assert slow[0].json()["accepted"] == 1000


# -- devices through the hub --------------------------------------------------------------


def test_commands_to_devices_that_are_unknown_or_gone_are_never_a_500(
    settings: Settings,
) -> None:
    with VirtualFirmataBoard() as board:
        settings.serial_scan = False
        settings.firmata_ports = [board.url]
        with as_admin(TestClient(create_app(settings))) as client:
            assert client.post("/api/v1/devices/ghost/commands",
                               json={"command": "stop_all"}).status_code == 404
            ghost = client.get("/api/v1/devices/ghost/outputs")
            assert ghost.status_code == 404 and ghost.headers["content-type"] == PROBLEM
            assert client.patch("/api/v1/devices/ghost", json={"name": "x"}).status_code == 404
            wait_for(lambda: len(client.get("/api/v1/devices").json()) == 1, 15, "the kit")
            kit = client.get("/api/v1/devices").json()[0]["id"]
            blank = client.patch(f"/api/v1/devices/{kit}", json={"name": "  "})
            assert blank.status_code == 422 and "name" in blank.json()["detail"]
            assert client.patch(f"/api/v1/devices/{kit}",
                                json={"settings": SERVO_KIT}).status_code == 200

            # The board goes away between the command and its answer.
            hub = client.app.state.hub  # type: ignore[attr-defined]
            sup = hub.supervisor
            real = sup.command

            def command_then_gone(*args: Any, **kw: Any) -> Any:
                done = real(*args, **kw)
                sup.reconfigure(kit)  # its reader stopped and dropped
                return done

            sup.command = command_then_gone
            r = client.post(f"/api/v1/devices/{kit}/commands",
                            json={"command": "servo", "pin": 9, "value": 30})
            assert r.status_code == 200, r.text
            assert r.json()["outputs"] == {"9": 30.0}
            del sup.command

            # A command while the board is reopened, with a wait shorter than its reset
            # (0.3 s after the port opens): one 409 that says when to try again.
            sup.command_wait_s = 0.2
            assert client.patch(f"/api/v1/devices/{kit}",
                                json={"settings": SERVO_KIT}).status_code == 200
            busy = client.post(f"/api/v1/devices/{kit}/commands", json={"command": "stop_all"})
            assert busy.status_code == 409, busy.text
            assert busy.headers["retry-after"] == "2"
            assert busy.headers["content-type"] == PROBLEM
            assert "try again" in busy.json()["detail"]


# --- the lab's own time ------------------------------------------------------------------

# A change of each region zone's clocks (UTC seconds) since 2000 (the hub refuses older
# readings; test_export.py covers Lima's and Bogota's DST of the 1990s): Guatemala's DST
# ending (2006), Mexico City's starting in its last year (2022), Sao Paulo's historical DST
# starting at local midnight (2018) and Santiago's ending (2025); Lima and Bogota, which
# have kept -05:00 since, at a time of this year.
REGION_CHANGES = {
    "America/Lima": 1772373600,
    "America/Bogota": 1772373600,
    "America/Guatemala": 1159678800,
    "America/Mexico_City": 1648972800,
    "America/Sao_Paulo": 1541300400,
    "America/Santiago": 1743908400,
}


@pytest.mark.parametrize("zone", REGION_CHANGES)
def test_exports_are_in_the_labs_zone_across_its_clock_change(
    database_url: str, tmp_path: Path, zone: str
) -> None:
    change = REGION_CHANGES[zone]
    stamps = [change - 1, change, change + 1800]
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url, timezone=zone)
    with as_admin(TestClient(create_app(settings))) as client:
        # Arrival-like times with microseconds, a second apart: written to the second.
        _upload(client, "st", [{"channel": "temp", "value": 20.0 + i, "ts": t + 0.123456}
                               for i, t in enumerate(stamps)])
        expected = [datetime.fromtimestamp(t, ZoneInfo(zone)).isoformat() for t in stamps]
        for params in ({}, {"tz": "local"}, {"tz": zone}):
            table = list(csv.reader(io.StringIO(
                client.get("/api/v1/export.csv", params=params).text)))
            assert table[0][0] == f"fecha y hora ({zone})", params
            assert [row[0] for row in table[1:]] == expected, params
        document = client.get("/api/v1/export.json").json()
        assert [row[0] for row in document["rows"]] == expected
        utc = list(csv.reader(io.StringIO(
            client.get("/api/v1/export.csv", params={"tz": "UTC"}).text)))
        assert [row[0] for row in utc[1:]] == [format_time(t * 1_000_000) for t in stamps]
        bad = client.get("/api/v1/export.csv", params={"tz": "Mars/Olympus"})
        assert bad.status_code == 422 and "Mars/Olympus" in bad.json()["detail"]


def test_literal_times_in_santiago_and_mexico_city() -> None:
    """The oracle of the test above, checked by hand for two zones."""
    assert datetime.fromtimestamp(1743908400 - 1, ZoneInfo("America/Santiago")).isoformat() \
        == "2025-04-05T23:59:59-03:00"
    assert datetime.fromtimestamp(1743908400, ZoneInfo("America/Santiago")).isoformat() \
        == "2025-04-05T23:00:00-04:00"
    assert datetime.fromtimestamp(1648972800, ZoneInfo("America/Mexico_City")).isoformat() \
        == "2022-04-03T03:00:00-05:00"


def test_fast_readings_keep_milliseconds_and_precision_can_be_chosen(
    client: TestClient,
) -> None:
    t0 = parse_time("2026-03-01T14:00:00Z") // 1_000_000
    _upload(client, "fast", [{"channel": "x", "value": float(i), "ts": t0 + i / 10 + 0.000321}
                             for i in range(3)])
    table = list(csv.reader(io.StringIO(
        client.get("/api/v1/export.csv", params={"tz": "UTC"}).text)))
    assert [row[0] for row in table[1:]] == [
        "2026-03-01T14:00:00Z", "2026-03-01T14:00:00.100Z", "2026-03-01T14:00:00.200Z"]
    table = list(csv.reader(io.StringIO(client.get(
        "/api/v1/export.csv", params={"tz": "UTC", "precision": "us"}).text)))
    assert table[1][0] == "2026-03-01T14:00:00.000321Z"
    assert client.get("/api/v1/export.csv", params={"precision": "ns"}).status_code == 422


def test_relative_times_in_queries(client: TestClient) -> None:
    now = now_us() // 1_000_000
    _upload(client, "rel", [{"channel": "t", "value": float(age), "ts": now - age * 60}
                            for age in (150, 45, 5)])
    points = client.get("/api/v1/readings", params={
        "device": "rel", "channel": "t", "start": "-1h"}).json()["points"]
    assert [p["value"] for p in points] == [45.0, 5.0]
    points = client.get("/api/v1/readings", params={
        "device": "rel", "channel": "t", "start": "-3h", "end": "-30m"}).json()["points"]
    assert [p["value"] for p in points] == [150.0, 45.0]
    points = client.get("/api/v1/readings", params={
        "device": "rel", "channel": "t", "start": "now-10min", "end": "now"}).json()["points"]
    assert [p["value"] for p in points] == [5.0]
    table = list(csv.reader(io.StringIO(client.get(
        "/api/v1/export.csv", params={"start": "-1w", "end": "-2h"}).text)))
    assert [row[1] for row in table[1:]] == ["150.0"]
    r = client.get("/api/v1/readings", params={"device": "rel", "channel": "t",
                                               "start": "-1y"})
    assert r.status_code == 422 and "-30m, -1h, -2d or -1w" in r.json()["detail"]


def test_a_run_export_puts_two_pins_on_shared_rows_with_their_notes(
    client: TestClient,
) -> None:
    t0 = parse_time("2026-03-01T14:00:00Z") // 1_000_000
    # Two analog pins sampled every 100 ms, A1's report arriving 0.3 ms after A0's.
    readings = []
    for i in range(3):
        readings.append({"channel": "A0", "value": 512.0 + i, "ts": t0 + i / 10 + 0.0004})
        readings.append({"channel": "A1", "value": 300.0 + i, "ts": t0 + i / 10 + 0.0007})
    _upload(client, "robot", readings)
    run = client.post("/api/v1/runs", json={
        "title": "Brazo", "channels": [{"device": "robot", "channel": "*"}],
        "started_at": t0}).json()
    for ts, text in ((t0 + 0.1, "=arm up"), (t0 + 0.15, "luz, apagada")):
        r = client.post(f"/api/v1/runs/{run['id']}/notes", json={"text": text, "ts": ts})
        assert r.status_code == 201, r.text
    client.post(f"/api/v1/runs/{run['id']}/stop", json={})
    for lang, unit, note in (("es", "cuentas", "nota"), ("pt", "contagens", "nota"),
                             ("en", "counts", "note")):
        text = client.get(f"/api/v1/runs/{run['id']}/export.csv",
                          params={"tz": "UTC", "lang": lang}).text
        header = text.splitlines()[0].split(",")
        assert header[1:] == [f"robot A0 {_analog(lang)} ({unit})",
                              f"robot A1 {_analog(lang)} ({unit})", note]
    table = list(csv.reader(io.StringIO(client.get(
        f"/api/v1/runs/{run['id']}/export.csv", params={"tz": "UTC"}).text)))
    assert table[1:] == [
        ["2026-03-01T14:00:00Z", "512.0", "300.0", ""],
        ["2026-03-01T14:00:00.100Z", "513.0", "301.0", "'=arm up"],
        ["2026-03-01T14:00:00.150Z", "", "", "luz, apagada"],
        ["2026-03-01T14:00:00.200Z", "514.0", "302.0", ""],
    ]


def _analog(lang: str) -> str:
    return {"es": "Lectura analógica", "pt": "Leitura analógica", "en": "Analog reading"}[lang]
