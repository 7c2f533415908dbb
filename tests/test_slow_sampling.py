"""Slow sampling of a Firmata board: the "firmata-sampling" job asks the hub for one sample
of each board whose ``firmata.sample_every_s`` is due, on the virtual StandardFirmata board
on a real pseudo-terminal. Readings are stored at that pace, one sample set at one time,
the board is quiet between samples, and an unplugged board is logged and tried again."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from waiting import wait_for

from firmware_bridge.errors import DeviceUnavailableError
from firmware_bridge.firmata import FirmataReader, setup_messages
from firmware_bridge.firmata_protocol import report_analog
from firmware_bridge.registry import DeviceSettings, FirmataSettings
from firmware_bridge.sim.firmata_board import VirtualFirmataBoard
from labhub.jobs import schedules as schedule_jobs
from labhub.scheduler.jobs import JobContext
from labhub.settings import Settings
from labhub.wiring import Hub
from sensors.samples import now_us
from sensors.storage import readings, series

DEVICE = "climate-box"
SLOW = DeviceSettings(protocol="firmata", firmata=FirmataSettings(
    analog_pins=[0, 1], sampling_ms=20, reset_wait_s=0.3, sample_every_s=1))


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    settings = Settings(data_dir=tmp_path / "data",
                        database_url=f"sqlite:///{tmp_path / 'hub.db'}")
    hub = Hub(settings).start(hardware=False, jobs=False)
    try:
        yield hub
    finally:
        hub.close()


def _reader(hub: Hub) -> FirmataReader | None:
    if hub.supervisor is None:
        return None
    reader = hub.supervisor.readers().get(DEVICE)
    return reader if isinstance(reader, FirmataReader) else None


def _online(hub: Hub) -> bool:
    reader = _reader(hub)
    return reader is not None and reader.status.online


def _stored(hub: Hub) -> list[tuple[str, int, float]]:
    hub.pipeline.flush(10)
    with hub.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            select(series.c.channel, readings.c.ts, readings.c.value)
            .join(series, series.c.id == readings.c.series_id)
            .where(series.c.device == DEVICE).order_by(readings.c.ts, series.c.channel))]


def test_a_slow_board_reports_nothing_until_sampled() -> None:
    quiet = setup_messages(SLOW.firmata)
    assert report_analog(0, True) not in quiet and report_analog(1, True) not in quiet
    assert report_analog(0, True) in setup_messages(FirmataSettings(analog_pins=[0]))


def test_samples_are_stored_at_their_pace_and_the_board_is_quiet_between(hub: Hub) -> None:
    ctx = JobContext(hub=hub, job_id="firmata-sampling")
    with VirtualFirmataBoard() as board:
        board.set_analog(0, 300)
        board.set_analog(1, 700)
        hub.attach(board.url, SLOW, device_id=DEVICE, name="Climate box")
        wait_for(lambda: _online(hub), 15, "the board online")
        # Set up without reporting: nothing comes until a sample.
        assert board.wait_for(lambda: board.sampling_interval_ms == 20, timeout=10)
        assert board.reporting_analog == set()
        quiet_from = board.reports_sent
        texts = []
        taken: list[int] = []
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            before = board.reports_sent
            text = schedule_jobs.firmata_sampling_at(ctx, now_us())
            texts.append(text)
            if text.startswith("sampled 1"):
                # Between the last sample's end and this one, the board sent nothing.
                assert before == quiet_from, "the board reported between samples"
                taken.append(now_us())
                assert board.wait_for(lambda: not board.reporting_analog, timeout=5)
                quiet_from = board.reports_sent
            else:
                assert text == "no board due for a sample"
            time.sleep(0.05)  # the job's tick, shortened: each call asks whether one is due
        assert 3 <= len(taken) <= 5, texts
        stored = _stored(hub)
        times = sorted({ts for _, ts, _ in stored})
        assert len(times) == len(taken)
        # One sample set per sample: both channels at the same time, the board's values.
        for ts in times:
            assert sorted((c, v) for c, t, v in stored if t == ts) == [("A0", 300.0),
                                                                       ("A1", 700.0)]
        # At the pace asked: the first at once, then one at each whole second (sample
        # times are multiples of the period), each in a second of its own.
        assert len({ts // 1_000_000 for ts in times}) == len(times)
        gaps = [b - a for a, b in itertools.pairwise(times[1:])]
        assert gaps and all(0.5e6 < g < 1.5e6 for g in gaps), gaps
        reader = _reader(hub)
        assert reader is not None and reader.status.samples == len(taken)


def test_a_continuous_board_is_not_sampled(hub: Hub) -> None:
    ctx = JobContext(hub=hub, job_id="firmata-sampling")
    with VirtualFirmataBoard() as board:
        continuous = DeviceSettings(protocol="firmata", firmata=FirmataSettings(
            analog_pins=[0], sampling_ms=50, reset_wait_s=0.3))
        hub.attach(board.url, continuous, device_id=DEVICE)
        wait_for(lambda: _online(hub), 15, "the board online")
        assert schedule_jobs.firmata_sampling_at(ctx, now_us()) == "no board due for a sample"
        with pytest.raises(DeviceUnavailableError, match="reports continuously"):
            hub.sample(DEVICE)


def test_an_unplugged_board_is_logged_once_and_sampled_again_when_back(
    hub: Hub, caplog: pytest.LogCaptureFixture,
) -> None:
    ctx = JobContext(hub=hub, job_id="firmata-sampling")
    caplog.set_level(logging.INFO, logger="labhub.jobs.schedules")
    period = 1_000_000
    t0 = (now_us() // period + 1) * period
    with VirtualFirmataBoard() as board:
        old_url = board.url
        hub.attach(board.url, SLOW, device_id=DEVICE)
        wait_for(lambda: _online(hub), 15, "the board online")
        assert schedule_jobs.firmata_sampling_at(ctx, t0).startswith("sampled 1 boards (2 ")
        board.unplug()
        wait_for(lambda: not _online(hub), 15, "the board seen unplugged")
        # Due at a later period, and at every tick after while it does not answer. (Two
        # periods on: the sample at t0 counts in the period it ended in, which on a busy
        # machine may already be the next one.)
        later = t0 + 2 * period
        for k in range(3):
            text = schedule_jobs.firmata_sampling_at(ctx, later + k * 5_000)
            assert text == f"sampled 0 boards (0 readings); not answering: {DEVICE}"
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and DEVICE in warnings[0].getMessage()
        assert "not connected" in warnings[0].getMessage()
        # Plugged back (on a new pty, as a USB board re-enumerates): sampled at once.
        assert hub.supervisor is not None
        hub.supervisor.remove_port(old_url)
        hub.attach(board.replug(), SLOW, device_id=DEVICE)
        wait_for(lambda: _online(hub), 15, "the board back online")
        text = schedule_jobs.firmata_sampling_at(ctx, later + 20_000)
        assert text.startswith("sampled 1 boards"), text
        assert any("works again" in r.getMessage() for r in caplog.records)
        assert len({ts for _, ts, _ in _stored(hub)}) == 2


def test_a_sample_that_ends_after_a_sample_time_counts_for_it(hub: Hub) -> None:
    """A sample begun just before a sample time and stored just after it is that time's
    sample: the next tick does not take another one in the same period (the board's first
    two sample sets would be a fraction of a second apart)."""
    ctx = JobContext(hub=hub, job_id="firmata-sampling")
    period = 1_000_000
    with VirtualFirmataBoard() as board:
        hub.attach(board.url, SLOW, device_id=DEVICE)
        wait_for(lambda: _online(hub), 15, "the board online")
        sample_time = (now_us() // period + 5) * period
        assert schedule_jobs.firmata_sampling_at(ctx, sample_time - 1).startswith(
            "sampled 1 boards")  # it takes some time, so it ends past the sample time
        assert schedule_jobs.firmata_sampling_at(ctx, sample_time + 10_000) == (
            "no board due for a sample")
        assert schedule_jobs.firmata_sampling_at(ctx, sample_time + 3 * period).startswith(
            "sampled 1 boards")
