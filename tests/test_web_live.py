"""The live feed and its stream: the feed alone (fan-out to the subscribers that may see
an event's site, bounded queues that never block the writer, catch-up after an id, a
reset when the ring no longer holds it, almost nothing done when nobody watches), then the
Server-Sent Events of ``GET /live/events`` over real HTTP from a real ``labhub serve``
process on SQLite and PostgreSQL: a teacher of LAB-A gets LAB-A's readings and device
states and never LAB-B's, a stream that reconnects with ``Last-Event-ID`` gets what it
missed, an id of another run gets a reset, and an open stream does not keep the hub from
stopping."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from signed_in import admin_token, person_token
from web_browser import ServedHub, served_hub
from web_world import make_world

from firmware_bridge import registry
from labhub import db
from labhub.access.permissions import Grant, Role
from labhub.live_feed import (
    QUEUE_BYTES,
    QUEUE_EVENTS,
    RING_EVENTS,
    LiveEvent,
    LiveFeed,
    Subscription,
)
from labhub.web.live import spark_points
from sensors.pipeline import StoredReading


def _reading(device: str, channel: str, value: float, ts: int = 1_000) -> StoredReading:
    return (device, channel, value, ts, "degC", "temperature")


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    found = asyncio.new_event_loop()
    yield found
    found.close()


def _drain(loop: asyncio.AbstractEventLoop, sub: Subscription,
           timeout: float = 0.05) -> tuple[list[LiveEvent], bool]:
    return loop.run_until_complete(sub.next(timeout))


def _at(*sites: str | None) -> Any:
    return lambda site: site in sites


# -- the feed alone ---------------------------------------------------------------------------

def test_an_event_reaches_every_subscriber_that_may_see_its_site_and_no_other(
        loop: asyncio.AbstractEventLoop) -> None:
    feed = LiveFeed()
    a, none_a = feed.subscribe(_at("LAB-A"), loop, None)
    b, none_b = feed.subscribe(_at("LAB-B"), loop, None)
    assert none_a == none_b == []
    feed.readings_committed("http", "LAB-A", [_reading("kit-a", "temp", 21.5)])
    feed.readings_committed("http", "LAB-B", [_reading("kit-b", "temp", 30.0)])
    feed.status_changed("kit-a", "LAB-A", False)
    got_a, behind = _drain(loop, a)
    got_b, _ = _drain(loop, b)
    assert not behind
    assert [e.kind for e in got_a] == ["readings", "status"]
    assert json.loads(got_a[0].data) == [["kit-a", "temp", 21.5, "degC", 1_000]]
    assert json.loads(got_a[1].data)["online"] is False
    assert [json.loads(e.data)[0][0] for e in got_b] == ["kit-b"]
    ids = [e.id for e in got_a]
    assert ids == sorted(ids) and got_b[0].id == ids[0] + 1  # one sequence for all


def test_a_series_sends_at_most_a_sparklines_worth_of_one_submission(
        loop: asyncio.AbstractEventLoop) -> None:
    feed = LiveFeed()
    sub, _ = feed.subscribe(_at(None), loop, None)
    feed.readings_committed("http", None, [_reading("kit", "temp", float(i), i)
                                           for i in range(1_000)])
    [event], _ = _drain(loop, sub)
    rows = json.loads(event.data)
    assert len(rows) == 30 and rows[-1][2] == 999.0  # the newest, oldest first


def test_a_subscriber_that_falls_behind_is_reset_and_never_holds_the_writer(
        loop: asyncio.AbstractEventLoop) -> None:
    feed = LiveFeed()
    slow, _ = feed.subscribe(_at(None), loop, None)
    for i in range(QUEUE_EVENTS * 3):  # nobody drains: the writer goes on regardless
        feed.readings_committed("serial", None, [_reading("kit", "temp", float(i))])
    assert len(slow._queue) <= QUEUE_EVENTS
    events, behind = _drain(loop, slow)
    assert behind and events == []  # told to fetch the current values
    feed.readings_committed("serial", None, [_reading("kit", "temp", 1.0)])
    events, behind = _drain(loop, slow)
    assert not behind and len(events) == 1  # then live again


def test_a_subscriber_is_reset_when_big_events_wait_too_long(
        loop: asyncio.AbstractEventLoop) -> None:
    feed = LiveFeed()
    slow, _ = feed.subscribe(_at(None), loop, None)
    wide = [_reading("kit", f"ch{c}", 1.0) for c in range(2_000)]  # ~70 KB an event
    for _ in range(QUEUE_BYTES // 70_000 + 5):
        feed.readings_committed("http", None, wide)
    assert slow._bytes <= QUEUE_BYTES + 100_000 and len(slow._queue) < QUEUE_EVENTS
    assert _drain(loop, slow)[1]  # behind: reset


def test_a_reconnect_gets_what_it_missed_from_the_ring_or_a_reset(
        loop: asyncio.AbstractEventLoop) -> None:
    feed = LiveFeed()
    sub, _ = feed.subscribe(_at("LAB-A"), loop, None)
    feed.readings_committed("http", "LAB-A", [_reading("kit-a", "temp", 1.0)])
    [first], _ = _drain(loop, sub)
    feed.unsubscribe(sub)  # the phone lost the network
    feed.readings_committed("http", "LAB-A", [_reading("kit-a", "temp", 2.0)])
    feed.readings_committed("http", "LAB-B", [_reading("kit-b", "temp", 9.0)])
    feed.readings_committed("http", "LAB-A", [_reading("kit-a", "temp", 3.0)])
    back, missed = feed.subscribe(_at("LAB-A"), loop, first.id)
    assert missed is not None
    assert [json.loads(e.data)[0][2] for e in missed] == [2.0, 3.0]  # not LAB-B's
    assert feed.subscribe(_at("LAB-A"), loop, first.id - 5)[1] is None  # older: reset
    assert feed.subscribe(_at("LAB-A"), loop, feed.last_id + 7)[1] is None  # another run
    assert feed.subscribe(_at("LAB-A"), loop, feed.last_id)[1] == []  # up to date
    del back


def test_the_ring_keeps_a_fixed_number_of_events(loop: asyncio.AbstractEventLoop) -> None:
    feed = LiveFeed()
    sub, _ = feed.subscribe(_at(None), loop, None)
    start = feed.last_id
    for i in range(RING_EVENTS + 100):
        feed.readings_committed("serial", None, [_reading("kit", "temp", float(i))])
    assert len(feed._ring) == RING_EVENTS
    assert feed.subscribe(_at(None), loop, start)[1] is None  # fell out of the ring
    assert len(feed.subscribe(_at(None), loop, feed.last_id - 10)[1] or []) == 10
    del sub


def test_with_nobody_watching_a_submission_only_moves_the_id_on(
        loop: asyncio.AbstractEventLoop) -> None:
    feed = LiveFeed()
    before = feed.last_id
    feed.readings_committed("serial", None, [_reading("kit", "temp", 1.0)])
    assert feed.last_id == before + 1 and len(feed._ring) == 0
    # A stream that had seen `before` missed a reading: it is told to reset.
    assert feed.subscribe(_at(None), loop, before)[1] is None


def test_a_page_just_rendered_keeps_events_for_its_stream(
        loop: asyncio.AbstractEventLoop) -> None:
    feed = LiveFeed()
    since = feed.page_opened()
    feed.readings_committed("serial", None, [_reading("kit", "temp", 1.0)])
    sub, missed = feed.subscribe(_at(None), loop, since)
    assert missed is not None and len(missed) == 1
    del sub


def test_a_state_is_told_once_per_change_and_closing_ends_every_stream(
        loop: asyncio.AbstractEventLoop) -> None:
    feed = LiveFeed()
    sub, _ = feed.subscribe(_at(None), loop, None)
    feed.states([("kit", None, True)])  # first seen: only noted
    feed.states([("kit", None, True)])
    feed.states([("kit", None, False)])
    feed.status_changed("kit", None, False)  # the same: nothing new
    events, _ = _drain(loop, sub)
    assert [json.loads(e.data)["online"] for e in events] == [False]
    feed.close()
    assert sub.closed
    late, _ = feed.subscribe(_at(None), loop, None)
    assert late.closed  # a stream that connects while the hub stops ends at once


def test_a_sparkline_fills_its_box() -> None:
    assert spark_points([]) == ""
    assert spark_points([5.0]) == "0.0,12.0 100.0,12.0"
    assert spark_points([0.0, 10.0, 5.0]) == "0.0,22.0 50.0,2.0 100.0,12.0"


# -- the stream over HTTP -------------------------------------------------------------------

TEACHER_OF_A = "Profe Live A"


def _upload(client: httpx2.Client, hub: ServedHub, token: str, device: str,
            value: float) -> None:
    answer = client.post(f"{hub.base}/api/v1/readings",
                         headers={"Authorization": f"Bearer {token}"},
                         json={"device": device, "readings": [
                             {"channel": "temp", "value": value, "unit": "degC"}]})
    assert answer.status_code == 200, answer.text


class Stream:
    """An open ``/live/events`` stream, read event by event."""

    def __init__(self, response: Any) -> None:
        self.response = response
        self.lines = response.iter_lines()

    def next_event(self) -> dict[str, str]:
        event: dict[str, str] = {}
        for line in self.lines:
            if line == "":
                if "event" in event or "id" in event:
                    return event
                event = {}
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            event[name] = value.removeprefix(" ")
        raise EOFError("the stream ended")

    def readings_until(self, value: float) -> list[list[Any]]:
        """Every reading until one with ``value`` (the event's id kept in ``last_id``)."""
        seen: list[list[Any]] = []
        while True:
            event = self.next_event()
            if event.get("event") == "readings":
                self.last_id = event["id"]
                seen += json.loads(event["data"])
                if any(row[2] == value for row in seen):
                    return seen


def _read_to_the_end(stream: Stream) -> None:
    while True:
        stream.next_event()


@pytest.fixture
def lab(tmp_path: Path, database_url: str) -> Iterator[tuple[ServedHub, str, str]]:
    """A served hub of LAB-A with the web world, an admin's token and a LAB-A teacher's."""
    engine = db.make_engine(database_url)
    try:
        if engine.dialect.name == "sqlite":
            db.upgrade(engine)
        make_world(engine)
    finally:
        engine.dispose()
    admin = admin_token(database_url)
    teacher = person_token(database_url, TEACHER_OF_A, Grant(Role.TEACHER, "LAB-A"))
    with served_hub(tmp_path, database_url) as hub:
        yield hub, admin, teacher


def test_a_teacher_of_one_lab_gets_its_readings_live_and_never_anothers(
        lab: tuple[ServedHub, str, str]) -> None:
    hub, admin, teacher = lab
    with httpx2.Client(timeout=10) as client:
        headers = {"Authorization": f"Bearer {teacher}"}
        with client.stream("GET", f"{hub.base}/live/events", headers=headers) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert "content-encoding" not in response.headers  # never compressed
            stream = Stream(response)
            _upload(client, hub, admin, "kit-b", 99.0)  # LAB-B: not the teacher's
            _upload(client, hub, admin, "kit-a", 21.5)
            seen = stream.readings_until(21.5)
            assert {row[0] for row in seen} == {"kit-a"}
            assert seen[-1][:4] == ["kit-a", "temp", 21.5, "degC"]
            last_id = stream.last_id
        # Disconnected: two readings meanwhile; the reconnect asks for what came after.
        _upload(client, hub, admin, "kit-a", 22.0)
        _upload(client, hub, admin, "kit-b", 98.0)
        _upload(client, hub, admin, "kit-a", 22.5)
        with client.stream("GET", f"{hub.base}/live/events",
                           headers={**headers, "Last-Event-ID": last_id}) as response:
            stream = Stream(response)
            values = [row[2] for row in stream.readings_until(22.5)]
            assert values == [22.0, 22.5]  # caught up, in order, LAB-B's left out
        # An id this run of the hub never gave: a reset (the page fetches the values).
        with client.stream("GET", f"{hub.base}/live/events",
                           headers={**headers, "Last-Event-ID": "12"}) as response:
            stream = Stream(response)
            assert stream.next_event()["event"] == "reset"
        # A device's state changes in the registry (a board the supervisor marks offline,
        # or back): the stream says so within seconds; LAB-B's change it never says.
        with client.stream("GET", f"{hub.base}/live/events", headers=headers) as response:
            stream = Stream(response)
            engine = db.make_engine(hub.database_url)
            try:
                with engine.begin() as conn:
                    registry.update_status(conn=conn, device_id="kit-b", online=False)
                    registry.update_status(conn=conn, device_id="kit-a2", online=True)
            finally:
                engine.dispose()
            event = stream.next_event()
            assert event["event"] == "status"
            assert json.loads(event["data"])["device"] == "kit-a2"
            assert json.loads(event["data"])["online"] is True
        # The pages' files travel compressed; the API's answers as they are.
        script = client.get(f"{hub.base}/static/live.js")
        assert script.headers["content-encoding"] == "gzip" and "EventSource" in script.text
        health = client.get(f"{hub.base}/api/v1/health")
        assert "content-encoding" not in health.headers
        # The gate: no session, no stream (a page route sends the browser to sign in).
        refused = client.get(f"{hub.base}/live/events")
        assert refused.status_code == 303 and "/signin" in refused.headers["location"]


def test_an_open_stream_does_not_keep_the_hub_from_stopping(
        lab: tuple[ServedHub, str, str]) -> None:
    hub, _admin, teacher = lab
    with httpx2.Client(timeout=10) as client, client.stream(
            "GET", f"{hub.base}/live/events",
            headers={"Authorization": f"Bearer {teacher}"}) as response:
        stream = Stream(response)
        assert response.status_code == 200
        started = time.monotonic()
        hub.process.send_signal(signal.SIGTERM)
        try:
            hub.process.wait(10)
        except subprocess.TimeoutExpired:
            pytest.fail("labhub serve still runs 10 s after SIGTERM with a stream open")
        with pytest.raises((EOFError, httpx2.TransportError)):
            _read_to_the_end(stream)
        assert time.monotonic() - started < 10
