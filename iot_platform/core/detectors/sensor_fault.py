"""Sensor faults: readings outside what the instrument can physically report.

A DS18B20 answering -127 C or a temperature of 500 C is a broken sensor, not
an outlier: such values are reported here, per reading and metric, as
critical ``sensor_fault`` points, and the window statistics leave them out,
so they never distort the statistics other detectors use. Null and NaN are
not values and pass through unflagged.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from iot_platform.core.detectors.params import SensorFaultParams
from iot_platform.core.detectors.points import POINTS, concat_points, fmt, join, make_points, reading_tick
from iot_platform.core.windows import US, ReadingsFrame, ReadingsSource, WindowParams, to_us


def detect_frame(
    frame: ReadingsFrame, params: SensorFaultParams, windows: WindowParams, start_us: int, end_us: int
) -> pa.Table:
    """Points for the readings of ``frame`` with ``start_us <= ts < end_us``."""
    if frame.n_rows == 0:
        return POINTS.empty_table()
    in_range = (frame.ts >= start_us) & (frame.ts < end_us)
    parts = []
    for m in params.metrics:
        v = frame.values[m]
        bad = np.flatnonzero(in_range & ~np.isnan(v) & ~frame.valid(m))
        if len(bad) == 0:
            continue
        x = v[bad]
        lo, hi = (np.broadcast_to(b, v.shape)[bad] for b in frame.bounds(m))  # the sensor's own range
        bound = np.where(x < lo, lo, hi)
        code = frame.code[bad]
        parts.append(
            make_points(
                frame.names,
                code,
                anomaly_type="sensor_fault",
                severity="critical",
                metric=m,
                ts=frame.ts[bad],
                tick_ts=reading_tick(frame.ts[bad], windows.hop_us),
                step_s=frame.interval_us[code] / US,
                value=x,
                threshold=bound,
                score=np.abs(x - bound),
                message=join(f"{m} ", fmt(x, 3), " is outside the valid range [", fmt(lo, 6), ", ", fmt(hi, 6),
                             "]: broken sensor"),
            )
        )
    return concat_points(parts)


def detect(
    readings: pa.Table,
    params: SensorFaultParams = SensorFaultParams(),
    *,
    windows: WindowParams = WindowParams(),
    emit_start: dt.datetime | int | None = None,
    emit_end: dt.datetime | int | None = None,
    registry=None,
) -> pa.Table:
    """POINTS for the readings (schemas.READINGS columns) with ts in ``[emit_start, emit_end)``; ``registry``
    gives each sensor's valid ranges (default: ``schemas.VALID_RANGE``).

    >>> import pyarrow as pa
    >>> from iot_platform.core.schemas import TS_TYPE
    >>> r = pa.table({"sensor_id": ["s1", "s1", "s1"], "ts": pa.array([0, 1_000_000, 2_000_000]).cast(TS_TYPE),
    ...               "temperature": [21.0, 500.0, float("nan")]})
    >>> detect(r).select(["metric", "value", "threshold", "score"]).to_pylist()
    [{'metric': 'temperature', 'value': 500.0, 'threshold': 85.0, 'score': 415.0}]
    """
    a = to_us(emit_start, "emit_start")
    b = to_us(emit_end, "emit_end")
    source = ReadingsSource([readings])
    parts = []
    for lo, hi in source.chunks():
        frame = source.frame(lo, hi, windows, registry=registry)
        parts.append(
            detect_frame(frame, params, windows, -(2**62) if a is None else a, 2**62 if b is None else b)
        )
    return concat_points(parts)
