"""`sensors`: every sensor the platform knows and what detection assumes about each of its metrics.

One row per (sensor, metric), from the registry (`sensors.yaml`, the simulated
fleet) and the lake's `window_stats` (the metrics an unknown sensor reports, its
estimated interval). Written to `$IOT_DATA_DIR/registry/sensors.parquet`;
`iot-platform sql` reads it as the view `sensors`. Rebuilt with the warehouse
(the `refresh_models` job) or on demand.
"""

# No `from __future__ import annotations`: Dagster inspects the context annotation at runtime.

import dagster as dg
from dagster import AssetExecutionContext

from iot_platform.core.sensors_table import SENSORS
from iot_platform.io.registry import fleet_registry
from iot_platform.io.sensors import sensors_path, write_sensors
from iot_platform.orchestration.resources import FleetResource, LakeResource

SENSORS_DOC = """One row per (sensor, metric): every sensor of the registry (sensors.yaml, the simulated fleet)
and every sensor the lake has windows of. source: simulated, registry (the sensors.yaml entry that matched) or
default (data-driven: the metrics its data has, no unit, range or alarm, the interval estimated from its
windows). Valid range (outside: sensor_fault), alarms, spike floor, drift followed, interval, group (systemic
alerts stay inside it), sensitivity, multivariate; first_seen / last_seen: its first and last window."""

_PREVIEW = 50
_SHOWN = ("sensor_id", "metric", "source", "unit", "valid_low", "valid_high", "interval_s", "interval_from", "group",
          "sensitivity")  # fmt: skip


def _markdown(table) -> str:
    def cell(v) -> str:
        return "" if v is None else str(v).replace("|", "\\|")

    rows = table.select(list(_SHOWN)).slice(0, _PREVIEW).to_pylist()
    lines = ["| " + " | ".join(_SHOWN) + " |", "|" + "---|" * len(_SHOWN)]
    lines += ["| " + " | ".join(cell(r[c]) for c in _SHOWN) + " |" for r in rows]
    return "\n".join(lines)


@dg.asset(
    name="sensors",
    description=SENSORS_DOC,
    group_name="warehouse",
    kinds={"parquet", "duckdb"},
    deps=["window_stats"],
    metadata={"dagster/column_schema": dg.TableSchema(columns=[dg.TableColumn(f.name, str(f.type)) for f in SENSORS])},
)
def sensors(context: AssetExecutionContext, lake: LakeResource, fleet: FleetResource) -> dg.MaterializeResult:
    table = write_sensors(lake.lake, fleet_registry(lake.lake.root, fleet.params()))
    per_source = table.group_by("source").aggregate([("sensor_id", "count_distinct")]).to_pylist()
    n_sensors = len(table.column("sensor_id").unique())
    context.log.info(f"sensors: {n_sensors} sensors, {table.num_rows} (sensor, metric) rows")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": table.num_rows,
            "sensors": n_sensors,
            **{f"sensors ({r['source']})": r["sensor_id_count_distinct"] for r in sorted(per_source, key=str)},
            "path": dg.MetadataValue.path(str(sensors_path(lake.lake.root))),
            "preview": dg.MetadataValue.md(_markdown(table)),
        }
    )
