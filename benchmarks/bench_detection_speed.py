"""Benchmark: speed and peak memory of `window_stats` + `anomalies` for one day.

    python benchmarks/bench_detection_speed.py                  # 10, 100, then 1,000 sensors at 1 Hz
    python benchmarks/bench_detection_speed.py --sensors 100

For each size a first process prepares the inputs as the daily assets read
them from the lake (Parquet files, untimed): the day's validated readings,
the previous day's tail (context) and seven previous days of window_stats
(the day's own windows shifted back by 1..7 days: the values do not matter
for the cost, the row counts do). A second, fresh process reads them and
runs the day, so that its peak RSS is its own:

* up to 100 sensors: the whole day as one table, ``run_day`` (the backfill
  path; the function splits it into chunks of sensors itself);
* 1,000 sensors (86 million readings, more than fits in 2 GB as one table):
  ``run_day_chunked`` fed one Parquet row group (25 sensors) at a time, with
  sensor_id read as the dictionary Parquet stores it.

The previous days' window_stats are read with only the columns ``run_day``
uses (sensor_id, window_end, n_readings, temp_mean, temp_std, the other metrics' means, vibration_max).

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
from pathlib import Path

DAY = dt.date(2024, 1, 10)
CHUNK_SENSORS = 25
COLUMNS = ["sensor_id", "ts", "temperature", "humidity", "pressure", "vibration", "battery_level"]
HISTORY_COLUMNS = ["sensor_id", "window_start", "window_end", "n_readings", "temp_mean", "temp_std", "humidity_mean",
                   "pressure_mean", "vibration_mean", "vibration_max"]  # fmt: skip
# what run_day reads of them (pipeline._History.COLUMNS)
BASELINE_COLUMNS = ["sensor_id", "window_end", "n_readings", "temp_mean", "temp_std", "humidity_mean", "pressure_mean",
                    "vibration_mean", "vibration_max"]  # fmt: skip


def prepare(n_sensors: int, out: Path) -> dict:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from iot_platform.core.detectors import context_seconds
    from iot_platform.core.simulator import DAY_US, FleetParams, day_start_us, simulate
    from iot_platform.core.validation import validate_readings
    from iot_platform.core.windows import US, compute_window_stats

    fleet = FleetParams(seed=42, n_sensors=n_sensors)
    d0 = day_start_us(DAY)
    # the simulated fleet's sample interval is known (1 s), so its context is that of 1 Hz sensors; the default
    # (sensors up to one an hour) would add the history detector's day of readings to the tail
    ctx = context_seconds(max_interval_s=fleet.sample_interval_s)
    writers: dict[str, pq.ParquetWriter] = {}
    rows = 0
    history = []
    for lo in range(0, n_sensors, CHUNK_SENSORS):
        sensors = range(lo, min(lo + CHUNK_SENSORS, n_sensors))
        day = validate_readings(simulate(fleet, d0, d0 + DAY_US, sensors).readings).good.select(COLUMNS)
        tail = validate_readings(simulate(fleet, d0 - ctx.readings_s * US, d0, sensors).readings).good.select(COLUMNS)
        rows += day.num_rows
        ws = compute_window_stats(pa.concat_tables([tail, day]), emit_start=d0, emit_end=d0 + DAY_US)
        history.append(ws.select(HISTORY_COLUMNS))
        for name, table in (("readings", day), ("prev_tail", tail)):
            if name not in writers:
                writers[name] = pq.ParquetWriter(out / f"{name}.parquet", table.schema, compression="zstd")
            writers[name].write_table(table, row_group_size=table.num_rows)  # one row group per chunk
    for w in writers.values():
        w.close()
    ws = pa.concat_tables(history)
    end = pc.cast(ws.column("window_end"), pa.int64()).to_numpy()
    start = pc.cast(ws.column("window_start"), pa.int64()).to_numpy()
    days = []
    for k in range(7, 0, -1):
        shifted = ws.set_column(1, "window_start", pa.array(start - k * DAY_US).cast(ws.schema.field(1).type))
        days.append(shifted.set_column(2, "window_end", pa.array(end - k * DAY_US).cast(ws.schema.field(2).type)))
    pq.write_table(pa.concat_tables(days), out / "history.parquet", compression="zstd", row_group_size=1_000_000)
    return {"readings": rows}


def measure(n_sensors: int, src: Path) -> dict:
    import pyarrow.parquet as pq

    from iot_platform.core.detectors import run_day, run_day_chunked
    from iot_platform.core.windows import compute_window_stats

    def rss_mb() -> int:
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)

    t0 = time.perf_counter()
    # sensor_id read as the dictionary Parquet stores it: the detectors then skip hashing 86 M strings
    history = pq.read_table(src / "history.parquet", columns=BASELINE_COLUMNS, read_dictionary=["sensor_id"])
    out: dict = {"sensors": n_sensors, "history_rows": history.num_rows}
    if n_sensors <= 100:
        readings = pq.read_table(src / "readings.parquet")
        tail = pq.read_table(src / "prev_tail.parquet")
        out["read_s"] = round(time.perf_counter() - t0, 2)
        out["readings"] = readings.num_rows
        out["rss_after_read_mb"] = rss_mb()
        t1 = time.perf_counter()
        import pyarrow as pa

        from iot_platform.core.simulator import DAY_US, day_start_us

        d0 = day_start_us(DAY)
        compute_window_stats(pa.concat_tables([tail, readings]), emit_start=d0, emit_end=d0 + DAY_US)
        out["window_stats_s"] = round(time.perf_counter() - t1, 2)
        t2 = time.perf_counter()
        ws, anomalies = run_day(readings, tail, history, day=DAY)
        out["run_day_s"] = round(time.perf_counter() - t2, 2)
    else:
        readings_file = pq.ParquetFile(src / "readings.parquet", read_dictionary=["sensor_id"])
        tail_file = pq.ParquetFile(src / "prev_tail.parquet", read_dictionary=["sensor_id"])
        out["read_s"] = round(time.perf_counter() - t0, 2)
        counted = {"readings": 0, "read_s": 0.0}

        def chunks():
            for i in range(readings_file.num_row_groups):
                t = time.perf_counter()
                day, tail = readings_file.read_row_group(i), tail_file.read_row_group(i)
                counted["read_s"] += time.perf_counter() - t
                counted["readings"] += day.num_rows
                yield day, tail

        t2 = time.perf_counter()
        run = run_day_chunked(chunks(), history, day=DAY)
        ws, anomalies = run.window_stats, run.anomalies
        out["run_day_s"] = round(time.perf_counter() - t2 - counted["read_s"], 2)
        out["read_s"] = round(out["read_s"] + counted["read_s"], 2)
        out["readings"] = counted["readings"]
    out["window_stats_rows"] = ws.num_rows
    out["anomalies"] = anomalies.num_rows
    out["readings_per_s"] = round(out["readings"] / out["run_day_s"])
    out["peak_rss_mb"] = rss_mb()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sensors", type=int, nargs="*", default=[10, 100, 1000])
    ap.add_argument("--prepare", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.prepare:
        print(json.dumps(prepare(int(args.prepare[0]), Path(args.prepare[1]))))
        return
    if args.measure:
        print(json.dumps(measure(int(args.measure[0]), Path(args.measure[1]))))
        return
    rows = []
    for n in args.sensors:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            subprocess.run([sys.executable, __file__, "--prepare", str(n), tmp], check=True, capture_output=True)
            print(f"prepared {n} sensors in {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
            res = subprocess.run([sys.executable, __file__, "--measure", str(n), tmp], check=True, capture_output=True,
                                 text=True)  # fmt: skip
            rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
            print(rows[-1], file=sys.stderr, flush=True)
    print("| sensors | readings | path | window_stats alone (s) | window_stats + anomalies (s) | readings/s | "
          "peak RSS (MB) | read Parquet (s) | window rows | anomalies |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        path = "run_day (one table)" if r["sensors"] <= 100 else f"run_day_chunked ({CHUNK_SENSORS} sensors per chunk)"
        print(f"| {r['sensors']:,} | {r['readings']:,} | {path} | {r.get('window_stats_s', 'n/a')} | {r['run_day_s']} | "
              f"{r['readings_per_s']:,} | {r['peak_rss_mb']:,} | {r['read_s']} | {r['window_stats_rows']:,} | "
              f"{r['anomalies']:,} |")  # fmt: skip


if __name__ == "__main__":
    main()
