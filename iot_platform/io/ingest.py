"""Building `readings` partitions from their sources: the simulated fleet and the raw layer.

A day of `readings` is ``validate(simulator(day) + raw_readings(day))``: the
simulated fleet (when enabled) and every landing file ingested for that day,
kept in the raw layer. Rebuilding a day (a backfill, the nightly finalize)
therefore reproduces what micro-batches appended, and loses nothing that
was captured or imported.

The day is processed in chunks of sensors, in sensor-id order, and streamed
into one Parquet file: memory follows the chunk, not the day, and the file
comes out sorted by (sensor_id, ts) within each chunk's rows before the day's
last hour and within its last hour (row groups of their own: io.day_layout).
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from iot_platform.core import simulator as sim
from iot_platform.core.schemas import FAULT_LABELS, READINGS, conform
from iot_platform.core.validation import NO_PARTITION, REJECTED, Validated, validate_readings
from iot_platform.io import day_pool
from iot_platform.io.day_layout import split_tail
from iot_platform.io.lake import Lake, read_metadata
from iot_platform.io.registry import fleet_registry

SIM_UNTIL_KEY = "iot.sim_until_us"
RAW_PARTS_KEY = "iot.raw_parts"
# how many simulated sensors the file holds (up to SIM_UNTIL_KEY): a fleet grown since is filled in
SIM_SENSORS_KEY = "iot.sim_sensors"


@dataclasses.dataclass
class DayStats:
    """What a build of one `readings` day did, for the UI and the tests."""

    day: dt.date
    rows: int = 0
    sensors: int = 0
    rejected: int = 0
    duplicates: int = 0
    expected: int = 0
    ts_min: int | None = None
    ts_max: int | None = None
    labels: int = 0
    preview: pa.Table | None = None
    sensor_ids: set[str] = dataclasses.field(default_factory=set)
    written: dict[str, Path] = dataclasses.field(default_factory=dict, compare=False)  # table -> file committed

    @property
    def missing_rate(self) -> float:
        return max(0.0, 1.0 - self.rows / self.expected) if self.expected else 0.0

    def add(self, v: Validated, expected: int) -> None:
        g = v.good
        self.rows += g.num_rows
        self.rejected += v.rejected.num_rows
        self.duplicates += v.duplicates
        self.expected += expected
        if g.num_rows:
            ts = g["ts"].cast(pa.int64())
            lo, hi = pc.min(ts).as_py(), pc.max(ts).as_py()
            self.ts_min = lo if self.ts_min is None else min(self.ts_min, lo)
            self.ts_max = hi if self.ts_max is None else max(self.ts_max, hi)
            self.sensor_ids.update(pc.unique(g["sensor_id"]).to_pylist())
            if self.preview is None:
                self.preview = g.slice(0, 5)
        self.sensors = len(self.sensor_ids)


def sim_end_us(day: dt.date, now_us: int | None) -> int:
    """The simulated fleet has produced readings up to now, never into the future."""
    start = sim.day_start_us(day)
    end = start + sim.DAY_US
    return end if now_us is None else max(start, min(end, now_us))


def build_readings_day(
    lake: Lake,
    fleet: sim.FleetParams | None,
    day: dt.date,
    *,
    now_us: int | None = None,
    sensors_per_chunk: int = 5,
    write_labels: bool = True,
) -> DayStats:
    """Rebuild the `readings`, `rejected_readings` and (``write_labels``) `fault_labels` partitions of ``day``.

    The partition lock is held from the listing of the raw layer to the swap, so a
    micro-batch that lands a file meanwhile either is read here or appends after.
    """
    with lake.lock("readings", day):
        return build_readings_locked(lake, fleet, day, now_us, sensors_per_chunk=sensors_per_chunk, write_labels=write_labels)


def build_readings_days(
    lake: Lake,
    fleet: sim.FleetParams | None,
    days: list[dt.date],
    *,
    now_us: Callable[[], int],
    write_labels: bool = True,
    processes: int = 1,
) -> Iterator[DayStats]:
    """:func:`build_readings_day` of each of ``days``, yielded in day order.

    With ``processes`` > 1 and more than one day, the days are built side by
    side in worker processes (:mod:`iot_platform.io.day_pool`): the same files,
    in about half the time on two cores. ``now_us`` is read as each day starts.
    """
    if processes <= 1 or len(days) <= 1:
        for day in days:
            yield build_readings_day(lake, fleet, day, now_us=now_us(), write_labels=write_labels)
        return
    tasks = ((str(lake.root), lake.store, fleet, day, now_us(), write_labels) for day in days)
    yield from day_pool.map_in_workers(_build_in_worker, tasks, processes)


def _build_in_worker(root: str, store, fleet, day: dt.date, now_us: int, write_labels: bool) -> DayStats:  # noqa: ANN001
    return build_readings_day(day_pool.worker_lake(root, store), fleet, day, now_us=now_us, write_labels=write_labels)


def build_readings_locked(
    lake: Lake,
    fleet: sim.FleetParams | None,
    day: dt.date,
    now_us: int | None,
    *,
    sensors_per_chunk: int = 5,
    write_labels: bool = True,
    on_good: Callable[[pa.Table], None] | None = None,
) -> DayStats:
    """:func:`build_readings_day` with the day's readings lock held by the caller; ``on_good`` sees each
    chunk of validated readings (a few sensors, in sensor-id order) as it is written."""
    start = sim.day_start_us(day)
    until = sim_end_us(day, now_us) if fleet is not None else start
    raw_files = lake.files("raw_readings", day)
    registry = fleet_registry(lake.root, fleet)  # per-sensor valid ranges (sensors.yaml)
    raw = conform(lake.read("raw_readings", [day]), READINGS) if raw_files else READINGS.empty_table()
    fleet_ids = fleet.sensor_ids if fleet is not None else []
    raw_ids = pc.unique(raw["sensor_id"]).to_pylist() if raw.num_rows else []
    all_ids = sorted(set(fleet_ids) | {s for s in raw_ids if s is not None})
    index_of = {sid: i for i, sid in enumerate(fleet_ids)}
    chunks = [all_ids[i : i + sensors_per_chunk] for i in range(0, len(all_ids), sensors_per_chunk)]
    stats = DayStats(day=day)
    rejected: list[pa.Table] = []
    labels: list[pa.Table] = []

    def work(ids: list[str]) -> tuple[Validated, int, pa.Table]:
        parts, expected, lab = [], 0, FAULT_LABELS.empty_table()
        idx = [index_of[s] for s in ids if s in index_of]
        if idx and fleet is not None:
            simulated = sim.simulate(fleet, start, until, idx)
            parts.append(simulated.readings)
            lab = simulated.labels
            expected += len(idx) * -(-(until - start) // fleet.interval_us)
        if raw.num_rows:
            parts.append(raw.filter(pc.is_in(raw["sensor_id"], pa.array(ids, pa.string()))))
        table = pa.concat_tables(parts) if parts else READINGS.empty_table()
        v = validate_readings(table, start, start + sim.DAY_US, registry=registry)
        expected += _expected_raw(v.good, set(ids) - set(index_of))
        return v, expected, lab

    def validated_chunks() -> Iterator[pa.Table]:
        # Two workers: NumPy and Arrow release the GIL, so simulation of the next
        # chunk overlaps validation and the Parquet write of this one.
        with cf.ThreadPoolExecutor(max_workers=2) as pool:
            pending: list[cf.Future] = []
            for ids in chunks:
                pending.append(pool.submit(work, ids))
                if len(pending) < 2:
                    continue
                yield from _consume(pending.pop(0))
            while pending:
                yield from _consume(pending.pop(0))

    def _consume(fut: cf.Future) -> Iterator[pa.Table]:
        v, expected, lab = fut.result()
        stats.add(v, expected)
        if v.rejected.num_rows:
            rejected.append(v.rejected)
        if lab.num_rows:
            labels.append(lab)
        if on_good is not None:
            on_good(v.good)
        # the day's last hour in row groups of its own: the next day's look-back reads only those
        yield from split_tail(v.good, day)

    metadata = {
        SIM_UNTIL_KEY: str(until),
        SIM_SENSORS_KEY: str(fleet.n_sensors if fleet is not None else 0),
        RAW_PARTS_KEY: json.dumps([f.name for f in raw_files]),
    }
    stats.written["readings"] = lake.replace_partition("readings", day, validated_chunks(), metadata=metadata, locked=True)
    # rejected_readings is guarded by the readings lock, as in micro-batches; readings
    # refused for having no partition are not in the day's sources: carry them over
    rejected += _refused_without_partition(lake, day)
    stats.written["rejected_readings"] = lake.replace_partition(
        "rejected_readings", day, pa.concat_tables(rejected) if rejected else REJECTED.empty_table(), locked=True
    )
    label_table = pa.concat_tables(labels) if labels else FAULT_LABELS.empty_table()
    # today's ground truth is what has happened so far, not the episodes still to come
    label_table = label_table.filter(pc.less(label_table["start_ts"].cast(pa.int64()), until))
    if fleet is not None and write_labels:
        stats.written["fault_labels"] = lake.replace_partition(
            "fault_labels", day, label_table.sort_by([("sensor_id", "ascending"), ("start_ts", "ascending")])
        )
    stats.labels = label_table.num_rows
    return stats


def _refused_without_partition(lake: Lake, day: dt.date) -> list[pa.Table]:
    if not lake.exists("rejected_readings", day):
        return []
    old = lake.read("rejected_readings", [day])
    kept = old.filter(pc.starts_with(old["reason"], NO_PARTITION))
    return [kept] if kept.num_rows else []


def _expected_raw(good: pa.Table, sensors: set[str]) -> int:
    """Expected readings of sensors outside the fleet: their span over their median interval."""
    if not sensors or good.num_rows == 0:
        return 0
    sub = good.filter(pc.is_in(good["sensor_id"], pa.array(sorted(sensors), pa.string())))
    if sub.num_rows == 0:
        return 0
    codes = pc.dictionary_encode(sub["sensor_id"]).combine_chunks().indices.to_numpy()
    ts = sub["ts"].cast(pa.int64()).to_numpy()
    total = 0
    bounds = np.flatnonzero(np.diff(codes)) + 1
    for seg in np.split(np.arange(len(ts)), bounds):  # one segment per sensor (rows are sorted)
        t = ts[seg]
        if len(t) < 2:
            total += len(t)
            continue
        step = float(np.median(np.diff(t)))
        total += int(round((t[-1] - t[0]) / step)) + 1 if step > 0 else len(t)
    return total


def sim_until(lake: Lake, day: dt.date) -> int | None:
    """Up to when the compacted `readings` file of ``day`` holds the simulated fleet."""
    compacted = lake.compacted("readings", day)
    if compacted is None:
        return None
    value = read_metadata(compacted).get(SIM_UNTIL_KEY)
    return int(value) if value is not None else None
