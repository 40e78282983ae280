"""The `sensors` table: registry entries, simulated sensors and unknown sensors' data-driven defaults;
written by the Dagster asset `sensors` and read from `iot-platform sql`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pytest

from iot_platform.core.registry import MetricSpec, SensorSpec, platform_registry
from iot_platform.core.schemas import READINGS, TS_TYPE, conform
from iot_platform.core.sensors_table import OBSERVED, SENSORS, sensors_table
from iot_platform.core.simulator import day_start_us
from iot_platform.core.sqlmodels import load_project
from iot_platform.core.windows import compute_window_stats
from iot_platform.io.lake import Lake
from iot_platform.io.warehouse import QuerySession, default_project_dir
from iot_platform.orchestration.assets.sensors import sensors

DAY = dt.date(2024, 1, 3)
T = dt.datetime(2024, 1, 3, tzinfo=dt.timezone.utc)


def _observed(rows: list[tuple]) -> pa.Table:
    return pa.Table.from_pylist(
        [dict(sensor_id=s, metrics=m, interval_s=i, first_seen=T, last_seen=T + dt.timedelta(hours=1)) for s, m, i in rows],
        schema=OBSERVED,
    )


def test_sensors_table_from_the_registry_and_the_data():
    registry = platform_registry(
        simulated_ids=("sensor_001",), simulated_interval_s=1.0,
        entries=(SensorSpec("pump-*", (("pressure", MetricSpec("bar", (-1.0, 16.0), floor=0.01, drift=False)),),
                            interval_s=1.0, group="plant", multivariate=True),
                 SensorSpec("boiler-1", None, group="plant", sensitivity=0.5)),
    )  # fmt: skip
    observed = _observed([("sensor_001", ["temperature", "humidity"], 1.0), ("pump-7", ["pressure", "humidity"], 1.0),
                          ("imported-x", ["humidity", "battery_level"], 300.0)])  # fmt: skip
    t = sensors_table(registry, observed)
    assert t.schema == SENSORS
    assert list(zip(*(t.column(c).to_pylist() for c in ("sensor_id", "metric", "source", "entry", "unit", "valid_low",
                                                          "valid_high", "interval_s", "interval_from", "group",
                                                          "sensitivity", "drift", "observed")))) == [
        # a registered sensor never seen: its entry, no metric known yet
        ("boiler-1", None, "registry", "boiler-1", None, None, None, None, None, "plant", 0.5, False, False),
        # unknown: the metrics its data has, no unit or range, the interval from its windows
        ("imported-x", "humidity", "default", None, None, None, None, 300.0, "data", None, 1.0, True, True),
        ("imported-x", "battery_level", "default", None, None, None, None, 300.0, "data", None, 1.0, True, True),
        # a pattern entry: its metrics only (the humidity it also reports is not analysed)
        ("pump-7", "pressure", "registry", "pump-*", "bar", -1.0, 16.0, 1.0, "registry", "plant", 1.0, False, True),
        # the simulator's instruments, with their physical ranges
        ("sensor_001", "temperature", "simulated", None, "C", -40.0, 85.0, 1.0, "registry", "fleet", 1.0, True, True),
        ("sensor_001", "humidity", "simulated", None, "%RH", 0.0, 100.0, 1.0, "registry", "fleet", 1.0, False, True),
        ("sensor_001", "pressure", "simulated", None, "hPa", 300.0, 1100.0, 1.0, "registry", "fleet", 1.0, False, False),
        ("sensor_001", "vibration", "simulated", None, "g", 0.0, 50.0, 1.0, "registry", "fleet", 1.0, True, False),
        ("sensor_001", "battery_level", "simulated", None, "%", 0.0, 100.0, 1.0, "registry", "fleet", 1.0, True,
         False),
    ]  # fmt: skip
    vib = t.filter(pa.compute.equal(t.column("metric"), "vibration")).to_pylist()[0]
    assert (vib["warning_above"], vib["critical_above"]) == (2.0, 5.0)
    assert sensors_table(platform_registry(), None).equals(SENSORS.empty_table())


def _imported_day(sensor: str, interval_s: int, metric: str) -> pa.Table:
    n = 86_400 // interval_s
    ts = day_start_us(DAY) + np.arange(n, dtype=np.int64) * interval_s * 1_000_000
    values = 50 + np.sin(np.arange(n) / 20.0)
    return conform(pa.table({"sensor_id": [sensor] * n, "ts": pa.array(ts).cast(TS_TYPE), metric: values}), READINGS)


def test_the_sensors_asset_writes_the_table_that_sql_reads(data_dir: Path, resources: dict):
    lake = Lake(data_dir)
    readings = _imported_day("imp-1", 300, "humidity")
    a = day_start_us(DAY)
    lake.replace_partition("window_stats", DAY, compute_window_stats(readings, emit_start=a, emit_end=a + 86_400 * 10**6))
    (data_dir / "sensors.yaml").write_text("sensors:\n  - id: line-*\n    group: plant\n    metrics:\n"
                                           "      pressure: {unit: bar, valid_range: [-1, 16]}\n")  # fmt: skip
    project = load_project(default_project_dir())
    with QuerySession(project, data_dir) as s:  # before the first build: the view exists, empty
        assert s.query("SELECT count(*) AS n FROM sensors").to_pylist() == [{"n": 0}]
        assert "sensors" in s.relations

    result = dg.materialize([sensors], resources={k: resources[k] for k in ("lake", "fleet")})
    assert result.success
    (mat,) = result.asset_materializations_for_node("sensors")
    md = mat.metadata
    # the small fleet's three sensors (five metrics each) and the imported one (its one metric)
    assert (md["dagster/row_count"].value, md["sensors"].value) == (16, 4)
    assert (md["sensors (default)"].value, md["sensors (simulated)"].value) == (1, 3)
    assert "| imp-1 | humidity | default |  |  |  | 300.0 | data |  | 1.0 |" in md["preview"].value

    with QuerySession(project, data_dir) as s:
        got = s.query("SELECT sensor_id, metric, source, interval_s, interval_from, observed, first_seen FROM sensors "
                      "WHERE metric IN ('humidity', 'pressure') ORDER BY sensor_id, metric").to_pylist()  # fmt: skip
    first = dt.datetime(2024, 1, 3, 0, 5, tzinfo=dt.timezone.utc)  # the first window ending in the day: 00:05
    assert [tuple(r.values()) for r in got] == [
        ("imp-1", "humidity", "default", 300.0, "data", True, first),
        *[(f"sensor_00{i}", m, "simulated", 10.0, "registry", False, None) for i in (1, 2, 3) for m in ("humidity", "pressure")],
    ]  # fmt: skip


def test_a_damaged_window_stats_file_is_named_and_the_previous_table_kept(data_dir: Path):
    from iot_platform.io.sensors import observe_sensors, sensors_path, write_sensors
    from iot_platform.core.registry import SensorRegistry

    lake = Lake(data_dir)
    a = day_start_us(DAY)
    lake.replace_partition("window_stats", DAY, compute_window_stats(_imported_day("imp-1", 300, "humidity"),
                                                                     emit_start=a, emit_end=a + 86_400 * 10**6))  # fmt: skip
    write_sensors(lake, SensorRegistry())
    before = sensors_path(data_dir).read_bytes()
    (damaged,) = lake.files("window_stats", DAY)  # a file of the table's snapshot (a stray file is no part of it)
    damaged.write_bytes(b"not parquet at all")
    with pytest.raises(RuntimeError, match=rf"^sensors table not rebuilt: window_stats could not be read \(.*{damaged.name}"):
        observe_sensors(lake)
    with pytest.raises(RuntimeError, match=r"doctor --repair"):
        write_sensors(lake, SensorRegistry())
    assert sensors_path(data_dir).read_bytes() == before
