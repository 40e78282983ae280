"""The serial line protocol: lines as a device prints them, parsed into readings.

* :class:`LineFormat` says how a device prints (CSV, ``key=value``, JSON, a
  bare value) and validates itself on construction.
* :class:`LineParser` parses lines. :meth:`LineParser.parse_line` is the
  reference: it returns a :class:`Reading`, ``None`` for a comment line, or
  raises a :class:`ParseError` naming the field, the value and what is
  allowed. :meth:`LineParser.parse_batch` gives exactly the same result for a
  list of lines, but parses the delimited formats with Arrow over the whole
  batch (one RE2 match per line, then the Arrow CSV reader) and sends only
  the lines the fast path refuses through ``parse_line``, so that capture
  keeps up with tens of thousands of lines per second.
* :class:`LineSplitter` cuts a byte stream into lines, one record per line
  however long it is.

A device that loses power or resets mid-line leaves the start of a line
without its end of line, and the next reading arrives glued to it
(``sensor_001,1sensor_001,17,23.51,...``). When the layout starts with the
sensor id, :meth:`LineParser.parse_batch` recognises the start of a record by
a sensor id it has already seen in an accepted reading, keeps the complete
record behind the fragment and reports the fragment's exact bytes
(:class:`Fragment`) for quarantine.

What is rejected: undecodable bytes, empty lines, a wrong field count,
non-numbers, NaN and infinity, values outside ``INGEST_LIMITS``, bad sensor
ids, sequence numbers and timestamps. What is kept: values outside
``VALID_RANGE`` but inside ``INGEST_LIMITS`` -- a broken sensor's reading is
data, and the ``sensor_fault`` detector reports it.

No pyserial, no Dagster, no environment variables here (house style rule 2).
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from iot_platform.core.reading_rules import (
    FIELDS,
    MSG_NO_VALUES,
    NUMBER_PATTERN,
    SENSOR_ID_PATTERN,
    SENSOR_ID_RE,
    SEQ_PATTERN,
    DecodeError,
    FieldError,
    FramingError,
    ParseError,
    Reading,
    check_sensor_id,
    np_bool,
    msg_sensor_id,
    parse_number,
    parse_seq,
)
from iot_platform.core.schemas import INGEST_LIMITS, LANDING, METRICS, TS_TYPE, conform
from iot_platform.core.timestamps import ISO_NAIVE, ISO_ZONED, TS_UNITS, UNIT_NAMES, device_ts_fast, parse_timestamp

DEFAULT_COLUMNS: tuple[str, ...] = ("sensor_id", "seq", *METRICS)
SKIP_COLUMN = "_"  # a CSV column whose content is ignored
LINE_FORMATS: tuple[str, ...] = ("csv", "kv", "json", "value")


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
        if self.sensor_id is not None and not SENSOR_ID_RE.fullmatch(self.sensor_id):
            raise ValueError(msg_sensor_id(self.sensor_id))
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


@dataclass(frozen=True)
class Fragment:
    """Line ``index`` began with ``raw``: the start of a cut line, glued to the reading after it."""

    index: int
    raw: bytes


@dataclass
class ParsedBatch:
    """The readings of a batch of lines (a ``LANDING`` table, in line order) and its rejects.

    ``index`` holds, for each row of ``table``, the position of its line; a
    line in ``fragments`` also has its reading in ``table``.
    """

    table: pa.Table
    index: np.ndarray
    rejects: list[Reject] = field(default_factory=list)
    comments: int = 0
    fragments: list[Fragment] = field(default_factory=list)


FRAGMENT_REASON = "the start of a line cut off without an end of line; the complete reading glued after it was kept"
_KNOWN_IDS_MAX = 4096  # sensor ids remembered to recognise a record's start (a fleet behind one port is smaller)
_GLUED_ID_MIN = 4  # an id shorter than this is not trusted to tell a glued fragment from a real id ("1" in "11")


_FAST_PATH_MIN_LINES = 16  # below this, the vectorized path's fixed cost is not worth it
_KV_SEPARATORS = re.compile(r"[\s,;]+")


class LineParser:
    """Parses the lines of one :class:`LineFormat`; see the module docstring."""

    def __init__(self, fmt: LineFormat, *, recover_glued: bool = True):
        """``recover_glued=False`` makes :meth:`parse_batch` exactly :meth:`parse_line` per line."""
        self.fmt = fmt
        self._device_key = {name: key for name, key in fmt.keys}
        self._field_of_key = {key: name for name, key in fmt.keys}
        for name in FIELDS:  # canonical names work unless mapped to something else
            if name not in self._device_key and name not in self._field_of_key:
                self._field_of_key[name] = name
        self._columns = fmt.effective_columns
        self._ts_unit_name = UNIT_NAMES[fmt.ts_unit]
        if fmt.kind in ("csv", "value"):
            self._fast_re = self._line_regex()
        # Glued records can be told apart only where a line starts with its sensor id.
        self.recovers = recover_glued and fmt.kind == "csv" and fmt.columns[0] == "sensor_id"
        self.known_ids: set[str] = set()  # ids of accepted readings (see parse_batch)
        self._delim = fmt.delimiter.encode()

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
            raise FieldError(MSG_NO_VALUES, code="no_values")
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

        fragments: list[Fragment] = []
        if self.recovers:
            fast_index, fast_rows, rejects, fragments = self._recover_glued(
                lines, fast_index, fast_rows, slow_index, slow_readings, rejects
            )

        pieces = []
        if fast_rows is not None and fast_rows.num_rows:
            pieces.append(fast_rows)
        if slow_readings:
            pieces.append(_readings_to_columns(slow_readings))
        if not pieces:
            return ParsedBatch(LANDING.empty_table(), np.empty(0, dtype=np.int64), rejects, comments, fragments)
        index = np.concatenate([fast_index, np.asarray(slow_index, dtype=np.int64)])
        rows = pa.concat_tables(pieces) if len(pieces) > 1 else pieces[0]
        if len(pieces) > 1:
            order = np.argsort(index, kind="stable")
            index = index[order]
            rows = rows.take(pa.array(order))
        table = _finish_landing(rows, received[index], source)
        rejects.sort(key=lambda r: r.index)
        return ParsedBatch(table, index, rejects, comments, fragments)

    # -- glued records ---------------------------------------------------------------
    def _recover_glued(
        self,
        lines: Sequence[bytes],
        fast_index: np.ndarray,
        fast_rows: pa.Table | None,
        slow_index: list[int],
        slow_readings: list[Reading],
        rejects: list[Reject],
    ) -> tuple[np.ndarray, pa.Table | None, list[Reject], list[Fragment]]:
        """Split lines that are a fragment glued to a complete record; update ``known_ids``.

        Two shapes: a line refused as a whole whose tail, from a known sensor
        id on, is a complete record; and a line that parses but whose id is a
        known id with the start of the same id glued in front
        (``sensor_0`` + ``sensor_001,18,...``), which a permissive id
        pattern would otherwise accept as a new sensor. Adds to
        ``slow_index``/``slow_readings`` in place; returns the fast rows
        without the split lines, the rejects left, and the fragments.
        """
        fast_ids: list[str] = []
        if fast_rows is not None and fast_rows.num_rows:
            fast_ids = pc.unique(fast_rows.column("sensor_id")).to_pylist()
        batch_ids = set(fast_ids) | {r.sensor_id for r in slow_readings}
        candidates = self.known_ids | batch_ids
        glued_ids = {s for s in batch_ids - self.known_ids if _looks_glued(s, candidates)}
        trusted = candidates - glued_ids
        fragments: list[Fragment] = []
        if glued_ids or (rejects and trusted):
            todo: list[tuple[int, bool]] = [(r.index, False) for r in rejects]
            if glued_ids:
                if fast_ids and glued_ids & set(fast_ids):
                    hit = np_bool(pc.is_in(fast_rows.column("sensor_id"), value_set=pa.array(sorted(glued_ids))))
                    todo += [(int(i), True) for i in fast_index[hit]]
                    fast_rows = fast_rows.filter(pa.array(~hit))
                    fast_index = fast_index[~hit]
                keep = [k for k, r in enumerate(slow_readings) if r.sensor_id not in glued_ids]
                todo += [(slow_index[k], True) for k in range(len(slow_readings)) if slow_readings[k].sensor_id in glued_ids]
                slow_index[:] = [slow_index[k] for k in keep]
                slow_readings[:] = [slow_readings[k] for k in keep]
            recovered: set[int] = set()
            known = {s.encode() for s in trusted}
            lengths = sorted({len(s) for s in known})
            for i, parsed_whole in sorted(todo):
                split = self._split_glued(lines[i], known, lengths, parsed_whole)
                if split is None:
                    if parsed_whole:  # not splittable after all: keep it as the reading it is
                        reading = self.parse_line(lines[i])
                        assert reading is not None
                        slow_index.append(i)
                        slow_readings.append(reading)
                    continue
                fragment, reading = split
                fragments.append(Fragment(i, fragment))
                slow_index.append(i)
                slow_readings.append(reading)
                recovered.add(i)
            rejects = [r for r in rejects if r.index not in recovered]
        if len(self.known_ids) < _KNOWN_IDS_MAX:
            self.known_ids |= set(sorted(trusted)[: _KNOWN_IDS_MAX - len(self.known_ids)])
        return fast_index, fast_rows, rejects, fragments

    def _split_glued(
        self, raw: bytes, known: set[bytes], lengths: list[int], parsed_whole: bool
    ) -> tuple[bytes, Reading] | None:
        """``(fragment, reading)`` when ``raw`` is a fragment followed by a complete record of a known sensor.

        A record of n fields has n - 1 delimiters, so its sensor id ends at the
        (n - 1)-th delimiter from the end: one place to look, whatever the
        line holds before it (a garbage line full of delimiters costs the same).
        """
        n_delims = len(self._columns) - 1
        if n_delims < 1 or raw.count(self._delim) < n_delims:
            return None
        pos = len(raw)
        for _ in range(n_delims):
            pos = raw.rfind(self._delim, 0, pos)
        starts: set[int] = set()
        for n in lengths:  # the lengths of the known ids: a handful of slices, not one per offset
            k = pos - n
            if k < 1:
                break
            sid = raw[k:pos]
            if sid in known and (not parsed_whole or (n >= _GLUED_ID_MIN and sid.startswith(raw[:k]))):
                starts.add(k)
        for k in sorted(starts):
            try:
                reading = self.parse_line(raw[k:])
            except ParseError:
                continue
            if reading is not None:
                return raw[:k], reading
        return None

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
                parts.append(f"(?:{NUMBER_PATTERN}|{ISO_NAIVE}|{ISO_ZONED})")
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
                ts_us, ts_ok = device_ts_fast(col, TS_UNITS[self.fmt.ts_unit])
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


def _looks_glued(sensor_id: str, known: set[str]) -> bool:
    """``sensor_id`` is a known id with its own start glued in front (``ssensor_001``)."""
    for x in known:
        cut = len(sensor_id) - len(x)
        if 0 < cut <= len(x) and len(x) >= _GLUED_ID_MIN and sensor_id.endswith(x) and sensor_id[:cut] == x[:cut]:
            return True
    return False


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
    """Cuts a byte stream into lines at ``\\n``: one line, one record, however long.

    :meth:`feed` returns the complete lines (without their ``\\n``; a ``\\r``
    stays for the parser to strip) and, by position, the ones that are not
    lines but framing failures: ``too_long`` for a line longer than
    ``max_line_bytes`` (a wrong baud rate, a binary stream). A long line is
    held until its end of line arrives, so it is refused as one record with
    all its bytes; only bytes that never end (more than ``max_record_bytes``
    without a ``\\n``) are cut, into records of that size, which bounds the
    memory. :meth:`flush` hands back the unfinished tail.
    """

    def __init__(self, max_line_bytes: int = 4096, max_record_bytes: int | None = None):
        if max_line_bytes < 1:
            raise ValueError(f"max_line_bytes {max_line_bytes!r} must be at least 1")
        if max_record_bytes is None:
            max_record_bytes = 64 * max_line_bytes
        if max_record_bytes < max_line_bytes:
            raise ValueError(f"max_record_bytes {max_record_bytes!r} must be at least max_line_bytes {max_line_bytes!r}")
        self.max_line_bytes = max_line_bytes
        self.max_record_bytes = max_record_bytes
        self._pending = b""
        self._overlong = False  # the pending bytes continue a record already cut at max_record_bytes

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
        cap = self.max_record_bytes
        while len(tail) > cap:
            notes[len(parts)] = "too_long"
            parts.append(tail[:cap])
            tail = tail[cap:]
            self._overlong = True
        self._pending = tail
        return parts, notes

    def flush(self) -> bytes:
        """The bytes after the last ``\\n`` (an unfinished line), and forget them."""
        tail, self._pending, self._overlong = self._pending, b"", False
        return tail

