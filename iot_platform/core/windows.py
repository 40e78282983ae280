"""Window statistics: per sensor, epoch-aligned hopping windows over its readings.

A window is the half-open interval ``[window_start, window_end)`` of event
time; it holds the sensor's readings with ``window_start <= ts < window_end``.
Window ends lie on a grid aligned to the Unix epoch (``window_end`` is a
multiple of the hop), so a window computed from any slice of the data equals
the window computed from the whole day.

Geometry follows each sensor's own sample interval (estimated from its
readings, see :func:`estimate_intervals`), never an assumed 1 Hz:

* hop = ``hop_s`` rounded up to a whole multiple of ``hop_s`` that is at least
  the interval (a sensor sampling every 5 min hops every 5 min, not every
  minute over mostly empty windows);
* length = ``min(max(length_s, min_samples * interval), max_length_s)``
  rounded up to whole hops (a window must be able to hold enough samples for
  the warm-up rule: with the defaults, 300 s at 1 Hz, 12,000 s at one sample
  every 5 min, and 14,400 s, 4 readings, at one an hour);
* expected readings = ``length // interval`` (integers), and
  ``missing_rate = max(0, expected - n_readings) / expected``: a complete
  series has a missing rate of exactly 0 at any interval.

Emission rule: ``compute_window_stats(readings, emit_start=a, emit_end=b)``
emits exactly the windows whose ``window_end`` is in ``(a, b]`` and that hold
at least one reading. Such a window only needs readings with ``ts < b``, and
reaches back at most :func:`window_context_seconds` before ``a``: callers pass
that much context (the previous day's tail, the previous micro-batches).
A daily partition D is ``(D 00:00, D+1 00:00]``: its first windows straddle
midnight and are complete because the context supplies the previous day's tail.

Statistics ignore nulls, NaN and values outside ``schemas.VALID_RANGE`` (a
broken sensor's values are reported by the ``sensor_fault`` detector and kept
out of the statistics the other detectors use); ``n_readings`` counts every
reading the sensor delivered. ``temp_std`` is the population standard deviation.

Engine: readings are sorted by (sensor, ts) and cut into *panes*, one per
sensor and hop; each pane is aggregated once (``numpy`` reductions over
contiguous segments) and a window combines its panes in a fixed order
(oldest first). No Python loop runs per reading or per window, and the
floating-point result depends only on the readings of the window, which is
what makes slices and full-day runs byte-identical.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from iot_platform.core.schemas import METRICS, TS_TYPE, VALID_RANGE, WINDOW_STATS
from iot_platform.core.calendar import DAY_US, US  # noqa: F401 - re-exported

PANE_KEY = 2**32  # pane key = sensor code * PANE_KEY + pane index (|index| < 2**31)
_MIN_INTERVAL_US = 1_000  # 1 ms: the finest sample interval the geometry accepts

INTERVALS = pa.schema([pa.field("sensor_id", pa.string(), nullable=False), pa.field("interval_s", pa.float64())])


def _is_int(v: object) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and np.isfinite(v)


@dataclasses.dataclass(frozen=True)
class WindowParams:
    """Window geometry and the warm-up rule.

    length_s, hop_s: window length and hop for a sensor sampling at least
        every ``hop_s`` (tumbling when equal); whole seconds, length a multiple
        of hop. Defaults from the seed: 300 s windows every 60 s.
    min_readings: warm-up: no statistical alert comes from a window (or a
        trailing window) holding fewer readings, so restarts and gaps do not
        produce alerts from thin data (seed: 30).
    min_samples: a window spans at least this many sample intervals, so that
        slow sensors get windows that can pass the warm-up ...
    max_length_s: ... but no longer than this (rounded up to whole hops): a
        sensor sampling every 30 min or 1 h would otherwise need windows of
        20-40 h. Such sensors' windows hold a few readings (7 at 30 min, 4 at
        1 h); their statistical detectors work on the trailing history of
        readings instead (:mod:`iot_platform.core.detectors.history`).
    max_interval_s: the slowest sampling the geometry follows (default one
        hour); slower sensors get the geometry of this interval. With
        ``max_length_s`` it bounds the context a slice needs
        (:func:`window_context_seconds`).
    default_interval_s: interval assumed for a sensor with fewer than two
        readings in the input.
    """

    length_s: int = 300
    hop_s: int = 60
    min_readings: int = 30
    min_samples: int = 40
    max_length_s: int = 12_000
    max_interval_s: float = 3600.0
    default_interval_s: float = 1.0

    def __post_init__(self) -> None:
        for name in ("length_s", "hop_s", "min_readings", "min_samples", "max_length_s"):
            v = getattr(self, name)
            if not _is_int(v) or v < 1:
                raise ValueError(f"WindowParams.{name}={v!r} is invalid; expected an integer >= 1")
        if self.max_length_s < self.length_s:
            raise ValueError(
                f"WindowParams.max_length_s={self.max_length_s} is invalid; expected at least length_s={self.length_s}"
            )
        if self.length_s % self.hop_s:
            raise ValueError(
                f"WindowParams.length_s={self.length_s} is invalid; expected a multiple of hop_s={self.hop_s} "
                "(windows are made of whole hops)"
            )
        for name in ("max_interval_s", "default_interval_s"):
            v = getattr(self, name)
            if not _is_number(v) or not 0.001 <= v <= 86_400:
                raise ValueError(f"WindowParams.{name}={v!r} is invalid; expected seconds in [0.001, 86400]")
        if self.default_interval_s > self.max_interval_s:
            raise ValueError(
                f"WindowParams.default_interval_s={self.default_interval_s!r} is invalid; "
                f"expected at most max_interval_s={self.max_interval_s!r}"
            )

    @property
    def hop_us(self) -> int:
        return self.hop_s * US

    @property
    def length_us(self) -> int:
        return self.length_s * US


def _ceil_div(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    return -(-np.asarray(a, dtype=np.int64) // np.asarray(b, dtype=np.int64))


def geometry(interval_us: np.ndarray | int, params: WindowParams) -> tuple[np.ndarray, np.ndarray]:
    """(hop_us, length_us) of sensors sampling every ``interval_us`` (see the module docstring)."""
    iv = np.minimum(np.asarray(interval_us, dtype=np.int64), round(params.max_interval_s * US))
    hop = params.hop_us * np.maximum(1, _ceil_div(iv, params.hop_us))
    need = np.minimum(np.maximum(params.length_us, params.min_samples * iv), params.max_length_s * US)
    return hop, hop * _ceil_div(need, hop)


def expected_readings(length_us: np.ndarray | int, interval_us: np.ndarray | int) -> np.ndarray:
    """Readings a complete window holds: whole sample intervals in its length (integer arithmetic).

    ``length // interval``, at least 1: a window of 14,400 s over an hourly
    sensor expects 4, one of 12,000 s expects 3 (it holds 3 or 4 depending on
    the phase), so a complete series never shows a missing reading.
    """
    return np.maximum(np.asarray(length_us, dtype=np.int64) // np.asarray(interval_us, dtype=np.int64), 1)


def window_context_seconds(params: WindowParams) -> int:
    """Seconds of readings before ``emit_start`` that :func:`compute_window_stats` needs.

    The longest window of any sensor sampling at most every ``max_interval_s``.
    """
    _, length = geometry(round(params.max_interval_s * US), params)
    return int(_ceil_div(int(length), US))


def to_us(t: dt.datetime | int | np.integer | None, name: str) -> int | None:
    """Microseconds since the epoch of an aware datetime (or of an int, taken as microseconds)."""
    if t is None:
        return None
    if _is_int(t):
        return int(t)
    if isinstance(t, dt.datetime):
        if t.tzinfo is None:
            raise ValueError(f"{name}={t!r} is invalid; expected a timezone-aware datetime (UTC) or int microseconds")
        delta = t - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
        return (delta.days * 86_400 + delta.seconds) * US + delta.microseconds
    raise ValueError(f"{name}={t!r} is invalid; expected a timezone-aware datetime or int microseconds")


def emit_range(emit_start, emit_end) -> tuple[int, int]:
    a, b = to_us(emit_start, "emit_start"), to_us(emit_end, "emit_end")
    if a is None or b is None:
        raise ValueError("emit_start and emit_end are required")
    if b < a:
        raise ValueError(f"emit_end={emit_end!r} is before emit_start={emit_start!r}")
    return a, b


# -- sensors and frames ---------------------------------------------------------------
class EncodedSensors:
    """A sensor_id column dictionary-encoded once: the distinct ids and each row's index into them.

    A column grouped in runs keeps its runs (``_runs``: each run's index and length): per-row
    arrays are then one ``np.repeat`` of a per-run value, not a gather per row.
    """

    _runs: tuple[np.ndarray, np.ndarray] | None = None

    def __init__(self, column: pa.ChunkedArray | pa.Array):
        if _grouped_strings(column, self):
            return
        enc = column if pa.types.is_dictionary(column.type) else pc.dictionary_encode(column)
        if isinstance(enc, pa.ChunkedArray):
            enc = enc.unify_dictionaries() if enc.num_chunks > 1 else enc
            chunks = enc.chunks
        else:
            chunks = [enc]
        self.n = len(column)
        self.dictionary = (
            np.asarray(chunks[0].dictionary.to_numpy(zero_copy_only=False), dtype=object) if chunks else np.zeros(0, object)
        )
        parts = []
        for ch in chunks:
            idx = ch.indices
            raw = pc.fill_null(idx, -1) if idx.null_count else idx
            parts.append(np.asarray(raw.to_numpy(zero_copy_only=False), dtype=np.int64))
        self.indices = np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def used(self) -> set[str]:
        if self.n == 0 or len(self.dictionary) == 0:
            return set()
        seen = np.zeros(len(self.dictionary) + 1, dtype=bool)
        seen[self.indices if self._runs is None else self._runs[0]] = True  # index -1 (null) marks the extra slot
        return {str(v) for v in self.dictionary[seen[:-1]] if v is not None}

    def codes(self, names: np.ndarray) -> np.ndarray:
        """Positions of each row's id in sorted ``names``; -1 for ids not in ``names`` and nulls."""
        if self.n == 0:
            return np.zeros(0, np.int64)
        return self.mapped(self._lut(names))

    def _lut(self, names: np.ndarray) -> np.ndarray:
        lut = np.full(len(self.dictionary) + 1, -1, dtype=np.int64)  # last slot: null rows
        if len(names) and len(self.dictionary):
            where = np.minimum(np.searchsorted(names, self.dictionary), len(names) - 1)
            lut[:-1] = np.where(names[where] == self.dictionary, where, -1)
        return lut

    def code_runs(self, names: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(code, length) of each run of rows, as :meth:`codes` would give them row by row; None when the
        column was not encoded from its runs."""
        if self._runs is None:
            return None
        return self._lut(names)[self._runs[0]], self._runs[1]

    def mapped(self, lut: np.ndarray) -> np.ndarray:
        """``lut[indices]``: a value per row from a value per id (``lut[-1]`` for null rows)."""
        if self._runs is not None:
            return np.repeat(lut[self._runs[0]], self._runs[1])
        return lut[self.indices]

    @functools.cached_property
    def indices(self) -> np.ndarray:  # set in __init__ unless the column was encoded from its runs
        return np.repeat(*self._runs)


def _grouped_strings(column: pa.ChunkedArray | pa.Array, out: EncodedSensors) -> bool:
    """Encode a string column without nulls whose equal values mostly come in runs (readings grouped by
    sensor, as validation and the simulator give them) from its runs: one comparison of neighbours per
    row, then only the first row of each run is hashed. Sets ``out``'s fields exactly as
    ``dictionary_encode`` would (ids in order of first appearance) and returns True; False (nothing set)
    for any other column, or when runs are short, for the general path."""
    typ = column.type
    n = len(column)
    if n < 1024 or column.null_count or not (pa.types.is_string(typ) or pa.types.is_large_string(typ)):
        return False
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    heads, lengths = [], []
    for ch in chunks:
        m = len(ch)
        if m == 0:
            continue
        change = pc.not_equal(ch.slice(1), ch.slice(0, m - 1)).to_numpy(zero_copy_only=False)
        starts = np.concatenate([[0], np.flatnonzero(change) + 1])
        if len(starts) > max(64, m // 64):
            return False
        heads.append(ch.take(pa.array(starts)))
        lengths.append(np.diff(np.append(starts, m)))
    enc = pc.dictionary_encode(pa.chunked_array(heads, typ)).combine_chunks()
    out.n = n
    out.dictionary = np.asarray(enc.dictionary.to_numpy(zero_copy_only=False), dtype=object)
    out._runs = (enc.indices.to_numpy().astype(np.int64), np.concatenate(lengths))
    return True


def sensor_names(*tables: pa.Table | None) -> np.ndarray:
    """The sorted distinct sensor ids of ``tables`` (each with a ``sensor_id`` column)."""
    found: set[str] = set()
    for t in tables:
        if t is not None and t.num_rows:
            found |= EncodedSensors(t.column("sensor_id")).used()
    return np.array(sorted(found), dtype=object)


def encode_sensors(column: pa.ChunkedArray | pa.Array, names: np.ndarray) -> np.ndarray:
    """Codes (positions in sorted ``names``) of a sensor_id column; -1 for ids not in ``names`` and nulls."""
    return EncodedSensors(column).codes(names)


def names_array(names: np.ndarray, code: np.ndarray) -> pa.Array:
    """The sensor_id strings of ``code`` (positions in ``names``)."""
    if len(code) == 0:
        return pa.array([], pa.string())
    return pa.DictionaryArray.from_arrays(pa.array(code, pa.int32()), pa.array(names, pa.string())).cast(pa.string())


def _ts_us(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return pc.cast(pc.cast(column, TS_TYPE), pa.int64()).to_numpy(zero_copy_only=False)


def _float(column: pa.ChunkedArray | pa.Array | None, n: int) -> np.ndarray:
    if column is None:
        return np.full(n, np.nan)
    arr = pc.cast(column, pa.float64())
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.float64)


@dataclasses.dataclass(frozen=True)
class ReadingsFrame:
    """Readings of a set of sensors as numpy arrays, sorted by (sensor, ts) and unique on it.

    ``code`` indexes ``names``; rows of code ``i`` are ``offsets[i]:offsets[i+1]``.
    Geometry arrays (``interval_us``, ``hop_us``, ``length_us``) are per code.
    """

    names: np.ndarray
    code: np.ndarray
    ts: np.ndarray
    values: dict[str, np.ndarray]
    offsets: np.ndarray
    interval_us: np.ndarray
    hop_us: np.ndarray
    length_us: np.ndarray
    # per code and metric: the valid range of each sensor (the registry's); None: schemas.VALID_RANGE for all
    valid_lo: dict[str, np.ndarray] | None = None
    valid_hi: dict[str, np.ndarray] | None = None

    @property
    def n_rows(self) -> int:
        return len(self.ts)

    def bounds(self, metric: str) -> tuple[np.ndarray | float, np.ndarray | float]:
        """(low, high) of the valid range of ``metric``, per row (or one pair for every row)."""
        if self.valid_lo is None or self.valid_hi is None:
            return VALID_RANGE[metric]
        lo, hi = self.valid_lo[metric], self.valid_hi[metric]
        if len(lo) and (lo == lo[0]).all() and (hi == hi[0]).all():
            return float(lo[0]), float(hi[0])  # one range for every sensor: no gather per reading
        return lo[self.code], hi[self.code]

    def valid(self, metric: str) -> np.ndarray:
        """Rows whose ``metric`` is a value a working sensor can report (not null, not NaN, in range)."""
        cache = self.__dict__.setdefault("_valid", {})  # frozen, but a memo of a pure function is harmless
        if metric not in cache:
            v = self.values[metric]
            lo, hi = self.bounds(metric)
            with np.errstate(invalid="ignore"):
                cache[metric] = (v >= lo) & (v <= hi)
        return cache[metric]


class ReadingsSource:
    """Readings tables encoded once, cut on demand into frames of a few sensors each.

    Several tables (e.g. the previous day's tail and the day) are read as one;
    a frame covers a contiguous range of sensor codes (positions in the sorted
    ``names``, by default every sensor of the tables), so a caller can process
    a big fleet a chunk of sensors at a time.
    """

    def __init__(self, tables: Sequence[pa.Table | None], names: np.ndarray | None = None):
        tables = [t for t in tables if t is not None and t.num_rows]
        for t in tables:
            if "sensor_id" not in t.column_names or "ts" not in t.column_names:
                raise ValueError(f"readings must have columns sensor_id and ts; got {t.column_names}")
        encoded = [EncodedSensors(t.column("sensor_id")) for t in tables]
        if names is None:
            names = np.array(sorted(set().union(*(e.used() for e in encoded))), dtype=object)
        self.names = names
        # parts: (table, order, key, starts): rows sorted by code, ``key`` ascending; with ``starts`` (runs),
        # key holds a code per run of rows starts[i]:starts[i + 1], else one per row
        self._parts: list[tuple[pa.Table, np.ndarray | None, np.ndarray, np.ndarray | None]] = []
        for t, e in zip(tables, encoded):
            cols = pa.table({c: t.column(c) for c in ("ts", *METRICS) if c in t.column_names})
            # Runs grouped by sensor (validated readings are one run; a previous day's tail concatenated with
            # the day is two) are sliced, not copied; anything else is gathered in sensor order.
            runs = e.code_runs(names)
            if runs is not None:  # a column grouped by sensor: its runs' codes, never a code per row
                run_code, run_len = runs
                starts = np.r_[0, np.cumsum(run_len)]
                breaks = np.flatnonzero(run_code[1:] < run_code[:-1]) + 1
                if len(breaks) <= 64:
                    for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, len(run_code)]):
                        a, b = starts[lo], starts[hi]
                        self._parts.append((cols.slice(a, b - a), None, run_code[lo:hi], starts[lo : hi + 1] - a))
                    continue
            code = e.codes(names)
            breaks = np.flatnonzero(code[1:] < code[:-1]) + 1
            if len(breaks) <= 64:
                for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, len(code)]):
                    self._parts.append((cols.slice(lo, hi - lo), None, code[lo:hi], None))
            else:
                order = np.argsort(code, kind="stable")
                self._parts.append((cols, order, code[order], None))

    def rows_per_sensor(self) -> np.ndarray:
        out = np.zeros(len(self.names), dtype=np.int64)
        for _, _, key, starts in self._parts:
            lo = np.searchsorted(key, 0)
            if starts is None:
                out += np.bincount(key[lo:], minlength=len(self.names))
            else:
                np.add.at(out, key[lo:], np.diff(starts)[lo:])
        return out

    def chunks(self, max_rows: int = 1_000_000, max_sensors: int = 1_000) -> Iterator[tuple[int, int]]:
        """Ranges of codes holding about ``max_rows`` readings (at least one sensor) each."""
        rows = self.rows_per_sensor()
        lo = 0
        while lo < len(rows):
            cum = np.cumsum(rows[lo : lo + max_sensors])
            hi = lo + max(1, int(np.searchsorted(cum, max_rows, side="right")))
            yield lo, hi
            lo = hi

    def frame(
        self, lo: int, hi: int, params: WindowParams, intervals: pa.Table | None = None, registry=None
    ) -> ReadingsFrame:
        """The frame of codes ``lo <= code < hi`` (renumbered from 0); ``registry`` (a
        :class:`~iot_platform.core.registry.SensorRegistry`) gives valid ranges and known intervals."""
        names = self.names[lo:hi]
        pieces = []  # (block codes, block starts, rows, table): a piece's rows in blocks of one code each
        for table, order, key, starts in self._parts:
            a, b = np.searchsorted(key, [lo, hi])
            if b <= a:
                continue
            if starts is None:  # a code per row
                code = key[a:b] - lo
                block = np.r_[0, np.flatnonzero(code[1:] != code[:-1]) + 1]
                block_code = code[block]
            else:  # a code per run of rows (runs of one code may follow each other: merged into one block)
                run_code = key[a:b] - lo
                first = np.r_[True, run_code[1:] != run_code[:-1]]
                block_code, block = run_code[first], starts[a:b][first] - starts[a]
                a, b = starts[a], starts[b]
            piece = table.slice(a, b - a) if order is None else table.take(pa.array(order[a:b]))
            pieces.append((block_code, block, b - a, piece))
        if len(pieces) == 1:
            block_code, block, n_piece, piece = pieces[0]
            code = np.repeat(block_code, np.diff(np.r_[block, n_piece]))
            ts = _ts_us(piece.column("ts"))
            values = {m: _float(piece.column(m) if m in piece.column_names else None, len(code)) for m in METRICS}
        elif pieces:
            code, ts, values = _merge_pieces(pieces, len(names))
        else:
            code, ts = np.zeros(0, np.int64), np.zeros(0, np.int64)
            values = {m: np.zeros(0) for m in METRICS}
        return build_frame(names, code, ts, values, params, intervals, registry)


def _merge_pieces(pieces: list[tuple[np.ndarray, np.ndarray, int, pa.Table]], n_names: int):
    """(code, ts, values) of several pieces, each grouped by (ascending) code, merged by code: a sensor's rows
    of the first piece, then its rows of the next... (what a stable sort on the code of the concatenation
    gives, which leaves (code, ts) sorted when the pieces are successive in time). A piece is (the codes of
    its blocks, ascending and distinct; their first rows; its row count; its table).

    Each (piece, sensor) block lands in one contiguous range of the output: the columns are copied block by
    block straight from the Arrow chunks, with no concatenation, sort or gather; the blocks' sizes come from
    their bounds, with no pass over a code per row."""
    counts = []
    for block_code, block, n_piece, _ in pieces:
        count = np.zeros(n_names, np.int64)
        count[block_code] = np.diff(np.r_[block, n_piece])
        counts.append(count)
    total = np.sum(counts, axis=0)
    offsets = np.r_[0, np.cumsum(total)]
    placed = offsets[:-1].copy()
    plans = []
    for (c, starts, n_piece, piece), count in zip(pieces, counts):
        dst = placed[c].copy()
        placed[c] += count[c]
        plans.append((starts, dst, n_piece, piece))
    n = int(offsets[-1])
    code = np.repeat(np.arange(n_names, dtype=np.int64), total)
    ts = np.empty(n, np.int64)
    values = {m: np.empty(n) for m in METRICS}
    for starts, dst, n_piece, piece in plans:
        _copy_blocks(piece.column("ts"), starts, dst, n_piece, ts, _ts_us)
        for m in METRICS:
            if m in piece.column_names:
                _copy_blocks(piece.column(m), starts, dst, n_piece, values[m], lambda ch: _float(ch, len(ch)))
            else:
                for a, b, d in zip(starts, np.r_[starts[1:], n_piece], dst):
                    values[m][d : d + b - a] = np.nan
    return code, ts, values


def _copy_blocks(column: pa.ChunkedArray, starts: np.ndarray, dst: np.ndarray, n: int, out: np.ndarray,
                 convert) -> None:  # fmt: skip
    """``out[dst[i] : dst[i] + len_i] = column[starts[i] : starts[i] + len_i]`` (blocks up to the next start,
    the last one to ``n``), each Arrow chunk converted once (zero-copy where it can be)."""
    ends = np.r_[starts[1:], n]
    c0 = 0
    for chunk in column.chunks:
        c1 = c0 + len(chunk)
        if c1 > c0:
            i, j = np.searchsorted(ends, c0, side="right"), np.searchsorted(starts, c1, side="left")
            if j > i:
                arr = convert(chunk)
                a = np.maximum(starts[i:j], c0)
                b = np.minimum(ends[i:j], c1)
                d = dst[i:j] + (a - starts[i:j])
                for x, y, z in zip((a - c0).tolist(), (b - c0).tolist(), d.tolist()):
                    out[z : z + y - x] = arr[x:y]
        c0 = c1


def _sort_unique(code: np.ndarray, ts: np.ndarray, values: dict[str, np.ndarray]) -> np.ndarray | None:
    """Row order by (code, ts), keeping one row per key; None when already sorted and unique.

    Of several rows for one key the one with the smallest values (NaN last) is
    kept, so the result does not depend on the input row order. Callers
    normally pass validated readings, unique already.
    """
    n = len(ts)
    if n < 2:
        return None
    if _sorted_unique(code, ts, np.diff(ts)):
        return None
    order = _key_order(code, ts)
    c, t = code[order], ts[order]
    dup = (c[1:] == c[:-1]) & (t[1:] == t[:-1])
    if not dup.any():
        return order
    # rows of keys that occur more than once: pick the smallest values among them
    in_group = np.zeros(n, dtype=bool)
    in_group[1:] |= dup
    in_group[:-1] |= dup
    sub = order[in_group]
    vals = [np.where(np.isnan(values[m][sub]), np.inf, values[m][sub]) for m in reversed(METRICS)]
    sub = sub[np.lexsort((*vals, ts[sub], code[sub]))]
    first = np.ones(len(sub), dtype=bool)
    first[1:] = (code[sub][1:] != code[sub][:-1]) | (ts[sub][1:] != ts[sub][:-1])
    keep = np.concatenate([order[~in_group], sub[first]])
    return keep[_key_order(code[keep], ts[keep])]


def _sorted_unique(code: np.ndarray, ts: np.ndarray, step: np.ndarray) -> bool:
    """Whether rows are sorted by (code, ts) and unique on it (``step``: ``np.diff(ts)``): codes never
    decrease, and where ts does not increase the code does. Steps that do not increase are few (one per
    sensor in a frame), so they are found first and only their codes compared."""
    if not (code[1:] >= code[:-1]).all():
        return False
    flat = np.flatnonzero(step <= 0)
    return bool((code[flat + 1] > code[flat]).all())


def _key_order(code: np.ndarray, ts: np.ndarray) -> np.ndarray:
    lo = int(ts.min())
    span = int(ts.max()) - lo + 1
    if span * (int(code.max()) + 1) < 2**62:
        return np.argsort(code * span + (ts - lo), kind="stable")
    return np.lexsort((ts, code))


def build_frame(
    names: np.ndarray,
    code: np.ndarray,
    ts: np.ndarray,
    values: dict[str, np.ndarray],
    params: WindowParams,
    intervals: pa.Table | None = None,
    registry=None,
) -> ReadingsFrame:
    step = np.diff(ts)  # the spacings: the order check's and (rows in order) the intervals' estimate's
    if len(ts) >= 2 and not _sorted_unique(code, ts, step):
        order = _sort_unique(code, ts, values)
        if order is not None:
            code, ts = code[order], ts[order]
            values = {m: v[order] for m, v in values.items()}
            step = np.diff(ts)
    offsets = np.searchsorted(code, np.arange(len(names) + 1)).astype(np.int64)
    lo = hi = None
    if registry is not None:
        intervals = registry_intervals(registry, names, intervals)
        res = registry.resolve(names)
        lo, hi = res.valid_lo, res.valid_hi
    interval = _intervals_us(names, ts, offsets, params, intervals, step)
    hop, length = geometry(interval, params)
    return ReadingsFrame(names, code, ts, values, offsets, interval, hop, length, lo, hi)


def registry_intervals(registry, names: np.ndarray, intervals: pa.Table | None) -> pa.Table | None:
    """``intervals`` plus the registry's expected intervals of sensors it does not list."""
    given = set() if intervals is None else set(intervals.column("sensor_id").to_pylist())
    extra = [(str(n), registry.spec(str(n)).interval_s) for n in names if str(n) not in given]
    extra = [(n, iv) for n, iv in extra if iv is not None]
    if not extra:
        return intervals
    t = pa.table({"sensor_id": pa.array([n for n, _ in extra], pa.string()),
                  "interval_s": pa.array([iv for _, iv in extra], pa.float64())}, schema=INTERVALS)  # fmt: skip
    return t if intervals is None else pa.concat_tables([intervals.select(["sensor_id", "interval_s"]).cast(INTERVALS), t])


def round_interval_us(median_us: float) -> int:
    """A median sample spacing rounded to two significant digits (1.003 s -> 1 s, 299.6 s -> 300 s).

    The rounding absorbs clock jitter, so every slice of a regular sensor's data
    yields the same interval, and with it the same windows.
    """
    d = max(int(round(median_us)), _MIN_INTERVAL_US)
    p = 10 ** max(len(str(d)) - 2, 0)
    return (d + p // 2) // p * p


def _intervals_us(
    names: np.ndarray, ts: np.ndarray, offsets: np.ndarray, params: WindowParams, intervals: pa.Table | None,
    step: np.ndarray | None = None,
) -> np.ndarray:
    out = np.full(len(names), round_interval_us(params.default_interval_s * US), dtype=np.int64)
    given = np.zeros(len(names), dtype=bool)
    if intervals is not None and intervals.num_rows:
        code = encode_sensors(intervals.column("sensor_id"), names)
        iv = _float(intervals.column("interval_s"), intervals.num_rows)
        ok = (code >= 0) & np.isfinite(iv) & (iv > 0)
        out[code[ok]] = np.maximum(np.round(iv[ok] * US).astype(np.int64), _MIN_INTERVAL_US)
        given[code[ok]] = True
    todo = np.flatnonzero(~given & (np.diff(offsets) >= 2))
    for i, med in zip(todo, _median_spacings(ts, offsets, todo, step)):
        out[i] = round_interval_us(med)
    return out


def _median_spacings(ts: np.ndarray, offsets: np.ndarray, sensors: np.ndarray, step: np.ndarray | None = None
                     ) -> list[float]:  # fmt: skip
    """``np.median(np.diff(ts))`` of each of ``sensors`` (codes with at least two readings), exactly
    (``step``: ``np.diff(ts)`` when the caller has it).

    A regular sensor's spacings are mostly one value: the median of its first 101 spacings is checked
    against all of them by counting the spacings below it and above it (it is the median when at most
    (n-1)//2 spacings are below it and at least n//2 + 1 are at or below it: both middle values are it);
    only sensors failing the check get a full median of their own. The spacings that differ from it are
    few (gaps, jitter): found in one pass, then counted per sensor by binary search.
    """
    if len(sensors) == 0:
        return []
    d = np.diff(ts) if step is None else step  # spacings; the ones across two sensors are never counted below
    a, b = offsets[sensors], offsets[sensors + 1] - 1  # sensor i's spacings are d[a:b]
    cand = np.array([np.median(d[x : min(x + 101, y)]) for x, y in zip(a, b)])
    if (cand == cand[0]).all():  # sensors sampling alike (a fleet at 1 Hz): one candidate for every spacing
        c = cand[0]
    else:
        lut = np.full(len(offsets) - 1, np.nan)
        lut[sensors] = cand
        c = np.repeat(lut, np.diff(offsets))[1:]  # each spacing's candidate: its later row's sensor's
    # counts over each sensor's own spacings d[a:b] (a spacing across two sensors lies outside every such
    # range): below it, and above it (at or below it: the rest; spacings are integers, never NaN)
    with np.errstate(invalid="ignore"):
        other = np.flatnonzero(d != c)  # NaN candidates (spacings across sensors not asked for) included
        od, oc = d[other], (c if np.ndim(c) == 0 else c[other])
        lt, gt = other[od < oc], other[od > oc]  # ascending: the ones in d[a:b] by two binary searches
    n = b - a
    below = np.searchsorted(lt, b) - np.searchsorted(lt, a)
    at_most = n - (np.searchsorted(gt, b) - np.searchsorted(gt, a))
    exact = (below <= (n - 1) // 2) & (at_most >= n // 2 + 1)
    return [float(cand[j]) if exact[j] else float(np.median(d[a[j] : b[j]])) for j in range(len(sensors))]


def estimate_intervals(readings: pa.Table, params: WindowParams = WindowParams()) -> pa.Table:
    """Each sensor's sample interval: the median spacing of its readings, to two significant digits.

    Pass the result as ``intervals=`` to make several calls (e.g. the slices of
    a day) use the same geometry whatever readings each call sees.
    """
    source = ReadingsSource([readings])
    parts = []
    for lo, hi in source.chunks():
        frame = source.frame(lo, hi, params)
        parts.append(pa.Table.from_arrays([pa.array(frame.names, pa.string()), pa.array(frame.interval_us / US)], schema=INTERVALS))
    return pa.concat_tables(parts) if parts else INTERVALS.empty_table()


# -- panes ----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Panes:
    """Per-(sensor, hop) aggregates of a frame: the building blocks of windows and trailing statistics."""

    code: np.ndarray
    idx: np.ndarray  # pane covers [idx * hop, (idx + 1) * hop) of its sensor
    key: np.ndarray  # code * PANE_KEY + idx, sorted and unique
    start: np.ndarray  # first row of the pane in the frame
    row_pane: np.ndarray  # pane position of each row of the frame
    n_rows: np.ndarray
    count: dict[str, np.ndarray]  # valid values per metric
    total: dict[str, np.ndarray]  # sum of valid values per metric
    temp_m2: np.ndarray  # sum of squared deviations from the pane mean
    temp_min: np.ndarray
    temp_max: np.ndarray
    vib_max: np.ndarray
    battery_last: np.ndarray  # last valid battery level in the pane, NaN if none

    def mean(self, metric: str) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count[metric] > 0, self.total[metric] / np.maximum(self.count[metric], 1), np.nan)

    def find(self, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions of pane keys ``key`` and whether each exists."""
        if len(self.key) == 0:
            return np.zeros(len(key), np.int64), np.zeros(len(key), bool)
        pos = np.minimum(np.searchsorted(self.key, key), len(self.key) - 1)
        return pos, self.key[pos] == key

    def before(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """``find(key - j)``: each pane's sensor's pane ``j`` hops earlier. Memoized (read-only arrays): the
        detectors look back over the same few offsets for every metric."""
        cache = self.__dict__.setdefault("_before", {})  # frozen, but a memo of a pure function is harmless
        if j not in cache:
            pos, found = self.find(self.key - j)
            pos.flags.writeable = False
            found.flags.writeable = False
            cache[j] = (pos, found)
        return cache[j]


def aggregate_panes(frame: ReadingsFrame) -> Panes:
    n = frame.n_rows
    if n == 0:
        z = np.zeros(0, np.int64)
        zf = np.zeros(0)
        return Panes(z, z, z, z, z, z, {m: z for m in METRICS}, {m: zf for m in METRICS}, zf, zf, zf, zf, zf)
    hops = frame.hop_us
    # one hop for every sensor (a fleet sampling alike): no per-row gather of it
    pane_idx = frame.ts // (hops[0] if (hops == hops[0]).all() else hops[frame.code])
    boundary = np.ones(n, dtype=bool)
    boundary[1:] = (frame.code[1:] != frame.code[:-1]) | (pane_idx[1:] != pane_idx[:-1])
    start = np.flatnonzero(boundary)
    code = frame.code[start]
    idx = pane_idx[start]
    n_rows = np.diff(np.append(start, n))
    row_pane = np.repeat(np.arange(len(start)), n_rows)

    count, total, clean = {}, {}, {}
    for m in METRICS:
        ok = frame.valid(m)
        v = frame.values[m]
        if ok.all():  # the common case: no nulls, no broken-sensor values, no copies
            count[m], total[m], clean[m] = n_rows, np.add.reduceat(v, start), v
        else:  # a few invalid rows, corrected in copies (exact: integer counts, the same values summed)
            bad = np.flatnonzero(~ok)
            count[m] = n_rows - np.bincount(row_pane[bad], minlength=len(start))
            z = v.copy()
            z[bad] = 0.0
            total[m] = np.add.reduceat(z, start)
            if m in ("temperature", "vibration", "battery_level"):
                z[bad] = np.nan
                clean[m] = z
            else:
                clean[m] = None
    t = clean["temperature"]
    with np.errstate(invalid="ignore", divide="ignore"):
        t_mean = total["temperature"] / np.maximum(count["temperature"], 1)
    dev = np.repeat(t_mean, n_rows)  # each row's pane mean (t_mean[row_pane]), then in place
    np.subtract(t, dev, out=dev)
    dev *= dev
    temp_m2 = np.add.reduceat(np.nan_to_num(dev, copy=False, nan=0.0), start)
    temp_min = np.fmin.reduceat(t, start)
    temp_max = np.fmax.reduceat(t, start)
    vib_max = np.fmax.reduceat(clean["vibration"], start)
    b = clean["battery_level"]
    b_ok = ~np.isnan(b)
    if b_ok.all():
        battery_last = b[np.append(start[1:], n) - 1]
    else:
        last = np.maximum.reduceat(np.where(b_ok, np.arange(n), -1), start)
        battery_last = np.where(last >= 0, b[np.maximum(last, 0)], np.nan)
    return Panes(
        code=code,
        idx=idx,
        key=code * PANE_KEY + idx,
        start=start,
        row_pane=row_pane,
        n_rows=n_rows,
        count=count,
        total=total,
        temp_m2=temp_m2,
        temp_min=temp_min,
        temp_max=temp_max,
        vib_max=vib_max,
        battery_last=battery_last,
    )


# -- windows ------------------------------------------------------------------------
def window_arrays(frame: ReadingsFrame, panes: Panes, emit_start: int, emit_end: int) -> dict[str, np.ndarray]:
    """Window statistics (as arrays, with ``code``) of windows ending in ``(emit_start, emit_end]``."""
    n_panes = np.asarray(frame.length_us // frame.hop_us, dtype=np.int64)  # panes per window, per code
    if len(panes.key) == 0:
        return _empty_window_arrays()
    k_max = int(n_panes.max())
    ends = _window_ends(panes, n_panes)
    w_code = ends // PANE_KEY
    w_e = ends - w_code * PANE_KEY
    w_end = w_e * frame.hop_us[w_code]
    keep = (w_end > emit_start) & (w_end <= emit_end)
    ends, w_code, w_e, w_end = ends[keep], w_code[keep], w_e[keep], w_end[keep]
    k = n_panes[w_code]
    nw = len(ends)

    n_rows = np.zeros(nw, np.int64)
    cnt = {m: np.zeros(nw, np.int64) for m in METRICS}
    tot = {m: np.zeros(nw) for m in METRICS}
    t_min = np.full(nw, np.nan)
    t_max = np.full(nw, np.nan)
    v_max = np.full(nw, np.nan)
    batt = np.full(nw, np.nan)
    found_at = []
    for j in range(k_max, 0, -1):  # oldest pane first: a fixed order of floating-point sums
        pos, found = panes.find(ends - j)
        found &= j <= k
        found_at.append((pos, found))
        n_rows += np.where(found, panes.n_rows[pos], 0)
        for m in METRICS:
            cnt[m] += np.where(found, panes.count[m][pos], 0)
            tot[m] += np.where(found, panes.total[m][pos], 0.0)
        t_min = np.fmin(t_min, np.where(found, panes.temp_min[pos], np.nan))
        t_max = np.fmax(t_max, np.where(found, panes.temp_max[pos], np.nan))
        v_max = np.fmax(v_max, np.where(found, panes.vib_max[pos], np.nan))
        b = np.where(found, panes.battery_last[pos], np.nan)
        batt = np.where(np.isnan(b), batt, b)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = {m: np.where(cnt[m] > 0, tot[m] / np.maximum(cnt[m], 1), np.nan) for m in METRICS}
        t_mean = mean["temperature"]
        m2 = np.zeros(nw)
        p_mean = panes.mean("temperature")
        for pos, found in found_at:  # within-pane plus between-pane sums of squares (exact decomposition)
            use = found & (panes.count["temperature"][pos] > 0)
            d = p_mean[pos] - t_mean
            m2 += np.where(use, panes.temp_m2[pos] + panes.count["temperature"][pos] * d * d, 0.0)
        t_std = np.where(cnt["temperature"] > 0, np.sqrt(m2 / np.maximum(cnt["temperature"], 1)), np.nan)
        # integers first: a complete hourly window is 0 missing of 4, never 1 - 3 / 3.33
        expected = expected_readings(frame.length_us[w_code], frame.interval_us[w_code])
        missing = np.maximum(expected - n_rows, 0) / expected
    return {
        "code": w_code,
        "window_start": w_end - frame.length_us[w_code],
        "window_end": w_end,
        "n_readings": n_rows,
        "temp_mean": t_mean,
        "temp_std": t_std,
        "temp_min": t_min,
        "temp_max": t_max,
        "humidity_mean": mean["humidity"],
        "pressure_mean": mean["pressure"],
        "vibration_mean": mean["vibration"],
        "vibration_max": v_max,
        "battery_level": batt,
        "missing_rate": missing,
    }


def _window_ends(panes: Panes, n_panes: np.ndarray) -> np.ndarray:
    """Keys of the windows holding at least one pane: a window ending at pane boundary e holds panes
    e - k .. e - 1, so pane p makes windows e = p + 1 .. p + k exist. Merged as intervals (panes are sorted),
    then expanded: no sort, no hashing."""
    k = n_panes[panes.code]
    key = panes.key
    new = np.ones(len(key), dtype=bool)
    new[1:] = (panes.code[1:] != panes.code[:-1]) | (key[1:] - key[:-1] > k[1:])
    first = np.flatnonzero(new)
    last = np.r_[first[1:], len(key)] - 1
    lo, hi = key[first] + 1, key[last] + k[last]  # interval of window ends, inclusive
    size = hi - lo + 1
    offsets = np.repeat(lo - np.r_[0, np.cumsum(size)[:-1]], size)
    return offsets + np.arange(int(size.sum()))


def _empty_window_arrays() -> dict[str, np.ndarray]:
    out = {f.name: np.zeros(0) for f in WINDOW_STATS if f.name != "sensor_id"}
    for c in ("code", "window_start", "window_end", "n_readings"):
        out[c] = np.zeros(0, np.int64)
    return out


def window_table(names: np.ndarray, arrays: dict[str, np.ndarray]) -> pa.Table:
    """A WINDOW_STATS table from :func:`window_arrays` output (NaN becomes null)."""
    cols = []
    for f in WINDOW_STATS:
        if f.name == "sensor_id":
            cols.append(names_array(names, arrays["code"]))
        elif f.name in ("window_start", "window_end"):
            cols.append(pa.array(arrays[f.name], pa.int64()).cast(TS_TYPE))
        elif f.name == "n_readings":
            cols.append(pa.array(arrays[f.name], pa.int64()))
        else:
            cols.append(pa.array(arrays[f.name], pa.float64(), from_pandas=True))
    return pa.Table.from_arrays(cols, schema=WINDOW_STATS)


def compute_window_stats(
    readings: pa.Table,
    params: WindowParams = WindowParams(),
    *,
    emit_start: dt.datetime | int,
    emit_end: dt.datetime | int,
    intervals: pa.Table | None = None,
    chunk_rows: int = 1_000_000,
    registry=None,
) -> pa.Table:
    """WINDOW_STATS of the windows whose ``window_end`` is in ``(emit_start, emit_end]``.

    ``readings`` (schemas.READINGS columns; any row order) must include the
    context: readings from :func:`window_context_seconds` before
    ``emit_start``. ``intervals`` (sensor_id, interval_s) overrides the
    estimated sample intervals. Sensors are processed about ``chunk_rows``
    readings at a time (it bounds memory, not the result). Rows are sorted by
    (sensor_id, window_end). ``registry`` (``DetectionParams.registry``): per-sensor valid ranges and
    expected intervals; pass the same one to the detectors.

    >>> import pyarrow as pa
    >>> from iot_platform.core.schemas import TS_TYPE
    >>> r = pa.table({"sensor_id": ["s1"] * 3, "ts": pa.array([0, 10_000_000, 20_000_000]).cast(TS_TYPE),
    ...               "temperature": [20.0, 21.0, 22.0]})
    >>> ws = compute_window_stats(r, WindowParams(length_s=60, hop_s=60, min_samples=1), emit_start=0, emit_end=60_000_000)
    >>> ws.column("n_readings").to_pylist(), ws.column("temp_mean").to_pylist(), ws.column("missing_rate").to_pylist()
    ([3], [21.0], [0.5])
    """
    a, b = emit_range(emit_start, emit_end)
    source = ReadingsSource([readings])
    parts = []
    for lo, hi in source.chunks(chunk_rows):
        frame = source.frame(lo, hi, params, intervals, registry)
        parts.append(window_table(frame.names, window_arrays(frame, aggregate_panes(frame), a, b)))
    return pa.concat_tables(parts) if parts else WINDOW_STATS.empty_table()
