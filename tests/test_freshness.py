"""The freshness policies, evaluated by Dagster's own freshness daemon on a real instance.

The scenario is a stalled micro-batch sensor: the last materialization of
today's partition is stored with the time it happened (11, then 4 minutes,
then 30 seconds ago) and the daemon's iteration judges it: FAIL, WARN, PASS.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import dagster as dg
from dagster._core.definitions.freshness import FreshnessState
from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
from dagster._core.instance.utils import RUNLESS_JOB_NAME, RUNLESS_RUN_ID
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster._core.workspace.load_target import ModuleTarget
from dagster._daemon.freshness import FreshnessDaemon

ROOT = Path(__file__).resolve().parents[1]
KEYS = [dg.AssetKey("readings"), dg.AssetKey("anomalies")]


def _materialized(instance, key: dg.AssetKey, seconds_ago: float) -> None:
    today = dt.datetime.now(dt.UTC).date().isoformat()
    instance.report_dagster_event(
        DagsterEvent(DagsterEventType.ASSET_MATERIALIZATION.value, job_name=RUNLESS_JOB_NAME,
                     event_specific_data=StepMaterializationData(dg.AssetMaterialization(key, partition=today))),
        run_id=RUNLESS_RUN_ID, timestamp=time.time() - seconds_ago,
    )  # fmt: skip


def test_a_stalled_micro_batch_turns_readings_and_anomalies_warn_then_red(instance, data_dir):
    target = ModuleTarget(module_name="iot_platform.definitions", attribute=None, working_directory=str(ROOT),
                          location_name="iot_platform")  # fmt: skip
    states = []
    with create_test_daemon_workspace_context(target, instance) as ctx:
        for seconds_ago in (11 * 60, 4 * 60, 30):
            for key in KEYS:
                _materialized(instance, key, seconds_ago)
            list(FreshnessDaemon().run_iteration(ctx))
            records = instance.event_log_storage.get_freshness_state_records(KEYS)
            states.append({k.to_user_string(): records[k].freshness_state for k in KEYS})
    assert states == [
        {"readings": FreshnessState.FAIL, "anomalies": FreshnessState.FAIL},
        {"readings": FreshnessState.WARN, "anomalies": FreshnessState.WARN},
        {"readings": FreshnessState.PASS, "anomalies": FreshnessState.PASS},
    ]
