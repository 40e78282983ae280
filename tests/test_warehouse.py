"""The DuckDB warehouse against tiny inline lakes: every shipped model's exact rows, the data
tests, atomic refreshes next to readers, partition pruning and the query session."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from iot_platform.core.schemas import ANOMALIES, FAULT_LABELS, READINGS, WINDOW_STATS
from iot_platform.core.sqlmodels import ProjectError, load_project
from iot_platform.io.lake import Lake
from iot_platform.io.warehouse import (
    LAKE_SCHEMAS,
    SNAPSHOT_TABLES,
    QueryError,
    QuerySession,
    WarehouseError,
    default_project_dir,
    refresh,
    run_tests,
    warehouse_path,
)

D1, D2 = dt.date(2024, 3, 1), dt.date(2024, 3, 2)
UTC = dt.timezone.utc


def T(day: dt.date, hms: str) -> dt.datetime:
    h, m, *s = (int(x) for x in hms.split(":"))
    return dt.datetime(day.year, day.month, day.day, h, m, s[0] if s else 0, tzinfo=UTC)


def window(sensor, day, hour, n, temp=(None, None, None), hum=None, pres=None, vib=(None, None), bat=None, miss=None, minutes=60, minute=0):
    start = T(day, f"{hour}:{minute}")
    return dict(
        sensor_id=sensor, window_start=start, window_end=start + dt.timedelta(minutes=minutes), n_readings=n,
        temp_mean=temp[0], temp_min=temp[1], temp_max=temp[2], humidity_mean=hum, pressure_mean=pres,
        vibration_mean=vib[0], vibration_max=vib[1], battery_level=bat, missing_rate=miss,
    )


def anomaly(aid, sensor, kind, severity, start, end, score, systemic_id=None, value=None):
    return dict(
        anomaly_id=aid, sensor_id=sensor, anomaly_type=kind, severity=severity, metric="temperature",
        start_ts=start, end_ts=end, value=value, threshold=1.0, score=score, n_points=1,
        systemic_id=systemic_id, message=f"{kind} on {sensor}",
    )


def label(lid, sensor, kind, start, end):
    return dict(label_id=lid, sensor_id=sensor, fault_type=kind, metric=None, start_ts=start, end_ts=end, magnitude=1.0, n_readings=1)


def reading(sensor, ts, t=None, h=None, p=None, v=None, b=None):
    return dict(sensor_id=sensor, ts=ts, temperature=t, humidity=h, pressure=p, vibration=v, battery_level=b, source="test", seq=None)


def write(lake: Lake, table: str, day: dt.date, rows: list[dict]) -> None:
    lake.replace_partition(table, day, pa.Table.from_pylist(rows, schema=LAKE_SCHEMAS[table]))


WINDOWS = {
    D1: [
        window("s1", D1, 0, 10, (20.0, 19.0, 21.0), 50.0, 1000.0, (0.2, 0.5), 80.0, 0.0),
        window("s1", D1, 1, 0, miss=1.0),
        window("s1", D1, 2, 6, (23.0, 22.0, 25.0), 40.0, 1010.0, (0.3, 0.7), 79.0, 0.4),
        window("s2", D1, 0, 10, (30.0, 29.0, 31.0), 60.0, 990.0, (0.6, 1.0), 50.0, 0.0),
        window("s2", D1, 11, 5, (28.0, 27.0, 29.0), 62.0, 992.0, (0.5, 0.9), 49.0, 0.5),
        window("s4", D1, 0, 3, (10.0, 9.0, 11.0), 70.0, 1005.0, (0.1, 0.2), 15.0, 0.7),
    ],
    D2: [
        window("s1", D2, 0, 8, (21.0, 20.0, 22.0), 52.0, 1001.0, (0.2, 0.4), 78.0, 0.2),
        window("s1", D2, 2, 4, (24.0, 23.0, 26.0), 45.0, 1002.0, (0.3, 0.6), 77.0, 0.6),
    ],
}
ANOMALY_ROWS = {
    D1: [
        anomaly("a1", "s1", "spike", "critical", T(D1, "0:30:00"), T(D1, "0:30:01"), 5.0, value=35.0),
        anomaly("a2", "s2", "high_vibration", "critical", T(D1, "2:00"), T(D1, "2:05"), 3.0),
        anomaly("a3", "s2", "high_vibration", "critical", T(D1, "10:00"), T(D1, "10:05"), 4.0, value=3.2),
        anomaly("a4", "s2", "spike", "warning", T(D1, "11:00:00"), T(D1, "11:00:01"), 2.0),
    ],
    D2: [
        anomaly("a5", "s1", "flatline", "critical", T(D2, "0:00"), T(D2, "0:10"), 6.0),
        anomaly("a6", "s1", "spike", "warning", T(D2, "2:30:00"), T(D2, "2:30:01"), 1.0, systemic_id="f1"),
        anomaly("a7", "s3", "silent_sensor", "critical", T(D2, "0:00"), T(D2, "6:00"), 9.0),
        anomaly("f1", "__fleet__", "systemic", "critical", T(D2, "2:30"), T(D2, "2:40"), 7.0),
    ],
}
LABELS = {
    D1: [
        label("L1", "s1", "spike", T(D1, "0:29:59"), T(D1, "0:30:02")),
        label("L2", "s2", "drift", T(D1, "5:00"), T(D1, "8:00")),
    ],
    D2: [
        label("L3", "s3", "outage", T(D1, "23:00"), T(D2, "5:00")),  # spans two days
        label("L4", "s1", "duplicates", T(D2, "1:00"), T(D2, "1:01")),  # a delivery fault: not scored
    ],
}
READING_ROWS = {
    D1: [
        reading("s1", T(D1, "0:00:00"), 20.0, 50.0, 1000.0, 0.1, 90.0),
        reading("s1", T(D1, "0:30:00"), 22.0, 52.0, 1002.0, 0.3, 89.0),
        reading("s1", T(D1, "1:15:00"), 30.0, None, 1003.0, 0.2, 88.0),
        reading("s2", T(D1, "0:10:00"), 25.0, 40.0, 990.0, 1.5, 60.0),
    ],
    D2: [reading("s1", T(D2, "0:05:00"), 21.0, 51.0, 1001.0, 0.2, 87.0)],
}


@pytest.fixture(scope="module")
def project():
    return load_project(default_project_dir())


def make_lake(root: Path) -> Lake:
    lake = Lake(root)
    for table, data in (("window_stats", WINDOWS), ("anomalies", ANOMALY_ROWS), ("fault_labels", LABELS), ("readings", READING_ROWS)):
        for day, rows in data.items():
            write(lake, table, day, rows)
    return lake


@pytest.fixture(scope="module")
def built(tmp_path_factory, project):
    root = tmp_path_factory.mktemp("lake")
    make_lake(root)
    refresh(project, root)
    return root


def rows(root: Path, sql: str) -> list[tuple]:
    conn = duckdb.connect(str(warehouse_path(root)), read_only=True)
    try:
        conn.execute("SET TimeZone = 'UTC'")
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def same(actual, expected) -> bool:
    if isinstance(expected, float) and isinstance(actual, float):
        return math.isclose(actual, expected, rel_tol=1e-12, abs_tol=1e-12)
    if isinstance(expected, (list, tuple)):
        return len(actual) == len(expected) and all(same(a, e) for a, e in zip(actual, expected))
    return actual == expected and type(actual) is type(expected)


def assert_rows(actual: list[tuple], expected: list[tuple]) -> None:
    assert len(actual) == len(expected), actual
    for a, e in zip(actual, expected):
        assert same(a, e), f"\n  got      {a}\n  expected {e}"


# -- the shipped models, row by row --------------------------------------------------------
def test_sensor_health_daily(built):
    assert_rows(
        rows(built, "SELECT * FROM sensor_health_daily"),
        [
            ("s1", D1, 16, 2, 2 / 24, 1.4 / 3, 79.0, T(D1, "2:00"), 1, 0, 1, ["spike"]),
            ("s2", D1, 15, 2, 2 / 24, 0.25, 49.0, T(D1, "11:00"), 3, 1, 2, ["high_vibration", "spike"]),
            ("s4", D1, 3, 1, 1 / 24, 0.7, 15.0, T(D1, "0:00"), 0, 0, 0, []),
            ("s1", D2, 12, 2, 2 / 24, 0.4, 77.0, T(D2, "2:00"), 2, 1, 1, ["flatline", "spike"]),
            # silent all day: a row from its anomaly alone
            ("s3", D2, 0, 0, 0.0, None, None, None, 1, 0, 1, ["silent_sensor"]),
        ],
    )


def test_sensor_hourly(built):
    assert_rows(
        rows(built, "SELECT * FROM sensor_hourly ORDER BY date, sensor_id, hour"),
        [
            ("s1", T(D1, "0:00"), D1, 10, 1, 1.0, 0.0, 20.0, 19.0, 21.0, 50.0, 1000.0, 0.2, 0.5, 80.0, 80.0),
            # an empty window (the platform does not write them, but NULLs must not break the roll-up)
            ("s1", T(D1, "1:00"), D1, 0, 0, 0.0, 1.0, None, None, None, None, None, None, None, None, None),
            ("s1", T(D1, "2:00"), D1, 6, 1, 1.0, 0.4, 23.0, 22.0, 25.0, 40.0, 1010.0, 0.3, 0.7, 79.0, 79.0),
            ("s2", T(D1, "0:00"), D1, 10, 1, 1.0, 0.0, 30.0, 29.0, 31.0, 60.0, 990.0, 0.6, 1.0, 50.0, 50.0),
            ("s2", T(D1, "11:00"), D1, 5, 1, 1.0, 0.5, 28.0, 27.0, 29.0, 62.0, 992.0, 0.5, 0.9, 49.0, 49.0),
            ("s4", T(D1, "0:00"), D1, 3, 1, 1.0, 0.7, 10.0, 9.0, 11.0, 70.0, 1005.0, 0.1, 0.2, 15.0, 15.0),
            ("s1", T(D2, "0:00"), D2, 8, 1, 1.0, 0.2, 21.0, 20.0, 22.0, 52.0, 1001.0, 0.2, 0.4, 78.0, 78.0),
            ("s1", T(D2, "2:00"), D2, 4, 1, 1.0, 0.6, 24.0, 23.0, 26.0, 45.0, 1002.0, 0.3, 0.6, 77.0, 77.0),
        ],
    )


def test_anomaly_summary_daily(built):
    assert_rows(
        rows(built, "SELECT * FROM anomaly_summary_daily"),
        [
            (D1, "high_vibration", "critical", 2, 1, 0, 600.0, 4.0, T(D1, "2:00"), T(D1, "10:05")),
            (D1, "spike", "critical", 1, 1, 0, 1.0, 5.0, T(D1, "0:30:00"), T(D1, "0:30:01")),
            (D1, "spike", "warning", 1, 1, 0, 1.0, 2.0, T(D1, "11:00:00"), T(D1, "11:00:01")),
            (D2, "flatline", "critical", 1, 1, 0, 600.0, 6.0, T(D2, "0:00"), T(D2, "0:10")),
            (D2, "silent_sensor", "critical", 1, 1, 0, 21600.0, 9.0, T(D2, "0:00"), T(D2, "6:00")),
            (D2, "spike", "warning", 1, 1, 1, 1.0, 1.0, T(D2, "2:30:00"), T(D2, "2:30:01")),
            (D2, "systemic", "critical", 1, 0, 0, 600.0, 7.0, T(D2, "2:30"), T(D2, "2:40")),
        ],
    )


def test_fleet_hourly(built):
    assert_rows(
        rows(built, "SELECT * FROM fleet_hourly ORDER BY hour"),
        [
            (T(D1, "0:00"), D1, 3, 23, 530 / 23, 9.0, 31.0, 1310 / 23, 22915 / 23, 8.3 / 23, 1.0, 145 / 3, 15.0, 0.7 / 3),
            # a window without readings: the hour is there, its means are NULL
            (T(D1, "1:00"), D1, 0, 0, None, None, None, None, None, None, None, None, None, 1.0),
            (T(D1, "2:00"), D1, 1, 6, 23.0, 22.0, 25.0, 40.0, 1010.0, 0.3, 0.7, 79.0, 79.0, 0.4),
            (T(D1, "11:00"), D1, 1, 5, 28.0, 27.0, 29.0, 62.0, 992.0, 0.5, 0.9, 49.0, 49.0, 0.5),
            (T(D2, "0:00"), D2, 1, 8, 21.0, 20.0, 22.0, 52.0, 1001.0, 0.2, 0.4, 78.0, 78.0, 0.2),
            (T(D2, "2:00"), D2, 1, 4, 24.0, 23.0, 26.0, 45.0, 1002.0, 0.3, 0.6, 77.0, 77.0, 0.6),
        ],
    )


def test_open_alerts(built):
    # a1 and a5 (s1) were followed by a quiet hour; a2 was superseded by a3.
    assert_rows(
        rows(built, "SELECT sensor_id, anomaly_type, anomaly_id, start_ts, value, date, last_seen, n_later_anomalies FROM open_alerts"),
        [
            ("__fleet__", "systemic", "f1", T(D2, "2:30"), None, D2, T(D2, "2:00"), 0),
            ("s2", "high_vibration", "a3", T(D1, "10:00"), 3.2, D1, T(D1, "11:00"), 1),
            ("s3", "silent_sensor", "a7", T(D2, "0:00"), None, D2, None, 0),
        ],
    )


def test_sensor_status(built):
    assert_rows(
        rows(built, "SELECT * FROM sensor_status"),
        [
            ("s1", "ok", D2, T(D2, "2:00"), 77.0, 0.4, 2 / 24, 3, 2, 0, []),
            ("s2", "alert", D1, T(D1, "11:00"), 49.0, 0.25, 2 / 24, 3, 2, 1, ["high_vibration"]),
            ("s3", "alert", D2, None, None, None, 0.0, 1, 1, 1, ["silent_sensor"]),
            ("s4", "silent", D1, T(D1, "0:00"), 15.0, 0.7, 1 / 24, 0, 0, 0, []),
        ],
    )


def test_detection_quality_daily(built):
    assert_rows(
        rows(built, "SELECT * FROM detection_quality_daily"),
        [(D1, "drift", 1, 0, 0.0), (D1, "spike", 1, 1, 1.0), (D2, "outage", 1, 1, 1.0)],
    )


def test_sensor_readings_hourly(built):
    got = rows(
        built,
        "SELECT sensor_id, hour, date, n_readings, first_ts, last_ts, temperature_mean, temperature_min, "
        "temperature_max, humidity_mean, battery_level_min FROM sensor_readings_hourly WHERE date = DATE '2024-03-01' "
        "ORDER BY sensor_id, hour",
    )
    assert_rows(
        got,
        [
            ("s1", T(D1, "0:00"), D1, 2, T(D1, "0:00"), T(D1, "0:30"), 21.0, 20.0, 22.0, 51.0, 89.0),
            ("s1", T(D1, "1:00"), D1, 1, T(D1, "1:15"), T(D1, "1:15"), 30.0, 30.0, 30.0, None, 88.0),
            ("s2", T(D1, "0:00"), D1, 1, T(D1, "0:10"), T(D1, "0:10"), 25.0, 25.0, 25.0, 40.0, 60.0),
        ],
    )


def test_window_tiles_count_each_reading_once_with_sliding_windows(tmp_path, project):
    # 2-hour windows every hour: readings of 01:00-02:00 are in the 00:00 and the 01:00 window.
    lake = Lake(tmp_path)
    write(lake, "window_stats", D1, [
        window("s1", D1, h, n, (20.0, 19.0, 21.0), bat=50.0, miss=0.0, minutes=120) for h, n in [(0, 5), (1, 7), (2, 9), (3, 11)]
    ])
    refresh(project, tmp_path)
    assert rows(tmp_path, "SELECT window_start, n_readings FROM window_tiles ORDER BY 1") == [(T(D1, "0:00"), 5), (T(D1, "2:00"), 9)]
    assert rows(tmp_path, "SELECT n_readings, n_windows, coverage, last_seen FROM sensor_health_daily") == [(14, 2, 4 / 24, T(D1, "3:00"))]
    assert rows(tmp_path, "SELECT hour, n_readings FROM fleet_hourly ORDER BY 1") == [(T(D1, "0:00"), 5), (T(D1, "2:00"), 9)]


def test_an_empty_lake_builds_every_model_with_typed_empty_tables(tmp_path, project):
    built = refresh(project, tmp_path)
    assert [b.name for b in built] == list(project.models)
    assert {b.name: b.row_count for b in built if b.materialized == "table"} == {
        "anomaly_summary_daily": 0, "detection_quality_daily": 0, "sensor_health_daily": 0, "open_alerts": 0,
    }
    conn = duckdb.connect(str(warehouse_path(tmp_path)), read_only=True)
    try:
        for table, schema in LAKE_SCHEMAS.items():
            described = conn.execute(f'DESCRIBE "{table}"').fetchall()
            assert [r[0] for r in described] == [*schema.names, "date"]
            assert conn.execute(f'SELECT count(*) FROM "{table}"').fetchall() == [(0,)]
        types = dict(conn.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'anomalies'").fetchall())
        assert (types["start_ts"], types["score"], types["n_points"], types["date"]) == ("TIMESTAMP WITH TIME ZONE", "DOUBLE", "BIGINT", "DATE")
    finally:
        conn.close()


# -- data tests ------------------------------------------------------------------------------
def test_the_shipped_tests_pass_on_good_data(built, project):
    outcomes = run_tests(project, built)
    assert len(outcomes) == len(project.tests) == 32  # 29 + the alarms model's 3
    assert [(o.test.model, o.test.name) for o in outcomes if not o.passed] == []


def test_generic_tests_return_the_bad_rows(tmp_path):
    models = tmp_path / "proj" / "models"
    models.mkdir(parents=True)
    (models / "parents.sql").write_text("-- One row per parent.\nSELECT * FROM (VALUES ('p1'), ('p2')) t(pid)\n")
    (models / "things.sql").write_text(
        "-- One row per thing.\n{{ config(materialized='table') }}\n"
        "SELECT * FROM (VALUES (1, 'a', 'red', 'p1'), (1, 'b', 'blue', 'p2'), (2, NULL, 'mauve', 'p9'), (3, 'c', NULL, NULL))\n"
        "    t(k, name, colour, pid)\n"
        "WHERE EXISTS (SELECT 1 FROM {{ ref('parents') }})\n"
    )
    (models / "schema.yml").write_text(
        """
models:
  - name: parents
  - name: things
    columns:
      - name: k
        tests: [unique]
      - name: name
        tests: [not_null]
      - name: colour
        tests:
          - accepted_values: {values: [red, blue], config: {severity: warn}}
      - name: pid
        tests:
          - relationships: {to: "ref('parents')", field: pid}
"""
    )
    project = load_project(tmp_path / "proj")
    refresh(project, tmp_path / "data")
    by_name = {o.test.name: o for o in run_tests(project, tmp_path / "data", examples=5)}
    assert {n: (o.passed, o.failing_rows) for n, o in by_name.items()} == {
        "unique_k": (False, 1),
        "not_null_name": (False, 1),
        "accepted_values_colour": (False, 1),
        "relationships_pid__parents": (False, 1),
    }
    assert by_name["unique_k"].examples.to_pylist() == [{"k": 1, "n_rows": 2}]
    assert by_name["not_null_name"].examples.to_pylist() == [{"k": 2, "name": None, "colour": "mauve", "pid": "p9"}]
    assert by_name["accepted_values_colour"].examples.column("colour").to_pylist() == ["mauve"]
    assert by_name["accepted_values_colour"].test.severity == "warn"
    assert by_name["relationships_pid__parents"].examples.column("pid").to_pylist() == ["p9"]


def test_a_test_whose_query_fails_is_a_failure_with_the_error(tmp_path):
    models = tmp_path / "proj" / "models"
    models.mkdir(parents=True)
    (models / "m.sql").write_text("-- One row.\nSELECT 1 AS k\n")
    (models / "schema.yml").write_text("models:\n  - name: m\n    tests:\n      - not_null: {columns: [nope]}\n")
    project = load_project(tmp_path / "proj")
    with pytest.raises(WarehouseError, match="does not exist yet; materialize the models first"):
        run_tests(project, tmp_path / "data")
    refresh(project, tmp_path / "data")
    (outcome,) = run_tests(project, tmp_path / "data")
    assert not outcome.passed and outcome.failing_rows == 0
    assert outcome.error.startswith('Binder Error: Referenced column "nope" not found')


# -- refresh: atomic, partial, next to readers ---------------------------------------------------
def small_project(root: Path, models: dict[str, str], schema: str = "") -> Path:
    d = root / "models"
    d.mkdir(parents=True, exist_ok=True)
    for p in d.glob("*.sql"):
        p.unlink()
    for name, text in models.items():
        (d / f"{name}.sql").write_text(text)
    (d / "schema.yml").write_text(schema or "sources:\n  - name: lake\n    tables: [{name: anomalies}]\n")
    return root


def test_refresh_swaps_a_new_file_in_while_readers_keep_theirs(tmp_path):
    data = tmp_path / "data"
    proj = small_project(tmp_path / "p", {"n": "-- One row.\n{{ config(materialized='table') }}\nSELECT count(*) AS n FROM {{ source('lake', 'anomalies') }}\n"})
    write(Lake(data), "anomalies", D1, ANOMALY_ROWS[D1])
    refresh(load_project(proj), data)
    reader = duckdb.connect(str(warehouse_path(data)), read_only=True)  # like the UI or a notebook
    session = QuerySession(load_project(proj), data)  # like `iot-platform sql`: attaches the warehouse
    try:
        write(Lake(data), "anomalies", D2, ANOMALY_ROWS[D2])
        refresh(load_project(proj), data)  # no lock error: the live file is never opened read-write
        assert reader.execute("SELECT n FROM n").fetchall() == [(4,)]  # the reader's version
        assert session.query("SELECT n FROM n").to_pylist() == [{"n": 4}]
        assert session.query("SELECT count(*) AS n FROM anomalies").to_pylist() == [{"n": 8}]  # the lake is live
    finally:
        reader.close()
        session.close()
    assert rows(data, "SELECT n FROM n") == [(8,)]
    assert sorted(p.name for p in warehouse_path(data).parent.iterdir()) == [".warehouse.duckdb.lock", "lake_schemas", "warehouse.duckdb"]


def test_a_failed_refresh_leaves_the_warehouse_as_it_was(tmp_path):
    data = tmp_path / "data"
    good = "-- One row.\n{{ config(materialized='table') }}\nSELECT 1 AS k\n"
    proj = small_project(tmp_path / "p", {"a": good, "b": good})
    refresh(load_project(proj), data)
    small_project(tmp_path / "p", {"a": good.replace("1 AS k", "2 AS k"), "b": "-- One row.\n\nSELECT nope FROM {{ ref('a') }}\n"})
    with pytest.raises(WarehouseError, match=r"models/b.sql:3: model b failed to build: Binder Error: Referenced column \"nope\" not found"):
        refresh(load_project(proj), data)
    assert rows(data, "SELECT k FROM a") == [(1,)]  # a's new build was not swapped in either
    assert [p.name for p in warehouse_path(data).parent.iterdir() if p.name.endswith(".tmp")] == []


def test_a_partial_refresh_keeps_the_other_models(tmp_path):
    data = tmp_path / "data"
    proj = small_project(tmp_path / "p", {
        "a": "-- One row.\n{{ config(materialized='table') }}\nSELECT 1 AS k\n",
        "b": "-- One row.\n{{ config(materialized='table') }}\nSELECT k + 10 AS k FROM {{ ref('a') }}\n",
    })
    with pytest.raises(WarehouseError, match=r"model b failed to build: .*\(model a is not in the warehouse yet: refresh it too\)"):
        refresh(load_project(proj), data, ["b"])
    refresh(load_project(proj), data)
    small_project(tmp_path / "p", {
        "a": "-- One row.\n{{ config(materialized='table') }}\nSELECT 5 AS k\n",
        "b": "-- One row.\n{{ config(materialized='view') }}\nSELECT k + 10 AS k FROM {{ ref('a') }}\n",
    })
    built = refresh(load_project(proj), data, ["b"])  # b becomes a view; a keeps its last build
    assert [(b.name, b.materialized) for b in built] == [("b", "view")]
    assert rows(data, "SELECT (SELECT k FROM a), (SELECT k FROM b)") == [(1, 11)]
    small_project(tmp_path / "p", {"a": "-- One row.\n{{ config(materialized='table') }}\nSELECT 5 AS k\n"})
    refresh(load_project(proj), data, ["a"])  # b was deleted from the project: dropped
    assert rows(data, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY 1") == [
        (t,) for t in sorted(["a", *LAKE_SCHEMAS, *SNAPSHOT_TABLES])  # every lake table has its view, declared or not
    ]


def test_documented_columns_must_exist_and_a_model_is_one_select(tmp_path):
    proj = small_project(tmp_path / "p", {"a": "-- One row.\nSELECT 1 AS k\n"}, "models:\n  - name: a\n    columns: [{name: kk}]\n")
    with pytest.raises(WarehouseError, match=r"models/a.sql: schema.yml documents column 'kk' of a, which the model does not return; it returns k"):
        refresh(load_project(proj), tmp_path / "data")
    proj = small_project(tmp_path / "p", {"a": "-- One row.\nSELECT 1 AS k; DROP TABLE x\n"})
    with pytest.raises(ProjectError, match=r"models/a.sql: a model holds exactly one SELECT; found SELECT, DROP"):
        refresh(load_project(proj), tmp_path / "data")


# -- partition pruning -------------------------------------------------------------------------
def test_a_date_filter_reads_only_that_days_files(tmp_path, project):
    make_lake(tmp_path)
    refresh(project, tmp_path)
    for table in ("anomalies", "readings", "window_stats"):
        Lake(tmp_path).compacted(table, D2).write_bytes(b"not parquet at all")  # a file of the snapshot, damaged
    with QuerySession(project, tmp_path) as s:
        one_day = "WHERE date = DATE '2024-03-01'"
        assert s.query(f"SELECT count(*) AS n FROM anomalies {one_day}").to_pylist() == [{"n": 4}]
        assert s.query(f"SELECT sum(n_readings) AS n FROM sensor_readings_hourly {one_day}").to_pylist() == [{"n": 4}]
        assert s.query(f"SELECT sum(n_readings) AS n FROM sensor_hourly {one_day}").to_pylist() == [{"n": 34}]
        assert s.query(f"SELECT count(*) AS n FROM fleet_hourly {one_day}").to_pylist() == [{"n": 4}]
        assert s.query(f"SELECT count(*) AS n FROM window_tiles {one_day}").to_pylist() == [{"n": 6}]
        # a date known only when the query runs prunes too (a variable is a constant for the planner)
        assert s.query("SELECT count(*) AS n FROM sensor_hourly WHERE date < getvariable('latest_date')").to_pylist() == [{"n": 6}]
        for table in ("anomalies", "readings", "window_stats"):
            with pytest.raises(QueryError, match=r"date=2024-03-02/data-[0-9a-f]+.parquet"):
                s.query(f"SELECT count(*) FROM {table} WHERE sensor_id <> 'x'")  # unfiltered: opens the broken file


# -- the query session ------------------------------------------------------------------------
def test_session_reads_table_models_from_the_snapshot_and_views_live(tmp_path, project):
    with QuerySession(project, tmp_path) as s:  # no warehouse yet: every model computed from the lake
        assert s.snapshot_models == []
        assert s.query("SELECT count(*) AS n FROM sensor_health_daily").to_pylist() == [{"n": 0}]
    make_lake(tmp_path)
    with QuerySession(project, tmp_path) as s:
        assert s.query("SELECT count(*) AS n FROM sensor_health_daily").to_pylist() == [{"n": 5}]
    refresh(project, tmp_path)
    write(Lake(tmp_path), "anomalies", dt.date(2024, 3, 3), [anomaly("a9", "s9", "spike", "critical", T(dt.date(2024, 3, 3), "1:00"), T(dt.date(2024, 3, 3), "1:01"), 1.0)])
    with QuerySession(project, tmp_path) as s:
        assert s.snapshot_models == ["anomaly_summary_daily", "detection_quality_daily", "sensor_health_daily", "open_alerts"]
        assert s.query("SELECT count(*) AS n FROM anomalies").to_pylist() == [{"n": 9}]  # the lake: live
        assert s.query("SELECT count(*) AS n FROM anomaly_summary_daily").to_pylist() == [{"n": 7}]  # last refresh
        assert s.relations == [*sorted([*LAKE_SCHEMAS, *SNAPSHOT_TABLES]), *project.models]
        assert s.relations[:10] == ["alarm_deliveries", "alarm_log", "anomalies", "anomaly_points", "fault_labels", "raw_readings", "readings", "rejected_readings", "sensors", "window_stats"]


def test_schemas_of_lake_views_match_the_arrow_schemas(tmp_path, project):
    make_lake(tmp_path)
    with QuerySession(project, tmp_path) as s:
        for table, schema in (("readings", READINGS), ("anomalies", ANOMALIES), ("window_stats", WINDOW_STATS), ("fault_labels", FAULT_LABELS)):
            got = s.query(f"SELECT * FROM {table} LIMIT 0").schema
            assert got.names == [*schema.names, "date"]
            assert [got.field(f.name).type for f in schema] == [f.type for f in schema]


def test_a_session_open_across_a_replace_reads_the_new_snapshot(tmp_path):
    """A replace deletes the file a session's view named (the local lake keeps no superseded
    file): the session's next query takes the table's new snapshot instead of failing on it."""
    data = tmp_path / "data"
    proj = small_project(tmp_path / "p", {"n": "-- One row.\nSELECT count(*) AS n FROM {{ source('lake', 'anomalies') }}\n"})
    write(Lake(data), "anomalies", D1, ANOMALY_ROWS[D1])
    with QuerySession(load_project(proj), data) as session:
        assert session.query("SELECT count(*) AS n FROM anomalies").to_pylist() == [{"n": 4}]
        old = Lake(data).files("anomalies", D1)
        write(Lake(data), "anomalies", D1, ANOMALY_ROWS[D1][:1])
        assert not old[0].exists()
        assert session.query("SELECT count(*) AS n FROM anomalies").to_pylist() == [{"n": 1}]
        assert session.query("SELECT n FROM n").to_pylist() == [{"n": 1}]  # a view model over it too
