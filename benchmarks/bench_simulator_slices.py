"""Benchmark: the simulator on micro-batch slices and on a full day.

    python benchmarks/bench_simulator_slices.py
    python benchmarks/bench_simulator_slices.py --repeat 7

A micro-batch asks for 30 seconds of the whole fleet, so the simulator's cost
per sensor matters as much as its cost per reading. Each case runs `repeat`
consecutive slices (as a stream of micro-batches would): "first" is the first
slice after the simulator's caches are cleared (a micro-batch run in a fresh
process), "next" the median of the following ones (a process that keeps
running). The full day's "next" is the next day. Wall-clock seconds, so run it
on a quiet machine. Prints a markdown table for the README.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time

DAY = dt.date(2024, 1, 3)
S = 1_000_000


def _clear_caches() -> None:
    """Forget whatever the simulator memoizes, so "first" pays for it."""
    from iot_platform.core import simulator as sim

    for obj in vars(sim).values():
        if callable(getattr(obj, "cache_clear", None)):
            obj.cache_clear()


def run(label: str, n_sensors: int, seconds: int, offset_s: int, repeat: int) -> dict:
    from iot_platform.core import simulator as sim

    params = sim.FleetParams(seed=42, n_sensors=n_sensors)
    start = sim.day_start_us(DAY) + offset_s * S
    _clear_caches()
    times, rows = [], []
    for i in range(repeat):
        lo = start + i * seconds * S
        t0 = time.perf_counter()
        out = sim.simulate(params, lo, lo + seconds * S)
        times.append(time.perf_counter() - t0)
        rows.append(out.readings.num_rows)
        del out  # a full day is ~0.6 GB: the next slice should not pay for holding two
    first = times[0]
    steady = statistics.median(times[1:]) if repeat > 1 else first
    n = statistics.median(rows)
    return {"case": label, "readings": int(n), "first_s": first, "next_s": steady,
            "first_rps": rows[0] / first, "next_rps": n / steady}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="consecutive slices per case (default 5)")
    args = ap.parse_args()
    from iot_platform.core import simulator as sim

    # Import-time and first-call costs of numpy and pyarrow are not the simulator's.
    sim.simulate(sim.FleetParams(seed=1, n_sensors=2), sim.day_start_us(DAY), sim.day_start_us(DAY) + 60 * S)
    cases = [
        ("30 s slice, 10 sensors", 10, 30, 12 * 3600, args.repeat),
        ("30 s slice, 1,000 sensors", 1_000, 30, 12 * 3600, args.repeat),
        ("1 h slice, 1,000 sensors", 1_000, 3600, 6 * 3600, max(2, args.repeat // 2)),
        ("full day, 100 sensors", 100, 86_400, 0, 2),
    ]
    results = [run(*c) for c in cases]
    print("| case | readings | first (s) | next (s) | readings/s (first) | readings/s (next) |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['case']} | {r['readings']:,} | {r['first_s']:.3f} | {r['next_s']:.3f} "
              f"| {r['first_rps']:,.0f} | {r['next_rps']:,.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
