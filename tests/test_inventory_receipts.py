"""Exactly-once scans (``inventory.receipts``) on SQLite and PostgreSQL: a key is done
once, a second send of it is told apart, a key that is not a UUID is refused by name, and
two connections sending one key at once let exactly one through."""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import Engine

from inventory import receipts
from inventory.errors import InvalidValueError

BY = "Ana (coordinadora)"


def test_a_scan_key_is_received_once(engine: Engine) -> None:
    key = str(uuid.uuid4())
    with engine.begin() as conn:
        assert receipts.first_time(conn=conn, key=key, subject="audit:a", tag="UNO-1", by=BY)
    with engine.begin() as conn:
        assert not receipts.first_time(conn=conn, key=key.upper(), subject="audit:a",
                                       tag="UNO-1", by=BY)
        assert receipts.first_time(conn=conn, key=str(uuid.uuid4()), subject="audit:a",
                                   tag="UNO-2", by=BY)
    with engine.connect() as conn:
        assert receipts.received(conn=conn, subject="audit:a") == 2
        assert receipts.received(conn=conn, subject="audit:b") == 0


def test_a_scan_rolled_back_with_its_work_can_be_sent_again(engine: Engine) -> None:
    key = str(uuid.uuid4())
    def scan_then_fail() -> None:
        with engine.begin() as conn:
            assert receipts.first_time(conn=conn, key=key, subject="loan:KIT-1", tag="KIT-1",
                                       by=BY)
            raise RuntimeError("the scan's work failed")

    with pytest.raises(RuntimeError):
        scan_then_fail()
    with engine.begin() as conn:
        assert receipts.first_time(conn=conn, key=key, subject="loan:KIT-1", tag="KIT-1", by=BY)


@pytest.mark.parametrize("key", ["", "not-a-uuid", "1234", "g" * 36])
def test_a_key_that_is_not_a_uuid_is_refused_by_name(engine: Engine, key: str) -> None:
    with pytest.raises(InvalidValueError, match="scan key"), engine.begin() as conn:
        receipts.first_time(conn=conn, key=key, subject="audit:a", tag="UNO-1", by=BY)


def test_two_sends_of_one_key_at_once_do_it_once(engine: Engine) -> None:
    key = str(uuid.uuid4())
    results: list[bool] = []
    start = threading.Barrier(2)

    def send() -> None:
        start.wait()
        try:
            with engine.begin() as conn:
                results.append(receipts.first_time(conn=conn, key=key, subject="audit:a",
                                                   tag="UNO-1", by=BY))
        except Exception as exc:  # a lock timeout would show here
            results.append(exc)  # type: ignore[arg-type]

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, True], results
