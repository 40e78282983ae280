"""Each detector on tiny inline tables, with exact expected values."""

from __future__ import annotations

import dataclasses
import datetime as dt
import doctest
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from iot_platform.core.detectors import (
    BASELINE,
    POINTS,
    DetectionParams,
    DriftParams,
    EpisodeParams,
    FlatlineParams,
    SensorFaultParams,
    SilenceParams,
    SpikeParams,
    SystemicParams,
    ThresholdParams,
    drift_baseline,
    episodes,
    to_episodes,
)
from iot_platform.core.detectors import (
    drift,
    flatline,
    history,
    multivariate,
    sensor_fault,
    silence,
    spike,
    systemic,
    thresholds,
)
from iot_platform.core.detectors.episodes import anomaly_id
from iot_platform.core.detectors.inputs import WindowFrame
from iot_platform.core.schemas import ANOMALIES, FLEET_ID, READINGS, TS_TYPE, WINDOW_STATS, conform
from iot_platform.core.simulator import day_start_us
from iot_platform.core.detectors.points import concat_points
from iot_platform.core.detectors.params import HistoryParams, MultivariateParams
from iot_platform.core.registry import UNKNOWN, MetricSpec, SensorRegistry, SensorSpec, platform_registry
from iot_platform.core.windows import US, WindowParams, compute_window_stats

T0 = day_start_us(dt.date(2024, 1, 3))


def at(seconds: float) -> dt.datetime:
    return dt.datetime(2024, 1, 3, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=seconds)


def readings(rows, columns=("sensor_id", "ts", "temperature")) -> pa.Table:
    data = {c: [r[i] for r in rows] for i, c in enumerate(columns)}
    data["ts"] = pa.array([T0 + round(t * US) for t in data["ts"]], pa.int64()).cast(TS_TYPE)
    return conform(pa.table(data), READINGS)


def window_stats(rows: list[dict]) -> pa.Table:
    """WINDOW_STATS rows given as dicts with ``end`` (seconds after T0) and any statistics."""
    out = []
    for r in rows:
        r = dict(r)
        end = r.pop("end")
        length = r.pop("length", 300)
        out.append({"sensor_id": r.pop("sensor_id", "s1"), "window_start": at(end - length), "window_end": at(end),
                    "n_readings": r.pop("n", 300), **r})  # fmt: skip
    return conform(pa.Table.from_pylist(out), WINDOW_STATS) if out else WINDOW_STATS.empty_table()


def cols(table: pa.Table, *names: str) -> list[tuple]:
    return list(zip(*(table.column(n).to_pylist() for n in names)))


# -- sensor_fault ------------------------------------------------------------------------
def test_sensor_fault_reports_impossible_values_per_metric_and_ignores_nan():
    r = readings(
        [("s1", 0, 21.0, 50.0), ("s1", 1, 500.0, 50.0), ("s1", 2, float("nan"), None), ("s1", 3, -127.0, 150.0),
         ("s1", 4, 85.0, 100.0)],  # fmt: skip
        ("sensor_id", "ts", "temperature", "humidity"),
    )
    pts = sensor_fault.detect(r)
    assert pts.schema == POINTS
    assert cols(pts, "ts", "metric", "severity", "value", "threshold", "score") == [
        (at(3), "humidity", "critical", 150.0, 100.0, 50.0),
        (at(1), "temperature", "critical", 500.0, 85.0, 415.0),
        (at(3), "temperature", "critical", -127.0, -40.0, 87.0),
    ]
    assert pts.column("message").to_pylist()[1] == "temperature 500 is outside the valid range [-40, 85]: broken sensor"


def test_sensor_fault_checks_only_the_chosen_metrics_and_the_emit_range():
    r = readings([("s1", 0, 500.0, 150.0), ("s1", 10, 500.0, 150.0)], ("sensor_id", "ts", "temperature", "humidity"))
    pts = sensor_fault.detect(r, SensorFaultParams(metrics=("humidity",)), emit_start=T0 + 5 * US, emit_end=T0 + 20 * US)
    assert cols(pts, "ts", "metric") == [(at(10), "humidity")]


# -- spike -----------------------------------------------------------------------------------
def _wiggle(t0: int, t1: int, sensor: str = "s1") -> list[tuple]:
    """1 Hz readings alternating 20.0 / 20.25: pane mean 20.125, successive differences 0.25."""
    return [(sensor, t, 20.0 if t % 2 == 0 else 20.25) for t in range(t0, t1)]


Z1HZ = 5.7058841  # the warning z at 1 Hz: Gaussian noise exceeds it 0.001 times a day (SpikeParams.warning_at)


def test_spike_exact_robust_z_against_the_trailing_window():
    rows = _wiggle(0, 600)
    rows[400] = ("s1", 400, 30.0)
    pts = spike.detect(readings(rows))
    # location 20.125 (median of the five previous pane means); noise sd 0.25 * sqrt(pi) / 2 = 0.22, floored at the
    # resolution 0.25 (every step between readings is 0.25)
    assert cols(pts, "ts", "anomaly_type", "severity", "value", "score") == [(at(400), "spike", "critical", 30.0, 39.5)]
    assert cols(pts, "threshold") == [(pytest.approx(20.125 + Z1HZ * 0.25),)]
    assert pts.column("message").to_pylist() == [
        "temperature 30 is 39.5 robust sd from the trailing level 20.125 (sd 0.25, alert above 5.7)"
    ]


def test_spike_threshold_follows_the_sample_rate():
    z = SpikeParams().warning_at(np.array([1, 300, 3600]) * US)
    assert [round(v, 2) for v in z] == [5.71, 4.64, 4.1]
    assert SpikeParams(false_alerts_per_day=100.0).warning_at(np.array([3600 * US])).tolist() == [3.0]  # warning_z


def test_spike_warning_between_the_two_thresholds_and_nothing_below():
    rows = _wiggle(0, 600)
    rows[400] = ("s1", 400, 20.125 + 6 * 0.25)  # z = 6: warning (critical above 5.7 * 5 / 3 = 9.5)
    rows[500] = ("s1", 500, 20.125 + 5.5 * 0.25)  # z = 5.5: nothing
    pts = spike.detect(readings(rows))
    assert cols(pts, "ts", "severity", "score") == [(at(400), "warning", 6.0)]


def test_spike_scale_is_the_sensors_own_noise_or_its_resolution():
    rows = [("s1", t, (20.0, 22.0, 21.0, 23.0)[t % 4]) for t in range(0, 600)]  # mean |difference| 2: sd 1.77
    rows[400] = ("s1", 400, 40.0)
    sd = 2 * math.sqrt(math.pi) / 2
    assert cols(spike.detect(readings(rows)), "ts", "score") == [(at(400), pytest.approx((40.0 - 21.5) / sd))]
    # a metric counted in steps of 2 with differences of 2: the scale is the resolution 2, not 1.77
    rows = [("s1", t, 20.0 if t % 2 == 0 else 22.0) for t in range(0, 600)]
    rows[400] = ("s1", 400, 40.0)
    assert cols(spike.detect(readings(rows)), "ts", "score") == [(at(400), (40.0 - 21.0) / 2)]
    # a configured floor in the metric's units
    p = SpikeParams(floors=(("temperature", 3.0),))
    assert cols(spike.detect(readings(rows), p), "score") == [((40.0 - 21.0) / 3,)]


def test_spike_on_every_metric_in_its_own_units():
    # a temperature within 0.002 and a CPU load between 0.07 and 0.09: no unit constant blinds the detector
    rows = [("pump", t, 1.2 + 0.002 * (t % 2), 0.07 + 0.01 * (t % 3)) for t in range(0, 600)]
    rows[450] = ("pump", 450, 1.25, 0.07)
    rows[500] = ("pump", 500, 1.2, 0.9)
    r = readings(rows, ("sensor_id", "ts", "temperature", "humidity"))
    pts = spike.detect(r)
    assert cols(pts, "ts", "metric", "value") == [(at(500), "humidity", 0.9), (at(450), "temperature", 1.25)]


def test_a_lasting_deviation_is_a_level_shift_after_max_spike_readings():
    rows = _wiggle(0, 600) + [("s1", t, 25.0 + (t % 2) * 0.25) for t in range(600, 606)]
    pts = spike.detect(readings(rows))
    assert cols(pts, "ts", "anomaly_type") == [(at(t), "level_shift") for t in (603, 604, 605)] + [
        (at(t), "spike") for t in (600, 601, 602)
    ]


def test_variance_change_at_the_end_of_each_noisier_pane_until_the_window_learns_it():
    rows = _wiggle(0, 600) + [("s1", t, 20.0 if t % 2 == 0 else 21.0) for t in range(600, 1200)]
    pts = spike.detect(readings(rows))
    # pane sd 1.0 * sqrt(pi) / 2 = 0.886 against the window's 0.25 (its resolution): 3.54 > 3, until three of the
    # window's five panes are the noisier ones (the first pane's sd also holds the step 20.25 -> 20 at 600 s)
    sd = math.sqrt(math.pi) / 2
    assert cols(pts, "ts", "anomaly_type", "severity", "threshold") == [
        (at(t), "variance_change", "warning", 0.75) for t in (660, 720, 780)
    ]
    assert cols(pts, "score")[1:] == [(pytest.approx(sd / 0.25),)] * 2
    assert pts.column("message").to_pylist()[1] == "temperature noise sd 0.8862 is 3.5 times the trailing window's 0.25"


def test_values_above_a_configured_alarm_are_not_spikes():
    rows = [("s1", t, 0.3 + 0.01 * (t % 2)) for t in range(0, 600)] + [("s1", t, 4.0) for t in range(600, 700)]
    rows += [("s1", t, 0.3 + 0.01 * (t % 2)) for t in range(700, 1000)]
    r = readings(rows, ("sensor_id", "ts", "vibration"))
    assert set(spike.detect(r).column("anomaly_type").to_pylist()) == {"spike", "level_shift"}
    # the simulator's instruments alarm above 2 g: the episode is high_vibration's, neither spike nor shift
    assert spike.detect(r, registry=SensorRegistry()).num_rows == 0


def test_spike_warm_up_at_start_and_after_a_gap():
    rows = _wiggle(0, 600) + _wiggle(1200, 1800)
    rows[20] = ("s1", 20, 40.0)  # first minute: no trailing window yet
    rows[600 + 10] = ("s1", 1210, 40.0)  # right after a 10-minute gap
    rows[600 + 400] = ("s1", 1600, 40.0)  # five full minutes after the gap: evaluated
    pts = spike.detect(readings(rows))
    assert cols(pts, "ts") == [(at(1600),)]


def test_spike_does_not_flag_nan_or_broken_values_and_does_not_learn_from_them():
    rows = _wiggle(0, 600)
    rows[400] = ("s1", 400, float("nan"))
    rows[401] = ("s1", 401, 500.0)  # a sensor fault, not a spike
    rows[460] = ("s1", 460, 30.0)
    pts = spike.detect(readings(rows))
    assert cols(pts, "ts", "score") == [(at(460), 39.5)]


def test_spike_ignores_the_recovery_of_a_stuck_sensor():
    rows = [("s1", t, 20.0) for t in range(0, 600)] + [("s1", t, 23.0 + (t % 2) * 0.25) for t in range(600, 700)]
    assert spike.detect(readings(rows)).num_rows == 0


def test_spike_validates_its_parameters():
    with pytest.raises(ValueError, match=r"SpikeParams\.critical_z=2.0 is invalid"):
        SpikeParams(warning_z=3.0, critical_z=2.0)
    with pytest.raises(ValueError, match=r"SpikeParams\.metrics=\('rpm',\) is invalid; expected a tuple of temperature"):
        SpikeParams(metrics=("rpm",))
    with pytest.raises(ValueError, match=r"SpikeParams\.floors=\(\('temperature', -1\),\) is invalid"):
        SpikeParams(floors=(("temperature", -1),))


# -- history: slow sensors against their own trailing readings -----------------------------------------------
def _hourly(values: list[float], sensor: str = "h") -> pa.Table:
    return readings([(sensor, 3600 * i, v) for i, v in enumerate(values)])


def test_history_exact_robust_z_of_an_hourly_sensor():
    vals = [20.0 + 0.5 * (i % 2) for i in range(30)]
    vals[25] = 30.0
    pts = history.detect(_hourly(vals))
    # the Theil-Sen line through the last 8 readings (four 20s, four 20.5s) is flat at 20.25; predicting each
    # earlier reading the same way errs by +-0.25 (robust sd 0.37), floored at the resolution 0.5
    assert cols(pts, "ts", "anomaly_type", "severity", "value", "score") == [
        (at(25 * 3600), "spike", "critical", 30.0, 19.5)
    ]
    assert cols(pts, "threshold") == [(pytest.approx(20.25 + 4.09803812 * 0.5),)]
    assert pts.column("message").to_pylist() == [
        "temperature 30 is 19.5 robust sd from its last 24 readings' level 20.25 (sd 0.5, alert above 4.1)"
    ]


def test_history_follows_a_ramp():
    ramp = [20.0 + 0.3 * i + 0.1 * (i % 2) for i in range(30)]  # +0.3 C an hour, steps of 0.2 and 0.4
    ramp[26] += 3.0
    # the line predicts 27.85 at hour 26 (a median of the last readings would lag 1.2 C behind)
    assert cols(history.detect(_hourly(ramp)), "ts", "value", "score") == [(at(26 * 3600), 30.8, pytest.approx(14.75))]


def test_history_warm_up_level_shift_and_fast_sensors_left_to_the_spike_detector():
    vals = [20.0 + 0.5 * (i % 2) for i in range(40)]
    vals[5] = 35.0  # only five readings before it: warm-up (min_readings 8)
    for i in range(30, 40):
        vals[i] += 10.0  # a lasting shift: three spike points, then level_shift until the line catches up
    pts = history.detect(_hourly(vals))
    assert cols(pts, "ts", "anomaly_type") == [(at(h * 3600), "level_shift") for h in (33, 34)] + [
        (at(h * 3600), "spike") for h in (30, 31, 32, 36)
    ]
    fast = readings([("f", t, 20.0 + 0.5 * (t % 2) if t != 500 else 30.0) for t in range(600)])
    assert history.detect(fast).num_rows == 0


def test_history_counts_and_sensitivity():
    counts = [float(10 + (i % 3)) for i in range(30)]  # a count cycling 10, 11, 12
    counts[28] = 20.0
    pts = history.detect(_hourly(counts))
    assert cols(pts, "ts", "value") == [(at(28 * 3600), 20.0)]
    calm = SensorRegistry(unknown=SensorSpec("*", sensitivity=1e-9))
    assert history.detect(_hourly(counts), registry=calm).num_rows == 0


def _daily_flow(seed: int) -> pa.Table:
    """Six days of a flow every 30 min with a daily demand cycle (60 around 120, trough at 07:00) and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(6 * 48) * 1800.0
    x = 120 + 60 * np.cos(2 * np.pi * (t / 86_400 - 19 / 24)) + rng.normal(0, 4, len(t))
    return readings([("flow", float(a), float(v)) for a, v in zip(t, x)], ("sensor_id", "ts", "humidity"))


def test_history_scale_from_a_whole_day_of_a_30_minute_cycle():
    # a line through the last 8 readings overshoots at a cycle's turning points; half a day of its errors (24)
    # sees one kind of turn and too few errors: five false alerts on this quiet series; a whole day (48): none
    data = SensorRegistry(unknown=UNKNOWN)
    assert history.detect(_daily_flow(2), HistoryParams(max_readings=24), registry=data).num_rows == 5
    assert history.detect(_daily_flow(2), registry=data).num_rows == 0


def test_history_does_not_learn_from_a_stuck_run():
    rng = np.random.default_rng(1)
    vals = [*np.round(20 + rng.normal(0, 0.2, 40), 2), *[25.0] * 12, *np.round(20 + rng.normal(0, 0.2, 20), 2)]
    hours = lambda p: [int((t - at(0)).total_seconds()) // 3600 for (t,) in cols(p, "ts")]  # noqa: E731
    # the jump to the stuck value alerts (40-44); past its 8th reading the run is the flatline detector's, and
    # the recovery (52-56) is not compared with the stuck value
    assert sorted(hours(history.detect(_hourly(vals)))) == [24, 25, 40, 41, 42, 43, 44]
    assert sorted(hours(history.detect(_hourly(vals), HistoryParams(stuck_readings=1000)))) == [
        24, 25, 40, 41, 42, 43, 44, 52, 53, 54, 55, 56
    ]


# -- flatline and thresholds -------------------------------------------------------------------------
def _one_hz(values: list[float], sensor: str = "f", metric: str = "humidity") -> pa.Table:
    return readings([(sensor, i, v) for i, v in enumerate(values)], ("sensor_id", "ts", metric))


def test_flatline_on_any_metric_a_run_of_eight_identical_readings_of_a_continuous_metric():
    # distinct values (a continuous metric), then readings 100..139 stuck on one value, then distinct again
    vals = [50.0 + 0.01 * i for i in range(100)] + [7.0] * 40 + [60.0 + 0.01 * i for i in range(60)]
    pts = flatline.detect(_one_hz(vals), registry=SensorRegistry(unknown=UNKNOWN))
    # first seen at the 8th stuck reading (107 s), then once at the first reading of each later minute (120 s)
    assert cols(pts, "ts", "anomaly_type", "severity", "metric", "value", "threshold", "score") == [
        (at(107), "flatline", "critical", "humidity", 7.0, 8.0, 1.0),
        (at(120), "flatline", "critical", "humidity", 7.0, 8.0, 21 / 8),
    ]
    # seven identical readings are not stuck; NaN and out-of-range values start no run
    short = [50.0 + 0.01 * i for i in range(100)] + [7.0] * 7 + [60.0 + 0.01 * i for i in range(60)]
    assert flatline.detect(_one_hz(short), registry=SensorRegistry(unknown=UNKNOWN)).num_rows == 0
    nan = [50.0 + 0.01 * i for i in range(100)] + [float("nan")] * 40 + [60.0 + 0.01 * i for i in range(60)]
    assert flatline.detect(_one_hz(nan), registry=SensorRegistry(unknown=UNKNOWN)).num_rows == 0


def test_flatline_learns_how_often_a_quantized_metric_repeats():
    # a count that is 0 four times out of five (runs of four zeros), then 30 zeros, then 60 zeros (with the
    # pattern's last four: runs of 34 and 64 zeros from reading 396)
    unknown = SensorRegistry(unknown=UNKNOWN)
    pattern = [1.0 if i % 5 == 0 else 0.0 for i in range(400)]
    assert flatline.detect(_one_hz(pattern + [0.0] * 30 + pattern[:50]), registry=unknown).num_rows == 0
    pts = flatline.detect(_one_hz(pattern + [0.0] * 60 + pattern[:50]), registry=unknown)
    # repeats go on 2 times in 3 in the reference (the run's own readings left out): a run of 46 happens by
    # chance less than once in 1,000 days at 1 Hz (1 + log(0.001 / 86400) / log(c), c = 0.66 with the shrinkage)
    assert cols(pts, "ts", "value", "threshold") == [(at(396 + 45), 0.0, 46.0)]
    # the same 30 zeros on a continuous metric are stuck
    cont = [50.0 + 0.01 * i for i in range(400)] + [0.0] * 30 + [60.0 + 0.01 * i for i in range(50)]
    assert cols(flatline.detect(_one_hz(cont), registry=unknown), "ts", "threshold") == [(at(407), 8.0), (at(420), 8.0)]


def test_flatline_on_an_hourly_sensor_and_sensitivity():
    vals = [20.0 + 0.1 * (i % 7) + 0.01 * i for i in range(30)] + [21.0] * 10
    pts = flatline.detect(_hourly(vals))
    assert cols(pts, "ts", "metric", "threshold", "score") == [(at(37 * 3600), "temperature", 8.0, 1.0),
                                                                (at(38 * 3600), "temperature", 8.0, 9 / 8),
                                                                (at(39 * 3600), "temperature", 8.0, 10 / 8)]  # fmt: skip


def test_thresholds_exact_limits_warm_up_and_missing_rate_exempt():
    rows = (
        [
            dict(end=60, vibration_max=2.0, battery_level=20.0, missing_rate=0.1),  # at the limits: nothing
            dict(end=120, vibration_max=2.5, battery_level=19.9, missing_rate=0.2),
            dict(end=180, vibration_max=5.5, battery_level=4.0),
            dict(end=240, vibration_max=9.0, battery_level=1.0, missing_rate=0.95, n=15),  # warm-up
            dict(end=300, vibration_max=None, battery_level=float("nan")),
        ]
    )
    ws = window_stats([dict(r, length=60) for r in rows])  # tumbling: each window starts where one ended
    pts = thresholds.detect(ws)
    assert cols(pts, "anomaly_type", "ts", "severity", "value", "threshold") == [
        ("high_missing_rate", at(120), "warning", 0.2, 0.1),
        ("high_missing_rate", at(240), "warning", 0.95, 0.1),
        ("high_vibration", at(120), "warning", 2.5, 2.0),
        ("high_vibration", at(180), "critical", 5.5, 5.0),
        ("low_battery", at(120), "warning", 19.9, 20.0),
        ("low_battery", at(180), "critical", 4.0, 5.0),
    ]
    assert cols(pts, "score")[2:4] == [(1.25,), (2.75,)]


def test_missing_rate_waits_for_the_sensor_to_start_and_for_two_missing_readings():
    ws = window_stats(
        [
            dict(end=300, n=1, missing_rate=299 / 300),  # the sensor's first window: it started at 299 s
            dict(end=360, n=61, missing_rate=239 / 300),  # began before the first window ended: still warming up
            dict(end=600, n=240, missing_rate=0.2),  # began at 300, after the first window: judged
            dict(sensor_id="h", end=14_400, length=14_400, n=3, missing_rate=0.25),  # first hourly window
            dict(sensor_id="h", end=28_800, length=14_400, n=3, missing_rate=0.25),  # 1 of 4 missing: a drop
            dict(sensor_id="h", end=43_200, length=14_400, n=2, missing_rate=0.5),  # 2 of 4 missing
        ]
    )
    pts = thresholds.detect(ws)
    assert cols(pts, "sensor_id", "ts", "value") == [("h", at(43_200), 0.5), ("s1", at(600), 0.2)]
    # a sensor known from previous days is judged from its first window of the day
    wf = WindowFrame.from_table(ws, None, WindowParams())
    known = thresholds.detect_frame(wf, ThresholdParams(), WindowParams(), -(2**62), 2**62, np.array([True, True]))
    assert cols(known, "sensor_id", "ts") == [("h", at(43_200)), ("s1", at(300)), ("s1", at(360)), ("s1", at(600))]


def test_thresholds_validate_their_parameters():
    with pytest.raises(ValueError, match=r"ThresholdParams\.battery_critical=30 is invalid"):
        ThresholdParams(battery_critical=30)


# -- drift -------------------------------------------------------------------------------------
def baseline(rows: list[tuple], metric: str = "temperature") -> pa.Table:
    """(sensor, slot_s, median, n_days, scale) rows; the sensor's windows usually spread 0.2 C."""
    return pa.Table.from_pylist(
        [dict(sensor_id=s, metric=metric, slot_s=k, median=m, n_days=n, scale=sc, spread=0.2)
         for s, k, m, n, sc in rows],
        schema=BASELINE,
    )


def _drift_windows(means: list[float], start_s: int = 60, sensor="s1") -> pa.Table:
    return window_stats(
        [dict(sensor_id=sensor, end=start_s + 60 * i, temp_mean=m, temp_std=0.2) for i, m in enumerate(means)]
    )


def _flat_baseline(n_days=7, scale=1.0, sensor="s1"):
    return baseline([(sensor, k * 60, 20.0, n_days, scale) for k in range(1440)])


def test_drift_cusum_alerts_once_the_sum_passes_h():
    # z = 5 every window: S grows by z - k = 2.5; S > h = 20 from the 9th window on
    pts = drift.detect(_drift_windows([25.0] * 12), _flat_baseline())
    assert cols(pts, "ts", "severity", "value", "threshold", "score") == [
        (at(60 * (i + 1)), "warning", 25.0, 22.5, 5.0) for i in range(8, 12)
    ]
    assert pts.column("message").to_pylist()[0] == (
        "temperature mean 25 is 5 sd from its usual 20 for this time of day (CUSUM 22.5 > 20)"
    )


def test_drift_is_two_sided():
    pts = drift.detect(_drift_windows([15.0] * 10), _flat_baseline())
    assert cols(pts, "ts", "threshold") == [(at(540), 17.5), (at(600), 17.5)]


def test_drift_memory_bounds_the_evidence():
    # with 5 minutes of memory, S never exceeds 5 windows x 2.5 = 12.5 < 20
    pts = drift.detect(_drift_windows([25.0] * 30), _flat_baseline(), DriftParams(memory_s=300))
    assert pts.num_rows == 0


def test_drift_stops_when_the_window_is_back_near_its_baseline():
    pts = drift.detect(_drift_windows([25.0] * 12 + [21.0, 25.0]), _flat_baseline())
    # S is still above h at the 13th window but its z = 1 is below release (1.5)
    assert [t for (t,) in cols(pts, "ts")] == [at(60 * i) for i in (9, 10, 11, 12, 14)]


def test_drift_warm_up_without_enough_history_and_for_thin_or_flat_windows():
    ws = _drift_windows([25.0] * 12)
    assert drift.detect(ws, _flat_baseline(n_days=2)).num_rows == 0
    assert drift.detect(ws, None).num_rows == 0
    thin = window_stats([dict(end=60 + 60 * i, temp_mean=25.0, temp_std=0.2, n=29) for i in range(12)])
    assert drift.detect(thin, _flat_baseline()).num_rows == 0
    flat = window_stats([dict(end=60 + 60 * i, temp_mean=25.0, temp_std=0.0) for i in range(12)])
    assert drift.detect(flat, _flat_baseline()).num_rows == 0
    # spread beyond 4 x max(usual 0.2, min_scale 0.5) = 2 C: the window holds spikes, its mean is no drift
    spiky = window_stats([dict(end=60 + 60 * i, temp_mean=25.0, temp_std=2.1) for i in range(12)])
    assert drift.detect(spiky, _flat_baseline()).num_rows == 0
    assert drift.detect(spiky, _flat_baseline(), DriftParams(max_spread=4.3)).num_rows == 4


def test_drift_baseline_exact_median_days_and_robust_scale():
    prev = window_stats(
        [dict(end=60 - d * 86_400, temp_mean=m, temp_std=s) for d, m, s in ((1, 20.0, 0.2), (2, 21.0, 0.4), (3, 23.0, 0.1))]
        + [dict(end=120 - d * 86_400, temp_mean=30.0, temp_std=0.2) for d in (1, 2)]
        + [dict(end=180 - 86_400, temp_mean=99.0, temp_std=0.0)]  # a stuck window: not learned
        + [dict(sensor_id="s2", end=60 - 86_400, temp_mean=None, temp_std=None, n=3)]
    )
    b = drift_baseline(prev)
    assert b.schema == BASELINE
    # residuals of the 3-day slot: -1, 0, 2 -> MAD 1 -> 1.4826; the 2-day slot is below min_days
    # usual spread: the median temp_std of the five usable windows (0.1, 0.2, 0.2, 0.2, 0.4)
    assert cols(b, "sensor_id", "metric", "slot_s", "median", "n_days", "scale", "spread") == [
        ("s1", "temperature", 60, 21.0, 3, 1.4826, 0.2),
        ("s1", "temperature", 120, 30.0, 2, 1.4826, 0.2),
        ("s1", "temperature", 180, None, 0, 1.4826, 0.2),
        ("s2", "temperature", 60, None, 0, None, None),  # known (for the silence detector), nothing to learn
    ]


def _humidity_windows(means: list[float], start_s: int = 60) -> pa.Table:
    return window_stats([dict(end=start_s + 60 * i, humidity_mean=m, temp_mean=20.0, temp_std=0.2)
                         for i, m in enumerate(means)])  # fmt: skip


DATA = SensorRegistry(unknown=UNKNOWN)


def test_drift_on_any_metric_counts_overlapping_windows_once():
    base = baseline([("s1", k * 60, 50.0, 7, 1.0) for k in range(1440)], metric="humidity")
    # z = 10 every window; a 300 s window every 60 s adds 60 / 300 of (z - k) = 1.5: S > 20 from the 14th window
    means = [50.0 + 10 + 0.001 * i for i in range(16)]  # (not exactly equal: a stuck sensor's means are)
    pts = drift.detect(_humidity_windows(means), base, registry=DATA)
    assert cols(pts, "ts", "metric", "threshold") == [(at(60 * (i + 1)), "humidity", 52.5) for i in (13, 14, 15)]
    assert pts.column("message").to_pylist()[0] == (
        "humidity mean 60.013 is 10 sd from its usual 50 for this time of day (CUSUM 21 > 20)"
    )
    # windows whose mean equals the previous one's (a stuck sensor: the flatline's) are no evidence
    assert drift.detect(_humidity_windows([60.0] * 16), base, registry=DATA).num_rows == 0
    # a metric whose drift the registry does not follow (a barometer's weather)
    no_drift = SensorRegistry(unknown=SensorSpec("*", (("humidity", MetricSpec(drift=False)),)))
    assert drift.detect(_humidity_windows(means), base, registry=no_drift).num_rows == 0


def test_drift_baseline_of_any_metric_floored_by_its_own_day_offsets():
    # five previous days of two slots: three ordinary days, one 6 above and one 6 below the medians (50, 70)
    days = ((1, 0.0), (2, 0.1), (3, -0.1), (4, 6.0), (5, -6.0))
    rows = [dict(end=e - d * 86_400, humidity_mean=base + off, temp_mean=20.0, temp_std=0.2)
            for d, off in days for e, base in ((60, 50.0), (120, 70.0))]  # fmt: skip
    b = drift_baseline(window_stats(rows), DetectionParams(registry=DATA))
    hum = b.filter(pc.equal(b.column("metric"), "humidity"))
    # 1.4826 MAD of the window residuals is 0.148; but a day 6 off its usual is ordinary here (the second largest
    # |day offset|: one drifting day allowed for), so the scale is at least 6 / k = 2.4
    assert cols(hum, "sensor_id", "slot_s", "median", "n_days", "scale", "spread") == [
        ("s1", 60, 50.0, 5, 2.4, None), ("s1", 120, 70.0, 5, 2.4, None)
    ]
    # the simulator's instruments: temperature only (its humidity and pressure are weather, vibration has none
    # in these windows)
    assert set(drift_baseline(window_stats(rows)).column("metric").to_pylist()) == {"temperature"}


def test_drift_baseline_of_nothing_is_empty():
    assert drift_baseline(WINDOW_STATS.empty_table()).equals(BASELINE.empty_table())


# -- silence ----------------------------------------------------------------------------------
def test_silence_ticks_after_a_known_sensor_stops():
    r = readings([("s1", t, 20.0) for t in range(0, 300)])
    ws = compute_window_stats(r, emit_start=T0 - 3600 * US, emit_end=T0 + 3600 * US)
    pts = silence.detect(r, ws, None, emit_start=T0, emit_end=T0 + 600 * US)
    assert cols(pts, "ts", "severity", "value", "score") == [
        (at(w), "warning", 60.0, 60.0) for w in (360, 420, 480, 540, 600)
    ]
    assert pts.column("metric").to_pylist() == [None] * 5


def test_silence_of_a_sensor_known_only_from_history_is_critical_all_along():
    b = baseline([("gone", 60, 20.0, 7, 1.0)])
    pts = silence.detect(READINGS.empty_table(), WINDOW_STATS.empty_table(), b, emit_start=T0, emit_end=T0 + 180 * US)
    assert cols(pts, "sensor_id", "ts", "severity") == [("gone", at(w), "critical") for w in (60, 120, 180)]


def test_silence_span_follows_the_sample_interval():
    r = readings([("slow", t, 20.0) for t in range(0, 3000, 300)])  # every 5 min: silent after 5 x 300 s
    ws = compute_window_stats(r, emit_start=T0 - 86_400 * US, emit_end=T0 + 86_400 * US)
    pts = silence.detect(r, ws, None, emit_start=T0 + 3000 * US, emit_end=T0 + 4500 * US)
    # last reading at 2700 s: silent at the ticks (every 60 s) after 2700 + 1500 s
    assert cols(pts, "ts", "value") == [(at(w), 1500.0) for w in (4260, 4320, 4380, 4440, 4500)]


def test_silence_forgets_a_sensor_without_history_after_the_horizon():
    r = readings([("s1", t, 20.0) for t in range(0, 60)])
    ws = compute_window_stats(r, emit_start=T0 - 3600 * US, emit_end=T0 + 3600 * US)
    p = SilenceParams(horizon_s=3600, critical_after_s=600)
    pts = silence.detect(r, ws, None, p, emit_start=T0 + 3600 * US, emit_end=T0 + 3900 * US)
    # the last window holding a reading ends at 300 s: known while 300 s is within the last 3600 s
    assert cols(pts, "ts", "severity") == [(at(w), "critical") for w in (3660, 3720, 3780, 3840)]


# -- systemic and episodes ------------------------------------------------------------------------
def point(sensor, kind, ts, tick=None, score=1.0, severity="warning", step=1.0, metric="temperature", value=None):
    return dict(sensor_id=sensor, anomaly_type=kind, severity=severity, metric=metric, ts=at(ts),
                tick_ts=at(ts if tick is None else tick), step_s=step, value=score if value is None else value,
                threshold=0.0, score=score, message=f"{kind} {ts}")  # fmt: skip


def points(rows) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=POINTS)


def fleet(n: int, *ticks: int) -> pa.Table:
    return systemic.fleet_table(np.array([T0 + t * US for t in ticks]), np.full(len(ticks), n))


def test_systemic_when_more_than_half_of_the_fleet_alerts_in_one_tick():
    pts = points(
        [point(s, "spike", 61, tick=120) for s in ("a", "b", "c")]
        + [point("a", "spike", 62, tick=120)]  # one sensor counts once
        + [point(s, "spike", 130, tick=180) for s in ("a", "b")]  # 2 of 4: not more than half
        + [point(s, "low_battery", 240) for s in ("a", "b", "c")]  # not a counted type
    )
    out = systemic.detect(pts, fleet(4, 120, 180, 240), emit_start=T0, emit_end=T0 + 300 * US)
    assert cols(out, "sensor_id", "anomaly_type", "severity", "ts", "value", "threshold") == [
        (FLEET_ID, "systemic", "critical", at(120), 0.75, 0.5)
    ]
    assert out.column("message").to_pylist() == [
        "3 of 4 sensors of group fleet alerting at once (spike 3): a shared cause"
    ]
    assert cols(out, "metric", "step_s") == [("fleet", 60.0)]
    assert systemic.detect(pts, fleet(3, 120), SystemicParams(min_fleet=4), emit_start=T0, emit_end=T0 + 300 * US).num_rows == 0


def test_systemic_only_within_a_registry_group():
    reg = SensorRegistry(
        sensors=(SensorSpec("a*", group="hall"), SensorSpec("b*", group="yard")), unknown=SensorSpec("*")
    )
    pts = points(
        [point(s, "high_missing_rate", 3600, step=3600.0) for s in ("a1", "a2", "a3", "b1", "b2", "x1", "x2", "x3")]
    )
    f = pa.concat_tables([systemic.fleet_table(np.array([T0 + 3600 * US]), np.array([n]), np.array([g], dtype=object))
                          for g, n in (("hall", 4), ("yard", 4))])  # fmt: skip
    out = systemic.detect(pts, f, emit_start=T0, emit_end=T0 + 7200 * US, registry=reg)
    # hall: 3 of 4; yard: 2 of 4 (not more than half); x*: no group, never systemic; the hourly step is kept
    assert cols(out, "metric", "value", "step_s") == [("hall", 0.75, 3600.0)]
    ep = to_episodes(concat_points([pts, out]), dataclasses.replace(DetectionParams(), registry=reg))
    linked = {r["sensor_id"] for r in ep.to_pylist() if r["systemic_id"]}
    assert linked == {"a1", "a2", "a3"}


def test_episodes_merge_consecutive_points_and_keep_the_peak():
    pts = points(
        [point("a", "spike", t, score=s, severity=sev, value=v)
         for t, s, sev, v in ((1, 4.0, "warning", 24.0), (2, 9.0, "critical", 40.0), (4, 3.5, "warning", 23.0),
                              (10, 6.0, "critical", 30.0))]  # fmt: skip
    )
    ep = to_episodes(pts)
    assert ep.schema == ANOMALIES
    assert cols(ep, "start_ts", "end_ts", "severity", "value", "score", "n_points", "systemic_id") == [
        (at(1), at(4), "critical", 40.0, 9.0, 3, None),
        (at(10), at(10), "critical", 30.0, 6.0, 1, None),
    ]
    assert ep.column("anomaly_id").to_pylist()[0] == anomaly_id("a", "spike", "temperature", T0 + US)
    assert ep.column("message").to_pylist()[0] == "spike 2 [3 points over 3 s]"
    assert to_episodes(pts, DetectionParams(episodes=EpisodeParams(max_gap_steps=1))).num_rows == 3


def test_episodes_are_per_sensor_type_and_metric_and_ignore_row_order():
    pts = points([point("a", "spike", 1), point("b", "spike", 2), point("a", "sensor_fault", 2),
                  point("a", "sensor_fault", 3, metric="humidity")])  # fmt: skip
    ep = to_episodes(pts)
    assert cols(ep, "sensor_id", "anomaly_type", "metric") == [
        ("a", "spike", "temperature"), ("a", "sensor_fault", "temperature"), ("b", "spike", "temperature"),
        ("a", "sensor_fault", "humidity"),
    ]  # fmt: skip
    shuffled = pts.take(pa.array([3, 1, 0, 2]))
    assert to_episodes(shuffled).equals(ep)


def test_episodes_link_or_suppress_alerts_of_a_systemic_tick():
    pts = points(
        [point(FLEET_ID, "systemic", 120, step=60.0, metric="fleet"), point(FLEET_ID, "systemic", 180, step=60.0, metric="fleet")]
        + [point(s, "spike", 100, tick=120) for s in ("a", "b", "c")]
        + [point("a", "spike", 101, tick=120), point("d", "spike", 300, tick=360)]
    )
    ep = to_episodes(pts)
    sys_id = anomaly_id(FLEET_ID, "systemic", "fleet", T0 + 120 * US)  # a systemic point's metric is its group
    assert cols(ep, "sensor_id", "start_ts", "n_points", "systemic_id") == [
        ("a", at(100), 2, sys_id), ("b", at(100), 1, sys_id), ("c", at(100), 1, sys_id),
        (FLEET_ID, at(120), 2, None), ("d", at(300), 1, None),
    ]  # fmt: skip
    quiet = to_episodes(pts, DetectionParams(systemic=SystemicParams(mode="suppress")))
    assert cols(quiet, "sensor_id", "n_points") == [(FLEET_ID, 2), ("d", 1)]


def test_episodes_of_nothing_is_an_empty_anomalies_table():
    assert to_episodes(POINTS.empty_table()).equals(ANOMALIES.empty_table())


# -- parameters -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cls, kwargs, message",
    [
        (DriftParams, dict(min_days=8), r"DriftParams\.min_days=8 is invalid; expected at most history_days=7"),
        (DriftParams, dict(h=0), r"DriftParams\.h=0 is invalid; expected a number > 0"),
        (FlatlineParams, dict(min_readings=1), r"FlatlineParams\.min_readings=1 is invalid; expected an integer >= 2"),
        (FlatlineParams, dict(metrics=("co2",)), r"FlatlineParams\.metrics=\('co2',\) is invalid; expected a tuple of "),
        (SilenceParams, dict(horizon_s=60), r"SilenceParams\.horizon_s=60 is invalid; expected at least"),
        (SystemicParams, dict(mode="mute"), r"SystemicParams\.mode='mute' is invalid; expected 'link' or 'suppress'"),
        (SystemicParams, dict(types=("systemic",)), r"SystemicParams\.types="),
        (SensorFaultParams, dict(metrics=("rpm",)), r"SensorFaultParams\.metrics="),
        (EpisodeParams, dict(max_gap_steps=0.5), r"EpisodeParams\.max_gap_steps=0.5 is invalid"),
        (DetectionParams, dict(spike=DriftParams()), r"DetectionParams\.spike=.* is invalid; expected a SpikeParams"),
    ],
)
def test_parameters_validate_themselves_naming_the_field(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


def test_parameters_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DetectionParams().spike.warning_z = 1.0  # type: ignore[misc]


def test_docstring_examples():
    for module in (episodes, sensor_fault):
        assert doctest.testmod(module).failed == 0


def test_window_params_reach_the_detectors():
    params = WindowParams(min_readings=400)  # no 1 Hz window can pass this warm-up
    rows = _wiggle(0, 600)
    rows[400] = ("s1", 400, 30.0)
    assert spike.detect(readings(rows), windows=params).num_rows == 0


# -- multivariate ------------------------------------------------------------------------------------------------
def _pump(break_at: tuple[int, int] | None, drop: float = 0.08) -> pa.Table:
    """Two hours of a 1 Hz pump: flow (humidity column), pressure in bar and vibration all follow one load."""
    rng = np.random.default_rng(1)
    t = np.arange(7200)
    load = 0.5 + 0.3 * np.sin(2 * np.pi * t / 1800) + rng.normal(0, 0.01, len(t))
    flow = 10 * load + rng.normal(0, 0.1, len(t))
    press = 3.0 - 1.5 * load + rng.normal(0, 0.02, len(t))
    vib = 0.2 + 0.3 * load + rng.normal(0, 0.01, len(t))
    if break_at:
        press[break_at[0] : break_at[1]] -= drop  # pressure drops, flow does not: cavitation
    return conform(pa.table({"sensor_id": ["pump"] * len(t), "ts": pa.array(T0 + t * US).cast(TS_TYPE),
                             "humidity": flow, "pressure": press, "vibration": vib}), READINGS)  # fmt: skip


def test_multivariate_finds_a_broken_relation_and_names_the_metric():
    reg = platform_registry()  # data-driven: pressure in bar is no broken sensor
    assert multivariate.detect(_pump(None), registry=reg).num_rows == 0
    pts = multivariate.detect(_pump((5000, 5060), drop=0.4), registry=reg)
    # 0.4 bar below what the flow says for a minute; the load cycle alone moves pressure by 0.9 bar
    ts = pc.cast(pts.column("ts"), pa.int64()).to_numpy() // US - T0 // US
    assert (pts.num_rows, int(ts.min()), int(ts.max())) == (58, 5000, 5059)
    assert set(pts.column("metric").to_pylist()) == {"pressure"}
    assert pts.column("message").to_pylist()[0] == (
        "Q (off the usual relation) at 1.51 x its limit; pressure 2.2493 contributes most (usual 2.1055; "
        "model of humidity, pressure, vibration)"
    )


def test_multivariate_validates_its_parameters():
    with pytest.raises(ValueError, match=r"MultivariateParams\.min_corr=2 is invalid; expected a number >= 0 and <= 1"):
        MultivariateParams(min_corr=2)
