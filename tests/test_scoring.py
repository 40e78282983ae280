"""Scoring anomalies against fault labels: matching, recall, precision, delay, false alerts."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from iot_platform.core.schemas import ANOMALIES, FAULT_LABELS, FLEET_ID
from iot_platform.core.scoring import (
    ANOMALY_TO_FAULT,
    FAULT_TO_ANOMALY,
    QUALITY,
    ScoringParams,
    false_alerts_per_sensor_day,
    match,
    quality_markdown,
    score_detection,
)
from iot_platform.core.simulator import day_start_us

D0 = day_start_us(dt.date(2024, 1, 3))
US = 1_000_000
START, END = D0, D0 + 86_400 * US


def at(seconds: float) -> dt.datetime:
    return dt.datetime(2024, 1, 3, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=seconds)


def labels(rows) -> pa.Table:
    """(label_id, sensor, fault_type, start s, end s) rows."""
    return pa.Table.from_pylist(
        [dict(label_id=i, sensor_id=s, fault_type=f, metric=None, start_ts=at(a), end_ts=at(b), magnitude=1.0,
              n_readings=1) for i, s, f, a, b in rows],  # fmt: skip
        schema=FAULT_LABELS,
    )


def anomalies(rows) -> pa.Table:
    """(anomaly_id, sensor, anomaly_type, start s, end s) rows."""
    return pa.Table.from_pylist(
        [dict(anomaly_id=i, sensor_id=s, anomaly_type=t, severity="warning", metric=None, start_ts=at(a),
              end_ts=at(b), value=1.0, threshold=1.0, score=1.0, n_points=1, systemic_id=None, message="")
         for i, s, t, a, b in rows],  # fmt: skip
        schema=ANOMALIES,
    )


def by_fault(table: pa.Table) -> dict[str, dict]:
    return {r["fault_type"]: r for r in table.to_pylist()}


def test_the_mapping_from_fault_types_to_anomaly_types():
    assert FAULT_TO_ANOMALY["outage"] == ("high_missing_rate", "silent_sensor")
    assert ANOMALY_TO_FAULT == {"spike": "spike", "sensor_fault": "sensor_fault", "flatline": "flatline",
                                "high_vibration": "high_vibration", "low_battery": "low_battery",
                                "high_missing_rate": "outage", "silent_sensor": "outage", "drift": "drift"}  # fmt: skip


def test_recall_precision_and_median_delay_per_fault_type():
    lab = labels(
        [
            ("l1", "a", "spike", 100, 101),
            ("l2", "a", "spike", 500, 502),
            ("l3", "b", "spike", 900, 901),  # missed
            ("l4", "a", "outage", 1000, 1300),
            ("l5", "a", "duplicates", 0, 86_400),  # not a detector's fault: ignored
        ]
    )
    an = anomalies(
        [
            ("x1", "a", "spike", 100, 100),  # delay 0
            ("x2", "a", "spike", 501, 501),  # delay 1 s
            ("x3", "a", "spike", 700, 700),  # false
            ("x4", "b", "spike", 100, 101),  # right time, wrong sensor: false
            ("x5", "a", "high_missing_rate", 1060, 1120),  # outage seen by the missing rate (delay 60 s) ...
            ("x6", "a", "silent_sensor", 1080, 1260),  # ... and by silence
            ("x7", FLEET_ID, "systemic", 1060, 1100),  # fleet-wide: not a sensor's alert
        ]
    )
    q = by_fault(score_detection(an, lab, start=START, end=END))
    assert q["spike"] == dict(fault_type="spike", events=3, detected=2, recall=2 / 3, alerts=4, true_alerts=2,
                              precision=0.5, median_delay_s=0.5)  # fmt: skip
    assert q["outage"] == dict(fault_type="outage", events=1, detected=1, recall=1.0, alerts=2, true_alerts=2,
                               precision=1.0, median_delay_s=60.0)  # fmt: skip
    assert q["drift"] == dict(fault_type="drift", events=0, detected=0, recall=None, alerts=0, true_alerts=0,
                              precision=None, median_delay_s=None)  # fmt: skip
    assert score_detection(an, lab, start=START, end=END).schema == QUALITY


def test_window_alerts_after_the_label_match_within_the_tolerance():
    lab = labels([("l1", "a", "high_vibration", 100, 200)])
    late = anomalies([("x1", "a", "high_vibration", 700, 760)])  # 500 s after the end
    assert by_fault(score_detection(late, lab, start=START, end=END))["high_vibration"]["detected"] == 1
    strict = ScoringParams(tolerance_s=300)
    assert by_fault(score_detection(late, lab, start=START, end=END, params=strict))["high_vibration"]["detected"] == 0


def test_events_overlapping_the_period_count_once_and_delay_starts_at_the_period():
    # a drift labelled on two days (the simulator repeats a label on every day it touches)
    lab = labels([("d1", "a", "drift", -3600, 7200), ("d1", "a", "drift", -3600, 7200), ("d0", "a", "drift", -9000, -8000)])
    an = anomalies([("x1", "a", "drift", 1800, 5000), ("x2", "a", "drift", 90_000, 90_060)])
    q = by_fault(score_detection(an, lab, start=START, end=END))["drift"]
    assert (q["events"], q["detected"], q["median_delay_s"], q["alerts"]) == (1, 1, 1800.0, 1)


def test_an_event_at_the_end_of_the_period_may_be_detected_just_after_it():
    lab = labels([("d1", "a", "drift", 86_000, 100_000)])
    an = anomalies([("x1", "a", "drift", 90_000, 95_000)])  # the next morning: matched, not counted as an alert
    q = by_fault(score_detection(an, lab, start=START, end=END))["drift"]
    assert (q["events"], q["detected"], q["median_delay_s"], q["alerts"], q["precision"]) == (1, 1, 4000.0, 0, None)


def test_match_lists_every_matching_pair():
    lab = labels([("l1", "a", "outage", 1000, 1300)])
    an = anomalies([("x5", "a", "high_missing_rate", 1060, 1120), ("x6", "a", "silent_sensor", 1080, 1260)])
    assert match(an, lab, start=START, end=END).to_dict("records") == [
        dict(anomaly_id="x5", label_id="l1", fault_type="outage", delay_s=60.0),
        dict(anomaly_id="x6", label_id="l1", fault_type="outage", delay_s=80.0),
    ]


def test_false_alerts_per_fault_free_sensor_day():
    lab = labels([("l1", "b", "spike", 100, 101), ("l2", "c", "low_battery", -86_400, 86_400 + 3600)])
    an = anomalies(
        [("x1", "a", "spike", 50, 50), ("x2", "a", "flatline", 86_450, 86_500), ("x3", "b", "spike", 3000, 3000),
         ("x4", FLEET_ID, "systemic", 10, 20)]  # fmt: skip
    )
    # two days: a is fault-free on both (2 alerts), b on the second (0 alerts), c on neither
    got = false_alerts_per_sensor_day(an, lab, sensor_ids=["a", "b", "c"], start=START, end=END + 86_400 * US)
    assert got == (2, 3, 2 / 3)


def test_markdown_table():
    lab = labels([("l1", "a", "spike", 100, 101)])
    md = quality_markdown(score_detection(anomalies([("x1", "a", "spike", 100, 100)]), lab, start=START, end=END))
    assert md.splitlines()[2] == "| spike | 1 | 1 | 1.000 | 1 | 1 | 1.000 | 0 |"
    assert md.splitlines()[3] == "| sensor_fault | 0 | 0 | n/a | 0 | 0 | n/a | n/a |"


def test_scoring_params_validate():
    with pytest.raises(ValueError, match=r"ScoringParams\.tolerance_s=-1 is invalid"):
        ScoringParams(tolerance_s=-1)
