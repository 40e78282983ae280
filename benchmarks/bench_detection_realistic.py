"""Benchmark: detection quality on labelled cases the fleet simulator does not make (benchmarks/realistic.py).

    python benchmarks/bench_detection_realistic.py            # every case, seed 1
    python benchmarks/bench_detection_realistic.py --seed 2 --cases pump_1hz,quiet

Each case runs as the daily partitions would (``run_day_chunked``): the day's
readings, the previous day as context (the history detector of hourly sensors
needs a day), the previous days' window_stats as baseline, and the registry a
user would write for it (``sensors.yaml`` entries, or none: data-driven).
The first ``history_days`` are history only; the following days are scored.

Scoring, per case: an anomaly (any type but ``systemic``) matches a label of
its sensor when its ``[start_ts, end_ts]`` meets ``[label start, label end +
tolerance)``, the tolerance being one window of that sensor plus three sample
intervals (alerts from windows end after the readings they hold). Recall:
labels matched; precision: anomalies starting in the scored days that match
a label; false alerts per sensor-day: anomalies matching none, divided by the
scored sensor-days. Prints markdown.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import sys
import time
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, __import__("os").path.dirname(__file__))

import realistic  # noqa: E402  (the generator next to this script)

from iot_platform.core.detectors import DetectionParams, context_seconds  # noqa: E402
from iot_platform.core.detectors.pipeline import run_day_chunked  # noqa: E402
from iot_platform.core.registry import platform_registry  # noqa: E402
from iot_platform.core.simulator import day_start_us  # noqa: E402
from iot_platform.core.windows import US, estimate_intervals, geometry  # noqa: E402

DAY_US = 86_400 * US


def _between(t: pa.Table, lo: int, hi: int) -> pa.Table:
    ts = pc.cast(t.column("ts"), pa.int64()).to_numpy()
    return t.filter(pa.array((ts >= lo) & (ts < hi)))


@dataclasses.dataclass
class Result:
    name: str
    sensors: int
    sensor_days: int
    events: int
    detected: int
    alerts: int
    true_alerts: int
    by_type: Counter
    missed: Counter
    seconds: float


def run_case(case: realistic.Case) -> Result:
    params = DetectionParams(registry=platform_registry(entries=case.entries))
    ctx = context_seconds(params)
    d0 = day_start_us(realistic.START)
    history: list[pa.Table] = []
    anomalies = []
    spent = 0.0
    for i in range(case.history_days + case.days):
        day = realistic.START + dt.timedelta(days=i)
        a = d0 + i * DAY_US
        readings = _between(case.readings, a, a + DAY_US)
        tail = _between(case.readings, a - ctx.readings_s * US, a)
        baseline = pa.concat_tables(history[-params.drift.history_days :]) if history else None
        t0 = time.perf_counter()
        run = run_day_chunked([(readings, tail)], baseline, params, day=day)
        spent += time.perf_counter() - t0
        history.append(run.window_stats)
        if i >= case.history_days:
            anomalies.append(run.anomalies)
    an = pa.concat_tables(anomalies).to_pandas()
    an = an[an.anomaly_type != "systemic"]
    # tolerance per sensor: one window and three intervals
    iv = {r["sensor_id"]: r["interval_s"] for r in estimate_intervals(case.readings).to_pylist()}
    tol = {s: int(geometry(np.array([round(v * US)]), params.windows)[1][0]) // US + 3 * v for s, v in iv.items()}
    score_lo = (case.history_days) * 86_400
    labels = [lab for lab in case.labels if lab.end_s > score_lo]
    start_s = (an.start_ts.astype("int64") // US - d0 // US).to_numpy() if len(an) else np.zeros(0)
    end_s = (an.end_ts.astype("int64") // US - d0 // US).to_numpy() if len(an) else np.zeros(0)
    sensors = an.sensor_id.to_numpy() if len(an) else np.zeros(0, dtype=object)
    matched = np.zeros(len(an), dtype=bool)
    detected, missed = 0, Counter()
    for lab in labels:
        hit = (sensors == lab.sensor_id) & (end_s >= lab.start_s) & (start_s < lab.end_s + tol[lab.sensor_id])
        matched |= hit
        if hit.any():
            detected += 1
        else:
            missed[lab.kind] += 1
    n_sensors = case.readings.column("sensor_id").unique().to_pylist()
    return Result(
        name=case.name,
        sensors=len(n_sensors),
        sensor_days=len(n_sensors) * case.days,
        events=len(labels),
        detected=detected,
        alerts=len(an),
        true_alerts=int(matched.sum()),
        by_type=Counter(f"{t}/{m}" for t, m in zip(an.anomaly_type, an.metric)) if len(an) else Counter(),
        missed=missed,
        seconds=spent,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cases", default=",".join(f.__name__ for f in realistic.CASES))
    args = ap.parse_args()
    chosen = [f for f in realistic.CASES if f.__name__ in args.cases.split(",")]
    results = []
    for f in chosen:
        print(f"  {f.__name__} ...", file=sys.stderr, flush=True)
        results.append(run_case(f(args.seed)))
    print(f"## Realistic cases (seed {args.seed})\n")
    print("| case | sensors | scored sensor-days | events | detected | recall | alerts | true alerts | precision | "
          "false alerts per sensor-day |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        rec = f"{r.detected / r.events:.3f}" if r.events else "n/a"
        prec = f"{r.true_alerts / r.alerts:.3f}" if r.alerts else "n/a"
        fa = (r.alerts - r.true_alerts) / r.sensor_days
        print(f"| {r.name} | {r.sensors} | {r.sensor_days} | {r.events} | {r.detected} | {rec} | {r.alerts} | "
              f"{r.true_alerts} | {prec} | {fa:.3f} |")  # fmt: skip
    print()
    for r in results:
        print(f"* {r.name}: alerts by type/metric {dict(sorted(r.by_type.items()))}; missed {dict(r.missed)}; "
              f"detection {r.seconds:.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
