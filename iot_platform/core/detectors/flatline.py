"""Flatline: a sensor stuck on one value, on every metric it has, at any sample rate.

A reading is *stuck* when it and the readings before it repeat one value
exactly (consecutive valid readings of the sensor, no gap longer than
``max_gap_intervals``) for at least ``L`` readings. No constant is in a
metric's units; ``L`` is learned from the sensor's own recent readings, so a
quantized metric (a count, an integer %) that legitimately repeats does not
alert:

* reference: the sensor's valid readings of the metric in the look-back
  before the reading (its window length, 300 s at 1 Hz and 12,000 s every 5
  min; half of ``HistoryParams.history_s`` for sensors too slow for the window
  warm-up), the current run left out, and so are the readings deep inside
  other runs (beyond their first ``min_readings``): the detector does not learn
  from what it flags;
* ``p0`` = share of the reference's successive differences that are zero, and
  ``c`` = the share of zero differences following a zero difference (how
  often a repeat goes on), shrunk towards ``p0`` where few repeats were seen;
* ``L = max(min_readings, 1 + log(alpha) / log(c))`` where ``alpha`` is
  ``false_alerts_per_day`` (x the sensor's registry sensitivity) per reading
  of a day at the sensor's rate: a run that long happens by chance that
  rarely. Continuous metrics (``c`` near 0) get ``min_readings`` (8); a
  Poisson count of mean 0.1 at 1 Hz (``c`` about 0.9) about 175;
* when ``L`` exceeds the look-back (the metric repeats more than the detector
  can see), that sensor's metric is not judged: no flood.

A run longer than the whole look-back has no reference left and keeps
alerting (nothing of the sensor's recent behaviour explains it). Points: the
first stuck reading of a run and the first of each later pane (hop) it covers,
so an hour stuck at 1 Hz is 60 points, not 3,600 (critical; ``value`` = the
stuck value, ``threshold`` = ``L``, ``score`` = run length / ``L``, the run
counted up to the look-back). Every quantity depends only on the look-back
plus ``min_readings`` readings, which
:func:`~iot_platform.core.detectors.params.context_seconds` provides: slices
equal the whole day (a run with gaps of two or three intervals right at the
context's edge is the one exception: the margin counts ``min_readings``
intervals, not three times that). NaN, nulls and out-of-range values are no
readings: such a value breaks a run and starts none, and is never flagged.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from iot_platform.core.detectors.params import FlatlineParams, HistoryParams
from iot_platform.core.detectors.spike import _close_pairs
from iot_platform.core.detectors.points import POINTS, concat_points, fmt, join, make_points, reading_tick
from iot_platform.core.windows import US, ReadingsFrame, ReadingsSource, WindowParams, expected_readings, to_us


def lookback_us(frame: ReadingsFrame, windows: WindowParams, history: HistoryParams) -> np.ndarray:
    """Per sensor code: the look-back of the reference (the window, or half a history for slow sensors)."""
    slow = expected_readings(frame.length_us, frame.interval_us) < windows.min_readings
    return np.where(slow, history.history_s * US // 2, frame.length_us).astype(np.int64)


def detect_frame(
    frame: ReadingsFrame,
    params: FlatlineParams,
    windows: WindowParams,
    start_us: int,
    end_us: int,
    resolved=None,
    history: HistoryParams = HistoryParams(),
) -> pa.Table:
    """Points for the readings of ``frame`` with ``start_us <= ts < end_us`` (earlier rows: context)."""
    if frame.n_rows == 0:
        return POINTS.empty_table()
    per_day = np.maximum(86_400 * US / frame.interval_us.astype(np.float64), 1.0)
    sens = 1.0 if resolved is None else np.asarray(resolved.sensitivity, dtype=np.float64)
    log_alpha = np.log(np.minimum(params.false_alerts_per_day * sens / per_day, 0.5))  # per code
    look = lookback_us(frame, windows, history)
    parts = []
    for m in params.metrics:
        ok = frame.valid(m)
        if resolved is not None and not resolved.has[m].all():
            ok = ok & resolved.has[m][frame.code]
        if ok.any():
            parts.append(_metric_points(frame, params, windows, m, None if ok.all() else ok, log_alpha, look,
                                        start_us, end_us))  # fmt: skip
    return concat_points(parts)


def _count_in(sorted_rows: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """How many of ``sorted_rows`` lie in ``[lo, hi)`` (per pair)."""
    return np.searchsorted(sorted_rows, hi) - np.searchsorted(sorted_rows, lo)


def _in_sorted(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether each of ``a`` is in ``b`` (both sorted row numbers, unique): one binary search per element
    of ``a``, where ``np.isin`` / ``np.setdiff1d`` sort both again."""
    if len(b) == 0:
        return np.zeros(len(a), dtype=bool)
    return b[np.minimum(np.searchsorted(b, a), len(b) - 1)] == a


def _metric_points(frame, params, windows, m, ok, log_alpha, look, start_us, end_us) -> pa.Table:
    # Only the repeats are handled row by row (few for a continuous metric); every count over a look-back is a
    # difference of positions in sorted arrays of such rows, never a pass over all readings.
    k = params.min_readings
    code, ts, x = frame.code, frame.ts, frame.values[m]
    n = len(ts)
    cache = frame.__dict__.setdefault("_close", {})  # frozen, but a memo of a pure function is harmless
    gap = params.max_gap_intervals
    if gap not in cache:
        cache[gap] = _close_pairs(frame, None, gap)  # the successive pairs the spike detector uses
    close = cache[gap]
    if ok is None:  # every value valid: the pairs are the frame's, and so are the rows without one
        broken_cache = frame.__dict__.setdefault("_broken", {})
        if gap not in broken_cache:
            broken_cache[gap] = np.flatnonzero(~close)
        pair, broken = close, broken_cache[gap]
    else:  # a broken value (null, NaN, out of range) is no reading: it breaks a run and starts none
        pair = close.copy()
        pair[1:] &= ok[1:] & ok[:-1]
        pair[0] = False
        broken = np.flatnonzero(~pair)
    eq = np.equal(x[1:], x[:-1])
    eq &= pair[1:]
    same_rows = np.flatnonzero(eq) + 1  # rows repeating the reading before them
    if len(same_rows) < k - 1:
        return POINTS.empty_table()
    # run length (repeats in a row ending at each repeat): consecutive repeat rows form one run
    new_run = np.r_[True, same_rows[1:] != same_rows[:-1] + 1]
    first_of_run = np.maximum.accumulate(np.where(new_run, np.arange(len(same_rows)), 0))
    run_s = np.arange(len(same_rows)) - first_of_run + 1
    pick = (run_s >= k - 1) & (ts[same_rows] >= start_us) & (ts[same_rows] < end_us)
    if not pick.any():
        return POINTS.empty_table()
    cand, run_c = same_rows[pick], run_s[pick]

    # Reference: differences (close pairs) whose previous run was short (not deep in a stuck stretch); the
    # repeats among them; and among those following a repeat, the repeats again.
    deep = same_rows[run_s >= k - 1] + 1  # rows after the (k-1)th repeat of a run: not learned from
    deep = deep[deep < n]
    after = same_rows + 1
    after = after[after < n]
    after = after[~_in_sorted(after, broken) & ~_in_sorted(after, deep)]
    same_learn = same_rows[~_in_sorted(same_rows, deep)]
    after_same = after[_in_sorted(after, same_rows)]
    close_deep = deep[~_in_sorted(deep, broken)]

    c_code, c_ts = code[cand], ts[cand]
    first = frame.offsets[c_code]  # the sensor's first row
    # first row of the look-back: per sensor, ts is sorted
    w0 = first + _searchsorted_within(ts, first, cand, c_ts - look[c_code])
    run_start = cand - run_c
    # rows of the current run counted above: [run_start + 1, run_start + k) (differences), of which
    # [run_start + 2, run_start + k) follow a repeat; only those inside [w0, cand)
    in_diff = np.maximum(np.minimum(run_start + k, cand) - np.maximum(run_start + 1, w0), 0)
    in_after = np.maximum(np.minimum(run_start + k, cand) - np.maximum(run_start + 2, w0), 0)
    diffs = (cand - w0) - _count_in(broken, w0, cand) - _count_in(close_deep, w0, cand) - in_diff
    zeros = _count_in(same_learn, w0, cand) - in_diff
    den = _count_in(after, w0, cand) - in_after
    num = _count_in(after_same, w0, cand) - in_after
    with np.errstate(divide="ignore", invalid="ignore"):
        p0 = np.where(diffs > 0, zeros / np.maximum(diffs, 1), 0.0)  # no reference left: nothing explains a run
        c = (num + 2.0 * p0) / (den + 2.0)
        needed = np.where(c > 0, 1.0 + log_alpha[c_code] / np.log(np.minimum(c, 1 - 1e-12)), k)
    needed = np.maximum(np.ceil(needed), k)
    visible = expected_readings(look[c_code], frame.interval_us[c_code])
    stuck = (run_c + 1 >= needed) & (needed <= np.maximum(visible, k))
    hits = cand[stuck]
    if len(hits) == 0:
        return POINTS.empty_table()
    # one point where a stuck stretch is first seen and at the first reading of each later pane
    hop = frame.hop_us[code[hits]]
    prev_flagged = np.r_[False, hits[1:] == hits[:-1] + 1]  # hits are sorted row numbers: the row before is a hit
    prev_pane = np.where(hits > 0, ts[np.maximum(hits - 1, 0)] // hop, -1)
    first = ~prev_flagged | (ts[hits] // hop != prev_pane)
    sel, l_sel = hits[first], needed[stuck][first]
    # a run is counted up to the look-back (a slice sees no further back): the score stays slice-independent
    r = np.minimum(run_c[stuck][first] + 1, np.maximum(visible[stuck][first], k))
    return make_points(
        frame.names,
        code[sel],
        anomaly_type="flatline",
        severity="critical",
        metric=m,
        ts=ts[sel],
        tick_ts=reading_tick(ts[sel], windows.hop_us),
        step_s=frame.hop_us[code[sel]] / US,
        value=x[sel],
        threshold=l_sel,
        score=r / l_sel,
        message=join(f"{m} stuck at ", fmt(x[sel], 4), " for at least ", fmt(r, 0), " readings (the sensor's own data: a run of ",
                     fmt(l_sel, 0), " happens by chance less than once in ",
                     f"{1 / params.false_alerts_per_day:g} days)"),  # fmt: skip
    )


def detect(
    readings: pa.Table,
    params: FlatlineParams = FlatlineParams(),
    *,
    windows: WindowParams = WindowParams(),
    emit_start: dt.datetime | int | None = None,
    emit_end: dt.datetime | int | None = None,
    intervals: pa.Table | None = None,
    registry=None,
    history: HistoryParams = HistoryParams(),
) -> pa.Table:
    """POINTS for the readings (schemas.READINGS) with ts in ``[emit_start, emit_end)``; earlier ones: context."""
    a, b = to_us(emit_start, "emit_start"), to_us(emit_end, "emit_end")
    source = ReadingsSource([readings])
    parts = []
    for lo, hi in source.chunks():
        frame = source.frame(lo, hi, windows, intervals, registry)
        res = registry.resolve(frame.names) if registry is not None else None
        parts.append(detect_frame(frame, params, windows, -(2**62) if a is None else a, 2**62 if b is None else b,
                                  res, history))  # fmt: skip
    return concat_points(parts)


def _searchsorted_within(ts: np.ndarray, first: np.ndarray, rows: np.ndarray, value: np.ndarray) -> np.ndarray:
    """For each of ``rows``, the position (from ``first``, its sensor's first row) of the first row of that
    sensor with ts >= value; ts is sorted within a sensor. A binary search per row over [first, row]."""
    lo, hi = first.copy(), rows.copy()
    while True:
        active = lo < hi
        if not active.any():
            return lo - first
        mid = (lo + hi) // 2
        below = active & (ts[np.minimum(mid, len(ts) - 1)] < value)
        lo = np.where(below, mid + 1, lo)
        hi = np.where(active & ~below, mid, hi)
