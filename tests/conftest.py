"""Fixtures shared by the whole suite.

The storage and API suites run on every database backend: ``engine`` is parametrized
over a real SQLite file and a real PostgreSQL database. Each test run creates its own
PostgreSQL database (``labhub_test_<random>``) on the server named by
``LABHUB_TEST_POSTGRES_URL`` (default: the local server) and drops it at the end; each
test starts from empty tables. Without a reachable server the PostgreSQL cases are
skipped with the reason, except under ``CI=true``, where that is an error.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from labhub import db
from labhub.settings import Settings
from sensors.channels import StaticChannelMaps
from sensors.pipeline import IngestPipeline
from sensors.storage import ReadingStore

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# The hosts every test's hub answers to (Starlette's test client sends Host: testserver).
TEST_ALLOWED_HOSTS = ("testserver", "localhost")


def _admin_url() -> str:
    return os.environ.get("LABHUB_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a fresh PostgreSQL database for this test run, migrated to the newest schema."""
    admin = make_url(_admin_url()).set(drivername="postgresql+psycopg")
    try:
        admin_engine = create_engine(admin, isolation_level="AUTOCOMMIT")
        with admin_engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        reason = f"no PostgreSQL at {_admin_url()} ({type(exc).__name__}: {exc})"
        if IN_CI:
            pytest.fail(f"{reason}; under CI=true the PostgreSQL suite may not be skipped")
        pytest.skip(reason)
    name = f"labhub_test_{uuid.uuid4().hex[:12]}"
    with admin_engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin.set(database=name).render_as_string(hide_password=False)
    engine = db.make_engine(url)
    db.upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin_engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin_engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each test copies (faster than migrating every time)."""
    path = tmp_path_factory.mktemp("template") / "labhub.db"
    engine = db.make_engine(f"sqlite:///{path}")
    db.upgrade(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


def _truncate_all(url: str) -> None:
    engine = db.make_engine(url)
    names = ", ".join(t.name for m in db.ALL_METADATA for t in reversed(m.sorted_tables))
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty, migrated database: a fresh SQLite file or clean PostgreSQL tables."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "labhub.db"
        shutil.copy(template, path)
        yield f"sqlite:///{path}"
    else:
        url: str = request.getfixturevalue("postgres_url")
        _truncate_all(url)
        yield url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on the test's database; fails the test if it leaves connections checked out."""
    eng = db.make_engine(database_url)
    try:
        yield eng
        assert eng.pool.checkedout() == 0, "a connection was left checked out of the pool"
    finally:
        eng.dispose()


@pytest.fixture
def channel_maps() -> StaticChannelMaps:
    """The devices' channel maps of the ``pipeline`` fixture: none until a test sets one."""
    return StaticChannelMaps()


@pytest.fixture
def pipeline(engine: Engine, channel_maps: StaticChannelMaps) -> Iterator[IngestPipeline]:
    """A running ingest pipeline on the test's database that flushes every 20 ms, so
    readings from a reader's thread show up in the database at once."""
    with IngestPipeline(ReadingStore(engine), flush_interval_s=0.02,
                        channel_maps=channel_maps) as p:
        yield p


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Hub settings on the test's database, with data in the test's directory. Its ingest
    writes every 20 ms (the hub's default: 200), as the ``pipeline`` fixture does: an
    upload answers once its readings are written, so each would wait that long."""
    return Settings(data_dir=tmp_path / "data", database_url=database_url,
                    ingest_flush_ms=20)


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's Chromium through Playwright (tests/web_browser.py), one per test:
    Playwright's threads end with it (the suite checks no thread stays)."""
    from web_browser import launched_browser

    with launched_browser() as chromium:
        yield chromium


@pytest.fixture(autouse=True)
def _no_stray_threads() -> Iterator[None]:
    """Every thread a test starts must be gone when it ends."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while True:
        stray = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not stray or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not stray, f"threads left running: {[t.name for t in stray]}"


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's own labhub.toml or LABHUB_* variables. The tests'
    own file lets the hub answer Starlette's test client, whose requests name the host
    ``testserver``, besides ``localhost`` (a test of the default list sets its own)."""
    for key in list(os.environ):
        if key.startswith("LABHUB_") and key != "LABHUB_TEST_POSTGRES_URL":
            monkeypatch.delenv(key)
    config = tmp_path / "tests-labhub.toml"  # LABHUB_CONFIG must name a file that exists
    config.write_text(f"allowed_hosts = {list(TEST_ALLOWED_HOSTS)!r}\n".replace("'", '"'))
    monkeypatch.setenv("LABHUB_CONFIG", str(config))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI=true a skipped test is a failure: CI must run everything."""
    if not IN_CI:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped:
        for report in skipped:
            print(f"CI=true but skipped: {report.nodeid}: {report.longrepr}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
