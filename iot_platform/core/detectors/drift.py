"""Drift: a slow shift of a sensor's temperature away from its usual level (two-sided CUSUM).

Baseline (:func:`drift_baseline`), learned from the previous days'
``window_stats`` only (the caller passes up to ``DriftParams.history_days``
days through a partition mapping), so each daily partition is a pure function
of its inputs and backfills can run in any order:

* per sensor and time of day (the window end modulo 24 h, one slot per hop),
  the median over the previous days of ``temp_mean``: the diurnal cycle is
  part of "usual", and one or two drifting days do not move a median of seven;
* per sensor, a robust sd (1.4826 MAD) of ``temp_mean`` around those slot
  medians, floored at ``min_scale``: mostly the day-to-day weather;
* per sensor, the median ``temp_std`` of its windows: their usual spread.

Detection: each window gives ``z = (temp_mean - slot median) / sd`` and two
CUSUMs accumulate ``z - k`` (upward) and ``-z - k`` (downward). The CUSUM
forgets evidence older than ``memory_s``:
``S_t = max(0, max over j in (t - memory, t] of sum_{i=j..t} y_i)``, which
equals the textbook recursion whenever that was last at 0 within the memory,
and makes every slice a function of a bounded context. The sums run on
integers (``y`` in millionths), so a slice's sums equal the full day's to the
last bit. A window alerts (warning) while ``S > h`` and its own ``z`` still
exceeds ``k`` in that direction: the episode ends with the drift rather than
when a long accumulated sum has drained.

Warm-up: slots seen on fewer than ``min_days`` previous days are not
evaluated, so with no history there is no drift detection at all. Windows
failing the warm-up (``WindowParams.min_readings``), flat ones (a stuck
sensor, ``temp_std <= flat_std``) and ones far more spread than the sensor's
windows usually are (``temp_std > max_spread * max(usual, min_scale)``: they
hold spikes, whose weight in the mean of a slow sensor's 40-reading window is
no drift) are not evidence either way.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from iot_platform.core.detectors.inputs import BASELINE, BaselineFrame, WindowFrame
from iot_platform.core.detectors.params import DetectionParams, DriftParams
from iot_platform.core.detectors.points import POINTS, concat_points, fmt, join, make_points
from iot_platform.core.windows import DAY_US, US, WindowParams, names_array, sensor_names, to_us

_MAD_TO_SD = 1.4826
_Q = 1_000_000  # CUSUM increments are integers in millionths of an sd


def _group_median(group: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(groups, median, count) of x per group value (exact, order-independent)."""
    if len(group) == 0:
        return group[:0], np.zeros(0), np.zeros(0, np.int64)
    order = np.argsort(group, kind="stable")
    g = group[order]
    start = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    count = np.diff(np.r_[start, len(g)])
    width = int(count.max())
    if width <= 64:  # small groups (a slot over the previous days): one padded sort
        pad = np.full((len(start), width), np.nan)
        pad[np.repeat(np.arange(len(start)), count), np.arange(len(g)) - np.repeat(start, count)] = x[order]
        pad.sort(axis=1)
        r = np.arange(len(start))
        med = (pad[r, (count - 1) // 2] + pad[r, count // 2]) / 2
    else:  # few big groups (a sensor's residuals): one partition each
        v = x[order]
        med = np.array([np.median(v[a : a + c]) for a, c in zip(start, count)])
    return g[start], med, count


def usable_windows(wf: WindowFrame, drift: DriftParams, windows: WindowParams) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return (wf.n >= windows.min_readings) & np.isfinite(wf.temp_mean) & (wf.temp_std > drift.flat_std)


def drift_baseline(previous_window_stats: pa.Table, params: DetectionParams = DetectionParams()) -> pa.Table:
    """The drift baseline (see the module docstring) from previous days' WINDOW_STATS rows.

    Needs the columns sensor_id, window_end, n_readings, temp_mean, temp_std.
    Every sensor present gets rows (even without usable windows): the baseline
    is also the list of known sensors for the silence detector.
    """
    wf = WindowFrame.from_table(previous_window_stats, None, params.windows)
    names = wf.names
    if wf.n_rows == 0:
        return BASELINE.empty_table()
    slot = (wf.end % DAY_US) // US
    key = wf.code * 86_400 + slot
    all_keys = np.unique(key)
    use = usable_windows(wf, params.drift, params.windows)
    g, med, cnt = _group_median(key[use], wf.temp_mean[use])
    pos = np.minimum(np.searchsorted(g, all_keys), max(len(g) - 1, 0))
    hit = (g[pos] == all_keys) if len(g) else np.zeros(len(all_keys), bool)
    median = np.where(hit, med[pos], np.nan) if len(g) else np.full(len(all_keys), np.nan)
    n_days = np.where(hit, cnt[pos], 0) if len(g) else np.zeros(len(all_keys), np.int64)

    # Per-sensor scale from usable windows whose slot has enough days.
    kpos = np.searchsorted(all_keys, key)
    ok = use & (n_days[kpos] >= params.drift.min_days)
    resid = wf.temp_mean[ok] - median[kpos[ok]]
    scale = np.full(len(names), np.nan)
    spread = np.full(len(names), np.nan)
    sp_code, sp_med, _ = _group_median(wf.code[use], wf.temp_std[use])
    spread[sp_code] = sp_med
    sc_code, sc_med, _ = _group_median(wf.code[ok], resid)
    if len(sc_code):
        dev = np.abs(resid - sc_med[np.searchsorted(sc_code, wf.code[ok])])
        mad_code, mad, _ = _group_median(wf.code[ok], dev)
        scale[mad_code] = np.maximum(_MAD_TO_SD * mad, params.drift.min_scale)
    code = all_keys // 86_400
    return pa.Table.from_arrays(
        [
            names_array(names, code),
            pa.array(all_keys - code * 86_400, pa.int32()),
            pa.array(median, pa.float64(), from_pandas=True),
            pa.array(n_days, pa.int32()),
            pa.array(scale[code], pa.float64(), from_pandas=True),
            pa.array(spread[code], pa.float64(), from_pandas=True),
        ],
        schema=BASELINE,
    )


def _window_min(values: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """For each i, min(values[lo[i] : i + 1]) (lo[i] <= i), by a sparse table (vectorized)."""
    n = len(values)
    if n == 0:
        return values.copy()
    idx = np.arange(n)
    length = idx - lo + 1
    levels = [values]
    while (1 << len(levels)) <= int(length.max()):
        prev, h = levels[-1], 1 << (len(levels) - 1)
        nxt = prev.copy()
        nxt[: n - h] = np.minimum(prev[: n - h], prev[h:])
        levels.append(nxt)
    k = np.floor(np.log2(length)).astype(np.int64)
    table = np.stack(levels)
    return np.minimum(table[k, lo], table[k, idx - (1 << k) + 1])


def detect_frame(
    wf: WindowFrame,
    bf: BaselineFrame,
    params: DriftParams,
    windows: WindowParams,
    start_us: int,
    end_us: int,
) -> pa.Table:
    """Points for windows ending in ``(start_us, end_us]``; earlier rows of ``wf`` are the CUSUM's context."""
    median, n_days = bf.lookup(wf.code, wf.end)
    scale = bf.scale[wf.code] if len(wf.code) else np.zeros(0)
    spread = bf.spread[wf.code] if len(wf.code) else np.zeros(0)
    with np.errstate(invalid="ignore"):
        use = (
            usable_windows(wf, params, windows)
            & (wf.temp_std <= params.max_spread * np.fmax(spread, params.min_scale))
            & (wf.end <= end_us)
            & np.isfinite(median)
            & (n_days >= params.min_days)
            & np.isfinite(scale)
            & (scale > 0)
        )
    u = np.flatnonzero(use)
    if len(u) == 0:
        return POINTS.empty_table()
    code, end = wf.code[u], wf.end[u]
    z = np.clip((wf.temp_mean[u] - median[u]) / scale[u], -1e6, 1e6)
    lo = _memory_start(code, end, params.memory_s * US)  # first row of each row's memory
    alerts = []
    for side in (1, -1):
        y = np.round((side * z - params.k) * _Q).astype(np.int64)
        c = np.cumsum(y)
        s = c - np.minimum(c, _window_min(c - y, lo))  # max(0, best sum ending here within memory)
        hit = (s > params.h * _Q) & (side * z > params.release) & (end > start_us)
        alerts.append((hit, s, side))
    parts = []
    for hit, s, side in alerts:
        i = np.flatnonzero(hit)
        if len(i) == 0:
            continue
        r = u[i]
        thr = median[r] + side * params.k * scale[r]
        parts.append(
            make_points(
                wf.names,
                code[i],
                anomaly_type="drift",
                severity="warning",
                metric="temperature",
                ts=end[i],
                tick_ts=end[i],
                step_s=wf.hop_us[r] / US,
                value=wf.temp_mean[r],
                threshold=thr,
                score=np.abs(z[i]),
                message=join(
                    "temperature mean ", fmt(wf.temp_mean[r], 3), " is ", fmt(z[i], 1),
                    " sd from its usual ", fmt(median[r], 3), " for this time of day (CUSUM ",
                    fmt(s[i] / _Q, 1), f" > {params.h:g})",
                ),
            )
        )
    return concat_points(parts)


def _memory_start(code: np.ndarray, end: np.ndarray, memory_us: int) -> np.ndarray:
    """Index of the first row of the same sensor with end > end[i] - memory (rows sorted by code, end)."""
    out = np.empty(len(code), dtype=np.int64)
    bounds = np.flatnonzero(np.r_[True, code[1:] != code[:-1], True])
    for a, b in zip(bounds[:-1], bounds[1:]):
        out[a:b] = a + np.searchsorted(end[a:b], end[a:b] - memory_us, side="right")
    return out


def detect(
    window_stats: pa.Table,
    baseline: pa.Table,
    params: DriftParams = DriftParams(),
    *,
    windows: WindowParams = WindowParams(),
    emit_start: dt.datetime | int | None = None,
    emit_end: dt.datetime | int | None = None,
) -> pa.Table:
    """POINTS for the windows ending in ``(emit_start, emit_end]``; ``baseline`` from :func:`drift_baseline`.

    ``window_stats`` must hold ``memory_s`` of windows before ``emit_start`` for
    the result to equal a longer run's.
    """
    names = sensor_names(window_stats, baseline)
    wf = WindowFrame.from_table(window_stats, names, windows)
    bf = BaselineFrame.from_table(baseline, names)
    a, b = to_us(emit_start, "emit_start"), to_us(emit_end, "emit_end")
    return detect_frame(wf, bf, params, windows, -(2**62) if a is None else a, 2**62 if b is None else b)
