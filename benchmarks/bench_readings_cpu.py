"""Benchmark: CPU seconds of a `readings` day: the whole build, and its Parquet write alone.

    python benchmarks/bench_readings_cpu.py [--sensors 100] [--repeat 5] [--steps build,write,read]

CPU time (user + sys, all threads), not wall time: the steadier figure on a
shared machine. Steps:

* build: ``build_readings_day`` of one day into a fresh lake (simulate, validate,
  write; the thread pool's CPU included);
* write: ``write_parquet_atomic`` of the day's validated chunks (prepared once,
  untimed), as the build streams them; prints the file size too;
* read: reading that file whole with pyarrow, and aggregating it in DuckDB.

Prints one line per step: the minimum and median CPU seconds over the repeats.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import tempfile
from pathlib import Path

DAY = dt.date(2024, 1, 10)


def cpu() -> float:
    t = os.times()
    return t.user + t.system


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sensors", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--steps", default="build,write,read")
    args = ap.parse_args()
    steps = args.steps.split(",")

    import duckdb
    import pyarrow.parquet as pq

    from iot_platform.core.schemas import READINGS
    from iot_platform.core.simulator import DAY_US, FleetParams, day_start_us, simulate
    from iot_platform.core.validation import validate_readings
    from iot_platform.io.day_layout import split_tail
    from iot_platform.io.ingest import build_readings_day
    from iot_platform.io.lake import Lake
    from iot_platform.io.parquet_files import write_parquet_atomic

    fleet = FleetParams(seed=42, n_sensors=args.sensors)
    d0 = day_start_us(DAY)
    times: dict[str, list[float]] = {s: [] for s in steps}
    size = 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "day.parquet"
        chunks = []
        if "write" in steps or "read" in steps:
            for lo in range(0, args.sensors, 5):
                good = validate_readings(simulate(fleet, d0, d0 + DAY_US, range(lo, min(lo + 5, args.sensors))).readings, d0, d0 + DAY_US).good
                chunks += list(split_tail(good, DAY))
            write_parquet_atomic(iter(chunks), path, READINGS)
            size = path.stat().st_size
        for i in range(args.repeat):
            if "build" in steps:
                c0 = cpu()
                build_readings_day(Lake(Path(tmp) / f"lake{i}"), fleet, DAY)
                times["build"].append(cpu() - c0)
            if "write" in steps:
                c0 = cpu()
                write_parquet_atomic(iter(chunks), path, READINGS)
                times["write"].append(cpu() - c0)
            if "read" in steps:
                c0 = cpu()
                pq.read_table(path)
                duckdb.sql(f"select sensor_id, count(*), avg(temperature), max(ts) from '{path}' group by all").fetchall()
                times["read"].append(cpu() - c0)
    for s in steps:
        v = times[s]
        extra = f"  file {size / 2**20:.1f} MB" if s == "write" else ""
        print(f"{s:6s} cpu_s min {min(v):.2f}  median {statistics.median(v):.2f}  ({len(v)} runs){extra}")


if __name__ == "__main__":
    main()
