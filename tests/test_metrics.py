"""``GET /metrics``: Prometheus's text format, behind ``metrics.read`` (a token made with
only that permission scrapes it and nothing else), with figures that follow what the hub
did: readings by source, the queue and commit durations, devices online, jobs, the sync
backlog, MQTT acknowledgements and the outbox (with a real Mosquitto)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from mqtt_broker import MosquittoBroker, broker_fixture  # noqa: F401 -- the broker fixture
from prometheus_client.parser import text_string_to_metric_families
from signed_in import admin_token, person_token
from test_mqtt import Publisher
from waiting import wait_for

from firmware_bridge import registry
from labhub import __version__, db
from labhub.access import accounts
from labhub.access.permissions import Grant, P, Role
from labhub.app import create_app
from labhub.metrics import CONTENT_TYPE, sample_values
from labhub.scheduler import runs
from labhub.settings import Settings
from sensors.pipeline import IngestPipeline
from sensors.samples import Sample
from sensors.storage import ReadingStore


def _scraper_token(database_url: str) -> str:
    """What docs/operations.md tells an admin to make for Prometheus: an account that
    cannot sign in, and a token carrying metrics.read only."""
    engine = db.make_engine(database_url)
    try:
        with engine.begin() as conn:
            user = accounts.create_user(conn, name="prometheus", password_hash=None,
                                        grants_given=[Grant(Role.ADMIN, "*")])
            wanted = accounts.token_permissions(accounts.check_permissions(["metrics.read"]),
                                                accounts.permissions_of(user.grants))
            _, token = accounts.create_api_token(conn, user_id=user.id, name="prometheus",
                                                 permissions=wanted)
    finally:
        engine.dispose()
    return token


def _scrape(client: TestClient, token: str) -> dict[str, float]:
    r = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == CONTENT_TYPE
    list(text_string_to_metric_families(r.text))  # Prometheus's own parser reads it
    return dict(sample_values(r.text))


def _record_runs(engine: Any, job_id: str, *, ok: int, failed: int) -> None:
    """Runs of a job as the scheduler records them (its ``job_runs`` table)."""
    due = runs.now_us()  # runs older than the table keeps (90 days) are pruned on the way
    for n in range(ok + failed):
        run_id = runs.claim(engine, job_id=job_id, scheduled_for=due - n, attempt=1,
                            kind="schedule", holder="test")
        assert run_id is not None
        runs.finish(engine, run_id, outcome="failed" if n < failed else "ok",
                    result="boom" if n < failed else "done")


def test_metrics_follow_the_hub_behind_metrics_read(database_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url,
                        serial_scan=False, jobs_enabled=False)
    with TestClient(create_app(settings)) as client:
        hub = client.app.state.hub  # type: ignore[attr-defined]
        scraper = _scraper_token(database_url)
        admin = {"Authorization": f"Bearer {admin_token(database_url)}"}
        teacher = person_token(database_url, "ana", Grant(Role.TEACHER, "LAB-A"))

        # Who may scrape: nobody signed in is a 401, a teacher a 403 naming metrics.read.
        nobody = client.get("/metrics")
        assert nobody.status_code == 401
        assert nobody.headers["content-type"] == "application/problem+json"
        refused = client.get("/metrics", headers={"Authorization": f"Bearer {teacher}"})
        assert refused.status_code == 403 and P.METRICS_READ.value in refused.json()["detail"]
        # The scraper's token reads /metrics and nothing else.
        assert client.get("/api/v1/counters", headers={
            "Authorization": f"Bearer {scraper}"}).status_code == 403
        # An API path: its errors are problem+json, a 405 names the method it takes.
        wrong = client.post("/metrics", headers={"Authorization": f"Bearer {scraper}"})
        assert wrong.status_code == 405 and wrong.headers["allow"] == "GET"
        assert wrong.headers["content-type"] == "application/problem+json"
        before = _scrape(client, scraper)
        assert before[f'labhub_info{{role="hub",version="{__version__}"}}'] == 1
        assert before["labhub_ingest_queue_depth"] == 0
        assert before["labhub_ingest_queue_capacity"] == settings.ingest_queue_max
        assert not any(k.startswith("labhub_mqtt_") for k in before)  # MQTT is off
        assert not any(k.startswith("labhub_job_") for k in before)  # no job ran yet

        # Readings over HTTP: two stored, one refused (a time before 2000).
        r = client.post("/api/v1/readings", headers=admin, json={"device": "kit-a", "readings": [
            {"channel": "temp", "value": 21.5}, {"channel": "hum", "value": 60},
            {"channel": "temp", "value": 22, "ts": 5}]})
        assert r.json() == {"accepted": 2, "duplicate": 0, "suspect": 0, "rejected": 1}
        with hub.engine.begin() as conn:
            registry.record_seen(conn=conn, device_id="esp32-patio", kind="mqtt")
            registry.record_seen(conn=conn, device_id="esp32-aula", kind="mqtt")
            registry.update_status(conn=conn, device_id="esp32-aula", online=False,
                                   status="silent")
        _record_runs(hub.engine, "backup", ok=2, failed=1)
        _record_runs(hub.engine, "rollups", ok=12, failed=0)
        after = _scrape(client, scraper)
        assert after['labhub_readings_accepted_total{source="http"}'] == 2
        assert after['labhub_readings_rejected_total{source="http"}'] == 1
        assert after['labhub_readings_duplicate_total{source="http"}'] == 0
        # The histogram holds the readings' batch.
        assert after["labhub_ingest_commit_seconds_count"] >= 1
        assert after["labhub_ingest_commit_seconds_sum"] > 0
        assert after['labhub_ingest_commit_seconds_bucket{le="+Inf"}'] == after[
            "labhub_ingest_commit_seconds_count"]
        assert after['labhub_devices_online{kind="mqtt"}'] == 1
        assert after['labhub_devices{kind="mqtt"}'] == 2
        assert after['labhub_job_runs_total{job="backup"}'] == 3
        assert after['labhub_job_failures_total{job="backup"}'] == 1
        assert after['labhub_job_runs_total{job="rollups"}'] == 12
        assert after['labhub_job_failures_total{job="rollups"}'] == 0
        # Not yet sent to a central: the two readings (and the new devices) wait.
        assert after['labhub_sync_backlog{stream="readings"}'] == 2
        assert after["labhub_sync_member"] == 0
        assert after["labhub_data_disk_free_bytes"] > 0


def test_the_pipeline_counts_by_source_and_tells_each_commit(database_url: str) -> None:
    engine = db.make_engine(database_url)
    took: list[float] = []
    try:
        with IngestPipeline(ReadingStore(engine), flush_interval_s=0.01,
                            commit_observer=took.append) as pipeline:
            now = int(time.time() * 1_000_000)
            pipeline.submit([Sample("t", 1.0, now), Sample("t", 2.0, now + 1)],
                            device="kit-a", source="serial").wait(10)
            pipeline.submit([Sample("t", 1.0, now)], device="kit-a", source="serial").wait(10)
            pipeline.submit([Sample("t", float("nan"), now)], device="node",
                            source="mqtt").wait(10)
            pipeline.reject(source="mqtt", payload=b"\xff", reason="not JSON").wait(10)
            pipeline.flush(10)
            assert pipeline.counters_by_source() == {
                "serial": {"accepted": 2, "duplicate": 1, "rejected": 0, "failed": 0},
                "mqtt": {"accepted": 0, "duplicate": 0, "rejected": 2, "failed": 0},
            }
            assert len(took) == pipeline.counters()["batches"]  # one each, empty flushes too
            assert all(0 <= t < 10 for t in took)
    finally:
        engine.dispose()


@pytest.mark.timeout(60)
def test_mqtt_acknowledgements_and_the_outbox_show(broker: MosquittoBroker,
                                                   tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/labhub.db"
    settings = Settings.model_validate({
        "database_url": url, "data_dir": str(tmp_path / "data"), "serial_scan": False,
        "jobs_enabled": False,
        "mqtt": {"host": broker.host, "port": broker.port, "client_id": "hub-metrics"},
    })
    with TestClient(create_app(settings)) as client:
        hub = client.app.state.hub  # type: ignore[attr-defined]
        token = admin_token(url)
        wait_for(lambda: hub.mqtt.status.subscribed, 15, "the hub's subscription")
        assert _scrape(client, token)["labhub_mqtt_connected"] == 1
        node = Publisher(broker, client_id="esp32-patio")
        try:
            for n in range(3):
                node.publish("labhub/unassigned/esp32-patio/telemetry",
                             f'{{"temperature": {20 + n}}}')
            node.wait_all()
        finally:
            node.client.loop_stop()
            node.client.disconnect()
        wait_for(lambda: _scrape(client, token).get("labhub_mqtt_acks_total", 0) >= 3, 15,
                 "three acknowledgements", lambda: hub.mqtt.status.stats)
        seen = _scrape(client, token)
        assert seen["labhub_mqtt_received_total"] >= 3
        assert seen['labhub_readings_accepted_total{source="mqtt"}'] == 3
        assert seen["labhub_mqtt_outbox_queued"] >= 0
        assert "labhub_mqtt_outbox_delivered_total" in seen
        assert seen['labhub_devices_online{kind="mqtt"}'] == 1


def test_a_closed_hubs_metrics_do_not_keep_it_alive(tmp_path: Path) -> None:
    """Many apps live in one process (the tests, a reload): each hub's registry goes with
    its hub."""
    import gc
    import weakref

    url = f"sqlite:///{tmp_path}/labhub.db"
    app = create_app(Settings(data_dir=tmp_path / "data", database_url=url,
                              serial_scan=False, jobs_enabled=False))
    with TestClient(app) as client:
        token = admin_token(url)
        assert "labhub_info" in _scrape(client, token).__repr__()
        hub = weakref.ref(app.state.hub)
    del app.state.hub, client, app
    gc.collect()
    assert hub() is None


def test_commits_before_the_first_scrape_are_counted(database_url: str, tmp_path: Path) -> None:
    """The commit-duration histogram is made as the app starts: a hub scraped for the
    first time an hour after it started shows that hour's commits."""
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url,
                        serial_scan=False, jobs_enabled=False)
    with TestClient(create_app(settings)) as client:
        admin = {"Authorization": f"Bearer {admin_token(database_url)}"}
        r = client.post("/api/v1/readings", headers=admin, json={
            "device": "kit-a", "readings": [{"channel": "temp", "value": 21.5}]})
        assert r.json()["accepted"] == 1
        first = _scrape(client, _scraper_token(database_url))
        assert first["labhub_ingest_commit_seconds_count"] >= 1
