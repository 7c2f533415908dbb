"""Clock corrections on the central (labhub.network.clocks, ``/network/sites/{site}/
clock-corrections``): a lab's readings of a range move by the shift and lose their clock
flag, a reading landing on a taken time becomes a dead letter, other labs stay, and the
correction is recorded with who and how many."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from signed_in import person_token
from sqlalchemy import Engine, text

from inventory import sites
from labhub.access.permissions import Grant, Role
from labhub.app import create_app
from labhub.network import clocks
from labhub.settings import Settings
from sensors.storage import FLAG_CLOCK, FLAG_SUSPECT, ReadingStore

T0 = 1_764_547_200_000_000  # 2025-12-01 00:00 UTC
S = 1_000_000
DAY = 86_400 * S


def _readings(engine: Engine) -> dict[str, int]:
    store = ReadingStore(engine)
    ids = {d: store.ensure_series(device=d, channel="t", quantity=None, unit=None,
                                  site=None).id
           for d in ("LAB-A/st-1", "LAB-A_X/st-1", "LAB-B/st-1")}
    writer = store.writer(journal=False)
    try:
        for sid in ids.values():
            writer.write([[(sid, T0 + i * DAY, float(i), FLAG_CLOCK | (FLAG_SUSPECT if i == 1
                                                                          else 0))
                           for i in range(6)]])
    finally:
        writer.close()
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO network_daily (site, day, readings) VALUES "
                          f"('LAB-A', {T0 // DAY}, 1), ('LAB-A', {T0 // DAY + 1}, 1), "
                          f"('LAB-A', {T0 // DAY + 2}, 1), ('LAB-A', {T0 // DAY + 3}, 1), "
                          f"('LAB-A', {T0 // DAY + 4}, 1), ('LAB-A', {T0 // DAY + 5}, 1)"))
    return ids


def _series(engine: Engine, sid: int) -> list[tuple[int, float, int]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(  # type: ignore[misc]
            "SELECT ts, value, flags FROM readings WHERE series_id = :s ORDER BY ts"),
            {"s": sid})]


def test_a_range_moves_and_a_taken_time_is_kept_as_a_dead_letter(engine: Engine) -> None:
    ids = _readings(engine)
    with engine.begin() as conn:
        done = clocks.correct(conn=conn, site="LAB-A", from_us=T0 + DAY, to_us=T0 + 3 * DAY,
                              shift_us=DAY, by="ana")
    # Day 1 moves to day 2, whose reading moves too (it is in the range); day 2's reading
    # would land on day 3's, which stays: it is kept as a dead letter.
    assert (done.readings, done.conflicts) == (1, 1)
    got = _series(engine, ids["LAB-A/st-1"])
    assert got == [(T0, 0.0, FLAG_CLOCK), (T0 + 2 * DAY, 1.0, FLAG_SUSPECT),
                   (T0 + 3 * DAY, 3.0, FLAG_CLOCK), (T0 + 4 * DAY, 4.0, FLAG_CLOCK),
                   (T0 + 5 * DAY, 5.0, FLAG_CLOCK)]
    for other in ("LAB-A_X/st-1", "LAB-B/st-1"):  # a site whose code merely looks alike
        assert len(_series(engine, ids[other])) == 6
    with engine.connect() as conn:
        dead = conn.execute(text("SELECT source, kind, site, reason FROM dead_letters")).all()
        listed = clocks.corrections(conn=conn, site="LAB-A")
    assert [(d.source, d.kind, d.site) for d in dead] == [("clock-correction",
                                                           "clock_conflict", "LAB-A")]
    assert "lands on a reading already stored" in dead[0].reason
    assert [(c.id, c.readings, c.conflicts, c.by) for c in listed] == [(done.id, 1, 1, "ana")]


def test_bad_ranges_are_refused(engine: Engine) -> None:
    with engine.begin() as conn:
        for start, end, shift, where in ((T0, T0, DAY, "to"), (T0, T0 + 1, 0, "shift_s"),
                                         (T0, T0 + 1, 400 * DAY, "shift_s")):
            with pytest.raises(clocks.ClockCorrectionError) as caught:
                clocks.correct(conn=conn, site="LAB-A", from_us=start, to_us=end,
                               shift_us=shift, by="ana")
            assert caught.value.where == where


@pytest.mark.postgres
def test_a_coordinator_corrects_a_labs_clock_on_the_central(postgres_url: str,
                                                            tmp_path: Path) -> None:
    from conftest import _truncate_all

    _truncate_all(postgres_url)
    settings = Settings(data_dir=tmp_path / "data", database_url=postgres_url, role="central")
    with TestClient(create_app(settings)) as client:
        engine = client.app.state.hub.engine  # type: ignore[attr-defined]
        with engine.begin() as conn:
            sites.create_site(conn=conn, code="VL", name="VL", kind="network", by="t")
            sites.create_site(conn=conn, code="VL-R1", name="R1", kind="region",
                              parent_code="VL", by="t")
            sites.create_site(conn=conn, code="LAB-A", name="Lab A", kind="site",
                              parent_code="VL-R1", tier="lab_point", by="t")
        ids = _readings(engine)
        token = person_token(postgres_url, "coord", Grant(Role.COORDINATOR, "LAB-A"))
        client.headers["Authorization"] = f"Bearer {token}"
        url = "/api/v1/network/sites/LAB-A/clock-corrections"
        bad = client.post(url, json={"from": "2025-12-03T00:00:00Z",
                                     "to": "2025-12-02T00:00:00Z", "shift_s": 60})
        assert bad.status_code == 422
        assert bad.headers["content-type"].startswith("application/problem+json")
        assert "body.to" in bad.json()["detail"]
        answer = client.post(url, json={"from": "2025-12-04T00:00:00Z",
                                        "to": "2025-12-06T00:00:00Z", "shift_s": 3 * 86_400})
        assert answer.status_code == 201, answer.text
        body = answer.json()
        assert (body["readings"], body["conflicts"], body["by"]) == (2, 0, "coord")
        assert body["from"] == "2025-12-04T00:00:00Z"
        assert [r[0] for r in _series(engine, ids["LAB-A/st-1"])][-2:] == [T0 + 6 * DAY,
                                                                            T0 + 7 * DAY]
        assert all(not f & FLAG_CLOCK for ts, _, f in _series(engine, ids["LAB-A/st-1"])
                   if ts > T0 + 5 * DAY)
        listed = client.get(url)
        assert listed.status_code == 200
        assert [c["id"] for c in listed.json()] == [body["id"]]
        with engine.connect() as conn:
            days = dict(conn.execute(text(
                "SELECT day, readings FROM network_daily WHERE site = 'LAB-A'")).all())
        assert days[T0 // DAY + 3] == 0 and days[T0 // DAY + 7] == 1
