"""The lake: one Delta Lake table per lake table under ``<root>/lake/<table>``, partitioned by ``date``.

Data files sit hive-style in ``<table>/date=YYYY-MM-DD/``; a file is part of
the table only once a commit of the table's log (``_delta_log/``, written by
the ``deltalake`` package: a create-if-absent of the next version) adds it.
So readers take the snapshot's file list (:meth:`Lake.files`), never a
directory listing, and every write is one commit (docs/lake-protocol.md):

* :meth:`Lake.replace_partition` writes one compacted ``data-<id>.parquet``
  and commits an overwrite of the partition (its files removed, the new one
  added): a reader sees the old partition or the new one, never a mix.
* :meth:`Lake.write_part` writes ``part-<batch_id>.parquet`` and commits it,
  or only stages it for the micro-batch's commit (:meth:`Lake.commit_record`,
  used by :mod:`iot_platform.io.commit`): the batch's record is one commit,
  applied to each table with the application transaction ``(app, seq)``, so a
  plan is applied exactly once even when its process dies half-way.

Writers of one partition serialize on a per-partition ``flock``, so a backfill
and a micro-batch touching the same day cannot interleave (a replace computed
before a concurrent part was committed would remove that part).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, Transaction, WriterProperties, write_deltalake
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import AddAction, RemoveAction

from iot_platform.core.detectors.points import POINTS
from iot_platform.core.schemas import TABLES as _CORE_TABLES
from iot_platform.core.schemas import conform
from iot_platform.io.fsutil import exclusive_lock, fsync_path
from iot_platform.io.lake_store import StoreFile, store_root
from iot_platform.io.objstore import ObjectStore, lake_store_from_env
from iot_platform.io.parquet_files import parquet_damage, parquet_source, read_metadata, write_parquet_atomic  # noqa: F401 - re-exported

# the lake's tables: the core's, plus the detectors' alert points (merged into
# `anomalies` episodes; kept so micro-batches can re-merge a day exactly)
TABLES = {**_CORE_TABLES, "anomaly_points": POINTS}

# a replace writes data-<id>.parquet: a fresh name, since the old file stays in the old snapshot
COMPACTED_PREFIX = "data-"
PART_PREFIX = "part-"
PARTITION = "date"
DELTA_LOG = "_delta_log"
MICRO_BATCH_APP = "iot-micro-batch"
# files no snapshot of the last hour references are garbage (a query outliving it is stopped by
# its own timeout, 60 s by default); the grace also keeps a live writer's staged files
DEFAULT_GRACE_HOURS = 1
# a replace that lost a race to a commit elsewhere in its table checks its partition and tries again
COMMIT_ATTEMPTS = 8
# the lock that guards a table's partitions when it is not the table's own
LOCK_OF = {"rejected_readings": "readings"}
# the micro-batch commit record (a one-row Delta table; see Lake.commit_record)
COMMITS_TABLE = "_commits"
# damaged files are moved here (never deleted), beside a note of why
QUARANTINE_DIR = "_quarantine"

def partition_name(day: dt.date | str) -> str:
    return f"date={day}" if isinstance(day, str) else f"date={day.isoformat()}"


class LakeConflict(RuntimeError):
    """A partition changed between the start of a replace and its commit: recompute, then replace again."""


class BatchCommitted(RuntimeError):
    """A batch's commit found the batch in the table already (a copy of it won the race)."""


class LakeFormatError(ValueError):
    """A lake table that is not a Delta table (a lake from before the migration)."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def open_lake(root: str | os.PathLike[str]) -> "Lake":
    """The lake of the data root ``root``: on the object store ``IOT_LAKE_URL`` names, else under ``root``."""
    return Lake(root, lake_store_from_env())


class Lake:
    """The lake under ``root`` (the data root, ``$IOT_DATA_DIR``): one Delta table per lake table.

    Data files are written by our own Parquet writer (zstd, sorted, with the
    key-value metadata the readers use) into ``<table>/date=D/`` and become
    part of the table only when a Delta commit adds them; every reader takes
    the files of the table's current snapshot (:meth:`files`), never a listing.
    """

    def __init__(self, root: str | os.PathLike[str], store: ObjectStore | None = None):
        self.root = Path(root)
        # the tables: under the data root, or under the object store's bucket/prefix
        # (IOT_LAKE_URL=s3://...); locks and caches stay on this machine, under the data root
        self.store = store
        self.lake_dir: Path = self.root / "lake" if store is None else store_root(store)  # type: ignore[assignment]
        self._options = store.storage_options() if store is not None else None
        # parts this object staged and no commit has added yet: a writer reads its own writes
        # (a micro-batch's downstream reads its readings part before the batch commits)
        self._pending: dict[tuple[str, str], set[Path]] = {}
        self._tables: dict[str, DeltaTable] = {}
        self._snapshots: dict[tuple[str, int], dict[str, list[str]]] = {}

    def discard_pending(self) -> None:
        """Forget staged parts (a failed batch's: garbage, removed by the next batch)."""
        self._pending.clear()

    # -- paths -------------------------------------------------------------
    def table_dir(self, table: str) -> Path:
        return self.lake_dir / table

    def partition_dir(self, table: str, day: dt.date | str) -> Path:
        return self.table_dir(table) / partition_name(day)

    def rel(self, path: Path) -> str:
        """How a file is named to people: relative to the data root, or its ``s3://`` URL."""
        return str(path) if isinstance(path, StoreFile) else str(path.relative_to(self.root))

    # -- the Delta table ----------------------------------------------------
    def uri(self, table: str) -> str:
        return str(self.table_dir(table))

    def _is_delta(self, table: str) -> bool:
        if self.store is None:
            return (self.table_dir(table) / DELTA_LOG).is_dir()
        return DeltaTable.is_deltatable(self.uri(table), storage_options=self._options)

    def delta(self, table: str, version: int | None = None) -> DeltaTable | None:
        """The table's current snapshot, or ``version`` (None: never written)."""
        if version is None and table in self._tables:
            t = self._tables[table]
            t.update_incremental()
            return t
        d = self.table_dir(table)
        if not self._is_delta(table):
            if table in TABLES and d.is_dir() and any(d.glob("date=*/*.parquet")):
                raise LakeFormatError(
                    f"{d} is a plain Parquet directory from before the lake became Delta tables; "
                    "run 'iot-platform doctor --convert' once to convert the lake in place"
                )
            return None
        if version is not None:
            return DeltaTable(self.uri(table), version=version, storage_options=self._options)
        # opened once per Lake object and brought up to date on each use: an open replays the
        # log from its last checkpoint (up to 100 entries), an update reads only what is new
        t = self._tables[table] = DeltaTable(self.uri(table), storage_options=self._options)
        return t

    def _snapshot(self, table: str) -> dict[str, list[str]]:
        """day (ISO) -> relative paths of the snapshot's files."""
        t = self.delta(table)
        if t is None:
            if table not in TABLES:  # tables outside the Delta set (alarm history): their files
                return _listing(self.table_dir(table))
            return {}
        key = (table, t.version())
        if key not in self._snapshots:
            acts = t.get_add_actions(flatten=True)
            out: dict[str, list[str]] = {}
            for path, day in zip(acts.column("path").to_pylist(), acts.column(f"partition.{PARTITION}").to_pylist(), strict=True):
                out.setdefault(str(day), []).append(path)
            self._snapshots = {k: v for k, v in self._snapshots.items() if k[0] != table}
            self._snapshots[key] = out
        return self._snapshots[key]

    def _partition(self, t: DeltaTable, table: str, day: dt.date | str) -> frozenset[Path]:
        acts = t.get_add_actions(flatten=True)
        days = acts.column(f"partition.{PARTITION}").to_pylist()
        return frozenset(self.table_dir(table) / p for p, d in zip(acts.column("path").to_pylist(), days, strict=True) if str(d) == _iso(day))


    def partition_files(self, table: str, day: dt.date | str) -> frozenset[Path]:
        """The partition's committed files now: what a replace computed from now is based on."""
        t = self.delta(table)
        return frozenset() if t is None else self._partition(t, table, day)

    def files(self, table: str, day: dt.date | str) -> list[Path]:
        """The partition's files in the table's current snapshot."""
        key = day if isinstance(day, str) else day.isoformat()
        live = {self.table_dir(table) / p for p in self._snapshot(table).get(key, [])}
        return sorted(live | {p for p in self._pending.get((table, key), ()) if p.exists()})

    def all_files(self, table: str) -> list[Path]:
        return sorted(self.table_dir(table) / p for ps in self._snapshot(table).values() for p in ps)

    def scan_sql(self, table: str) -> str:
        """A DuckDB ``read_parquet`` of the table's snapshot, with its hive partition column ``date``."""
        files = ", ".join("'" + str(f).replace("'", "''") + "'" for f in self.all_files(table))
        return f"read_parquet([{files}], hive_partitioning = true, hive_types = {{'date': 'DATE'}})"

    def compacted(self, table: str, day: dt.date | str) -> Path | None:
        """The partition's compacted file (written by a replace; ``data.parquet`` in a converted lake), if any."""
        found = [f for f in self.files(table, day) if not f.name.startswith(PART_PREFIX)]
        return found[-1] if found else None

    def exists(self, table: str, day: dt.date | str) -> bool:
        return bool(self.files(table, day))

    def days(self, table: str) -> list[dt.date]:
        out = []
        for key, paths in self._snapshot(table).items():
            if paths:
                with contextlib.suppress(ValueError):
                    out.append(dt.date.fromisoformat(key))
        return sorted(out)

    def committed_seq(self, table: str, app_id: str = MICRO_BATCH_APP) -> int:
        t = self.delta(table)
        v = t.transaction_version(app_id) if t is not None else None
        return -1 if v is None else v

    # -- locking -----------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, table: str, day: dt.date | str) -> Iterator[None]:
        """Hold the exclusive write lock of one partition (blocks until free)."""
        with exclusive_lock(self._lock_file(table, day)):
            yield

    def _lock_file(self, table: str, day: dt.date | str) -> Path:
        return self.root / "lake" / ".locks" / table / f"{partition_name(day)}.lock"

    # -- commits -----------------------------------------------------------
    def _ensure(self, table: str, *, adopt: bool = False) -> DeltaTable:
        """The table, created (empty, version 0) before its first file is written.

        ``adopt``: also over a plain Parquet directory (the conversion of an old lake).
        """
        t = None if adopt and not self._is_delta(table) else self.delta(table)
        if t is None:
            DeltaTable.create(self.uri(table), DeltaSchema.from_arrow(_table_schema(table)), partition_by=[PARTITION],
                              mode="ignore", storage_options=self._options)  # fmt: skip
            t = DeltaTable(self.uri(table), storage_options=self._options)
        return t

    def commit(
        self,
        table: str,
        adds: Iterable[tuple[dt.date | str, Path]] = (),
        removes: Iterable[tuple[dt.date | str, Path]] = (),
        *,
        replace_day: dt.date | str | None = None,
        base: frozenset[Path] | None = None,
        seq: int | None = None,
        app_id: str = MICRO_BATCH_APP,
        adopt: bool = False,
    ) -> None:
        """One Delta commit of ``table``: add files, remove files, or replace a partition whole.

        ``replace_day``: the commit removes every file of that partition and adds
        ``adds`` (an overwrite with the predicate ``date = D``). ``seq``: the commit
        carries the application transaction ``(app_id, seq)``. ``base`` (with
        ``replace_day``): the partition's files the replace was computed against;
        if they changed before the commit, :class:`LakeConflict` (never a commit
        that would drop what a concurrent writer added).
        """
        schema = _table_schema(table)
        adds, removes = list(adds), list(removes)
        actions: list = [
            AddAction(str(p.relative_to(self.table_dir(table))), p.stat().st_size, {PARTITION: _iso(d)}, _now_ms(), True, _stats(p))
            for d, p in adds
        ]
        actions += [
            RemoveAction(str(p.relative_to(self.table_dir(table))), True, _now_ms(), None, {PARTITION: _iso(d)})
            for d, p in removes
        ]  # fmt: skip
        t = self._ensure(table, adopt=adopt)
        if replace_day is not None:
            # delta-rs would rebase an overwrite over a concurrent append and keep the append beside
            # the new file: a duplicate, or a partition computed without it. So the commit is made on
            # the exact version whose partition was checked (no rebase); a lost race checks again.
            for _ in range(COMMIT_ATTEMPTS):
                t = self._ensure(table)
                if base is not None and self._partition(t, table, replace_day) != base:
                    raise LakeConflict(f"{table} {_iso(replace_day)} changed while it was being replaced; recompute it")
                try:
                    t.create_write_transaction(
                        actions, mode="overwrite", schema=schema, partition_by=[PARTITION],
                        partition_filters=[(PARTITION, "=", _iso(replace_day))],
                        commit_properties=CommitProperties(max_commit_retries=0),
                    )  # fmt: skip
                    return
                except CommitFailedError:
                    time.sleep(0.05)
            raise LakeConflict(f"{table} {_iso(replace_day)}: {COMMIT_ATTEMPTS} commits lost to concurrent writers")
        elif seq is None:
            t.create_write_transaction(actions, mode="append", schema=schema, partition_by=[PARTITION])
        else:
            # delta-rs rebases an append over a concurrent commit without checking that the other one
            # carried the same application transaction: two copies of one batch would both land. So
            # the commit is made on the version just read (no rebase); a lost race reads again.
            for _ in range(COMMIT_ATTEMPTS):
                t = self._ensure(table)
                if self.committed_seq(table, app_id) >= seq:
                    raise BatchCommitted(f"batch {seq} of {app_id} is in {table} already")
                try:
                    t.create_write_transaction(
                        actions, mode="append", schema=schema, partition_by=[PARTITION],
                        commit_properties=CommitProperties(app_transactions=[Transaction(app_id, seq)], max_commit_retries=0),
                    )  # fmt: skip
                    return
                except CommitFailedError:
                    time.sleep(0.05)
            raise LakeConflict(f"{table}: batch {seq} of {app_id}: {COMMIT_ATTEMPTS} commits lost to concurrent writers")

    # -- writes --------------------------------------------------------------
    def replace_partition(
        self,
        table: str,
        day: dt.date | str,
        data: pa.Table | Iterable[pa.Table],
        *,
        metadata: dict[str, str] | None = None,
        locked: bool = False,
        base: frozenset[Path] | None = None,
    ) -> Path:
        """Replace a whole partition with ``data`` (one compacted file), atomically: one Delta commit.

        ``data`` may be an iterable of tables, streamed to disk one at a time so
        that a large day never sits in memory whole. Pass ``locked=True`` when the
        caller already holds :meth:`lock`. Returns the file it committed (the
        partition lists just that file until another writer commits).
        The lock is what keeps a concurrent micro-batch's part out of the window
        between this replace's reads and its commit (a part committed there would
        be removed by the overwrite). Writers on other machines share no lock:
        the commit checks that the partition still holds ``base`` (default: its
        files when this call started) and raises :class:`LakeConflict` if not;
        the caller recomputes from the new snapshot (docs/lake-protocol.md).
        """
        schema = TABLES[table]
        chunks = conform(data, schema) if isinstance(data, pa.Table) else (conform(t, schema) for t in data)
        ctx = contextlib.nullcontext() if locked else self.lock(table, day)
        with ctx:
            self._ensure(table)
            self.remove_stale_staging(table, day)
            base = base if base is not None else self.partition_files(table, day)
            old = self.files(table, day)
            path = self.partition_dir(table, day) / f"{COMPACTED_PREFIX}{uuid.uuid4().hex[:16]}.parquet"
            try:
                write_parquet_atomic(chunks, path, schema, metadata)
                self.commit(table, [(day, path)], replace_day=day, base=base)
            except BaseException:
                path.unlink(missing_ok=True)
                raise
            if self.store is None:
                # locally the old lake deleted a replaced partition at once too (a reader of
                # the old snapshot that had not opened its files yet gets an error and re-reads)
                for f in old:
                    if f != path:
                        f.unlink(missing_ok=True)
            # parts a micro-batch staged but has not committed are superseded too (it drops
            # them at its commit, as the old lake's swap deleted them with the old directory)
            _remove_all([f for f in self.staged_files(table, day) if f.name.startswith(PART_PREFIX)])
            if self.store is not None:
                # on a store, readers of the old snapshot may be anywhere: superseded files
                # go once no snapshot of the grace period needs them
                self.collect_garbage(table)
        return path

    def write_part(
        self,
        table: str,
        day: dt.date | str,
        batch_id: str,
        data: pa.Table,
        *,
        metadata: dict[str, str] | None = None,
        locked: bool = False,
        commit: bool = True,
    ) -> Path:
        """Write the part ``batch_id`` of a partition (a retry overwrites its own part).

        ``commit`` True: it is added to the table at once (one commit). False: it
        is only staged; the micro-batch's commit adds it (:mod:`iot_platform.io.commit`).
        """
        schema = TABLES[table]
        path = self.partition_dir(table, day) / f"{PART_PREFIX}{batch_id}.parquet"
        ctx = contextlib.nullcontext() if locked else self.lock(table, day)
        with ctx:
            self._ensure(table)
            self.remove_stale_staging(table, day)
            write_parquet_atomic(conform(data, schema), path, schema, metadata)
            if commit:
                self.commit(table, [(day, path)])
            else:
                self._pending.setdefault((table, _iso(day)), set()).add(path)
        return path

    def append_part(self, table: str, day: dt.date | str, seq: int, data: pa.Table, *, app_id: str = MICRO_BATCH_APP) -> bool:
        """Add ``data`` to the partition as batch ``seq`` of writer ``app_id``, exactly once, in one commit.

        Returns False when batch ``seq`` (or a later one) of ``app_id`` had committed to this table
        already: a retry then writes nothing. Two copies of one batch racing: one commits, the
        other's commit conflicts (the same application transaction), it re-reads and stops.
        """
        for attempt in range(COMMIT_ATTEMPTS):
            if self.committed_seq(table, app_id) >= seq:
                return False
            path = self.partition_dir(table, day) / f"{PART_PREFIX}{app_id}-{seq}-{uuid.uuid4().hex[:8]}.parquet"
            self._ensure(table)
            write_parquet_atomic(conform(data, TABLES[table]), path, TABLES[table])
            try:
                self.commit(table, [(day, path)], seq=seq, app_id=app_id)
                return True
            except BatchCommitted:
                path.unlink(missing_ok=True)
                return False
            except CommitFailedError:
                path.unlink(missing_ok=True)
                time.sleep(min(0.05 * 2**attempt, 1.0))
        raise LakeConflict(f"appending batch {seq} of {app_id} to {table} {_iso(day)}: {COMMIT_ATTEMPTS} commits lost")

    def collect_garbage(self, table: str, grace_hours: int = DEFAULT_GRACE_HOURS) -> list[str]:
        """:meth:`vacuum`, only when there is something to delete (a vacuum adds log entries)."""
        t = self.delta(table)
        if t is None or not t.vacuum(retention_hours=grace_hours, dry_run=True, enforce_retention_duration=False, full=True):
            return []
        return self.vacuum(table, grace_hours)

    def version(self, table: str) -> int | None:
        t = self.delta(table)
        return None if t is None else t.version()

    def vacuum(self, table: str, grace_hours: int = DEFAULT_GRACE_HOURS) -> list[str]:
        """Delete the files of ``table`` that no snapshot of the last ``grace_hours`` references.

        On an object store, superseded files stay until this runs (the local lake deletes them at
        once); it also removes the files of writers killed before their commit. Returns them.
        """
        t = self.delta(table)
        if t is None:
            return []
        return t.vacuum(retention_hours=grace_hours, dry_run=False, enforce_retention_duration=False, full=True)

    def staged_files(self, table: str, day: dt.date | str) -> list[Path]:
        """Complete files in the partition's directory that its snapshot does not hold."""
        d = self.partition_dir(table, day)
        if not d.is_dir():
            return []
        live = {self.table_dir(table) / p for p in self._snapshot(table).get(_iso(day), [])}
        return sorted(p for p in d.iterdir() if p.suffix == ".parquet" and not p.name.startswith(".") and p not in live)

    def remove_stale_staging(self, table: str, held: dt.date | str) -> list[Path]:
        """Delete what killed writers of ``table`` left behind; the caller holds ``held``'s lock.

        A partition's half-written files (``date=D/.<name>.<id>.tmp``) and its
        compacted files that no commit added belong to a live writer only while
        that writer holds the partition's lock. So they are removed for the
        partition the caller holds, and for every other partition whose lock is
        free right now (taken without waiting, released at once).
        """
        if self.store is not None:  # no half files on a store; uncommitted ones go by collect_garbage
            return []
        tdir = self.table_dir(table)
        held_name = partition_name(held if isinstance(held, str) else held.isoformat())
        removed: list[Path] = []

        def stale(d: Path) -> list[Path]:
            # what the table holds is read now, with the partition's lock held: a writer of another
            # process may have committed its file to this partition a moment ago and let go of the lock
            live = {tdir / p for p in self._snapshot(table).get(d.name.removeprefix("date="), [])}
            found = [p for p in d.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]
            return found + [p for p in d.glob(f"{COMPACTED_PREFIX}*.parquet") if p not in live]

        for d in sorted(tdir.glob("date=*")) if tdir.is_dir() else []:
            if d.name == held_name:
                removed += _remove_all(stale(d))
                continue
            if not any(p.name.endswith(".tmp") or p.name.startswith(COMPACTED_PREFIX) for p in d.iterdir()):
                continue
            # the lock its writers hold: rejected_readings is written under the readings lock
            with exclusive_lock(self._lock_file(LOCK_OF.get(table, table), d.name.removeprefix("date=")), blocking=False) as free:
                if free:
                    removed += _remove_all(stale(d))
        return removed

    def delete_partition(self, table: str, day: dt.date | str) -> None:
        with self.lock(table, day):
            if self.delta(table) is not None:
                self.commit(table, replace_day=day)
            _remove_all([self.partition_dir(table, day)])

    # -- the micro-batch commit record -------------------------------------------
    def commit_record(self, seq: int, record: str, plan: dict[str, dict[str, list]], *, committed_us: int | None = None) -> None:
        """Commit a micro-batch: its record (the commit point), then its plan applied to each table.

        ``plan`` is ``table -> {"add": [[day, name], ...], "remove": [[day, name], ...]}``.
        The record is one commit of the ``_commits`` table; a process killed after
        it has its plan applied by the next :meth:`roll_forward` (each table's
        commit carries ``(app, seq)``, so no plan is applied twice).

        Record ``seq`` follows record ``seq - 1`` and nothing else: it is committed on
        exactly the version holding that one, or not at all (:class:`LakeConflict`:
        another micro-batch committed meanwhile, on another machine; this batch's parts
        stay uncommitted and the next batch redoes its work).
        """
        last = self.last_record()
        if (last[0] if last is not None else 0) != seq - 1:
            raise LakeConflict(f"micro-batch commit {seq}: the lake's last commit is {last[0] if last else 0}, "
                               "another micro-batch committed meanwhile; this one was not committed")  # fmt: skip
        body = pa.table({"seq": pa.array([seq], pa.int64()), "record": [record], "plan": [json.dumps(plan, sort_keys=True)],
                         "committed_us": pa.array([committed_us or int(time.time() * 1e6)], pa.int64())})  # fmt: skip
        t = self.delta(COMMITS_TABLE)
        try:
            write_deltalake(
                t if t is not None else str(self.lake_dir / COMMITS_TABLE), body, mode="overwrite",
                storage_options=self._options if t is None else None,
                commit_properties=CommitProperties(app_transactions=[Transaction(MICRO_BATCH_APP, seq)], max_commit_retries=0),
                writer_properties=WriterProperties(compression="ZSTD"),
            )  # fmt: skip
        except CommitFailedError as exc:
            raise LakeConflict(f"micro-batch commit {seq} lost the race to another micro-batch's; this one was not committed") from exc
        self._apply(seq, plan)

    def last_record(self) -> tuple[int, str, dict, int] | None:
        """(seq, record, plan, committed_us) of the last micro-batch commit, or None."""
        t = self.delta(COMMITS_TABLE)
        if t is None:
            return None
        row = t.to_pyarrow_table().to_pylist()
        if not row:
            return None
        r = row[0]
        return r["seq"], r["record"], json.loads(r["plan"]), r["committed_us"]

    def roll_forward(self, table: str | None = None, *, held: tuple[str, str] | None = None) -> None:
        """Apply the last committed micro-batch's plan where a process died before it did.

        ``held``: the (table, day) whose lock the caller holds already.
        """
        last = self.last_record()
        if last is not None:
            seq, _, plan, _ = last
            self._apply(seq, {t: p for t, p in plan.items() if table is None or t == table}, held=held)

    def _apply(self, seq: int, plan: dict[str, dict[str, list]], *, held: tuple[str, str] | None = None) -> None:
        for table, p in sorted(plan.items()):
            days = sorted({d for d, _ in p.get("add", []) + p.get("remove", [])})
            with contextlib.ExitStack() as stack:
                # under the partitions' locks: a replace deletes the staged parts it supersedes,
                # so the check that a part exists and its commit must not straddle one
                for d in days:
                    if held != (LOCK_OF.get(table, table), d):
                        stack.enter_context(self.lock(LOCK_OF.get(table, table), d))
                if self.committed_seq(table) >= seq:
                    continue
                adds = [(d, self.partition_dir(table, d) / n) for d, n in p.get("add", [])]
                removes = [(d, self.partition_dir(table, d) / n) for d, n in p.get("remove", [])]
                live = set(self.all_files(table))
                try:
                    self.commit(table, [(d, f) for d, f in adds if f.exists()], [(d, f) for d, f in removes if f in live], seq=seq)
                except BatchCommitted:  # another machine rolled this batch forward a moment ago
                    continue
                for d, f in adds:
                    self._pending.get((table, d), set()).discard(f)
                for _, f in removes if self.store is None else ():  # superseded (a store: see collect_garbage)
                    f.unlink(missing_ok=True)

    # -- damage ----------------------------------------------------------------
    def damaged_files(self, table: str, day: dt.date | str, *, quick: bool = False) -> list[tuple[Path, str]]:
        """Files of a partition that are not readable Parquet, with the reason (see :func:`parquet_damage`)."""
        return [(f, why) for f in self.files(table, day) if (why := parquet_damage(f, TABLES[table], quick=quick)) is not None]

    def quarantine_file(self, path: Path, reason: str, rel: Path | None = None) -> Path:
        """Take a damaged file out of the lake, keeping its bytes and the reason beside it.

        A file of a table is first removed from the table (one commit); it then
        moves from ``lake/<table>/date=D/f.parquet`` to
        ``lake/_quarantine/<table>/date=D/f.parquet`` (plus ``f.parquet.reason.txt``),
        or to ``lake/_quarantine/<rel>`` for a file from outside the lake; the
        caller holds the partition's lock.
        """
        if path.resolve().is_relative_to(self.lake_dir.resolve()):
            inner = path.resolve().relative_to(self.lake_dir.resolve())
            table = inner.parts[0]
            if table in TABLES and len(inner.parts) == 3 and path in set(self.all_files(table)):
                self.commit(table, removes=[(inner.parts[1].removeprefix("date="), path)])
        dest = self.lake_dir / QUARANTINE_DIR / (rel if rel is not None else path.relative_to(self.lake_dir))
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():  # the same name damaged twice: keep both
            dest = dest.with_name(f"{dest.name}.{uuid.uuid4().hex[:8]}")
        dest.with_name(f"{dest.name}.reason.txt").write_text(reason + "\n")
        if isinstance(path, StoreFile):
            path.fs.move(path.key, dest.key)  # a copy, then a delete: the bytes are in one place or both
        else:
            os.replace(path, dest)
            fsync_path(path.parent)
        return dest

    # -- reads ---------------------------------------------------------------
    def read(self, table: str, days: Iterable[dt.date | str], columns: list[str] | None = None) -> pa.Table:
        """Read the partitions ``days`` of ``table`` (missing ones are empty)."""
        schema = TABLES[table]
        pieces = [
            conform(pq.read_table(parquet_source(f), columns=columns), schema if columns is None else _project(schema, columns))
            for day in days
            for f in self.files(table, day)
        ]
        if not pieces:
            return (schema if columns is None else _project(schema, columns)).empty_table()
        return pa.concat_tables(pieces)

    def dataset(self, table: str) -> pads.Dataset:
        """The table's current snapshot as a pyarrow dataset, with its ``date`` column."""
        t = self.delta(table)
        if t is None:
            return pads.dataset(_table_schema(table).empty_table())
        return t.to_pyarrow_dataset()


def _stats(path: Path) -> str:
    """The add action's statistics: the row count (what a reader needs without opening the file)."""
    try:
        return json.dumps({"numRecords": pq.read_metadata(parquet_source(path)).num_rows})
    except Exception:  # a damaged file (tests add them on purpose): no statistics
        return "{}"


def _iso(day: dt.date | str) -> str:
    return day if isinstance(day, str) else day.isoformat()


def _table_schema(table: str) -> pa.Schema:
    return TABLES[table].append(pa.field(PARTITION, pa.date32(), nullable=False))


def _listing(d: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    # one level at a time: an object store's StoreFile globs one level (no "date=*/*.parquet")
    days = sorted(d.glob("date=*"), key=lambda p: p.name) if d.is_dir() else []
    for day in days:
        for p in sorted(day.glob("*.parquet"), key=lambda p: p.name):
            if not p.name.startswith("."):
                out.setdefault(day.name.removeprefix("date="), []).append(f"{day.name}/{p.name}")
    return out


def _remove_all(paths: list[Path]) -> list[Path]:
    for p in paths:
        if isinstance(p, StoreFile):
            if p.name.startswith("date="):
                p.fs.delete_dir_contents(p.key, missing_dir_ok=True)
            else:
                p.unlink(missing_ok=True)
        elif p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return paths


def _project(schema: pa.Schema, columns: list[str]) -> pa.Schema:
    return pa.schema([schema.field(c) for c in columns])

