"""Benchmark: micro-batches. Our own work per 30-second batch (at 00:01 and at 23:59), and
end-to-end latency through the real Dagster daemon.

    python benchmarks/bench_micro_batch.py work --sensors 10 1000
    IOT_LAKE_URL=s3://bucket/prefix python benchmarks/bench_micro_batch.py work --sensors 1000  # on a store
    python benchmarks/bench_micro_batch.py latency --sensors 10 1000 --batches 12

`work` drives `run_micro_batch` with an injected clock (no Dagster): the previous
day is backfilled (the drift baseline), then 10 batches of 30 s right after
midnight; the day is then filled with 30-minute batches up to 23:55, and 10
batches of 30 s end the day. `latency` starts `dagster-daemon` on a fresh
instance (today already caught up by direct batches, so the timed batches are
ordinary ones) and reads each micro-batch run's end time from the instance:
latency = run end - the oldest reading the batch brought into `anomalies`
(the previous watermark), and - the newest one (its own watermark).
Prints markdown tables for the README.
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
import uuid
from pathlib import Path

S = 1_000_000
ROOT = Path(__file__).resolve().parents[1]


def _settings(fleet):
    from iot_platform.orchestration.resources import DetectionResource

    return DetectionResource().settings(fleet)


def work(n_sensors: int) -> list[dict]:
    from iot_platform.core import simulator as sim
    from iot_platform.io.downstream import compute_day, make_update_downstream, write_day
    from iot_platform.io.ingest import build_readings_day
    from iot_platform.io.lake import Lake
    from iot_platform.io.microbatch import run_micro_batch
    from iot_platform.io.objstore import lake_store_from_env

    fleet = sim.FleetParams(seed=42, n_sensors=n_sensors)
    settings = _settings(fleet)
    day = dt.date(2024, 1, 3)
    d0 = sim.day_start_us(day)
    rows = []
    url = os.environ.get("IOT_LAKE_URL")  # the lake on an object store: a fresh prefix per run
    store = lake_store_from_env({**os.environ, "IOT_LAKE_URL": f"{url.rstrip('/')}/bench-{uuid.uuid4().hex[:8]}"}) if url else None
    with tempfile.TemporaryDirectory() as tmp:
        lake = Lake(tmp, store)
        prev = day - dt.timedelta(days=1)
        build_readings_day(lake, fleet, prev)
        write_day(lake, prev, compute_day(lake, prev, settings))
        update = make_update_downstream(settings)

        def batch(until: int) -> tuple[float, dict]:
            t0 = time.perf_counter()
            r = run_micro_batch(lake, f"mb-{until}", until, fleet=fleet, landing=Path(tmp) / "landing",
                                first_day=prev, downstream=update)  # fmt: skip
            return time.perf_counter() - t0, r.seconds

        batch(d0 + 30 * S)  # the day's first batch
        early = [batch(d0 + (60 + 30 * i) * S) for i in range(10)]
        t = d0 + 1800 * S
        while t <= d0 + (23 * 3600 + 55 * 60) * S:
            batch(t)
            t += 1800 * S
        batch(d0 + (23 * 3600 + 55 * 60) * S)
        late = [batch(d0 + (23 * 3600 + 55 * 60 + 30 * (i + 1)) * S) for i in range(10)]
        parts = len(lake.files("readings", day))
    for label, runs in (("00:01", early), ("23:59", late)):
        secs = [r[0] for r in runs]
        rows.append({
            "sensors": n_sensors, "when": label, "readings_per_batch": n_sensors * 30,
            "median_s": statistics.median(secs), "p95_s": sorted(secs)[int(0.95 * (len(secs) - 1))],
            "simulate": statistics.median(r[1].get("simulate", 0) for r in runs),
            "validate_write": statistics.median(r[1].get("validate_write", 0) for r in runs),
            "downstream": statistics.median(r[1].get("downstream", 0) for r in runs),
            "parts": parts,
        })  # fmt: skip
    return rows


def latency(n_sensors: int, batches: int) -> dict:
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    from iot_platform.core import simulator as sim
    from iot_platform.io.downstream import make_update_downstream
    from iot_platform.io.lake import Lake
    from iot_platform.io.microbatch import run_micro_batch

    tmp = Path(tempfile.mkdtemp())
    data, home = tmp / "data", tmp / "home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    fleet = sim.FleetParams(seed=42, n_sensors=n_sensors)
    lake = Lake(data)
    update = make_update_downstream(_settings(fleet))
    today = dt.datetime.now(dt.UTC).date()
    # catch today up directly, so the daemon's batches are ordinary 30-second ones
    while True:
        now = time.time_ns() // 1000 // (30 * S) * (30 * S)
        r = run_micro_batch(lake, f"prep-{now}", now, fleet=fleet, landing=data / "landing",
                            first_day=today - dt.timedelta(days=1), downstream=update)  # fmt: skip
        if r.caught_up_to is None:
            break
    env = dict(os.environ, DAGSTER_HOME=str(home), IOT_DATA_DIR=str(data), IOT_FLEET_SIZE=str(n_sensors))
    proc = subprocess.Popen([sys.executable, "-m", "dagster._daemon", "run", "-w", "workspace.yaml"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    lateness = _settings(fleet).allowed_lateness_s * S
    try:
        instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
        deadline = time.monotonic() + 40 * (batches + 3)
        while time.monotonic() < deadline:
            done = [r for r in instance.get_runs(filters=dg.RunsFilter(job_name="micro_batch_job"))
                    if r.status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)]  # fmt: skip
            if len(done) >= batches + 1:
                break
            time.sleep(2)
        runs = sorted(done, key=lambda r: r.run_config["ops"]["micro_batch"]["config"]["until_us"])
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), "a micro-batch run failed"
        oldest, newest, overhead = [], [], []
        for prev, run in zip(runs, runs[1:]):
            stats = instance.get_run_stats(run.run_id)
            until = run.run_config["ops"]["micro_batch"]["config"]["until_us"]
            prev_until = prev.run_config["ops"]["micro_batch"]["config"]["until_us"]
            end_us = stats.end_time * S
            oldest.append((end_us - (prev_until - lateness)) / S)
            newest.append((end_us - (until - lateness)) / S)
            (mat,) = [e for e in instance.all_logs(run.run_id) if e.dagster_event and e.dagster_event.event_type_value == "STEP_OUTPUT"][:1]
            own = mat.dagster_event.event_specific_data.metadata["duration_seconds"].value
            overhead.append((stats.end_time - stats.launch_time) - own)
        return {
            "sensors": n_sensors, "batches": len(newest),
            "newest_median": statistics.median(newest), "newest_p95": sorted(newest)[int(0.95 * (len(newest) - 1))],
            "oldest_median": statistics.median(oldest), "oldest_p95": sorted(oldest)[int(0.95 * (len(oldest) - 1))],
            "overhead_median": statistics.median(overhead),
        }  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["work", "latency"])
    ap.add_argument("--sensors", type=int, nargs="*", default=[10, 1000])
    ap.add_argument("--batches", type=int, default=12)
    args = ap.parse_args()
    os.chdir(ROOT)
    if args.what == "work":
        print("| sensors | batch at | readings/batch | median s | p95 s | simulate | validate+write | downstream | readings parts that day |")
        print("|---|---|---|---|---|---|---|---|---|")
        for n in args.sensors:
            for r in work(n):
                print(f"| {r['sensors']} | {r['when']} | {r['readings_per_batch']:,} | {r['median_s']:.3f} | {r['p95_s']:.3f} | "
                      f"{r['simulate']:.3f} | {r['validate_write']:.3f} | {r['downstream']:.3f} | {r['parts']} |", flush=True)  # fmt: skip
    else:
        print("| sensors | batches | latency newest reading median / p95 (s) | latency oldest reading median / p95 (s) | Dagster overhead per run (s) |")
        print("|---|---|---|---|---|")
        for n in args.sensors:
            r = latency(n, args.batches)
            print(f"| {r['sensors']} | {r['batches']} | {r['newest_median']:.1f} / {r['newest_p95']:.1f} | "
                  f"{r['oldest_median']:.1f} / {r['oldest_p95']:.1f} | {r['overhead_median']:.1f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
