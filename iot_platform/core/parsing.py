"""Turning untrusted text into readings: serial lines and columns of imported files.

Two entry points share one set of rules (what a sensor id, a number, a sequence
number and a timestamp may look like, and the ingest limits):

* :class:`LineParser` parses lines as a device prints them (CSV, ``key=value``,
  JSON, a bare value). :meth:`LineParser.parse_line` is the reference: it
  returns a :class:`Reading`, ``None`` for a comment line, or raises a
  :class:`ParseError` naming the field, the value and what is allowed.
  :meth:`LineParser.parse_batch` gives exactly the same result for a list of
  lines, but parses the delimited formats with Arrow over the whole batch
  (one RE2 match per line, then the Arrow CSV reader) and sends only the lines
  the fast path refuses through ``parse_line``, so that capture keeps up with
  tens of thousands of lines per second.
* :func:`readings_from_columns` validates whole Arrow columns (an imported
  CSV or Parquet chunk) with the same rules, vectorized, and returns the good
  rows as a ``LANDING`` table plus the bad rows with their reasons.

What is rejected: undecodable bytes, empty lines, a wrong field count,
non-numbers, NaN and infinity, values outside ``INGEST_LIMITS``, bad sensor
ids, sequence numbers and timestamps. What is kept: values outside
``VALID_RANGE`` but inside ``INGEST_LIMITS`` -- a broken sensor's reading is
data, and the ``sensor_fault`` detector reports it.

No pyserial, no Dagster, no environment variables here (house style rule 2).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import math
import re
import warnings
import zoneinfo
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from iot_platform.core.schemas import INGEST_LIMITS, LANDING, METRICS, TS_TYPE, VALID_RANGE, conform

# ---------------------------------------------------------------------------
# Rules shared by every path
# ---------------------------------------------------------------------------

DEFAULT_COLUMNS: tuple[str, ...] = ("sensor_id", "seq", *METRICS)
SKIP_COLUMN = "_"  # a CSV column whose content is ignored
FIELDS: tuple[str, ...] = ("sensor_id", "seq", "ts", *METRICS)
LINE_FORMATS: tuple[str, ...] = ("csv", "kv", "json", "value")
TS_UNITS: dict[str, float] = {"s": 1_000_000.0, "ms": 1_000.0, "us": 1.0}

# The firmware's rule for SENSOR_ID: short, no separators, no spaces.
SENSOR_ID_PATTERN = r"[A-Za-z0-9_.:-]{1,64}"
SENSOR_ID_ALLOWED = "1 to 64 characters from A-Z a-z 0-9 _ . : -"
# A plain decimal number. Both Python's float() and Arrow's parser read every
# string this matches to the same double, which is what keeps the fast path
# and parse_line in agreement. NaN, inf, '1_000' and ' 1' do not match.
NUMBER_PATTERN = r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
SEQ_PATTERN = r"[0-9]{1,18}"  # always fits an int64
SEQ_ALLOWED = "a whole number from 0 to 999999999999999999"
_ISO_NAIVE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?"
_ISO_ZONED = _ISO_NAIVE + r"(?:Z|[+-][0-9]{2}:[0-9]{2})"

_SENSOR_ID_RE = re.compile(SENSOR_ID_PATTERN)
_NUMBER_RE = re.compile(NUMBER_PATTERN)
_SEQ_RE = re.compile(SEQ_PATTERN)
_INT_RE = re.compile(r"[-+]?[0-9]+")

# Timestamps a reading may carry: the platform has no data before the epoch,
# and a year beyond 2200 is a unit mistake (milliseconds read as seconds).
TS_MIN = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
TS_MAX = dt.datetime(2200, 1, 1, tzinfo=dt.timezone.utc)
_EPOCH = TS_MIN
_TS_MIN_US = 0
_TS_MAX_US = int((TS_MAX - _EPOCH).total_seconds()) * 1_000_000
TS_ALLOWED = "ISO 8601 such as 2026-11-22T15:01:02Z, or epoch {unit}"
TS_RANGE = "1970-01-01 to 2200-01-01"

# Text an imported file uses for "no value" (pandas writes '', R writes NA).
MISSING_TOKENS: tuple[str, ...] = ("", "NA", "N/A", "null", "NULL", "None")
_NONFINITE_TOKENS = frozenset({"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"})

REJECT_CODES: dict[str, str] = {
    "empty": "an empty line",
    "decode": "bytes that are not UTF-8 text",
    "incomplete": "a line cut off by a disconnect or by stopping, before its end of line",
    "too_long": "a line longer than the framing limit without an end of line",
    "field_count": "a CSV line with the wrong number of fields",
    "syntax": "a key=value or JSON line that does not parse",
    "sensor_id": "a missing or malformed sensor id",
    "seq": "a malformed sequence number",
    "ts": "a malformed or out-of-range timestamp",
    "not_a_number": "a metric value that is not a number",
    "non_finite": "NaN or infinity",
    "out_of_limits": "a value outside INGEST_LIMITS (cannot be a measurement)",
    "no_values": "a line or row without any metric value",
}


class ParseError(ValueError):
    """A line or value that is not a reading.

    ``code`` is a stable category (a key of :data:`REJECT_CODES`), ``field``
    and ``value`` say what was wrong; the message says what is allowed.
    """

    def __init__(self, message: str, *, code: str, field: str | None = None, value: object = None):
        super().__init__(message)
        self.code = code
        self.field = field
        self.value = value


class DecodeError(ParseError):
    """The line's bytes are not text (wrong baud rate, noise on the wire)."""


class FramingError(ParseError):
    """The line's structure is wrong: empty, cut, wrong field count, bad syntax."""


class FieldError(ParseError):
    """One field's value is not allowed (sensor id, seq, timestamp, a metric)."""


@dataclass(frozen=True, slots=True)
class Reading:
    """One parsed reading. ``ts`` is the device's time (UTC) when the line had one."""

    sensor_id: str
    seq: int | None = None
    ts: dt.datetime | None = None
    temperature: float | None = None
    humidity: float | None = None
    pressure: float | None = None
    vibration: float | None = None
    battery_level: float | None = None


assert tuple(f.name for f in dataclasses.fields(Reading))[3:] == METRICS, "Reading must list METRICS in order"


# -- messages (one wording for the per-line and the vectorized paths) ----------


def _msg_sensor_id(value: object) -> str:
    return f"sensor_id {value!r} is not valid; expected {SENSOR_ID_ALLOWED}"


def _msg_seq(value: object) -> str:
    return f"seq {value!r} is not valid; expected {SEQ_ALLOWED}"


def _msg_not_number(name: str, value: object) -> str:
    return f"{name} {value!r} is not a number; expected a decimal number such as 23.5"


def _msg_non_finite(name: str, value: object) -> str:
    return f"{name} {value!r} is not a finite number; NaN and infinity are rejected"


def _msg_limits(name: str, value: float) -> str:
    lo, hi = INGEST_LIMITS[name]
    vlo, vhi = VALID_RANGE[name]
    return (
        f"{name} {value!r} is outside the ingest limits {lo!r} to {hi!r} "
        f"(values outside the valid range {vlo!r} to {vhi!r} but inside these limits are kept)"
    )


def _msg_ts(value: object, unit: str = "seconds") -> str:
    return f"ts {value!r} is not a timestamp; expected {TS_ALLOWED.format(unit=unit)}"


def _msg_ts_range(value: object) -> str:
    return f"ts {value!r} is outside {TS_RANGE}"


_MSG_NO_VALUES = "no metric values; expected at least one of " + ", ".join(METRICS)


# -- single values -------------------------------------------------------------


def check_sensor_id(value: str) -> str:
    if not _SENSOR_ID_RE.fullmatch(value):
        raise FieldError(_msg_sensor_id(value), code="sensor_id", field="sensor_id", value=value)
    return value


def parse_number(name: str, text: str, *, scale: float = 1.0, offset: float = 0.0) -> float:
    """``text`` as the value of metric ``name``, checked against ``INGEST_LIMITS``."""
    if not _NUMBER_RE.fullmatch(text):
        code, msg = (
            ("non_finite", _msg_non_finite(name, text))
            if text.lower() in _NONFINITE_TOKENS
            else ("not_a_number", _msg_not_number(name, text))
        )
        raise FieldError(msg, code=code, field=name, value=text)
    value = float(text)
    if scale != 1.0 or offset != 0.0:
        value = value * scale + offset
    return check_metric(name, value, text)


def check_metric(name: str, value: float, shown: object = None) -> float:
    if not math.isfinite(value):
        raise FieldError(_msg_non_finite(name, value if shown is None else shown), code="non_finite", field=name, value=value)
    lo, hi = INGEST_LIMITS[name]
    if not lo <= value <= hi:
        raise FieldError(_msg_limits(name, value), code="out_of_limits", field=name, value=value)
    return value


def parse_seq(text: str) -> int:
    if not _SEQ_RE.fullmatch(text):
        raise FieldError(_msg_seq(text), code="seq", field="seq", value=text)
    return int(text)


def parse_timestamp(text: str, *, unit: str = "s") -> dt.datetime:
    """A device timestamp: ISO 8601 (naive means UTC) or a number of epoch ``unit``."""
    if _NUMBER_RE.fullmatch(text):
        value = float(text)
        if not math.isfinite(value):
            raise FieldError(_msg_ts(text, _UNIT_NAMES[unit]), code="ts", field="ts", value=text)
        us = round(value * TS_UNITS[unit])
    else:
        try:
            parsed = dt.datetime.fromisoformat(text)
        except ValueError:
            raise FieldError(_msg_ts(text, _UNIT_NAMES[unit]), code="ts", field="ts", value=text) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.timezone.utc)
        try:
            delta = parsed - _EPOCH
        except OverflowError:  # pragma: no cover - only for offsets at datetime.min/max
            raise FieldError(_msg_ts_range(text), code="ts", field="ts", value=text) from None
        us = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if not _TS_MIN_US <= us < _TS_MAX_US:
        raise FieldError(_msg_ts_range(text), code="ts", field="ts", value=text)
    return _EPOCH + dt.timedelta(microseconds=us)


_UNIT_NAMES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}


# ---------------------------------------------------------------------------
# Lines
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LineFormat:
    """How a device prints its readings; validates itself on construction.

    * ``csv``: fields separated by ``delimiter`` in the order of ``columns``,
      each one of ``sensor_id``, ``seq``, ``ts``, a metric, or ``_`` (ignored).
      An empty metric field means "not measured".
    * ``kv``: ``key=value`` pairs separated by spaces, commas or semicolons.
    * ``json``: one JSON object per line.
    * ``value``: a bare number (``450``), stored as ``metric`` of ``sensor_id``
      after ``value * scale + offset``.

    ``sensor_id`` is the id for lines that carry none. ``keys`` maps the field
    names (``sensor_id``, ``seq``, ``ts``, a metric) to the device's keys in
    ``kv`` and ``json`` lines, e.g. ``(("temperature", "t"),)``; unknown keys
    are ignored. ``ts_unit`` is the unit of numeric device timestamps.
    """

    kind: str = "csv"
    columns: tuple[str, ...] = DEFAULT_COLUMNS
    delimiter: str = ","
    sensor_id: str | None = None
    metric: str | None = None
    scale: float = 1.0
    offset: float = 0.0
    keys: tuple[tuple[str, str], ...] = ()
    ts_unit: str = "s"

    def __post_init__(self) -> None:
        if self.kind not in LINE_FORMATS:
            raise ValueError(f"line format {self.kind!r} is not supported; expected one of {', '.join(LINE_FORMATS)}")
        if self.sensor_id is not None and not _SENSOR_ID_RE.fullmatch(self.sensor_id):
            raise ValueError(_msg_sensor_id(self.sensor_id))
        if self.ts_unit not in TS_UNITS:
            raise ValueError(f"timestamp unit {self.ts_unit!r} is not supported; expected one of {', '.join(TS_UNITS)}")
        if not (math.isfinite(self.scale) and math.isfinite(self.offset)) or self.scale == 0:
            raise ValueError(f"scale {self.scale!r} and offset {self.offset!r} must be finite, and scale non-zero")
        if self.kind == "csv":
            self._check_columns()
        if self.kind == "value":
            if self.metric not in METRICS:
                raise ValueError(f"metric {self.metric!r} is not known; expected one of {', '.join(METRICS)}")
            if self.sensor_id is None:
                raise ValueError("the value format needs a sensor id (the line carries none)")
        elif self.scale != 1.0 or self.offset != 0.0 or self.metric is not None:
            raise ValueError("metric, scale and offset apply to the value format only")
        seen: set[str] = set()
        for name, key in self.keys:
            if name not in FIELDS:
                raise ValueError(f"field {name!r} is not known; expected one of {', '.join(FIELDS)}")
            if not key or key in seen:
                raise ValueError(f"device key {key!r} for {name} is empty or mapped twice")
            seen.add(key)

    def _check_columns(self) -> None:
        if len(self.delimiter) != 1 or self.delimiter.isalnum() or self.delimiter in '.+-"\n\r':
            raise ValueError(
                f"delimiter {self.delimiter!r} is not supported; expected one character that is not "
                "a letter, digit, quote, '.', '+', '-' or a line break"
            )
        names = [c for c in self.columns if c != SKIP_COLUMN]
        for c in names:
            if c not in FIELDS:
                raise ValueError(f"column {c!r} is not known; expected one of {', '.join(FIELDS)}, or _ to skip a field")
        if len(set(names)) != len(names):
            raise ValueError(f"columns {','.join(self.columns)} name a field twice")
        if not any(c in METRICS for c in names):
            raise ValueError(f"columns {','.join(self.columns)} have no metric; expected at least one of {', '.join(METRICS)}")
        if "sensor_id" not in names and self.sensor_id is None:
            raise ValueError("the columns have no sensor_id, so a default sensor id is needed")

    @property
    def effective_columns(self) -> tuple[str, ...]:
        """The CSV columns a line has (the value format is a one-column CSV)."""
        return (self.metric,) if self.kind == "value" else self.columns  # type: ignore[return-value]

    def describe(self) -> str:
        if self.kind == "csv":
            return f"csv {self.delimiter.join(self.columns)}"
        if self.kind == "value":
            return f"value -> {self.sensor_id} {self.metric} (x{self.scale:g} {self.offset:+g})"
        return self.kind


@dataclass(frozen=True)
class Reject:
    """Line ``index`` of a batch was refused for ``error``."""

    index: int
    error: ParseError


@dataclass
class ParsedBatch:
    """The readings of a batch of lines (a ``LANDING`` table, in line order) and its rejects.

    ``index`` holds, for each row of ``table``, the position of its line.
    """

    table: pa.Table
    index: np.ndarray
    rejects: list[Reject] = field(default_factory=list)
    comments: int = 0


_FAST_PATH_MIN_LINES = 16  # below this, the vectorized path's fixed cost is not worth it
_KV_SEPARATORS = re.compile(r"[\s,;]+")


class LineParser:
    """Parses the lines of one :class:`LineFormat`; see the module docstring."""

    def __init__(self, fmt: LineFormat):
        self.fmt = fmt
        self._device_key = {name: key for name, key in fmt.keys}
        self._field_of_key = {key: name for name, key in fmt.keys}
        for name in FIELDS:  # canonical names work unless mapped to something else
            if name not in self._device_key and name not in self._field_of_key:
                self._field_of_key[name] = name
        self._columns = fmt.effective_columns
        self._ts_unit_name = _UNIT_NAMES[fmt.ts_unit]
        if fmt.kind in ("csv", "value"):
            self._fast_re = self._line_regex()

    # -- one line --------------------------------------------------------------
    def parse_line(self, raw: bytes) -> Reading | None:
        """The reading in ``raw`` (one line, with or without its ``\\r\\n``).

        Returns ``None`` for a comment (a line starting with ``#``, such as a
        board's banner); raises :class:`ParseError` for anything else that is
        not a reading.
        """
        line = raw.strip()
        if not line:
            raise FramingError("empty line", code="empty")
        if line[:1] == b"#":
            return None
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(
                f"line is not UTF-8 text: byte 0x{line[exc.start]:02x} at offset {exc.start}", code="decode", value=raw
            ) from None
        kind = self.fmt.kind
        if kind == "json":
            return self._from_json(text)
        if kind == "kv":
            return self._from_kv(text)
        return self._from_csv(text)

    def _from_csv(self, text: str) -> Reading:
        parts = text.split(self.fmt.delimiter)
        if len(parts) != len(self._columns):
            raise FramingError(
                f"expected {len(self._columns)} fields ({self.fmt.delimiter.join(self._columns)}), got {len(parts)}",
                code="field_count",
                value=text,
            )
        values: dict[str, str] = {}
        for name, part in zip(self._columns, parts):
            if name != SKIP_COLUMN:
                values[name] = part.strip()
        return self._reading(values)

    def _from_kv(self, text: str) -> Reading:
        values: dict[str, str] = {}
        for token in _KV_SEPARATORS.split(text):
            if not token:
                continue
            key, sep, value = token.partition("=")
            if not sep or not key:
                raise FramingError(f"token {token!r} is not key=value", code="syntax", value=token)
            name = self._field_of_key.get(key)
            if name is None:
                continue  # a device's extra diagnostics (rssi=..., uptime=...)
            if name in values:
                raise FramingError(f"key {key!r} appears twice in the line", code="syntax", field=name, value=text)
            values[name] = value
        return self._reading(values)

    def _from_json(self, text: str) -> Reading:
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise FramingError(f"line is not JSON: {exc}", code="syntax", value=text) from None
        if not isinstance(obj, dict):
            raise FramingError(f"JSON line is a {type(obj).__name__}; expected an object", code="syntax", value=text)
        values: dict[str, str] = {}
        for key, value in obj.items():
            name = self._field_of_key.get(key)
            if name is None or value is None:
                continue
            values[name] = _json_text(name, value)
        return self._reading(values)

    def _reading(self, values: Mapping[str, str]) -> Reading:
        """Check the text of each field, in the order sensor_id, ts, seq, metrics."""
        sid = values.get("sensor_id")
        if sid is None or sid == "":
            if self.fmt.sensor_id is None:
                raise FieldError(
                    "sensor_id is missing; expected it in the line or a default sensor id",
                    code="sensor_id",
                    field="sensor_id",
                )
            sid = self.fmt.sensor_id
        else:
            check_sensor_id(sid)
        ts_text = values.get("ts")
        ts = parse_timestamp(ts_text, unit=self.fmt.ts_unit) if ts_text else None
        seq_text = values.get("seq")
        seq = parse_seq(seq_text) if seq_text else None
        metrics: dict[str, float] = {}
        for m in METRICS:
            text = values.get(m)
            if text:
                if self.fmt.kind == "value":
                    metrics[m] = parse_number(m, text, scale=self.fmt.scale, offset=self.fmt.offset)
                else:
                    metrics[m] = parse_number(m, text)
        if not metrics:
            raise FieldError(_MSG_NO_VALUES, code="no_values")
        return Reading(sid, seq, ts, **metrics)

    # -- many lines ------------------------------------------------------------
    def parse_batch(
        self,
        lines: Sequence[bytes],
        received_at_us: Sequence[int] | np.ndarray,
        source: str,
    ) -> ParsedBatch:
        """Parse ``lines`` (as :meth:`parse_line` would, one by one) into a ``LANDING`` table.

        ``received_at_us`` is each line's host receive time in microseconds
        since the epoch; it becomes ``received_at``, and ``ts`` where the line
        has no device time.
        """
        n = len(lines)
        received = np.asarray(received_at_us, dtype=np.int64)
        if received.shape != (n,):
            raise ValueError(f"received_at_us has {received.shape[0]} entries for {n} lines")
        stripped = [line.strip() for line in lines]
        slow: list[int]
        fast_rows: pa.Table | None = None
        fast_index = np.empty(0, dtype=np.int64)
        if self.fmt.kind in ("csv", "value") and n >= _FAST_PATH_MIN_LINES:
            fast_index, fast_rows, slow = self._fast_path(stripped)
        else:
            slow = list(range(n))

        rejects: list[Reject] = []
        comments = 0
        slow_index: list[int] = []
        slow_readings: list[Reading] = []
        for i in slow:
            try:
                reading = self.parse_line(lines[i])
            except ParseError as exc:
                rejects.append(Reject(i, exc))
                continue
            if reading is None:
                comments += 1
            else:
                slow_index.append(i)
                slow_readings.append(reading)

        pieces = []
        if fast_rows is not None and fast_rows.num_rows:
            pieces.append(fast_rows)
        if slow_readings:
            pieces.append(_readings_to_columns(slow_readings))
        if not pieces:
            return ParsedBatch(LANDING.empty_table(), np.empty(0, dtype=np.int64), rejects, comments)
        index = np.concatenate([fast_index, np.asarray(slow_index, dtype=np.int64)])
        rows = pa.concat_tables(pieces) if len(pieces) > 1 else pieces[0]
        if len(pieces) > 1:
            order = np.argsort(index, kind="stable")
            index = index[order]
            rows = rows.take(pa.array(order))
        table = _finish_landing(rows, received[index], source)
        rejects.sort(key=lambda r: r.index)
        return ParsedBatch(table, index, rejects, comments)

    # -- the vectorized path for csv and value -------------------------------------
    def _line_regex(self) -> str:
        delim = f"\\x{{{ord(self.fmt.delimiter):02x}}}"
        parts = []
        for name in self._columns:
            if name == "sensor_id":
                parts.append(SENSOR_ID_PATTERN)
            elif name == "seq":
                parts.append(SEQ_PATTERN)
            elif name == "ts":
                parts.append(f"(?:{NUMBER_PATTERN}|{_ISO_NAIVE}|{_ISO_ZONED})")
            elif name == SKIP_COLUMN:
                parts.append(f"[^{delim}\\x{{0a}}]*")
            else:
                parts.append(NUMBER_PATTERN)
        return "^" + delim.join(parts) + "$"

    def _fast_path(self, stripped: list[bytes]) -> tuple[np.ndarray, pa.Table, list[int]]:
        """Rows for the lines the vectorized path accepts; the rest go to ``parse_line``."""
        n = len(stripped)
        arr = _binary_array(stripped)
        match = pc.match_substring_regex(arr, self._fast_re).to_numpy(zero_copy_only=False)
        good = np.flatnonzero(match)
        slow_mask = ~match
        if good.size == 0:
            return good, LANDING.empty_table(), np.flatnonzero(slow_mask).tolist()
        data = b"\n".join(stripped) if good.size == n else b"\n".join([stripped[i] for i in good])
        names = [c if c != SKIP_COLUMN else f"_{k}" for k, c in enumerate(self._columns)]
        wanted = [c for c in self._columns if c != SKIP_COLUMN]
        types = {"sensor_id": pa.string(), "seq": pa.int64(), "ts": pa.string(), **{m: pa.float64() for m in METRICS}}
        table = pcsv.read_csv(
            io.BytesIO(data),
            read_options=pcsv.ReadOptions(column_names=names),
            parse_options=pcsv.ParseOptions(delimiter=self.fmt.delimiter, quote_char=False, escape_char=False),
            convert_options=pcsv.ConvertOptions(
                column_types={c: types[c] for c in wanted},
                include_columns=wanted,
                null_values=[],
                strings_can_be_null=False,
            ),
        )
        if table.num_rows != good.size:  # cannot happen for lines the regex accepted; stay correct anyway
            return np.empty(0, dtype=np.int64), LANDING.empty_table(), list(range(n))
        ok = np.ones(good.size, dtype=bool)
        cols: dict[str, pa.Array] = {}
        for name in wanted:
            col = table.column(name).combine_chunks()
            if name in METRICS:
                values = col.to_numpy(zero_copy_only=False)
                if self.fmt.kind == "value" and (self.fmt.scale != 1.0 or self.fmt.offset != 0.0):
                    values = values * self.fmt.scale + self.fmt.offset
                lo, hi = INGEST_LIMITS[name]
                ok &= np.isfinite(values) & (values >= lo) & (values <= hi)
                col = pa.array(values, pa.float64())
            elif name == "ts":
                ts_us, ts_ok = _device_ts_fast(col, TS_UNITS[self.fmt.ts_unit])
                ok &= ts_ok
                col = pa.array(ts_us, pa.int64())
            cols[name] = col
        if not ok.all():
            slow_mask[good[~ok]] = True
            keep = pa.array(ok)
            cols = {k: pc.filter(v, keep) for k, v in cols.items()}
            good = good[ok]
        rows = len(good)
        out: dict[str, pa.Array] = {}
        out["sensor_id"] = cols["sensor_id"] if "sensor_id" in cols else pa.array([self.fmt.sensor_id] * rows, pa.string())
        out["seq"] = cols.get("seq", pa.nulls(rows, pa.int64()))
        out["ts"] = cols["ts"].cast(pa.int64()) if "ts" in cols else pa.nulls(rows, pa.int64())
        for m in METRICS:
            out[m] = cols.get(m, pa.nulls(rows, pa.float64()))
        return good.astype(np.int64), pa.table(out), np.flatnonzero(slow_mask).tolist()


def _json_text(name: str, value: object) -> str:
    """A JSON value as the text the field checks expect (numbers in repr form)."""
    if isinstance(value, bool) or isinstance(value, (dict, list)):
        # Not a number, not an id; report it in JSON form.
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    return str(value)


def _binary_array(items: list[bytes]) -> pa.Array:
    """``items`` as an Arrow binary array, built from one joined buffer (no per-item boxing)."""
    n = len(items)
    lengths = np.fromiter(map(len, items), dtype=np.int64, count=n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return pa.Array.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(items))])


def _device_ts_fast(col: pa.Array, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Vectorized :func:`parse_timestamp` for strings the line regex accepted.

    Returns microseconds and an ok mask; rows not ok go through ``parse_line``
    (which then reports the exact error).
    """
    n = len(col)
    us = np.zeros(n, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    numeric = pc.match_substring_regex(col, f"^{NUMBER_PATTERN}$").to_numpy(zero_copy_only=False)
    zoned = pc.match_substring_regex(col, f"^{_ISO_ZONED}$").to_numpy(zero_copy_only=False)
    naive = ~numeric & ~zoned
    if numeric.any():
        values = pc.cast(col.filter(pa.array(numeric)), pa.float64()).to_numpy(zero_copy_only=False)
        with np.errstate(invalid="ignore", over="ignore"):
            scaled = np.round(values * factor)
            good = np.isfinite(scaled) & (scaled >= _TS_MIN_US) & (scaled < _TS_MAX_US)
        idx = np.flatnonzero(numeric)
        us[idx[good]] = scaled[good].astype(np.int64)
        ok[idx[good]] = True
    for mask, target in ((zoned, pa.timestamp("us", "UTC")), (naive, pa.timestamp("us"))):
        if not mask.any():
            continue
        try:
            parsed = pc.cast(col.filter(pa.array(mask)), target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue  # an impossible date somewhere: let parse_line sort them out
        values = parsed.cast(pa.int64()).to_numpy(zero_copy_only=False)
        good = (values >= _TS_MIN_US) & (values < _TS_MAX_US)
        idx = np.flatnonzero(mask)
        us[idx[good]] = values[good]
        ok[idx[good]] = True
    return us, ok


def _readings_to_columns(readings: list[Reading]) -> pa.Table:
    cols: dict[str, pa.Array] = {
        "sensor_id": pa.array([r.sensor_id for r in readings], pa.string()),
        "seq": pa.array([r.seq for r in readings], pa.int64()),
        "ts": pa.array([r.ts for r in readings], TS_TYPE).cast(pa.int64()),
    }
    for m in METRICS:
        cols[m] = pa.array([getattr(r, m) for r in readings], pa.float64())
    return pa.table(cols)


def _finish_landing(rows: pa.Table, received_us: np.ndarray, source: str) -> pa.Table:
    """``rows`` (sensor_id, seq, ts as int64 µs or null, metrics) as a ``LANDING`` table."""
    received = pa.array(received_us, pa.int64())
    device_ts = rows.column("ts").combine_chunks()
    ts = pc.if_else(pc.is_null(device_ts), received, device_ts) if device_ts.null_count < len(device_ts) else received
    data = {
        "sensor_id": rows.column("sensor_id"),
        "ts": ts.cast(TS_TYPE),
        **{m: rows.column(m) for m in METRICS},
        "source": pa.array([source] * rows.num_rows, pa.string()) if rows.num_rows else pa.array([], pa.string()),
        "seq": rows.column("seq"),
        "received_at": received.cast(TS_TYPE),
    }
    return conform(pa.table(data), LANDING)


# ---------------------------------------------------------------------------
# Line framing
# ---------------------------------------------------------------------------


class LineSplitter:
    """Cuts a byte stream into lines at ``\\n`` and bounds how long a line may grow.

    :meth:`feed` returns the complete lines (without their ``\\n``; a ``\\r``
    stays for the parser to strip) and, by position, the ones that are not
    lines but framing failures: ``too_long`` for bytes that ran past
    ``max_line_bytes`` without an end of line (a wrong baud rate, a binary
    stream). :meth:`flush` hands back the unfinished tail.
    """

    def __init__(self, max_line_bytes: int = 4096):
        if max_line_bytes < 1:
            raise ValueError(f"max_line_bytes {max_line_bytes!r} must be at least 1")
        self.max_line_bytes = max_line_bytes
        self._pending = b""
        self._overlong = False  # inside a line already cut for being too long

    @property
    def pending(self) -> bytes:
        return self._pending

    def feed(self, data: bytes) -> tuple[list[bytes], dict[int, str]]:
        if not data:
            return [], {}
        parts = data.split(b"\n")
        if self._pending:
            parts[0] = self._pending + parts[0]
        tail = parts.pop()
        notes: dict[int, str] = {}
        if parts and self._overlong:
            notes[0] = "too_long"  # the end of a line whose start was cut
            self._overlong = False
        if parts and max(map(len, parts)) > self.max_line_bytes:
            for i, part in enumerate(parts):
                if len(part) > self.max_line_bytes:
                    notes[i] = "too_long"
        if len(tail) > self.max_line_bytes:
            notes[len(parts)] = "too_long"
            parts.append(tail)
            tail = b""
            self._overlong = True
        self._pending = tail
        return parts, notes

    def flush(self) -> bytes:
        """The bytes after the last ``\\n`` (an unfinished line), and forget them."""
        tail, self._pending, self._overlong = self._pending, b"", False
        return tail


# ---------------------------------------------------------------------------
# Columns (import)
# ---------------------------------------------------------------------------


class _Rejections:
    """The first reason each row of a chunk fails, filled check by check."""

    def __init__(self, n: int):
        self.bad = np.zeros(n, dtype=bool)
        self.reasons: dict[int, tuple[str, str]] = {}

    def add(self, mask: np.ndarray, code: str, message: Callable[[int], str]) -> None:
        new = mask & ~self.bad
        if not new.any():
            return
        for i in np.flatnonzero(new).tolist():
            self.reasons[i] = (code, message(i))
        self.bad |= new


def _np_bool(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean Arrow result as numpy, nulls as False."""
    return pc.fill_null(arr, False).to_numpy(zero_copy_only=False)


def _trimmed_text(arr: pa.Array) -> pa.Array:
    return pc.utf8_trim_whitespace(arr.cast(pa.large_string()))


class TimestampParser:
    """Parses a column of timestamps of any type into UTC microseconds, vectorized.

    * timestamp columns: naive ones are local time in ``timezone``;
    * date columns: midnight in ``timezone``;
    * numbers and numeric text: epoch ``unit`` (s, ms, us, ns);
    * other text: ISO 8601 through Arrow; anything else through pandas with
      ``fmt`` (a strptime format) or, without one, the format pandas guesses
      from the first value (kept for the following chunks, so a file is read
      one way). Text without an offset is local time in ``timezone``.

    Local times that do not exist or are ambiguous (daylight-saving changes)
    are rejected, as are times outside 1970-01-01 to 2200-01-01.
    """

    UNITS: dict[str, int] = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": -1_000}

    def __init__(self, *, timezone: str = "UTC", fmt: str | None = None, unit: str = "s", name: str = "ts"):
        try:
            zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"timezone {timezone!r} is not known; expected an IANA name such as UTC or Europe/Berlin"
            ) from None
        if unit not in self.UNITS:
            raise ValueError(f"timestamp unit {unit!r} is not supported; expected one of {', '.join(self.UNITS)}")
        self.timezone = timezone
        self.fmt = fmt
        self.unit = unit
        self.name = name
        self._guessed: str | None = fmt

    def parse(self, arr: pa.Array) -> tuple[np.ndarray, np.ndarray, dict[int, tuple[str, str]]]:
        """Microseconds since the epoch, an ok mask, and the reason of each failed row."""
        n = len(arr)
        us = np.zeros(n, dtype=np.int64)
        ok = np.zeros(n, dtype=bool)
        rej = _Rejections(n)
        t = arr.type
        missing = _np_bool(pc.is_null(arr))
        if pa.types.is_timestamp(t):
            self._store(arr, np.ones(n, dtype=bool), us, ok, rej, aware=t.tz is not None)
        elif pa.types.is_date(t):
            self._store(arr.cast(pa.timestamp("us")), np.ones(n, dtype=bool), us, ok, rej, aware=False)
        elif pa.types.is_integer(t) or pa.types.is_floating(t):
            self._epoch(arr, np.ones(n, dtype=bool), us, ok, rej)
        elif pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
            if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
                arr = arr.cast(pa.large_string())
            text = _trimmed_text(arr)
            missing |= _np_bool(pc.equal(text, ""))
            self._text(text, ~missing, us, ok, rej)
        else:
            raise ValueError(
                f"timestamp column {self.name!r} has type {t}; expected timestamps, dates, numbers or text"
            )
        rej.add(missing, "ts", lambda i: f"{self.name} is missing")
        bad_range = ok & ((us < _TS_MIN_US) | (us >= _TS_MAX_US))
        if bad_range.any():
            values = arr.to_pylist()

            def msg(i: int) -> str:
                hint = (
                    f" (read as epoch {_UNIT_NAMES[self.unit]}; is the timestamp unit right?)"
                    if _looks_numeric(values[i])
                    else ""
                )
                return f"{self.name} {_show(values[i])} is outside {TS_RANGE}{hint}"

            rej.add(bad_range, "ts", msg)
            ok &= ~bad_range
        ok &= ~rej.bad
        return us, ok, rej.reasons

    # -- pieces ------------------------------------------------------------------
    def _store(self, arr: pa.Array, where: np.ndarray, us, ok, rej, *, aware: bool) -> None:
        """Timestamps (naive = local time in ``timezone``) into ``us`` at ``where``."""
        idx = np.flatnonzero(where)
        if aware:
            values = arr.cast(pa.timestamp("us", "UTC"), safe=False)
            v = values.cast(pa.int64()).to_numpy(zero_copy_only=False)
            valid = ~_np_bool(pc.is_null(values))
            us[idx[valid]] = v[valid]
            ok[idx[valid]] = True
            return
        values = arr.cast(pa.timestamp("us"), safe=False)
        if self.timezone == "UTC":
            v = values.cast(pa.int64()).to_numpy(zero_copy_only=False)
            valid = ~_np_bool(pc.is_null(values))
            us[idx[valid]] = v[valid]
            ok[idx[valid]] = True
            return
        naive = pd.Series(values.to_pandas(), copy=False)
        local = naive.dt.tz_localize(self.timezone, ambiguous="NaT", nonexistent="NaT")
        utc = pa.Array.from_pandas(local).cast(pa.timestamp("us", "UTC"))
        v = utc.cast(pa.int64()).to_numpy(zero_copy_only=False)
        valid = ~_np_bool(pc.is_null(utc))
        us[idx[valid]] = v[valid]
        ok[idx[valid]] = True
        lost = np.zeros(len(us), dtype=bool)
        lost[idx] = ~valid & naive.notna().to_numpy()
        if lost.any():
            shown = values.to_pylist()
            rej.add(
                lost,
                "ts",
                lambda i: f"{self.name} {str(shown[np.searchsorted(idx, i)])!r} does not exist or is ambiguous "
                f"in {self.timezone} (a daylight-saving change); give the time with its UTC offset",
            )

    def _epoch(self, arr: pa.Array, where: np.ndarray, us, ok, rej) -> None:
        idx = np.flatnonzero(where)
        factor = self.UNITS[self.unit]
        if pa.types.is_integer(arr.type):
            v = arr.cast(pa.int64()).to_numpy(zero_copy_only=False) if arr.null_count == 0 else (
                pc.fill_null(arr.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
            )
            valid = ~_np_bool(pc.is_null(arr))
            if factor > 0:
                limit = np.iinfo(np.int64).max // factor
                fits = np.abs(v) <= limit
                conv = np.where(fits, v, 0) * factor
                # out-of-int64 values get a value the range check then rejects
                conv = np.where(fits, conv, np.iinfo(np.int64).max)
            else:
                conv = np.floor_divide(v, -factor)
        else:
            f = pc.fill_null(arr.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)
            valid = np.isfinite(f)
            with np.errstate(invalid="ignore", over="ignore"):
                scaled = np.round(f * factor) if factor > 0 else np.round(f / -factor)
            inside = valid & (scaled >= np.iinfo(np.int64).min) & (scaled <= 2.0**62)
            conv = np.where(inside, scaled, 2.0**62).astype(np.int64)
            nonfinite = ~valid & ~_np_bool(pc.is_null(arr))
            if nonfinite.any():
                shown = arr.to_pylist()
                full = np.zeros(len(us), dtype=bool)
                full[idx[nonfinite]] = True
                rej.add(full, "ts", lambda i: f"{self.name} {shown[np.searchsorted(idx, i)]!r} is not a finite number")
        us[idx[valid]] = conv[valid]
        ok[idx[valid]] = True

    def _text(self, text: pa.Array, where: np.ndarray, us, ok, rej) -> None:
        todo = where.copy()
        if self.fmt is None and where.all():
            # The common case, a clean ISO 8601 column, in one cast (zoned, else naive).
            for target, aware in ((pa.timestamp("us", "UTC"), True), (pa.timestamp("us"), False)):
                try:
                    parsed = pc.cast(text, target)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    continue
                self._store(parsed, where, us, ok, rej, aware=aware)
                return
        if self.fmt is None:
            numeric = todo & _np_bool(pc.match_substring_regex(text, f"^{NUMBER_PATTERN}$"))
            if numeric.any():
                sub = text.filter(pa.array(numeric))
                # up to 19 digits fits an int64 (nanoseconds since the epoch need 19)
                integer = _np_bool(pc.match_substring_regex(sub, r"^[-+]?(?:[0-9]{1,18}|[1-8][0-9]{18})$"))
                arr = pc.if_else(pa.array(integer), sub, pa.scalar(None, sub.type)).cast(pa.int64())
                self._epoch(arr, numeric, us, ok, rej)
                if not integer.all():
                    floats = np.zeros(len(us), dtype=bool)
                    floats[np.flatnonzero(numeric)[~integer]] = True
                    self._epoch(text.filter(pa.array(floats)).cast(pa.float64()), floats, us, ok, rej)
                todo &= ~numeric
            for pattern, aware in ((f"^{_ISO_ZONED}$", True), (f"^{_ISO_NAIVE}$|^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}$", False)):
                mask = todo & _np_bool(pc.match_substring_regex(text, pattern))
                if not mask.any():
                    continue
                try:
                    parsed = pc.cast(text.filter(pa.array(mask)), pa.timestamp("us", "UTC") if aware else pa.timestamp("us"))
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    continue  # an impossible date in there: pandas below names the rows
                self._store(parsed, mask, us, ok, rej, aware=aware)
                todo &= ~mask
        if todo.any():
            self._pandas(text, todo, us, ok, rej)

    def _pandas(self, text: pa.Array, where: np.ndarray, us, ok, rej) -> None:
        idx = np.flatnonzero(where)
        values = text.filter(pa.array(where)).to_pandas()
        series = pd.Series(np.asarray(values, dtype=object), copy=False)
        if self._guessed is None:
            from pandas.tseries.api import guess_datetime_format

            with warnings.catch_warnings():  # the dayfirst hint; the guessed format is what we use
                warnings.simplefilter("ignore", UserWarning)
                self._guessed = guess_datetime_format(series.iloc[0]) or "mixed"
        fmt = self._guessed
        utc = fmt is not None and ("%z" in fmt or "%Z" in fmt)
        try:
            parsed = pd.to_datetime(series, format=fmt, errors="coerce", utc=utc)
        except (ValueError, TypeError):
            parsed = pd.to_datetime(series, format=fmt, errors="coerce", utc=True)
        if parsed.dtype == object:  # pragma: no cover - pandas < 3 with mixed offsets
            parsed = pd.to_datetime(series, format=fmt, errors="coerce", utc=True)
        parsed_ok = parsed.notna().to_numpy()
        if parsed_ok.any():
            arr = pa.Array.from_pandas(parsed)
            aware = arr.type.tz is not None
            sub = np.zeros(len(us), dtype=bool)
            sub[idx[parsed_ok]] = True
            self._store(arr.filter(pa.array(parsed_ok)), sub, us, ok, rej, aware=aware)
        if not parsed_ok.all():
            bad = np.zeros(len(us), dtype=bool)
            bad[idx[~parsed_ok]] = True
            raw = series.tolist()
            hint = f"the format {fmt!r}" if fmt and fmt != "mixed" else "a date/time pandas can read"
            rej.add(
                bad,
                "ts",
                lambda i: f"{self.name} {raw[np.searchsorted(idx, i)]!r} is not a timestamp; expected {hint}, "
                "ISO 8601, or epoch numbers (give --timestamp-format for other layouts)",
            )


def _show(value: object) -> str:
    if isinstance(value, dt.datetime):
        return repr(value.isoformat())
    return repr(value)


def _looks_numeric(value: object) -> bool:
    return isinstance(value, (int, float)) or (isinstance(value, str) and bool(_NUMBER_RE.fullmatch(value.strip())))


def parse_metric_column(name: str, arr: pa.Array, rej: _Rejections) -> pa.Array:
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
            text = _trimmed_text(arr)
            missing = _np_bool(pc.is_null(text)) | _np_bool(
                pc.is_in(text, value_set=pa.array(MISSING_TOKENS, pa.large_string()))
            )
            numeric = _np_bool(pc.match_substring_regex(text, f"^{NUMBER_PATTERN}$"))
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
    present = ~_np_bool(pc.is_null(values))
    nonfinite = present & ~np.isfinite(v)
    if nonfinite.any():
        shown = (text if text is not None else values).to_pylist()
        rej.add(nonfinite, "non_finite", lambda i: _msg_non_finite(name, shown[i]))
    lo, hi = INGEST_LIMITS[name]
    with np.errstate(invalid="ignore"):
        outside = present & np.isfinite(v) & ((v < lo) | (v > hi))
    if outside.any():
        rej.add(outside, "out_of_limits", lambda i: _msg_limits(name, float(v[i])))
    return values


def _reject_text(name: str, raw: list, bad: np.ndarray, rej: _Rejections) -> None:
    """Reasons for metric text that is not a decimal number."""
    idx = np.flatnonzero(bad & ~rej.bad)
    if idx.size == 0:
        return
    nonfinite = np.zeros(len(bad), dtype=bool)
    other = np.zeros(len(bad), dtype=bool)
    for i in idx.tolist():
        (nonfinite if raw[i].lower() in _NONFINITE_TOKENS else other)[i] = True
    rej.add(nonfinite, "non_finite", lambda i: _msg_non_finite(name, raw[i]))
    rej.add(other, "not_a_number", lambda i: _msg_not_number(name, raw[i]))


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
    rej = _Rejections(n)

    if "sensor_id" in columns:
        sid = columns["sensor_id"]
        sid = sid.cast(pa.string()) if not pa.types.is_string(sid.type) else sid
        # A fleet has few sensors: check each distinct id once, not every row.
        distinct = pc.unique(sid).to_pylist()
        if any(v is not None and v != v.strip() for v in distinct):
            sid = pc.utf8_trim_whitespace(sid)
            distinct = pc.unique(sid).to_pylist()
        invalid = [v for v in distinct if v is not None and v != "" and not _SENSOR_ID_RE.fullmatch(v)]
        sid_missing = _np_bool(pc.is_null(sid))
        if "" in distinct:
            sid_missing |= _np_bool(pc.equal(sid, ""))
        rej.add(sid_missing, "sensor_id", lambda i: "sensor_id is missing")
        if invalid:
            sid_bad = _np_bool(pc.is_in(sid, value_set=pa.array(invalid, pa.string())))
            raw_ids = sid.to_pylist()
            rej.add(sid_bad, "sensor_id", lambda i: _msg_sensor_id(raw_ids[i]))
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
            negative = _np_bool(pc.less(seq, 0))
            shown_seq = seq.to_pylist() if negative.any() else []
            rej.add(negative, "seq", lambda i: _msg_seq(shown_seq[i]))
        else:
            text = _trimmed_text(seq_arr.cast(pa.large_string()))
            empty = _np_bool(pc.is_null(text)) | _np_bool(pc.is_in(text, value_set=pa.array(MISSING_TOKENS, pa.large_string())))
            good = _np_bool(pc.match_substring_regex(text, f"^{SEQ_PATTERN}$"))
            bad = ~empty & ~good
            if bad.any():
                shown_text = text.to_pylist()
                rej.add(bad, "seq", lambda i: _msg_seq(shown_text[i]))
            seq = pc.if_else(pa.array(good), text, pa.scalar(None, pa.large_string())).cast(pa.int64())
    else:
        seq = pa.nulls(n, pa.int64())

    metrics: dict[str, pa.Array] = {}
    any_value = np.zeros(n, dtype=bool)
    for m in METRICS:
        if m in columns:
            metrics[m] = parse_metric_column(m, columns[m], rej)
            any_value |= ~_np_bool(pc.is_null(metrics[m]))
        else:
            metrics[m] = pa.nulls(n, pa.float64())
    rej.add(~any_value, "no_values", lambda i: _MSG_NO_VALUES)

    good_idx = np.flatnonzero(~rej.bad)
    keep = pa.array(~rej.bad)
    received_us = int((received_at - _EPOCH) / dt.timedelta(microseconds=1))
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


def mapped_keys(pairs: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """``["temperature=temp_c", ...]`` as ``(("temperature", "temp_c"), ...)``, checked."""
    out: list[tuple[str, str]] = []
    for pair in pairs:
        name, sep, key = pair.partition("=")
        name, key = name.strip(), key.strip()
        if not sep or not name or not key:
            raise ValueError(f"mapping {pair!r} is not FIELD=NAME; expected e.g. temperature=temp_c")
        if name not in FIELDS:
            raise ValueError(f"mapping {pair!r}: field {name!r} is not known; expected one of {', '.join(FIELDS)}")
        if any(name == n for n, _ in out):
            raise ValueError(f"mapping {pair!r}: field {name!r} is mapped twice")
        out.append((name, key))
    return tuple(out)
