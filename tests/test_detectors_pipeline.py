"""The pipeline: micro-batches equal the full run bit for bit, run_day is stage (a) + (b) over the day."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from iot_platform.core.detectors import (
    Context,
    DetectionParams,
    SystemicParams,
    MultivariateParams,
    context_seconds,
    detect_points,
    detect_sensor_points,
    drift_baseline,
    run_day,
    run_day_chunked,
    to_episodes,
)
from iot_platform.core.detectors.points import sort_points
from iot_platform.core.schemas import ANOMALIES, FLEET_ID, READINGS, WINDOW_STATS
from iot_platform.core.simulator import DAY_US, NO_FAULTS, FaultRates, FleetParams, day_start_us, simulate
from iot_platform.core.windows import US, compute_window_stats

DAY = dt.date(2024, 1, 3)
D0 = day_start_us(DAY)
HOURS = 4
PARAMS = DetectionParams()
FAULTS = FaultRates(spike=12, sensor_fault=4, flatline=3, high_vibration=4, outage=3, drift=0.3)


def _ts(t: pa.Table, col: str = "ts") -> np.ndarray:
    return pc.cast(t.column(col), pa.int64()).to_numpy()


def _between(t: pa.Table, lo: int, hi: int, col: str = "ts", closed: str = "left") -> pa.Table:
    x = _ts(t, col)
    return t.filter(pa.array((x >= lo) & (x < hi) if closed == "left" else (x > lo) & (x <= hi)))


def _renamed(t: pa.Table, prefix: str) -> pa.Table:
    ids = pc.binary_join_element_wise(prefix, t.column("sensor_id"), "")
    return t.set_column(0, READINGS.field("sensor_id"), ids)


def _fleet(start: int, end: int, faults: FaultRates = FAULTS) -> pa.Table:
    """Three sensors every 10 s and one at 1 Hz: two geometries in one table."""
    slow = simulate(FleetParams(seed=21, n_sensors=3, sample_interval_s=10.0, faults=faults), start, end).readings
    fast = simulate(FleetParams(seed=22, n_sensors=1, sample_interval_s=1.0, faults=faults), start, end).readings
    return pa.concat_tables([slow, _renamed(fast, "fast_")])


@pytest.fixture(scope="module")
def world() -> dict:
    history = _fleet(D0 - 3 * DAY_US, D0, NO_FAULTS)
    hist_ws = compute_window_stats(history, emit_start=D0 - 3 * DAY_US, emit_end=D0)
    ctx = context_seconds(PARAMS)
    readings = pa.concat_tables([_between(history, D0 - ctx.readings_s * US, D0), _fleet(D0, D0 + HOURS * 3600 * US)])
    ts = _ts(readings)
    gateway = (ts >= D0 + 2 * 3600 * US) & (ts < D0 + (2 * 3600 + 240) * US)  # every sensor offline 4 min
    return dict(readings=readings.filter(pa.array(~gateway)), hist_ws=hist_ws, baseline=drift_baseline(hist_ws))


def test_context_seconds_default_and_for_a_fast_fleet():
    # window stats: the drift CUSUM's 6 h memory (the silence horizon is shorter), one hop, and the slowest
    # sensor's hop (its first window in memory is compared with the one before: a stuck sensor's means repeat)
    # sensors up to one an hour: the history detector's day of trailing readings and one hop
    assert context_seconds(PARAMS) == Context(readings_s=86_460, window_stats_s=21_660 + 3_600)
    # up to one every 5 min: the flatline's look-back (a 12,000 s window) and the 9 readings before it
    assert context_seconds(PARAMS, max_interval_s=300.0) == Context(readings_s=14_700, window_stats_s=21_660 + 300)
    # at 10 s: the multivariate model's fit (three 300 s blocks) and the block being scored
    assert context_seconds(PARAMS, max_interval_s=10.0) == Context(readings_s=1_200, window_stats_s=21_660 + 60)
    # without it: one hop of look-back for the systemic check, one pane, a 420 s window, 3 intervals
    no_mv = dataclasses.replace(PARAMS, multivariate=MultivariateParams(enabled=False))
    assert context_seconds(no_mv, max_interval_s=10.0) == Context(readings_s=570, window_stats_s=21_660 + 60)


def test_micro_batches_with_context_equal_the_full_run_bit_for_bit(world):
    end = D0 + HOURS * 3600 * US
    r, hist_ws, baseline = world["readings"], world["hist_ws"], world["baseline"]
    full_ws = compute_window_stats(r, emit_start=D0, emit_end=end)
    full_pts = detect_points(r, pa.concat_tables([hist_ws, full_ws]), baseline, emit_start=D0, emit_end=end)

    ctx = context_seconds(PARAMS, max_interval_s=10.0)  # the slowest sensor samples every 10 s
    cuts = [D0 + s * US for s in range(0, 600, 30)]  # 30-second batches for ten minutes ...
    cuts += [D0 + s * US for s in (601, 1234, 3600, 7199, 7200, 7201, 7260, 9999)] + [end]  # ... then odd ones
    ws_parts, pt_parts, known_ws = [], [], hist_ws
    for a, b in zip(cuts[:-1], cuts[1:]):
        batch = _between(r, a - ctx.readings_s * US, b)
        ws = compute_window_stats(batch, emit_start=a, emit_end=b)
        known_ws = pa.concat_tables([known_ws, ws])
        ws_ctx = _between(known_ws, a - ctx.window_stats_s * US, b, col="window_end", closed="right")
        pt_parts.append(detect_points(batch, ws_ctx, baseline, emit_start=a, emit_end=b))
        ws_parts.append(ws)
    sliced_ws = pa.concat_tables(ws_parts)
    sliced_ws = sliced_ws.take(pc.sort_indices(sliced_ws, sort_keys=[("sensor_id", "ascending"), ("window_end", "ascending")]))
    sliced_pts = sort_points(pa.concat_tables(pt_parts))
    assert sliced_ws.equals(full_ws)
    assert sliced_pts.equals(full_pts)
    assert to_episodes(sliced_pts).equals(to_episodes(full_pts))
    kinds = set(full_pts.column("anomaly_type").to_pylist())
    assert kinds == {"spike", "level_shift", "sensor_fault", "flatline", "drift", "high_missing_rate", "silent_sensor",
                     "systemic", "low_battery"}  # fmt: skip


def _day(world, **kwargs):
    r = world["readings"]
    day = _between(r, D0, D0 + DAY_US)
    tail = _between(r, D0 - DAY_US, D0)
    return run_day_chunked([(day, tail)], world["hist_ws"], PARAMS, day=DAY, **kwargs)


@pytest.fixture(scope="module")
def day_run(world):
    return _day(world)


def test_run_day_is_stage_a_over_the_day_then_stage_b(world, day_run):
    end = D0 + HOURS * 3600 * US
    r = world["readings"]
    ws = compute_window_stats(r, emit_start=D0, emit_end=D0 + DAY_US)
    assert day_run.window_stats.equals(ws)
    # per-reading points of [D0, end) and per-window points of (D0, end - 1 us]: exactly the points before `end`
    pts = detect_points(r, pa.concat_tables([world["hist_ws"], ws]), world["baseline"], emit_start=D0, emit_end=end - 1)
    head = day_run.points.filter(pa.array(_ts(day_run.points) < end))
    assert head.equals(pts)
    assert day_run.anomalies.equals(to_episodes(day_run.points))
    assert day_run.anomalies.schema == ANOMALIES and day_run.window_stats.schema == WINDOW_STATS


def test_run_day_reports_the_rest_of_the_day_silent(day_run):
    an = day_run.anomalies.filter(pc.equal(day_run.anomalies.column("anomaly_type"), "silent_sensor"))
    last = an.filter(pa.array(_ts(an, "end_ts") == D0 + DAY_US))
    # the readings stop at 04:00; every sensor is then silent until midnight (critical after an hour)
    assert sorted(last.column("sensor_id").to_pylist()) == ["fast_sensor_001", "sensor_001", "sensor_002", "sensor_003"]
    assert set(last.column("severity").to_pylist()) == {"critical"}


def test_run_day_whatever_the_row_order_and_chunking(world, day_run):
    r = world["readings"]
    day = _between(r, D0, D0 + DAY_US)
    tail = _between(r, D0 - DAY_US, D0)
    rng = np.random.default_rng(2)
    shuffled = day.take(pa.array(rng.permutation(day.num_rows)))
    history = world["hist_ws"]
    history = history.take(pa.array(rng.permutation(history.num_rows)))  # not in partition order either
    ws, an = run_day(shuffled, tail, history, PARAMS, day=DAY, chunk_rows=5_000)
    assert ws.equals(day_run.window_stats) and an.equals(day_run.anomalies)
    # the caller's chunks: two disjoint sets of sensors
    fast = pc.starts_with(day.column("sensor_id"), "fast_")
    fast_tail = pc.starts_with(tail.column("sensor_id"), "fast_")
    chunks = [(day.filter(pc.invert(fast)), tail.filter(pc.invert(fast_tail))), (day.filter(fast), tail.filter(fast_tail))]
    split = run_day_chunked(chunks, world["hist_ws"], PARAMS, day=DAY)
    assert split.window_stats.equals(day_run.window_stats) and split.anomalies.equals(day_run.anomalies)


def test_systemic_anomalies_and_their_linked_alerts(day_run):
    an = day_run.anomalies
    sys_rows = an.filter(pc.equal(an.column("sensor_id"), FLEET_ID)).to_pylist()
    # the gateway outage (with the windows it leaves short), two coincidences of faults in a four-sensor fleet
    # with ten times the usual fault rates, and the whole fleet silent once the readings end at 04:00
    assert [(r["start_ts"].strftime("%H:%M"), r["end_ts"].strftime("%d %H:%M"), r["message"].split(":")[0])
            for r in sys_rows] == [
        ("02:01", "03 02:10", "4 of 4 sensors of group fleet alerting at once (drift 1, high_missing_rate 4, silent_sensor 4)"),
        ("02:35", "03 02:35", "3 of 4 sensors of group fleet alerting at once (drift 1, flatline 1, spike 1)"),
        ("02:59", "03 03:26", "4 of 4 sensors of group fleet alerting at once (drift 1, flatline 2, spike 1)"),
        ("04:01", "04 00:00", "4 of 4 sensors of group fleet alerting at once (high_missing_rate 4, silent_sensor 4)"),
    ]  # fmt: skip
    linked = an.filter(pc.equal(an.column("systemic_id"), sys_rows[0]["anomaly_id"]))
    assert sorted(set(linked.column("anomaly_type").to_pylist())) == ["drift", "high_missing_rate", "silent_sensor"]
    assert sorted(set(linked.column("sensor_id").to_pylist())) == ["fast_sensor_001", "sensor_001", "sensor_002", "sensor_003"]


def test_suppress_mode_is_link_mode_without_the_systemic_ticks_alerts(world, day_run):
    quiet = dataclasses.replace(PARAMS, systemic=SystemicParams(mode="suppress"))
    r = world["readings"]
    ws, an = run_day(_between(r, D0, D0 + DAY_US), _between(r, D0 - DAY_US, D0), world["hist_ws"], quiet, day=DAY)
    pts = day_run.points
    sys_ticks = pts.filter(pc.equal(pts.column("sensor_id"), FLEET_ID)).column("tick_ts")
    member = pc.and_(
        pc.is_in(pts.column("anomaly_type"), value_set=pa.array(list(PARAMS.systemic.types))),
        pc.is_in(pts.column("tick_ts"), value_set=sys_ticks.combine_chunks()),
    )
    assert an.equals(to_episodes(pts.filter(pc.invert(member)), PARAMS))
    assert pc.sum(pc.is_valid(an.column("systemic_id"))).as_py() == 0


def test_a_day_with_no_readings_reports_the_known_sensors_silent(world):
    prev = world["hist_ws"]
    ws, an = run_day(READINGS.empty_table(), None, prev, PARAMS, day=DAY)
    assert ws.num_rows == 0
    rows = [(r["sensor_id"], r["anomaly_type"], r["severity"], r["n_points"]) for r in an.to_pylist()]
    # each known sensor is one critical silent episode of 1440 ticks; the fleet being silent is systemic
    assert rows == [(FLEET_ID, "systemic", "critical", 1440)] + [
        (s, "silent_sensor", "critical", 1440) for s in ("fast_sensor_001", "sensor_001", "sensor_002", "sensor_003")
    ]


def test_detect_sensor_points_has_no_systemic_check(world):
    end = D0 + HOURS * 3600 * US
    r = world["readings"]
    ws = pa.concat_tables([world["hist_ws"], compute_window_stats(r, emit_start=D0, emit_end=end)])
    own = detect_sensor_points(r, ws, world["baseline"], emit_start=D0, emit_end=end)
    full = detect_points(r, ws, world["baseline"], emit_start=D0, emit_end=end)
    assert own.equals(full.filter(pc.not_equal(full.column("sensor_id"), FLEET_ID)))


def test_run_day_requires_a_date():
    with pytest.raises(ValueError, match=r"day=.* is invalid; expected a datetime.date"):
        run_day(READINGS.empty_table(), None, None, day=dt.datetime(2024, 1, 3))
