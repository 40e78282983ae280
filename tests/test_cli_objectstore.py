"""The commands a user runs, with the lake on a real S3-compatible server (``IOT_LAKE_URL``).

`iot-platform backfill` writes the Delta tables under the bucket/prefix (nothing under the data
root's lake), `iot-platform sql` reads them, `iot-platform doctor` checks them: every entry point
opens the lake the environment names.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest_serial import cli_command

from iot_platform.io.lake import Lake
from iot_platform.io.objstore import lake_store_from_env

pytestmark = pytest.mark.objectstore


def _cli(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, IOT_DATA_DIR=str(tmp_path / "data"), DAGSTER_HOME=str(tmp_path / "home"), IOT_FLEET_SIZE="3",
               IOT_SAMPLE_INTERVAL_S="10")  # fmt: skip
    return subprocess.run([*cli_command(), *args], env=env, capture_output=True, text=True, timeout=600)


def test_backfill_sql_and_doctor_use_the_object_store_lake(tmp_path, s3_lake_url, monkeypatch):
    monkeypatch.setenv("IOT_LAKE_URL", s3_lake_url)
    p = _cli(tmp_path, "backfill", "2024-01-01", "2024-01-02")
    assert p.returncode == 0, p.stderr
    lake = Lake(tmp_path / "data", lake_store_from_env())
    rows = sum(lake.read("readings", [d]).num_rows for d in ("2024-01-01", "2024-01-02"))
    assert rows > 0
    assert [str(d) for d in lake.days("anomalies")] == ["2024-01-01", "2024-01-02"]
    assert not (tmp_path / "data" / "lake" / "readings").exists()  # nothing written to the local lake

    q = _cli(tmp_path, "sql", "--format", "csv", "SELECT count(*) AS n FROM readings")
    assert q.returncode == 0, q.stderr
    assert q.stdout.splitlines() == ["n", str(rows)]

    d = _cli(tmp_path, "doctor")
    assert d.returncode == 0, d.stdout + d.stderr


def test_a_local_path_in_iot_lake_url_is_one_line_not_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("IOT_LAKE_URL", str(tmp_path / "elsewhere"))
    p = _cli(tmp_path, "backfill", "2024-01-01", "2024-01-01")
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        f"Error: IOT_LAKE_URL='{tmp_path / 'elsewhere'}' is not supported; expected s3://bucket/prefix (a local lake is "
        "$IOT_DATA_DIR/lake: set IOT_DATA_DIR instead, and leave IOT_LAKE_URL unset)"
    ]
