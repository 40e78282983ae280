"""validate_readings: exact results on tiny inline tables."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from iot_platform.core.registry import platform_registry
from iot_platform.core.schemas import READINGS
from iot_platform.core.validation import REJECTED, validate_readings


def _t(rows: list[tuple]) -> pa.Table:
    sensor, ts, temp = zip(*rows) if rows else ([], [], [])
    return pa.table(
        {"sensor_id": pa.array(sensor, pa.string()), "ts": pa.array(ts, pa.timestamp("us", tz="UTC")), "temperature": pa.array(temp, pa.float64())}
    )


def test_sorts_and_keeps_the_first_arrival_of_a_key():
    v = validate_readings(_t([("b", 5, 1.0), ("a", 9, 2.0), ("a", 3, 3.0), ("b", 5, 1.0)]))
    assert v.good.select(["sensor_id", "ts", "temperature"]).to_pydict() == {
        "sensor_id": ["a", "a", "b"],
        "ts": [pa.scalar(3, pa.timestamp("us", tz="UTC")).as_py(), pa.scalar(9, pa.timestamp("us", tz="UTC")).as_py(), pa.scalar(5, pa.timestamp("us", tz="UTC")).as_py()],
        "temperature": [3.0, 2.0, 1.0],
    }
    assert v.duplicates == 1
    assert v.rejected.num_rows == 0
    assert v.good.schema == READINGS


def test_each_bad_row_is_rejected_with_its_reason_and_the_good_rows_are_kept():
    rows = [
        ("a", 1, 20.0),
        ("a", 2, math.nan),
        (None, 3, 20.0),
        ("a", 4, -300.0),  # below absolute zero: cannot be a measurement
        ("a", 5, 500.0),  # impossible for the instrument, but a real broken-sensor reading: kept
        ("a", 1, 21.0),  # same key as the first row, other value
        ("a", 99, 20.0),  # outside the partition
    ]
    v = validate_readings(_t(rows), 0, 50)
    assert v.good["temperature"].to_pylist() == [20.0, 500.0]
    reasons = dict(zip(v.rejected["temperature"].to_pylist(), v.rejected["reason"].to_pylist()))
    assert v.rejected.schema == REJECTED
    assert v.rejected.num_rows == 5
    assert reasons[-300.0] == "temperature outside the ingest limits [-273.15, 10000.0]"
    assert reasons[21.0] == "conflicting duplicate: another reading for this (sensor_id, ts) arrived first"
    assert "ts outside the partition [0, 50) us" in reasons.values()
    assert "temperature is not a finite number" in [r for r in v.rejected["reason"].to_pylist()]
    assert "sensor_id is null" in v.rejected["reason"].to_pylist()


def test_missing_metrics_are_nulls_not_errors():
    v = validate_readings(_t([("a", 1, None)]))
    assert v.good.num_rows == 1
    assert v.good["humidity"].null_count == 1


def test_empty_input_gives_empty_tables_with_the_schemas():
    v = validate_readings(_t([]))
    assert v.good.num_rows == 0 and v.good.schema == READINGS
    assert v.rejected.num_rows == 0 and v.rejected.schema == REJECTED


@pytest.mark.parametrize("order", [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]])
def test_result_does_not_depend_on_arrival_order_of_distinct_keys(order):
    rows = [("s1", 1, 1.0), ("s1", 2, 2.0), ("s0", 1, 3.0), ("s2", 0, 4.0)]
    v = validate_readings(_t([rows[i] for i in order]))
    assert v.good["temperature"].to_pylist() == [3.0, 1.0, 2.0, 4.0]


def test_a_bad_metric_is_nulled_and_quarantined_the_rows_other_values_kept():
    t = pa.table({"sensor_id": ["pump", "pump", "pump"], "ts": pa.array([1, 2, 3], pa.timestamp("us", tz="UTC")),
                  "pressure": [1.2, -0.3, math.inf], "vibration": [0.1, 0.2, 0.3]})  # fmt: skip
    v = validate_readings(t)
    # gauge pressure below 0 is outside the simulated fleet's ingest limits: only the pressure goes
    assert v.good.select(["ts", "pressure", "vibration"]).to_pylist() == [
        dict(ts=pa.scalar(i, pa.timestamp("us", tz="UTC")).as_py(), pressure=p, vibration=x)
        for i, p, x in ((1, 1.2, 0.1), (2, None, 0.2), (3, None, 0.3))
    ]
    assert v.rejected.select(["pressure", "vibration", "reason"]).to_pylist() == [
        dict(pressure=-0.3, vibration=0.2,
             reason="pressure outside the ingest limits [0.0, 100000.0]: nulled, the row's other values kept"),
        dict(pressure=math.inf, vibration=0.3, reason="pressure is not a finite number: nulled, the row's other values kept"),
    ]  # fmt: skip


def test_the_registry_gives_each_sensor_its_own_ingest_limits():
    t = pa.table({"sensor_id": ["pump", "sensor_001"], "ts": pa.array([1, 1], pa.timestamp("us", tz="UTC")),
                  "pressure": [-0.3, -0.3]})  # fmt: skip
    reg = platform_registry(simulated_ids=["sensor_001"])  # unknown sensors: no unit assumed, only finite values
    v = validate_readings(t, registry=reg)
    assert v.good.select(["sensor_id", "pressure"]).to_pylist() == [dict(sensor_id="pump", pressure=-0.3)]
    assert v.rejected.select(["sensor_id", "reason"]).to_pylist() == [
        dict(sensor_id="sensor_001", reason="pressure outside the ingest limits [0.0, 100000.0]")
    ]


def test_a_row_refused_whole_is_quarantined_as_received_even_with_a_bad_metric():
    t = pa.table({"sensor_id": ["a", "a", None], "ts": pa.array([1, 99, 2], pa.timestamp("us", tz="UTC")),
                  "pressure": [1.2, -0.3, -0.5], "vibration": [0.1, 0.2, 0.3]})  # fmt: skip
    v = validate_readings(t, 0, 50)
    assert v.good.select(["pressure", "vibration"]).to_pylist() == [dict(pressure=1.2, vibration=0.1)]
    # the row outside the partition and the row without a sensor keep the pressure they arrived with
    assert sorted(v.rejected.select(["pressure", "vibration", "reason"]).to_pylist(), key=lambda r: r["vibration"]) == [
        dict(pressure=-0.3, vibration=0.2, reason="ts outside the partition [0, 50) us"),
        dict(pressure=-0.5, vibration=0.3, reason="sensor_id is null"),
    ]


def test_rows_already_in_key_order_come_back_unchanged():
    rows = [("a", 1, 1.0), ("a", 2, 2.0), ("b", 1, 3.0)]
    v = validate_readings(_t(rows))
    assert v.good.select(["sensor_id", "temperature"]).to_pylist() == [
        dict(sensor_id=s, temperature=x) for s, _, x in rows
    ]
    assert (v.duplicates, v.rejected.num_rows) == (0, 0)


def test_the_kept_rows_of_a_chunked_unsorted_table_are_gathered_exactly():
    # several chunks, disorder, an exact and a conflicting duplicate, a constant and a mixed text column,
    # an all-null and a partly null column: each column takes its own gathering path
    ts_type = pa.timestamp("us", tz="UTC")
    first = pa.table({"sensor_id": ["s2", "s1", "s2", "s1"], "ts": pa.array([5, 7, 3, 7], ts_type),
                      "temperature": [1.0, 2.0, 3.0, 2.0], "humidity": [None, 40.0, 41.0, 40.0],
                      "source": ["sim", "sim", "sim", "sim"], "seq": pa.array([None] * 4, pa.int64())})  # fmt: skip
    second = pa.table({"sensor_id": ["s1", "s2", "s10"], "ts": pa.array([2, 5, 1], ts_type),
                       "temperature": [4.0, 9.0, 6.0], "humidity": [42.0, 43.0, None],
                       "source": ["sim", "sim", "sim"], "seq": pa.array([None] * 3, pa.int64())})  # fmt: skip
    v = validate_readings(pa.concat_tables([first, second]))
    assert v.good.schema == READINGS
    assert v.good.select(["sensor_id", "ts", "temperature", "humidity", "source", "seq"]).to_pydict() == {
        "sensor_id": ["s1", "s1", "s10", "s2", "s2"],
        "ts": [pa.scalar(t, ts_type).as_py() for t in (2, 7, 1, 3, 5)],
        "temperature": [4.0, 2.0, 6.0, 3.0, 1.0],
        "humidity": [42.0, 40.0, None, 41.0, None],
        "source": ["sim"] * 5,
        "seq": [None] * 5,
    }
    assert v.duplicates == 1
    assert v.rejected["temperature"].to_pylist() == [9.0]
    mixed = pa.concat_tables([first, second.set_column(4, "source", pa.array(["a", "b", "c"]))])
    assert validate_readings(mixed).good["source"].to_pylist() == ["a", "sim", "c", "sim", "sim"]


@pytest.mark.parametrize(
    ("values", "kept"),
    [
        ([-273.15, 10_000.0, 20.0], [-273.15, 10_000.0, 20.0]),  # the limits themselves are inside
        ([20.0, math.inf, 21.0], [20.0, None, 21.0]),
        ([20.0, -math.inf, 21.0], [20.0, None, 21.0]),
        ([math.nan, 20.0, 21.0], [None, 20.0, 21.0]),
        ([20.0, 10_000.5, 21.0], [20.0, None, 21.0]),
    ],
)
def test_a_column_without_nulls_is_checked_value_by_value_unless_all_are_inside(values, kept):
    t = pa.table({"sensor_id": ["a"] * 3, "ts": pa.array([1, 2, 3], pa.timestamp("us", tz="UTC")),
                  "temperature": values, "humidity": [50.0] * 3})  # fmt: skip
    v = validate_readings(t)
    assert v.good["temperature"].to_pylist() == kept
    assert v.rejected.num_rows == kept.count(None)
