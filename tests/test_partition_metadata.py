"""Each partition of a single-run range backfill carries its own metadata (issue 11, item 3)."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pyarrow.compute as pc

from iot_platform.definitions import defs
from iot_platform.io.lake import Lake

DAYS = ["2024-01-02", "2024-01-03", "2024-01-04"]
KEYS = ("readings", "fault_labels", "window_stats", "anomalies")


def _latest(instance, key: str, day: str):
    (record,) = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(key), asset_partitions=[day]), limit=1
    ).records
    return record.asset_materialization


def test_a_three_day_range_records_each_days_own_figures(instance, resources, lake: Lake):
    result = dg.materialize(
        defs.assets[:2],
        instance=instance,
        resources=resources,
        tags={"dagster/asset_partition_range_start": DAYS[0], "dagster/asset_partition_range_end": DAYS[-1]},
    )
    assert result.success
    assert instance.get_runs_count() == 1  # one run for the range
    for day in DAYS:
        for key in KEYS:
            meta = _latest(instance, key, day).metadata
            assert meta["dagster/row_count"].value == lake.read(key, [day]).num_rows, (key, day)
        readings = _latest(instance, "readings", day).metadata
        assert readings["time_range"].value.startswith(f"{day}T00:00:00")
        assert f"| sensor_001 | {day}T" in readings["preview"].value
        ws = _latest(instance, "window_stats", day).metadata
        nxt = (dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat()
        assert ws["time_range"].value == f"{day}T00:01:00+00:00 .. {nxt}T00:00:00+00:00"
        assert ws["sensors"].value == 3
        an = _latest(instance, "anomalies", day).metadata
        table = lake.read("anomalies", [day])
        types = table["anomaly_type"].to_pylist()
        assert an["by_type"].value == {t: types.count(t) for t in set(types)}
        starts = table["start_ts"].cast("int64")
        assert an["time_range"].value.startswith(
            dt.datetime.fromtimestamp(pc.min(starts).as_py() / 1e6, tz=dt.UTC).isoformat(timespec="seconds")
        )
        assert f"on {day}" in an["anomaly_plot"].value and "data:image/png;base64," in an["anomaly_plot"].value
