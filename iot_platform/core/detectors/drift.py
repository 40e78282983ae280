"""Drift: a slow shift of a sensor's metric away from its usual level (two-sided CUSUM), every metric.

Baseline (:func:`drift_baseline`), learned from the previous days'
``window_stats`` only (the caller passes up to ``DriftParams.history_days``
days through a partition mapping), so each daily partition is a pure function
of its inputs and backfills can run in any order. Per metric the sensor has
(and the registry follows, ``MetricSpec.drift``), from its window means
(``temp_mean``, ``humidity_mean``, ``pressure_mean``, ``vibration_mean``):

* per sensor and time of day (the window end modulo 24 h, one slot per hop),
  the median over the previous days of the window mean: the diurnal cycle is
  part of "usual", and one or two drifting days do not move a median of seven;
* per sensor, a robust sd (1.4826 MAD) of the window means around those slot
  medians: mostly the day-to-day weather; floored at ``min_scale`` (C) for the
  simulator's temperature, and for every other (sensor, metric) at the second
  largest |offset of a previous day| / k (an ordinary day's offset is no
  drift) and at the registry's ``floor``;
* per sensor, the median ``temp_std`` of its windows: their usual spread.

Detection: each window gives ``z = (mean - slot median) / sd`` and two
CUSUMs accumulate ``z - k`` (upward) and ``-z - k`` (downward), each window
weighted hop / length outside the simulator's temperature (overlapping windows
share their readings: each reading counts once). The CUSUM
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
failing the warm-up (``WindowParams.min_readings``) are no evidence, nor are
stuck ones (temperature: ``temp_std <= flat_std``; other metrics: a mean equal
to the previous window's), temperature windows far more spread than the
sensor's usual (``temp_std > max_spread * max(usual, min_scale)``: they hold
spikes, whose weight in the mean of a slow sensor's 40-reading window is no
drift), or vibration windows above its alarm (``high_vibration``'s).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from iot_platform.core.detectors.inputs import BASELINE, BaselineFrame, MetricBaseline, WindowFrame, _lut
from iot_platform.core.detectors.params import DetectionParams, DriftParams
from iot_platform.core.detectors.points import POINTS, concat_points, fmt, join, make_points
from iot_platform.core.detectors.spike import _MAX_NETWORK, column_nanmedian
from iot_platform.core.windows import DAY_US, US, WindowParams, names_array, sensor_names, to_us

_MAD_TO_SD = 1.4826
_Q = 1_000_000  # CUSUM increments are integers in millionths of an sd


def _group_median(group: np.ndarray, x: np.ndarray, presorted: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(groups, median, count) of x per group value (exact, order-independent); ``presorted``: group is sorted."""
    if len(group) == 0:
        return group[:0], np.zeros(0), np.zeros(0, np.int64)
    order = np.arange(len(group)) if presorted else np.argsort(group, kind="stable")
    g = group if presorted else group[order]
    start = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    count = np.diff(np.r_[start, len(g)])
    width = int(count.max())
    v = x if presorted else x[order]
    if width <= _MAX_NETWORK and not np.isnan(v).any():  # a slot over the previous days: a sorting network
        pad = np.full((width, len(start)), np.nan)  # (position in the group, group), NaN-padded
        pad[np.arange(len(g)) - np.repeat(start, count), np.repeat(np.arange(len(start)), count)] = v
        med = column_nanmedian(pad)[0]  # the padding is NaN, the values are not: the count is the group's
    elif width <= 64:  # small groups: one padded sort
        pad = np.full((len(start), width), np.nan)
        pad[np.repeat(np.arange(len(start)), count), np.arange(len(g)) - np.repeat(start, count)] = v
        pad.sort(axis=1)
        r = np.arange(len(start))
        med = (pad[r, (count - 1) // 2] + pad[r, count // 2]) / 2
    else:  # few big groups (a sensor's residuals): one partition each
        med = np.array([np.median(v[a : a + c]) for a, c in zip(start, count)])
    return g[start], med, count


def _slot_medians(group: np.ndarray, x: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(median, count) of ``x`` per group ``0 .. n_groups - 1`` (``group`` ascending; NaN and 0 for a group
    without a value): what :func:`_group_median` gives for the groups with values, scattered into all
    groups, by the same sorting network over the same padded layout, laid out for every group at once
    (one flat scatter, no compaction). None where :func:`_group_median` would not use the network."""
    if len(group) == 0:
        return None
    start = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    count = np.diff(np.r_[start, len(group)])
    width = int(count.max())
    if width > _MAX_NETWORK or np.isnan(x).any():
        return None
    pad = np.full(width * n_groups, np.nan)  # (position in the group, group), NaN-padded
    pad[(np.arange(len(group)) - np.repeat(start, count)) * n_groups + group] = x
    med, n = column_nanmedian(pad.reshape(width, n_groups))
    return med, n.astype(np.int64)


def usable_windows(wf: WindowFrame, drift: DriftParams, windows: WindowParams, metric: str = "temperature",
                   alarm: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """Windows that are evidence for ``metric``: past the warm-up, a mean; temperature: not flat; a metric with
    an upper alarm (per code, NaN: none): no reading above it (the vibration of a simulated sensor above 2 g is
    ``high_vibration``'s, not a drift)."""
    with np.errstate(invalid="ignore"):
        use = (wf.n >= windows.min_readings) & np.isfinite(wf.mean(metric))
        if metric == "temperature":
            use &= wf.temp_std > drift.flat_std
        elif wf.n_rows > 1:  # no window sd: a window whose mean equals the one a hop before is a stuck sensor's
            x = wf.mean(metric)
            prev = np.r_[False, (wf.code[1:] == wf.code[:-1]) & (wf.end[1:] - wf.end[:-1] == wf.hop_us[1:])]
            same = np.zeros(wf.n_rows, dtype=bool)
            same[1:] = np.abs(x[1:] - x[:-1]) <= 1e-9 * np.abs(x[1:])
            use &= ~(prev & same)
        if alarm is not None and metric == "vibration" and np.isfinite(alarm).any() and wf.n_rows:
            use &= ~(wf.vib_max > alarm[wf.code])
    return use


def drift_baseline(previous_window_stats: pa.Table, params: DetectionParams = DetectionParams()) -> pa.Table:
    """The drift baseline (see the module docstring) from previous days' WINDOW_STATS rows.

    Needs the columns sensor_id, window_end, n_readings, temp_mean, temp_std, and the other metrics' means
    (humidity_mean, pressure_mean, vibration_mean; a missing column: no baseline for that metric).
    Every sensor present gets temperature rows (even without usable windows): the baseline is also the list
    of known sensors for the silence detector.
    """
    names, parts = _baseline_parts(previous_window_stats, params)
    tables = []
    for m, keys, median, n_days, scale, spread in parts:
        code = keys // 86_400
        tables.append(
            pa.Table.from_arrays(
                [
                    names_array(names, code),
                    pa.DictionaryArray.from_arrays(pa.array(np.zeros(len(keys), np.int32)), pa.array([m], pa.string()))
                    .cast(pa.string()),
                    pa.array(keys - code * 86_400, pa.int32()),
                    pa.array(median, pa.float64(), from_pandas=True),
                    pa.array(n_days, pa.int32()),
                    pa.array(scale[code], pa.float64(), from_pandas=True),
                    pa.array(spread[code], pa.float64(), from_pandas=True),
                ],
                schema=BASELINE,
            )
        )
    return pa.concat_tables(tables) if tables else BASELINE.empty_table()


def baseline_frame(previous_window_stats: pa.Table | None, params: DetectionParams, names: np.ndarray) -> BaselineFrame:
    """``BaselineFrame.from_table(drift_baseline(previous_window_stats, params), names)``, without the table in
    between (its NaN stored as nulls and read back as NaN, exactly as the table would)."""
    old_names, parts = _baseline_parts(previous_window_stats, params)
    if not parts:
        return BaselineFrame.from_table(None, names)
    lut = _lut(old_names, names)
    known = np.zeros(len(names), bool)
    metrics = {}
    for m, keys, median, n_days, scale, spread in sorted(parts, key=lambda p: p[0]):
        old_code = keys // 86_400
        code = lut[old_code]
        keep = code >= 0
        if not keep.any():
            continue
        c = code[keep]
        known[c] = True
        key = c * 86_400 + (keys[keep] - old_code[keep] * 86_400)
        order = np.argsort(key, kind="stable")
        per_code = []
        for v in (scale, spread):
            out = np.full(len(names), np.nan)
            out[c] = _as_stored(v[old_code[keep]])
            per_code.append(out)
        metrics[m] = MetricBaseline(key[order], _as_stored(median[keep])[order], n_days[keep][order].astype(np.int64),
                                    *per_code)  # fmt: skip
    return BaselineFrame(known, metrics)


def _as_stored(x: np.ndarray) -> np.ndarray:
    """``x`` as a float64 column stores it and reads it back: every NaN the same (null, then NaN)."""
    return np.where(np.isnan(x), np.nan, x)


def _baseline_parts(previous_window_stats: pa.Table | None, params: DetectionParams) -> tuple[np.ndarray, list]:
    """(names, [(metric, keys, median, n_days, scale per code, spread per code)]): the baseline's rows as
    arrays, key = code * 86400 + slot, sorted."""
    wf = WindowFrame.from_table(previous_window_stats, None, params.windows)
    names = wf.names
    if wf.n_rows == 0:
        return names, []
    res = params.registry.resolve(names)
    # every statistic below is per (sensor, slot) or per sensor: the rows are sorted by that key once
    key = wf.code * 86_400 + (wf.end % DAY_US) // US
    order = np.argsort(key, kind="stable")
    ks, code_s, end_s = key[order], wf.code[order], wf.end[order]
    new = np.r_[True, ks[1:] != ks[:-1]]
    all_keys = ks[new]
    row_key = np.cumsum(new) - 1  # position of each sorted row's key in all_keys
    day = end_s // DAY_US
    day -= day.min()
    n_days_span = int(day.max()) + 1
    parts = []
    for m in params.drift.metrics:
        if m != "temperature" and not res.drift[m].any():
            continue
        use = usable_windows(wf, params.drift, params.windows, m, res.warning_above[m])
        if m != "temperature":
            use &= res.drift[m][wf.code]
            if not use.any():
                continue
        use, x = use[order], wf.mean(m)[order]
        slots = _slot_medians(row_key[use], x[use], len(all_keys))
        if slots is not None:
            median_all, n_days_all = slots
            with_rows = n_days_all > 0
        else:
            _, med, cnt = _group_median(ks[use], x[use], presorted=True)
            with_rows = np.zeros(len(all_keys), dtype=bool)
            with_rows[row_key[use]] = True
            median_all = np.full(len(all_keys), np.nan)
            n_days_all = np.zeros(len(all_keys), np.int64)
            median_all[with_rows], n_days_all[with_rows] = med, cnt
        # temperature: every (sensor, slot) seen, the list of known sensors for the silence detector
        keep = np.ones(len(all_keys), dtype=bool) if m == "temperature" else with_rows
        keys, median, n_days = all_keys[keep], median_all[keep], n_days_all[keep]

        # Per-sensor scale from usable windows whose slot has enough days.
        ok = use & (n_days_all[row_key] >= params.drift.min_days)
        resid = x[ok] - median_all[row_key[ok]]
        ok_code = code_s[ok]  # sorted
        scale = np.full(len(names), np.nan)
        spread = np.full(len(names), np.nan)
        if m == "temperature":
            sp_code, sp_med, _ = _group_median(code_s[use], wf.temp_std[order][use], presorted=True)
            spread[sp_code] = sp_med
        sc_code, sc_med, _ = _group_median(ok_code, resid, presorted=True)
        if len(sc_code):
            dev = np.abs(resid - sc_med[np.searchsorted(sc_code, ok_code)])
            mad_code, mad, _ = _group_median(ok_code, dev, presorted=True)
            # The simulator's temperature keeps its floor in C (above its day-to-day weather). Every other
            # (sensor, metric) is floored by its own days: a previous day's offset from the slot medians is
            # ordinary, so the second largest |day offset| seen (one drifting day is allowed for) gives z = k
            # at most; and by the registry's floor.
            offsets = _day_offset_floor(ok_code, day[ok], resid, len(names), n_days_span)
            floor = np.maximum(offsets / params.drift.k if params.drift.k > 0 else 0.0, res.floor[m])[mad_code]
            if m == "temperature":
                floor = np.where(res.simulated[mad_code], params.drift.min_scale, floor)
            scale[mad_code] = np.maximum(_MAD_TO_SD * mad, floor)
        parts.append((m, keys, median, n_days, scale, spread))
    return names, parts


def _day_offset_floor(code: np.ndarray, day: np.ndarray, resid: np.ndarray, n_names: int, n_days: int) -> np.ndarray:
    """Per code: the second largest |mean residual of a day| over the days seen (the largest if one day).

    A day's mean (not median) residual: cheap (one bincount), and the windows it averages are already the
    usable ones (no stuck sensor, no alarm)."""
    out = np.zeros(n_names)
    if len(code) == 0:
        return out
    g = code * n_days + day
    total = np.bincount(g, weights=resid, minlength=n_names * n_days)
    count = np.bincount(g, minlength=n_names * n_days)
    a = np.where(count > 0, np.abs(total) / np.maximum(count, 1), -1.0).reshape(n_names, n_days)
    a.sort(axis=1)
    seen = (count.reshape(n_names, n_days) > 0).sum(axis=1)
    second = np.where(seen >= 2, a[:, -2], a[:, -1])
    return np.maximum(second, 0.0)


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
    resolved=None,
    length_us: np.ndarray | None = None,
) -> pa.Table:
    """Points for windows ending in ``(start_us, end_us]``; earlier rows of ``wf`` are the CUSUM's context.
    ``resolved``: the sensors' metrics and alarms (default: every metric, the simulator's alarms off);
    ``length_us``: per code, the window length (default: each row's window_end - window_start)."""
    parts = []
    for m in params.metrics:
        if m not in bf.metrics:
            continue
        alarm = resolved.warning_above[m] if resolved is not None else None
        has = resolved.drift[m] if resolved is not None else None
        simulated = resolved.simulated if resolved is not None else None
        parts.append(_metric_points(wf, bf.metric(m), params, windows, start_us, end_us, m, alarm, has, length_us,
                                    simulated))  # fmt: skip
    return concat_points(parts)


def _metric_points(wf, mb, params, windows, start_us, end_us, m, alarm, has, length_us, simulated) -> pa.Table:
    median, n_days = mb.lookup(wf.code, wf.end)
    scale = mb.scale[wf.code] if len(wf.code) else np.zeros(0)
    x = wf.mean(m)
    with np.errstate(invalid="ignore"):
        use = (
            usable_windows(wf, params, windows, m, alarm)
            & (wf.end <= end_us)
            & np.isfinite(median)
            & (n_days >= params.min_days)
            & np.isfinite(scale)
            & (scale > 0)
        )
        if m == "temperature":
            spread = mb.spread[wf.code] if len(wf.code) else np.zeros(0)
            use &= wf.temp_std <= params.max_spread * np.fmax(spread, params.min_scale)
        if has is not None and len(wf.code):
            use &= has[wf.code]
    u = np.flatnonzero(use)
    if len(u) == 0:
        return POINTS.empty_table()
    code, end = wf.code[u], wf.end[u]
    z = np.clip((x[u] - median[u]) / scale[u], -1e6, 1e6)
    lo = _memory_start(code, end, params.memory_s * US)  # first row of each row's memory
    # Overlapping windows share their readings: a window adds hop / length of its evidence, so the CUSUM counts
    # each reading once; except the simulator's temperature, whose k, h and min_scale were tuned per window.
    length = length_us[code] if length_us is not None else wf.end[u] - wf.start[u]
    weight = np.minimum(wf.hop_us[u] / np.maximum(length, 1), 1.0)
    if m == "temperature":
        weight = np.where(simulated[code], 1.0, weight) if simulated is not None else 1.0
    parts = []
    for side in (1, -1):
        y = np.round((side * z - params.k) * weight * _Q).astype(np.int64)
        c = np.cumsum(y)
        s = c - np.minimum(c, _window_min(c - y, lo))  # max(0, best sum ending here within memory)
        i = np.flatnonzero((s > params.h * _Q) & (side * z > params.release) & (end > start_us))
        if len(i) == 0:
            continue
        r = u[i]
        parts.append(
            make_points(
                wf.names,
                code[i],
                anomaly_type="drift",
                severity="warning",
                metric=m,
                ts=end[i],
                tick_ts=end[i],
                step_s=wf.hop_us[r] / US,
                value=x[r],
                threshold=median[r] + side * params.k * scale[r],
                score=np.abs(z[i]),
                message=join(
                    f"{m} mean ", fmt(x[r], 3), " is ", fmt(z[i], 1),
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
    registry=None,
) -> pa.Table:
    """POINTS for the windows ending in ``(emit_start, emit_end]``; ``baseline`` from :func:`drift_baseline`.

    ``window_stats`` must hold ``memory_s`` of windows before ``emit_start`` for
    the result to equal a longer run's.
    """
    names = sensor_names(window_stats, baseline)
    wf = WindowFrame.from_table(window_stats, names, windows)
    bf = BaselineFrame.from_table(baseline, names)
    a, b = to_us(emit_start, "emit_start"), to_us(emit_end, "emit_end")
    res = registry.resolve(names) if registry is not None else None
    return detect_frame(wf, bf, params, windows, -(2**62) if a is None else a, 2**62 if b is None else b, res)
