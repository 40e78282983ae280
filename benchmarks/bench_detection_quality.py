"""Benchmark: detection quality of `window_stats` + `anomalies` against the simulator's labelled faults.

    python benchmarks/bench_detection_quality.py                  # 100 sensors, 7 days of history, 7 scored days
    python benchmarks/bench_detection_quality.py --sensors 30 --days 7 --fault-free-sensors 20

Every day runs as the daily partition would (``run_day_chunked``): the day's
validated readings, the previous day's tail as context, the previous seven
days of window_stats as drift baseline. Anomalies of the day after the scored
period are kept for matching only (an event starting at 23:30 on the last day
shows the next morning). Prints markdown:

1. quality per fault type for a 1 Hz fleet (recall, precision, median delay),
   with the drift episodes' deviation at detection;
2. false alerts per sensor-day on fault-free sensors (a fleet with no
   injected sensor faults: only dropped readings, duplicates, out-of-order
   delivery and clock skew; sensor-days with a low battery excluded);
3. the same fleet sampling every 5 minutes: window geometry and quality;
4. a table imported from outside the simulator (10 s, 60 s and 5 min sensors,
   jittered clocks, a lossy link): estimated intervals, windows, missing rates;
5. the seed's systemic scenario (a gateway outage and a gateway clock jump).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import statistics
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from iot_platform.core.detectors import DetectionParams, SystemicParams, context_seconds
from iot_platform.core.detectors.pipeline import run_day_chunked
from iot_platform.core.schemas import READINGS
from iot_platform.core.scoring import (
    ScoringParams,
    false_alerts_per_sensor_day,
    match,
    quality_markdown,
    score_detection,
)
from iot_platform.core.simulator import DAY_US, FaultRates, FleetParams, day_start_us, simulate, simulate_day
from iot_platform.core.validation import validate_readings
from iot_platform.core.windows import US, estimate_intervals, geometry

START = dt.date(2024, 1, 1)
KEEP_COLUMNS = ["sensor_id", "window_start", "window_end", "n_readings", "temp_mean", "temp_std", "missing_rate"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _tail(readings: pa.Table, end_us: int, seconds: int) -> pa.Table:
    ts = pc.cast(readings.column("ts"), pa.int64()).to_numpy()
    return readings.filter(pa.array(ts >= end_us - seconds * US))


@dataclasses.dataclass
class Run:
    window_stats: list[pa.Table]
    anomalies: pa.Table
    labels: pa.Table
    seconds: float


def run_fleet(fleet: FleetParams, n_days: int, params: DetectionParams = DetectionParams(), label: str = "") -> Run:
    """Simulate and detect ``n_days`` consecutive days (each a daily partition with its real context)."""
    ctx = context_seconds(params)
    d0 = day_start_us(START)
    prev_tail = validate_readings(simulate(fleet, d0 - ctx.readings_s * US, d0).readings).good
    history: list[pa.Table] = []
    anomalies, labels, spent = [], [], 0.0
    for i in range(n_days):
        day = START + dt.timedelta(days=i)
        sim = simulate_day(fleet, day)
        good = validate_readings(sim.readings).good
        t0 = time.perf_counter()
        baseline = pa.concat_tables(history[-params.drift.history_days :]) if history else None
        run = run_day_chunked([(good, prev_tail)], baseline, params, day=day)
        spent += time.perf_counter() - t0
        history.append(run.window_stats.select(KEEP_COLUMNS))
        anomalies.append(run.anomalies)
        labels.append(sim.labels)
        prev_tail = _tail(good, day_start_us(day) + DAY_US, ctx.readings_s)
        log(f"  {label} {day}: {good.num_rows:,} readings, {run.anomalies.num_rows} anomalies")
    return Run(history, pa.concat_tables(anomalies), pa.concat_tables(labels), spent)


def _counts(series) -> dict[str, int]:
    return {str(k): int(v) for k, v in series.value_counts().sort_index().items()}


def _starting_in(anomalies: pa.Table, start: int, end: int) -> pa.Table:
    ts = pc.cast(anomalies.column("start_ts"), pa.int64()).to_numpy()
    return anomalies.filter(pa.array((ts >= start) & (ts < end)))


def drift_at_detection(run: Run, start: int, end: int, tol: ScoringParams) -> list[float]:
    """|deviation| (C) a drift had reached when first detected: magnitude x ramp fraction at the delay."""
    pairs = match(run.anomalies, run.labels, start=start, end=end, params=tol)
    first = pairs[pairs.fault_type == "drift"].groupby("label_id").delay_s.min()
    lab = run.labels.to_pandas().drop_duplicates("label_id").set_index("label_id")
    out = []
    for lid, delay in first.items():
        r = lab.loc[lid]
        s_us = int(r.start_ts.value // 1000)
        dur = (r.end_ts - r.start_ts).total_seconds()
        since = (max(s_us, start) - s_us) / US + delay
        out.append(abs(r.magnitude) * min(since / dur, 1.0))
    return out


def section_quality(n_sensors: int, history: int, days: int) -> None:
    fleet = FleetParams(seed=42, n_sensors=n_sensors)
    run = run_fleet(fleet, history + days + 1, label="1 Hz")
    start = day_start_us(START + dt.timedelta(days=history))
    end = start + days * DAY_US
    q = score_detection(run.anomalies, run.labels, start=start, end=end)
    readings_total = n_sensors * days * 86_400
    print(f"## 1. Quality per fault type: {n_sensors} sensors at 1 Hz, {days} scored days after {history} days of history\n")
    print(quality_markdown(q))
    dev = drift_at_detection(run, start, end, ScoringParams())
    if dev:
        print(f"\nDrift: deviation reached when first detected: median {statistics.median(dev):.2f} C "
              f"(min {min(dev):.2f}, max {max(dev):.2f}); drifts are ramps of 2-6 C over 6-48 h.")  # fmt: skip
    pairs = match(run.anomalies, run.labels, start=start, end=end)
    an = _starting_in(run.anomalies, start, end).to_pandas()
    per_sensor = an[an.sensor_id != "__fleet__"]
    unmatched = per_sensor[~per_sensor.anomaly_id.isin(pairs.anomaly_id)]
    print(f"\nAll anomalies in the period: {len(per_sensor)} (systemic: {(an.sensor_id == '__fleet__').sum()}); "
          f"not matching any label: {len(unmatched)} = {len(unmatched) / (n_sensors * days):.3f} per sensor-day "
          f"(by type: {_counts(unmatched.anomaly_type)}).")  # fmt: skip
    print(f"run_day time: {run.seconds:.1f} s for {history + days + 1} days, "
          f"{readings_total / days * (history + days + 1) / run.seconds:,.0f} readings/s (simulation and "
          "validation not included).\n")  # fmt: skip


def section_fault_free(n_sensors: int, history: int, days: int) -> None:
    rates = FaultRates(spike=0, sensor_fault=0, drift=0, flatline=0, high_vibration=0, outage=0)
    fleet = FleetParams(seed=7, n_sensors=n_sensors, faults=rates)
    run = run_fleet(fleet, history + days, label="fault-free")
    start = day_start_us(START + dt.timedelta(days=history))
    end = start + days * DAY_US
    n, sensor_days, rate = false_alerts_per_sensor_day(
        run.anomalies, run.labels, sensor_ids=fleet.sensor_ids, start=start, end=end
    )
    an = _starting_in(run.anomalies, start, end).to_pandas()
    print("## 2. False alerts on fault-free sensors\n")
    print(f"{n_sensors} sensors at 1 Hz with no injected sensor faults (dropped readings 2 %, duplicates, "
          f"out-of-order delivery and clock skew kept), {days} days after {history} days of history.\n")  # fmt: skip
    print("| fault-free sensor-days | alerts | alerts per sensor-day | target |")
    print("|---|---|---|---|")
    print(f"| {sensor_days} | {n} | {rate:.3f} | <= 0.5 |")
    print(f"\nAll anomalies of that fleet by type: {_counts(an.anomaly_type)} "
          "(low-battery sensor-days are not fault-free).\n")  # fmt: skip


def section_slow(n_sensors: int, history: int, days: int) -> None:
    params = DetectionParams()
    fleet = FleetParams(seed=42, n_sensors=n_sensors, sample_interval_s=300.0)
    run = run_fleet(fleet, history + days + 1, params, label="5 min")
    start = day_start_us(START + dt.timedelta(days=history))
    end = start + days * DAY_US
    hop, length = (int(x) for x in geometry(300 * US, params.windows))
    tol = ScoringParams(tolerance_s=(length + hop) / US)
    print("## 3. The same detectors on a fleet sampling every 5 minutes\n")
    print("| sample interval | window length | hop | expected readings | windows | median n_readings | "
          "median missing_rate |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    ws = pa.concat_tables(run.window_stats[history : history + days])
    print(f"| 300 s | {length / US:.0f} s | {hop / US:.0f} s | {length / (300 * US):.0f} | {ws.num_rows} | "
          f"{np.median(_col(ws, 'n_readings')):.0f} | {np.median(_col(ws, 'missing_rate')):.3f} |\n")  # fmt: skip
    print(f"Quality ({n_sensors} sensors, {days} scored days; an alert up to one window after a fault still "
          f"matches it: tolerance {tol.tolerance_s:.0f} s):\n")  # fmt: skip
    print(quality_markdown(score_detection(run.anomalies, run.labels, start=start, end=end, params=tol)))
    print("\nAt one reading per 5 min a spike or a sensor fault is 1-3 readings, a flatline 2-36 and an outage "
          "0-24: flatlines shorter than the flatline detector's 8 identical readings and outages shorter than 5 missed "
          "samples are below what the detectors are defined to see.\n")  # fmt: skip


def _col(t: pa.Table, name: str) -> np.ndarray:
    return np.asarray(t.column(name).to_numpy(zero_copy_only=False), dtype=float)


def imported_table(day: dt.date) -> pa.Table:
    """Readings as a plant historian might export them: three sampling rates, jittered clocks, a lossy link."""
    rng = np.random.default_rng(5)
    d0 = day_start_us(day)
    rows = []
    for sensor, interval, jitter_s, loss in (
        ("plant/boiler-10s", 10.0, 0.2, 0.01),
        ("plant/hall-60s", 60.0, 1.0, 0.0),
        ("plant/roof-5min", 300.0, 3.0, 0.0),
        ("plant/yard-5min-lossy", 300.0, 3.0, 0.2),
    ):
        t = np.arange(d0 - 4 * 3600 * US, d0 + DAY_US, round(interval * US), dtype=np.int64)
        t = t + np.round(rng.uniform(-jitter_s, jitter_s, len(t)) * US).astype(np.int64)
        t = t[rng.uniform(size=len(t)) >= loss]
        hours = (t % DAY_US) / 3.6e9
        temp = 20 + 3 * np.sin(2 * np.pi * (hours - 9) / 24) + rng.normal(0, 0.2, len(t))
        rows.append(
            pa.table(
                {
                    "sensor_id": [sensor] * len(t),
                    "ts": pa.array(t, pa.int64()).cast(READINGS.field("ts").type),
                    "temperature": np.round(temp, 2),
                    "humidity": np.round(50 + rng.normal(0, 1, len(t)), 1),
                    "vibration": np.round(np.abs(rng.normal(0.2, 0.02, len(t))), 3),
                    "battery_level": np.full(len(t), 80.0),
                    "source": [f"import:{sensor}.csv"] * len(t),
                }
            )
        )
    from iot_platform.core.schemas import conform

    return conform(pa.concat_tables(rows), READINGS)


def section_imported() -> None:
    params = DetectionParams()
    day = START
    table = imported_table(day)
    d0 = day_start_us(day)
    ts = pc.cast(table.column("ts"), pa.int64()).to_numpy()
    readings = table.filter(pa.array(ts >= d0))
    prev_tail = table.filter(pa.array(ts < d0))
    run = run_day_chunked([(readings, prev_tail)], None, params, day=day)
    iv = {r["sensor_id"]: r["interval_s"] for r in estimate_intervals(table, params.windows).to_pylist()}
    ws = run.window_stats.to_pandas()
    print("## 4. A table imported from outside the simulator\n")
    print("Four sensors exported by a plant historian: 10 s, 60 s and 5 min sampling with clock jitter of "
          "+-0.2 to +-3 s, one 5 min sensor behind a link losing 20 % of its readings (one day plus 4 h of "
          "context, no history).\n")  # fmt: skip
    print("| sensor | estimated interval | window length | hop | expected readings | median n_readings | "
          "median missing_rate | anomalies |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    an = run.anomalies.to_pandas()
    for sensor, g in ws.groupby("sensor_id"):
        length = (g.window_end - g.window_start).dt.total_seconds().iloc[0]
        hop = g.window_end.diff().dt.total_seconds().min()
        kinds = _counts(an[an.sensor_id == sensor].anomaly_type)
        print(f"| {sensor} | {iv[sensor]:g} s | {length:.0f} s | {hop:.0f} s | {length / iv[sensor]:.0f} | "
              f"{g.n_readings.median():.0f} | {g.missing_rate.median():.3f} | {kinds or '-'} |")  # fmt: skip
    print()


def section_systemic() -> None:
    fleet = FleetParams(seed=11, n_sensors=10, faults=FaultRates(spike=0, sensor_fault=0, drift=0, flatline=0,
                                                                 high_vibration=0, outage=0, clock_skew=0))  # fmt: skip
    day = START + dt.timedelta(days=1)
    d0 = day_start_us(day)
    params = DetectionParams()
    ctx = context_seconds(params)
    prev_tail = validate_readings(simulate(fleet, d0 - ctx.readings_s * US, d0).readings).good
    good = validate_readings(simulate_day(fleet, day).readings).good
    ts = pc.cast(good.column("ts"), pa.int64()).to_numpy()
    # (a) the gateway is offline 12:00-12:04; (b) at 15:00 its clock jumps 120 s ahead.
    outage = (ts >= d0 + 12 * 3600 * US) & (ts < d0 + (12 * 3600 + 240) * US)
    jump = ts >= d0 + 15 * 3600 * US
    shifted = np.where(jump, ts + 120 * US, ts)
    keep = ~outage & (shifted < d0 + DAY_US)
    scenario = good.set_column(1, "ts", pa.array(shifted, pa.int64()).cast(READINGS.field("ts").type)).filter(
        pa.array(keep)
    )
    print("## 5. Systemic scenario (seed's debugging scenario)\n")
    print("10 healthy sensors; the gateway is offline 12:00-12:04 and its clock jumps 120 s ahead at 15:00.\n")
    print("| mode | systemic anomalies | individual anomalies | linked to a systemic one |")
    print("|---|---|---|---|")
    for mode in ("link", "suppress"):
        p = dataclasses.replace(params, systemic=SystemicParams(mode=mode))
        run = run_day_chunked([(scenario, prev_tail)], None, p, day=day)
        an = run.anomalies.to_pandas()
        sys_rows = an[an.anomaly_type == "systemic"]
        ind = an[an.anomaly_type != "systemic"]
        print(f"| {mode} | {len(sys_rows)} ({', '.join(f'{t:%H:%M}' for t in sys_rows.start_ts)}) | {len(ind)} | "
              f"{ind.systemic_id.notna().sum()} |")  # fmt: skip
    print()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sensors", type=int, default=100)
    ap.add_argument("--fault-free-sensors", type=int, default=50)
    ap.add_argument("--history", type=int, default=7)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--sections", default="12345")
    args = ap.parse_args()
    if "1" in args.sections:
        section_quality(args.sensors, args.history, args.days)
    if "2" in args.sections:
        section_fault_free(args.fault_free_sensors, args.history, args.days)
    if "3" in args.sections:
        section_slow(args.sensors, args.history, args.days)
    if "4" in args.sections:
        section_imported()
    if "5" in args.sections:
        section_systemic()


if __name__ == "__main__":
    main()
