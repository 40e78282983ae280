"""Benchmark: `readings` end to end (simulate, validate, write Parquet) for one day.

    python benchmarks/bench_readings.py              # 100 sensors, then 1,000 sensors
    python benchmarks/bench_readings.py --sensors 100

Each size runs in a fresh process so that its peak RSS is its own.
Prints a markdown table for the README.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import tempfile
import time

DAY = dt.date(2024, 1, 3)


def one(n_sensors: int) -> dict:
    from iot_platform.core.simulator import FleetParams
    from iot_platform.io.ingest import build_readings_day
    from iot_platform.io.lake import Lake

    with tempfile.TemporaryDirectory() as tmp:
        lake = Lake(tmp)
        params = FleetParams(seed=42, n_sensors=n_sensors)
        t0 = time.perf_counter()
        stats = build_readings_day(lake, params, DAY)
        seconds = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in lake.files("readings", DAY))
    return {
        "sensors": n_sensors,
        "readings": stats.rows,
        "seconds": round(seconds, 2),
        "readings_per_s": round(stats.rows / seconds),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "parquet_mb": round(size / 2**20, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sensors", type=int, nargs="*", default=[100, 1000])
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(one(args.child)))
        return
    rows = []
    for n in args.sensors:
        out = subprocess.run([sys.executable, __file__, "--child", str(n)], check=True, capture_output=True, text=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print("| sensors | readings | seconds | readings/s | peak RSS (MB) | Parquet (MB) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['sensors']} | {r['readings']:,} | {r['seconds']} | {r['readings_per_s']:,} | {r['peak_rss_mb']} | {r['parquet_mb']} |")


if __name__ == "__main__":
    main()
