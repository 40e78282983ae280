"""The micro-batch sensor on a real Dagster instance: run requests, cursors, real runs."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from iot_platform.core.batching import Cursor
from iot_platform.core import simulator as sim
from iot_platform.orchestration.micro_batch import micro_batch_job, micro_batch_sensor
from iot_platform.orchestration.resources import ClockResource

DAY = dt.date(2024, 1, 3)
D0 = sim.day_start_us(DAY)
S = 1_000_000
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _tick(instance, resources, now_us: int, cursor: str | None):
    ctx = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={**resources, "clock": ClockResource(fixed_now_us=now_us)}
    )
    return micro_batch_sensor.evaluate_tick(ctx)


def test_a_tick_requests_one_batch_and_advances_the_cursor(instance, resources):
    data = _tick(instance, resources, D0 + 75 * S, None)
    (req,) = data.run_requests
    assert req.run_key == f"mb-{D0 + 60 * S}-sim"
    assert req.run_config == {"ops": {"micro_batch": {"config": {"batch_id": f"mb-{D0 + 60 * S}-sim", "until_us": D0 + 60 * S}}}}
    assert Cursor.from_json(data.cursor) == Cursor(sim_until=D0 + 60 * S, landing={})


def test_re_evaluating_within_the_same_30s_is_a_skip(instance, resources):
    first = _tick(instance, resources, D0 + 75 * S, None)
    again = _tick(instance, resources, D0 + 89 * S, first.cursor)
    assert again.run_requests == []
    assert again.skip_message == f"no new readings: simulated fleet batched up to {D0 + 60 * S}; landing zone empty"
    assert again.cursor == first.cursor


def test_the_requested_run_succeeds_and_reports_the_partitions_it_touched(instance, resources, lake):
    data = _tick(instance, resources, D0 + 75 * S, None)
    (req,) = data.run_requests
    result = micro_batch_job.execute_in_process(run_config=req.run_config, instance=instance, resources=resources)
    assert result.success
    mats = result.get_asset_materialization_events()
    assert {(m.asset_key.to_user_string(), m.partition) for m in mats} >= {("readings", "2024-01-03")}
    assert lake.read("readings", [DAY]).num_rows > 0
    readings_mat = [m for m in mats if m.asset_key == dg.AssetKey("readings")][0].materialization
    assert readings_mat.metadata["readings_ingested"].value == lake.read("readings", [DAY]).num_rows == 18
    assert readings_mat.metadata["partitions_touched"].value == "2024-01-03"
    assert readings_mat.metadata["lag_seconds"].value > 0


@pytest.mark.slow
def test_the_real_daemon_fires_the_sensor_and_a_run_succeeds(tmp_path: Path, data_dir: Path):
    """`dagster-daemon` evaluates the default-on sensor, launches a run, the run succeeds."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = dict(os.environ, DAGSTER_HOME=str(home), IOT_DATA_DIR=str(data_dir), IOT_FLEET_SIZE="3", IOT_SAMPLE_INTERVAL_S="10")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagster._daemon", "run", "-w", "workspace.yaml"],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with _instance(home) as instance:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                runs = instance.get_runs(filters=dg.RunsFilter(job_name="micro_batch_job"))
                if any(r.status == dg.DagsterRunStatus.SUCCESS for r in runs):
                    break
                failed = [r for r in runs if r.status == dg.DagsterRunStatus.FAILURE]
                assert not failed, f"run {failed[0].run_id} failed"
                time.sleep(1)
            else:
                pytest.fail("no successful micro-batch run within 180 s")
        today = dt.datetime.now(dt.UTC).date()
        assert list((data_dir / "lake" / "readings" / f"date={today}").glob("part-mb-*.parquet"))
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _instance(home: Path) -> dg.DagsterInstance:
    """The daemon's instance, opened from its DAGSTER_HOME."""
    from dagster._core.instance.ref import InstanceRef

    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
