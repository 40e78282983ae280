"""Parsing lines and columns into readings: exact values, exact reasons, and properties."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iot_platform.core.import_columns import readings_from_columns
from iot_platform.core.reading_rules import DecodeError, FieldError, FramingError, ParseError, Reading, mapped_keys
from iot_platform.core.serial_protocol import DEFAULT_COLUMNS, LineFormat, LineParser, LineSplitter
from iot_platform.core.timestamps import TimestampParser
from iot_platform.core.schemas import LANDING, METRICS

UTC = dt.timezone.utc
CSV = LineParser(LineFormat(), recover_glued=False)


def R(sensor_id="sensor_001", seq=None, ts=None, **metrics) -> Reading:
    return Reading(sensor_id, seq, ts, **metrics)


FULL = dict(temperature=23.51, humidity=45.2, pressure=1013.2, vibration=0.31, battery_level=98.7)

# -- default CSV: accepted lines ------------------------------------------------------

VALID_CSV = [
    (b"sensor_001,42,23.51,45.2,1013.2,0.31,98.7", R(seq=42, **FULL)),
    (b"sensor_001,42,23.51,45.2,1013.2,0.31,98.7\r\n", R(seq=42, **FULL)),
    (b"  sensor_001 , 42 ,23.51, 45.2,1013.2,0.31,98.7 \t", R(seq=42, **FULL)),
    (b"dev-7.a:b,0,-5,0,300,0,0", R("dev-7.a:b", 0, temperature=-5.0, humidity=0.0, pressure=300.0, vibration=0.0, battery_level=0.0)),
    # a subset: empty fields are "not measured"
    (b"sensor_001,,23.5,,,,", R(temperature=23.5)),
    (b"sensor_001,7,,,,0.5,", R(seq=7, vibration=0.5)),
    # outside VALID_RANGE but inside INGEST_LIMITS: a broken sensor's reading, kept
    (b"sensor_001,1,-127,255,1013.2,0.31,98.7", R(seq=1, temperature=-127.0, humidity=255.0, pressure=1013.2, vibration=0.31, battery_level=98.7)),
    # the ingest limits are inclusive
    (b"s,1,-273.15,-1000,0,0,-1000", R("s", 1, temperature=-273.15, humidity=-1000.0, pressure=0.0, vibration=0.0, battery_level=-1000.0)),
    (b"s,1,10000,1000,100000,10000,1000", R("s", 1, temperature=10000.0, humidity=1000.0, pressure=100000.0, vibration=10000.0, battery_level=1000.0)),
    (b"s,1,1e2,.5,1.,+3,-0.0", R("s", 1, temperature=100.0, humidity=0.5, pressure=1.0, vibration=3.0, battery_level=-0.0)),
    (b"s,999999999999999999,1,1,1,1,1", R("s", 999999999999999999, temperature=1.0, humidity=1.0, pressure=1.0, vibration=1.0, battery_level=1.0)),
]


@pytest.mark.parametrize(("line", "expected"), VALID_CSV)
def test_csv_line_gives_exact_reading(line, expected):
    assert CSV.parse_line(line) == expected


@pytest.mark.parametrize("line", [b"# arduino_emu fw v1 id=sensor_001", b"# ok r\r\n", b"  #x"])
def test_comment_lines_are_not_readings(line):
    assert CSV.parse_line(line) is None


# -- default CSV: rejected lines, with the exact reason -------------------------------------

INVALID_CSV = [
    (b"", FramingError, "empty", None, "empty line"),
    (b"\r\n", FramingError, "empty", None, "empty line"),
    (b"\xff\x00\x13abc", DecodeError, "decode", None, "line is not UTF-8 text: byte 0xff at offset 0"),
    (b"sensor_001,1,2\xe9", DecodeError, "decode", None, "line is not UTF-8 text: byte 0xe9 at offset 14"),
    (b"sensor_001,17,23.4", FramingError, "field_count", None,
     "expected 7 fields (sensor_id,seq,temperature,humidity,pressure,vibration,battery_level), got 3"),
    (b"sensor_001,17,23.51,45.2,1013.2,0.31,98.7,999", FramingError, "field_count", None,
     "expected 7 fields (sensor_id,seq,temperature,humidity,pressure,vibration,battery_level), got 8"),
    (b"sensor_001,1sensor_001,17,23.5,45.2,1013.2,0.31,98.7", FramingError, "field_count", None,
     "expected 7 fields (sensor_id,seq,temperature,humidity,pressure,vibration,battery_level), got 8"),
    (b"sensor_001,17,nan,ERR,1013.2,0.31,98.7", FieldError, "non_finite", "temperature",
     "temperature 'nan' is not a finite number; NaN and infinity are rejected"),
    (b"sensor_001,17,23.5,ERR,1013.2,0.31,98.7", FieldError, "not_a_number", "humidity",
     "humidity 'ERR' is not a number; expected a decimal number such as 23.5"),
    (b"sensor_001,17,23.5,1_0,1013.2,0.31,98.7", FieldError, "not_a_number", "humidity",
     "humidity '1_0' is not a number; expected a decimal number such as 23.5"),
    (b"sensor_001,17,23.5,45,-inf,0.31,98.7", FieldError, "non_finite", "pressure",
     "pressure '-inf' is not a finite number; NaN and infinity are rejected"),
    (b"sensor_001,17,1e999,45,1,0.31,98.7", FieldError, "non_finite", "temperature",
     "temperature '1e999' is not a finite number; NaN and infinity are rejected"),
    (b"sensor_001,17,-300,45,1,0.31,98.7", FieldError, "out_of_limits", "temperature",
     "temperature -300.0 is outside the ingest limits -273.15 to 10000.0 "
     "(values outside the valid range -40.0 to 85.0 but inside these limits are kept)"),
    (b"sensor_001,17,20,45,1,-0.5,98.7", FieldError, "out_of_limits", "vibration",
     "vibration -0.5 is outside the ingest limits 0.0 to 10000.0 "
     "(values outside the valid range 0.0 to 50.0 but inside these limits are kept)"),
    (b"sensor 1,17,20,45,1,0.5,98.7", FieldError, "sensor_id", "sensor_id",
     "sensor_id 'sensor 1' is not valid; expected 1 to 64 characters from A-Z a-z 0-9 _ . : -"),
    (b",17,20,45,1,0.5,98.7", FieldError, "sensor_id", "sensor_id",
     "sensor_id is missing; expected it in the line or a default sensor id"),
    (b"sensor_001,-1,20,45,1,0.5,98.7", FieldError, "seq", "seq",
     "seq '-1' is not valid; expected a whole number from 0 to 999999999999999999"),
    (b"sensor_001,1.5,20,45,1,0.5,98.7", FieldError, "seq", "seq",
     "seq '1.5' is not valid; expected a whole number from 0 to 999999999999999999"),
    (b"sensor_001,1,,,,,", FieldError, "no_values", None,
     "no metric values; expected at least one of temperature, humidity, pressure, vibration, battery_level"),
]  # fmt: skip


@pytest.mark.parametrize(("line", "error", "code", "field", "message"), INVALID_CSV)
def test_csv_line_rejected_with_specific_error(line, error, code, field, message):
    with pytest.raises(error) as info:
        CSV.parse_line(line)
    assert (info.value.code, info.value.field, str(info.value)) == (code, field, message)


# -- other layouts ----------------------------------------------------------------------


def test_csv_custom_columns_with_skipped_field_and_default_sensor():
    # the emulated board's FORMAT=2: "<light>,<temperature>"
    p = LineParser(LineFormat(columns=("_", "temperature"), sensor_id="uno_1"))
    assert p.parse_line(b"512,23.51\r\n") == R("uno_1", temperature=23.51)
    with pytest.raises(FramingError, match=r"expected 2 fields \(_,temperature\), got 3"):
        p.parse_line(b"512,7,7")


def test_csv_other_order_delimiter_and_device_timestamp():
    p = LineParser(LineFormat(columns=("ts", "humidity", "sensor_id"), delimiter=";"))
    assert p.parse_line(b"2026-11-22T15:01:02.5Z;45.5;a1") == R(
        "a1", ts=dt.datetime(2026, 11, 22, 15, 1, 2, 500000, tzinfo=UTC), humidity=45.5
    )
    assert p.parse_line(b"2026-11-22 16:01:02+01:00;1;a1").ts == dt.datetime(2026, 11, 22, 15, 1, 2, tzinfo=UTC)
    assert p.parse_line(b"2026-11-22T15:01:02;1;a1").ts == dt.datetime(2026, 11, 22, 15, 1, 2, tzinfo=UTC)  # naive: UTC
    assert p.parse_line(b"1763823662.25;1;a1").ts == dt.datetime(2025, 11, 22, 15, 1, 2, 250000, tzinfo=UTC)
    with pytest.raises(FieldError, match=r"^ts 'yesterday' is not a timestamp; expected ISO 8601") as info:
        p.parse_line(b"yesterday;1;a1")
    assert info.value.code == "ts"
    with pytest.raises(FieldError, match=r"^ts '1763823662000' is outside 1970-01-01 to 2200-01-01$"):
        p.parse_line(b"1763823662000;1;a1")  # milliseconds read as seconds


def test_csv_epoch_milliseconds():
    p = LineParser(LineFormat(columns=("sensor_id", "ts", "temperature"), ts_unit="ms"))
    assert p.parse_line(b"a,1763823662123,20").ts == dt.datetime(2025, 11, 22, 15, 1, 2, 123000, tzinfo=UTC)


def test_bare_arduino_value_is_scaled_into_the_configured_metric():
    p = LineParser(LineFormat(kind="value", metric="temperature", sensor_id="lab_1", scale=0.1, offset=-10.0))
    assert p.parse_line(b"450\r\n") == R("lab_1", temperature=35.0)
    with pytest.raises(FieldError, match=r"^temperature 'ERR' is not a number"):
        p.parse_line(b"ERR")
    with pytest.raises(FramingError, match=r"expected 1 fields \(temperature\), got 3"):
        p.parse_line(b"450,7,7")


def test_key_value_lines():
    p = LineParser(LineFormat(kind="kv", sensor_id="dev1", keys=(("temperature", "t"), ("sensor_id", "id"))))
    assert p.parse_line(b"id=node7 t=21.5, humidity=40;seq=3 rssi=-70") == R("node7", 3, temperature=21.5, humidity=40.0)
    assert p.parse_line(b"t=21.5") == R("dev1", temperature=21.5)  # default sensor id
    with pytest.raises(FramingError, match=r"^token 'garbage' is not key=value$"):
        p.parse_line(b"t=1 garbage")
    with pytest.raises(FramingError, match=r"^key 't' appears twice in the line$"):
        p.parse_line(b"t=1 t=2")
    with pytest.raises(FieldError, match=r"^humidity '4t=23.6' is not a number"):
        p.parse_line(b"t=23.5 humidity=4t=23.6")  # two lines glued together
    with pytest.raises(FieldError, match=r"^no metric values"):
        p.parse_line(b"temperature=20")  # 'temperature' is mapped to 't', so this key is unknown


def test_json_lines():
    p = LineParser(LineFormat(kind="json", keys=(("battery_level", "batt"),)))
    assert p.parse_line(b'{"sensor_id": "a", "seq": 5, "temperature": 21, "batt": "98.5", "extra": [1]}') == R(
        "a", 5, temperature=21.0, battery_level=98.5
    )
    assert p.parse_line(b'{"sensor_id": "a", "ts": 1763823662, "humidity": null, "pressure": 1000.5}') == R(
        "a", ts=dt.datetime(2025, 11, 22, 15, 1, 2, tzinfo=UTC), pressure=1000.5
    )
    cases = [
        (b'{"sensor_id": "a", "temperature": NaN}', "non_finite", "temperature 'nan' is not a finite number; NaN and infinity are rejected"),
        (b'{"sensor_id": "a", "temperature": true}', "not_a_number", "temperature 'true' is not a number; expected a decimal number such as 23.5"),
        (b'{"sensor_id": "a", "temperature": 1e400}', "non_finite", "temperature 'inf' is not a finite number; NaN and infinity are rejected"),
        (b'[1, 2]', "syntax", "JSON line is a list; expected an object"),
        (b'{"temperature": 1}', "sensor_id", "sensor_id is missing; expected it in the line or a default sensor id"),
        (b'{"sensor_id": "a", "seq": -3, "temperature": 1}', "seq", "seq '-3' is not valid; expected a whole number from 0 to 999999999999999999"),
    ]  # fmt: skip
    for line, code, message in cases:
        with pytest.raises(ParseError) as info:
            p.parse_line(line)
        assert (info.value.code, str(info.value)) == (code, message), line
    with pytest.raises(FramingError, match=r"^line is not JSON: ") as info:
        p.parse_line(b'{"sensor_id": "a", "temp')
    assert info.value.code == "syntax"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(kind="xml"), "line format 'xml' is not supported; expected one of csv, kv, json, value"),
        (dict(columns=("sensor_id", "temp")), "column 'temp' is not known; expected one of sensor_id, seq, ts, "
         "temperature, humidity, pressure, vibration, battery_level, or _ to skip a field"),
        (dict(columns=("sensor_id", "seq")), "columns sensor_id,seq have no metric; expected at least one of "
         "temperature, humidity, pressure, vibration, battery_level"),
        (dict(columns=("temperature",)), "the columns have no sensor_id, so a default sensor id is needed"),
        (dict(columns=("sensor_id", "temperature", "temperature")), "columns sensor_id,temperature,temperature name a field twice"),
        (dict(delimiter="a"), "delimiter 'a' is not supported; expected one character that is not a letter, digit, "
         "quote, '.', '+', '-' or a line break"),
        (dict(kind="value", sensor_id="x"), "metric None is not known; expected one of temperature, humidity, "
         "pressure, vibration, battery_level"),
        (dict(kind="value", metric="temperature"), "the value format needs a sensor id (the line carries none)"),
        (dict(sensor_id="bad id"), "sensor_id 'bad id' is not valid; expected 1 to 64 characters from A-Z a-z 0-9 _ . : -"),
        (dict(ts_unit="h"), "timestamp unit 'h' is not supported; expected one of s, ms, us"),
        (dict(scale=2.0), "metric, scale and offset apply to the value format only"),
    ],
)  # fmt: skip
def test_line_format_validates_itself(kwargs, message):
    with pytest.raises(ValueError) as info:
        LineFormat(**kwargs)
    assert str(info.value) == message


def test_mapped_keys():
    assert mapped_keys(["temperature=temp_c", " seq = n "]) == (("temperature", "temp_c"), ("seq", "n"))
    with pytest.raises(ValueError, match=r"^mapping 'temp_c' is not FIELD=NAME"):
        mapped_keys(["temp_c"])
    with pytest.raises(ValueError, match=r"^mapping 'temp=x': field 'temp' is not known"):
        mapped_keys(["temp=x"])


# -- batches: the vectorized path gives what parse_line gives -------------------------------

MIXED = [
    b"sensor_001,0,23.51,45.2,1013.2,0.31,98.7\r",
    b"# ok r\r",
    b"\r",
    b"\xff\x00\x99junk\r",
    b"sensor_001,1,23.61,45.4,1013.2,0.02,98.7\r",
    b"sensor_001,2,nan,ERR,1013.2,0.31,98.7\r",
    b"sensor_002, 3 ,1,2,3,4,5",  # spaces: not for the fast path, fine for parse_line
    b"sensor_001,4,20000,1,1,1,1",
    b"sensor_001,5,-127,1,1,1,1",  # kept: outside VALID_RANGE, inside INGEST_LIMITS
    b"sensor_001,6,1e999,1,1,1,1",
] * 3  # 30 lines: enough for the vectorized path


def _per_line(parser: LineParser, lines):
    out = []
    for i, line in enumerate(lines):
        try:
            out.append((i, parser.parse_line(line)))
        except ParseError as exc:
            out.append((i, (exc.code, str(exc))))
    return out


def _batch(parser: LineParser, lines, base_us: int = 1_000_000_000_000_001):  # no token gives this time
    received = np.arange(len(lines), dtype=np.int64) + base_us
    batch = parser.parse_batch(lines, received, "serial:test")
    assert batch.table.schema.equals(LANDING)
    out = {}
    for i, row in zip(batch.index.tolist(), batch.table.to_pylist()):
        recv = dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(microseconds=int(received[i]))
        assert row["received_at"] == recv and row["source"] == "serial:test"
        device_ts = None if row["ts"] == recv else row["ts"]
        out[i] = Reading(row["sensor_id"], row["seq"], device_ts, **{m: row[m] for m in METRICS})
    for rej in batch.rejects:
        out[rej.index] = (rej.error.code, str(rej.error))
    return batch, out


def test_parse_batch_matches_parse_line_exactly():
    batch, got = _batch(CSV, MIXED)
    expected = dict(_per_line(CSV, MIXED))
    expected = {i: v for i, v in expected.items() if v is not None}  # comments are counted, not returned
    assert got == expected
    assert batch.comments == 3
    assert batch.index.tolist() == [i for i in range(30) if i % 10 in (0, 4, 6, 8)]
    assert [r.error.code for r in batch.rejects][:5] == ["empty", "decode", "non_finite", "out_of_limits", "non_finite"]


def test_parse_batch_received_at_and_ts():
    lines = [b"sensor_001,%d,20,1,1,1,1" % i for i in range(20)]
    batch = CSV.parse_batch(lines, np.arange(20, dtype=np.int64) * 1_000_000, "s")
    t = batch.table
    assert t.column("ts").to_pylist() == [dt.datetime(1970, 1, 1, 0, 0, i, tzinfo=UTC) for i in range(20)]
    assert t.column("ts").to_pylist() == t.column("received_at").to_pylist()
    assert t.column("seq").to_pylist() == list(range(20))


def test_parse_batch_empty():
    batch = CSV.parse_batch([], np.empty(0, dtype=np.int64), "s")
    assert batch.table.schema.equals(LANDING) and batch.table.num_rows == 0 and batch.rejects == []


# Lines built from tokens that sit on the edges of the grammar, so that the fast path
# and parse_line disagree if their rules differ anywhere.
_NUMBERS = st.sampled_from(
    ["23.51", "0", "-0", "+1", "1.", ".5", "007", "1e3", "1E-3", "-273.15", "-273.16", "10000", "10000.0001",
     "1e999", "nan", "NaN", "inf", "-inf", "ERR", "", " 5", "1_0", "0x10", "١٢", "4.9e-324"]
)  # fmt: skip
_IDS = st.sampled_from(["sensor_001", "a", "A-b.c:d_9", "", "bad id", "x" * 64, "x" * 65, "#c", "é"])
_SEQS = st.sampled_from(["0", "42", "", "-1", "1.5", "999999999999999999", "9999999999999999999", "+5", " 7"])
_TS = st.sampled_from(
    ["2026-11-22T15:01:02Z", "2026-11-22 15:01:02.123456", "2026-11-22T15:01:02+05:30", "2026-13-22T15:01:02",
     "1763823662", "1763823662.5", "-5", "1e12", "", "soon", "2026-11-22T15:01:02.1234567", "2199-12-31T23:59:59Z",
     "2200-01-01T00:00:00Z", "1969-12-31T23:59:59Z"]
)  # fmt: skip


@st.composite
def _csv_lines(draw, ts: bool):
    fields = [draw(_IDS), draw(_SEQS)] + ([draw(_TS)] if ts else []) + [draw(_NUMBERS) for _ in range(5)]
    if draw(st.integers(0, 9)) == 0:
        fields = fields[: draw(st.integers(0, len(fields)))]
    line = ",".join(fields).encode()
    return line + draw(st.sampled_from([b"", b"\r", b" \r", b"\t"]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_csv_lines(ts=False), min_size=16, max_size=40))
def test_property_batch_equals_per_line_default_csv(lines):
    _, got = _batch(CSV, lines)
    assert got == {i: v for i, v in _per_line(CSV, lines) if v is not None}


TS_FORMAT = LineParser(LineFormat(columns=("sensor_id", "seq", "ts", *METRICS)), recover_glued=False)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_csv_lines(ts=True), min_size=16, max_size=40))
def test_property_batch_equals_per_line_with_device_timestamps(lines):
    _, got = _batch(TS_FORMAT, lines)
    assert got == {i: v for i, v in _per_line(TS_FORMAT, lines) if v is not None}


PARSERS = [
    CSV,
    TS_FORMAT,
    LineParser(LineFormat(kind="kv", sensor_id="d"), recover_glued=False),
    LineParser(LineFormat(kind="json"), recover_glued=False),
    LineParser(LineFormat(kind="value", metric="humidity", sensor_id="d", scale=3.0), recover_glued=False),
]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.sampled_from(range(len(PARSERS))))
def test_property_parse_line_returns_a_reading_or_raises_parse_error(raw, which):
    try:
        result = PARSERS[which].parse_line(raw)
    except ParseError as exc:
        assert exc.code and str(exc)
        return
    assert result is None or isinstance(result, Reading)
    if isinstance(result, Reading):
        values = [getattr(result, m) for m in METRICS]
        assert any(v is not None for v in values)
        assert all(v is None or math.isfinite(v) for v in values)


# -- framing ------------------------------------------------------------------------------


def test_line_splitter_frames_across_chunks():
    s = LineSplitter(max_line_bytes=16)
    assert s.feed(b"abc\r\nde") == ([b"abc\r"], {})
    assert s.feed(b"f\n\ng") == ([b"def", b""], {})
    assert s.pending == b"g"
    assert s.feed(b"") == ([], {})
    assert s.flush() == b"g"
    assert s.flush() == b""


# Over-long lines (one record per line): tests/test_capture_recovery.py


# -- columns (import) ----------------------------------------------------------------------

RECEIVED = dt.datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _columns(columns, *, sensor_id=None, **ts_options):
    n = len(next(iter(columns.values())))
    arrays = {k: v if isinstance(v, pa.Array) else pa.array(v) for k, v in columns.items()}
    table, good, reasons = readings_from_columns(
        arrays, num_rows=n, timestamps=TimestampParser(**ts_options), source="import:t.csv",
        received_at=RECEIVED, sensor_id=sensor_id,
    )  # fmt: skip
    assert table.schema.equals(LANDING)
    return table, good.tolist(), reasons


def test_columns_good_and_bad_rows_with_reasons():
    table, good, reasons = _columns(
        {
            "sensor_id": ["a", "a", "", "b c", "a", "a", "a", "a", "a"],
            "ts": ["2026-01-01T00:00:00Z", "2026-01-01 00:00:01", "2026-01-01T00:00:02Z", "2026-01-01T00:00:03Z",
                   "garbage", "2026-01-01T00:00:05Z", "2026-01-01T00:00:06Z", "2026-01-01T00:00:07Z", "2026-01-01T00:00:08Z"],
            "temperature": [" 21.5", "NA", "1", "1", "1", "nan", "abc", "-300", "-127"],
            "humidity": ["", "40", "1", "1", "1", "1", "1", "1", ""],
            "seq": ["1", "", "3", "4", "5", "6", "7", "8", "x"],
        }
    )  # fmt: skip
    assert good == [0, 1]
    assert table.select(["sensor_id", "ts", "temperature", "humidity", "seq", "source", "received_at"]).to_pylist() == [
        {"sensor_id": "a", "ts": dt.datetime(2026, 1, 1, tzinfo=UTC), "temperature": 21.5, "humidity": None,
         "seq": 1, "source": "import:t.csv", "received_at": RECEIVED},
        {"sensor_id": "a", "ts": dt.datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC), "temperature": None, "humidity": 40.0,
         "seq": None, "source": "import:t.csv", "received_at": RECEIVED},
    ]  # fmt: skip
    assert reasons == {
        2: ("sensor_id", "sensor_id is missing"),
        3: ("sensor_id", "sensor_id 'b c' is not valid; expected 1 to 64 characters from A-Z a-z 0-9 _ . : -"),
        4: ("ts", "ts 'garbage' is not a timestamp; expected a date/time pandas can read, ISO 8601, or epoch "
                  "numbers (give --timestamp-format for other layouts)"),
        5: ("non_finite", "temperature 'nan' is not a finite number; NaN and infinity are rejected"),
        6: ("not_a_number", "temperature 'abc' is not a number; expected a decimal number such as 23.5"),
        7: ("out_of_limits", "temperature -300.0 is outside the ingest limits -273.15 to 10000.0 "
                             "(values outside the valid range -40.0 to 85.0 but inside these limits are kept)"),
        8: ("seq", "seq 'x' is not valid; expected a whole number from 0 to 999999999999999999"),
    }  # fmt: skip


def test_columns_numeric_types_and_constant_sensor_id():
    table, good, reasons = _columns(
        {
            "ts": pa.array([1_763_823_662_000, 1_763_823_663_000, None], pa.int64()),
            "pressure": pa.array([1000.5, float("inf"), 1.0]),
        },
        sensor_id="p1",
        unit="ms",
    )
    assert good == [0]
    assert table.select(["sensor_id", "ts", "pressure"]).to_pylist() == [
        {"sensor_id": "p1", "ts": dt.datetime(2025, 11, 22, 15, 1, 2, tzinfo=UTC), "pressure": 1000.5}
    ]
    assert reasons == {
        1: ("non_finite", "pressure inf is not a finite number; NaN and infinity are rejected"),
        2: ("ts", "ts is missing"),
    }


def test_timestamps_local_time_with_daylight_saving_changes():
    p = TimestampParser(timezone="Europe/Berlin", name="time")
    us, ok, reasons = p.parse(
        pa.array(["2026-03-29 01:30:00", "2026-03-29 02:30:00", "2026-03-29 03:30:00", "2026-10-25 02:30:00",
                  "2026-07-01T12:00:00+00:00"])
    )  # fmt: skip
    assert ok.tolist() == [True, False, True, False, True]
    got = [dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(microseconds=int(u)) for u in us[ok]]
    assert got == [
        dt.datetime(2026, 3, 29, 0, 30, tzinfo=UTC),  # CET, UTC+1
        dt.datetime(2026, 3, 29, 1, 30, tzinfo=UTC),  # CEST, UTC+2
        dt.datetime(2026, 7, 1, 12, 0, tzinfo=UTC),  # had its own offset
    ]
    assert reasons[1] == ("ts", "time '2026-03-29 02:30:00' does not exist or is ambiguous in Europe/Berlin "
                                "(a daylight-saving change); give the time with its UTC offset")  # fmt: skip
    assert reasons[3][1].startswith("time '2026-10-25 02:30:00' does not exist or is ambiguous")


@pytest.mark.parametrize(
    ("values", "options", "expected"),
    [
        (["22.11.2026 15:01:02", "23.11.2026 15:01:02"], {}, [dt.datetime(2026, 11, 22, 15, 1, 2), dt.datetime(2026, 11, 23, 15, 1, 2)]),
        (["11/22/2026 3:01 PM"], {"fmt": "%m/%d/%Y %I:%M %p"}, [dt.datetime(2026, 11, 22, 15, 1)]),
        (["2026-11-22"], {}, [dt.datetime(2026, 11, 22)]),
        (["2026-11-22T15:01:02.123+0100"], {}, [dt.datetime(2026, 11, 22, 14, 1, 2, 123000)]),
        (["1763823662", "1763823662.5"], {}, [dt.datetime(2025, 11, 22, 15, 1, 2), dt.datetime(2025, 11, 22, 15, 1, 2, 500000)]),
        (["1763823662123456789"], {"unit": "ns"}, [dt.datetime(2025, 11, 22, 15, 1, 2, 123456)]),
    ],
)  # fmt: skip
def test_timestamp_text_layouts(values, options, expected):
    us, ok, reasons = TimestampParser(**options).parse(pa.array(values))
    assert reasons == {} and ok.all()
    assert [dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=int(u)) for u in us] == expected


def test_timestamp_typed_columns():
    naive = pa.array([dt.datetime(2026, 1, 1, 12)], pa.timestamp("ns"))
    aware = pa.array([dt.datetime(2026, 1, 1, 12, tzinfo=UTC)], pa.timestamp("ms", "America/New_York"))
    dates = pa.array([dt.date(2026, 1, 1)], pa.date32())
    for arr, tz, want in [
        (naive, "UTC", dt.datetime(2026, 1, 1, 12)),
        (naive, "America/New_York", dt.datetime(2026, 1, 1, 17)),
        (aware, "Europe/Berlin", dt.datetime(2026, 1, 1, 12)),  # has its zone: --timezone does not apply
        (dates, "Asia/Tokyo", dt.datetime(2025, 12, 31, 15)),
    ]:
        us, ok, _ = TimestampParser(timezone=tz).parse(arr)
        assert ok.tolist() == [True]
        assert dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=int(us[0])) == want
    with pytest.raises(ValueError, match=r"^timestamp column 'ts' has type bool; expected timestamps, dates"):
        TimestampParser().parse(pa.array([True]))
    with pytest.raises(ValueError, match=r"^timezone 'Mars/Base' is not known; expected an IANA name"):
        TimestampParser(timezone="Mars/Base")


def test_timestamp_out_of_range_names_the_unit():
    _, ok, reasons = TimestampParser().parse(pa.array([1_763_823_662_000], pa.int64()))
    assert ok.tolist() == [False]
    assert reasons == {0: ("ts", "ts 1763823662000 is outside 1970-01-01 to 2200-01-01 (read as epoch seconds; "
                                 "is the timestamp unit right?)")}  # fmt: skip


def test_default_columns_constant():
    assert DEFAULT_COLUMNS == ("sensor_id", "seq", "temperature", "humidity", "pressure", "vibration", "battery_level")


@pytest.mark.parametrize(
    ("fmt", "lines"),
    [
        (LineFormat(kind="value", metric="humidity", sensor_id="d", scale=0.1, offset=1.0),
         [b"450", b"ERR", b"1e999", b"-5", b"45\r", b"", b"# x", b"99999", b"7,7"] * 2),
        (LineFormat(columns=("_", "temperature", "seq"), sensor_id="d", delimiter="\t"),
         [b"512\t23.51\t1", b"x\t-300\t2", b"\t1\t", b"a\tb\tc", b"1\t2"] * 4),
        (LineFormat(kind="kv", sensor_id="d"), [b"temperature=1 seq=2", b"temperature=x", b"", b"seq=1"] * 5),
        (LineFormat(kind="json"), [b'{"sensor_id": "a", "humidity": 1}', b"{", b'{"sensor_id": "a"}'] * 6),
    ],
    ids=["value", "tsv-skip", "kv", "json"],
)  # fmt: skip
def test_parse_batch_matches_parse_line_for_every_format(fmt, lines):
    parser = LineParser(fmt, recover_glued=False)
    _, got = _batch(parser, lines)
    assert got == {i: v for i, v in _per_line(parser, lines) if v is not None}
    assert any(isinstance(v, Reading) for v in got.values()) and any(isinstance(v, tuple) for v in got.values())
