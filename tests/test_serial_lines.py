"""Serial sketches through real pseudo-terminals and the real ingest pipeline: framing,
format detection, timestamps, noise, unplug and replug, and no leaks over 1,000 cycles."""

from __future__ import annotations

import itertools
import os
import shutil
import threading
import time
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select
from waiting import wait_for

from firmware_bridge import registry, serial_lines, serial_poller, serial_transport
from firmware_bridge.line_splitter import LineSplitter
from firmware_bridge.serial_lines import LineReader
from firmware_bridge.serial_poller import LinePoller
from firmware_bridge.serial_transport import FakeLineTransport, PortGoneError, SerialTransport
from firmware_bridge.sim.climate import VirtualClimateStation, climate_at
from labhub import db
from sensors import queries
from sensors.calibration import linear
from sensors.channels import ChannelMap, ChannelRule, StaticChannelMaps
from sensors.pipeline import IngestPipeline
from sensors.samples import US_PER_S, Sample, now_us
from sensors.storage import ReadingStore, dead_letters, readings, series


def _count(engine: Engine, table: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


# -- framing -----------------------------------------------------------------------------


def test_the_first_line_is_dropped_and_line_ends_are_stripped() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"mp:21.4,hum:40\r\ntemp:21.5,h") == []
    assert splitter.feed(b"um:41\r\ntemp:21.6\n") == [b"temp:21.5,hum:41", b"temp:21.6"]
    splitter.reset()
    assert splitter.feed(b"half\nwhole\n") == [b"whole"]


def test_an_overlong_line_is_dropped_counted_and_memory_stays_bounded() -> None:
    splitter = LineSplitter(max_line=64, discard_first=False)
    for _ in range(1000):  # 1 MB with no newline, as a wrong baud rate can produce
        assert splitter.feed(b"x" * 1000) == []
        assert len(splitter._buffer) <= 1000 + 64
    assert splitter.feed(b"yyy\nok:1\n") == [b"ok:1"]
    assert splitter.overlong == 1


# -- the reader on a fake transport --------------------------------------------------------


def _reader(pipeline: IngestPipeline, transport: FakeLineTransport, **kw: object) -> LineReader:
    return LineReader(url="fake://1", device_id="uno-1", pipeline=pipeline,
                      open_transport=lambda url, baud: transport, **kw)  # type: ignore[arg-type]


def test_lines_of_one_read_get_distinct_times_and_nothing_decoded_is_lost(
    pipeline: IngestPipeline, engine: Engine
) -> None:
    transport = FakeLineTransport()
    with _reader(pipeline, transport) as reader:
        wait_for(lambda: reader.status.online, what="online")
        transport.feed(b"garbage first line\r\n")
        transport.feed(b"".join(b"temp:%d.5,hum:40\r\n" % i for i in range(50)))
        wait_for(lambda: reader.status.stats.readings == 100, what="100 readings")
        pipeline.flush(10)
        assert reader.status.fmt == "plotter"
    assert pipeline.counters()["accepted"] == 100, pipeline.counters()
    assert _count(engine, readings) == 100
    with engine.connect() as conn:
        sid = queries.get_series(conn=conn, device="uno-1", channel="temp").id
        rows = queries.read_range(conn=conn, series_id=sid)
    assert [v for _, v, _ in rows] == [i + 0.5 for i in range(50)]
    times = [t for t, _, _ in rows]
    assert times == sorted(set(times))


def test_lines_read_together_are_spaced_by_their_bytes_at_the_baud_rate(
    pipeline: IngestPipeline, engine: Engine
) -> None:
    transport = FakeLineTransport()
    with _reader(pipeline, transport, baudrate=9600, fmt="plotter") as reader:
        wait_for(lambda: reader.status.online, what="online")
        transport.feed(b"\n" + b"".join(b"temp:%02d.0\r\n" % i for i in range(5)))
        wait_for(lambda: reader.status.stats.readings == 5, what="5 readings")
        pipeline.flush(10)
    with engine.connect() as conn:
        sid = queries.get_series(conn=conn, device="uno-1", channel="temp").id
        times = [t for t, _, _ in queries.read_range(conn=conn, series_id=sid)]
    # Each line is 11 bytes on the wire: 11 ms apart at 9600 baud (10 bits a byte).
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps == [pytest.approx(11_458, abs=1)] * 4


def test_the_device_channel_map_and_calibration_apply_to_lines_from_a_real_pty(
    engine: Engine
) -> None:
    # The channel map is the device's registry settings, applied by the pipeline: the
    # reader hands over channels as the sketch prints them. A settings change applies to
    # the next lines, with the reader still running.
    with engine.begin() as conn:
        registry.record_seen(conn=conn, device_id="uno-1", kind="lines", defaults=(
            registry.parse_settings({"channels": {"A0": {
                "name": "room_temp", "quantity": "temperature",
                "calibration": {"linear": [500 / 1023, 0]}}}})))
    master, slave = os.openpty()
    with IngestPipeline(ReadingStore(engine), flush_interval_s=0.02,
                        channel_maps=registry.RegistryChannelMaps(engine)) as pipeline:
        try:
            with LineReader(url=os.ttyname(slave), device_id="uno-1", pipeline=pipeline,
                            baudrate=115200, fmt="plotter") as reader:
                wait_for(lambda: reader.status.online, what="online")
                os.write(master, b"\r\nA0:51.15\r\nA0:102.3\r\n")
                wait_for(lambda: reader.status.stats.readings == 2, what="two readings")
                pipeline.flush(10)
                with engine.begin() as conn:
                    registry.configure(conn=conn, device_id="uno-1", settings=(
                        registry.parse_settings({"channels": {"A0": {
                            "name": "room_temp", "calibration": {"linear": [0.1, 1]}}}})))
                pipeline.forget("uno-1")
                os.write(master, b"A0:51.15\r\n")
                wait_for(lambda: reader.status.stats.readings == 3, what="a third reading")
                pipeline.flush(10)
        finally:
            os.close(master)
            os.close(slave)
    with engine.connect() as conn:
        names = [s.channel for s in queries.list_series(conn=conn, device="uno-1")]
        sid = queries.get_series(conn=conn, device="uno-1", channel="room_temp").id
        values = [v for _, v, _ in queries.read_range(conn=conn, series_id=sid)]
    assert names == ["room_temp"]
    assert values == [pytest.approx(25.0), pytest.approx(50.0), pytest.approx(6.115)]


def test_noise_at_the_wrong_baud_rate_is_reported_counted_and_bounded(
    pipeline: IngestPipeline, engine: Engine
) -> None:
    transport = FakeLineTransport()
    noise = bytes((i * 37 + 11) % 256 for i in range(4000)).replace(b"\n", b"\xfe")
    with _reader(pipeline, transport, baudrate=115200, fmt="plotter") as reader:
        wait_for(lambda: reader.status.online, what="online")
        transport.feed(b"\n")
        for i in range(200):
            transport.feed(noise[i * 17 % 3000:][:30] + b"\n")
        wait_for(lambda: reader.status.stats.rejects == 200, what="200 rejects")
        assert "check the baud rate" in reader.status.message
        assert "Serial.begin(115200)" in reader.status.message
        # Good lines again: the hub keeps them and the warning clears.
        transport.feed(b"".join(b"temp:%d\n" % i for i in range(30)))
        wait_for(lambda: reader.status.stats.readings == 30, what="30 readings")
        assert "baud rate" not in reader.status.message
        pipeline.flush(10)
    assert _count(engine, readings) == 30
    assert _count(engine, dead_letters) == serial_lines.DEAD_LETTERS_PER_MINUTE


def test_unplug_marks_offline_and_the_reader_reconnects(
    pipeline: IngestPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serial_lines, "RECONNECT_FIRST_S", 0.01)
    transports: list[FakeLineTransport] = []

    def open_port(url: str, baud: int) -> FakeLineTransport:
        transports.append(FakeLineTransport())
        return transports[-1]

    with LineReader(url="fake://1", device_id="uno-1", pipeline=pipeline,
                    open_transport=open_port) as reader:
        wait_for(lambda: reader.status.online, what="online")
        transports[0].feed(b"\ntemp:1\n")
        transports[0].feed(b"temp:2,hum:")  # cut by the unplug
        transports[0].unplug()
        wait_for(lambda: len(transports) == 2 and reader.status.online, what="reconnect")
        assert transports[0].closed
        transports[1].feed(b"40\ntemp:3\n")  # the first line after a reconnect is dropped
        wait_for(lambda: reader.status.stats.readings == 2, what="2 readings")
        assert reader.status.stats.connects == 2


# -- real pseudo-terminals -----------------------------------------------------------------


@pytest.mark.parametrize("shared_poller", [False, True], ids=["own-thread", "poller"])
def test_a_virtual_climate_station_is_read_through_a_real_pty(
    pipeline: IngestPipeline, engine: Engine, shared_poller: bool
) -> None:
    poller = LinePoller().start() if shared_poller else None
    try:
        with VirtualClimateStation(interval_s=0.01) as station, LineReader(
            url=station.url, device_id="station", pipeline=pipeline, baudrate=115200,
            poller=poller,
        ) as reader:
            wait_for(lambda: reader.status.stats.readings >= 30, what="readings from the pty")
    finally:
        if poller is not None:
            poller.stop()
    pipeline.flush(10)
    with engine.connect() as conn:
        names = {s.channel: s for s in queries.list_series(conn=conn, device="station")}
        assert set(names) == {"temp", "hum", "light"}
        assert names["temp"].quantity == "temperature"
        # The station's LDR prints raw counts: a plain number, not lux.
        assert (names["light"].quantity, names["light"].unit) == (None, None)
        temp = queries.read_range(conn=conn, series_id=names["temp"].id)
    expected, _, _ = climate_at(temp[0][0])
    assert abs(temp[0][1] - expected) < 1.0


@pytest.mark.parametrize("shared_poller", [False, True], ids=["own-thread", "poller"])
def test_a_pulled_cable_is_offline_within_two_seconds(
    pipeline: IngestPipeline, shared_poller: bool
) -> None:
    station = VirtualClimateStation(interval_s=0.02).start()
    poller = LinePoller().start() if shared_poller else None
    try:
        with LineReader(url=station.url, device_id="station", pipeline=pipeline,
                        poller=poller) as reader:
            wait_for(lambda: reader.status.stats.lines >= 3, what="lines")
            pulled = time.monotonic()
            station.unplug()
            wait_for(lambda: not reader.status.online, timeout=2.0, what="offline")
            assert time.monotonic() - pulled < 2.0
            assert "port lost" in reader.status.message or "cannot open" in reader.status.message
    finally:
        station.close()
        if poller is not None:
            poller.stop()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("shared_poller", [False, True], ids=["own-thread", "poller"])
def test_a_thousand_unplug_replug_cycles_leak_nothing(
    sqlite_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    shared_poller: bool,
) -> None:
    # The port cycle is what is tested: one database backend is enough.
    shutil.copy(sqlite_template, tmp_path / "labhub.db")
    engine = db.make_engine(f"sqlite:///{tmp_path / 'labhub.db'}")
    with IngestPipeline(ReadingStore(engine), flush_interval_s=0.02) as pipeline:
        _cycle_a_thousand_times(pipeline, monkeypatch, shared_poller)
    engine.dispose()


def _cycle_a_thousand_times(
    pipeline: IngestPipeline, monkeypatch: pytest.MonkeyPatch, shared_poller: bool
) -> None:
    monkeypatch.setattr(serial_lines, "RECONNECT_FIRST_S", 0.001)
    monkeypatch.setattr(serial_lines, "READ_TIMEOUT_S", 0.05)
    monkeypatch.setattr(serial_poller, "READ_TIMEOUT_S", 0.05)
    monkeypatch.setattr(serial_transport, "READ_COALESCE_S", 0.0005)
    monkeypatch.setattr(serial_poller, "READ_COALESCE_S", 0.0005)
    station = VirtualClimateStation(interval_s=0.001)
    opened = threading.Semaphore(0)

    def open_current(url: str, baud: int) -> SerialTransport:
        # Wherever the station is now; never its old path while it is unplugged: pty
        # numbers are reused machine-wide, and a stale one may be another process's port.
        if not station.plugged:
            raise PortGoneError("unplugged")
        transport = SerialTransport(station.url, baud)
        opened.release()
        return transport

    # The pipeline's writer opens its database connection on its first batch: make that
    # happen before counting, so only the reader's own descriptors are compared.
    pipeline.submit([Sample("warmup", 1.0)], device="station", source="test").wait(10)
    poller = LinePoller().start() if shared_poller else None
    fds_before = _open_fds()
    threads_before = threading.active_count()
    reader = LineReader(url="station", device_id="station", pipeline=pipeline,
                        open_transport=open_current, poller=poller).start()
    try:
        for cycle in range(1000):
            assert opened.acquire(timeout=5), f"cycle {cycle}: no reconnect"
            station.write(b"\ntemp:20\n")
            wait_for(lambda: reader.status.online, what=f"online in cycle {cycle}")
            station.unplug()
            wait_for(lambda: not reader.status.online, what=f"offline in cycle {cycle}")
            station.replug()
        assert reader.status.stats.connects >= 1000
    finally:
        reader.stop()
        station.close()
        if poller is not None:
            poller.stop()
            threads_before -= 1  # the poller's own thread, started before counting
    assert threading.active_count() == threads_before
    assert _open_fds() <= fds_before


def test_a_port_that_cannot_open_says_so(pipeline: IngestPipeline) -> None:
    with pytest.raises(PortGoneError, match="cannot open /dev/labhub-no-such-port"):
        SerialTransport("/dev/labhub-no-such-port", 9600)
    with LineReader(url="/dev/labhub-no-such-port", device_id="x", pipeline=pipeline) as reader:
        wait_for(lambda: "cannot open" in reader.status.message, what="the message")
        assert not reader.status.online


def test_rejected_lines_keep_time_order_of_the_good_ones(
    pipeline: IngestPipeline, engine: Engine
) -> None:
    transport = FakeLineTransport()
    with _reader(pipeline, transport, fmt="plotter") as reader:
        wait_for(lambda: reader.status.online, what="online")
        transport.feed(b"\ntemp:1\ntemp:x\ntemp:3\n")
        wait_for(lambda: reader.status.stats.rejects == 1
                 and reader.status.stats.readings == 2, what="counts")
        pipeline.flush(10)
    with engine.connect() as conn:
        sid = queries.get_series(conn=conn, device="uno-1", channel="temp").id
        rows = queries.read_range(conn=conn, series_id=sid)
    assert [v for _, v, _ in rows] == [1.0, 3.0]
    assert rows[1][0] - rows[0][0] < US_PER_S


# -- decoding a chunk at once gives what decoding line by line gives ----------------------

_WORDS = st.sampled_from(["temp:", "hum:", "light:", "21.5", "-0", "1e3", "nan", "1_0", ",", " ",
                          "\t", ":", "x", "\r", "\r\n", "\n", "\xff", "é"])


@st.composite
def _sketch_output(draw: st.DrawFn) -> list[bytes]:
    """What a sketch prints, cut into reads: mostly lines of one shape, some odd ones."""
    labels = draw(st.sampled_from([["temp", "hum", "light"], ["t"], None]))
    count = len(labels) if labels else draw(st.integers(1, 4))
    lines = []
    for _ in range(draw(st.integers(1, 60))):
        values = [draw(st.one_of(st.floats(-50, 1500).map(lambda v: f"{v:.2f}"),
                                 st.integers(0, 1023).map(str))) for _ in range(count)]
        line = ",".join(values if labels is None else
                        [f"{k}:{v}" for k, v in zip(labels, values, strict=True)])
        if draw(st.integers(0, 9)) == 0:  # now and then something else entirely
            line = "".join(draw(st.lists(_WORDS, max_size=12)))
        lines.append(line.encode() + draw(st.sampled_from([b"\r\n", b"\r\n", b"\n"])))
    stream = b"".join(lines)
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    return [stream[a:b] for a, b in itertools.pairwise([0, *cuts, len(stream)]) if b > a]


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reads=_sketch_output(), mapped=st.booleans())
def test_chunks_decoded_at_once_store_what_lines_decoded_one_by_one_store(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory, reads: list[bytes],
    mapped: bool,
) -> None:
    # Two readers get the same reads at the same moments; one decodes line by line (the
    # reference), one decodes whole chunks when they have the sketch's shape. They must
    # store the same rows, dead letters and counts, and end with the same status.
    start = now_us()
    stored = []
    for chunked in (False, True):
        path = tmp_path_factory.mktemp("chunks") / "labhub.db"
        shutil.copy(sqlite_template, path)
        engine = db.make_engine(f"sqlite:///{path}")
        maps = StaticChannelMaps({"uno-1": ChannelMap({
            "t": ChannelRule(name="temperature"),
            "hum": ChannelRule(calibration=linear(0.5)),
            "value 2": ChannelRule(calibration=linear(5 / 1023)),
        })} if mapped else None)
        with IngestPipeline(ReadingStore(engine), flush_interval_s=0.01,
                            channel_maps=maps) as pipeline:
            reader = LineReader(url="x", device_id="uno-1", pipeline=pipeline,
                                baudrate=115200)
            reader.chunk_decoding = chunked
            reads_at = range(start, start + 50_000 * len(reads), 50_000)  # one every 50 ms
            with mock.patch.object(serial_lines, "now_us", side_effect=list(reads_at)):
                for data in reads:
                    reader._chunk(data)
            pipeline.flush(10)
            counters = pipeline.counters()
            del counters["batches"]  # how the writer thread happened to group them
        with engine.connect() as conn:
            rows = conn.execute(
                select(series.c.channel, readings.c.ts, readings.c.value, readings.c.flags)
                .join(series, series.c.id == readings.c.series_id)
                .order_by(series.c.channel, readings.c.ts)).all()
            dead = conn.execute(select(dead_letters.c.reason, dead_letters.c.payload)
                                .order_by(dead_letters.c.id)).all()
        engine.dispose()
        status = reader.status
        stored.append((rows, dead, counters, status.stats, status.message, status.fmt,
                       reader._last_ts))
    assert stored[0] == stored[1]


def test_a_sketch_of_one_shape_is_decoded_a_chunk_at_a_time(
    pipeline: IngestPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fast way is taken at all: after the first chunk (line by line, which learns the
    # shape) no line of the same shape goes through decode_plotter_line again.
    calls = []
    real = serial_lines._LINE_FORMATS["plotter"]
    monkeypatch.setitem(serial_lines._LINE_FORMATS, "plotter",
                        lambda raw: calls.append(raw) or real(raw))
    reader = LineReader(url="x", device_id="uno-1", pipeline=pipeline, fmt="plotter")
    reader._chunk(b"\ntemp:1,hum:2\r\n")
    assert len(calls) == 1
    for i in range(10):
        reader._chunk(b"temp:%d.5,hum:40\r\ntemp:3,hum:4\r\n" % i)
    assert len(calls) == 1 and reader.status.stats.readings == 42
    reader._chunk(b"temp:1,hum:2,light:3\r\n")  # another shape: line by line, then learned
    reader._chunk(b"temp:1,hum:2,light:3\r\n")
    assert len(calls) == 2 and reader.status.stats.readings == 48
    pipeline.flush(10)
