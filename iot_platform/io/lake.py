"""The Parquet lake: ``<root>/lake/<table>/date=YYYY-MM-DD/*.parquet``, hive-style.

A partition is a directory. It holds either one compacted ``data.parquet``
(written by a backfill or the daily finalize) or that plus micro-batch parts
``part-<batch_id>.parquet``. Two write operations exist, both atomic:

* :meth:`Lake.replace_partition` builds the new directory beside the lake and
  swaps it in with one ``renameat2(RENAME_EXCHANGE)``: a reader or a crash sees
  the old partition or the new one, never a mix.
* :meth:`Lake.write_part` writes one file to a temp name, fsyncs and renames
  it; a part is named by its batch id, so a retried batch overwrites its own
  part instead of adding a second copy.

Writers of one partition serialize on a per-partition ``flock``, so a backfill
and a micro-batch touching the same day cannot interleave.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from iot_platform.core.detectors.points import POINTS
from iot_platform.core.schemas import TABLES as _CORE_TABLES
from iot_platform.core.schemas import conform
from iot_platform.io.fsutil import exclusive_lock, fsync_path

# the lake's tables: the core's, plus the detectors' alert points (merged into
# `anomalies` episodes; kept so micro-batches can re-merge a day exactly)
TABLES = {**_CORE_TABLES, "anomaly_points": POINTS}

COMPACTED = "data.parquet"
PART_PREFIX = "part-"
_TMP_DIR = ".tmp"
# damaged files are moved here (never deleted), beside a note of why
QUARANTINE_DIR = "_quarantine"
_MAGIC = b"PAR1"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2

# zstd keeps a day of 100 sensors near 100 MB; row groups of 1 M rows keep
# the per-group min/max statistics useful for DuckDB's pruning.
_WRITER_OPTIONS = dict(compression="zstd", write_statistics=True)
_ROW_GROUP = 1_000_000


def write_parquet_atomic(
    data: pa.Table | Iterable[pa.Table],
    path: Path,
    schema: pa.Schema | None = None,
    metadata: dict[str, str] | None = None,
) -> int:
    """Write ``data`` (a table, or tables streamed one by one) so that a reader only
    ever sees a complete file at ``path``. Returns the number of rows written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    chunks = [data] if isinstance(data, pa.Table) else data
    schema = schema if schema is not None else (data.schema if isinstance(data, pa.Table) else None)
    if schema is None:
        raise ValueError("a schema is needed to stream tables into a Parquet file")
    if metadata:
        schema = schema.with_metadata({**(schema.metadata or {}), **{k.encode(): v.encode() for k, v in metadata.items()}})
    rows = 0
    try:
        with open(tmp, "wb") as f:
            with pq.ParquetWriter(f, schema, **_WRITER_OPTIONS) as writer:
                for chunk in chunks:
                    writer.write_table(chunk.replace_schema_metadata(schema.metadata), row_group_size=_ROW_GROUP)
                    rows += chunk.num_rows
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)
    return rows


def read_metadata(path: Path) -> dict[str, str]:
    """The key-value metadata our writers put in a Parquet file's schema."""
    meta = pq.read_schema(path).metadata or {}
    return {k.decode(): v.decode() for k, v in meta.items() if not k.startswith(b"ARROW")}


def _exchange(a: Path, b: Path) -> None:
    """Atomically swap two existing paths (Linux renameat2 RENAME_EXCHANGE)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"renameat2(RENAME_EXCHANGE) {a} <-> {b}: {os.strerror(err)}")


def partition_name(day: dt.date | str) -> str:
    return f"date={day}" if isinstance(day, str) else f"date={day.isoformat()}"


class Lake:
    """The lake under ``root`` (the data root, ``$IOT_DATA_DIR``)."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.lake_dir = self.root / "lake"

    # -- paths -------------------------------------------------------------
    def table_dir(self, table: str) -> Path:
        return self.lake_dir / table

    def partition_dir(self, table: str, day: dt.date | str) -> Path:
        return self.table_dir(table) / partition_name(day)

    def glob(self, table: str) -> str:
        """The glob DuckDB reads a table with (``hive_partitioning=true``)."""
        return str(self.table_dir(table) / "*" / "*.parquet")

    def files(self, table: str, day: dt.date | str) -> list[Path]:
        d = self.partition_dir(table, day)
        if not d.is_dir():
            return []
        return sorted(p for p in d.iterdir() if p.suffix == ".parquet" and not p.name.startswith("."))

    def exists(self, table: str, day: dt.date | str) -> bool:
        return bool(self.files(table, day))

    def days(self, table: str) -> list[dt.date]:
        d = self.table_dir(table)
        if not d.is_dir():
            return []
        out = []
        for p in d.iterdir():
            if p.is_dir() and p.name.startswith("date="):
                with contextlib.suppress(ValueError):
                    out.append(dt.date.fromisoformat(p.name[5:]))
        return sorted(out)

    # -- locking -----------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, table: str, day: dt.date | str) -> Iterator[None]:
        """Hold the exclusive write lock of one partition (blocks until free)."""
        with exclusive_lock(self._lock_file(table, day)):
            yield

    def _lock_file(self, table: str, day: dt.date | str) -> Path:
        return self.lake_dir / ".locks" / table / f"{partition_name(day)}.lock"

    # -- writes --------------------------------------------------------------
    def replace_partition(
        self,
        table: str,
        day: dt.date | str,
        data: pa.Table | Iterable[pa.Table],
        *,
        metadata: dict[str, str] | None = None,
        locked: bool = False,
    ) -> int:
        """Replace a whole partition with ``data`` (one compacted file), atomically.

        ``data`` may be an iterable of tables, streamed to disk one at a time so
        that a large day never sits in memory whole. Pass ``locked=True`` when the
        caller already holds :meth:`lock`. Returns the number of rows written.
        """
        schema = TABLES[table]
        chunks = conform(data, schema) if isinstance(data, pa.Table) else (conform(t, schema) for t in data)
        ctx = contextlib.nullcontext() if locked else self.lock(table, day)
        with ctx:
            self.remove_stale_staging(table, day)
            final = self.partition_dir(table, day)
            staging = self.table_dir(table) / _TMP_DIR / f"{partition_name(day)}.{uuid.uuid4().hex}"
            staging.mkdir(parents=True)
            try:
                rows = write_parquet_atomic(chunks, staging / COMPACTED, schema, metadata)
                if final.exists():
                    _exchange(staging, final)  # staging now holds the old partition
                    shutil.rmtree(staging)
                else:
                    final.parent.mkdir(parents=True, exist_ok=True)
                    os.rename(staging, final)
                fsync_path(final.parent)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        return rows

    def write_part(
        self,
        table: str,
        day: dt.date | str,
        batch_id: str,
        data: pa.Table,
        *,
        metadata: dict[str, str] | None = None,
        locked: bool = False,
    ) -> Path:
        """Add (or, for a retried batch, overwrite) the part ``batch_id`` of a partition."""
        schema = TABLES[table]
        path = self.partition_dir(table, day) / f"{PART_PREFIX}{batch_id}.parquet"
        ctx = contextlib.nullcontext() if locked else self.lock(table, day)
        with ctx:
            self.remove_stale_staging(table, day)
            write_parquet_atomic(conform(data, schema), path, schema, metadata)
        return path

    def remove_stale_staging(self, table: str, held: dt.date | str) -> list[Path]:
        """Delete what killed writers of ``table`` left behind; the caller holds ``held``'s lock.

        A partition's staging directories (``<table>/.tmp/date=D.<id>``) and its
        half-written files (``date=D/.<name>.<id>.tmp``) belong to a live writer
        only while that writer holds the partition's lock. So they are removed
        for the partition the caller holds, and for every other partition whose
        lock is free right now (taken without waiting, released at once).
        """
        held_name = partition_name(held)
        by_partition: dict[str, list[Path]] = {}
        tmp_root = self.table_dir(table) / _TMP_DIR
        for entry in tmp_root.iterdir() if tmp_root.is_dir() else []:
            by_partition.setdefault(entry.name.split(".", 1)[0], []).append(entry)
        held_dir = self.partition_dir(table, held)
        if held_dir.is_dir():
            by_partition.setdefault(held_name, []).extend(held_dir.glob(".*.tmp"))
        removed: list[Path] = []
        for name, entries in sorted(by_partition.items()):
            if name == held_name:
                removed += _remove_all(entries)
                continue
            with exclusive_lock(self._lock_file(table, name.removeprefix("date=")), blocking=False) as free:
                if free:
                    removed += _remove_all(entries)
        return removed

    def delete_partition(self, table: str, day: dt.date | str) -> None:
        with self.lock(table, day):
            shutil.rmtree(self.partition_dir(table, day), ignore_errors=True)

    # -- damage ----------------------------------------------------------------
    def damaged_files(self, table: str, day: dt.date | str, *, quick: bool = False) -> list[tuple[Path, str]]:
        """Files of a partition that are not readable Parquet, with the reason (see :func:`parquet_damage`)."""
        return [(f, why) for f in self.files(table, day) if (why := parquet_damage(f, TABLES[table], quick=quick)) is not None]

    def quarantine_file(self, path: Path, reason: str, rel: Path | None = None) -> Path:
        """Move a damaged file out of the lake, keeping its bytes and the reason beside it.

        ``lake/<table>/date=D/f.parquet`` goes to ``lake/_quarantine/<table>/date=D/f.parquet``
        (plus ``f.parquet.reason.txt``), or to ``lake/_quarantine/<rel>`` for a file
        from outside the lake; the caller holds the partition's lock.
        """
        dest = self.lake_dir / QUARANTINE_DIR / (rel if rel is not None else path.relative_to(self.lake_dir))
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():  # the same name damaged twice: keep both
            dest = dest.with_name(f"{dest.name}.{uuid.uuid4().hex[:8]}")
        dest.with_name(f"{dest.name}.reason.txt").write_text(reason + "\n")
        os.replace(path, dest)
        fsync_path(path.parent)
        return dest

    # -- reads ---------------------------------------------------------------
    def read(self, table: str, days: Iterable[dt.date | str], columns: list[str] | None = None) -> pa.Table:
        """Read the partitions ``days`` of ``table`` (missing ones are empty)."""
        schema = TABLES[table]
        pieces = [
            conform(pq.read_table(f, columns=columns), schema if columns is None else _project(schema, columns))
            for day in days
            for f in self.files(table, day)
        ]
        if not pieces:
            return (schema if columns is None else _project(schema, columns)).empty_table()
        return pa.concat_tables(pieces)


def _kind(t: pa.DataType) -> str:
    for name, test in (("string", pa.types.is_string), ("string", pa.types.is_large_string),
                       ("timestamp", pa.types.is_timestamp), ("integer", pa.types.is_integer),
                       ("float", pa.types.is_floating), ("boolean", pa.types.is_boolean), ("date", pa.types.is_date)):  # fmt: skip
        if test(t):
            return name
    return str(t)


def parquet_damage(
    path: Path, schema: pa.Schema, *, all_columns: bool = True, deep: bool = False, quick: bool = False
) -> str | None:
    """Why ``path`` is not a readable Parquet file of ``schema`` (None: it is).

    ``all_columns`` False: only non-nullable columns are required (a landing
    file may carry a subset of the metrics). ``deep``: decode every row group.
    ``quick``: the size and the magic bytes at both ends only (two small reads,
    no footer parse): finds empty, foreign and truncated files, not a wrong schema.
    """
    try:
        size = path.stat().st_size
        if size == 0:
            return "empty file (0 bytes)"
        with open(path, "rb") as f:
            head = f.read(4)
            f.seek(max(0, size - 4))
            tail = f.read(4)
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    if head != _MAGIC:
        return f"not a Parquet file (no PAR1 magic at its start; {size} bytes)"
    if tail != _MAGIC or size < 12:
        return f"truncated (no Parquet footer at its end; {size} bytes)"
    if quick:
        return None
    try:
        pf = pq.ParquetFile(path)
        found = pf.schema_arrow
    except Exception as exc:  # pyarrow raises several types for a bad footer
        return f"footer unreadable ({str(exc).splitlines()[0]})"
    for field in schema:
        if field.name not in found.names:
            if all_columns or not field.nullable:
                return f"wrong schema (column {field.name!r} is missing)"
            continue
        got = found.field(field.name).type
        if _kind(got) != _kind(field.type):
            return f"wrong schema (column {field.name!r} is {got}, expected {field.type})"
    if deep:
        for i in range(pf.num_row_groups):
            try:
                pf.read_row_group(i)
            except Exception as exc:
                return f"data unreadable in row group {i} ({str(exc).splitlines()[0]})"
    return None


def _remove_all(paths: list[Path]) -> list[Path]:
    for p in paths:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return paths


def _project(schema: pa.Schema, columns: list[str]) -> pa.Schema:
    return pa.schema([schema.field(c) for c in columns])

