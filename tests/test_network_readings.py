"""The readings' up stream (labhub.network.up_readings): a hub's journal sent in sections
of about a budget, every reading once, a large span in parts; the central keeps them under
the lab's device ids, flags them while the hub's clock is off, counts new ones by day, and
a replay adds nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection, Engine, text

from labhub.network.codec import decode
from labhub.network.protocol import ProtocolError, Section, position_key
from labhub.network.streams import FromHub, up_streams
from labhub.network.up_readings import ReadingsStream
from sensors.storage import FLAG_CLOCK, FLAG_SUSPECT, ReadingStore

T0 = 1_764_547_200_000_000  # 2025-12-01 00:00 UTC
S = 1_000_000
DAY = 86_400 * S
HUB = FromHub(hub_id="h-1", site="LAB-A", clock_offset_us=0, clock_suspect=False,
              received_at_us=T0)


def _hub_readings(engine: Engine) -> list[tuple[str, str, int, float, int]]:
    """A station's day: two channels every 10 s in batches of 60, and a third channel
    written at once in one large batch."""
    store = ReadingStore(engine)
    ids = [store.ensure_series(device="st-1", channel=c, quantity="temperature", unit="degC",
                               site=None).id for c in ("t", "h", "p")]
    writer = store.writer()
    want = []
    try:
        for start in range(0, 600, 60):
            rows = []
            for i in range(start, start + 60):
                ts = T0 + i * 10 * S + (DAY if i >= 300 else 0)
                rows += [(ids[0], ts, round(20 + i / 100, 2), 0),
                         (ids[1], ts, round(50 + i / 10, 1), FLAG_SUSPECT if i == 7 else 0)]
            writer.write([rows])
        writer.write([[(ids[2], T0 + i * S, float(i), 0) for i in range(1500)]])
    finally:
        writer.close()
    with engine.connect() as conn:
        for row in conn.execute(text(
                "SELECT s.device, s.channel, r.ts, r.value, r.flags FROM readings r "
                "JOIN series s ON s.id = r.series_id")):
            want.append(tuple(row))
    return want


def _central_readings(conn: Connection) -> list[tuple[str, str, int, float, int]]:
    return [(d.removeprefix("LAB-A/"), c, ts, v, f) for d, c, ts, v, f in conn.execute(text(
        "SELECT s.device, s.channel, r.ts, r.value, r.flags FROM readings r "
        "JOIN series s ON s.id = r.series_id WHERE s.device LIKE 'LAB-A/%' AND s.site = 'LAB-A'"))]


def _sync(engine: Engine, stream: ReadingsStream, budget: int,
          hub: FromHub = HUB) -> tuple[list[Section], int]:
    sections, new, position = [], 0, []
    while True:
        with engine.connect() as conn:
            section = stream.collect(conn, position, budget)
        if section is None:
            return sections, new
        assert section.start == position
        assert position_key(section.to) > position_key(position)
        with engine.begin() as conn:
            new += stream.apply(conn, hub, section)
        sections.append(section)
        position = section.to


def test_a_hubs_readings_arrive_once_in_sections_of_about_the_budget(engine: Engine) -> None:
    stream = up_streams()["readings"]
    assert isinstance(stream, ReadingsStream)
    want = _hub_readings(engine)
    with engine.connect() as conn:
        assert stream.backlog(conn, []) == len(want)
    sections, new = _sync(engine, stream, 1200)
    assert new == len(want) == 2700
    assert len(sections) > 1
    assert all(len(s.data) <= 1200 for s in sections)
    assert sum(s.count for s in sections) >= len(want)
    assert any(len(s.to) == 2 for s in sections)  # the large span went in parts
    with engine.connect() as conn:
        assert sorted(_central_readings(conn)) == sorted(want)
        assert stream.backlog(conn, sections[-1].to) == 0
        daily = dict(conn.execute(text(
            "SELECT day, readings FROM network_daily WHERE site = 'LAB-A'")).all())
        assert daily == {T0 // DAY: 600 + 1500, T0 // DAY + 1: 600}
        units = conn.execute(text("SELECT DISTINCT quantity, unit FROM series "
                                  "WHERE device = 'LAB-A/st-1'")).all()
        assert units == [("temperature", "degC")]
    # Sent again (a central restored from an older backup): nothing new, nothing doubled.
    again, new = _sync(engine, stream, 1 << 20)
    assert new == 0 and len(again) == 1
    with engine.connect() as conn:
        assert conn.execute(text("SELECT sum(readings) FROM network_daily")).scalar_one() \
            == 2700


def test_a_suspect_clock_flags_what_it_sent(engine: Engine) -> None:
    stream = ReadingsStream()
    want = _hub_readings(engine)
    _sync(engine, stream, 1 << 20, FromHub("h-1", "LAB-A", 3 * DAY, True, T0))
    with engine.connect() as conn:
        got = _central_readings(conn)
    assert len(got) == len(want)
    assert all(f & FLAG_CLOCK for *_, f in got)
    assert sum(1 for *_, f in got if f & FLAG_SUSPECT) == 1


def test_collect_reads_on_from_a_position_inside_a_span(engine: Engine) -> None:
    stream = ReadingsStream()
    _hub_readings(engine)
    with engine.connect() as conn:
        first = stream.collect(conn, [], 1 << 20)
        assert first is not None
        spans = conn.execute(text("SELECT seq, ts_min FROM reading_spans ORDER BY seq")).all()
        last_seq, last_min = spans[-1]
        part = stream.collect(conn, [last_seq, last_min + 99 * S], 1 << 20)
        assert part is not None and part.to == [last_seq + 1]
        (got,) = decode(part.data)
        assert (got.channel, got.ts[0], len(got.ts)) == ("p", last_min + 100 * S, 1400)
        assert stream.collect(conn, [last_seq + 1], 1 << 20) is None
        with pytest.raises(ProtocolError, match="position"):
            stream.collect(conn, [1, 2, 3], 100)


def test_bad_bytes_are_refused_and_change_nothing(engine: Engine) -> None:
    stream = ReadingsStream()
    bad = Section("readings", "readings/1", [], [2], 1, b"z\x78\x9c garbage")
    with engine.begin() as conn, pytest.raises(ProtocolError, match="readings section"):
        stream.apply(conn, HUB, bad)


@pytest.mark.postgres
def test_the_central_makes_a_new_months_partition_inside_its_transaction(
        postgres_url: str) -> None:
    from conftest import _truncate_all

    from labhub import db
    from labhub.network.codec import SeriesReadings, encode

    _truncate_all(postgres_url)
    engine = db.make_engine(postgres_url)
    try:
        far = 2_004_000_000_000_000  # 2033-07: no partition yet
        data = encode([SeriesReadings("st-1", "t", None, None, [far, far + S], [1.0, 2.0],
                                      [0, 0])])
        section = Section("readings", "readings/1", [], [2], 2, data)
        with engine.begin() as conn:
            assert ReadingsStream().apply(conn, HUB, section) == 2
        with engine.begin() as conn:  # a replay finds the partition and adds nothing
            assert ReadingsStream().apply(conn, HUB, section) == 0
        more = encode([SeriesReadings("st-1", "t", None, None, [far, far + S, far + 2 * S],
                                      [1.0, 2.0, 3.0], [0, 0, 0])])
        with engine.begin() as conn:  # some stored before, one new: only it is counted
            assert ReadingsStream().apply(conn, HUB, Section("readings", "readings/1", [2],
                                                             [3], 3, more)) == 1
            daily = conn.execute(text("SELECT sum(readings) FROM network_daily")).scalar_one()
            assert daily == 3
        with engine.connect() as conn:
            where = conn.execute(text("SELECT DISTINCT tableoid::regclass::text FROM readings"
                                      )).scalars().all()
        assert where == ["readings_p203307"]
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_two_central_workers_make_the_same_new_month_at_once(postgres_url: str) -> None:
    """Two workers apply batches of two hubs for a month that has no partition yet, each
    in its own transaction: the second waits for the first and finds the partition made,
    instead of failing on it (the batch would have been refused and sent again)."""
    import threading

    from conftest import _truncate_all

    from labhub import db
    from sensors.storage import ensure_partitions

    _truncate_all(postgres_url)
    engine = db.make_engine(postgres_url)
    try:
        month = 2_035_000_000_000_000  # 2034-06: no partition yet
        first = engine.connect()
        first_tx = first.begin()
        ensure_partitions(first, month, month)  # made, not committed yet
        failed: list[BaseException] = []

        def second_worker() -> None:
            try:
                with engine.begin() as conn:
                    ensure_partitions(conn, month, month)
                    conn.exec_driver_sql(  # the transaction goes on after the clash
                        f"INSERT INTO readings (series_id, ts, value, flags) "
                        f"SELECT id, {month}, 1.0, 0 FROM series LIMIT 0")
            except BaseException as exc:
                failed.append(exc)

        other = threading.Thread(target=second_worker)
        other.start()
        other.join(timeout=1.0)
        assert other.is_alive()  # waiting for the first worker's transaction
        first_tx.commit()
        first.close()
        other.join(timeout=30)
        assert not other.is_alive() and failed == []
        with engine.connect() as conn:
            assert conn.exec_driver_sql(
                "SELECT to_regclass('readings_p203406') IS NOT NULL").scalar_one()
    finally:
        engine.dispose()
