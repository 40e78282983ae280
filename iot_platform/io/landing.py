"""The landing zone: where capture and import drop complete files for ingestion.

Layout (``<landing>`` is ``$IOT_DATA_DIR/landing``)::

    <landing>/<stream>/<name>.parquet               readings, schema LANDING
    <landing>/_quarantine/<stream>/<name>.jsonl     refused lines and rows

``<stream>`` is a filesystem-safe slug of the source (``serial-ttyACM0``,
``import-plant``). ``<name>`` is ``20261122T150102.123456Z-<pid>-<counter>``:
unique, and sorted by creation time. A file appears only by an atomic rename
of a fsynced temp file whose name starts with ``.``; it is never rewritten
after it appeared (ingestion picks each up once and moves it away).

Quarantine records are JSON lines with the ``QUARANTINE`` columns ``source``,
``received_at`` (ISO 8601, UTC), ``reason`` and ``raw``, plus ``code`` (the
reason's category, see ``core.reading_rules.REJECT_CODES``) and, for serial lines,
``raw_b64`` and ``line``. ``raw`` is the line decoded as UTF-8 with invalid
bytes written as ``\\xNN`` escapes, for reading; ``raw_b64`` is the exact
bytes (without the final ``\\n``), for a lossless replay. For an imported row,
``raw`` is a JSON object of the fields the import read (or, for a line the
reader set aside -- wrong field count, unclosed quote -- the line's text),
``file`` is the imported file's absolute path, ``row`` the row's 1-based
position among the file's data rows and, for CSV, ``line`` its 1-based line
in the file (the header is line 1).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import threading
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from iot_platform.core.schemas import LANDING, conform
from iot_platform.io.fsutil import fsync_path
from iot_platform.io.lake import write_parquet_atomic
from iot_platform.core.calendar import from_us

QUARANTINE_DIR = "_quarantine"
_ROW_GROUP = 1_000_000


# -- names -------------------------------------------------------------------


def slug(text: str) -> str:
    """``text`` reduced to ``[A-Za-z0-9._-]``, never starting with ``.``, ``_`` or ``-``."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")
    return re.sub(r"-{2,}", "-", s) or "unnamed"


def serial_stream(port: str) -> str:
    """``/dev/ttyACM0`` -> ``serial-ttyACM0``, ``/dev/pts/3`` -> ``serial-pts-3``,
    ``socket://127.0.0.1:5678`` -> ``serial-socket-127.0.0.1-5678``, ``./ttyEMU0`` -> ``serial-ttyEMU0``."""
    if "://" in port:
        scheme, rest = port.split("://", 1)
        return "serial-" + slug(f"{scheme}-{rest}")
    path = port.rstrip("/")
    name = path[len("/dev/") :] if path.startswith("/dev/") else os.path.basename(path)
    return "serial-" + slug(name or port)


def serial_source(port: str) -> str:
    return f"serial:{port}"


def import_stream(path: str | os.PathLike[str]) -> str:
    """``/data/plant.csv.gz`` -> ``import-plant``."""
    name = Path(path).name
    for suffix in (".gz", ".bz2", ".zst", ".lz4"):
        name = name.removesuffix(suffix)
    return "import-" + slug(name.rsplit(".", 1)[0] if "." in name else name)


def import_source(path: str | os.PathLike[str]) -> str:
    return f"import:{Path(path).name}"


class FileNamer:
    """Unique file names that sort by creation time: ``<UTC stamp>-<pid>-<counter>``.

    The stamp never goes backwards within a process, even if the clock does,
    so that name order stays creation order.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_us = 0
        self._counter = itertools.count(1)

    def next(self, suffix: str) -> str:
        with self._lock:
            now = time.time_ns() // 1000
            self._last_us = now if now > self._last_us else self._last_us + 1
            stamp = from_us(self._last_us)
            return f"{stamp:%Y%m%dT%H%M%S}.{stamp.microsecond:06d}Z-{os.getpid()}-{next(self._counter):06d}{suffix}"


NAMER = FileNamer()


def iso_us(us: int) -> str:
    """Microseconds since the epoch as ``2026-11-22T15:01:02.123456Z``."""
    t = from_us(us)
    return f"{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond:06d}Z"


def _sorted(table: pa.Table) -> pa.Table:
    """Rows by (sensor_id, ts), arrival order kept for ties (a stable sort)."""
    if table.num_rows < 2:
        return table
    return table.take(pc.sort_indices(table, sort_keys=[("sensor_id", "ascending"), ("ts", "ascending")]))


# -- readings --------------------------------------------------------------------


class SpoolWriter:
    """Writes readings of one stream as landing Parquet files, one atomic file per call."""

    def __init__(self, landing_root: Path, stream: str):
        if stream != slug(stream):
            raise ValueError(f"stream {stream!r} is not a slug; expected e.g. {slug(stream)!r}")
        self.directory = Path(landing_root) / stream

    def write(self, table: pa.Table) -> Path | None:
        """Land ``table`` (conformed to ``LANDING``, sorted) as a new file; ``None`` if it is empty."""
        if table.num_rows == 0:
            return None
        data = _sorted(conform(table, LANDING))
        path = self.directory / NAMER.next(".parquet")
        write_parquet_atomic(data, path)
        return path

    def stage(self) -> StagedFile:
        """A file to write in pieces and publish later (see :class:`StagedFile`)."""
        return StagedFile(self.directory)

    def publish(self, staged: list[StagedFile]) -> list[Path]:
        """Rename closed staged files into place, in order, then fsync the directory once."""
        paths = [s.rename_into_place() for s in staged if s.rows]
        for s in staged:
            if not s.rows:
                s.discard()
        if paths:
            fsync_path(self.directory)
        return paths


class StagedFile:
    """A landing Parquet file written row group by row group under a hidden name.

    Import writes chunk after chunk of a big file without holding it in
    memory (rows are buffered up to ``row_group_rows``, then written as one
    sorted row group), and renames all its files into place only once the
    whole input is read, so that an import that fails half-way leaves
    nothing behind.
    """

    def __init__(self, directory: Path, row_group_rows: int = 262_144):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.tmp = directory / f".staged-{uuid.uuid4().hex}.parquet.tmp"
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(
            self.tmp, LANDING, compression="zstd", write_statistics=True
        )
        self.row_group_rows = row_group_rows
        self._buffered: list[pa.Table] = []
        self._buffered_rows = 0
        self.rows = 0
        self.path: Path | None = None

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        assert self._writer is not None, "staged file already closed"
        self._buffered.append(conform(table, LANDING))
        self._buffered_rows += table.num_rows
        self.rows += table.num_rows
        if self._buffered_rows >= self.row_group_rows:
            self._write_row_group()

    def _write_row_group(self) -> None:
        if self._buffered and self._writer is not None:
            data = pa.concat_tables(self._buffered)
            self._buffered, self._buffered_rows = [], 0
            self._writer.write_table(_sorted(data), row_group_size=_ROW_GROUP)

    def close(self) -> None:
        if self._writer is not None:
            self._write_row_group()
            self._writer.close()
            self._writer = None
            fd = os.open(self.tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def rename_into_place(self) -> Path:
        self.close()
        self.path = self.directory / NAMER.next(".parquet")
        os.replace(self.tmp, self.path)
        return self.path

    def discard(self) -> None:
        self._buffered = []
        if self._writer is not None:
            try:
                self._writer.close()
            finally:
                self._writer = None
        self.tmp.unlink(missing_ok=True)


# -- quarantine ----------------------------------------------------------------------


class QuarantineWriter:
    """Collects refused lines or rows of one stream into a hidden JSON-lines file.

    :meth:`publish` fsyncs it and renames it into place (one file per
    rotation interval or imported file); :meth:`discard` drops it.
    """

    def __init__(self, landing_root: Path, stream: str):
        self.directory = Path(landing_root) / QUARANTINE_DIR / stream
        self._tmp: Path | None = None
        self._file = None
        self.count = 0  # records in the current file

    def add(
        self,
        *,
        source: str,
        received_at_us: int,
        reason: str,
        code: str,
        raw: bytes | str,
        **extra: object,
    ) -> None:
        record: dict[str, object] = {
            "source": source,
            "received_at": iso_us(received_at_us),
            "reason": reason,
            "code": code,
        }
        if isinstance(raw, bytes):
            record["raw"] = raw.decode("utf-8", "backslashreplace")
            record["raw_b64"] = base64.b64encode(raw).decode("ascii")
        else:
            record["raw"] = raw
        record.update(extra)
        if self._file is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._tmp = self.directory / f".quarantine-{uuid.uuid4().hex}.jsonl.tmp"
            self._file = open(self._tmp, "w", encoding="utf-8")
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.count += 1

    def publish(self) -> Path | None:
        if self._file is None or self._tmp is None:
            return None
        f, tmp = self._file, self._tmp
        self._file, self._tmp, self.count = None, None, 0
        f.flush()
        os.fsync(f.fileno())
        f.close()
        path = self.directory / NAMER.next(".jsonl")
        os.replace(tmp, path)
        fsync_path(self.directory)
        return path

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
        self._file, self._tmp, self.count = None, None, 0


def read_quarantine(landing_root: Path, stream: str | None = None) -> list[dict]:
    """Every quarantine record (of ``stream``, or of all streams), in file-name order."""
    base = Path(landing_root) / QUARANTINE_DIR
    dirs = [base / stream] if stream else sorted(p for p in base.glob("*") if p.is_dir())
    out: list[dict] = []
    for d in dirs:
        for path in sorted(p for p in d.glob("*.jsonl") if not p.name.startswith(".")):
            with open(path, encoding="utf-8") as f:
                out.extend(json.loads(line) for line in f if line.strip())
    return out


def landing_files(landing_root: Path, stream: str | None = None) -> list[Path]:
    """The published landing files (of ``stream`` or all streams), in name order per stream."""
    base = Path(landing_root)
    pattern = f"{stream}/*.parquet" if stream else "*/*.parquet"
    return sorted(
        (p for p in base.glob(pattern) if not p.name.startswith((".", "_")) and not p.parent.name.startswith((".", "_"))),
        key=lambda p: (p.parent.name, p.name),
    )
