"""The detection pipeline: window statistics, alert points, episodes, for a slice or a whole day.

Two stages, so that 30-second micro-batches and a full-day backfill give the
same bytes:

(a) :func:`detect_points` is range-local: given readings and window_stats
    with :func:`~iot_platform.core.detectors.params.context_seconds` of
    context before ``emit_start``, and the drift baseline, it returns the
    points of ``[emit_start, emit_end)`` (per-reading points) and
    ``(emit_start, emit_end]`` (per-window and per-tick points, as
    :func:`~iot_platform.core.windows.compute_window_stats` emits windows),
    equal to what a run over a longer range returns for that range;
(b) :func:`~iot_platform.core.detectors.episodes.to_episodes` merges a day's
    points into ANOMALIES rows; cheap, deterministic, order-independent.

:func:`run_day` is the backfill path: one daily partition from the day's
readings, the previous day's tail and the previous days' window_stats,
processed a chunk of sensors at a time (:func:`run_day_chunked` takes the
chunks from the caller, for fleets too big to hold in memory).
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from iot_platform.core.calendar import day_start_us
from iot_platform.core.detectors import (
    drift,
    flatline,
    history,
    multivariate,
    sensor_fault,
    silence,
    spike,
    systemic,
    thresholds,
)
from iot_platform.core.detectors.episodes import to_episodes
from iot_platform.core.detectors.inputs import BaselineFrame, WindowFrame
from iot_platform.core.detectors.params import READING_TYPES, DetectionParams, context_seconds
from iot_platform.core.detectors.points import POINTS, concat_points
from iot_platform.core.registry import Resolved
from iot_platform.core.schemas import WINDOW_STATS
from iot_platform.core.windows import (
    DAY_US,
    US,
    EncodedSensors,
    Panes,
    ReadingsFrame,
    ReadingsSource,
    aggregate_panes,
    emit_range,
    sensor_names,
    window_arrays,
    window_table,
)


def _sensor_points(
    frame: ReadingsFrame,
    panes: Panes,
    wf: WindowFrame,
    bf: BaselineFrame,
    params: DetectionParams,
    reading_start: int,
    start: int,
    end: int,
    res: Resolved,
) -> pa.Table:
    w = params.windows
    univariate = concat_points(
        [
            spike.detect_frame(frame, panes, params.spike, w, reading_start, end, res, start),
            history.detect_frame(frame, params.history, params.spike, w, reading_start, end, res),
        ]
    )
    stuck = flatline.detect_frame(frame, params.flatline, w, reading_start, end, res, params.history)
    mv = POINTS.empty_table()
    if params.multivariate.enabled:
        explained: list = []
        mv = multivariate.detect_frame(frame, params.multivariate, w, reading_start, end, res, explained)
        univariate = _not_explained(univariate, frame.names, explained)
        mv = _not_flagged(mv, univariate)
    univariate = concat_points([sensor_fault.detect_frame(frame, params.sensor_fault, w, reading_start, end), univariate])
    return concat_points(
        [
            univariate,
            mv,
            stuck,
            thresholds.detect_frame(wf, params.thresholds, w, start, end, bf.known, res.alarms(params.thresholds)),
            drift.detect_frame(wf, bf, params.drift, w, start, end, res, frame.length_us),
            silence.detect_frame(frame, wf, bf, params.silence, w, start, end),
        ]
    )


class _Fleet:
    """Group sizes per tick, summed over sensor chunks."""

    def __init__(self) -> None:
        self.ticks: list[np.ndarray] = []
        self.counts: list[np.ndarray] = []
        self.groups: list[np.ndarray] = []

    def add(self, tick: np.ndarray, count: np.ndarray, group: np.ndarray) -> None:
        self.ticks.append(tick)
        self.counts.append(count)
        self.groups.append(group)

    def table(self) -> pa.Table:
        if not self.ticks:
            return systemic.fleet_table(np.zeros(0, np.int64), np.zeros(0, np.int64))
        return systemic.fleet_table(np.concatenate(self.ticks), np.concatenate(self.counts), np.concatenate(self.groups))


def _not_flagged(points: pa.Table, flagged: pa.Table) -> pa.Table:
    """``points`` of readings (sensor, ts) that no point of ``flagged`` is about: one alert per cause."""
    if points.num_rows == 0 or flagged.num_rows == 0:
        return points
    key = lambda t: pc.binary_join_element_wise(t.column("sensor_id"), pc.cast(pc.cast(t.column("ts"), pa.int64()),
                                                                                 pa.string()), "|")  # noqa: E731
    return points.filter(pc.invert(pc.is_in(key(points), value_set=key(flagged))))


def _not_explained(points: pa.Table, names: np.ndarray, explained: list) -> pa.Table:
    """Drop spike and level_shift points of readings the multivariate model explains (all metrics of the model
    moved together as usual: a duty-point change, not a fault of one metric). Vectorized: the explained
    readings are looked up by one sorted (sensor, ts) key per model."""
    if points.num_rows == 0 or not explained:
        return points
    code = np.searchsorted(names, np.asarray(points.column("sensor_id").to_numpy(zero_copy_only=False), dtype=object))
    ts = pc.cast(points.column("ts"), pa.int64()).to_numpy()
    metric = np.asarray(pc.fill_null(points.column("metric"), "").to_numpy(zero_copy_only=False), dtype=object)
    kind = np.asarray(points.column("anomaly_type").to_numpy(zero_copy_only=False), dtype=object)
    drop = np.zeros(points.num_rows, dtype=bool)
    for e_code, e_ts, metrics in explained:
        if len(e_code) == 0:
            continue
        t0 = min(int(e_ts.min()), int(ts.min()))
        span = max(int(e_ts.max()), int(ts.max())) - t0 + 1
        e_key = np.sort(e_code.astype(np.int64) * span + (e_ts - t0))
        key = code.astype(np.int64) * span + (ts - t0)
        pos = np.minimum(np.searchsorted(e_key, key), len(e_key) - 1)
        drop |= (e_key[pos] == key) & np.isin(metric, list(metrics)) & np.isin(kind, ["spike", "level_shift"])
    return points.filter(pa.array(~drop))


def _finish(points: pa.Table, fleet: _Fleet, params: DetectionParams, start: int, end: int) -> pa.Table:
    """Systemic points from all sensors' points, then drop the per-reading look-back before ``start``."""
    sys_points = systemic.detect(
        points, fleet.table(), params.systemic, windows=params.windows, emit_start=start, emit_end=end,
        registry=params.registry,
    )
    if points.num_rows:
        ts = pc.cast(points.column("ts"), pa.int64()).to_numpy()
        per_reading = np.isin(points.column("anomaly_type").to_numpy(zero_copy_only=False), READING_TYPES)
        points = points.filter(pa.array(~per_reading | (ts >= start)))
    return concat_points([points, sys_points])


def _detect(
    readings: pa.Table,
    window_stats: pa.Table | None,
    baseline: pa.Table | None,
    params: DetectionParams,
    start: int,
    end: int,
    intervals: pa.Table | None,
    chunk_rows: int,
) -> tuple[pa.Table, _Fleet]:
    """Per-sensor points (per-reading ones from ``start - hop``, for the systemic check) and the fleet sizes."""
    w = params.windows
    names = sensor_names(readings, window_stats, baseline)
    source = ReadingsSource([readings], names)
    wf_all = WindowFrame.from_table(window_stats, names, w)
    bf_all = BaselineFrame.from_table(baseline, names)
    parts, fleet = [], _Fleet()
    for lo, hi in source.chunks(chunk_rows):
        frame = source.frame(lo, hi, w, intervals, params.registry)
        res = params.registry.resolve(frame.names)
        wf = wf_all.for_names(frame.names, frame.hop_us)
        bf = bf_all.for_names(frame.names, names)
        parts.append(_sensor_points(frame, aggregate_panes(frame), wf, bf, params, start - w.hop_us, start, end, res))
        fleet.add(*silence.known_counts(wf, bf, params.silence, w, start, end, res.group))
    return concat_points(parts), fleet


def detect_sensor_points(
    readings: pa.Table,
    window_stats: pa.Table | None,
    baseline: pa.Table | None,
    params: DetectionParams = DetectionParams(),
    *,
    emit_start: dt.datetime | int,
    emit_end: dt.datetime | int,
    intervals: pa.Table | None = None,
    chunk_rows: int = 1_000_000,
) -> pa.Table:
    """Stage (a) without the systemic check: each sensor's own points (POINTS), any subset of sensors."""
    a, b = emit_range(emit_start, emit_end)
    points, _ = _detect(readings, window_stats, baseline, params, a, b, intervals, chunk_rows)
    if points.num_rows == 0:
        return points
    ts = pc.cast(points.column("ts"), pa.int64()).to_numpy()
    return points.filter(pa.array(ts >= a))


def detect_points(
    readings: pa.Table,
    window_stats: pa.Table | None,
    baseline: pa.Table | None,
    params: DetectionParams = DetectionParams(),
    *,
    emit_start: dt.datetime | int,
    emit_end: dt.datetime | int,
    intervals: pa.Table | None = None,
    chunk_rows: int = 1_000_000,
) -> pa.Table:
    """Stage (a): the POINTS of a time range, every detector including the systemic check.

    readings: schemas.READINGS rows from ``emit_start - context.readings_s`` to
        ``emit_end`` (any order; the whole fleet, for the systemic check).
    window_stats: WINDOW_STATS rows with ``window_end`` from
        ``emit_start - context.window_stats_s`` to ``emit_end`` (including the
        windows of this range, as compute_window_stats returns them).
    baseline: :func:`~iot_platform.core.detectors.drift.drift_baseline` of
        the previous days (None or empty: drift is in warm-up).
    intervals: optional (sensor_id, interval_s); the same table must then be
        passed to compute_window_stats.

    Per-reading points have ``ts`` in ``[emit_start, emit_end)``; per-window
    and per-tick points in ``(emit_start, emit_end]``.
    """
    a, b = emit_range(emit_start, emit_end)
    points, fleet = _detect(readings, window_stats, baseline, params, a, b, intervals, chunk_rows)
    return _finish(points, fleet, params, a, b)


@dataclasses.dataclass(frozen=True)
class DayRun:
    window_stats: pa.Table  # WINDOW_STATS of windows ending in (day, day + 1]
    points: pa.Table  # POINTS of the day
    anomalies: pa.Table  # ANOMALIES: the day's episodes


def run_day_chunked(
    chunks: Iterable[tuple[pa.Table, pa.Table | None]],
    baseline_stats: pa.Table | None,
    params: DetectionParams = DetectionParams(),
    *,
    day: dt.date,
    intervals: pa.Table | None = None,
    chunk_rows: int = 1_000_000,
    workers: int = 1,
) -> DayRun:
    """One day, from ``(readings, prev_tail)`` pairs of disjoint sets of sensors.

    For fleets whose day does not fit in memory: only one chunk's readings
    are held at a time (plus the day's window_stats and points). Each pair:
    the day's readings of some sensors and the previous day's last
    ``context_seconds(params).readings_s`` of readings of the same sensors.
    ``baseline_stats``: WINDOW_STATS of the previous days (the columns
    sensor_id, window_end, n_readings, temp_mean, temp_std, the other metrics'
    means and vibration_max suffice: read only those), the last
    ``drift.history_days`` of which make the drift baseline and the last
    ``context_seconds(params).window_stats_s`` the drift/silence context.
    Sensors known from it but absent from every chunk are reported silent.
    ``workers``: chunks computed at once (threads; the result does not depend on it).
    """
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers={workers!r} is invalid; expected an integer >= 1")
    stage = DayStage(baseline_stats, params, day=day, intervals=intervals, chunk_rows=chunk_rows)

    def chunk(readings: pa.Table, prev_tail: pa.Table | None) -> list[tuple]:
        source = ReadingsSource([prev_tail, readings])  # encoded once: its names pick the history's rows too
        return stage.run(readings, prev_tail, stage.past(source.names), source)

    # NumPy and Arrow release the GIL: with two workers, two chunks of sensors are computed at once
    with cf.ThreadPoolExecutor(max_workers=workers) as pool:
        pending: collections.deque[cf.Future] = collections.deque()
        for readings, prev_tail in chunks:
            pending.append(pool.submit(chunk, readings, prev_tail))
            if len(pending) >= workers:
                stage.collect(pending.popleft().result())
        while pending:
            stage.collect(pending.popleft().result())
    return stage.finish()


@dataclasses.dataclass(frozen=True)
class ChunkTask:
    """What stage (a) of a chunk of sensors needs besides its readings: picklable, for a worker process."""

    params: DetectionParams
    day: dt.date
    intervals: pa.Table | None
    chunk_rows: int
    past: pa.Table | None  # the previous days' window_stats of the chunk's sensors (DayStage.past)


def run_chunk(readings: pa.Table, prev_tail: pa.Table | None, task: ChunkTask,
              source: ReadingsSource | None = None) -> list[tuple]:  # fmt: skip
    """Stage (a) of one chunk of sensors (pure): per frame, its window_stats, points, silence counts and names.
    ``source``: ``ReadingsSource([prev_tail, readings])`` when the caller has it already."""
    params, w = task.params, task.params.windows
    a = day_start_us(task.day)
    b = a + DAY_US
    hist_lo, ctx_lo = _history_bounds(params, a)
    history = _History(task.past, min(hist_lo, ctx_lo), a)

    def process(frame: ReadingsFrame) -> tuple:
        past = history.rows(frame.names)  # the previous days' windows of these sensors only
        bf = drift.baseline_frame(_ends_in(past, hist_lo, a), params, frame.names)
        panes = aggregate_panes(frame)
        arrays = window_arrays(frame, panes, a, b)
        wf = WindowFrame.concat(
            [
                WindowFrame.from_table(_ends_in(past, ctx_lo, a), frame.names, w, frame.hop_us),
                WindowFrame.from_arrays(frame.names, arrays, frame.hop_us),
            ]
        )
        res = params.registry.resolve(frame.names)
        return (
            window_table(frame.names, arrays),
            _sensor_points(frame, panes, wf, bf, params, a - w.hop_us, a, b, res),
            silence.known_counts(wf, bf, params.silence, w, a, b, res.group),
            frame.names.tolist(),
        )

    if readings is None:  # known sensors without a reading (``prev_tail`` holds their names)
        names = prev_tail
        return [process(ReadingsSource([], names).frame(0, len(names), w, registry=params.registry))]
    source = ReadingsSource([prev_tail, readings]) if source is None else source
    return [process(source.frame(lo, hi, w, task.intervals, params.registry)) for lo, hi in source.chunks(task.chunk_rows)]


def _history_bounds(params: DetectionParams, a: int) -> tuple[int, int]:
    """(drift baseline start, context start): the previous days' windows a day reads end after these."""
    return a - params.drift.history_days * DAY_US, a - context_seconds(params).window_stats_s * US


class DayStage:
    """Stage (a) of a day chunk by chunk (:func:`run_chunk`, in this process or another), then stage (b).

    Results are collected in chunk order, whichever worker finished first: the
    output does not depend on how (or where) the chunks were computed.
    """

    def __init__(self, baseline_stats: pa.Table | None, params: DetectionParams, *, day: dt.date,
                 intervals: pa.Table | None = None, chunk_rows: int = 1_000_000):  # fmt: skip
        if not isinstance(day, dt.date) or isinstance(day, dt.datetime):
            raise ValueError(f"day={day!r} is invalid; expected a datetime.date")
        self.params, self.day, self.intervals, self.chunk_rows = params, day, intervals, chunk_rows
        self.a = day_start_us(day)
        hist_lo, ctx_lo = _history_bounds(params, self.a)
        self.history = _History(baseline_stats, min(hist_lo, ctx_lo), self.a)
        self.ws_parts: list[pa.Table] = []
        self.pt_parts: list[pa.Table] = []
        self.fleet = _Fleet()
        self.seen: set[str] = set()
        self._windows: pa.Table | None = None

    def past(self, names: np.ndarray) -> pa.Table | None:
        """The previous days' windows of the sensors ``names`` (sorted): what their chunk reads of the history."""
        return self.history.rows(np.asarray(names, dtype=object))

    def task(self, past: pa.Table | None) -> ChunkTask:
        return ChunkTask(self.params, self.day, self.intervals, self.chunk_rows, past)

    def run(self, readings: pa.Table | None, prev_tail, past: pa.Table | None,
            source: ReadingsSource | None = None) -> list[tuple]:  # fmt: skip
        return run_chunk(readings, prev_tail, self.task(past), source)

    def collect(self, results: list[tuple]) -> None:
        for ws, pts, counts, names in results:
            self.ws_parts.append(ws)
            self.pt_parts.append(pts)
            self.fleet.add(*counts)
            self.seen.update(names)

    def window_stats(self) -> pa.Table:
        """The day's window_stats, once every chunk is collected: known sensors without a reading (silent
        all day) are added first."""
        if self._windows is None:
            absent = np.array([n for n in self.history.names if n not in self.seen], dtype=object)
            for lo in range(0, len(absent), 1_000):
                names = absent[lo : lo + 1_000]
                self.collect(self.run(None, names, self.past(names)))
            self._windows = _sorted_windows(self.ws_parts)
        return self._windows

    def finish(self) -> DayRun:
        """The day's windows, then the fleet-wide stage (b)."""
        windows = self.window_stats()
        a = self.a
        points = _finish(concat_points(self.pt_parts), self.fleet, self.params, a, a + DAY_US)
        return DayRun(windows, points, to_episodes(points, self.params))


def _sorted_windows(parts: list[pa.Table]) -> pa.Table:
    """A day's window_stats from its chunks, in (sensor_id, window_end) order, one chunk: the same bytes however
    the day was cut."""
    if not parts:
        return WINDOW_STATS.empty_table()
    windows = pa.concat_tables(parts)
    return windows.take(pc.sort_indices(windows, sort_keys=[("sensor_id", "ascending"), ("window_end", "ascending")]))


def window_stats_day(
    chunks: Iterable[tuple[pa.Table, pa.Table | None]],
    params: DetectionParams = DetectionParams(),
    *,
    day: dt.date,
    intervals: pa.Table | None = None,
    chunk_rows: int = 1_000_000,
    workers: int = 1,
) -> pa.Table:
    """The window_stats :func:`run_day_chunked` gives for ``day``, without the detectors.

    A window needs only the readings of its sensor (the day's and the previous
    day's tail), never the previous days' windows: so the window_stats of many
    days can be built side by side (a parallel backfill's first wave), and the
    detection of each day then reads them as its history.
    """
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers={workers!r} is invalid; expected an integer >= 1")
    w = params.windows
    a = day_start_us(day)

    def chunk(readings: pa.Table, prev_tail: pa.Table | None) -> list[pa.Table]:
        source = ReadingsSource([prev_tail, readings])
        out = []
        for lo, hi in source.chunks(chunk_rows):
            frame = source.frame(lo, hi, w, intervals, params.registry)
            out.append(window_table(frame.names, window_arrays(frame, aggregate_panes(frame), a, a + DAY_US)))
        return out

    parts: list[pa.Table] = []
    with cf.ThreadPoolExecutor(max_workers=workers) as pool:
        pending: collections.deque[cf.Future] = collections.deque()
        for readings, prev_tail in chunks:
            pending.append(pool.submit(chunk, readings, prev_tail))
            if len(pending) >= workers:
                parts += pending.popleft().result()
        while pending:
            parts += pending.popleft().result()
    return _sorted_windows(parts)


def run_day(
    readings: pa.Table,
    prev_tail: pa.Table | None,
    baseline_stats: pa.Table | None,
    params: DetectionParams = DetectionParams(),
    *,
    day: dt.date,
    intervals: pa.Table | None = None,
    chunk_rows: int = 1_000_000,
) -> tuple[pa.Table, pa.Table]:
    """(window_stats, anomalies) of one daily partition: the backfill path.

    readings: the day's readings (schemas.READINGS; any order);
    prev_tail: the previous day's last ``context_seconds(params).readings_s``
        seconds of readings (None on the very first day: the first windows
        are then partial and their missing rate high);
    baseline_stats: the previous days' window_stats (see :func:`run_day_chunked`).

    Defined as stage (a) over the whole day followed by stage (b), so it equals
    the concatenation of any slicing of the day with enough context.
    """
    run = run_day_chunked([(readings, prev_tail)], baseline_stats, params, day=day, intervals=intervals,
                          chunk_rows=chunk_rows)  # fmt: skip
    return run.window_stats, run.anomalies


class _History:
    """The previous days' window_stats, indexed by sensor once and handed out a chunk of sensors at a time.

    A day's partition is sorted by sensor, so seven days are seven runs of ascending sensors and a chunk's
    rows are one slice of each run: no copy of the (ten million rows for a thousand sensors) table, only its
    sensor codes. Rows in any other order are gathered instead. Only rows with window_end in (lo, hi] count.
    """

    COLUMNS = ("sensor_id", "window_end", "n_readings", "temp_mean", "temp_std", "humidity_mean", "pressure_mean",
               "vibration_mean", "vibration_max")  # what drift and silence read  # fmt: skip
    MAX_RUNS = 64
    MAX_PIECES = 512  # (sensors x runs) sliced one by one; beyond, a slice per run of consecutive sensors

    def __init__(self, table: pa.Table | None, lo: int, hi: int):
        self.lo, self.hi = lo, hi
        if table is None or table.num_rows == 0:
            self.table, self.names = None, np.zeros(0, dtype=object)
            return
        self.table = table.select([c for c in self.COLUMNS if c in table.column_names])
        enc = EncodedSensors(self.table.column("sensor_id"))
        self.names = np.array(sorted(enc.used()), dtype=object)
        code = enc.codes(self.names).astype(np.int32)
        breaks = np.flatnonzero(code[1:] < code[:-1]) + 1
        if len(breaks) <= self.MAX_RUNS:
            self.runs = [(a, code[a:b]) for a, b in zip(np.r_[0, breaks], np.r_[breaks, len(code)])]
            self.order = None
        else:
            self.order = np.argsort(code, kind="stable")
            self.runs = [(0, code[self.order])]

    def rows(self, names: np.ndarray) -> pa.Table | None:
        """The rows of the sensors ``names`` (sorted), window_end in (lo, hi]."""
        if self.table is None or len(names) == 0 or len(self.names) == 0:
            return None
        pos = np.minimum(np.searchsorted(self.names, names), len(self.names) - 1)
        codes = pos[self.names[pos] == names]
        if len(codes) == 0:
            return None
        pieces = []
        if self.order is None and len(codes) * len(self.runs) <= self.MAX_PIECES:
            # a sensor's rows of each run (day) in turn: the rows come in (sensor, window_end) order when the
            # days do, and the windows' frame then takes them as they are (no sort, no gathers)
            bounds = [(start, np.searchsorted(run, codes), np.searchsorted(run, codes + 1)) for start, run in self.runs]
            for i in range(len(codes)):
                for start, lo, hi in bounds:
                    if hi[i] > lo[i]:
                        pieces.append((start + lo[i], start + hi[i]))
        else:
            ranges = np.split(codes, np.flatnonzero(np.diff(codes) != 1) + 1)  # runs of consecutive codes
            for start, run in self.runs:
                for r in ranges:
                    a, b = np.searchsorted(run, [r[0], r[-1] + 1])
                    if b > a:
                        pieces.append((start + a, start + b))
        if not pieces:
            return None
        if self.order is None:
            out = pa.concat_tables([self.table.slice(a, b - a) for a, b in pieces])
        else:
            out = self.table.take(pa.array(np.concatenate([self.order[a:b] for a, b in pieces])))
        return _ends_in(out, self.lo, self.hi)


def _ends_in(table: pa.Table | None, lo: int, hi: int) -> pa.Table | None:
    """Rows with window_end in (lo, hi]."""
    if table is None or table.num_rows == 0:
        return table
    end = pc.cast(pc.cast(table.column("window_end"), WINDOW_STATS.field("window_end").type), pa.int64()).to_numpy()
    keep = (end > lo) & (end <= hi)
    return table if keep.all() else table.filter(pa.array(keep))  # all of them (the drift days): no copy


# -- the detectors, behind one signature (for the contract tests and for callers picking one) ----
Detector = Callable[[pa.Table, pa.Table, pa.Table, DetectionParams, int, int], pa.Table]


def _systemic_only(r, ws, bl, p, a, b):
    pts = detect_points(r, ws, bl, p, emit_start=a, emit_end=b)
    return pts.filter(pc.equal(pts.column("anomaly_type"), "systemic"))


DETECTORS: dict[str, Detector] = {
    "sensor_fault": lambda r, ws, bl, p, a, b: sensor_fault.detect(
        r, p.sensor_fault, windows=p.windows, emit_start=a, emit_end=b, registry=p.registry
    ),
    "spike": lambda r, ws, bl, p, a, b: spike.detect(
        r, p.spike, windows=p.windows, emit_start=a, emit_end=b, registry=p.registry
    ),
    "history": lambda r, ws, bl, p, a, b: history.detect(
        r, p.history, p.spike, windows=p.windows, emit_start=a, emit_end=b, registry=p.registry
    ),
    "multivariate": lambda r, ws, bl, p, a, b: multivariate.detect(
        r, p.multivariate, windows=p.windows, emit_start=a, emit_end=b, registry=p.registry
    ),
    "flatline": lambda r, ws, bl, p, a, b: flatline.detect(
        r, p.flatline, windows=p.windows, emit_start=a, emit_end=b, registry=p.registry, history=p.history
    ),
    "thresholds": lambda r, ws, bl, p, a, b: thresholds.detect(
        ws, p.thresholds, windows=p.windows, emit_start=a, emit_end=b
    ),
    "drift": lambda r, ws, bl, p, a, b: drift.detect(
        ws, bl, p.drift, windows=p.windows, emit_start=a, emit_end=b, registry=p.registry
    ),
    "silence": lambda r, ws, bl, p, a, b: silence.detect(
        r, ws, bl, p.silence, windows=p.windows, emit_start=a, emit_end=b
    ),
    "systemic": _systemic_only,
}
"""Every detector as ``f(readings, window_stats, baseline, params, emit_start_us, emit_end_us) -> POINTS``."""

__all__ = ["DETECTORS", "DayRun", "detect_points", "detect_sensor_points", "run_day", "run_day_chunked"]
