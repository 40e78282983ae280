"""Soak: random SIGKILLs over micro-batches, backfills, imports and re-runs of committed batches.

Drives one simulated day on a compressed clock, like `iot-platform ui` does in
real time, with every writer in a real process of its own:

* micro-batches, each SIGKILLed at a random moment with probability 1/2 and then
  retried with the same batch id (as Dagster's run retry does);
* backfills of the day, SIGKILLed the same way and rerun: half of them readings,
  then window_stats, anomaly_points and anomalies, the other half the one-pass
  chain of a `group:lake` backfill (io.chain: readings and detection together);
* imports (a landing file of an extra sensor) landing between them;
* re-executions of an already committed batch id (a re-run from the UI).

At the end it checks the lake against what must be there: every simulated
reading up to the last batch and every imported row, exactly once (0 lost,
0 duplicated), every Parquet file readable (0 torn), and the day's derived
tables equal to the day computed from scratch.

    python benchmarks/soak_integrity.py --kills 50        # about 3 minutes here
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from iot_platform.core import simulator as sim
from iot_platform.core.schemas import LANDING, conform
from iot_platform.core.validation import validate_readings
from iot_platform.io.downstream import DownstreamSettings, compute_day
from iot_platform.io.lake import TABLES, Lake, write_parquet_atomic

DAY = dt.date(2024, 1, 3)
D0 = sim.day_start_us(DAY)
S = 1_000_000
FIRST = "2024-01-01"
FLEET = dict(seed=11, n_sensors=4, sample_interval_s=5.0)

WORKER = textwrap.dedent(
    """
    import datetime as dt, sys
    from iot_platform.core import simulator as sim
    from iot_platform.io.chain import build_chain_days
    from iot_platform.io.downstream import DownstreamSettings, build_day, make_update_downstream
    from iot_platform.io.ingest import build_readings_day
    from iot_platform.io.lake import Lake
    from iot_platform.io.microbatch import run_micro_batch
    root, what, batch_id, until = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    lake, fleet, first = Lake(root), sim.FleetParams(**{fleet!r}), dt.date.fromisoformat({first!r})
    settings = DownstreamSettings(fleet=fleet)
    print("started", flush=True)
    if what == "batch":
        run_micro_batch(lake, batch_id, until, fleet=fleet, landing=lake.root / "landing", first_day=first,
                        downstream=make_update_downstream(settings, first))
    elif what == "chain":
        for _ in build_chain_days(lake, fleet, [dt.date.fromisoformat({day!r})], settings, now_us=lambda: until):
            pass
    else:
        day = dt.date.fromisoformat({day!r})
        build_readings_day(lake, fleet, day, now_us=until)
        build_day(lake, day, settings, now_us=until)
    print("done", flush=True)
    """
).format(fleet=FLEET, first=FIRST, day=DAY.isoformat())


def _run(root: Path, what: str, batch_id: str, until: int, kill_after: float | None) -> bool:
    """Run one writer in its own process; SIGKILL it after ``kill_after`` s. True if it finished."""
    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(root), what, batch_id, str(until)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "started"
    if kill_after is not None:
        time.sleep(kill_after)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return False
    out, _ = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"{what} {batch_id} failed with exit code {proc.returncode}")
    return True


def _import(root: Path, k: int, rows: list[tuple[int, float]]) -> None:
    ts, value = zip(*rows)
    t = pa.table(
        {
            "sensor_id": pa.array(["imported"] * len(rows), pa.string()),
            "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "temperature": pa.array(value, pa.float64()),
            "source": pa.array([f"import:f{k}.csv"] * len(rows), pa.string()),
        }
    )
    write_parquet_atomic(conform(t, LANDING), root / "landing" / "import-soak" / f"f{k:04d}.parquet")


def soak(root: Path, kills: int, seed: int) -> dict:
    rng = random.Random(seed)
    lake = Lake(root)
    fleet = sim.FleetParams(**FLEET)
    clock = D0 + 600 * S
    committed: list[tuple[str, int]] = []
    imported: list[tuple[int, float]] = []
    counts = {"kills": 0, "batches": 0, "backfills": 0, "chain_backfills": 0, "reruns": 0, "imports": 0}
    while counts["kills"] < kills:
        action = rng.choices(["batch", "backfill", "rerun", "import"], weights=[5, 2, 2, 2])[0]
        if action == "import":
            k = counts["imports"]
            rows = [(D0 + (k * 50 + i) * 7 * S + 3 * S, 20.0 + i / 10) for i in range(50)]
            _import(root, k, rows)
            imported += rows
            counts["imports"] += 1
            continue
        if action == "rerun" and committed:
            batch_id, until = rng.choice(committed)
            counts["reruns"] += 1
        elif action == "backfill":
            batch_id, until = rng.choice(["backfill", "chain"]), clock
            counts["chain_backfills" if batch_id == "chain" else "backfills"] += 1
        else:
            clock += 30 * S * rng.randint(1, 10)
            batch_id, until = f"mb-{clock}", clock
            counts["batches"] += 1
        what = batch_id if batch_id in ("backfill", "chain") else "batch"
        kill_after = rng.uniform(0.3, 2.0) if rng.random() < 0.5 else None
        if not _run(root, what, batch_id, until, kill_after):
            counts["kills"] += 1
            _run(root, what, batch_id, until, None)  # the retry, with the same batch id
        if what == "batch" and (batch_id, until) not in committed:
            committed.append((batch_id, until))
    # a last batch ingests the imports still waiting and brings everything up to date
    clock += 30 * S
    _run(root, "batch", f"mb-{clock}", clock, None)
    return {**counts, **check(lake, fleet, clock, imported)}


def check(lake: Lake, fleet: sim.FleetParams, until: int, imported: list[tuple[int, float]]) -> dict:
    """The lake against what must be in it: every day from DAY to the one ``until`` falls in."""
    days = [DAY + dt.timedelta(days=i) for i in range((until - 1 - D0) // sim.DAY_US + 1)]
    torn = [str(f) for f in lake.lake_dir.rglob("*.parquet") if "_quarantine" not in f.parts and not _readable(f)]
    # and no table's snapshot names a file that is not there (a commit that outran its data)
    torn += [str(f) for t in TABLES for f in lake.all_files(t) if not f.exists()]
    got = lake.read("readings", days)
    key = pc.binary_join_element_wise(got["sensor_id"], got["ts"].cast(pa.int64()).cast(pa.string()), "|")
    duplicated = got.num_rows - pc.count_distinct(key).as_py()
    want_sim = validate_readings(sim.simulate(fleet, D0, until).readings).good
    sim_keys = set(zip(want_sim["sensor_id"].to_pylist(), want_sim["ts"].cast(pa.int64()).to_pylist()))
    have = set(zip(got["sensor_id"].to_pylist(), got["ts"].cast(pa.int64()).to_pylist()))
    want = sim_keys | {("imported", ts) for ts, _ in imported}
    settings = DownstreamSettings(fleet=fleet)
    ws_equal = an_equal = True
    order = [("sensor_id", "ascending"), ("window_end", "ascending")]
    cols = ["sensor_id", "anomaly_type", "start_ts", "end_ts"]
    an_order = [(c, "ascending") for c in cols]
    for day in days:
        ref = compute_day(lake, day, settings, now_us=until)
        ws_equal &= lake.read("window_stats", [day]).sort_by(order).equals(ref.window_stats.sort_by(order))
        an = lake.read("anomalies", [day]).select(cols).sort_by(an_order)
        an_equal &= an.equals(ref.anomalies.select(cols).sort_by(an_order))
    return {
        "days": len(days),
        "readings": got.num_rows,
        "lost": len(want - have),
        "duplicated": duplicated,
        "unexpected": len(have - want),
        "torn_files": len(torn),
        "window_stats_equal_to_scratch": ws_equal,
        "anomalies_equal_to_scratch": an_equal,
    }


def _readable(path: Path) -> bool:
    try:
        pq.read_table(path)
        return True
    except Exception:  # noqa: BLE001 - any failure to read is a torn file
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=50, help="SIGKILLs to deliver (default 50)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="iot-soak-") as tmp:
        result = soak(Path(tmp), args.kills, args.seed)
    result["seconds"] = round(time.monotonic() - started, 1)
    for k, v in result.items():
        print(f"{k:32s} {v}")
    ok = (result["lost"], result["duplicated"], result["unexpected"], result["torn_files"]) == (0, 0, 0, 0)
    ok = ok and result["window_stats_equal_to_scratch"] and result["anomalies_equal_to_scratch"]
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
