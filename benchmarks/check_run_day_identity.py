"""Check that a change to the detection compute leaves its output byte for byte the same.

    python benchmarks/check_run_day_identity.py --save /tmp/ref      # before the change
    python benchmarks/check_run_day_identity.py --compare /tmp/ref   # after it: exit 1 on any difference

Runs ``run_day`` (window_stats, points, anomalies) and ``detect_points`` over:

* ``fleet``: the day of bench_core_cpu (100 simulated sensors at 1 Hz, previous day's tail, seven days of
  window_stats; prepared by bench_detection_speed into --cache);
* ``imported``: 20 of those sensors made to look imported: a slow sensor at 5-minute intervals, nulls and
  NaN, values outside the valid range, duplicated (sensor, ts) keys with other values, rows out of order;
  run in small chunks of sensors (several frames) and also without tail or history.

Each table is saved as Parquet; comparing checks equal schemas, equal values and equal float bits
(NaN included). Not a test: it compares with the output of another version of the code.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))

DAY = dt.date(2024, 1, 10)


def _inputs(cache: Path, sensors: int) -> tuple[pa.Table, pa.Table, pa.Table]:
    from bench_detection_speed import BASELINE_COLUMNS, prepare

    d = cache / f"{sensors}"
    if not (d / "history.parquet").exists():
        d.mkdir(parents=True, exist_ok=True)
        prepare(sensors, d)
    history = pq.read_table(d / "history.parquet", columns=BASELINE_COLUMNS, read_dictionary=["sensor_id"])
    return pq.read_table(d / "readings.parquet"), pq.read_table(d / "prev_tail.parquet"), history


def _imported(readings: pa.Table, rng: np.random.Generator) -> pa.Table:
    """20 sensors' readings damaged the way imported files are (deterministic for a seed)."""
    ids = sorted(set(readings.column("sensor_id").unique().to_pylist()))[:20]
    t = readings.filter(pc.is_in(readings.column("sensor_id"), pa.array(ids))).combine_chunks()
    n = t.num_rows
    cols = {c: t.column(c).to_numpy(zero_copy_only=False).copy() for c in ("temperature", "humidity", "pressure",
                                                                          "vibration", "battery_level")}
    cols["temperature"][rng.choice(n, n // 200, replace=False)] = np.nan
    cols["temperature"][rng.choice(n, 50, replace=False)] = 200.0  # out of range
    cols["pressure"][rng.choice(n, 50, replace=False)] = 5000.0
    cols["vibration"][rng.choice(n, 30, replace=False)] = -1.0
    hum_null = np.zeros(n, bool)
    hum_null[rng.choice(n, n // 100, replace=False)] = True
    # a stretch of a sensor with no humidity at all
    hum_null[n // 3 : n // 3 + 5_000] = True
    arrays = {
        "sensor_id": t.column("sensor_id").cast(pa.string()),
        "ts": t.column("ts"),
        **{c: pa.array(v, pa.float64()) for c, v in cols.items()},
    }
    arrays["humidity"] = pa.array(cols["humidity"], pa.float64(), mask=hum_null)
    base = pa.table(arrays)
    # a slow sensor: one reading every 5 minutes, from the first sensor's
    first = base.filter(pc.equal(base.column("sensor_id"), ids[0]))
    ts = pc.cast(first.column("ts"), pa.int64()).to_numpy()
    slow = first.filter(pa.array(ts % 300_000_000 == 0))
    slow = slow.set_column(0, "sensor_id", pa.array(["slow-5min"] * slow.num_rows, pa.string()))
    # duplicated keys with other values
    dup_rows = rng.choice(n, 200, replace=False)
    dups = base.take(pa.array(dup_rows))
    dups = dups.set_column(2, "temperature", pc.add(dups.column("temperature"), 0.5))
    out = pa.concat_tables([base, slow, dups])
    # rows out of order: reverse a middle block
    idx = np.arange(out.num_rows)
    idx[n // 2 : n // 2 + 10_000] = idx[n // 2 : n // 2 + 10_000][::-1]
    return out.take(pa.array(idx))


def run(cache: Path) -> dict[str, pa.Table]:
    from iot_platform.core.calendar import day_start_us
    from iot_platform.core.detectors import DetectionParams, run_day_chunked
    from iot_platform.core.detectors.pipeline import detect_points
    from iot_platform.core.windows import US

    readings, tail, history = _inputs(cache, 100)
    out: dict[str, pa.Table] = {}

    def day(name: str, r, t, h, chunk_rows=1_000_000) -> None:
        res = run_day_chunked([(r, t)], h, DetectionParams(), day=DAY, chunk_rows=chunk_rows)
        out[f"{name}_window_stats"] = res.window_stats
        out[f"{name}_points"] = res.points
        out[f"{name}_anomalies"] = res.anomalies

    day("fleet", readings, tail, history)
    imp = _imported(readings, np.random.default_rng(7))
    imp_tail = tail.filter(pc.is_in(tail.column("sensor_id"), imp.column("sensor_id").unique()))
    day("imported", imp, imp_tail, history, chunk_rows=300_000)
    day("imported_cold", imp, None, None, chunk_rows=300_000)
    a = day_start_us(DAY) + 10 * 3600 * US
    ctx = pa.concat_tables([imp_tail.select(imp.column_names).cast(imp.schema), imp])
    ws = out["imported_window_stats"]
    out["imported_detect_points"] = detect_points(ctx, ws, None, emit_start=a, emit_end=a + 3600 * US)
    return out


def _bits(col: pa.ChunkedArray) -> np.ndarray:
    """A float column's bits (nulls as 0 plus the validity), for an exact comparison NaN included."""
    c = col.combine_chunks()
    valid = np.asarray(c.is_valid().to_numpy(zero_copy_only=False))
    v = np.asarray(pc.fill_null(c, 0.0).to_numpy(zero_copy_only=False), dtype=np.float64).view(np.int64)
    return np.concatenate([v, valid.astype(np.int64)])


def compare(a: pa.Table, b: pa.Table) -> str | None:
    if a.schema != b.schema:
        return f"schema differs:\n{a.schema}\nvs\n{b.schema}"
    if a.num_rows != b.num_rows:
        return f"{a.num_rows} rows vs {b.num_rows}"
    if not a.equals(b):
        bad = [c for c in a.column_names if not a.column(c).equals(b.column(c))]
        return f"values differ in columns {bad}"
    for f in a.schema:
        if pa.types.is_floating(f.type) and not np.array_equal(_bits(a.column(f.name)), _bits(b.column(f.name))):
            return f"float bits differ in {f.name}"
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--save", type=Path)
    g.add_argument("--compare", type=Path)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/bench_core_cpu"))
    args = ap.parse_args()
    tables = run(args.cache)
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        for name, t in tables.items():
            pq.write_table(t, args.save / f"{name}.parquet")
            print(f"{name}: {t.num_rows} rows")
        return
    failed = False
    for name, t in tables.items():
        ref = pq.read_table(args.compare / f"{name}.parquet")
        problem = compare(ref, pq.read_table(_roundtrip(t)))
        print(f"{name}: {t.num_rows} rows {'OK' if problem is None else 'DIFFERENT: ' + problem}")
        failed |= problem is not None
    sys.exit(1 if failed else 0)


def _roundtrip(t: pa.Table) -> pa.BufferReader:
    """The table as the reference was stored (through Parquet), so both sides compare alike."""
    sink = pa.BufferOutputStream()
    pq.write_table(t, sink)
    return pa.BufferReader(sink.getvalue())


if __name__ == "__main__":
    main()
