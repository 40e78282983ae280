"""Importing historical CSV and Parquet files into the landing zone."""

from __future__ import annotations

import datetime as dt
import gzip
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest_serial import hidden_files, read_landing

from iot_platform.cli import main
from iot_platform.core import import_columns, reading_rules, timestamps
from iot_platform.io.importer import ImportOptions, import_file, import_files, resolve_columns
from iot_platform.io.landing import landing_files, read_quarantine

UTC = dt.timezone.utc
RECEIVED = dt.datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
START = dt.datetime(2026, 3, 1, tzinfo=UTC)


def _fleet_frame(n: int, step: dt.timedelta, sensors=("s1", "s2")) -> pd.DataFrame:
    """n rows per sensor every ``step``; values follow from the row number, for exact checks."""
    rows = []
    for k in range(n):
        for j, sid in enumerate(sensors):
            rows.append(
                {
                    "sensor_id": sid,
                    "timestamp": START + k * step,
                    "temperature": round(20 + k * 0.01 + j, 2),
                    "humidity": float(40 + k % 10),
                    "pressure": 1013.25,
                    "vibration": round(0.01 * (k % 5), 2),
                    "battery_level": float(100 - k % 3),
                }
            )
    return pd.DataFrame(rows)


def _expected(df: pd.DataFrame) -> list[tuple]:
    return sorted(
        (r.sensor_id, r.timestamp.to_pydatetime(), r.temperature, r.humidity, r.pressure, r.vibration, r.battery_level)
        for r in df.itertuples()
    )


def _landed(landing) -> list[tuple]:
    t = read_landing(landing)
    cols = ["sensor_id", "ts", "temperature", "humidity", "pressure", "vibration", "battery_level"]
    return sorted(tuple(r[c] for c in cols) for r in t.to_pylist())


@pytest.mark.parametrize("step", [dt.timedelta(seconds=1), dt.timedelta(minutes=5)], ids=["1Hz", "5min"])
def test_csv_import(tmp_path, step):
    df = _fleet_frame(600, step)
    path = tmp_path / "plant.csv"
    out = df.copy()
    out["timestamp"] = out["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    out.to_csv(path, index=False)
    landing = tmp_path / "landing"
    result = import_file(path, landing, received_at=RECEIVED)
    assert (result.rows, result.landed, result.quarantined) == (1200, 1200, 0)
    assert result.stream == "import-plant" and len(result.files) == 1
    assert (result.ts_min, result.ts_max) == (START, START + 599 * step)
    assert _landed(landing) == _expected(df)
    t = read_landing(landing)
    assert set(t.column("source").to_pylist()) == {"import:plant.csv"}
    assert set(t.column("received_at").to_pylist()) == {RECEIVED}
    assert t.column("seq").null_count == 1200
    # rows sorted by (sensor_id, ts) within the file
    assert t.select(["sensor_id", "ts"]).to_pylist() == sorted(t.select(["sensor_id", "ts"]).to_pylist(), key=lambda r: (r["sensor_id"], r["ts"]))
    assert read_quarantine(landing) == [] and hidden_files(landing) == []


@pytest.mark.parametrize("step", [dt.timedelta(seconds=1), dt.timedelta(minutes=5)], ids=["1Hz", "5min"])
def test_parquet_import_with_naive_local_times(tmp_path, step):
    df = _fleet_frame(300, step, sensors=("p1",))
    local = df.copy()
    # a logger that wrote Berlin wall-clock time without an offset (CET in March: UTC+1)
    local["timestamp"] = (local["timestamp"].dt.tz_convert("Europe/Berlin").dt.tz_localize(None)).astype("datetime64[ns]")
    path = tmp_path / "logger.parquet"
    pq.write_table(pa.Table.from_pandas(local, preserve_index=False), path)
    landing = tmp_path / "landing"
    result = import_file(path, landing, ImportOptions(timezone="Europe/Berlin"), received_at=RECEIVED)
    assert (result.landed, result.quarantined) == (300, 0)
    assert _landed(landing) == _expected(df)


def test_parquet_import_subset_of_metrics_aware_times_and_int_ids(tmp_path):
    table = pa.table(
        {
            "device": pa.array([7, 7, 8], pa.int32()),
            "time": pa.array([dt.datetime(2026, 1, 1, h, tzinfo=UTC) for h in (0, 1, 2)], pa.timestamp("ms", "Asia/Tokyo")),
            "hum": pa.array([50.5, None, float("nan")]),
            "seq": pa.array([10, 11, -1], pa.int64()),
        }
    )
    path = tmp_path / "hourly.parquet"
    pq.write_table(table, path)
    landing = tmp_path / "landing"
    opts = ImportOptions(sensor_id_column="device", mapping=(("humidity", "hum"),), timezone="Europe/Berlin")
    result = import_file(path, landing, opts, received_at=RECEIVED)
    assert read_landing(landing).select(["sensor_id", "ts", "humidity", "temperature", "seq"]).to_pylist() == [
        {"sensor_id": "7", "ts": dt.datetime(2026, 1, 1, 0, tzinfo=UTC), "humidity": 50.5, "temperature": None, "seq": 10}
    ]
    assert [(r["row"], r["code"], r["reason"]) for r in read_quarantine(landing)] == [
        (2, "no_values", reading_rules.MSG_NO_VALUES),
        (3, "seq", "seq -1 is not valid; expected a whole number from 0 to 999999999999999999"),
    ]
    assert json.loads(read_quarantine(landing)[1]["raw"]) == {
        "device": 8, "time": "2026-01-01T11:00:00+09:00", "hum": "nan", "seq": -1,
    }  # fmt: skip
    assert (result.landed, result.quarantined) == (1, 2)


def test_timestamp_value_file_with_one_sensor_and_a_mapping(tmp_path, monkeypatch, capsys):
    path = tmp_path / "export.csv"
    path.write_text(
        "timestamp,value\n"
        "2026-01-01 00:00:00,20.5\n"
        "2026-01-01 00:05:00,20.75\n"
        "2026-01-01 00:10:00,abc\n"
        "2026-01-01 00:15:00,nan\n"
        "not a time,21\n"
        "2026-01-01 00:25:00,20000\n"
        "2026-01-01 00:30:00,\n"
        "2026-01-01 00:35:00,1,2\n"
        "2026-01-01 00:40:00,-45.5\n"  # outside VALID_RANGE, inside INGEST_LIMITS: kept
    )
    monkeypatch.setenv("IOT_DATA_DIR", str(tmp_path / "data"))
    assert main(["import", str(path), "--sensor-id", "boiler_1", "--map", "temperature=value"]) == 0
    landing = tmp_path / "data" / "landing"
    assert read_landing(landing).select(["sensor_id", "ts", "temperature", "humidity", "source"]).to_pylist() == [
        {"sensor_id": "boiler_1", "ts": dt.datetime(2026, 1, 1, 0, m, tzinfo=UTC), "temperature": v, "humidity": None,
         "source": "import:export.csv"}
        for m, v in ((0, 20.5), (5, 20.75), (40, -45.5))
    ]  # fmt: skip
    records = read_quarantine(landing)
    assert [(r["row"], r["code"]) for r in records] == [
        (3, "not_a_number"), (4, "non_finite"), (5, "ts"), (6, "out_of_limits"), (7, "no_values"), (8, "field_count"),
    ]  # fmt: skip
    assert records[0]["reason"] == "temperature 'abc' is not a number; expected a decimal number such as 23.5"
    assert json.loads(records[0]["raw"]) == {"timestamp": "2026-01-01 00:10:00", "value": "abc"}
    assert records[5]["raw"] == "2026-01-01 00:35:00,1,2"
    assert records[5]["reason"] == "row has 3 fields; expected 2 like the header"
    assert {r["source"] for r in records} == {"import:export.csv"}
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("export.csv: 9 rows read, 3 landed in landing/import-export, 6 quarantined in ")
    assert out[0].endswith(".jsonl (field_count 1, no_values 1, non_finite 1, not_a_number 1, out_of_limits 1, ts 1)")
    assert out[1:] == [
        "  readings from 2026-01-01T00:00:00+00:00 to 2026-01-01T00:40:00+00:00 (days 2026-01-01 to 2026-01-01)",
        "Next, put these days into the lake: iot-platform backfill 2026-01-01 2026-01-01",
    ]


def test_irregular_epoch_milliseconds_gzip_and_semicolons(tmp_path):
    ms = [1_767_225_600_000, 1_767_225_600_250, 1_767_225_661_000, 1_767_229_200_000]  # 0 s, 0.25 s, 61 s, 1 h
    text = "ts;sensor_id;pressure\n" + "".join(f"{t};a;{1000 + i}\n" for i, t in enumerate(ms))
    path = tmp_path / "irregular.csv.gz"
    path.write_bytes(gzip.compress(text.encode()))
    landing = tmp_path / "landing"
    import_file(path, landing, ImportOptions(delimiter=";", timestamp_unit="ms"), received_at=RECEIVED)
    t = read_landing(landing)
    assert t.column("ts").to_pylist() == [
        dt.datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC),
        dt.datetime(2026, 1, 1, 0, 0, 0, 250000, tzinfo=UTC),
        dt.datetime(2026, 1, 1, 0, 1, 1, tzinfo=UTC),
        dt.datetime(2026, 1, 1, 1, 0, 0, tzinfo=UTC),
    ]
    assert t.column("pressure").to_pylist() == [1000.0, 1001.0, 1002.0, 1003.0]
    assert landing_files(landing)[0].parent.name == "import-irregular"


def test_big_file_is_read_in_chunks_with_row_numbers_across_chunks(tmp_path):
    n = 20_000
    rows = [f"s{i % 3},{1_767_225_600 + i},{20 + (i % 100) / 10}" for i in range(n)]
    bad = {137: "s1,1767225737,oops", 9_999: "s1,1767235599", 15_001: "s1,1767240601,1e999"}
    for i, text in bad.items():
        rows[i] = text
    path = tmp_path / "big.csv"
    path.write_text("sensor_id,time,temperature\n" + "\n".join(rows) + "\n")
    landing = tmp_path / "landing"
    opts = ImportOptions(block_size=64 << 10, rows_per_file=5_000)  # chunks of ~3,450 rows
    result = import_file(path, landing, opts, received_at=RECEIVED)
    assert (result.rows, result.landed, result.quarantined) == (n, n - 3, 3)
    sizes = [pq.read_metadata(p).num_rows for p in result.files]
    # a file is closed once it holds rows_per_file rows: two chunks per file here
    assert len(sizes) == 3 and all(s >= 5_000 for s in sizes[:-1]) and sum(sizes) == n - 3
    assert [pq.read_metadata(p).num_row_groups for p in result.files] == [1, 1, 1]  # chunks merged into one
    assert sorted((r["row"], r["code"]) for r in read_quarantine(landing)) == [
        (138, "not_a_number"), (10_000, "field_count"), (15_002, "non_finite"),
    ]  # fmt: skip
    t = read_landing(landing)
    ts = sorted(t.column("ts").to_pylist())
    expected = [dt.datetime(2026, 1, 1, tzinfo=UTC) + dt.timedelta(seconds=i) for i in range(n) if i not in bad]
    assert ts == expected


def test_a_failed_import_leaves_no_landing_file(tmp_path, monkeypatch):
    path = tmp_path / "big.csv"
    path.write_text("sensor_id,ts,temperature\n" + "".join(f"s,{1_767_225_600 + i},20\n" for i in range(5000)))
    calls = {"n": 0}
    real = import_columns.readings_from_columns

    def failing_second_chunk(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr("iot_platform.io.importer.readings_from_columns", failing_second_chunk)
    with pytest.raises(OSError, match="disk full"):
        import_file(path, tmp_path / "landing", ImportOptions(block_size=16 << 10, rows_per_file=100))
    assert calls["n"] == 2
    assert landing_files(tmp_path / "landing") == [] and hidden_files(tmp_path / "landing") == []


def test_column_resolution():
    opts = ImportOptions()
    assert resolve_columns(["Timestamp", "sensor_id", "temperature", "rssi"], opts, "f.csv") == {
        "ts": "Timestamp", "sensor_id": "sensor_id", "temperature": "temperature",
    }  # fmt: skip
    assert resolve_columns(["time", "value", "humidity"], ImportOptions(sensor_id="x", mapping=(("temperature", "value"),)), "f") == {
        "temperature": "value", "ts": "time", "humidity": "humidity",
    }  # fmt: skip
    with pytest.raises(ValueError) as info:
        resolve_columns(["timestamp", "value"], ImportOptions(sensor_id="x"), "f.csv")
    assert str(info.value) == (
        "no metric columns in f.csv: its columns are: timestamp, value; expected one of temperature, humidity, "
        "pressure, vibration, battery_level, or map one with --map METRIC=COLUMN (e.g. --map temperature=value)"
    )
    with pytest.raises(ValueError) as info:
        resolve_columns(["timestamp", "value"], ImportOptions(mapping=(("temperature", "value"),)), "f.csv")
    assert str(info.value) == (
        "no sensor id in f.csv: it has no sensor_id column (its columns are: timestamp, value); "
        "pass --sensor-id-column COLUMN or --sensor-id ID"
    )
    with pytest.raises(ValueError) as info:
        resolve_columns(["when", "temperature"], ImportOptions(sensor_id="x"), "f.csv")
    assert str(info.value).startswith("no timestamp column in f.csv (looked for ts, timestamp, time, datetime, date_time, date)")
    with pytest.raises(ValueError) as info:
        resolve_columns(["ts", "t"], ImportOptions(sensor_id="x", mapping=(("temperature", "temp_c"),)), "f.csv")
    assert str(info.value) == "column 'temp_c' (mapped to temperature) is not in f.csv; its columns are: ts, t"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["missing.csv"], "Error: no such file: missing.csv"),
        (["data.xlsx"], "Error: cannot import data.xlsx: expected a CSV file (.csv, .tsv, .txt, optionally "
         ".gz/.bz2/.zst/.lz4) or a Parquet file (.parquet, .pq)"),
        (["data.csv", "--sensor-id", "a b"], "Error: sensor_id 'a b' is not valid; expected 1 to 64 characters from "
         "A-Z a-z 0-9 _ . : -"),
        (["data.csv", "--timezone", "Mars/Base"], "Error: timezone 'Mars/Base' is not known; expected an IANA name "
         "such as UTC or Europe/Berlin"),
        (["data.csv", "--map", "temp=x"], "Error: mapping 'temp=x': field 'temp' is not known; expected one of "
         "sensor_id, seq, ts, temperature, humidity, pressure, vibration, battery_level"),
        (["data.csv"], "Error: no sensor id in data.csv: it has no sensor_id column (its columns are: timestamp, "
         "value); pass --sensor-id-column COLUMN or --sensor-id ID"),
    ],
)  # fmt: skip
def test_cli_import_errors(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IOT_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "data.csv").write_text("timestamp,value\n2026-01-01,1\n")
    (tmp_path / "data.xlsx").write_bytes(b"PK")
    assert main(["import", *argv]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == message
    assert landing_files(tmp_path / "data" / "landing") == []


def test_import_files_share_one_import_time(tmp_path):
    for name in ("a.csv", "b.csv"):
        (tmp_path / name).write_text("sensor_id,ts,temperature\nx,2026-01-01T00:00:00Z,1\n")
    results = import_files([tmp_path / "a.csv", tmp_path / "b.csv"], tmp_path / "landing")
    assert [r.stream for r in results] == ["import-a", "import-b"]
    t = read_landing(tmp_path / "landing")
    assert len(set(t.column("received_at").to_pylist())) == 1
    assert sorted(t.column("source").to_pylist()) == ["import:a.csv", "import:b.csv"]


def test_numpy_free_of_python_row_loops_sanity():
    # Guard for the vectorized contract: a 200k-row chunk is validated by array operations.
    n = 200_000
    cols = {
        "sensor_id": pa.array(np.full(n, "s", dtype=object)),
        "ts": pa.array(np.arange(n, dtype=np.int64) + 1_767_225_600),
        "temperature": pa.array(np.full(n, "21.5", dtype=object)),
    }
    table, good, reasons = import_columns.readings_from_columns(
        cols, num_rows=n, timestamps=timestamps.TimestampParser(), source="import:x", received_at=RECEIVED
    )
    assert table.num_rows == n and reasons == {} and good[-1] == n - 1
