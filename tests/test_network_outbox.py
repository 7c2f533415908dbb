"""The hub's outbox (migration 0018's triggers, ``labhub.network.outbox``): every event,
run and note written is listed once, in order; a central lists nothing; a reader stops
before a young hole in the sequence and steps over an old one."""

from __future__ import annotations

from sqlalchemy import Engine, insert, text

from inventory.history import record_event
from labhub.network import outbox
from labhub.network.tables import network_central, sync_outbox
from sensors import runs
from sensors.samples import now_us


def _write_some(engine: Engine) -> tuple[str, str, str]:
    with engine.begin() as conn:
        event = record_event(conn=conn, kind="SiteCreated", subject="LAB-A", by="ana")
        run, _ = runs.start_run(conn=conn, title="Clima", channels=[("st-1", "t")],
                                started_by="ana")
        note = runs.add_note(conn=conn, run_id=run.id, text="nublado")
        runs.stop_run(conn=conn, run_id=run.id)
    return event.uuid, run.id, note.id


def test_each_write_is_listed_in_order_by_stream(engine: Engine) -> None:
    event, run, note = _write_some(engine)
    with engine.connect() as conn:
        now = now_us()
        got = {s: [(c.key) for c in outbox.after(conn, stream=s, seq=0, limit=10, now_us=now)]
               for s in ("events", "runs", "notes")}
        assert got == {"events": [event], "runs": [run, run], "notes": [note]}
        first_run = outbox.after(conn, stream="runs", seq=0, limit=1, now_us=now)[0]
        assert [c.key for c in outbox.after(conn, stream="runs", seq=first_run.seq, limit=10,
                                            now_us=now)] == [run]
        assert outbox.pending(conn, stream="runs", seq=first_run.seq) == 1
        seqs = [r.seq for r in conn.execute(text("SELECT seq FROM sync_outbox ORDER BY seq"))]
        assert seqs == list(range(seqs[0], seqs[0] + 4))


def test_a_central_keeps_no_outbox(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(insert(network_central).values(id=1, since=now_us()))
    _write_some(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM sync_outbox")).scalar_one() == 0


def test_a_reader_waits_at_a_young_hole_and_steps_over_an_old_one(engine: Engine) -> None:
    now = now_us()
    old = now - 10 * outbox.HOLE_WAIT_US
    with engine.begin() as conn:
        # 1, 2 old; 3 missing (a rolled-back write long ago); 4 old; 5 missing; 6 young
        for seq, at in ((1, old), (2, old), (4, old), (6, now)):
            conn.execute(insert(sync_outbox).values(seq=seq, stream="events", key=f"e{seq}",
                                                    at=at))
    with engine.connect() as conn:
        keys = [c.key for c in outbox.after(conn, stream="events", seq=0, limit=10,
                                            now_us=now)]
        assert keys == ["e1", "e2", "e4"]  # 5 may still commit: 6 waits
        later = now + outbox.HOLE_WAIT_US + 1
        keys = [c.key for c in outbox.after(conn, stream="events", seq=4, limit=10,
                                            now_us=later)]
        assert keys == ["e6"]  # a minute on, the hole is a rollback
