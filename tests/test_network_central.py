"""The central's core on PostgreSQL, served by a real uvicorn in a thread: enrolment and
join, hub credentials, hello, resumable batches (a piece cut midway on a real socket),
exactly-once application, positions over a gap, bad batches kept as dead letters, down,
and the wrong role."""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import pytest
from conftest import TEST_ALLOWED_HOSTS, _truncate_all
from served_app import served_app
from sqlalchemy import func, select, update

from inventory import sites as inventory_sites
from labhub import db
from labhub.access import accounts
from labhub.access.caller import NETWORK
from labhub.access.permissions import Grant, Role
from labhub.app import create_app
from labhub.network import central, protocol
from labhub.network.protocol import CODEC_RECORDS, Section, pack_batch, pack_records
from labhub.network.tables import (
    network_batches,
    network_central,
    network_daily,
    network_enrolments,
    network_upload_parts,
)
from labhub.settings import Settings
from labhub.wiring import CentralNeedsPostgresError, Hub
from sensors.samples import now_us
from sensors.storage import dead_letters, runs

pytestmark = pytest.mark.postgres
V1 = "/api/v1/network"
PEOPLE = {"admin": Grant(Role.ADMIN, NETWORK), "coord": Grant(Role.COORDINATOR, "VL-R1"),
          "ministry": Grant(Role.MINISTRY, "VL-R1"), "coord2": Grant(Role.COORDINATOR, "VL-R2"),
          "teacher": Grant(Role.TEACHER, "LAB-A")}
LABS = {"VL-R1": ["LAB-A", "LAB-B", "LAB-D", "LAB-E", "LAB-F", "LAB-G"], "VL-R2": ["LAB-C"]}


class Answer:
    """An HTTP answer from the real server."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status_code = status
        self.headers = headers
        self.content = body
        self.text = body.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class Http:
    """A small HTTP client on a real socket (one connection a request)."""

    def __init__(self, host: str) -> None:
        self.host, port = host.split(":")
        self.port = int(port)

    def request(self, method: str, path: str, *, json_body: Any = None,
                content: bytes | None = None, headers: dict[str, str] | None = None
                ) -> Answer:
        headers = dict(headers or {})
        body = content
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        conn = HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            return Answer(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    def get(self, path: str, **kw: Any) -> Answer:
        return self.request("GET", path, **kw)

    def post(self, path: str, *, json: Any = None, **kw: Any) -> Answer:
        return self.request("POST", path, json_body=json, **kw)

    def put(self, path: str, **kw: Any) -> Answer:
        return self.request("PUT", path, **kw)

    def delete(self, path: str, **kw: Any) -> Answer:
        return self.request("DELETE", path, **kw)


@dataclass
class World:
    url: str
    base: str
    http: Http
    tokens: dict[str, str]

    def as_(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def enrol(self, site: str, who: str = "admin", hours: int = 72) -> Answer:
        return self.http.post(f"{V1}/enrolments", json={"site": site, "hours": hours},
                              headers=self.as_(who))

    def join(self, token: str, name: str = "hub-pi", site: str | None = None) -> Answer:
        body = {"token": token, "name": name, "version": "1.0.0",
                "sent_at_us": time.time_ns() // 1000}
        if site is not None:
            body["site"] = site
        return self.http.post(f"{V1}/join", json=body)

    def hub(self, site: str) -> tuple[str, dict[str, str]]:
        """A new hub for ``site``: its id and its headers."""
        made = self.enrol(site)
        assert made.status_code == 201, made.text
        joined = self.join(made.json()["token"])
        assert joined.status_code == 201, joined.text
        return joined.json()["hub_id"], {
            "Authorization": f"Bearer {joined.json()['credential']}"}


@pytest.fixture(scope="module")
def world(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    _truncate_all(postgres_url)
    engine = db.make_engine(postgres_url)
    tokens = {}
    with engine.begin() as conn:
        inventory_sites.create_site(conn=conn, code="VL", name="Red", kind="network", by="t")
        for region, labs in LABS.items():
            inventory_sites.create_site(conn=conn, code=region, name=region, kind="region",
                                        by="t", parent_code="VL")
            for lab in labs:
                inventory_sites.create_site(conn=conn, code=lab, name=lab, kind="site",
                                            tier="lab_point", by="t", parent_code=region)
        for name, grant in PEOPLE.items():
            user = accounts.create_user(conn, name=name, password_hash=None,
                                        grants_given=[grant])
            tokens[name] = accounts.create_api_token(conn, user_id=user.id, name="t")[1]
    engine.dispose()
    settings = Settings(data_dir=tmp_path_factory.mktemp("central") / "data",
                        database_url=postgres_url, role="central", serial_scan=False,
                        network_batch_bytes=256 * 1024,
                        allowed_hosts=[*TEST_ALLOWED_HOSTS, "127.0.0.1"])
    with served_app(create_app(settings), "test-central") as url:
        host = url.removeprefix("http://")
        yield World(postgres_url, host, Http(host), tokens)


@pytest.fixture
def _no_stray_threads() -> None:
    """The central lives across the module: its threads end with it."""


@contextmanager
def _db(url: str) -> Iterator[Any]:
    engine = db.make_engine(url)
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


def _run_record(run_id: str, title: str = "Sombra", site: str | None = None) -> dict[str, Any]:
    return {"id": run_id, "title": title, "group_name": "7B", "site": site,
            "started_at": 1_700_000_000_000_000, "stopped_at": None,
            "created_at": 1_700_000_000_000_000, "started_by": "ana",
            "channels": [["estacion-1", "temperature"]]}


def _runs_section(start: list[int], to: list[int], *records: dict[str, Any]) -> Section:
    return Section(stream="runs", codec=CODEC_RECORDS, start=start, to=to,
                   count=len(records), data=pack_records(records))


def _batch(hub_id: str, *sections: Section, batch_id: str | None = None) -> tuple[str, bytes]:
    batch_id = batch_id or str(uuid.uuid4())
    return batch_id, pack_batch(batch_id=batch_id, hub_id=hub_id, made_at_us=1,
                                sections=sections)


def _put(w: World, headers: dict[str, str], batch_id: str, data: bytes, offset: int = 0,
         end: int | None = None, digest: str | None = None) -> Answer:
    end = len(data) if end is None else end
    return w.http.put(f"{V1}/batches/{batch_id}", content=data[offset:end], headers={
        **headers, "Content-Type": "application/octet-stream",
        "Upload-Offset": str(offset), "Upload-Length": str(len(data)),
        "Upload-Digest": digest or protocol.digest(data)})


# -- enrolment, join, credentials ------------------------------------------------------------


def test_enrolment_join_replacement_and_revocation(world: World) -> None:
    w = world
    assert w.enrol("VL-R1").status_code == 422  # a region is not a lab
    assert "not a lab site" in w.enrol("VL-R1").json()["detail"]
    assert w.enrol("NOWHERE").status_code == 404
    assert w.enrol("LAB-A", hours=31 * 24).status_code == 422
    assert w.enrol("LAB-C", who="coord").status_code == 403  # another region's lab
    assert w.enrol("LAB-A", who="teacher").status_code == 403
    made = w.enrol("LAB-A", who="coord")
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    assert token.startswith("lhe_")
    with _db(w.url) as conn:  # only the token's digest is kept
        hashes = set(conn.execute(select(network_enrolments.c.token_hash)).scalars())
    assert token not in hashes and accounts.secret_hash(token) in hashes

    wrong = w.join(token, site="LAB-C")  # a hub set up for another lab: the token is kept
    assert wrong.status_code == 409 and "still unused" in wrong.json()["detail"]
    first = w.join(token, site="LAB-A")
    assert first.status_code == 201, first.text
    hub1 = first.json()
    assert hub1["site"] == "LAB-A" and hub1["credential"].startswith(f"lhh_{hub1['hub_id']}.")
    again = w.join(token)
    assert again.status_code == 410 and "was used at" in again.json()["detail"]
    assert "labhub network token" in again.json()["detail"]
    assert w.join("lhe_" + "x" * 40).status_code == 401

    stale = w.enrol("LAB-A").json()
    with _db(w.url) as conn:
        conn.execute(update(network_enrolments).where(network_enrolments.c.id == stale["id"])
                     .values(expires_at=1))
    expired = w.join(stale["token"])
    assert expired.status_code == 410 and "expired at" in expired.json()["detail"]

    creds1 = {"Authorization": f"Bearer {hub1['credential']}"}
    hello = {"health": {"version": "1.0.0", "uptime_s": 5, "free_disk_bytes": 1,
                        "backlog": 0, "devices_online": 0, "dead_letters": 0},
             "sent_at_us": time.time_ns() // 1000}
    assert w.http.post(f"{V1}/hello", json=hello, headers=creds1).status_code == 200
    # A hub's credential is only for syncing its lab.
    assert w.http.get("/api/v1/auth/me", headers=creds1).status_code == 403
    assert w.http.get(f"{V1}/hubs", headers=creds1).status_code == 403

    # The replacement (a stolen laptop): the old hub is refused, naming its replacement.
    hub2_id, creds2 = w.hub("LAB-A")
    refused = w.http.post(f"{V1}/hello", json=hello, headers=creds1)
    assert refused.status_code == 401
    assert f"replaced by hub {hub2_id}" in refused.json()["detail"]
    assert w.http.post(f"{V1}/hello", json=hello, headers=creds2).status_code == 200

    # Withdrawn by the central: refused, saying so.
    assert w.http.delete(f"{V1}/hubs/{hub2_id}", headers=w.as_("coord2")).status_code == 403
    assert w.http.delete(f"{V1}/hubs/{hub2_id}", headers=w.as_("coord")).status_code == 204
    gone = w.http.post(f"{V1}/hello", json=hello, headers=creds2)
    assert gone.status_code == 401 and "withdrawn by the central" in gone.json()["detail"]

    # Enrolments: an unused one may be withdrawn, a used one not.
    unused = w.enrol("LAB-B").json()
    used = first.json()
    listed = w.http.get(f"{V1}/enrolments", headers=w.as_("coord")).json()
    assert all("token" not in e for e in listed)
    used_id = next(e["id"] for e in listed if e["used_by_hub"] == used["hub_id"])
    assert w.http.delete(f"{V1}/enrolments/{used_id}",
                         headers=w.as_("coord")).status_code == 409
    assert w.http.delete(f"{V1}/enrolments/{unused['id']}",
                         headers=w.as_("coord")).status_code == 204
    assert w.join(unused["token"]).status_code == 401


def test_lists_are_scoped_to_the_callers_sites(world: World) -> None:
    w = world
    w.hub("LAB-C")
    w.hub("LAB-D")
    for who, sees_c in (("admin", True), ("ministry", False), ("coord", False),
                        ("coord2", True)):
        hubs = w.http.get(f"{V1}/hubs", headers=w.as_(who))
        assert hubs.status_code == 200, hubs.text
        sites = {h["site"] for h in hubs.json()}
        assert ("LAB-C" in sites) == sees_c, who
        assert ("LAB-D" in sites) == (who != "coord2"), who
        assert all(h["state"] in ("never", "ok", "late", "clock", "revoked")
                   for h in hubs.json())
    assert {e["site"] for e in w.http.get(f"{V1}/enrolments",
                                          headers=w.as_("coord2")).json()} == {"LAB-C"}
    assert w.http.get(f"{V1}/enrolments", headers=w.as_("ministry")).status_code == 403
    assert w.http.get(f"{V1}/hubs", headers=w.as_("teacher")).status_code == 403


def test_hello_records_health_and_clock_and_answers_positions(world: World) -> None:
    w = world
    hub_id, creds = w.hub("LAB-E")
    skew = 3 * 24 * 3600 * 1_000_000  # the hub's clock is 3 days ahead
    answer = w.http.post(f"{V1}/hello", headers=creds, json={
        "health": {"version": "2.1.0", "uptime_s": 99, "free_disk_bytes": 5_000_000,
                   "backlog": 42, "devices_online": 3, "dead_letters": 1,
                   "extra": {"backlog_by_stream": {"runs": 2}}},
        "sent_at_us": time.time_ns() // 1000 + skew})
    assert answer.status_code == 200, answer.text
    welcome = protocol.Welcome.from_json(answer.json())
    assert welcome.hub_id == hub_id and welcome.site == "LAB-E"
    assert welcome.positions == {name: [] for name in protocol.UP_STREAMS}
    hub = next(h for h in w.http.get(f"{V1}/hubs", headers=w.as_("admin")).json()
               if h["id"] == hub_id)
    assert hub["backlog"] == 42 and hub["version"] == "2.1.0" and hub["devices_online"] == 3
    assert hub["health"]["extra"] == {"backlog_by_stream": {"runs": 2}}
    assert abs(hub["clock_offset_us"] - skew) < 5_000_000
    assert hub["state"] == "clock"


# -- batches ---------------------------------------------------------------------------------


def _runs_count(url: str, site: str) -> int:
    with _db(url) as conn:
        return int(conn.execute(select(func.count()).select_from(runs)
                                .where(runs.c.site == site)).scalar_one())


def test_a_batch_cut_midway_is_resumed_and_a_batch_sent_twice_is_applied_once(
        world: World) -> None:
    w = world
    hub_id, creds = w.hub("LAB-F")
    # Random titles, so the batch is some 200 KiB: several stored pieces.
    records = [_run_record(str(uuid.uuid4()), title=secrets.token_urlsafe(150))
               for _ in range(1000)]
    batch_id, data = _batch(hub_id, _runs_section([], [1000], *records))
    assert 2 * central.PART_BYTES + 2000 < len(data) < 2 * 256 * 1024
    cut = 2 * central.PART_BYTES + 1000
    # A real socket: the request says the whole length, sends 150 KB and is cut.
    host, port = w.base.split(":")
    head = (f"PUT {V1}/batches/{batch_id} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: {creds['Authorization']}\r\n"
            "Content-Type: application/octet-stream\r\n"
            f"Upload-Offset: 0\r\nUpload-Length: {len(data)}\r\n"
            f"Upload-Digest: {protocol.digest(data)}\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode()
    def held() -> dict[str, Any]:
        answer: dict[str, Any] = w.http.get(f"{V1}/batches/{batch_id}", headers=creds).json()
        return answer

    def wait_until(ok: Any) -> dict[str, Any]:
        deadline = time.monotonic() + 10
        state = held()
        while not ok(state) and time.monotonic() < deadline:
            time.sleep(0.02)
            state = held()
        return state

    stored = central.PART_BYTES
    with socket.create_connection((host, int(port))) as raw:
        raw.sendall(head + data[:cut])
        # Pieces are stored as they arrive, while the request is still open.
        assert wait_until(lambda s: s["offset"] >= stored)["offset"] >= stored
    # Cut. The central keeps every byte its HTTP server handed it, the last short piece
    # too (what the server had taken off the socket but not yet handed over is lost with
    # the connection): the hub goes on from the offset the central answers, as here.
    wrong = _put(w, creds, batch_id, data, offset=0)  # not where the central is
    assert wrong.status_code == 409 and wrong.json()["complete"] is False
    assert stored <= wrong.json()["offset"] <= cut
    at = wrong.json()["offset"]
    _, other = w.hub("LAB-G")
    assert w.http.get(f"{V1}/batches/{batch_id}", headers=other).status_code == 409

    for _ in range(5):  # the cut request's last piece may land meanwhile: a 409 says so
        done = _put(w, creds, batch_id, data, offset=at)
        if done.status_code != 409:
            break
        at = done.json()["offset"]
        assert stored <= at <= cut
    assert done.status_code == 200, done.text
    assert done.json() == {"offset": len(data), "complete": True,
                           "positions": {**{n: [] for n in protocol.UP_STREAMS},
                                         "runs": [1000]}}
    assert _runs_count(w.url, "LAB-F") == 1000
    again = _put(w, creds, batch_id, data, offset=0)  # sent twice: answered, not applied
    assert again.status_code == 200 and again.json()["complete"] is True
    assert w.http.get(f"{V1}/batches/{batch_id}", headers=creds).json()["complete"]
    with _db(w.url) as conn:
        assert conn.execute(select(func.count()).select_from(network_upload_parts)
                            .where(network_upload_parts.c.batch_id == batch_id)
                            ).scalar_one() == 0
        daily = conn.execute(select(network_daily).where(network_daily.c.site == "LAB-F")
                             ).one()
    assert daily.batches == 1 and daily.bytes == len(data)


def test_two_workers_finishing_the_same_batch_apply_it_once(world: World) -> None:
    w = world
    hub_id, _ = w.hub("LAB-B")
    run_id = str(uuid.uuid4())
    batch_id, data = _batch(hub_id, _runs_section([], [3], _run_record(run_id)))
    engine = db.make_engine(w.url)
    results: list[Any] = []
    barrier = threading.Barrier(2)

    def finish() -> None:
        barrier.wait()
        results.append(central.apply_batch(engine, batch_id=batch_id, hub_id=hub_id,
                                           site="LAB-B", data=data, tolerance_min=10))

    try:
        threads = [threading.Thread(target=finish) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        with engine.connect() as conn:
            applied = conn.execute(select(network_batches).where(
                network_batches.c.id == batch_id)).one()
            daily = conn.execute(select(network_daily.c.batches)
                                 .where(network_daily.c.site == "LAB-B")).scalar_one()
    finally:
        engine.dispose()
    assert [r.complete for r in results] == [True, True]
    assert all(r.positions["runs"] == [3] for r in results)
    assert applied.items == 1 and daily == 1


def test_positions_do_not_move_over_a_gap_and_move_when_contiguous(world: World) -> None:
    w = world
    hub_id, creds = w.hub("LAB-D")
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    batch_id, data = _batch(hub_id, _runs_section([5], [9], _run_record(a)))
    gap = _put(w, creds, batch_id, data)
    assert gap.status_code == 200, gap.text
    assert gap.json()["positions"]["runs"] == []  # applied (harmless) but not moved
    assert _runs_count(w.url, "LAB-D") == 1
    batch_id, data = _batch(hub_id, _runs_section([], [9], _run_record(a), _run_record(b)))
    assert _put(w, creds, batch_id, data).json()["positions"]["runs"] == [9]
    batch_id, data = _batch(hub_id, _runs_section([9], [12], _run_record(b, "Luz")))
    assert _put(w, creds, batch_id, data).json()["positions"]["runs"] == [12]
    batch_id, data = _batch(hub_id, _runs_section([], [9], _run_record(a)))  # an old one
    assert _put(w, creds, batch_id, data).json()["positions"]["runs"] == [12]
    assert _runs_count(w.url, "LAB-D") == 2
    welcome = w.http.post(f"{V1}/hello", headers=creds, json={
        "health": {"version": "1", "uptime_s": 1, "free_disk_bytes": 1, "backlog": 0,
                   "devices_online": 0, "dead_letters": 0}, "sent_at_us": 0}).json()
    assert welcome["positions"]["runs"] == [12]


def test_a_bad_batch_is_a_422_and_a_dead_letter(world: World) -> None:
    w = world
    hub_id, creds = w.hub("LAB-G")
    run_id = str(uuid.uuid4())
    batch_id, data = _batch(hub_id, _runs_section([], [1], _run_record(run_id)))
    bad = _put(w, creds, batch_id, data, digest="sha256=" + "0" * 64)
    assert bad.status_code == 422 and "Upload-Digest" in bad.json()["detail"]
    unknown_id, unknown = _batch(hub_id, Section("weather", CODEC_RECORDS, [], [1], 0,
                                                 pack_records([])))
    refused = _put(w, creds, unknown_id, unknown)
    assert refused.status_code == 422 and "'weather'" in refused.json()["detail"]
    other_id, other = _batch(hub_id, _runs_section([], [1], _run_record(run_id,
                                                                        site="LAB-A")))
    foreign = _put(w, creds, other_id, other)
    assert foreign.status_code == 422 and "not of this hub's lab" in foreign.json()["detail"]
    with _db(w.url) as conn:
        kept = {r.uuid: r for r in conn.execute(
            select(dead_letters).where(dead_letters.c.source == "network"))}
    assert {batch_id, unknown_id, other_id} <= set(kept)
    assert kept[batch_id].payload == data and kept[batch_id].site == "LAB-G"
    assert "section 0 (runs)" in kept[other_id].reason
    assert _runs_count(w.url, "LAB-G") == 0
    assert _put(w, creds, str(uuid.uuid4()), data[:10] * 100_000).status_code == 413


def test_down_answers_a_batch_and_old_parts_are_pruned(world: World) -> None:
    w = world
    hub_id, creds = w.hub("LAB-E")
    answer = w.http.post(f"{V1}/down", headers=creds, json={"positions": {}})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/octet-stream"
    batch = protocol.unpack_batch(answer.content)
    assert batch.hub_id == hub_id
    assert [s.stream for s in batch.sections] == [
        s for s in protocol.DOWN_STREAMS if s in {x.stream for x in batch.sections}]
    batch_id, data = _batch(hub_id, _runs_section([], [1], _run_record(str(uuid.uuid4()))))
    assert _put(w, creds, batch_id, data, end=10).json() == {
        "offset": 10, "complete": False, "positions": None}
    with _db(w.url) as conn:
        assert central.prune_parts(conn) == 0
        assert central.prune_parts(conn, now=now_us() + 4 * central.US_PER_DAY) >= 1
        assert conn.execute(select(network_central.c.id)).scalar_one() == 1


def test_the_central_refuses_sqlite_and_a_hub_refuses_the_central_routes(
        tmp_path: Path, sqlite_template: Path, world: World) -> None:
    shutil.copy(sqlite_template, tmp_path / "c.db")
    shutil.copy(sqlite_template, tmp_path / "h.db")
    settings = Settings(data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path}/c.db",
                        role="central", serial_scan=False)
    hub = Hub(settings)
    try:
        with pytest.raises(CentralNeedsPostgresError, match="needs PostgreSQL"):
            hub.start()
    finally:
        hub.close()
    from fastapi.testclient import TestClient
    settings = Settings(data_dir=tmp_path / "hub", database_url=f"sqlite:///{tmp_path}/h.db",
                        serial_scan=False, allowed_hosts=list(TEST_ALLOWED_HOSTS))
    with TestClient(create_app(settings)) as client:
        r = client.post(f"{V1}/join", json={"token": "lhe_abc", "name": "x",
                                            "version": "1", "sent_at_us": 0})
        assert r.status_code == 409 and "this LabHub is a hub" in r.json()["detail"]


def test_the_central_commands_make_a_token_and_list_the_hubs(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from labhub.cli import app

    monkeypatch.setenv("LABHUB_DATABASE_URL", world.url)
    monkeypatch.setenv("LABHUB_ROLE", "central")
    monkeypatch.setenv("LABHUB_PORT", "8443")
    made = CliRunner().invoke(app, ["network", "token", "--site", "LAB-B", "--hours", "5"])
    assert made.exit_code == 0, made.output
    token = next(line for line in made.output.splitlines() if line.startswith("lhe_"))
    assert f"  labhub network join http://127.0.0.1:8443 --token {token}" in made.output
    joined = world.join(token, name="pi-escuela-14")
    assert joined.status_code == 201, joined.text
    listed = CliRunner().invoke(app, ["network", "hubs"])
    assert listed.exit_code == 0, listed.output
    assert any("LAB-B" in line and joined.json()["hub_id"] in line and "never" in line
               and "pi-escuela-14" in line for line in listed.output.splitlines())
    refused = CliRunner().invoke(app, ["network", "token", "--site", "VL-R1"])
    assert refused.exit_code == 1 and "not a lab site" in refused.output
    monkeypatch.setenv("LABHUB_ROLE", "hub")
    on_a_hub = CliRunner().invoke(app, ["network", "token", "--site", "LAB-B"])
    assert on_a_hub.exit_code == 1 and "made on the central" in on_a_hub.output


def test_a_batch_held_whole_but_not_applied_is_applied_by_the_next_piece(world: World) -> None:
    w = world
    hub_id, creds = w.hub("LAB-C")
    batch_id, data = _batch(hub_id, _runs_section([], [2], _run_record(str(uuid.uuid4()))))
    with _db(w.url) as conn:  # every byte came, and the apply failed (the central stopped)
        central.store_part(conn, batch_id=batch_id, hub_id=hub_id, offset=0,
                           total=len(data), data=data)
    assert w.http.get(f"{V1}/batches/{batch_id}", headers=creds).json() == {
        "offset": len(data), "complete": False, "positions": None}
    done = _put(w, creds, batch_id, data)  # the hub sends it again from the start
    assert done.status_code == 200 and done.json()["complete"] is True
    assert done.json()["positions"]["runs"] == [2]
    assert _runs_count(w.url, "LAB-C") == 1
