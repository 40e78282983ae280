"""The Dagster code location: `dagster dev` and `dagster asset materialize -m` load `defs`."""

from __future__ import annotations

import dagster as dg

from iot_platform.orchestration.alerts import alert_delivery_sensor, alerts_job
from iot_platform.orchestration.assets.detection import window_stats_and_anomalies
from iot_platform.orchestration.assets.fleet import fleet_readings
from iot_platform.orchestration.assets.sensors import sensors
from iot_platform.orchestration.backfill import backfill_days, backfill_days_in_waves
from iot_platform.orchestration.checks import all_checks
from iot_platform.orchestration.models import build_model_assets, build_model_checks
from iot_platform.orchestration.micro_batch import (
    finalize_job,
    finalize_yesterday,
    micro_batch_job,
    micro_batch_sensor,
    refresh_models_job,
    refresh_models_schedule,
)
from iot_platform.orchestration.resources import ClockResource, detection_from_env, fleet_from_env, lake_from_env

defs = dg.Definitions(
    assets=[fleet_readings, window_stats_and_anomalies, sensors, *build_model_assets()],
    asset_checks=[*all_checks, *build_model_checks()],
    jobs=[micro_batch_job, finalize_job, refresh_models_job, alerts_job, backfill_days, backfill_days_in_waves],
    sensors=[micro_batch_sensor, alert_delivery_sensor],
    schedules=[finalize_yesterday, refresh_models_schedule],
    resources={
        "lake": lake_from_env(),
        "fleet": fleet_from_env(),
        "clock": ClockResource(),
        "detection": detection_from_env(),
    },
    # In-process: on a 2-core machine a process per step costs more than it buys
    # (a sensor tick to a trivial run's success: ~10.7 s multiprocess, ~4.4 s in-process).
    executor=dg.in_process_executor,
)
