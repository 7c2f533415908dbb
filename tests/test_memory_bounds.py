"""What the hub keeps in memory per name it is sent has a bound.

A hub runs for months, and anything kept per device, channel or request that is never
dropped grows for as long as it runs (``bench/soak.py`` measures the whole process).
"""

from __future__ import annotations

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
