"""What the hub keeps in memory per name it is sent has a bound.

A hub runs for months, and anything kept per device, channel or request that is never
dropped grows for as long as it runs (``bench/soak.py`` measures the whole process).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from labhub import db
from sensors import pipeline as pipeline_module
from sensors.pipeline import IngestPipeline
from sensors.samples import Sample
from sensors.storage import ReadingStore

T0_S = 1_767_225_600  # 2026-01-01T00:00:00Z


def test_the_pipelines_route_cache_stays_bounded_under_endless_new_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline_module, "MAX_ROUTES", 20)
    engine = db.make_engine(f"sqlite:///{tmp_path}/hub.db")
    db.upgrade(engine)
    try:
        with IngestPipeline(ReadingStore(engine), flush_interval_s=0.01) as pipeline:
            for i in range(100):  # 100 devices never seen again, as a fuzzer sends them
                result = pipeline.submit([Sample("temp", 20.0, T0_S * 1_000_000)],
                                         device=f"fuzz-{i}", source="http").wait(10)
                assert result.accepted == 1
                assert len(pipeline._routes) <= 20
            # Routes dropped are resolved again, to the same series.
            again = pipeline.submit([Sample("temp", 21.0, (T0_S + 1) * 1_000_000)],
                                    device="fuzz-0", source="http").wait(10)
            assert again.accepted == 1
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM series").scalar() == 100
    finally:
        engine.dispose()


# A child process: the hub's app is built, then 8 worker threads each take three
# 16 MiB bodies in 64 KiB chunks and decode them, as upload routes do; prints the growth
# of its resident memory in MiB.
_BODIES = """
import sys, threading
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
from labhub.app import create_app
from labhub.settings import Settings
create_app(Settings(database_url=f"sqlite:///{sys.argv[2]}/hub.db", serial_scan=False))
before = rss()
def serve():
    for _ in range(3):
        body = bytearray()
        for _ in range(256):
            body += b"{" * 65536
        data = bytes(body)
        del body
        text = data.decode()
        del data, text
for _ in range(8):
    worker = threading.Thread(target=serve)
    worker.start()
    worker.join()
print(rss() - before)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_big_bodies_freed_in_worker_threads_leave_the_hub_process(tmp_path: Path) -> None:
    """glibc keeps such blocks in each thread's arena unless told not to (labhub.heap):
    without it the child grows by ~65 MiB here and keeps them."""
    out = subprocess.run([sys.executable, "-c", _BODIES, "app", str(tmp_path)],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    growth = int(out.split()[-1])
    assert growth < 8, f"the hub kept {growth} MiB of freed 16 MiB bodies resident"
