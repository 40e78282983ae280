"""Importing damaged and awkward files: ambiguous dates, bad bytes, unclosed quotes, files that are not data.

Each test builds a real file in ``tmp_path`` and runs the real importer (or the
real CLI entry point) on it; the landing and quarantine files are read back.
"""

from __future__ import annotations

import datetime as dt
import gzip

import pytest
from conftest_serial import hidden_files, read_landing

from iot_platform.cli import main
from iot_platform.io.importer import ImportOptions, import_file
from iot_platform.io.landing import landing_files, read_quarantine

UTC = dt.timezone.utc
RECEIVED = dt.datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
T0 = 1_704_067_200  # 2024-01-01T00:00:00Z


def _cli(tmp_path, monkeypatch, *argv: str) -> int:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IOT_DATA_DIR", str(tmp_path / "data"))
    return main(["import", *argv])


# -- day/month ambiguity ---------------------------------------------------------------


def test_an_ambiguous_day_month_layout_is_refused(tmp_path, monkeypatch, capsys):
    (tmp_path / "amb.csv").write_text("sensor_id,ts,temperature\ns1,03.01.2024 10:00:02,20\ns1,04.01.2024 10:00:02,21\n")
    assert _cli(tmp_path, monkeypatch, "amb.csv") == 2
    captured = capsys.readouterr()
    assert captured.err == (
        "Error: amb.csv: the timestamps in column 'ts' could be day first or month first "
        "('03.01.2024 10:00:02' is 3 January or 1 March 2024) and no value in the file settles it; "
        "pass --timestamp-format '%d.%m.%Y %H:%M:%S' or --timestamp-format '%m.%d.%Y %H:%M:%S'\n"
    )
    assert captured.out == ""
    assert landing_files(tmp_path / "data" / "landing") == []
    # with the format given, the same file imports as asked
    assert _cli(tmp_path, monkeypatch, "amb.csv", "--timestamp-format", "%d.%m.%Y %H:%M:%S") == 0
    assert read_landing(tmp_path / "data" / "landing").column("ts").to_pylist() == [
        dt.datetime(2024, 1, 3, 10, 0, 2, tzinfo=UTC),
        dt.datetime(2024, 1, 4, 10, 0, 2, tzinfo=UTC),
    ]


@pytest.mark.parametrize("layout", ["%d.%m.%Y %H:%M", "%m/%d/%Y %H:%M"], ids=["day-first", "month-first"])
def test_a_value_far_into_the_file_settles_the_layout(tmp_path, layout):
    # every 5 minutes from 1 January: the first 3,456 rows (12 days) fit either layout, and the
    # first chunks (~600 rows each) hold only those; day 13 comes thousands of rows later.
    n = 5_000
    times = [dt.datetime(2024, 1, 1, tzinfo=UTC) + dt.timedelta(minutes=5 * i) for i in range(n)]
    path = tmp_path / "logger.csv"
    path.write_text("sensor_id,ts,temperature\n" + "".join(f"s1,{t.strftime(layout)},20\n" for t in times))
    landing = tmp_path / "landing"
    result = import_file(path, landing, ImportOptions(block_size=16 << 10), received_at=RECEIVED)
    assert (result.landed, result.quarantined) == (n, 0)
    assert read_landing(landing).column("ts").to_pylist() == times


def test_two_digit_years_without_one_layout_are_not_read_month_first_silently(tmp_path):
    path = tmp_path / "short.csv"
    path.write_text("sensor_id,ts,temperature\ns1,03.01.24 10:00,20\n")
    with pytest.raises(ValueError) as info:
        import_file(path, tmp_path / "landing", received_at=RECEIVED)
    assert str(info.value) == (
        f"{path}: the timestamps in column 'ts' could be day first or month first ('03.01.24 10:00' is 3 January "
        "or 1 March 2024) and no value in the file settles it; pass --timestamp-format with its layout, "
        "e.g. '%d.%m.%y %H:%M' to read 03.01.24 10:00 as 3 January"
    )
    import_file(path, tmp_path / "landing", ImportOptions(timestamp_format="%d.%m.%y %H:%M"), received_at=RECEIVED)
    assert read_landing(tmp_path / "landing").column("ts").to_pylist() == [dt.datetime(2024, 1, 3, 10, tzinfo=UTC)]


def test_an_unambiguous_first_value_still_works(tmp_path):
    path = tmp_path / "eu.csv"
    path.write_text("sensor_id,ts,temperature\ns1,13.01.2024 10:00,20\ns1,03.01.2024 10:00,21\n")
    import_file(path, tmp_path / "landing", received_at=RECEIVED)
    assert read_landing(tmp_path / "landing").column("ts").to_pylist() == [
        dt.datetime(2024, 1, 3, 10, tzinfo=UTC),
        dt.datetime(2024, 1, 13, 10, tzinfo=UTC),
    ]


# -- bad bytes and unclosed quotes: quarantine the row, keep the rest ------------------------


def _rows(n: int) -> list[str]:
    return [f"s{i % 3},{T0 + i},{20 + i % 7}" for i in range(n)]


def test_one_invalid_utf8_byte_quarantines_only_its_row(tmp_path):
    n = 30_000
    rows = [r.encode() for r in _rows(n)]
    rows[20_001] = f"s1,{T0 + 20_001},2".encode() + b"\xff" + b"0"  # data row 20,002, line 20,003
    rows[25_000] = b"s\xc3(," + f"{T0 + 25_000},20".encode()  # a broken 2-byte sequence in the sensor id
    path = tmp_path / "latin.csv"
    path.write_bytes(b"sensor_id,ts,temperature\n" + b"\n".join(rows) + b"\n")
    landing = tmp_path / "landing"
    result = import_file(path, landing, ImportOptions(block_size=64 << 10), received_at=RECEIVED)
    assert (result.rows, result.landed, result.quarantined) == (n, n - 2, 2)
    records = read_quarantine(landing)
    assert [(r["line"], r["row"], r["code"], r["file"]) for r in records] == [
        (20_003, 20_002, "decode", str(path)),
        (25_002, 25_001, "decode", str(path)),
    ]
    assert records[0]["reason"] == "temperature is not UTF-8 text: byte 0xff at offset 1"
    assert records[0]["raw"] == '{"sensor_id": "s1", "ts": "1704087201", "temperature": "2\\\\xff0"}'
    assert records[1]["reason"] == "sensor_id is not UTF-8 text: byte 0xc3 at offset 1"
    ts = read_landing(landing).column("ts").to_pylist()
    assert len(ts) == n - 2 and dt.datetime.fromtimestamp(T0 + 20_001, UTC) not in ts
    assert dt.datetime.fromtimestamp(T0 + 20_002, UTC) in ts


def test_an_invalid_byte_in_a_column_the_import_does_not_read_is_harmless(tmp_path):
    path = tmp_path / "notes.csv"
    path.write_bytes(b"sensor_id,ts,temperature,note\ns1,1704067200,20,caf\xe9\ns1,1704067201,21,ok\n")
    result = import_file(path, tmp_path / "landing", received_at=RECEIVED)
    assert (result.landed, result.quarantined) == (2, 0)


def test_an_unclosed_quote_quarantines_only_its_line(tmp_path):
    n = 30_000
    rows = _rows(n)
    rows[10] = f's1,"{T0 + 10},20'  # line 12
    rows[20_000] = f's2,{T0 + 20_000},"21'  # line 20,002
    rows[20_001] = f'"s0","{T0 + 20_001}","22.5"'  # quoted fields are fine
    rows[20_002] = f'"s1",{T0 + 20_002},"2""3"'  # an escaped quote inside: a bad number, quarantined as such
    path = tmp_path / "quotes.csv"
    path.write_text("sensor_id,ts,temperature\n" + "\n".join(rows) + "\n")
    landing = tmp_path / "landing"
    result = import_file(path, landing, ImportOptions(block_size=64 << 10), received_at=RECEIVED)
    assert (result.rows, result.landed, result.quarantined) == (n, n - 3, 3)
    records = read_quarantine(landing)
    assert [(r["line"], r["code"]) for r in records] == [(12, "quote"), (20_002, "quote"), (20_004, "not_a_number")]
    assert records[0]["raw"] == f's1,"{T0 + 10},20'
    assert records[0]["reason"] == "line has an unclosed quote (1 double quote); a value may not span lines"
    t = read_landing(landing)
    assert t.num_rows == n - 3
    got = {(r["sensor_id"], r["ts"]): r["temperature"] for r in t.select(["sensor_id", "ts", "temperature"]).to_pylist()}
    assert got[("s0", dt.datetime.fromtimestamp(T0 + 20_001, UTC))] == 22.5
    assert got[("s2", dt.datetime.fromtimestamp(T0 + n - 1, UTC))] == 20 + (n - 1) % 7


def test_quoted_delimiters_blank_lines_and_crlf_keep_exact_line_numbers(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_bytes(
        b"sensor_id,ts,temperature,place\r\n"
        b"s1,1704067200,20,\"Berlin, DE\"\r\n"
        b"\r\n"
        b"s1,1704067201,oops,x\r\n"
        b"s1,1704067202,21\r\n"
        b"s1,1704067203,22,y\r\n"
    )
    landing = tmp_path / "landing"
    result = import_file(path, landing, received_at=RECEIVED)
    assert (result.rows, result.landed, result.quarantined) == (4, 2, 2)
    assert [(r["line"], r["row"], r["code"]) for r in read_quarantine(landing)] == [
        (4, 2, "not_a_number"),
        (5, 3, "field_count"),
    ]
    assert read_landing(landing).column("temperature").to_pylist() == [20.0, 22.0]


# -- files that are not data: one line naming the file, exit 2 ------------------------------


def _truncated_gzip() -> bytes:
    whole = gzip.compress(("sensor_id,ts,temperature\n" + "\n".join(_rows(20_000)) + "\n").encode())
    return whole[: len(whole) // 2]


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("folder.csv", lambda p: p.mkdir(), "Error: folder.csv is a directory; expected a CSV or Parquet file"),
        ("empty.csv", lambda p: p.write_bytes(b""),
         "Error: empty.csv is empty (0 bytes); expected a header line with the column names"),
        ("cut.csv.gz", lambda p: p.write_bytes(_truncated_gzip()),
         "Error: cut.csv.gz: the compressed data ends early (a truncated or damaged gzip file); "
         "nothing was imported from it; copy the file again"),
        ("junk.parquet", lambda p: p.write_bytes(bytes(range(256)) * 20),
         "Error: junk.parquet is not a Parquet file (it does not start and end with the Parquet magic bytes PAR1)"),
        ("cut.parquet", lambda p: p.write_bytes(b"PAR1" + bytes(1000)),
         "Error: cut.parquet is a truncated Parquet file (it starts with PAR1 but its footer is missing); "
         "copy the file again"),
        ("image.csv", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 10),
         "Error: image.csv is not CSV text: its first line holds the byte 0x89 at offset 0, which is not UTF-8; "
         "expected a header line with the column names"),
        ("blob.csv", lambda p: p.write_bytes(b"ts,x\x00\x01" + bytes(range(256)) * 10),
         "Error: blob.csv is not CSV text: its first line holds a NUL byte (0x00) at offset 4; "
         "expected a header line with the column names"),
        ("latin.csv", lambda p: p.write_bytes(b"sensor_id,temp\xe9rature,ts\ns1,1,2\n"),
         "Error: latin.csv is not CSV text: its first line holds the byte 0xe9 at offset 14, which is not UTF-8; "
         "expected a header line with the column names"),
    ],
)  # fmt: skip
def test_files_that_are_not_data_get_one_line_naming_them(tmp_path, monkeypatch, capsys, name, make, message):
    make(tmp_path / name)
    assert _cli(tmp_path, monkeypatch, name) == 2
    captured = capsys.readouterr()
    assert captured.err == message + "\n"
    assert captured.out == ""
    landing = tmp_path / "data" / "landing"
    assert landing_files(landing) == [] and (not landing.exists() or hidden_files(landing) == [])


# -- the summary: once, with reasons, the days and the next command -----------------------


def test_summary_is_printed_once_with_reasons_days_and_the_next_command(tmp_path, monkeypatch, capsys):
    (tmp_path / "plant.csv").write_text(
        "sensor_id,ts,temperature\n"
        "s1,2024-01-01T23:59:00Z,20\n"
        "s1,2024-01-02T00:00:00Z,abc\n"
        "s1,2024-01-03T12:00:00Z,21\n"
        "s1,not a time,21\n"
        "s1,2024-01-03T12:01:00Z,xyz\n"
    )
    assert _cli(tmp_path, monkeypatch, "plant.csv") == 0
    captured = capsys.readouterr()
    landing = tmp_path / "data" / "landing"
    [qfile] = sorted((landing / "_quarantine" / "import-plant").glob("*.jsonl"))
    assert captured.out == (
        "plant.csv: 5 rows read, 2 landed in landing/import-plant, 3 quarantined in "
        f"{qfile} (not_a_number 2, ts 1)\n"
        "  readings from 2024-01-01T23:59:00+00:00 to 2024-01-03T12:00:00+00:00 (days 2024-01-01 to 2024-01-03)\n"
        "Next, put these days into the lake: iot-platform backfill 2024-01-01 2024-01-03\n"
    )
    assert captured.err == ""


def test_an_import_that_refuses_every_row_fails_and_says_why(tmp_path, monkeypatch, capsys):
    (tmp_path / "units.csv").write_text(
        "sensor_id,ts,pressure\ns1,2024-01-01T00:00:00Z,-5e6\ns1,2024-01-01T00:01:00Z,-5e6\ns1,2024-01-01T00:02:00Z,n/a\n"
    )
    assert _cli(tmp_path, monkeypatch, "units.csv") == 2
    captured = capsys.readouterr()
    landing = tmp_path / "data" / "landing"
    [qfile] = sorted((landing / "_quarantine" / "import-units").glob("*.jsonl"))
    assert captured.out == (
        f"units.csv: 3 rows read, 0 landed, 3 quarantined in {qfile} (out_of_limits 2, not_a_number 1)\n"
    )
    assert captured.err == (
        "Error: units.csv: every row was refused (out_of_limits 2, not_a_number 1), e.g. line 2: pressure -5000000.0 "
        "is outside the ingest limits 0.0 to 100000.0 (values outside the valid range 300.0 to 1100.0 but inside "
        f"these limits are kept); nothing was landed; the reasons per row are in {qfile}\n"
    )
    assert landing_files(landing) == []


def test_a_header_without_rows_fails(tmp_path, monkeypatch, capsys):
    (tmp_path / "head.csv").write_text("sensor_id,ts,temperature\n")
    assert _cli(tmp_path, monkeypatch, "head.csv") == 2
    assert capsys.readouterr().err == "Error: head.csv has a header but no data rows; nothing was landed\n"


def test_several_files_get_one_next_command_over_all_their_days(tmp_path, monkeypatch, capsys):
    (tmp_path / "a.csv").write_text("sensor_id,ts,temperature\ns1,2024-01-05T10:00:00Z,20\n")
    (tmp_path / "b.csv").write_text("sensor_id,ts,temperature\ns2,2024-01-02T10:00:00Z,20\ns2,2024-01-03T10:00:00Z,21\n")
    assert _cli(tmp_path, monkeypatch, "a.csv", "b.csv") == 0
    out = capsys.readouterr().out.splitlines()
    assert [line for line in out if not line.startswith("  ")] == [
        "a.csv: 1 rows read, 1 landed in landing/import-a, 0 quarantined",
        "b.csv: 2 rows read, 2 landed in landing/import-b, 0 quarantined",
        "Next, put these days into the lake: iot-platform backfill 2024-01-02 2024-01-05",
    ]
