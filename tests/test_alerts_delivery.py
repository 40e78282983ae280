"""Alerting end to end against a real HTTP receiver and a real SMTP server (aiosmtpd) on 127.0.0.1:
the exact messages, no duplicates as an episode grows, escalation, clearing, a channel down then up,
and a delivery process SIGKILLed after its message left but before it recorded that."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from alert_receivers import SmtpReceiver, WebhookReceiver
from iot_platform.core import simulator as sim
from iot_platform.core.schemas import ANOMALIES
from iot_platform.io.alert_store import AlertStore
from iot_platform.io.alerts import load_config, run_pass
from iot_platform.io.commit import State
from iot_platform.io.lake import Lake

DAY = dt.date(2024, 1, 3)
D0 = sim.day_start_us(DAY)
US = 1_000_000
UTC = dt.UTC
NOON = D0 + 12 * 3600 * US
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def at(s: float) -> dt.datetime:
    return dt.datetime.fromtimestamp((NOON + int(s * US)) / US, UTC)


def write_anomalies(root: Path, rows: list[tuple], until_s: int) -> None:
    """rows: (anomaly_id, sensor, type, severity, metric, start s, end s, value, score) after noon."""
    table = pa.Table.from_pylist(
        [dict(anomaly_id=a, sensor_id=s, anomaly_type=t, severity=sev, metric=m, start_ts=at(b), end_ts=at(e), value=v,
              threshold=None, score=sc, n_points=1, systemic_id=None, message=f"{m} {v} on {s}")
         for a, s, t, sev, m, b, e, v, sc in rows],
        schema=ANOMALIES,
    )  # fmt: skip
    Lake(root).replace_partition("anomalies", DAY, table, metadata={"iot.until_us": str(NOON + until_s * US)})


@pytest.fixture
def hook():
    r = WebhookReceiver()
    yield r
    r.close()


@pytest.fixture
def smtp():
    r = SmtpReceiver()
    yield r
    r.close()


def write_config(root: Path, hook: WebhookReceiver, smtp: SmtpReceiver | None, on_uncertain: str = "resend") -> dict:
    mail = f"""
  mail:
    type: email
    host: 127.0.0.1
    port: {smtp.port}
    from: iot-alerts@example.org
    to: [oncall@example.org, lead@example.org]
    filters: {{types: [spike]}}""" if smtp else ""
    (root / "alerts.yaml").write_text(f"""
policy: {{clear_after_s: 300, sensor_silence_s: 0, pipeline_silence_s: 0}}
retry: {{base_s: 5, max_s: 600}}
channels:
  hook:
    type: webhook
    url: ${{HOOK_URL}}
    headers: {{Authorization: "Bearer ${{HOOK_TOKEN}}"}}
    on_uncertain: {on_uncertain}
  slack:
    type: webhook
    url: ${{HOOK_URL}}/slack
    format: slack
    filters: {{severities: [critical]}}{mail}
""")
    return {"HOOK_URL": hook.url, "HOOK_TOKEN": "s3cr3t-token"}


A1 = ("a1", "sensor_001", "spike", "warning", "temperature", 0, 2, 31.5, 4.0)
A1_CRITICAL = ("a1", "sensor_001", "spike", "critical", "temperature", 0, 5, 45.0, 9.0)


def passes(root: Path, env: dict, now_s: int):
    return run_pass(root, load_config(root, env), NOON + now_s * US)


def expected_body(event: str, severity: str, status: str, last: str, value: float, score: float) -> dict:
    return {
        "notification_id": f"a1:{event}", "event": event, "alarm_id": "a1", "sensor_id": "sensor_001", "alarm_type": "spike",
        "metric": "temperature", "severity": severity, "status": status, "first_seen": "2024-01-03T12:00:00Z",
        "last_seen": last, "value": value, "score": score, "message": f"temperature {value} on sensor_001",
        "summary": f"[{severity.upper()}] spike on sensor_001 (temperature): {event}",
    }  # fmt: skip


def test_open_escalate_clear_exact_messages_and_no_duplicates(data_dir, hook, smtp):
    env = write_config(data_dir, hook, smtp)
    write_anomalies(data_dir, [A1], until_s=60)
    first = passes(data_dir, env, 90)
    assert [n.notification_id for n in first.evaluation.notifications] == ["a1:opened"]
    assert first.delivery.failed == {}
    assert hook.bodies() == [expected_body("opened", "warning", "active", "2024-01-03T12:00:02Z", 31.5, 4.0)]
    (req,) = hook.requests
    assert (req["path"], req["headers"]["Idempotency-Key"], req["headers"]["Authorization"]) == ("/hook", "a1:opened@hook", "Bearer s3cr3t-token")
    assert req["headers"]["Content-Type"] == "application/json"

    (mail,) = smtp.messages
    assert (mail["from"], mail["to"]) == ("iot-alerts@example.org", ["oncall@example.org", "lead@example.org"])
    msg = mail["msg"]
    assert (msg["Subject"], msg["Message-ID"], msg["X-Idempotency-Key"]) == (
        "[WARNING] spike on sensor_001 (temperature): opened", "<a1.opened.mail@iot-platform>", "a1:opened@mail"
    )
    assert msg.get_content().splitlines()[:4] == [
        "[WARNING] spike on sensor_001 (temperature): opened", "", "notification_id: a1:opened", "event: opened",
    ]

    # the episode grows in the next micro-batches, same severity: nothing sent
    write_anomalies(data_dir, [("a1", "sensor_001", "spike", "warning", "temperature", 0, 3, 31.5, 4.0)], until_s=90)
    assert passes(data_dir, env, 120).evaluation.notifications == []
    # ... then turns critical: one escalation, also to the critical-only Slack channel
    write_anomalies(data_dir, [A1_CRITICAL], until_s=120)
    assert [n.notification_id for n in passes(data_dir, env, 150).evaluation.notifications] == ["a1:escalated"]
    assert hook.bodies()[1] == expected_body("escalated", "critical", "active", "2024-01-03T12:00:05Z", 45.0, 9.0)
    assert hook.requests[2]["path"] == "/hook/slack"
    slack = hook.bodies()[2]
    assert slack["text"] == "[CRITICAL] spike on sensor_001 (temperature): escalated: temperature 45.0 on sensor_001"
    assert slack["blocks"][0] == {"type": "section", "text": {"type": "mrkdwn", "text": slack["text"]}}
    # detection moves on: more than clear_after_s (300 s) since the episode's last point
    write_anomalies(data_dir, [A1_CRITICAL], until_s=305)  # exactly 300 s: not yet
    assert passes(data_dir, env, 310).evaluation.notifications == []
    write_anomalies(data_dir, [A1_CRITICAL], until_s=400)
    assert [n.notification_id for n in passes(data_dir, env, 410).evaluation.notifications] == ["a1:cleared"]
    assert passes(data_dir, env, 500).evaluation.notifications == []

    assert [(r["path"], r["headers"]["Idempotency-Key"]) for r in hook.requests] == [
        ("/hook", "a1:opened@hook"), ("/hook", "a1:escalated@hook"), ("/hook/slack", "a1:escalated@slack"),
        ("/hook", "a1:cleared@hook"), ("/hook/slack", "a1:cleared@slack"),
    ]  # fmt: skip
    assert hook.bodies()[3]["status"] == "cleared"
    assert [m["msg"]["Subject"] for m in smtp.messages] == [
        "[WARNING] spike on sensor_001 (temperature): opened",
        "[CRITICAL] spike on sensor_001 (temperature): escalated",
        "[CRITICAL] spike on sensor_001 (temperature): cleared",
    ]
    with AlertStore.at(data_dir) as store:
        (alarm,) = store.alarms()
        assert (alarm.status, alarm.severity, alarm.clear_reason) == ("cleared", "critical", "episode ended")
        assert {r.status for r in store.outbox()} == {"sent"}
        assert len(store.outbox()) == 8
    # the history is queryable with SQL
    from iot_platform.io.warehouse import QuerySession, default_project_dir
    from iot_platform.core.sqlmodels import load_project

    with QuerySession(load_project(default_project_dir()), data_dir) as s:
        assert s.query("SELECT alarm_id, status, severity, n_notifications, n_delivered, n_pending FROM alarms").to_pylist() == [
            {"alarm_id": "a1", "status": "cleared", "severity": "critical", "n_notifications": 8, "n_delivered": 8, "n_pending": 0}
        ]


def test_a_channel_down_delays_only_its_own_notifications_then_catches_up(data_dir, hook, smtp):
    env = write_config(data_dir, hook, smtp)
    write_anomalies(data_dir, [A1_CRITICAL], until_s=60)
    hook.status = 503
    first = passes(data_dir, env, 90)
    # both webhook channels failed (the same down server); e-mail went out regardless
    assert first.delivery.failed == {"hook": "HTTP 503 Service Unavailable", "slack": "HTTP 503 Service Unavailable"}
    assert first.delivery.sent == ["a1:opened@mail"]
    assert len(smtp.messages) == 1
    with AlertStore.at(data_dir) as store:
        rows = {r.channel: r for r in store.outbox()}
        assert (rows["hook"].status, rows["hook"].attempts, rows["hook"].next_attempt_us) == ("pending", 1, NOON + 95 * US)
        assert rows["hook"].last_error == "HTTP 503 Service Unavailable"
    # not due yet: nothing is tried
    assert passes(data_dir, env, 94).delivery.sent == [] and len(hook.requests) == 2
    # due, still down: the second attempt waits twice as long (5 s, then 10 s)
    assert passes(data_dir, env, 95).delivery.failed == {"hook": "HTTP 503 Service Unavailable", "slack": "HTTP 503 Service Unavailable"}
    with AlertStore.at(data_dir) as store:
        assert {r.channel: (r.attempts, r.next_attempt_us) for r in store.outbox(status="pending")} == {
            "hook": (2, NOON + 105 * US), "slack": (2, NOON + 105 * US)
        }
    hook.status = 200
    back = passes(data_dir, env, 105)
    assert (back.delivery.sent, back.delivery.failed) == (["a1:opened@hook", "a1:opened@slack"], {})
    assert hook.keys() == ["a1:opened@hook", "a1:opened@slack"] * 3  # two refused attempts, then accepted
    assert len(smtp.messages) == 1
    with AlertStore.at(data_dir) as store:
        assert [(d["channel"], d["attempt"], d["outcome"], d["detail"]) for d in store.deliveries()] == [
            ("hook", 1, "error", "HTTP 503 Service Unavailable"), ("mail", 1, "sent", None),
            ("slack", 1, "error", "HTTP 503 Service Unavailable"),
            ("hook", 2, "error", "HTTP 503 Service Unavailable"), ("slack", 2, "error", "HTTP 503 Service Unavailable"),
            ("hook", 3, "sent", None), ("slack", 3, "sent", None),
        ]  # fmt: skip
        # the token was sent as a header, and is nowhere in the store
        assert "s3cr3t-token" not in json.dumps([dict(d) for d in store.deliveries()])
    # a server that is gone altogether (connection refused) is a failure like any other
    url = hook.url
    hook.close()
    write_anomalies(data_dir, [A1_CRITICAL, ("a2", "sensor_002", "flatline", "critical", "temperature", 100, 200, 20.0, 1.0)], until_s=200)
    down = passes(data_dir, env, 210)
    assert down.delivery.failed["hook"].startswith("cannot reach the webhook: [Errno 111] Connection refused")
    assert url not in down.delivery.failed["hook"]


DELIVER = "import sys; from pathlib import Path; from iot_platform.io.alerts import load_config, run_pass; " \
          "root = Path(sys.argv[1]); run_pass(root, load_config(root), int(sys.argv[2]))"


def test_a_channel_whose_variable_is_unset_waits_and_the_others_deliver(data_dir, hook, smtp):
    env = write_config(data_dir, hook, smtp)
    config = (data_dir / "alerts.yaml").read_text()
    (data_dir / "alerts.yaml").write_text(config.replace("host: 127.0.0.1", "host: ${SMTP_HOST}"))
    write_anomalies(data_dir, [A1_CRITICAL], until_s=60)
    unset = f"{data_dir / 'alerts.yaml'}: channels.mail.host refers to ${{SMTP_HOST}}, which is not set in the environment"
    first = passes(data_dir, env, 90)
    assert (first.delivery.sent, first.delivery.failed) == (["a1:opened@hook", "a1:opened@slack"], {"mail": unset})
    assert hook.keys() == ["a1:opened@hook", "a1:opened@slack"] and smtp.messages == []
    with AlertStore.at(data_dir) as store:
        (mail,) = store.outbox(status="pending")
        assert (mail.channel, mail.attempts, mail.last_error) == ("mail", 1, unset)
    # the variable set (the platform restarted with it): the notification that waited goes out, once
    back = passes(data_dir, {**env, "SMTP_HOST": "127.0.0.1"}, 95)
    assert (back.delivery.sent, back.delivery.failed) == (["a1:opened@mail"], {})
    assert [m["msg"]["X-Idempotency-Key"] for m in smtp.messages] == ["a1:opened@mail"]
    assert hook.keys() == ["a1:opened@hook", "a1:opened@slack"]


@pytest.mark.parametrize("on_uncertain", ["resend", "skip"])
def test_a_delivery_killed_after_sending_before_recording(data_dir, hook, on_uncertain):
    """SIGKILL lands after the request reached the receiver and before the sender recorded it.
    resend: the retry sends it again with the same Idempotency-Key (at least once; a receiver
    that dedupes on the key sees it once). skip: it is never resent (at most once), marked uncertain."""
    env = write_config(data_dir, hook, None, on_uncertain=on_uncertain)
    write_anomalies(data_dir, [A1], until_s=60)  # a warning: only `hook` takes it
    proc = subprocess.Popen([sys.executable, "-c", DELIVER, str(data_dir), str(NOON + 90 * US)], env={**os.environ, **env}, cwd=PROJECT_ROOT)
    hook.kill_pid = proc.pid
    assert proc.wait(timeout=120) == -9
    assert hook.keys() == ["a1:opened@hook"]
    with AlertStore.at(data_dir) as store:
        (row,) = store.outbox()
        assert (row.status, row.attempts) == ("sending", 1)
        (alarm,) = store.alarms()  # the alarm and its queued notification were committed before the send
        assert alarm.alarm_id == "a1"

    retry = passes(data_dir, env, 120)
    again = passes(data_dir, env, 180)
    assert again.delivery.sent == again.delivery.uncertain == []
    with AlertStore.at(data_dir) as store:
        (row,) = store.outbox()
        history = [(d["attempt"], d["outcome"]) for d in store.deliveries()]
    if on_uncertain == "resend":
        assert retry.delivery.sent == ["a1:opened@hook"]
        assert hook.keys() == ["a1:opened@hook", "a1:opened@hook"]
        assert len(set(hook.keys())) == 1  # what a receiver deduplicating on the key keeps
        assert hook.bodies()[0] == hook.bodies()[1]
        assert (row.status, row.attempts) == ("sent", 2)
        assert history == [(1, "interrupted"), (2, "sent")]
    else:
        assert retry.delivery.uncertain == ["a1:opened@hook"]
        assert hook.keys() == ["a1:opened@hook"]
        assert (row.status, row.attempts) == ("uncertain", 1)
        assert row.last_error == "an attempt was interrupted; not resent (on_uncertain: skip)"
        assert history == [(1, "interrupted")]


def test_a_rerun_evaluation_queues_nothing_twice(data_dir, hook):
    env = write_config(data_dir, hook, None)
    write_anomalies(data_dir, [A1_CRITICAL], until_s=60)
    config = load_config(data_dir, env)
    run_pass(data_dir, config, NOON + 90 * US, deliver=False)
    with AlertStore.at(data_dir) as store:
        # as if the first pass had crashed after committing: a fresh evaluation of the same alarms
        store.con.execute("UPDATE alarms SET last_notified_us = NULL")
    run_pass(data_dir, config, NOON + 91 * US)
    assert sorted(hook.keys()) == ["a1:opened@hook", "a1:opened@slack"]


def test_deadman_for_a_quiet_sensor_and_a_stalled_pipeline(data_dir, hook):
    from test_dashboard_data import readings as make_readings

    (data_dir / "alerts.yaml").write_text(
        "policy: {sensor_silence_s: 300, pipeline_silence_s: 300}\nchannels:\n  hook: {type: webhook, url: '" + hook.url + "'}\n"
    )
    lake = Lake(data_dir)
    noon_s = 12 * 3600
    lake.replace_partition("readings", DAY, pa.concat_tables([make_readings("a", noon_s, 700), make_readings("b", noon_s, 100)]))
    write_anomalies(data_dir, [], until_s=700)
    lake.commit_record(1, State().to_json(), {}, committed_us=NOON + 690 * US)  # the last batch committed at 12:11:30
    config = load_config(data_dir)
    first = run_pass(data_dir, config, NOON + 800 * US)
    quiet = f"nodata-b-{NOON + 99 * US}"
    assert [n.notification_id for n in first.evaluation.notifications] == [f"{quiet}:opened"]
    assert first.evaluation.alarms[quiet].message == "no reading from b for 601 s"
    stalled = run_pass(data_dir, config, NOON + 990 * US)
    assert [n.notification_id for n in stalled.evaluation.notifications] == [f"pipeline-{NOON + 690 * US}:opened"]
    # b reports again in a new micro-batch part, which also moves the pipeline on
    lake.write_part("readings", DAY, "mb-2", make_readings("b", noon_s + 695, 5))
    write_anomalies(data_dir, [], until_s=710)
    lake.commit_record(2, State().to_json(), {}, committed_us=NOON + 1000 * US)
    back = run_pass(data_dir, config, NOON + 1005 * US)
    assert sorted(n.notification_id for n in back.evaluation.notifications) == [f"{quiet}:cleared", f"pipeline-{NOON + 690 * US}:cleared"]
    assert hook.keys() == [f"{quiet}:opened@hook", f"pipeline-{NOON + 690 * US}:opened@hook",
                           f"{quiet}:cleared@hook", f"pipeline-{NOON + 690 * US}:cleared@hook"]  # fmt: skip
