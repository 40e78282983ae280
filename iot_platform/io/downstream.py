"""`window_stats`, `anomaly_points` and `anomalies` from the lake: whole days and micro-batches.

The pure pipeline (``core.windows``, ``core.detectors``) is range-local: the
output for a time range depends only on inputs within a documented lookback
before it. So a day is built either in one go (backfill, finalize, late data)
or 30 seconds at a time (micro-batches), with the same result:

* ``window_stats`` and ``anomaly_points`` are appended as parts per batch,
  each covering the windows that ended since the previous batch;
* ``anomalies`` (episodes) are rebuilt from the day's points after each
  batch: points are few, so that costs little, and merging them is exact.

Windows are emitted up to ``until - allowed_lateness``: readings that arrive
later than that for a window already emitted make the whole day be rebuilt
(and are reported as late).
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import datetime as dt
import functools
import hashlib
import json
import math
import threading
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from iot_platform.core import simulator as sim
from iot_platform.core.calendar import DAY_US, EPOCH_DATE, US, day_start_us
from iot_platform.core.detectors.drift import drift_baseline
from iot_platform.core.detectors.episodes import to_episodes
from iot_platform.core.detectors.params import READING_TYPES, DetectionParams, context_seconds
from iot_platform.core.detectors.pipeline import DayRun, detect_points, run_day_chunked, window_stats_day
from iot_platform.core.detectors.points import POINTS
from iot_platform.core.schemas import ANOMALIES, READINGS, WINDOW_STATS, conform
from iot_platform.core.windows import compute_window_stats
from iot_platform.io.commit import PartInfo, State, committed_files, day_lock, part_file, remove_uncommitted_parts
from iot_platform.io.lake import TABLES, Lake, read_metadata, write_parquet_atomic
from iot_platform.io.lake_store import parquet_scan

UNTIL_KEY = "iot.until_us"
# window_stats and anomaly_points parts of a day are merged into one part when
# there are this many, so a batch at 23:59 reads as few files as one at 00:01
MERGE_PARTS_AT = 40


@dataclasses.dataclass(frozen=True)
class DownstreamSettings:
    params: DetectionParams = DetectionParams()
    allowed_lateness_s: int = 30
    # A whole-day build computes `workers` chunks of sensors at once (threads; one per core) while
    # it reads the next. 12 x 2: a day of 1,000 sensors peaks at ~1.2 GB, as 25 x 1 did.
    sensors_per_chunk: int = 12
    workers: int = 2
    # The simulated fleet, when on: its sensors' sample interval is known, so every
    # slice of a day uses the same window geometry (an outage cannot fool an
    # interval estimate), and a micro-batch's lookback can be that of its interval.
    fleet: sim.FleetParams | None = None

    @property
    def fleet_interval_s(self) -> float | None:
        return self.fleet.sample_interval_s if self.fleet is not None else None

    def intervals(self) -> pa.Table | None:
        if self.fleet is None:
            return None
        ids = self.fleet.sensor_ids
        return pa.table({"sensor_id": pa.array(ids, pa.string()), "interval_s": pa.array([self.fleet.sample_interval_s] * len(ids), pa.float64())})

    def __post_init__(self) -> None:
        if not isinstance(self.allowed_lateness_s, int) or self.allowed_lateness_s < 0:
            raise ValueError(f"allowed_lateness_s={self.allowed_lateness_s!r} is invalid; expected an integer >= 0")


def watermark(until_us: int, settings: DownstreamSettings) -> int:
    """The end of the last window a batch ending at ``until_us`` may emit."""
    hop = settings.params.windows.hop_s * US
    return (until_us - settings.allowed_lateness_s * US) // hop * hop


@functools.lru_cache(maxsize=1)
def _connection() -> duckdb.DuckDBPyConnection:
    """One in-memory connection per process (opening one costs ~50 ms; it holds no file lock)."""
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    return con


def _con() -> duckdb.DuckDBPyConnection:
    """A cursor of the process's connection (an object store's files are read as Arrow datasets:
    parquet_scan): each caller its own, since a connection refuses a second thread while it runs a query."""
    with _CURSOR_LOCK:
        return _connection().cursor()


_CURSOR_LOCK = threading.Lock()


def read_ts_range(lake: Lake, table: str, days: list[dt.date], column: str, lo: int, hi: int, files=None) -> pa.Table:
    """Rows of ``table`` in ``days`` with ``lo <= column < hi`` (microseconds), via DuckDB pruning."""
    files = files if files is not None else [f for d in days for f in lake.files(table, d)]
    schema = TABLES[table]
    if not files:
        return schema.empty_table()
    con = _con()
    got = con.sql(
        f"SELECT * FROM {parquet_scan(con, files)} WHERE {column} >= make_timestamptz(?::BIGINT) AND {column} < make_timestamptz(?::BIGINT)",
        params=[lo, hi],
    ).to_arrow_table()
    return conform(got, schema)


# -- whole days ------------------------------------------------------------------------------
def day_sensors(lake: Lake, day: dt.date) -> list[str]:
    files = lake.files("readings", day)
    if not files:
        return []
    con = _con()
    rows = con.sql(f"SELECT DISTINCT sensor_id FROM {parquet_scan(con, files, union_by_name=False)} ORDER BY 1").fetchall()
    return [r[0] for r in rows]


def sensor_rows(lake: Lake, day: dt.date, sensors: list[str], lo: int, hi: int, con=None) -> pa.Table:
    files = lake.files("readings", day)
    if not files or not sensors:
        return READINGS.empty_table()
    con = con or _con()
    # the sensors of a chunk are consecutive ids: the range prunes row groups (and an object store's
    # Arrow scan gets it pushed down), the IN keeps exactly them
    got = con.sql(
        f"SELECT * FROM {parquet_scan(con, files)} WHERE sensor_id >= ? AND sensor_id <= ? "
        "AND sensor_id IN (SELECT unnest(?)) AND ts >= make_timestamptz(?::BIGINT) AND ts < make_timestamptz(?::BIGINT)",
        params=[min(sensors), max(sensors), sensors, lo, hi],
    ).to_arrow_table()
    return conform(got, READINGS)


def sensor_day(lake: Lake, day: dt.date, sensor_id: str) -> pa.Table:
    """One sensor's readings of ``day`` (a day's file is sorted by sensor: DuckDB reads its row groups only)."""
    a = day_start_us(day)
    return sensor_rows(lake, day, [sensor_id], a, a + DAY_US)


def _known_interval_s(lake: Lake, day: dt.date, settings: DownstreamSettings) -> float | None:
    """The slowest interval a day's sensors can have: the fleet's when it holds only simulated sensors.

    Then the context read before a slice is that of the fleet's rate, not of
    the slowest rate a sensor may have (an hourly sensor needs a day of it).
    """
    imported = lake.exists("raw_readings", day) or lake.exists("raw_readings", day - dt.timedelta(days=1))
    return None if imported else settings.fleet_interval_s


def context_us(lake: Lake, day: dt.date, settings: DownstreamSettings) -> int:
    """How much of the previous day's readings a day's windows and detectors read."""
    return context_seconds(settings.params, max_interval_s=_known_interval_s(lake, day, settings)).readings_s * US


def iter_day_chunks(lake: Lake, day: dt.date, settings: DownstreamSettings) -> Iterator[tuple[pa.Table, pa.Table]]:
    """(readings of ``day``, previous day's tail) for chunks of sensors, in sensor order.

    The next chunk is read while the caller computes this one: DuckDB's scan
    releases the GIL, so reading overlaps the NumPy work on the other core.
    """
    a = day_start_us(day)
    ctx = context_us(lake, day, settings)
    prev = day - dt.timedelta(days=1)
    sensors = day_sensors(lake, day)
    n = settings.sensors_per_chunk
    chunks = [sensors[i : i + n] for i in range(0, len(sensors), n)]

    def read(chunk: list[str]) -> tuple[pa.Table, pa.Table]:
        # a cursor per thread: one DuckDB connection object is not for concurrent use
        con = _con()
        return sensor_rows(lake, day, chunk, a, a + DAY_US, con), sensor_rows(lake, prev, chunk, a - ctx, a, con)

    with cf.ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(read, chunks[0]) if chunks else None
        for i in range(len(chunks)):
            got = pending.result()
            pending = pool.submit(read, chunks[i + 1]) if i + 1 < len(chunks) else None
            yield got


# what the drift baseline (every metric's window mean; vibration_max keeps alarms out) and the context read
HISTORY_COLUMNS = ("sensor_id", "window_end", "n_readings", "temp_mean", "temp_std", "humidity_mean", "pressure_mean",
                   "vibration_mean", "vibration_max")  # fmt: skip
HISTORY_SCHEMA = pa.schema([WINDOW_STATS.field(c) for c in HISTORY_COLUMNS])


def history_days(day: dt.date, settings: DownstreamSettings) -> list[dt.date]:
    """The previous days whose window_stats ``day``'s detection reads, oldest first."""
    p = settings.params
    ctx_days = math.ceil(context_seconds(p).window_stats_s / 86_400)
    return [day - dt.timedelta(days=i) for i in range(max(p.drift.history_days, ctx_days), 0, -1)]


def history_window_stats(lake: Lake, day: dt.date, settings: DownstreamSettings, days: list[dt.date] | None = None) -> pa.Table:
    """The previous days' window_stats the drift baseline and the detectors' context need (``days``: a subset)."""
    days = history_days(day, settings) if days is None else days
    files = [f for d in days for f in lake.files("window_stats", d)]
    schema = HISTORY_SCHEMA
    if not files:
        return schema.empty_table()
    # only what the baseline and the context use: a week of 1,000 sensors is 10 M rows
    con = _con()
    got = con.sql(f"SELECT {', '.join(HISTORY_COLUMNS)} FROM {parquet_scan(con, files)}")
    return conform(got.to_arrow_table(), schema)


def history_from_memory(day: dt.date, previous: dt.date, now_us: int | None, settings: DownstreamSettings) -> bool:
    """Whether ``day``'s history can take ``previous``'s windows from memory, before they are written: it is
    ``day``'s newest history day and is written whole (a past day)."""
    whole = emit_end_for(previous, now_us, settings) == day_start_us(previous) + DAY_US
    return history_days(day, settings)[-1] == previous and whole


def history_with(lake: Lake, day: dt.date, settings: DownstreamSettings, windows: pa.Table) -> pa.Table:
    """``day``'s history with its newest day's windows (computed, not written yet) from memory: the rows
    :func:`history_window_stats` reads once they are written, in the same order (days ascending)."""
    older = history_window_stats(lake, day, settings, days=history_days(day, settings)[:-1])
    newest = conform(windows.select(list(HISTORY_COLUMNS)), HISTORY_SCHEMA)
    return pa.concat_tables([older, newest])


def emit_end_for(day: dt.date, now_us: int | None, settings: DownstreamSettings) -> int:
    """A past day is emitted whole; today only up to the watermark."""
    b = day_start_us(day) + DAY_US
    return b if now_us is None else max(day_start_us(day), min(b, watermark(now_us, settings)))


@dataclasses.dataclass(frozen=True)
class DayOutput:
    window_stats: pa.Table
    points: pa.Table
    anomalies: pa.Table
    until_us: int


def compute_day(lake: Lake, day: dt.date, settings: DownstreamSettings, now_us: int | None = None) -> DayOutput:
    """Window stats, points and episodes of ``day`` from the lake (pure given the lake's content).

    In this process (chunks on ``settings.workers`` threads); a backfill range
    uses worker processes instead (:mod:`iot_platform.io.day_builds`), the same bytes.
    """
    run = run_day_chunked(
        iter_day_chunks(lake, day, settings), history_window_stats(lake, day, settings), settings.params,
        day=day, intervals=settings.intervals(), workers=settings.workers,
    )  # fmt: skip
    return day_output(run, day, now_us, settings)


def day_output(run: DayRun, day: dt.date, now_us: int | None, settings: DownstreamSettings) -> DayOutput:
    """A day's run as it is written: a past day whole; today only up to the watermark."""
    end = emit_end_for(day, now_us, settings)
    if end == day_start_us(day) + DAY_US:
        return DayOutput(run.window_stats, run.points, run.anomalies, end)
    # today: nothing after the watermark, and episodes from the points kept
    ws = run.window_stats.filter(pc.less_equal(run.window_stats["window_end"].cast(pa.int64()), end))
    points = _points_until(run.points, end)
    return DayOutput(ws, points, to_episodes(points, settings.params), end)


def _points_until(points: pa.Table, end: int) -> pa.Table:
    """Points a run up to ``end`` emits: readings before it, windows and ticks up to it."""
    ts = points["ts"].cast(pa.int64())
    per_reading = pc.is_in(points["anomaly_type"], pa.array(list(READING_TYPES), pa.string()))
    keep = pc.if_else(per_reading, pc.less(ts, end), pc.less_equal(ts, end))
    return points.filter(keep)


def write_day(
    lake: Lake, day: dt.date, out: DayOutput, tables: tuple[str, ...] = ("window_stats", "anomaly_points", "anomalies")
) -> dict[str, Path]:
    """Replace the day's derived partitions; the caller holds :func:`day_lock`. Returns each table's new file."""
    meta = {UNTIL_KEY: str(out.until_us)}
    data = {"window_stats": out.window_stats, "anomaly_points": out.points, "anomalies": out.anomalies}
    return {table: lake.replace_partition(table, day, data[table], metadata=meta) for table in tables}


def build_day(
    lake: Lake, day: dt.date, settings: DownstreamSettings, now_us: int | None = None, *, before_write=None,
    windows_written: bool = False,
) -> DayOutput:
    """Compute and write ``day``'s window_stats, anomaly_points and anomalies as one unit (a backfill).

    ``windows_written``: :func:`build_window_stats_day` wrote the day's windows
    already (a parallel backfill's first wave); they are the ones computed here,
    byte for byte, and are left in place, since other days' detection may be reading them.
    ``before_write`` (tests only) runs with the lock held, between the
    computation and the writes: where a concurrent micro-batch used to slip in.
    """
    tables = ("anomaly_points", "anomalies") if windows_written else ("window_stats", "anomaly_points", "anomalies")
    with day_lock(lake, day):
        out = compute_day(lake, day, settings, now_us=now_us)
        if before_write is not None:
            before_write()
        write_day(lake, day, out, tables=tables)
    return out


def build_window_stats_day(lake: Lake, day: dt.date, settings: DownstreamSettings) -> pa.Table:
    """Only ``day``'s window_stats, as :func:`build_day` would write them: a parallel backfill's first wave.

    For past days only (a micro-batch updates today and yesterday incrementally
    from their anomaly_points' watermark, which must not lag their windows);
    the day's :func:`build_day` follows and rewrites the same windows with the
    points and episodes.
    """
    with day_lock(lake, day):  # computed under the lock too: a late-data rebuild of the day cannot slip in between
        window_stats = window_stats_day(iter_day_chunks(lake, day, settings), settings.params, day=day,
                                        intervals=settings.intervals(), workers=settings.workers)  # fmt: skip
        write_day(lake, day, DayOutput(window_stats, POINTS.empty_table(), ANOMALIES.empty_table(),
                                       day_start_us(day) + DAY_US), tables=("window_stats",))  # fmt: skip
    return window_stats


# -- micro-batches -------------------------------------------------------------------------------
def downstream_until(lake: Lake, state: State, day: dt.date) -> int | None:
    """Up to which window end ``day``'s derived tables are built (None: never built)."""
    until = None
    compacted = lake.compacted("anomaly_points", day)
    if compacted is not None:
        raw = read_metadata(compacted).get(UNTIL_KEY)
        until = int(raw) if raw is not None else day_start_us(day) + DAY_US
    for info in state.day_parts("anomaly_points", day).values():
        if info.until is not None:
            until = info.until if until is None else max(until, info.until)
    return until


def _context_readings(lake: Lake, state: State, day: dt.date, staged: dict, lo: int, hi: int) -> pa.Table:
    pieces = []
    for d in sorted({EPOCH_DATE + dt.timedelta(days=lo // DAY_US), day}):
        files = committed_files(lake, state, "readings", d, lo, hi)
        pieces.append(read_ts_range(lake, "readings", [d], "ts", lo, hi, files=files))
        if d in staged:
            s = staged[d]
            ts = s["ts"].cast(pa.int64())
            pieces.append(s.filter(pc.and_(pc.greater_equal(ts, lo), pc.less(ts, hi))))
    return pa.concat_tables([conform(p, READINGS) for p in pieces])


def _context_window_stats(lake: Lake, state: State, day: dt.date, lo: int, hi: int) -> pa.Table:
    first = EPOCH_DATE + dt.timedelta(days=lo // DAY_US)
    pieces = []
    d = first
    while d <= day:
        files = committed_files(lake, state, "window_stats", d, lo, hi)
        pieces.append(read_ts_range(lake, "window_stats", [d], "window_end", lo + 1, hi + 1, files=files))
        d += dt.timedelta(days=1)
    return pa.concat_tables(pieces)


def baseline_for(lake: Lake, day: dt.date, settings: DownstreamSettings) -> pa.Table:
    """The drift baseline of ``day``, cached: every batch of a day needs the same one.

    The cache key is the identity (name, size, mtime) of the history files and
    the detection parameters, so a rebuilt previous day invalidates it.
    """
    p = settings.params
    days = [day - dt.timedelta(days=i) for i in range(p.drift.history_days, 0, -1)]
    files = [f for d in days for f in lake.files("window_stats", d)]
    ident = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files] + [repr(p)]
    key = hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:16]
    cache = lake.root / "lake" / "_state" / "drift_baseline" / f"{day.isoformat()}-{key}.parquet"  # on this machine
    if cache.exists():
        return pq.read_table(cache)
    hist = history_window_stats(lake, day, settings)
    end = hist["window_end"].cast(pa.int64())
    hist = hist.filter(pc.greater(end, day_start_us(day) - p.drift.history_days * DAY_US))
    baseline = drift_baseline(hist, p)
    for old in cache.parent.glob(f"{day.isoformat()}-*.parquet") if cache.parent.exists() else []:
        old.unlink(missing_ok=True)
    write_parquet_atomic(baseline, cache)
    return baseline


def update_day(lake: Lake, state: State, batch_id: str, day: dt.date, staged: dict, until_us: int,
               settings: DownstreamSettings, rebuild: bool = False) -> tuple[str, int]:  # fmt: skip
    """Bring one day's derived tables up to the batch's watermark. Returns (how, rows emitted).

    ``rebuild`` forces the whole day (its readings were rebuilt, a derived file was damaged).
    Under :func:`day_lock`: a backfill of the day is either all before or all after.
    """
    with day_lock(lake, day):
        return _update_day_locked(lake, state, batch_id, day, staged, until_us, settings, rebuild)


def _update_day_locked(lake: Lake, state: State, batch_id: str, day: dt.date, staged: dict, until_us: int,
                       settings: DownstreamSettings, rebuild: bool) -> tuple[str, int]:  # fmt: skip
    a = day_start_us(day)
    end = min(a + DAY_US, watermark(until_us, settings))
    prev = downstream_until(lake, state, day)
    rows = staged.get(day)
    late = rows is not None and prev is not None and rows.num_rows and pc.min(rows["ts"].cast(pa.int64())).as_py() < prev
    for table in ("window_stats", "anomaly_points"):
        with lake.lock(table, day):
            remove_uncommitted_parts(lake, state, table, day)
    if prev is None or late or rebuild:
        # first build of the day, readings for windows already emitted, or a repair: the whole day
        out = compute_day(lake, day, settings, now_us=None if end >= a + DAY_US else until_us)
        write_day(lake, day, out)
        for table in ("window_stats", "anomaly_points"):
            state.parts.get(table, {}).pop(day.isoformat(), None)
        return ("late" if late else "rebuilt" if rebuild and prev is not None else "full"), out.window_stats.num_rows
    if end <= prev:
        return "current", 0
    p = settings.params
    ctx = context_seconds(p, max_interval_s=_known_interval_s(lake, day, settings))
    readings = _context_readings(lake, state, day, staged, prev - ctx.readings_s * US, end)
    intervals = settings.intervals()
    new_ws = compute_window_stats(readings, p.windows, emit_start=prev, emit_end=end, intervals=intervals, registry=p.registry)
    ws_ctx = _context_window_stats(lake, state, day, prev - ctx.window_stats_s * US, prev)
    points = detect_points(readings, pa.concat_tables([ws_ctx, new_ws]), baseline_for(lake, day, settings), p,
                           emit_start=prev, emit_end=end, intervals=intervals)  # fmt: skip
    name = part_file(batch_id)
    for table, data in (("window_stats", new_ws), ("anomaly_points", points)):
        lake.write_part(table, day, batch_id, data, metadata={UNTIL_KEY: str(end)}, commit=False)
        col = "window_end" if table == "window_stats" else "ts"
        ts = data[col].cast(pa.int64()) if data.num_rows else None
        state.day_parts(table, day)[name] = PartInfo(
            ts_min=pc.min(ts).as_py() if ts is not None else None,
            ts_max=pc.max(ts).as_py() if ts is not None else None,
            until=end,
        )
    for table in ("window_stats", "anomaly_points"):
        _merge_parts(lake, state, table, day, batch_id)
    # the day's points: the compacted file and every committed part, this batch's included
    lake.replace_partition("anomalies", day, to_episodes(_day_points(lake, state, day), p), metadata={UNTIL_KEY: str(end)})
    return "incremental", new_ws.num_rows


def _merge_parts(lake: Lake, state: State, table: str, day: dt.date, batch_id: str) -> None:
    """Replace a day's many small parts by one (the old files go once the batch commits)."""
    parts = state.day_parts(table, day)
    if len(parts) < MERGE_PARTS_AT:
        return
    d = lake.partition_dir(table, day)
    files = [d / name for name in sorted(parts)]
    con = _con()
    data = conform(con.sql(f"SELECT * FROM {parquet_scan(con, files)}").to_arrow_table(), TABLES[table])
    col = "window_end" if table == "window_stats" else "ts"
    data = data.sort_by([("sensor_id", "ascending"), (col, "ascending")])
    infos = list(parts.values())
    until = max(i.until for i in infos if i.until is not None)
    lake.write_part(table, day, f"merged-{batch_id}", data, metadata={UNTIL_KEY: str(until)}, commit=False)
    lo = [i.ts_min for i in infos if i.ts_min is not None]
    hi = [i.ts_max for i in infos if i.ts_max is not None]
    parts.clear()
    parts[part_file(f"merged-{batch_id}")] = PartInfo(ts_min=min(lo) if lo else None, ts_max=max(hi) if hi else None, until=until)
    state.superseded.extend(files)


def _day_points(lake: Lake, state: State, day: dt.date) -> pa.Table:
    files = committed_files(lake, state, "anomaly_points", day)
    if not files:
        return POINTS.empty_table()
    con = _con()
    return conform(con.sql(f"SELECT * FROM {parquet_scan(con, files)}").to_arrow_table(), POINTS)


def _reaches_next_day(lake: Lake, state: State, day: dt.date, rows: pa.Table | None, settings: DownstreamSettings) -> bool:
    """Whether readings staged in ``day`` fall in the last minutes the next day's windows and detectors read, while
    the next day has derived tables already (a late import at 23:58 changes the windows ending at 00:01): that
    day is then rebuilt whole too, or it would differ from a rebuild from scratch."""
    if rows is None or not rows.num_rows:
        return False
    nxt = day + dt.timedelta(days=1)
    if downstream_until(lake, state, nxt) is None:
        return False
    return pc.max(rows["ts"].cast(pa.int64())).as_py() >= day_start_us(nxt) - context_us(lake, nxt, settings)


def make_update_downstream(settings: DownstreamSettings, first_day: dt.date | None = None, skip_days: frozenset[dt.date] = frozenset()):
    """The ``downstream`` callback of :func:`iot_platform.io.microbatch.run_micro_batch`.

    ``skip_days`` are left alone: a backfill draining the landing zone rebuilds them itself.
    """

    def update(lake: Lake, state: State, batch_id: str, staged: dict, until_us: int, result) -> None:
        today = EPOCH_DATE + dt.timedelta(days=(until_us - 1) // DAY_US)
        days = set(staged) | result.rebuild_days | {d for d in (today - dt.timedelta(days=1), today) if lake.exists("readings", d)}
        spilled = {d + dt.timedelta(days=1) for d, rows in staged.items() if _reaches_next_day(lake, state, d, rows, settings)}
        for day in sorted(days | spilled):
            if (first_day is not None and day < first_day) or day in skip_days:
                continue
            rebuild = day in result.rebuild_days or day in spilled
            how, _ = update_day(lake, state, batch_id, day, staged, until_us, settings, rebuild=rebuild)
            if how == "late" or day in spilled:
                result.late_days.append(day.isoformat())
            if how != "current" and day.isoformat() not in result.partitions:
                result.partitions.append(day.isoformat())

    return update
