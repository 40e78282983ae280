"""The dashboard's reads and `iot-platform sql` over a lake on an object store (SeaweedFS), timed.

Starts a SeaweedFS S3 server on 127.0.0.1 (the test fixture's, tests/servers/s3.py) and
writes one day of 100 sensors at 1 Hz (8.64 M readings) as Delta tables under
``s3://<bucket>/bench``: the day's compacted file plus ``--parts`` micro-batch parts of 30 s
(so a reader sees the many files of a live day), a day of 60 s window statistics and three
anomaly episodes per sensor. Numpy-built (the point is the reads). Then, medians of
``--repeat``:

* dashboard (io.dashboard_data.DashboardData, in process): the fleet's last readings on a fresh
  reader (every file aggregated) and on a warm one (the per-file cache: only new files are
  read), the recent episodes, one sensor's 1-hour readings, its day of readings (averaged), its
  day of windows and episodes;
* `iot-platform sql "SELECT count(*) FROM readings"` as a subprocess (session start included),
  and the same count in an open session (QuerySession.query).

    python benchmarks/bench_store_readers.py [--sensors 100] [--parts 20] [--repeat 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from servers.s3 import run_seaweedfs  # noqa: E402

US = 1_000_000
DAY = dt.date(2024, 1, 3)
D0 = int(dt.datetime.combine(DAY, dt.time(), dt.UTC).timestamp()) * US
PART_S = 30


def _readings(ids: np.ndarray, lo_s: int, hi_s: int, rng: np.random.Generator) -> pa.Table:
    from iot_platform.core.schemas import READINGS, conform

    per = hi_s - lo_s
    n = len(ids) * per
    ts = np.tile(D0 + np.arange(lo_s, hi_s, dtype=np.int64) * US, len(ids))
    temp = 22 + 2 * np.sin(ts / US / 86_400 * 2 * np.pi) + rng.normal(0, 0.15, n)
    return conform(pa.table({
        "sensor_id": np.repeat(ids, per), "ts": pa.array(ts).cast(pa.timestamp("us", tz="UTC")), "temperature": temp,
        "humidity": 60 - 1.5 * (temp - 22), "pressure": np.full(n, 1013.0), "vibration": rng.uniform(0.1, 0.5, n),
        "battery_level": np.full(n, 80.0), "source": pa.nulls(n, pa.string()), "seq": pa.nulls(n, pa.int64()),
    }), READINGS)  # fmt: skip


def build_lake(lake, n: int, parts: int) -> None:
    from iot_platform.core.schemas import ANOMALIES, WINDOW_STATS, conform

    rng = np.random.default_rng(1)
    ids = np.array([f"sensor_{i:04d}" for i in range(n)], dtype=object)
    live_s = 86_400 - parts * PART_S  # the compacted day, then the parts of the last minutes
    lake.replace_partition("readings", DAY, _readings(ids, 0, live_s, rng))
    for i in range(parts):
        lo = live_s + i * PART_S
        lake.write_part("readings", DAY, f"mb-{i:04d}", _readings(ids, lo, lo + PART_S, rng))
    wper = 1440
    wend = np.tile(D0 + (np.arange(wper, dtype=np.int64) + 1) * 60 * US, n)
    wmean = 22 + 2 * np.sin(wend / US / 86_400 * 2 * np.pi)
    m = n * wper
    lake.replace_partition("window_stats", DAY, conform(pa.table({
        "sensor_id": np.repeat(ids, wper), "window_start": pa.array(wend - 300 * US).cast(pa.timestamp("us", tz="UTC")),
        "window_end": pa.array(wend).cast(pa.timestamp("us", tz="UTC")), "n_readings": np.full(m, 300),
        "temp_mean": wmean, "temp_std": np.full(m, 0.15), "temp_min": wmean - 0.4, "temp_max": wmean + 0.4,
        "humidity_mean": 60 - 1.5 * (wmean - 22), "pressure_mean": np.full(m, 1013.0), "vibration_mean": np.full(m, 0.3),
        "vibration_max": np.full(m, 0.5), "battery_level": np.full(m, 80.0), "missing_rate": np.zeros(m),
    }), WINDOW_STATS))  # fmt: skip
    k = 3 * n
    start = D0 + rng.integers(0, 86_000, k) * US
    lake.replace_partition("anomalies", DAY, conform(pa.table({
        "anomaly_id": [f"a-{i}" for i in range(k)], "sensor_id": np.repeat(ids, 3), "anomaly_type": ["spike"] * k,
        "severity": rng.choice(["warning", "critical"], k), "metric": ["temperature"] * k,
        "start_ts": pa.array(start).cast(pa.timestamp("us", tz="UTC")), "end_ts": pa.array(start + 20 * US).cast(pa.timestamp("us", tz="UTC")),
        "value": rng.uniform(30, 40, k), "threshold": np.full(k, 5.0), "score": rng.uniform(3, 9, k), "n_points": np.ones(k, np.int64),
        "systemic_id": pa.nulls(k, pa.string()), "message": ["synthetic spike"] * k,
    }), ANOMALIES), metadata={"iot.until_us": str(D0 + 86_400 * US)})  # fmt: skip


def timed(fn, repeat: int) -> tuple[float, object]:
    """Median seconds and the last result; a run that fails is reported (its error), not timed."""
    times, out, failed = [], None, []
    for _ in range(repeat):
        t = time.perf_counter()
        try:
            out = fn()
        except Exception as exc:  # noqa: BLE001 - the benchmark reports the failure and goes on
            failed.append(str(exc).splitlines()[0][:160])
            continue
        times.append(time.perf_counter() - t)
    if failed:
        out = f"{len(failed)} of {repeat} runs failed: {failed[0]}"
    return (statistics.median(times) if times else float("nan")), out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sensors", type=int, default=100)
    ap.add_argument("--parts", type=int, default=20, help="micro-batch parts of 30 s on top of the compacted day")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="iot-bench-store-") as tmp:
        with run_seaweedfs(Path(tmp)) as server:
            os.environ.update(server.env())
            os.environ["IOT_LAKE_URL"] = f"s3://{server.bucket}/bench"
            from iot_platform.core.sqlmodels import load_project
            from iot_platform.io.dashboard_data import DashboardData
            from iot_platform.io.lake import Lake
            from iot_platform.io.objstore import lake_store_from_env
            from iot_platform.io.warehouse import QuerySession, default_project_dir

            root = Path(tmp) / "root"
            root.mkdir()
            lake = Lake(root, lake_store_from_env())
            t = time.perf_counter()
            build_lake(lake, args.sensors, args.parts)
            n_files = len(lake.files("readings", DAY))
            print(f"lake: {args.sensors} sensors, 1 day, {n_files} readings files, written in {time.perf_counter() - t:.1f} s")
            rows: list[tuple[str, float, object]] = []
            sensor, end = "sensor_0000", D0 + 86_400 * US
            cold, last = timed(lambda: DashboardData(root).last_readings(), args.repeat)
            rows.append(("dashboard: fleet's last readings, fresh reader (every file)", cold, last))
            data = DashboardData(root)
            timed(data.last_readings, 1)  # fills the per-file cache
            rows.append(("dashboard: fleet's last readings, warm (per-file cache)", *timed(data.last_readings, args.repeat)))
            rows.append(("dashboard: recent episodes", *timed(data.recent_episodes, args.repeat)))
            rows.append(("dashboard: one sensor, 1 h of readings", *timed(lambda: data.sensor_readings(sensor, end - 3600 * US, end), args.repeat)))
            rows.append(("dashboard: one sensor, 1 day of readings (averaged)", *timed(lambda: data.sensor_readings(sensor, D0, end), args.repeat)))
            rows.append(("dashboard: one sensor, 1 day of windows", *timed(lambda: data.sensor_windows(sensor, D0, end), args.repeat)))
            rows.append(("dashboard: one sensor, 1 day of episodes", *timed(lambda: data.sensor_episodes(sensor, D0, end), args.repeat)))
            count_sql = "SELECT count(*) AS n FROM readings"
            cli = [str(Path(sys.executable).parent / "iot-platform"), "sql", "--data-dir", str(root), "--format", "csv", count_sql]

            def run_cli() -> str:
                proc = subprocess.run(cli, capture_output=True, text=True, check=False)
                if proc.returncode != 0:
                    raise RuntimeError(proc.stderr.strip())
                return proc.stdout.strip().splitlines()[-1]

            rows.append(("`iot-platform sql` count(*) of readings (process, session start included)", *timed(run_cli, args.repeat)))
            with QuerySession(load_project(default_project_dir()), root, remote=Lake(root, lake_store_from_env())) as session:
                rows.append(("QuerySession.query count(*) of readings (open session)",
                             *timed(lambda: session.query(count_sql).column(0)[0].as_py(), args.repeat)))  # fmt: skip
            print(f"| what (median of {args.repeat}) | seconds | result |\n|---|---:|---|")
            for what, s, result in rows:
                shown = f"{result.num_rows} rows" if isinstance(result, pa.Table) else result
                print(f"| {what} | {s:.3f} | {shown} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
