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

Columns are found by name: ``sensor_id``, ``seq``, a timestamp (``ts``,
``timestamp``, ``time``, ``datetime``, ``date``; any case) and the metric
names, unless options say otherwise (``--map temperature=temp_c``). Any
sampling interval and any subset of the metrics works. Re-importing a file
lands its rows again; they carry the same (sensor_id, ts) keys.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
import math
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
from iot_platform.core.timestamps import TimestampParser
from iot_platform.io.landing import QuarantineWriter, SpoolWriter, StagedFile, import_source, import_stream, slug

log = logging.getLogger("iot_platform.import")

CSV_SUFFIXES = (".csv", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zst", ".lz4")
TIMESTAMP_NAMES = ("ts", "timestamp", "time", "datetime", "date_time", "date")


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


class _CsvSource:
    """Chunks of a CSV file with every used column as text, and its malformed rows.

    Single-threaded Arrow parsing is what gives each malformed row its
    position in the file, which the quarantine record keeps.
    """

    def __init__(self, path: Path, options: ImportOptions):
        self.path = path
        self.delimiter = options.delimiter or ("\t" if ".tsv" in path.name.lower() else ",")
        self.block_size = options.block_size
        self.columns = self._header()
        self.bad_rows: list[tuple[int | None, str, str]] = []  # (data row, text, reason)

    def _header(self) -> list[str]:
        with pa.input_stream(str(self.path), compression="detect") as f:
            head = f.read(1 << 20)
        text = head.decode("utf-8-sig", errors="replace").splitlines()
        if not text:
            raise ValueError(f"{self.path.name} is empty; expected a header line with the column names")
        return next(csv.reader([text[0]], delimiter=self.delimiter))

    def batches(self, used: list[str]) -> Iterator[pa.RecordBatch]:
        expected = len(self.columns)

        def on_invalid(row: pcsv.InvalidRow) -> str:
            data_row = row.number - 1 if row.number is not None else None
            self.bad_rows.append(
                (data_row, row.text, f"row has {row.actual_columns} fields; expected {expected} like the header")
            )
            return "skip"

        reader = pcsv.open_csv(
            pa.input_stream(str(self.path), compression="detect"),
            read_options=pcsv.ReadOptions(block_size=self.block_size, use_threads=False),
            parse_options=pcsv.ParseOptions(delimiter=self.delimiter, invalid_row_handler=on_invalid),
            convert_options=pcsv.ConvertOptions(
                include_columns=used,
                column_types={c: pa.string() for c in used},
                null_values=[],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        yield from reader


class _ParquetSource:
    def __init__(self, path: Path, options: ImportOptions):
        self.path = path
        self.file = pq.ParquetFile(path)
        self.columns = self.file.schema_arrow.names
        self.batch_rows = options.batch_rows
        self.bad_rows: list[tuple[int | None, str, str]] = []

    def batches(self, used: list[str]) -> Iterator[pa.RecordBatch]:
        yield from self.file.iter_batches(batch_size=self.batch_rows, columns=used)


# -- import ---------------------------------------------------------------------------


def import_file(
    path: str | Path,
    landing_root: Path,
    options: ImportOptions = ImportOptions(),
    *,
    received_at: dt.datetime | None = None,
) -> ImportResult:
    """Land the readings of one CSV or Parquet file; see the module docstring."""
    started = time.monotonic()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    kind = file_kind(path)
    source = _CsvSource(path, options) if kind == "csv" else _ParquetSource(path, options)
    columns = resolve_columns(source.columns, options, path.name)
    wanted = set(columns.values())
    used = [c for c in source.columns if c in wanted]  # file order, for the quarantine's raw rows
    stream = options.stream or import_stream(path)
    src = import_source(path)
    received = received_at or dt.datetime.now(dt.timezone.utc)
    received_us = _us(received)
    parser = TimestampParser(
        timezone=options.timezone, fmt=options.timestamp_format, unit=options.timestamp_unit, name=columns["ts"]
    )
    spool = SpoolWriter(landing_root, stream)
    quarantine = QuarantineWriter(landing_root, stream)
    result = ImportResult(path=path, stream=stream)
    staged: list[StagedFile] = []
    current: StagedFile | None = None
    parsed_rows = 0  # rows the reader returned so far (malformed CSV rows excluded)
    ts_min: int | None = None
    ts_max: int | None = None
    try:
        for batch in source.batches(used):
            n = batch.num_rows
            if n == 0:
                continue
            fields = {name: batch.column(col) for name, col in columns.items()}
            table, _, reasons = readings_from_columns(
                fields, num_rows=n, timestamps=parser, source=src, received_at=received, sensor_id=options.sensor_id
            )
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
            if reasons:
                positions = np.fromiter(sorted(reasons), dtype=np.int64, count=len(reasons))
                rows = _data_rows(parsed_rows + positions, source.bad_rows)
                bad = batch.take(pa.array(positions)).to_pylist()
                for pos, row, raw in zip(positions.tolist(), rows.tolist(), bad):
                    code, reason = reasons[pos]
                    quarantine.add(
                        source=src, received_at_us=received_us, reason=reason, code=code, raw=_json_row(raw), row=row
                    )
            parsed_rows += n
            result.landed += table.num_rows
            result.quarantined += len(reasons)
        for data_row, text, reason in source.bad_rows:
            quarantine.add(
                source=src, received_at_us=received_us, reason=reason, code="field_count", raw=text, row=data_row
            )
        result.quarantined += len(source.bad_rows)
        result.rows = parsed_rows + len(source.bad_rows)
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
    log.info(
        "%s: %d rows, %d landed in %d files under %s, %d quarantined (%.1f s)",
        path.name, result.rows, result.landed, len(result.files), stream, result.quarantined, result.seconds,
    )  # fmt: skip
    return result


def import_files(paths: Sequence[str | Path], landing_root: Path, options: ImportOptions = ImportOptions()) -> list[ImportResult]:
    """Import several files, one after the other; all share one import time (``received_at``)."""
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"no such file: {', '.join(missing)}")
    for p in paths:
        file_kind(Path(p))
    received = dt.datetime.now(dt.timezone.utc)
    return [import_file(p, landing_root, options, received_at=received) for p in paths]


def _data_rows(ordinals: np.ndarray, bad_rows: list[tuple[int | None, str, str]]) -> np.ndarray:
    """1-based data-row numbers of parsed rows ``ordinals`` (0-based), skipping malformed rows.

    The k-th parsed row is the k-th row number not taken by a malformed row:
    with the malformed rows' numbers S sorted, row = k + 1 + #{j : S_j - j <= k + 1}.
    """
    skipped = np.array(sorted(r for r, _, _ in bad_rows if r is not None), dtype=np.int64)
    base = ordinals + 1
    if skipped.size == 0:
        return base
    shifted = skipped - np.arange(skipped.size)
    return base + np.searchsorted(shifted, base, side="right")


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
