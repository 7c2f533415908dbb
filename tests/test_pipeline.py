"""The ingest pipeline on every backend: validation, conversion, idempotence, durability,
dead letters and back-pressure, counting what went in and what was stored."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from sensors import calibration
from sensors.channels import ChannelMap, ChannelRule, StaticChannelMaps
from sensors.pipeline import IngestPipeline, QueueFullError, StorageFailedError, StoredReading
from sensors.samples import US_PER_S, Sample, now_us
from sensors.storage import (
    FLAG_SUSPECT,
    BatchWriter,
    DeadLetterRow,
    ReadingRow,
    ReadingStore,
    dead_letters,
    readings,
    series,
)

T0 = 1_767_225_600 * US_PER_S  # 2026-01-01T00:00:00Z


@pytest.fixture
def pipeline(engine: Engine) -> Iterator[IngestPipeline]:
    with IngestPipeline(ReadingStore(engine), flush_interval_s=0.05) as p:
        yield p


def _count(engine: Engine, table: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def _stored(engine: Engine) -> list[tuple[str, str, str | None, str | None, int, float, int]]:
    query = (
        select(series.c.device, series.c.channel, series.c.quantity, series.c.unit,
               readings.c.ts, readings.c.value, readings.c.flags)
        .join(series, series.c.id == readings.c.series_id)
        .order_by(series.c.device, series.c.channel, readings.c.ts)
    )
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(query)]  # type: ignore[misc]


def test_readings_are_converted_flagged_and_stored(
    pipeline: IngestPipeline, engine: Engine
) -> None:
    result = pipeline.submit(
        [
            Sample("temp", 212.0, T0, "degF"),
            Sample("hum", 40.5, T0),
            Sample("BME280_pressure", 101_325.0, T0),  # airrohr reports Pa
            Sample("co2", 90_000.0, T0),  # beyond any school CO2 sensor: suspect, but kept
            Sample("my_gadget", 7.0, T0, "widgets"),  # unknown channel: kept as sent
        ],
        device="station-1",
        source="test",
        site="VC-LP-014",
    ).wait(10)
    assert (result.accepted, result.duplicate, result.suspect, result.rejected) == (5, 0, 1, 0)
    assert _stored(engine) == [
        ("station-1", "BME280_pressure", "pressure", "hPa", T0, pytest.approx(1013.25), 0),
        ("station-1", "co2", "co2", "ppm", T0, 90_000.0, FLAG_SUSPECT),
        ("station-1", "hum", "humidity", "%", T0, 40.5, 0),
        ("station-1", "my_gadget", None, "widgets", T0, 7.0, 0),
        ("station-1", "temp", "temperature", "degC", T0, pytest.approx(100.0), 0),
    ]


def test_storing_the_same_reading_twice_stores_it_once(
    pipeline: IngestPipeline, engine: Engine
) -> None:
    batch = [Sample("temp", 20.0 + i, T0 + i * US_PER_S) for i in range(50)]
    first = pipeline.submit(batch, device="d", source="test").wait(10)
    again = pipeline.submit(batch + batch[:10], device="d", source="test").wait(10)
    assert (first.accepted, first.duplicate) == (50, 0)
    assert (again.accepted, again.duplicate) == (0, 60)
    assert _count(engine, readings) == 50
    counters = pipeline.counters()
    assert counters["accepted"] == 50 and counters["duplicate"] == 60


def test_unstorable_readings_go_to_dead_letters_with_the_reason(
    pipeline: IngestPipeline, engine: Engine
) -> None:
    now = now_us()
    result = pipeline.submit(
        [
            Sample("temp", float("nan"), T0),
            Sample("temp", float("inf"), T0 + 1),
            Sample("temp", 21.0, now + 3600 * US_PER_S),  # an hour ahead: clock is wrong
            Sample("temp", 21.0, 5 * US_PER_S),  # 1970: clock never set
            Sample("temp", 21.0, T0, "ppm"),  # a unit temperature cannot have
            Sample("temp", 22.0, T0 + 2),
        ],
        device="d",
        source="test",
        received_at=now,
    ).wait(10)
    assert (result.accepted, result.rejected) == (1, 5)
    with engine.connect() as conn:
        rows = conn.execute(select(dead_letters).order_by(dead_letters.c.id)).all()
    reasons = [r.reason for r in rows]
    assert len(reasons) == 5
    assert "not finite" in reasons[0] and "nan" in reasons[0]
    assert "not finite" in reasons[1]
    assert "in the future" in reasons[2]
    assert "before 2000" in reasons[3]
    assert "'ppm'" in reasons[4] and "degC" in reasons[4]
    assert all(r.source == "test" and r.device == "d" for r in rows)
    assert b'"channel": "temp"' in rows[0].payload


def test_reject_keeps_undecodable_payloads(pipeline: IngestPipeline, engine: Engine) -> None:
    payload = b"\xff\xfe not a reading"
    pipeline.reject(source="serial", payload=payload, reason="line 3: bad token",
                    device="uno").wait(10)
    with engine.connect() as conn:
        row = conn.execute(select(dead_letters)).one()
    assert (bytes(row.payload), row.reason, row.source, row.device) == (
        payload, "line 3: bad token", "serial", "uno"
    )


def test_samples_without_time_get_the_arrival_time(
    pipeline: IngestPipeline, engine: Engine
) -> None:
    pipeline.submit([Sample("temp", 20.0)], device="d", source="t", received_at=T0).wait(10)
    assert _stored(engine)[0][4] == T0


def test_a_ticket_completes_only_after_commit_and_calls_back(
    pipeline: IngestPipeline, engine: Engine
) -> None:
    seen: list[int] = []
    done = threading.Event()

    def on_durable(ticket: object) -> None:
        # The reading is queryable from another connection when the callback runs.
        seen.append(_count(engine, readings))
        done.set()

    pipeline.submit([Sample("temp", 20.0, T0)], device="d", source="t").add_done_callback(
        on_durable
    )
    assert done.wait(10)
    assert seen == [1]


def test_a_small_submission_is_flushed_after_the_delay(engine: Engine) -> None:
    with IngestPipeline(ReadingStore(engine), batch_size=1000, flush_interval_s=0.3) as p:
        started = time.monotonic()
        ticket = p.submit([Sample("temp", 20.0, T0)], device="d", source="t")
        ticket.wait(10)
        waited = time.monotonic() - started
    # Written by the delay, not by a full batch (there was one reading) nor by close().
    assert 0.25 <= waited < 5


def test_concurrent_producers_lose_nothing(engine: Engine) -> None:
    per_thread = 2_000
    with IngestPipeline(ReadingStore(engine), batch_size=500, flush_interval_s=0.02) as p:

        def produce(k: int) -> None:
            for start in range(0, per_thread, 100):
                p.submit(
                    [Sample(f"ch{k}", float(i), T0 + i * US_PER_S)
                     for i in range(start, start + 100)],
                    device=f"dev{k}",
                    source="t",
                )

        threads = [threading.Thread(target=produce, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        p.flush(30)
        assert p.counters()["accepted"] == 4 * per_thread
    assert _count(engine, readings) == 4 * per_thread


class _SlowWriter:
    """A writer seam that waits for permission before each batch: storage falling behind."""

    def __init__(self, real: BatchWriter, gate: threading.Semaphore) -> None:
        self.real = real
        self.gate = gate

    def write(self, groups: Sequence[Sequence[ReadingRow]], dead: Sequence[DeadLetterRow] = ()
              ) -> list[int]:
        self.gate.acquire()
        return self.real.write(groups, dead)

    def close(self) -> None:
        self.real.close()


class _SlowStore(ReadingStore):
    def __init__(self, engine: Engine, gate: threading.Semaphore) -> None:
        super().__init__(engine)
        self.gate = gate

    def writer(self) -> BatchWriter:
        return _SlowWriter(super().writer(), self.gate)  # type: ignore[return-value]


def test_a_full_queue_holds_producers_back_and_loses_nothing(engine: Engine) -> None:
    gate = threading.Semaphore(0)
    store = _SlowStore(engine, gate)
    with IngestPipeline(store, batch_size=100, flush_interval_s=0.01, max_queued=1000) as p:
        for i in range(10):  # 1,000 readings: the queue is now full
            p.submit([Sample("temp", 1.0, T0 + (i * 100 + j) * US_PER_S) for j in range(100)],
                     device="d", source="t")
        with pytest.raises(QueueFullError, match="queue full"):
            p.submit([Sample("temp", 1.0, T0 - US_PER_S)], device="d", source="t", timeout=0.2)
        blocked = threading.Event()
        released = threading.Event()

        def late_producer() -> None:
            blocked.set()
            p.submit([Sample("temp", 2.0, T0 - 2 * US_PER_S)], device="d", source="t")
            released.set()

        thread = threading.Thread(target=late_producer)
        thread.start()
        assert blocked.wait(5)
        assert not released.wait(0.3), "the producer went on although the queue was full"
        for _ in range(1000):
            gate.release()
        assert released.wait(10)
        thread.join()
        p.flush(30)
    assert _count(engine, readings) == 1001


class _BrokenWriter:
    def write(self, groups: object, dead: object = ()) -> list[int]:
        raise OSError("disk is full")

    def close(self) -> None:
        pass


class _BrokenStore(ReadingStore):
    def writer(self) -> BatchWriter:
        return _BrokenWriter()  # type: ignore[return-value]


def test_a_failing_database_fails_the_ticket_instead_of_pretending(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sensors.pipeline.WRITE_RETRY_FIRST_S", 0.001)
    with IngestPipeline(_BrokenStore(engine), flush_interval_s=0.01) as p:
        ticket = p.submit([Sample("temp", 1.0, T0)], device="d", source="t")
        with pytest.raises(StorageFailedError, match="disk is full"):
            ticket.wait(10)
        assert p.counters()["failed"] == 1


class _FlakyStore(ReadingStore):
    """A database that refuses the first two connections (restarting), then works."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.refusals = 2

    def writer(self) -> BatchWriter:
        if self.refusals:
            self.refusals -= 1
            raise ConnectionError("database restarting")
        return super().writer()


def test_the_writer_retries_with_a_fresh_connection(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sensors.pipeline.WRITE_RETRY_FIRST_S", 0.001)
    store = _FlakyStore(engine)
    with IngestPipeline(store, flush_interval_s=0.01) as p:
        result = p.submit([Sample("temp", 1.0, T0)], device="d", source="t").wait(10)
    assert result.accepted == 1 and store.refusals == 0
    assert _count(engine, readings) == 1


@pytest.mark.parametrize(
    ("device", "channel", "complaint"),
    [
        ("d", "\x00", "channel name '\\x00' holds a control character (U+0000) at position 1"),
        ("d", "t\x9b2J", "holds a control character (U+009B) at position 2"),
        ("\u202edevice", "temp", "holds a bidirectional text control (U+202E) at position 1"),
        ("d", " ", "channel name ' ' is empty"),
        ("d", "x" * 201, "longer than 200 characters"),
        ("dev\nice", "temp", "device name"),
        ("d", "\ud800", "not valid Unicode"),
    ],
)
def test_names_that_cannot_be_stored_are_dead_lettered(
    pipeline: IngestPipeline, engine: Engine, device: str, channel: str, complaint: str
) -> None:
    result = pipeline.submit([Sample(channel, 1.0, T0), Sample("ok", 2.0, T0)], device=device,
                             source="t").wait(10)
    assert result.rejected >= 1
    with engine.connect() as conn:
        reasons = [r.reason for r in conn.execute(select(dead_letters))]
    assert any(complaint in r for r in reasons), reasons


def test_a_dead_letter_with_unstorable_text_is_still_stored(
    pipeline: IngestPipeline, engine: Engine
) -> None:
    bad = "dev\x00ice\ud800" + "x" * 300
    pipeline.reject(source="http", payload=b"\x00", reason="bad \x00 reason \udcff",
                    device=bad).wait(10)
    pipeline.submit([Sample("temp", 1.0, T0)], device=bad, source="t", site="s" * 300).wait(10)
    with engine.connect() as conn:
        rows = conn.execute(select(dead_letters).order_by(dead_letters.c.id)).all()
    assert len(rows) == 2
    assert rows[0].device.startswith("dev\\x00ice\\ud800") and len(rows[0].device) == 200
    assert "\x00" not in rows[0].reason
    assert "device name" in rows[1].reason


def test_one_batch_of_many_groups_counts_duplicates_per_group(engine: Engine) -> None:
    store = ReadingStore(engine)
    sid = store.ensure_series(device="d", channel="t", quantity=None, unit=None, site=None).id
    writer = store.writer()
    try:
        assert writer.write([[(sid, 1, 1.0, 0)], [(sid, 2, 2.0, 0)]]) == [1, 1]  # all new
        # A replay inside a batch: the batch is redone group by group to count per group.
        assert writer.write([[(sid, 3, 3.0, 0)], [(sid, 1, 1.0, 0), (sid, 4, 4.0, 0)], [],
                             [(sid, 2, 2.0, 0)]]) == [1, 1, 0, 0]
    finally:
        writer.close()
    assert _count(engine, readings) == 4


_EXAMPLES = itertools.count()
# Group sizes around the writer's pieces of 128, 64, ... rows a statement (SQLite).
_GROUP_SIZES = st.lists(st.integers(min_value=0, max_value=300), min_size=1, max_size=5)


@settings(max_examples=25, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=_GROUP_SIZES, replayed=st.lists(st.integers(min_value=0, max_value=299),
                                             max_size=40), data=st.data())
def test_the_writer_stores_every_row_of_any_batch_once_and_counts_new_ones(
    engine: Engine, sizes: list[int], replayed: list[int], data: st.DataObject
) -> None:
    # Rows are written in multi-row statements of 128, 64, ..., 1 rows: whatever the group
    # sizes, every row is stored exactly once, the first of two equal keys wins, and each
    # group is told how many of its rows were new (replays of stored keys included).
    store = ReadingStore(engine)
    channel = f"t{next(_EXAMPLES)}"  # a series of its own for every example
    sid = store.ensure_series(device="d", channel=channel, quantity=None, unit=None,
                              site=None).id
    first = [(sid, T0 + i, float(i), 0) for i in range(300)]
    writer = store.writer()
    try:
        assert writer.write([first[:100]]) == [100]  # already stored before the batch
        groups: list[list[ReadingRow]] = []
        next_ts = 300
        for size in sizes:
            group = []
            for _ in range(size):
                if replayed and data.draw(st.booleans()):
                    i = replayed[len(group) % len(replayed)]
                    group.append((sid, T0 + i, -1.0, 0))  # an old key, another value
                else:
                    group.append((sid, T0 + next_ts, float(next_ts), 0))
                    next_ts += 1
            groups.append(group)
        expected: dict[int, float] = {T0 + i: float(i) for i in range(100)}
        new_per_group = []
        for group in groups:
            new = 0
            for _, ts, value, _ in group:
                if ts not in expected:
                    expected[ts] = value
                    new += 1
            new_per_group.append(new)
        assert writer.write(groups) == new_per_group
    finally:
        writer.close()
    with engine.connect() as conn:
        stored = conn.execute(
            select(readings.c.ts, readings.c.value).where(readings.c.series_id == sid)
        ).all()
    assert dict(stored) == expected and len(stored) == len(expected)


# A channel map as a device's settings give it: a rename with a calibration and a quantity,
# a calibration alone, and a calibration that fails on some values.
MAPPED = ChannelMap({
    "temp": ChannelRule(name="room", quantity="temperature", calibration=calibration.tmp36()),
    "hum": ChannelRule(calibration=calibration.linear(0.5, 1)),
    "light": ChannelRule(name="luz", unit="lx", calibration=lambda x: 100 / (x - 20)),
})


@pytest.mark.parametrize(
    "case",
    ["plain", "suspect", "not finite", "too old", "new route", "bad name", "calibrated ints",
     "mapped", "mapped and failing"],
)
def test_columns_store_exactly_what_the_same_samples_line_by_line_store(
    engine: Engine, case: str
) -> None:
    # submit_columns checks a column at a time; whatever it meets (a reading out of range,
    # NaN, a time before 2000, a channel not yet seen, a name that cannot be stored), the
    # stored rows, dead letters and results are those of submit() with the same samples.
    now = now_us()
    channels = ["temp", "hum", "light"]
    times = [now - 3_000 + 1_000 * i for i in range(3)]
    columns: list[list[float]] = [[21.5, 21.6, 21.7], [40.0, 41.0, 42.0], [10.0, 20.0, 30.0]]
    if case == "suspect":
        columns[0][1] = 999.0  # beyond any room's temperature: stored, flagged
    elif case == "not finite":
        columns[1][2] = float("nan")
    elif case == "too old":
        times[0] = T0 - 30 * 365 * 86_400 * US_PER_S
    elif case == "bad name":
        channels[2] = "li\x00ght"
    elif case == "calibrated ints":
        columns[2] = [1, 2, 3]  # type: ignore[list-item]
    elif case == "mapped":
        columns[0] = [153.0, 154.0, 155.0]  # TMP36 counts, about 25 degC
        columns[2] = [30.0, 40.0, 50.0]
    elif case == "mapped and failing":
        columns[2] = [10.0, 20.0, 30.0]  # 100 / 0 at 20
    mapped = case.startswith("mapped")
    maps = StaticChannelMaps({"by-lines": MAPPED, "by-columns": MAPPED} if mapped else None)
    results = []
    for device, columnar in (("by-lines", False), ("by-columns", True)):
        with IngestPipeline(ReadingStore(engine), flush_interval_s=0.01,
                            channel_maps=maps) as p:
            if case != "new route":  # the routes are known, as from an earlier chunk
                p.submit([Sample(c, 1.0, T0) for c in channels if "\x00" not in c],
                         device=device, source="t").wait(10)
            if columnar:
                ticket = p.submit_columns(channels, times, columns, device=device, source="t")
            else:
                samples = [Sample(c, column[i], ts) for i, ts in enumerate(times)
                           for c, column in zip(channels, columns, strict=True)]
                ticket = p.submit(samples, device=device, source="t")
            results.append(ticket.wait(10))
    assert results[0] == results[1]
    rows = _stored(engine)
    assert [r[1:] for r in rows if r[0] == "by-lines"] == [
        r[1:] for r in rows if r[0] == "by-columns"]
    assert len(rows) > 6
    with engine.connect() as conn:
        dead = conn.execute(select(dead_letters.c.device, dead_letters.c.reason)
                            .order_by(dead_letters.c.id)).all()
    assert [r.reason for r in dead if r.device == "by-lines"] == [
        r.reason for r in dead if r.device == "by-columns"]
    assert bool(dead) == (case in {"not finite", "too old", "bad name", "mapped and failing"})
    if mapped:
        assert {r[1] for r in rows} == {"room", "hum", "luz"}


def test_the_channel_map_renames_calibrates_and_names_the_quantity(engine: Engine) -> None:
    maps = StaticChannelMaps({"uno-1": MAPPED})
    heard: list[StoredReading] = []
    with IngestPipeline(ReadingStore(engine), flush_interval_s=0.01, channel_maps=maps) as p:
        p.add_listener(lambda source, site, taken: heard.extend(taken))
        result = p.submit([Sample("temp", 153.0, T0), Sample("hum", 40.0, T0),
                           Sample("light", 20.0, T0), Sample("light", 70.0, T0 + 1)],
                          device="uno-1", source="t").wait(10)
        other = p.submit([Sample("temp", 21.5, T0)], device="uno-2", source="t").wait(10)
    assert (result.accepted, result.rejected, other.accepted) == (3, 1, 1)
    assert _stored(engine) == [
        ("uno-1", "hum", "humidity", "%", T0, 21.0, 0),
        ("uno-1", "luz", "illuminance", "lx", T0 + 1, 2.0, 0),  # by its new name
        ("uno-1", "room", "temperature", "degC", T0, pytest.approx(24.78, abs=0.01), 0),
        ("uno-2", "temp", "temperature", "degC", T0, 21.5, 0),  # no map: as sent
    ]
    assert sorted(r[1] for r in heard) == ["hum", "luz", "room", "temp"]
    with engine.connect() as conn:
        reason = conn.execute(select(dead_letters.c.reason)).scalar_one()
    assert "calibration of channel 'light' failed on 20.0" in reason


def test_after_forget_the_next_readings_take_the_new_map(engine: Engine) -> None:
    maps = StaticChannelMaps({"uno-1": ChannelMap({"A0": ChannelRule(
        name="light", calibration=calibration.linear(0.1))})})
    with IngestPipeline(ReadingStore(engine), flush_interval_s=0.01, channel_maps=maps) as p:
        p.submit([Sample("A0", 500.0, T0)], device="uno-1", source="t").wait(10)
        p.submit_columns(["A0"], [T0 + 1], [[500.0]], device="uno-1", source="t").wait(10)
        maps.set("uno-1", ChannelMap({"A0": ChannelRule(
            name="light", calibration=calibration.linear(0.05, 1))}))
        p.submit_columns(["A0"], [T0 + 2], [[500.0]], device="uno-1", source="t").wait(10)
        p.forget("uno-1")  # the settings changed: the next readings take the new map
        p.submit_columns(["A0"], [T0 + 3], [[500.0]], device="uno-1", source="t").wait(10)
        p.submit([Sample("A0", 500.0, T0 + 4)], device="uno-1", source="t").wait(10)
    assert [(r[1], r[5]) for r in _stored(engine)] == [
        ("light", 50.0), ("light", 50.0), ("light", 50.0), ("light", 26.0), ("light", 26.0)]


def test_columns_of_unequal_lengths_are_refused(pipeline: IngestPipeline) -> None:
    with pytest.raises(ValueError, match="one column per channel"):
        pipeline.submit_columns(["a", "b"], [T0], [[1.0]], device="d", source="t")
    with pytest.raises(ValueError, match="one value per time"):
        pipeline.submit_columns(["a"], [T0, T0 + 1], [[1.0]], device="d", source="t")


def test_an_empty_submission_is_not_taken_for_a_flush(engine: Engine) -> None:
    """An empty submission (a message with no readings) waits for the batch like any other;
    it must not count as a flush() call, or later flushes wait the whole flush interval."""
    with IngestPipeline(ReadingStore(engine), flush_interval_s=30, batch_size=10_000) as p:
        empty = p.submit([], device="node-7", source="mqtt")
        p.flush(timeout=5)
        assert empty.wait(0).accepted == 0
        reading = p.submit([Sample("temp", 21.5, now_us())], device="node-7", source="mqtt")
        time.sleep(0.2)
        assert not reading.done(), "a lone reading waits for its batch, not written at once"
        p.flush(timeout=5)
        assert reading.done() and reading.wait(0).accepted == 1
