"""``labhub users``, ``labhub tokens`` and ``labhub audit-log`` on SQLite and PostgreSQL:
an account made on the command line signs in over HTTP, its token works until revoked,
and the audit log keeps what happened for ``audit_log_days``."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, select
from typer.testing import CliRunner

from labhub import db
from labhub.access import audit
from labhub.access.tables import audit_log
from labhub.app import create_app
from labhub.cli import app
from labhub.settings import Settings


@pytest.fixture
def run(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("LABHUB_DATABASE_URL", database_url)
    monkeypatch.setenv("LABHUB_DATA_DIR", str(tmp_path / "data"))
    return CliRunner()


def _ok(runner: CliRunner, *args: str, stdin: str | None = None) -> str:
    result = runner.invoke(app, list(args), input=stdin)
    assert result.exit_code == 0, result.output
    return result.output


def test_users_and_tokens_round_trip(run: CliRunner, settings: Settings) -> None:
    out = _ok(run, "users", "add", "Marta", "--role", "admin", "--password-stdin",
              stdin="una clave larga\n")
    assert "admin at *" in out
    again = run.invoke(app, ["users", "add", "MARTA", "--role", "admin", "--no-password"])
    assert again.exit_code == 1 and "taken" in again.output
    short = run.invoke(app, ["users", "add", "Leo", "--role", "teacher", "--site", "VC-1",
                             "--password-stdin"], input="corta\n")
    assert short.exit_code == 1 and "at least 8" in short.output
    _ok(run, "users", "add", "Leo", "--role", "teacher", "--site", "VC-1", "--no-password")
    _ok(run, "users", "grant", "Leo", "--role", "student", "--site", "VC-2")
    assert "Leo: student at VC-2, teacher at VC-1" in _ok(run, "users", "list")
    _ok(run, "users", "ungrant", "Leo", "--role", "student", "--site", "VC-2")
    out = _ok(run, "tokens", "add", "--user", "Marta", "--name", "logger",
              "--permission", "readings.read")
    token = out.strip().splitlines()[-1]
    assert token.startswith("lhp_")
    with TestClient(create_app(settings)) as client:
        signed = client.post("/api/v1/auth/sign-in",
                             json={"name": "marta", "password": "una clave larga"})
        assert signed.status_code == 200
        client.cookies.clear()
        client.headers["Authorization"] = f"Bearer {token}"
        assert client.get("/api/v1/auth/me").json()["permissions"] == ["readings.read"]
        token_id = out.split()[1]
        assert token not in _ok(run, "tokens", "list")
        _ok(run, "tokens", "revoke", token_id)
        assert client.get("/api/v1/auth/me").status_code == 401
    log = _ok(run, "audit-log", "--since", "-1d")
    assert "sign_in" in log and "token_revoked" in log and "role_granted" in log
    assert "token_created" in _ok(run, "audit-log", "--action", "token_created")
    _ok(run, "users", "disable", "Marta")
    assert "(disabled)" in _ok(run, "users", "list")


def test_audit_log_entries_older_than_the_setting_are_pruned(database_url: str,
                                                            settings: Settings) -> None:
    engine = db.make_engine(database_url)
    old = audit.now_us() - 400 * audit.US_PER_DAY
    with engine.begin() as conn:
        conn.execute(insert(audit_log).values(at=old, actor="x", action="sign_in",
                                              outcome="ok"))
        audit.record(conn, actor="y", action="sign_in")
    settings.audit_log_days = 365
    with TestClient(create_app(settings)):
        pass  # the hub prunes at start
    with engine.connect() as conn:
        assert conn.execute(select(audit_log.c.actor)).scalars().all() == ["y"]
    engine.dispose()
