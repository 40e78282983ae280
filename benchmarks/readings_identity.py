"""Check: the `readings` chain's outputs are bit-for-bit those of a saved reference.

    python benchmarks/readings_identity.py save DIR     # before a change
    python benchmarks/readings_identity.py check DIR    # after it: exit 1 on any difference

Covers ``simulate`` (a whole day of 100 sensors and slices of it), ``validate_readings``
of simulated chunks and of messy imported-style tables (metrics missing, NaN,
out-of-range values, duplicates exact and conflicting, out-of-order rows, unknown
and null sensors, null ts; with and without a registry and partition bounds), and
the `readings`, `rejected_readings` and `fault_labels` partitions that
``build_readings_day`` writes (simulated fleet plus a raw layer). Tables are
compared with ``Table.equals`` (values and column order; chunking ignored).
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

DAY = dt.date(2024, 1, 10)


def outputs() -> dict[str, pa.Table]:
    from iot_platform.core.registry import platform_registry
    from iot_platform.core.schemas import LANDING, READINGS, conform
    from iot_platform.core.simulator import DAY_US, FleetParams, day_start_us, simulate
    from iot_platform.core.validation import validate_readings
    from iot_platform.io.ingest import build_readings_day
    from iot_platform.io.lake import Lake

    out: dict[str, pa.Table] = {}
    fleet = FleetParams(seed=42, n_sensors=100)
    d0 = day_start_us(DAY)
    whole = simulate(fleet, d0, d0 + DAY_US)
    out["sim_day"], out["sim_day_labels"] = whole.readings, whole.labels
    some = [3, 17, 42, 99, 0]
    for name, lo, hi, sensors in [
        ("slice_30s", d0 + 3_600_000_000, d0 + 3_630_000_000, None),
        ("slice_hour", d0 + 13 * 3_600_000_000, d0 + 14 * 3_600_000_000, some),
        ("slice_odd", d0 + 12_345_678, d0 + 40_000_000_000 + 7, range(10, 30)),
        ("slice_2days", d0 - 5 * 3_600_000_000, d0 + 2 * 3_600_000_000, range(5)),
    ]:
        s = simulate(fleet, lo, hi, sensors)
        out[name], out[name + "_labels"] = s.readings, s.labels
    s = simulate(FleetParams(seed=7, n_sensors=12, sample_interval_s=0.5), d0, d0 + DAY_US // 4)
    out["sim_half_s"], out["sim_half_s_labels"] = s.readings, s.labels

    def put(name: str, table: pa.Table, *args, **kw) -> None:
        v = validate_readings(table, *args, **kw)
        out[name + "_good"], out[name + "_rejected"] = v.good, v.rejected
        out[name + "_dups"] = pa.table({"duplicates": [v.duplicates]})

    for lo in range(0, 100, 25):
        put(f"val_sim_{lo}", simulate(fleet, d0, d0 + DAY_US, range(lo, lo + 25)).readings)
        put(f"val_sim_bounded_{lo}", simulate(fleet, d0, d0 + DAY_US, range(lo, lo + 5)).readings, d0, d0 + DAY_US)
    registry = platform_registry()
    for seed in range(4):
        messy = _messy(simulate(fleet, d0, d0 + 2 * 3_600_000_000, range(seed, seed + 6)).readings, seed, d0)
        put(f"val_messy_{seed}", messy)
        put(f"val_messy_bounded_{seed}", messy, d0, d0 + DAY_US)
        put(f"val_messy_registry_{seed}", messy, d0, d0 + DAY_US, registry=registry)
        for m in ("humidity", "pressure"):
            messy = messy.drop_columns([m])
        put(f"val_messy_few_{seed}", messy, d0, d0 + DAY_US)
    put("val_empty", READINGS.empty_table())

    with tempfile.TemporaryDirectory() as tmp:
        lake = Lake(tmp)
        small = FleetParams(seed=42, n_sensors=23)
        stats = build_readings_day(lake, small, DAY)
        out["chain_readings"] = lake.read("readings", [DAY])
        out["chain_rejected"] = lake.read("rejected_readings", [DAY])
        out["chain_labels"] = lake.read("fault_labels", [DAY])
        raw = _messy(simulate(FleetParams(seed=9, n_sensors=30), d0, d0 + DAY_US // 8, range(20, 30)).readings, 11, d0)
        raw = raw.filter(pc.and_(pc.is_valid(raw["sensor_id"]), pc.is_valid(raw["ts"])))  # the raw layer has both
        raw = conform(raw.append_column("received_at", raw["ts"].fill_null(d0)), LANDING)
        lake.write_part("raw_readings", DAY, "ref", raw)
        stats2 = build_readings_day(lake, small, DAY, now_us=d0 + DAY_US // 3)
        out["chain2_readings"] = lake.read("readings", [DAY])
        out["chain2_rejected"] = lake.read("rejected_readings", [DAY])
        out["chain2_labels"] = lake.read("fault_labels", [DAY])
        out["chain_stats"] = pa.table(
            {k: [getattr(st, k) for st in (stats, stats2)] for k in ("rows", "sensors", "rejected", "duplicates", "expected", "ts_min", "ts_max", "labels")}
        )
    return out


def _messy(t: pa.Table, seed: int, d0: int) -> pa.Table:
    """Simulated readings made to look like a bad import: garbage values, copies, disorder, strangers."""
    rng = np.random.default_rng(seed)
    n = t.num_rows
    cols = {name: t[name].combine_chunks() for name in t.column_names}
    for m, bad in (("temperature", [np.nan, -400.0, 20_000.0, np.inf, 500.0]), ("humidity", [np.nan, 2000.0, -np.inf]),
                   ("pressure", [-5.0, np.nan, 200_000.0]), ("vibration", [-1.0, np.nan]), ("battery_level", [-2000.0, np.nan])):  # fmt: skip
        v = cols[m].to_numpy(zero_copy_only=False).copy()
        at = rng.choice(n, size=n // 50, replace=False)
        v[at] = rng.choice(bad, size=len(at))
        nulls = np.zeros(n, bool)
        nulls[rng.choice(n, size=n // 40, replace=False)] = True
        cols[m] = pa.array(v, pa.float64(), mask=nulls)
    # a few rows with every metric bad or missing
    allbad = rng.choice(n, size=n // 200, replace=False)
    for m in ("temperature", "humidity", "pressure", "vibration", "battery_level"):
        v = cols[m].to_numpy(zero_copy_only=False).copy()
        v[allbad] = np.nan
        cols[m] = pa.array(v, pa.float64(), mask=np.isin(np.arange(n), allbad[::2]))
    sid = np.asarray(cols["sensor_id"].to_numpy(zero_copy_only=False), dtype=object)
    sid[rng.choice(n, size=n // 100, replace=False)] = "stranger_x"
    sid[rng.choice(n, size=n // 300, replace=False)] = None
    cols["sensor_id"] = pa.array(sid, pa.string())
    ts = cols["ts"].cast(pa.int64()).to_numpy(zero_copy_only=False).copy()
    ts[rng.choice(n, size=n // 300, replace=False)] = d0 - 10  # outside the partition
    tsnull = np.zeros(n, bool)
    tsnull[rng.choice(n, size=n // 500, replace=False)] = True
    cols["ts"] = pa.array(ts, pa.int64(), mask=tsnull).cast(t.schema.field("ts").type)
    table = pa.table(cols, schema=t.schema)
    exact = rng.choice(n, size=n // 100, replace=False)
    clash = rng.choice(n, size=n // 100, replace=False)
    changed = table.take(clash)
    changed = changed.set_column(changed.schema.get_field_index("temperature"), "temperature",
                                 pc.add(changed["temperature"], 0.5))  # fmt: skip
    table = pa.concat_tables([table, table.take(exact), changed])
    return table.take(rng.permutation(table.num_rows))


def _same(a: pa.Table, b: pa.Table) -> bool:
    """``a.equals(b)``, except that a NaN equals a NaN with the same bits (rejected rows keep their NaN)."""
    if a.schema != b.schema or a.num_rows != b.num_rows:
        return False
    for x, y in zip(a.columns, b.columns):
        if pa.types.is_floating(x.type):
            if not pc.is_null(x).equals(pc.is_null(y)):
                return False
            vx, vy = (np.asarray(c.to_numpy(zero_copy_only=False)) for c in (x, y))
            valid = ~pc.is_null(x).to_numpy(zero_copy_only=False)
            if not np.array_equal(vx.view(np.uint64)[valid], vy.view(np.uint64)[valid]):
                return False
        elif not x.equals(y):
            return False
    return True


def main() -> None:
    mode, where = sys.argv[1], Path(sys.argv[2])
    got = outputs()
    if mode == "save":
        where.mkdir(parents=True, exist_ok=True)
        for name, t in got.items():
            with ipc.new_file(where / f"{name}.arrow", t.schema) as w:
                w.write_table(t)
        print(f"saved {len(got)} tables to {where}")
        return
    bad = []
    for name, t in got.items():
        ref = ipc.open_file(where / f"{name}.arrow").read_all()
        if not _same(t, ref):
            bad.append(name)
    print(f"{len(got) - len(bad)}/{len(got)} tables identical" + (f"; DIFFERENT: {', '.join(bad)}" if bad else ""))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
