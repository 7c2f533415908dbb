"""CSV and JSON export: exact text, real parsing round trips, zones across their changes."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensors.export import (
    CsvOptions,
    ExportColumn,
    csv_header,
    guard_formula,
    iter_csv,
    iter_json,
    shared_rows,
)
from sensors.samples import US_PER_S, from_us, to_us

T0 = to_us(datetime(2026, 3, 1, 14, 5, 9, tzinfo=UTC))
END_US = to_us(datetime(2100, 1, 1, tzinfo=UTC)) - 1
TEMP = ExportColumn("lab-point-1", "temp", "temperature", "degC", "Temperatura")
HUMIDITY = ExportColumn("lab-point-1", "hum", "humidity", "%", "Humedad")

# Offset changes (UTC seconds) worth landing on: DST at local midnight (Santiago, Sao Paulo),
# at 00:01 local (Goose Bay), at 00:44:30 UTC (Monrovia), by 30 minutes (Lord Howe), by 15
# minutes (Kathmandu), at :45 offsets (Chatham), and at 01:00 UTC (Lisbon).
CHANGES = {
    "America/Santiago": (1680404400, 1693713600),
    "America/Sao_Paulo": (1541300400, 1550368800),
    "America/Goose_Bay": (544593660, 562129260),
    "Africa/Monrovia": (63593070,),
    "Australia/Lord_Howe": (1680361200, 1696087800),
    "Asia/Kathmandu": (504901800,),
    "Pacific/Chatham": (1680357600, 1695477600),
    "Europe/Lisbon": (1679792400, 1698541200),
}
ZONES = ("UTC", *CHANGES)
Rows = list[tuple[int, Sequence[float | None]]]
# (delimiter, decimal) pairs the options allow
FORMS = ((",", "."), (";", "."), ("\t", "."), (";", ","), ("\t", ","))


def export_csv(
    columns: Sequence[ExportColumn],
    rows: Sequence[tuple[int, Sequence[float | None]]],
    options: CsvOptions,
    chunk_rows: int = 2000,
) -> str:
    return "".join(iter_csv(columns, rows, options, chunk_rows=chunk_rows))


def read_csv(text: str, options: CsvOptions) -> list[list[str]]:
    """The cells as Python's csv module reads them (BOM removed, as utf-8-sig does)."""
    text = text.removeprefix("\ufeff")
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=options.delimiter))


def reference_time(ts: int, zone: str, *, split: bool) -> list[str]:
    """Time cells the slow, obvious way: a datetime per row and ``isoformat``."""
    moment = from_us(ts)
    if zone != "UTC":
        moment = moment.astimezone(ZoneInfo(zone))
    fraction = ts % US_PER_S
    spec = (
        "seconds" if fraction == 0 else "milliseconds" if fraction % 1000 == 0 else "microseconds"
    )
    if split:
        return [moment.date().isoformat(), moment.time().isoformat(timespec=spec)]
    text = moment.isoformat(timespec=spec)
    return [text.replace("+00:00", "Z") if zone == "UTC" else text]


def columns_of(count: int) -> list[ExportColumn]:
    return [ExportColumn(f"dev{i}", f"ch{i}", None, None, f"Channel {i}") for i in range(count)]


# --- exact text -------------------------------------------------------------------------


def test_semicolon_decimal_comma_bom_exact_bytes() -> None:
    options = CsvOptions(delimiter=";", decimal=",", bom=True, lang="es")
    rows = [(T0, (21.5, 40.0)), (T0 + 250_000, (-3.25, None))]
    data = export_csv([TEMP, HUMIDITY], rows, options).encode("utf-8")
    assert data == (
        b"\xef\xbb\xbf"
        + "fecha y hora (UTC);lab-point-1 Temperatura (°C);lab-point-1 Humedad (%)\r\n".encode()
        + b""
        b"2026-03-01T14:05:09Z;21,5;40,0\r\n"
        b"2026-03-01T14:05:09.250Z;-3,25;\r\n"
    )
    # and a spreadsheet-like reader sees numbers with a decimal comma
    cells = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""), delimiter=";"))
    assert cells[1] == ["2026-03-01T14:05:09Z", "21,5", "40,0"]
    assert cells[2] == ["2026-03-01T14:05:09.250Z", "-3,25", ""]


def test_default_options_exact_text() -> None:
    rows: Rows = [(T0, [21.5]), (T0 + 1, [0.1]), (T0 + 5_000, [None]), (T0 + 123_456, [-3.5])]
    assert export_csv([TEMP], rows, CsvOptions()) == (
        "time (UTC),lab-point-1 Temperatura (°C)\r\n"
        "2026-03-01T14:05:09Z,21.5\r\n"
        "2026-03-01T14:05:09.000001Z,0.1\r\n"
        "2026-03-01T14:05:09.005Z,\r\n"
        "2026-03-01T14:05:09.123456Z,-3.5\r\n"
    )


def test_tab_delimiter_and_portuguese_header() -> None:
    options = CsvOptions(delimiter="\t", decimal=",", lang="pt")
    column = ExportColumn("estacao-2", "A0", None, None, "Luz")
    text = export_csv([column, TEMP], [(T0, (512.0, 19.75))], options)
    assert text == (
        "data e hora (UTC)\testacao-2 Luz\tlab-point-1 Temperatura (°C)\r\n"
        "2026-03-01T14:05:09Z\t512,0\t19,75\r\n"
    )


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (21.5, "21.5"),
        (0.1, "0.1"),
        (21.0, "21.0"),
        (-3.5, "-3.5"),
        (1e-05, "0.00001"),
        (-1.5e-07, "-0.00000015"),
        (1e-07, "0.0000001"),
        (9.9e-08, "9.9e-08"),
        (1e-300, "1e-300"),
        (1e16, "10000000000000000"),
        (1.2345e20, "123450000000000000000"),
        (1e21, "1e+21"),
        (-0.0, "0.0"),
        (math.nan, ""),
        (math.inf, ""),
        (-math.inf, ""),
        (None, ""),
    ],
)
def test_number_text(value: float | None, text: str) -> None:
    # five chunks of new numbers make a column use repr; repeated numbers keep the cache
    distinct: Rows = [(T0 + i, (1.0 + i / 7,)) for i in range(1000)]
    repeated: Rows = [(T0 + i, (float(i % 3),)) for i in range(1000)]
    special: Rows = [(T0 + 1000, (value,)), (T0 + 1001, (2.5,))]
    for before in (distinct, repeated, []):
        cells = read_csv(
            export_csv([TEMP], before + special, CsvOptions(), chunk_rows=200), CsvOptions()
        )
        assert cells[-2][1] == text
        assert cells[-1][1] == "2.5"
        comma = CsvOptions(delimiter=";", decimal=",")
        cells = read_csv(export_csv([TEMP], before + special, comma, chunk_rows=200), comma)
        assert cells[-2][1] == text.replace(".", ",")


def test_special_numbers_anywhere_in_wide_rows() -> None:
    special: Rows = [
        (T0 + 1000, (1e-05, math.nan, 2.5, -math.inf)),
        (T0 + 1001, (-0.0, 3.5, 1e-300, math.inf)),
        (T0 + 1002, (True, -1.5e-07, False, -0.0)),
    ]
    expected = [
        ["0,00001", "", "2,5", ""],
        ["0,0", "3,5", "1e-300", ""],
        ["1,0", "-0,00000015", "0,0", "0,0"],
    ]
    options = CsvOptions(delimiter=";", decimal=",")
    columns = columns_of(4)
    for before in (  # five chunks of new numbers (repr), or of repeated ones (the cache)
        [(T0 + i, (i / 7, i / 11, i / 13, i / 17)) for i in range(1, 501)],
        [(T0 + i, (1.0, 2.0, None, 3.0)) for i in range(500)],
    ):
        cells = read_csv(export_csv(columns, [*before, *special], options, chunk_rows=100), options)
        assert [row[1:] for row in cells[-3:]] == expected


def test_many_distinct_numbers_round_trip_through_the_bounded_cache() -> None:
    # 70 % of each chunk repeats, 30 % is new: the cache stays in use and fills past its
    # bound (32,768 numbers a column for two columns), so it is emptied and filled again.
    rows = [
        (T0 + i * 100_000, (i * 0.001 if i % 10 < 3 else float(i % 10), None))
        for i in range(250_000)
    ]
    text = export_csv([TEMP, HUMIDITY], rows, CsvOptions())
    cells = read_csv(text, CsvOptions())[1:]
    assert len(cells) == len(rows)
    assert all(
        float(row[1]) == values[0] and row[2] == ""
        for row, (_, values) in zip(cells, rows, strict=True)
    )
    assert cells[123_457][1] == "7.0"
    assert cells[200_001][1] == "200.001"


# --- time columns -----------------------------------------------------------------------


def test_split_date_and_time_across_santiago_clocks_going_back() -> None:
    options = CsvOptions(delimiter=";", split_datetime=True, timezone="America/Santiago", lang="es")
    rows = [
        (1680404399 * US_PER_S, (12.5,)),  # 2023-04-02 02:59:59 UTC, last second at -03:00
        (1680404400 * US_PER_S, (12.0,)),  # clocks go back from 24:00 to 23:00, now -04:00
        (1680406200 * US_PER_S + 250_000, (11.5,)),
    ]
    assert export_csv([TEMP], rows, options) == (
        "fecha (America/Santiago);hora (America/Santiago);lab-point-1 Temperatura (°C)\r\n"
        "2023-04-01;23:59:59;12.5\r\n"
        "2023-04-01;23:00:00;12.0\r\n"
        "2023-04-01;23:30:00.250;11.5\r\n"
    )
    joined = CsvOptions(timezone="America/Santiago")
    assert [row[0] for row in read_csv(export_csv([TEMP], rows, joined), joined)] == [
        "time (America/Santiago)",
        "2023-04-01T23:59:59-03:00",
        "2023-04-01T23:00:00-04:00",
        "2023-04-01T23:30:00.250-04:00",
    ]


def test_sao_paulo_historic_dst_at_midnight() -> None:
    options = CsvOptions(
        delimiter="\t", decimal=",", split_datetime=True, timezone="America/Sao_Paulo", lang="pt"
    )
    rows = [
        (1541300399 * US_PER_S + 999_000, (20.5,)),  # 2018-11-04: 00:00 local is skipped
        (1541300400 * US_PER_S, (20.25,)),
        (1550368799 * US_PER_S, (25.0,)),  # 2019-02-17: back from 00:00 to 23:00 the day before
        (1550368800 * US_PER_S, (24.5,)),
    ]
    assert export_csv([TEMP], rows, options) == (
        "data (America/Sao_Paulo)\thora (America/Sao_Paulo)\tlab-point-1 Temperatura (°C)\r\n"
        "2018-11-03\t23:59:59.999\t20,5\r\n"
        "2018-11-04\t01:00:00\t20,25\r\n"
        "2019-02-16\t23:59:59\t25,0\r\n"
        "2019-02-16\t23:00:00\t24,5\r\n"
    )
    joined = CsvOptions(timezone="America/Sao_Paulo")
    assert [row[0] for row in read_csv(export_csv([TEMP], rows, joined), joined)[1:]] == [
        "2018-11-03T23:59:59.999-03:00",
        "2018-11-04T01:00:00-02:00",
        "2019-02-16T23:59:59-02:00",
        "2019-02-16T23:00:00-03:00",
    ]


@pytest.mark.parametrize(
    ("zone", "change", "before", "after"),
    [
        # offsets that change off the UTC hour and quarter hour
        ("America/Goose_Bay", 544593660, "1987-04-05T00:00:59-04:00", "1987-04-05T01:01:00-03:00"),
        ("Africa/Monrovia", 63593070, "1972-01-06T23:59:59-00:44:30", "1972-01-07T00:44:30+00:00"),
        ("Asia/Kathmandu", 504901800, "1985-12-31T23:59:59+05:30", "1986-01-01T00:15:00+05:45"),
        (
            "Australia/Lord_Howe",
            1680361200,
            "2023-04-02T01:59:59+11:00",
            "2023-04-02T01:30:00+10:30",
        ),
        ("Pacific/Chatham", 1695477600, "2023-09-24T02:44:59+12:45", "2023-09-24T03:45:00+13:45"),
    ],
)
def test_offset_changes_off_the_hour(zone: str, change: int, before: str, after: str) -> None:
    options = CsvOptions(timezone=zone)
    # a row a second for two hours around the change, in one chunk and in many
    rows = [((change + s) * US_PER_S, (1.0,)) for s in range(-3600, 3600)]
    for chunk_rows in (10_000, 7):
        cells = read_csv(export_csv([TEMP], rows, options, chunk_rows=chunk_rows), options)[1:]
        assert cells[3599][0] == before
        assert cells[3600][0] == after
        assert [row[0] for row in cells] == [
            reference_time(ts, zone, split=False)[0] for ts, _ in rows
        ]


@pytest.mark.parametrize("first", [0, 1, 2])
def test_time_fractions_mixed_in_one_chunk(first: int) -> None:
    stamps = [T0, T0 + 1, T0 + 250_000, T0 + US_PER_S, T0 + 999_999, T0 + 2 * US_PER_S + 1_000]
    texts = [
        "2026-03-01T14:05:09Z",
        "2026-03-01T14:05:09.000001Z",
        "2026-03-01T14:05:09.250Z",
        "2026-03-01T14:05:10Z",
        "2026-03-01T14:05:09.999999Z",
        "2026-03-01T14:05:11.001Z",
    ]
    # which row comes first decides how a chunk's fractions are written: both ways must agree
    stamps = stamps[first:] + stamps[:first]
    rows: Rows = [(ts, (1.0,)) for ts in stamps]
    cells = read_csv(export_csv([TEMP], rows, CsvOptions()), CsvOptions())
    assert [row[0] for row in cells[1:]] == texts[first:] + texts[:first]


def test_unsorted_rows_are_still_right() -> None:
    rows = [((T0 + (i * 7919 % 500) * 900 * US_PER_S + i), (float(i),)) for i in range(500)]
    options = CsvOptions(timezone="America/Santiago", split_datetime=True)
    cells = read_csv(export_csv([TEMP], rows, options, chunk_rows=64), options)[1:]
    assert [row[:2] for row in cells] == [
        reference_time(ts, "America/Santiago", split=True) for ts, _ in rows
    ]
    assert [row[2] for row in cells] == [f"{i}.0" for i in range(500)]


# --- header, guard, quoting -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "guarded"),
    [
        ("=cmd", "'=cmd"),
        ("+1", "'+1"),
        ("-x", "'-x"),
        ("@x", "'@x"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("'x", "''x"),  # so that the inventory import can take the guard off again
        ("x=1", "x=1"),
        ("Temperatura", "Temperatura"),
        ("", ""),
    ],
)
def test_guard_formula(text: str, guarded: str) -> None:
    assert guard_formula(text) == guarded


def test_formula_guard_on_header_cells_not_on_negative_numbers() -> None:
    columns = [
        ExportColumn(device, "c", None, "degC", "T") for device in ("=cmd", "+1", "-x", "@x")
    ]
    options = CsvOptions()
    assert csv_header(columns, options) == [
        "time (UTC)",
        "'=cmd T (°C)",
        "'+1 T (°C)",
        "'-x T (°C)",
        "'@x T (°C)",
    ]
    text = export_csv(columns, [(T0, (-3.5, -0.25, -1e-05, -40.0))], options)
    assert text.splitlines()[1] == "2026-03-01T14:05:09Z,-3.5,-0.25,-0.00001,-40.0"


def test_header_cells_are_quoted_by_csv_rules() -> None:
    columns = [
        ExportColumn("lab, room 2", "t", None, "degC", "T"),
        ExportColumn("kit", "t", None, None, 'say "hi"'),
        ExportColumn("kit", "t", None, None, "line\nbreak"),
    ]
    text = export_csv(columns, [(T0, (1.0, 2.0, 3.0))], CsvOptions())
    assert (
        text.split("\r\n")[0]
        == '''time (UTC),"lab, room 2 T (°C)","kit say ""hi""","kit line\nbreak"'''
    )
    assert read_csv(text, CsvOptions())[0] == [
        "time (UTC)",
        "lab, room 2 T (°C)",
        'kit say "hi"',
        "kit line\nbreak",
    ]


def test_header_words_per_language() -> None:
    for lang, joined, split in (
        ("en", "time (UTC)", ["date (UTC)", "time (UTC)"]),
        ("es", "fecha y hora (UTC)", ["fecha (UTC)", "hora (UTC)"]),
        ("pt", "data e hora (UTC)", ["data (UTC)", "hora (UTC)"]),
    ):
        assert csv_header([], CsvOptions(lang=lang)) == [joined]
        assert csv_header([TEMP], CsvOptions(lang=lang, split_datetime=True)) == [
            *split,
            "lab-point-1 Temperatura (°C)",
        ]


# --- invalid input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"delimiter": "|"},
            r"delimiter '\|' is not one of ',' \(comma\), ';' \(semicolon\) or '\\t' \(tab\)",
        ),
        ({"delimiter": ""}, "delimiter '' is not one of"),
        (
            {"decimal": ";"},
            r"decimal mark ';' is not '\.' \(decimal point\) or ',' \(decimal comma\)",
        ),
        ({"decimal": ","}, "a decimal comma cannot go with a comma delimiter: use delimiter ';'"),
        (
            {"timezone": "Mars/Olympus_Mons"},
            "unknown time zone 'Mars/Olympus_Mons': use an IANA name",
        ),
        ({"timezone": "../etc/passwd"}, "unknown time zone '../etc/passwd'"),
        ({"timezone": "America"}, "unknown time zone 'America'"),
        ({"timezone": "zone.tab"}, "unknown time zone 'zone.tab'"),
        ({"timezone": ""}, "unknown time zone ''"),
        ({"lang": "fr"}, "language 'fr' is not one of 'en', 'es' or 'pt'"),
    ],
)
def test_invalid_options(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CsvOptions(**kwargs)  # type: ignore[arg-type]


def test_row_width_must_match_the_columns() -> None:
    rows = [(T0, (1.0, 2.0)), (T0 + 1, (3.0,))]
    with pytest.raises(ValueError, match="row at 1772373909000001 us has 1 values for 2 columns"):
        export_csv([TEMP, HUMIDITY], rows, CsvOptions())
    with pytest.raises(ValueError, match="has 1 values for 2 columns"):
        "".join(iter_json([TEMP, HUMIDITY], rows))


def test_chunk_rows_must_be_positive() -> None:
    with pytest.raises(ValueError, match="chunk_rows must be at least 1, got 0"):
        export_csv([TEMP], [], CsvOptions(), chunk_rows=0)


# --- JSON -------------------------------------------------------------------------------


def test_json_exact_and_parsed() -> None:
    rows = [
        (T0, (21.5, None)),
        (T0 + 250_000, (math.nan, 1e-05)),
        (T0 + 3600 * US_PER_S, (-0.0, 40.0)),
    ]
    text = "".join(iter_json([TEMP, HUMIDITY], rows, chunk_rows=2))
    assert text == (
        '{"columns":['
        '{"device":"lab-point-1","channel":"temp","quantity":"temperature","unit":"degC","label":"Temperatura"},'
        '{"device":"lab-point-1","channel":"hum","quantity":"humidity","unit":"%","label":"Humedad"}'
        '],"rows":[\n'
        '["2026-03-01T14:05:09Z",21.5,null],\n'
        '["2026-03-01T14:05:09.250Z",null,1e-05],\n'
        '["2026-03-01T15:05:09Z",0.0,40.0]'
        "\n]}\n"
    )
    document = json.loads(text)
    assert document["columns"][1] == {
        "device": "lab-point-1",
        "channel": "hum",
        "quantity": "humidity",
        "unit": "%",
        "label": "Humedad",
    }
    assert document["rows"] == [
        ["2026-03-01T14:05:09Z", 21.5, None],
        ["2026-03-01T14:05:09.250Z", None, 1e-05],
        ["2026-03-01T15:05:09Z", 0.0, 40.0],
    ]


def test_json_without_rows_or_columns() -> None:
    assert json.loads("".join(iter_json([TEMP], []))) == {
        "columns": [
            {
                "device": "lab-point-1",
                "channel": "temp",
                "quantity": "temperature",
                "unit": "degC",
                "label": "Temperatura",
            }
        ],
        "rows": [],
    }
    no_columns = "".join(iter_json([], [(T0, ()), (T0 + 1000, [])]))
    assert json.loads(no_columns) == {
        "columns": [],
        "rows": [["2026-03-01T14:05:09Z"], ["2026-03-01T14:05:09.001Z"]],
    }


def test_csv_without_rows_or_columns() -> None:
    assert list(iter_csv([TEMP], [], CsvOptions(bom=True))) == [
        "\ufefftime (UTC),lab-point-1 Temperatura (°C)\r\n"
    ]
    assert export_csv([], [(T0, ())], CsvOptions(split_datetime=True)) == (
        "date (UTC),time (UTC)\r\n2026-03-01,14:05:09\r\n"
    )


# --- chunking ---------------------------------------------------------------------------


def test_chunks_join_to_the_same_text() -> None:
    rows = [
        (T0 + i * 100_000, (20.0 + (i % 97) / 8, None if i % 5 else -1.25)) for i in range(10_000)
    ]
    options = CsvOptions(delimiter=";", decimal=",", bom=True, timezone="America/Santiago")
    chunks = list(iter_csv([TEMP, HUMIDITY], rows, options))
    assert len(chunks) == 5
    assert chunks[0].startswith("\ufefftime (America/Santiago);")
    assert all(chunk.endswith("\r\n") for chunk in chunks)
    assert [chunk.count("\r\n") for chunk in chunks] == [2001, 2000, 2000, 2000, 2000]
    whole = "".join(chunks)
    assert whole == export_csv([TEMP, HUMIDITY], rows, options, chunk_rows=10_000)
    assert whole == export_csv([TEMP, HUMIDITY], rows, options, chunk_rows=3)
    lines = whole.split("\r\n")
    assert lines[1] == "2026-03-01T11:05:09-03:00;20,0;-1,25"
    assert lines[2] == "2026-03-01T11:05:09.100-03:00;20,125;"
    assert lines[11] == "2026-03-01T11:05:10-03:00;21,25;-1,25"

    json_chunks = list(iter_json([TEMP, HUMIDITY], rows, chunk_rows=3000))
    assert len(json_chunks) == 5  # four chunks of rows and the closing one
    assert "".join(json_chunks) == "".join(iter_json([TEMP, HUMIDITY], rows, chunk_rows=10_000))
    assert len(json.loads("".join(json_chunks))["rows"]) == 10_000


# --- properties -------------------------------------------------------------------------

stamps = st.one_of(
    st.integers(0, END_US),
    st.integers(0, END_US // US_PER_S).map(lambda s: s * US_PER_S),
    st.integers(0, END_US // 1000).map(lambda ms: ms * 1000),
    st.sampled_from([t for changes in CHANGES.values() for t in changes]).flatmap(
        lambda t: st.integers((t - 7200) * US_PER_S, (t + 7200) * US_PER_S)
    ),
)
numbers = st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False))


@st.composite
def exports(draw: st.DrawFn) -> tuple[int, list[tuple[int, Sequence[float | None]]]]:
    ncols = draw(st.integers(0, 4))
    row = st.tuples(stamps, st.lists(numbers, min_size=ncols, max_size=ncols))
    rows: list[tuple[int, Sequence[float | None]]] = draw(st.lists(row, max_size=40))
    if draw(st.booleans()):
        rows.sort(key=lambda r: r[0])
    if draw(st.booleans()):
        rows = [(ts, tuple(values)) for ts, values in rows]
    return ncols, rows


@settings(max_examples=300, deadline=None)
@given(
    exports(),
    st.sampled_from(FORMS),
    st.sampled_from(ZONES),
    st.booleans(),
    st.booleans(),
    st.sampled_from(("en", "es", "pt")),
    st.integers(1, 50),
)
def test_csv_round_trip(
    export: tuple[int, list[tuple[int, Sequence[float | None]]]],
    form: tuple[str, str],
    zone: str,
    split: bool,
    bom: bool,
    lang: str,
    chunk_rows: int,
) -> None:
    ncols, rows = export
    delimiter, decimal = form
    options = CsvOptions(delimiter, decimal, bom, split, zone, lang)
    columns = columns_of(ncols)
    text = export_csv(columns, rows, options, chunk_rows=chunk_rows)
    assert text.startswith("\ufeff") == bom
    assert text.endswith("\r\n")
    cells = read_csv(text, options)
    assert cells[0] == csv_header(columns, options)
    width = 2 if split else 1
    assert len(cells) == len(rows) + 1
    for (ts, values), line in zip(rows, cells[1:], strict=True):
        assert line[:width] == reference_time(ts, zone, split=split)
        assert len(line) == width + ncols
        for value, cell in zip(values, line[width:], strict=True):
            if value is None:
                assert cell == ""
                continue
            number = cell.replace(",", ".") if decimal == "," else cell
            assert float(number) == value
            written = repr(value + 0.0)
            if "e" not in written or not 1e-7 <= abs(value) < 1e21:
                assert number == written
            else:
                assert "e" not in number


@settings(max_examples=200, deadline=None)
@given(exports(), st.integers(1, 50))
def test_json_round_trip(
    export: tuple[int, list[tuple[int, Sequence[float | None]]]], chunk_rows: int
) -> None:
    ncols, rows = export
    document = json.loads("".join(iter_json(columns_of(ncols), rows, chunk_rows=chunk_rows)))
    assert [column["device"] for column in document["columns"]] == [f"dev{i}" for i in range(ncols)]
    assert document["rows"] == [
        [*reference_time(ts, "UTC", split=False), *values] for ts, values in rows
    ]


# --- shared rows, notes, units, the region's zones ---------------------------------------

A0 = ExportColumn("robot", "A0", "analog", "counts", "Lectura analógica")
A1 = ExportColumn("robot", "A1", "analog", "counts", "Lectura analógica")
MS = 1_000


def test_two_pins_sampled_together_share_a_row_with_their_own_headers() -> None:
    # A0 and A1 of one Firmata sample arrive a few hundred microseconds apart, and one
    # sample straddles a millisecond: both still land on one row, at the millisecond.
    rows: Rows = []
    for i, (a0, a1) in enumerate(((400, 700), (900, 1_200), (100, 300))):
        base = T0 + i * 100_000
        rows += [(base + a0, (512.0 + i, None)), (base + a1, (None, 300.0 + i))]
    shared = list(shared_rows(rows, width=2, step_us=MS))
    assert shared == [(T0, [512.0, 300.0]), (T0 + 100_000, [513.0, 301.0]),
                      (T0 + 200_000, [514.0, 302.0])]
    text = export_csv([A0, A1], shared, CsvOptions(lang="es"))
    assert text.splitlines() == [
        "fecha y hora (UTC),robot A0 Lectura analógica (cuentas),"
        "robot A1 Lectura analógica (cuentas)",
        "2026-03-01T14:05:09Z,512.0,300.0",
        "2026-03-01T14:05:09.100Z,513.0,301.0",
        "2026-03-01T14:05:09.200Z,514.0,302.0",
    ]
    # One pin alone keeps the plain header.
    assert csv_header([A0], CsvOptions(lang="es"))[1] == "robot Lectura analógica (cuentas)"


def test_shared_rows_never_drop_a_value() -> None:
    # The same column twice within a step: the second starts a row of its own.
    rows: Rows = [(T0 + 100, (1.0, None)), (T0 + 200, (2.0, None)), (T0 + 300, (None, 3.0))]
    assert list(shared_rows(rows, width=2, step_us=US_PER_S)) == [
        (T0, [1.0, None]), (T0, [2.0, 3.0])]
    # A step of one microsecond changes nothing.
    assert list(shared_rows(rows, width=2)) == rows


def test_notes_join_the_row_of_their_time_or_get_their_own() -> None:
    rows: Rows = [(T0, (20.0,)), (T0 + US_PER_S, (21.0,)), (T0 + 2 * US_PER_S, (22.0,))]
    notes = [(T0 + US_PER_S + 400_000, "=sombra; 'ya'"), (T0 + 1_500_000, "segunda nota"),
             (T0 + 10 * US_PER_S, "fin")]
    shared = list(shared_rows(rows, width=1, step_us=US_PER_S, notes=notes))
    assert shared == [
        (T0, [20.0], None),
        (T0 + US_PER_S, [21.0], "=sombra; 'ya'"),
        (T0 + US_PER_S, [None], "segunda nota"),
        (T0 + 2 * US_PER_S, [22.0], None),
        (T0 + 10 * US_PER_S, [None], "fin"),
    ]
    options = CsvOptions(delimiter=";", lang="es", timezone="America/Bogota")
    text = "".join(iter_csv([TEMP], shared, options, notes=True))
    assert read_csv(text, options) == [
        ["fecha y hora (America/Bogota)", "lab-point-1 Temperatura (°C)", "nota"],
        ["2026-03-01T09:05:09-05:00", "20.0", ""],
        ["2026-03-01T09:05:10-05:00", "21.0", "'=sombra; 'ya'"],
        ["2026-03-01T09:05:10-05:00", "", "segunda nota"],
        ["2026-03-01T09:05:11-05:00", "22.0", ""],
        ["2026-03-01T09:05:19-05:00", "", "fin"],
    ]
    # A run with no readings in a row, only notes, and no value columns at all.
    only = list(shared_rows([], width=0, notes=[(T0, "solo")]))
    assert "".join(iter_csv([], only, CsvOptions(), notes=True)).splitlines() == [
        "time (UTC),note", "2026-03-01T14:05:09Z,solo"]


@pytest.mark.parametrize(("unit", "en", "es", "pt"), [
    ("degC", "°C", "°C", "°C"), ("degF", "°F", "°F", "°F"),
    ("ug/m3", "µg/m³", "µg/m³", "µg/m³"), ("counts", "counts", "cuentas", "contagens"),
    ("hPa", "hPa", "hPa", "hPa"), ("%", "%", "%", "%"),
])
def test_units_are_written_as_a_reader_expects_them(
    unit: str, en: str, es: str, pt: str
) -> None:
    column = ExportColumn("kit", "c", None, unit, "X")
    for lang, text in (("en", en), ("es", es), ("pt", pt)):
        assert csv_header([column], CsvOptions(lang=lang))[1] == f"kit X ({text})"


# Each region zone's last clock change (UTC seconds) with the local times of the second
# before it and of it (see test_times.py for the same changes through format_local).
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
def test_csv_and_json_in_the_region_zones_across_their_clock_changes(zone: str) -> None:
    change, before, after = REGION_CHANGES[zone]
    raw: Rows = [((change - 1) * US_PER_S + 123_456, (1.0,)),
                 (change * US_PER_S + 654_321, (2.0,))]
    rows = list(shared_rows(raw, width=1, step_us=US_PER_S))
    options = CsvOptions(timezone=zone)
    assert [r[0] for r in read_csv(export_csv([TEMP], rows, options), options)[1:]] == [
        before, after]
    document = json.loads("".join(iter_json([TEMP], rows, timezone=zone)))
    assert [r[0] for r in document["rows"]] == [before, after]
