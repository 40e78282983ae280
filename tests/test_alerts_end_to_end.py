"""The README's path, end to end on a real Dagster instance: the simulated fleet's micro-batch runs,
a faulty reading of one of its sensors imported with `iot-platform import`, the next micro-batch
detects it, the alert sensor requests a pass, and a real webhook receiver gets the alarm."""

from __future__ import annotations

import datetime as dt
import time

import dagster as dg

from alert_receivers import WebhookReceiver
from iot_platform.cli import main
from iot_platform.orchestration.alerts import alert_delivery_sensor, alerts_job
from iot_platform.orchestration.micro_batch import micro_batch_job, micro_batch_sensor
from iot_platform.orchestration.resources import ClockResource

US = 1_000_000


def _micro_batch(instance, resources, cursor, now_us: int):
    resources = {**resources, "clock": ClockResource(fixed_now_us=now_us)}
    tick = micro_batch_sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources))
    for req in tick.run_requests:
        assert micro_batch_job.execute_in_process(run_config=req.run_config, instance=instance, resources=resources).success
    return tick.cursor


def test_an_imported_fault_reaches_the_webhook(data_dir, tmp_path, instance, resources, monkeypatch):
    hook = WebhookReceiver()
    try:
        (data_dir / "alerts.yaml").write_text(
            "policy: {types: [sensor_fault], sensor_silence_s: 0, pipeline_silence_s: 0}\n"
            f"channels:\n  ops: {{type: webhook, url: '{hook.url}', format: slack}}\n"
        )
        # a clock ten minutes back (the fleet's recent past, so nothing is ahead of the host's clock),
        # fixed, so that the fault is neither late for the second batch nor after its watermark
        t1 = (time.time_ns() // 1000 - 600 * US) // (30 * US) * 30 * US
        cursor = _micro_batch(instance, resources, None, t1)
        # a simulated sensor's instrument has a physical valid range: 500 °C means it is broken
        # (half a second off its 10 s grid: not a duplicate of a simulated reading)
        fault_at = dt.datetime.fromtimestamp(t1 / US + 5.5, dt.UTC)
        csv = tmp_path / "fault.csv"
        csv.write_text(f"sensor_id,ts,temperature\nsensor_001,{fault_at.isoformat()},500\n")
        assert main(["import", str(csv)]) == 0
        _micro_batch(instance, resources, cursor, t1 + 90 * US)  # emits windows and points up to t1 + 60 s
        at = {**resources, "clock": ClockResource(fixed_now_us=t1 + 100 * US)}
        tick = alert_delivery_sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=None, resources=at))
        (req,) = tick.run_requests
        assert alerts_job.execute_in_process(instance=instance, resources=at, tags=req.tags).success
        (body,) = hook.bodies()
        assert body["text"].startswith("[CRITICAL] sensor_fault on sensor_001 (temperature): opened: temperature 500")
        ts = fault_at.replace(microsecond=0).isoformat().replace("+00:00", "Z")
        assert f"*status:* active | *first_seen:* {ts} | *last_seen:* {ts} | *value:* 500.0 |" in body["blocks"][1]["elements"][0]["text"]
    finally:
        hook.close()
