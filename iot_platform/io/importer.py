"""Import historical readings from CSV or Parquet files into the landing zone.

A file is read in chunks (Arrow's streaming CSV reader, or Parquet row
batches), each chunk is validated column by column with
:func:`iot_platform.core.import_columns.readings_from_columns` (vectorized; no
Python loop per row), good rows are written to hidden staged Parquet files in
the landing format, bad rows to a quarantine file with their reason. When the
whole file has been read, the staged files are renamed into
``landing/import-<name>/`` (and the quarantine file into
``landing/_quarantine/import-<name>/``): an import that fails half-way leaves
no landing file behind.

The file is cut into lines here, with numpy over each block, before Arrow
parses it: a line is the unit of quarantine. A line with an unclosed quote is
set aside (a value may not span lines; otherwise the quote would swallow the
rest of the file), a value that is not UTF-8 costs its row, and every
quarantine record names the file, its line and its data row. A day/month
order that only a guess could give (``03.01.2024``) is settled by a value
elsewhere in the file that reads one way only, or refused
(:class:`~iot_platform.core.timestamps.AmbiguousDayMonth`).

Columns are found by name: ``sensor_id``, ``seq``, a timestamp (``ts``,
``timestamp``, ``time``, ``datetime``, ``date``; any case) and the metric
names, unless options say otherwise (``--map temperature=temp_c``). Any
sampling interval and any subset of the metrics works. Re-importing a file
lands its rows again; they carry the same (sensor_id, ts) keys.
"""

from __future__ import annotations

import collections
import csv
import datetime as dt
import json
import logging
import math
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from iot_platform.core.import_columns import readings_from_columns
from iot_platform.core.reading_rules import FIELDS, check_sensor_id
from iot_platform.core.schemas import METRICS
from iot_platform.core.timestamps import AmbiguousDayMonth, TimestampParser
from iot_platform.io.landing import QuarantineWriter, SpoolWriter, StagedFile, import_source, import_stream, slug

log = logging.getLogger("iot_platform.import")

CSV_SUFFIXES = (".csv", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zst", ".lz4")
TIMESTAMP_NAMES = ("ts", "timestamp", "time", "datetime", "date_time", "date")
COMPRESSION_NAMES = {".gz": "gzip", ".bz2": "bzip2", ".zst": "zstd", ".lz4": "lz4"}


class ImportFileError(ValueError):
    """A file that cannot be imported at all; the message names the file and what to do."""


@dataclass(frozen=True)
class ImportOptions:
    """How to read the files; validates itself on construction.

    ``mapping`` pairs a field (``sensor_id``, ``seq``, ``ts`` or a metric)
    with the file's column, e.g. ``(("temperature", "temp_c"),)``.
    """

    sensor_id: str | None = None
    sensor_id_column: str | None = None
    timestamp_column: str | None = None
    timestamp_format: str | None = None
    timestamp_unit: str = "s"
    timezone: str = "UTC"
    mapping: tuple[tuple[str, str], ...] = ()
    seq_column: str | None = None
    delimiter: str | None = None  # default: ',' (tab for .tsv)
    stream: str | None = None
    rows_per_file: int = 1_000_000
    # bytes of CSV per chunk: Arrow's reader reads several blocks ahead, so this bounds memory
    block_size: int = 4 << 20
    batch_rows: int = 262_144  # rows of Parquet per chunk

    def __post_init__(self) -> None:
        if self.sensor_id is not None and self.sensor_id_column is not None:
            raise ValueError("give either a sensor id column or one sensor id for the whole file, not both")
        if self.sensor_id is not None:
            check_sensor_id(self.sensor_id)
        names = [n for n, _ in self.mapping]
        for n in names:
            if n not in FIELDS:
                raise ValueError(f"field {n!r} is not known; expected one of {', '.join(FIELDS)}")
        if len(set(names)) != len(names):
            raise ValueError("a field is mapped twice")
        cols = [c for _, c in self.mapping]
        if len(set(cols)) != len(cols):
            raise ValueError("a column is mapped to two fields")
        for opt, name in (("sensor_id_column", "sensor_id"), ("timestamp_column", "ts"), ("seq_column", "seq")):
            if getattr(self, opt) is not None and name in names:
                raise ValueError(f"{name} is given both as --{opt.replace('_', '-')} and in the mapping")
        if self.sensor_id is not None and "sensor_id" in names:
            raise ValueError("a sensor id for the whole file and a sensor_id column mapping exclude each other")
        TimestampParser(timezone=self.timezone, fmt=self.timestamp_format, unit=self.timestamp_unit)  # validates
        if self.delimiter is not None and (len(self.delimiter) != 1 or self.delimiter in '"\n\r'):
            raise ValueError(f"delimiter {self.delimiter!r} is not valid; expected one character, not a quote or a line break")
        if self.stream is not None and self.stream != slug(self.stream):
            raise ValueError(f"stream {self.stream!r} is not a slug; expected e.g. {slug(self.stream)!r}")
        for opt in ("rows_per_file", "block_size", "batch_rows"):
            if not (isinstance(getattr(self, opt), int) and getattr(self, opt) >= 1):
                raise ValueError(f"{opt} {getattr(self, opt)!r} is not valid; expected a whole number of at least 1")


@dataclass
class ImportResult:
    path: Path
    stream: str
    rows: int = 0  # data rows read, including bad ones
    landed: int = 0
    quarantined: int = 0
    files: list[Path] = field(default_factory=list)
    quarantine_file: Path | None = None
    ts_min: dt.datetime | None = None
    ts_max: dt.datetime | None = None
    seconds: float = 0.0
    reasons: collections.Counter[str] = field(default_factory=collections.Counter)  # quarantined rows by code
    first_refusal: str | None = None  # "line 12: <reason>" for the earliest quarantined row

    @property
    def days(self) -> tuple[dt.date, dt.date] | None:
        """The first and last UTC day (lake partition) of the landed readings."""
        if self.ts_min is None or self.ts_max is None:
            return None
        return self.ts_min.astimezone(dt.timezone.utc).date(), self.ts_max.astimezone(dt.timezone.utc).date()


def check_file(path: Path) -> str:
    """The file's kind (``csv`` or ``parquet``) once it is known to be a non-empty regular file."""
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if path.is_dir():
        raise ImportFileError(f"{path} is a directory; expected a CSV or Parquet file")
    kind = file_kind(path)
    size = path.stat().st_size
    if size == 0:
        what = "a header line with the column names" if kind == "csv" else "a Parquet file"
        raise ImportFileError(f"{path} is empty (0 bytes); expected {what}")
    if kind == "parquet":
        with open(path, "rb") as f:
            head = f.read(4)
            f.seek(max(size - 4, 0))
            tail = f.read(4)
        if head == b"PAR1" and tail != b"PAR1":
            raise ImportFileError(
                f"{path} is a truncated Parquet file (it starts with PAR1 but its footer is missing); copy the file again"
            )
        if head != b"PAR1" or tail != b"PAR1":
            raise ImportFileError(
                f"{path} is not a Parquet file (it does not start and end with the Parquet magic bytes PAR1)"
            )
    return kind


def file_kind(path: Path) -> str:
    """``csv`` or ``parquet`` from the file name; ``ValueError`` otherwise."""
    name = path.name.lower()
    for suffix in COMPRESSION_SUFFIXES:
        name = name.removesuffix(suffix)
    if name.endswith(PARQUET_SUFFIXES) and name == path.name.lower():
        return "parquet"
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    raise ValueError(
        f"cannot import {path.name}: expected a CSV file ({', '.join(CSV_SUFFIXES)}, optionally "
        f"{'/'.join(COMPRESSION_SUFFIXES)}) or a Parquet file ({', '.join(PARQUET_SUFFIXES)})"
    )


def resolve_columns(available: Sequence[str], options: ImportOptions, file_name: str) -> dict[str, str]:
    """Which column of the file feeds which field: ``{field: column}``."""
    listed = ", ".join(available) or "(none)"

    def need(column: str, what: str) -> str:
        if column not in available:
            raise ValueError(f"column {column!r} ({what}) is not in {file_name}; its columns are: {listed}")
        return column

    def auto(names: Sequence[str]) -> str | None:
        lower = {c.lower(): c for c in available}
        return next((lower[n] for n in names if n in lower), None)

    mapping = dict(options.mapping)
    out: dict[str, str] = {}
    for name, column in mapping.items():
        out[name] = need(column, f"mapped to {name}")
    if options.timestamp_column is not None:
        out["ts"] = need(options.timestamp_column, "the timestamp column")
    elif "ts" not in out:
        found = auto(TIMESTAMP_NAMES)
        if found is None:
            raise ValueError(
                f"no timestamp column in {file_name} (looked for {', '.join(TIMESTAMP_NAMES)}); "
                f"its columns are: {listed}; pass --timestamp-column COLUMN"
            )
        out["ts"] = found
    if options.sensor_id_column is not None:
        out["sensor_id"] = need(options.sensor_id_column, "the sensor id column")
    elif "sensor_id" not in out and options.sensor_id is None:
        found = auto(("sensor_id",))
        if found is None:
            raise ValueError(
                f"no sensor id in {file_name}: it has no sensor_id column (its columns are: {listed}); "
                "pass --sensor-id-column COLUMN or --sensor-id ID"
            )
        out["sensor_id"] = found
    if options.seq_column is not None:
        out["seq"] = need(options.seq_column, "the sequence number column")
    elif "seq" not in out:
        found = auto(("seq",))
        if found is not None and found not in out.values():
            out["seq"] = found
    for m in METRICS:
        if m not in out and m in available and m not in out.values():
            out[m] = m
    if not any(m in out for m in METRICS):
        raise ValueError(
            f"no metric columns in {file_name}: its columns are: {listed}; expected one of "
            f"{', '.join(METRICS)}, or map one with --map METRIC=COLUMN (e.g. --map temperature=value)"
        )
    return out


# -- readers -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Refused:
    """A line the reader set aside before validation (unclosed quote, wrong field count)."""

    line: int | None  # 1-based line of the file (the header is line 1); None for Parquet
    row: int  # 1-based data row (blank lines do not count)
    text: str
    code: str
    reason: str


@dataclass
class _Chunk:
    """Rows of the file with, for each row, its line (CSV) and its 1-based data row."""

    batch: pa.RecordBatch
    lines: np.ndarray | None
    rows: np.ndarray


_LINE_BREAK = re.compile(rb"\r\n|\n|\r")


class _CsvSource:
    """Chunks of a CSV file with every used column as bytes, and the lines refused on the way.

    The bytes are cut into lines here (numpy over each block) and only then
    parsed by Arrow, one block at a time: so each row keeps its line number,
    a line with an unclosed quote is set aside instead of swallowing the lines
    after it, and columns arrive as bytes, so that one value that is not UTF-8
    costs its row (``core.import_columns.decode_text``), not the file.
    """

    def __init__(self, path: Path, options: ImportOptions):
        self.path = path
        self.delimiter = options.delimiter or ("\t" if ".tsv" in path.name.lower() else ",")
        self.block_size = options.block_size
        self.columns = self._header()
        self.refused: list[_Refused] = []

    def _read(self, f, size: int) -> bytes:
        try:
            return f.read(size)
        except (OSError, pa.ArrowInvalid) as exc:
            suffix = next((s for s in COMPRESSION_NAMES if self.path.name.lower().endswith(s)), None)
            if suffix is None:
                raise
            raise ImportFileError(
                f"{self.path}: the compressed data ends early (a truncated or damaged {COMPRESSION_NAMES[suffix]} "
                "file); nothing was imported from it; copy the file again"
            ) from exc

    def _header(self) -> list[str]:
        with pa.input_stream(str(self.path), compression="detect") as f:
            head = self._read(f, 1 << 20)
        if not head.strip():
            raise ImportFileError(f"{self.path} holds no text; expected a header line with the column names")
        first = _LINE_BREAK.split(head, maxsplit=1)[0].removeprefix(b"\xef\xbb\xbf")
        control = re.search(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", first)
        if control:
            byte = control.group()[0]
            what = "a NUL byte (0x00)" if byte == 0 else f"the control byte 0x{byte:02x}"
            raise ImportFileError(
                f"{self.path} is not CSV text: its first line holds {what} at offset {control.start()}; "
                "expected a header line with the column names"
            )
        try:
            text = first.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ImportFileError(
                f"{self.path} is not CSV text: its first line holds the byte 0x{first[exc.start]:02x} at offset "
                f"{exc.start}, which is not UTF-8; expected a header line with the column names"
            ) from None
        return next(csv.reader([text], delimiter=self.delimiter))

    def batches(self, used: list[str]) -> Iterator[_Chunk]:
        read_options = pcsv.ReadOptions(column_names=self.columns, use_threads=False)
        convert_options = pcsv.ConvertOptions(
            include_columns=used,
            column_types={c: pa.binary() for c in used},
            null_values=[],
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )
        state = {"line": 1, "row": 0, "header": True}  # the next block's first line is line["line"]
        with pa.input_stream(str(self.path), compression="detect") as f:
            carry = b""
            while True:
                data = self._read(f, self.block_size)
                buf = carry + data
                if data:
                    cut = max(buf.rfind(b"\n"), buf.rfind(b"\r", 0, len(buf) - 1))
                    if cut < 0:
                        carry = buf  # a line longer than a block: read on
                        continue
                    block, carry = buf[: cut + 1], buf[cut + 1 :]
                else:
                    block, carry = buf, b""
                    if block and block[-1:] not in (b"\n", b"\r"):
                        block += b"\n"
                if block:
                    chunk = self._parse_block(block, state, read_options, convert_options)
                    if chunk is not None:
                        yield chunk
                if not data:
                    return

    def _parse_block(self, block: bytes, state: dict, read_options, convert_options) -> _Chunk | None:
        b = np.frombuffer(block, dtype=np.uint8)
        is_nl = b == 0x0A
        if block.find(b"\r") < 0:  # the common case: \n line ends only
            ends = np.flatnonzero(is_nl)
            starts = np.empty_like(ends)
            starts[0] = 0
            starts[1:] = ends[:-1] + 1
            content_end = ends
        else:
            is_cr = b == 0x0D
            cr_before_nl = np.zeros(len(b), dtype=bool)
            cr_before_nl[:-1] = is_cr[:-1] & is_nl[1:]
            ends = np.flatnonzero(is_nl | (is_cr & ~cr_before_nl))  # one terminator per line; \r\n counts once
            starts = np.empty_like(ends)
            starts[0] = 0
            starts[1:] = ends[:-1] + 1
            content_end = ends - (is_nl[ends] & (ends > starts) & is_cr[np.maximum(ends - 1, 0)])
        n_lines = len(ends)
        line_no = state["line"] + np.arange(n_lines, dtype=np.int64)
        state["line"] += n_lines
        data = content_end > starts  # blank lines are not rows (as Arrow reads them)
        if state["header"]:
            data[0] = False
            state["header"] = False
        unclosed = np.zeros(n_lines, dtype=bool)
        n_quotes = np.zeros(n_lines, dtype=np.int64)
        if block.find(b'"') >= 0:
            # An unclosed quote: an odd number of double quotes on a line where a field opens with one
            # (a quote inside an unquoted field is a literal, as Arrow reads it). Counted from the
            # quotes' positions, so a block without quotes costs nothing here.
            qpos = np.flatnonzero(b == 0x22)
            prev = b[np.maximum(qpos - 1, 0)]
            opens = qpos[(qpos == 0) | (prev == ord(self.delimiter)) | (prev == 0x0A) | (prev == 0x0D)]
            n_quotes = np.searchsorted(qpos, ends) - np.searchsorted(qpos, starts)
            n_opens = np.searchsorted(opens, ends) - np.searchsorted(opens, starts)
            unclosed = data & (n_quotes % 2 == 1) & (n_opens > 0)
        row_no = state["row"] + np.cumsum(data)  # the data row of each line (valid where data)
        state["row"] = int(row_no[-1]) if n_lines else state["row"]
        for i in np.flatnonzero(unclosed).tolist():  # rare: one per damaged line
            q = int(n_quotes[i])
            self.refused.append(
                _Refused(
                    int(line_no[i]), int(row_no[i]), block[starts[i] : content_end[i]].decode("utf-8", "backslashreplace"),
                    "quote", f"line has an unclosed quote ({q} double quote{'s' if q != 1 else ''}); a value may not span lines",
                )
            )  # fmt: skip
        keep = data & ~unclosed
        if not keep.any():
            return None
        if keep.all():
            kept = block
        else:
            kept = b[np.repeat(keep, ends - starts + 1)].tobytes()
        kept_lines, kept_rows = line_no[keep], row_no[keep]
        invalid: list[int] = []
        expected = len(self.columns)

        def on_invalid(row: pcsv.InvalidRow) -> str:
            k = row.number - 1  # Arrow counts the non-blank lines it was given, from 1
            invalid.append(k)
            self.refused.append(
                _Refused(
                    int(kept_lines[k]), int(kept_rows[k]), row.text, "field_count",
                    f"row has {row.actual_columns} fields; expected {expected} like the header",
                )
            )  # fmt: skip
            return "skip"

        table = pcsv.read_csv(
            pa.py_buffer(kept),
            read_options=pcsv.ReadOptions(
                column_names=read_options.column_names, use_threads=False, block_size=len(kept) + 1
            ),
            parse_options=pcsv.ParseOptions(delimiter=self.delimiter, invalid_row_handler=on_invalid),
            convert_options=convert_options,
        )
        if invalid:
            good = np.ones(len(kept_lines), dtype=bool)
            good[invalid] = False
            kept_lines, kept_rows = kept_lines[good], kept_rows[good]
        if table.num_rows != len(kept_lines):  # pragma: no cover - the framing above and Arrow's must agree
            raise ImportFileError(
                f"{self.path}: lines {int(kept_lines[0])}-{int(kept_lines[-1])} read as {table.num_rows} rows, "
                f"not {len(kept_lines)}; please report this file"
            )
        if table.num_rows == 0:
            return None
        return _Chunk(table.combine_chunks().to_batches()[0], kept_lines, kept_rows)


class _ParquetSource:
    def __init__(self, path: Path, options: ImportOptions):
        self.path = path
        self.file = pq.ParquetFile(path)
        self.columns = self.file.schema_arrow.names
        self.batch_rows = options.batch_rows
        self.refused: list[_Refused] = []

    def batches(self, used: list[str]) -> Iterator[_Chunk]:
        done = 0
        for batch in self.file.iter_batches(batch_size=self.batch_rows, columns=used):
            yield _Chunk(batch, None, done + 1 + np.arange(batch.num_rows, dtype=np.int64))
            done += batch.num_rows


# -- import ---------------------------------------------------------------------------


def import_file(
    path: str | Path,
    landing_root: Path,
    options: ImportOptions = ImportOptions(),
    *,
    received_at: dt.datetime | None = None,
) -> ImportResult:
    """Land the readings of one CSV or Parquet file; see the module docstring.

    Raises :class:`ImportFileError` (naming the file) for a file that cannot
    be imported at all; nothing is landed then.
    """
    path = Path(path)
    kind = check_file(path)
    try:
        return _import(path, kind, landing_root, options, received_at or dt.datetime.now(dt.timezone.utc))
    except ImportFileError:
        raise
    except ValueError as exc:  # ArrowInvalid included: say which file
        if path.name in str(exc):
            raise
        raise ImportFileError(f"{path}: {exc}") from exc


def _source(path: Path, kind: str, options: ImportOptions) -> _CsvSource | _ParquetSource:
    return _CsvSource(path, options) if kind == "csv" else _ParquetSource(path, options)


def _import(path: Path, kind: str, landing_root: Path, options: ImportOptions, received: dt.datetime) -> ImportResult:
    started = time.monotonic()
    source = _source(path, kind, options)
    columns = resolve_columns(source.columns, options, path.name)
    wanted = set(columns.values())
    used = [c for c in source.columns if c in wanted]  # file order, for the quarantine's raw rows
    stream = options.stream or import_stream(path)
    src = import_source(path)
    received_us = _us(received)
    parser = TimestampParser(
        timezone=options.timezone, fmt=options.timestamp_format, unit=options.timestamp_unit, name=columns["ts"]
    )
    spool = SpoolWriter(landing_root, stream)
    quarantine = QuarantineWriter(landing_root, stream)
    result = ImportResult(path=path, stream=stream)
    staged: list[StagedFile] = []
    current: StagedFile | None = None
    ts_min: int | None = None
    ts_max: int | None = None

    def refuse(records: list[tuple[int, int | None, str, str, str]]) -> None:
        """Quarantine ``(row, line, code, reason, raw)`` records, in file order."""
        for row, line, code, reason, raw in sorted(records, key=lambda r: r[0]):
            where = {"line": line} if line is not None else {}
            quarantine.add(
                source=src, received_at_us=received_us, reason=reason, code=code, raw=raw,
                file=str(path.resolve()), row=row, **where,
            )  # fmt: skip
            result.quarantined += 1
            result.reasons[code] += 1
            if result.first_refusal is None:
                result.first_refusal = f"line {line}: {reason}" if line is not None else f"row {row}: {reason}"

    def set_aside() -> list[tuple[int, int | None, str, str, str]]:
        out = [(r.row, r.line, r.code, r.reason, r.text) for r in source.refused]
        source.refused.clear()
        return out

    def validate(chunk: _Chunk):
        fields = {name: chunk.batch.column(col) for name, col in columns.items()}
        return readings_from_columns(
            fields, num_rows=chunk.batch.num_rows, timestamps=parser, source=src, received_at=received,
            sensor_id=options.sensor_id,
        )  # fmt: skip

    try:
        for chunk in source.batches(used):
            try:
                table, _, reasons = validate(chunk)
            except AmbiguousDayMonth as exc:
                # The value that settles the order may be anywhere: look through the whole column once.
                for seen in _source(path, kind, options).batches([columns["ts"]]):
                    parser.observe(seen.batch.column(0))
                    if parser.settled:
                        break
                if not parser.settled:
                    raise ImportFileError(f"{path}: {exc}") from None
                table, _, reasons = validate(chunk)
            if table.num_rows:
                if current is None:
                    current = spool.stage()
                    staged.append(current)
                current.write(table)
                bounds = pc.min_max(table.column("ts").cast(pa.int64()))
                lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
                ts_min = lo if ts_min is None else min(ts_min, lo)
                ts_max = hi if ts_max is None else max(ts_max, hi)
                if current.rows >= options.rows_per_file:
                    current.close()
                    current = None
            result.landed += table.num_rows
            records = set_aside()
            if reasons:
                positions = np.fromiter(sorted(reasons), dtype=np.int64, count=len(reasons))
                rows = chunk.rows[positions].tolist()
                lines = chunk.lines[positions].tolist() if chunk.lines is not None else [None] * len(rows)
                raws = chunk.batch.take(pa.array(positions)).to_pylist()
                for pos, row, line, raw in zip(positions.tolist(), rows, lines, raws):
                    code, reason = reasons[pos]
                    records.append((row, line, code, reason, _json_row(raw)))
            refuse(records)
        refuse(set_aside())
        result.rows = result.landed + result.quarantined
        result.files = spool.publish(staged)
        result.quarantine_file = quarantine.publish()
    except BaseException:
        for s in staged:
            s.discard()
        quarantine.discard()
        raise
    if ts_min is not None:
        result.ts_min = _dt(ts_min)
        result.ts_max = _dt(ts_max)  # type: ignore[arg-type]
    result.seconds = time.monotonic() - started
    # debug, not info: the CLI prints the summary (at info it was shown twice)
    log.debug(
        "%s: %d rows, %d landed in %d files under %s, %d quarantined (%.1f s)",
        path.name, result.rows, result.landed, len(result.files), stream, result.quarantined, result.seconds,
    )  # fmt: skip
    return result


def import_files(paths: Sequence[str | Path], landing_root: Path, options: ImportOptions = ImportOptions()) -> list[ImportResult]:
    """Import several files, one after the other; all share one import time (``received_at``).

    Every file is checked (exists, is a file of a known kind, not empty) before the first is imported.
    """
    for p in paths:
        check_file(Path(p))
    received = dt.datetime.now(dt.timezone.utc)
    return [import_file(p, landing_root, options, received_at=received) for p in paths]


def _json_row(row: dict) -> str:
    """A row of the file as JSON text (non-finite floats and times as strings)."""

    def clean(v: object) -> object:
        if isinstance(v, float) and not math.isfinite(v):
            return str(v)
        if isinstance(v, (dt.datetime, dt.date, dt.time)):
            return v.isoformat()
        if isinstance(v, bytes):
            return v.decode("utf-8", "backslashreplace")
        return v

    return json.dumps({k: clean(v) for k, v in row.items()}, ensure_ascii=False, default=str)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def _us(t: dt.datetime) -> int:
    return (t - _EPOCH) // dt.timedelta(microseconds=1)


def _dt(us: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=us)
