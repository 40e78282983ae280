"""Spikes: readings far from the trailing window of their own sensor (robust z-score).

For a reading in pane ``p`` (the sensor's sub-window of one hop, 60 s at
1 Hz), the reference is the sensor's window that ended where ``p`` begins,
i.e. its last ``length / hop`` completed panes (the previous 300 s at 1 Hz):

* location: the median of the means of the last ``location_subwindows``
  panes (recent enough that the diurnal trend does not bias it, even for a
  sensor sampling every 5 minutes);
* scale: the median over the window's panes of the mean absolute successive
  difference, times sqrt(pi)/2 (for Gaussian noise this estimates its sd, and
  differences cancel slow trends), floored at ``min_scale``;

and ``z = (x - location) / scale``: warning above ``warning_z``, critical
above ``critical_z``. Both medians are over panes, so one or two spikes in
the window move neither, and the detector does not learn from what it flags.

Why panes rather than an exact per-reading rolling median: the pane
aggregates are computed once per (sensor, minute) with vectorized
reductions, then gathered per reading, so a day of 100 sensors at 1 Hz costs
a fraction of a second; an exact rolling median over 300 readings per
reading costs about 4 s in DuckDB for the same day. The reference lags the
reading by at most one pane plus the location span.

Panes in which the value mostly did not change (at least half of the
successive differences exactly 0: a stuck sensor, the flatline detector's
case) are left out of the reference, so the jump when a stuck sensor
recovers is not compared with its stuck value. No evaluation
(warm-up) when the rest of the trailing window holds fewer than
``WindowParams.min_readings`` valid values: a restart, a new sensor, after a
gap, during a flatline. Values outside the valid range are sensor faults, left out of
both the reference and the evaluation; NaN passes through.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pyarrow as pa

from iot_platform.core.detectors.params import SpikeParams
from iot_platform.core.detectors.points import POINTS, concat_points, fmt, join, make_points, reading_tick
from iot_platform.core.windows import (
    US,
    Panes,
    ReadingsFrame,
    ReadingsSource,
    WindowParams,
    aggregate_panes,
    to_us,
)

_SD_PER_MASD = math.sqrt(math.pi) / 2  # Gaussian noise: E|x_i - x_{i-1}| = 2 sd / sqrt(pi)
_SD_PER_MEDIAN_AD = 1 / (0.6744897501960817 * math.sqrt(2))  # ... and median |x_i - x_{i-1}| = 0.6745 sqrt(2) sd


def row_nanmedian(m: np.ndarray) -> np.ndarray:
    """Median of each row ignoring NaN (NaN for an all-NaN row), vectorized."""
    return column_nanmedian(np.ascontiguousarray(m.T))[0]


# Optimal sorting networks for a few values (Knuth, TAOCP 5.3.4); longer rows use odd-even transposition.
_NETWORKS = {
    1: [],
    2: [(0, 1)],
    3: [(0, 2), (0, 1), (1, 2)],
    4: [(0, 1), (2, 3), (0, 2), (1, 3), (1, 2)],
    5: [(0, 1), (3, 4), (2, 4), (2, 3), (0, 3), (0, 2), (1, 4), (1, 3), (1, 2)],
    6: [(1, 2), (4, 5), (0, 2), (3, 5), (0, 1), (3, 4), (2, 5), (0, 3), (1, 4), (2, 4), (1, 3), (2, 3)],
}
_MAX_NETWORK = 8  # beyond this many values a row sort is cheaper than the network's passes


def sorting_network(k: int) -> list[tuple[int, int]]:
    """Comparators (i < j: position i gets the smaller value) that sort any ``k`` values."""
    return _NETWORKS.get(k) or [(i, i + 1) for r in range(k) for i in range(r % 2, k - 1, 2)]


def column_nanmedian(cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(median ignoring NaN, count of non-NaN) of each column of ``cols`` (k values of n items, shape (k, n)):
    what :func:`row_nanmedian` gives for ``cols.T``, bit for bit.

    Items hold a few values (the panes of a window): a sorting network over whole rows of ``cols`` (a handful
    of vectorized minimum/maximum passes) replaces a sort per item. NaN sorts last as +inf; the exact order of
    equal values is then the only thing a network and numpy's sort may disagree on, and it only shows for
    -0.0 against 0.0: such inputs, and long items, take the sort."""
    k, n = cols.shape
    if n == 0:
        return np.zeros(0), np.zeros(0, np.int64)
    nan = np.isnan(cols)
    c = k - np.count_nonzero(nan, axis=0)
    if k > _MAX_NETWORK or bool(((cols == 0) & np.signbit(cols)).any()):
        flat = np.sort(cols.T, axis=1).reshape(-1)  # NaN sorts last
        base = np.arange(0, n * k, k)
        lo, hi = base + np.maximum((c - 1) // 2, 0), base + c // 2
    else:
        s = np.where(nan, np.inf, cols)
        tmp = np.empty(n)
        for i, j in sorting_network(k):
            np.minimum(s[i], s[j], out=tmp)
            np.maximum(s[i], s[j], out=s[j])
            s[i] = tmp
        empty = np.flatnonzero(c == 0)
        s[0, empty] = cols[0, empty]  # an all-NaN item reads its first value, NaN, as the sort's does
        flat = s.reshape(-1)
        base = np.arange(n)
        lo, hi = base + np.maximum((c - 1) // 2, 0) * n, base + (c // 2) * n
    with np.errstate(invalid="ignore"):
        return (flat[lo] + flat[hi]) / 2, c


def trend_allowance(ref: np.ndarray, lag: float) -> np.ndarray:
    """How far a level may have moved since its reference: the robust slope of each row of ``ref`` (newest
    first) times ``lag`` (in columns). Slope: the median of the newer half minus the median of the older half,
    over the distance between them; a spike or two in a half moves neither median, a ramp moves both."""
    return column_trend_allowance(np.ascontiguousarray(ref.T), lag)


def column_trend_allowance(cols: np.ndarray, lag: float) -> np.ndarray:
    """:func:`trend_allowance` of ``cols.T``."""
    h = cols.shape[0] // 2
    if h == 0 or cols.shape[1] == 0:
        return np.zeros(cols.shape[1])
    with np.errstate(invalid="ignore"):
        slope = (column_nanmedian(cols[:h])[0] - column_nanmedian(cols[h : 2 * h])[0]) / h
    return np.abs(np.nan_to_num(slope, nan=0.0)) * lag


def _gap_limit(frame: ReadingsFrame, max_gap: float, code: np.ndarray) -> np.ndarray | np.integer:
    """The longest step (µs) between two readings of sensors ``code`` that still makes a pair: ``max_gap``
    intervals (one value when every sensor of the frame has the same interval)."""
    lim = np.floor(max_gap * frame.interval_us).astype(np.int64)
    if len(lim) == 0:
        return np.int64(0)
    return lim[0] if (lim == lim[0]).all() else lim[code]


def _close_pairs(frame: ReadingsFrame, rows: np.ndarray | None, max_gap: float) -> np.ndarray:
    """For each of ``rows`` (sorted; None: every row), whether the previous one is the same sensor's and at
    most ``max_gap`` intervals earlier: a successive difference to count."""
    code, ts = (frame.code, frame.ts) if rows is None else (frame.code[rows], frame.ts[rows])
    close = np.zeros(len(ts), dtype=bool)
    if len(ts) < 2:
        return close
    within = (ts[1:] - ts[:-1]) <= _gap_limit(frame, max_gap, code[1:])
    close[1:] = (code[1:] == code[:-1]) & within
    return close


def _successive_differences(frame: ReadingsFrame, panes: Panes, metric: str, ok: np.ndarray, max_gap: float,
                            bad: np.ndarray | None = None):  # fmt: skip
    """Per pane: sum, count and zero count of |x_i - x_prev| over valid readings (prev: the sensor's previous
    valid reading, if at most ``max_gap`` intervals earlier), and the smallest non-zero one. A difference
    belongs to the later reading's pane.

    Computed on the frame's rows as if every row were valid (the pairs of consecutive rows, shared by every
    metric and cached), then corrected where a row is not valid: it gets no difference, and the first valid
    row after a run of invalid ones gets its difference to the valid row before the run. Invalid rows are
    few (broken values, alarms), so the correction is a small gather, not a copy of the metric's readings."""
    n = frame.n_rows
    if n < 2 or int(np.count_nonzero(ok)) < 2:
        z = np.zeros(len(panes.key), np.int64)
        return z.astype(float), z, z, np.full(len(panes.key), np.inf)
    cache = frame.__dict__.setdefault("_close", {})  # frozen, but a memo of a pure function is harmless
    if max_gap not in cache:
        cache[max_gap] = _close_pairs(frame, None, max_gap)
    close = cache[max_gap]
    counts = frame.__dict__.setdefault("_close_counts", {})
    if max_gap not in counts:
        counts[max_gap] = (np.add.reduceat(close, panes.start, dtype=np.int64), np.flatnonzero(~close))
    n_close, far = counts[max_gap]
    x = frame.values[metric]
    d = np.empty(n)
    d[0] = 0.0
    with np.errstate(invalid="ignore"):  # an invalid row's NaN: its differences are replaced below
        np.subtract(x[1:], x[:-1], out=d[1:])
        np.abs(d, out=d)
        # differences across a gap or a sensor change do not count: times 0 (times 1 elsewhere, a no-op), at
        # the few rows where that is (rather than a multiplication of every row)
        d[far] *= 0.0
    bad = np.flatnonzero(~ok) if bad is None else bad  # the rows not ok (callers may pass them)
    if len(bad):
        # runs of invalid rows [first, last]: the row after a run pairs with the row before it
        brk = np.flatnonzero(np.diff(bad) > 1)
        first, last = bad[np.r_[0, brk + 1]], bad[np.r_[brk, len(bad) - 1]]
        after, before = last + 1, first - 1
        inside = (after < n) & (before >= 0)
        after_all = after[after < n]
        a, b = after[inside], before[inside]
        pair = (frame.code[a] == frame.code[b]) & (frame.ts[a] - frame.ts[b] <= _gap_limit(frame, max_gap, frame.code[a]))
        # integer counts corrected exactly: the invalid rows' pairs and the after-rows' pairs leave, new ones come
        n_close = n_close.copy()
        np.subtract.at(n_close, panes.row_pane[bad], close[bad])
        np.subtract.at(n_close, panes.row_pane[after_all], close[after_all])
        np.add.at(n_close, panes.row_pane[a], pair)
        d[bad] = 0.0
        d[after_all] = 0.0
        d[a] = np.abs(x[a] - x[b]) * pair
        close = close.copy()
        close[bad] = False
        close[after_all] = False
        close[a] = pair
    positive = d > 0  # implies close: d is 0 where a pair does not count
    dsum = np.add.reduceat(d, panes.start)
    n_zero = n_close - np.add.reduceat(positive, panes.start, dtype=np.int64)
    # the metric's resolution: its smallest non-zero step (``positive`` negated in place: no other mask)
    np.copyto(d, np.inf, where=np.logical_not(positive, out=positive))
    return dsum, n_close, n_zero, np.minimum.reduceat(d, panes.start)


def _recent_count(frame: ReadingsFrame, flagged: np.ndarray, hits: np.ndarray) -> np.ndarray:
    """For each of ``hits`` (row numbers), how many of the ``flagged`` rows (sorted row numbers) of its sensor
    lie in the window length before it. Rows are sorted by (sensor, ts), so ``ts + code * span`` is one
    sorted key; only the flagged rows and the hits are keyed (both are few)."""
    if len(hits) == 0 or len(flagged) == 0:
        return np.zeros(len(hits), np.int64)
    t0 = int(frame.ts.min())
    span = int(frame.ts.max()) - t0 + int(frame.length_us.max()) + 1
    f_key = (frame.ts[flagged] - t0) + frame.code[flagged] * span
    h_key = (frame.ts[hits] - t0) + frame.code[hits] * span
    lo = np.searchsorted(f_key, h_key - frame.length_us[frame.code[hits]])
    return np.searchsorted(f_key, h_key) - lo


def lasting(beyond: np.ndarray, ok: np.ndarray, code: np.ndarray, hits: np.ndarray, max_readings: int) -> np.ndarray:
    """For each row of ``hits`` (beyond rows): were the ``max_readings`` valid readings of its sensor before it
    all beyond too? Then the deviation has lasted longer than a spike does (looked up around the hits only)."""
    rows = np.flatnonzero(ok)
    pos = np.searchsorted(rows, hits)
    out = np.ones(len(hits), dtype=bool)
    for j in range(1, max_readings + 1):
        p = pos - j
        inside = p >= 0
        r = rows[np.maximum(p, 0)]
        out &= inside & (code[r] == code[hits]) & beyond[r]
    return out


def run_lengths(beyond: np.ndarray, head: np.ndarray) -> np.ndarray:
    """For each row, how many consecutive rows up to it (same sensor: ``head`` starts one) are ``beyond``."""
    idx = np.arange(len(beyond))
    last = np.maximum.accumulate(np.where(~beyond, idx, np.where(head, idx - 1, -1))) if len(idx) else idx
    return np.where(beyond, idx - last, 0)


def detect_frame(
    frame: ReadingsFrame,
    panes: Panes,
    params: SpikeParams,
    windows: WindowParams,
    start_us: int,
    end_us: int,
    resolved=None,
    window_start_us: int | None = None,
) -> pa.Table:
    """Points for the readings of ``frame`` with ``start_us <= ts < end_us`` (context before them in ``frame``);
    ``variance_change`` points (one per completed pane) for panes ending in ``(window_start_us, end_us]``
    (default ``start_us``).

    ``resolved`` (:class:`~iot_platform.core.registry.Resolved` of ``frame.names``): per sensor, its metrics,
    scale floors, sensitivity and alarms; readings above an alarm threshold (vibration above 2 g) are that
    alarm's, left out of the reference and of the evaluation like broken values.
    """
    if frame.n_rows == 0 or not ((frame.ts >= start_us) & (frame.ts < end_us)).any():
        return POINTS.empty_table()
    sens = 1.0 if resolved is None else resolved.sensitivity
    warn = params.warning_at(frame.interval_us, sens)  # per code
    parts = []
    for m in params.metrics:
        valid = frame.valid(m)
        ok, ok_is_valid = valid, True
        floor = np.full(len(frame.names), params.floor(m))
        if resolved is not None:
            drop = ~resolved.has[m]
            upper = resolved.warning_above[m]
            if drop.any() or np.isfinite(upper).any():
                # one alarm level for every sensor (the registry's usual case): compared as a scalar, no gathers
                same = len(upper) > 0 and bool((upper == upper[0]).all())
                with np.errstate(invalid="ignore"):
                    out = frame.values[m] > (upper[0] if same else upper[frame.code])
                if drop.any():
                    out |= drop[frame.code]
                if (valid & out).any():
                    ok, ok_is_valid = valid & ~out, False
            floor = np.maximum(floor, resolved.floor[m])
        if not ok.any():
            continue
        parts.append(_metric_points(frame, panes, params, windows, start_us, end_us, m, ok, warn, floor, ok_is_valid,
                                    window_start_us))  # fmt: skip
    return concat_points(parts)


def _metric_points(frame, panes, params, windows, start_us, end_us, m, ok, warn, floor_of, ok_is_valid,
                   window_start_us=None) -> pa.Table:  # fmt: skip
    bad = np.flatnonzero(~ok)  # few rows
    dsum, dcount, dzero, res = _successive_differences(frame, panes, m, ok, params.max_gap_intervals, bad)
    # A pane whose value mostly did not change is a stuck sensor's (flatline's case): no reference.
    live = ~((dcount > 0) & (2 * dzero >= dcount))
    with np.errstate(invalid="ignore", divide="ignore"):
        masd = np.where(live & (dcount > 0), dsum / np.maximum(dcount, 1), np.nan)
        if ok_is_valid:  # the panes' own counts and sums
            p_count, p_total = panes.count[m], panes.total[m]
        else:
            p_count = panes.n_rows - np.bincount(panes.row_pane[bad], minlength=len(panes.key))
            xz = frame.values[m].copy()
            xz[bad] = 0.0
            p_total = np.add.reduceat(xz, panes.start)
        p_mean = p_total / np.maximum(p_count, 1)
    pane_mean = np.where(live & (p_count > 0), p_mean, np.nan)
    live_count = np.where(live, p_count, 0)

    # The reference of every pane, from the panes before it (vectorized over panes, not readings).
    k = (frame.length_us // frame.hop_us)[panes.code]
    n_loc = params.location_subwindows
    k_max = int(k.max())
    n_panes = len(panes.key)
    count = np.zeros(n_panes, np.int64)
    # the reference panes' values as rows of (reference, pane) arrays: column_nanmedian's layout
    spread = np.empty((k_max, n_panes))
    step = np.full(n_panes, np.inf)
    level = np.empty((n_loc, n_panes))
    for j in range(1, max(k_max, n_loc) + 1):
        pos, found = panes.before(j)
        if j <= k_max:
            in_window = found & (j <= k)
            count += np.where(in_window, live_count[pos], 0)
            spread[j - 1] = np.where(in_window, masd[pos], np.nan)
            step = np.minimum(step, np.where(in_window, res[pos], np.inf))
        if j <= n_loc:
            level[j - 1] = np.where(found, pane_mean[pos], np.nan)
    location, n_level = column_nanmedian(level)
    allowance = column_trend_allowance(level, (n_loc + 1) / 2)
    # Noise from successive differences: the mean |difference| of panes holding many (sqrt(pi)/2 of it is the
    # sd of white noise), the median |difference| where panes hold one (1 / (0.6745 sqrt 2) of it)
    per_pane = np.median(dcount[dcount > 0]) if (dcount > 0).any() else 0
    noise_sd = column_nanmedian(spread)[0] * (_SD_PER_MASD if per_pane > 2 else _SD_PER_MEDIAN_AD)
    # ... and from how far readings actually fall from their pane's location (the same location rule): the
    # scale of the real prediction errors, which autocorrelated noise (differences understate it) and a
    # lagging location widen. The larger of the two is the scale.
    x = frame.values[m]
    # |x - location of its pane| (NaN in panes without a location: their error is NaN), 0 where not ok; in
    # one buffer: the pane's location repeated over its rows is the gather location[row_pane], cheaper
    dev_abs = np.repeat(location, panes.n_rows)
    with np.errstate(invalid="ignore"):
        np.subtract(x, dev_abs, out=dev_abs)
        np.abs(dev_abs, out=dev_abs)
        dev_abs[bad] = 0.0
        err = np.add.reduceat(dev_abs, panes.start)
        err_n = live_count
        pane_err = np.where(live & (err_n > 0), err / np.maximum(err_n, 1), np.nan)
    err_ref = np.empty((k_max, n_panes))
    for j in range(1, k_max + 1):
        pos, found = panes.before(j)
        err_ref[j - 1] = np.where(found & (j <= k), pane_err[pos], np.nan)
    per_err = np.median(err_n[err_n > 0]) if (err_n > 0).any() else 0
    err_sd = column_nanmedian(err_ref)[0] * (_SD_PER_MASD if per_err > 2 else 1.4826)
    sd = np.fmax(noise_sd, err_sd)
    # the level needs most of its panes: right after a stuck spell, one half-stuck pane is no reference
    usable = (count >= windows.min_readings) & (n_level > n_loc // 2) & (sd > 0)
    floor = np.maximum(np.where(np.isfinite(step), step * params.resolution_floor, 0.0), floor_of[panes.code])
    scale = np.maximum(np.nan_to_num(sd, nan=0.0), floor)
    z_warn = warn[panes.code]
    band = np.where(usable, allowance + z_warn * scale, np.nan)  # NaN: nothing is compared, nothing alerts

    # Readings beyond the band of their pane: one pass over the readings (each pane's largest deviation), the
    # rest on the rows of the few panes where it is beyond the band.
    beyond, flagged, n_beyond = _beyond(dev_abs, band, ok, panes)
    noise = np.maximum(np.nan_to_num(noise_sd, nan=0.0), floor)  # variance compares noise with noise
    variance = _variance_points(frame, panes, params, windows, m, masd, dcount, live, noise, usable, n_beyond,
                                window_start_us if window_start_us is not None else start_us, end_us)  # fmt: skip
    hits = flagged[(frame.ts[flagged] >= start_us) & (frame.ts[flagged] < end_us)]
    if len(hits) == 0:
        return variance
    sel = hits
    at = panes.row_pane[sel]
    dev = x[sel] - location[at]
    # a level shift: the deviation has lasted longer than a spike does, or (while the reference catches up
    # with the new level) most of a spike's worth of readings after it deviated the same way recently
    f_up = x[flagged] > location[panes.row_pane[flagged]]
    recent = np.where(dev > 0, _recent_count(frame, flagged[f_up], sel), _recent_count(frame, flagged[~f_up], sel))
    shift = lasting(beyond, ok, frame.code, hits, params.max_spike_readings) | (
        recent > 2 * params.max_spike_readings
    )
    z = np.sign(dev) * (np.abs(dev) - allowance[at]) / scale[at]
    zw = z_warn[at]
    crit = zw * params.critical_z / params.warning_z
    codes = frame.code[sel]
    loc, sc = location[at], scale[at]
    out = []
    for kind, mask in (("spike", ~shift), ("level_shift", shift)):
        i = np.flatnonzero(mask)
        if len(i) == 0:
            continue
        xi, zi = x[sel[i]], z[i]
        what = " robust sd from the trailing level " if kind == "spike" else " robust sd from the level before it "
        out.append(
            make_points(
                frame.names,
                codes[i],
                anomaly_type=kind,
                severity=np.where(np.abs(zi) > crit[i], "critical", "warning").astype(object),
                metric=m,
                ts=frame.ts[sel[i]],
                tick_ts=reading_tick(frame.ts[sel[i]], windows.hop_us),
                step_s=frame.interval_us[codes[i]] / US,
                value=xi,
                threshold=loc[i] + np.sign(zi) * (allowance[at[i]] + zw[i] * sc[i]),
                score=np.abs(zi),
                message=join(
                    f"{m} ", fmt(xi, 3), " is ", fmt(zi, 1), what, fmt(loc[i], 3), " (sd ", fmt(sc[i], 3),
                    ", alert above ", fmt(zw[i], 1), ")",
                ),
            )
        )
    return concat_points([*out, variance])


def _beyond(dev_abs: np.ndarray, band: np.ndarray, ok: np.ndarray, panes: Panes):
    """(beyond, flagged, n_beyond): per row whether ``ok`` and its deviation is above its pane's ``band``
    (NaN compares False), the rows that are, and their count per pane. Only the rows of panes whose
    largest deviation is above the band are compared (a pane's deviations are all NaN or none is)."""
    n_panes = len(panes.key)
    beyond = np.zeros(len(dev_abs), dtype=bool)
    if n_panes == 0:
        return beyond, np.zeros(0, np.int64), np.zeros(0, np.int64)
    with np.errstate(invalid="ignore"):
        cand = np.flatnonzero(np.maximum.reduceat(dev_abs, panes.start) > band)
    size = panes.n_rows[cand]
    rows = np.repeat(panes.start[cand] - np.r_[0, np.cumsum(size)[:-1]], size) + np.arange(int(size.sum()))
    with np.errstate(invalid="ignore"):
        hit = (dev_abs[rows] > np.repeat(band[cand], size)) & ok[rows]
    flagged = rows[hit]
    beyond[flagged] = True
    n_beyond = np.zeros(n_panes, np.int64)
    n_beyond[cand] = np.add.reduceat(hit, np.r_[0, np.cumsum(size)[:-1]], dtype=np.int64) if len(cand) else 0
    return beyond, flagged, n_beyond


def _variance_points(frame, panes, params, windows, m, masd, dcount, live, scale, usable, n_beyond, start_us,
                     end_us):  # fmt: skip
    """variance_change points at the end of each completed pane whose noise (its successive differences) is
    ``variance_ratio`` times above or below the trailing window's; panes holding beyond-band readings are
    the spike detector's (one spike inflates a pane's differences)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        pane_sd = masd * _SD_PER_MASD
        ratio = np.where(pane_sd >= scale, pane_sd / scale, scale / pane_sd)
    end = (panes.idx + 1) * frame.hop_us[panes.code]
    hit = (
        usable & live & (dcount >= params.variance_min_diffs) & (n_beyond == 0) & (pane_sd > 0)
        & (ratio > params.variance_ratio) & (end > start_us) & (end <= end_us)
    )  # fmt: skip
    i = np.flatnonzero(hit)
    if len(i) == 0:
        return POINTS.empty_table()
    c = panes.code[i]
    up = pane_sd[i] > scale[i]
    return make_points(
        frame.names,
        c,
        anomaly_type="variance_change",
        severity=np.where(ratio[i] > 2 * params.variance_ratio, "critical", "warning").astype(object),
        metric=m,
        ts=end[i],
        tick_ts=end[i],
        step_s=frame.hop_us[c] / US,
        value=pane_sd[i],
        threshold=np.where(up, scale[i] * params.variance_ratio, scale[i] / params.variance_ratio),
        score=ratio[i],
        message=join(
            f"{m} noise sd ", fmt(pane_sd[i], 4), " is ", fmt(ratio[i], 1),
            pa.array(np.where(up, " times the trailing window's ", " times below the trailing window's "), pa.string()),
            fmt(scale[i], 4),
        ),
    )


def detect(
    readings: pa.Table,
    params: SpikeParams = SpikeParams(),
    *,
    windows: WindowParams = WindowParams(),
    emit_start: dt.datetime | int | None = None,
    emit_end: dt.datetime | int | None = None,
    intervals: pa.Table | None = None,
    registry=None,
) -> pa.Table:
    """POINTS for the readings with ts in ``[emit_start, emit_end)``; earlier readings serve as context.
    ``registry``: each sensor's ranges, metrics, floors and alarms (default: every sensor the simulator's)."""
    a = to_us(emit_start, "emit_start")
    b = to_us(emit_end, "emit_end")
    source = ReadingsSource([readings])
    parts = []
    for lo, hi in source.chunks():
        frame = source.frame(lo, hi, windows, intervals, registry)
        res = registry.resolve(frame.names) if registry is not None else None
        parts.append(
            detect_frame(
                frame, aggregate_panes(frame), params, windows, -(2**62) if a is None else a,
                2**62 if b is None else b, res,
            )
        )
    return concat_points(parts)
