"""The README's path, end to end on a real Dagster instance: the simulated fleet's micro-batch runs,
a faulty reading imported with `iot-platform import`, the next micro-batch detects it, the alert
sensor requests a pass, and a real webhook receiver gets the alarm."""

from __future__ import annotations

import datetime as dt
import time

import dagster as dg

from alert_receivers import WebhookReceiver
from iot_platform.cli import main
from iot_platform.orchestration.alerts import alert_delivery_sensor, alerts_job
from iot_platform.orchestration.micro_batch import micro_batch_job, micro_batch_sensor


def _micro_batch(instance, resources, cursor):
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
        cursor = _micro_batch(instance, resources, None)
        fault_at = dt.datetime.fromtimestamp(time.time() - 90, dt.UTC).replace(microsecond=0)
        csv = tmp_path / "fault.csv"
        csv.write_text(f"sensor_id,ts,temperature\nlab_1,{fault_at.isoformat()},500\n")
        assert main(["import", str(csv)]) == 0
        _micro_batch(instance, resources, cursor)
        tick = alert_delivery_sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=None, resources=resources))
        (req,) = tick.run_requests
        assert alerts_job.execute_in_process(instance=instance, resources=resources, tags=req.tags).success
        (body,) = hook.bodies()
        assert body["text"] == (
            "[CRITICAL] sensor_fault on lab_1 (temperature): opened: temperature 500 is outside the valid range [-40, 85]: broken sensor"
        )
        ts = fault_at.isoformat().replace("+00:00", "Z")
        assert body["blocks"][1]["elements"][0]["text"].endswith(f"*status:* active | *first_seen:* {ts} | *last_seen:* {ts} | *value:* 500.0 | *score:* 415.0")
    finally:
        hook.close()
