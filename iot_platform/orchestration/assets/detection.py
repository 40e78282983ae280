"""`window_stats` and `anomalies`: daily partitions computed from `readings`.

`window_stats` reads day D and the tail of D-1 (a lookback partition
mapping), so windows that straddle midnight are complete; `anomalies` also
reads the previous days' `window_stats` for the drift baseline. Each
partition is a pure function of those inputs: backfills run in any order.
"""

# No `from __future__ import annotations`: Dagster inspects the context annotation at runtime.

import base64
import time

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
from dagster import AssetExecutionContext

from iot_platform.core.plots import anomaly_counts, most_affected_sensors, plot_sensor_day, worst_sensor
from iot_platform.core.schemas import ANOMALIES, WINDOW_STATS
from iot_platform.io.downstream import compute_day, compute_window_stats_day, write_day
from iot_platform.orchestration.metadata import days_of, md_rows, md_table
from iot_platform.orchestration.partitions import daily_partitions
from iot_platform.orchestration.resources import DetectionResource, FleetResource, LakeResource

WINDOW_DOC = """Per-sensor hopping windows (default 300 s long, every 60 s), one row per (sensor_id, window_end).

A window belongs to the day its window_end falls in; windows that straddle
midnight use the previous day's readings. missing_rate = 1 - n_readings /
expected, with expected from the sensor's own sample interval (1 Hz, 5 min,
...). battery_level is the last reading in the window."""

ANOMALY_DOC = """Anomaly episodes: consecutive alerts of one (sensor, type) merged into one row.

Types: spike (robust z-score against the sensor's trailing window),
sensor_fault (physically impossible value: a broken sensor, not an outlier),
drift (two-sided CUSUM of window means against a 7-day baseline), flatline
(stuck sensor), high_vibration, low_battery, high_missing_rate,
silent_sensor (a sensor that stopped reporting), systemic (more than half
the fleet alerting in the same window; its members carry its systemic_id).
anomaly_id is stable across reruns. severity is warning or critical; score:
higher means more anomalous."""

_PREV_DAY = dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=0, allow_nonexistent_upstream_partitions=True)
_HISTORY = dg.TimeWindowPartitionMapping(start_offset=-7, end_offset=0, allow_nonexistent_upstream_partitions=True)


def _now_us() -> int:
    return time.time_ns() // 1000


@dg.asset(
    description=WINDOW_DOC,
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[dg.AssetDep("readings", partition_mapping=_PREV_DAY)],
    kinds={"parquet", "numpy"},
    group_name="lake",
    metadata={"dagster/column_schema": dg.TableSchema(columns=[dg.TableColumn(f.name, str(f.type)) for f in WINDOW_STATS])},
)
def window_stats(context: AssetExecutionContext, lake: LakeResource, fleet: FleetResource, detection: DetectionResource):
    settings = detection.settings(fleet.params())
    per_day = []
    for day in days_of(context):
        out = compute_window_stats_day(lake.lake, day, settings, now_us=_now_us())
        per_day.append([str(day), out.rows, out.sensors, round(out.mean_missing_rate, 4)])
        context.log.info(f"window_stats {day}: {out.rows} windows")
    meta = {"dagster/row_count": sum(r[1] for r in per_day), "per_day": md_rows(["day", "windows", "sensors", "mean_missing_rate"], per_day)}
    if len(per_day) == 1:
        meta["preview"] = md_table(lake.lake.read("window_stats", [days_of(context)[0]]).slice(0, 5))
    return dg.MaterializeResult(metadata=meta)


@dg.asset(
    description=ANOMALY_DOC,
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[dg.AssetDep("readings", partition_mapping=_PREV_DAY), dg.AssetDep(window_stats, partition_mapping=_HISTORY)],
    kinds={"parquet", "numpy"},
    group_name="lake",
    metadata={"dagster/column_schema": dg.TableSchema(columns=[dg.TableColumn(f.name, str(f.type)) for f in ANOMALIES])},
)
def anomalies(context: AssetExecutionContext, lake: LakeResource, fleet: FleetResource, detection: DetectionResource):
    settings = detection.settings(fleet.params())
    days = days_of(context)
    totals: list[pa.Table] = []
    for day in days:
        out = compute_day(lake.lake, day, settings, now_us=_now_us())
        write_day(lake.lake, day, out, tables=("anomaly_points", "anomalies"))
        totals.append(out.anomalies)
        context.log.info(f"anomalies {day}: {out.anomalies.num_rows} episodes from {out.points.num_rows} points")
    return dg.MaterializeResult(metadata=_anomaly_metadata(lake, days, pa.concat_tables(totals)))


def _anomaly_metadata(lake: LakeResource, days, table: pa.Table) -> dict:
    counts = anomaly_counts(table)
    meta = {
        "dagster/row_count": table.num_rows,
        "by_type": dg.MetadataValue.json(counts["by_type"]),
        "by_severity": dg.MetadataValue.json(counts["by_severity"]),
        "most_affected_sensors": md_rows(["sensor_id", "critical", "total"], [list(r) for r in most_affected_sensors(table)]),
    }
    worst = worst_sensor(table)
    if worst is not None and len(days) == 1:
        readings = lake.lake.read("readings", days)
        readings = readings.filter(pc.equal(readings["sensor_id"], worst))
        png = plot_sensor_day(readings, table.filter(pc.equal(table["sensor_id"], worst)), worst)
        meta["worst_sensor_plot"] = dg.MetadataValue.md(
            f"**{worst}** on {days[0]}\n\n![{worst}](data:image/png;base64,{base64.b64encode(png).decode()})"
        )
    meta["preview"] = md_table(table.select(["sensor_id", "anomaly_type", "severity", "start_ts", "end_ts", "value", "message"]))
    return meta
