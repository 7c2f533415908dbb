"""The MQTT delivery records on both databases: written in the readings' transaction,
found again, overwritten when the broker reuses a packet id, forgotten and pruned."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, func, select

from firmware_bridge.deliveries import DeliveryWrites, digest, forget, mqtt_deliveries, recorded
from sensors.storage import ReadingStore, readings


def _write(engine: Engine, writes: DeliveryWrites) -> None:
    writer = ReadingStore(engine).writer()
    try:
        assert writer.write([], (), [writes]) == []
    finally:
        writer.close()


def _rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(mqtt_deliveries)).scalar_one())


def test_records_are_found_overwritten_forgotten_and_pruned(engine: Engine) -> None:
    a, b = digest("labhub/lab1/esp/t", b"21.5"), digest("labhub/lab1/esp/t", b"21.6")
    assert a != b and len(a) == 32
    assert a != digest("labhub/lab1/esp/h", b"21.5")
    _write(engine, DeliveryWrites("hub-1", records=[(1, a, 100), (2, b, 200), (3, a, 300)]))
    _write(engine, DeliveryWrites("hub-2", records=[(1, b, 150)]))
    assert recorded(engine, "hub-1", [1, 2, 7]) == {1: (a, 100), 2: (b, 200)}
    assert recorded(engine, "hub-2", [1]) == {1: (b, 150)}
    # The broker gave packet id 1 to another message: the newer record wins.
    _write(engine, DeliveryWrites("hub-1", forget=[2], records=[(1, b, 400)]))
    assert recorded(engine, "hub-1", [1, 2, 3]) == {1: (b, 400), 3: (a, 300)}
    forget(engine, DeliveryWrites("hub-1", prune_before=350))
    assert recorded(engine, "hub-1", [1, 3]) == {1: (b, 400)}
    _write(engine, DeliveryWrites("hub-1", forget_all=True, records=[(9, a, 500)]))
    assert recorded(engine, "hub-1", [1, 9]) == {9: (a, 500)}
    assert _rows(engine) == 2  # hub-1's packet id 9 and hub-2's 1
    assert not DeliveryWrites("hub-1") and DeliveryWrites("hub-1", forget=[1])


def test_a_failing_hook_takes_the_readings_of_its_batch_with_it(engine: Engine) -> None:
    """The hook runs in the readings' transaction, also for a batch of several groups
    (written under a savepoint, whose RELEASE on SQLite committed by itself when no
    transaction was open): when the hook fails, nothing of the batch is stored."""
    store = ReadingStore(engine)
    sid = store.ensure_series(device="esp", channel="t", quantity=None, unit=None,
                              site=None).id

    def broken(cursor: object, dialect: str) -> None:
        raise OSError("disk full")

    writer = store.writer()
    try:
        with pytest.raises(OSError, match="disk full"):
            writer.write([[(sid, 1, 1.0, 0)], [(sid, 2, 2.0, 0)]], (), [broken])
        assert writer.write([[(sid, 3, 3.0, 0)], [(sid, 4, 4.0, 0)]], (),
                            [DeliveryWrites("hub-1", records=[(1, "d" * 32, 3)])]) == [1, 1]
    finally:
        writer.close()
    with engine.connect() as conn:
        assert sorted(conn.execute(select(readings.c.ts)).scalars()) == [3, 4]
    assert recorded(engine, "hub-1", [1]) == {1: ("d" * 32, 3)}


def test_many_records_in_one_batch_and_one_packet_id_twice(engine: Engine) -> None:
    """A drained backlog writes and forgets thousands of rows per batch (more than one
    statement holds); a message and its redelivery can meet in one batch with the same
    packet id: the later record wins, on PostgreSQL too (which refuses an upsert that
    touches one row twice)."""
    a, b = digest("labhub/lab1/esp/t", b"1"), digest("labhub/lab1/esp/t", b"2")
    many = [(mid, a, mid) for mid in range(1, 1201)]
    _write(engine, DeliveryWrites("hub-1", records=[*many[:10], (7, b, 9000), *many[10:]]))
    assert _rows(engine) == 1200
    assert recorded(engine, "hub-1", [6, 7, 1200]) == {6: (a, 6), 7: (b, 9000), 1200: (a, 1200)}
    _write(engine, DeliveryWrites("hub-1", forget=list(range(1, 1101))))
    assert _rows(engine) == 100
    assert sorted(recorded(engine, "hub-1", range(1, 1201))) == list(range(1101, 1201))
