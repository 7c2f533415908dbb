"""The hub's network routes (``GET /api/v1/network/status``, ``POST /api/v1/network/sync``)
and commands (``labhub network join | status | sync | leave``), against the stand-in
central of tests/network_standin.py on a real socket; the hub's database is SQLite."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import _truncate_all
from fastapi.testclient import TestClient
from network_standin import running
from signed_in import as_admin
from typer.testing import CliRunner

from labhub.app import create_app
from labhub.cli import app as cli_app
from labhub.settings import Settings

SITE = "LAB-A"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY",
                "all_proxy"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def db_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "labhub.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def api(db_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path / "data", database_url=db_url,
                        network_sync_every_s=3600)
    with TestClient(create_app(settings)) as client:
        yield as_admin(client)


def cli(db_url: str, tmp_path: Path, *args: str, stdin: str | None = None,
        **env: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli_app, ["network", *args], input=stdin, env={
        "LABHUB_DATABASE_URL": db_url, "LABHUB_DATA_DIR": str(tmp_path / "data"), **env})
    return result.exit_code, result.output


def test_status_and_sync_before_and_after_joining(api: TestClient, db_url: str,
                                                  tmp_path: Path) -> None:
    status = api.get("/api/v1/network/status")
    assert status.status_code == 200 and status.json()["member"] is False
    refused = api.post("/api/v1/network/sync")
    assert refused.status_code == 409
    assert "labhub network join" in refused.json()["detail"]
    with running() as (state, url):
        state.tokens["lhe_api"] = SITE
        code, out = cli(db_url, tmp_path, "join", url, "--token", "lhe_api", "--name", "pi")
        assert code == 0, out
        assert f"joined the network of {url} as hub hub-1 of lab LAB-A" in out
        synced = api.post("/api/v1/network/sync")
        assert synced.status_code == 200, synced.text
        body = synced.json()
        assert body["hub_id"] == "hub-1" and body["site"] == SITE
        assert abs(body["clock_offset_ms"]) < 1000 and body["more"] is False
        asked = [r.split()[1] for r in state.requests[1:]]
        assert asked[0] == "/api/v1/network/hello" and asked[-1] == "/api/v1/network/down"
        status = api.get("/api/v1/network/status").json()
        assert status["member"] and status["central_url"] == url
        assert status["last_contact_at"] is not None and status["last_error"] is None

        state.refuse = 503
        failed = api.post("/api/v1/network/sync")
        assert failed.status_code == 502
        assert failed.json()["detail"] == (
            f"hello (POST {url}/api/v1/network/hello): the central answered 503 Central "
            "is down: the stand-in refuses everything")
        assert api.get("/api/v1/network/status").json()["last_error"] == (
            failed.json()["detail"])


def test_the_commands_join_show_sync_and_leave(db_url: str, tmp_path: Path) -> None:
    code, out = cli(db_url, tmp_path, "status")
    assert code == 0 and "not in a network" in out
    with running() as (state, url):
        state.tokens.update({"lhe_a": SITE, "lhe_b": SITE})
        code, out = cli(db_url, tmp_path, "join", url, "--token", "lhe_a",
                        LABHUB_SITE="LAB-B")
        assert code == 1 and "set up for lab 'LAB-B'" in out and "still unused" in out
        assert "lhe_a" in state.tokens  # refused before it was used
        code, out = cli(db_url, tmp_path, "join", url, "--token", "lhe_b")
        assert code == 0, out
        code, out = cli(db_url, tmp_path, "sync")
        assert code == 0, out
        assert f"contact with {url} as hub hub-1 of lab LAB-A" in out
        assert "\nup: " in out and "down: nothing" in out
        code, out = cli(db_url, tmp_path, "status")
        assert code == 0 and f"central: {url}" in out and "clock offset:" in out
        assert "last contact: never" not in out
    code, out = cli(db_url, tmp_path, "sync")  # the central is gone
    assert code == 1 and "connection refused" in out
    code, out = cli(db_url, tmp_path, "status")
    assert "last error: hello (POST" in out
    code, out = cli(db_url, tmp_path, "leave", stdin="n\n")
    assert code == 1
    code, out = cli(db_url, tmp_path, "leave", "--yes")
    assert code == 0 and f"left the network of {url}" in out
    code, out = cli(db_url, tmp_path, "status")
    assert "not in a network" in out


@pytest.mark.postgres
def test_a_central_answers_that_it_is_the_central(postgres_url: str, tmp_path: Path) -> None:
    _truncate_all(postgres_url)
    settings = Settings(data_dir=tmp_path / "data", database_url=postgres_url,
                        role="central")
    with TestClient(create_app(settings)) as raw:
        assert raw.app.state.hub.network is None  # type: ignore[attr-defined]  # no sync
        api = as_admin(raw)
        for answer in (api.get("/api/v1/network/status"), api.post("/api/v1/network/sync")):
            assert answer.status_code == 409
            assert answer.json()["title"] == "This LabHub is the central"
    code, out = cli(postgres_url, tmp_path, "join", "http://x", "--token", "lhe_x",
                    LABHUB_ROLE="central")
    assert code == 2 and "this LabHub is the network's central" in out
