"""The devices, runs and notes up streams end to end: collected on a hub's SQLite database
(its outbox written by the real triggers), applied on a central's PostgreSQL."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import _truncate_all
from sqlalchemy import Engine, insert, select

from firmware_bridge import registry
from labhub import db
from labhub.network import up_records
from labhub.network.protocol import ProtocolError, Section, unpack_records
from labhub.network.streams import FromHub
from sensors import runs as run_domain
from sensors.storage import run_channels, run_notes, runs

pytestmark = pytest.mark.postgres
LAB = "LAB-A"
STREAMS = {s.name: s for s in up_records.UP}


@pytest.fixture
def hub(sqlite_template: Path, tmp_path: Path) -> Iterator[Engine]:
    path = tmp_path / "hub.db"
    shutil.copy(sqlite_template, path)
    engine = db.make_engine(f"sqlite:///{path}")
    yield engine
    engine.dispose()


@pytest.fixture
def central(postgres_url: str) -> Iterator[Engine]:
    _truncate_all(postgres_url)
    engine = db.make_engine(postgres_url)
    yield engine
    engine.dispose()


def _device(conn: object, device_id: str) -> None:
    now = time.time_ns() // 1000
    conn.execute(insert(registry.devices).values(  # type: ignore[attr-defined]
        id=device_id, kind="lines", name=f"Estación {device_id}", site=LAB,
        port="/dev/ttyUSB0", first_seen=now, last_seen=now, online=True, status="ok",
        lines=10, readings=20, rejects=0, settings="{}"))


def _from(site: str = LAB) -> FromHub:
    return FromHub(hub_id="hub-1", site=site, clock_offset_us=0, clock_suspect=False,
                   received_at_us=time.time_ns() // 1000)


def _send(hub: Engine, central: Engine, name: str, after: list[int], budget: int = 1 << 20,
          site: str = LAB) -> tuple[Section | None, int]:
    with hub.connect() as conn:
        section = STREAMS[name].collect(conn, after, budget)
    if section is None:
        return None, 0
    with central.begin() as conn:
        return section, STREAMS[name].apply(conn, _from(site), section)


def test_runs_notes_and_devices_go_up_once(hub: Engine, central: Engine) -> None:
    with hub.begin() as conn:
        _device(conn, "estacion-1")
        _device(conn, "robot-2")
        run, _ = run_domain.start_run(conn=conn, title="Sombra y sol", group_name="7B",
                                      channels=[("estacion-1", "temperature")],
                                      started_by="ana")
        other, _ = run_domain.start_run(conn=conn, title="Luz", site=LAB,
                                        channels=[("robot-2", "*")])
        run_domain.add_note(conn=conn, run_id=run.id, text="10:42 a la sombra")

    devices, new = _send(hub, central, "devices", [])
    assert devices is not None and new == 2 and devices.to[0] == 1
    assert _send(hub, central, "devices", devices.to) == (None, 0)  # unchanged: nothing
    # Runs one by one (a budget of one byte still takes one record), then the rest.
    first, new = _send(hub, central, "runs", [], budget=1)
    assert first is not None and first.count == 1 and new == 1
    rest, new = _send(hub, central, "runs", first.to)
    assert rest is not None and new == 1 and rest.to > first.to
    with hub.connect() as conn:
        assert STREAMS["runs"].backlog(conn, rest.to) == 0
        assert STREAMS["runs"].backlog(conn, []) == 2
    notes, new = _send(hub, central, "notes", [])
    assert notes is not None and new == 1

    with central.connect() as conn:
        stored = {r.id: r for r in conn.execute(select(runs))}
        channels = set(conn.execute(select(run_channels.c.run_id, run_channels.c.device,
                                           run_channels.c.channel)))
        note = conn.execute(select(run_notes)).one()
        devices_there = {r.id: r for r in conn.execute(select(registry.devices))}
    assert stored[run.id].site == LAB and stored[run.id].title == "Sombra y sol"
    assert stored[run.id].started_by == "ana" and stored[other.id].site == LAB
    assert channels == {(run.id, "LAB-A/estacion-1", "temperature"),
                        (other.id, "LAB-A/robot-2", "*")}
    assert note.run_id == run.id and note.text == "10:42 a la sombra"
    assert set(devices_there) == {"LAB-A/estacion-1", "LAB-A/robot-2"}
    assert all(d.site == LAB and d.online and d.port is None for d in devices_there.values())

    # Sent again (a replay): nothing new, nothing doubled.
    assert _send(hub, central, "runs", [])[1] == 0
    assert _send(hub, central, "notes", [])[1] == 0
    assert _send(hub, central, "devices", [])[1] == 0

    # A run stopped, a device forgotten: the next sections carry them.
    with hub.begin() as conn:
        run_domain.stop_run(conn=conn, run_id=run.id)
        registry.forget_device(conn=conn, device_id="robot-2")
    stopped, new = _send(hub, central, "runs", rest.to)
    assert stopped is not None and new == 0
    assert [r["id"] for r in unpack_records(stopped.data)] == [run.id]
    again, new = _send(hub, central, "devices", devices.to)
    assert again is not None and again.to[0] == 2 and new == 0
    with central.connect() as conn:
        assert conn.execute(select(runs.c.stopped_at).where(runs.c.id == run.id)
                            ).scalar_one() is not None
        online = {r.id: r.online for r in conn.execute(
            select(registry.devices.c.id, registry.devices.c.online))}
    assert online == {"LAB-A/estacion-1": True, "LAB-A/robot-2": False}  # kept, offline


def test_a_hub_writes_only_its_own_labs_records(hub: Engine, central: Engine) -> None:
    with hub.begin() as conn:
        run, _ = run_domain.start_run(conn=conn, title="Luz", site=LAB,
                                      channels=[("estacion-1", "light")])
    with pytest.raises(ProtocolError, match="not of this hub's lab"):
        _send(hub, central, "runs", [], site="LAB-B")
    _send(hub, central, "runs", [])
    with hub.begin() as conn:  # the same run id, claimed by another lab's hub
        conn.execute(runs.update().where(runs.c.id == run.id).values(site=None))
    with pytest.raises(ProtocolError, match="on the central already, at site 'LAB-A'"):
        _send(hub, central, "runs", [], site="LAB-B")
