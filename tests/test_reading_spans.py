"""The readings' journal (sensors.storage ``reading_spans``) and, on PostgreSQL, the
readings partitioned by month (migration 0019)."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import Engine, text

from labhub import db
from sensors.storage import (
    ReadingStore,
    compact_spans,
    move_device_series,
    partition_months,
    span_readings,
    span_rows_after,
    spans_after,
)

T0 = 1_764_547_200_000_000  # 2025-12-01 00:00 UTC
S = 1_000_000


def _series(store: ReadingStore, device: str, channel: str) -> int:
    return store.ensure_series(device=device, channel=channel, quantity=None, unit=None,
                               site=None).id


def test_each_batch_journals_one_span_per_series_with_the_rows(engine: Engine) -> None:
    store = ReadingStore(engine)
    a, b = _series(store, "st-1", "t"), _series(store, "st-1", "h")
    writer = store.writer()
    try:
        writer.write([[(a, T0 + 2 * S, 1.0, 0), (b, T0 + 2 * S, 2.0, 0),
                       (a, T0 + 3 * S, 1.5, 0), (b, T0 + 3 * S, 2.5, 0)],
                      [(a, T0 + 9 * S, 3.0, 0)]])
        writer.write([[(b, T0 + 10 * S, 4.0, 1)]])
        assert writer.write([[(b, T0 + 10 * S, 4.0, 1)], []]) == [0, 0]  # a replay: no span
    finally:
        writer.close()
    with engine.connect() as conn:
        spans = spans_after(conn=conn, seq=0, limit=10)
        got = [(s.series_id, s.ts_min, s.ts_max, s.rows) for s in spans]
        assert got == [(a, T0 + 2 * S, T0 + 9 * S, 3), (b, T0 + 2 * S, T0 + 3 * S, 2),
                       (b, T0 + 10 * S, T0 + 10 * S, 1)]
        assert [s.seq for s in spans] == sorted(s.seq for s in spans)
        assert spans_after(conn=conn, seq=spans[1].seq, limit=10) == spans[2:]
        assert span_rows_after(conn=conn, seq=0) == 6
        assert span_rows_after(conn=conn, seq=spans[0].seq) == 3
        first = spans[0]
        assert span_readings(conn=conn, series_id=a, ts_min=first.ts_min,
                             ts_max=first.ts_max) == [(T0 + 2 * S, 1.0, 0),
                                                       (T0 + 3 * S, 1.5, 0),
                                                       (T0 + 9 * S, 3.0, 0)]
        assert span_readings(conn=conn, series_id=a, ts_min=first.ts_min, ts_max=first.ts_max,
                             after_ts=T0 + 2 * S, limit=1) == [(T0 + 3 * S, 1.5, 0)]


def test_a_device_found_under_two_ids_journals_its_merged_readings(engine: Engine) -> None:
    store = ReadingStore(engine)
    old, new = _series(store, "kit-tmp", "t"), _series(store, "kit-1", "t")
    writer = store.writer(journal=False)
    try:
        writer.write([[(old, T0, 1.0, 0), (old, T0 + S, 2.0, 0), (new, T0 + 5 * S, 3.0, 0)]])
    finally:
        writer.close()
    with engine.begin() as conn:
        move_device_series(conn=conn, old="kit-tmp", new="kit-1")
    with engine.connect() as conn:
        spans = spans_after(conn=conn, seq=0, limit=10)
    assert [(s.series_id, s.ts_min, s.ts_max, s.rows) for s in spans] == [
        (new, T0, T0 + 5 * S, 3)]


def test_acknowledged_spans_merge_by_series_and_day(engine: Engine) -> None:
    store = ReadingStore(engine)
    a, b = _series(store, "st-1", "t"), _series(store, "st-1", "h")
    writer = store.writer()
    day = 86_400 * S
    try:
        for i in range(4):  # a batch a second: two spans each
            writer.write([[(a, T0 + i * S, float(i), 0), (b, T0 + i * S, float(i), 0)]])
        writer.write([[(a, T0 + day, 9.0, 0)]])  # the next day
        writer.write([[(a, T0 + day + S, 9.5, 0)]])  # not acknowledged yet
    finally:
        writer.close()
    with engine.begin() as conn:
        seqs = [s.seq for s in spans_after(conn=conn, seq=0, limit=100)]
        assert compact_spans(conn=conn, before_seq=seqs[-1]) == 6
    with engine.connect() as conn:
        got = [(s.seq, s.series_id, s.ts_min, s.ts_max, s.rows)
               for s in spans_after(conn=conn, seq=0, limit=100)]
    assert got == [(seqs[6], a, T0, T0 + 3 * S, 4), (seqs[7], b, T0, T0 + 3 * S, 4),
                   (seqs[8], a, T0 + day, T0 + day, 1), (seqs[9], a, T0 + day + S,
                                                          T0 + day + S, 1)]


def test_a_writer_without_the_journal_keeps_none(engine: Engine) -> None:
    store = ReadingStore(engine)
    a = _series(store, "LAB/st-1", "t")
    writer = store.writer(journal=False)
    try:
        assert writer.write([[(a, T0, 1.0, 0)]]) == [1]
    finally:
        writer.close()
    with engine.connect() as conn:
        assert spans_after(conn=conn, seq=0, limit=10) == []
        assert conn.execute(text("SELECT count(*) FROM readings")).scalar_one() == 1


def test_the_migration_journals_the_readings_already_stored(engine: Engine) -> None:
    config = db.alembic_config(engine)
    command.downgrade(config, "0018_network")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO series (id, device, channel, created_at) "
                          "VALUES (7, 'st-1', 't', 0), (8, 'st-1', 'h', 0)"))
        conn.execute(text("INSERT INTO readings (series_id, ts, value, flags) VALUES "
                          f"(7, {T0}, 1.0, 0), (7, {T0 + 40 * 86_400 * S}, 2.0, 1), "
                          f"(8, {T0 + S}, 3.0, 0)"))
    db.upgrade(engine)
    with engine.connect() as conn:
        spans = spans_after(conn=conn, seq=0, limit=10)
        assert [(s.series_id, s.ts_min, s.ts_max, s.rows) for s in spans] == [
            (7, T0, T0 + 40 * 86_400 * S, 2), (8, T0 + S, T0 + S, 1)]
        assert conn.execute(text("SELECT count(*), sum(flags) FROM readings")).one() == (3, 1)


@pytest.mark.postgres
def test_postgres_readings_go_to_monthly_partitions_made_as_needed(
        postgres_url: str) -> None:
    engine = db.make_engine(postgres_url)
    try:
        store = ReadingStore(engine)
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE series, readings, reading_spans RESTART IDENTITY "
                              "CASCADE"))
        a = _series(store, "st-9", "t")
        far = 1_956_528_000_000_000  # 2032-01-01: no partition was made for it
        writer = store.writer()
        try:
            assert writer.write([[(a, T0, 1.0, 0), (a, far - S, 2.0, 0), (a, far, 3.0, 0)]]) \
                == [3]
            assert writer.write([[(a, far, 3.0, 0)], []]) == [0, 0]  # ON CONFLICT DO NOTHING
        finally:
            writer.close()
        with engine.connect() as conn:
            kind = conn.execute(text("SELECT relkind FROM pg_class WHERE relname = 'readings'"
                                     )).scalar_one()
            assert kind == "p"
            placed = dict(conn.execute(text(
                "SELECT tableoid::regclass::text, count(*) FROM readings GROUP BY 1")).all())
            assert placed == {"readings_p202512": 1, "readings_p203112": 1,
                              "readings_p203201": 1}
            default = conn.execute(text(
                "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'")).scalar_one()
            assert default == 0
            early = conn.execute(text(  # an empty group asked for no partition of 1970
                "SELECT count(*) FROM pg_class WHERE relname LIKE 'readings_p%' "
                "AND relname < 'readings_p2025'")).scalar_one()
            assert early == 0
        with engine.begin() as conn:  # the foreign key holds on a partitioned table
            conn.execute(text("DELETE FROM series WHERE id = :a"), {"a": a})
            assert conn.execute(text("SELECT count(*) FROM readings")).scalar_one() == 0
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_partition_dropped_under_a_writer_is_made_again(postgres_url: str) -> None:
    """An operator drops an old month's partition while the hub runs (docs/scaling.md),
    then a late reading of that month arrives: the writer that remembered the partition
    makes it again instead of failing the batch."""
    engine = db.make_engine(postgres_url)
    try:
        store = ReadingStore(engine)
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE series, readings, reading_spans RESTART IDENTITY "
                              "CASCADE"))
        a = _series(store, "st-8", "t")
        old = 2_019_686_400_000_000  # 2034-01-01
        writer = store.writer()
        try:
            assert writer.write([[(a, old, 1.0, 0)]]) == [1]
            with engine.begin() as conn:
                conn.execute(text("DROP TABLE readings_p203401"))
            assert writer.write([[(a, old + S, 2.0, 0)]]) == [1]
        finally:
            writer.close()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM readings_p203401")).scalar_one() == 1
    finally:
        engine.dispose()


def test_partition_months_cover_a_range_month_by_month() -> None:
    months = partition_months(T0 - 1, T0 + 40 * 86_400 * S)
    assert [m[0] for m in months] == ["readings_p202511", "readings_p202512",
                                      "readings_p202601"]
    assert months[1][1] == T0 and months[0][2] == T0
