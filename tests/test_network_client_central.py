"""The hub's client against the real central, in-process: the central's app served by
uvicorn on a real socket over PostgreSQL, a hub on its own SQLite file with the real up
streams. Join with a token a coordinator made, a contact that sends the hub's devices,
runs and notes, a cut upload resumed, and a second contact that sends nothing.
(Separate processes, a proxy of faults and many hubs: the fault tests' part.)"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import TEST_ALLOWED_HOSTS, _truncate_all
from served_app import served_app
from sqlalchemy import Engine, insert, select

from firmware_bridge import registry
from inventory import sites as inventory_sites
from labhub import db
from labhub.access import accounts
from labhub.access.caller import NETWORK
from labhub.access.permissions import Grant, Role
from labhub.app import create_app
from labhub.network import client, membership
from labhub.network.client_http import Transport
from labhub.network.tables import network_positions
from labhub.settings import Settings
from sensors import runs as run_domain
from sensors.storage import ReadingStore, reading_spans, readings, run_notes, runs, series

pytestmark = pytest.mark.postgres
LAB = "LAB-A"


@pytest.fixture
def central(postgres_url: str, tmp_path: Path) -> Iterator[tuple[str, str, Engine]]:
    """The central (its URL), an admin's API token, and an engine on its database."""
    _truncate_all(postgres_url)
    engine = db.make_engine(postgres_url)
    with engine.begin() as conn:
        inventory_sites.create_site(conn=conn, code="VL", name="Red", kind="network", by="t")
        inventory_sites.create_site(conn=conn, code="VL-R1", name="R1", kind="region",
                                    by="t", parent_code="VL")
        inventory_sites.create_site(conn=conn, code=LAB, name=LAB, kind="site",
                                    tier="lab_point", by="t", parent_code="VL-R1")
        admin = accounts.create_user(conn, name="admin", password_hash=None,
                                     grants_given=[Grant(Role.ADMIN, NETWORK)])
        token = accounts.create_api_token(conn, user_id=admin.id, name="t")[1]
    settings = Settings(data_dir=tmp_path / "central", database_url=postgres_url,
                        role="central", serial_scan=False,
                        allowed_hosts=[*TEST_ALLOWED_HOSTS, "127.0.0.1"])
    try:
        with served_app(create_app(settings), "test-central") as url:
            yield url, token, engine
    finally:
        engine.dispose()


@pytest.fixture
def hub(sqlite_template: Path, tmp_path: Path) -> Iterator[Engine]:
    path = tmp_path / "hub.db"
    shutil.copy(sqlite_template, path)
    engine = db.make_engine(f"sqlite:///{path}")
    yield engine
    engine.dispose()


def enrolment_token(url: str, admin_token: str) -> str:
    t = Transport(url, credential=admin_token)
    try:
        answer = t.request("POST", "/api/v1/network/enrolments", what="enrolling",
                           body=b'{"site": "LAB-A", "hours": 1}',
                           headers={"Content-Type": "application/json"})
    finally:
        t.close()
    token: str = answer.json("enrolling", url)["token"]
    return token


class CutOnce:
    """Transports whose first upload is cut after ``at`` bytes (the socket shut)."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.cut = False

    def __call__(self, m: membership.Membership, settings: Settings,
                 stop: threading.Event) -> Transport:
        t = Transport(m.central_url, credential=m.credential, stop=stop)
        send = t._send_body
        outer = self

        def cut_send(conn: object, body: bytes, *, throttle: bool) -> None:
            if throttle and not outer.cut and len(body) > outer.at:
                outer.cut = True
                send(conn, body[:outer.at], throttle=throttle)  # type: ignore[arg-type]
                conn.sock.shutdown(socket.SHUT_RDWR)  # type: ignore[attr-defined]
                raise ConnectionResetError("cut by the test")
            send(conn, body, throttle=throttle)  # type: ignore[arg-type]

        t._send_body = cut_send  # type: ignore[method-assign]
        return t


def test_a_hub_joins_the_real_central_and_sends_its_records_once(
        central: tuple[str, str, Engine], hub: Engine, tmp_path: Path) -> None:
    url, admin_token, central_db = central
    now = time.time_ns() // 1000
    with hub.begin() as conn:
        conn.execute(insert(registry.devices).values(
            id="estacion-1", kind="lines", name="Estación", site=LAB, port="/dev/ttyUSB0",
            first_seen=now, last_seen=now, online=True, status="ok", lines=1, readings=1,
            rejects=0, settings="{}"))
        for i in range(40):
            run, _ = run_domain.start_run(conn=conn, title=f"Sombra {i}", site=LAB,
                                          channels=[("estacion-1", "temperature")],
                                          started_by="ana")
            run_domain.add_note(conn=conn, run_id=run.id, text="a la sombra " + "x" * 200)
    settings = Settings(data_dir=tmp_path / "hub", database_url=str(hub.url), site=LAB,
                        network_batch_bytes=4096)
    joined = client.join(hub, settings, url, enrolment_token(url, admin_token),
                         name="pi-lab-a")
    assert joined.site == LAB and joined.credential.startswith("lhh_")
    assert joined.clock_offset_us is not None and abs(joined.clock_offset_us) < 1_000_000

    cut = CutOnce(1000)
    summary = client.contact(hub, settings, make_transport=cut)
    assert cut.cut and summary.resumed == 1
    assert summary.sent == {"devices": 1, "runs": 40, "notes": 40}
    assert summary.batches >= 2 and not summary.more
    with central_db.connect() as conn:
        assert conn.execute(select(runs.c.id).where(runs.c.site == LAB)).all().__len__() == 40
        assert len(conn.execute(select(run_notes.c.id)).all()) == 40
        held = {r.stream: r.position for r in conn.execute(
            select(network_positions).where(network_positions.c.hub_id == joined.hub_id))}
    m = client.status(hub)
    assert m.membership is not None and m.membership.last_error is None
    assert set(m.backlog.values()) == {0}
    assert {k: str(v).replace(" ", "") for k, v in m.membership.up_positions.items()
            if v} == {k: v.replace(" ", "") for k, v in held.items()}
    assert abs(m.membership.clock_offset_us or 0) < 1_000_000

    # The first contact's down took in the lab's history as copies of the central's: the
    # next one moves the events' positions past them without sending them back.
    again = client.contact(hub, settings)
    assert not any(again.sent.values())
    assert client.contact(hub, settings).batches == 0


def test_readings_go_up_once_and_the_hubs_journal_shrinks_after(
        central: tuple[str, str, Engine], hub: Engine, tmp_path: Path) -> None:
    """Three batches of a series journal three spans; once the central acknowledged
    them, the contact merges them into one (a span per series and day)."""
    url, admin_token, central_db = central
    store = ReadingStore(hub)
    row = store.ensure_series(device="estacion-1", channel="t", quantity="temperature",
                              unit="degC", site=LAB)
    start = (time.time_ns() // 1000 // 86_400_000_000) * 86_400_000_000  # today, 00:00 UTC
    writer = store.writer()
    try:
        for batch in range(3):
            writer.write([[(row.id, start + (batch * 10 + i) * 1_000_000, 20.0 + i / 10, 0)
                           for i in range(10)]])
    finally:
        writer.close()
    settings = Settings(data_dir=tmp_path / "hub", database_url=str(hub.url), site=LAB)
    client.join(hub, settings, url, enrolment_token(url, admin_token))
    assert client.contact(hub, settings).sent.get("readings") == 30
    with central_db.connect() as conn:
        stored = conn.execute(
            select(readings.c.ts, readings.c.value)
            .join(series, series.c.id == readings.c.series_id)
            .where(series.c.device == f"{LAB}/estacion-1")).all()
    assert len(stored) == 30 and stored[0].value == 20.0
    with hub.connect() as conn:
        assert conn.execute(select(reading_spans.c.rows)).scalars().all() == [30]
    assert not client.contact(hub, settings).sent.get("readings")
