"""A reading keeps its lab: readings naming a site that is not a site of the inventory's
tree (an HTTP upload's field or query, an MQTT topic's site level) are not stored as a
series there; they are kept whole as dead letters and replayed once the site exists.
On SQLite and PostgreSQL, with a real Mosquitto for the MQTT path."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from mqtt_broker import MosquittoBroker, broker_fixture  # noqa: F401 -- the broker fixture
from signed_in import as_admin
from sqlalchemy import Engine, delete, select
from test_mqtt import Publisher
from typer.testing import CliRunner
from waiting import wait_for

from inventory.tables import sites as sites_table
from labhub import db
from labhub.app import create_app
from labhub.cli import app as cli_app
from labhub.settings import Settings
from labhub.wiring import SiteCodes
from sensors.storage import DEAD_LETTER_PAYLOAD_MAX, dead_letters, series

V1 = "/api/v1"
PROBLEM = "application/problem+json"
TS = "2026-03-01T14:00:00Z"


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with as_admin(TestClient(create_app(settings))) as c:
        yield c


def _add_site(client: TestClient, code: str) -> None:
    for doc in ({"code": "RED", "name": "Red de labs", "kind": "network"},
                {"code": "RED-R1", "name": "Región 1", "kind": "region", "parent": "RED"},
                {"code": code, "name": f"Lab {code}", "kind": "site", "parent": "RED-R1",
                 "tier": "lab_point"}):
        r = client.post(f"{V1}/sites", json=doc)
        assert r.status_code in (201, 409), r.text
    assert client.get(f"{V1}/sites/{code}").status_code == 200


def _series(client: TestClient, device: str) -> list[dict[str, Any]]:
    return client.get(f"{V1}/series", params={"device": device}).json()  # type: ignore[no-any-return]


def _rejects(client: TestClient) -> list[dict[str, Any]]:
    return client.get(f"{V1}/rejects", params={"with_payload": "true"}).json()["items"]  # type: ignore[no-any-return]


def _upload(site: str | None, device: str = "station-1",
            readings: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"device": device, "site": site,
            "readings": readings or [{"channel": "temp", "value": 21.5, "ts": TS},
                                     {"channel": "hum", "value": 40}]}


def test_an_upload_naming_an_unknown_site_is_a_422_and_a_dead_letter_not_a_series(
    client: TestClient,
) -> None:
    r = client.post(f"{V1}/readings", json=_upload("NOPE-SITE"))
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    problem = r.json()
    assert problem["title"] == "Not a site of this hub's inventory"
    assert "site 'NOPE-SITE' is not a site of this hub's inventory" in problem["detail"]
    assert "labhub rejects replay --site NOPE-SITE" in problem["detail"]
    assert [e["where"] for e in problem["errors"]] == ["body.site"]
    assert _series(client, "station-1") == []
    [letter] = _rejects(client)
    assert (letter["source"], letter["device"], letter["kind"], letter["site"]) == (
        "http", "station-1", "unknown_site", "NOPE-SITE")
    assert "add it (POST /api/v1/sites" in letter["reason"]
    assert "the upload's body.site" in letter["reason"]
    assert json.loads(letter["payload"]) == _upload("NOPE-SITE")  # the body whole
    assert letter["replayed_at"] is None

    # A device's own wire format, with the site in the query: the same, naming the query.
    r = client.post(f"{V1}/devices/uno-7/data", params={"format": "plotter", "site": "NOPE-2"},
                    content=b"temp:21.5\n")
    assert r.status_code == 422
    assert [e["where"] for e in r.json()["errors"]] == ["query.site"]
    assert _series(client, "uno-7") == []
    newest = _rejects(client)[0]
    assert (newest["device"], newest["site"], newest["kind"]) == ("uno-7", "NOPE-2",
                                                                  "unknown_site")


def test_readings_with_no_site_keep_todays_way(client: TestClient) -> None:
    r = client.post(f"{V1}/readings", json=_upload(None))
    assert r.status_code == 200, r.text
    assert {(s["channel"], s["site"]) for s in _series(client, "station-1")} == {
        ("temp", None), ("hum", None)}
    assert _rejects(client) == []


def test_a_site_created_through_the_api_is_accepted_on_the_very_next_upload(
    client: TestClient,
) -> None:
    assert client.post(f"{V1}/readings", json=_upload("VC-LP-014")).status_code == 422
    _add_site(client, "VC-LP-014")
    r = client.post(f"{V1}/readings", json=_upload("VC-LP-014"))
    assert r.status_code == 200, r.text
    assert {(s["channel"], s["site"]) for s in _series(client, "station-1")} == {
        ("temp", "VC-LP-014"), ("hum", "VC-LP-014")}


def test_refused_uploads_are_replayed_once_their_site_exists(client: TestClient) -> None:
    json_upload = _upload("VC-LP-020")
    assert client.post(f"{V1}/readings", json=json_upload).status_code == 422
    assert client.post(f"{V1}/devices/uno-7/data", params={"format": "plotter",
                                                            "site": "VC-LP-020"},
                       content=b"temp:21.5,hum:40\n").status_code == 422
    assert client.post(f"{V1}/readings", json=_upload("ELSEWHERE", device="other")
                       ).status_code == 422

    # Before the site exists, a replay stores nothing and keeps them.
    early = client.post(f"{V1}/rejects/replay", json={"site": "VC-LP-020"}).json()
    assert (early["stored"], early["still_refused"]) == (0, 2)
    assert "is not a site of this hub's inventory" in early["items"][0]["detail"]

    _add_site(client, "VC-LP-020")
    done = client.post(f"{V1}/rejects/replay", json={"site": "VC-LP-020"})
    assert done.status_code == 200, done.text
    body = done.json()
    assert (body["stored"], body["still_refused"], body["not_replayable"]) == (2, 0, 0)
    assert [(i["source"], i["outcome"], i["accepted"]) for i in body["items"]] == [
        ("http", "stored", 2), ("http", "stored", 2)]
    assert {(s["channel"], s["site"]) for s in _series(client, "station-1")} == {
        ("temp", "VC-LP-020"), ("hum", "VC-LP-020")}
    assert {(s["channel"], s["latest_value"], s["site"]) for s in _series(client, "uno-7")} == {
        ("temp", 21.5, "VC-LP-020"), ("hum", 40.0, "VC-LP-020")}
    letters = {(d["device"], d["site"]): d for d in _rejects(client)}
    assert letters[("station-1", "VC-LP-020")]["replayed_at"] is not None
    assert letters[("uno-7", "VC-LP-020")]["replayed_at"] is not None
    assert letters[("other", "ELSEWHERE")]["replayed_at"] is None

    # Marked: a second replay finds nothing to do; the other site's letter is still kept.
    again = client.post(f"{V1}/rejects/replay", json={}).json()
    assert (again["stored"], again["still_refused"]) == (0, 1)
    readings = client.get(f"{V1}/readings", params={"device": "uno-7", "channel": "temp"})
    assert len(readings.json()["points"]) == 1


def test_a_replay_of_readings_sent_again_meanwhile_stores_them_once(
    client: TestClient,
) -> None:
    upload = _upload("VC-LP-030", readings=[{"channel": "temp", "value": 20 + i,
                                             "ts": f"2026-03-01T14:0{i}:00Z"}
                                            for i in range(5)])
    assert client.post(f"{V1}/readings", json=upload).status_code == 422
    _add_site(client, "VC-LP-030")
    assert client.post(f"{V1}/readings", json=upload).json()["accepted"] == 5
    [item] = client.post(f"{V1}/rejects/replay", json={"source": "http"}).json()["items"]
    assert (item["outcome"], item["accepted"], item["duplicate"]) == ("stored", 0, 5)


def test_a_dead_letter_not_kept_whole_is_refused_for_replay_with_a_clear_message(
    client: TestClient,
) -> None:
    many = [{"channel": "temp", "value": 20.0, "ts": 1772373600 + i} for i in range(2000)]
    upload = _upload("VC-LP-040", readings=many)
    assert len(json.dumps(upload)) > DEAD_LETTER_PAYLOAD_MAX
    assert client.post(f"{V1}/readings", json=upload).status_code == 422
    [letter] = client.get(f"{V1}/rejects").json()["items"]
    assert letter["payload_truncated"] is True
    _add_site(client, "VC-LP-040")
    body = client.post(f"{V1}/rejects/replay", json={"site": "VC-LP-040"}).json()
    [item] = body["items"]
    assert (body["not_replayable"], item["outcome"]) == (1, "not_replayable")
    assert "kept only the first 65,536 of its" in item["detail"]
    assert "cannot be replayed; send the readings again from the device" in item["detail"]
    assert _series(client, "station-1") == []


def test_replay_takes_only_known_kinds_and_sources(client: TestClient) -> None:
    r = client.post(f"{V1}/rejects/replay", json={"kind": "bad_json"})
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    r = client.post(f"{V1}/rejects/replay", json={"source": "serial"})
    assert r.status_code == 422


def test_site_codes_keep_found_sites_and_ask_again_for_unknown_ones(engine: Engine) -> None:
    db.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(sites_table.insert().values(code="VL-1", name="Lab 1", kind="network"))
    kept = SiteCodes(engine)
    fresh = SiteCodes(engine, ttl_s=0)
    assert kept.known("VL-1") and fresh.known("VL-1")
    assert not kept.known("VL-2")
    with engine.begin() as conn:
        conn.execute(delete(sites_table).where(sites_table.c.code == "VL-1"))
    assert kept.known("VL-1")  # found a moment ago: trusted for its time to live
    assert not fresh.known("VL-1")
    kept.forget()
    assert not kept.known("VL-1")


# -- MQTT, through a real broker ------------------------------------------------------------


def _mqtt_settings(broker: MosquittoBroker, database_url: str, tmp_path: Path) -> Settings:
    return Settings.model_validate({
        "database_url": database_url, "data_dir": str(tmp_path / "data"),
        "serial_scan": False,
        "mqtt": {"host": broker.host, "port": broker.port, "client_id": "hub-sites"},
    })


def test_an_mqtt_topic_naming_an_unknown_site_is_a_dead_letter_until_replayed(
    broker: MosquittoBroker, database_url: str, tmp_path: Path,
) -> None:
    settings = _mqtt_settings(broker, database_url, tmp_path)
    with as_admin(TestClient(create_app(settings))) as client:
        hub = client.app.state.hub  # type: ignore[attr-defined]
        wait_for(lambda: hub.mqtt.status.subscribed, timeout=15,
                 what="the hub subscribed to the node topics")
        _add_site(client, "VC-LP-014")
        node = Publisher(broker, client_id="esp32-nodes")
        try:
            node.publish("labhub/NOPE-SITE/esp32-lost/telemetry",
                         '{"ts": 1772373600000, "values": {"temperature": 19.5}}')
            node.publish("labhub/VC-LP-014/esp32-patio/telemetry",
                         '{"ts": 1772373600000, "values": {"temperature": 23.5}}')
            node.publish("labhub/NOPE-SITE/esp32-lost/humidity", "61")  # no time of its own
            node.wait_all()
        finally:
            node.client.loop_stop()
            node.client.disconnect()
        wait_for(lambda: len(_series(client, "esp32-patio")) == 1
                 and len(_rejects(client)) == 2, timeout=15,
                 what="the known site's reading stored and two dead letters")
        [stored] = _series(client, "esp32-patio")
        assert (stored["channel"], stored["latest_value"], stored["site"]) == (
            "temperature", 23.5, "VC-LP-014")
        assert _series(client, "esp32-lost") == []
        letters = _rejects(client)
        assert {(d["source"], d["device"], d["topic"], d["kind"], d["site"]) for d in letters} == {
            ("mqtt", "esp32-lost", "labhub/NOPE-SITE/esp32-lost/telemetry", "unknown_site",
             "NOPE-SITE"),
            ("mqtt", "esp32-lost", "labhub/NOPE-SITE/esp32-lost/humidity", "unknown_site",
             "NOPE-SITE")}
        assert all("site 'NOPE-SITE' is not a site of this hub's inventory" in d["reason"]
                   and "fix the node's topic" in d["reason"] for d in letters)
        devices = {d["id"]: d for d in client.get(f"{V1}/devices").json()}
        assert devices["esp32-lost"]["site"] is None  # registered, but at no unknown site
        assert devices["esp32-patio"]["site"] == "VC-LP-014"
        acked = hub.mqtt.status.stats.acked
        assert acked >= 3  # the refused messages are acknowledged: their dead letters hold them

        _add_site(client, "NOPE-SITE")
        body = client.post(f"{V1}/rejects/replay", json={"source": "mqtt"}).json()
        assert (body["stored"], body["still_refused"], body["not_replayable"]) == (2, 0, 0)
        lost = {s["channel"]: s for s in _series(client, "esp32-lost")}
        assert (lost["temperature"]["latest_value"], lost["temperature"]["site"]) == (
            19.5, "NOPE-SITE")
        assert lost["humidity"]["latest_value"] == 61.0
        # The untimed reading took its message's arrival time, so replaying it again
        # (its mark cleared by hand) stores nothing twice.
        with hub.engine.begin() as conn:
            conn.execute(dead_letters.update().values(replayed_at=None))
        again = client.post(f"{V1}/rejects/replay", json={"site": "NOPE-SITE"}).json()
        assert [(i["accepted"], i["duplicate"]) for i in again["items"]] == [(0, 1), (0, 1)]


def test_the_unassigned_topic_level_names_no_site(
    broker: MosquittoBroker, database_url: str, tmp_path: Path,
) -> None:
    """``unassigned`` is the hub's own site level for a device at no site: a node
    publishing there is stored as today, at no site, not refused."""
    settings = _mqtt_settings(broker, database_url, tmp_path)
    with as_admin(TestClient(create_app(settings))) as client:
        hub = client.app.state.hub  # type: ignore[attr-defined]
        wait_for(lambda: hub.mqtt.status.subscribed, timeout=15,
                 what="the hub subscribed to the node topics")
        node = Publisher(broker, client_id="esp32-new")
        try:
            node.publish("labhub/unassigned/esp32-new/telemetry",
                         '{"ts": 1772373600000, "values": {"temperature": 22.0}}')
            node.wait_all()
        finally:
            node.client.loop_stop()
            node.client.disconnect()
        wait_for(lambda: len(_series(client, "esp32-new")) == 1, timeout=15,
                 what="the node's reading stored")
        assert _series(client, "esp32-new")[0]["site"] is None
        assert _rejects(client) == []


# -- the command line ---------------------------------------------------------------------


def test_labhub_rejects_replay_on_the_command_line(
    client: TestClient, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert client.post(f"{V1}/readings", json=_upload("VC-LP-050")).status_code == 422
    monkeypatch.setenv("LABHUB_DATABASE_URL", database_url)
    monkeypatch.setenv("LABHUB_DATA_DIR", str(tmp_path / "cli-data"))
    runner = CliRunner()
    early = runner.invoke(cli_app, ["rejects", "replay", "--site", "VC-LP-050"])
    assert early.exit_code == 1, early.output
    assert "0 replayed, 1 still naming a site the inventory lacks" in early.output
    _add_site(client, "VC-LP-050")
    done = runner.invoke(cli_app, ["rejects", "replay", "--site", "VC-LP-050"])
    assert done.exit_code == 0, done.output
    assert "stored: 2 readings stored, 0 already stored" in done.output
    assert "1 replayed, 0 still naming" in done.output
    listed = runner.invoke(cli_app, ["rejects", "--limit", "5"])
    assert listed.exit_code == 0 and "replayed 20" in listed.output
    engine = db.make_engine(database_url)
    try:
        with engine.connect() as conn:
            sites = {r.site for r in conn.execute(select(series.c.site))}
    finally:
        engine.dispose()
    assert sites == {"VC-LP-050"}
