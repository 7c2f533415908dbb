"""One time parser for every caller: its rules (labtext.times), a format-then-parse round
trip (hypothesis), and each caller (the HTTP API, labhub.api.common, the decoders, the
SD-card importer) reading the same inputs the same way, with a 422 and not a 500 past the
year 9999."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from signed_in import as_admin
from typer.testing import CliRunner

from labhub.api.common import parse_time as api_parse_time
from labhub.app import create_app
from labhub.cli import app as cli_app
from labhub.problems import Problem
from labhub.settings import Settings
from labtext.times import (
    EPOCH_MS_THRESHOLD,
    TIME_MAX_US,
    TIME_MIN_US,
    TimeTextError,
    format_local,
    format_time,
    parse_query_time,
    parse_time,
    step_for_interval,
    step_named,
    zone_name,
)
from sensors import decoders
from sensors.errors import DecodeError
from sensors.importer import import_file
from sensors.pipeline import IngestPipeline
from sensors.samples import from_us

PROPERTY = settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
T0 = parse_time("2026-03-01T14:05:00Z")


# --- the rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2026-03-01T14:05:00Z", "2026-03-01T14:05:00Z"),
        ("2026-03-01t14:05:00z", "2026-03-01T14:05:00Z"),
        ("2026-03-01 09:05:00-05:00", "2026-03-01T14:05:00Z"),
        ("2026-03-01T09:05:00-0500", "2026-03-01T14:05:00Z"),
        ("2026-03-01T14:05:00,25Z", "2026-03-01T14:05:00.250000Z"),
        ("2026-03-01T14:05:00.1234567Z", "2026-03-01T14:05:00.123456Z"),
        (1772373900, "2026-03-01T14:05:00Z"),
        (1772373900.5, "2026-03-01T14:05:00.500000Z"),
        (1772373900000, "2026-03-01T14:05:00Z"),
        (" 1772373900 ", "2026-03-01T14:05:00Z"),
        ("1772373900000", "2026-03-01T14:05:00Z"),
        (-EPOCH_MS_THRESHOLD, "1966-10-31T14:13:20Z"),  # milliseconds below zero too
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z"),
        ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999Z"),
    ],
)
def test_the_forms_taken(given: object, expected: str) -> None:
    assert format_time(parse_time(given)) == expected


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ("2026-03-01T14:05:00", "has no time zone: add Z for UTC or an offset like -05:00"),
        ("2026-03-01T14:05Z", "is not an RFC 3339 time"),  # ISO 8601, not RFC 3339
        ("2026-03-01", "is not an RFC 3339 time"),
        ("20260301T140500Z", "is not an RFC 3339 time"),
        ("2026-W09-7T14:05:00Z", "is not an RFC 3339 time"),
        ("1_772_373_900", "is not an RFC 3339 time"),
        ("nan", "is not an RFC 3339 time"),
        ("2026-02-30T00:00:00Z", "is not a valid date and time"),
        ("2026-03-01T14:05:00+24:00", "impossible offset"),
        ("9999-12-31T23:00:00-05:00", "out of range: after the year 9999"),
        ("0001-01-01T00:00:00+01:00", "out of range: before the year 1"),
        (253_402_300_800_000, "out of range: after the year 9999"),  # 10000-01-01 in ms
        (-62_135_596_801, "out of range: before the year 1"),
        (1e306, "out of range: after the year 9999"),
        (-1e306, "out of range: before the year 1"),
        (-1e18, "out of range: before the year 1"),  # epoch ms, 31 million years ago
        ("-1e18", "out of range: before the year 1"),
        (float("nan"), "not a finite number"),
        (float("inf"), "not a finite number"),
        (True, "is not a time"),
        (None, "is not a time"),
        ([1], "is not a time"),
    ],
)
def test_what_is_refused_says_why(given: object, words: str) -> None:
    with pytest.raises(TimeTextError) as caught:
        parse_time(given)
    assert words in str(caught.value)


def test_a_naive_time_is_read_in_the_zone_the_caller_names() -> None:
    bogota = ZoneInfo("America/Bogota")
    assert parse_time("2026-03-01 09:05:00", naive_zone=bogota) == T0
    assert parse_time("2026-03-01T14:05:00", naive_zone=UTC) == T0
    # A zone given for naive times changes nothing for a time with its own offset.
    assert parse_time("2026-03-01T14:05:00Z", naive_zone=bogota) == T0
    # The hour Santiago sets its clocks back (2026-04-05 00:00 -03 -> 23:00 -04): the first.
    santiago = ZoneInfo("America/Santiago")
    assert format_time(parse_time("2026-04-04T23:30:00", naive_zone=santiago)) == (
        "2026-04-05T02:30:00Z")


# --- round trips -------------------------------------------------------------------------


@PROPERTY
@given(ts=st.integers(TIME_MIN_US, TIME_MAX_US))
def test_format_then_parse_gives_the_same_microseconds(ts: int) -> None:
    text = format_time(ts)
    assert text.endswith("Z")
    assert parse_time(text) == ts
    assert text == from_us(ts).isoformat().replace("+00:00", "Z")


@PROPERTY
@given(
    moment=st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31),
                        timezones=st.builds(lambda m: timezone(timedelta(minutes=m)),
                                            st.integers(-23 * 60 - 59, 23 * 60 + 59))),
    sep=st.sampled_from(["T", " "]),
)
def test_any_offset_reads_back_to_the_same_instant(moment: datetime, sep: str) -> None:
    ts = parse_time(moment.isoformat(sep=sep))
    assert ts == parse_time(format_time(ts))
    assert from_us(ts) == moment


@PROPERTY
@given(seconds=st.integers(-EPOCH_MS_THRESHOLD + 1, EPOCH_MS_THRESHOLD - 1)
       .filter(lambda s: TIME_MIN_US <= s * 1_000_000 <= TIME_MAX_US))
def test_epoch_seconds_and_their_milliseconds_are_the_same_time(seconds: int) -> None:
    ts = parse_time(seconds)
    assert ts == seconds * 1_000_000 == parse_time(str(seconds))
    if abs(seconds * 1000) >= EPOCH_MS_THRESHOLD:
        assert parse_time(seconds * 1000) == ts


# --- every caller reads the same way ------------------------------------------------------

SAME_FOR_ALL = [
    "2026-03-01T14:05:00Z",
    "2026-03-01T09:05:00-0500",
    "1772373900",
    "1772373900000",
    "2026-03-01T14:05:00",  # no zone
    "2026-03-01T14:05Z",  # no seconds: ISO 8601 but not RFC 3339
    "9999-12-31T23:00:00-05:00",  # past the year 9999 in UTC
    "1e20",
    "yesterday",
]


def _by_parser(text: str) -> int | str:
    try:
        return parse_time(text)
    except TimeTextError:
        return "refused"


def _by_api_helper(text: str) -> int | str:
    try:
        ts = api_parse_time(text, "ts")
    except Problem as exc:
        return f"refused with {exc.status} at {exc.detail.split(':')[0]}"
    assert ts is not None
    return ts


def _by_json_lines(text: str) -> int | str:
    try:
        [sample] = decoders.decode_json_line(f'{{"temp": 1, "ts": "{text}"}}')
    except DecodeError as exc:
        return f"refused at {exc.where}"
    assert sample.ts is not None
    return sample.ts


def _by_csv(text: str) -> int | str:
    try:
        [sample] = decoders.decode_csv_line(f"{text},1", ["ts", "temp"])
    except DecodeError as exc:
        return f"refused at {exc.where}"
    assert sample.ts is not None
    return sample.ts


@pytest.mark.parametrize("text", SAME_FOR_ALL)
def test_every_parser_in_labhub_reads_a_time_the_same_way(text: str) -> None:
    expected = _by_parser(text)
    if expected == "refused":
        assert [_by_api_helper(text), _by_json_lines(text), _by_csv(text)] == [
            "refused with 422 at ts", "refused at field 'ts'", "refused at column 'ts'"]
    else:
        assert [_by_api_helper(text), _by_json_lines(text), _by_csv(text)] == [expected] * 3


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with as_admin(TestClient(create_app(settings))) as c:
        yield c


@pytest.mark.parametrize("ts", ["9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+01:00",
                                -62_135_596_801, "2026-03-01T14:05Z"])
def test_the_api_answers_422_for_a_time_it_cannot_read(client: TestClient, ts: object) -> None:
    r = client.post("/api/v1/readings", json={"device": "d", "readings": [
        {"channel": "temp", "value": 1, "ts": "2026-03-01T14:05:00Z"}]})
    assert r.status_code == 200, r.text
    r = client.post("/api/v1/readings", json={"device": "d", "readings": [
        {"channel": "temp", "value": 1, "ts": ts}]})
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("readings.0.ts: ")
    r = client.get("/api/v1/readings", params={"device": "d", "channel": "temp",
                                               "start": str(ts)})
    assert r.status_code == 422, r.text


def test_the_importer_reads_naive_times_only_in_a_given_zone(
    pipeline: IngestPipeline, tmp_path: Path
) -> None:
    log = tmp_path / "LOG.CSV"
    log.write_text("time,temp\n2026-03-01 09:05:00,21.5\n2026-03-01T14:06:00Z,21.6\n"
                   "9999-12-31T23:00:00-05:00,21.7\n", encoding="utf-8")
    summary = import_file(log, pipeline=pipeline, device="d", fmt="csv")
    assert (summary.accepted, summary.rejected) == (1, 2)
    assert summary.first_errors == [
        "LOG.CSV line 2: csv: line 2: time '2026-03-01 09:05:00' has no time zone: add Z for "
        "UTC or an offset like -05:00 (or import with the zone the logger's clock kept)",
        "LOG.CSV line 4: csv: line 4: time out of range: after the year 9999 (the latest is "
        "9999-12-31T23:59:59.999999Z)",
    ]
    summary = import_file(log, pipeline=pipeline, device="d", fmt="csv",
                          zone=ZoneInfo("America/Bogota"))
    assert (summary.accepted, summary.duplicate, summary.rejected) == (1, 1, 1)


def test_the_cli_says_which_option_holds_a_time_it_cannot_read(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABHUB_DATABASE_URL", database_url)
    monkeypatch.setenv("LABHUB_DATA_DIR", str(tmp_path / "data"))
    log = tmp_path / "DATALOG.TXT"
    log.write_text("temp:21.5\n", encoding="utf-8")
    for start, words in [("9999-12-31T23:00:00-05:00", "out of range: after the year 9999"),
                         ("2026-03-01T08:00:00", "has no time zone")]:
        result = CliRunner().invoke(cli_app, ["import", str(log), "--device", "d", "--format",
                                              "plotter", "--start", start, "--interval", "1"])
        assert result.exit_code == 2, result.output
        assert result.output.startswith("labhub import: --start: time ")
        assert words in result.output


# --- queries: relative times, the lab's zone, precision ----------------------------------


@pytest.mark.parametrize(("given", "expected"), [
    ("now", "2026-03-01T14:05:00Z"),
    (" NOW ", "2026-03-01T14:05:00Z"),
    ("-30m", "2026-03-01T13:35:00Z"),
    ("-90s", "2026-03-01T14:03:30Z"),
    ("-1h", "2026-03-01T13:05:00Z"),
    ("now-1h", "2026-03-01T13:05:00Z"),
    ("- 2 d", "2026-02-27T14:05:00Z"),
    ("-1w", "2026-02-22T14:05:00Z"),
    ("-15min", "2026-03-01T13:50:00Z"),
    ("2026-03-01T09:00:00-05:00", "2026-03-01T14:00:00Z"),  # what parse_time takes, too
    ("1772373900", "2026-03-01T14:05:00Z"),
    ("-30", "1969-12-31T23:59:30Z"),  # a number is epoch seconds, not a relative time
])
def test_query_times_may_be_relative_to_now(given: str, expected: str) -> None:
    assert format_time(parse_query_time(given, now=T0)) == expected


@pytest.mark.parametrize("given", ["-1y", "-1 month", "nowish", "now+1h", "yesterday", "-h"])
def test_relative_times_that_are_not_taken_say_which_are(given: str) -> None:
    with pytest.raises(TimeTextError):
        parse_query_time(given, now=T0)
    with pytest.raises(TimeTextError):
        parse_time(given)  # a device's timestamp is never relative
    if given.startswith(("-1", "now")):
        with pytest.raises(TimeTextError, match="-30m, -1h, -2d or -1w"):
            parse_query_time(given, now=T0)


def test_relative_times_are_refused_where_a_device_gives_its_time() -> None:
    for text in ("now", "-1h"):
        with pytest.raises(TimeTextError):
            parse_time(text)


def test_the_labs_zone_is_local() -> None:
    assert zone_name(None, local="America/Lima") == "America/Lima"
    assert zone_name("", local="America/Lima") == "America/Lima"
    assert zone_name("local", local="America/Lima") == "America/Lima"
    assert zone_name("LOCAL", local="America/Lima") == "America/Lima"
    assert zone_name("utc", local="America/Lima") == "UTC"
    assert zone_name("America/Santiago", local="America/Lima") == "America/Santiago"
    with pytest.raises(TimeTextError, match="unknown time zone 'Lima'"):
        zone_name("Lima", local="America/Lima")


@pytest.mark.parametrize(("interval_us", "step"), [
    (None, 1_000_000), (60_000_000, 1_000_000), (1_000_000, 1_000_000),
    (950_000, 1_000_000),  # a second apart, arriving a little early
    (500_000, 1_000), (100_000, 1_000), (1_000, 1_000), (950, 1_000), (200, 1), (0, 1),
])
def test_the_precision_readings_deserve(interval_us: int | None, step: int) -> None:
    assert step_for_interval(interval_us) == step
    assert step_named("auto", interval_us) == step
    assert (step_named("s", 5), step_named("ms", 5), step_named("us", 5)) == (
        1_000_000, 1_000, 1)
    with pytest.raises(TimeTextError, match="precision 'ns'"):
        step_named("ns", None)


# Each region zone's last clock change before 2026 that it had (UTC seconds), and the
# local times of the second before it and of it, to the second: DST ending in Lima (1994),
# Bogota (1993), Guatemala (2006) and Santiago (2025); starting in Mexico City's last year
# of DST (2022) and at local midnight in Sao Paulo (2018, historical).
REGION_CHANGES = {
    "America/Lima": (765172800, "1994-03-31T23:59:59-04:00", "1994-03-31T23:00:00-05:00"),
    "America/Bogota": (729057600, "1993-02-06T23:59:59-04:00", "1993-02-06T23:00:00-05:00"),
    "America/Guatemala": (1159678800, "2006-09-30T23:59:59-05:00",
                          "2006-09-30T23:00:00-06:00"),
    "America/Mexico_City": (1648972800, "2022-04-03T01:59:59-06:00",
                            "2022-04-03T03:00:00-05:00"),
    "America/Sao_Paulo": (1541300400, "2018-11-03T23:59:59-03:00",
                          "2018-11-04T01:00:00-02:00"),
    "America/Santiago": (1743908400, "2025-04-05T23:59:59-03:00",
                         "2025-04-05T23:00:00-04:00"),
}


@pytest.mark.parametrize("zone", REGION_CHANGES)
def test_local_times_across_the_region_zones_clock_changes(zone: str) -> None:
    change, before, after = REGION_CHANGES[zone]
    fraction = 123_456  # an arrival time's microseconds, below the data's precision
    assert format_local((change - 1) * 1_000_000 + fraction, zone, step_us=1_000_000) == before
    assert format_local(change * 1_000_000 + fraction, zone, step_us=1_000_000) == after
    assert format_local(change * 1_000_000 + fraction, zone, step_us=1_000) == (
        after[:19] + ".123" + after[19:])
    assert format_local(change * 1_000_000 + fraction, zone) == (
        after[:19] + ".123456" + after[19:])
    # and back: the text is the same time
    assert parse_time(before) == (change - 1) * 1_000_000
    assert parse_time(after) == change * 1_000_000
