"""Micro-batches: append new readings to today's partitions, exactly once.

A batch ingests everything that is pending when it runs: the simulated
fleet's readings up to ``until_us`` that no committed part holds yet, and
every complete file in the landing zone. It then brings `window_stats`,
`anomaly_points` and `anomalies` up to date for the windows it completed.

Exactly once, by construction:

* Every file a batch writes is a *part* named by its batch id; a retry of the
  same batch overwrites its own parts.
* A batch becomes visible to the next batch only when it is *committed*: one
  atomic write of ``lake/_state/micro_batch.json`` listing its parts (with
  their ts range and simulated coverage) and the landing files it ingested.
  Parts on disk that the state does not list belong to a batch that died
  before its commit: the next batch deletes them and redoes their work.
* Landing files are moved to ``landing/_ingested/`` only after the commit; a
  file the state lists as ingested is never read again.
* Coverage is derived from disk plus state (a compacted ``data.parquet`` carries
  its own coverage in its metadata), so a backfill or the nightly finalize
  and micro-batches agree on what is already in a partition.

Concurrency: one batch at a time (a global lock); within a batch, each
partition is written under its lake lock, which backfills take too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import os
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from iot_platform.core import simulator as sim
from iot_platform.core.calendar import EPOCH_DATE
from iot_platform.core.schemas import LANDING, READINGS, conform
from iot_platform.core.validation import NO_PARTITION, REJECTED, validate_readings
from iot_platform.io.commit import PartInfo, State, batch_lock, commit_state, committed_files, day_lock, load_state, part_file, remove_uncommitted_parts
from iot_platform.io.ingest import SIM_SENSORS_KEY, SIM_UNTIL_KEY, build_readings_day
from iot_platform.io.lake import Lake, read_metadata
from iot_platform.io.lake_store import parquet_scan
from iot_platform.io.registry import fleet_registry

INGESTED_DIR = "_ingested"
# A batch simulates at most this many readings; a run that starts far behind
# (a fresh lake at 15:00, a daemon that was down) catches up over several
# batches instead of holding hours of a large fleet in memory at once.
MAX_SIM_READINGS_PER_BATCH = 4_000_000


# -- coverage ------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SimCoverage:
    """Up to when the simulated fleet's readings of a day are in the lake, and for how many sensors."""

    until: int
    sensors: int | None  # the fleet size of the newest simulated slice (None: not recorded)


def sim_coverage(lake: Lake, state: State, day: dt.date) -> SimCoverage:
    start = sim.day_start_us(day)
    covered = SimCoverage(start, None)
    compacted = lake.compacted("readings", day)
    if compacted is not None:
        meta = read_metadata(compacted)
        n = meta.get(SIM_SENSORS_KEY)
        covered = SimCoverage(max(start, int(meta.get(SIM_UNTIL_KEY, start))), int(n) if n is not None else None)
    for info in state.day_parts("readings", day).values():
        # a part filling in a grown fleet ends where the coverage was: it wins the tie
        if info.sim_until is not None and (info.sim_until, info.sim_sensors or -1) > (covered.until, covered.sensors or -1):
            covered = SimCoverage(info.sim_until, info.sim_sensors)
    return covered


def _grown_fleet(fleet: sim.FleetParams, covered: SimCoverage, day: dt.date) -> pa.Table | None:
    """Readings of sensors added to the fleet since the day was covered, from its start.

    So that a fleet grown at 00:05 gives the new sensors the same day a backfill
    would, not readings from 00:05 on (and no false missing-data alerts).
    """
    start = sim.day_start_us(day)
    if covered.sensors is None or covered.sensors >= fleet.n_sensors or covered.until <= start:
        return None
    return sim.simulate(fleet, start, covered.until, list(range(covered.sensors, fleet.n_sensors))).readings


def existing_keys(lake: Lake, state: State, day: dt.date, sensors: list[str], lo: int, hi: int) -> pa.Table:
    """(sensor_id, ts) already in `readings` of ``day`` for these sensors within [lo, hi]."""
    files = committed_files(lake, state, "readings", day, lo, hi)
    if not files or not sensors:
        return pa.table({"sensor_id": pa.array([], pa.string()), "ts": pa.array([], pa.int64())})
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    return con.sql(
        f"SELECT sensor_id, epoch_us(ts) AS ts FROM {parquet_scan(con, files, union_by_name=False)} "
        "WHERE sensor_id IN (SELECT unnest(?)) AND ts BETWEEN make_timestamptz(?::BIGINT) AND make_timestamptz(?::BIGINT)",
        params=[sensors, lo, hi],
    ).to_arrow_table()


# -- landing ---------------------------------------------------------------------------
def pending_landing_files(landing: Path) -> list[Path]:
    """Complete landing files waiting for ingestion, oldest first."""
    if not landing.is_dir():
        return []
    out = []
    for stream in landing.iterdir():
        if not stream.is_dir() or stream.name.startswith((".", "_")):
            continue
        out += [p for p in stream.iterdir() if p.suffix == ".parquet" and not p.name.startswith((".", "_"))]
    return sorted(out, key=lambda p: (p.name, p.parent.name))


def landing_id(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def archive_landing(landing: Path, path: Path) -> None:
    dest = landing / INGESTED_DIR / path.parent.name / path.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, dest)


def read_landing(path: Path) -> pa.Table:
    return conform(pq.read_table(path), LANDING)


# -- the batch ---------------------------------------------------------------------------
@dataclasses.dataclass
class BatchResult:
    batch_id: str  # the id its parts are named by: the batch id, or a new one for a re-run
    rerun_of: str | None = None  # set when the batch had committed before: this run adds only what is new
    ingested: int = 0
    rejected: int = 0
    duplicates: int = 0
    landing_files: int = 0
    partitions: list[str] = dataclasses.field(default_factory=list)
    per_day: dict[str, int] = dataclasses.field(default_factory=dict)  # readings ingested by day
    caught_up_to: int | None = None  # set when the simulator is behind: the batch stopped here
    late_days: list[str] = dataclasses.field(default_factory=list)
    newest_ts: int | None = None
    removed_orphans: list[str] = dataclasses.field(default_factory=list)
    # damaged files found in the days the batch touches: moved to lake/_quarantine/ (path -> reason)
    quarantined: dict[str, str] = dataclasses.field(default_factory=dict)
    # days whose derived tables must be rebuilt whole (a damaged file was replaced)
    rebuild_days: set[dt.date] = dataclasses.field(default_factory=set)
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)


def _days_between(lo_us: int, hi_us: int) -> list[dt.date]:
    first, last = lo_us // sim.DAY_US, (hi_us - 1) // sim.DAY_US
    return [EPOCH_DATE + dt.timedelta(days=d) for d in range(first, last + 1)]


def ingest_readings(
    lake: Lake,
    state: State,
    batch_id: str,
    fleet: sim.FleetParams | None,
    until_us: int,
    landing: Path,
    first_day: dt.date,
    result: BatchResult,
) -> dict[dt.date, pa.Table]:
    """Stage the batch's new readings as parts; return them by day (not yet committed).

    The simulated fleet is covered for today and yesterday (a batch just after
    midnight completes the previous day); older days are a backfill's job.
    """
    t0 = time.perf_counter()
    new_rows: dict[dt.date, list[pa.Table]] = {}
    sim_ranges: dict[dt.date, tuple[int, int]] = {}
    filled: set[dt.date] = set()  # days whose grown fleet was filled in (may overlap what is there)
    if fleet is not None:
        today = EPOCH_DATE + dt.timedelta(days=(until_us - 1) // sim.DAY_US)
        for day in (today - dt.timedelta(days=1), today):
            if day < first_day or (day < today and not lake.exists("readings", day)):
                continue  # an untouched earlier day is the backfill's job, not a micro-batch's
            covered = sim_coverage(lake, state, day)
            grown = _grown_fleet(fleet, covered, day)
            if grown is not None:
                new_rows.setdefault(day, []).append(grown)
                filled.add(day)
            lo = covered.until
            hi = min(until_us, sim.day_start_us(day) + sim.DAY_US)
            max_span = MAX_SIM_READINGS_PER_BATCH // fleet.n_sensors * fleet.interval_us
            capped = min(hi, lo + max(max_span, fleet.interval_us))
            if capped < hi:
                result.caught_up_to = capped if result.caught_up_to is None else min(result.caught_up_to, capped)
            hi = capped
            if hi > lo:
                new_rows.setdefault(day, []).append(sim.simulate(fleet, lo, hi).readings)
            if hi > lo or grown is not None:
                sim_ranges[day] = (lo, max(lo, hi))
    result.seconds["simulate"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    files = [f for f in pending_landing_files(landing) if landing_id(f) not in state.landing_ingested]
    refused: list[pa.Table] = []
    for f in files:
        data = read_landing(f)
        result.landing_files += 1
        ts = data["ts"].cast(pa.int64())
        days = pc.floor(pc.divide(ts.cast(pa.float64()), float(sim.DAY_US))) if data.num_rows else None
        for ordinal in (pc.unique(days).to_pylist() if days is not None else []):
            if ordinal is None:
                continue
            day = EPOCH_DATE + dt.timedelta(days=int(ordinal))
            why = _refuse_day(day, first_day, until_us)
            if why is not None:  # no partition for it: keep the rows, with the reason, in today's rejects
                rows = data.filter(pc.equal(days, ordinal))
                reasons = pa.array([why] * rows.num_rows, pa.string())
                refused.append(conform(conform(rows, READINGS).append_column("reason", reasons), REJECTED))
                continue
            rows = data.filter(pc.equal(days, ordinal))
            # the raw layer keeps what arrived, so rebuilding the day loses nothing
            lake.write_part("raw_readings", day, _safe(landing_id(f)), rows)
            new_rows.setdefault(day, []).append(conform(rows, READINGS))
        nulls = data.filter(pc.is_null(data["ts"])) if data.num_rows else data
        if nulls.num_rows:
            new_rows.setdefault(EPOCH_DATE + dt.timedelta(days=until_us // sim.DAY_US), []).append(conform(nulls, READINGS))
        state.landing_ingested.append(landing_id(f))
    batch_day = EPOCH_DATE + dt.timedelta(days=(until_us - 1) // sim.DAY_US)
    result.seconds["landing"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    staged: dict[dt.date, pa.Table] = {}
    registry = fleet_registry(lake.root, fleet)  # per-sensor valid ranges (sensors.yaml)
    if refused:
        new_rows.setdefault(batch_day, [])
    for day, pieces in sorted(new_rows.items()):
        start = sim.day_start_us(day)
        v = validate_readings(pa.concat_tables(pieces) if pieces else READINGS.empty_table(), start, start + sim.DAY_US, registry=registry)
        good = v.good
        with lake.lock("readings", day):
            result.removed_orphans += remove_uncommitted_parts(lake, state, "readings", day)
            landing_rows = pc.not_equal(good["source"], sim.SOURCE)
            # a backfill of this day may have swapped in simulated readings since we looked
            overtaken = day in sim_ranges and sim_coverage(lake, state, day).until > sim_ranges[day][0]
            if good.num_rows and (overtaken or day in filled or pc.any(pc.fill_null(landing_rows, True)).as_py()):
                good = _drop_existing(lake, state, day, good)
            name = part_file(batch_id)
            if good.num_rows or day in sim_ranges:
                lake.write_part("readings", day, batch_id, good, locked=True, commit=False)
                ts = good["ts"].cast(pa.int64())
                lo, hi = sim_ranges.get(day, (None, None))
                state.day_parts("readings", day)[name] = PartInfo(
                    ts_min=pc.min(ts).as_py(), ts_max=pc.max(ts).as_py(), sim_from=lo, sim_until=hi,
                    sim_sensors=fleet.n_sensors if day in sim_ranges else None,
                )  # fmt: skip
            remove_uncommitted_parts(lake, state, "rejected_readings", day)
            rejected = pa.concat_tables([v.rejected, *(refused if day == batch_day else [])])
            if rejected.num_rows:
                lake.write_part("rejected_readings", day, batch_id, rejected, locked=True, commit=False)
                state.day_parts("rejected_readings", day)[name] = PartInfo(ts_min=None, ts_max=None)
            result.rejected += rejected.num_rows - v.rejected.num_rows
        result.ingested += good.num_rows
        result.rejected += v.rejected.num_rows
        result.duplicates += v.duplicates + (v.good.num_rows - good.num_rows)
        if good.num_rows:
            staged[day] = good
            result.partitions.append(day.isoformat())
            result.per_day[day.isoformat()] = good.num_rows
            newest = pc.max(good["ts"].cast(pa.int64())).as_py()
            result.newest_ts = newest if result.newest_ts is None else max(result.newest_ts, newest)
    result.seconds["validate_write"] = time.perf_counter() - t0
    return staged


# a device clock this far ahead of the host is wrong, not early
MAX_FUTURE_US = 3_600_000_000


def _refuse_day(day: dt.date, first_day: dt.date, until_us: int) -> str | None:
    if day < first_day:
        return f"{NO_PARTITION}ts on {day}, before the first partition {first_day} (IOT_START_DATE)"
    if sim.day_start_us(day) > until_us + MAX_FUTURE_US:
        return f"{NO_PARTITION}ts on {day}, in the future: more than an hour after the batch end"
    return None


def _drop_existing(lake: Lake, state: State, day: dt.date, good: pa.Table) -> pa.Table:
    """Anti-join: a reading already in the partition (re-sent, re-imported) is a duplicate."""
    ts = good["ts"].cast(pa.int64())
    sensors = pc.unique(good["sensor_id"]).to_pylist()
    have = existing_keys(lake, state, day, sensors, pc.min(ts).as_py(), pc.max(ts).as_py())
    if have.num_rows == 0:
        return good
    con = duckdb.connect()
    con.register("good", good.append_column("_ts", ts).append_column("_i", pa.array(range(good.num_rows), pa.int64())))
    con.register("have", have)
    keep = con.sql(
        "SELECT _i FROM good ANTI JOIN have ON good.sensor_id = have.sensor_id AND good._ts = have.ts ORDER BY _i"
    ).to_arrow_table()["_i"]
    return good.take(keep)


def _safe(landing_name: str) -> str:
    return landing_name.replace("/", "__").removesuffix(".parquet")


# which lock guards each table's partitions in a batch (rejected_readings goes with readings)
_GUARD = {"readings": "readings", "rejected_readings": "readings", "raw_readings": "raw_readings",
          "window_stats": "window_stats", "anomaly_points": "anomaly_points", "anomalies": "anomalies"}  # fmt: skip


def quarantine_damaged(lake: Lake, state: State, fleet: sim.FleetParams | None, day: dt.date, until_us: int,
                       result: BatchResult) -> None:  # fmt: skip
    """Move unreadable files of ``day`` out of the lake, loudly, and rebuild what they held.

    A damaged `readings` file (truncated, overwritten) would make every later
    batch fail. Its day is rebuilt from its sources instead: the simulator up to
    the batch end and the raw layer of ingested files. A damaged derived file
    makes the day's derived tables be rebuilt whole. A damaged raw part keeps
    its original in ``landing/_ingested/``; it is reported, not rebuilt.
    """
    rebuild_readings = False
    for table, guard in _GUARD.items():
        derived = table in ("window_stats", "anomaly_points", "anomalies")
        with day_lock(lake, day) if derived else contextlib.nullcontext(), lake.lock(guard, day):
            # quick: a day holds thousands of parts by 23:59; `iot-platform doctor` checks schemas too
            for path, why in lake.damaged_files(table, day, quick=True):
                moved = lake.quarantine_file(path, why)
                result.quarantined[lake.rel(path)] = f"{why}; moved to {lake.rel(moved)}"
                state.day_parts(table, day).pop(path.name, None)
                rebuild_readings |= table in ("readings", "rejected_readings")
                if derived:
                    result.rebuild_days.add(day)
    if rebuild_readings:
        build_readings_day(lake, fleet, day, now_us=until_us, write_labels=False)
        for table in ("readings", "rejected_readings"):
            state.parts.get(table, {}).pop(day.isoformat(), None)
        result.rebuild_days.add(day)


def run_micro_batch(
    lake: Lake,
    batch_id: str,
    until_us: int,
    *,
    fleet: sim.FleetParams | None,
    landing: Path,
    first_day: dt.date,
    downstream=None,
) -> BatchResult:
    """Run one batch end to end: readings, then downstream, then commit and archive.

    ``downstream(lake, state, batch_id, staged, until_us, result)`` brings the
    derived tables up to date and records its parts in ``state``; it runs
    before the commit, so a batch is committed whole or not at all.
    """
    with batch_lock(lake):
        lake.discard_pending()
        state = load_state(lake)
        # a committed batch is immutable: a re-run names its parts anew (see io.commit)
        part_id = state.part_id(batch_id)
        result = BatchResult(batch_id=part_id, rerun_of=batch_id if part_id != batch_id else None)
        batch_id = part_id
        pending = {landing_id(f) for f in pending_landing_files(landing)}
        # files listed as ingested but still in the landing zone: the batch died
        # between its commit and the move; finish the move, never re-read them
        for f in pending_landing_files(landing):
            if landing_id(f) in state.landing_ingested:
                archive_landing(landing, f)
        state.landing_ingested = [i for i in state.landing_ingested if i in pending]
        today = EPOCH_DATE + dt.timedelta(days=(until_us - 1) // sim.DAY_US)
        for day in (today - dt.timedelta(days=1), today):
            if day >= first_day:
                quarantine_damaged(lake, state, fleet, day, until_us, result)
        before = set(state.landing_ingested)
        staged = ingest_readings(lake, state, batch_id, fleet, until_us, landing, first_day, result)
        if downstream is not None:
            t0 = time.perf_counter()
            # windows are emitted only as far as the readings are complete
            complete = until_us if result.caught_up_to is None else result.caught_up_to
            downstream(lake, state, batch_id, staged, complete, result)
            result.seconds["downstream"] = time.perf_counter() - t0
        state.batches += 1
        commit_state(lake, state)
        for f in pending_landing_files(landing):
            if landing_id(f) in state.landing_ingested and landing_id(f) not in before:
                archive_landing(landing, f)
        if state.landing_ingested:  # the record no longer needs them: they are archived
            state.landing_ingested = []
            commit_state(lake, state)
    return result


def drain_landing(
    lake: Lake,
    now_us: int,
    *,
    fleet: sim.FleetParams | None,
    landing: Path,
    first_day: dt.date,
    downstream=None,
) -> BatchResult | None:
    """Ingest the complete files waiting in the landing zone now, as one micro-batch.

    A backfill calls this first, so that imported or captured history reaches
    the lake without the daemon: the files' rows go to the raw layer (which a
    rebuilt day re-reads) and to `readings`, exactly once, under the same
    batch lock and commit as the micro-batches. Returns None when nothing waits.
    """
    files = [landing_id(f) for f in pending_landing_files(landing)]
    if not files:
        return None
    digest = hashlib.sha256("\n".join(files).encode()).hexdigest()[:12]
    return run_micro_batch(lake, f"drain-{digest}", now_us, fleet=fleet, landing=landing, first_day=first_day, downstream=downstream)
