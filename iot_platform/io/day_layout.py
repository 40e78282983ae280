"""How a compacted `readings` day orders its rows: the day's last hour in row groups of its own.

A day's file is written a chunk of sensors at a time (sorted by sensor, then
ts). Each chunk goes in as two pieces: its rows before the day's last hour,
then its rows of the last hour, each piece its own row groups. So every row
group still holds a few consecutive sensors (a backfill's read of a chunk of
sensors prunes by ``sensor_id``), and the last hour's row groups are the only
ones whose ``ts`` statistics reach it: the next day's look-back (a micro-batch
just after midnight, or a backfill's previous-day context: 20 minutes for a
1 Hz fleet) reads those row groups, about 1/24 of the file, instead of all of it
(on an object store, each row group read is a ranged GET).

Readers never depend on this order: the pipeline sorts what it reads, and
older files (sorted by sensor, then ts, throughout) read the same, only
without that pruning.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from iot_platform.core.calendar import DAY_US, US, day_start_us

# the next day reads 20 minutes of a 1 Hz fleet's context; an hour leaves room for slower sensors,
# and keeps the tail row groups large enough (5 sensors x 3,600 readings) to be worth their footer
TAIL_S = 3600


def tail_start_us(day: dt.date) -> int:
    """Where ``day``'s tail row groups begin."""
    return day_start_us(day) + DAY_US - TAIL_S * US


def split_tail(chunk: pa.Table, day: dt.date) -> list[pa.Table]:
    """``chunk`` (a few sensors' rows, in order) as its rows before the tail and its tail rows.

    Each non-empty piece keeps the chunk's order; the writer puts each in row groups of its own.
    Sorted by (sensor, ts), a chunk alternates between runs of rows before the tail and runs in it
    (one of each per sensor): each piece is its runs, sliced, not copied.
    """
    if chunk.num_rows == 0:
        return [chunk]
    # a null ts (never in validated readings) stays with the first piece: no row is lost either way
    ts = pc.fill_null(chunk["ts"].cast(pa.int64()), tail_start_us(day - dt.timedelta(days=1)))
    in_tail = ts.to_numpy() >= tail_start_us(day)
    starts = np.r_[0, np.flatnonzero(in_tail[1:] != in_tail[:-1]) + 1]
    if len(starts) > 256:  # rows not grouped by sensor (never from the build): two filters, not many slices
        pieces = [chunk.filter(pa.array(~in_tail)), chunk.filter(pa.array(in_tail))]
        return [p for p in pieces if p.num_rows]
    ends = np.r_[starts[1:], len(in_tail)]
    runs = [[], []]
    for lo, hi in zip(starts.tolist(), ends.tolist()):  # two runs per sensor at most
        runs[int(in_tail[lo])].append(chunk.slice(lo, hi - lo))
    pieces = [pa.concat_tables(r) for r in runs if r]
    return pieces
