"""`iot-platform alerts` and the alert sensor + job on a real Dagster instance, against a real receiver."""

from __future__ import annotations

import time

import dagster as dg
import pytest

from alert_receivers import WebhookReceiver
from iot_platform.cli import main
from iot_platform.core.alert_decide import AlertCursor, decide_alert_run
from iot_platform.io.alert_store import AlertStore
from iot_platform.io.alerts import load_config, run_pass
from iot_platform.orchestration.alerts import alert_delivery_sensor, alerts_job
from iot_platform.orchestration.resources import ClockResource, LakeResource
from test_alerts_delivery import A1, A1_CRITICAL, NOON, US, write_anomalies


@pytest.fixture
def hook():
    r = WebhookReceiver()
    yield r
    r.close()


@pytest.fixture
def configured(data_dir, hook, monkeypatch):
    monkeypatch.setenv("HOOK_URL", hook.url)
    (data_dir / "alerts.yaml").write_text(
        "policy: {clear_after_s: 300, sensor_silence_s: 0, pipeline_silence_s: 0}\n"
        "channels:\n  hook: {type: webhook, url: '${HOOK_URL}'}\n"
    )
    return data_dir


def test_list_ack_clear(configured, hook, capsys):
    write_anomalies(configured, [A1, ("a2", "sensor_002", "flatline", "critical", "temperature", 10, 70, 20.0, 1.0)], until_s=60)
    run_pass(configured, load_config(configured), NOON + 90 * US)
    capsys.readouterr()
    assert main(["alerts", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["ID", "STATUS", "SEVERITY", "SENSOR", "TYPE", "METRIC", "FIRST", "SEEN", "LAST", "SEEN", "MESSAGE"]
    assert [line.split()[:6] for line in out[1:]] == [
        ["a1", "active", "warning", "sensor_001", "spike", "temperature"],
        ["a2", "active", "critical", "sensor_002", "flatline", "temperature"],
    ]
    assert main(["alerts", "ack", "a1", "--by", "ops"]) == 0
    assert capsys.readouterr().out == "acknowledged a1 (spike on sensor_001)\n"
    assert main(["alerts", "clear", "a2"]) == 0
    assert capsys.readouterr().out == "cleared a2 (flatline on sensor_002); notification queued for hook\n"
    assert main(["alerts", "list"]) == 0
    assert [line.split()[:2] for line in capsys.readouterr().out.splitlines()[1:]] == [["a1", "acknowledged"]]
    assert main(["alerts", "ack", "a2"]) == 2
    assert capsys.readouterr().err == "Error: alarm a2 is cleared; only an active alarm can be acknowledged\n"
    assert main(["alerts", "clear", "nope"]) == 2
    assert capsys.readouterr().err == "Error: no alarm with id 'nope'; `iot-platform alerts list --all` shows them\n"
    # the queued clear goes out with the next pass; the acknowledged alarm's episode growing sends nothing
    write_anomalies(configured, [("a1", "sensor_001", "spike", "warning", "temperature", 0, 30, 31.5, 4.0),
                                 ("a2", "sensor_002", "flatline", "critical", "temperature", 10, 90, 20.0, 1.0)], until_s=90)  # fmt: skip
    # (the CLI stamps the clear with the real clock: the pass must run at a later real time to find it due)
    run_pass(configured, load_config(configured), time.time_ns() // 1000)
    assert hook.keys() == ["a1:opened@hook", "a2:opened@hook", "a2:cleared@hook"]
    assert hook.bodies()[2]["status"] == "cleared"
    assert main(["alerts", "list", "--outbox", "--format", "json"]) == 0
    import json

    assert [(r["notification_id"], r["status"]) for r in json.loads(capsys.readouterr().out)] == [
        ("a1:opened", "sent"), ("a2:opened", "sent"), ("a2:cleared", "sent")
    ]


def test_test_channel(configured, hook, capsys, monkeypatch):
    assert main(["alerts", "test-channel", "hook"]) == 0
    assert capsys.readouterr().out == "sent a test notification to hook (webhook)\n"
    (body,) = hook.bodies()
    assert (body["event"], body["sensor_id"], body["message"]) == ("test", "test", "a test notification from iot-platform to channel hook")
    hook.status = 500
    assert main(["alerts", "test-channel", "hook"]) == 1
    assert capsys.readouterr().err == "Error: channel hook (webhook) failed: HTTP 500 Internal Server Error\n"
    assert main(["alerts", "test-channel", "other"]) == 1
    assert capsys.readouterr().err == "Error: channel 'other' is not configured; expected one of: hook\n"
    monkeypatch.delenv("HOOK_URL")
    assert main(["alerts", "test-channel", "hook"]) == 1
    unset = f"{configured / 'alerts.yaml'}: channels.hook.url refers to ${{HOOK_URL}}, which is not set in the environment"
    assert capsys.readouterr().err == f"Error: channel hook (webhook) failed: {unset}\n"


@pytest.mark.parametrize(
    "cursor, lake_sig, due, now_s, expected_key, reason",
    [
        (AlertCursor(), "L1", [], 100, True, "new detection output, heartbeat"),
        (AlertCursor("L1", "", 0), "L1", [], 59, False, "nothing new: lake unchanged, no notification due, heartbeat not yet due"),
        (AlertCursor("L1", "", 0), "L1", [], 60, True, "heartbeat"),
        (AlertCursor("L1", "", 0), "L2", [], 10, True, "new detection output"),
        (AlertCursor("L1", "", 0), "L1", ["n@hook#1"], 10, True, "1 notification(s) due"),
    ],
)
def test_the_sensor_decision(cursor, lake_sig, due, now_s, expected_key, reason):
    d = decide_alert_run(cursor, now_s * US, lake_sig, due)
    assert (d.run_key is not None, d.reason) == (expected_key, reason)
    if expected_key:
        assert d.cursor.last_run_us == now_s * US and d.cursor.lake_sig == lake_sig
        assert d.run_key == decide_alert_run(cursor, now_s * US, lake_sig, due).run_key  # deterministic
    else:
        assert d.cursor == cursor


def test_sensor_requests_a_run_and_a_failing_channel_turns_the_run_red(configured, hook, instance):
    write_anomalies(configured, [A1_CRITICAL], until_s=60)
    resources = {"lake": LakeResource(data_dir=str(configured)), "clock": ClockResource(fixed_now_us=NOON + 90 * US)}
    tick = alert_delivery_sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=None, resources=resources))
    (req,) = tick.run_requests
    assert req.run_key.startswith("alerts-") and req.tags["iot/alerts_reason"] == "new detection output, heartbeat"
    again = alert_delivery_sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=tick.cursor, resources=resources))
    assert again.run_requests == [] and again.cursor == tick.cursor
    result = alerts_job.execute_in_process(instance=instance, resources=resources)
    assert result.success
    assert hook.keys() == ["a1:opened@hook"]
    (out,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    meta = out.step_output_data.metadata
    assert (meta["notifications_queued"].value, meta["delivered"].value, meta["channels_failing"].value) == (1, 1, "-")
    # the receiver goes down; a new anomaly: the run fails, naming the channel and the error
    hook.status = 503
    write_anomalies(configured, [A1_CRITICAL, ("a2", "sensor_002", "flatline", "critical", "temperature", 60, 80, 20.0, 1.0)], until_s=90)
    failed = alerts_job.execute_in_process(instance=instance, resources=resources, raise_on_error=False)
    assert not failed.success
    (failure,) = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failure.step_failure_data.user_failure_data.description == "channel(s) failing: hook: HTTP 503 Service Unavailable"
    with AlertStore.at(configured) as store:
        assert [(r.notification_id, r.status, r.attempts) for r in store.outbox()] == [("a1:opened", "sent", 1), ("a2:opened", "pending", 1)]
    # the due retry shows in the sensor's next decision
    later = {**resources, "clock": ClockResource(fixed_now_us=NOON + 96 * US)}
    tick3 = alert_delivery_sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=tick.cursor, resources=later))
    (req3,) = tick3.run_requests
    assert req3.tags["iot/alerts_reason"] == "new detection output, 1 notification(s) due"
