"""The simulated fleet: determinism, physics and fault statistics."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from iot_platform.core import simulator as sim
from iot_platform.core.schemas import FAULT_LABELS, READINGS, VALID_RANGE
from iot_platform.core.validation import validate_readings

DAY = dt.date(2024, 1, 3)
KEY = [("sensor_id", "ascending"), ("ts", "ascending")]


def _clean(t: pa.Table) -> pa.Table:
    return validate_readings(t).good


def test_same_day_twice_is_identical():
    p = sim.FleetParams(seed=1, n_sensors=4)
    a, b = sim.simulate_day(p, DAY), sim.simulate_day(p, DAY)
    assert a.readings.equals(b.readings)
    assert a.labels.equals(b.labels)
    assert a.readings.schema == READINGS
    assert a.labels.schema == FAULT_LABELS


def test_any_slicing_of_days_and_sensors_gives_the_same_values():
    p = sim.FleetParams(seed=3, n_sensors=4, sample_interval_s=5.0)
    d0 = sim.day_start_us(DAY)
    whole = _clean(pa.concat_tables([sim.simulate_day(p, DAY).readings, sim.simulate_day(p, DAY + dt.timedelta(days=1)).readings]))
    # 7-hour slices that cross midnight, and one sensor at a time
    edges = list(range(d0, d0 + 2 * sim.DAY_US, 7 * 3_600_000_000)) + [d0 + 2 * sim.DAY_US]
    sliced = pa.concat_tables(
        [sim.simulate(p, lo, hi, [i]).readings for lo, hi in zip(edges, edges[1:]) for i in (2, 0, 3, 1)]
    )
    assert _clean(sliced).equals(whole)


def test_seed_and_sensor_change_the_values():
    a = sim.simulate_day(sim.FleetParams(seed=1, n_sensors=2), DAY).readings
    b = sim.simulate_day(sim.FleetParams(seed=2, n_sensors=2), DAY).readings
    assert not np.array_equal(a["temperature"].to_numpy()[:100], b["temperature"].to_numpy()[:100])


@pytest.fixture(scope="module")
def fleet_days():
    """14 sensor-days x 10 sensors at 1 Hz, with labels: enough for the statistics."""
    p = sim.FleetParams(seed=11, n_sensors=10)
    days = [DAY + dt.timedelta(days=i) for i in range(14)]
    return p, [sim.simulate_day(p, d) for d in days]


def test_about_two_percent_of_readings_are_dropped(fleet_days):
    p, days = fleet_days
    s = days[0]
    good = _clean(s.readings)
    outage_rows = pc.sum(pc.if_else(pc.equal(s.labels["fault_type"], "outage"), s.labels["n_readings"], 0)).as_py() or 0
    expected = p.n_sensors * p.samples_per_day - outage_rows
    dropped = 1 - good.num_rows / expected
    assert 0.015 <= dropped <= 0.025


def test_diurnal_cycle_peaks_in_the_afternoon(fleet_days):
    _, days = fleet_days
    t = _clean(days[0].readings).filter(pc.equal(pc.field("sensor_id"), "sensor_001")).to_pandas()
    t = t[(t.temperature > -40) & (t.temperature < 85)]
    hourly = t.groupby(t.ts.dt.hour).temperature.median()
    amplitude = (hourly.max() - hourly.min()) / 2
    assert 1.0 <= amplitude <= 5.0
    assert 12 <= hourly.idxmax() <= 18
    assert 0 <= hourly.idxmin() <= 6 or hourly.idxmin() >= 23


def test_humidity_is_anticorrelated_with_temperature(fleet_days):
    _, days = fleet_days
    t = _clean(days[0].readings).to_pandas()
    t = t[(t.temperature > -40) & (t.temperature < 85)]
    corr = t.groupby("sensor_id")[["temperature", "humidity"]].corr().xs("temperature", level=1)["humidity"]
    assert (corr < -0.5).all()


def test_fault_rates_are_realistic(fleet_days):
    p, days = fleet_days
    labels = pa.concat_tables([d.labels for d in days]).to_pandas().drop_duplicates("label_id")
    per_sensor_day = labels.groupby("fault_type").size() / (p.n_sensors * len(days))
    assert 1.5 <= per_sensor_day["spike"] <= 4.5
    assert 0.1 <= per_sensor_day["sensor_fault"] <= 0.8
    assert 0.1 <= per_sensor_day["flatline"] <= 0.6
    assert 0.2 <= per_sensor_day["high_vibration"] <= 0.7
    assert 0.1 <= per_sensor_day["outage"] <= 0.6
    drift = labels[labels.fault_type == "drift"]
    # "a few degrees over hours to days", never the seed's ~86 C per day
    assert drift.magnitude.abs().between(2, 6).all()
    hours = (drift.end_ts - drift.start_ts).dt.total_seconds() / 3600
    assert hours.between(6, 48).all()


def test_labelled_faults_are_in_the_readings(fleet_days):
    _, days = fleet_days
    s = days[0]
    r = _clean(s.readings).to_pandas().set_index(["sensor_id", "ts"]).sort_index()
    for lab in s.labels.to_pylist():
        rows = r.loc[lab["sensor_id"]]
        rows = rows[(rows.index >= lab["start_ts"]) & (rows.index < lab["end_ts"])]
        if lab["fault_type"] == "sensor_fault":
            lo, hi = VALID_RANGE["temperature"]
            assert ((rows.temperature < lo) | (rows.temperature > hi)).all() and len(rows) >= 1
        elif lab["fault_type"] == "flatline":
            assert rows.temperature.nunique() == 1 and len(rows) >= 10
        elif lab["fault_type"] == "outage":
            assert len(rows) == 0
        elif lab["fault_type"] == "high_vibration":
            assert (rows.vibration > 2.0).all()
        elif lab["fault_type"] == "spike":
            assert len(rows) >= 1


def test_no_unlabelled_impossible_values(fleet_days):
    _, days = fleet_days
    for s in days:
        r = _clean(s.readings)
        lo, hi = VALID_RANGE["temperature"]
        outside = r.filter(pc.or_(pc.less(r["temperature"], lo), pc.greater(r["temperature"], hi)))
        faults = s.labels.filter(pc.equal(s.labels["fault_type"], "sensor_fault"))
        assert outside.num_rows == pc.sum(faults["n_readings"]).as_py() or (outside.num_rows == 0 and faults.num_rows == 0)
        assert pc.max(r["vibration"]).as_py() < 2.0 or s.labels.filter(pc.equal(s.labels["fault_type"], "high_vibration")).num_rows


def test_delivery_faults_are_absorbed_by_validation(fleet_days):
    _, days = fleet_days
    s = days[0]
    v = validate_readings(s.readings)
    dup_labels = s.labels.filter(pc.equal(s.labels["fault_type"], "duplicates"))
    assert v.duplicates == pc.sum(dup_labels["n_readings"]).as_py() > 0
    assert v.rejected.num_rows == 0
    ts = s.readings["ts"].cast(pa.int64()).to_numpy()
    assert (np.diff(ts) < 0).any()  # arrives out of order ...
    assert v.good.equals(v.good.sort_by(KEY))  # ... and leaves sorted


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(n_sensors=0), "n_sensors=0 is invalid"),
        (dict(seed=-1), "seed=-1 is invalid"),
        (dict(sample_interval_s=7.0), "sample_interval_s=7.0 is invalid"),
        (dict(sample_interval_s=0.0), "sample_interval_s=0.0 is invalid"),
    ],
)
def test_invalid_parameters_say_what_is_wrong(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sim.FleetParams(**kwargs)


def test_other_sample_intervals():
    p = sim.FleetParams(seed=5, n_sensors=2, sample_interval_s=300.0, faults=sim.NO_FAULTS)
    r = _clean(sim.simulate_day(p, DAY).readings)
    assert r.num_rows == 2 * 288
    ts = r.filter(pc.equal(r["sensor_id"], "sensor_001"))["ts"].cast(pa.int64()).to_numpy()
    assert set(np.diff(ts)) == {300_000_000}


def test_the_calendar_has_one_home():
    import datetime as dt

    from iot_platform.core import calendar
    from iot_platform.core import simulator as sim
    from iot_platform.core import windows

    assert (sim.DAY_US, windows.US, windows.DAY_US) == (calendar.DAY_US, calendar.US, 86_400_000_000)
    assert calendar.day_start_us(dt.date(2024, 1, 3)) == 1_704_240_000_000_000
    assert calendar.day_of_us(1_704_240_000_000_000 - 1) == dt.date(2024, 1, 2)
    t = dt.datetime(2024, 1, 3, 0, 0, 0, 1, tzinfo=dt.UTC)
    assert calendar.to_us(t) == 1_704_240_000_000_001 and calendar.from_us(1_704_240_000_000_001) == t


@pytest.mark.parametrize("interval_s", [1.0, 0.5, 60.0, 3600.0])
def test_battery_levels_are_the_formula_at_every_sample_across_a_replacement(interval_s):
    # sensor 2 of seed 42 gets a new battery on 2024-01-14 (its level jumps back up that day)
    p = sim.FleetParams(seed=42, n_sensors=8, sample_interval_s=interval_s)
    s = [sim._sensor(42, i) for i in range(8)]
    col = lambda name: np.array([getattr(x, name) for x in s]).reshape(-1, 1)  # noqa: E731
    t = sim.day_start_us(dt.date(2024, 1, 14)) + np.arange(0, sim.DAY_US, p.interval_us, dtype=np.int64)
    args = (col("battery_life_days"), col("battery_phase_days"), col("battery_floor"))
    fast, exact = sim._battery(*args, t), sim._battery_levels(*args, t)
    assert fast.shape == exact.shape == (8, len(t))
    assert np.array_equal(fast.view(np.uint64), exact.view(np.uint64))
    assert (np.diff(exact[2]) > 0).sum() == 1  # the replacement is inside the day
    assert (np.diff(exact[[0, 1, 3, 4, 5, 6, 7]], axis=1) > 0).sum() == 0
