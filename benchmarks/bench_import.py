"""Import throughput: a 10-million-row CSV through the real ``iot-platform import``.

Generates the CSV (100 sensors at 1 Hz, ISO 8601 timestamps with 'Z', all
five metrics) into a temporary directory, then runs the console script as a
child process and measures its wall time and peak resident memory (from
``wait4``, the child's own ``ru_maxrss``). Checks that every row landed.

    python benchmarks/bench_import.py [--rows 10000000]

Benchmarks are not tests: this prints a markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from iot_platform.io.landing import landing_files, read_quarantine

SENSORS = 100
CHUNK = 1_000_000


def generate(path: Path, rows: int) -> None:
    """Write ``rows`` readings as CSV, a million rows at a time (vectorized)."""
    rng = np.random.default_rng(7)
    start = int(dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc).timestamp())
    ids = pa.array([f"sensor_{i:03d}" for i in range(SENSORS)])
    with pcsv.CSVWriter(path, pa.schema([("sensor_id", pa.string()), ("timestamp", pa.string()),
                                         *[(m, pa.float64()) for m in ("temperature", "humidity", "pressure",
                                                                      "vibration", "battery_level")]]),
                        write_options=pcsv.WriteOptions(quoting_style="none")) as writer:  # fmt: skip
        for lo in range(0, rows, CHUNK):
            n = min(CHUNK, rows - lo)
            k = np.arange(lo, lo + n)
            seconds = pa.array(start + k // SENSORS, pa.int64()).cast(pa.timestamp("s"))
            ts = pc.strftime(seconds, format="%Y-%m-%dT%H:%M:%SZ")
            table = pa.table(
                {
                    "sensor_id": ids.take(pa.array(k % SENSORS)),
                    "timestamp": ts,
                    "temperature": np.round(21 + rng.normal(0, 2, n), 2),
                    "humidity": np.round(45 + rng.normal(0, 5, n), 1),
                    "pressure": np.round(1013 + rng.normal(0, 3, n), 1),
                    "vibration": np.round(np.abs(rng.normal(0.3, 0.1, n)), 2),
                    "battery_level": np.round(100 - k / rows * 20, 1),
                }
            )
            writer.write_table(table)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_import_"))
    try:
        csv_path = tmp / "fleet.csv"
        t = time.perf_counter()
        generate(csv_path, args.rows)
        gen_s = time.perf_counter() - t
        size_mb = csv_path.stat().st_size / 1e6

        script = Path(sys.executable).with_name("iot-platform")
        cmd = [str(script)] if script.is_file() else [sys.executable, "-c", "import sys; from iot_platform.cli import main; sys.exit(main())"]
        t = time.perf_counter()
        proc = subprocess.Popen([*cmd, "import", str(csv_path)], env={**os.environ, "IOT_DATA_DIR": str(tmp / "data")},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        out, err = proc.communicate()
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            print(err.decode(), file=sys.stderr)
            return 1
        landing = tmp / "data" / "landing"
        files = landing_files(landing)
        landed = sum(pq.read_metadata(p).num_rows for p in files)
        assert landed == args.rows and read_quarantine(landing) == [], (landed, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rss_mb = _child_peak_rss_mb()  # the only child is the import (generation ran in this process)
    print(f"\n### Import throughput ({args.rows:,} rows, {len(os.sched_getaffinity(0))} CPUs, Python {sys.version.split()[0]})\n")
    print("| measurement | value |")
    print("|---|---:|")
    print(f"| CSV size | {size_mb:,.0f} MB ({gen_s:.1f} s to generate) |")
    print(f"| `iot-platform import` wall time (incl. start-up) | {wall:.1f} s |")
    print(f"| rows/s | {args.rows / wall:,.0f} |")
    print(f"| MB/s of CSV | {size_mb / wall:,.0f} |")
    print(f"| peak RSS of the import process | {rss_mb:,.0f} MB |")
    print(f"| landing files | {len(files)} ({landed:,} rows, 0 quarantined) |")
    return 0


def _child_peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux: kilobytes


if __name__ == "__main__":
    sys.exit(main())
