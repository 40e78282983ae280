"""Silent sensors: a known sensor that stops reporting is an anomaly, not an absence of anomalies.

At every tick ``W`` (a multiple of ``WindowParams.hop_s``) a known sensor
with no reading in ``[W - s, W)``, ``s = max(min_silence_s, missed_samples *
interval)``, is silent: a warning, critical once it has had no window ending
in the last ``critical_after_s`` either.

Known at ``W``: in the drift baseline (seen on a previous day: a sensor that
stayed silent all day is still reported, every day) or with a window ending
in ``(W - horizon_s, W]``. A sensor never seen is not missed. The same
definition gives the fleet size of the systemic check (:func:`known_counts`).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from iot_platform.core.detectors.inputs import BaselineFrame, WindowFrame
from iot_platform.core.detectors.params import SilenceParams
from iot_platform.core.detectors.points import POINTS, fmt, join, make_points
from iot_platform.core.windows import US, ReadingsFrame, ReadingsSource, WindowParams, emit_range, sensor_names

FLEET = pa.schema([pa.field("tick_ts", pa.timestamp("us", tz="UTC"), nullable=False), pa.field("n_sensors", pa.int64()),
                   pa.field("group", pa.string())])  # fmt: skip


def ticks(windows: WindowParams, start_us: int, end_us: int) -> np.ndarray:
    """Multiples of the hop in ``(start_us, end_us]``."""
    h = windows.hop_us
    return np.arange((start_us // h + 1) * h, end_us // h * h + 1, h, dtype=np.int64)


def _count_in(sorted_times: np.ndarray, lo: np.ndarray, hi: np.ndarray, *, left_open: bool) -> np.ndarray:
    """How many of ``sorted_times`` lie in [lo, hi) (or (lo, hi] when ``left_open``), per pair."""
    if left_open:
        return np.searchsorted(sorted_times, hi, side="right") - np.searchsorted(sorted_times, lo, side="right")
    return np.searchsorted(sorted_times, hi, side="left") - np.searchsorted(sorted_times, lo, side="left")


def _code_bounds(code: np.ndarray, n_names: int) -> np.ndarray:
    return np.searchsorted(code, np.arange(n_names + 1))


def known_mask(wf: WindowFrame, known: np.ndarray, params: SilenceParams, tick: np.ndarray) -> np.ndarray:
    """(n_sensors, n_ticks): sensor known at tick (baseline, or a window ending in (tick - horizon, tick])."""
    n = len(wf.names)
    out = np.zeros((n, len(tick)), dtype=bool)
    bounds = _code_bounds(wf.code, n)
    for c in range(n):
        if known[c]:
            out[c] = True
            continue
        ends = wf.end[bounds[c] : bounds[c + 1]]
        if len(ends):
            out[c] = _count_in(ends, tick - params.horizon_s * US, tick, left_open=True) > 0
    return out


def known_counts(
    wf: WindowFrame,
    bf: BaselineFrame,
    params: SilenceParams,
    windows: WindowParams,
    start_us: int,
    end_us: int,
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ticks, number of known sensors, group) for each group and tick in (start, end]: the group sizes of the
    systemic check. ``groups`` (per code: group name or None) defaults to one group ``fleet``; sensors of no
    group are not counted."""
    tick = ticks(windows, start_us, end_us)
    known = known_mask(wf, bf.known, params, tick)
    if groups is None:
        groups = np.full(len(wf.names), "fleet", dtype=object)
    out_t, out_n, out_g = [], [], []
    for g in sorted({g for g in groups.tolist() if g is not None}):
        rows = np.flatnonzero(groups == g)
        out_t.append(tick)
        out_n.append(known[rows].sum(axis=0).astype(np.int64))
        out_g.append(np.full(len(tick), g, dtype=object))
    if not out_t:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, dtype=object)
    return np.concatenate(out_t), np.concatenate(out_n), np.concatenate(out_g)


def detect_frame(
    frame: ReadingsFrame,
    wf: WindowFrame,
    bf: BaselineFrame,
    params: SilenceParams,
    windows: WindowParams,
    start_us: int,
    end_us: int,
) -> pa.Table:
    """Silent points at ticks in ``(start_us, end_us]``. ``frame``, ``wf`` and ``bf`` share ``names``."""
    tick = ticks(windows, start_us, end_us)
    n = len(wf.names)
    if len(tick) == 0 or n == 0:
        return POINTS.empty_table()
    known = known_mask(wf, bf.known, params, tick)
    w_bounds = _code_bounds(wf.code, n)
    silence_us = np.maximum(round(params.min_silence_s * US), params.missed_samples * frame.interval_us)
    codes, at, crit = [], [], []
    for c in np.flatnonzero(known.any(axis=1)):
        ts = frame.ts[frame.offsets[c] : frame.offsets[c + 1]]
        silent = known[c] & (_count_in(ts, tick - silence_us[c], tick, left_open=False) == 0)
        if not silent.any():
            continue
        t = tick[silent]
        ends = wf.end[w_bounds[c] : w_bounds[c + 1]]
        codes.append(np.full(len(t), c))
        at.append(t)
        crit.append(_count_in(ends, t - params.critical_after_s * US, t, left_open=True) == 0)
    if not codes:
        return POINTS.empty_table()
    code, t, critical = np.concatenate(codes), np.concatenate(at), np.concatenate(crit)
    s = silence_us[code] / US
    return make_points(
        wf.names,
        code,
        anomaly_type="silent_sensor",
        severity=np.where(critical, "critical", "warning").astype(object),
        metric=None,
        ts=t,
        tick_ts=t,
        step_s=windows.hop_s,
        value=s,
        threshold=s,
        score=s * US / frame.interval_us[code],
        message=join(
            "no reading for ", fmt(s, 0), " s (", fmt(s * US / frame.interval_us[code], 0), " expected samples)",
            pa.array(np.where(critical, f"; no window for {params.critical_after_s} s", ""), pa.string()),
        ),
    )


def detect(
    readings: pa.Table,
    window_stats: pa.Table,
    baseline: pa.Table | None,
    params: SilenceParams = SilenceParams(),
    *,
    windows: WindowParams = WindowParams(),
    emit_start: dt.datetime | int,
    emit_end: dt.datetime | int,
    intervals: pa.Table | None = None,
) -> pa.Table:
    """POINTS at ticks in ``(emit_start, emit_end]``.

    ``readings`` hold the sensors' readings since ``emit_start`` minus the
    silence span; ``window_stats`` the windows of the last ``horizon_s``;
    ``baseline`` (drift_baseline output, may be None) the sensors seen before.
    """
    a, b = emit_range(emit_start, emit_end)
    names = sensor_names(readings, window_stats, baseline)
    frame = ReadingsSource([readings], names).frame(0, len(names), windows, intervals)
    wf = WindowFrame.from_table(window_stats, names, windows)
    bf = BaselineFrame.from_table(baseline, names)
    return detect_frame(frame, wf, bf, params, windows, a, b)
