"""Window statistics: geometry, exact values, emission rule, midnight, slices equal to the whole."""

from __future__ import annotations

import datetime as dt
import doctest
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from iot_platform.core import windows
from iot_platform.core.schemas import READINGS, TS_TYPE, WINDOW_STATS
from iot_platform.core.simulator import FaultRates, FleetParams, day_start_us, simulate
from iot_platform.core.windows import (
    US,
    WindowParams,
    compute_window_stats,
    estimate_intervals,
    geometry,
    round_interval_us,
    window_context_seconds,
)

S = US  # one second in microseconds
T0 = day_start_us(dt.date(2024, 1, 3))  # a midnight


def readings(rows: list[tuple], columns=("sensor_id", "ts", "temperature")) -> pa.Table:
    """A READINGS table from (sensor_id, seconds after T0, temperature[, ...]) rows."""
    data = {c: [r[i] for r in rows] for i, c in enumerate(columns)}
    data["ts"] = pa.array([T0 + round(t * S) for t in data["ts"]], pa.int64()).cast(TS_TYPE)
    from iot_platform.core.schemas import conform

    return conform(pa.table(data), READINGS)


def rows_of(ws: pa.Table, *cols: str) -> list[tuple]:
    return list(zip(*(ws.column(c).to_pylist() for c in cols)))


TUMBLING_60 = WindowParams(length_s=60, hop_s=60, min_samples=1)


# -- parameters and geometry ---------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(length_s=0), "length_s"),
        (dict(hop_s=-60), "hop_s"),
        (dict(length_s=300, hop_s=70), "length_s"),
        (dict(min_readings=0), "min_readings"),
        (dict(min_samples=1.5), "min_samples"),
        (dict(max_interval_s=0), "max_interval_s"),
        (dict(default_interval_s=float("nan")), "default_interval_s"),
        (dict(default_interval_s=7200.0), "default_interval_s"),
        (dict(max_length_s=200), "max_length_s"),
        (dict(hop_s=True), "hop_s"),
    ],
)
def test_window_params_reject_invalid_values_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"WindowParams\.{field}="):
        WindowParams(**kwargs)


@pytest.mark.parametrize(
    "interval_s, hop_s, length_s",
    [
        (1, 60, 300),  # the seed's geometry at 1 Hz
        (5, 60, 300),
        (10, 60, 420),  # 40 samples need 400 s: rounded up to whole hops
        (90, 120, 3600),  # the hop follows a sensor slower than it
        (300, 300, 12_000),  # one point every 5 minutes: 40 samples
        (1800, 1800, 12_600),  # 40 samples would need 20 h: capped at max_length_s, rounded up to hops
        (3600, 3600, 14_400),  # hourly: four readings a window
        (7200, 3600, 14_400),  # slower than max_interval_s: the geometry of one hour
    ],
)
def test_geometry_follows_the_sample_interval(interval_s, hop_s, length_s):
    hop, length = geometry(np.array([interval_s * S]), WindowParams())
    assert (int(hop[0]) // S, int(length[0]) // S) == (hop_s, length_s)


def test_window_context_is_the_longest_window():
    assert window_context_seconds(WindowParams()) == 14_400
    assert window_context_seconds(WindowParams(max_interval_s=300.0)) == 12_000
    assert window_context_seconds(WindowParams(max_interval_s=1.0)) == 300


@pytest.mark.parametrize(
    "median_us, expected",
    [(1_000_300, 1_000_000), (999_700, 1_000_000), (299_600_000, 300_000_000), (7_500_000, 7_500_000),
     (123_456, 120_000), (10, 1_000)],  # fmt: skip
)
def test_round_interval_keeps_two_significant_digits(median_us, expected):
    assert round_interval_us(median_us) == expected


def test_estimate_intervals_per_sensor_with_jitter_and_a_lonely_reading():
    rng = np.random.default_rng(1)
    t10 = np.arange(0, 3600, 10) + rng.uniform(-0.3, 0.3, 360)
    t300 = np.arange(0, 36_000, 300) + rng.uniform(-2, 2, 120)
    r = readings([("a", t, 20.0) for t in t10] + [("b", t, 20.0) for t in t300] + [("c", 5.0, 20.0)])
    got = estimate_intervals(r).to_pylist()
    assert got == [
        {"sensor_id": "a", "interval_s": 10.0},
        {"sensor_id": "b", "interval_s": 300.0},
        {"sensor_id": "c", "interval_s": 1.0},  # default_interval_s
    ]


# -- exact statistics --------------------------------------------------------------------
def test_tumbling_window_exact_statistics():
    cols = ("sensor_id", "ts", "temperature", "humidity", "pressure", "vibration", "battery_level")
    r = readings(
        [
            ("s1", 0, 20.0, 50.0, 1000.0, 0.1, 80.0),
            ("s1", 10, 22.0, 52.0, 1002.0, 0.3, 79.0),
            ("s1", 20, 24.0, None, 1004.0, 0.2, None),  # null battery: the last valid one counts
            ("s1", 70, 30.0, 40.0, 990.0, 0.5, 70.0),
        ],
        cols,
    )
    params = WindowParams(length_s=60, hop_s=60, min_samples=1, default_interval_s=10.0)
    ws = compute_window_stats(r, params, emit_start=T0, emit_end=T0 + 120 * S)
    assert ws.schema == WINDOW_STATS
    assert ws.to_pylist() == [
        dict(sensor_id="s1", window_start=_ts(0), window_end=_ts(60), n_readings=3, temp_mean=22.0,
             temp_std=math.sqrt(8 / 3), temp_min=20.0, temp_max=24.0, humidity_mean=51.0, pressure_mean=1002.0,
             vibration_mean=pytest.approx(0.2), vibration_max=0.3, battery_level=79.0, missing_rate=0.5),
        dict(sensor_id="s1", window_start=_ts(60), window_end=_ts(120), n_readings=1, temp_mean=30.0,
             temp_std=0.0, temp_min=30.0, temp_max=30.0, humidity_mean=40.0, pressure_mean=990.0,
             vibration_mean=0.5, vibration_max=0.5, battery_level=70.0, missing_rate=1 - 1 / 6),
    ]  # fmt: skip


def _ts(seconds: float) -> dt.datetime:
    return dt.datetime(2024, 1, 3, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=seconds)


def test_hopping_windows_share_readings_and_only_non_empty_windows_exist():
    r = readings([("s1", 5, 1.0), ("s1", 65, 2.0), ("s1", 125, 3.0)])
    params = WindowParams(length_s=120, hop_s=60, min_samples=1, default_interval_s=60.0)
    ws = compute_window_stats(r, params, emit_start=T0 - 600 * S, emit_end=T0 + 600 * S)
    assert rows_of(ws, "window_start", "window_end", "n_readings", "temp_mean", "missing_rate") == [
        (_ts(-60), _ts(60), 1, 1.0, 0.5),
        (_ts(0), _ts(120), 2, 1.5, 0.0),
        (_ts(60), _ts(180), 2, 2.5, 0.0),
        (_ts(120), _ts(240), 1, 3.0, 0.5),
    ]


def test_broken_sensor_values_and_nan_are_left_out_of_the_statistics_but_counted_as_readings():
    r = readings([("s1", 0, 20.0), ("s1", 10, 500.0), ("s1", 20, float("nan")), ("s1", 30, None), ("s1", 40, 22.0)])
    ws = compute_window_stats(r, TUMBLING_60, emit_start=T0, emit_end=T0 + 60 * S)
    assert rows_of(ws, "n_readings", "temp_mean", "temp_min", "temp_max") == [(5, 21.0, 20.0, 22.0)]


def test_window_of_only_invalid_values_has_null_statistics():
    r = readings([("s1", 0, -127.0), ("s1", 10, None)])
    ws = compute_window_stats(r, TUMBLING_60, emit_start=T0, emit_end=T0 + 60 * S)
    assert rows_of(ws, "n_readings", "temp_mean", "temp_std", "temp_min", "humidity_mean") == [(2, None, None, None, None)]


def test_empty_input_gives_an_empty_table_with_the_schema():
    ws = compute_window_stats(READINGS.empty_table(), emit_start=T0, emit_end=T0 + 86_400 * S)
    assert ws.schema == WINDOW_STATS and ws.num_rows == 0


def test_emission_rule_is_window_end_in_the_half_open_range():
    r = readings([("s1", t, 20.0) for t in range(0, 300, 10)])
    ends = compute_window_stats(r, TUMBLING_60, emit_start=T0 + 60 * S, emit_end=T0 + 180 * S).column("window_end")
    assert ends.to_pylist() == [_ts(120), _ts(180)]


def test_same_output_whatever_the_row_order_and_with_conflicting_duplicates():
    rows = [("s1", t, 20.0 + (t % 7)) for t in range(0, 600, 3)] + [("s2", t, 10.0) for t in range(0, 600, 5)]
    rows.append(("s1", 30, 99.0))  # a second, different reading for (s1, 30 s)
    r = readings(rows)
    shuffled = r.take(pa.array(np.random.default_rng(3).permutation(r.num_rows)))
    kwargs = dict(emit_start=T0, emit_end=T0 + 600 * S)
    assert compute_window_stats(shuffled, **kwargs).equals(compute_window_stats(r, **kwargs))
    # of the two readings for (s1, 30 s), the smaller values are kept, whichever arrived first
    one = readings([("s1", 30, 99.0), ("s1", 30, 23.0)])
    assert compute_window_stats(one, TUMBLING_60, **kwargs).column("temp_mean").to_pylist() == [23.0]


def test_sensors_with_different_intervals_get_their_own_windows_and_missing_rates():
    rows = [("fast", t, 20.0) for t in range(0, 12_000)] + [("slow", t, 20.0) for t in range(0, 24_000, 300)]
    r = readings(rows)
    ws = compute_window_stats(r, emit_start=T0 + 12_000 * S - 1, emit_end=T0 + 12_000 * S)
    assert rows_of(ws, "sensor_id", "window_start", "n_readings", "missing_rate") == [
        ("fast", _ts(11_700), 300, 0.0),
        ("slow", _ts(0), 40, 0.0),
    ]


@pytest.mark.parametrize("interval_s", [1800, 3600])
def test_a_complete_slow_series_misses_exactly_nothing(interval_s):
    # the float version computed 1 - 3 / 3.33 = 0.10000000000000009 for an hourly sensor: a missing-data flood
    r = readings([("slow", t, 20.0) for t in range(0, 3 * 86_400, interval_s)])
    ws = compute_window_stats(r, emit_start=T0 + 86_400 * S, emit_end=T0 + 2 * 86_400 * S)
    assert ws.num_rows == 86_400 // interval_s
    assert set(ws.column("missing_rate").to_pylist()) == {0.0}
    assert set(ws.column("n_readings").to_pylist()) == {14_400 // interval_s if interval_s == 3600 else 7}


def test_an_hourly_window_missing_one_reading_of_four():
    hours = [h for h in range(0, 48) if h != 30]
    r = readings([("h", h * 3600, 20.0) for h in hours])
    ws = compute_window_stats(r, emit_start=T0 + 30 * 3600 * S, emit_end=T0 + 31 * 3600 * S)
    assert rows_of(ws, "window_start", "n_readings", "missing_rate") == [(_ts(27 * 3600), 3, 0.25)]


# -- midnight and slices ------------------------------------------------------------------
def _sim(n_sensors=2, interval=10.0, hours=(-2, 3), seed=5):
    fleet = FleetParams(seed=seed, n_sensors=n_sensors, sample_interval_s=interval,
                        faults=FaultRates(outage=2.0, spike=10.0, sensor_fault=2.0))  # fmt: skip
    return simulate(fleet, T0 + hours[0] * 3600 * S, T0 + hours[1] * 3600 * S).readings


def test_windows_straddling_midnight_are_complete_with_the_previous_day_tail():
    r = _sim()
    ts = pc.cast(r.column("ts"), pa.int64()).to_numpy()
    day = r.filter(pa.array(ts >= T0))
    tail = r.filter(pa.array((ts < T0) & (ts >= T0 - window_context_seconds(WindowParams()) * S)))
    kwargs = dict(emit_start=T0, emit_end=T0 + 3600 * S)
    with_tail = compute_window_stats(pa.concat_tables([tail, day]), **kwargs)
    assert with_tail.equals(compute_window_stats(r, **kwargs))
    first = with_tail.slice(0, 1).to_pylist()[0]
    assert (first["window_start"], first["window_end"]) == (_ts(-360), _ts(60))
    without = compute_window_stats(day, **kwargs).slice(0, 1).to_pylist()[0]
    assert without["n_readings"] < first["n_readings"]  # what the tail is for


def test_slices_with_context_add_up_to_the_whole_range_bit_for_bit():
    r = _sim(n_sensors=3)
    ts = pc.cast(r.column("ts"), pa.int64()).to_numpy()
    ctx = window_context_seconds(WindowParams()) * S
    whole = compute_window_stats(r, emit_start=T0, emit_end=T0 + 3 * 3600 * S)
    cuts = [T0, T0 + 30 * S, T0 + 61 * S, T0 + 600 * S, T0 + 3600 * S + 7 * S, T0 + 3 * 3600 * S]
    parts = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        piece = r.filter(pa.array((ts >= a - ctx) & (ts < b)))
        parts.append(compute_window_stats(piece, emit_start=a, emit_end=b))
    sliced = pa.concat_tables(parts)
    order = pc.sort_indices(sliced, sort_keys=[("sensor_id", "ascending"), ("window_end", "ascending")])
    assert sliced.take(order).equals(whole)


def test_chunking_by_sensor_does_not_change_the_result():
    r = _sim(n_sensors=4)
    kwargs = dict(emit_start=T0, emit_end=T0 + 3600 * S)
    assert compute_window_stats(r, chunk_rows=1, **kwargs).equals(compute_window_stats(r, **kwargs))


def test_docstring_examples():
    assert doctest.testmod(windows).failed == 0
