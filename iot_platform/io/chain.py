"""A backfill range's readings, window_stats and anomalies in one pass over each day.

:func:`~iot_platform.io.ingest.build_readings_day` streams a day's readings
into its file a few sensors at a time; here each validated chunk is also
handed to the day's detection (:class:`~iot_platform.core.detectors.pipeline.DayStage`)
as it is written, so windows and detectors run on the other core while the
next chunk is simulated and validated, and the day is never read back from
the file. The previous day's tail comes from the lake (written by then: the
days are built in order), as do the previous days' window_stats but the
newest, which a day takes from memory while that day is still being written
(:func:`build_chain_days`). The same bytes as ``build_readings_day`` then
``build_day`` (tested).

Locks: the day's readings lock, then its :func:`~iot_platform.io.commit.day_lock`,
both taken before the first read, in that order (nothing takes them the other
way round); the readings lock is released once the readings are written, the
day lock once its three derived tables are.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import contextlib
import dataclasses
import datetime as dt
import functools
import threading
from collections.abc import Callable, Iterator

import pyarrow as pa

from iot_platform.core import simulator as sim
from iot_platform.core.calendar import day_start_us
from iot_platform.core.detectors.pipeline import DayStage
from iot_platform.core.windows import EncodedSensors, ReadingsSource
from iot_platform.io.commit import day_lock
from iot_platform.io.downstream import (
    DayOutput,
    DownstreamSettings,
    context_us,
    day_output,
    history_days,
    history_from_memory,
    history_window_stats,
    history_with,
    sensor_rows,
    write_day,
)
from iot_platform.io.ingest import DayStats, build_readings_locked
from iot_platform.io.lake import TABLES, Lake
from iot_platform.io.pass_audits import READINGS_AUDITED, PassAudit, Vouched, own_files


class _Detection:
    """A day's detection fed chunk by chunk: ``settings.workers`` chunks computed at once (threads); a chunk
    waits for one of ``slots`` (shared with the previous day, still finishing), so the readings build waits
    rather than holding the day in memory.

    ``history`` gives the previous days' window_stats when the first chunk needs them: the newest of
    them may still be finishing (:func:`build_chain_days`).
    """

    def __init__(self, lake: Lake, day: dt.date, settings: DownstreamSettings, pool: cf.ThreadPoolExecutor,
                 history: Callable[[], pa.Table], slots: threading.Semaphore):  # fmt: skip
        self.lake, self.day, self.settings, self.pool, self.history = lake, day, settings, pool, history
        self.slots = slots  # chunks in memory, this day's and the previous day's: submitted, not collected yet
        self.ctx = context_us(lake, day, settings)
        self._stage: DayStage | None = None
        self.pending: collections.deque[cf.Future] = collections.deque()
        self.buffer: list[pa.Table] = []
        self.sensors = 0

    @property
    def stage(self) -> DayStage:
        if self._stage is None:
            s = self.settings
            self._stage = DayStage(self.history(), s.params, day=self.day, intervals=s.intervals())
            self.history = None  # it holds the previous day: let it go
        return self._stage

    def add(self, good: pa.Table) -> None:
        """Validated readings of the next few sensors (sensor-id order, no sensor split between calls)."""
        if good.num_rows == 0:
            return
        self.buffer.append(good)
        self.sensors += len(EncodedSensors(good["sensor_id"]).used())
        if self.sensors >= self.settings.sensors_per_chunk:
            self._submit()

    def _submit(self) -> None:
        if not self.buffer:
            return
        readings = pa.concat_tables(self.buffer)
        self.buffer, self.sensors = [], 0
        stage = self.stage  # made here, not in a worker: it may wait for the previous day's windows
        while not self.slots.acquire(blocking=False):
            if not self.pending:  # every slot is the previous day's: its finishing frees them
                self.slots.acquire()
                break
            self._collect()
        self.pending.append(self.pool.submit(self._run, readings, stage))

    def _collect(self) -> None:
        fut = self.pending.popleft()
        try:
            self.stage.collect(fut.result())
        finally:
            self.slots.release()

    def _run(self, readings: pa.Table, stage: DayStage) -> list[tuple]:
        """A chunk as ``run_day_chunked`` computes it: its sensors from the runs of its sensor_id column, the
        previous day's tail of those, one encoded source whose names also pick the history's rows."""
        a = day_start_us(self.day)
        names = sorted(EncodedSensors(readings["sensor_id"]).used())
        prev = sensor_rows(self.lake, self.day - dt.timedelta(days=1), names, a - self.ctx, a)
        source = ReadingsSource([prev, readings])
        return stage.run(readings, prev, stage.past(source.names), source)

    def windows(self) -> pa.Table:
        """Wait for every chunk: the day's window_stats."""
        self._submit()
        while self.pending:
            self._collect()
        return self.stage.window_stats()

    def finish(self, now_us: int | None) -> DayOutput:
        self.windows()
        return day_output(self.stage.finish(), self.day, now_us, self.settings)

    def close(self) -> None:
        """Drop what is left: chunks not collected (a running one ends unread) and the stage's results."""
        for fut in self.pending:
            fut.cancel()
            self.slots.release()
        self.pending.clear()
        self._stage = None


def derived_inputs(lake: Lake, day: dt.date, settings: DownstreamSettings) -> list[tuple[str, int, int]]:
    """(file, size, mtime) of what ``day``'s derived tables are computed from (its readings and the previous
    day's, the history days' window_stats) and of their own files: while it is unchanged, so are they."""
    prev = day - dt.timedelta(days=1)
    files = [*lake.files("readings", prev), *lake.files("readings", day)]
    files += [f for d in history_days(day, settings) for f in lake.files("window_stats", d)]
    files += [f for t in ("window_stats", "anomaly_points", "anomalies") for f in lake.files(t, day)]
    return [(str(f), (st := f.stat()).st_size, st.st_mtime_ns) for f in files]


@dataclasses.dataclass(frozen=True)
class ChainDay:
    stats: DayStats  # the readings build
    out: DayOutput  # the derived tables written
    inputs: list[tuple[str, int, int]] | None  # derived_inputs right after the write, the day's lock held
    audited: Vouched  # the readings audits
    written: dict[str, list[tuple[str, int, int]] | None]  # own_files of window_stats and anomalies after the write


class _Day:
    """One day in flight: its locks held (the readings lock until its readings are written), its detection."""

    def __init__(self, lake: Lake, day: dt.date, settings: DownstreamSettings, pool: cf.ThreadPoolExecutor,
                 history: Callable[[], pa.Table], slots: threading.Semaphore):  # fmt: skip
        self.lake, self.day, self.settings = lake, day, settings
        self.locks = contextlib.ExitStack()
        self.readings_lock = self.locks.enter_context(contextlib.ExitStack())
        try:
            self.readings_lock.enter_context(lake.lock("readings", day))
            self.locks.enter_context(day_lock(lake, day))
            self.detection = _Detection(lake, day, settings, pool, history, slots)
        except BaseException:
            self.locks.close()
            raise
        self.windows: cf.Future = cf.Future()  # set once every chunk is computed

    def readings(self, fleet: sim.FleetParams | None, now_us: int | None, write_labels: bool) -> DayStats:
        audit = PassAudit(self.day, TABLES["readings"])

        def on_good(rows: pa.Table) -> None:
            self.detection.add(rows)
            audit.add(rows)

        stats = build_readings_locked(self.lake, fleet, self.day, now_us, write_labels=write_labels, on_good=on_good)
        # the files first, then the labels: a label file committed in between shows as a change at the check
        files = own_files(self.lake, self.day, READINGS_AUDITED, stats.written)
        has_labels = bool(self.lake.files("fault_labels", self.day))
        labels = self.lake.read("fault_labels", [self.day]) if has_labels else TABLES["fault_labels"].empty_table()
        self.audited = Vouched(audit.results(labels) if files is not None else None, files or [])
        self.readings_lock.close()  # the day's readings are written: micro-batches may append again
        return stats

    def finish(self, stats: DayStats, now_us: int | None) -> ChainDay:
        """The rest of the day's detection and its writes; the locks released whatever happens."""
        try:
            try:
                self.windows.set_result(self.detection.windows())
            except BaseException as exc:
                self.windows.set_exception(exc)
                raise
            out = self.detection.finish(now_us)
            paths = write_day(self.lake, self.day, out)
            written = {t: own_files(self.lake, self.day, (t,), paths) for t in ("window_stats", "anomalies")}
            # the derived tables are of the rows this pass wrote: handed over only if the day's readings are
            # still just that file (a micro-batch may have committed a part since the readings lock was released),
            # checked after the snapshot so that a commit in between is seen by one or the other
            inputs = derived_inputs(self.lake, self.day, self.settings)
            ours = own_files(self.lake, self.day, ("readings", *paths), {**paths, "readings": stats.written["readings"]})
            inputs = inputs if ours is not None else None
            return ChainDay(stats, out, inputs, self.audited, written)
        finally:
            self.release()

    def release(self) -> None:
        self.detection.close()  # its output is built (or lost) by now
        self.locks.close()


def build_chain_days(
    lake: Lake,
    fleet: sim.FleetParams | None,
    days: list[dt.date],
    settings: DownstreamSettings,
    *,
    now_us: Callable[[], int | None],
    write_labels: bool = True,
) -> Iterator[ChainDay]:
    """Each of ``days`` in one pass, in day order; yields each day once written.

    A day's last chunks, its fleet-wide stage and its writes run on a thread
    while the next day's readings are built: the next day's history takes
    this day's windows from memory as soon as they are computed (the rows it
    would read from the lake once they are written, in the same order), or
    waits for the write when this day is not a whole past day.
    """
    days = sorted(days)
    # chunks in memory at once, whichever day they are of: the overlap of two days costs no memory
    slots = threading.Semaphore(2 * settings.workers)
    with cf.ThreadPoolExecutor(max_workers=settings.workers) as pool, cf.ThreadPoolExecutor(max_workers=1) as finisher:
        previous: tuple[_Day, cf.Future] | None = None
        try:
            for day in days:
                now = now_us()
                history = functools.partial(_history, lake, day, settings, previous, now)
                current = _Day(lake, day, settings, pool, history, slots)
                try:
                    stats = current.readings(fleet, now, write_labels)
                    if previous is not None:
                        yield previous[1].result()
                except BaseException:
                    current.release()
                    raise
                previous = (current, finisher.submit(current.finish, stats, now))
            if previous is not None:
                yield previous[1].result()
        finally:
            if previous is not None:  # never leave a day's writes running (nor its locks held) behind
                cf.wait([previous[1]])


def _history(lake: Lake, day: dt.date, settings: DownstreamSettings, previous: tuple[_Day, cf.Future] | None,
             now_us: int | None) -> pa.Table:  # fmt: skip
    """``day``'s history: the previous day's windows from memory when it is the newest history day and is
    written whole (a past day), else read from the lake once the previous day is written."""
    if previous is None:
        return history_window_stats(lake, day, settings)
    prev, written = previous
    if history_from_memory(day, prev.day, now_us, settings):
        return history_with(lake, day, settings, prev.windows.result())
    written.result()
    return history_window_stats(lake, day, settings)
