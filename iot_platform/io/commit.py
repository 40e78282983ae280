"""The lake's commit state: which micro-batch parts are committed, and the rules of a commit.

Both writers of a day's partitions during micro-batches, ``io.microbatch``
(readings) and ``io.downstream`` (window_stats, anomaly_points, anomalies),
import this module; the rules below live here only.

* A micro-batch stages *parts* (``part-<part id>.parquet``, in no table yet)
  and commits with one Delta commit of its record, the state below
  (:func:`commit_state`, :meth:`Lake.commit_record`); the record's plan then
  adds the parts to their tables, one commit per table carrying ``(app, seq)``,
  and a process killed between the two has the plan applied by the next
  load (:func:`load_state`). A staged part that no commit added belongs to a
  batch that died before its commit: the next batch deletes it
  (:func:`remove_uncommitted_parts`) and redoes its work. Readers of a table
  can see a batch's readings a moment before its window statistics (Delta
  commits one table at a time), never half of one table's part.
* A committed part is immutable. A batch id that has already committed (a
  re-execution from the UI, a run retried after a failure past its commit)
  gets a new part id (:meth:`State.part_id`), so it can only add what is new,
  never overwrite what its first run committed with less.
* One batch runs at a time (:func:`batch_lock`); within it, every partition is
  written under that partition's lake lock, which backfills take too.
* A day's derived tables (window_stats, anomaly_points, anomalies) change as
  one unit under :func:`day_lock`, held by a whole-day build and by a
  micro-batch from their first read to their last write.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

from iot_platform.io.lake import PART_PREFIX, Lake


@dataclasses.dataclass
class PartInfo:
    """A committed part: its rows' ts range and, for readings, the simulator coverage."""

    ts_min: int | None
    ts_max: int | None
    sim_from: int | None = None
    sim_until: int | None = None
    until: int | None = None  # for window_stats / anomaly_points parts: emitted up to here
    # for readings parts with simulated rows: the simulated sensors they cover
    sim_sensors: int | None = None


@dataclasses.dataclass
class State:
    # table -> day -> part file name -> info
    parts: dict[str, dict[str, dict[str, PartInfo]]] = dataclasses.field(default_factory=dict)
    landing_ingested: list[str] = dataclasses.field(default_factory=list)
    batches: int = 0
    # files superseded by this batch (merged parts): removed from their tables by the commit
    superseded: list[Path] = dataclasses.field(default_factory=list)
    # the sequence number of the last commit (each commit_state adds one)
    seq: int = 0
    # the parts in ``parts`` at the last commit: what a commit adds is the difference
    committed: set[tuple[str, str, str]] = dataclasses.field(default_factory=set)

    def day_parts(self, table: str, day: dt.date | str) -> dict[str, PartInfo]:
        key = day if isinstance(day, str) else day.isoformat()
        return self.parts.setdefault(table, {}).setdefault(key, {})

    def has_committed(self, batch_id: str) -> bool:
        """Whether a committed part of any partition was written by ``batch_id``."""
        name = part_file(batch_id)
        return any(name in parts for days in self.parts.values() for parts in days.values())

    def part_id(self, batch_id: str) -> str:
        """The id this run of ``batch_id`` names its parts with.

        The batch id itself, unless that batch has committed already: then the
        commit's sequence number is added, so the re-execution writes new parts
        beside the committed ones. It is the same for every retry of the
        re-execution until that commits, so a retry overwrites only its own
        uncommitted parts.
        """
        return batch_id if not self.has_committed(batch_id) else f"{batch_id}-r{self.batches + 1}"

    def to_json(self) -> str:
        return json.dumps(
            {
                "parts": {t: {d: {n: dataclasses.asdict(i) for n, i in ps.items()} for d, ps in days.items()} for t, days in self.parts.items()},
                "landing_ingested": self.landing_ingested,
                "batches": self.batches,
            },
            indent=1,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> State:
        raw = json.loads(text)
        parts = {t: {d: {n: PartInfo(**i) for n, i in ps.items()} for d, ps in days.items()} for t, days in raw["parts"].items()}
        return cls(parts=parts, landing_ingested=list(raw["landing_ingested"]), batches=int(raw["batches"]))


def part_file(part_id: str) -> str:
    return f"{PART_PREFIX}{part_id}.parquet"


def load_state(lake: Lake) -> State:
    """The committed state, with entries for parts that no longer exist dropped.

    A plan a killed process committed but did not apply is applied first. A
    part disappears when its partition is compacted or rebuilt (finalize,
    backfill); the compacted file then carries the coverage.
    """
    last = lake.last_record()
    if last is None:
        return State()
    lake.roll_forward()
    seq, record, _, _ = last
    state = State.from_json(record)
    state.seq = seq
    for table, days in state.parts.items():
        live = {f.relative_to(lake.table_dir(table)).as_posix() for f in lake.all_files(table)}
        for day, parts in list(days.items()):
            for name in list(parts):
                if f"date={day}/{name}" not in live:
                    del parts[name]
            if not parts:
                del days[day]
    state.committed = _listed(state)
    return state


def _listed(state: State) -> set[tuple[str, str, str]]:
    return {(t, d, n) for t, days in state.parts.items() for d, ps in days.items() for n in ps}


def commit_state(lake: Lake, state: State) -> None:
    """Make ``state`` the committed one: one Delta commit of its record, then its parts added to their tables."""
    now = _listed(state)
    plan: dict[str, dict[str, list]] = {}
    for t, d, n in sorted(now - state.committed):
        plan.setdefault(t, {"add": [], "remove": []})["add"].append([d, n])
    for path in state.superseded:
        table, part, name = path.relative_to(lake.lake_dir).parts
        plan.setdefault(table, {"add": [], "remove": []})["remove"].append([part.removeprefix("date="), name])
    state.seq += 1
    lake.commit_record(state.seq, state.to_json(), plan)
    state.committed = now
    state.superseded = []


def last_commit(lake: Lake) -> tuple[int, int] | None:
    """(when, µs since the epoch; batches committed) of the last micro-batch commit, or None."""
    last = lake.last_record()
    if last is None:
        return None
    _, record, _, committed_us = last
    return committed_us, int(json.loads(record).get("batches", 0))


def remove_uncommitted_parts(lake: Lake, state: State, table: str, day: dt.date) -> list[str]:
    """Delete parts of a partition that no committed batch lists (a batch died mid-way).

    The caller holds the partition's lock.
    """
    known = state.day_parts(table, day)
    removed = []
    for f in lake.staged_files(table, day):
        if f.name.startswith(PART_PREFIX) and f.name not in known:
            f.unlink()
            removed.append(f.name)
    return removed


def committed_files(lake: Lake, state: State, table: str, day: dt.date, lo: int | None = None, hi: int | None = None) -> list[Path]:
    """The compacted file and the committed parts of a partition whose rows may fall in [lo, hi]."""
    files = [f for f in lake.files(table, day) if not f.name.startswith(PART_PREFIX)]
    for name, info in state.day_parts(table, day).items():
        path = lake.partition_dir(table, day) / name
        overlaps = lo is None or info.ts_min is None or (info.ts_min <= hi and info.ts_max >= lo)
        # a part gone since the state was loaded was compacted into data.parquet
        if overlaps and path.exists():
            files.append(path)
    return files


DERIVED_LOCK = "derived"


@contextlib.contextmanager
def day_lock(lake: Lake, day: dt.date | str) -> Iterator[None]:
    """The one lock of a day's derived tables: window_stats, anomaly_points and anomalies.

    Held from the reads to the last write by whoever changes them (a whole-day
    build, a micro-batch), so the three tables of a day change as one unit: a
    micro-batch never takes its watermark from one build and its windows from
    another. Not re-entrant (a flock per open file): take it once, at the top.
    """
    with lake.lock(DERIVED_LOCK, day):
        yield


@contextlib.contextmanager
def batch_lock(lake: Lake) -> Iterator[None]:
    """One micro-batch at a time, whatever process runs it."""
    with lake.lock("_micro_batch", "all"):
        yield
