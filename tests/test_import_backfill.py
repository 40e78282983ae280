"""Imported history reaches the lake through a backfill, without the daemon (issue 9.1)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg

from iot_platform.cli import main
from iot_platform.io.lake import Lake
from iot_platform.io.microbatch import pending_landing_files
from iot_platform.orchestration.assets.detection import window_stats_and_anomalies
from iot_platform.orchestration.assets.fleet import fleet_readings
from iot_platform.orchestration.resources import ClockResource, DetectionResource, FleetResource, LakeResource


def _csv(path: Path, start: dt.datetime, n: int, step_s: int) -> Path:
    lines = ["time,value"] + [f"{(start + dt.timedelta(seconds=i * step_s)):%Y-%m-%d %H:%M:%S},{20 + (i % 7) / 10:.1f}" for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_an_imported_file_reaches_the_lake_with_a_backfill_of_its_days(tmp_path: Path, data_dir: Path, instance, lake: Lake):
    # two days of a 5-minute sensor: 288 readings a day
    f = _csv(tmp_path / "boiler.csv", dt.datetime(2024, 1, 3), 2 * 288, 300)
    assert main(["import", str(f), "--sensor-id", "boiler_1", "--map", "temperature=value"]) == 0
    assert len(pending_landing_files(data_dir / "landing")) == 1
    resources = {
        "lake": LakeResource(data_dir=str(data_dir)),
        "fleet": FleetResource(n_sensors=0),  # real sensors only
        "detection": DetectionResource(),
        "clock": ClockResource(),
    }
    result = dg.materialize(
        [fleet_readings, window_stats_and_anomalies],
        instance=instance,
        resources=resources,
        tags={"dagster/asset_partition_range_start": "2024-01-03", "dagster/asset_partition_range_end": "2024-01-04"},
    )
    assert result.success
    for day in (dt.date(2024, 1, 3), dt.date(2024, 1, 4)):
        got = lake.read("readings", [day])
        assert (got.num_rows, set(got["sensor_id"].to_pylist()), set(got["source"].to_pylist())) == (288, {"boiler_1"}, {"import:boiler.csv"})
        assert lake.read("raw_readings", [day]).num_rows == 288
        assert set(lake.read("window_stats", [day])["sensor_id"].to_pylist()) == {"boiler_1"}
    assert pending_landing_files(data_dir / "landing") == []  # ingested once, archived
    # backfilling again adds nothing twice
    assert dg.materialize([fleet_readings], instance=instance, resources=resources, partition_key="2024-01-03").success
    assert lake.read("readings", [dt.date(2024, 1, 3)]).num_rows == 288
