"""The detectors' vectorized kernels equal their plain definitions, bit for bit.

The fast paths (corrections on the few invalid rows instead of a copy of the valid ones, sorting networks
for short rows) must give exactly what the straightforward computation gives, including the edge cases:
invalid rows first or last, runs of them across a sensor change, a sensor with no valid value, gaps.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from iot_platform.core.calendar import day_start_us
from iot_platform.core.detectors import DetectionParams, drift_baseline
from iot_platform.core.detectors.drift import _group_median, baseline_frame
from iot_platform.core.detectors.inputs import BaselineFrame
from iot_platform.core.detectors.spike import _successive_differences, column_nanmedian, row_nanmedian, sorting_network
from iot_platform.core.schemas import METRICS, TS_TYPE
from iot_platform.core.windows import US, ReadingsSource, WindowParams, _median_spacings, aggregate_panes, build_frame


def _frame(rng: np.random.Generator, n_sensors: int, rows: int, interval_s: float = 1.0):
    code = np.sort(rng.integers(0, n_sensors, rows))
    # some gaps beyond max_gap; sensor 1 samples every 5 intervals (its own pair limit)
    steps = rng.choice([1, 1, 1, 1, 2, 7], rows) * round(interval_s * US) * np.where(code == 1, 5, 1)
    ts = np.cumsum(steps)
    values = {m: np.round(rng.normal(20, 1, rows), 1) for m in METRICS}  # rounded: some zero differences
    names = np.array([f"s{i:02d}" for i in range(n_sensors)], dtype=object)
    frame = build_frame(names, code, ts, values, WindowParams())
    return frame, aggregate_panes(frame)


def _reference(frame, panes, metric, ok, max_gap):
    """The definition: the valid rows alone, each paired with the previous valid row of the same sensor when
    at most ``max_gap`` intervals earlier; per pane of the later row."""
    rows = np.flatnonzero(ok)
    n_panes = len(panes.key)
    if len(rows) < 2:
        z = np.zeros(n_panes, np.int64)
        return z.astype(float), z, z, np.full(n_panes, np.inf)
    x, code, ts = frame.values[metric][rows], frame.code[rows], frame.ts[rows]
    lim = np.floor(max_gap * frame.interval_us).astype(np.int64)
    close = np.zeros(len(rows), bool)
    close[1:] = (code[1:] == code[:-1]) & (ts[1:] - ts[:-1] <= lim[code[1:]])
    d = np.zeros(len(rows))
    d[1:] = np.abs(x[1:] - x[:-1]) * close[1:]
    full = {k: np.zeros(frame.n_rows, t) for k, t in (("d", float), ("close", bool), ("zero", bool))}
    full["d"][rows], full["close"][rows], full["zero"][rows] = d, close, close & ~(d > 0)
    step = np.full(frame.n_rows, np.inf)
    step[rows] = np.where(d > 0, d, np.inf)
    s = panes.start
    return (np.add.reduceat(full["d"], s), np.add.reduceat(full["close"], s, dtype=np.int64),
            np.add.reduceat(full["zero"], s, dtype=np.int64), np.minimum.reduceat(step, s))  # fmt: skip


def _invalid_masks(rng: np.random.Generator, frame) -> dict[str, np.ndarray]:
    n = frame.n_rows
    few = np.ones(n, bool)
    few[rng.choice(n, 30, replace=False)] = False
    edges = np.ones(n, bool)
    edges[:3] = edges[-2:] = False  # the first and the last rows
    across = np.ones(n, bool)
    b = int(frame.offsets[2])
    across[b - 3 : b + 4] = False  # a run over a sensor change
    absent = np.ones(n, bool)
    absent[frame.offsets[1] : frame.offsets[2]] = False  # a sensor without a valid value
    many = rng.random(n) > 0.6
    return {"all": np.ones(n, bool), "few": few, "edges": edges, "across": across, "absent": absent,
            "many": many, "one": np.eye(1, n, n // 2, dtype=bool)[0], "none": np.zeros(n, bool)}  # fmt: skip


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("max_gap", [1.5, 3.0])
def test_successive_differences_equal_their_definition(seed: int, max_gap: float):
    rng = np.random.default_rng(seed)
    base, panes = _frame(rng, 5, 3_000)
    assert len(set(base.interval_us.tolist())) == 2
    for name, ok in _invalid_masks(rng, base).items():
        # invalid rows hold NaN (a null) or a finite value out of range: neither may leak into a difference
        values = dict(base.values, temperature=np.where(ok, base.values["temperature"],
                                                        np.where(np.arange(base.n_rows) % 2, np.nan, 500.0)))
        frame = dataclasses.replace(base, values=values)
        got = _successive_differences(frame, panes, "temperature", ok, max_gap)
        want = _reference(frame, panes, "temperature", ok, max_gap)
        for g, w, what in zip(got, want, ("sum", "count", "zeros", "step")):
            assert g.dtype == w.dtype, (name, what)
            assert np.array_equal(g.view(np.int64) if g.dtype == float else g,
                                  w.view(np.int64) if w.dtype == float else w), (name, what)  # fmt: skip


def _median_by_sort(m: np.ndarray) -> np.ndarray:
    """The definition: each row sorted (NaN last), the middle value or the mean of the two middle ones."""
    out = np.empty(len(m))
    for r, row in enumerate(np.sort(m, axis=1)):
        c = int(np.count_nonzero(~np.isnan(row)))
        out[r] = (row[max((c - 1) // 2, 0)] + row[c // 2]) / 2
    return out


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 6, 7, 8, 9, 12])
def test_row_nanmedian_equals_the_sorted_middle_bit_for_bit(k: int):
    rng = np.random.default_rng(k)
    m = np.round(rng.normal(0, 2, (400, k)), 1)  # rounded: ties
    m[rng.random(m.shape) < 0.3] = np.nan
    m[:5] = np.nan  # rows without a value: NaN
    m[5:10, 0] = np.inf
    m[10:15, -1] = -np.inf
    with np.errstate(invalid="ignore"):
        want = _median_by_sort(m)
    got = row_nanmedian(m)
    assert np.array_equal(got.view(np.int64), want.view(np.int64))
    med, count = column_nanmedian(np.ascontiguousarray(m.T))
    assert np.array_equal(med.view(np.int64), want.view(np.int64))
    assert count.tolist() == np.count_nonzero(~np.isnan(m), axis=1).tolist()


def test_row_nanmedian_keeps_the_sign_of_zero_as_the_sort_does():
    m = np.array([[-0.0, 0.0, 1.0], [0.0, -0.0, 1.0], [-1.0, 0.0, -0.0], [np.nan, -0.0, np.nan]])
    got = row_nanmedian(m)
    assert np.signbit(got).tolist() == [False, True, False, True]  # numpy's sort keeps equal values in order
    assert np.array_equal(got.view(np.int64), _median_by_sort(m).view(np.int64))


@pytest.mark.parametrize("k", range(1, 11))
def test_sorting_networks_sort_every_input(k: int):
    # 0-1 principle: a comparator network sorts every input if it sorts every sequence of 0s and 1s
    bits = (np.arange(2**k)[:, None] >> np.arange(k)) & 1
    cols = [bits[:, i].copy() for i in range(k)]
    for i, j in sorting_network(k):
        cols[i], cols[j] = np.minimum(cols[i], cols[j]), np.maximum(cols[i], cols[j])
    assert np.array_equal(np.stack(cols, axis=1), np.sort(bits, axis=1))


def _readings(rng: np.random.Generator, sensors: list[str], t0: int, rows: int, chunks: int) -> pa.Table:
    """Readings grouped by sensor, ts ascending per sensor, split into ``chunks`` record batches."""
    sid = np.sort(rng.choice(sensors, rows))
    ts = t0 + np.concatenate([np.arange(np.count_nonzero(sid == s)) for s in sorted(set(sid))]) * US
    t = pa.table({"sensor_id": sid.astype(str), "ts": pa.array(ts, pa.int64()).cast(TS_TYPE),
                  **{m: pa.array(rng.normal(20, 1, rows), pa.float64(),
                                 mask=rng.random(rows) < 0.05) for m in METRICS}})  # fmt: skip
    return pa.Table.from_batches(t.to_batches(max_chunksize=max(1, rows // chunks)))


def _frame_by_sort(tables: list[pa.Table], names: np.ndarray, lo: int, hi: int):
    """The definition: the tables' rows of codes lo..hi-1 concatenated, stably sorted by code."""
    both = pa.concat_tables([t.select(["sensor_id", "ts", *METRICS]).cast(tables[0].select(
        ["sensor_id", "ts", *METRICS]).schema) for t in tables])  # fmt: skip
    code = np.searchsorted(names, np.asarray(both.column("sensor_id").to_pylist(), dtype=object))
    keep = (code >= lo) & (code < hi)
    order = np.argsort(code[keep], kind="stable")
    sel = np.flatnonzero(keep)[order]
    ts = pc.cast(both.column("ts"), pa.int64()).to_numpy()[sel]
    values = {m: both.column(m).to_numpy(zero_copy_only=False).astype(float)[sel] for m in METRICS}
    return code[sel] - lo, ts, values


def test_a_frame_of_several_tables_is_their_rows_merged_by_sensor():
    rng = np.random.default_rng(3)
    sensors = [f"s{i}" for i in range(7)]
    tail = _readings(rng, sensors[1:], 0, 900, 3)  # s0 has no tail
    day = _readings(rng, sensors, 10_000 * US, 5_000, 4)
    day = day.set_column(day.schema.get_field_index("humidity"), "humidity",
                         day.column("humidity").cast(pa.float32()))  # fmt: skip
    tail = tail.drop_columns(["pressure"])  # a column the tail lacks
    full = tail.append_column("pressure", pa.nulls(tail.num_rows, pa.float64()))
    src = ReadingsSource([tail, day])  # the day (5,000 rows) encoded from its runs, the tail row by row
    names = src.names
    ids = np.concatenate([t.column("sensor_id").to_numpy(zero_copy_only=False) for t in (tail, day)])
    assert src.rows_per_sensor().tolist() == [int(np.count_nonzero(ids == n)) for n in names]
    # the same rows out of sensor order (gathered, not sliced): the same frame
    shuffled = day.take(pa.array(rng.permutation(day.num_rows)))
    assert ReadingsSource([tail, shuffled]).frame(0, 7, WindowParams()).values["temperature"].view(np.int64).tolist() \
        == src.frame(0, 7, WindowParams()).values["temperature"].view(np.int64).tolist()  # fmt: skip
    for lo, hi in [(0, 7), (2, 5), (6, 7)]:
        frame = src.frame(lo, hi, WindowParams())
        code, ts, values = _frame_by_sort([full, day], names, lo, hi)
        assert frame.code.tolist() == code.tolist()
        assert frame.ts.tolist() == ts.tolist()
        for m in METRICS:
            assert np.array_equal(frame.values[m].view(np.int64), values[m].view(np.int64)), m


@pytest.mark.parametrize("mixed", [False, True])
def test_median_spacings_are_each_sensors_median_spacing(mixed: bool):
    rng = np.random.default_rng(5)
    sizes = [2, 3, 150, 400, 1, 250]  # sensor 4 has one reading: not asked
    steps = []
    for i, k in enumerate(sizes):
        every = 300 if (mixed and i % 2) else 1
        irregular = mixed and i == 3
        jitter = rng.integers(1, 9, k) if irregular else rng.choice([every, every, every, 2 * every, 7 * every], k)
        jitter[:3] = every  # the short sensors regular: one candidate for all when not mixed
        steps.append(np.cumsum(jitter) * US)
    ts = np.concatenate(steps)
    offsets = np.r_[0, np.cumsum(sizes)]
    sensors = np.array([0, 1, 2, 3, 5])
    want = [float(np.median(np.diff(ts[offsets[s] : offsets[s + 1]]))) for s in sensors]
    assert _median_spacings(ts, offsets, sensors) == want


def _previous_days(rng: np.random.Generator, sensors: list[str], days: int) -> pa.Table:
    """WINDOW_STATS-like rows of ``days`` days, one window a minute, some without a usable mean."""
    ends = np.arange(1, days * 1440 + 1) * 60 * US + day_start_us(dt.date(2024, 1, 1))
    n = len(ends)
    cols: dict[str, list] = {c: [] for c in ("sensor_id", "window_end", "n_readings", "temp_mean", "temp_std",
                                             "humidity_mean", "pressure_mean", "vibration_mean", "vibration_max")}  # fmt: skip
    for s in sensors:
        cols["sensor_id"].append(np.full(n, s, dtype=object))
        cols["window_end"].append(ends)
        nr = np.where(rng.random(n) < 0.02, 5, 300)
        if s == sensors[1]:
            nr[np.arange(n) % 1440 < 60] = 5  # its first hour of every day unusable: slots without a median
        cols["n_readings"].append(nr)
        for c, (mu, sd) in {"temp_mean": (20, 2), "temp_std": (0.3, 0.1), "humidity_mean": (50, 5),
                            "pressure_mean": (1000, 3), "vibration_mean": (1, 0.2), "vibration_max": (1.5, 0.3)}.items():  # fmt: skip
            v = rng.normal(mu, sd, n)
            v[rng.random(n) < 0.01] = np.nan
            cols[c].append(v)
    t = {c: np.concatenate(v) for c, v in cols.items()}
    return pa.table({**t, "sensor_id": pa.array(t["sensor_id"], pa.string()),
                     "window_end": pa.array(t["window_end"], pa.int64()).cast(TS_TYPE)})  # fmt: skip


def test_the_baseline_frame_equals_the_baseline_table_read_back():
    rng = np.random.default_rng(11)
    past = _previous_days(rng, ["a", "b", "c"], 3)
    params = DetectionParams()
    for names in (["a", "b", "c"], ["b", "c", "d"], ["x"]):  # also sensors the days lack, and days' sensors left out
        names = np.array(names, dtype=object)
        got = baseline_frame(past, params, names)
        want = BaselineFrame.from_table(drift_baseline(past, params), names)
        assert got.known.tolist() == want.known.tolist()
        assert list(got.metrics) == list(want.metrics)
        for m, w in want.metrics.items():
            g = got.metrics[m]
            for f in ("key", "median", "n_days", "scale", "spread"):
                a, b = getattr(g, f), getattr(w, f)
                assert a.dtype == b.dtype and np.array_equal(a.view(np.int64), b.view(np.int64)), (m, f)
    empty = baseline_frame(None, params, np.array(["a"], dtype=object))
    assert empty.known.tolist() == [False] and empty.metrics == {}


@pytest.mark.parametrize("width", [1, 3, 7, 8, 9, 40, 300])
def test_group_medians_are_each_groups_median(width: int):
    rng = np.random.default_rng(width)
    sizes = rng.integers(1, width + 1, 50)
    sizes[0] = width
    group = np.repeat(np.arange(50) * 3, sizes)  # sorted, with gaps between the group values
    x = np.round(rng.normal(0, 1, len(group)), 1) + 0.0  # ties; no -0.0 (np.median orders it as it likes)
    g, med, count = _group_median(group, x, presorted=True)
    assert g.tolist() == (np.arange(50) * 3).tolist() and count.tolist() == sizes.tolist()
    want = np.array([np.median(x[group == v]) for v in g])
    assert np.array_equal(med.view(np.int64), want.view(np.int64))
    shuffled = rng.permutation(len(group))
    assert np.array_equal(_group_median(group[shuffled], x[shuffled])[1].view(np.int64), want.view(np.int64))
