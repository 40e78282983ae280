"""Validation of incoming readings: keep what is good, say what was wrong with the rest.

``validate_readings`` turns rows as they arrived (any order, duplicates,
garbage) into rows fit for the lake: sorted by (sensor_id, ts), unique on
that key, every value representable. Nothing is silently dropped: a rejected
row comes back with its reason, an exact re-sent duplicate is counted.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from iot_platform.core.reading_rules import repeated_strings
from iot_platform.core.schemas import INGEST_LIMITS, METRICS, READINGS, REJECTED_READINGS, conform
from iot_platform.core.windows import EncodedSensors

REJECTED = REJECTED_READINGS
# The reason of a reading refused because no daily partition can hold it (before the
# first one, far in the future). It is kept in the rejected_readings of the day it
# arrived, and carried over when that day is rebuilt: its own sources do not hold it.
NO_PARTITION = "no partition: "


@dataclasses.dataclass(frozen=True)
class Validated:
    good: pa.Table  # schemas.READINGS, sorted by (sensor_id, ts), unique on it
    rejected: pa.Table  # REJECTED: the refused rows with the reason
    duplicates: int  # exact re-sent copies absorbed (identical to the kept row)

    @property
    def counts(self) -> dict[str, int]:
        return {"good": self.good.num_rows, "rejected": self.rejected.num_rows, "duplicates": self.duplicates}


def _rejected(table: pa.Table, mask: np.ndarray, reason: str | np.ndarray) -> pa.Table:
    rows = table.filter(pa.array(mask))
    if rows.num_rows == 0:
        return REJECTED.empty_table()
    reasons = pa.array(reason[mask] if isinstance(reason, np.ndarray) else [reason] * rows.num_rows, pa.string())
    return conform(rows.append_column("reason", reasons), REJECTED)


def validate_readings(
    table: pa.Table, start_us: int | None = None, end_us: int | None = None, registry=None
) -> Validated:
    """Split ``table`` (rows in arrival order) into good rows and rejected rows.

    Rejected, with the reason: a null sensor_id or ts; a ts outside
    ``[start_us, end_us)`` when given; a second reading for the same
    (sensor_id, ts) whose values differ from the first. A metric that is not a
    finite number or lies outside its ingest limits (``schemas.INGEST_LIMITS``,
    or the sensor's own in ``registry``, a
    :class:`~iot_platform.core.registry.SensorRegistry`) is nulled in the kept
    row, and the row as received goes to ``rejected`` with the reason: one bad
    metric never costs the row's other metrics. A row left with no value at
    all is rejected whole. (A value merely outside the valid range is a broken
    sensor's reading and is kept, for the sensor_fault detector.)
    An identical copy of a kept reading is a re-sent duplicate: absorbed and
    counted. Of several readings for one key, the first to arrive is kept.
    """
    table = conform(table, READINGS)
    n = table.num_rows
    reasons: list[str] = []
    code = np.zeros(n, dtype=np.int32)  # 0: good, i: reasons[i - 1] (the first problem found)

    def flag(mask: np.ndarray, why: str) -> None:
        if not mask.any():
            return
        new = mask & (code == 0)
        if new.any():
            reasons.append(why)
            code[new] = len(reasons)

    flag(_is_null(table["sensor_id"]), "sensor_id is null")
    flag(_is_null(table["ts"]), "ts is null")
    ts = pc.fill_null(table["ts"].cast(pa.int64()), 0).to_numpy()
    if start_us is not None and end_us is not None and n and (ts.min() < start_us or ts.max() >= end_us):
        flag((ts < start_us) | (ts >= end_us), f"ts outside the partition [{start_us}, {end_us}) us")

    # metric by metric: a bad value is nulled and quarantined, the row's other values stay
    enc = EncodedSensors(table.column("sensor_id"))
    limits = _ingest_limits(enc, registry)
    metric_rejects: list[pa.Table] = []
    nulled: dict[str, np.ndarray] = {}
    left = np.zeros(n, dtype=bool)  # the row still has a value
    had_bad = np.zeros(n, dtype=bool)
    for m in METRICS:
        lo, hi = limits[m]
        if table[m].null_count == 0 and _all_within(table[m], lo, hi):
            left[:] = True  # the common case, proved by the column's min and max: nothing to null
            continue
        v = table[m].to_numpy(zero_copy_only=False)  # nulls become NaN
        present = ~_is_null(table[m])
        with np.errstate(invalid="ignore"):
            not_finite = present & ~np.isfinite(v)
            outside = present & ~not_finite & ((v < lo) | (v > hi))
        bad_m = not_finite | outside
        left |= present & ~bad_m
        if bad_m.any():
            had_bad |= bad_m
            nulled[m] = bad_m
            lo_s, hi_s = (np.broadcast_to(x, v.shape) for x in (lo, hi))
            why = np.where(not_finite, f"{m} is not a finite number",
                           np.char.add(np.char.add(np.char.add(f"{m} outside the ingest limits [",
                                                               lo_s.astype(str)), ", "), hi_s.astype(str)) + "]")  # fmt: skip
            metric_rejects.append((bad_m, why.astype(object)))
    whole = had_bad & ~left  # nothing left to keep: the row is rejected whole, with its first metric reason
    for bad_m, why in metric_rejects:
        first = bad_m & whole & (code == 0)
        if first.any():
            for r in np.unique(why[first]):
                flag(first & (why == r), str(r))
    partial = []
    for bad_m, why in metric_rejects:
        sel = bad_m & ~whole & (code == 0)
        if sel.any():
            partial.append(_rejected(table, sel, np.array([f"{w}: nulled, the row's other values kept" for w in why],
                                                          dtype=object)))  # fmt: skip
    if nulled:
        for m, mask in nulled.items():
            col = table[m].to_numpy(zero_copy_only=False).astype(np.float64)
            keep = ~(mask & ~whole & (code == 0))  # a refused row goes to quarantine as received
            table = table.set_column(table.schema.get_field_index(m), READINGS.field(m),
                                     pa.array(np.where(keep, col, np.nan), pa.float64(),
                                              mask=~keep | _is_null(table[m])))  # fmt: skip
    reason = np.array([None, *reasons], dtype=object)[code] if reasons else None
    bad = code != 0
    ok = table.filter(pa.array(~bad)) if reasons else table

    # Sort by (sensor, ts), ties by arrival, then keep the first of each key.
    rank = np.append(np.argsort(np.argsort(enc.dictionary)), 0)  # sensor code in id order; nulls were refused
    sensor_code = enc.mapped(rank)[~bad] if reasons else enc.mapped(rank)
    ts_ok = ts[~bad] if reasons else ts
    order = _sort_order(sensor_code, ts_ok)
    duplicates = 0
    conflicting = REJECTED.empty_table()
    if order is None:  # already in (sensor, ts) order with unique keys, as a simulator or a sorted file gives them
        good = ok
    else:
        sc, st = sensor_code[order], ts_ok[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = (sc[1:] != sc[:-1]) | (st[1:] != st[:-1])
        dup_mask = ~first
        if dup_mask.any():
            # compare each repeated row with the kept row of its key (the last first row before it): only the
            # repeated rows (a few per thousand) and their kept rows are gathered, not the day's columns
            dup_at = np.flatnonzero(dup_mask)
            firsts = np.flatnonzero(first)
            keep_at = firsts[np.searchsorted(firsts, dup_at, side="right") - 1]
            pair_rows = pa.array(np.concatenate([order[dup_at], order[keep_at]]))
            identical = np.ones(len(dup_at), dtype=bool)
            for m in METRICS:
                v = ok[m].take(pair_rows).to_numpy(zero_copy_only=False)  # nulls become NaN
                a, b = v[: len(dup_at)], v[len(dup_at) :]
                identical &= (a == b) | (np.isnan(a) & np.isnan(b))
            duplicates = int(identical.sum())
            clash = order[dup_at[~identical]]
            if len(clash):
                conflicting = _rejected(ok.take(pa.array(clash)), np.ones(len(clash), dtype=bool),
                                        "conflicting duplicate: another reading for this (sensor_id, ts) arrived first")  # fmt: skip
        # one gather of the kept rows in key order (a take then a filter copies the day twice)
        kept_codes = sc[first]
        by_rank = np.empty(len(enc.dictionary), dtype=object)
        by_rank[rank[:-1]] = enc.dictionary
        good = _take(ok, order[first], _sorted_ids(by_rank, kept_codes))
    rejected = pa.concat_tables(
        [_rejected(table, bad, reason) if reason is not None else REJECTED.empty_table(), *partial, conflicting]
    )
    return Validated(good=good, rejected=rejected, duplicates=duplicates)


def _sorted_ids(names: np.ndarray, codes: np.ndarray) -> pa.Array:
    """The sensor_id column of rows sorted by sensor: ``names[codes]`` built from its runs, not row by row."""
    if len(codes) == 0:
        return pa.array([], pa.string())
    starts = np.flatnonzero(np.diff(codes)) + 1
    lengths = np.diff(np.concatenate([[0], starts, [len(codes)]]))
    return repeated_strings(names[codes[np.concatenate([[0], starts])]].tolist(), lengths)


def _take(table: pa.Table, rows: np.ndarray, sensor_ids: pa.Array) -> pa.Table:
    """``table.take(rows)`` with ``sensor_ids`` (already gathered) for its sensor_id column.

    Column by column the cheapest way to the same values: Arrow's take costs
    a day's chunk more than all of validation's checks. A column without
    nulls of 64-bit values is one ``np.take`` of its buffers, an all-null
    column is made anew, a string column of one value is that value
    repeated; anything else goes through Arrow's take.
    """
    arrays = []
    n = len(rows)
    for field, col in zip(table.schema, table.columns):
        if field.name == "sensor_id":
            arrays.append(sensor_ids)
        elif col.null_count == len(col):
            arrays.append(pa.nulls(n, field.type))
        elif col.null_count == 0 and (pa.types.is_float64(field.type) or pa.types.is_int64(field.type)
                                      or pa.types.is_timestamp(field.type)):  # fmt: skip
            # into a buffer of Arrow's pool, which keeps its pages mapped: a fresh NumPy array of a
            # day's chunk costs more in page faults than the gather itself
            buf = pa.allocate_buffer(n * 8)
            np.take(_values64(col), rows, out=np.frombuffer(buf, dtype=np.uint64), mode="clip")  # rows are in range
            arrays.append(pa.Array.from_buffers(field.type, n, [None, buf]))
        elif col.null_count == 0 and pa.types.is_string(field.type) and _one_value(col):
            arrays.append(repeated_strings([col[0].as_py()], np.array([n])))
        else:
            arrays.append(col.take(pa.array(rows)))
    return pa.Table.from_arrays(arrays, schema=table.schema)


def _values64(col: pa.ChunkedArray) -> np.ndarray:
    """The values of a column of 64-bit values without nulls, as raw uint64 (bit for bit)."""
    if col.num_chunks == 0:
        return np.zeros(0, np.uint64)
    arr = col.chunk(0) if col.num_chunks == 1 else pa.concat_arrays(col.chunks)  # Arrow's pool, as above
    return np.frombuffer(arr.buffers()[1], dtype=np.uint64, count=len(arr), offset=arr.offset * 8)


def _one_value(col: pa.ChunkedArray) -> bool:
    """Whether every row of a non-empty string column without nulls holds its first row's value."""
    return len(col) > 0 and pc.all(pc.equal(col, col[0])).as_py()


def _ingest_limits(enc: EncodedSensors, registry) -> dict[str, tuple]:
    """Per metric (low, high): scalars from ``schemas.INGEST_LIMITS``, or from the registry.

    Scalars where every sensor of the batch has the same limits, else one value per row.
    """
    if registry is None:
        return dict(INGEST_LIMITS)
    names = np.array(sorted(enc.used()), dtype=object)
    code = enc.codes(names)
    res = registry.resolve(names)
    out = {}
    for m in METRICS:
        lo, hi = res.ingest_lo[m], res.ingest_hi[m]
        if len(lo) and (lo == lo[0]).all() and (hi == hi[0]).all():
            out[m] = (lo[0], hi[0])  # rows of unknown or null sensors are refused before the limits matter
            continue
        # code -1 (null sensor_id): no limit (rejected anyway)
        out[m] = (np.append(lo, -np.inf)[code], np.append(hi, np.inf)[code])
    return out


def _sort_order(sensor_code: np.ndarray, ts: np.ndarray) -> np.ndarray | None:
    """Stable order by (sensor, ts), ties keeping arrival order; None when the rows are already in it, unique."""
    if len(ts) == 0:
        return None
    if len(ts) > 1:
        sc_step, ts_step = np.diff(sensor_code), np.diff(ts)
        if ((sc_step > 0) | ((sc_step == 0) & (ts_step > 0))).all():
            return None
    lo = int(ts.min())
    span = int(ts.max()) - lo + 1
    if span * (int(sensor_code.max()) + 1) < 2**62:
        # one int64 key and numpy's radix sort: several times faster than lexsort
        return np.argsort(sensor_code * span + (ts - lo), kind="stable")
    return np.lexsort((np.arange(len(ts)), ts, sensor_code))


def _all_within(col: pa.ChunkedArray, lo: object, hi: object) -> bool:
    """Whether every value of a float column without nulls is finite and inside scalar limits [lo, hi].

    Its min and max say it (a NaN makes them NaN, which fails the comparisons).
    """
    if np.ndim(lo) or np.ndim(hi):
        return False
    for ch in col.chunks:
        if len(ch):
            v = ch.to_numpy()
            low, high = v.min(), v.max()
            if not (lo <= low and high <= hi and math.isfinite(low) and math.isfinite(high)):
                return False
    return True


def _is_null(col: pa.ChunkedArray) -> np.ndarray:
    if col.null_count == 0:
        return np.zeros(len(col), dtype=bool)
    return pc.is_null(col, nan_is_null=False).to_numpy(zero_copy_only=False)
