"""`iot-platform backfill` and `materialize`: runs recorded in the UI's Dagster home, data in the lake.

The commands run as the installed console script in a subprocess (the code
location reads IOT_DATA_DIR and the fleet settings at import), against a
real Dagster home in tmp_path; the tests then open that instance and the lake.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from conftest_serial import cli_command

from iot_platform.cli import main
from iot_platform.io.lake import Lake
from iot_platform.orchestration.partitions import daily_partitions

LAKE_ASSETS = ("anomalies", "fault_labels", "readings", "window_stats")
TODAY = daily_partitions.get_last_partition_key()


def _run(data_dir: Path, home: Path, *args: str) -> subprocess.CompletedProcess:
    # A small fleet keeps a day at a few thousand readings.
    env = dict(os.environ, IOT_DATA_DIR=str(data_dir), DAGSTER_HOME=str(home), IOT_FLEET_SIZE="3", IOT_SAMPLE_INTERVAL_S="10")
    return subprocess.run([*cli_command(), *args], env=env, capture_output=True, text=True, timeout=600)


def _lake_rows(data_dir: Path, table: str, day: str) -> int:
    return sum(pq.ParquetFile(f).metadata.num_rows for f in Lake(data_dir).files(table, day))


def test_backfill_is_one_run_in_the_ui_instance_with_every_partition_in_the_lake(tmp_path: Path):
    data_dir, home = tmp_path / "data", tmp_path / "home"
    days = ["2024-01-01", "2024-01-02"]
    proc = _run(data_dir, home, "backfill", *days)
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr
    lines = proc.stdout.splitlines()

    # One line per (partition, asset), with the rows that are in the lake.
    for day in days:
        for asset in LAKE_ASSETS:
            rows = _lake_rows(data_dir, asset, day)
            assert rows > 0, (asset, day)
            assert f"  {day}  {asset:<24} {rows:>10,} rows" in lines, proc.stdout
    totals = {a: sum(_lake_rows(data_dir, a, d) for d in days) for a in LAKE_ASSETS}
    summary = lines[-1]
    match = re.fullmatch(
        r"backfill done: 2 partitions \(2024-01-01\.\.2024-01-02\), 4 assets, rows: (.*); [0-9.]+ s; run ([0-9a-f-]{36})",
        summary,
    )
    assert match, summary
    assert match.group(1) == ", ".join(f"{a} {totals[a]:,}" for a in LAKE_ASSETS)

    # The same Dagster home as `iot-platform ui`: one successful run over the range.
    assert (home / "dagster.yaml").is_file()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        assert run.run_id == match.group(2)
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags["dagster/asset_partition_range_start"] == "2024-01-01"
        assert run.tags["dagster/asset_partition_range_end"] == "2024-01-02"
        assert run.tags["iot/started_by"] == "iot-platform backfill"
        for asset in LAKE_ASSETS:
            result = instance.fetch_materializations(dg.AssetKey(asset), limit=10)
            assert sorted(r.partition_key for r in result.records) == days
            assert {r.run_id for r in result.records} == {run.run_id}


def test_materialize_one_partition_then_the_warehouse(tmp_path: Path):
    data_dir, home = tmp_path / "data", tmp_path / "home"
    proc = _run(data_dir, home, "materialize", "--select", "readings", "--partition", "2024-01-03")
    assert proc.returncode == 0, proc.stderr
    rows = _lake_rows(data_dir, "readings", "2024-01-03")
    assert proc.stdout.splitlines()[-2] == f"  2024-01-03  readings                 {rows:>10,} rows"
    assert proc.stdout.splitlines()[-1].startswith(f"materialize done: 1 partition (2024-01-03..2024-01-03), 1 asset, rows: readings {rows:,}; ")

    proc = _run(data_dir, home, "materialize")  # no partition: the warehouse's SQL models
    assert proc.returncode == 0, proc.stderr
    # The models report their row counts; no anomalies were built, so nothing is alerting.
    assert f"  (unpartitioned)  {'open_alerts':<24} {0:>10,} rows" in proc.stdout.splitlines(), proc.stdout
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = {r.tags.get("dagster/partition"): r for r in instance.get_runs()}
        assert set(runs) == {"2024-01-03", None}
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs.values())
        assert instance.fetch_materializations(dg.AssetKey("open_alerts"), limit=5).records[0].run_id == runs[None].run_id


@pytest.mark.parametrize(
    "args, message",
    [
        (["materialize", "--partition", "2024-13-05"], f"partition key '2024-13-05' is not a day; expected YYYY-MM-DD from 2024-01-01 to {TODAY}"),
        (["backfill", "2024-02-01", "2024-02-30"], f"partition key '2024-02-30' is not a day; expected YYYY-MM-DD from 2024-01-01 to {TODAY}"),
        (["backfill", "2023-12-25", "2024-01-02"], f"partition key '2023-12-25' is outside the partitions; expected a day from 2024-01-01 to {TODAY}"),
        (["backfill", "2024-01-03", "2024-01-02"], f"START 2024-01-03 is after END 2024-01-02; expected START <= END within 2024-01-01 to {TODAY}"),
        (["backfill", "2024-01-01", "2024-01-02", "--select", "open_alerts"], "--select 'open_alerts' has no daily partitions; use `iot-platform materialize` for it"),
        (["materialize", "--select", "anomalies"], f"anomalies, window_stats are partitioned by day; pass --partition YYYY-MM-DD from 2024-01-01 to {TODAY}"),
        (["materialize", "--select", "readings+"], "the selection mixes daily-partitioned assets"),
    ],
)
def test_a_bad_request_is_one_line_naming_the_value_and_exit_2(args, message, data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))  # restored after the test
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"Error: {message}") and err.count("\n") == 1, err
    assert not (tmp_path / "home" / "storage").exists()  # no run was started


def test_a_far_future_day_is_outside_the_partitions(data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    tomorrow = (dt.date.fromisoformat(TODAY) + dt.timedelta(days=1)).isoformat()
    assert main(["materialize", "--partition", tomorrow]) == 2
    assert capsys.readouterr().err == (
        f"Error: partition key '{tomorrow}' is outside the partitions; expected a day from 2024-01-01 to {TODAY}\n"
    )
