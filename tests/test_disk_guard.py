"""The disk guard on a small real file system (a 20 MB tmpfs holding the hub's database):
filled below the threshold, health, the pages' banner for staff and the log say so (the log
once), dead letters are stored without their bodies but counted (an unknown site's
readings keep theirs), and the nightly backup refuses to fill the disk; freed again,
everything recovers and the log says so once."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from signed_in import as_admin
from sqlalchemy import select

from labhub import backup
from labhub import disk as disk_module
from labhub.app import create_app
from labhub.disk import DiskCheck, DiskGuard
from labhub.scheduler.catalog import job_specs
from labhub.scheduler.jobs import JobContext
from labhub.settings import Settings
from labhub.wiring import Hub
from sensors.pipeline import BODY_NOT_KEPT
from sensors.samples import Sample
from sensors.storage import dead_letters

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
THRESHOLD_MB = 8
BANNER_ES = "El disco del hub está casi lleno"
PAYLOAD = b'{"temp": "warm"}' * 100


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 20 MB tmpfs mounted for the test (the tests run as root), unmounted after."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if made.returncode != 0:
        reason = f"cannot mount a tmpfs (root needed): {made.stderr.strip()}"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def _fill(mount: Path, leave_mb: int) -> Path:
    """A file that leaves about ``leave_mb`` MB free on ``mount``."""
    filler = mount / "filler.bin"
    free = shutil.disk_usage(mount).free
    with filler.open("wb") as out:
        chunk = b"\0" * 1_000_000
        for _ in range(max(0, free - leave_mb * 1_000_000) // len(chunk)):
            out.write(chunk)
    return filler


def _letters(hub: Hub) -> list[tuple[str, bytes, int, str, str | None]]:
    with hub.engine.connect() as conn:
        rows = conn.execute(select(
            dead_letters.c.reason, dead_letters.c.payload, dead_letters.c.payload_bytes,
            dead_letters.c.payload_sha256, dead_letters.c.kind,
        ).order_by(dead_letters.c.id)).all()
    return [tuple(r) for r in rows]


def _reject(hub: Hub, **options: object) -> None:
    hub.pipeline.reject(source="test", payload=PAYLOAD, reason="not a reading",
                        device="kit-x", **options).wait(10)  # type: ignore[arg-type]


def test_a_full_disk_warns_keeps_counting_and_recovers(
        small_disk: Path, sqlite_template: Path, caplog: pytest.LogCaptureFixture) -> None:
    shutil.copy(sqlite_template, small_disk / "labhub.db")
    settings = Settings(data_dir=small_disk, database_url=f"sqlite:///{small_disk}/labhub.db",
                        disk_min_free_mb=THRESHOLD_MB, disk_check_every_s=3600,
                        jobs_enabled=False, site=None)
    app = create_app(settings)
    caplog.set_level(logging.INFO, logger="labhub.disk")
    with TestClient(app) as anonymous:
        hub: Hub = app.state.hub
        admin = as_admin(TestClient(app))
        ctx = JobContext(hub=hub, job_id="disk-guard")
        jobs = {spec.id: spec.run for spec in job_specs(settings)}
        assert hub.health()["disk"]["low"] is False  # checked at start
        _reject(hub)
        page = admin.get("/?lang=es")
        assert page.status_code == 200 and BANNER_ES not in page.text

        filler = _fill(small_disk, leave_mb=THRESHOLD_MB // 2)
        result = jobs["disk-guard"](ctx)
        assert "LOW" in result, result
        disk = admin.get("/api/v1/health").json()["disk"]
        assert disk["low"] is True and disk["free_mb"] < THRESHOLD_MB
        assert disk["threshold_mb"] == THRESHOLD_MB and disk["since"] is not None
        assert BANNER_ES in admin.get("/?lang=es").text
        assert "O disco do hub está quase cheio" in admin.get("/live?lang=pt").text
        assert BANNER_ES not in anonymous.get("/signin?lang=es").text  # staff only

        rejected = hub.pipeline.counters()["rejected"]
        _reject(hub)
        hub.pipeline.submit([Sample("temp", float("nan"))], device="kit-x",
                            source="test").wait(10)
        _reject(hub, unknown_site="LAB-NEW")  # readings to replay once the site exists
        assert hub.pipeline.counters()["rejected"] == rejected + 3  # still counted
        before, bare, nan, replayable = _letters(hub)
        assert before[1] == PAYLOAD and BODY_NOT_KEPT not in before[0]
        assert bare[1] == b"" and bare[2] == len(PAYLOAD) and bare[0].endswith(BODY_NOT_KEPT)
        assert bare[3] == hashlib.sha256(PAYLOAD).hexdigest()
        assert nan[1] == b"" and nan[2] > 0 and "not finite" in nan[0]
        assert replayable[1] == PAYLOAD and replayable[4] == "unknown_site"

        # The nightly backup would fill the data's disk: it is not made, and says why.
        with pytest.raises(backup.BackupError, match="no backup made: not enough room"):
            jobs["backup"](JobContext(hub=hub, job_id="backup"))
        assert not list((small_disk / "backups").iterdir())

        jobs["disk-guard"](ctx)  # still low: said once only
        lows = [r for r in caplog.records if "disk space is low" in r.getMessage()]
        assert len(lows) == 1 and lows[0].levelno == logging.WARNING

        filler.unlink()
        assert "LOW" not in jobs["disk-guard"](ctx)
        jobs["disk-guard"](ctx)
        backs = [r for r in caplog.records if "disk space is back" in r.getMessage()]
        assert len(backs) == 1
        disk = hub.health()["disk"]
        assert disk["low"] is False and disk["since"] is None
        assert disk["free_mb"] > THRESHOLD_MB + 1
        assert disk["backup"]["low"] is False  # the same disk, looked at a moment apart
        assert abs(disk["backup"]["free_mb"] - disk["free_mb"]) <= 1
        assert BANNER_ES not in admin.get("/?lang=es").text
        _reject(hub)
        assert _letters(hub)[-1][1] == PAYLOAD
        admin.close()
    hub.engine.dispose()


def test_the_guard_recovers_above_the_threshold_with_a_margin(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    guard = DiskGuard(Settings(data_dir=tmp_path, disk_min_free_mb=1000), check=False)
    free = {"mb": 2000}
    monkeypatch.setattr(disk_module, "look", lambda path: DiskCheck(path, free["mb"], 4000))
    states = []
    for mb in (2000, 999, 1001, 1049, 1050, 999):
        free["mb"] = mb
        states.append(guard.check()["low"])
    # Low below 1,000 MB; back only at 1,050 (5 % above), so 1,001 and 1,049 stay low.
    assert states == [False, True, True, True, False, True]
