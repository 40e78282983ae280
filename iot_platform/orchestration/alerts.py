"""Alerting: the sensor that decides when to evaluate alarms and deliver, and the job that does it.

The sensor only looks (file times, the outbox's due rows) and requests a run of
``alerts_job`` (``core.alert_decide``); the run evaluates the alarms from the
lake's anomalies, queues their notifications durably and delivers what is due
(``io.alerts.run_pass``). A channel that fails fails the run, so it shows red in
the UI with the channel and the error, while every other channel has been
served and ingestion (its own job) never waits for it.
"""

# No `from __future__ import annotations`: Dagster inspects the context annotation at runtime.

import os
import time

import dagster as dg
from dagster import OpExecutionContext, SensorEvaluationContext

from iot_platform.core.alert_decide import AlertCursor, decide_alert_run
from iot_platform.io.alerts import due_keys, lake_signature, load_config, run_pass
from iot_platform.orchestration.resources import ClockResource, LakeResource


@dg.op(
    description="Evaluate alarms from the lake's anomalies, queue their notifications, deliver what is due.",
    out=dg.Out(dg.Nothing),  # metadata only: nothing for an IO manager to store at every pass
)
def evaluate_and_deliver_alerts(context: OpExecutionContext, lake: LakeResource, clock: ClockResource):
    root = lake.lake.root
    config = load_config(root)
    for channel in config.channels:
        if channel.unusable:
            context.log.warning(f"channel {channel.name} cannot send: {channel.unusable}")
    started = time.monotonic()
    result = run_pass(root, config, clock.now_us())
    if result is None:
        context.log.info("another alerting pass holds the store's lock; nothing done")
        return dg.Output(None, metadata={"skipped": "another pass was running"})
    ev, rep = result.evaluation, result.delivery
    meta = {
        "alarms_changed": len(ev.alarms),
        "notifications_queued": len(ev.notifications),
        "delivered": len(rep.sent),
        "deferred": rep.deferred,
        "uncertain": len(rep.uncertain),
        "open_alarms": result.open_alarms,
        "channels_failing": ", ".join(f"{c}: {e}" for c, e in sorted(rep.failed.items())) or "-",
        "duration_seconds": round(time.monotonic() - started, 3),
        # where to look at the fleet live (`iot-platform dashboard`; IOT_DASHBOARD_URL if served elsewhere)
        "dashboard": dg.MetadataValue.url(os.environ.get("IOT_DASHBOARD_URL") or "http://127.0.0.1:8050"),
    }
    context.log.info(f"alerts: {meta}")
    if rep.failed:
        raise dg.Failure(
            description="channel(s) failing: " + "; ".join(f"{c}: {e}" for c, e in sorted(rep.failed.items())),
            metadata=meta,
        )
    return dg.Output(None, metadata=meta)


@dg.job(
    name="alerts_job",
    executor_def=dg.in_process_executor,
    # the outbox retries by itself, with backoff; a run retry would only add noise
    tags={"dagster/max_retries": "0"},
    description="One alerting pass: alarms from anomalies, notifications queued and delivered.",
)
def alerts_job():
    evaluate_and_deliver_alerts()


@dg.sensor(
    name="alert_delivery_sensor",
    job=alerts_job,
    minimum_interval_seconds=20,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every 20 s: request an alerting pass when detection wrote something, a notification is due, or a minute has passed.",
)
def alert_delivery_sensor(context: SensorEvaluationContext, lake: LakeResource, clock: ClockResource):
    root = lake.lake.root
    now = clock.now_us()
    decision = decide_alert_run(AlertCursor.from_json(context.cursor), now, lake_signature(root), due_keys(root, now))
    context.update_cursor(decision.cursor.to_json())
    if decision.run_key is None:
        return dg.SkipReason(decision.reason)
    return dg.RunRequest(run_key=decision.run_key, tags={"iot/alerts_reason": decision.reason})
