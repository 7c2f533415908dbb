"""The hub's log (labhub.logs): text or one JSON object per line, uvicorn's loggers in the
same format, and a log file rotated by size that keeps ``log_file_keep`` old files. The
last test runs a real ``labhub serve`` with ``log_format = "json"``."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from labhub import logs
from labhub.settings import Settings


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure() changes the process's loggers: put them back after the test."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    before = {n: (list(logging.getLogger(n).handlers), logging.getLogger(n).propagate,
                   logging.getLogger(n).level, logging.getLogger(n).disabled)
               for n in logs.UVICORN_LOGGERS}
    yield
    for handler in root.handlers:
        if handler not in saved[0]:
            handler.close()
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for name, (handlers, propagate, level, disabled) in before.items():
        logging.getLogger(name).handlers[:] = handlers
        logging.getLogger(name).propagate = propagate
        logging.getLogger(name).setLevel(level)
        logging.getLogger(name).disabled = disabled


async def _no_app(scope: Any, receive: Any, send: Any) -> None:
    """An ASGI app that is never served (a uvicorn config needs one)."""


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_carry_time_level_logger_message_exception_and_extra_fields(
        tmp_path: Path) -> None:
    # A uvicorn configured earlier in this process (a test server at log level warning)
    # set its loggers' levels and handlers: configure() takes them over all the same.
    uvicorn.Config(_no_app, log_level="warning")
    out = io.StringIO()
    logs.configure(Settings(data_dir=tmp_path, log_format="json"), stream=out)
    log = logging.getLogger("labhub.jobs.backups")
    log.info("backup written to %s", "/media/LABHUB/x.db", extra={"job": "backup", "mb": 12})
    try:
        raise ValueError("disk full")
    except ValueError:
        log.exception("backup failed")
    logging.getLogger("uvicorn.access").info('127.0.0.1 - "GET / HTTP/1.1" 200')
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 3
    first, second, access = lines
    assert first["level"] == "INFO" and first["logger"] == "labhub.jobs.backups"
    assert first["message"] == "backup written to /media/LABHUB/x.db"
    assert first["job"] == "backup" and first["mb"] == 12
    assert first["time"].endswith("Z")
    assert abs(time.time() - _epoch(first["time"])) < 60
    assert second["level"] == "ERROR" and "ValueError: disk full" in second["exception"]
    assert access["logger"] == "uvicorn.access"  # uvicorn's own lines: the same format


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@pytest.mark.usefixtures("restore_logging")
def test_text_is_as_before_and_the_file_rotates_keeping_log_file_keep(tmp_path: Path) -> None:
    out = io.StringIO()
    path = tmp_path / "labhub.log"
    handlers = logs.configure(Settings(data_dir=tmp_path, log_file=path, log_file_max_mb=1,
                                       log_file_keep=2, log_level="debug"), stream=out)
    log = logging.getLogger("labhub.test")
    log.debug("small")
    assert " DEBUG labhub.test: small" in out.getvalue()
    line = "x" * 1000
    for _ in range(3500):  # 3.5 MB: the file rotates three times
        log.info(line)
    for handler in handlers:
        handler.flush()
    kept = sorted(p.name for p in tmp_path.glob("labhub.log*"))
    assert kept == ["labhub.log", "labhub.log.1", "labhub.log.2"]
    assert all(p.stat().st_size <= 1024 * 1024 for p in tmp_path.glob("labhub.log*"))
    # Configured again: the old handlers go (no line written twice).
    logs.configure(Settings(data_dir=tmp_path), stream=out)
    before = out.getvalue().count("once")
    log.info("once")
    assert out.getvalue().count("once") == before + 1


def test_a_log_file_that_cannot_be_opened_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="setting log_file"):
        logs.configure(Settings(data_dir=tmp_path, log_file=tmp_path / "no" / "dir.log"),
                       stream=io.StringIO())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(60)
def test_labhub_serve_writes_json_lines_uvicorn_included(tmp_path: Path) -> None:
    port = _free_port()
    log_file = tmp_path / "hub.log"
    env = {**os.environ, "LABHUB_DATA_DIR": str(tmp_path / "data"), "LABHUB_PORT": str(port),
           "LABHUB_LOG_FORMAT": "json", "LABHUB_LOG_FILE": str(log_file),
           "LABHUB_SERIAL_SCAN": "false", "LABHUB_JOBS_ENABLED": "false"}
    proc = subprocess.Popen([str(Path(sys.executable).parent / "labhub"), "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            text = log_file.read_text() if log_file.exists() else ""
            if "Uvicorn running" in text or "Application startup complete" in text:
                break
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.1)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert any(e["logger"].startswith("uvicorn") for e in lines), lines
    assert all({"time", "level", "logger", "message"} <= set(e) for e in lines)
    # Standard error carries the same lines (systemd's journal reads it).
    assert [json.loads(x)["message"] for x in err.decode().splitlines() if x.startswith("{")]
