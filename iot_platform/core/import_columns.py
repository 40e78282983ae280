"""The import column validator: whole columns of an imported CSV or Parquet chunk into readings.

:func:`readings_from_columns` checks the columns with the same rules as the
serial line parser (``core.reading_rules``), vectorized, and returns the good
rows as a ``LANDING`` table plus the bad rows with their reasons.

No pyserial, no Dagster, no environment variables here (house style rule 2).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from iot_platform.core.reading_rules import (
    MISSING_TOKENS,
    MSG_NO_VALUES,
    NONFINITE_TOKENS,
    NUMBER_PATTERN,
    SENSOR_ID_RE,
    SEQ_PATTERN,
    Rejections,
    check_sensor_id,
    msg_limits,
    msg_non_finite,
    msg_not_number,
    msg_sensor_id,
    msg_seq,
    np_bool,
    trimmed_text,
)
from iot_platform.core.schemas import INGEST_LIMITS, LANDING, METRICS, TS_TYPE, conform
from iot_platform.core.timestamps import EPOCH, TimestampParser


def parse_metric_column(name: str, arr: pa.Array, rej: Rejections) -> pa.Array:
    """Float64 values of metric ``name``, null where missing; bad rows go to ``rej``."""
    n = len(arr)
    t = arr.type
    text: pa.Array | None = None
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        try:
            # A clean column (every row a plain number) casts in one pass; Arrow's
            # parser reads those exactly as float() does. NaN/inf text also casts
            # and is refused below, with the text shown as written.
            values = arr.cast(pa.float64())
            text = arr
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            text = trimmed_text(arr)
            missing = np_bool(pc.is_null(text)) | np_bool(
                pc.is_in(text, value_set=pa.array(MISSING_TOKENS, pa.large_string()))
            )
            numeric = np_bool(pc.match_substring_regex(text, f"^{NUMBER_PATTERN}$"))
            bad = ~missing & ~numeric
            if bad.any():
                _reject_text(name, text.to_pylist(), bad, rej)
            values = pc.if_else(pa.array(numeric), text, pa.scalar(None, pa.large_string())).cast(pa.float64())
    elif pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        values = arr.cast(pa.float64())
    elif pa.types.is_null(t):
        return pa.nulls(n, pa.float64())
    else:
        raise ValueError(f"the column read as {name} has type {t}; expected numbers or text")
    v = pc.fill_null(values, 0.0).to_numpy(zero_copy_only=False)
    present = ~np_bool(pc.is_null(values))
    nonfinite = present & ~np.isfinite(v)
    if nonfinite.any():
        shown = (text if text is not None else values).to_pylist()
        rej.add(nonfinite, "non_finite", lambda i: msg_non_finite(name, shown[i]))
    lo, hi = INGEST_LIMITS[name]
    with np.errstate(invalid="ignore"):
        outside = present & np.isfinite(v) & ((v < lo) | (v > hi))
    if outside.any():
        rej.add(outside, "out_of_limits", lambda i: msg_limits(name, float(v[i])))
    return values


def _reject_text(name: str, raw: list, bad: np.ndarray, rej: Rejections) -> None:
    """Reasons for metric text that is not a decimal number."""
    idx = np.flatnonzero(bad & ~rej.bad)
    if idx.size == 0:
        return
    nonfinite = np.zeros(len(bad), dtype=bool)
    other = np.zeros(len(bad), dtype=bool)
    for i in idx.tolist():
        (nonfinite if raw[i].lower() in NONFINITE_TOKENS else other)[i] = True
    rej.add(nonfinite, "non_finite", lambda i: msg_non_finite(name, raw[i]))
    rej.add(other, "not_a_number", lambda i: msg_not_number(name, raw[i]))


def decode_text(name: str, arr: pa.Array, rej: Rejections) -> pa.Array:
    """A binary column as text; rows that are not UTF-8 go to ``rej`` (code ``decode``) and become null.

    The CSV reader hands columns over as bytes so that one bad byte costs its
    row, not the file. A clean column is checked in one cast; only a column
    that fails is cut in halves until the bad values are found (a handful of
    casts per bad value, never a Python loop over the rows).
    """
    if not (pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type)):
        return arr
    target = pa.large_string() if pa.types.is_large_binary(arr.type) else pa.string()
    try:
        return arr.cast(target)
    except pa.ArrowInvalid:
        pass
    bad: list[int] = []
    _find_invalid_utf8(arr, 0, bad)
    mask = np.zeros(len(arr), dtype=bool)
    mask[bad] = True
    values = {i: arr[i].as_py() for i in bad}

    def reason(i: int) -> str:
        raw = values[i]
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return f"{name} is not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset {exc.start}"
        return f"{name} is not UTF-8 text"  # pragma: no cover - Arrow and Python agree on UTF-8

    rej.add(mask, "decode", reason)
    cleaned = pc.if_else(pa.array(mask), pa.scalar(None, arr.type), arr)
    return cleaned.cast(target)


def _find_invalid_utf8(arr: pa.Array, offset: int, out: list[int]) -> None:
    """Positions (plus ``offset``) of the values of ``arr`` that are not UTF-8, by halving."""
    try:
        arr.cast(pa.large_string())
        return
    except pa.ArrowInvalid:
        pass
    if len(arr) == 1:
        out.append(offset)
        return
    half = len(arr) // 2
    _find_invalid_utf8(arr.slice(0, half), offset, out)
    _find_invalid_utf8(arr.slice(half), offset + half, out)


def readings_from_columns(
    columns: Mapping[str, pa.Array],
    *,
    num_rows: int,
    timestamps: TimestampParser,
    source: str,
    received_at: dt.datetime,
    sensor_id: str | None = None,
) -> tuple[pa.Table, np.ndarray, dict[int, tuple[str, str]]]:
    """Validate a chunk of an imported file, column by column, vectorized.

    ``columns`` maps field names (``sensor_id``, ``ts``, ``seq``, metrics) to
    the chunk's arrays; ``sensor_id`` is the id for every row when the file
    has no id column. Returns the good rows as a ``LANDING`` table, the chunk
    positions of those rows, and ``{position: (code, reason)}`` for the bad
    ones (the first failing check, in the order sensor_id, ts, seq, metrics).
    """
    if "ts" not in columns:
        raise ValueError("a timestamp column is required")
    if not any(m in columns for m in METRICS):
        raise ValueError(f"no metric column; expected at least one of {', '.join(METRICS)}")
    n = num_rows
    rej = Rejections(n)
    columns = {name: decode_text(name, arr, rej) for name, arr in columns.items()}

    if "sensor_id" in columns:
        sid = columns["sensor_id"]
        sid = sid.cast(pa.string()) if not pa.types.is_string(sid.type) else sid
        # A fleet has few sensors: check each distinct id once, not every row.
        distinct = pc.unique(sid).to_pylist()
        if any(v is not None and v != v.strip() for v in distinct):
            sid = pc.utf8_trim_whitespace(sid)
            distinct = pc.unique(sid).to_pylist()
        invalid = [v for v in distinct if v is not None and v != "" and not SENSOR_ID_RE.fullmatch(v)]
        sid_missing = np_bool(pc.is_null(sid))
        if "" in distinct:
            sid_missing |= np_bool(pc.equal(sid, ""))
        rej.add(sid_missing, "sensor_id", lambda i: "sensor_id is missing")
        if invalid:
            sid_bad = np_bool(pc.is_in(sid, value_set=pa.array(invalid, pa.string())))
            raw_ids = sid.to_pylist()
            rej.add(sid_bad, "sensor_id", lambda i: msg_sensor_id(raw_ids[i]))
        sensor_ids = sid
    else:
        if sensor_id is None:
            raise ValueError("a sensor_id column or a sensor id for the whole file is required")
        check_sensor_id(sensor_id)
        sensor_ids = pa.array([sensor_id] * n, pa.string()) if n else pa.array([], pa.string())

    ts_us, ts_ok, ts_reasons = timestamps.parse(columns["ts"])
    if ts_reasons:
        bad = np.zeros(n, dtype=bool)
        bad[list(ts_reasons)] = True
        rej.add(bad, "ts", lambda i: ts_reasons[i][1])

    if "seq" in columns:
        seq_arr = columns["seq"]
        if pa.types.is_integer(seq_arr.type):
            seq = seq_arr.cast(pa.int64())
            negative = np_bool(pc.less(seq, 0))
            shown_seq = seq.to_pylist() if negative.any() else []
            rej.add(negative, "seq", lambda i: msg_seq(shown_seq[i]))
        else:
            text = trimmed_text(seq_arr.cast(pa.large_string()))
            empty = np_bool(pc.is_null(text)) | np_bool(pc.is_in(text, value_set=pa.array(MISSING_TOKENS, pa.large_string())))
            good = np_bool(pc.match_substring_regex(text, f"^{SEQ_PATTERN}$"))
            bad = ~empty & ~good
            if bad.any():
                shown_text = text.to_pylist()
                rej.add(bad, "seq", lambda i: msg_seq(shown_text[i]))
            seq = pc.if_else(pa.array(good), text, pa.scalar(None, pa.large_string())).cast(pa.int64())
    else:
        seq = pa.nulls(n, pa.int64())

    metrics: dict[str, pa.Array] = {}
    any_value = np.zeros(n, dtype=bool)
    for m in METRICS:
        if m in columns:
            metrics[m] = parse_metric_column(m, columns[m], rej)
            any_value |= ~np_bool(pc.is_null(metrics[m]))
        else:
            metrics[m] = pa.nulls(n, pa.float64())
    rej.add(~any_value, "no_values", lambda i: MSG_NO_VALUES)

    good_idx = np.flatnonzero(~rej.bad)
    keep = pa.array(~rej.bad)
    received_us = int((received_at - EPOCH) / dt.timedelta(microseconds=1))
    table = pa.table(
        {
            "sensor_id": pc.filter(sensor_ids, keep),
            "ts": pa.array(ts_us[good_idx], pa.int64()).cast(TS_TYPE),
            **{m: pc.filter(metrics[m], keep) for m in METRICS},
            "source": pa.array([source] * len(good_idx), pa.string()),
            "seq": pc.filter(seq, keep),
            "received_at": pa.array(np.full(len(good_idx), received_us, dtype=np.int64), pa.int64()).cast(TS_TYPE),
        }
    )
    return conform(table, LANDING), good_idx, rej.reasons

