"""Near-real-time: the 30-second micro-batch sensor, its job, and the nightly finalize.

The sensor only decides (``core.batching.decide``); the run does the work
(``io.microbatch.run_micro_batch``) and reports each partition it touched as
a materialization of `readings`, `window_stats` and `anomalies`.
"""

# No `from __future__ import annotations`: Dagster inspects the context annotation at runtime.

import datetime as dt
import time

import dagster as dg
from dagster import OpExecutionContext, ScheduleEvaluationContext, SensorEvaluationContext

from iot_platform.core.batching import BATCH_SECONDS, Cursor, decide
from iot_platform.io.downstream import make_update_downstream
from iot_platform.io.microbatch import landing_id, pending_landing_files, run_micro_batch
from iot_platform.orchestration.metadata import ts_text
from iot_platform.orchestration.partitions import start_date
from iot_platform.orchestration.resources import ClockResource, DetectionResource, FleetResource, LakeResource
from iot_platform.settings import MICRO_BATCH_QUEUE, QUEUE_TAG, landing_dir


class MicroBatchConfig(dg.Config):
    batch_id: str
    until_us: int


@dg.op(description="Ingest one micro-batch and bring the derived tables up to date.")
def micro_batch(
    context: OpExecutionContext, config: MicroBatchConfig, lake: LakeResource, fleet: FleetResource, detection: DetectionResource
):
    started = time.monotonic()
    root = lake.lake
    first_day = dt.date.fromisoformat(start_date())
    result = run_micro_batch(
        root,
        config.batch_id,
        config.until_us,
        fleet=fleet.params(),
        landing=landing_dir(root.root),
        first_day=first_day,
        downstream=make_update_downstream(detection.settings(fleet.params(), root.root), first_day),
    )
    duration = time.monotonic() - started
    lag = (time.time_ns() // 1000 - result.newest_ts) / 1e6 if result.newest_ts is not None else None
    summary = {
        "readings_ingested": result.ingested,
        "rerun_of": result.rerun_of or "-",
        "rejected": result.rejected,
        "duplicates_absorbed": result.duplicates,
        "landing_files": result.landing_files,
        "partitions_touched": ", ".join(result.partitions) or "-",
        "late_days_refreshed": ", ".join(result.late_days) or "-",
        "newest_reading": ts_text(result.newest_ts),
        "lag_seconds": round(lag, 3) if lag is not None else -1.0,
        "duration_seconds": round(duration, 3),
        **{f"seconds_{k}": round(v, 3) for k, v in result.seconds.items()},
    }
    for path, why in result.quarantined.items():
        context.log.error(f"damaged file {path}: {why}; its day was rebuilt from its sources")
    if result.quarantined:
        summary["quarantined_files"] = dg.MetadataValue.json(result.quarantined)
    if result.rerun_of is not None:
        context.log.warning(
            f"batch {result.rerun_of} had already committed: its parts are kept as they are; this re-execution "
            f"added only what was new since ({result.ingested} readings) as part {result.batch_id}"
        )
    for day in result.partitions:
        for key in ("readings", "window_stats", "anomalies"):
            meta = {"batch_id": result.batch_id, "readings_ingested_this_day": result.per_day.get(day, 0), **summary}
            yield dg.AssetMaterialization(asset_key=key, partition=day, metadata=meta)
    context.log.info(f"batch {config.batch_id}: {summary}")
    yield dg.Output(None, metadata=summary)


@dg.job(
    name="micro_batch_job",
    # in-process: a sensor tick to a trivial run's success takes ~4.4 s instead of ~10.7 s
    executor_def=dg.in_process_executor,
    # every run ingests all that is pending, so a retry is always safe; the queue tag puts the
    # runs in the run queue's micro-batch lane (one at a time, see cli/dagster_home.py)
    tags={"dagster/max_retries": "2", QUEUE_TAG: MICRO_BATCH_QUEUE},
    description="One micro-batch: new simulated readings and landing files into today's partitions.",
)
def micro_batch_job():
    micro_batch()


@dg.sensor(
    name="micro_batch_sensor",
    job=micro_batch_job,
    minimum_interval_seconds=BATCH_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every 30 s: request a micro-batch when the fleet or the landing zone has new readings.",
)
def micro_batch_sensor(context: SensorEvaluationContext, lake: LakeResource, fleet: FleetResource, clock: ClockResource):
    cursor = Cursor.from_json(context.cursor)
    pending = [landing_id(p) for p in pending_landing_files(landing_dir(lake.lake.root))]
    decision = decide(cursor, clock.now_us(), fleet.params() is not None, pending)
    context.update_cursor(decision.cursor.to_json())
    if decision.batch is None:
        return dg.SkipReason(decision.skip_reason)
    b = decision.batch
    return dg.RunRequest(
        run_key=b.batch_id,
        run_config={"ops": {"micro_batch": {"config": {"batch_id": b.batch_id, "until_us": b.until_us}}}},
        tags={"iot/batch_until": ts_text(b.until_us), "iot/landing_files": str(len(b.landing))},
    )


finalize_job = dg.define_asset_job(
    "finalize_day",
    # Partitioned by day: Dagster takes the partitions from the selected (lake) assets.
    selection=dg.AssetSelection.groups("lake"),
    description="Rebuild a whole day: compact micro-batch parts, recompute window_stats and anomalies.",
)

refresh_models_job = dg.define_asset_job(
    "refresh_models",
    selection=dg.AssetSelection.groups("warehouse"),
    description="Rebuild the DuckDB warehouse (the SQL models in dbt_like_sql/) and run their tests.",
)

refresh_models_schedule = dg.ScheduleDefinition(
    name="refresh_models_every_10_minutes",
    job=refresh_models_job,
    cron_schedule="*/10 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="The SQL models that are tables (daily health, open alerts, ...) follow the micro-batches; views are always current.",
)


@dg.schedule(
    name="finalize_yesterday",
    job=finalize_job,
    cron_schedule="15 0 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="At 00:15 UTC: finalize yesterday (one compacted file; downstream over the complete day).",
)
def finalize_yesterday(context: ScheduleEvaluationContext):
    yesterday = (context.scheduled_execution_time.astimezone(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
    return dg.RunRequest(run_key=f"finalize-{yesterday}", partition_key=yesterday)
