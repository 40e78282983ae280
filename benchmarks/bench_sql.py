"""Benchmark: ad hoc SQL over a year of lake partitions, and refreshing the SQL models.

    python benchmarks/bench_sql.py                       # 365 days x 100 sensors (~5 min, 4.5 GB temp)
    python benchmarks/bench_sql.py --days 30             # quicker
    python benchmarks/bench_sql.py --keep /tmp/lake      # keep the lake; a second run reuses it

Builds a synthetic lake directly with numpy (no simulator run for a year):
``window_stats`` as the platform writes it (hopping windows, 300 s every 60 s, on
an epoch grid: 144,000 rows a day for 100 sensors), ``anomalies`` (~5 per sensor
a day, 20 % critical, plus fleet-wide events) and ``fault_labels``; then one day
of simulated raw ``readings`` (8.4 M rows) for ``sensor_readings_hourly``.
It then times, and prints as a markdown table:

* the first full build of every model, and a refresh after one new day lands;
* every data test (the asset checks);
* ad hoc queries in a ``QuerySession`` (what ``iot-platform sql`` runs), and the
  one-month query through the installed ``iot-platform sql`` command end to end
  (a new process: Python start-up, imports, session set-up, query, output).

Times are medians of ``--repeat`` runs after one warm-up, on the machine at hand.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from iot_platform.core.schemas import ANOMALIES, ANOMALY_TYPES, FAULT_LABELS, FLEET_ID, TS_TYPE, WINDOW_STATS
from iot_platform.core.simulator import FleetParams, simulate_day
from iot_platform.core.sqlmodels import load_project
from iot_platform.io.lake import Lake
from iot_platform.io.warehouse import QuerySession, default_project_dir, refresh, run_tests

START = dt.date(2024, 1, 1)
US = 1_000_000
SENSOR_TYPES = [t for t in ANOMALY_TYPES if t != "systemic"]
FAULTS = ["spike", "sensor_fault", "drift", "flatline", "high_vibration", "low_battery", "outage", "duplicates"]


def day_us(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days * 86_400 * US


def sensor_names(n: int) -> np.ndarray:
    return np.array([f"sensor_{i + 1:03d}" for i in range(n)], dtype=object)


def window_stats_day(rng: np.random.Generator, day: dt.date, n_sensors: int, hop_s: int, length_s: int) -> pa.Table:
    # partition D holds the windows ending in (D 00:00, D+1 00:00], as the platform writes them
    ends = day_us(day) + hop_s * US * np.arange(1, 86_400 // hop_s + 1)
    k = len(ends) * n_sensors
    end = np.tile(ends, n_sensors)
    hours = (end % (86_400 * US)) / (3_600 * US)
    temp = 22 + 3 * np.sin((hours - 9) / 24 * 2 * np.pi) + rng.normal(0, 0.5, k)
    n = rng.binomial(length_s, 0.98, k)
    return pa.table(
        {
            "sensor_id": np.repeat(sensor_names(n_sensors), len(ends)),
            "window_start": pa.array(end - length_s * US, TS_TYPE),
            "window_end": pa.array(end, TS_TYPE),
            "n_readings": n,
            "temp_mean": temp,
            "temp_std": rng.uniform(0.1, 0.3, k),
            "temp_min": temp - 0.4,
            "temp_max": temp + 0.4,
            "humidity_mean": 55 - 1.5 * (temp - 22) + rng.normal(0, 1, k),
            "pressure_mean": 1013 + rng.normal(0, 2, k),
            "vibration_mean": rng.uniform(0.1, 0.5, k),
            "vibration_max": rng.uniform(0.5, 1.0, k),
            "battery_level": rng.uniform(20, 100, k),
            "missing_rate": 1 - n / length_s,
        },
        schema=WINDOW_STATS,
    )


def anomalies_day(rng: np.random.Generator, day: dt.date, n_sensors: int) -> pa.Table:
    k = rng.poisson(5 * n_sensors)
    start = day_us(day) + rng.integers(0, 86_400 * US, k)
    duration = (rng.exponential(120, k) * US).astype(np.int64) + US
    sensors = sensor_names(n_sensors)[rng.integers(0, n_sensors, k)]
    types = np.array(SENSOR_TYPES, dtype=object)[rng.integers(0, len(SENSOR_TYPES), k)]
    severity = np.where(rng.random(k) < 0.2, "critical", "warning").astype(object)
    if rng.random() < 0.1:  # a fleet-wide event now and then
        sensors, types, severity = (np.append(sensors, FLEET_ID), np.append(types, "systemic"), np.append(severity, "critical"))
        start, duration = np.append(start, day_us(day) + 43_200 * US), np.append(duration, 600 * US)
        k += 1
    return pa.table(
        {
            "anomaly_id": [f"{day}-{i}" for i in range(k)],
            "sensor_id": sensors,
            "anomaly_type": types,
            "severity": severity,
            "metric": np.full(k, "temperature", dtype=object),
            "start_ts": pa.array(start, TS_TYPE),
            "end_ts": pa.array(start + duration, TS_TYPE),
            "value": rng.normal(40, 5, k),
            "threshold": np.full(k, 30.0),
            "score": rng.exponential(3, k),
            "n_points": rng.integers(1, 20, k),
            "systemic_id": pa.nulls(k, pa.string()),
            "message": np.full(k, "synthetic", dtype=object),
        },
        schema=ANOMALIES,
    )


def labels_day(rng: np.random.Generator, day: dt.date, n_sensors: int) -> pa.Table:
    k = rng.poisson(5 * n_sensors)
    start = day_us(day) + rng.integers(0, 86_400 * US, k)
    return pa.table(
        {
            "label_id": [f"L{day}-{i}" for i in range(k)],
            "sensor_id": sensor_names(n_sensors)[rng.integers(0, n_sensors, k)],
            "fault_type": np.array(FAULTS, dtype=object)[rng.integers(0, len(FAULTS), k)],
            "metric": np.full(k, "temperature", dtype=object),
            "start_ts": pa.array(start, TS_TYPE),
            "end_ts": pa.array(start + 300 * US, TS_TYPE),
            "magnitude": rng.normal(10, 3, k),
            "n_readings": rng.integers(1, 300, k),
        },
        schema=FAULT_LABELS,
    )


def write_day(lake: Lake, rng: np.random.Generator, day: dt.date, args: argparse.Namespace) -> int:
    ws = window_stats_day(rng, day, args.sensors, args.hop, args.length)
    lake.replace_partition("window_stats", day, ws)
    lake.replace_partition("anomalies", day, anomalies_day(rng, day, args.sensors))
    lake.replace_partition("fault_labels", day, labels_day(rng, day, args.sensors))
    return ws.num_rows


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float, object]:
    result = fn()  # warm-up (file system cache, DuckDB's metadata cache)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), min(times), result


def once(fn: Callable[[], object]) -> tuple[float, object]:
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--sensors", type=int, default=100)
    ap.add_argument("--hop", type=int, default=60, help="window hop, seconds")
    ap.add_argument("--length", type=int, default=300, help="window length, seconds")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--keep", type=Path, help="build the lake here and keep it (reused when it is already there)")
    args = ap.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-sql-"))
    lake = Lake(root)
    project = load_project(default_project_dir())
    rng = np.random.default_rng(1)
    rows: list[tuple[str, str, str]] = []
    try:
        t0 = time.perf_counter()
        existing = lake.days("window_stats")
        if existing:  # --keep DIR from an earlier run: reuse its lake
            last = existing[-1]
        else:
            for d in range(args.days):
                write_day(lake, rng, START + dt.timedelta(d), args)
            last = START + dt.timedelta(args.days - 1)
            lake.replace_partition("readings", last, simulate_day(FleetParams(n_sensors=args.sensors), last).readings)
        n_windows = sum(pq.ParquetFile(f).metadata.num_rows for day in lake.days("window_stats") for f in lake.files("window_stats", day))
        n_readings = sum(pq.ParquetFile(f).metadata.num_rows for day in lake.days("readings") for f in lake.files("readings", day))
        size_mb = sum(p.stat().st_size for p in (root / "lake").rglob("*.parquet")) / 1e6
        print(
            f"lake: {len(lake.days('window_stats'))} days x {args.sensors} sensors, {n_windows:,} window_stats rows "
            f"({args.length} s windows every {args.hop} s), {n_readings:,} raw readings; "
            f"{size_mb:,.0f} MB of Parquet, ready in {time.perf_counter() - t0:.0f} s",
            file=sys.stderr,
        )
        readings_day = lake.days("readings")[-1]
        month = (last.replace(day=1) - dt.timedelta(days=1)).replace(day=1)
        month = (month, last.replace(day=1) - dt.timedelta(days=1))

        s, _ = once(lambda: refresh(project, root))
        rows.append(("full build of all models (first refresh)", f"{s:.2f} s", f"{len(lake.days('window_stats'))} days of history"))
        new_day = last + dt.timedelta(1)
        write_day(lake, rng, new_day, args)
        s, built = once(lambda: refresh(project, root))
        rows.append(("refresh all models after one new day", f"{s:.2f} s", "tables rebuilt whole, views re-created; one atomic swap"))
        med, low, outcomes = timed(lambda: run_tests(project, root), max(1, args.repeat // 2))
        failed = sum(not o.passed for o in outcomes)
        rows.append((f"all {len(outcomes)} data tests (the asset checks)", f"{med:.2f} s", f"{failed} failed"))

        anomaly = f"(SELECT sensor_id, start_ts, end_ts FROM anomalies WHERE date = DATE '{month[0] + dt.timedelta(13)}' AND sensor_id = 'sensor_007' ORDER BY score DESC LIMIT 1)"
        queries = {
            "critical anomalies per sensor, one month": (
                "SELECT sensor_id, count(*) AS n_critical FROM anomalies WHERE severity = 'critical' "
                f"AND date BETWEEN DATE '{month[0]}' AND DATE '{month[1]}' GROUP BY sensor_id ORDER BY n_critical DESC"
            ),
            "the same over the whole year (no date filter)": (
                "SELECT sensor_id, count(*) AS n_critical FROM anomalies WHERE severity = 'critical' "
                "GROUP BY sensor_id ORDER BY n_critical DESC"
            ),
            "noisiest sensors, last 7 days (sensor_health_daily)": (
                "SELECT sensor_id, sum(n_anomalies) AS n, sum(n_critical) AS critical FROM sensor_health_daily "
                "WHERE date > getvariable('latest_date') - 7 GROUP BY ALL ORDER BY n DESC LIMIT 10"
            ),
            "sensor_status, every sensor": "SELECT * FROM sensor_status",
            "open_alerts": "SELECT * FROM open_alerts ORDER BY start_ts",
            "fleet_hourly, one day": f"SELECT * FROM fleet_hourly WHERE date = DATE '{month[0]}' ORDER BY hour",
            "fleet_hourly, one month": (
                f"SELECT * FROM fleet_hourly WHERE date BETWEEN DATE '{month[0]}' AND DATE '{month[1]}' ORDER BY hour"
            ),
            "a sensor's hours around an anomaly (sensor_hourly)": (
                f"WITH a AS {anomaly} SELECT h.hour, h.temp_mean, h.temp_max FROM sensor_hourly AS h, a "
                f"WHERE h.sensor_id = a.sensor_id AND h.date BETWEEN DATE '{month[0] + dt.timedelta(12)}' "
                f"AND DATE '{month[0] + dt.timedelta(14)}' AND h.hour BETWEEN a.start_ts - INTERVAL 6 HOUR "
                "AND a.end_ts + INTERVAL 6 HOUR ORDER BY h.hour"
            ),
            "a sensor's day of raw readings, hourly (sensor_readings_hourly)": (
                "SELECT hour, n_readings, temperature_mean, temperature_max FROM sensor_readings_hourly "
                f"WHERE date = DATE '{readings_day}' AND sensor_id = 'sensor_007' ORDER BY hour"
            ),
        }
        med, low, session = timed(lambda: QuerySession(project, root), 1)
        session.close()
        rows.append(("open a query session (views, attach, sandbox)", f"{med * 1000:.0f} ms", ""))
        with QuerySession(project, root) as session:
            for name, sql in queries.items():
                med, low, result = timed(lambda sql=sql: session.query(sql), args.repeat)
                rows.append((f"query: {name}", f"{med * 1000:.0f} ms", f"{result.num_rows} rows; min {low * 1000:.0f} ms"))

        script = Path(sys.executable).with_name("iot-platform")
        cmd = [str(script), "sql", queries["critical anomalies per sensor, one month"], "--format", "csv"]
        env = dict(os.environ, IOT_DATA_DIR=str(root))
        med, low, done = timed(lambda: subprocess.run(cmd, env=env, capture_output=True, check=True), args.repeat)
        rows.append(("`iot-platform sql` end to end, one-month query", f"{med * 1000:.0f} ms", f"new process each time; min {low * 1000:.0f} ms"))
        py = [sys.executable, "-c", "from iot_platform.cli import build_parser; build_parser()"]
        med, _, _ = timed(lambda: subprocess.run(py, check=True), args.repeat)
        rows.append(("  of which Python start-up and the CLI's imports (every subcommand)", f"{med * 1000:.0f} ms", ""))
        py = [sys.executable, "-c", "import iot_platform.cli.sql"]
        med, _, _ = timed(lambda: subprocess.run(py, check=True), args.repeat)
        rows.append(("  (Python start-up and `iot_platform.cli.sql`'s imports alone)", f"{med * 1000:.0f} ms", "duckdb, pyarrow, the lake"))
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)

    print(f"\n{len(lake.days('window_stats')) - 1} days + 1 new day x {args.sensors} sensors, {os.cpu_count()} CPUs\n")
    print("| what | median | notes |")
    print("|---|---:|---|")
    for what, t, note in rows:
        print(f"| {what} | {t} | {note} |")


if __name__ == "__main__":
    main()
