"""Finding damaged files in the lake and the landing zone, and repairing their days.

A file is damaged when it cannot be read as its table: not Parquet at all,
empty, truncated (no footer at its end), a footer that does not parse, a
column of the table missing or of another kind, or (``deep``) a row group
that does not decode. One such file would fail every query, micro-batch or
backfill that reads its day.

Repair never deletes: each damaged file is moved to
``lake/_quarantine/<table>/date=<day>/<name>`` with ``<name>.reason.txt``
beside it (landing files to ``lake/_quarantine/landing/<stream>/``), and then
its day is rebuilt from its sources with the functions the assets use:

* `raw_readings` parts: from the landing file they were cut from, kept in
  ``landing/_ingested/`` after ingestion. Without it the rows exist nowhere
  else but in `readings`, so that day's `readings` is *not* rebuilt (it would
  lose them) and the repair reports it;
* `readings`, `rejected_readings`, `fault_labels`: the day's build, simulator
  plus raw layer (:func:`iot_platform.io.ingest.build_readings_day`);
* `window_stats`, `anomaly_points`, `anomalies`: recomputed together from
  `readings` (:func:`iot_platform.io.downstream.compute_day`), so the day's
  derived tables stay one consistent build;
* landing files never ingested: quarantined only (their rows reach no table);
  the report says where they are.

Repair holds the micro-batch lock, so no batch runs meanwhile.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from iot_platform.core import simulator as sim
from iot_platform.core.schemas import LANDING
from iot_platform.io.downstream import DownstreamSettings, build_day
from iot_platform.io.ingest import build_readings_day
from iot_platform.io.lake import DELTA_LOG, PART_PREFIX, QUARANTINE_DIR, TABLES, Lake, open_lake, parquet_damage

LANDING_KIND = "landing"
READINGS_BUILD = ("readings", "rejected_readings", "fault_labels")
DERIVED = ("window_stats", "anomaly_points", "anomalies")


@dataclasses.dataclass(frozen=True)
class Damage:
    """One damaged file: ``table`` is a lake table or ``landing``; ``day`` None for landing files."""

    table: str
    day: dt.date | None
    path: Path
    reason: str


def _day(partition: Path) -> dt.date | None:
    try:
        return dt.date.fromisoformat(partition.name.removeprefix("date="))
    except ValueError:
        return None


def lake_files(root: Path) -> list[tuple[str, dt.date, Path]]:
    """(table, day, file) of every Parquet file of every lake table, in table/day/name order."""
    lake = open_lake(root)
    out = []
    for table in sorted(TABLES):
        for day in lake.days(table):
            out += [(table, day, f) for f in lake.files(table, day)]
    return out


def landing_pending(root: Path) -> list[Path]:
    """Landing files waiting for ingestion (``landing/<stream>/*.parquet``)."""
    base = root / "landing"
    if not base.is_dir():
        return []
    return sorted(
        p for s in base.iterdir() if s.is_dir() and not s.name.startswith((".", "_"))
        for p in s.iterdir() if p.suffix == ".parquet" and not p.name.startswith((".", "_"))
    )  # fmt: skip


@dataclasses.dataclass
class ScanResult:
    damaged: list[Damage]
    files: int
    partitions: int
    landing_files: int


def scan(root: Path, *, deep: bool = False) -> ScanResult:
    """Check every lake file and every pending landing file."""
    root = Path(root)
    damaged = []
    files = lake_files(root)
    for table, day, path in files:
        why = parquet_damage(path, TABLES[table], deep=deep)
        if why is not None:
            damaged.append(Damage(table, day, path, why))
    landing = landing_pending(root)
    for path in landing:
        why = parquet_damage(path, LANDING, all_columns=False, deep=deep)
        if why is not None:
            damaged.append(Damage(LANDING_KIND, None, path, why))
    return ScanResult(damaged, len(files), len({(t, d) for t, d, _ in files}), len(landing))


# -- repairing ------------------------------------------------------------------------------
def quarantine_path(root: Path, damage: Damage) -> Path:
    base = Path(root) / "lake" / QUARANTINE_DIR
    if damage.day is None:
        return base / LANDING_KIND / damage.path.parent.name / damage.path.name
    return base / damage.table / f"date={damage.day.isoformat()}" / damage.path.name


def quarantine(root: Path, damage: Damage, now: dt.datetime) -> Path:
    """Move the file into quarantine, with its reason beside it; never overwrites an earlier one."""
    reason = (
        f"file: {damage.path.relative_to(root)}\ntable: {damage.table}\nday: {damage.day or '-'}\n"
        f"reason: {damage.reason}\nquarantined: {now.isoformat()}"
    )
    lake = open_lake(root)
    return lake.quarantine_file(damage.path, reason, quarantine_path(root, damage).relative_to(lake.lake_dir / QUARANTINE_DIR))


@dataclasses.dataclass
class RepairReport:
    quarantined: list[tuple[Damage, Path]] = dataclasses.field(default_factory=list)
    actions: list[str] = dataclasses.field(default_factory=list)  # what was rebuilt, one line each
    problems: list[str] = dataclasses.field(default_factory=list)  # what could not be, one line each


def _raw_source(root: Path, damage: Damage) -> Path | None:
    """The ingested landing file a `raw_readings` part was cut from (part-<stream>__<name>.parquet)."""
    name = damage.path.name.removeprefix(PART_PREFIX).removesuffix(".parquet")
    stream, sep, landing = name.partition("__")
    if not sep:
        return None
    source = root / "landing" / "_ingested" / stream / f"{landing}.parquet"
    return source if source.exists() else None


def _restore_raw(lake: Lake, root: Path, damage: Damage, report: RepairReport) -> bool:
    source = _raw_source(root, damage)
    rel = damage.path.relative_to(root)
    if source is None or parquet_damage(source, LANDING, all_columns=False) is not None:
        report.problems.append(
            f"{rel}: its landing file is not in landing/_ingested/ (or is damaged itself), so its rows exist only in "
            f"`readings` of {damage.day}; that day was left as it is rather than rebuilt without them"
        )
        return False
    data = pq.read_table(source)
    ts = data["ts"].cast(pa.int64())
    start = sim.day_start_us(damage.day)
    rows = data.filter(pc.and_(pc.greater_equal(ts, start), pc.less(ts, start + sim.DAY_US)))
    batch = damage.path.name.removeprefix(PART_PREFIX).removesuffix(".parquet")
    lake.write_part("raw_readings", damage.day, batch, rows)
    report.actions.append(f"Restored {rel} from {source.relative_to(root)} ({rows.num_rows} rows)")
    return True


def repair(
    root: Path,
    damaged: list[Damage],
    *,
    fleet: sim.FleetParams | None,
    settings: DownstreamSettings,
    now_us: int,
    lock: Callable[[], contextlib.AbstractContextManager] | None = None,
) -> RepairReport:
    """Quarantine ``damaged`` and rebuild their days; ``lock()`` is held throughout (the micro-batch lock)."""
    root = Path(root)
    lake = open_lake(root)
    report = RepairReport()
    now = dt.datetime.fromtimestamp(now_us / 1e6, dt.timezone.utc)
    with lock() if lock is not None else contextlib.nullcontext():
        for d in damaged:
            report.quarantined.append((d, quarantine(root, d, now)))
        readings_days: set[dt.date] = set()
        blocked: set[dt.date] = set()
        for d in damaged:
            if d.table == "raw_readings":
                (readings_days if _restore_raw(lake, root, d, report) else blocked).add(d.day)
            elif d.table in READINGS_BUILD:
                readings_days.add(d.day)
            elif d.table == LANDING_KIND:
                report.problems.append(
                    f"{d.path.relative_to(root)} was never ingested: its rows are in no table; what can be read of it "
                    f"is in {quarantine_path(root, d).relative_to(root)}"
                )
        for day in sorted(readings_days - blocked):
            stats = build_readings_day(lake, fleet, day, now_us=now_us, write_labels=fleet is not None)
            report.actions.append(f"Rebuilt readings {day} from its sources: {stats.rows} rows, {stats.rejected} rejected")
        for day in sorted({d.day for d in damaged if d.table in DERIVED}):
            out = build_day(lake, day, settings, now_us=now_us)
            report.actions.append(
                f"Recomputed window_stats, anomaly_points, anomalies {day}: {out.window_stats.num_rows} windows, "
                f"{out.anomalies.num_rows} anomalies"
            )
    return report


# -- converting a lake from before Delta -------------------------------------------------------
OLD_STATE = Path("_state") / "micro_batch.json"


def needs_conversion(root: Path) -> list[str]:
    """Lake tables that are plain Parquet directories (a lake written before the Delta tables)."""
    lake = open_lake(root)
    return [
        t for t in sorted(TABLES)
        if not (lake.table_dir(t) / DELTA_LOG).is_dir() and any(lake.table_dir(t).glob("date=*/*.parquet"))
    ]  # fmt: skip


def convert(root: Path) -> list[str]:
    """Make each plain-Parquet table of an old lake a Delta table in place; returns one line per table.

    What the old lake held committed is what the new table holds: each partition's
    ``data.parquet`` and the micro-batch parts its state file listed. Parts it did not
    list belong to a batch that died before its commit (the old next batch deleted
    them): they are deleted, as are killed writers' staging directories. The old
    state becomes the first micro-batch commit record. The caller holds the batch lock.
    """
    root = Path(root)
    lake = open_lake(root)
    state_file = lake.lake_dir / OLD_STATE
    old = json.loads(state_file.read_text()) if state_file.exists() else {"parts": {}, "landing_ingested": [], "batches": 0}
    lines = []
    for table in needs_conversion(root):
        listed = old["parts"].get(table, {})
        adds, dropped = [], 0
        for d in sorted(lake.table_dir(table).glob("date=*")):
            day = d.name.removeprefix("date=")
            for f in sorted(d.glob("*.parquet")):
                if f.name == "data.parquet" or f.name in listed.get(day, {}):
                    adds.append((day, f))
                elif f.name.startswith(PART_PREFIX):
                    f.unlink()
                    dropped += 1
        shutil.rmtree(lake.table_dir(table) / ".tmp", ignore_errors=True)
        lake.commit(table, adds, adopt=True)
        lines.append(f"Converted {table}: {len(adds)} files in {len({d for d, _ in adds})} partitions"
                     + (f"; {dropped} uncommitted parts deleted" if dropped else ""))  # fmt: skip
    if state_file.exists():
        lake.commit_record(1, json.dumps(old), {})
        state_file.unlink()
        lines.append(f"Converted the micro-batch state ({old.get('batches', 0)} batches) to the commit record")
    return lines
