"""The hub's sync client against a stand-in of the central's protocol on a real socket
(tests/network_standin.py): join, a contact up and down, cuts and 409s in an upload, a
central whose positions went back, failures and backoff, throttling measured, a proxy,
and the sync thread. The streams are small ones of the test's own (the ``up`` / ``down``
seam of :func:`labhub.network.client.contact`); the hub's database is a real SQLite file.
"""

from __future__ import annotations

import base64
import os
import random
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from network_standin import StandIn, connect_proxy, running
from sqlalchemy import Connection, Engine
from waiting import wait_for

from labhub import db
from labhub.network import client, membership
from labhub.network import protocol as p
from labhub.network.client_http import (
    CutError,
    NetworkError,
    RefusedError,
    TokenBucket,
    Transport,
    chunk_size,
)
from labhub.settings import Settings
from labhub.wiring import Hub

SITE = "LAB-A"


class ListStream:
    """An up stream over a list of records ``{"seq": n, "text": ...}``; position [seq]."""

    def __init__(self, name: str, records: list[dict[str, Any]]) -> None:
        self.name = name
        self.records = records

    def _after(self, after: p.Position) -> list[dict[str, Any]]:
        start = after[0] if after else 0
        return [r for r in self.records if r["seq"] > start]

    def collect(self, conn: Connection, after: p.Position, budget_bytes: int
                ) -> p.Section | None:
        items: list[dict[str, Any]] = []
        size = 0
        for r in self._after(after):
            if items and size + len(r["text"]) > budget_bytes:
                break
            items.append(r)
            size += len(r["text"]) + 20
        if not items:
            return None
        return p.Section(self.name, p.CODEC_RECORDS, list(after), [items[-1]["seq"]],
                         len(items), p.pack_records(items))

    def backlog(self, conn: Connection, after: p.Position) -> int:
        return len(self._after(after))

    def apply(self, conn: Connection, hub: Any, section: p.Section) -> int:
        raise AssertionError("the hub never applies an up stream")


class ListDown:
    """A down stream that keeps what it was given."""

    def __init__(self, name: str, fail: bool = False) -> None:
        self.name = name
        self.applied: list[dict[str, Any]] = []
        self.fail = fail

    def collect(self, conn: Connection, site: str, after: p.Position,
                budget_bytes: int) -> p.Section | None:
        raise AssertionError("the hub never collects a down stream")

    def apply(self, conn: Connection, site: str, section: p.Section) -> None:
        assert site == SITE
        if self.fail:
            raise RuntimeError("this stream cannot take it")
        self.applied.extend(p.unpack_records(section.data))


def records(n: int, size: int = 100, start: int = 1) -> list[dict[str, Any]]:
    """``n`` records of about ``size`` bytes that do not compress."""
    rng = random.Random(n * 7919 + start)
    return [{"seq": i, "text": base64.b64encode(rng.randbytes(size * 3 // 4)).decode()}
            for i in range(start, start + n)]


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NO_PROXY",
                "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def hub_db(sqlite_template: Path, tmp_path: Path) -> Iterator[Engine]:
    path = tmp_path / "labhub.db"
    shutil.copy(sqlite_template, path)
    engine = db.make_engine(f"sqlite:///{path}")
    yield engine
    engine.dispose()


def hub_settings(engine: Engine, tmp_path: Path, **more: Any) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=str(engine.url),
                    network_batch_bytes=more.pop("network_batch_bytes", 4096), **more)


def joined(engine: Engine, state: StandIn, url: str, settings: Settings) -> None:
    state.tokens["lhe_t1"] = SITE
    client.join(engine, settings, url, "lhe_t1", name="pi-lab-a")


def member(engine: Engine) -> membership.Membership:
    with engine.connect() as conn:
        m = membership.get(conn)
    assert m is not None
    return m


# -- join ------------------------------------------------------------------------------


def test_join_stores_the_membership_and_a_second_join_replaces_it(
        hub_db: Engine, tmp_path: Path) -> None:
    settings = hub_settings(hub_db, tmp_path)
    with running() as (state, url):
        state.tokens.update({"lhe_first": SITE, "lhe_second": SITE})
        client.join(hub_db, settings, url + "/", "lhe_first", name="pi-lab-a")
        first = member(hub_db)
        assert (first.central_url, first.site, first.hub_id) == (url, SITE, "hub-1")
        assert first.credential.startswith("lhh_")
        assert first.clock_offset_us is not None and abs(first.clock_offset_us) < 1_000_000
        with pytest.raises(NetworkError, match=r"joining the network \(POST .*/join\): "
                           r"the central answered 403 Not a valid enrolment token"):
            client.join(hub_db, settings, url, "lhe_first")  # used once already
        client.join(hub_db, settings, url, "lhe_second")  # a replacement hub
        assert member(hub_db).hub_id == "hub-2"


def test_join_refuses_a_token_of_another_lab_before_storing_anything(
        hub_db: Engine, tmp_path: Path) -> None:
    settings = hub_settings(hub_db, tmp_path, site="LAB-B")
    with running() as (state, url):
        state.tokens["lhe_x"] = SITE
        # The hub says which lab it is set up for: the central refuses, the token unused.
        with pytest.raises(RefusedError, match="token is still unused"):
            client.join(hub_db, settings, url, "lhe_x")
        assert state.tokens == {"lhe_x": SITE}
        with pytest.raises(client.JoinRefusedError, match="starts with 'lhe_'"):
            client.join(hub_db, settings, url, "not-a-token")
    with hub_db.connect() as conn:
        assert membership.get(conn) is None


# -- a contact -------------------------------------------------------------------------


def test_a_contact_sends_every_stream_once_and_applies_what_comes_down(
        hub_db: Engine, tmp_path: Path) -> None:
    settings = hub_settings(hub_db, tmp_path)
    runs, notes = records(40), records(25, start=1)
    up = {"runs": ListStream("runs", runs), "notes": ListStream("notes", notes)}
    sites, catalog = ListDown("sites"), ListDown("catalog")
    with running() as (state, url):
        joined(hub_db, state, url, settings)
        state.clock_us = -5_000_000  # the central's clock is 5 s behind the hub's
        state.down = {"sites": records(3), "catalog": records(2)}
        with pytest.raises(client.NotMemberError):
            _not_member(tmp_path)
        summary = client.contact(hub_db, settings, up=up,
                                 down={"sites": sites, "catalog": catalog})
        assert summary.sent == {"runs": 40, "notes": 25}
        assert summary.batches >= 2  # 6.5 kB of records in batches of 4 kB
        assert state.deliveries == 65
        assert sorted(state.records["runs"]) == list(range(1, 41))
        assert state.positions["hub-1"] == {"runs": [40], "notes": [25]}
        hello = state.hellos[0]["health"]
        assert hello["backlog"] == 65 and hello["version"]
        assert hello["free_disk_bytes"] > 0 and hello["devices_online"] == 0
        assert len(sites.applied) == 3 and len(catalog.applied) == 2
        assert 4_900_000 <= summary.clock_offset_us <= 5_100_000  # type: ignore[operator]
        m = member(hub_db)
        assert m.up_positions == {"runs": [40], "notes": [25]}
        assert m.down_positions == {"sites": [3], "catalog": [2]}
        assert m.last_error is None and m.last_contact_at is not None
        assert m.clock_offset_us == summary.clock_offset_us
        assert client.status(hub_db, up=up).backlog == {"runs": 0, "notes": 0}

        again = client.contact(hub_db, settings, up=up,
                               down={"sites": sites, "catalog": catalog})
        assert again.batches == 0 and again.sent == {} and again.received == {}
        assert state.down_asked[-1] == {"sites": [3], "catalog": [2]}
        assert state.deliveries == 65 and len(sites.applied) == 3


def _not_member(tmp_path: Path) -> None:
    """A hub that has not joined cannot make a contact."""
    path = tmp_path / "empty.db"
    engine = db.make_engine(f"sqlite:///{path}")
    try:
        db.upgrade(engine)
        client.contact(engine, hub_settings(engine, tmp_path), up={}, down={})
    finally:
        engine.dispose()


def test_down_sections_are_applied_all_or_nothing(hub_db: Engine, tmp_path: Path) -> None:
    settings = hub_settings(hub_db, tmp_path)
    sites, people = ListDown("sites"), ListDown("people", fail=True)
    with running() as (state, url):
        joined(hub_db, state, url, settings)
        state.down = {"sites": records(2), "people": records(1)}
        with pytest.raises(RuntimeError, match="cannot take it"):
            client.contact(hub_db, settings, up={}, down={"sites": sites, "people": people})
        assert member(hub_db).down_positions == {}
        assert "RuntimeError: this stream cannot take it" in (member(hub_db).last_error or "")
        with pytest.raises(NetworkError, match="stream 'people', which this hub does not "
                           "know"):
            client.contact(hub_db, settings, up={}, down={"sites": sites})
        assert member(hub_db).down_positions == {}


def test_an_upload_cut_midway_goes_on_from_the_centrals_offset(
        hub_db: Engine, tmp_path: Path) -> None:
    settings = hub_settings(hub_db, tmp_path, network_batch_bytes=16384)
    up = {"runs": ListStream("runs", records(120))}
    with running() as (state, url):
        joined(hub_db, state, url, settings)
        state.cut_put_after = [3000, 5000]  # the first two pieces are cut there
        summary = client.contact(hub_db, settings, up=up, down={})
        assert summary.resumed == 2 and summary.sent == {"runs": 120}
        puts = [r for r in state.requests if r.startswith("PUT")]
        gets = [r for r in state.requests if r.startswith("GET")]
        assert len(gets) == 2
        # the second piece started at 3000, the third at 3000 + 5000: no byte sent twice
        assert [piece[0] for piece in state.pieces] == [8000] + [0] * (len(puts) - 3)
        assert state.deliveries == 120 and len(state.records["runs"]) == 120
        assert member(hub_db).up_positions == {"runs": [120]}


def test_a_409_carries_the_offset_the_central_holds(hub_db: Engine, tmp_path: Path) -> None:
    settings = hub_settings(hub_db, tmp_path, network_batch_bytes=16384)
    up = {"runs": ListStream("runs", records(60))}
    with running() as (state, url):
        joined(hub_db, state, url, settings)
        state.cut_put_after = [2000]
        state.cut_get = 1  # the hub cannot ask: it sends from 0 again, the central says 2000
        summary = client.contact(hub_db, settings, up=up, down={})
        assert summary.resumed == 1
        assert [r.split()[0] for r in state.requests[1:7]] == [
            "POST", "PUT", "GET", "PUT", "PUT", "POST"]  # hello, cut, cut, 409, rest, down
        assert state.pieces[0][0] == 2000
        assert state.deliveries == 60


def test_a_central_restored_from_a_backup_gets_everything_again(
        hub_db: Engine, tmp_path: Path) -> None:
    settings = hub_settings(hub_db, tmp_path)
    up = {"runs": ListStream("runs", records(30))}
    with running() as (state, url):
        joined(hub_db, state, url, settings)
        client.contact(hub_db, settings, up=up, down={})
        assert state.deliveries == 30
        state.positions["hub-1"] = {"runs": [10]}  # yesterday's backup
        summary = client.contact(hub_db, settings, up=up, down={})
        assert summary.sent == {"runs": 20}
        assert state.deliveries == 50 and len(state.records["runs"]) == 30
        assert member(hub_db).up_positions == {"runs": [30]}


def test_a_contact_stops_after_its_batch_bound_and_says_more_waits(
        hub_db: Engine, tmp_path: Path) -> None:
    settings = hub_settings(hub_db, tmp_path)
    up = {"runs": ListStream("runs", records(200))}
    with running() as (state, url):
        joined(hub_db, state, url, settings)
        summary = client.contact(hub_db, settings, up=up, down={}, max_batches=2)
        assert summary.batches == 2 and summary.more
        assert 0 < summary.sent["runs"] < 200
        rest = client.contact(hub_db, settings, up=up, down={})
        assert not rest.more and summary.sent["runs"] + rest.sent["runs"] == 200


# -- failures and backoff --------------------------------------------------------------


def test_a_failed_contact_records_what_failed_and_where(
        hub_db: Engine, tmp_path: Path) -> None:
    settings = hub_settings(hub_db, tmp_path)
    with running() as (state, url):
        joined(hub_db, state, url, settings)
        state.refuse = 503
        with pytest.raises(NetworkError) as caught:
            client.contact(hub_db, settings, up={}, down={})
    assert caught.value.status == 503
    assert member(hub_db).last_error == (
        f"hello (POST {url}/api/v1/network/hello): the central answered 503 Central is "
        "down: the stand-in refuses everything")
    with pytest.raises(CutError, match=r"hello \(POST http://127.0.0.1:\d+/api/v1/network"
                       r"/hello\): connection refused"):
        client.contact(hub_db, settings, up={}, down={})  # nothing listens there now
    assert "connection refused" in (member(hub_db).last_error or "")


def test_backoff_doubles_with_jitter_up_to_the_sync_period() -> None:
    rng = random.Random(1)
    cases = [(1, 1, 2), (2, 2, 4), (3, 4, 8), (4, 8, 16), (6, 30, 60), (9, 30, 60)]
    for failures, low, high in cases:
        delays = [client.backoff_delay(failures, 60, rng) for _ in range(200)]
        assert low <= min(delays) and max(delays) <= high
        assert max(delays) - min(delays) > (high - low) * 0.8  # jittered over the range


def test_the_sync_thread_backs_off_after_failures_and_comes_back(
        hub_db: Engine, tmp_path: Path) -> None:
    settings = hub_settings(hub_db, tmp_path, network_sync_every_s=10)
    with running() as (state, url):
        loop = client.SyncLoop(hub_db, settings, up={}, down={}, rng=random.Random(3))
        assert loop._cycle() == 10  # not a member: it looks again next period
        joined(hub_db, state, url, settings)
        state.refuse = 502
        delays = [loop._cycle() for _ in range(4)]
        assert 1 <= delays[0] <= 2 and 2 <= delays[1] <= 4 and 4 <= delays[2] <= 8
        assert 5 <= delays[3] <= 10 and loop.failures == 4
        state.refuse = None
        assert loop._cycle() == 10 and loop.failures == 0


def test_a_join_while_serving_takes_effect_and_close_stops_the_thread(
        hub_db: Engine, tmp_path: Path) -> None:
    settings = hub_settings(hub_db, tmp_path, network_sync_every_s=3600,
                            network_bandwidth_kbit=64, network_batch_bytes=65536)
    up = {"runs": ListStream("runs", records(400))}
    with running() as (state, url):
        loop = client.SyncLoop(hub_db, settings, up=up, down={}).start()
        wait_for(lambda: loop.next_delay_s == 3600, what="a first cycle (not a member)")
        joined(hub_db, state, url, settings)
        loop.wake()
        # 40 kB at 64 kbit/s takes 5 s: close while the first batch is going up
        wait_for(lambda: any(r.startswith("PUT") for r in state.requests),
                 what="an upload under way")
        started = time.monotonic()
        loop.close()
        assert time.monotonic() - started < 1.0
        assert loop._thread is not None and not loop._thread.is_alive()
        assert member(hub_db).last_error is None  # a hub stopping is no failure
    assert "labhub-network-sync" not in [t.name for t in threading.enumerate()]


def test_hub_start_runs_the_sync_thread_and_close_ends_it(
        hub_db: Engine, tmp_path: Path) -> None:
    hub = Hub(hub_settings(hub_db, tmp_path)).start()
    try:
        assert hub.network is not None
        assert "labhub-network-sync" in [t.name for t in threading.enumerate()]
    finally:
        hub.close()
    assert "labhub-network-sync" not in [t.name for t in threading.enumerate()]


# -- transport -------------------------------------------------------------------------


def test_uploads_keep_to_the_bandwidth_limit(hub_db: Engine, tmp_path: Path) -> None:
    """256 kbit/s is 32,000 bytes a second: measured on the central from the first byte
    to the last of a 39 kB batch, within 10 %."""
    settings = hub_settings(hub_db, tmp_path, network_bandwidth_kbit=256,
                            network_batch_bytes=65536)
    up = {"runs": ListStream("runs", records(480))}
    with running() as (state, url):
        joined(hub_db, state, url, settings)
        client.contact(hub_db, settings, up=up, down={})
    [(_, size, first, last)] = state.pieces
    assert size > 30_000
    rate = size / (last - first)
    assert 32_000 * 0.9 <= rate <= 32_000 * 1.1, f"{rate:.0f} bytes/s"
    assert chunk_size(32_000) == 1600  # 50 ms: other traffic gets in between


def test_the_token_bucket_spends_no_more_than_its_rate() -> None:
    now = [0.0]
    waits: list[float] = []

    class Clock(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            waits.append(timeout or 0)
            now[0] += timeout or 0
            return False

    bucket = TokenBucket(1000, 100, clock=lambda: now[0], stop=Clock())
    for _ in range(50):
        bucket.take(100)
    assert sum(waits) == pytest.approx(4.9)  # 5,000 bytes at 1,000/s, the first 100 free


def test_requests_go_through_the_proxy_of_the_environment(
        hub_db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = hub_settings(hub_db, tmp_path)
    with running() as (state, url):
        monkeypatch.setenv("HTTP_PROXY", url)  # the stand-in answers as the proxy would
        state.tokens["lhe_p"] = SITE
        client.join(hub_db, settings, "http://central.invalid:8080", "lhe_p")
        client.contact(hub_db, settings, up={}, down={})
        assert state.proxied == 3  # join, hello, down
        monkeypatch.setenv("NO_PROXY", "central.invalid")
        with pytest.raises(CutError, match="does not resolve"):
            client.contact(hub_db, settings, up={}, down={})


def test_a_stop_ends_a_request_at_once() -> None:
    stop = threading.Event()
    transport = Transport("http://127.0.0.1:9", stop=stop)
    stop.set()
    with pytest.raises(NetworkError, match="the hub is stopping"):
        transport.request("GET", "/", what="asking")
    assert os.environ.get("HTTP_PROXY") is None


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate of ``localhost`` (OpenSSL's command), and its key."""
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "central.pem", where / "central.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def test_https_through_a_connect_proxy_with_the_centrals_own_ca(
        hub_db: Engine, tmp_path: Path, certificate: tuple[Path, Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = certificate
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    trusting = hub_settings(hub_db, tmp_path, network_ca_file=cert)
    with running(tls=tls) as (state, url), connect_proxy() as (asked, proxy):
        monkeypatch.setenv("HTTPS_PROXY", proxy)
        state.tokens.update({"lhe_1": SITE, "lhe_2": SITE})
        with pytest.raises(NetworkError, match=r"joining the network \(POST https://"
                           r"localhost:\d+/api/v1/network/join\): the central's "
                           r"certificate is not trusted: self.signed certificate"):
            client.join(hub_db, hub_settings(hub_db, tmp_path), url, "lhe_1")
        client.join(hub_db, trusting, url, "lhe_2")
        up = {"runs": ListStream("runs", records(10))}
        summary = client.contact(hub_db, trusting, up=up, down={})
        assert summary.sent == {"runs": 10}
        port = url.rsplit(":", 1)[1]
        assert asked == [f"localhost:{port}"] * 3  # the refused join, the join, a contact


def test_acknowledged_positions_are_what_retention_reads(
        hub_db: Engine, tmp_path: Path) -> None:
    settings = hub_settings(hub_db, tmp_path)
    with hub_db.connect() as conn:
        assert membership.acknowledged(conn, "runs") is None  # no network: no constraint
    with running() as (state, url):
        joined(hub_db, state, url, settings)
        with hub_db.connect() as conn:
            assert membership.acknowledged(conn, "runs") == []  # nothing acknowledged yet
        client.contact(hub_db, settings, up={"runs": ListStream("runs", records(5))},
                       down={})
    with hub_db.connect() as conn:
        assert membership.acknowledged(conn, "runs") == [5]


def test_cuts_that_gain_bytes_go_on_and_cuts_that_gain_none_give_up(
        hub_db: Engine, tmp_path: Path) -> None:
    settings = hub_settings(hub_db, tmp_path, network_cut_pause_ms=1)  # pauses between tries
    up = {"runs": ListStream("runs", records(5))}
    with running() as (state, url):
        joined(hub_db, state, url, settings)
        state.cut_put_after = [0] * 10  # every piece is cut before its first byte
        with pytest.raises(CutError, match=r"uploading batch [0-9a-f-]+ \(PUT "):
            client.contact(hub_db, settings, up=up, down={})
        puts = [r for r in state.requests if r.startswith("PUT")]
        assert len(puts) == client.MAX_CUTS + 1 and state.deliveries == 0
        assert "uploading batch" in (member(hub_db).last_error or "")
        state.cut_put_after = [10] * 10  # each piece gains 10 bytes: it goes on
        summary = client.contact(hub_db, settings, up=up, down={})
        assert summary.resumed == 10 and state.deliveries == 5
