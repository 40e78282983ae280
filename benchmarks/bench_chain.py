"""Benchmark: the whole backfill chain, run the way a user runs it, against a naive reference chain.

    python benchmarks/bench_chain.py                         # 7 days x 100 sensors, then 1 day x 1,000 sensors
    python benchmarks/bench_chain.py --sensors 100 --days 7  # one size
    python benchmarks/bench_chain.py --sensors 100 --days 7 --repeat 3  # 3 rounds, chain and reference alternated

The chain is one CLI run in a fresh process, a temp IOT_DATA_DIR and a temp
DAGSTER_HOME (so the run and its step timings are recorded):

    dagster asset materialize -m iot_platform.definitions \\
        --select readings,fault_labels,window_stats,anomalies --partition-range START...END

Readings per second are over the run's own duration (from the instance's run
stats: process start and code loading excluded); the per-step breakdown comes
from the step stats; peak RSS is the summed RSS of the CLI process and its worker processes,
sampled 4 times a second (at least the largest process's, from wait4).

The naive reference chain runs in the same benchmark run, in its own process,
on the same days and fleet size (up to --reference-max sensor-days: it
needs ~10 GB for a day of 1,000 sensors): a vectorized NumPy generator (random walks
plus noise, 1 Hz, five metrics), DuckDB hopping windows (300 s every 60 s,
``GROUP BY`` over the readings joined to their windows), a per-reading trailing
z-score over every reading (NumPy cumulative sums over the previous 300
readings of the sensor), each day written to Parquet. No validation, no
faults, no detectors beyond the z-score, no Dagster: a floor for the work.

Also prints CPU seconds (user + sys) of both, a steadier figure than wall time
on a shared machine. With ``--repeat N`` the chain and the reference run in
turns, N times each: the host's speed drifts by 10-15 % over minutes, so each
round's ratio compares two runs made side by side, and the summary gives the
median and the range over the rounds. Prints markdown for the README.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

START = dt.date(2024, 1, 4)
ROOT = Path(__file__).resolve().parents[1]
SELECT = "readings,fault_labels,window_stats,anomalies"


def _tree_rss(root: int) -> int:
    """The summed RSS (bytes) of ``root`` and its descendants now (its worker processes too)."""
    parent: dict[int, int] = {}
    rss: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
            statm = Path(f"/proc/{d}/statm").read_text().split()
        except OSError:
            continue
        parent[int(d)] = int(stat.rsplit(")", 1)[1].split()[1])
        rss[int(d)] = int(statm[1]) * os.sysconf("SC_PAGE_SIZE")
    tree, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in tree]
        tree.update(kids)
        frontier += kids
    return sum(rss.get(p, 0) for p in tree)


PEAK_TREE_RSS: list[int] = [0]  # of the last _child_usage


def _child_usage(cmd: list[str], env: dict) -> tuple[float, float, int, str, str]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = threading.Event()

    def sample() -> None:  # the process tree's summed RSS, 4 times a second: the chain runs worker processes
        peak = 0
        while not done.wait(0.25):
            peak = max(peak, _tree_rss(proc.pid))
        PEAK_TREE_RSS[0] = peak

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    # read the pipes in full, then reap with wait4 for the child's own rusage
    out, err = proc.stdout.read(), proc.stderr.read()
    done.set()
    sampler.join()
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"Error: {' '.join(cmd[:5])} ... exited {proc.returncode}:\n{err[-3000:]}")
    # the peak of the summed process tree (the step's worker processes too), at least the largest process's
    return wall, ru.ru_utime + ru.ru_stime, max(ru.ru_maxrss * 1024, PEAK_TREE_RSS[0]), out, err


def chain(sensors: int, days: int) -> dict:
    end = START + dt.timedelta(days=days - 1)
    with tempfile.TemporaryDirectory(prefix="bench-chain-") as tmp:
        home, data = Path(tmp) / "home", Path(tmp) / "data"
        home.mkdir()
        data.mkdir()
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        env = dict(os.environ, DAGSTER_HOME=str(home), IOT_DATA_DIR=str(data), IOT_FLEET_SIZE=str(sensors))
        cmd = [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m", "iot_platform.definitions",
               "--select", SELECT, "--partition-range", f"{START}...{end}"]  # fmt: skip
        wall, cpu, rss, _, _ = _child_usage(cmd, env)
        os.environ["DAGSTER_HOME"] = str(home)
        import dagster as dg
        import pyarrow.parquet as pq

        from iot_platform.io.lake import Lake

        with dg.DagsterInstance.get() as instance:
            (run,) = instance.get_runs()
            stats = instance.get_run_stats(run.run_id)
            steps = {s.step_key: s.end_time - s.start_time for s in instance.get_run_step_stats(run.run_id)}
        lake = Lake(data)
        rows = sum(pq.ParquetFile(f).metadata.num_rows for d in lake.days("readings") for f in lake.files("readings", d))
    run_s = stats.end_time - stats.start_time
    return {"sensors": sensors, "days": days, "readings": rows, "run_s": run_s, "wall_s": wall, "cpu_s": cpu,
            "rss": rss, "steps": steps}  # fmt: skip


def reference(sensors: int, days: int) -> dict:
    cmd = [sys.executable, __file__, "--reference-only", "--sensors", str(sensors), "--days", str(days)]
    wall, cpu, rss, out, _ = _child_usage(cmd, dict(os.environ))
    got = json.loads(out)
    return {**got, "wall_s": wall, "cpu_s": cpu, "rss": rss}


def _reference_run(sensors: int, days: int) -> dict:
    """The naive chain, in this process: generate, DuckDB hopping windows, trailing z-score, Parquet."""
    import duckdb
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    con = duckdb.connect()
    con.execute("SET threads TO 2")
    rng = np.random.default_rng(42)
    n = 86_400
    total, seconds = 0, {"generate": 0.0, "windows": 0.0, "zscore": 0.0}
    with tempfile.TemporaryDirectory(prefix="bench-ref-") as tmp:
        t_all = time.perf_counter()
        for d in range(days):
            day0 = int(dt.datetime.combine(START + dt.timedelta(days=d), dt.time(), tzinfo=dt.UTC).timestamp() * 1e6)
            t0 = time.perf_counter()
            ts = np.tile(day0 + np.arange(n, dtype=np.int64) * 1_000_000, sensors)
            sid = np.repeat(np.array([f"sensor_{i:03d}" for i in range(sensors)], dtype=object), n)
            cols = {}
            for name, base, scale in (("temperature", 21, 0.01), ("humidity", 45, 0.02), ("pressure", 1013, 0.01),
                                      ("vibration", 0.3, 0.0), ("battery_level", 90, 0.0)):  # fmt: skip
                walk = np.cumsum(rng.normal(0, scale, (sensors, n)), axis=1) if scale else 0.0
                cols[name] = (base + walk + rng.normal(0, 0.1, (sensors, n))).ravel()
            table = pa.table({"sensor_id": pa.array(sid, pa.string()), "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
                              **{k: pa.array(v) for k, v in cols.items()}})  # fmt: skip
            seconds["generate"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            con.register("r", table)
            ws = con.sql(
                """
                WITH w AS (SELECT unnest(generate_series(0, 4)) AS k)
                SELECT sensor_id, time_bucket(INTERVAL 60 SECOND, ts) + INTERVAL 60 SECOND * (k + 1) AS window_end,
                       count(*) AS n, avg(temperature) AS temp_mean, stddev_samp(temperature) AS temp_std,
                       min(temperature) AS temp_min, max(temperature) AS temp_max,
                       avg(humidity) AS hum_mean, avg(pressure) AS pres_mean, avg(vibration) AS vib_mean,
                       max(vibration) AS vib_max, last(battery_level) AS battery
                FROM r, w GROUP BY ALL
                """
            ).to_arrow_table()
            con.unregister("r")
            pq.write_table(ws, f"{tmp}/ws-{d}.parquet", compression="zstd")
            seconds["windows"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            k = 300
            temp = cols["temperature"].reshape(sensors, n)
            c1 = np.cumsum(np.pad(temp, ((0, 0), (1, 0))), axis=1)
            c2 = np.cumsum(np.pad(temp * temp, ((0, 0), (1, 0))), axis=1)
            lo = np.maximum(np.arange(n) - k, 0)
            cnt = np.arange(n) - lo
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = (c1[:, np.arange(n)] - c1[:, lo]) / cnt
                var = (c2[:, np.arange(n)] - c2[:, lo]) / cnt - mean * mean
                z = (temp - mean) / np.sqrt(np.maximum(var, 1e-12))
            flagged = np.flatnonzero(np.abs(z.ravel()) > 4)
            pq.write_table(pa.table({"sensor_id": pa.array(sid[flagged], pa.string()), "z": z.ravel()[flagged]}),
                           f"{tmp}/z-{d}.parquet")  # fmt: skip
            pq.write_table(table, f"{tmp}/readings-{d}.parquet", compression="zstd")
            seconds["zscore"] += time.perf_counter() - t0
            total += table.num_rows
            del table, cols, temp, c1, c2, mean, var, z
        elapsed = time.perf_counter() - t_all
    return {"readings": total, "run_s": elapsed, "steps": seconds}


def _gb(b: int) -> str:
    return f"{b / 2**30:.2f} GB"


def _row(name: str, x: dict) -> str:
    return (f"| {name} | {x['run_s']:.1f} | {x['readings'] / x['run_s'] / 1e6:.2f} M | {x['cpu_s']:.1f} "
            f"| {x['readings'] / x['cpu_s'] / 1e6:.2f} M | {_gb(x['rss'])} | {x['wall_s']:.1f} |")  # fmt: skip


def report_chain(c: dict) -> str:
    lines = [
        f"### {c['days']} day(s) x {c['sensors']} sensors: {c['readings']:,} readings",
        "",
        "| chain | run (s) | readings/s | CPU (s) | readings per CPU-s | peak RSS (all processes) | process wall (s) |",
        "|---|---|---|---|---|---|---|",
        _row("iot-platform (`dagster asset materialize`, one run)", c),
        "",
        "| step (chain) | seconds | share |",
        "|---|---|---|",
    ]
    lines += [f"| {k} | {v:.1f} | {v / c['run_s']:.0%} |" for k, v in sorted(c["steps"].items(), key=lambda kv: -kv[1])]
    return "\n".join(lines)


def report_reference(c: dict, r: dict) -> str:
    lines = [
        "| chain | run (s) | readings/s | CPU (s) | readings per CPU-s | peak RSS (all processes) | process wall (s) |",
        "|---|---|---|---|---|---|---|",
        _row("naive reference (NumPy + DuckDB windows + z-score)", r),
        "",
        f"Chain / reference: **{c['run_s'] / r['run_s']:.2f}x** the time "
        f"({c['run_s'] / c['days']:.1f} s vs {r['run_s'] / r['days']:.1f} s a day), "
        f"**{c['cpu_s'] / r['cpu_s']:.2f}x** the CPU.",
        "",
        "| step (reference) | seconds |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v:.1f} |" for k, v in r["steps"].items()]
    return "\n".join(lines)


def report_rounds(rounds: list[tuple[dict, dict | None]]) -> str:
    """One row per round (chain, then reference), and the medians and ranges over the rounds."""
    lines = [
        "| round | chain run (s) | readings/s | CPU (s) | peak RSS | reference run (s) | chain / reference |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, (c, r) in enumerate(rounds, 1):
        ref = f"{r['run_s']:.1f} | {c['run_s'] / r['run_s']:.2f}x" if r else "- | -"
        lines.append(f"| {i} | {c['run_s']:.1f} | {c['readings'] / c['run_s'] / 1e6:.2f} M | {c['cpu_s']:.1f} | {_gb(c['rss'])} | {ref} |")
    rates = [c["readings"] / c["run_s"] / 1e6 for c, _ in rounds]
    lines += ["", f"Readings/s over {len(rounds)} rounds: median **{statistics.median(rates):.2f} M** "
              f"(range {min(rates):.2f}-{max(rates):.2f} M)."]  # fmt: skip
    ratios = [c["run_s"] / r["run_s"] for c, r in rounds if r]
    if ratios:
        lines[-1] += f" Chain / reference: median **{statistics.median(ratios):.2f}x** (range {min(ratios):.2f}-{max(ratios):.2f}x)."
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sensors", type=int)
    ap.add_argument("--days", type=int)
    ap.add_argument("--reference-max", type=int, default=700, help="run the reference up to this many sensor-days")
    ap.add_argument("--repeat", type=int, default=1, help="rounds of chain then reference, for medians and ranges")
    ap.add_argument("--reference-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.reference_only:
        got = _reference_run(args.sensors, args.days)
        print(json.dumps({**got, "days": args.days, "sensors": args.sensors}))
        return
    sizes = [(args.sensors, args.days)] if args.sensors else [(100, 7), (1000, 1)]
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start\n")
    for sensors, days in sizes:
        rounds: list[tuple[dict, dict | None]] = []
        for _ in range(args.repeat):
            c = chain(sensors, days)
            print(report_chain(c) + "\n", flush=True)
            r = None
            # the naive reference holds a day of the fleet many times over: ~10 GB at 1,000 sensors
            if sensors * days <= args.reference_max:
                r = reference(sensors, days)
                r["days"] = days
                print(report_reference(c, r) + "\n", flush=True)
            rounds.append((c, r))
        if args.repeat > 1:
            print(report_rounds(rounds) + "\n", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
