"""Alert points: what the detectors emit before alerts are merged into episodes.

A point is one anomalous reading, window or silence tick. Points of a time
range are a pure function of the inputs, so the micro-batch path can store
the points of each batch and merge a day's points into episodes later
(:func:`~iot_platform.core.detectors.episodes.to_episodes`).

Which range a point belongs to (the rule that makes slices add up to the day):

* per-reading points (spike, sensor_fault): ``ts`` is the reading's time, in
  ``[emit_start, emit_end)`` like the readings of the slice;
* per-window and per-tick points: ``ts`` is the window end or tick, in
  ``(emit_start, emit_end]`` like the windows the slice completes.

``tick_ts`` is the systemic grid tick a point counts for: the first multiple
of ``WindowParams.hop_s`` after a reading, the window end or tick itself
otherwise. ``step_s`` is the spacing of consecutive points of the kind for
that sensor (its sample interval or its hop), used to merge episodes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from iot_platform.core.schemas import TS_TYPE
from iot_platform.core.windows import names_array

POINTS = pa.schema(
    [
        pa.field("sensor_id", pa.string(), nullable=False),
        pa.field("anomaly_type", pa.string(), nullable=False),
        pa.field("severity", pa.string(), nullable=False),
        pa.field("metric", pa.string()),
        pa.field("ts", TS_TYPE, nullable=False),
        pa.field("tick_ts", TS_TYPE, nullable=False),
        pa.field("step_s", pa.float64(), nullable=False),
        pa.field("value", pa.float64()),
        pa.field("threshold", pa.float64()),
        pa.field("score", pa.float64()),  # higher means more anomalous
        pa.field("message", pa.string()),
    ]
)

SORT_KEYS = [("sensor_id", "ascending"), ("anomaly_type", "ascending"), ("metric", "ascending", "at_start"),
             ("ts", "ascending")]  # fmt: skip


def reading_tick(ts: np.ndarray, hop_us: int) -> np.ndarray:
    """The first tick strictly after each reading time (the tick whose [tick - hop, tick) holds it)."""
    return ts // hop_us * hop_us + hop_us


def fmt(x: np.ndarray | pa.Array, ndigits: int) -> pa.Array:
    """Numbers as short strings, rounded (vectorized, for messages)."""
    return pc.cast(pc.round(pa.array(x, pa.float64()), ndigits), pa.string())


def join(*parts: str | pa.Array) -> pa.Array:
    """Element-wise concatenation of string arrays and constants."""
    return pc.binary_join_element_wise(*parts, "")


def make_points(
    names: np.ndarray,
    code: np.ndarray,
    *,
    anomaly_type: str,
    severity: np.ndarray | str,
    metric: str | None,
    ts: np.ndarray,
    tick_ts: np.ndarray,
    step_s: np.ndarray | float,
    value: np.ndarray,
    threshold: np.ndarray | float,
    score: np.ndarray,
    message: pa.Array | str,
) -> pa.Table:
    n = len(code)
    if n == 0:
        return POINTS.empty_table()

    def full(x, typ):
        if isinstance(x, pa.Array):
            return x.cast(typ)
        if np.ndim(x) == 0:
            return pa.array(np.full(n, x, dtype=object if typ == pa.string() else None), typ, from_pandas=True)
        return pa.array(x, typ, from_pandas=True)

    return pa.Table.from_arrays(
        [
            names_array(names, code),
            pa.array([anomaly_type] * n, pa.string()),
            full(severity, pa.string()),
            pa.nulls(n, pa.string()) if metric is None else full(metric, pa.string()),
            pa.array(ts, pa.int64()).cast(TS_TYPE),
            pa.array(tick_ts, pa.int64()).cast(TS_TYPE),
            full(step_s, pa.float64()),
            full(value, pa.float64()),
            full(threshold, pa.float64()),
            full(score, pa.float64()),
            full(message, pa.string()),
        ],
        schema=POINTS,
    )


def severity_of(score: np.ndarray, critical_at: float | np.ndarray) -> np.ndarray:
    return np.where(score > critical_at, "critical", "warning").astype(object)


def sort_points(table: pa.Table) -> pa.Table:
    if table.num_rows < 2:
        return table
    return table.take(pc.sort_indices(table, sort_keys=SORT_KEYS))


def concat_points(parts: Sequence[pa.Table]) -> pa.Table:
    parts = [p for p in parts if p.num_rows]
    if not parts:
        return POINTS.empty_table()
    return sort_points(pa.concat_tables(parts))


def in_range(table: pa.Table, start_us: int, end_us: int, *, closed: str) -> pa.Table:
    """Rows of ``table`` whose ``ts`` is in [start, end) (closed="left") or (start, end] (closed="right")."""
    ts = pc.cast(table.column("ts"), pa.int64()).to_numpy()
    mask = (ts >= start_us) & (ts < end_us) if closed == "left" else (ts > start_us) & (ts <= end_us)
    return table.filter(pa.array(mask))
