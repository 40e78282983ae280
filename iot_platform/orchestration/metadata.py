"""Small helpers turning results into Dagster metadata a person can read in the UI."""

from __future__ import annotations

import base64
import datetime as dt

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from iot_platform.core.plots import anomaly_counts, most_affected_sensors, plot_sensor_day, worst_sensor
from iot_platform.io.downstream import sensor_day
from iot_platform.io.lake import Lake


def ts_text(us: int | None) -> str:
    if us is None:
        return "-"
    return dt.datetime.fromtimestamp(us / 1e6, tz=dt.UTC).isoformat(timespec="seconds")


def md_table(table: pa.Table | None, max_rows: int = 5) -> dg.MetadataValue:
    if table is None or table.num_rows == 0:
        return dg.MetadataValue.md("_(no rows)_")
    rows = table.slice(0, max_rows).to_pylist()
    cols = table.column_names
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(_cell(r[c]) for c in cols) + " |")
    return dg.MetadataValue.md("\n".join(lines))


def md_rows(header: list[str], rows: list[list]) -> dg.MetadataValue:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in r) + " |" for r in rows]
    return dg.MetadataValue.md("\n".join(lines))


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dt.datetime):
        return v.isoformat(timespec="seconds")
    return "" if v is None else str(v)


def days_of(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> list[dt.date]:
    """The days a run covers: one partition or a range (single-run backfills)."""
    keys = context.partition_keys if hasattr(context, "partition_keys") else [context.partition_key]
    return [dt.date.fromisoformat(k) for k in keys]


def _ts_range(table: pa.Table, column: str) -> str:
    if table.num_rows == 0:
        return "-"
    ts = table[column].cast(pa.int64())
    return f"{ts_text(pc.min(ts).as_py())} .. {ts_text(pc.max(ts).as_py())}"


def window_metadata(ws: pa.Table) -> dict:
    """One day of window_stats: its rows, sensors, window ends, mean missing rate and first rows."""
    miss = pc.mean(pc.fill_null(ws["missing_rate"], 0.0)).as_py() if ws.num_rows else 0.0
    return {
        "dagster/row_count": ws.num_rows,
        "sensors": len(pc.unique(ws["sensor_id"])) if ws.num_rows else 0,
        "time_range": _ts_range(ws, "window_end"),
        "mean_missing_rate": round(miss, 4),
        "preview": md_table(ws),
    }


def anomaly_metadata(lake: Lake, day: dt.date, table: pa.Table) -> dict:
    """One day of anomalies: the plot of its most affected sensor first (the UI lists metadata in
    order), then counts by type and severity, the most affected sensors and the first episodes."""
    meta: dict = {"dagster/row_count": table.num_rows}
    worst = worst_sensor(table)
    if worst is not None:
        png = plot_sensor_day(sensor_day(lake, day, worst), table.filter(pc.equal(table["sensor_id"], worst)), worst)
        meta["anomaly_plot"] = dg.MetadataValue.md(
            f"**{worst}** on {day}\n\n![{worst} on {day}](data:image/png;base64,{base64.b64encode(png).decode()})"
        )
    counts = anomaly_counts(table)
    meta |= {
        "time_range": _ts_range(table, "start_ts"),
        "by_type": dg.MetadataValue.json(counts["by_type"]),
        "by_severity": dg.MetadataValue.json(counts["by_severity"]),
        "most_affected_sensors": md_rows(["sensor_id", "critical", "total"], [list(r) for r in most_affected_sensors(table)]),
        "preview": md_table(table.select(["sensor_id", "anomaly_type", "severity", "start_ts", "end_ts", "value", "message"])),
    }
    return meta


def derived_metadata(lake: Lake, day: dt.date, out) -> tuple[dict, dict, str]:  # noqa: ANN001 - a DayOutput
    """A day's window_stats and anomalies metadata, and the detection step's log line for it."""
    summary = f"{day}: {out.window_stats.num_rows} windows, {out.anomalies.num_rows} episodes from {out.points.num_rows} points"
    return window_metadata(out.window_stats), anomaly_metadata(lake, day, out.anomalies), summary
