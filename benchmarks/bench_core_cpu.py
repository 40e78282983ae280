"""Benchmark: CPU seconds (user + sys, all threads) of the chain's core steps for one day.

    python benchmarks/bench_core_cpu.py --sensors 100 [--repeat 3] [--steps simulate,validate,run_day]

CPU time, not wall time: on a shared, loaded machine it is the steadier figure
for an A/B of a change. Steps:

* simulate: ``simulate`` of one day, in chunks of 25 sensors (as the readings asset does);
* validate: ``validate_readings`` of those chunks;
* run_day: ``run_day`` (window_stats + anomalies) of the day, with the previous
  day's tail and seven days of history prepared once, untimed, by
  bench_detection_speed's ``prepare`` (cached in --cache).

Prints one line per step: the minimum and median CPU seconds over the repeats.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

DAY = dt.date(2024, 1, 10)


def cpu() -> float:
    t = os.times()
    return t.user + t.system


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sensors", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--steps", default="simulate,validate,run_day")
    ap.add_argument("--cache", default="/tmp/bench_core_cpu")
    args = ap.parse_args()
    steps = args.steps.split(",")

    from iot_platform.core.simulator import DAY_US, FleetParams, day_start_us, simulate
    from iot_platform.core.validation import validate_readings

    fleet = FleetParams(seed=42, n_sensors=args.sensors)
    d0 = day_start_us(DAY)
    chunks = [range(lo, min(lo + 25, args.sensors)) for lo in range(0, args.sensors, 25)]
    times: dict[str, list[float]] = {s: [] for s in steps}
    if "run_day" in steps:
        import pyarrow.parquet as pq

        from bench_detection_speed import BASELINE_COLUMNS, prepare
        from iot_platform.core.detectors import run_day

        cache = Path(args.cache) / f"{args.sensors}"
        if not (cache / "history.parquet").exists():
            cache.mkdir(parents=True, exist_ok=True)
            prepare(args.sensors, cache)
        history = pq.read_table(cache / "history.parquet", columns=BASELINE_COLUMNS, read_dictionary=["sensor_id"])
        readings = pq.read_table(cache / "readings.parquet")
        tail = pq.read_table(cache / "prev_tail.parquet")
    for _ in range(args.repeat):
        if "simulate" in steps or "validate" in steps:
            c0 = cpu()
            sims = [simulate(fleet, d0, d0 + DAY_US, s).readings for s in chunks]
            times.setdefault("simulate", []).append(cpu() - c0) if "simulate" in steps else None
            if "validate" in steps:
                c0 = cpu()
                for r in sims:
                    validate_readings(r)
                times["validate"].append(cpu() - c0)
            del sims
        if "run_day" in steps:
            c0 = cpu()
            run_day(readings, tail, history, day=DAY)
            times["run_day"].append(cpu() - c0)
    for s in steps:
        v = times[s]
        print(f"{s:10s} cpu_s min {min(v):.2f}  median {statistics.median(v):.2f}  ({len(v)} runs)")


if __name__ == "__main__":
    main()
