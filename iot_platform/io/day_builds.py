"""A backfill range's window_stats and anomalies on worker processes, day after day.

A day's detection is split into chunks of sensors computed in the worker
processes of :mod:`iot_platform.io.day_pool` (each reads its own chunk from
the lake); the parent process finishes the day (the fleet-wide systemic
stage, episodes) and writes it. Days depend on each other only through the
previous days' window_stats (the drift baseline and the context), so day
d+1's chunks start in the workers as soon as day d's windows are known,
while the parent finishes and writes day d: its history takes day d's
windows from memory, the rows :func:`~iot_platform.io.downstream.build_day`
would read from the lake once day d is written. The same bytes as
``build_day`` day after day (tested); each day's three tables change under its
:func:`~iot_platform.io.commit.day_lock`, held from its first read to its
last write (two at a time, in day order: a micro-batch takes one).
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import contextlib
import datetime as dt
import math
from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa

from iot_platform.core.calendar import DAY_US, day_start_us
from iot_platform.core.detectors.pipeline import ChunkTask, DayStage, run_chunk
from iot_platform.io import day_pool
from iot_platform.io.commit import day_lock
from iot_platform.io.downstream import (
    DayOutput,
    DownstreamSettings,
    context_us,
    day_output,
    day_sensors,
    history_from_memory,
    history_window_stats,
    history_with,
    sensor_rows,
    write_day,
)
from iot_platform.io.lake import Lake
from iot_platform.io.objstore import ObjectStore


class _Day:
    """One day in flight: its lock held, its chunks submitted to the workers a few at a time."""

    def __init__(self, lake: Lake, day: dt.date, settings: DownstreamSettings, processes: int):
        self.lake, self.day, self.settings, self.processes = lake, day, settings, processes
        self._lock = contextlib.ExitStack()
        self._lock.enter_context(day_lock(lake, day))  # from the first read to the last write
        self.pending: collections.deque[cf.Future] = collections.deque()
        self.stage: DayStage | None = None

    def start(self, history: pa.Table) -> None:
        s = self.settings
        sensors = day_sensors(self.lake, self.day)
        self.stage = DayStage(history, s.params, day=self.day, intervals=s.intervals())
        ctx = context_us(self.lake, self.day, s)
        # a multiple of `processes` chunks of (at most) sensors_per_chunk: the workers finish together
        k = self.processes * math.ceil(len(sensors) / (self.processes * s.sensors_per_chunk))
        size = max(1, math.ceil(len(sensors) / max(k, 1)))
        chunks = [sensors[i : i + size] for i in range(0, len(sensors), size)]
        root, store, stage = str(self.lake.root), self.lake.store, self.stage
        tasks = ((root, store, self.day, c, ctx, stage.task(stage.past(np.array(c, dtype=object)))) for c in chunks)
        if len(chunks) <= 1:  # a small day: here, not worth a trip to a worker
            for task in tasks:
                stage.collect(_chunk_in_worker(*task))
            self.tasks = iter(())
            return
        self.tasks = tasks
        self._fill()

    def _fill(self) -> None:
        # two chunks waiting per worker: they stay busy while the parent finishes the previous day
        pool = day_pool.pool(self.processes)
        while len(self.pending) < 2 * self.processes:
            task = next(self.tasks, None)
            if task is None:
                return
            self.pending.append(pool.submit(_chunk_in_worker, *task))

    def windows(self) -> pa.Table:
        """Wait for every chunk: the day's window_stats (known sensors without a reading included)."""
        assert self.stage is not None
        while self.pending:
            self.stage.collect(self.pending.popleft().result())
            self._fill()
        return self.stage.window_stats()

    def release(self) -> None:
        for fut in self.pending:
            fut.cancel()
        self._lock.close()


def build_days(
    lake: Lake, days: list[dt.date], settings: DownstreamSettings, *, now_us: Callable[[], int], processes: int
) -> Iterator[tuple[dt.date, DayOutput]]:
    """``build_day`` of each of ``days`` (ascending), in order, on ``processes`` worker processes."""
    days = sorted(days)
    open_days: list[_Day] = []
    try:
        current: _Day | None = None
        for i, day in enumerate(days):
            if current is None:
                current = _Day(lake, day, settings, processes)
                open_days.append(current)
                current.start(history_window_stats(lake, day, settings))
            windows = current.windows()
            following = days[i + 1] if i + 1 < len(days) else None
            now = now_us()
            nxt = None
            # the next day starts now if this day is its newest history day and is written whole (a past day)
            if following is not None and history_from_memory(following, day, now, settings):
                nxt = _Day(lake, following, settings, processes)
                open_days.append(nxt)
                nxt.start(history_with(lake, following, settings, windows))
            assert current.stage is not None
            out = day_output(current.stage.finish(), day, now, settings)
            write_day(lake, day, out)
            current.release()
            open_days.remove(current)
            current = nxt
            yield day, out
    finally:
        for d in open_days:
            d.release()


def _chunk_in_worker(root: str, store: ObjectStore | None, day: dt.date, sensors: list[str], ctx_us: int, task: ChunkTask) -> list[tuple]:
    lake = day_pool.worker_lake(root, store)
    a = day_start_us(day)
    prev = day - dt.timedelta(days=1)
    return run_chunk(sensor_rows(lake, day, sensors, a, a + DAY_US), sensor_rows(lake, prev, sensors, a - ctx_us, a), task)
