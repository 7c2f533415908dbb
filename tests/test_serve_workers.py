"""``labhub serve --workers N``: a central's worker processes share one PostgreSQL, and a
hub refuses to run as several processes (docs/scaling.md)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mqtt_broker import free_port
from typer.testing import CliRunner
from waiting import wait_for

from labhub.cli import app

LABHUB = str(Path(sys.executable).with_name("labhub"))
START_S = 120  # two workers import LabHub at once: ~10 s, 60 s at load 18 on 2 cores


def _children(pid: int) -> list[int]:
    """The process ids whose parent is ``pid`` (Linux /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _workers(pid: int) -> list[int]:
    """uvicorn's worker processes under the ``labhub serve`` process ``pid``."""
    found = []
    for child in _children(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            found.append(child)
    return found


def _server_side_inode(server_port: int, client_port: int) -> str:
    """The socket inode of the server's end of the loopback connection from
    ``client_port`` (``/proc/net/tcp``: local and remote addresses in hex)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if (int(local.split(":")[1], 16) == server_port
                and int(remote.split(":")[1], 16) == client_port):
            return inode
    raise AssertionError(f"no server socket for the connection from port {client_port}")


def _answered_by(connection: http.client.HTTPConnection, server_port: int,
                 workers: list[int]) -> int:
    """Which worker process holds the server's end of the open ``connection``."""
    assert connection.sock is not None
    inode = _server_side_inode(server_port, connection.sock.getsockname()[1])
    holders = [pid for pid in workers
               if any(os.readlink(fd) == f"socket:[{inode}]"
                      for fd in Path(f"/proc/{pid}/fd").iterdir()
                      if _is_link(fd))]
    assert len(holders) == 1, f"socket {inode} is held by {holders} of workers {workers}"
    return holders[0]


def _is_link(path: Path) -> bool:
    try:
        return path.is_symlink()
    except OSError:
        return False


def _health(connection: http.client.HTTPConnection) -> dict[str, object]:
    connection.request("GET", "/api/v1/health")
    answer = connection.getresponse()
    body = answer.read()
    assert answer.status == 200, body
    result: dict[str, object] = json.loads(body)
    return result


@pytest.fixture
def central(postgres_url: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int,
                                                                  Path]]:
    """``labhub serve --workers 2`` as a central on the test run's PostgreSQL database."""
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [LABHUB, "serve", "--port", str(port), "--workers", "2"],
            env={"PATH": os.environ.get("PATH", ""), "LABHUB_CONFIG": os.devnull,
                 "LABHUB_DATA_DIR": str(tmp_path / "data"), "LABHUB_ROLE": "central",
                 "LABHUB_DATABASE_URL": postgres_url, "LABHUB_SERIAL_SCAN": "false",
                 "LABHUB_LOG_LEVEL": "warning"},
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        yield process, port, log
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.postgres
def test_a_central_with_two_workers_answers_from_two_processes(
    central: tuple[subprocess.Popen[bytes], int, Path],
) -> None:
    process, port, log = central

    def up() -> bool:
        assert process.poll() is None, log.read_text()
        if len(_workers(process.pid)) != 2:
            return False
        probe = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            return _health(probe)["database"] == "ok"
        except OSError:
            return False
        finally:
            probe.close()

    wait_for(up, timeout=START_S, what="the central's two workers to answer",
             state=log.read_text)
    workers = _workers(process.pid)
    first = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    second = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    stopped = None
    try:
        assert _health(first)["dialect"] == "postgresql"
        one = _answered_by(first, port, workers)
        # With that worker stopped, only the other can take a new connection: it answers
        # from its own process, on its own connection to PostgreSQL.
        os.kill(one, signal.SIGSTOP)
        stopped = one
        assert _health(second)["database"] == "ok"
        other = _answered_by(second, port, workers)
        assert other != one and {one, other} == set(workers)
        os.kill(one, signal.SIGCONT)
        stopped = None
        assert _health(first)["database"] == "ok"  # the first worker answers again
        assert _answered_by(first, port, workers) == one
    finally:
        if stopped is not None:
            os.kill(stopped, signal.SIGCONT)
        first.close()
        second.close()
    assert "no hardware, MQTT or sync" in log.read_text()


@pytest.mark.parametrize(("env", "said"), [
    ({}, "SQLite takes one writer at a time"),
    ({"LABHUB_ROLE": "central"}, "is sqlite, not PostgreSQL"),
])
def test_several_workers_are_refused_where_they_cannot_share_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], said: str,
) -> None:
    monkeypatch.setenv("LABHUB_DATA_DIR", str(tmp_path / "data"))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(app, ["serve", "--workers", "2"])
    assert result.exit_code == 2, result.output
    assert said in result.output
    assert "--workers 2" in result.output
    assert not (tmp_path / "data").exists()  # refused before it opened anything


def test_a_central_out_of_database_connections_answers_503_with_retry_after(
    tmp_path: Path,
) -> None:
    """Under more load than its database takes, a worker's requests wait for a pooled
    connection; one that waited the pool's whole timeout is a 503 the hub retries, not a
    500 (seen with 1,000 hubs on an overloaded machine)."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from sqlalchemy import create_engine

    from labhub import problems

    engine = create_engine(f"sqlite:///{tmp_path / 'one.db'}", pool_size=1, max_overflow=0,
                           pool_timeout=0.05)
    app = FastAPI()
    problems.install(app)

    @app.get("/busy")
    def busy() -> dict[str, str]:
        with engine.connect(), engine.connect():  # the second waits, then gives up
            return {}

    with TestClient(app) as client:
        answer = client.get("/busy")
    engine.dispose()
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.headers["retry-after"] == str(problems.POOL_BUSY_RETRY_AFTER_S)
    assert "QueuePool limit" in answer.json()["detail"]
