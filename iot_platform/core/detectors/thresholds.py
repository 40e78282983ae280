"""Fixed limits on window statistics: vibration, battery, missing readings.

* ``high_vibration``: ``vibration_max`` above 2 g (warning) / 5 g (critical);
* ``low_battery``: ``battery_level`` (last in window) below 20 % / 5 %;
* ``high_missing_rate``: ``missing_rate`` above 0.1 (warning), the missing
  rate being relative to the sensor's own sample interval, with at least
  ``missing_min_count`` readings missing (one missed reading of an hourly
  sensor's four is a dropped packet, not a missing-data episode).

A window is only judged for missing readings once its sensor was reporting
before the window began: the sensor is known from previous days, or has a
window ending at or before this window's start. The first windows of a new
sensor, and of every sensor on the first day of a fresh start, are partial
because the sensor had not started yet: that is a warm-up, not data loss (the
seed's first day raised "10 of 10 sensors alerting at once (high_missing_rate)").

Vibration and battery obey the warm-up (``WindowParams.min_readings``); the
missing rate does not: it is the count of readings, not a statistic
estimated from them, and a window holding 20 of 300 expected readings is
exactly what it reports. NaN statistics pass through.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from iot_platform.core.detectors.inputs import WindowFrame, detect_on_windows
from iot_platform.core.detectors.params import ThresholdParams
from iot_platform.core.detectors.points import concat_points, fmt, join, make_points
from iot_platform.core.windows import US, WindowParams


def reporting_before(wf: WindowFrame, known: np.ndarray | None) -> np.ndarray:
    """Per window: its sensor is known (``known``, per code) or has a window ending at or before its start."""
    if wf.n_rows == 0:
        return np.zeros(0, dtype=bool)
    first_end = np.full(len(wf.names), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_end, wf.code, wf.end)
    out = first_end[wf.code] <= wf.start
    if known is not None:
        out |= known[wf.code]
    return out


def detect_frame(
    wf: WindowFrame,
    params: ThresholdParams,
    windows: WindowParams,
    start_us: int,
    end_us: int,
    known: np.ndarray | None = None,
    alarms: dict[str, np.ndarray] | None = None,
) -> pa.Table:
    """Points for the windows of ``wf`` ending in ``(start_us, end_us]``; ``known`` (per code): sensors seen on
    previous days (the drift baseline's), for the missing-rate warm-up; ``alarms`` (per code, NaN for none:
    ``Resolved.alarms``) the vibration and battery limits of each sensor, default ``params``'s for all."""
    emitted = (wf.end > start_us) & (wf.end <= end_us)
    warm = emitted & (wf.n >= windows.min_readings)
    parts = []

    def add(kind, metric, mask, value, critical, threshold, score, message):
        i = np.flatnonzero(mask)
        if len(i) == 0:
            return
        parts.append(
            make_points(
                wf.names,
                wf.code[i],
                anomaly_type=kind,
                severity=np.where(critical[i], "critical", "warning").astype(object),
                metric=metric,
                ts=wf.end[i],
                tick_ts=wf.end[i],
                step_s=wf.hop_us[i] / US,
                value=value[i],
                threshold=threshold[i],
                score=score[i],
                message=message(i),
            )
        )

    p = params
    n = wf.n_rows
    if alarms is None:
        vw, vc = np.full(n, p.vibration_warning), np.full(n, p.vibration_critical)
        bw, bc = np.full(n, p.battery_warning), np.full(n, p.battery_critical)
    else:
        vw, vc = alarms["vibration_warning"][wf.code], alarms["vibration_critical"][wf.code]
        bw, bc = alarms["battery_warning"][wf.code], alarms["battery_critical"][wf.code]
    with np.errstate(invalid="ignore", divide="ignore"):
        vib = wf.vib_max
        crit = vib > vc
        add("high_vibration", "vibration", warm & (vib > vw), vib, crit, np.where(crit, vc, vw),
            vib / np.maximum(vw, 1e-12),
            lambda i: join("vibration max ", fmt(vib[i], 3), " above ", fmt(np.where(crit[i], vc[i], vw[i]), 2)))
        bat = wf.battery
        crit = bat < bc
        add("low_battery", "battery_level", warm & (bat < bw), bat, crit, np.where(crit, bc, bw),
            (bw - bat) / np.maximum(bw, 1e-12),
            lambda i: join("battery ", fmt(bat[i], 1), " below ", fmt(np.where(crit[i], bc[i], bw[i]), 1)))
        miss = wf.missing
        # readings missing, from the integers the rate was made of: expected = n / (1 - rate)
        n_missing = np.round(wf.n * miss / np.where(miss < 1, 1 - miss, 1))
        judged = emitted & reporting_before(wf, known) & (n_missing >= p.missing_min_count)
        add("high_missing_rate", "missing_rate", judged & (miss > p.missing_rate_warning), miss,
            np.zeros(len(miss), bool), np.full(len(miss), p.missing_rate_warning), miss,
            lambda i: join("missing rate ", fmt(miss[i], 3), " above ", f"{p.missing_rate_warning:g} (",
                           fmt(wf.n[i], 0), " readings in the window)"))  # fmt: skip
    return concat_points(parts)


def detect(
    window_stats: pa.Table,
    params: ThresholdParams = ThresholdParams(),
    *,
    windows: WindowParams = WindowParams(),
    emit_start: dt.datetime | int | None = None,
    emit_end: dt.datetime | int | None = None,
) -> pa.Table:
    """POINTS for the windows (schemas.WINDOW_STATS) ending in ``(emit_start, emit_end]``."""
    return detect_on_windows(detect_frame, window_stats, params, windows, emit_start, emit_end)
