"""Flatline: a stuck sensor repeating one value (near-zero variance over enough readings).

A window whose ``temp_std`` is at or below ``max_std`` while it holds at
least ``min_readings`` readings (and passes the warm-up) is a critical
``flatline`` point. Real temperature noise (0.1-0.3 C) never gets that quiet;
a sensor stuck on its last value does. NaN statistics pass through.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from iot_platform.core.detectors.inputs import WindowFrame, detect_on_windows
from iot_platform.core.detectors.params import FlatlineParams
from iot_platform.core.detectors.points import POINTS, fmt, join, make_points
from iot_platform.core.windows import US, WindowParams


def detect_frame(wf: WindowFrame, params: FlatlineParams, windows: WindowParams, start_us: int, end_us: int) -> pa.Table:
    """Points for the windows of ``wf`` ending in ``(start_us, end_us]``."""
    with np.errstate(invalid="ignore"):
        hit = (
            (wf.end > start_us)
            & (wf.end <= end_us)
            & (wf.n >= max(params.min_readings, windows.min_readings))
            & (wf.temp_std <= params.max_std)
        )
    i = np.flatnonzero(hit)
    if len(i) == 0:
        return POINTS.empty_table()
    std = wf.temp_std[i]
    return make_points(
        wf.names,
        wf.code[i],
        anomaly_type="flatline",
        severity="critical",
        metric="temperature",
        ts=wf.end[i],
        tick_ts=wf.end[i],
        step_s=wf.hop_us[i] / US,
        value=std,
        threshold=params.max_std,
        score=1.0 - std / params.max_std if params.max_std > 0 else np.ones(len(i)),
        message=join("temperature stuck: sd ", fmt(std, 4), " over ", fmt(wf.n[i], 0), " readings (stuck sensor)"),
    )


def detect(
    window_stats: pa.Table,
    params: FlatlineParams = FlatlineParams(),
    *,
    windows: WindowParams = WindowParams(),
    emit_start: dt.datetime | int | None = None,
    emit_end: dt.datetime | int | None = None,
) -> pa.Table:
    """POINTS for the windows (schemas.WINDOW_STATS) ending in ``(emit_start, emit_end]``."""
    return detect_on_windows(detect_frame, window_stats, params, windows, emit_start, emit_end)
