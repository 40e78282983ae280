"""A backfill range's readings, window_stats and anomalies in one pass over each day.

:func:`~iot_platform.io.ingest.build_readings_day` streams a day's readings
into its file a few sensors at a time; here each validated chunk is also
handed to the day's detection (:class:`~iot_platform.core.detectors.pipeline.DayStage`)
as it is written, so windows and detectors run on the other core while the
next chunk is simulated and validated, and the day is never read back from
the file. The previous day's tail and the previous days' window_stats come
from the lake, written by then (the days are built in order). The same bytes
as ``build_readings_day`` then ``build_day`` (tested).

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
from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from iot_platform.core import simulator as sim
from iot_platform.core.calendar import day_start_us
from iot_platform.core.detectors.pipeline import DayStage, run_chunk
from iot_platform.io.commit import day_lock
from iot_platform.io.downstream import (
    DayOutput,
    DownstreamSettings,
    context_us,
    day_output,
    history_days,
    history_window_stats,
    sensor_rows,
    write_day,
)
from iot_platform.io.ingest import DayStats, build_readings_locked
from iot_platform.io.lake import Lake


class _Detection:
    """A day's detection fed chunk by chunk: ``settings.workers`` chunks computed at once (threads), at most
    twice that many waiting, so the readings build waits rather than holding the day in memory."""

    def __init__(self, lake: Lake, day: dt.date, settings: DownstreamSettings, pool: cf.ThreadPoolExecutor):
        self.lake, self.day, self.settings, self.pool = lake, day, settings, pool
        self.stage = DayStage(history_window_stats(lake, day, settings), settings.params, day=day, intervals=settings.intervals())
        self.ctx = context_us(lake, day, settings)
        self.pending: collections.deque[cf.Future] = collections.deque()
        self.buffer: list[pa.Table] = []
        self.sensors = 0

    def add(self, good: pa.Table) -> None:
        """Validated readings of the next few sensors (sensor-id order, no sensor split between calls)."""
        if good.num_rows == 0:
            return
        self.buffer.append(good)
        self.sensors += pc.count_distinct(good["sensor_id"]).as_py()
        if self.sensors >= self.settings.sensors_per_chunk:
            self._submit()

    def _submit(self) -> None:
        if not self.buffer:
            return
        readings = pa.concat_tables(self.buffer)
        self.buffer, self.sensors = [], 0
        names = np.array(pc.unique(readings["sensor_id"]).to_pylist(), dtype=object)
        task = self.stage.task(self.stage.past(names))
        self.pending.append(self.pool.submit(self._run, readings, names.tolist(), task))
        while len(self.pending) > 2 * self.settings.workers:
            self.stage.collect(self.pending.popleft().result())

    def _run(self, readings: pa.Table, names: list[str], task) -> list[tuple]:  # noqa: ANN001
        a = day_start_us(self.day)
        prev = sensor_rows(self.lake, self.day - dt.timedelta(days=1), names, a - self.ctx, a)
        return run_chunk(readings, prev, task)

    def finish(self, now_us: int | None) -> DayOutput:
        self._submit()
        while self.pending:
            self.stage.collect(self.pending.popleft().result())
        return day_output(self.stage.finish(), self.day, now_us, self.settings)

    def cancel(self) -> None:
        for fut in self.pending:
            fut.cancel()


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
    inputs: list[tuple[str, int, int]]  # derived_inputs right after the write, the day's lock held


def build_chain_day(
    lake: Lake,
    fleet: sim.FleetParams | None,
    day: dt.date,
    settings: DownstreamSettings,
    *,
    now_us: int | None,
    write_labels: bool = True,
    pool: cf.ThreadPoolExecutor | None = None,
) -> ChainDay:
    """``build_readings_day`` then ``build_day`` of ``day``, in one pass over its readings."""
    with contextlib.ExitStack() as stack:
        if pool is None:
            pool = stack.enter_context(cf.ThreadPoolExecutor(max_workers=settings.workers))
        readings_lock = stack.enter_context(contextlib.ExitStack())
        readings_lock.enter_context(lake.lock("readings", day))
        stack.enter_context(day_lock(lake, day))
        detection = _Detection(lake, day, settings, pool)
        try:
            stats = build_readings_locked(lake, fleet, day, now_us, write_labels=write_labels, on_good=detection.add)
        except BaseException:
            detection.cancel()
            raise
        readings_lock.close()  # the day's readings are written: micro-batches may append again
        out = detection.finish(now_us)
        write_day(lake, day, out)
        return ChainDay(stats, out, derived_inputs(lake, day, settings))


def build_chain_days(
    lake: Lake,
    fleet: sim.FleetParams | None,
    days: list[dt.date],
    settings: DownstreamSettings,
    *,
    now_us: Callable[[], int],
    write_labels: bool = True,
) -> Iterator[ChainDay]:
    """:func:`build_chain_day` of each of ``days``, in day order (a day's history is the days before it)."""
    with cf.ThreadPoolExecutor(max_workers=settings.workers) as pool:
        for day in sorted(days):
            yield build_chain_day(lake, fleet, day, settings, now_us=now_us(), write_labels=write_labels, pool=pool)



