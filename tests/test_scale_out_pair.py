"""The scale-out pair together: Dagster on a real PostgreSQL, the lake on a real S3-compatible server.

A backfill spread over two worker processes and a micro-batch run of the real job, both recorded
in PostgreSQL, both writing Delta tables under IOT_LAKE_URL; the micro-batch's readings of the
backfilled day join the backfill's without a key twice, and SQL reads the result.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess

import pyarrow.compute as pc
import pytest
from conftest_serial import cli_command

from iot_platform.core import simulator as sim
from iot_platform.core.batching import Cursor, decide
from iot_platform.io.lake import Lake
from iot_platform.io.objstore import lake_store_from_env
from iot_platform.orchestration.micro_batch import micro_batch_job

pytestmark = [pytest.mark.postgres, pytest.mark.objectstore]


def test_backfill_on_workers_and_a_micro_batch_on_postgres_and_the_object_store(
    tmp_path, postgres_url, postgres_server, s3_lake_url, monkeypatch, resources, data_dir
):
    env = {"IOT_DATA_DIR": str(data_dir), "DAGSTER_HOME": str(tmp_path / "home"), "IOT_DAGSTER_POSTGRES_URL": postgres_url,
           "IOT_LAKE_URL": s3_lake_url, "IOT_FLEET_SIZE": "3", "IOT_SAMPLE_INTERVAL_S": "10"}  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    p = subprocess.run([*cli_command(), "backfill", "2024-01-02", "2024-01-03", "--workers", "2"],
                       env=dict(os.environ), capture_output=True, text=True, timeout=900)  # fmt: skip
    assert p.returncode == 0, p.stderr
    lake = Lake(data_dir, lake_store_from_env())
    before = lake.read("readings", ["2024-01-03"])

    from iot_platform.cli.dagster_home import open_instance, use_dagster_home

    home = use_dagster_home()
    day0 = sim.day_start_us(dt.date(2024, 1, 3))
    batch = decide(Cursor(), day0 + 75_000_000, True, []).batch
    with open_instance(home) as instance:
        result = micro_batch_job.execute_in_process(
            run_config={"ops": {"micro_batch": {"config": {"batch_id": batch.batch_id, "until_us": batch.until_us}}}},
            instance=instance, resources=resources,
        )  # fmt: skip
        assert result.success
    after = Lake(data_dir, lake_store_from_env()).read("readings", ["2024-01-03"])
    # the batch's 75 s were already backfilled: nothing lost, nothing twice
    keys = after.select(["sensor_id", "ts"])
    assert keys.num_rows == before.num_rows == len(set(zip(keys["sensor_id"].to_pylist(), pc.cast(keys["ts"], "int64").to_pylist())))
    assert not (data_dir / "lake" / "readings").exists()  # every table on the object store

    db = postgres_url.rsplit("/", 1)[1]
    assert sorted(postgres_server.psql(db, "SELECT pipeline_name, status FROM runs").splitlines()) == [
        "backfill_days|SUCCESS", "micro_batch_job|SUCCESS"
    ]
    q = subprocess.run([*cli_command(), "sql", "--format", "csv", "SELECT count(DISTINCT date) AS days FROM anomalies"],
                       env=dict(os.environ), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert q.returncode == 0, q.stderr
    assert q.stdout.splitlines() == ["days", "2"]
