"""The ``sensors`` table on disk: ``$IOT_DATA_DIR/registry/sensors.parquet``.

Built from the registry the platform runs with (``sensors.yaml`` and the
simulated fleet) and what the lake's ``window_stats`` show of every sensor
(:mod:`iot_platform.core.sensors_table`); the warehouse exposes it as the view
``sensors`` (``iot-platform sql``) and the Dagster asset ``sensors`` writes it.
Replaced whole and atomically: a reader sees the previous table or the new one.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pyarrow as pa

from iot_platform.core.registry import SensorRegistry
from iot_platform.core.schemas import METRICS
from iot_platform.core.sensors_table import OBSERVED, observed_from_window_stats, sensors_table
from iot_platform.io.lake import Lake, write_parquet_atomic
from iot_platform.io.lake_store import parquet_scan

SENSORS_FILE = Path("registry") / "sensors.parquet"

_MEAN = {"temperature": "temp_mean", "humidity": "humidity_mean", "pressure": "pressure_mean",
         "vibration": "vibration_mean", "battery_level": "battery_level"}  # fmt: skip


def sensors_path(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / SENSORS_FILE


def observe_sensors(lake: Lake) -> pa.Table:
    """OBSERVED rows: per sensor of the lake's window_stats, its metrics, interval, first and last window."""
    files = lake.all_files("window_stats")  # the table's current snapshot, never a listing
    if not files:
        return OBSERVED.empty_table()
    has = ", ".join(f"bool_or({_MEAN[m]} IS NOT NULL) AS has_{m}" for m in METRICS)
    # a complete window holds length // interval readings: length / n is the interval (a little above it
    # when the length is not a multiple); the median over complete windows, rounded as the engine rounds it
    sql = f"""
        SELECT sensor_id, min(window_end) AS first_seen, max(window_end) AS last_seen,
               coalesce(median((epoch_us(window_end) - epoch_us(window_start)) / n_readings)
                            FILTER (WHERE missing_rate = 0 AND n_readings > 0),
                        median((epoch_us(window_end) - epoch_us(window_start)) / n_readings)
                            FILTER (WHERE n_readings > 0)) AS interval_us,
               {has}
        FROM {{src}}
        GROUP BY sensor_id ORDER BY sensor_id
    """
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        stats = con.sql(sql.format(src=parquet_scan(con, files))).to_arrow_table()
    except duckdb.Error as e:  # a damaged lake file: say which, keep the previous sensors table
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RuntimeError(f"sensors table not rebuilt: window_stats could not be read ({first}); "
                           f"`iot-platform doctor --repair` quarantines damaged files") from None
    finally:
        con.close()
    return observed_from_window_stats(stats)


def write_sensors(lake: Lake, registry: SensorRegistry) -> pa.Table:
    """Build the sensors table from ``registry`` and the lake, write it atomically, return it."""
    table = sensors_table(registry, observe_sensors(lake))
    write_parquet_atomic(table, sensors_path(lake.root), table.schema)
    return table
