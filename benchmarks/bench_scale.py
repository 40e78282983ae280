"""Benchmark: a backfill of 7 days x 100 sensors with 1 and with 2 workers, on local disk or an object store.

    python benchmarks/bench_scale.py                       # 7 days, 100 sensors, workers 1 then 2
    python benchmarks/bench_scale.py --days 3 --sensors 20 --workers 1 2 3
    python benchmarks/bench_scale.py --lake-url s3://bucket/prefix   # the lake on a store (AWS_* set)

Each backfill is the real command (`iot-platform backfill START END --workers N`)
in a fresh data root and Dagster home (SQLite), as a user runs it. Reports wall
time, readings per second, and from the run's event log the seconds each step
took (the readings phase that parallelises and the detection phase that does
not), with the load average, since the machine may be shared. Prints a markdown
table for the notes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

START = dt.date(2024, 1, 1)


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("iot-platform")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "iot_platform.cli"]


def _steps(home: Path, run_id: str) -> dict[str, float]:
    """Seconds from STEP_START to STEP_SUCCESS of each step of the run."""
    import dagster as dg

    starts: dict[str, float] = {}
    out: dict[str, float] = {}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for r in instance.all_logs(run_id):
            e = r.dagster_event
            if e is None or e.step_key is None:
                continue
            if e.event_type_value == "STEP_START":
                starts[e.step_key] = r.timestamp
            elif e.event_type_value == "STEP_SUCCESS":
                out[e.step_key] = r.timestamp - starts[e.step_key]
    return out


def one(days: int, sensors: int, workers: int, lake_url: str | None = None) -> dict:
    end = START + dt.timedelta(days=days - 1)
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        env = dict(os.environ, IOT_DATA_DIR=f"{tmp}/data", DAGSTER_HOME=f"{tmp}/home", IOT_FLEET_SIZE=str(sensors))
        env.pop("IOT_DAGSTER_POSTGRES_URL", None)
        env.pop("IOT_LAKE_URL", None)
        if lake_url:  # a fresh prefix per run: every run starts from an empty lake
            env["IOT_LAKE_URL"] = f"{lake_url.rstrip('/')}/bench-{uuid.uuid4().hex[:8]}"
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        proc = subprocess.run([*_cli(), "backfill", START.isoformat(), end.isoformat(), "--workers", str(workers)],
                              env=env, capture_output=True, text=True)  # fmt: skip
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"backfill failed:\n{proc.stdout}\n{proc.stderr}")
        summary = proc.stdout.splitlines()[-1]
        readings = int(re.search(r"readings ([0-9,]+)", summary).group(1).replace(",", ""))
        steps = _steps(Path(tmp) / "home", summary.rsplit(" ", 1)[1])
    readings_steps = {k: v for k, v in steps.items() if k.startswith(("readings_days", "fleet_readings"))}
    detection = sum(v for k, v in steps.items() if k.startswith(("detection_days", "window_stats_and_anomalies")))
    return {
        "workers": workers, "days": days, "sensors": sensors, "readings": readings, "wall_s": wall,
        "readings_per_s": readings / wall, "readings_steps_s": readings_steps, "detection_s": detection,
        "load_before": load, "load_after": os.getloadavg()[0],
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--sensors", type=int, default=100)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--lake-url", help="s3://bucket/prefix: the lake on an object store (AWS_* variables set)")
    args = ap.parse_args()
    rows = [one(args.days, args.sensors, w, args.lake_url) for w in args.workers]
    print(f"cores: {os.cpu_count()}; lake: {args.lake_url or 'local disk'}")
    print("| workers | days x sensors | readings | wall | readings/s | readings step(s) | detection step | load avg before / after |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        steps = " + ".join(f"{v:.1f}" for v in r["readings_steps_s"].values())
        print(f"| {r['workers']} | {r['days']} x {r['sensors']} | {r['readings']:,} | {r['wall_s']:.1f} s | "
              f"{r['readings_per_s']:,.0f} | {steps} s | {r['detection_s']:.1f} s | "
              f"{r['load_before']:.1f} / {r['load_after']:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
