"""The alarm lifecycle (core.alarms): tiny inline episode tables, exact alarms and notification ids."""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pytest

from iot_platform.core.alarms import (
    Alarm,
    AlarmPolicy,
    acknowledge,
    clear_by_hand,
    evaluate,
)
from iot_platform.core.schemas import ANOMALIES, conform

US = 1_000_000
T0 = 1_704_110_400 * US  # 2024-01-01 12:00 UTC


def eps(*rows: tuple) -> pa.Table:
    """(anomaly_id, sensor, type, severity, metric, start s, end s, score) relative to T0."""
    cols = {k: [] for k in ("anomaly_id", "sensor_id", "anomaly_type", "severity", "metric", "start_ts", "end_ts", "score", "value", "message")}
    for aid, sensor, typ, sev, metric, start, end, score in rows:
        for k, v in zip(("anomaly_id", "sensor_id", "anomaly_type", "severity", "metric"), (aid, sensor, typ, sev, metric)):
            cols[k].append(v)
        cols["start_ts"].append(T0 + start * US)
        cols["end_ts"].append(T0 + end * US)
        cols["score"].append(score)
        cols["value"].append(score * 10)
        cols["message"].append(f"{typ} on {sensor}")
    t = pa.table({**cols, "start_ts": pa.array(cols["start_ts"], pa.int64()), "end_ts": pa.array(cols["end_ts"], pa.int64())})
    t = t.set_column(5, "start_ts", t["start_ts"].cast(pa.timestamp("us", tz="UTC")))
    t = t.set_column(6, "end_ts", t["end_ts"].cast(pa.timestamp("us", tz="UTC")))
    return conform(t, ANOMALIES)


NONE = eps()
P = AlarmPolicy(clear_after_s=300, sensor_silence_s=0, pipeline_silence_s=0)


def run(prev, episodes, *, now_s, until_s, policy=P, last_reading=None, last_batch_s=None):
    return evaluate(
        list(prev), episodes, last_reading or {}, now_us=T0 + now_s * US, data_until_us=T0 + until_s * US,
        last_batch_us=None if last_batch_s is None else T0 + last_batch_s * US, policy=policy,
    )  # fmt: skip


def ids(ev) -> list[str]:
    return [n.notification_id for n in ev.notifications]


def test_an_episode_opens_one_alarm_with_its_anomaly_id():
    ev = run([], eps(("a1", "s1", "spike", "warning", "temperature", 0, 10, 4.0)), now_s=40, until_s=30)
    assert ids(ev) == ["a1:opened"]
    a = ev.alarms["a1"]
    assert (a.sensor_id, a.alarm_type, a.metric, a.severity, a.status) == ("s1", "spike", "temperature", "warning", "active")
    assert (a.first_seen_us, a.last_seen_us, a.score, a.value, a.anomaly_ids) == (T0, T0 + 10 * US, 4.0, 40.0, ("a1",))
    assert (a.created_us, a.last_notified_us, a.notified_severity) == (T0 + 40 * US, T0 + 40 * US, "warning")


def test_a_growing_episode_updates_the_alarm_without_notifying():
    first = run([], eps(("a1", "s1", "drift", "warning", "temperature", 0, 60, 3.0)), now_s=90, until_s=60)
    grown = run(first.alarms.values(), eps(("a1", "s1", "drift", "warning", "temperature", 0, 120, 3.5)), now_s=120, until_s=120)
    assert ids(grown) == []
    a = grown.alarms["a1"]
    assert (a.last_seen_us, a.score, a.status, a.updated_us) == (T0 + 120 * US, 3.5, "active", T0 + 120 * US)
    same = run(grown.alarms.values(), eps(("a1", "s1", "drift", "warning", "temperature", 0, 120, 3.5)), now_s=150, until_s=150)
    assert (ids(same), same.alarms) == ([], {})


@pytest.mark.parametrize(
    "severities, expected",
    [
        (("warning", "critical"), ["a1:opened", "a1:escalated"]),
        (("critical", "critical"), ["a1:opened"]),
        (("critical", "warning"), ["a1:opened"]),  # an episode's severity is its worst: never de-escalates
        (("warning", "warning"), ["a1:opened"]),
    ],
)
def test_re_notification_only_on_escalation(severities, expected):
    first = run([], eps(("a1", "s1", "spike", severities[0], "temperature", 0, 5, 4.0)), now_s=30, until_s=30)
    second = run(first.alarms.values(), eps(("a1", "s1", "spike", severities[1], "temperature", 0, 8, 6.0)), now_s=60, until_s=60)
    assert ids(first) + ids(second) == expected
    final = {**first.alarms, **second.alarms}["a1"]
    assert final.severity == ("critical" if "critical" in severities else "warning")


def test_escalation_reactivates_an_acknowledged_alarm():
    first = run([], eps(("a1", "s1", "high_vibration", "warning", "vibration", 0, 60, 2.5)), now_s=60, until_s=60)
    acked = acknowledge(first.alarms["a1"], T0 + 70 * US, by="ops")
    assert (acked.status, acked.acked_by, acked.acked_us) == ("acknowledged", "ops", T0 + 70 * US)
    esc = run([acked], eps(("a1", "s1", "high_vibration", "critical", "vibration", 0, 120, 6.0)), now_s=120, until_s=120)
    assert ids(esc) == ["a1:escalated"]
    assert (esc.alarms["a1"].status, esc.alarms["a1"].severity) == ("active", "critical")


@pytest.mark.parametrize(
    "until_s, expected_status, expected_ids",
    [
        (10 + 300, "active", []),  # exactly clear_after_s since the last point: still open
        (10 + 301, "cleared", ["a1:cleared"]),
    ],
)
def test_an_alarm_clears_when_its_episode_has_ended_in_data_time(until_s, expected_status, expected_ids):
    first = run([], eps(("a1", "s1", "spike", "warning", "temperature", 0, 10, 4.0)), now_s=30, until_s=30)
    later = run(first.alarms.values(), eps(("a1", "s1", "spike", "warning", "temperature", 0, 10, 4.0)), now_s=until_s, until_s=until_s)
    assert ids(later) == expected_ids
    status = later.alarms["a1"].status if later.alarms else first.alarms["a1"].status
    assert status == expected_status
    if expected_status == "cleared":
        assert later.alarms["a1"].clear_reason == "episode ended"


def test_a_stalled_pipeline_clears_nothing():
    first = run([], eps(("a1", "s1", "spike", "warning", "temperature", 0, 10, 4.0)), now_s=30, until_s=30)
    # an hour of wall time, detection still at 30 s: the episode may well go on
    stalled = run(first.alarms.values(), eps(("a1", "s1", "spike", "warning", "temperature", 0, 10, 4.0)), now_s=3600, until_s=30)
    assert (ids(stalled), stalled.alarms) == ([], {})


def test_an_episode_split_at_midnight_or_by_a_gap_joins_the_open_alarm():
    first = run([], eps(("a1", "s1", "flatline", "critical", "temperature", 0, 100, 1.0)), now_s=100, until_s=100)
    cont = run(
        first.alarms.values(),
        eps(("a1", "s1", "flatline", "critical", "temperature", 0, 100, 1.0), ("a2", "s1", "flatline", "critical", "temperature", 350, 400, 2.0)),
        now_s=400, until_s=400,
    )  # fmt: skip
    assert ids(cont) == []
    assert cont.alarms["a1"].anomaly_ids == ("a1", "a2")
    assert cont.alarms["a1"].last_seen_us == T0 + 400 * US
    # a new episode after the alarm cleared is a new alarm
    cleared = run(cont.alarms.values(), NONE, now_s=800, until_s=800)
    assert ids(cleared) == ["a1:cleared"]
    again = run(cleared.alarms.values(), eps(("a3", "s1", "flatline", "critical", "temperature", 900, 960, 1.0)), now_s=960, until_s=960)
    assert ids(again) == ["a3:opened"]


def test_a_different_metric_or_type_is_a_different_alarm():
    ev = run(
        [],
        eps(
            ("a1", "s1", "sensor_fault", "critical", "temperature", 0, 1, 1.0),
            ("a2", "s1", "sensor_fault", "critical", "humidity", 0, 1, 1.0),
            ("a3", "s1", "spike", "warning", "temperature", 0, 1, 3.5),
        ),
        now_s=30, until_s=30,
    )  # fmt: skip
    assert ids(ev) == ["a1:opened", "a2:opened", "a3:opened"]


@pytest.mark.parametrize(
    "policy, expected",
    [
        (P, ["a1:opened", "a2:opened", "a3:opened"]),
        (dataclasses.replace(P, types=("spike",)), ["a1:opened", "a2:opened"]),
        (dataclasses.replace(P, min_severity="critical"), ["a2:opened", "a3:opened"]),
        (dataclasses.replace(P, types=("spike",), min_severity="critical"), ["a2:opened"]),
    ],
)
def test_policy_filters_types_and_severities(policy, expected):
    e = eps(
        ("a1", "s1", "spike", "warning", "temperature", 0, 1, 3.5),
        ("a2", "s2", "spike", "critical", "temperature", 0, 1, 6.0),
        ("a3", "s3", "flatline", "critical", "temperature", 0, 1, 1.0),
    )
    assert ids(run([], e, now_s=30, until_s=30, policy=policy)) == expected


def test_history_that_ended_long_ago_opens_nothing():
    # a fresh alert store over a lake with yesterday's episodes: no flood
    e = eps(("old", "s1", "spike", "critical", "temperature", -7200, -7190, 9.0))
    assert ids(run([], e, now_s=30, until_s=30)) == []


@pytest.mark.parametrize(
    "repeat_s, now_steps, expected",
    [
        (0, [600, 1200], []),
        (600, [599, 600, 1199, 1200], ["a1:repeat:1", "a1:repeat:2"]),
    ],
)
def test_repeat_interval_re_notifies_an_active_alarm(repeat_s, now_steps, expected):
    policy = dataclasses.replace(P, repeat_interval_s=repeat_s, clear_after_s=10_000)
    e = eps(("a1", "s1", "drift", "warning", "temperature", 0, 10, 3.0))
    state = run([], e, now_s=0, until_s=10, policy=policy).alarms
    sent = []
    for now in now_steps:
        ev = run(state.values(), e, now_s=now, until_s=10, policy=policy)
        state = {**state, **ev.alarms}
        sent += ids(ev)
    assert sent == expected


def test_acknowledged_alarms_do_not_repeat_and_a_hand_cleared_one_stays_cleared():
    policy = dataclasses.replace(P, repeat_interval_s=60)
    e = eps(("a1", "s1", "drift", "warning", "temperature", 0, 10, 3.0))
    a = run([], e, now_s=10, until_s=10, policy=policy).alarms["a1"]
    acked = acknowledge(a, T0 + 20 * US)
    assert ids(run([acked], e, now_s=200, until_s=20, policy=policy)) == []
    cleared, note = clear_by_hand(acked, T0 + 30 * US, by="ops")
    assert (cleared.status, cleared.clear_reason, note.notification_id) == ("cleared", "cleared by hand by ops", "a1:cleared")
    grown = run([cleared], eps(("a1", "s1", "drift", "critical", "temperature", 0, 90, 5.0)), now_s=90, until_s=90, policy=policy)
    assert ids(grown) == []
    assert (grown.alarms["a1"].status, grown.alarms["a1"].last_seen_us) == ("cleared", T0 + 90 * US)
    with pytest.raises(ValueError, match="alarm a1 is already cleared"):
        clear_by_hand(cleared, T0)
    with pytest.raises(ValueError, match="alarm a1 is cleared; only an active alarm can be acknowledged"):
        acknowledge(cleared, T0)


def test_deadman_for_a_sensor_that_went_quiet_and_came_back():
    policy = dataclasses.replace(P, sensor_silence_s=600)
    ev = run([], NONE, now_s=1100, until_s=1000, policy=policy, last_reading={"s2": T0 + 401 * US})
    assert ids(ev) == []
    ev = run([], NONE, now_s=1100, until_s=1000, policy=policy, last_reading={"s1": T0 + 1000 * US, "s2": T0 + 400 * US})
    assert ids(ev) == [f"nodata-s2-{T0 + 400 * US}:opened"]
    a = ev.alarms[f"nodata-s2-{T0 + 400 * US}"]
    assert (a.alarm_type, a.severity, a.message, a.value) == ("no_data", "critical", "no reading from s2 for 600 s", 600.0)
    still = run(ev.alarms.values(), NONE, now_s=1200, until_s=1200, policy=policy, last_reading={"s2": T0 + 400 * US})
    assert ids(still) == []
    back = run(ev.alarms.values(), NONE, now_s=1300, until_s=1300, policy=policy, last_reading={"s2": T0 + 1290 * US})
    assert ids(back) == [f"nodata-s2-{T0 + 400 * US}:cleared"]
    assert back.alarms[f"nodata-s2-{T0 + 400 * US}"].clear_reason == "data resumed"


def test_deadman_for_the_pipeline():
    policy = dataclasses.replace(P, pipeline_silence_s=300)
    assert ids(run([], NONE, now_s=299, until_s=0, policy=policy, last_batch_s=0)) == []
    ev = run([], NONE, now_s=300, until_s=0, policy=policy, last_batch_s=0)
    assert ids(ev) == [f"pipeline-{T0}:opened"]
    assert ev.alarms[f"pipeline-{T0}"].message == "no micro-batch committed for 300 s"
    assert ids(run(ev.alarms.values(), NONE, now_s=900, until_s=0, policy=policy, last_batch_s=0)) == []
    resumed = run(ev.alarms.values(), NONE, now_s=930, until_s=900, policy=policy, last_batch_s=920)
    assert ids(resumed) == [f"pipeline-{T0}:cleared"]
    # never a batch at all: nothing to judge
    assert ids(run([], NONE, now_s=10_000, until_s=0, policy=policy, last_batch_s=None)) == []


def test_nothing_before_detection_has_run():
    ev = evaluate([], eps(("a1", "s1", "spike", "warning", "temperature", 0, 10, 4.0)), {}, now_us=T0, data_until_us=None,
                  last_batch_us=None, policy=P)  # fmt: skip
    assert (ev.alarms, ev.notifications) == ({}, [])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"types": ("spikes",)}, "alarm type 'spikes' is not known; expected some of spike, "),
        ({"min_severity": "info"}, "min_severity='info' is invalid; expected one of warning, critical"),
        ({"clear_after_s": 0}, "clear_after_s=0 is invalid; expected an integer > 0"),
        ({"repeat_interval_s": -1}, r"repeat_interval_s=-1 is invalid; expected an integer >= 0 \(0 turns it off\)"),
    ],
)
def test_policy_validates_itself(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AlarmPolicy(**kwargs)


def test_order_of_episodes_does_not_matter():
    rows = [
        ("a1", "s1", "spike", "warning", "temperature", 0, 1, 3.5),
        ("a2", "s2", "flatline", "critical", "temperature", 5, 50, 1.0),
        ("a3", "s1", "spike", "critical", "humidity", 3, 4, 6.0),
    ]
    one = run([], eps(*rows), now_s=60, until_s=60)
    two = run([], eps(*reversed(rows)), now_s=60, until_s=60)
    assert ids(one) == ids(two) == ["a1:opened", "a3:opened", "a2:opened"]
    assert one.alarms == two.alarms
    assert isinstance(one.alarms["a1"], Alarm)


def test_a_deadman_alarm_cleared_by_hand_stays_cleared_until_the_next_silence():
    policy = dataclasses.replace(P, sensor_silence_s=600, pipeline_silence_s=300)
    ev = run([], NONE, now_s=1000, until_s=1000, policy=policy, last_reading={"s2": T0 + 400 * US}, last_batch_s=600)
    assert ids(ev) == [f"nodata-s2-{T0 + 400 * US}:opened", f"pipeline-{T0 + 600 * US}:opened"]
    cleared = [clear_by_hand(a, T0 + 1010 * US)[0] for a in ev.alarms.values()]
    later = run(cleared, NONE, now_s=2000, until_s=2000, policy=policy, last_reading={"s2": T0 + 400 * US}, last_batch_s=600)
    assert (ids(later), later.alarms) == ([], {})
    # it reports, then goes quiet again: a new silence, a new alarm
    again = run(cleared, NONE, now_s=3000, until_s=3000, policy=policy, last_reading={"s2": T0 + 2100 * US}, last_batch_s=2990)
    assert ids(again) == [f"nodata-s2-{T0 + 2100 * US}:opened"]
