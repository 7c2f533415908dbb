"""Queries on every backend: latest values, ranges, buckets and wide rows, checked against
what Python computes from the same readings; store-then-load as a property."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, insert, select

from sensors import queries
from sensors.pipeline import IngestPipeline
from sensors.samples import US_PER_S, Sample
from sensors.storage import DEAD_LETTER_PAYLOAD_MAX, ReadingStore, dead_letters

T0 = 1_767_225_600 * US_PER_S  # 2026-01-01T00:00:00Z


@pytest.fixture
def pipeline(engine: Engine) -> Iterator[IngestPipeline]:
    with IngestPipeline(ReadingStore(engine), flush_interval_s=0.01) as p:
        yield p


def _ids(engine: Engine, device: str) -> dict[str, int]:
    with engine.connect() as conn:
        return {s.channel: s.id for s in queries.list_series(conn=conn, device=device)}


def test_downsampling_matches_python(pipeline: IngestPipeline, engine: Engine) -> None:
    rng = random.Random(7)
    times = sorted(rng.sample(range(0, 7 * 86_400), 3_000))
    values = [rng.uniform(-10, 40) for _ in times]
    pipeline.submit([Sample("temp", v, T0 + t * US_PER_S) for t, v in zip(times, values,
                                                                         strict=True)],
                    device="st", source="t").wait(10)
    sid = _ids(engine, "st")["temp"]
    start, end = T0, T0 + 7 * 86_400 * US_PER_S
    with engine.connect() as conn:
        buckets = queries.downsample(conn=conn, series_id=sid, buckets=50, start=start, end=end)
    width = (end - start) // 50
    expected: dict[int, list[float]] = {}
    for t, v in zip(times, values, strict=True):
        expected.setdefault((t * US_PER_S) // width, []).append(v)
    assert [b.count for b in buckets] == [len(expected[k]) for k in sorted(expected)]
    for b, k in zip(buckets, sorted(expected), strict=True):
        assert b.start == start + k * width and b.end == b.start + width
        assert b.min == min(expected[k]) and b.max == max(expected[k])
        assert b.mean == pytest.approx(sum(expected[k]) / len(expected[k]))
        assert b.start <= b.first_ts <= b.last_ts < b.end
    with engine.connect() as conn:
        whole = queries.downsample(conn=conn, series_id=sid, buckets=1)
    assert whole[0].count == 3_000


def test_latest_and_ranges(pipeline: IngestPipeline, engine: Engine) -> None:
    pipeline.submit([Sample(c, float(i), T0 + i * US_PER_S) for i in range(10)
                     for c in ("a", "b")], device="d", source="t").wait(10)
    pipeline.submit([Sample("c", 5.0, T0)], device="e", source="t").wait(10)
    ids = _ids(engine, "d")
    with engine.connect() as conn:
        newest = queries.latest(conn=conn)
        assert {sid: (x.ts, x.value) for sid, x in newest.items()} == {
            ids["a"]: (T0 + 9 * US_PER_S, 9.0), ids["b"]: (T0 + 9 * US_PER_S, 9.0),
            _ids(engine, "e")["c"]: (T0, 5.0),
        }
        assert set(queries.latest(conn=conn, series_ids=[ids["a"]])) == {ids["a"]}
        assert queries.latest(conn=conn, series_ids=[]) == {}
        got = queries.read_range(conn=conn, series_id=ids["a"], start=T0 + 2 * US_PER_S,
                                 end=T0 + 5 * US_PER_S)
        assert [(t, v) for t, v, _ in got] == [(T0 + k * US_PER_S, float(k)) for k in (2, 3, 4)]


def test_wide_rows_line_up_channels_by_time_across_windows(
    pipeline: IngestPipeline, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queries, "EXPORT_WINDOW_START_US", 7 * US_PER_S)  # many windows
    monkeypatch.setattr(queries, "EXPORT_WINDOW_ROWS", (3, 6))
    samples = [Sample("a", float(i), T0 + i * US_PER_S) for i in range(40)]
    samples += [Sample("b", float(-i), T0 + i * US_PER_S) for i in range(0, 40, 3)]
    samples += [Sample("b", 0.5, T0 + 1000 * US_PER_S)]  # a long gap, then one more
    pipeline.submit(samples, device="d", source="t").wait(10)
    ids = _ids(engine, "d")
    with engine.connect() as conn:
        rows = list(queries.iter_wide(conn=conn, series_ids=[ids["a"], ids["b"]]))
        clipped = list(queries.iter_wide(conn=conn, series_ids=[ids["b"]],
                                         start=T0 + 10 * US_PER_S, end=T0 + 20 * US_PER_S))
    expected = [(T0 + i * US_PER_S, [float(i), float(-i) if i % 3 == 0 else None])
                for i in range(40)]
    expected.append((T0 + 1000 * US_PER_S, [None, 0.5]))
    assert [(t, list(v)) for t, v in rows] == expected
    assert [(t, list(v)) for t, v in clipped] == [
        (T0 + i * US_PER_S, [float(-i)]) for i in (12, 15, 18)
    ]


readings_strategy = st.dictionaries(
    st.integers(min_value=0, max_value=10**9),
    st.floats(min_value=-1e9, max_value=1e9, allow_nan=False),
    min_size=1, max_size=60,
)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=readings_strategy,
    channel=st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=30)
    .filter(str.strip),
)
def test_store_then_load_gives_back_the_readings(
    pipeline: IngestPipeline, engine: Engine, data: dict[int, float], channel: str
) -> None:
    device = f"prop-{uuid.uuid4()}"  # each example its own series
    pipeline.submit([Sample(channel, v, T0 + t) for t, v in data.items()], device=device,
                    source="t").wait(10)
    with engine.connect() as conn:
        sid = queries.get_series(conn=conn, device=device, channel=channel).id
        got = queries.read_range(conn=conn, series_id=sid, limit=1000)
    assert [(t, v) for t, v, _ in got] == sorted((T0 + t, v) for t, v in data.items())


def test_a_dead_letter_keeps_the_start_of_its_payload_with_size_and_digest(
    pipeline: IngestPipeline, engine: Engine
) -> None:
    """A 1 MiB bad payload is stored as its first 64 KiB, its size and its SHA-256: a
    page of 20 of them reads 20 x 64 KiB back, not 20 MiB (tracemalloc's peak over the
    listing stays far below the payloads' size)."""
    import hashlib
    import tracemalloc

    body = bytes(range(256)) * 4096  # 1 MiB
    for i in range(20):
        pipeline.reject(source="http", payload=body + str(i).encode(), reason="bad").wait(10)
    pipeline.reject(source="http", payload=b"short", reason="bad").wait(10)
    with engine.connect() as conn:
        tracemalloc.start()
        try:
            letters = queries.list_dead_letters(conn=conn, limit=21)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        stored = conn.execute(select(func.max(func.length(dead_letters.c.payload)))).scalar()
    assert peak < 6 * 2**20, f"listing 20 dead letters peaked at {peak / 2**20:.1f} MiB"
    assert stored == DEAD_LETTER_PAYLOAD_MAX == 64 * 1024
    short, *big = letters
    assert (short.payload, short.size, short.truncated) == (b"short", 5, False)
    assert short.sha256 == hashlib.sha256(b"short").hexdigest()
    assert [(d.size, d.sha256) for d in big] == [
        (len(body) + len(str(i)), hashlib.sha256(body + str(i).encode()).hexdigest())
        for i in reversed(range(20))
    ]
    assert all(d.payload == body[:DEAD_LETTER_PAYLOAD_MAX] and d.truncated for d in big)


def test_a_dead_letter_stored_whole_before_0010_is_listed_by_its_start(
    engine: Engine,
) -> None:
    body = b"x" * (3 * DEAD_LETTER_PAYLOAD_MAX)
    with engine.begin() as conn:
        conn.execute(insert(dead_letters).values(
            uuid=str(uuid.uuid4()), received_at=T0, source="http", reason="old", payload=body))
        [letter] = queries.list_dead_letters(conn=conn)
    assert letter.payload == body[:DEAD_LETTER_PAYLOAD_MAX]
    assert (letter.size, letter.truncated, letter.sha256) == (len(body), True, None)
