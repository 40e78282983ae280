"""One contract, run over every detector (``pipeline.DETECTORS``).

Every detector: returns POINTS, sorted; empty inputs give an empty POINTS
table; the same output whatever the row order and on every call; NaN values
pass through unflagged; and a range split in two gives the two halves.
The fixture is a simulated day of four sensors (one reading every 10 s) with
frequent faults and a gateway outage, after three fault-free days of history,
one hourly sensor (too slow for the window warm-up: the history detector's)
and two hours of a 1 Hz pump whose pressure breaks its relation with flow
(the multivariate detector's).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from iot_platform.core.detectors import DETECTORS, POINTS, DetectionParams, drift_baseline
from iot_platform.core.detectors.points import sort_points
from iot_platform.core.registry import SensorRegistry, SensorSpec
from iot_platform.core.schemas import METRICS, READINGS, WINDOW_STATS, conform
from iot_platform.core.simulator import DAY_US, NO_FAULTS, FaultRates, FleetParams, day_start_us, simulate
from iot_platform.core.windows import US, compute_window_stats

DAY = dt.date(2024, 1, 3)
D0 = day_start_us(DAY)
# the simulated sensors are the simulator's instruments; the pump is data-driven (its metrics move together)
PARAMS = DetectionParams(registry=SensorRegistry(sensors=(SensorSpec("pump*"),)))
LENGTH = 420 * US  # window length of a sensor sampling every 10 s
NAN_SPAN = (D0 + 10 * 3600 * US, D0 + 11 * 3600 * US)
GATEWAY_OUTAGE = (D0 + 15 * 3600 * US, D0 + (15 * 3600 + 300) * US)

# Points of each detector on the fixture: the contract below is not vacuous.
EXPECTED_COUNTS = {
    "sensor_fault": 20,
    "spike": 79,  # spike and level_shift points of every metric
    "history": 3,
    "multivariate": 59,
    "flatline": 780,  # temperature and humidity: the simulator's stuck sensor repeats both
    "thresholds": 255,
    "drift": 592,
    "silence": 474,  # the pump is silent from 10:00 until its 6 h horizon
    "systemic": 98,  # the gateway outage, and coincidences of a 4-sensor fleet with 10x the usual faults
}


def _ts(t: pa.Table, col: str = "ts") -> np.ndarray:
    return pc.cast(t.column(col), pa.int64()).to_numpy()


def _pump() -> pa.Table:
    rng = np.random.default_rng(1)
    t = np.arange(7200)
    load = 0.5 + 0.3 * np.sin(2 * np.pi * t / 1800) + rng.normal(0, 0.01, len(t))
    press = 3.0 - 1.5 * load + rng.normal(0, 0.02, len(t))
    press[5000:5060] -= 0.4
    cols = {"sensor_id": ["pump_001"] * len(t), "ts": pa.array(D0 + 8 * 3600 * US + t * US).cast(READINGS.field("ts").type),
            "humidity": 10 * load + rng.normal(0, 0.1, len(t)), "pressure": press,
            "vibration": 0.2 + 0.3 * load + rng.normal(0, 0.01, len(t))}  # fmt: skip
    return conform(pa.table(cols), READINGS)


@pytest.fixture(scope="module")
def fixture() -> dict:
    faults = FaultRates(spike=6, sensor_fault=2, flatline=1.5, high_vibration=2, outage=1.5, drift=0.35, clock_skew=0.5)
    day_fleet = FleetParams(seed=3, n_sensors=4, sample_interval_s=10.0, faults=faults)
    quiet = FleetParams(seed=3, n_sensors=4, sample_interval_s=10.0, faults=NO_FAULTS)
    history = simulate(quiet, D0 - 3 * DAY_US, D0).readings
    hist_ws = compute_window_stats(history, emit_start=D0 - 3 * DAY_US, emit_end=D0)
    hourly = FleetParams(seed=4, n_sensors=1, sample_interval_s=3600.0, faults=FaultRates(spike=2.0, sensor_fault=0.5))
    slow = simulate(hourly, D0 - 3 * DAY_US, D0 + DAY_US).readings
    slow = slow.set_column(0, READINGS.field("sensor_id"), pa.array(["slow_001"] * slow.num_rows, pa.string()))
    history = pa.concat_tables([history, slow.filter(pa.array(_ts(slow) < D0))])
    hist_ws = compute_window_stats(history, emit_start=D0 - 3 * DAY_US, emit_end=D0)
    readings = pa.concat_tables([history, simulate(day_fleet, D0, D0 + DAY_US).readings, slow.filter(pa.array(_ts(slow) >= D0)),
                                 _pump()])  # fmt: skip
    ts = _ts(readings)
    readings = readings.filter(pa.array(~((ts >= GATEWAY_OUTAGE[0]) & (ts < GATEWAY_OUTAGE[1]))))
    ws = pa.concat_tables([hist_ws, compute_window_stats(readings, emit_start=D0, emit_end=D0 + DAY_US)])
    return dict(readings=readings, window_stats=ws, baseline=drift_baseline(hist_ws, PARAMS))


def run(name: str, f: dict, start: int = D0, end: int = D0 + DAY_US) -> pa.Table:
    return DETECTORS[name](f["readings"], f["window_stats"], f["baseline"], PARAMS, start, end)


@pytest.fixture(scope="module")
def results(fixture) -> dict[str, pa.Table]:
    return {name: run(name, fixture) for name in DETECTORS}


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_points_schema_sorted_and_the_fixture_exercises_the_detector(name, results):
    out = results[name]
    assert out.schema == POINTS
    assert sort_points(out).equals(out)
    assert out.num_rows == EXPECTED_COUNTS[name]


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_empty_inputs_give_empty_points(name):
    out = DETECTORS[name](READINGS.empty_table(), WINDOW_STATS.empty_table(), None, PARAMS, D0, D0 + DAY_US)
    assert out.schema == POINTS and out.num_rows == 0


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_same_output_whatever_the_row_order(name, fixture, results):
    rng = np.random.default_rng(11)
    shuffled = {k: (t.take(pa.array(rng.permutation(t.num_rows))) if t is not None else None) for k, t in fixture.items()}
    assert run(name, shuffled).equals(results[name])


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_same_output_on_every_call(name, fixture, results):
    assert run(name, fixture).equals(results[name])


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_a_range_split_in_two_gives_the_two_halves(name, fixture, results):
    mid = D0 + 13 * 3600 * US + 17 * US  # not on any grid
    halves = pa.concat_tables([run(name, fixture, D0, mid), run(name, fixture, mid, D0 + DAY_US)])
    assert sort_points(halves).equals(results[name])


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_nan_passes_through_and_is_never_flagged(name, fixture):
    r = fixture["readings"]
    ts = _ts(r)
    in_span = (ts >= NAN_SPAN[0]) & (ts < NAN_SPAN[1])
    for m in METRICS:
        vals = np.asarray(r.column(m).to_numpy(zero_copy_only=False), dtype=float)
        r = r.set_column(r.schema.get_field_index(m), m, pa.array(np.where(in_span, np.nan, vals)))
    ws = pa.concat_tables(
        [fixture["window_stats"].filter(pa.array(_ts(fixture["window_stats"], "window_end") <= D0)),
         compute_window_stats(r, emit_start=D0, emit_end=D0 + DAY_US)]  # fmt: skip
    )
    out = run(name, dict(readings=r, window_stats=ws, baseline=fixture["baseline"]))
    values = np.asarray(out.column("value").to_numpy(zero_copy_only=False), dtype=float)
    assert not np.isnan(values).any()
    kinds = np.asarray(out.column("anomaly_type").to_numpy(zero_copy_only=False))
    t = _ts(out)
    per_reading = np.isin(kinds, ["spike", "level_shift", "sensor_fault"]) & (t >= NAN_SPAN[0]) & (t < NAN_SPAN[1])
    nan_windows = np.isin(kinds, ["flatline", "high_vibration", "low_battery", "drift"]) & (
        (t >= NAN_SPAN[0] + LENGTH) & (t <= NAN_SPAN[1])
    )
    assert not per_reading.any() and not nan_windows.any()
