"""The detectors' vectorized kernels equal their plain definitions, bit for bit.

The fast paths (corrections on the few invalid rows instead of a copy of the valid ones, sorting networks
for short rows) must give exactly what the straightforward computation gives, including the edge cases:
invalid rows first or last, runs of them across a sensor change, a sensor with no valid value, gaps.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from iot_platform.core.detectors.spike import _successive_differences
from iot_platform.core.schemas import METRICS
from iot_platform.core.windows import US, WindowParams, aggregate_panes, build_frame


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
