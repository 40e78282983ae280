"""Small helpers turning results into Dagster metadata a person can read in the UI."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pyarrow as pa


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
