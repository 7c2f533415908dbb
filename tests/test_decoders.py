"""Example-based tests of the wire-format decoders and formatters in ``sensors.decoders``.

Each format is tested with the examples its own project documents (Arduino IDE 2 Serial
Plotter, ThingsBoard, Influx and airrohr, openSenseMap, sensor.community, Smart Citizen),
then with every way a body can be wrong: the error must be a ``DecodeError`` that names
the format and the place.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from sensors.decoders import (
    DECODERS,
    CsvLineDecoder,
    decode,
    decode_csv_line,
    decode_framed_line,
    decode_influx,
    decode_json_line,
    decode_opensensemap_csv,
    decode_opensensemap_json,
    decode_plotter_line,
    decode_smart_citizen_csv,
    decode_thingsboard,
    detect_line_format,
    format_framed_line,
    format_influx,
    format_json_line,
    format_plotter_line,
    format_thingsboard,
)
from sensors.errors import DecodeError
from sensors.samples import Sample, to_us

MAY_1_NOON_US = to_us(datetime(2024, 5, 1, 12, 0, tzinfo=UTC))
THINGSBOARD_TS_MS = 1451649600512  # the example in ThingsBoard's telemetry docs
NOW_US = to_us(datetime(2024, 12, 9, 13, 0, tzinfo=UTC))


def error_of(decoder: object, *args: object, **kwargs: object) -> DecodeError:
    """The DecodeError that ``decoder(*args, **kwargs)`` raises."""
    assert callable(decoder)
    with pytest.raises(DecodeError) as caught:
        decoder(*args, **kwargs)
    return caught.value


# --- Arduino Serial Plotter -------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "temp:21.5,hum:40",
        "temp:21.5 hum:40",
        "temp:21.5\thum:40",
        "temp:21.5, hum:40\r\n",
        "temp:21.5,hum:40\n",
        ",temp:21.5,,hum:40,",
        b"temp:21.5,hum:40\r\n",
    ],
)
def test_plotter_labeled_lines(line: str | bytes) -> None:
    assert decode_plotter_line(line) == [Sample("temp", 21.5), Sample("hum", 40.0)]


@pytest.mark.parametrize(
    "line", ["21.5,40,512", "21.5 40 512", "21.5\t40\t512", " 21.5  40,\t512 \r\n", ",21.5,40,512,"]
)
def test_plotter_unlabeled_values_are_numbered_from_one(line: str) -> None:
    assert decode_plotter_line(line) == [
        Sample("value 1", 21.5),
        Sample("value 2", 40.0),
        Sample("value 3", 512.0),
    ]


def test_plotter_has_no_series_limit() -> None:
    samples = decode_plotter_line(" ".join(str(n) for n in range(100)))
    assert len(samples) == 100
    assert samples[64] == Sample("value 65", 64.0)
    assert samples[99] == Sample("value 100", 99.0)


def test_plotter_accepts_number_spellings_float_accepts() -> None:
    samples = decode_plotter_line("a:-1.5e3,b:+2,c:.5,d:7.,e:1E-2")
    assert [sample.value for sample in samples] == [-1500.0, 2.0, 0.5, 7.0, 0.01]


def test_plotter_returns_non_finite_values_for_the_pipeline_to_judge() -> None:
    values = [sample.value for sample in decode_plotter_line("nan inf -inf Infinity")]
    assert math.isnan(values[0])
    assert values[1:] == [math.inf, -math.inf, math.inf]


@pytest.mark.parametrize("line", ["", "\r\n", "   ", ",\t,"])
def test_plotter_blank_line_gives_nothing(line: str) -> None:
    assert decode_plotter_line(line) == []


def test_plotter_labels_may_be_any_text_but_separators() -> None:
    assert decode_plotter_line("température:21.5,A0-raw:512") == [
        Sample("température", 21.5),
        Sample("A0-raw", 512.0),
    ]


@pytest.mark.parametrize(
    ("line", "where", "words"),
    [
        ("21.5,abc", "token 2", "'abc' is not a number"),
        ("1,2,3,4x", "token 4", "'4x' is not a number"),
        ("1_000", "token 1", "'1_000' is not a number"),
        ("temp:21.5,hum", "token 2", "expected label:value, got 'hum'"),
        ("temp:21.5,hum:", "token 2", "value '' of 'hum' is not a number"),
        ("temp:21.5,:40", "token 2", "expected label:value, got ':40'"),
        ("temp:21.5,hum:forty", "token 2", "value 'forty' of 'hum' is not a number"),
        ("a:1,b:2:3", "token 2", "value '2:3' of 'b' is not a number"),
        ("a:1_0", "token 1", "value '1_0' of 'a' is not a number"),
        ("a:\u0663", "token 1", "of 'a' is not a number"),  # an Arabic-Indic digit
        (":5", "token 1", "':5' is not a number"),  # a colon at index 0 is not a label
    ],
)
def test_plotter_refuses_tokens_naming_them(line: str, where: str, words: str) -> None:
    error = error_of(decode_plotter_line, line)
    assert error.fmt == "plotter"
    assert error.where == where
    assert words in str(error)
    assert str(error).startswith(f"plotter: {where}: ")


def test_plotter_bytes_must_be_utf8() -> None:
    error = error_of(decode_plotter_line, b"temp:2\xff1")
    assert error.where == "byte 7"
    assert "not UTF-8" in str(error)


# --- CSV --------------------------------------------------------------------------------


def test_csv_line_without_header_numbers_the_columns() -> None:
    assert decode_csv_line("21.5,40,512") == [
        Sample("value 1", 21.5),
        Sample("value 2", 40.0),
        Sample("value 3", 512.0),
    ]


def test_csv_line_with_header_names_the_columns_and_skips_empty_cells() -> None:
    assert decode_csv_line("21.5,,512\r\n", ["temp", "hum", "light"]) == [
        Sample("temp", 21.5),
        Sample("light", 512.0),
    ]


@pytest.mark.parametrize(
    ("line", "delimiter"),
    [
        ("21.5;40", None),
        ("21.5\t40", None),
        ("21,5;40", None),
        ("21,5\t40", "\t"),
        ("21.5,40", ","),
    ],
)
def test_csv_delimiters_and_decimal_comma(line: str, delimiter: str | None) -> None:
    assert decode_csv_line(line, ["temp", "hum"], delimiter=delimiter) == [
        Sample("temp", 21.5),
        Sample("hum", 40.0),
    ]


def test_csv_quoted_cells_and_spaces_after_delimiters() -> None:
    assert decode_csv_line('"21.5", 40 ,"512"', ["a", "b", "c"]) == [
        Sample("a", 21.5),
        Sample("b", 40.0),
        Sample("c", 512.0),
    ]


def test_csv_trailing_delimiter_is_forgiven() -> None:
    assert decode_csv_line("21.5,40,", ["temp", "hum"]) == [
        Sample("temp", 21.5),
        Sample("hum", 40.0),
    ]


def test_csv_ts_column_is_the_time_of_the_row() -> None:
    assert decode_csv_line("1714564800,21.5", ["ts", "temp"]) == [
        Sample("temp", 21.5, MAY_1_NOON_US)
    ]
    assert decode_csv_line("2024-05-01T12:00:00Z,21.5", ["ts", "temp"]) == [
        Sample("temp", 21.5, MAY_1_NOON_US)
    ]


def test_csv_blank_line_gives_nothing() -> None:
    assert decode_csv_line("\r\n", ["temp"]) == []
    assert decode_csv_line("") == []


def test_csv_unknown_delimiter_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="delimiter"):
        decode_csv_line("1|2", delimiter="|")


@pytest.mark.parametrize(
    ("line", "header", "where", "words"),
    [
        ("21.5,abc", ["temp", "hum"], "cell 2 ('hum')", "'abc' is not a number"),
        ("21.5,abc", None, "cell 2 ('value 2')", "'abc' is not a number"),
        ("21.5", ["temp", "hum"], None, "expected 2 cells as in the header, found 1"),
        ("1,2,3", ["temp", "hum"], None, "expected 2 cells as in the header, found 3"),
        ("21.5,40\r9", None, None, "not a CSV row"),
        ("2024-05-01T12:00:00,1", ["ts", "temp"], "column 'ts'", "has no time zone"),
    ],
)
def test_csv_line_errors(
    line: str, header: list[str] | None, where: str | None, words: str
) -> None:
    error = error_of(decode_csv_line, line, header)
    assert error.fmt == "csv"
    assert error.where == where
    assert words in str(error)


def test_csv_decoder_takes_an_all_label_first_row_as_header() -> None:
    rows = CsvLineDecoder()
    assert rows.feed("temp;hum;light\r\n") == []
    assert rows.header == ("temp", "hum", "light")
    assert rows.delimiter == ";"
    assert rows.feed("21,5;40;512\r\n") == [
        Sample("temp", 21.5),
        Sample("hum", 40.0),
        Sample("light", 512.0),
    ]
    assert rows.feed("") == []
    assert rows.feed(b"22;;513") == [Sample("temp", 22.0), Sample("light", 513.0)]


def test_csv_decoder_without_header_numbers_the_columns() -> None:
    rows = CsvLineDecoder()
    assert rows.feed("21.5,40") == [Sample("value 1", 21.5), Sample("value 2", 40.0)]
    assert rows.header is None
    assert rows.feed("1,2,3") == [
        Sample("value 1", 1.0),
        Sample("value 2", 2.0),
        Sample("value 3", 3.0),
    ]


def test_csv_decoder_label_row_after_data_is_refused() -> None:
    rows = CsvLineDecoder()
    rows.feed("21.5,40")
    error = error_of(rows.feed, "temp,hum")
    assert error.where == "cell 1 ('value 1')"


def test_csv_decoder_with_given_header_never_detects_one() -> None:
    rows = CsvLineDecoder(["a", "b"], delimiter="\t")
    error = error_of(rows.feed, "x\ty")
    assert error.where == "cell 1 ('a')"
    assert rows.feed("1\t2") == [Sample("a", 1.0), Sample("b", 2.0)]


def test_csv_decoder_header_with_empty_name_and_bom() -> None:
    rows = CsvLineDecoder()
    assert rows.feed("\ufefftemp,,hum") == []
    assert rows.header == ("temp", "value 2", "hum")
    assert rows.feed("1,2,3") == [Sample("temp", 1.0), Sample("value 2", 2.0), Sample("hum", 3.0)]


def test_csv_decoder_mixed_first_row_is_data() -> None:
    rows = CsvLineDecoder()
    error = error_of(rows.feed, "temp,21.5")
    assert error.where == "cell 1 ('value 1')"


# --- JSON lines -------------------------------------------------------------------------


def test_json_line_numbers_and_numeric_strings() -> None:
    assert decode_json_line('{"temp": 21.5, "hum": "40", "light": 512}\r\n') == [
        Sample("temp", 21.5),
        Sample("hum", 40.0),
        Sample("light", 512.0),
    ]


@pytest.mark.parametrize(
    "ts",
    [
        "1714564800",
        "1714564800.0",
        "1714564800000",
        '"2024-05-01T12:00:00Z"',
        '"2024-05-01T14:00:00+02:00"',
        '"2024-05-01T14:00:00+0200"',
        '"2024-05-01 12:00:00.000000Z"',
        '"1714564800"',
    ],
)
def test_json_line_ts_spellings(ts: str) -> None:
    assert decode_json_line(f'{{"ts": {ts}, "temp": 21.5}}') == [
        Sample("temp", 21.5, MAY_1_NOON_US)
    ]


def test_json_line_ts_fractions() -> None:
    assert decode_json_line('{"a": 1, "ts": 1714564800.25}')[0].ts == MAY_1_NOON_US + 250_000
    assert decode_json_line('{"a": 1, "ts": 1714564800123}')[0].ts == MAY_1_NOON_US + 123_000
    later = decode_json_line('{"a": 1, "ts": "2024-05-01T12:00:00.123456789Z"}')
    assert later[0].ts == MAY_1_NOON_US + 123_456


def test_json_line_null_is_a_missing_value() -> None:
    assert decode_json_line('{"temp": null, "hum": 40, "ts": null}') == [Sample("hum", 40.0)]


def test_json_line_non_finite_values_are_samples() -> None:
    samples = decode_json_line('{"a": NaN, "b": -Infinity, "c": 1e999, "d": "nan"}')
    assert math.isnan(samples[0].value)
    assert [sample.value for sample in samples[1:3]] == [-math.inf, math.inf]
    assert math.isnan(samples[3].value)


@pytest.mark.parametrize("line", ["", "  \r\n", "\n"])
def test_json_line_blank_gives_nothing(line: str) -> None:
    assert decode_json_line(line) == []


@pytest.mark.parametrize(
    ("line", "where", "words"),
    [
        ('{"temp": true}', "field 'temp'", "true is not a number"),
        ('{"temp": "warm"}', "field 'temp'", "'warm' is not a number"),
        ('{"temp": {"c": 21}}', "field 'temp'", "got an object"),
        ('{"temp": [21]}', "field 'temp'", "got an array"),
        ('{"temp": 1, "ts": "2024-05-01T12:00:00"}', "field 'ts'", "no time zone"),
        ('{"temp": 1, "ts": "yesterday"}', "field 'ts'", "not an RFC 3339 time"),
        ('{"temp": 1, "ts": true}', "field 'ts'", "got a boolean"),
        ('{"temp": 1, "ts": NaN}', "field 'ts'", "not a finite number"),
        ('{"temp": 1, "ts": 1e30}', "field 'ts'", "out of range"),
        ('{"temp": 1, "ts": 1e306}', "field 'ts'", "out of range"),  # inf in microseconds
        ('{"temp": 1, "ts": "2024-02-30T00:00:00Z"}', "field 'ts'", "not a valid date"),
        ('{"temp": 1, "ts": "2024-05-01T12:00:00+25:00"}', "field 'ts'", "impossible offset"),
        ('{"": 1}', "field ''", "cannot be empty"),
        ('{"\\ud800": 1}', "field '\\ud800'", "not valid Unicode"),
        ("[21.5]", None, "got an array"),
        ("21.5", None, "got a number"),
        ('{"temp": 21.5', None, "not valid JSON"),
        ('{"a": ' + "9" * 5000 + "}", None, "too long"),
        ("[" * 100_000, None, "nested too deeply"),
    ],
)
def test_json_line_errors(line: str, where: str | None, words: str) -> None:
    error = error_of(decode_json_line, line)
    assert error.fmt == "jsonl"
    assert error.where == where
    assert words in str(error)


# --- Serial Studio frames ---------------------------------------------------------------


def test_framed_line() -> None:
    assert decode_framed_line(" /*21.5, 40 ,512*/\r\n") == [
        Sample("value 1", 21.5),
        Sample("value 2", 40.0),
        Sample("value 3", 512.0),
    ]


def test_framed_empty_values_keep_their_position() -> None:
    assert decode_framed_line("/*21.5,,512*/") == [
        Sample("value 1", 21.5),
        Sample("value 3", 512.0),
    ]
    assert decode_framed_line("/**/") == []
    assert decode_framed_line("   ") == []


@pytest.mark.parametrize(
    ("line", "where", "words"),
    [
        ("21.5,40*/", "frame start", "a frame starts with /*"),
        ("/*21.5,40", "frame end", "a frame ends with */"),
        ("/*/", "frame end", "a frame ends with */"),
        ("21.5,40", "frame start", "a frame starts with /*"),
        ("/*21.5,abc*/", "value 2", "'abc' is not a number"),
    ],
)
def test_framed_errors(line: str, where: str, words: str) -> None:
    error = error_of(decode_framed_line, line)
    assert (error.fmt, error.where) == ("framed", where)
    assert words in str(error)


# --- Influx line protocol ---------------------------------------------------------------


def test_influx_airrohr_line() -> None:
    body = "feinstaub,node=esp8266-12345 SDS_P1=5.38,BME280_temperature=24.98\n"
    assert decode_influx(body) == [
        Sample("SDS_P1", 5.38, device="esp8266-12345"),
        Sample("BME280_temperature", 24.98, device="esp8266-12345"),
    ]


def test_influx_value_types() -> None:
    line = 'm a=1.5,b=-3i,c=7u,d=t,e=FALSE,f="2.5",g="text",h=1e3,i=True 1714564800000000000'
    samples = decode_influx(line)
    assert [(sample.channel, sample.value) for sample in samples] == [
        ("a", 1.5),
        ("b", -3.0),
        ("c", 7.0),
        ("d", 1.0),
        ("e", 0.0),
        ("f", 2.5),
        ("h", 1000.0),
        ("i", 1.0),
    ]
    assert {sample.ts for sample in samples} == {MAY_1_NOON_US}


@pytest.mark.parametrize(
    ("precision", "stamp"),
    [
        ("ns", "1714564800000000999"),
        ("n", "1714564800000000999"),
        ("us", "1714564800000000"),
        ("u", "1714564800000000"),
        ("ms", "1714564800000"),
        ("s", "1714564800"),
        ("m", "28576080"),
        ("h", "476268"),
    ],
)
def test_influx_precisions(precision: str, stamp: str) -> None:
    assert decode_influx(f"m v=1 {stamp}", precision=precision) == [Sample("v", 1.0, MAY_1_NOON_US)]


def test_influx_escapes() -> None:
    line = 'my\\ room\\,1,ro\\=om=lab\\ 2,host=pi x\\ y\\=z\\,w=1,s="say \\"hi\\" \\\\",n="4"'
    assert decode_influx(line) == [
        Sample("x y=z,w", 1.0, device="pi"),
        Sample("n", 4.0, device="pi"),
    ]


def test_influx_device_tag_priority() -> None:
    body = "\n".join(
        [
            "m,host=h,device=d,node=n v=1",
            "m,host=h,device=d v=2",
            "m,esp8266id=77,host=h v=3",
            "m,esp8266id=77 v=4",
            "m,esp8266id=esp8266-77 v=5",
            "m,room=lab v=6",
        ]
    )
    assert [sample.device for sample in decode_influx(body)] == [
        "n",
        "d",
        "h",
        "esp8266-77",
        "esp8266-77",
        None,
    ]


def test_influx_comments_blank_lines_and_crlf() -> None:
    body = "# written by Telegraf\r\n\r\n  m v=1 5\r\n\n# end\n"
    assert decode_influx(body, precision="s") == [Sample("v", 1.0, 5_000_000)]
    assert decode_influx("") == []
    assert decode_influx(b"\xef\xbb\xbfm v=1") == [Sample("v", 1.0)]


def test_influx_negative_ns_rounds_down_to_the_microsecond() -> None:
    assert decode_influx("m v=1 -1500")[0].ts == -2


@pytest.mark.parametrize(
    ("body", "where", "words"),
    [
        ("m v=1\nm", "line 2", "expected a space and fields"),
        ("m v=1\n,t=1 v=1", "line 2", "starts with the measurement"),
        ("m,t v=1", "line 1", "a tag is key=value"),
        ("m,t= v=1", "line 1", "tag 't' has no value"),
        ("m,=x v=1", "line 1", "a tag is key=value"),
        ("m v", "line 1", "a field is key=value"),
        ("m =1", "line 1", "a field is key=value"),
        ("m v=", "line 1, field 'v'", "field has no value"),
        ("m v=1,", "line 1", "a field is key=value"),
        ("m v=abc", "line 1, field 'v'", "'abc' is not a number"),
        ("m v=1.5i", "line 1, field 'v'", "'1.5i' is not a number"),
        ("m v=-1u", "line 1, field 'v'", "'-1u' is not a number"),
        ('m v="abc', "line 1, field 'v'", "no closing quote"),
        ('m v="1"x', "line 1, field 'v'", "unexpected 'x'"),
        ("m v=1 12:00", "line 1", "timestamp '12:00' is not an integer"),
        ("m v=1 1 2", "line 1", "timestamp '1 2' is not an integer"),
        ("# ok\n\nm v=1 99999999999999999999999999", "line 3", "out of range"),
    ],
)
def test_influx_errors_name_the_line(body: str, where: str, words: str) -> None:
    error = error_of(decode_influx, body)
    assert (error.fmt, error.where) == ("influx", where)
    assert words in str(error)


def test_influx_unknown_precision() -> None:
    error = error_of(decode_influx, "m v=1", precision="fortnight")
    assert error.where == "precision"
    assert "unknown precision 'fortnight'" in str(error)


# --- ThingsBoard ------------------------------------------------------------------------


def test_thingsboard_shape_1_plain_object() -> None:
    assert decode_thingsboard('{"temperature":22.5}') == [Sample("temperature", 22.5)]


def test_thingsboard_shape_2_array_of_objects() -> None:
    assert decode_thingsboard('[{"k1":1},{"k2":2}]') == [Sample("k1", 1.0), Sample("k2", 2.0)]


def test_thingsboard_shape_3_ts_and_values() -> None:
    body = '{"ts":1451649600512,"values":{"key1":"value1","key2":"value2"}}'
    error = error_of(decode_thingsboard, body)  # the docs' example has text values
    assert error.where == "field 'key1'"
    body = '{"ts":1451649600512,"values":{"key1":21.5,"key2":"40"}}'
    assert decode_thingsboard(body) == [
        Sample("key1", 21.5, THINGSBOARD_TS_MS * 1_000),
        Sample("key2", 40.0, THINGSBOARD_TS_MS * 1_000),
    ]


def test_thingsboard_shape_4_array_of_ts_objects() -> None:
    body = (
        '[{"ts":1451649600512,"values":{"temperature":22.5}},'
        '{"ts":1451649601512,"values":{"temperature":23,"fan":true,"door":false}}]'
    )
    assert decode_thingsboard(body.encode()) == [
        Sample("temperature", 22.5, 1451649600512000),
        Sample("temperature", 23.0, 1451649601512000),
        Sample("fan", 1.0, 1451649601512000),
        Sample("door", 0.0, 1451649601512000),
    ]


def test_thingsboard_ts_as_digit_string_and_plain_ts_key() -> None:
    assert decode_thingsboard('{"ts":"1451649600512","values":{"a":1}}') == [
        Sample("a", 1.0, 1451649600512000)
    ]
    # Without "values" ThingsBoard treats "ts" as an ordinary key, and so do we.
    assert decode_thingsboard('{"ts":5,"a":1}') == [Sample("ts", 5.0), Sample("a", 1.0)]


def test_thingsboard_null_is_skipped_and_empty_containers_are_empty() -> None:
    assert decode_thingsboard('{"a":null,"b":1}') == [Sample("b", 1.0)]
    assert decode_thingsboard("{}") == []
    assert decode_thingsboard("[]") == []


@pytest.mark.parametrize(
    ("body", "where", "words"),
    [
        ("", None, "empty body"),
        ("  \n", None, "empty body"),
        ("22.5", None, "got a number"),
        ('{"temperature": "warm"}', "field 'temperature'", "'warm' is not a number"),
        ('{"temperature": {"c": 1}}', "field 'temperature'", "got an object"),
        ('[{"k1":1},{"k2":[2]}]', "item 2, field 'k2'", "got an array"),
        ('[{"k1":1}, 5]', "item 2", "expected an object, got a number"),
        ('{"ts":1,"values":[1]}', "field 'values'", "values must be an object"),
        ('{"ts":true,"values":{}}', "field 'ts'", "ts must be epoch milliseconds"),
        ('{"ts":1e306,"values":{}}', "field 'ts'", "out of range"),
        ('[{"ts":"soon","values":{}}]', "item 1, field 'ts'", "ts must be epoch milliseconds"),
        ('{"ts":1,"values":{},"extra":1}', None, "unexpected key 'extra'"),
        ('[{"a":1},{"ts":1,"values":{"b":"x"}}]', "item 2, field 'b'", "'x' is not a number"),
        ('{"a":1', None, "not valid JSON"),
    ],
)
def test_thingsboard_errors(body: str, where: str | None, words: str) -> None:
    error = error_of(decode_thingsboard, body)
    assert (error.fmt, error.where) == ("thingsboard", where)
    assert words in str(error)


# --- openSenseMap and sensor.community --------------------------------------------------

SENSOR_A = "5a0c2cc0c1b3a1001a0c0001"
SENSOR_B = "5a0c2cc0c1b3a1001a0c0002"


def test_opensensemap_csv_body() -> None:
    body = (
        f"{SENSOR_A},21.3\n"
        f"{SENSOR_B},40,2024-05-01T12:00:00Z\r\n"
        "\n"
        f"{SENSOR_A},21.4,2024-05-01T12:00:00.5Z,7.64,51.96\n"
        f"{SENSOR_B},41,2024-05-01T14:00:00+02:00,7.64,51.96,66.6\n"
    )
    assert decode_opensensemap_csv(body, now_us=NOW_US) == [
        Sample(SENSOR_A, 21.3),
        Sample(SENSOR_B, 40.0, MAY_1_NOON_US),
        Sample(SENSOR_A, 21.4, MAY_1_NOON_US + 500_000),
        Sample(SENSOR_B, 41.0, MAY_1_NOON_US),
    ]


@pytest.mark.parametrize(
    ("body", "where", "words"),
    [
        (f"{SENSOR_A},21.3\n{SENSOR_A}", "line 2", "found 1 cells"),
        (f"{SENSOR_A},21.3,2024-05-01T12:00:00Z,7.6", "line 1", "found 4 cells"),
        (f"{SENSOR_A},warm", "line 1", "value 'warm' is not a number"),
        (",21.3", "line 1", "sensor id is empty"),
        (f"{SENSOR_A},1,2024-05-01T12:00:00", "line 1", "no time zone"),
        (f"{SENSOR_A},1,2024-05-01T12:00:00Z,east,51.9", "line 1", "location 'east'"),
        (f"{SENSOR_A},1,2024-12-09T13:01:01Z", "line 1", "more than 1 minute in the future"),
    ],
)
def test_opensensemap_csv_errors(body: str, where: str, words: str) -> None:
    error = error_of(decode_opensensemap_csv, body, now_us=NOW_US)
    assert (error.fmt, error.where) == ("opensensemap-csv", where)
    assert words in str(error)


def test_opensensemap_csv_allows_one_minute_of_clock_skew() -> None:
    body = f"{SENSOR_A},1,2024-12-09T13:01:00Z"
    assert decode_opensensemap_csv(body, now_us=NOW_US)[0].ts == NOW_US + 60_000_000


def test_opensensemap_csv_limit_is_2500_measurements() -> None:
    assert len(decode_opensensemap_csv(f"{SENSOR_A},1\n" * 2500)) == 2500
    error = error_of(decode_opensensemap_csv, f"{SENSOR_A},1\n" * 2501)
    assert "2501 measurements" in str(error)
    assert "at most 2500" in str(error)


def test_opensensemap_json_array() -> None:
    body = (
        f'[{{"sensor":"{SENSOR_A}","value":"21.3","createdAt":"2024-05-01T12:00:00Z"}},'
        f'{{"sensor_id":"{SENSOR_B}","value":40,"location":[7.64,51.96]}}]'
    )
    assert decode_opensensemap_json(body, now_us=NOW_US) == [
        Sample(SENSOR_A, 21.3, MAY_1_NOON_US),
        Sample(SENSOR_B, 40.0),
    ]


def test_opensensemap_json_object() -> None:
    body = (
        f'{{"{SENSOR_A}":"21.3","{SENSOR_B}":40,'
        f'"5a0c2cc0c1b3a1001a0c0003":["5.5","2024-05-01T12:00:00Z"],'
        f'"5a0c2cc0c1b3a1001a0c0004":[6,"2024-05-01T12:00:00Z",[7.64,51.96]]}}'
    )
    assert decode_opensensemap_json(body.encode(), now_us=NOW_US) == [
        Sample(SENSOR_A, 21.3),
        Sample(SENSOR_B, 40.0),
        Sample("5a0c2cc0c1b3a1001a0c0003", 5.5, MAY_1_NOON_US),
        Sample("5a0c2cc0c1b3a1001a0c0004", 6.0, MAY_1_NOON_US),
    ]


def test_opensensemap_json_luftdaten_shape() -> None:
    body = (
        '{"software_version": "NRZ-2016-058", "sensordatavalues": ['
        '{"value_type": "SDS_P1", "value": "5.38"}, {"value_type": "SDS_P2", "value": "4.98"}]}'
    )
    assert decode_opensensemap_json(body) == [Sample("SDS_P1", 5.38), Sample("SDS_P2", 4.98)]


def test_sensor_community_custom_api_names_the_kit() -> None:
    body = (
        '{"esp8266id": "12345", "software_version": "NRZ-2020-133", "sensordatavalues": ['
        '{"value_type": "BME280_temperature", "value": "24.98"},'
        '{"value_type": "GPS_timestamp", "value": "2024-05-01T12:00:00.000"},'
        '{"value_type": "signal", "value": -70}]}'
    )
    assert decode_opensensemap_json(body) == [
        Sample("BME280_temperature", 24.98, device="esp8266-12345"),
        Sample("signal", -70.0, device="esp8266-12345"),
    ]


@pytest.mark.parametrize(
    ("body", "where", "words"),
    [
        ("", None, "empty body"),
        ('"21.3"', None, "got a string"),
        ('[{"value":"21.3"}]', "item 1", '"sensor"'),
        (f'[{{"sensor":"{SENSOR_A}"}}]', "item 1, field 'value'", "value is missing"),
        (f'[{{"sensor":"{SENSOR_A}","value":"warm"}}]', "item 1, field 'value'", "'warm'"),
        (f'[{{"sensor":"{SENSOR_A}","value":true}}]', "item 1, field 'value'", "true is not"),
        ("[1]", "item 1", "expected an object, got a number"),
        (
            f'[{{"sensor":"{SENSOR_A}","value":1,"createdAt":"2024-05-01T12:00:00"}}]',
            "item 1, field 'createdAt'",
            "no time zone",
        ),
        (
            f'[{{"sensor":"{SENSOR_A}","value":1,"createdAt":17}}]',
            "item 1, field 'createdAt'",
            "createdAt must be an RFC 3339 string",
        ),
        (
            f'[{{"sensor":"{SENSOR_A}","value":1,"createdAt":"2025-01-01T00:00:00Z"}}]',
            "item 1, field 'createdAt'",
            "in the future",
        ),
        (f'{{"{SENSOR_A}":{{"v":1}}}}', f"field '{SENSOR_A}'", "got an object"),
        (f'{{"{SENSOR_A}":[]}}', f"field '{SENSOR_A}'", "expected [value]"),
        (f'{{"{SENSOR_A}":null}}', f"field '{SENSOR_A}'", "value is missing"),
        ('{"sensordatavalues": {}}', "field 'sensordatavalues'", "must be an array"),
        ('{"sensordatavalues": [{"value": "1"}]}', "sensordatavalues item 1", "value_type"),
        ('{"sensordatavalues": [7]}', "sensordatavalues item 1", "expected an object"),
        ('{"esp8266id": [1], "sensordatavalues": []}', "field 'esp8266id'", "string or number"),
        (
            '{"sensordatavalues": [{"value_type": "a", "value": [1]}]}',
            "sensordatavalues item 1, field 'value'",
            "got an array",
        ),
    ],
)
def test_opensensemap_json_errors(body: str, where: str | None, words: str) -> None:
    error = error_of(decode_opensensemap_json, body, now_us=NOW_US)
    assert (error.fmt, error.where) == ("opensensemap-json", where)
    assert words in str(error)


@pytest.mark.parametrize(
    "body",
    [
        "[" + ",".join([f'{{"sensor":"{SENSOR_A}","value":1}}'] * 2501) + "]",
        "{" + ",".join(f'"s{n}":1' for n in range(2501)) + "}",
        '{"sensordatavalues":[' + ",".join(['{"value_type":"a","value":"1"}'] * 2501) + "]}",
    ],
)
def test_opensensemap_json_limit_is_2500_measurements(body: str) -> None:
    assert "2501 measurements" in str(error_of(decode_opensensemap_json, body))


# --- Smart Citizen SD card --------------------------------------------------------------

SMART_CITIZEN_HEADER = (
    "TIME,TEMP,HUM,NOISE_A,SEN5X_PM_25\r\n"
    "ISO 8601,C,%,dBA,ug/m3\r\n"
    "Time,Temperature,Humidity,Noise dBA,SEN5X PM 2.5\r\n"
    ",55,56,53,194\r\n"
)


def test_smart_citizen_file() -> None:
    body = SMART_CITIZEN_HEADER + (
        "2024-12-09T12:20:05Z,21.49,42.12,40.77,3.00\r\n2024-12-09T12:21:05Z,21.5,null,,2.5\r\n"
    )
    first = to_us(datetime(2024, 12, 9, 12, 20, 5, tzinfo=UTC))
    second = first + 60_000_000
    assert decode_smart_citizen_csv(body) == [
        Sample("TEMP", 21.49, first, "C"),
        Sample("HUM", 42.12, first, "%"),
        Sample("NOISE_A", 40.77, first, "dBA"),
        Sample("SEN5X_PM_25", 3.0, first, "ug/m3"),
        Sample("TEMP", 21.5, second, "C"),
        Sample("SEN5X_PM_25", 2.5, second, "ug/m3"),
    ]


def test_smart_citizen_time_without_zone_is_utc() -> None:
    body = SMART_CITIZEN_HEADER + "2024-05-01T12:00:00,1,2,3,4\n"
    assert {sample.ts for sample in decode_smart_citizen_csv(body)} == {MAY_1_NOON_US}


def test_smart_citizen_joined_files_restart_the_header() -> None:
    body = (
        SMART_CITIZEN_HEADER
        + "2024-05-01T12:00:00Z,1,,,\n"
        + "TIME,LIGHT\nISO 8601,lux\nTime,Light\n,14\n"
        + "2024-05-01T12:00:00Z,176\n"
    )
    assert decode_smart_citizen_csv(body.encode()) == [
        Sample("TEMP", 1.0, MAY_1_NOON_US, "C"),
        Sample("LIGHT", 176.0, MAY_1_NOON_US, "lux"),
    ]


def test_smart_citizen_empty_unit_and_empty_file() -> None:
    body = "TIME,COUNT\nISO 8601,\nTime,Count\n,1\n2024-05-01T12:00:00Z,3\n"
    assert decode_smart_citizen_csv(body) == [Sample("COUNT", 3.0, MAY_1_NOON_US, None)]
    assert decode_smart_citizen_csv("") == []
    assert decode_smart_citizen_csv(SMART_CITIZEN_HEADER) == []


@pytest.mark.parametrize(
    ("body", "where", "words"),
    [
        ("TIME,TEMP\nISO 8601,C\n", None, "expected four header rows"),
        ("TIME,TEMP\nISO 8601\nTime,T\n,1\n", "line 2", "header row has 1 cells"),
        ("TIME,,HUM\nISO 8601,C,%\nTime,T,H\n,1,2\n", "line 1, column 2", "empty key"),
        (SMART_CITIZEN_HEADER + "2024-05-01T12:00:00Z,1,2\n", "line 5", "expected 5 cells"),
        (SMART_CITIZEN_HEADER + "yesterday,1,2,3,4\n", "line 5, column 1", "not an RFC 3339"),
        (
            SMART_CITIZEN_HEADER + "2024-05-01T12:00:00Z,1,2,loud,4\n",
            "line 5, column 4 ('NOISE_A')",
            "'loud' is not a number",
        ),
        (SMART_CITIZEN_HEADER + '2024-05-01T12:00:00Z,1,2,3,4\r"\n', "line 5", "not a CSV row"),
    ],
)
def test_smart_citizen_errors(body: str, where: str | None, words: str) -> None:
    error = error_of(decode_smart_citizen_csv, body)
    assert (error.fmt, error.where) == ("smartcitizen", where)
    assert words in str(error)


# --- registry ---------------------------------------------------------------------------


def test_registry_names() -> None:
    assert sorted(DECODERS) == [
        "csv",
        "framed",
        "influx",
        "jsonl",
        "opensensemap-csv",
        "opensensemap-json",
        "plotter",
        "smartcitizen",
        "thingsboard",
    ]


@pytest.mark.parametrize(
    ("fmt", "body", "expected"),
    [
        (
            "plotter",
            "temp:21.5,hum:40\r\ntemp:21.6,hum:41\r\n",
            [Sample("temp", 21.5), Sample("hum", 40.0), Sample("temp", 21.6), Sample("hum", 41.0)],
        ),
        (
            "csv",
            "temp,hum\n21.5,40\n\n22,\n",
            [Sample("temp", 21.5), Sample("hum", 40.0), Sample("temp", 22.0)],
        ),
        ("csv", "1;2\n", [Sample("value 1", 1.0), Sample("value 2", 2.0)]),
        ("jsonl", '{"a":1}\n\n{"b":2}', [Sample("a", 1.0), Sample("b", 2.0)]),
        (
            "framed",
            "/*1,2*/\n/*3*/\n",
            [Sample("value 1", 1.0), Sample("value 2", 2.0), Sample("value 1", 3.0)],
        ),
        ("influx", "m a=1\nm b=2", [Sample("a", 1.0), Sample("b", 2.0)]),
        ("thingsboard", '{"a":1}', [Sample("a", 1.0)]),
        ("opensensemap-csv", "s,1", [Sample("s", 1.0)]),
        ("opensensemap-json", '{"s":"1"}', [Sample("s", 1.0)]),
        (
            "smartcitizen",
            "T,A\nISO,C\nT,A\n,1\n2024-05-01T12:00:00Z,1",
            [Sample("A", 1.0, MAY_1_NOON_US, "C")],
        ),
    ],
)
def test_decode_by_name(fmt: str, body: str, expected: list[Sample]) -> None:
    assert decode(fmt, body) == expected
    assert decode(fmt, body.encode()) == expected


def test_plotter_body_keeps_its_first_line() -> None:
    assert decode("plotter", "1\n2\n") == [Sample("value 1", 1.0), Sample("value 1", 2.0)]


@pytest.mark.parametrize(
    ("fmt", "body", "where"),
    [
        ("plotter", "1,2\n3,x\n", "line 2, token 2"),
        ("csv", "temp,hum\n1,2\n3\n", "line 3"),
        ("csv", "temp,hum\n1,2\n3,x\n", "line 3, cell 2 ('hum')"),
        ("jsonl", '{"a":1}\n{"a":true}', "line 2, field 'a'"),
        ("jsonl", '{"a":1}\r\n[1]', "line 2"),
        ("framed", "/*1*/\n\n1*/", "line 3, frame start"),
        ("plotter", b"1\n\xc3(", "byte 3"),
    ],
)
def test_body_errors_name_the_line(fmt: str, body: str | bytes, where: str) -> None:
    error = error_of(decode, fmt, body)
    assert (error.fmt, error.where) == (fmt, where)
    assert str(error).startswith(f"{fmt}: {where}: ")


def test_decode_unknown_format_names_the_known_ones() -> None:
    error = error_of(decode, "modbus", b"\x01\x03")
    assert error.fmt == "modbus"
    assert "unknown format 'modbus'" in str(error)
    assert "plotter" in str(error)
    assert "smartcitizen" in str(error)


# --- line format detection --------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (['{"temp": 21.5}', '{"temp": 21.6}'], "jsonl"),
        (["/*21.5,40*/", "/*21.6,41*/"], "framed"),
        (["temp:21.5,hum:40", "temp:21.6 hum:41"], "plotter"),
        (["21.5 40", "21.6\t41", "21.7,42"], "plotter"),
        (["21,5;40", "21,6;41"], "csv"),
        (["temp,hum", "21.5,40", "21.6,41"], "csv"),
        (["temp;hum", "21,5;40"], "csv"),
        (["mp:21.5,h", "temp:21.6,hum:41", "temp:21.7,hum:42"], "plotter"),  # a cut first line
        (["Booting...", "WiFi connected", '{"temp": 1}'], "jsonl"),
        (["Booting...", "", "   "], None),
        ([], None),
        (["temp,hum"], None),  # a header alone is not enough
        (['{"a":1}', "1 2"], "jsonl"),  # ties go to the first in the documented order
    ],
)
def test_detect_line_format(lines: list[str], expected: str | None) -> None:
    assert detect_line_format(lines) == expected


# --- formatters -------------------------------------------------------------------------


def test_format_plotter_line() -> None:
    assert format_plotter_line([Sample("temp", 21.5), Sample("hum", 40.0)]) == "temp:21.5,hum:40.0"
    assert format_plotter_line([Sample("value 1", 21.5), Sample("value 2", 1e16)]) == "21.5,1e+16"
    assert format_plotter_line([]) == ""
    with pytest.raises(ValueError, match="label"):
        format_plotter_line([Sample("room temp", 21.5)])
    with pytest.raises(ValueError, match="label"):
        format_plotter_line([Sample("value 2", 21.5)])


def test_format_json_line() -> None:
    samples = [Sample("temp", 21.5, MAY_1_NOON_US), Sample("hum", 40.0, MAY_1_NOON_US)]
    assert format_json_line(samples) == '{"temp":21.5,"hum":40.0,"ts":1714564800000}'
    assert format_json_line([Sample("a", 1.0)], ts=MAY_1_NOON_US + 1) == (
        '{"a":1.0,"ts":"2024-05-01T12:00:00.000001Z"}'
    )
    assert format_json_line([Sample("a", 1.0)]) == '{"a":1.0}'
    with pytest.raises(ValueError, match="different times"):
        format_json_line([Sample("a", 1.0, 1), Sample("b", 1.0, 2)])
    with pytest.raises(ValueError, match="twice"):
        format_json_line([Sample("a", 1.0), Sample("a", 2.0)])


def test_format_framed_line() -> None:
    assert format_framed_line([21.5, 40, -0.0]) == "/*21.5,40.0,-0.0*/"


def test_format_influx() -> None:
    samples = [
        Sample("SDS_P1", 5.38, MAY_1_NOON_US, device="esp8266-12345"),
        Sample("SDS_P2", 4.98, MAY_1_NOON_US, device="esp8266-12345"),
        Sample("x y", 1.0),
    ]
    assert format_influx("feinstaub", samples, precision="s") == (
        "feinstaub,device=esp8266-12345 SDS_P1=5.38,SDS_P2=4.98 1714564800\nfeinstaub x\\ y=1.0"
    )
    assert format_influx("my room", samples[:1], tags={"node": "n1", "a,b": "c=d"}) == (
        "my\\ room,node=n1,a\\,b=c\\=d SDS_P1=5.38 1714564800000000000"
    )
    with pytest.raises(ValueError, match="would not read back"):
        format_influx("#m", samples)
    with pytest.raises(ValueError, match="precision"):
        format_influx("m", samples, precision="fortnight")


def test_format_thingsboard_shapes() -> None:
    assert format_thingsboard([Sample("temperature", 22.5)]) == '{"temperature":22.5}'
    at = THINGSBOARD_TS_MS * 1_000
    assert format_thingsboard([Sample("a", 1.0, at), Sample("b", 2.0, at)]) == (
        '{"ts":1451649600512,"values":{"a":1.0,"b":2.0}}'
    )
    assert format_thingsboard([Sample("a", 1.0, at), Sample("a", 2.0, at + 1_000)]) == (
        '[{"ts":1451649600512,"values":{"a":1.0}},{"ts":1451649600513,"values":{"a":2.0}}]'
    )
    assert format_thingsboard([]) == "{}"
    with pytest.raises(ValueError, match="timestamped point"):
        format_thingsboard([Sample("ts", 1.0), Sample("values", 2.0)])
