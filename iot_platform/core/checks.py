"""Data-quality checks of ``window_stats`` and ``anomalies``, as pure functions.

Each check takes the table and returns a :class:`CheckResult`
``(passed, n_bad, examples)``: ``examples`` are the first offending rows (in
table order), so the check reads like an audit query returning the bad rows.
The Dagster asset checks wrap these; nothing here imports Dagster.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from iot_platform.core.schemas import ANOMALY_TYPES, SEVERITIES

MAX_EXAMPLES = 5


class CheckResult(NamedTuple):
    passed: bool
    n_bad: int
    examples: pa.Table  # up to MAX_EXAMPLES offending rows


def _result(table: pa.Table, bad: np.ndarray) -> CheckResult:
    idx = np.flatnonzero(bad)
    return CheckResult(len(idx) == 0, int(len(idx)), table.take(pa.array(idx[:MAX_EXAMPLES], pa.int64())))


def _num(table: pa.Table, name: str) -> np.ndarray:
    """A numeric or timestamp column as float64 / int64, nulls as NaN (timestamps: as NaN-able floats)."""
    col = table.column(name)
    if pa.types.is_timestamp(col.type):
        col = pc.cast(col, pa.int64())
    return np.asarray(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def window_counts_and_rates_in_range(window_stats: pa.Table) -> CheckResult:
    """Bad: n_readings null or < 1 (a window exists because it holds a reading), missing_rate null or
    outside [0, 1], window_start not before window_end."""
    n = _num(window_stats, "n_readings")
    miss = _num(window_stats, "missing_rate")
    with np.errstate(invalid="ignore"):
        bad = ~(n >= 1) | ~((miss >= 0) & (miss <= 1)) | ~(
            _num(window_stats, "window_start") < _num(window_stats, "window_end")
        )
    return _result(window_stats, bad)


def window_statistics_consistent(window_stats: pa.Table) -> CheckResult:
    """Bad: temp_min > temp_mean or temp_mean > temp_max (beyond rounding), temp_std < 0,
    vibration_mean > vibration_max. Null statistics (no valid value) pass."""
    lo, mean, hi = (_num(window_stats, c) for c in ("temp_min", "temp_mean", "temp_max"))
    eps = 1e-9 * np.maximum(1.0, np.abs(np.nan_to_num(mean)))
    with np.errstate(invalid="ignore"):
        bad = (
            (lo > mean + eps)
            | (mean > hi + eps)
            | (_num(window_stats, "temp_std") < 0)
            | (_num(window_stats, "vibration_mean") > _num(window_stats, "vibration_max") + 1e-9)
        )
    return _result(window_stats, bad)


def window_keys_unique(window_stats: pa.Table) -> CheckResult:
    """Bad: every row of a (sensor_id, window_end) that occurs more than once."""
    return _duplicates(window_stats, ["sensor_id", "window_end"])


def anomaly_types_known(anomalies: pa.Table) -> CheckResult:
    """Bad: anomaly_type not in schemas.ANOMALY_TYPES."""
    return _result(anomalies, ~_in(anomalies, "anomaly_type", ANOMALY_TYPES))


def anomaly_severities_known(anomalies: pa.Table) -> CheckResult:
    """Bad: severity not in schemas.SEVERITIES."""
    return _result(anomalies, ~_in(anomalies, "severity", SEVERITIES))


def anomaly_start_not_after_end(anomalies: pa.Table) -> CheckResult:
    """Bad: start_ts after end_ts, or either null."""
    start, end = _num(anomalies, "start_ts"), _num(anomalies, "end_ts")
    with np.errstate(invalid="ignore"):
        return _result(anomalies, ~(start <= end))


def anomaly_ids_unique(anomalies: pa.Table) -> CheckResult:
    """Bad: every row whose anomaly_id is null or occurs more than once."""
    return _duplicates(anomalies, ["anomaly_id"])


def _in(table: pa.Table, name: str, allowed: tuple[str, ...]) -> np.ndarray:
    mask = pc.is_in(table.column(name), value_set=pa.array(list(allowed), pa.string()))
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)


def _duplicates(table: pa.Table, keys: list[str]) -> CheckResult:
    n = table.num_rows
    if n == 0:
        return _result(table, np.zeros(0, dtype=bool))
    cols, nulls = [], np.zeros(n, dtype=bool)
    for k in keys:
        col = table.column(k)
        nulls |= np.asarray(pc.is_null(col).to_numpy(zero_copy_only=False), dtype=bool)
        if pa.types.is_timestamp(col.type) or pa.types.is_integer(col.type):
            cols.append(np.asarray(pc.fill_null(pc.cast(col, pa.int64()), 0).to_numpy(zero_copy_only=False)))
        else:
            enc = pc.dictionary_encode(col).combine_chunks()
            cols.append(np.asarray(pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False), dtype=np.int64))
    order = np.lexsort(cols[::-1])
    same = np.ones(n - 1, dtype=bool)
    for c in cols:
        s = c[order]
        same &= s[1:] == s[:-1]
    dup_sorted = np.zeros(n, dtype=bool)
    dup_sorted[1:] |= same
    dup_sorted[:-1] |= same
    bad = np.zeros(n, dtype=bool)
    bad[order] = dup_sorted
    return _result(table, bad | nulls)


WINDOW_STATS_CHECKS: dict[str, Callable[[pa.Table], CheckResult]] = {
    "counts_and_rates_in_range": window_counts_and_rates_in_range,
    "statistics_consistent": window_statistics_consistent,
    "keys_unique": window_keys_unique,
}
ANOMALIES_CHECKS: dict[str, Callable[[pa.Table], CheckResult]] = {
    "types_known": anomaly_types_known,
    "severities_known": anomaly_severities_known,
    "start_not_after_end": anomaly_start_not_after_end,
    "ids_unique": anomaly_ids_unique,
}
