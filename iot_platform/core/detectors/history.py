"""Spikes and level shifts of slow sensors, judged against the trailing history of their own readings.

A sensor sampling every 30 min or every hour never has the 30 readings inside
one window that the window-based detectors need for their warm-up: its windows
are capped at ``WindowParams.max_length_s`` and hold 4 to 7 readings. Its
readings are judged here instead, against the sensor's previous readings
(a count, not a window):

* reference: the valid readings of the metric in ``[ts - history_s, ts)``,
  the latest ``max_readings`` of them, at least ``min_readings`` (warm-up);
* location: the Theil-Sen line through the latest ``location_readings`` (6)
  of them, evaluated at the reading's time (:func:`theil_sen_now`): it follows
  a trend or a daily cycle sampled hourly, where a median lags hours behind,
  and a spike or a level shift of up to three readings does not move it;
* scale: how well that predictor does on this sensor: the same prediction
  is made for each reference reading from the readings before it, and the
  scale is the robust sd (1.4826 MAD) of those prediction errors, their
  median the predictor's usual bias (added to the location). A series whose
  cycle a line cannot follow (pressure's semi-diurnal wave sampled hourly)
  gets a wider scale than its noise; a quiet one a narrow scale. Floored at
  the metric's resolution (its smallest non-zero step) times
  ``SpikeParams.resolution_floor`` and the registry's floor;

``z = (x - location) / scale``, alerting above the rate-aware
threshold of :meth:`SpikeParams.warning_at` (4.1 for an hourly sensor). A
deviation lasting more than ``SpikeParams.max_spike_readings`` readings is a
``level_shift``. The metrics, sensitivity, floors and alarms are those of the
spike detector and the registry; the sensors judged here are exactly those whose
windows cannot pass the warm-up (``expected readings < min_readings``), so no
reading is judged twice. NaN and broken values pass through unflagged and are
no reference.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from iot_platform.core.detectors.params import HistoryParams, SpikeParams
from iot_platform.core.detectors.points import POINTS, concat_points, fmt, join, make_points, reading_tick
from iot_platform.core.detectors.spike import row_nanmedian, run_lengths
from iot_platform.core.windows import US, ReadingsFrame, ReadingsSource, WindowParams, expected_readings, to_us

_MAD_TO_SD = 1.4826


def theil_sen_now(y: np.ndarray, lag: np.ndarray) -> np.ndarray:
    """Per row, the Theil-Sen line through (-lag, y) evaluated at lag 0 (NaN cells ignored; the median of
    the values when fewer than two points). Robust to a spike or two among the points, and it follows a
    trend or a daily cycle where a plain median lags behind it."""
    n, k = y.shape
    if n == 0:
        return np.zeros(0)
    i, j = np.triu_indices(k, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        slopes = (y[:, i] - y[:, j]) / (lag[:, j] - lag[:, i])  # per unit of time moving forward
        slope = np.nan_to_num(row_nanmedian(slopes), nan=0.0)
        return row_nanmedian(y + slope[:, None] * lag)


def slow_sensors(frame: ReadingsFrame, windows: WindowParams) -> np.ndarray:
    """Per code: the sensor's windows cannot hold ``min_readings`` readings."""
    return expected_readings(frame.length_us, frame.interval_us) < windows.min_readings


def detect_frame(
    frame: ReadingsFrame,
    params: HistoryParams,
    spike: SpikeParams,
    windows: WindowParams,
    start_us: int,
    end_us: int,
    resolved=None,
) -> pa.Table:
    """Points for the readings of the slow sensors of ``frame`` with ``start_us <= ts < end_us``."""
    if frame.n_rows == 0:
        return POINTS.empty_table()
    slow = slow_sensors(frame, windows)
    if not slow.any():
        return POINTS.empty_table()
    sens = 1.0 if resolved is None else resolved.sensitivity
    warn = spike.warning_at(frame.interval_us, sens)
    parts = []
    for m in spike.metrics:
        ok = frame.valid(m) & slow[frame.code]
        floor = np.full(len(frame.names), spike.floor(m))
        if resolved is not None:
            ok &= resolved.has[m][frame.code]
            with np.errstate(invalid="ignore"):
                ok &= ~(frame.values[m] > resolved.warning_above[m][frame.code])
            floor = np.maximum(floor, resolved.floor[m])
        rows = np.flatnonzero(ok)
        if len(rows) == 0:
            continue
        parts.append(_metric_points(frame, params, spike, windows, start_us, end_us, m, rows, warn, floor))
    return concat_points(parts)


def _metric_points(frame, params, spike, windows, start_us, end_us, m, rows, warn, floor_of) -> pa.Table:
    code, ts, x = frame.code[rows], frame.ts[rows], frame.values[m][rows]
    # A stuck sensor (a run of one repeated value longer than ``stuck_readings``) is the flatline detector's:
    # its readings past the first ``stuck_readings`` are not judged, and once a run has grown that long (before
    # the reading judged: causal) none of its readings is a reference, so the recovery is not compared with
    # the stuck value.
    run_start, run_end = _runs(code, x)
    n, k = len(rows), params.max_readings
    # the k previous valid readings of each reading (same sensor, within history_s), newest first
    idx = np.arange(n)[:, None] - 1 - np.arange(k)[None, :]
    inside = idx >= 0
    safe = np.where(inside, idx, 0)
    inside &= (code[safe] == code[:, None]) & (ts[safe] >= ts[:, None] - params.history_s * US)
    stuck_ref = np.minimum(run_end[safe], np.arange(n)[:, None] - 1) - run_start[safe] + 1 > params.stuck_readings
    inside &= ~stuck_ref
    ref = np.where(inside, x[safe], np.nan)
    count = inside.sum(axis=1)
    lag = np.where(inside, (ts[:, None] - ts[safe]) / frame.interval_us[code][:, None], np.nan)  # in intervals
    L = params.location_readings
    # the prediction of this reading, and of each reference reading from the L readings before it (inside the
    # same look-back, so that a slice needs no more context than history_s)
    errors = np.full((n, k), np.nan)
    for c in range(k - 2):
        y, t = ref[:, c + 1 : c + 1 + L], lag[:, c + 1 : c + 1 + L] - lag[:, c : c + 1]
        enough = np.sum(~np.isnan(y), axis=1) >= 2
        errors[:, c] = np.where(enough, ref[:, c] - theil_sen_now(y, t), np.nan)
    with np.errstate(invalid="ignore"):
        center = row_nanmedian(errors)
        sd = row_nanmedian(np.abs(errors - center[:, None])) * _MAD_TO_SD
        d = np.abs(ref[:, :-1] - ref[:, 1:])
        step = np.min(np.where(d > 0, d, np.inf), axis=1)
    n_err = np.sum(~np.isnan(errors), axis=1)
    floor = np.maximum(np.where(np.isfinite(step), step * spike.resolution_floor, 0.0), floor_of[code])
    scale = np.maximum(np.nan_to_num(sd, nan=0.0), floor)
    # one cleaning pass (the detector does not learn from what it would flag): reference readings whose own
    # prediction error is beyond the band are left out of this reading's prediction
    with np.errstate(invalid="ignore"):
        outlier = np.abs(errors - center[:, None]) > warn[code][:, None] * scale[:, None]
    clean = np.where(outlier, np.nan, ref)
    location = theil_sen_now(clean[:, :L], lag[:, :L])
    usable = (count >= params.min_readings) & (n_err >= params.min_readings // 2) & np.isfinite(location) & (scale > 0)
    usable &= np.arange(n) - run_start + 1 <= params.stuck_readings
    location = location + np.nan_to_num(center, nan=0.0)  # the predictor's usual bias (e.g. lagging a cycle)
    zw = warn[code]
    allowance = np.zeros(n)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (x - location) / scale
        beyond = usable & (np.abs(z) > zw)
    head = np.ones(n, dtype=bool)
    head[1:] = code[1:] != code[:-1]
    run = run_lengths(beyond, head)
    hit = beyond & (ts >= start_us) & (ts < end_us)
    out = []
    for kind, mask in (("spike", hit & (run <= spike.max_spike_readings)), ("level_shift", hit & (run > spike.max_spike_readings))):
        i = np.flatnonzero(mask)
        if len(i) == 0:
            continue
        c = code[i]
        crit = zw[i] * spike.critical_z / spike.warning_z
        out.append(
            make_points(
                frame.names,
                c,
                anomaly_type=kind,
                severity=np.where(np.abs(z[i]) > crit, "critical", "warning").astype(object),
                metric=m,
                ts=ts[i],
                tick_ts=reading_tick(ts[i], windows.hop_us),
                step_s=frame.interval_us[c] / US,
                value=x[i],
                threshold=location[i] + np.sign(z[i]) * (allowance[i] + zw[i] * scale[i]),
                score=np.abs(z[i]),
                message=join(
                    f"{m} ", fmt(x[i], 3), " is ", fmt(z[i], 1), " robust sd from its last ",
                    fmt(count[i], 0), " readings' level ", fmt(location[i], 3), " (sd ", fmt(scale[i], 3),
                    ", alert above ", fmt(zw[i], 1), ")",
                ),
            )
        )
    return concat_points(out)


def _runs(code: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the first and last row of its run of one repeated value (same sensor, consecutive rows)."""
    n = len(x)
    idx = np.arange(n)
    new = np.ones(n, dtype=bool)
    new[1:] = (code[1:] != code[:-1]) | (x[1:] != x[:-1])
    start = np.maximum.accumulate(np.where(new, idx, 0)) if n else idx
    last = np.ones(n, dtype=bool)
    last[:-1] = new[1:]
    end = np.minimum.accumulate(np.where(last, idx, n)[::-1])[::-1] if n else idx
    return start, end


def detect(
    readings: pa.Table,
    params: HistoryParams = HistoryParams(),
    spike: SpikeParams = SpikeParams(),
    *,
    windows: WindowParams = WindowParams(),
    emit_start: dt.datetime | int | None = None,
    emit_end: dt.datetime | int | None = None,
    intervals: pa.Table | None = None,
    registry=None,
) -> pa.Table:
    """POINTS for the slow sensors' readings with ts in ``[emit_start, emit_end)``; earlier readings
    (``history_s`` of them) serve as the reference.

    >>> import pyarrow as pa
    >>> from iot_platform.core.schemas import TS_TYPE
    >>> hours = list(range(30))
    >>> r = pa.table({"sensor_id": ["h"] * 30, "ts": pa.array([h * 3_600_000_000 for h in hours]).cast(TS_TYPE),
    ...               "temperature": [20.0 + 0.5 * (h % 2) if h != 25 else 30.0 for h in hours]})
    >>> p = detect(r)  # predicted 20.25, prediction errors +-0.25, scale floored at the resolution 0.5
    >>> p.column("anomaly_type").to_pylist(), p.column("value").to_pylist(), p.column("score").to_pylist()
    (['spike'], [30.0], [19.5])
    """
    a = to_us(emit_start, "emit_start")
    b = to_us(emit_end, "emit_end")
    source = ReadingsSource([readings])
    parts = []
    for lo, hi in source.chunks():
        frame = source.frame(lo, hi, windows, intervals, registry)
        res = registry.resolve(frame.names) if registry is not None else None
        parts.append(detect_frame(frame, params, spike, windows, -(2**62) if a is None else a,
                                  2**62 if b is None else b, res))  # fmt: skip
    return concat_points(parts)
