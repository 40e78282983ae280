"""The lake on an object store: one Delta Lake table per lake table, partitioned by ``date``.

Object stores have no rename and no lock, so the commit protocol is Delta
Lake's (the ``deltalake`` package; see docs/lake-protocol.md for why): data
files are written under fresh names, and a write becomes visible only when
its entry in the table's transaction log (``_delta_log/<version>.json``) is
created with a conditional PUT (``If-None-Match: *``). Exactly one writer
can create a given version; the other gets a conflict, re-reads the log and
retries or gives up according to what it conflicted with.

What the local lake guarantees, and how it holds here:

* **Atomic partition replace** (:meth:`DeltaLake.replace_partition`): an
  overwrite with the predicate ``date = D`` is one commit that removes the
  partition's files and adds the new one; a reader's snapshot is one log
  version, so it sees the old partition or the new one, never a mix.
* **Exactly-once micro-batch parts** (:meth:`DeltaLake.append_part`): a part
  is committed with a Delta *application transaction* ``(app_id, seq)`` in
  the same commit. A retry of batch ``seq`` first reads the table's
  transaction version; if it is already ``>= seq`` the part is there and
  nothing is written. Files of a writer killed before its commit are in no
  log version: invisible, and removed by :meth:`DeltaLake.vacuum`.
* **Concurrent writers of one partition**: two replaces of one partition
  conflict (the loser's commit fails and it retries on the new snapshot); a
  replace and an append conflict the same way; two appends both commit.
* **Readers** read a snapshot's file list (:meth:`DeltaLake.dataset`), never
  a listing of the prefix: superseded files stay in the store until
  :meth:`DeltaLake.vacuum` removes them, past a grace period that no query
  outlives.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Iterator

import pyarrow as pa
import pyarrow.dataset as pads
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from iot_platform.core.schemas import conform
from iot_platform.io.lake import TABLES
from iot_platform.io.objstore import ObjectStore

PARTITION = "date"
MICRO_BATCH_APP = "iot-micro-batch"
# a commit that lost a race re-reads the log and tries again, this many times
COMMIT_ATTEMPTS = 8
# files no snapshot of the last hour references are garbage (a query outliving it is stopped
# by its own timeout, 60 s by default); the grace also keeps a live writer's staged files
DEFAULT_GRACE_HOURS = 1


class RemoteLakeError(RuntimeError):
    """A write to the object-store lake that could not commit (the message says why)."""


def _with_date(table: pa.Table, schema: pa.Schema, day: dt.date) -> pa.Table:
    t = conform(table, schema)
    return t.append_column(pa.field(PARTITION, pa.date32(), nullable=False), pa.array([day] * t.num_rows, pa.date32()))


def _day(day: dt.date | str) -> dt.date:
    return day if isinstance(day, dt.date) else dt.date.fromisoformat(day)


class DeltaLake:
    """The lake's tables as Delta tables under one object-store prefix."""

    def __init__(self, store: ObjectStore, *, target_file_size: int | None = None):
        self.store = store
        self._options = store.storage_options()
        # bytes per data file before the writer starts the next one (None: deltalake's default, ~100 MB)
        self._file_size = target_file_size

    # -- tables ----------------------------------------------------------------
    def table_schema(self, table: str) -> pa.Schema:
        return TABLES[table].append(pa.field(PARTITION, pa.date32(), nullable=False))

    def _open(self, table: str) -> DeltaTable | None:
        try:
            return DeltaTable(self.store.table_url(table), storage_options=self._options)
        except TableNotFoundError:
            return None

    def version(self, table: str) -> int | None:
        t = self._open(table)
        return None if t is None else t.version()

    # -- writes ----------------------------------------------------------------
    def replace_partition(self, table: str, day: dt.date | str, data: pa.Table | Iterable[pa.Table]) -> int:
        """Replace the partition ``day`` of ``table`` with ``data``, in one commit.

        ``data`` may be an iterable of tables, streamed to the store one at a
        time. A concurrent commit touching the partition makes this one fail
        and retry on the new snapshot (the data is re-sent: pass a table, or
        an iterable that can be iterated again, such as a list). Returns rows written.
        """
        day = _day(day)
        schema = TABLES[table]
        pieces = [data] if isinstance(data, pa.Table) else data
        for attempt in range(COMMIT_ATTEMPTS):
            rows = 0

            def batches() -> Iterator[pa.RecordBatch]:
                nonlocal rows
                for piece in pieces:
                    t = _with_date(piece, schema, day)
                    rows += t.num_rows
                    yield from t.to_batches()

            reader = pa.RecordBatchReader.from_batches(self.table_schema(table), batches())
            try:
                write_deltalake(
                    self.store.table_url(table), reader, mode="overwrite", partition_by=[PARTITION],
                    predicate=f"{PARTITION} = '{day.isoformat()}'", storage_options=self._options,
                    target_file_size=self._file_size,
                )  # fmt: skip
                return rows
            except CommitFailedError as exc:
                last = exc
                _backoff(attempt)
        raise RemoteLakeError(f"replacing {table} {day}: {COMMIT_ATTEMPTS} commits lost to concurrent writers ({last})")

    def append_part(self, table: str, day: dt.date | str, seq: int, data: pa.Table, *, app_id: str = MICRO_BATCH_APP) -> bool:
        """Add ``data`` to the partition ``day`` as micro-batch ``seq`` of ``app_id``, exactly once.

        Returns False when batch ``seq`` (or a later one) had already committed
        to this table: a retried batch then writes nothing. Batches of one
        ``app_id`` commit in increasing ``seq`` order.
        """
        day = _day(day)
        t = _with_date(data, TABLES[table], day)
        props = CommitProperties(app_transactions=[Transaction(app_id, seq)])
        for attempt in range(COMMIT_ATTEMPTS):
            if self.committed_seq(table, app_id) >= seq:
                return False
            try:
                write_deltalake(
                    self.store.table_url(table), t, mode="append", partition_by=[PARTITION],
                    storage_options=self._options, commit_properties=props, target_file_size=self._file_size,
                )  # fmt: skip
                return True
            except CommitFailedError as exc:
                last = exc
                _backoff(attempt)
        raise RemoteLakeError(f"appending batch {seq} to {table} {day}: {COMMIT_ATTEMPTS} commits lost ({last})")

    def committed_seq(self, table: str, app_id: str = MICRO_BATCH_APP) -> int:
        """The last batch of ``app_id`` committed to ``table`` (-1: none)."""
        t = self._open(table)
        v = t.transaction_version(app_id) if t is not None else None
        return -1 if v is None else v

    def vacuum(self, table: str, grace_hours: int = DEFAULT_GRACE_HOURS) -> list[str]:
        """Delete the files of ``table`` that no snapshot of the last ``grace_hours`` references.

        That is the files superseded by replaces, and the files of writers killed
        before their commit (``full``: files the log never mentioned). Returns them.
        """
        t = self._open(table)
        if t is None:
            return []
        return t.vacuum(retention_hours=grace_hours, dry_run=False, enforce_retention_duration=False, full=True)

    # -- reads -----------------------------------------------------------------
    def days(self, table: str) -> list[dt.date]:
        t = self._open(table)
        if t is None:
            return []
        return sorted({dt.date.fromisoformat(p[PARTITION]) for p in t.partitions()})

    def dataset(self, table: str) -> pads.Dataset:
        """The table's current snapshot as a pyarrow dataset (empty, with the schema, if none)."""
        t = self._open(table)
        if t is None:
            return pads.dataset(self.table_schema(table).empty_table())
        return t.to_pyarrow_dataset()

    def read(self, table: str, days: Iterable[dt.date | str], columns: list[str] | None = None) -> pa.Table:
        """Rows of the partitions ``days`` (without the ``date`` column), in the table's schema."""
        wanted = [_day(d) for d in days]
        ds = self.dataset(table)
        cols = columns if columns is not None else TABLES[table].names
        if not wanted:
            return pads.dataset(self.table_schema(table).empty_table()).to_table(columns=cols)
        return ds.to_table(columns=cols, filter=pads.field(PARTITION).isin(wanted))


def _backoff(attempt: int) -> None:
    time.sleep(min(0.05 * 2**attempt, 1.0))
