"""Detection on sensors the simulator does not make: slow rates, other units, a fresh start, unrelated series."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from iot_platform.core.detectors import DetectionParams, run_day
from iot_platform.core.registry import platform_registry
from iot_platform.core.schemas import READINGS, conform
from iot_platform.core.simulator import FleetParams, day_start_us, simulate_day
from iot_platform.core.validation import validate_readings
from iot_platform.core.windows import US

DAY = dt.date(2024, 1, 10)
D0 = day_start_us(DAY)
DATA_DRIVEN = DetectionParams(registry=platform_registry())  # every sensor unknown: learned from its data


def _series(sensor: str, interval_s: int, values: np.ndarray, start: int, metric: str = "temperature") -> pa.Table:
    ts = start + np.arange(len(values), dtype=np.int64) * interval_s * US
    return conform(pa.table({"sensor_id": [sensor] * len(values), "ts": pa.array(ts).cast(READINGS.field("ts").type),
                             metric: values}), READINGS)  # fmt: skip


def _kinds(anomalies: pa.Table) -> list[tuple]:
    return sorted(zip(anomalies.column("sensor_id").to_pylist(), anomalies.column("anomaly_type").to_pylist(),
                      anomalies.column("metric").to_pylist()))  # fmt: skip


def test_complete_slow_series_in_other_units_raise_nothing():
    rng = np.random.default_rng(7)
    t_day = np.arange(288) / 288
    parts = []
    for days_back, prev in ((1, True), (0, False)):
        start = D0 - days_back * 86_400 * US
        parts.append(pa.concat_tables([
            _series("cpu-5min", 300, 0.3 + 0.2 * np.sin(2 * np.pi * t_day) + rng.normal(0, 0.02, 288), start),
            _series("flow-30min", 1800, 12.0 + rng.normal(0, 0.3, 48), start, "humidity"),
            _series("bar-1h", 3600, 1.2 + 0.05 * np.sin(2 * np.pi * np.arange(24) / 24) + rng.normal(0, 0.002, 24),
                    start, "pressure"),
        ]))  # fmt: skip
    prev_tail, day = parts
    _, anomalies = run_day(day, prev_tail, None, DATA_DRIVEN, day=DAY)
    assert anomalies.num_rows == 0  # no high_missing_rate, no sensor_fault flood, no systemic


def test_a_spike_on_an_hourly_pressure_in_bar_is_found():
    rng = np.random.default_rng(3)
    vals = 1.2 + rng.normal(0, 0.002, 48)
    vals[40] = 1.4
    r = _series("bar-1h", 3600, vals, D0 - 86_400 * US, "pressure")
    ts = pc.cast(r.column("ts"), pa.int64()).to_numpy()
    _, anomalies = run_day(r.filter(pa.array(ts >= D0)), r.filter(pa.array(ts < D0)), None, DATA_DRIVEN, day=DAY)
    assert _kinds(anomalies) == [("bar-1h", "spike", "pressure")]
    assert anomalies.column("start_ts").to_pylist()[0] == dt.datetime(2024, 1, 10, 16, tzinfo=dt.timezone.utc)


def test_the_first_day_of_a_fresh_start_raises_no_missing_data_and_no_systemic_alert():
    fleet = FleetParams(seed=42, n_sensors=10, faults=dataclasses.replace(FleetParams().faults, outage=0.0, spike=0.0,
                                                                          sensor_fault=0.0, flatline=0.0,
                                                                          high_vibration=0.0, drift=0.0))  # fmt: skip
    readings = validate_readings(simulate_day(fleet, DAY).readings).good
    _, anomalies = run_day(readings, None, None, day=DAY)  # no previous day, no history
    kinds = {k for _, k, _ in _kinds(anomalies)}
    assert "high_missing_rate" not in kinds and "systemic" not in kinds
